//! Gnutella descriptors: the 23-byte header and the payloads of Ping (0x00),
//! Pong (0x01), Bye (0x02), route-table update (0x30), Push (0x40), Query
//! (0x80) and QueryHit (0x81). All integers are little-endian except IPv4
//! addresses (network order) and the Query's min-speed flags (big-endian,
//! as the min-speed note redefines them).
//!
//! ```text
//! header   GUID(16) KIND(1) TTL(1) HOPS(1) LENGTH(4, LE)
//! Ping     [GGEP]
//! Pong     PORT(2) IP(4) FILES(4) KBYTES(4) [GGEP]
//! Bye      CODE(2) MESSAGE NUL
//! Push     SERVENT_GUID(16) INDEX(4) IP(4) PORT(2) [GGEP]
//! Query    MIN_SPEED(2, BE flags) CRITERIA NUL [EXTENSIONS] [NUL]
//! QueryHit COUNT(1) PORT(2) IP(4) SPEED(4) RESULT*COUNT [TRAILER] SERVENT_GUID(16)
//!   result   INDEX(4) SIZE(4) NAME NUL EXTENSIONS NUL
//!   trailer  VENDOR(4) OPEN_SIZE(1) OPEN_DATA PRIVATE_DATA ([GGEP])
//! EXTENSIONS: HUGE URN text and GGEP blocks, separated by 0x1C
//! ```

use std::net::Ipv4Addr;

use crate::ggep::{self, EncodeOptions, Extension};
use crate::huge::{self, Urn};
use crate::qrp::{QrpError, RouteTableMessage};

/// A new message GUID, marked as modern servents mark theirs (byte 8 all
/// ones, byte 15 zero).
pub fn new_guid() -> Guid {
    let mut g: Guid = rand::random();
    g[8] = 0xff;
    g[15] = 0;
    g
}

/// A message GUID (also a servent's identity in hits and pushes).
pub type Guid = [u8; 16];

/// Header length.
pub const HEADER_LEN: usize = 23;
/// Largest payload accepted for any descriptor (64 KiB, the limit
/// gtk-gnutella applies to everything but route-table updates).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest Query payload accepted (queries longer than this are dropped by
/// deployed servents; 4 KiB leaves room for GGEP).
pub const MAX_QUERY_PAYLOAD: usize = 4 * 1024;
/// Longest query text accepted.
pub const MAX_CRITERIA_LEN: usize = 512;
/// Longest Bye message accepted.
pub const MAX_BYE_LEN: usize = 4 * 1024;
/// Most HUGE URNs read from one extension area.
pub const MAX_URNS: usize = 8;
/// Most legacy (non-URN, non-GGEP) extension fields kept from one area.
pub const MAX_OTHER_EXT: usize = 4;

/// Descriptor kinds.
pub mod kind {
    /// Ping.
    pub const PING: u8 = 0x00;
    /// Pong.
    pub const PONG: u8 = 0x01;
    /// Bye.
    pub const BYE: u8 = 0x02;
    /// Query-routing table update.
    pub const ROUTE_TABLE: u8 = 0x30;
    /// Vendor message (not interpreted yet).
    pub const VENDOR: u8 = 0x31;
    /// Standard vendor message (not interpreted yet).
    pub const VENDOR_STD: u8 = 0x32;
    /// Push.
    pub const PUSH: u8 = 0x40;
    /// Query.
    pub const QUERY: u8 = 0x80;
    /// QueryHit.
    pub const QUERY_HIT: u8 = 0x81;
}

/// Min-speed flags of a Query (bits of the big-endian field).
pub mod query_flags {
    /// Bit 15: the other bits are flags.
    pub const MARKED: u16 = 0x8000;
    /// Bit 14: the querier is firewalled.
    pub const FIREWALLED: u16 = 0x4000;
    /// Bit 13: the querier wants XML metadata.
    pub const XML: u16 = 0x2000;
    /// Bit 12: leaf-guided dynamic query.
    pub const LEAF_GUIDED: u16 = 0x1000;
    /// Bit 11: hits may carry GGEP "H" instead of HUGE text.
    pub const GGEP_H: u16 = 0x0800;
    /// Bit 10: out-of-band hits wanted.
    pub const OOB: u16 = 0x0400;
}

