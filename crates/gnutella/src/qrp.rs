//! Query Routing Protocol (QRP 1.0, as ultrapeers use it with leaves): the
//! keyword hash, a leaf's route table built from file names, and the
//! ROUTE_TABLE_UPDATE (0x30) messages, RESET and PATCH, both ways.
//!
//! A RESET is `0x00, TABLE_LENGTH (u32 LE), INFINITY`; a PATCH is `0x01,
//! SEQ_NO, SEQ_SIZE, COMPRESSOR (0 none, 1 zlib), ENTRY_BITS (4 or 8),
//! DATA`. The patch, once reassembled and inflated, holds one signed entry
//! per slot (high nibble first for 4 bits) added to the receiver's table,
//! which a RESET filled with INFINITY. A slot below INFINITY routes.

use crate::deflate::{deflate_all, inflate_bounded};

/// The multiplier of the QRP hash (the specification's `A_INT`).
const A_INT: u32 = 0x4F1B_BCDC;
/// Table size (in bits of the hash) a leaf sends: 2^16 slots, as LimeWire
/// and gtk-gnutella leaves do.
pub const DEFAULT_TABLE_BITS: u8 = 16;
/// INFINITY a leaf sends (one more than the largest distance it uses).
pub const DEFAULT_INFINITY: u8 = 7;
/// Largest table a [`Receiver`] accepts: 2^21 slots (2 MiB of memory).
pub const MAX_TABLE_LEN: u32 = 1 << 21;
/// Smallest table accepted: 2^6 slots (the hash needs at least one bit,
/// and no servent sends tables this small).
pub const MIN_TABLE_LEN: u32 = 1 << 3;
/// Data bytes per PATCH message a leaf sends (the specification suggests
/// about 1 KiB per message so queries are not stalled behind a table).
pub const DEFAULT_PATCH_CHUNK: usize = 1024;
/// Keywords shorter than this are not put in the table (nor looked up).
pub const MIN_KEYWORD_LEN: usize = 3;

/// The QRP hash of `word` in `bits` bits (1..=32): the low byte of each
/// UTF-16 unit of the word (ASCII lower-cased) XORed into a little-endian
/// 32-bit value, multiplied by 0x4F1BBCDC, the top `bits` of the low 32
/// bits of the product. For ASCII this is the specification's function over
/// bytes; for other characters it is what the reference implementation
/// (Java `charAt(i) & 0xFF`) and gtk-gnutella compute, so tables agree.
pub fn hash(word: &str, bits: u8) -> u32 {
    let mut x: u32 = 0;
    for (i, u) in word.encode_utf16().enumerate() {
        let b = (u & 0xff) as u8;
        let b = if u < 0x80 { b.to_ascii_lowercase() } else { b };
        x ^= u32::from(b) << ((i % 4) * 8);
    }
    hash_fast(x, bits)
}

fn hash_fast(x: u32, bits: u8) -> u32 {
    let bits = u32::from(bits.clamp(1, 32));
    let prod = x.wrapping_mul(A_INT);
    prod.checked_shr(32 - bits).unwrap_or(0)
}

/// The keywords QRP uses for a name or a query: split on every character
/// that is not alphanumeric, lower-cased, at least [`MIN_KEYWORD_LEN`]
/// bytes, each once.
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.len() < MIN_KEYWORD_LEN {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// A route table: one bit per slot (present or not), as a leaf holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    bits: u8,
    present: Vec<bool>,
}

impl RouteTable {
    /// An empty table of 2^`bits` slots (`bits` clamped to 3..=21).
    pub fn new(bits: u8) -> RouteTable {
        let bits = bits.clamp(3, 21);
        RouteTable {
            bits,
            present: vec![false; 1 << bits],
        }
    }

