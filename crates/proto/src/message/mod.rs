//! The UDP messages: classic JSON objects plus rutella's extension fields.
//!
//! Parsing and encoding are pure functions over bytes. Encoding writes
//! JSON the way the classic program does (Python's `json.dumps`: keys in
//! order, a space after `:` and `,`), so the examples of the wire format
//! come out byte for byte.

mod dialback;

pub use dialback::{parse_token, token_hex, DialBack, DIALBACK_REQUEST, DIALBACK_RESULT};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// UDP port of every classic peer.
pub const CLASSIC_UDP_PORT: u16 = 20000;
/// TCP port of every classic peer.
pub const CLASSIC_TCP_PORT: u16 = 10000;
/// The most a classic peer reads of one datagram; rutella never sends more.
pub const MAX_DATAGRAM: usize = 8192;
/// Longest query text rutella sends or answers (bytes).
pub const MAX_QUERY_LEN: usize = 1024;

/// Why a datagram is not a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A field the message needs is absent.
    #[error("missing field {0:?}")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("invalid field {0:?}")]
    Invalid(&'static str),
    /// `"Command"` is not 1 to 4.
    #[error("unknown command {0}")]
    UnknownCommand(i64),
}

/// The rutella extension fields about the peer a message is about:
/// its UDP and TCP ports. Classic peers ignore them; their absence marks a
/// classic peer, reachable at the classic ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ports {
    /// `"UdpPort"`.
    pub udp: Option<u16>,
    /// `"TcpPort"`.
    pub tcp: Option<u16>,
}

impl Ports {
    /// Ports of a rutella peer.
    pub fn rutella(udp: u16, tcp: u16) -> Self {
        Ports {
            udp: Some(udp),
            tcp: Some(tcp),
        }
    }
    /// The UDP port, the classic one when absent.
    pub fn udp_or_classic(&self) -> u16 {
        self.udp.unwrap_or(CLASSIC_UDP_PORT)
    }
    /// The TCP port, the classic one when absent.
    pub fn tcp_or_classic(&self) -> u16 {
        self.tcp.unwrap_or(CLASSIC_TCP_PORT)
    }
    /// Whether the sender announced itself as a rutella peer.
    pub fn is_rutella(&self) -> bool {
        self.udp.is_some()
    }
}

/// `{"Command": 1}`: discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// The peer that started the ping (unchanged when forwarded).
    pub ip: Ipv4Addr,
    /// How many more times it may be forwarded.
    pub ttl: i64,
    /// Ports of the originator.
    pub ports: Ports,
    /// Fields this version does not know, kept when forwarding.
    pub extra: Map<String, Value>,
}

/// `{"Command": 2}`: answer to a ping.
#[derive(Debug, Clone, PartialEq)]
pub struct Pong {
    /// The sender.
    pub ip: Ipv4Addr,
    /// Ports of the sender.
    pub ports: Ports,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// `{"Command": 3}`: a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The querier.
    pub ip: Ipv4Addr,
    /// The text searched for.
    pub text: String,
    /// rutella extension `"Id"`: the search this query belongs to, echoed in hits.
    pub id: Option<u64>,
    /// Ports of the querier.
    pub ports: Ports,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// One file named in a QueryHit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HitFile {
    /// Path relative to the share, `/`-separated.
    pub name: String,
    /// Size in bytes (rutella extension `"Sizes"`).
    pub size: Option<u64>,
    /// BLAKE3 hash (rutella extension `"Hashes"`, lowercase hex).
    pub hash: Option<[u8; 32]>,
}

impl HitFile {
    /// A file known by name only, as classic peers report them.
    pub fn named(name: impl Into<String>) -> Self {
        HitFile {
            name: name.into(),
            size: None,
            hash: None,
        }
    }
}

/// `{"Command": 4}`: the answer to a query, possibly with no files.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryHit {
    /// The answering peer.
    pub ip: Ipv4Addr,
    /// Matching files (`"Contents"` holds their names).
    pub files: Vec<HitFile>,
    /// rutella extension `"Id"`: the query's id.
    pub id: Option<u64>,
    /// rutella extension `"More"`: further parts of this answer follow.
    pub more: bool,
    /// Ports of the answering peer.
    pub ports: Ports,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// One UDP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Command 1.
    Ping(Ping),
    /// Command 2.
    Pong(Pong),
    /// Command 3.
    Query(Query),
    /// Command 4.
    QueryHit(QueryHit),
}