/// The 23-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message GUID.
    pub guid: Guid,
    /// Kind (see [`kind`]).
    pub kind: u8,
    /// Time to live.
    pub ttl: u8,
    /// Hops travelled.
    pub hops: u8,
    /// Payload length.
    pub length: u32,
}

impl Header {
    /// Parses the header (any 23 bytes are a header; the length is checked
    /// by the caller against its limits, see [`check_length`]).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&b[..16]);
        Header {
            guid,
            kind: b[16],
            ttl: b[17],
            hops: b[18],
            length: u32::from_le_bytes([b[19], b[20], b[21], b[22]]),
        }
    }

    /// Writes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..16].copy_from_slice(&self.guid);
        b[16] = self.kind;
        b[17] = self.ttl;
        b[18] = self.hops;
        b[19..].copy_from_slice(&self.length.to_le_bytes());
        b
    }
}

/// Whether a header's payload length is acceptable for its kind: at most
/// [`MAX_PAYLOAD`], a Query at most [`MAX_QUERY_PAYLOAD`]. A stream that
/// announces more cannot be resynchronised and must be closed.
pub fn check_length(h: &Header) -> Result<(), DecodeError> {
    let max = if h.kind == kind::QUERY {
        MAX_QUERY_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    if h.length as usize > max {
        return Err(DecodeError::TooLong {
            kind: h.kind,
            length: h.length,
        });
    }
    Ok(())
}

/// Ping: empty, or a GGEP block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ping {
    /// GGEP extensions.
    pub ggep: Vec<Extension>,
}

/// Pong: a servent's address and library size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// TCP port.
    pub port: u16,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Files shared.
    pub files: u32,
    /// Kilobytes shared.
    pub kbytes: u32,
    /// GGEP extensions.
    pub ggep: Vec<Extension>,
}

/// Bye: the reason a servent closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bye {
    /// SMTP-like code (2xx normal, 4xx the peer's fault, 5xx ours).
    pub code: u16,
    /// The message (raw bytes: print escaped), without the NUL.
    pub message: Vec<u8>,
}

/// Push: asks a firewalled servent to connect out and offer a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The firewalled servent's GUID.
    pub servent: Guid,
    /// The file's index in its hits.
    pub index: u32,
    /// Where to connect.
    pub ip: Ipv4Addr,
    /// Port to connect to.
    pub port: u16,
    /// GGEP extensions.
    pub ggep: Vec<Extension>,
}

/// The extensions after a query's text or a hit result's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// HUGE URNs (text, or from GGEP "H" in hits).
    pub urns: Vec<Urn>,
    /// GGEP extensions ("H" left out once read into `urns`).
    pub ggep: Vec<Extension>,
    /// Other legacy fields (e.g. XML), kept raw, at most [`MAX_OTHER_EXT`].
    pub other: Vec<Vec<u8>>,
}

/// Query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The min-speed field, big-endian (see [`query_flags`]).
    pub flags: u16,
    /// The search text (raw bytes; usually UTF-8).
    pub criteria: Vec<u8>,
    /// HUGE and GGEP extensions.
    pub ext: Extensions,
}

/// One file of a QueryHit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitResult {
    /// The servent's index for `/get/INDEX/NAME`.
    pub index: u32,
    /// Size in bytes (from GGEP "LF" when larger than 4 GiB - 1).
    pub size: u64,
    /// The file name (raw bytes; usually UTF-8).
    pub name: Vec<u8>,
    /// HUGE and GGEP extensions.
    pub ext: Extensions,
}

