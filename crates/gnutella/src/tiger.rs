//! Tiger tree hashes (TTH, the Merkle tree of THEX) as Gnutella servents
//! use them: pure functions, no I/O.
//!
//! The file is cut into blocks of [`BLOCK`] bytes (the empty file is one
//! empty block); a leaf is `Tiger(0x00 || block)`, an inner node
//! `Tiger(0x01 || left || right)`, and a node without a right sibling is
//! promoted unchanged to the level above. Level 0 is the root; the leaves
//! are at level [`full_depth`].
//!
//! A servent serves the tree down to some level only ([`HashTree`]): each
//! node of that level covers [`granularity`] bytes of the file, and a
//! range made of whole such pieces can be checked on its own
//! ([`HashTree::verify_range`], [`StreamCheck`]).

use tiger::{Digest, Tiger};

/// Bytes hashed by one leaf.
pub const BLOCK: usize = 1024;
/// Bytes of one node.
pub const HASH_LEN: usize = 24;
/// Deepest level a tree is accepted or served at (at most `2^MAX_DEPTH`
/// nodes at its bottom level).
pub const MAX_DEPTH: u32 = 16;
/// Deepest level this node serves (1024 pieces at most).
pub const SERVE_DEPTH: u32 = 10;
/// Smallest piece a served tree checks (levels below are left out so that
/// small files get small trees).
pub const MIN_SERVED_PIECE: u64 = 64 * 1024;

/// One node of the tree.
pub type Hash = [u8; HASH_LEN];

fn finish(h: Tiger) -> Hash {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&h.finalize());
    out
}

/// The leaf of one block (at most [`BLOCK`] bytes).
pub fn leaf_hash(block: &[u8]) -> Hash {
    let mut h = Tiger::new();
    h.update([0u8]);
    h.update(block);
    finish(h)
}

/// The inner node above `left` and `right`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Tiger::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    finish(h)
}

/// Blocks of a file of `size` bytes (the empty file has one).
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).max(1)
}

/// The level of the leaves of a file of `size` bytes (0: one block).
pub fn full_depth(size: u64) -> u32 {
    let n = block_count(size);
    // Smallest d with 2^d >= n.
    64 - (n - 1).leading_zeros()
}

/// Nodes at level `depth` (at most [`full_depth`]) of a file of `size`.
pub fn nodes_at(size: u64, depth: u32) -> u64 {
    let shift = full_depth(size).saturating_sub(depth);
    block_count(size).div_ceil(1u64 << shift)
}

/// Bytes of the file covered by one node of level `depth` (the last node
/// of a level may cover fewer).
pub fn granularity(size: u64, depth: u32) -> u64 {
    (BLOCK as u64) << full_depth(size).saturating_sub(depth)
}

/// The level this node serves for a file of `size`: the deepest one whose
/// pieces are at least [`MIN_SERVED_PIECE`] bytes, at most
/// [`SERVE_DEPTH`].
pub fn serve_depth(size: u64) -> u32 {
    let min_shift = (MIN_SERVED_PIECE / BLOCK as u64).trailing_zeros();
    full_depth(size).saturating_sub(min_shift).min(SERVE_DEPTH)
}

/// The root of a byte stream, fed in pieces of any size; keeps one block
/// and one node per level.
#[derive(Clone)]
pub struct TreeHasher {
    block: Vec<u8>,
    blocks: u64,
    /// Subtree roots not yet paired, with their height; heights strictly
    /// decrease from the bottom of the stack.
    stack: Vec<(u32, Hash)>,
}

impl Default for TreeHasher {
    fn default() -> Self {
        TreeHasher::new()
    }
}

impl std::fmt::Debug for TreeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeHasher")
            .field(
                "bytes",
                &(self.blocks * BLOCK as u64 + self.block.len() as u64),
            )
            .finish()
    }
}

impl TreeHasher {
    /// A hasher of nothing yet.
    pub fn new() -> TreeHasher {
        TreeHasher {
            block: Vec::with_capacity(BLOCK),
            blocks: 0,
            stack: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.blocks * BLOCK as u64 + self.block.len() as u64
    }

    /// Whether nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, mut h: Hash) {
        let mut height = 0;
        while let Some(&(top, left)) = self.stack.last() {
            if top != height {
                break;
            }
            self.stack.pop();
            h = node_hash(&left, &h);
            height += 1;
        }
        self.stack.push((height, h));
        self.blocks += 1;
    }

