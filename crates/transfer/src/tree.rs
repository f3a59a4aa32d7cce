//! Verification trees: the BLAKE3 chaining values of a file's chunk groups.
//!
//! A file is cut into groups of `2^group_log` bytes (16 KiB for files up to
//! 4 GiB, larger above so that a tree never has more than 2^18 groups). Each
//! group is a complete, aligned subtree of the file's BLAKE3 tree, so its
//! chaining value can be computed from the group's bytes alone, and the
//! chaining values of all groups combine into the file's BLAKE3 hash, the
//! same value `b3sum` prints. A downloader that holds a tree whose root
//! matches the hash it asked for can check every group as it arrives.

use std::io;
use std::ops::Range;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode,
};

use crate::wire::{MAX_GROUP_LOG, MIN_GROUP_LOG};

/// A chaining value (or, for a one-group file, the root hash).
pub type Cv = [u8; 32];

/// Most groups a tree is made of before groups grow larger.
const MAX_GROUPS_LOG: u32 = 18;

/// The chunk-group size (log2) used for a file of `size` bytes.
pub fn group_log_for(size: u64) -> u8 {
    let mut g = MIN_GROUP_LOG;
    while g < MAX_GROUP_LOG && size > 1u64 << (u32::from(g) + MAX_GROUPS_LOG) {
        g += 1;
    }
    g
}

/// Number of groups of a file of `size` bytes.
pub fn group_count(size: u64, group_log: u8) -> u64 {
    size.div_ceil(1u64 << group_log)
}

/// The hash that group `index` of a file of `size` bytes must have.
///
/// For a file of one group this is the file's BLAKE3 hash; otherwise it is
/// the chaining value of the subtree the group forms.
pub fn group_hash(data: &[u8], index: u64, size: u64, group_log: u8) -> Cv {
    if size <= 1u64 << group_log {
        return *blake3::hash(data).as_bytes();
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index << group_log);
    h.update(data);
    h.finalize_non_root()
}

/// The BLAKE3 hash of a file from its groups' hashes, or `None` when their
/// number does not fit the size.
pub fn root_from_groups(cvs: &[Cv], size: u64, group_log: u8) -> Option<[u8; 32]> {
    if cvs.len() as u64 != group_count(size, group_log) {
        return None;
    }
    let g = 1u64 << group_log;
    if size == 0 {
        return Some(*blake3::hash(&[]).as_bytes());
    }
    if size <= g {
        return Some(cvs[0]);
    }
    let left = left_subtree_len(size);
    let l = subtree(cvs, 0, left, group_log);
    let r = subtree(cvs, left >> group_log, size - left, group_log);
    Some(*merge_subtrees_root(&l, &r, Mode::Hash).as_bytes())
}

/// Chaining value of the subtree of `len` bytes starting at group `first`.
fn subtree(cvs: &[Cv], first: u64, len: u64, group_log: u8) -> Cv {
    if len <= 1u64 << group_log {
        return cvs[first as usize];
    }
    // `left` is a power of two above half of `len`, so a whole number of
    // groups when `len` exceeds one group.
    let left = left_subtree_len(len);
    let l = subtree(cvs, first, left, group_log);
    let r = subtree(cvs, first + (left >> group_log), len - left, group_log);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// Why a tree was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The group size is outside what the protocol allows.
    #[error("chunk-group size 2^{0} is outside 2^14..=2^24")]
    GroupSize(u8),
    /// The number of hashes does not fit the file size.
    #[error("{got} group hashes do not fit a file of {size} bytes")]
    Count {
        /// Hashes given.
        got: usize,
        /// File size.
        size: u64,
    },
    /// The hashes do not combine into the expected root.
    #[error("the group hashes do not combine into the requested BLAKE3 hash")]
    Root,
}

/// A verified tree: group hashes that combine into `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    hash: [u8; 32],
    size: u64,
    group_log: u8,
    cvs: Vec<Cv>,
}

