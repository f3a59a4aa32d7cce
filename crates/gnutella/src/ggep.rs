//! GGEP (Gnutella Generic Extension Protocol 0.5) blocks: the 0xC3 magic,
//! then extensions, each a flags byte (bit 7 last, bit 6 COBS-encoded,
//! bit 5 deflated, bit 4 reserved and zero, bits 0-3 the ID length 1-15),
//! the ID, and a data length in 1-3 chunks of 6 bits (`MLxxxxxx`: M another
//! chunk follows, L this is the last), then the data.
//!
//! Decoding undoes COBS then deflate (zlib stream), and inflates at most
//! [`MAX_INFLATED`] bytes per extension.

use crate::deflate::inflate_bounded;

/// The byte that starts every GGEP block.
pub const MAGIC: u8 = 0xC3;
/// Largest data length the 3-chunk length field can say (2^18 - 1).
pub const MAX_DATA_LEN: usize = (1 << 18) - 1;
/// Largest data an extension may inflate to.
pub const MAX_INFLATED: usize = 64 * 1024;
/// Most extensions accepted in one block.
pub const MAX_EXTENSIONS: usize = 64;

const F_LAST: u8 = 0x80;
const F_COBS: u8 = 0x40;
const F_DEFLATE: u8 = 0x20;
const F_RESERVED: u8 = 0x10;

/// One extension, its data decoded (no COBS, inflated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// 1 to 15 bytes, none of them NUL.
    pub id: Vec<u8>,
    /// The data, after COBS decoding and inflation.
    pub data: Vec<u8>,
}

impl Extension {
    /// An extension with this ID (1-15 bytes, no NUL) and data.
    pub fn new(id: &[u8], data: Vec<u8>) -> Extension {
        Extension {
            id: id.to_vec(),
            data,
        }
    }
}

/// Why a GGEP block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgepError {
    /// The block does not start with 0xC3.
    #[error("no GGEP magic")]
    NoMagic,
    /// The block ends inside an extension.
    #[error("GGEP block truncated")]
    Truncated,
    /// The reserved flag bit is set.
    #[error("GGEP reserved flag set")]
    Reserved,
    /// An ID contains NUL.
    #[error("GGEP ID contains NUL")]
    BadId,
    /// A length chunk breaks the encoding rules.
    #[error("GGEP bad length field")]
    BadLength,
    /// The COBS encoding is broken.
    #[error("GGEP bad COBS data")]
    BadCobs,
    /// The deflated data is broken or inflates past [`MAX_INFLATED`].
    #[error("GGEP bad deflated data")]
    BadDeflate,
    /// More than [`MAX_EXTENSIONS`] extensions.
    #[error("too many GGEP extensions")]
    TooMany,
}

/// Parses one GGEP block at the start of `bytes`: the extensions and the
/// number of bytes the block takes.
pub fn decode_block(bytes: &[u8]) -> Result<(Vec<Extension>, usize), GgepError> {
    if bytes.first() != Some(&MAGIC) {
        return Err(GgepError::NoMagic);
    }
    let mut pos = 1;
    let mut out = Vec::new();
    loop {
        if out.len() >= MAX_EXTENSIONS {
            return Err(GgepError::TooMany);
        }
        let flags = *bytes.get(pos).ok_or(GgepError::Truncated)?;
        pos += 1;
        if flags & F_RESERVED != 0 {
            return Err(GgepError::Reserved);
        }
        let id_len = usize::from(flags & 0x0f);
        if id_len == 0 {
            return Err(GgepError::BadId);
        }
        let id = bytes.get(pos..pos + id_len).ok_or(GgepError::Truncated)?;
        if id.contains(&0) {
            return Err(GgepError::BadId);
        }
        pos += id_len;
        let (len, used) = decode_len(&bytes[pos..])?;
        pos += used;
        let raw = bytes.get(pos..pos + len).ok_or(GgepError::Truncated)?;
        pos += len;
        let mut data = if flags & F_COBS != 0 {
            cobs_decode(raw).ok_or(GgepError::BadCobs)?
        } else {
            raw.to_vec()
        };
        if flags & F_DEFLATE != 0 {
            data = inflate_bounded(&data, MAX_INFLATED).ok_or(GgepError::BadDeflate)?;
        }
        out.push(Extension {
            id: id.to_vec(),
            data,
        });
        if flags & F_LAST != 0 {
            return Ok((out, pos));
        }
    }
}

