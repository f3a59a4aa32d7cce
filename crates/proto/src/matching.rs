//! The one rule for "this file matches this query", used by everything that
//! answers or predicts answers: the library's index (`rutella-store`), the
//! trigram Bloom filter of the scalable overlay (which must never reject a
//! path the rule accepts), the simulator and the test network.
//!
//! The rule: the query, Unicode lowercased, is split into words at white
//! space; a file matches when it has at least one word and every word is a
//! substring of the file's relative path (folders included, `/`-separated),
//! Unicode lowercased. Word order does not matter: `"beach holiday"`
//! matches `"photos/Holiday 2019 - beach.jpg"`, and so do `"photo"` and
//! `"2019 photos/holiday"`. A query of only white space matches nothing.
//! Every other query that is a substring of a file's name (its last path
//! component) matches it, as under the rule of earlier versions.
//!
//! Lowercasing is [`str::to_lowercase`], applied to each `/`-separated
//! component of the path on its own (so a final Greek sigma folds as at the
//! end of a word, and a name folds the same whatever its folders are), and
//! to the whole query (white space ends a word for that rule too, so
//! folding the query word by word gives the same words).

/// The case folding of the rule, applied to queries and to path
/// components.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The folded text a path is matched against: every `/`-separated
/// component [`fold`]ed on its own, joined again with `/`.
pub fn folded_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, part) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&fold(part));
    }
    out
}

/// The words of an already folded query (from [`fold`]).
pub fn words(folded_query: &str) -> impl Iterator<Item = &str> {
    folded_query.split_whitespace()
}

/// The rule over already folded texts: `folded_query` (from [`fold`]) has
/// a word, and every word of it is a substring of `folded_path` (from
/// [`folded_path`]).
pub fn folded_matches(folded_query: &str, folded_path: &str) -> bool {
    let mut any = false;
    for w in words(folded_query) {
        if !folded_path.contains(w) {
            return false;
        }
        any = true;
    }
    any
}

/// Whether the file at `path` matches `query` (see the module
/// documentation for the rule).
pub fn name_matches(query: &str, path: &str) -> bool {
    folded_matches(&fold(query), &folded_path(path))
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
        assert!(name_matches("cloud models", "models of cloud.png"));
        assert!(name_matches("pop", "pop/Despacito.mp3"));
        assert!(name_matches("/desp", "pop/Despacito.mp3"));
        assert!(name_matches("photo", "photos/holiday 2019 - beach.jpg"));
        assert!(name_matches(
            "holiday beach",
            "photos/holiday 2019 - beach.jpg"
        ));
        assert!(name_matches(
            "BEACH  holiday\t",
            "photos/Holiday 2019 - Beach.jpg"
        ));
        assert!(!name_matches(
            "holiday sea",
            "photos/holiday 2019 - beach.jpg"
        ));
        assert!(!name_matches("", "a.txt"));
        assert!(!name_matches(" \t ", "a.txt"));
        assert!(name_matches("straße.f", "ÜBER/Straße.FLAC"));
        assert!(!name_matches("STRASSE", "Straße.FLAC"));
        assert!(name_matches("über", "ÜBER/Straße.FLAC"));
        assert_eq!(folded_path("ÜBER/Straße.FLAC"), "über/straße.flac");
        assert_eq!(folded_path("a/"), "a/");
    }

    /// The rule of earlier versions: the whole query, one substring of the
    /// folded last component.
    fn old_rule(query: &str, path: &str) -> bool {
        let name = path.rsplit_once('/').map_or(path, |(_, n)| n);
        let q = fold(query);
        !q.is_empty() && fold(name).contains(&q)
    }

    /// Paths with folders, spaces, mixed case and letters whose lowercase
    /// differs in length or depends on context (`İ`, `Σ`).
    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                '/', ' ', '.', 'Σ', 'İ', 'ß', 'Ä', 'a', 'b', 'c', 'd', 'A', 'B', 'C',
            ]),
            0..16,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    /// Queries: pieces of the paths (folders included), several pieces
    /// joined by white space in any order, and random text.
    fn queries(
        paths: &[String],
        picks: &[(usize, usize, usize)],
        others: &[String],
    ) -> Vec<String> {
        let mut queries = others.to_vec();
        let mut pieces = Vec::new();
        for &(i, start, len) in picks {
            let chars: Vec<char> = paths[i % paths.len()].chars().collect();
            let start = start % (chars.len() + 1);
            let end = (start + len).min(chars.len());
            pieces.push(chars[start..end].iter().collect::<String>());
        }
        for (k, p) in pieces.iter().enumerate() {
            queries.push(p.clone());
            if let Some(next) = pieces.get(k + 1) {
                queries.push(format!("{next} {p}"));
                queries.push(format!("{p}\t {next}"));
            }
        }
        queries
    }

    proptest! {
        /// The filter of a library's paths never rejects a path the rule
        /// accepts, for queries of one word or several.
        #[test]
        fn bloom_never_rejects_what_the_rule_accepts(
            paths in proptest::collection::vec(path(), 1..6),
            picks in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..8), 1..8),
            others in proptest::collection::vec(path(), 0..4),
        ) {
            let filter = TrigramBloom::from_names(&paths);
            for q in &queries(&paths, &picks, &others) {
                let trigrams = QueryTrigrams::new(q);
                for p in &paths {
                    if name_matches(q, p) {
                        prop_assert!(filter.may_match(&trigrams), "{q:?} in {p:?}");
                    }
                }
            }
        }

        /// Whatever matched under the earlier rule still matches (but a
        /// query of only white space).
        #[test]
        fn every_earlier_match_still_matches(
            paths in proptest::collection::vec(path(), 1..6),
            picks in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..8), 1..8),
            others in proptest::collection::vec(path(), 0..4),
        ) {
            for q in &queries(&paths, &picks, &others) {
                for p in &paths {
                    if old_rule(q, p) && !q.trim().is_empty() {
                        prop_assert!(name_matches(q, p), "{q:?} in {p:?}");
                    }
                }
            }
        }
    }
}