impl Message {
    /// The `"IP"` field.
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            Message::Ping(m) => m.ip,
            Message::Pong(m) => m.ip,
            Message::Query(m) => m.ip,
            Message::QueryHit(m) => m.ip,
        }
    }

    /// Replaces the `"IP"` field.
    pub fn set_ip(&mut self, ip: Ipv4Addr) {
        match self {
            Message::Ping(m) => m.ip = ip,
            Message::Pong(m) => m.ip = ip,
            Message::Query(m) => m.ip = ip,
            Message::QueryHit(m) => m.ip = ip,
        }
    }

    /// The command number.
    pub fn command(&self) -> u8 {
        match self {
            Message::Ping(_) => 1,
            Message::Pong(_) => 2,
            Message::Query(_) => 3,
            Message::QueryHit(_) => 4,
        }
    }

    /// Parses one datagram. Pure: never touches a socket.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(ParseError::NotJson("not an object".into()));
        };
        let command = take_i64(&mut obj, "Command")?.ok_or(ParseError::Missing("Command"))?;
        // Other commands (the dial-back ones, 6 and 7, parsed by
        // `DialBack::parse`) have no "IP".
        if !(1..=4).contains(&command) {
            return Err(ParseError::UnknownCommand(command));
        }
        let ip = match obj.remove("IP") {
            Some(Value::String(s)) => s.parse().map_err(|_| ParseError::Invalid("IP"))?,
            Some(_) => return Err(ParseError::Invalid("IP")),
            None => return Err(ParseError::Missing("IP")),
        };
        let ports = Ports {
            udp: take_port(&mut obj, "UdpPort")?,
            tcp: take_port(&mut obj, "TcpPort")?,
        };
        match command {
            1 => {
                let ttl = take_i64(&mut obj, "TTL")?.ok_or(ParseError::Missing("TTL"))?;
                Ok(Message::Ping(Ping {
                    ip,
                    ttl,
                    ports,
                    extra: obj,
                }))
            }
            2 => Ok(Message::Pong(Pong {
                ip,
                ports,
                extra: obj,
            })),
            3 => {
                let text = match obj.remove("Contents") {
                    Some(Value::String(s)) => s,
                    Some(_) => return Err(ParseError::Invalid("Contents")),
                    None => return Err(ParseError::Missing("Contents")),
                };
                let id = take_u64(&mut obj, "Id")?;
                Ok(Message::Query(Query {
                    ip,
                    text,
                    id,
                    ports,
                    extra: obj,
                }))
            }
            4 => {
                let names = match obj.remove("Contents") {
                    Some(Value::Array(items)) => items
                        .into_iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s),
                            _ => Err(ParseError::Invalid("Contents")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(_) => return Err(ParseError::Invalid("Contents")),
                    None => return Err(ParseError::Missing("Contents")),
                };
                let sizes = take_parallel(&mut obj, "Sizes", names.len(), |v| v.as_u64());
                let hashes = take_parallel(&mut obj, "Hashes", names.len(), |v| {
                    v.as_str().and_then(parse_hex32)
                });
                let id = take_u64(&mut obj, "Id")?;
                let more = matches!(obj.remove("More"), Some(Value::Bool(true)));
                let files = names
                    .into_iter()
                    .enumerate()
                    .map(|(i, name)| HitFile {
                        name,
                        size: sizes.as_ref().and_then(|s| s[i]),
                        hash: hashes.as_ref().and_then(|h| h[i]),
                    })
                    .collect();
                Ok(Message::QueryHit(QueryHit {
                    ip,
                    files,
                    id,
                    more,
                    ports,
                    extra: obj,
                }))
            }
            other => Err(ParseError::UnknownCommand(other)),
        }
    }

    /// Encodes the message as the classic program writes JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut fields: Vec<(&str, Value)> = Vec::with_capacity(8);
        let (ports, extra) = match self {
            Message::Ping(m) => {
                fields.push(("TTL", Value::from(m.ttl)));
                (m.ports, &m.extra)
            }
            Message::Pong(m) => (m.ports, &m.extra),
            Message::Query(m) => {
                fields.push(("Contents", Value::from(m.text.clone())));
                if let Some(id) = m.id {
                    fields.push(("Id", Value::from(id)));
                }
                (m.ports, &m.extra)
            }
            Message::QueryHit(m) => {
                let names: Vec<Value> = m.files.iter().map(|f| f.name.clone().into()).collect();
                fields.push(("Contents", Value::Array(names)));
                if m.files.iter().any(|f| f.size.is_some()) {
                    let sizes = m
                        .files
                        .iter()
                        .map(|f| f.size.map_or(Value::Null, Value::from));
                    fields.push(("Sizes", Value::Array(sizes.collect())));
                }
                if m.files.iter().any(|f| f.hash.is_some()) {
                    let hashes = m
                        .files
                        .iter()
                        .map(|f| f.hash.map_or(Value::Null, |h| Value::from(hex32(&h))));
                    fields.push(("Hashes", Value::Array(hashes.collect())));
                }
                if let Some(id) = m.id {
                    fields.push(("Id", Value::from(id)));
                }
                if m.more {
                    fields.push(("More", Value::Bool(true)));
                }
                (m.ports, &m.extra)
            }
        };
        fields.push(("Command", Value::from(self.command())));
        fields.push(("IP", Value::from(self.ip().to_string())));
        if let Some(p) = ports.udp {
            fields.push(("UdpPort", Value::from(p)));
        }
        if let Some(p) = ports.tcp {
            fields.push(("TcpPort", Value::from(p)));
        }
        for (k, v) in extra {
            if !fields.iter().any(|(f, _)| f == k) {
                fields.push((k.as_str(), v.clone()));
            }
        }
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(128);
        out.push(b'{');
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write_py(&mut out, &Value::from(*k));
            out.extend_from_slice(b": ");
            write_py(&mut out, v);
        }
        out.push(b'}');
        out
    }
}

