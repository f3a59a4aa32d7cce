//! The one rule for "this file matches this query", used by everything that
//! answers or predicts answers: the library's index (`rutella-store`), the
//! trigram Bloom filter of the scalable overlay (which must never reject a
//! name the rule accepts), the simulator and the test network.
//!
//! The rule: a non-empty query matches a file when the query, Unicode
//! lowercased, is a substring of the file's name (the last `/`-separated
//! component of its path), Unicode lowercased. A query of several words is
//! one substring, spaces included: `"cloud models"` matches
//! `"Cloud models.png"` but not `"models of cloud.png"`. Folders never
//! match: `"pop"` does not match `"pop/song.mp3"`. An empty query matches
//! nothing.
//!
//! Lowercasing is [`str::to_lowercase`] of the whole text (so a final Greek
//! sigma folds as at the end of a word); the name is folded on its own,
//! apart from its folders, so the result does not depend on them.

/// The part of a path that queries are matched against: its last
/// `/`-separated component (the whole text when it has no `/`).
pub fn searched_part(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, last)) => last,
        None => path,
    }
}

/// The case folding of the rule, applied to queries and to searched parts.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The folded text a path is matched by: [`fold`] of its
/// [`searched_part`].
pub fn folded_name(path: &str) -> String {
    fold(searched_part(path))
}

/// The rule over already folded texts: `folded_query` (from [`fold`]) is
/// non-empty and a substring of `folded_name` (from [`folded_name`]).
pub fn folded_matches(folded_query: &str, folded_name: &str) -> bool {
    !folded_query.is_empty() && folded_name.contains(folded_query)
}

/// Whether the file at `path` matches `query` (see the module
/// documentation for the rule).
pub fn name_matches(query: &str, path: &str) -> bool {
    folded_matches(&fold(query), &folded_name(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalable::{QueryTrigrams, TrigramBloom};
    use proptest::prelude::*;

    #[test]
    fn the_rule_by_example() {
        assert!(name_matches("ESP", "pop/Despacito.mp3"));
        assert!(name_matches("cloud models", "Cloud models.png"));
        assert!(!name_matches("cloud models", "models of cloud.png"));
        assert!(!name_matches("pop", "pop/Despacito.mp3"));
        assert!(!name_matches("/desp", "pop/Despacito.mp3"));
        assert!(!name_matches("", "a.txt"));
        assert!(name_matches("straße.f", "ÜBER/Straße.FLAC"));
        assert!(!name_matches("STRASSE", "Straße.FLAC"));
        assert!(!name_matches("über", "ÜBER/Straße.FLAC"));
        assert_eq!(searched_part("a/b/c.txt"), "c.txt");
        assert_eq!(searched_part("c.txt"), "c.txt");
        assert_eq!(searched_part("a/"), "");
    }

    /// Paths with folders, mixed case and letters whose lowercase differs
    /// in length or depends on context (`İ`, `Σ`).
    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                '/', ' ', '.', 'Σ', 'İ', 'ß', 'Ä', 'a', 'b', 'c', 'd', 'A', 'B', 'C',
            ]),
            0..16,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Whether a driver gives the filter whole paths or only their
        /// names, a name the rule accepts always passes the filter.
        #[test]
        fn bloom_never_rejects_what_the_rule_accepts(
            paths in proptest::collection::vec(path(), 1..6),
            picks in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..8), 1..8),
            others in proptest::collection::vec(path(), 0..4),
        ) {
            let by_path = TrigramBloom::from_names(&paths);
            let by_name = TrigramBloom::from_names(paths.iter().map(|p| searched_part(p)));
            // Queries: pieces of the paths (folders included) and random text.
            let mut queries = others;
            for (i, start, len) in picks {
                let chars: Vec<char> = paths[i % paths.len()].chars().collect();
                let start = start % (chars.len() + 1);
                let end = (start + len).min(chars.len());
                queries.push(chars[start..end].iter().collect());
            }
            for q in &queries {
                let trigrams = QueryTrigrams::new(q);
                for p in &paths {
                    if name_matches(q, p) {
                        prop_assert!(by_path.may_match(&trigrams), "{q:?} in {p:?}");
                        prop_assert!(by_name.may_match(&trigrams), "{q:?} in {p:?}");
                    }
                }
            }
        }
    }
}
