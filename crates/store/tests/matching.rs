//! The library's searches answer exactly what the matching rule of
//! `rutella_proto::matching` accepts, on real folder trees.

use proptest::prelude::*;
use rutella_proto::matching::name_matches;
use rutella_store::{Library, LibraryConfig};
use std::fs;

/// One path component: mixed case, spaces, and letters whose lowercase
/// differs in length or depends on context.
fn component() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!['a', 'b', 'A', 'B', ' ', 'Σ', 'ß', 'İ', 'x', '-']),
        1..6,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// A relative path of one to three components.
fn rel() -> impl Strategy<Value = String> {
    proptest::collection::vec(component(), 1..4).prop_map(|v| v.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn search_answers_what_the_rule_matches(
        rels in proptest::collection::vec(rel(), 1..12),
        picks in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..6), 1..8),
        others in proptest::collection::vec(component(), 0..3),
    ) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let root = fs::canonicalize(tmp.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for r in &rels {
            let path = root.join(r);
            // A name that is also another file's folder is skipped.
            if let Some(parent) = path.parent() {
                if fs::create_dir_all(parent).is_err() {
                    continue;
                }
            }
            let _ = fs::write(&path, b"x");
        }
        let mut cfg = LibraryConfig::new(vec![root.clone()]);
        cfg.watch = false;
        let lib = Library::open(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let offered: Vec<String> = lib.list().into_iter().map(|f| f.name).collect();
        prop_assert!(!offered.is_empty());
        // Queries: pieces of the paths (folders included) and random text.
        let mut queries = others;
        for (i, start, len) in picks {
            let chars: Vec<char> = rels[i % rels.len()].chars().collect();
            let start = start % (chars.len() + 1);
            let end = (start + len).min(chars.len());
            queries.push(chars[start..end].iter().collect());
        }
        // Several words, in another order.
        for k in 1..queries.len() {
            queries.push(format!("{} {}", queries[k], queries[k - 1]));
        }
        for q in &queries {
            let mut got: Vec<String> = lib
                .search(q, usize::MAX)
                .into_iter()
                .map(|f| f.name)
                .collect();
            got.sort();
            let mut want: Vec<String> = offered
                .iter()
                .filter(|n| name_matches(q, n))
                .cloned()
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "{:?}", q);
        }
    }
}
