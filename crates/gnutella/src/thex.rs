//! THEX, the serialisation of a tiger tree that servents answer to
//! `GET /uri-res/N2X?urn:sha1:…`: a DIME message of two records, an XML
//! one describing the tree and one holding its nodes breadth first (root
//! first, 24 bytes each). Pure functions with hard bounds.
//!
//! DIME record: a 12-byte header (version 1 in the top 5 bits of byte 0,
//! then the MB, ME and CF flags; the type format in the top 4 bits of
//! byte 1; then big-endian lengths: options (16 bits), ID (16), type (16),
//! data (32)), followed by options, ID, type and data, each padded with
//! zeros to a multiple of 4 bytes.

use crate::tiger::{self, Hash, HashTree, HASH_LEN};

/// Longest THEX message accepted or built (a tree of [`tiger::MAX_DEPTH`]
/// levels of a file too large for that is cut, not sent whole).
pub const MAX_THEX_LEN: usize = 4 << 20;
/// Records of one DIME message at most.
pub const MAX_RECORDS: usize = 8;
/// Longest XML record accepted.
pub const MAX_XML_LEN: usize = 4096;
/// The type (an absolute URI) of the record of nodes.
pub const TREE_TYPE: &str = "http://open-content.net/spec/thex/breadthfirst";
/// The digest the XML names.
pub const DIGEST_ALGO: &str = "http://open-content.net/spec/digest/tiger";
/// The document type of the XML.
pub const DOCTYPE: &str = "http://open-content.net/spec/thex/thex.dtd";

const DIME_HEADER: usize = 12;
const DIME_VERSION: u8 = 1;
const FLAG_MB: u8 = 0x04;
const FLAG_ME: u8 = 0x02;
const FLAG_CF: u8 = 0x01;
/// DIME type format: a media type (`text/xml`).
pub const TNF_MEDIA: u8 = 0x01;
/// DIME type format: an absolute URI.
pub const TNF_URI: u8 = 0x02;

