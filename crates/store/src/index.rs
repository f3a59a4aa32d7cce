//! In-memory name index: every offered file with a trigram → file-id
//! posting map over the Unicode-lowercased file name (last component).
//!
//! Ids are handed out in increasing order and never reused until the index
//! is compacted (which renumbers in the same order), so every posting list
//! stays sorted.

use std::collections::HashMap;

/// Id of a share, stable while the library lives.
pub(crate) type ShareId = u32;

/// One offered file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) share: ShareId,
    /// Path relative to the share, `/`-separated.
    pub(crate) rel: String,
    /// Unicode-lowercased last component of `rel`.
    pub(crate) name_lower: Box<str>,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: Option<[u8; 32]>,
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

/// Lowercased last component of a `/`-separated relative name.
pub(crate) fn name_lower(rel: &str) -> Box<str> {
    rel.rsplit('/')
        .next()
        .unwrap_or(rel)
        .to_lowercase()
        .into_boxed_str()
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: Vec<Option<Entry>>,
    live: usize,
    /// rel → ids of entries with that relative name (one per share holding it).
    by_rel: HashMap<String, Vec<u32>>,
    grams: HashMap<u64, Vec<u32>>,
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Entry> {
        self.entries.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Entry> {
        self.entries.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Id of the entry for `rel` in `share`.
    pub(crate) fn find(&self, share: ShareId, rel: &str) -> Option<u32> {
        self.by_rel
            .get(rel)?
            .iter()
            .copied()
            .find(|&id| self.get(id).is_some_and(|e| e.share == share))
    }

    /// Ids of all entries with relative name `rel`, any share.
    pub(crate) fn ids_for_rel(&self, rel: &str) -> &[u32] {
        self.by_rel.get(rel).map(Vec::as_slice).unwrap_or(&[])
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
        self.by_rel.entry(entry.rel.clone()).or_default().push(id);
        self.entries.push(Some(entry));
        self.live += 1;
        id
    }

    /// Removes an entry; returns it.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Entry> {
        let entry = self.entries.get_mut(id as usize)?.take()?;
        self.live -= 1;
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
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_rel.remove(&entry.rel);
            }
        }
        Some(entry)
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

    /// Finds entries whose lowercased name contains `needle_lower`, in id
    /// order, keeping those for which `keep` is true, at most `limit`.
    pub(crate) fn search(
        &self,
        needle_lower: &str,
        limit: usize,
        mut keep: impl FnMut(u32, &Entry) -> bool,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        if needle_lower.is_empty() || limit == 0 {
            return out;
        }
        let mut visit = |id: u32, out: &mut Vec<u32>| -> bool {
            if let Some(e) = self.get(id) {
                if e.name_lower.contains(needle_lower) && keep(id, e) {
                    out.push(id);
                }
            }
            out.len() < limit
        };
        if needle_lower.chars().nth(2).is_none() {
            // Shorter than a trigram: scan the names.
            for id in 0..self.entries.len() as u32 {
                if !visit(id, &mut out) {
                    break;
                }
            }
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
        // Filter the shortest list by the next shortest ones (binary search
        // is cheap against the string check), then check the text itself.
        let rest = &rest[..rest.len().min(2)];
        for &id in first.iter() {
            if rest.iter().all(|l| l.binary_search(&id).is_ok()) && !visit(id, &mut out) {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(share: ShareId, rel: &str) -> Entry {
        Entry {
            share,
            rel: rel.to_string(),
            name_lower: name_lower(rel),
            size: 1,
            mtime_ns: 0,
            hash: None,
        }
    }

    fn names(ix: &Index, q: &str) -> Vec<String> {
        ix.search(&q.to_lowercase(), 100, |_, _| true)
            .into_iter()
            .filter_map(|id| ix.get(id).map(|e| e.rel.clone()))
            .collect()
    }

    #[test]
    fn substring_case_insensitive_on_last_component() {
        let mut ix = Index::default();
        ix.insert(entry(0, "pop/Despacito.mp3"));
        ix.insert(entry(0, "esp/other.ogg"));
        ix.insert(entry(0, "ÜBER/Straße.FLAC"));
        assert_eq!(names(&ix, "ESP"), vec!["pop/Despacito.mp3"]);
        assert_eq!(names(&ix, "es"), vec!["pop/Despacito.mp3"]);
        assert_eq!(names(&ix, "e").len(), 3);
        assert_eq!(names(&ix, "STRASSE"), Vec::<String>::new());
        assert_eq!(names(&ix, "straße.f"), vec!["ÜBER/Straße.FLAC"]);
        assert_eq!(names(&ix, "über"), Vec::<String>::new());
        assert_eq!(names(&ix, ""), Vec::<String>::new());
        assert_eq!(names(&ix, "zzz"), Vec::<String>::new());
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
}