impl Tree {
    /// Checks `cvs` against `hash` and builds the tree.
    ///
    /// The size is bound to the hash only through the bytes of the last
    /// group (as in every BLAKE3 tree): a tree with a wrong size can pass
    /// this check, but then its last group never verifies. Downloaders
    /// therefore verify the last group from the peer that sent the tree
    /// before trusting the size.
    pub fn from_groups(
        hash: [u8; 32],
        size: u64,
        group_log: u8,
        cvs: Vec<Cv>,
    ) -> Result<Tree, TreeError> {
        if !(MIN_GROUP_LOG..=MAX_GROUP_LOG).contains(&group_log) {
            return Err(TreeError::GroupSize(group_log));
        }
        let root = root_from_groups(&cvs, size, group_log).ok_or(TreeError::Count {
            got: cvs.len(),
            size,
        })?;
        if root != hash {
            return Err(TreeError::Root);
        }
        Ok(Tree {
            hash,
            size,
            group_log,
            cvs,
        })
    }

    /// Decodes the tree payload (concatenated 32-byte group hashes) and
    /// checks it against `hash`.
    pub fn decode(
        hash: [u8; 32],
        size: u64,
        group_log: u8,
        payload: &[u8],
    ) -> Result<Tree, TreeError> {
        if payload.len() % 32 != 0 {
            return Err(TreeError::Count {
                got: payload.len() / 32,
                size,
            });
        }
        let cvs = payload
            .chunks_exact(32)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect();
        Tree::from_groups(hash, size, group_log, cvs)
    }

    /// The payload of a tree response.
    pub fn encode(&self) -> Vec<u8> {
        self.cvs.concat()
    }

    /// Hashes a whole file (using up to `threads` threads).
    pub fn compute(file: &std::fs::File, size: u64, threads: usize) -> io::Result<Tree> {
        let group_log = group_log_for(size);
        let cvs = compute_groups(file, size, group_log, threads)?;
        let hash = root_from_groups(&cvs, size, group_log)
            .ok_or_else(|| io::Error::other("group count mismatch"))?;
        Ok(Tree {
            hash,
            size,
            group_log,
            cvs,
        })
    }

    /// The file's BLAKE3 hash.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// log2 of the group size.
    pub fn group_log(&self) -> u8 {
        self.group_log
    }
    /// Number of groups.
    pub fn groups(&self) -> u64 {
        self.cvs.len() as u64
    }
    /// The bytes of group `index`.
    pub fn group_range(&self, index: u64) -> Range<u64> {
        let start = index << self.group_log;
        start.min(self.size)..(start + (1u64 << self.group_log)).min(self.size)
    }
    /// Whether `data` is exactly group `index`.
    pub fn verify_group(&self, index: u64, data: &[u8]) -> bool {
        let Some(want) = usize::try_from(index).ok().and_then(|i| self.cvs.get(i)) else {
            return false;
        };
        let r = self.group_range(index);
        if data.len() as u64 != r.end - r.start {
            return false;
        }
        group_hash(data, index, self.size, self.group_log) == *want
    }
    /// Bytes the tree payload takes.
    pub fn encoded_len(&self) -> u64 {
        self.cvs.len() as u64 * 32
    }
}

/// Group hashes of a file, read with positioned reads.
fn compute_groups(
    file: &std::fs::File,
    size: u64,
    group_log: u8,
    threads: usize,
) -> io::Result<Vec<Cv>> {
    let n = group_count(size, group_log);
    let threads = if size < 64 << 20 {
        1
    } else {
        threads.clamp(1, 8) as u64
    };
    let per = n.div_ceil(threads.max(1));
    let parts: Vec<Range<u64>> = (0..threads)
        .map(|t| (t * per).min(n)..((t + 1) * per).min(n))
        .filter(|r| !r.is_empty())
        .collect();
    let results: Vec<io::Result<Vec<Cv>>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|r| {
                let r = r.clone();
                s.spawn(move || hash_groups(file, size, group_log, r))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread failed")))
            })
            .collect()
    });
    let mut cvs = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for r in results {
        cvs.extend(r?);
    }
    Ok(cvs)
}