/// The open-data flags of a QueryHit trailer (the BearShare trailer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitFlags {
    /// The servent is firewalled: download by Push.
    pub push: Option<bool>,
    /// All upload slots are taken.
    pub busy: Option<bool>,
    /// The servent has uploaded at least one file.
    pub uploaded: Option<bool>,
    /// The speed field is a measured one.
    pub measured_speed: Option<bool>,
    /// The private data holds a GGEP block.
    pub ggep: bool,
}

const F_PUSH: u8 = 0x01;
const F_BUSY: u8 = 0x04;
const F_UPLOADED: u8 = 0x08;
const F_SPEED: u8 = 0x10;
const F_GGEP: u8 = 0x20;

impl HitFlags {
    /// Reads the two open-data bytes. In the first byte a bit says the
    /// flag is meaningful, in the second its value, except for push where
    /// the roles are swapped (first byte value, second byte meaningful).
    pub fn decode(open: &[u8]) -> HitFlags {
        if open.len() < 2 {
            return HitFlags::default();
        }
        let (a, b) = (open[0], open[1]);
        let flag = |bit: u8| (a & bit != 0).then_some(b & bit != 0);
        HitFlags {
            push: (b & F_PUSH != 0).then_some(a & F_PUSH != 0),
            busy: flag(F_BUSY),
            uploaded: flag(F_UPLOADED),
            measured_speed: flag(F_SPEED),
            ggep: a & F_GGEP != 0 && b & F_GGEP != 0,
        }
    }

    /// Writes the two open-data bytes.
    pub fn encode(&self) -> [u8; 2] {
        let (mut a, mut b) = (0u8, 0u8);
        if let Some(v) = self.push {
            b |= F_PUSH;
            if v {
                a |= F_PUSH;
            }
        }
        for (f, bit) in [
            (self.busy, F_BUSY),
            (self.uploaded, F_UPLOADED),
            (self.measured_speed, F_SPEED),
        ] {
            if let Some(v) = f {
                a |= bit;
                if v {
                    b |= bit;
                }
            }
        }
        if self.ggep {
            a |= F_GGEP;
            b |= F_GGEP;
        }
        [a, b]
    }
}

/// The trailer of a QueryHit (absent in plain 0.4 hits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The vendor code, e.g. `GTKG`, `LIME`, `RTLA` (ours).
    pub vendor: [u8; 4],
    /// The open-data flags.
    pub flags: HitFlags,
    /// Open data past the two flag bytes (kept raw).
    pub open_extra: Vec<u8>,
    /// GGEP extensions of the private data.
    pub ggep: Vec<Extension>,
    /// Private data that is not GGEP (kept raw).
    pub private: Vec<u8>,
}

impl Trailer {
    /// The trailer of a servent's own hit: `vendor`, whether it is behind
    /// a firewall (`push`), not busy, nothing uploaded, no speed measured,
    /// and no extension.
    pub fn plain(vendor: [u8; 4], push: bool) -> Trailer {
        Trailer {
            vendor,
            flags: HitFlags {
                push: Some(push),
                busy: Some(false),
                uploaded: Some(false),
                measured_speed: None,
                ggep: false,
            },
            open_extra: vec![],
            ggep: vec![],
            private: vec![],
        }
    }
}

/// QueryHit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryHit {
    /// The servent's port.
    pub port: u16,
    /// The servent's IPv4 address.
    pub ip: Ipv4Addr,
    /// The servent's speed in kbit/s.
    pub speed: u32,
    /// The files, at most 255.
    pub results: Vec<HitResult>,
    /// The trailer.
    pub trailer: Option<Trailer>,
    /// The servent's GUID (Push messages name it).
    pub servent: Guid,
}

impl QueryHit {
    /// Whether the hit says the servent is firewalled (download by Push).
    pub fn needs_push(&self) -> bool {
        self.trailer
            .as_ref()
            .and_then(|t| t.flags.push)
            .unwrap_or(false)
    }