/// Why a THEX message is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThexError {
    /// Longer than [`MAX_THEX_LEN`], or more than [`MAX_RECORDS`] records.
    #[error("THEX message too large")]
    TooLarge,
    /// A DIME record is cut short, has another version, or is chunked.
    #[error("malformed DIME: {0}")]
    Dime(&'static str),
    /// No XML record, or it does not describe a tiger tree of this file.
    #[error("THEX description: {0}")]
    Xml(&'static str),
    /// No record of nodes, or its length is not whole nodes.
    #[error("THEX nodes: {0}")]
    Nodes(&'static str),
    /// The tree's root is not the one expected.
    #[error("THEX root does not match")]
    RootMismatch,
}

/// One DIME record (borrowing the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimeRecord<'a> {
    /// Type format ([`TNF_MEDIA`], [`TNF_URI`], …).
    pub format: u8,
    /// The record's ID.
    pub id: &'a [u8],
    /// Its type.
    pub kind: &'a [u8],
    /// Its data.
    pub data: &'a [u8],
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Cuts a DIME message into records, up to the one flagged last (bytes
/// after it are ignored). Chunked records are refused.
pub fn parse_dime(buf: &[u8]) -> Result<Vec<DimeRecord<'_>>, ThexError> {
    if buf.len() > MAX_THEX_LEN {
        return Err(ThexError::TooLarge);
    }
    let mut out = Vec::new();
    let mut p = buf;
    loop {
        if out.len() >= MAX_RECORDS {
            return Err(ThexError::TooLarge);
        }
        let h = p
            .get(..DIME_HEADER)
            .ok_or(ThexError::Dime("short header"))?;
        if h[0] >> 3 != DIME_VERSION {
            return Err(ThexError::Dime("not version 1"));
        }
        let flags = h[0] & 7;
        if flags & FLAG_CF != 0 {
            return Err(ThexError::Dime("chunked record"));
        }
        if out.is_empty() && flags & FLAG_MB == 0 {
            return Err(ThexError::Dime("first record without MB"));
        }
        if !out.is_empty() && flags & FLAG_MB != 0 {
            return Err(ThexError::Dime("MB on a later record"));
        }
        let be16 = |i: usize| usize::from(u16::from_be_bytes([h[i], h[i + 1]]));
        let (opt, id, kind) = (be16(2), be16(4), be16(6));
        let data = usize::try_from(u32::from_be_bytes([h[8], h[9], h[10], h[11]]))
            .map_err(|_| ThexError::TooLarge)?;
        p = &p[DIME_HEADER..];
        let mut take = |n: usize| -> Result<&[u8], ThexError> {
            let padded = pad4(n);
            if p.len() < padded {
                return Err(ThexError::Dime("record cut short"));
            }
            let (f, rest) = p.split_at(padded);
            p = rest;
            Ok(&f[..n])
        };
        take(opt)?;
        let id = take(id)?;
        let kind = take(kind)?;
        let data = take(data)?;
        out.push(DimeRecord {
            format: h[1] >> 4,
            id,
            kind,
            data,
        });
        if flags & FLAG_ME != 0 {
            return Ok(out);
        }
    }
}

/// A DIME message of `records` (the first flagged MB, the last ME).
pub fn encode_dime(records: &[DimeRecord<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = records.len();
    for (i, r) in records.iter().enumerate() {
        let mut b0 = DIME_VERSION << 3;
        if i == 0 {
            b0 |= FLAG_MB;
        }
        if i + 1 == n {
            b0 |= FLAG_ME;
        }
        out.push(b0);
        out.push(r.format << 4);
        // Longer fields are cut to what the lengths can say (never the
        // case for a THEX message, bounded far below).
        let id = &r.id[..r.id.len().min(usize::from(u16::MAX))];
        let kind = &r.kind[..r.kind.len().min(usize::from(u16::MAX))];
        let data = &r.data[..r.data.len().min(u32::MAX as usize)];
        out.extend_from_slice(&[0, 0]);
        for l in [id.len(), kind.len()] {
            out.extend_from_slice(&u16::try_from(l).unwrap_or(u16::MAX).to_be_bytes());
        }
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        for part in [id, kind, data] {
            out.extend_from_slice(part);
            out.resize(out.len() + pad4(part.len()) - part.len(), 0);
        }
    }
    out
}

/// What the XML record says of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThexXml {
    /// `file size`.
    pub size: u64,
    /// `file segmentsize` (1024 for tiger trees).
    pub segment: Option<u64>,
    /// `digest algorithm`.
    pub algorithm: String,
    /// `digest outputsize`.
    pub output: Option<u64>,
    /// `serializedtree depth`.
    pub depth: u32,
    /// `serializedtree type`.
    pub tree_type: String,
    /// `serializedtree uri`: the ID of the record of nodes.
    pub uri: String,
}

/// The attributes of the first element `name` of `xml` (quoted with `"`
/// or `'`, at most 16).
fn attributes<'a>(xml: &'a str, name: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let mut from = 0;
    let start = loop {
        let i = from + xml.get(from..)?.find('<')?;
        let rest = xml.get(i + 1..)?;
        if rest.starts_with(name)
            && rest[name.len()..]
                .starts_with(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        {
            break i + 1 + name.len();
        }
        from = i + 1;
    };
    let mut s = xml.get(start..)?;
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() || s.starts_with('>') || s.starts_with('/') || out.len() >= 16 {
            return Some(out);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        s = s[eq + 1..].trim_start();
        let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = s[1..].find(q)?;
        out.push((key, &s[1..1 + end]));
        s = &s[end + 2..];
    }
}

/// Reads the XML record of a THEX message.
pub fn parse_xml(xml: &[u8]) -> Result<ThexXml, ThexError> {
    if xml.len() > MAX_XML_LEN {
        return Err(ThexError::Xml("too long"));
    }
    let xml = std::str::from_utf8(xml).map_err(|_| ThexError::Xml("not UTF-8"))?;
    let get = |el: &str, key: &str| -> Option<&str> {
        attributes(xml, el)?
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
    };
    let num = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
    let size = num(get("file", "size")).ok_or(ThexError::Xml("no file size"))?;
    let depth = num(get("serializedtree", "depth"))
        .and_then(|d| u32::try_from(d).ok())
        .ok_or(ThexError::Xml("no tree depth"))?;
    Ok(ThexXml {
        size,
        segment: num(get("file", "segmentsize")),
        algorithm: get("digest", "algorithm").unwrap_or_default().to_string(),
        output: num(get("digest", "outputsize")),
        depth,
        tree_type: get("serializedtree", "type")
            .unwrap_or_default()
            .to_string(),
        uri: get("serializedtree", "uri").unwrap_or_default().to_string(),
    })
}

/// Nodes of levels 0 to `depth` of a file of `size`.
fn nodes_through(size: u64, depth: u32) -> u64 {
    (0..=depth).map(|l| tiger::nodes_at(size, l)).sum()
}

/// Checks a THEX message against the file's `size` and `root`: the tree
/// it serves, down to the deepest level that its description names and
/// its nodes hold whole (levels below the leaves, or past
/// [`tiger::MAX_DEPTH`], are not taken). The root is computed again from
/// that level.
pub fn parse_thex(buf: &[u8], size: u64, root: &Hash) -> Result<HashTree, ThexError> {
    let records = parse_dime(buf)?;
    let xml = records
        .iter()
        .find(|r| r.kind.eq_ignore_ascii_case(b"text/xml"))
        .ok_or(ThexError::Xml("no XML record"))?;
    let x = parse_xml(xml.data)?;
    if x.size != size {
        return Err(ThexError::Xml("another file size"));
    }
    if x.segment.is_some_and(|s| s != tiger::BLOCK as u64) {
        return Err(ThexError::Xml("segment size is not 1024"));
    }
    if !x.algorithm.is_empty() && !x.algorithm.eq_ignore_ascii_case(DIGEST_ALGO) {
        return Err(ThexError::Xml("not a tiger digest"));
    }
    if x.output.is_some_and(|o| o != HASH_LEN as u64) {
        return Err(ThexError::Xml("digest size is not 24"));
    }
    if !x.tree_type.is_empty() && !x.tree_type.eq_ignore_ascii_case(TREE_TYPE) {
        return Err(ThexError::Xml("not a breadth-first tree"));
    }
    let is_tree = |r: &&DimeRecord<'_>| r.kind.eq_ignore_ascii_case(TREE_TYPE.as_bytes());
    let nodes = records
        .iter()
        .filter(is_tree)
        .find(|r| r.id == x.uri.as_bytes())
        .or_else(|| records.iter().find(is_tree))
        .ok_or(ThexError::Nodes("no record of nodes"))?
        .data;
    if nodes.is_empty() || nodes.len() % HASH_LEN != 0 {
        return Err(ThexError::Nodes("not whole nodes"));
    }
    let n = (nodes.len() / HASH_LEN) as u64;
    let full = tiger::full_depth(size);
    if n > nodes_through(size, full) {
        return Err(ThexError::Nodes("more nodes than the file has"));
    }
    if nodes[..HASH_LEN] != root[..] {
        return Err(ThexError::RootMismatch);
    }
    let mut depth = x.depth.min(full).min(tiger::MAX_DEPTH);
    while depth > 0 && nodes_through(size, depth) > n {
        depth -= 1;
    }
    let from = if depth == 0 {
        0
    } else {
        nodes_through(size, depth - 1)
    };
    let to = nodes_through(size, depth);
    let as_usize = |v: u64| usize::try_from(v).map_err(|_| ThexError::TooLarge);
    let bottom: Vec<Hash> = nodes[as_usize(from)? * HASH_LEN..as_usize(to)? * HASH_LEN]
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        })
        .collect();
    let tree = HashTree::from_bottom(size, depth, bottom).ok_or(ThexError::Nodes("bad level"))?;
    if tree.root() != *root {
        return Err(ThexError::RootMismatch);
    }
    Ok(tree)
}

