//! In-memory name index: every offered file with a trigram → file-id
//! posting map over its folded relative path (folders included, Unicode
//! lowercase), as [`rutella_proto::matching`] defines it. The posting lists and scans
//! only narrow the candidates; the final decision is the rule's.
//!
//! Ids are handed out in increasing order and never reused until the index
//! is compacted (which renumbers in the same order), so every posting list
//! stays sorted.

use rutella_proto::matching;
use std::collections::HashMap;
use std::sync::Arc;

/// Id of a share, stable while the library lives.
pub(crate) type ShareId = u32;

/// One offered file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) share: ShareId,
    /// Path relative to the share, `/`-separated (shared with the index
    /// maps and the hashing queue).
    pub(crate) rel: Arc<str>,
    /// Folded path of `rel` ([`rutella_proto::matching::folded_path`]).
    pub(crate) name_lower: Box<str>,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: Option<[u8; 32]>,
    /// SHA-1 of the content (Gnutella's `urn:sha1`), computed with `hash`.
    pub(crate) sha1: Option<[u8; 20]>,
    /// Tiger tree root (Gnutella's `urn:tree:tiger`), computed with `hash`.
    pub(crate) tth: Option<[u8; 24]>,
}

/// Packs three chars into one key (21 bits each: no collisions).
fn gram_key(a: char, b: char, c: char) -> u64 {
    ((a as u64) << 42) | ((b as u64) << 21) | (c as u64)
}

/// Calls `f` with every distinct trigram key of `s`.
fn for_each_gram(s: &str, mut f: impl FnMut(u64)) {
    let chars: Vec<char> = s.chars().collect();
    let mut seen: Vec<u64> = Vec::with_capacity(chars.len());
    for w in chars.windows(3) {
        let k = gram_key(w[0], w[1], w[2]);
        if !seen.contains(&k) {
            seen.push(k);
            f(k);
        }
    }
}

/// Ids of the entries holding one relative name: almost always one.
#[derive(Debug)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

impl Ids {
    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(v) => v,
        }
    }
}

/// Folded form of a `/`-separated relative name: what queries are
/// matched against.
pub(crate) fn name_lower(rel: &str) -> Box<str> {
    matching::folded_path(rel).into_boxed_str()
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: Vec<Option<Entry>>,
    live: usize,
    /// rel → ids of entries with that relative name (one per share holding it).
    by_rel: HashMap<Arc<str>, Ids>,
    grams: HashMap<u64, Vec<u32>>,
    /// hash → ids of entries whose content has that hash.
    by_hash: HashMap<[u8; 32], Vec<u32>>,
    /// SHA-1 → ids of entries whose content has that SHA-1.
    by_sha1: HashMap<[u8; 20], Vec<u32>>,
    total_bytes: u64,
    hashed_files: usize,
    hashed_bytes: u64,
    /// Names held by more than one entry (several shares).
    dup_names: usize,
    /// Every lowercased name, each followed by `\n` (names never contain
    /// control characters), for fast scans; removed names stay until the
    /// arena is rebuilt.
    arena: String,
    /// (offset in `arena`, id), in increasing order of both.
    arena_slots: Vec<(usize, u32)>,
    /// Bytes of the arena that belong to removed entries.
    arena_dead: usize,
}

