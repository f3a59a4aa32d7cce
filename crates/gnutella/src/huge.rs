//! HUGE: content URNs (`urn:sha1:` followed by 32 base32 characters, RFC 4648
//! alphabet, no padding) as they appear in queries, query hits and HTTP
//! headers, and the GGEP "H" binary form.

use std::fmt;

/// Length of the base32 text of a SHA-1 digest.
pub const SHA1_BASE32_LEN: usize = 32;
/// Longest URN text accepted (anything longer is kept out, not truncated).
pub const MAX_URN_LEN: usize = 256;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A content URN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Urn {
    /// `urn:sha1:BASE32`: the SHA-1 of the whole file.
    Sha1([u8; 20]),
    /// `urn:bitprint:SHA1.TIGER`: the SHA-1 and the Tiger tree root.
    Bitprint([u8; 20], [u8; 24]),
    /// `urn:tree:tiger/:BASE32` (also read without the `/`): the root of
    /// the file's Tiger tree.
    TreeTiger([u8; 24]),
    /// Any other `urn:` text (kept as received, at most [`MAX_URN_LEN`] bytes).
    Other(String),
}

impl Urn {
    /// The SHA-1 this URN names, if any.
    pub fn sha1(&self) -> Option<&[u8; 20]> {
        match self {
            Urn::Sha1(h) | Urn::Bitprint(h, _) => Some(h),
            Urn::TreeTiger(_) | Urn::Other(_) => None,
        }
    }

    /// The Tiger tree root this URN names, if any.
    pub fn tiger(&self) -> Option<&[u8; 24]> {
        match self {
            Urn::TreeTiger(t) | Urn::Bitprint(_, t) => Some(t),
            Urn::Sha1(_) | Urn::Other(_) => None,
        }
    }

    /// Parses `urn:sha1:…`, `urn:bitprint:…` (prefixes case-insensitive,
    /// base32 in either case) or any other `urn:` text. `None` for text that
    /// does not start with `urn:`, is too long or is a malformed SHA-1 URN.
    pub fn parse(text: &str) -> Option<Urn> {
        // Compared as bytes: the text may hold any UTF-8 from the network.
        let prefix = |p: &str| {
            text.as_bytes()
                .get(..p.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
        };
        if text.len() > MAX_URN_LEN || !prefix("urn:") {
            return None;
        }
        // The prefixes are ASCII, so slicing after them is on a boundary.
        if prefix("urn:sha1:") {
            let b = base32_decode(&text["urn:sha1:".len()..])?;
            return <[u8; 20]>::try_from(b.as_slice()).ok().map(Urn::Sha1);
        }
        if prefix("urn:bitprint:") {
            let rest = &text["urn:bitprint:".len()..];
            let (s, t) = rest.split_once('.')?;
            let s = <[u8; 20]>::try_from(base32_decode(s)?.as_slice()).ok()?;
            let t = <[u8; 24]>::try_from(base32_decode(t)?.as_slice()).ok()?;
            return Some(Urn::Bitprint(s, t));
        }
        for p in ["urn:tree:tiger/:", "urn:tree:tiger:"] {
            if prefix(p) {
                let t = base32_decode(&text[p.len()..])?;
                return <[u8; 24]>::try_from(t.as_slice()).ok().map(Urn::TreeTiger);
            }
        }
        if text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            Some(Urn::Other(text.to_string()))
        } else {
            None
        }
    }
}

impl fmt::Display for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Urn::Sha1(h) => write!(f, "urn:sha1:{}", base32_encode(h)),
            Urn::Bitprint(h, t) => {
                write!(f, "urn:bitprint:{}.{}", base32_encode(h), base32_encode(t))
            }
            Urn::TreeTiger(t) => write!(f, "urn:tree:tiger/:{}", base32_encode(t)),
            Urn::Other(s) => f.write_str(s),
        }
    }
}

/// Base32 (RFC 4648 alphabet, upper case, no padding).
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (either case, no padding). `None` on a character outside
/// the alphabet or on leftover bits that are not zero (so that every byte
/// string has exactly one accepted text).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 5 || acc != 0 {
        return None;
    }
    Some(out)
}

/// GGEP "H" payload: a type byte then the digest(s): 0x01 SHA-1 (20 bytes),
/// 0x02 bitprint (SHA-1 then Tiger root, 44 bytes).
pub fn decode_ggep_h(data: &[u8]) -> Option<Urn> {
    match (data.first(), data.len()) {
        (Some(1), 21) => <[u8; 20]>::try_from(&data[1..]).ok().map(Urn::Sha1),
        (Some(2), 45) => {
            let s = <[u8; 20]>::try_from(&data[1..21]).ok()?;
            let t = <[u8; 24]>::try_from(&data[21..]).ok()?;
            Some(Urn::Bitprint(s, t))
        }
        _ => None,
    }
}

/// The GGEP "H" payload of a SHA-1.
pub fn encode_ggep_h_sha1(sha1: &[u8; 20]) -> Vec<u8> {
    let mut v = Vec::with_capacity(21);
    v.push(1);
    v.extend_from_slice(sha1);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        // RFC 4648 section 10, without padding.
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), enc);
            assert_eq!(base32_decode(enc).unwrap(), plain.as_bytes());
            assert_eq!(
                base32_decode(&enc.to_lowercase()).unwrap(),
                plain.as_bytes()
            );
        }
        assert_eq!(base32_decode("MZ"), None, "leftover bits must be zero");
        assert_eq!(base32_decode("M1"), None);
    }

    #[test]
    fn sha1_urn_of_the_empty_file() {
        // SHA-1("") = da39a3ee5e6b4b0d3255bfef95601890afd80709, whose
        // HUGE form is the well-known urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ.
        let text = "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ";
        let urn = Urn::parse(text).unwrap();
        let expect = [
            0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d, 0x32, 0x55, 0xbf, 0xef, 0x95, 0x60,
            0x18, 0x90, 0xaf, 0xd8, 0x07, 0x09,
        ];
        assert_eq!(urn, Urn::Sha1(expect));
        assert_eq!(urn.to_string(), text);
        assert_eq!(
            Urn::parse("URN:SHA1:3i42h3s6nnfq2msvx7xzkyayscx5qbyj"),
            Some(urn)
        );
        assert_eq!(Urn::parse("urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBY"), None);
        assert_eq!(Urn::parse("sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ"), None);
        // Multi-byte characters where the prefix would be: no panic.
        assert_eq!(Urn::parse("\u{de}\u{ca28a}?"), None);
        assert_eq!(Urn::parse("urn:sha\u{e9}1:x"), None);
        assert_eq!(
            decode_ggep_h(&encode_ggep_h_sha1(&expect)),
            Some(Urn::Sha1(expect))
        );
    }

    #[test]
    fn tiger_tree_urns() {
        let text = "urn:tree:tiger/:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ";
        let u = Urn::parse(text).unwrap();
        assert_eq!(u.tiger(), Some(&crate::tiger::root(b"")));
        assert_eq!(u.sha1(), None);
        assert_eq!(u.to_string(), text);
        assert_eq!(
            Urn::parse("URN:TREE:TIGER:lwpnacqdbzryxw3vhjvcj64qbznghohhhzwclnq"),
            Some(u)
        );
        assert_eq!(
            Urn::parse("urn:tree:tiger/:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLN"),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn base32_round_trip(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(base32_decode(&base32_encode(&data)).unwrap(), data);
        }
    }
}