    /// The servent's vendor code, safe to print: letters and digits kept,
    /// any other byte shown as `?`; empty without a trailer.
    pub fn vendor_code(&self) -> String {
        self.trailer
            .as_ref()
            .map(|t| {
                t.vendor
                    .iter()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            char::from(*b)
                        } else {
                            '?'
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A payload, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// 0x00.
    Ping(Ping),
    /// 0x01.
    Pong(Pong),
    /// 0x02.
    Bye(Bye),
    /// 0x30.
    RouteTable(RouteTableMessage),
    /// 0x40.
    Push(Push),
    /// 0x80.
    Query(Query),
    /// 0x81.
    QueryHit(QueryHit),
    /// Any other kind (vendor messages among them), kept raw.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// The payload.
        bytes: Vec<u8>,
    },
}

impl Payload {
    /// The kind byte of this payload.
    pub fn kind(&self) -> u8 {
        match self {
            Payload::Ping(_) => kind::PING,
            Payload::Pong(_) => kind::PONG,
            Payload::Bye(_) => kind::BYE,
            Payload::RouteTable(_) => kind::ROUTE_TABLE,
            Payload::Push(_) => kind::PUSH,
            Payload::Query(_) => kind::QUERY,
            Payload::QueryHit(_) => kind::QUERY_HIT,
            Payload::Unknown { kind, .. } => *kind,
        }
    }
}

/// A whole descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Message GUID.
    pub guid: Guid,
    /// Time to live.
    pub ttl: u8,
    /// Hops travelled.
    pub hops: u8,
    /// The payload.
    pub payload: Payload,
}

/// Why a descriptor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces a payload over the limit for its kind.
    #[error("descriptor kind {kind:#04x} of {length} bytes is over the limit")]
    TooLong {
        /// Kind.
        kind: u8,
        /// Announced length.
        length: u32,
    },
    /// The payload ends inside a field.
    #[error("descriptor payload truncated")]
    Truncated,
    /// A fixed-size payload has bytes it should not.
    #[error("descriptor payload has trailing bytes")]
    TrailingBytes,
    /// A string is missing its NUL or is over its limit.
    #[error("bad string in descriptor")]
    BadString,
    /// A GGEP block is malformed.
    #[error("bad GGEP: {0}")]
    Ggep(#[from] ggep::GgepError),
    /// A route-table message is malformed.
    #[error("bad route table message: {0}")]
    Qrp(#[from] QrpError),
    /// A QueryHit's results do not fit its payload.
    #[error("bad query hit")]
    BadHit,
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if p.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (a, b) = p.split_at(n);
    *p = b;
    Ok(a)
}

fn u16le(p: &mut &[u8]) -> Result<u16, DecodeError> {
    let b = take(p, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32le(p: &mut &[u8]) -> Result<u32, DecodeError> {
    let b = take(p, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn ipv4(p: &mut &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let b = take(p, 4)?;
    Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn guid(p: &mut &[u8]) -> Result<Guid, DecodeError> {
    let mut g = [0u8; 16];
    g.copy_from_slice(take(p, 16)?);
    Ok(g)
}

fn nul_string<'a>(p: &mut &'a [u8], max: usize) -> Result<&'a [u8], DecodeError> {
    let n = p
        .iter()
        .position(|&b| b == 0)
        .ok_or(DecodeError::BadString)?;
    if n > max {
        return Err(DecodeError::BadString);
    }
    let s = &p[..n];
    *p = &p[n + 1..];
    Ok(s)
}

/// A GGEP block filling the rest of a payload, or nothing.
fn trailing_ggep(p: &[u8]) -> Result<Vec<Extension>, DecodeError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let (exts, used) = ggep::decode_blocks(p)?;
    if used != p.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(exts)
}

/// Reads an extension area (HUGE text, GGEP blocks, legacy fields,
/// separated by 0x1C). Legacy fields that are not URNs are kept up to
/// [`MAX_OTHER_EXT`]; a malformed GGEP block ends the area (as servents
/// that meet a BearShare-style field do), it is not an error.
pub fn decode_extensions(mut p: &[u8]) -> Extensions {
    let mut ext = Extensions::default();
    while !p.is_empty() {
        if p[0] == 0x1c {
            p = &p[1..];
            continue;
        }
        if p[0] == ggep::MAGIC {
            match ggep::decode_blocks(p) {
                Ok((exts, used)) => {
                    for e in exts {
                        if e.id == b"H" {
                            if let Some(u) = huge::decode_ggep_h(&e.data) {
                                if ext.urns.len() < MAX_URNS && !ext.urns.contains(&u) {
                                    ext.urns.push(u);
                                }
                                continue;
                            }
                        }
                        ext.ggep.push(e);
                    }
                    p = &p[used..];
                    continue;
                }
                Err(_) => break,
            }
        }
        let end = p.iter().position(|&b| b == 0x1c).unwrap_or(p.len());
        let field = &p[..end];
        p = &p[end..];
        match std::str::from_utf8(field).ok().and_then(Urn::parse) {
            Some(u) => {
                if ext.urns.len() < MAX_URNS && !ext.urns.contains(&u) {
                    ext.urns.push(u);
                }
            }
            None => {
                if ext.other.len() < MAX_OTHER_EXT && !field.is_empty() {
                    ext.other.push(field.to_vec());
                }
            }
        }
    }
    ext
}

/// Writes an extension area: URNs as HUGE text, then legacy fields, then
/// one GGEP block (COBS-encoded where needed so no NUL appears).
pub fn encode_extensions(ext: &Extensions, out: &mut Vec<u8>) {
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(0x1c);
        }
        first = false;
    };
    for u in &ext.urns {
        sep(out);
        out.extend_from_slice(u.to_string().as_bytes());
    }
    for o in &ext.other {
        if !o.is_empty() && !o.contains(&0) && !o.contains(&0x1c) && o[0] != ggep::MAGIC {
            sep(out);
            out.extend_from_slice(o);
        }
    }
    if !ext.ggep.is_empty() {
        sep(out);
        ggep::encode_block(
            &ext.ggep,
            EncodeOptions {
                avoid_nul: true,
                compress: false,
            },
            out,
        );
    }
}

impl Descriptor {
    /// Decodes a payload whose header has been read (and its length
    /// checked with [`check_length`]).
    pub fn decode(h: &Header, payload: &[u8]) -> Result<Descriptor, DecodeError> {
        check_length(h)?;
        if payload.len() != h.length as usize {
            return Err(DecodeError::Truncated);
        }
        let payload = decode_payload(h.kind, payload)?;
        Ok(Descriptor {
            guid: h.guid,
            ttl: h.ttl,
            hops: h.hops,
            payload,
        })
    }

    /// Decodes a whole descriptor from `bytes` (header then payload,
    /// nothing after).
    pub fn decode_bytes(bytes: &[u8]) -> Result<Descriptor, DecodeError> {
        let hb: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::Truncated)?;
        let h = Header::decode(hb);
        check_length(&h)?;
        let p = &bytes[HEADER_LEN..];
        if p.len() > h.length as usize {
            return Err(DecodeError::TrailingBytes);
        }
        Descriptor::decode(&h, p)
    }

    /// The whole descriptor as bytes (header with the payload's length).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        encode_payload(&self.payload, &mut out);
        let h = Header {
            guid: self.guid,
            kind: self.payload.kind(),
            ttl: self.ttl,
            hops: self.hops,
            length: (out.len() - HEADER_LEN) as u32,
        };
        out[..HEADER_LEN].copy_from_slice(&h.encode());
        out
    }
}

