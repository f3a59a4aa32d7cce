//! Trigram Bloom filters of file names (with their four-character grams
//! when there is room), and their transport in parts.

use super::{get_i64, BLOOM_HASHES, BLOOM_MAX_BITS, BLOOM_MIN_BITS, BLOOM_PART_BYTES};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// FNV-1a, 64 bits: the trigram hash of the protocol.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Calls `f` with the hash pair of every run of `n` characters of
/// `folded` (text already folded by the matching rule).
fn for_each_gram(folded: &str, n: usize, mut f: impl FnMut(u32, u32)) {
    let starts: Vec<usize> = folded.char_indices().map(|(i, _)| i).collect();
    for w in 0..starts.len().saturating_sub(n - 1) {
        let end = starts.get(w + n).copied().unwrap_or(folded.len());
        let h = fnv1a(&folded.as_bytes()[starts[w]..end]);
        f(h as u32, ((h >> 32) as u32) | 1);
    }
}

/// The trigram and four-character-gram hashes of a query (of each of its
/// words: a file matches only if every word is in its path), computed
/// once and tested against many filters. A query whose words are all
/// shorter than three characters has none and matches every filter.
#[derive(Debug, Clone, Default)]
pub struct QueryTrigrams {
    tri: Vec<(u32, u32)>,
    quad: Vec<(u32, u32)>,
}

impl QueryTrigrams {
    /// The grams of `query`.
    pub fn new(query: &str) -> Self {
        let mut tri = Vec::new();
        let mut quad = Vec::new();
        let folded = crate::matching::fold(query);
        for word in crate::matching::words(&folded) {
            for_each_gram(word, 3, |a, b| tri.push((a, b)));
            for_each_gram(word, 4, |a, b| quad.push((a, b)));
        }
        for v in [&mut tri, &mut quad] {
            v.sort_unstable();
            v.dedup();
        }
        QueryTrigrams { tri, quad }
    }
}

/// A Bloom filter of the character trigrams of files' relative paths,
/// and of their four-character grams when it has room for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrigramBloom {
    bits: Vec<u8>,
    hashes: u32,
    /// It holds the four-character grams too (`"BloomGrams": 4`): a query
    /// must then have all of its own in it as well. A filter from a peer
    /// that does not say so holds trigrams only.
    quads: bool,
}