/// Parses the GGEP blocks packed one after another at the start of `bytes`
/// (a query's or a hit's extension area may hold several): all their
/// extensions and the bytes used. The first block must parse; a later one
/// that does not (or that would pass [`MAX_EXTENSIONS`]) ends the sequence
/// and is left to the caller as other data.
pub fn decode_blocks(bytes: &[u8]) -> Result<(Vec<Extension>, usize), GgepError> {
    let (mut all, mut used) = decode_block(bytes)?;
    while bytes.get(used) == Some(&MAGIC) {
        match decode_block(&bytes[used..]) {
            Ok((more, n)) if all.len() + more.len() <= MAX_EXTENSIONS => {
                all.extend(more);
                used += n;
            }
            _ => break,
        }
    }
    Ok((all, used))
}

fn decode_len(bytes: &[u8]) -> Result<(usize, usize), GgepError> {
    let mut len = 0usize;
    for i in 0..3 {
        let b = *bytes.get(i).ok_or(GgepError::Truncated)?;
        len = (len << 6) | usize::from(b & 0x3f);
        match b & 0xc0 {
            0x40 => return Ok((len, i + 1)),
            0x80 if i < 2 => {
                // A leading zero chunk would make two encodings of one
                // length; the specification's encoder never writes one.
                if i == 0 && b & 0x3f == 0 {
                    return Err(GgepError::BadLength);
                }
            }
            _ => return Err(GgepError::BadLength),
        }
    }
    Err(GgepError::BadLength)
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    debug_assert!(len <= MAX_DATA_LEN);
    if len >= 1 << 12 {
        out.push(0x80 | ((len >> 12) & 0x3f) as u8);
    }
    if len >= 1 << 6 {
        out.push(0x80 | ((len >> 6) & 0x3f) as u8);
    }
    out.push(0x40 | (len & 0x3f) as u8);
}

/// How [`encode_block`] writes extension data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// COBS-encode data that contains NUL (needed where NUL ends the
    /// field: query extensions and hit results).
    pub avoid_nul: bool,
    /// Deflate data when that makes it shorter.
    pub compress: bool,
}

/// Writes a GGEP block (nothing when `exts` is empty). Extensions with an
/// empty or over-long ID, or data longer than [`MAX_DATA_LEN`] after
/// encoding, are left out.
pub fn encode_block(exts: &[Extension], opts: EncodeOptions, out: &mut Vec<u8>) {
    let exts: Vec<&Extension> = exts
        .iter()
        .filter(|e| !e.id.is_empty() && e.id.len() <= 15 && !e.id.contains(&0))
        .collect();
    let mut parts = Vec::with_capacity(exts.len());
    for e in exts {
        let mut flags = e.id.len() as u8;
        let mut data = e.data.clone();
        if opts.compress && data.len() > 32 {
            let z = crate::deflate::deflate_all(&data);
            if z.len() < data.len() {
                data = z;
                flags |= F_DEFLATE;
            }
        }
        if opts.avoid_nul && data.contains(&0) {
            data = cobs_encode(&data);
            flags |= F_COBS;
        }
        if data.len() <= MAX_DATA_LEN {
            parts.push((flags, &e.id, data));
        }
    }
    if parts.is_empty() {
        return;
    }
    out.push(MAGIC);
    let n = parts.len();
    for (i, (mut flags, id, data)) in parts.into_iter().enumerate() {
        if i + 1 == n {
            flags |= F_LAST;
        }
        out.push(flags);
        out.extend_from_slice(id);
        encode_len(data.len(), out);
        out.extend_from_slice(&data);
    }
}