    /// A table holding every keyword of these names and these URNs.
    pub fn from_names<'a>(bits: u8, names: impl IntoIterator<Item = &'a str>) -> RouteTable {
        let mut t = RouteTable::new(bits);
        for n in names {
            t.add_name(n);
        }
        t
    }

    /// Adds every keyword of a file name.
    pub fn add_name(&mut self, name: &str) {
        for w in keywords(name) {
            self.add_word(&w);
        }
    }

    /// Adds one word (hashed as it is, lower-cased), e.g. a
    /// `urn:sha1:…` text.
    pub fn add_word(&mut self, word: &str) {
        let h = hash(word, self.bits) as usize;
        if let Some(s) = self.present.get_mut(h) {
            *s = true;
        }
    }

    /// Whether every keyword of `query` is in the table (what an ultrapeer
    /// checks before routing a query to the leaf). A query without a
    /// keyword long enough matches nothing.
    pub fn matches_query(&self, query: &str) -> bool {
        let ws = keywords(query);
        !ws.is_empty() && ws.iter().all(|w| self.contains_word(w))
    }

    /// Whether a word's slot is set.
    pub fn contains_word(&self, word: &str) -> bool {
        let h = hash(word, self.bits) as usize;
        self.present.get(h).copied().unwrap_or(false)
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether no slot is set.
    pub fn is_empty(&self) -> bool {
        !self.present.iter().any(|&p| p)
    }

    /// Hash bits.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Slots set.
    pub fn slots_set(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    /// Whether slot `i` is set.
    pub fn slot(&self, i: usize) -> bool {
        self.present.get(i).copied().unwrap_or(false)
    }

    /// The messages that send this whole table to a peer that has none (or
    /// whatever it had): a RESET, then the patch from an empty table (see
    /// [`RouteTable::patch_messages`]).
    pub fn to_messages(&self, opts: PatchOptions) -> Vec<RouteTableMessage> {
        let mut out = vec![RouteTableMessage::Reset {
            table_length: self.present.len() as u32,
            infinity: opts.infinity(),
        }];
        out.extend(self.patch_messages(None, opts));
        out
    }

    /// The PATCH messages that turn `previous` (the table the peer holds;
    /// `None` for the empty table a RESET leaves) into this one: each entry
    /// is the change of its slot, `1 - INFINITY` for a word added (distance
    /// 1), `INFINITY - 1` for one removed, 0 elsewhere; 4-bit entries are
    /// packed high nibble first. The patch is deflated when asked and cut
    /// into pieces of at most `chunk` bytes (at most 255 pieces: the piece
    /// grows if needed). A `previous` of another size counts as empty.
    pub fn patch_messages(
        &self,
        previous: Option<&RouteTable>,
        opts: PatchOptions,
    ) -> Vec<RouteTableMessage> {
        let inf = opts.infinity() as i8;
        let before = |i: usize| {
            previous
                .filter(|p| p.present.len() == self.present.len())
                .is_some_and(|p| p.present[i])
        };
        let entry = |i: usize| -> i8 {
            match (before(i), self.present[i]) {
                (false, true) => 1 - inf,
                (true, false) => inf - 1,
                _ => 0,
            }
        };
        let n = self.present.len();
        let patch: Vec<u8> = if opts.entry_bits == 8 {
            (0..n).map(|i| entry(i) as u8).collect()
        } else {
            (0..n / 2)
                .map(|k| (((entry(2 * k) as u8) & 0x0f) << 4) | ((entry(2 * k + 1) as u8) & 0x0f))
                .collect()
        };
        let (compressor, data) = if opts.compress {
            (Compressor::Zlib, deflate_all(&patch))
        } else {
            (Compressor::None, patch)
        };
        let chunk = opts.chunk.max(1).max(data.len().div_ceil(255));
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(chunk).collect()
        };
        let size = pieces.len() as u8;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| RouteTableMessage::Patch {
                seq_no: i as u8 + 1,
                seq_size: size,
                compressor,
                entry_bits: if opts.entry_bits == 8 { 8 } else { 4 },
                data: p.to_vec(),
            })
            .collect()
    }
}

/// How [`RouteTable::to_messages`] and [`RouteTable::patch_messages`]
/// write a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchOptions {
    /// INFINITY (clamped to 2..=7 so every entry fits 4 bits).
    pub infinity: u8,
    /// Bits per entry: 8, or 4 for anything else.
    pub entry_bits: u8,
    /// Deflate the patch (zlib).
    pub compress: bool,
    /// Data bytes per PATCH message.
    pub chunk: usize,
}