/// Serde formatter that writes `", "` and `": "` as Python's `json.dumps`.
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn write_py(out: &mut Vec<u8>, v: &Value) {
    let mut ser = serde_json::Serializer::with_formatter(out, PyFormatter);
    // Writing a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(v, &mut ser);
}

fn take_i64(obj: &mut Map<String, Value>, key: &'static str) -> Result<Option<i64>, ParseError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(ParseError::Invalid(key)),
    }
}

fn take_u64(obj: &mut Map<String, Value>, key: &'static str) -> Result<Option<u64>, ParseError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(ParseError::Invalid(key)),
    }
}

fn take_port(obj: &mut Map<String, Value>, key: &'static str) -> Result<Option<u16>, ParseError> {
    match take_u64(obj, key)? {
        None => Ok(None),
        Some(p) if (1..=u16::MAX as u64).contains(&p) => Ok(Some(p as u16)),
        Some(_) => Err(ParseError::Invalid(key)),
    }
}

/// An optional array parallel to `"Contents"`; ignored (with its entries
/// `None`) when it has the wrong length or type.
fn take_parallel<T>(
    obj: &mut Map<String, Value>,
    key: &str,
    len: usize,
    f: impl Fn(&Value) -> Option<T>,
) -> Option<Vec<Option<T>>> {
    match obj.remove(key) {
        Some(Value::Array(items)) if items.len() == len => Some(items.iter().map(f).collect()),
        _ => None,
    }
}

/// Lowercase hex of a 32-byte hash.
pub fn hex32(h: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses 64 hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Splits the files of one answer into QueryHits that each encode to at
/// most `limit` bytes. Every part but the last has `more` set. A file whose
/// name alone cannot fit is left out. Always returns at least one message
/// (an empty answer is still an answer).
///
/// Linear in the number of files: sizes are added up name by name (see
/// `HitSizer`) instead of encoding the datagram again after each name.
pub fn split_hits(template: &QueryHit, files: &[HitFile], limit: usize) -> Vec<QueryHit> {
    let parts = split_hit_indices(template, files, limit);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, idx)| QueryHit {
            files: idx.into_iter().map(|j| files[j].clone()).collect(),
            more: i + 1 < n,
            ..template.clone()
        })
        .collect()
}