fn decode_payload(k: u8, mut p: &[u8]) -> Result<Payload, DecodeError> {
    Ok(match k {
        kind::PING => Payload::Ping(Ping {
            ggep: trailing_ggep(p)?,
        }),
        kind::PONG => {
            let port = u16le(&mut p)?;
            let ip = ipv4(&mut p)?;
            let files = u32le(&mut p)?;
            let kbytes = u32le(&mut p)?;
            Payload::Pong(Pong {
                port,
                ip,
                files,
                kbytes,
                ggep: trailing_ggep(p)?,
            })
        }
        kind::BYE => {
            let code = u16le(&mut p)?;
            // Some servents leave the NUL out: accept the rest as the text.
            let message = match p.iter().position(|&b| b == 0) {
                Some(n) => &p[..n],
                None => p,
            };
            if message.len() > MAX_BYE_LEN {
                return Err(DecodeError::BadString);
            }
            Payload::Bye(Bye {
                code,
                message: message.to_vec(),
            })
        }
        kind::ROUTE_TABLE => Payload::RouteTable(RouteTableMessage::decode(p)?),
        kind::PUSH => {
            let servent = guid(&mut p)?;
            let index = u32le(&mut p)?;
            let ip = ipv4(&mut p)?;
            let port = u16le(&mut p)?;
            Payload::Push(Push {
                servent,
                index,
                ip,
                port,
                ggep: trailing_ggep(p)?,
            })
        }
        kind::QUERY => {
            let f = take(&mut p, 2)?;
            let flags = u16::from_be_bytes([f[0], f[1]]);
            let criteria = nul_string(&mut p, MAX_CRITERIA_LEN)?.to_vec();
            // The extension area ends at an optional NUL.
            let area = match p.iter().position(|&b| b == 0) {
                Some(n) => &p[..n],
                None => p,
            };
            Payload::Query(Query {
                flags,
                criteria,
                ext: decode_extensions(area),
            })
        }
        kind::QUERY_HIT => Payload::QueryHit(decode_hit(p)?),
        other => Payload::Unknown {
            kind: other,
            bytes: p.to_vec(),
        },
    })
}