impl PatchOptions {
    fn infinity(&self) -> u8 {
        self.infinity.clamp(2, 7)
    }
}

impl Default for PatchOptions {
    fn default() -> Self {
        PatchOptions {
            infinity: DEFAULT_INFINITY,
            entry_bits: 4,
            compress: true,
            chunk: DEFAULT_PATCH_CHUNK,
        }
    }
}

/// The COMPRESSOR field of a PATCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    /// 0: the data is the patch itself.
    None,
    /// 1: the data is a zlib stream of the patch.
    Zlib,
}

/// A ROUTE_TABLE_UPDATE (0x30) payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTableMessage {
    /// Variant 0: start over with an empty table.
    Reset {
        /// Number of slots, a power of two.
        table_length: u32,
        /// The value of an empty slot.
        infinity: u8,
    },
    /// Variant 1: one piece of a patch.
    Patch {
        /// 1-based position in the sequence.
        seq_no: u8,
        /// Pieces in the sequence.
        seq_size: u8,
        /// How the reassembled data is compressed.
        compressor: Compressor,
        /// Bits per entry, 4 or 8.
        entry_bits: u8,
        /// This piece of the (compressed) patch.
        data: Vec<u8>,
    },
}

/// Why a route-table message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrpError {
    /// Too short for its variant.
    #[error("route table message truncated")]
    Truncated,
    /// A RESET with trailing bytes.
    #[error("route table RESET too long")]
    TrailingBytes,
    /// An unknown variant.
    #[error("unknown route table variant {0}")]
    UnknownVariant(u8),
    /// An unknown COMPRESSOR.
    #[error("unknown QRP compressor {0}")]
    UnknownCompressor(u8),
    /// ENTRY_BITS other than 4 or 8.
    #[error("QRP entry bits {0} (must be 4 or 8)")]
    BadEntryBits(u8),
    /// SEQ_NO 0 or above SEQ_SIZE.
    #[error("QRP sequence number out of range")]
    BadSequence,
    /// A table length that is no power of two, or out of bounds.
    #[error("QRP table length {0} refused")]
    BadTableLength(u32),
    /// A PATCH before any RESET.
    #[error("QRP patch without a reset")]
    NoReset,
    /// A PATCH that does not follow the previous one of its sequence.
    #[error("QRP patch out of order")]
    OutOfOrder,
    /// The reassembled patch does not inflate to exactly the table.
    #[error("QRP patch has the wrong size or bad compression")]
    BadPatch,
}

impl RouteTableMessage {
    /// Parses a 0x30 payload.
    pub fn decode(p: &[u8]) -> Result<RouteTableMessage, QrpError> {
        match p.first() {
            None => Err(QrpError::Truncated),
            Some(0) => {
                if p.len() < 6 {
                    return Err(QrpError::Truncated);
                }
                if p.len() > 6 {
                    return Err(QrpError::TrailingBytes);
                }
                let table_length = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
                Ok(RouteTableMessage::Reset {
                    table_length,
                    infinity: p[5],
                })
            }
            Some(1) => {
                if p.len() < 5 {
                    return Err(QrpError::Truncated);
                }
                let (seq_no, seq_size) = (p[1], p[2]);
                if seq_no == 0 || seq_no > seq_size {
                    return Err(QrpError::BadSequence);
                }
                let compressor = match p[3] {
                    0 => Compressor::None,
                    1 => Compressor::Zlib,
                    c => return Err(QrpError::UnknownCompressor(c)),
                };
                let entry_bits = p[4];
                if entry_bits != 4 && entry_bits != 8 {
                    return Err(QrpError::BadEntryBits(entry_bits));
                }
                Ok(RouteTableMessage::Patch {
                    seq_no,
                    seq_size,
                    compressor,
                    entry_bits,
                    data: p[5..].to_vec(),
                })
            }
            Some(&v) => Err(QrpError::UnknownVariant(v)),
        }
    }