/// The parts [`split_hits`] makes, as indices into `files`.
pub(crate) fn split_hit_indices(
    template: &QueryHit,
    files: &[HitFile],
    limit: usize,
) -> Vec<Vec<usize>> {
    let sizer = HitSizer::new(template);
    let mut parts = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut acc = PartSize::default();
    for (i, f) in files.iter().enumerate() {
        let item = ItemSize::of(f);
        acc.add(&item);
        current.push(i);
        if sizer.len(&acc) <= limit {
            continue;
        }
        acc.remove(&item);
        current.pop();
        if current.is_empty() {
            tracing::debug!(name = %f.name, "file name too long for one datagram, left out of hits");
            continue;
        }
        parts.push(std::mem::take(&mut current));
        acc = PartSize::default();
        acc.add(&item);
        current.push(i);
        if sizer.len(&acc) > limit {
            tracing::debug!(name = %f.name, "file name too long for one datagram, left out of hits");
            current.clear();
            acc = PartSize::default();
        }
    }
    parts.push(current);
    parts
}

/// The encoded length of one file's entries in a QueryHit: its name in
/// `"Contents"`, its size in `"Sizes"` and its hash in `"Hashes"` (each
/// without separators; `null` when absent).
#[derive(Debug, Clone, Copy)]
struct ItemSize {
    name: usize,
    size: usize,
    hash: usize,
    has_size: bool,
    has_hash: bool,
}

/// `null`.
const NULL_LEN: usize = 4;
/// A quoted hash of 64 hex digits.
const HASH_LEN: usize = 66;

impl ItemSize {
    fn of(f: &HitFile) -> Self {
        ItemSize {
            name: json_str_len(&f.name),
            size: f.size.map_or(NULL_LEN, decimal_len),
            hash: if f.hash.is_some() { HASH_LEN } else { NULL_LEN },
            has_size: f.size.is_some(),
            has_hash: f.hash.is_some(),
        }
    }
}

/// Running totals of the files of one part.
#[derive(Debug, Clone, Copy, Default)]
struct PartSize {
    count: usize,
    names: usize,
    sizes: usize,
    hashes: usize,
    with_size: usize,
    with_hash: usize,
}

impl PartSize {
    fn add(&mut self, i: &ItemSize) {
        self.count += 1;
        self.names += i.name;
        self.sizes += i.size;
        self.hashes += i.hash;
        self.with_size += usize::from(i.has_size);
        self.with_hash += usize::from(i.has_hash);
    }
    fn remove(&mut self, i: &ItemSize) {
        self.count -= 1;
        self.names -= i.name;
        self.sizes -= i.size;
        self.hashes -= i.hash;
        self.with_size -= usize::from(i.has_size);
        self.with_hash -= usize::from(i.has_hash);
    }
}

/// The encoded length of a QueryHit built from a template, computed from
/// the lengths of its files' entries. The four shapes a non-empty part can
/// take (with or without `"Sizes"`, with or without `"Hashes"`) are encoded
/// once, with one reference file, so the template's fields (including any
/// it carries among its unknown fields) count exactly as
/// [`Message::encode`] writes them.
pub(crate) struct HitSizer {
    /// Length with one reference file, by (sizes present, hashes present);
    /// the reference file's own entries subtracted.
    base: [[usize; 2]; 2],
}

impl HitSizer {
    pub(crate) fn new(template: &QueryHit) -> Self {
        let mut base = [[0; 2]; 2];
        for (s, row) in base.iter_mut().enumerate() {
            for (h, cell) in row.iter_mut().enumerate() {
                let reference = HitFile {
                    name: String::new(),
                    size: (s == 1).then_some(0),
                    hash: (h == 1).then_some([0; 32]),
                };
                let m = Message::QueryHit(QueryHit {
                    files: vec![reference],
                    more: true,
                    ..template.clone()
                });
                let own = 2 + if s == 1 { 1 } else { 0 } + if h == 1 { HASH_LEN } else { 0 };
                *cell = m.encode().len() - own;
            }
        }
        HitSizer { base }
    }

    /// The length of the part encoded with `"More": true`; `part` must
    /// hold at least one file.
    fn len(&self, part: &PartSize) -> usize {
        let s = part.with_size > 0;
        let h = part.with_hash > 0;
        let arrays = 1 + usize::from(s) + usize::from(h);
        self.base[usize::from(s)][usize::from(h)]
            + part.names
            + if s { part.sizes } else { 0 }
            + if h { part.hashes } else { 0 }
            + part.count.saturating_sub(1) * 2 * arrays
    }
}

/// The length of `s` as a JSON string, quotes included, escaped as
/// `serde_json` escapes it.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Number of decimal digits of `n`.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

#[cfg(test)]
mod tests;
