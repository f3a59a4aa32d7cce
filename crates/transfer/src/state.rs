//! The progress file kept next to a partial download by hash: which chunk
//! groups of the `.part` file were verified and synced to disk. Pure
//! encoding and decoding, no I/O.
//!
//! ```text
//! magic "RTLSTATE" [8] | version u8 = 1 | group_log u8 | 0 [6]
//! hash [32] | size u64 | groups u64 | bitmap [ceil(groups / 8)]
//! BLAKE3 of everything above [32]
//! ```

use crate::tree::group_count;
use crate::wire::{MAX_GROUP_LOG, MIN_GROUP_LOG};

const MAGIC: &[u8; 8] = b"RTLSTATE";
const HEAD: usize = 8 + 1 + 1 + 6 + 32 + 8 + 8;

/// Which groups of a partial download are verified on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartState {
    /// The file's BLAKE3 hash.
    pub hash: [u8; 32],
    /// The file's size.
    pub size: u64,
    /// log2 of the group size.
    pub group_log: u8,
    /// One bit per group, least significant bit first.
    pub bitmap: Vec<u8>,
}

impl PartState {
    /// A state with nothing verified.
    pub fn empty(hash: [u8; 32], size: u64, group_log: u8) -> PartState {
        let n = group_count(size, group_log);
        PartState {
            hash,
            size,
            group_log,
            bitmap: vec![0; usize::try_from(n.div_ceil(8)).unwrap_or(0)],
        }
    }
    /// Number of groups.
    pub fn groups(&self) -> u64 {
        group_count(self.size, self.group_log)
    }
    /// Whether group `i` is verified.
    pub fn get(&self, i: u64) -> bool {
        usize::try_from(i / 8)
            .ok()
            .and_then(|b| self.bitmap.get(b))
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
    }
    /// Marks group `i` verified or not.
    pub fn set(&mut self, i: u64, on: bool) {
        if let Some(byte) = usize::try_from(i / 8)
            .ok()
            .and_then(|b| self.bitmap.get_mut(b))
        {
            if on {
                *byte |= 1 << (i % 8);
            } else {
                *byte &= !(1 << (i % 8));
            }
        }
    }
    /// Encodes the state with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.bitmap.len() + 32);
        out.extend_from_slice(MAGIC);
        out.push(1);
        out.push(self.group_log);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.groups().to_le_bytes());
        out.extend_from_slice(&self.bitmap);
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }
    /// Decodes a state; `None` when anything is off (the download then
    /// starts over from what can be verified).
    pub fn decode(buf: &[u8]) -> Option<PartState> {
        if buf.len() < HEAD + 32 || &buf[..8] != MAGIC || buf[8] != 1 {
            return None;
        }
        let (body, sum) = buf.split_at(buf.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return None;
        }
        let group_log = body[9];
        if !(MIN_GROUP_LOG..=MAX_GROUP_LOG).contains(&group_log) {
            return None;
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&body[16..48]);
        let size = u64::from_le_bytes(body[48..56].try_into().ok()?);
        let groups = u64::from_le_bytes(body[56..64].try_into().ok()?);
        if groups != group_count(size, group_log) {
            return None;
        }
        let bitmap = body[HEAD..].to_vec();
        if bitmap.len() as u64 != groups.div_ceil(8) {
            return None;
        }
        Some(PartState {
            hash,
            size,
            group_log,
            bitmap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(hash in any::<[u8; 32]>(), size in 0u64..(1 << 40), bits in proptest::collection::vec(any::<u64>(), 0..8)) {
            let gl = crate::tree::group_log_for(size);
            let mut s = PartState::empty(hash, size, gl);
            for b in bits {
                if s.groups() > 0 {
                    s.set(b % s.groups(), true);
                }
            }
            prop_assert_eq!(PartState::decode(&s.encode()), Some(s));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PartState::decode(&bytes);
        }
    }

    #[test]
    fn detects_corruption() {
        let mut s = PartState::empty([7; 32], 100_000, 14);
        s.set(3, true);
        assert!(s.get(3) && !s.get(2));
        let mut e = s.encode();
        e[HEAD] ^= 1;
        assert_eq!(PartState::decode(&e), None);
        assert_eq!(PartState::decode(&e[..10]), None);
    }
}