    /// Writes the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RouteTableMessage::Reset {
                table_length,
                infinity,
            } => {
                out.push(0);
                out.extend_from_slice(&table_length.to_le_bytes());
                out.push(*infinity);
            }
            RouteTableMessage::Patch {
                seq_no,
                seq_size,
                compressor,
                entry_bits,
                data,
            } => {
                out.extend_from_slice(&[
                    1,
                    *seq_no,
                    *seq_size,
                    match compressor {
                        Compressor::None => 0,
                        Compressor::Zlib => 1,
                    },
                    *entry_bits,
                ]);
                out.extend_from_slice(data);
            }
        }
    }
}

/// The receiving side (an ultrapeer's view of a leaf's table): applies
/// RESET and PATCH messages in order. Memory is bounded by
/// [`MAX_TABLE_LEN`] slots plus one reassembled patch of at most a
/// table's worth of data.
#[derive(Clone, Debug, Default)]
pub struct Receiver {
    table: Vec<u8>,
    infinity: u8,
    /// Next expected (seq_no, seq_size, compressor, entry_bits) of the
    /// running patch sequence.
    running: Option<(u8, u8, Compressor, u8)>,
    pending: Vec<u8>,
    complete: bool,
}

impl Receiver {
    /// No table yet.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// Applies one message. After an error the connection should close:
    /// the table can no longer be trusted.
    pub fn apply(&mut self, m: &RouteTableMessage) -> Result<(), QrpError> {
        match m {
            RouteTableMessage::Reset {
                table_length,
                infinity,
            } => {
                let n = *table_length;
                if !n.is_power_of_two() || !(MIN_TABLE_LEN..=MAX_TABLE_LEN).contains(&n) {
                    return Err(QrpError::BadTableLength(n));
                }
                self.table = vec![*infinity; n as usize];
                self.infinity = *infinity;
                self.running = None;
                self.pending.clear();
                self.complete = false;
                Ok(())
            }
            RouteTableMessage::Patch {
                seq_no,
                seq_size,
                compressor,
                entry_bits,
                data,
            } => {
                if self.table.is_empty() {
                    return Err(QrpError::NoReset);
                }
                match self.running {
                    None if *seq_no == 1 => {}
                    Some((next, size, c, b))
                        if next == *seq_no
                            && size == *seq_size
                            && c == *compressor
                            && b == *entry_bits => {}
                    _ => return Err(QrpError::OutOfOrder),
                }
                let patch_len = self.table.len() * usize::from(*entry_bits) / 8;
                if self.pending.len() + data.len() > patch_len + 1024 + patch_len / 8 {
                    return Err(QrpError::BadPatch);
                }
                self.pending.extend_from_slice(data);
                if seq_no < seq_size {
                    self.running = Some((seq_no + 1, *seq_size, *compressor, *entry_bits));
                    return Ok(());
                }
                self.running = None;
                let raw = std::mem::take(&mut self.pending);
                let patch = match compressor {
                    Compressor::None => raw,
                    Compressor::Zlib => {
                        inflate_bounded(&raw, patch_len).ok_or(QrpError::BadPatch)?
                    }
                };
                if patch.len() != patch_len {
                    return Err(QrpError::BadPatch);
                }
                let apply = |slot: &mut u8, delta: i8| {
                    *slot = (*slot as i8).wrapping_add(delta) as u8;
                };
                if *entry_bits == 8 {
                    for (s, &d) in self.table.iter_mut().zip(&patch) {
                        apply(s, d as i8);
                    }
                } else {
                    for (i, &b) in patch.iter().enumerate() {
                        // Sign-extend each nibble.
                        let hi = (b as i8) >> 4;
                        let lo = ((b << 4) as i8) >> 4;
                        apply(&mut self.table[2 * i], hi);
                        apply(&mut self.table[2 * i + 1], lo);
                    }
                }
                self.complete = true;
                Ok(())
            }
        }
    }

    /// Whether a full patch sequence has been applied since the last RESET.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Number of slots (0 before a RESET).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there is no table.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The slot values.
    pub fn slots(&self) -> &[u8] {
        &self.table
    }

    /// Whether slot `i` routes (its value is below INFINITY).
    pub fn slot_routes(&self, i: usize) -> bool {
        self.table
            .get(i)
            .is_some_and(|&v| (v as i8) < self.infinity as i8)
    }