fn decode_hit(mut p: &[u8]) -> Result<QueryHit, DecodeError> {
    if p.len() < 11 + 16 {
        return Err(DecodeError::Truncated);
    }
    let mut servent = [0u8; 16];
    servent.copy_from_slice(&p[p.len() - 16..]);
    p = &p[..p.len() - 16];
    let count = take(&mut p, 1)?[0];
    let port = u16le(&mut p)?;
    let ip = ipv4(&mut p)?;
    let speed = u32le(&mut p)?;
    let mut results = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let index = u32le(&mut p).map_err(|_| DecodeError::BadHit)?;
        let size32 = u32le(&mut p).map_err(|_| DecodeError::BadHit)?;
        let name = nul_string(&mut p, MAX_PAYLOAD)
            .map_err(|_| DecodeError::BadHit)?
            .to_vec();
        let area = nul_string(&mut p, MAX_PAYLOAD).map_err(|_| DecodeError::BadHit)?;
        let ext = decode_extensions(area);
        let size = ggep::find(&ext.ggep, b"LF")
            .and_then(|e| ggep::le_uint(&e.data))
            .unwrap_or(u64::from(size32));
        results.push(HitResult {
            index,
            size,
            name,
            ext,
        });
    }
    let trailer = if p.is_empty() {
        None
    } else {
        let vendor: [u8; 4] = take(&mut p, 4)
            .map_err(|_| DecodeError::BadHit)?
            .try_into()
            .map_err(|_| DecodeError::BadHit)?;
        let open_len = usize::from(take(&mut p, 1).map_err(|_| DecodeError::BadHit)?[0]);
        let open = take(&mut p, open_len).map_err(|_| DecodeError::BadHit)?;
        let flags = HitFlags::decode(open);
        let open_extra = open.get(2..).unwrap_or(&[]).to_vec();
        // The private area: GGEP from its first magic byte, if the flags
        // say there is one (older servents put other data before it).
        let (mut ggep_exts, mut private) = (Vec::new(), p.to_vec());
        if flags.ggep {
            if let Some(at) = p.iter().position(|&b| b == ggep::MAGIC) {
                if let Ok((exts, used)) = ggep::decode_blocks(&p[at..]) {
                    ggep_exts = exts;
                    private = [&p[..at], &p[at + used..]].concat();
                }
            }
        }
        Some(Trailer {
            vendor,
            flags,
            open_extra,
            ggep: ggep_exts,
            private,
        })
    };
    Ok(QueryHit {
        port,
        ip,
        speed,
        results,
        trailer,
        servent,
    })
}