impl TrigramBloom {
    /// The filter of these relative paths (folders included, as the
    /// matching rule reads them), sized to their grams (a power of two
    /// of at least 8 bits per gram, within the protocol's limits). The
    /// four-character grams are left out when, with them, the filter
    /// would need more than the largest size.
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut tri = BTreeSet::new();
        let mut quad = BTreeSet::new();
        for name in names {
            let path = crate::matching::folded_path(name.as_ref());
            for_each_gram(&path, 3, |a, b| {
                tri.insert((a, b));
            });
            for_each_gram(&path, 4, |a, b| {
                quad.insert((a, b));
            });
        }
        let quads = (tri.len() + quad.len()) * 8 <= BLOOM_MAX_BITS;
        if !quads {
            quad.clear();
        }
        let want = ((tri.len() + quad.len()) * 8).next_power_of_two();
        let m = want.clamp(BLOOM_MIN_BITS, BLOOM_MAX_BITS);
        let mut f = TrigramBloom {
            bits: vec![0; m / 8],
            hashes: BLOOM_HASHES,
            quads,
        };
        for (a, b) in tri.into_iter().chain(quad) {
            f.insert(a, b);
        }
        f
    }

    /// Whether it holds the four-character grams too.
    pub fn has_quads(&self) -> bool {
        self.quads
    }

    fn mask(&self) -> u32 {
        (self.bits.len() * 8 - 1) as u32
    }

    fn insert(&mut self, a: u32, b: u32) {
        let mask = self.mask();
        for i in 0..self.hashes {
            let bit = (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize;
            self.bits[bit / 8] |= 1 << (bit % 8);
        }
    }

    fn contains(&self, a: u32, b: u32) -> bool {
        let mask = self.mask();
        (0..self.hashes).all(|i| {
            let bit = (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize;
            self.bits[bit / 8] & (1 << (bit % 8)) != 0
        })
    }

    /// Whether a path of the library may match the query (false
    /// positives are possible, false negatives are not).
    pub fn may_match(&self, query: &QueryTrigrams) -> bool {
        query.tri.iter().all(|(a, b)| self.contains(*a, *b))
            && (!self.quads || query.quad.iter().all(|(a, b)| self.contains(*a, *b)))
    }

    /// Size in bits.
    pub fn bits(&self) -> usize {
        self.bits.len() * 8
    }

    /// The bit array, bit `i` at byte `i / 8`, mask `1 << (i % 8)`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// The filter in parts for the wire: (byte offset, base64 data).
    pub(super) fn parts(&self) -> Vec<(usize, String)> {
        self.bits
            .chunks(BLOOM_PART_BYTES)
            .enumerate()
            .map(|(i, c)| (i * BLOOM_PART_BYTES, b64_encode(c)))
            .collect()
    }
}

/// Takes one part of a neighbour's filter (the fields of a pong) into
/// `partial`; gives the whole filter once every part has arrived. Invalid
/// parts are ignored.
pub(super) fn take_part(
    partial: &mut Option<Box<PartialBloom>>,
    addr: SocketAddr,
    extra: &Map<String, Value>,
) -> Option<TrigramBloom> {
    let (Some(bits), Some(hashes), Some(offset), Some(gen), Some(data)) = (
        get_i64(extra, "BloomBits"),
        get_i64(extra, "BloomHashes"),
        get_i64(extra, "BloomOffset"),
        get_i64(extra, "BloomGen"),
        extra.get("Bloom").and_then(Value::as_str),
    ) else {
        tracing::debug!(peer = %addr, "filter part lacks a field, ignored");
        return None;
    };
    // Absent: a filter of trigrams only (a peer older than the field).
    let grams = get_i64(extra, "BloomGrams").unwrap_or(3);
    let quads = grams == 4;
    let bits = bits as usize;
    let valid_size = bits.is_power_of_two() && (BLOOM_MIN_BITS..=BLOOM_MAX_BITS).contains(&bits);
    let offset = offset.max(0) as usize;
    let Some(data) = b64_decode(data) else {
        tracing::debug!(peer = %addr, "filter part is not base64, ignored");
        return None;
    };
    let len = bits / 8;
    let expected = BLOOM_PART_BYTES.min(len.saturating_sub(offset));
    if !valid_size
        || !(3..=4).contains(&grams)
        || !(1..=16).contains(&hashes)
        || offset % BLOOM_PART_BYTES != 0
        || offset >= len
        || data.len() != expected
    {
        tracing::debug!(peer = %addr, "invalid filter part, ignored");
        return None;
    }
    let gen = gen as u64;
    let fresh = partial.as_ref().is_none_or(|p| {
        p.gen != gen || p.bits.len() != len || p.hashes != hashes as u32 || p.quads != quads
    });
    if fresh {
        *partial = Some(Box::new(PartialBloom {
            gen,
            hashes: hashes as u32,
            quads,
            bits: vec![0; len],
            got: BTreeSet::new(),
        }));
    }
    let p = partial.as_mut()?;
    p.bits[offset..offset + data.len()].copy_from_slice(&data);
    p.got.insert(offset);
    if p.got.len() == len.div_ceil(BLOOM_PART_BYTES) {
        let done = partial.take()?;
        return Some(TrigramBloom {
            bits: done.bits,
            hashes: done.hashes,
            quads: done.quads,
        });
    }
    None
}

/// A filter being received in parts (boxed where it is kept: most
/// neighbours have none most of the time).
#[derive(Debug)]
pub(super) struct PartialBloom {
    gen: u64,
    hashes: u32,
    quads: bool,
    bits: Vec<u8>,
    got: BTreeSet<usize>,
}

// ---------------------------------------------------------------- base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(super) fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let s = text.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for (i, c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if i >= 2 => {
                    pad += 1;
                    0
                }
                _ => return None,
            };
            if pad > 0 && *c != b'=' {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