/// COBS (consistent overhead byte stuffing): the output has no NUL byte.
pub fn cobs_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 254 + 2);
    let mut code_at = 0;
    out.push(0);
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xff {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

/// Undoes [`cobs_encode`]; `None` on a NUL byte or a code that runs past
/// the end.
pub fn cobs_decode(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let code = data[i];
        if code == 0 {
            return None;
        }
        let end = i + usize::from(code);
        let chunk = data.get(i + 1..end)?;
        if chunk.contains(&0) {
            return None;
        }
        out.extend_from_slice(chunk);
        i = end;
        if code != 0xff && i < data.len() {
            out.push(0);
        }
    }
    Some(out)
}

/// The first extension with this ID.
pub fn find<'a>(exts: &'a [Extension], id: &[u8]) -> Option<&'a Extension> {
    exts.iter().find(|e| e.id == id)
}

/// Reads a little-endian unsigned value of 1-8 bytes (GGEP "LF", "DU", …).
pub fn le_uint(data: &[u8]) -> Option<u64> {
    if data.is_empty() || data.len() > 8 {
        return None;
    }
    Some(
        data.iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

/// Writes a value little-endian in as few bytes as it needs (at least 1).
pub fn le_uint_bytes(v: u64) -> Vec<u8> {
    let n = (8 - (v.leading_zeros() / 8) as usize).max(1);
    v.to_le_bytes()[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_boundary_cases_of_the_specification() {
        for (len, bytes) in [
            (0usize, &[0x40u8][..]),
            (63, &[0x7f]),
            (64, &[0x81, 0x40]),
            (4095, &[0xbf, 0x7f]),
            (4096, &[0x81, 0x80, 0x40]),
        ] {
            let mut out = Vec::new();
            encode_len(len, &mut out);
            assert_eq!(out, bytes, "length {len}");
            assert_eq!(decode_len(bytes), Ok((len, bytes.len())));
        }
        assert_eq!(decode_len(&[0x00]), Err(GgepError::BadLength));
        assert_eq!(
            decode_len(&[0x80, 0x80, 0x80, 0x40]),
            Err(GgepError::BadLength)
        );
        assert_eq!(decode_len(&[0x81]), Err(GgepError::Truncated));
    }

    #[test]
    fn a_block_byte_by_byte() {
        // Two extensions: "H" with 21 bytes of SHA-1 (type 1 + 20 bytes of
        // 0x11, no NUL so no COBS), then "LF" (last) with 0x0100000000.
        let mut h = vec![1u8];
        h.extend([0x11; 20]);
        let exts = vec![
            Extension::new(b"H", h.clone()),
            Extension::new(b"LF", vec![0, 0, 0, 0, 1]),
        ];
        let mut out = Vec::new();
        encode_block(
            &exts,
            EncodeOptions {
                avoid_nul: true,
                compress: false,
            },
            &mut out,
        );
        let mut expect = vec![0xC3, 0x01, b'H', 0x40 | 21];
        expect.extend(&h);
        // "LF" data has NULs: COBS flag, 0x80 last, ID length 2.
        expect.extend([
            0x80 | 0x40 | 2,
            b'L',
            b'F',
            0x40 | 6,
            0x01,
            0x01,
            0x01,
            0x01,
            0x02,
            0x01,
        ]);
        assert_eq!(out, expect);
        assert_eq!(decode_block(&out), Ok((exts, out.len())));
    }

    #[test]
    fn deflated_extension_inflates_and_bomb_is_refused() {
        let data = vec![b'a'; 1000];
        let exts = vec![Extension::new(b"XQ", data)];
        let mut out = Vec::new();
        encode_block(
            &exts,
            EncodeOptions {
                avoid_nul: true,
                compress: true,
            },
            &mut out,
        );
        assert!(out.len() < 100);
        assert_eq!(out[1] & F_DEFLATE, F_DEFLATE);
        assert_eq!(decode_block(&out).unwrap().0, exts);
        // One over the inflation limit is refused.
        let z = crate::deflate::deflate_all(&vec![0u8; MAX_INFLATED + 1]);
        let mut bomb = vec![MAGIC, F_LAST | F_DEFLATE | 1, b'Z'];
        encode_len(z.len(), &mut bomb);
        bomb.extend(&z);
        assert_eq!(decode_block(&bomb), Err(GgepError::BadDeflate));
    }

    #[test]
    fn refusals() {
        assert_eq!(decode_block(&[0x00]), Err(GgepError::NoMagic));
        assert_eq!(decode_block(&[MAGIC]), Err(GgepError::Truncated));
        assert_eq!(
            decode_block(&[MAGIC, 0x90 | 1, b'A', 0x40]),
            Err(GgepError::Reserved)
        );
        assert_eq!(decode_block(&[MAGIC, 0x80, 0x40]), Err(GgepError::BadId));
        assert_eq!(decode_block(&[MAGIC, 0x81, 0, 0x40]), Err(GgepError::BadId));
        assert_eq!(
            decode_block(&[MAGIC, 0x81, b'A', 0x45, 1]),
            Err(GgepError::Truncated)
        );
        // Not last: another extension header is expected.
        assert_eq!(
            decode_block(&[MAGIC, 0x01, b'A', 0x40]),
            Err(GgepError::Truncated)
        );
    }

    #[test]
    fn cobs_examples() {
        // The examples of the COBS paper (Cheshire and Baker).
        assert_eq!(cobs_encode(&[0]), [1, 1]);
        assert_eq!(cobs_encode(&[0, 0]), [1, 1, 1]);
        assert_eq!(
            cobs_encode(&[0x11, 0x22, 0x00, 0x33]),
            [3, 0x11, 0x22, 2, 0x33]
        );
        assert_eq!(
            cobs_encode(&[0x11, 0x22, 0x33, 0x44]),
            [5, 0x11, 0x22, 0x33, 0x44]
        );
        assert_eq!(cobs_encode(&[0x11, 0, 0, 0]), [2, 0x11, 1, 1, 1]);
        let long: Vec<u8> = (1..=254).collect();
        let enc = cobs_encode(&long);
        assert_eq!(enc[0], 0xff);
        assert_eq!(enc.len(), 256);
        assert_eq!(cobs_decode(&enc).unwrap(), long);
        assert_eq!(cobs_decode(&[3, 1]), None);
        assert_eq!(cobs_decode(&[2, 0]), None);
    }

    proptest! {
        #[test]
        fn cobs_round_trip(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let enc = cobs_encode(&data);
            prop_assert!(!enc.contains(&0));
            prop_assert_eq!(cobs_decode(&enc).unwrap(), data);
        }

        #[test]
        fn block_round_trip(
            exts in proptest::collection::vec(
                (proptest::collection::vec(1u8..=255, 1..=15), proptest::collection::vec(any::<u8>(), 0..300)),
                1..6),
            avoid_nul in any::<bool>(), compress in any::<bool>(),
        ) {
            let exts: Vec<Extension> = exts.into_iter().map(|(id, data)| Extension { id, data }).collect();
            let mut out = Vec::new();
            encode_block(&exts, EncodeOptions { avoid_nul, compress }, &mut out);
            if avoid_nul {
                prop_assert!(!out.contains(&0));
            }
            prop_assert_eq!(decode_block(&out).unwrap(), (exts, out.len()));
        }

        #[test]
        fn le_uint_round_trip(v in any::<u64>()) {
            prop_assert_eq!(le_uint(&le_uint_bytes(v)), Some(v));
        }
    }
}