fn encode_payload(p: &Payload, out: &mut Vec<u8>) {
    let plain = EncodeOptions {
        avoid_nul: false,
        compress: false,
    };
    match p {
        Payload::Ping(x) => ggep::encode_block(&x.ggep, plain, out),
        Payload::Pong(x) => {
            out.extend_from_slice(&x.port.to_le_bytes());
            out.extend_from_slice(&x.ip.octets());
            out.extend_from_slice(&x.files.to_le_bytes());
            out.extend_from_slice(&x.kbytes.to_le_bytes());
            ggep::encode_block(&x.ggep, plain, out);
        }
        Payload::Bye(x) => {
            out.extend_from_slice(&x.code.to_le_bytes());
            out.extend(
                x.message
                    .iter()
                    .copied()
                    .filter(|&b| b != 0)
                    .take(MAX_BYE_LEN),
            );
            out.push(0);
        }
        Payload::RouteTable(m) => m.encode(out),
        Payload::Push(x) => {
            out.extend_from_slice(&x.servent);
            out.extend_from_slice(&x.index.to_le_bytes());
            out.extend_from_slice(&x.ip.octets());
            out.extend_from_slice(&x.port.to_le_bytes());
            ggep::encode_block(&x.ggep, plain, out);
        }
        Payload::Query(q) => {
            out.extend_from_slice(&q.flags.to_be_bytes());
            out.extend(
                q.criteria
                    .iter()
                    .copied()
                    .filter(|&b| b != 0)
                    .take(MAX_CRITERIA_LEN),
            );
            out.push(0);
            encode_extensions(&q.ext, out);
        }
        Payload::QueryHit(h) => {
            let n = h.results.len().min(255);
            out.push(n as u8);
            out.extend_from_slice(&h.port.to_le_bytes());
            out.extend_from_slice(&h.ip.octets());
            out.extend_from_slice(&h.speed.to_le_bytes());
            for r in &h.results[..n] {
                out.extend_from_slice(&r.index.to_le_bytes());
                let mut ext = r.ext.clone();
                let size32 = if r.size >= u64::from(u32::MAX) {
                    if ggep::find(&ext.ggep, b"LF").is_none() {
                        ext.ggep
                            .push(Extension::new(b"LF", ggep::le_uint_bytes(r.size)));
                    }
                    u32::MAX
                } else {
                    r.size as u32
                };
                out.extend_from_slice(&size32.to_le_bytes());
                out.extend(r.name.iter().copied().filter(|&b| b != 0));
                out.push(0);
                encode_extensions(&ext, out);
                out.push(0);
            }
            if let Some(t) = &h.trailer {
                out.extend_from_slice(&t.vendor);
                let mut flags = t.flags;
                flags.ggep = !t.ggep.is_empty();
                let open_len = (2 + t.open_extra.len()).min(255);
                out.push(open_len as u8);
                out.extend_from_slice(&flags.encode());
                out.extend_from_slice(&t.open_extra[..open_len - 2]);
                // GGEP first: a reader looks for the block at the first
                // 0xC3, which must then be ours, not a byte of the rest.
                ggep::encode_block(&t.ggep, plain, out);
                out.extend_from_slice(&t.private);
            }
            out.extend_from_slice(&h.servent);
        }
        Payload::Unknown { bytes, .. } => out.extend_from_slice(bytes),
    }
}

#[cfg(test)]
mod tests;