    /// What an ultrapeer decides: whether to route `query` to this leaf
    /// (every keyword's slot routes). Before a complete table, everything
    /// routes, as the specification advises.
    pub fn matches_query(&self, query: &str) -> bool {
        if !self.complete {
            return true;
        }
        let bits = self.table.len().trailing_zeros() as u8;
        let ws = keywords(query);
        !ws.is_empty() && ws.iter().all(|w| self.slot_routes(hash(w, bits) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_test_vectors_of_the_specification() {
        // QRP 1.0, appendix A.
        let v: &[(&str, u8, u32)] = &[
            ("", 13, 0),
            ("eb", 13, 6791),
            ("ebc", 13, 7082),
            ("ebck", 13, 6698),
            ("ebckl", 13, 3179),
            ("ebcklm", 13, 3235),
            ("ebcklme", 13, 6438),
            ("ebcklmen", 13, 1062),
            ("ebcklmenq", 13, 3527),
            ("", 16, 0),
            ("n", 16, 65003),
            ("nd", 16, 54193),
            ("ndf", 16, 4953),
            ("ndfl", 16, 58201),
            ("ndfla", 16, 34830),
            ("ndflal", 16, 36910),
            ("ndflale", 16, 34586),
            ("ndflalem", 16, 37658),
            ("ndflaleme", 16, 45559),
            ("ol2j34lj", 10, 318),
            ("asdfas23", 10, 503),
            ("9um3o34fd", 10, 758),
            ("a234d", 10, 281),
            ("a3f", 10, 767),
            ("3nja9", 10, 581),
            ("2459345938032343", 10, 146),
            ("7777a88a8a8a8", 10, 342),
            ("asdfjklkj3k", 10, 861),
            ("adfk32l", 10, 1011),
            ("zzzzzzzzzzz", 10, 944),
            ("3NJA9", 10, 581),
            ("3nJa9", 10, 581),
        ];
        for &(w, bits, h) in v {
            assert_eq!(hash(w, bits), h, "hash({w:?}, {bits})");
        }
    }

    #[test]
    fn appendix_b_words_hash_as_stated() {
        // Appendix B: in a table of 8 entries "test" hashes to 2, "qrp" to 7.
        assert_eq!(hash("test", 3), 2);
        assert_eq!(hash("qrp", 3), 7);
    }

    fn opts(entry_bits: u8, compress: bool, chunk: usize) -> PatchOptions {
        PatchOptions {
            infinity: 7,
            entry_bits,
            compress,
            chunk,
        }
    }

    fn payload(m: &RouteTableMessage) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v);
        v
    }

    #[test]
    fn appendix_b_messages_byte_by_byte() {
        let t = RouteTable::from_names(3, ["test"]);
        // Example 2: RESET 8/7, then one uncompressed 4-bit PATCH.
        let m = t.to_messages(opts(4, false, 1024));
        assert_eq!(payload(&m[0]), [0x00, 0x08, 0x00, 0x00, 0x00, 0x07]);
        assert_eq!(
            payload(&m[1]),
            [0x01, 0x01, 0x01, 0x00, 0x04, 0x00, 0xa0, 0x00, 0x00]
        );
        // Example 3: the same split in two pieces of 2 bytes.
        let m = t.to_messages(opts(4, false, 2));
        assert_eq!(payload(&m[1]), [0x01, 0x01, 0x02, 0x00, 0x04, 0x00, 0xa0]);
        assert_eq!(payload(&m[2]), [0x01, 0x02, 0x02, 0x00, 0x04, 0x00, 0x00]);
        // Example 4: compressed; the spec's zlib bytes decode to our patch
        // (compressors may differ in their bytes, not in what they mean).
        let spec = [
            1, 1, 1, 1, 4, 0x78, 0x9c, 0x63, 0x58, 0xc0, 0xc0, 0, 0, 1, 0xe4, 0, 0xa1,
        ];
        let mut r = Receiver::new();
        r.apply(&RouteTableMessage::decode(&[0, 8, 0, 0, 0, 7]).unwrap())
            .unwrap();
        r.apply(&RouteTableMessage::decode(&spec).unwrap()).unwrap();
        assert_eq!(r.slots(), [7, 7, 1, 7, 7, 7, 7, 7]);
        let m = t.to_messages(opts(4, true, 1024));
        let mut r2 = Receiver::new();
        for x in &m {
            r2.apply(x).unwrap();
        }
        assert_eq!(r2.slots(), r.slots());
    }

    #[test]
    fn appendix_b_incremental_patches_byte_by_byte() {
        // Share "test", then also "qrp", then only "qrp": examples 1 (8
        // bits), 2 (4 bits) and 3 (4 bits in pieces of 2 bytes).
        let test = RouteTable::from_names(3, ["test"]);
        let both = RouteTable::from_names(3, ["test", "qrp"]);
        let qrp = RouteTable::from_names(3, ["qrp"]);
        let steps = [(None, &test), (Some(&test), &both), (Some(&both), &qrp)];
        let ex1: [&[u8]; 3] = [
            &[1, 1, 1, 0, 8, 0, 0, 0xfa, 0, 0, 0, 0, 0],
            &[1, 1, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0xfa],
            &[1, 1, 1, 0, 8, 0, 0, 6, 0, 0, 0, 0, 0],
        ];
        // In the 4-bit examples the appendix puts "qrp" (slot 7, which its
        // own 8-bit example sets) in the high nibble of the last byte, i.e.
        // slot 6: an erratum, since it also says that the high nibble is the
        // lower slot ("test", slot 2, is 0xa0 in byte 1), as LimeWire and
        // gtk-gnutella read it. Our bytes for that step are the corrected
        // ones (0x0a); the other steps are the appendix's own bytes.
        let ex2: [&[u8]; 3] = [
            &[1, 1, 1, 0, 4, 0, 0xa0, 0, 0],
            &[1, 1, 1, 0, 4, 0, 0, 0, 0x0a],
            &[1, 1, 1, 0, 4, 0, 0x60, 0, 0],
        ];
        let ex3: [[&[u8]; 2]; 3] = [
            [&[1, 1, 2, 0, 4, 0, 0xa0], &[1, 2, 2, 0, 4, 0, 0]],
            [&[1, 1, 2, 0, 4, 0, 0], &[1, 2, 2, 0, 4, 0, 0x0a]],
            [&[1, 1, 2, 0, 4, 0, 0x60], &[1, 2, 2, 0, 4, 0, 0]],
        ];
        for (k, (prev, now)) in steps.into_iter().enumerate() {
            let m = now.patch_messages(prev, opts(8, false, 1024));
            assert_eq!(m.len(), 1);
            assert_eq!(payload(&m[0]), ex1[k], "example 1 step {k}");
            let m = now.patch_messages(prev, opts(4, false, 1024));
            assert_eq!(payload(&m[0]), ex2[k], "example 2 step {k}");
            let m = now.patch_messages(prev, opts(4, false, 2));
            assert_eq!(payload(&m[0]), ex3[k][0], "example 3 step {k}");
            assert_eq!(payload(&m[1]), ex3[k][1], "example 3 step {k}");
        }
    }

    #[test]
    fn appendix_b_incremental_patches_apply() {
        // Example 1 (8-bit entries): add "test", add "qrp", remove "test".
        let mut r = Receiver::new();
        r.apply(&RouteTableMessage::decode(&[0, 8, 0, 0, 0, 7]).unwrap())
            .unwrap();
        for (p, expect) in [
            (
                [1u8, 1, 1, 0, 8, 0, 0, 0xfa, 0, 0, 0, 0, 0],
                [7u8, 7, 1, 7, 7, 7, 7, 7],
            ),
            (
                [1, 1, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0xfa],
                [7, 7, 1, 7, 7, 7, 7, 1],
            ),
            (
                [1, 1, 1, 0, 8, 0, 0, 6, 0, 0, 0, 0, 0],
                [7, 7, 7, 7, 7, 7, 7, 1],
            ),
        ] {
            r.apply(&RouteTableMessage::decode(&p).unwrap()).unwrap();
            assert_eq!(r.slots(), expect);
        }
        assert!(r.matches_query("qrp"));
        assert!(!r.matches_query("test"));
        // Example 5, second step: 4 bits, split and compressed.
        let mut r = Receiver::new();
        r.apply(&RouteTableMessage::Reset {
            table_length: 8,
            infinity: 7,
        })
        .unwrap();
        let a = [
            1, 1, 2, 1, 4, 0x78, 0x9c, 0x63, 0x58, 0xc0, 0xc0, 0, 0, 1, 0xe4,
        ];
        let b = [1, 2, 2, 1, 4, 0, 0xa1];
        r.apply(&RouteTableMessage::decode(&a).unwrap()).unwrap();
        assert!(!r.is_complete());
        r.apply(&RouteTableMessage::decode(&b).unwrap()).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.slots(), [7, 7, 1, 7, 7, 7, 7, 7]);
    }