/// Totals over the index: (files, bytes, hashed files, hashed bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    pub(crate) hashed_files: usize,
    pub(crate) hashed_bytes: u64,
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Entry> {
        self.entries.get(id as usize).and_then(Option::as_ref)
    }

    /// Counts over all entries.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            files: self.live,
            bytes: self.total_bytes,
            hashed_files: self.hashed_files,
            hashed_bytes: self.hashed_bytes,
        }
    }

    /// True if some name is held by several entries.
    pub(crate) fn has_duplicates(&self) -> bool {
        self.dup_names > 0
    }

    /// Ids of entries whose hash is `hash`.
    pub(crate) fn ids_for_hash(&self, hash: &[u8; 32]) -> &[u32] {
        self.by_hash.get(hash).map(Vec::as_slice).unwrap_or(&[])
    }

    fn unlink_hash(&mut self, id: u32, hash: &[u8; 32], size: u64) {
        if let Some(ids) = self.by_hash.get_mut(hash) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_hash.remove(hash);
            }
        }
        self.hashed_files -= 1;
        self.hashed_bytes -= size;
    }

    fn link_hash(&mut self, id: u32, hash: [u8; 32], size: u64) {
        self.by_hash.entry(hash).or_default().push(id);
        self.hashed_files += 1;
        self.hashed_bytes += size;
    }

    /// Ids of entries whose SHA-1 is `sha1`.
    pub(crate) fn ids_for_sha1(&self, sha1: &[u8; 20]) -> &[u32] {
        self.by_sha1.get(sha1).map(Vec::as_slice).unwrap_or(&[])
    }

    fn unlink_sha1(&mut self, id: u32, sha1: &[u8; 20]) {
        if let Some(ids) = self.by_sha1.get_mut(sha1) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_sha1.remove(sha1);
            }
        }
    }

    /// Sets or clears the BLAKE3 hash of an entry (clearing it clears the
    /// SHA-1 too: both describe the same content).
    pub(crate) fn set_hash(&mut self, id: u32, hash: Option<[u8; 32]>) {
        let (sha1, tth) = match hash {
            Some(_) => self.get(id).map(|e| (e.sha1, e.tth)).unwrap_or_default(),
            None => (None, None),
        };
        self.set_hashes(id, hash, sha1, tth);
    }

    /// Sets or clears the hashes of an entry.
    pub(crate) fn set_hashes(
        &mut self,
        id: u32,
        hash: Option<[u8; 32]>,
        sha1: Option<[u8; 20]>,
        tth: Option<[u8; 24]>,
    ) {
        let Some(e) = self.get(id) else { return };
        let (old, old_sha1, size) = (e.hash, e.sha1, e.size);
        if old != hash {
            if let Some(h) = old {
                self.unlink_hash(id, &h, size);
            }
            if let Some(h) = hash {
                self.link_hash(id, h, size);
            }
        }
        if old_sha1 != sha1 {
            if let Some(s) = old_sha1 {
                self.unlink_sha1(id, &s);
            }
            if let Some(s) = sha1 {
                self.by_sha1.entry(s).or_default().push(id);
            }
        }
        if let Some(Some(e)) = self.entries.get_mut(id as usize) {
            e.hash = hash;
            e.sha1 = sha1;
            e.tth = tth;
        }
    }

    /// Records a new size and modification time; clears the hash when
    /// either changed. Returns true if they changed.
    pub(crate) fn update_meta(&mut self, id: u32, size: u64, mtime_ns: i64) -> bool {
        let Some(e) = self.get(id) else { return false };
        if e.size == size && e.mtime_ns == mtime_ns {
            return false;
        }
        self.set_hash(id, None);
        if let Some(Some(e)) = self.entries.get_mut(id as usize) {
            self.total_bytes = self.total_bytes - e.size + size;
            e.size = size;
            e.mtime_ns = mtime_ns;
        }
        true
    }

    /// Id of the entry for `rel` in `share`.
    pub(crate) fn find(&self, share: ShareId, rel: &str) -> Option<u32> {
        self.by_rel
            .get(rel)?
            .as_slice()
            .iter()
            .copied()
            .find(|&id| self.get(id).is_some_and(|e| e.share == share))
    }

    /// Ids of all entries with relative name `rel`, any share.
    pub(crate) fn ids_for_rel(&self, rel: &str) -> &[u32] {
        self.by_rel.get(rel).map(Ids::as_slice).unwrap_or(&[])
    }

    /// Iterates over live entries with their ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as u32, e)))
    }

    /// Inserts an entry (the caller made sure (share, rel) is not present).
    pub(crate) fn insert(&mut self, entry: Entry) -> u32 {
        let id = self.entries.len() as u32;
        for_each_gram(&entry.name_lower, |k| {
            self.grams.entry(k).or_default().push(id)
        });
        match self.by_rel.get_mut(&entry.rel) {
            None => {
                self.by_rel.insert(entry.rel.clone(), Ids::One(id));
            }
            Some(ids) => {
                let mut v = ids.as_slice().to_vec();
                if v.len() == 1 {
                    self.dup_names += 1;
                }
                v.push(id);
                *ids = Ids::Many(v);
            }
        }
        self.arena_slots.push((self.arena.len(), id));
        self.arena.push_str(&entry.name_lower);
        self.arena.push('\n');
        self.total_bytes += entry.size;
        if let Some(h) = entry.hash {
            self.link_hash(id, h, entry.size);
        }
        if let Some(s) = entry.sha1 {
            self.by_sha1.entry(s).or_default().push(id);
        }
        self.entries.push(Some(entry));
        self.live += 1;
        id
    }

    /// Removes an entry; returns it.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Entry> {
        let entry = self.entries.get_mut(id as usize)?.take()?;
        self.live -= 1;
        self.total_bytes -= entry.size;
        if let Some(h) = entry.hash {
            self.unlink_hash(id, &h, entry.size);
        }
        if let Some(s) = entry.sha1 {
            self.unlink_sha1(id, &s);
        }
        for_each_gram(&entry.name_lower, |k| {
            if let Some(list) = self.grams.get_mut(&k) {
                if let Ok(pos) = list.binary_search(&id) {
                    list.remove(pos);
                }
                if list.is_empty() {
                    self.grams.remove(&k);
                }
            }
        });
        if let Some(ids) = self.by_rel.get_mut(&entry.rel) {
            let mut v = ids.as_slice().to_vec();
            let before = v.len();
            v.retain(|&i| i != id);
            if before == 2 && v.len() == 1 {
                self.dup_names -= 1;
            }
            match v.as_slice() {
                [] => {
                    self.by_rel.remove(&entry.rel);
                }
                [one] => *ids = Ids::One(*one),
                _ => *ids = Ids::Many(v),
            }
        }
        self.arena_dead += entry.name_lower.len() + 1;
        if self.arena_dead > 65_536 && self.arena_dead > self.arena.len() / 2 {
            self.rebuild_arena();
        }
        Some(entry)
    }

    fn rebuild_arena(&mut self) {
        let mut arena = String::with_capacity(self.arena.len() - self.arena_dead);
        let mut slots = Vec::with_capacity(self.live);
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(e) = e {
                slots.push((arena.len(), i as u32));
                arena.push_str(&e.name_lower);
                arena.push('\n');
            }
        }
        self.arena = arena;
        self.arena_slots = slots;
        self.arena_dead = 0;
    }

    /// Scans the arena for `needle_lower`, calling `visit` once per entry
    /// whose name contains it, in id order, until `visit` returns false.
    fn scan(&self, needle_lower: &str, mut visit: impl FnMut(u32) -> bool) {
        let finder = memchr::memmem::Finder::new(needle_lower.as_bytes());
        let hay = self.arena.as_bytes();
        let slots = &self.arena_slots;
        let mut start = 0;
        let mut slot = 0;
        while start < hay.len() {
            let Some(found) = finder.find(&hay[start..]) else {
                return;
            };
            let pos = start + found;
            // The name holding `pos`: usually one of the next few, else a
            // binary search over the rest.
            let mut steps = 0;
            while slot + 1 < slots.len() && slots[slot + 1].0 <= pos && steps < 8 {
                slot += 1;
                steps += 1;
            }
            if slot + 1 < slots.len() && slots[slot + 1].0 <= pos {
                slot += slots[slot..].partition_point(|&(off, _)| off <= pos) - 1;
            }
            if !visit(slots[slot].1) {
                return;
            }
            // Continue after this name: one hit per name is enough.
            start = slots.get(slot + 1).map_or(hay.len(), |&(off, _)| off);
        }
    }

    /// Gives back the spare capacity of the posting lists (after a bulk
    /// load, where doubling left up to half of it unused).
    pub(crate) fn shrink(&mut self) {
        for list in self.grams.values_mut() {
            list.shrink_to_fit();
        }
        self.grams.shrink_to_fit();
        self.by_rel.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.arena_slots.shrink_to_fit();
    }

    /// Number of dead slots.
    pub(crate) fn dead(&self) -> usize {
        self.entries.len() - self.live
    }

    /// Renumbers the entries densely (same order) when many were removed.
    pub(crate) fn compact_if_sparse(&mut self) {
        if self.dead() > 1024 && self.dead() > self.live {
            let old = std::mem::take(self);
            for e in old.entries.into_iter().flatten() {
                self.insert(e);
            }
        }
    }

    /// Finds entries whose name matches `query` by the matching rule
    /// ([`rutella_proto::matching`]), in id order, keeping those for which
    /// `keep` is true, at most `limit`.
    pub(crate) fn search(
        &self,
        query: &str,
        limit: usize,
        mut keep: impl FnMut(u32, &Entry) -> bool,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        let folded = matching::fold(query);
        // The longest word narrows the candidates; every word is checked.
        let Some(needle_lower) = matching::words(&folded).max_by_key(|w| w.len()) else {
            return out;
        };
        if limit == 0 {
            return out;
        }
        let one_word = matching::words(&folded).nth(1).is_none();
        // A scan hit lies inside one name (a word never holds the arena's
        // separator, which is white space): with one word it is a match.
        // `checked`: the scan already found the word in this very name.
        let mut visit = |id: u32, checked: bool, out: &mut Vec<u32>| -> bool {
            if let Some(e) = self.get(id) {
                let hit = (checked && one_word) || matching::folded_matches(&folded, &e.name_lower);
                if hit && keep(id, e) {
                    out.push(id);
                }
            }
            out.len() < limit
        };
        if needle_lower.chars().nth(2).is_none() {
            // Shorter than a trigram: scan all names at memory speed.
            self.scan(needle_lower, |id| visit(id, true, &mut out));
            return out;
        }
        let mut lists: Vec<&[u32]> = Vec::new();
        let mut missing = false;
        for_each_gram(needle_lower, |k| match self.grams.get(&k) {
            Some(l) => lists.push(l),
            None => missing = true,
        });
        if missing || lists.is_empty() {
            return out;
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return out;
        };
        if first.len() > self.live / 8 {
            // Every trigram is common: a scan beats checking that many
            // candidates one by one.
            self.scan(needle_lower, |id| visit(id, true, &mut out));
            return out;
        }
        // Filter the shortest list by the next shortest ones (binary search
        // is cheap against the string check), then check the text itself.
        let rest = &rest[..rest.len().min(2)];
        for &id in first.iter() {
            if rest.iter().all(|l| l.binary_search(&id).is_ok()) && !visit(id, false, &mut out) {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(share: ShareId, rel: &str) -> Entry {
        Entry {
            share,
            rel: rel.into(),
            name_lower: name_lower(rel),
            size: 1,
            mtime_ns: 0,
            hash: None,
            sha1: None,
            tth: None,
        }
    }

    fn names(ix: &Index, q: &str) -> Vec<String> {
        ix.search(q, 100, |_, _| true)
            .into_iter()
            .filter_map(|id| ix.get(id).map(|e| e.rel.to_string()))
            .collect()
    }

    #[test]
    fn every_word_case_insensitive_over_the_whole_path() {
        let mut ix = Index::default();
        ix.insert(entry(0, "pop/Despacito.mp3"));
        ix.insert(entry(0, "esp/other.ogg"));
        ix.insert(entry(0, "ÜBER/Straße.FLAC"));
        ix.insert(entry(0, "photos/holiday 2019 - beach.jpg"));
        assert_eq!(
            names(&ix, "ESP"),
            vec!["pop/Despacito.mp3", "esp/other.ogg"]
        );
        assert_eq!(names(&ix, "es"), vec!["pop/Despacito.mp3", "esp/other.ogg"]);
        assert_eq!(names(&ix, "e").len(), 4);
        assert_eq!(names(&ix, "STRASSE"), Vec::<String>::new());
        assert_eq!(names(&ix, "straße.f"), vec!["ÜBER/Straße.FLAC"]);
        assert_eq!(names(&ix, "über"), vec!["ÜBER/Straße.FLAC"]);
        assert_eq!(names(&ix, ""), Vec::<String>::new());
        assert_eq!(names(&ix, "  "), Vec::<String>::new());
        assert_eq!(names(&ix, "zzz"), Vec::<String>::new());
        let beach = vec!["photos/holiday 2019 - beach.jpg"];
        assert_eq!(names(&ix, "photo"), beach);
        assert_eq!(names(&ix, "holiday beach"), beach);
        assert_eq!(names(&ix, "BEACH holiday"), beach);
        assert_eq!(names(&ix, "be ho"), beach);
        assert_eq!(names(&ix, "beach sea"), Vec::<String>::new());
    }

    #[test]
    fn remove_and_compact_keep_postings_right() {
        let mut ix = Index::default();
        let mut ids = Vec::new();
        for i in 0..3000 {
            ids.push(ix.insert(entry(0, &format!("d/file{i}.txt"))));
        }
        for &id in &ids[..2500] {
            assert!(ix.remove(id).is_some());
        }
        assert!(ix.remove(ids[0]).is_none());
        ix.compact_if_sparse();
        assert_eq!(ix.dead(), 0);
        assert_eq!(ix.len(), 500);
        assert_eq!(names(&ix, "file2999"), vec!["d/file2999.txt"]);
        assert_eq!(names(&ix, "file1"), Vec::<String>::new());
        assert_eq!(ix.search("file", 10, |_, _| true).len(), 10);
        let id = ix.find(0, "d/file2600.txt");
        assert!(id.is_some());
        assert_eq!(ix.find(1, "d/file2600.txt"), None);
    }

    #[test]
    fn scans_agree_with_trigram_lookups_after_churn() {
        let mut ix = Index::default();
        let mut ids = Vec::new();
        for i in 0..2000 {
            ids.push(ix.insert(entry(0, &format!("d/Song {i} ab.mp3"))));
        }
        // Remove enough to rebuild the arena, but not to compact.
        for &id in ids.iter().step_by(3) {
            ix.remove(id);
        }
        let brute = |q: &str| -> Vec<u32> {
            ix.iter()
                .filter(|(_, e)| matching::folded_matches(q, &e.name_lower))
                .map(|(id, _)| id)
                .collect()
        };
        for q in [
            "a", "ab", "b.", "song 1", "1 ab", "mp3", "zz", "g 19", "99", "ab song",
        ] {
            assert_eq!(ix.search(q, usize::MAX, |_, _| true), brute(q), "{q}");
        }
        assert_eq!(ix.search("ab", 5, |_, _| true), brute("ab")[..5]);
        assert!(!ix.has_duplicates());
        let dup = ix.insert(entry(1, "d/Song 1 ab.mp3"));
        assert!(ix.has_duplicates());
        ix.remove(dup);
        assert!(!ix.has_duplicates());
    }

    /// Relative names with folders, mixed case, letters whose lowercase
    /// differs in length or depends on context, and the arena's separator.
    fn rel() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                '/', ' ', '.', '\n', 'Σ', 'İ', 'ß', 'Ä', 'a', 'b', 'c', 'A', 'B',
            ]),
            0..14,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Whatever path the index takes (short scan, trigram lists, common
        /// trigrams scan), its answer is the matching rule's.
        #[test]
        fn search_answers_exactly_what_the_rule_matches(
            rels in proptest::collection::vec(rel(), 1..40),
            removed in proptest::collection::vec(any::<usize>(), 0..10),
            picks in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..7), 1..10),
            others in proptest::collection::vec(rel(), 0..5),
        ) {
            let mut ix = Index::default();
            let mut ids = Vec::new();
            for (i, r) in rels.iter().enumerate() {
                ids.push(ix.insert(entry(i as ShareId, r)));
            }
            for k in removed {
                ix.remove(ids[k % ids.len()]);
            }
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
                let want: Vec<u32> = ix
                    .iter()
                    .filter(|(_, e)| matching::name_matches(q, &e.rel))
                    .map(|(id, _)| id)
                    .collect();
                prop_assert_eq!(ix.search(q, usize::MAX, |_, _| true), want, "{:?}", q);
            }
        }
    }

    #[test]
    fn hash_map_and_totals_follow_changes() {
        let mut ix = Index::default();
        let a = ix.insert(entry(0, "a"));
        let b = ix.insert(entry(1, "a"));
        ix.set_hash(a, Some([7; 32]));
        ix.set_hash(b, Some([7; 32]));
        assert_eq!(ix.ids_for_hash(&[7; 32]), &[a, b]);
        assert_eq!(
            ix.totals(),
            Totals {
                files: 2,
                bytes: 2,
                hashed_files: 2,
                hashed_bytes: 2
            }
        );
        assert!(ix.update_meta(a, 10, 5));
        assert!(!ix.update_meta(a, 10, 5));
        assert_eq!(ix.get(a).and_then(|e| e.hash), None);
        assert_eq!(ix.ids_for_hash(&[7; 32]), &[b]);
        ix.remove(b);
        assert!(ix.ids_for_hash(&[7; 32]).is_empty());
        assert_eq!(
            ix.totals(),
            Totals {
                files: 1,
                bytes: 10,
                hashed_files: 0,
                hashed_bytes: 0
            }
        );
    }
}