/// The `uuid:` that names the record of nodes (made of the root's first
/// 16 bytes).
fn uuid_of(root: &Hash) -> String {
    let h = |r: std::ops::Range<usize>| -> String {
        root[r].iter().map(|b| format!("{b:02x}")).collect()
    };
    format!(
        "uuid:{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// The THEX message of `tree`.
pub fn encode_thex(tree: &HashTree) -> Vec<u8> {
    let uri = uuid_of(&tree.root());
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <!DOCTYPE hashtree SYSTEM \"{DOCTYPE}\">\r\n\
         <hashtree>\r\n\
         <file size=\"{}\" segmentsize=\"{}\"/>\r\n\
         <digest algorithm=\"{DIGEST_ALGO}\" outputsize=\"{HASH_LEN}\"/>\r\n\
         <serializedtree depth=\"{}\" type=\"{TREE_TYPE}\" uri=\"{uri}\"/>\r\n\
         </hashtree>\r\n",
        tree.size(),
        tiger::BLOCK,
        tree.depth(),
    );
    let nodes = tree.breadth_first();
    encode_dime(&[
        DimeRecord {
            format: TNF_MEDIA,
            id: b"",
            kind: b"text/xml",
            data: xml.as_bytes(),
        },
        DimeRecord {
            format: TNF_URI,
            id: uri.as_bytes(),
            kind: TREE_TYPE.as_bytes(),
            data: &nodes,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 247) as u8).collect()
    }

    #[test]
    fn round_trip_and_layout() {
        let data = sample(300_000);
        let t = HashTree::of_bytes(&data, 3);
        let m = encode_thex(&t);
        // Header of the first record: version 1, MB; media type; no
        // options, no ID, 8 bytes of type.
        assert_eq!(&m[..8], &[0x0c, 0x10, 0, 0, 0, 0, 0, 8]);
        let r = parse_dime(&m).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].format, TNF_URI);
        assert_eq!(
            r[1].data.len(),
            11 * HASH_LEN,
            "293 blocks: 1 + 2 + 3 + 5 nodes"
        );
        assert_eq!(m.len() % 4, 0);
        let back = parse_thex(&m, 300_000, &t.root()).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            parse_thex(&m, 300_001, &t.root()),
            Err(ThexError::Xml("another file size"))
        );
        let mut other = t.root();
        other[0] ^= 1;
        assert_eq!(
            parse_thex(&m, 300_000, &other),
            Err(ThexError::RootMismatch)
        );
    }

    #[test]
    fn a_tree_of_gtk_gnutella_layout_is_read() {
        // Single-quoted attributes, a depth deeper than the nodes sent
        // (only the root and one level), extra whitespace.
        let data = sample(5000);
        let t = HashTree::of_bytes(&data, 1);
        let xml = "<?xml version='1.0'?><hashtree>\n <file  size='5000' segmentsize='1024' />\n\
                   <digest algorithm='http://open-content.net/spec/digest/tiger' outputsize='24'/>\
                   <serializedtree depth='9' type='http://open-content.net/spec/thex/breadthfirst' uri='uuid:x'/></hashtree>";
        let nodes = t.breadth_first();
        let m = encode_dime(&[
            DimeRecord {
                format: TNF_MEDIA,
                id: b"",
                kind: b"text/xml",
                data: xml.as_bytes(),
            },
            DimeRecord {
                format: TNF_URI,
                id: b"uuid:x",
                kind: TREE_TYPE.as_bytes(),
                data: &nodes,
            },
        ]);
        let back = parse_thex(&m, 5000, &t.root()).unwrap();
        assert_eq!(back.depth(), 1);
        assert_eq!(back.bottom(), t.bottom());
    }

    #[test]
    fn bounds() {
        assert_eq!(parse_dime(&[]), Err(ThexError::Dime("short header")));
        // A record that claims 4 GiB of data.
        let mut m = vec![0x0e, 0x10, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_dime(&m), Err(ThexError::Dime("record cut short")));
        m[0] = 0x0d;
        assert_eq!(parse_dime(&m), Err(ThexError::Dime("chunked record")));
        // Nine records none of which ends the message.
        let one = [0x08u8, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut many = vec![0x0cu8, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for _ in 0..9 {
            many.extend_from_slice(&one);
        }
        assert_eq!(parse_dime(&many), Err(ThexError::TooLarge));
        assert_eq!(
            parse_dime(&vec![0; MAX_THEX_LEN + 1]),
            Err(ThexError::TooLarge)
        );
        // More nodes than a file of 10 bytes can have.
        let t = HashTree::of_bytes(b"0123456789", 0);
        let mut nodes = t.breadth_first();
        nodes.extend_from_slice(&[0; 48]);
        let xml = b"<hashtree><file size='10'/><serializedtree depth='0' uri='u'/></hashtree>";
        let m = encode_dime(&[
            DimeRecord {
                format: TNF_MEDIA,
                id: b"",
                kind: b"text/xml",
                data: xml,
            },
            DimeRecord {
                format: TNF_URI,
                id: b"u",
                kind: TREE_TYPE.as_bytes(),
                data: &nodes,
            },
        ]);
        assert_eq!(
            parse_thex(&m, 10, &t.root()),
            Err(ThexError::Nodes("more nodes than the file has"))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), size in 0u64..100_000) {
            let _ = parse_thex(&data, size, &[0; 24]);
            let _ = parse_xml(&data);
        }

        #[test]
        fn any_tree_round_trips(len in 0usize..70_000, depth in 0u32..8) {
            let data = sample(len);
            let t = HashTree::of_bytes(&data, depth);
            let back = parse_thex(&encode_thex(&t), len as u64, &t.root());
            prop_assert_eq!(back, Ok(t));
        }
    }
}