    /// Feeds more bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.block.is_empty() && data.len() >= BLOCK {
                let (b, rest) = data.split_at(BLOCK);
                self.push(leaf_hash(b));
                data = rest;
                continue;
            }
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                let h = leaf_hash(&self.block);
                self.block.clear();
                self.push(h);
            }
        }
    }

    /// The root of everything fed.
    pub fn finish(mut self) -> Hash {
        if !self.block.is_empty() || self.blocks == 0 {
            let h = leaf_hash(&self.block);
            self.push(h);
        }
        let mut acc: Option<Hash> = None;
        while let Some((_, h)) = self.stack.pop() {
            acc = Some(match acc {
                None => h,
                Some(right) => node_hash(&h, &right),
            });
        }
        acc.unwrap_or_else(|| leaf_hash(&[]))
    }
}

/// The root of `data`.
pub fn root(data: &[u8]) -> Hash {
    let mut h = TreeHasher::new();
    h.update(data);
    h.finish()
}

/// Why a range does not pass the tree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The bytes of the piece at this offset are not those the tree names.
    #[error("bytes {start}..{end} do not match the tiger tree")]
    Mismatch {
        /// First byte of the piece.
        start: u64,
        /// End of the piece (exclusive).
        end: u64,
    },
    /// The range lies outside the file.
    #[error("range outside the file")]
    Outside,
}

/// A tiger tree from its root down to one level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    size: u64,
    /// `levels[0]` is the root, `levels[depth]` the bottom level.
    levels: Vec<Vec<Hash>>,
}

impl HashTree {
    /// The tree above `bottom`, the nodes of level `depth` of a file of
    /// `size` bytes. `None` when `depth` is deeper than the file's leaves
    /// or than [`MAX_DEPTH`], or `bottom` has not the right number of
    /// nodes.
    pub fn from_bottom(size: u64, depth: u32, bottom: Vec<Hash>) -> Option<HashTree> {
        if depth > full_depth(size) || depth > MAX_DEPTH {
            return None;
        }
        if bottom.len() as u64 != nodes_at(size, depth) {
            return None;
        }
        let mut levels = vec![bottom];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or(&[]);
            let up: Vec<Hash> = below
                .chunks(2)
                .map(|p| match p {
                    [l, r] => node_hash(l, r),
                    [l] => *l,
                    _ => leaf_hash(&[]),
                })
                .collect();
            levels.push(up);
        }
        levels.reverse();
        if levels.len() as u32 != depth + 1 {
            return None;
        }
        Some(HashTree { size, levels })
    }

    /// The tree of `data` down to level `depth` (capped at the leaves).
    pub fn of_bytes(data: &[u8], depth: u32) -> HashTree {
        let size = data.len() as u64;
        let depth = depth.min(full_depth(size)).min(MAX_DEPTH);
        let g = usize::try_from(granularity(size, depth)).unwrap_or(usize::MAX);
        let bottom: Vec<Hash> = if data.is_empty() {
            vec![leaf_hash(&[])]
        } else {
            data.chunks(g).map(root).collect()
        };
        // The counts agree by construction.
        HashTree::from_bottom(size, depth, bottom).unwrap_or(HashTree {
            size,
            levels: vec![vec![root(data)]],
        })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bottom level's number (0: the root alone).
    pub fn depth(&self) -> u32 {
        self.levels.len().saturating_sub(1) as u32
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.levels
            .first()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_else(|| leaf_hash(&[]))
    }

    /// The nodes of the bottom level.
    pub fn bottom(&self) -> &[Hash] {
        self.levels.last().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Bytes covered by one node of the bottom level.
    pub fn granularity(&self) -> u64 {
        granularity(self.size, self.depth())
    }

    /// Every node, root first, level by level (the THEX "breadth first"
    /// serialisation).
    pub fn breadth_first(&self) -> Vec<u8> {
        let n: usize = self.levels.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(n * HASH_LEN);
        for l in &self.levels {
            for h in l {
                out.extend_from_slice(h);
            }
        }
        out
    }

    /// The piece `[start, end)` of bottom node `i`.
    fn piece(&self, i: u64) -> (u64, u64) {
        let g = self.granularity();
        let a = i.saturating_mul(g);
        (a, a.saturating_add(g).min(self.size))
    }

    /// Checks the bytes `data` found at `offset` of the file: every piece
    /// of the bottom level that lies wholly inside the range is hashed
    /// and compared. Returns how many bytes were checked (pieces that the
    /// range covers only in part are not).
    pub fn verify_range(&self, offset: u64, data: &[u8]) -> Result<u64, RangeError> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= self.size)
            .ok_or(RangeError::Outside)?;
        let g = self.granularity();
        let mut i = offset.div_ceil(g);
        let mut checked = 0;
        loop {
            let (a, b) = self.piece(i);
            if a >= end || b > end || a >= self.size {
                break;
            }
            let from = usize::try_from(a - offset).map_err(|_| RangeError::Outside)?;
            let to = usize::try_from(b - offset).map_err(|_| RangeError::Outside)?;
            let want = usize::try_from(i)
                .ok()
                .and_then(|i| self.bottom().get(i))
                .ok_or(RangeError::Outside)?;
            if root(&data[from..to]) != *want {
                return Err(RangeError::Mismatch { start: a, end: b });
            }
            checked += b - a;
            i += 1;
        }
        Ok(checked)
    }

    /// The largest piece boundary at or below `at`.
    pub fn align_down(&self, at: u64) -> u64 {
        let g = self.granularity();
        (at.min(self.size) / g) * g
    }
}