    #[test]
    fn receiver_refusals() {
        let mut r = Receiver::new();
        let patch = RouteTableMessage::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: Compressor::None,
            entry_bits: 4,
            data: vec![0; 4],
        };
        assert_eq!(r.apply(&patch), Err(QrpError::NoReset));
        assert_eq!(
            r.apply(&RouteTableMessage::Reset {
                table_length: 12,
                infinity: 7
            }),
            Err(QrpError::BadTableLength(12))
        );
        assert_eq!(
            r.apply(&RouteTableMessage::Reset {
                table_length: MAX_TABLE_LEN * 2,
                infinity: 7
            }),
            Err(QrpError::BadTableLength(MAX_TABLE_LEN * 2))
        );
        r.apply(&RouteTableMessage::Reset {
            table_length: 8,
            infinity: 7,
        })
        .unwrap();
        let second = RouteTableMessage::Patch {
            seq_no: 2,
            seq_size: 2,
            compressor: Compressor::None,
            entry_bits: 4,
            data: vec![0; 2],
        };
        assert_eq!(r.apply(&second), Err(QrpError::OutOfOrder));
        let short = RouteTableMessage::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: Compressor::None,
            entry_bits: 4,
            data: vec![0; 3],
        };
        assert_eq!(r.apply(&short), Err(QrpError::BadPatch));
        assert_eq!(
            RouteTableMessage::decode(&[1, 0, 1, 0, 4]),
            Err(QrpError::BadSequence)
        );
        assert_eq!(
            RouteTableMessage::decode(&[1, 1, 1, 2, 4]),
            Err(QrpError::UnknownCompressor(2))
        );
        assert_eq!(
            RouteTableMessage::decode(&[1, 1, 1, 0, 5]),
            Err(QrpError::BadEntryBits(5))
        );
        assert_eq!(
            RouteTableMessage::decode(&[2]),
            Err(QrpError::UnknownVariant(2))
        );
        assert_eq!(
            RouteTableMessage::decode(&[0, 8, 0, 0, 0, 7, 0]),
            Err(QrpError::TrailingBytes)
        );
    }

    #[test]
    fn keywords_split_and_lower() {
        assert_eq!(
            keywords("The_Beatles - Let It Be.mp3"),
            ["the", "beatles", "let", "mp3"]
        );
        assert_eq!(keywords("Ünïcode Ñame"), ["ünïcode", "ñame"]);
    }

    proptest! {
        #[test]
        fn table_survives_the_wire(
            names in proptest::collection::vec("[a-zA-Z0-9 ._-]{0,40}", 0..30),
            bits in 8u8..=16, compress in any::<bool>(), chunk in 1usize..2000,
            bits8 in prop_oneof![Just(4u8), Just(8u8)],
        ) {
            let t = RouteTable::from_names(bits, names.iter().map(|s| s.as_str()));
            let msgs = t.to_messages(PatchOptions { infinity: DEFAULT_INFINITY, entry_bits: bits8, compress, chunk });
            prop_assert!(msgs.len() <= 256);
            let mut r = Receiver::new();
            for m in &msgs {
                let mut p = Vec::new();
                m.encode(&mut p);
                r.apply(&RouteTableMessage::decode(&p).unwrap()).unwrap();
            }
            prop_assert!(r.is_complete());
            for i in 0..t.len() {
                prop_assert_eq!(r.slot_routes(i), t.slot(i));
            }
            for n in &names {
                if !keywords(n).is_empty() {
                    prop_assert!(r.matches_query(n));
                }
            }
        }
    }
}