fn hash_groups(
    file: &std::fs::File,
    size: u64,
    group_log: u8,
    groups: Range<u64>,
) -> io::Result<Vec<Cv>> {
    use std::os::unix::fs::FileExt;
    let g = 1usize << group_log;
    let per_read = (4usize << 20).max(g) / g;
    let mut buf = vec![0u8; per_read * g];
    let mut out = Vec::with_capacity((groups.end - groups.start) as usize);
    let mut i = groups.start;
    while i < groups.end {
        let k = (groups.end - i).min(per_read as u64);
        let start = i << group_log;
        let end = ((i + k) << group_log).min(size);
        let want = (end - start) as usize;
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut buf[filled..want], start + filled as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was hashed",
                    ))
                }
                Ok(r) => filled += r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for (j, chunk) in buf[..want].chunks(g).enumerate() {
            out.push(group_hash(chunk, i + j as u64, size, group_log));
        }
        i += k;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn groups_of(d: &[u8], group_log: u8) -> Vec<Cv> {
        d.chunks(1 << group_log)
            .enumerate()
            .map(|(i, c)| group_hash(c, i as u64, d.len() as u64, group_log))
            .collect()
    }

    #[test]
    fn root_matches_blake3_at_edges() {
        for len in [
            0usize,
            1,
            1024,
            1025,
            16383,
            16384,
            16385,
            32768,
            32769,
            5 * 16384 + 7,
            (1 << 20) + 3,
        ] {
            for gl in [14u8, 15] {
                let d = data(len);
                let cvs = groups_of(&d, gl);
                assert_eq!(
                    root_from_groups(&cvs, len as u64, gl),
                    Some(*blake3::hash(&d).as_bytes()),
                    "len {len} group 2^{gl}"
                );
            }
        }
    }

    #[test]
    fn file_tree_matches_and_detects_flips() {
        let d = data(300_000);
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &d).unwrap();
        let t = Tree::compute(&f, d.len() as u64, 2).unwrap();
        assert_eq!(t.hash(), blake3::hash(&d).as_bytes());
        let again = Tree::decode(*t.hash(), t.size(), t.group_log(), &t.encode()).unwrap();
        assert_eq!(again, t);
        let r = t.group_range(3);
        let mut g = d[r.start as usize..r.end as usize].to_vec();
        assert!(t.verify_group(3, &g));
        assert!(!t.verify_group(4, &g));
        g[100] ^= 1;
        assert!(!t.verify_group(3, &g));
        let mut bad = t.encode();
        bad[40] ^= 1;
        assert_eq!(
            Tree::decode(*t.hash(), t.size(), t.group_log(), &bad),
            Err(TreeError::Root)
        );
        // A wrong size with the right hashes can pass the root check (the
        // size is bound by the last group's bytes), but then the real last
        // group never verifies.
        let last = t.groups() - 1;
        let r = t.group_range(last);
        let real_last = &d[r.start as usize..r.end as usize];
        assert!(t.verify_group(last, real_last));
        if let Ok(lying) = Tree::decode(*t.hash(), t.size() + 1, t.group_log(), &t.encode()) {
            assert!(!lying.verify_group(last, real_last));
            let mut longer = real_last.to_vec();
            longer.push(0);
            assert!(!lying.verify_group(last, &longer));
        }
    }

    #[test]
    fn group_size_grows_past_4_gib() {
        assert_eq!(group_log_for(0), 14);
        assert_eq!(group_log_for(4 << 30), 14);
        assert_eq!(group_log_for((4 << 30) + 1), 15);
        assert_eq!(group_log_for(u64::MAX), MAX_GROUP_LOG);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn root_matches_blake3(len in 0usize..200_000) {
            let d = data(len);
            let cvs = groups_of(&d, 14);
            prop_assert_eq!(root_from_groups(&cvs, len as u64, 14), Some(*blake3::hash(&d).as_bytes()));
        }
    }
}