/// Checks a stream of the file's bytes from a piece boundary on, piece by
/// piece, as the bytes arrive (memory: one [`TreeHasher`]).
#[derive(Debug)]
pub struct StreamCheck<'t> {
    tree: &'t HashTree,
    /// Start of the piece being hashed.
    at: u64,
    hasher: TreeHasher,
}

impl<'t> StreamCheck<'t> {
    /// A check of the bytes from `start`, which must be a piece boundary
    /// (see [`HashTree::align_down`]); `None` otherwise.
    pub fn new(tree: &'t HashTree, start: u64) -> Option<StreamCheck<'t>> {
        if start % tree.granularity() != 0 || start > tree.size {
            return None;
        }
        Some(StreamCheck {
            tree,
            at: start,
            hasher: TreeHasher::new(),
        })
    }

    /// The end of the bytes that passed so far.
    pub fn verified(&self) -> u64 {
        self.at
    }

    /// Feeds the next bytes; an error names the first piece that failed.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), RangeError> {
        while !data.is_empty() {
            let (a, b) = self.tree.piece(self.at / self.tree.granularity());
            if a >= self.tree.size {
                return Err(RangeError::Outside);
            }
            let left = b - a - self.hasher.len();
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
            self.hasher.update(&data[..take]);
            data = &data[take..];
            if self.hasher.len() == b - a {
                let h = std::mem::take(&mut self.hasher).finish();
                let i = usize::try_from(a / self.tree.granularity()).unwrap_or(usize::MAX);
                if self.tree.bottom().get(i) != Some(&h) {
                    return Err(RangeError::Mismatch { start: a, end: b });
                }
                self.at = b;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::huge::{base32_decode, base32_encode};
    use proptest::prelude::*;

    fn b32(h: &Hash) -> String {
        base32_encode(h)
    }

    #[test]
    fn published_roots() {
        // Well-known TTH values (THEX test vectors as servents print them).
        assert_eq!(b32(&root(b"")), "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ");
        assert_eq!(
            b32(&root(&[b'A'; 1024])),
            "L66Q4YVNAFWVS23X2HJIRA5ZJ7WXR3F26RSASFA"
        );
        assert_eq!(
            b32(&root(&[b'A'; 1025])),
            "PZMRYHGY6LTBEH63ZWAHDORHSYTLO4LEFUIKHWY"
        );
        assert_eq!(
            b32(&root(&[0u8])),
            "VK54ZIEEVTWNAUI5D5RDFIL37LX2IQNSTAXFKSA"
        );
        let decoded = base32_decode("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ").unwrap();
        assert_eq!(decoded, root(b"").to_vec());
    }

    #[test]
    fn depths_and_counts() {
        assert_eq!(full_depth(0), 0);
        assert_eq!(full_depth(1024), 0);
        assert_eq!(full_depth(1025), 1);
        assert_eq!(full_depth(4096), 2);
        assert_eq!(full_depth(4097), 3);
        assert_eq!(nodes_at(5 * 1024, 3), 5);
        assert_eq!(nodes_at(5 * 1024, 2), 3);
        assert_eq!(nodes_at(5 * 1024, 1), 2);
        assert_eq!(nodes_at(5 * 1024, 0), 1);
        assert_eq!(granularity(5 * 1024, 1), 4096);
        assert_eq!(serve_depth(200_000), 2);
        assert_eq!(serve_depth(1 << 30), SERVE_DEPTH);
        assert_eq!(serve_depth(10), 0);
    }

    #[test]
    fn levels_agree_with_the_root_and_each_other() {
        let data: Vec<u8> = (0..7 * 1024 + 5).map(|i| (i * 7 % 253) as u8).collect();
        for d in 0..=3 {
            let t = HashTree::of_bytes(&data, d);
            assert_eq!(t.depth(), d);
            assert_eq!(t.root(), root(&data));
            assert_eq!(t.bottom().len() as u64, nodes_at(data.len() as u64, d));
            let bf = t.breadth_first();
            assert_eq!(&bf[..HASH_LEN], &t.root());
        }
        assert!(HashTree::from_bottom(10, 1, vec![[0; 24]; 2]).is_none());
        assert!(HashTree::from_bottom(3000, 2, vec![[0; 24]; 2]).is_none());
    }

    #[test]
    fn a_range_names_the_piece_that_fails() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let t = HashTree::of_bytes(&data, 3);
        let g = t.granularity();
        assert_eq!(g, 8192);
        assert_eq!(t.verify_range(0, &data), Ok(40_000));
        assert_eq!(t.verify_range(g, &data[g as usize..]), Ok(40_000 - g));
        // Pieces covered only in part are not checked.
        assert_eq!(t.verify_range(100, &data[100..9000]), Ok(0));
        let mut bad = data.clone();
        bad[3 * 8192 + 17] ^= 1;
        assert_eq!(
            t.verify_range(0, &bad),
            Err(RangeError::Mismatch {
                start: 3 * 8192,
                end: 4 * 8192
            })
        );
        assert_eq!(t.verify_range(39_999, &data[..2]), Err(RangeError::Outside));
        let mut s = StreamCheck::new(&t, 8192).unwrap();
        assert!(StreamCheck::new(&t, 100).is_none());
        s.update(&bad[8192..20_000]).unwrap();
        assert_eq!(s.verified(), 16_384);
        assert!(matches!(
            s.update(&bad[20_000..]),
            Err(RangeError::Mismatch { start: 24_576, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_split_gives_the_same_root(
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            cuts in proptest::collection::vec(0usize..6000, 0..6),
        ) {
            let mut h = TreeHasher::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts {
                h.update(&data[at..c]);
                at = c;
            }
            h.update(&data[at..]);
            prop_assert_eq!(h.finish(), root(&data));
            // The tree by levels: the root of the blocks' leaves.
            let leaves: Vec<Hash> = if data.is_empty() {
                vec![leaf_hash(&[])]
            } else {
                data.chunks(BLOCK).map(leaf_hash).collect()
            };
            let full = HashTree::from_bottom(data.len() as u64, full_depth(data.len() as u64), leaves);
            prop_assert_eq!(full.map(|t| t.root()), Some(root(&data)));
        }

        #[test]
        fn any_split_into_ranges_verifies_and_any_flip_fails(
            data in proptest::collection::vec(any::<u8>(), 1..20_000),
            depth in 0u32..6,
            pieces in proptest::collection::vec(1u64..6, 1..12),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let t = HashTree::of_bytes(&data, depth);
            let g = t.granularity();
            let size = data.len() as u64;
            // Ranges of whole pieces, in any sizes, cover the file and pass.
            let mut at = 0u64;
            let mut k = 0;
            while at < size {
                let len = (pieces[k % pieces.len()] * g).min(size - at);
                let checked = t.verify_range(at, &data[at as usize..(at + len) as usize]);
                prop_assert_eq!(checked, Ok(len));
                at += len;
                k += 1;
            }
            let mut s = StreamCheck::new(&t, 0).unwrap();
            prop_assert!(s.update(&data).is_ok());
            prop_assert_eq!(s.verified(), size);
            // One flipped bit: the piece that holds it fails, the whole
            // range fails, and so does the stream.
            let i = flip.index(data.len());
            let mut bad = data.clone();
            bad[i] ^= 1 << bit;
            let start = (i as u64 / g) * g;
            let end = (start + g).min(size);
            prop_assert_eq!(
                t.verify_range(0, &bad),
                Err(RangeError::Mismatch { start, end })
            );
            let mut s = StreamCheck::new(&t, 0).unwrap();
            prop_assert_eq!(s.update(&bad), Err(RangeError::Mismatch { start, end }));
            prop_assert_ne!(root(&bad), root(&data));
        }
    }
}
