//! The UDP messages: classic JSON objects plus rutella's extension fields.
//!
//! Parsing and encoding are pure functions over bytes. Encoding writes
//! JSON the way the classic program does (Python's `json.dumps`: keys in
//! order, a space after `:` and `,`), so the examples of the wire format
//! come out byte for byte.

mod dialback;

pub use dialback::{parse_token, token_hex, DialBack, DIALBACK_REQUEST, DIALBACK_RESULT};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

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
    /// `"Command"` is not 1 to 5, 8 or 9.
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
    pub ip: IpAddr,
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
    pub ip: IpAddr,
    /// Ports of the sender.
    pub ports: Ports,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// `{"Command": 3}`: a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The querier.
    pub ip: IpAddr,
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
    pub ip: IpAddr,
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

/// Which step of hole punching a [`Punch`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchStep {
    /// `"Ask"`: a downloader asks a proxy of the firewalled peer.
    Ask,
    /// `"Go"`: the proxy tells a side whom to punch towards, and when.
    Go,
}

/// Which end of the transfer the receiver of a go is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchRole {
    /// `"Client"`: the downloader, which sends the request once connected.
    Client,
    /// `"Server"`: the firewalled uploader, which serves it.
    Server,
}

/// `{"Command": 8}`: hole punching. Sent by the path machine once wired;
/// see `docs/PROTOCOL.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct Punch {
    /// `"IP"`: the sender.
    pub ip: IpAddr,
    /// `"Step"`.
    pub step: PunchStep,
    /// `"PushId"` (ask): the firewalled peer's push id, 16 hex digits.
    pub push_id: Option<u64>,
    /// `"Token"`: names this punch in both steps, 16 hex digits.
    pub token: u64,
    /// The ask's `"TcpPort"`: the downloader's TCP port as reachable.
    pub ports: Ports,
    /// `"Peer"` (go): the other side's external TCP address, `"IP:port"`.
    pub peer: Option<SocketAddr>,
    /// `"StartIn"` (go): milliseconds until both sides start.
    pub start_in: Option<std::time::Duration>,
    /// `"Role"` (go): which end of the transfer the receiver is.
    pub role: Option<PunchRole>,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// `{"Command": 9}`: meet at a relay. Sent by the path machine once
/// wired; see `docs/PROTOCOL.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayInvite {
    /// `"IP"`: the downloader (as the proxy saw it, once forwarded).
    pub ip: IpAddr,
    /// `"PushId"`: the firewalled peer's push id, on the way to its proxy.
    pub push_id: Option<u64>,
    /// `"Circuit"`: the circuit id, 32 hex digits.
    pub circuit: [u8; 16],
    /// `"Relay"`: the relay's TCP address, `"IP:port"`.
    pub relay: SocketAddr,
    /// Unknown fields.
    pub extra: Map<String, Value>,
}

/// `{"Command": 5}`: a downloader asks a peer that cannot be connected to
/// (through a push proxy, see [`crate::push`]) to open a TCP connection
/// to it and introduce it with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// `"IP"`: absent from the downloader; the proxy sets it to the
    /// downloader's address as the proxy saw it.
    pub ip: Option<IpAddr>,
    /// `"PushId"`: the push id of the peer asked to connect.
    pub push_id: u64,
    /// `"Token"`: what the pushed connection starts with, so that the
    /// downloader knows which request it answers.
    pub token: u64,
    /// `"TcpPort"`: the downloader's TCP port, where to connect.
    pub tcp_port: u16,
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
    /// Command 8.
    Punch(Punch),
    /// Command 9.
    Relay(RelayInvite),
    /// Command 5.
    Push(Push),
}

impl Message {
    /// The `"IP"` field.
    pub fn ip(&self) -> IpAddr {
        match self {
            Message::Ping(m) => m.ip,
            Message::Pong(m) => m.ip,
            Message::Query(m) => m.ip,
            Message::QueryHit(m) => m.ip,
            Message::Punch(m) => m.ip,
            Message::Relay(m) => m.ip,
            Message::Push(m) => m.ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// Replaces the `"IP"` field.
    pub fn set_ip(&mut self, ip: IpAddr) {
        match self {
            Message::Ping(m) => m.ip = ip,
            Message::Pong(m) => m.ip = ip,
            Message::Query(m) => m.ip = ip,
            Message::QueryHit(m) => m.ip = ip,
            Message::Punch(m) => m.ip = ip,
            Message::Relay(m) => m.ip = ip,
            // A push never speaks for its sender: its "IP" is set by the
            // proxy, to the address the downloader was seen at.
            Message::Push(_) => {}
        }
    }

    /// The command number.
    pub fn command(&self) -> u8 {
        match self {
            Message::Ping(_) => 1,
            Message::Pong(_) => 2,
            Message::Query(_) => 3,
            Message::QueryHit(_) => 4,
            Message::Punch(_) => 8,
            Message::Relay(_) => 9,
            Message::Push(_) => 5,
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
        if command == 5 {
            return parse_push(&mut obj).map(Message::Push);
        }
        // Other commands (the dial-back ones, 6 and 7, parsed by
        // `DialBack::parse`) have no "IP".
        if !matches!(command, 1..=4 | 8 | 9) {
            return Err(ParseError::UnknownCommand(command));
        }
        let ip = match obj.remove("IP") {
            Some(Value::String(s)) => s
                .parse()
                .map(crate::addr::normalize_ip)
                .map_err(|_| ParseError::Invalid("IP"))?,
            Some(_) => return Err(ParseError::Invalid("IP")),
            None => return Err(ParseError::Missing("IP")),
        };
        let ports = Ports {
            udp: take_port(&mut obj, "UdpPort")?,
            tcp: take_port(&mut obj, "TcpPort")?,
        };
        // Classic peers are IPv4 only: an IPv6 "IP" comes from a rutella
        // peer, which always writes "UdpPort".
        if ip.is_ipv6() && !ports.is_rutella() {
            return Err(ParseError::Invalid("IP"));
        }
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
            8 => {
                let step = match obj.remove("Step") {
                    Some(Value::String(s)) if s == "Ask" => PunchStep::Ask,
                    Some(Value::String(s)) if s == "Go" => PunchStep::Go,
                    Some(_) => return Err(ParseError::Invalid("Step")),
                    None => return Err(ParseError::Missing("Step")),
                };
                let push_id = take_hex64(&mut obj, "PushId")?;
                let token = take_hex64(&mut obj, "Token")?.ok_or(ParseError::Missing("Token"))?;
                let peer = take_addr(&mut obj, "Peer")?;
                let start_in = take_u64(&mut obj, "StartIn")?.map(std::time::Duration::from_millis);
                let role = match obj.remove("Role") {
                    None => None,
                    Some(Value::String(s)) if s == "Client" => Some(PunchRole::Client),
                    Some(Value::String(s)) if s == "Server" => Some(PunchRole::Server),
                    Some(_) => return Err(ParseError::Invalid("Role")),
                };
                match step {
                    PunchStep::Ask if push_id.is_none() => {
                        return Err(ParseError::Missing("PushId"))
                    }
                    PunchStep::Ask if ports.tcp.is_none() => {
                        return Err(ParseError::Missing("TcpPort"))
                    }
                    PunchStep::Go if peer.is_none() => return Err(ParseError::Missing("Peer")),
                    PunchStep::Go if start_in.is_none() => {
                        return Err(ParseError::Missing("StartIn"))
                    }
                    PunchStep::Go if role.is_none() => return Err(ParseError::Missing("Role")),
                    _ => {}
                }
                Ok(Message::Punch(Punch {
                    ip,
                    step,
                    push_id,
                    token,
                    ports,
                    peer,
                    start_in,
                    role,
                    extra: obj,
                }))
            }
            9 => {
                let push_id = take_hex64(&mut obj, "PushId")?;
                let circuit = match obj.remove("Circuit") {
                    Some(Value::String(s)) => {
                        parse_hex128(&s).ok_or(ParseError::Invalid("Circuit"))?
                    }
                    Some(_) => return Err(ParseError::Invalid("Circuit")),
                    None => return Err(ParseError::Missing("Circuit")),
                };
                let relay = take_addr(&mut obj, "Relay")?.ok_or(ParseError::Missing("Relay"))?;
                if ports.udp.is_some() || ports.tcp.is_some() {
                    return Err(ParseError::Invalid("TcpPort"));
                }
                Ok(Message::Relay(RelayInvite {
                    ip,
                    push_id,
                    circuit,
                    relay,
                    extra: obj,
                }))
            }
            other => Err(ParseError::UnknownCommand(other)),
        }
    }

    /// Encodes the message as the classic program writes JSON.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(None)
    }

    /// [`Message::encode`], with `"IP"` set to `ip` if given (as
    /// [`Message::set_ip`] then `encode`, without copying the message).
    pub(crate) fn encode_as(&self, ip: Option<IpAddr>) -> Vec<u8> {
        let mut fields: Vec<(&str, Cow<'_, Value>)> = Vec::with_capacity(8);
        let empty = Map::new();
        let (ports, extra) = match self {
            Message::Push(m) => {
                fields.push(("PushId", own(Value::from(hex16(m.push_id)))));
                fields.push(("Token", own(Value::from(hex16(m.token)))));
                (
                    Ports {
                        udp: None,
                        tcp: Some(m.tcp_port),
                    },
                    &empty,
                )
            }
            Message::Ping(m) => {
                fields.push(("TTL", own(Value::from(m.ttl))));
                (m.ports, &m.extra)
            }
            Message::Pong(m) => (m.ports, &m.extra),
            Message::Query(m) => {
                fields.push(("Contents", own(Value::from(m.text.clone()))));
                if let Some(id) = m.id {
                    fields.push(("Id", own(Value::from(id))));
                }
                (m.ports, &m.extra)
            }
            Message::QueryHit(m) => {
                let names: Vec<Value> = m.files.iter().map(|f| f.name.clone().into()).collect();
                fields.push(("Contents", own(Value::Array(names))));
                if m.files.iter().any(|f| f.size.is_some()) {
                    let sizes = m
                        .files
                        .iter()
                        .map(|f| f.size.map_or(Value::Null, Value::from));
                    fields.push(("Sizes", own(Value::Array(sizes.collect()))));
                }
                if m.files.iter().any(|f| f.hash.is_some()) {
                    let hashes = m
                        .files
                        .iter()
                        .map(|f| f.hash.map_or(Value::Null, |h| Value::from(hex32(&h))));
                    fields.push(("Hashes", own(Value::Array(hashes.collect()))));
                }
                if let Some(id) = m.id {
                    fields.push(("Id", own(Value::from(id))));
                }
                if m.more {
                    fields.push(("More", own(Value::Bool(true))));
                }
                (m.ports, &m.extra)
            }
            Message::Punch(m) => {
                let step = match m.step {
                    PunchStep::Ask => "Ask",
                    PunchStep::Go => "Go",
                };
                fields.push(("Step", own(Value::from(step))));
                if let Some(id) = m.push_id {
                    fields.push(("PushId", own(Value::from(format!("{id:016x}")))));
                }
                fields.push(("Token", own(Value::from(format!("{:016x}", m.token)))));
                if let Some(p) = m.peer {
                    fields.push(("Peer", own(Value::from(p.to_string()))));
                }
                if let Some(d) = m.start_in {
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    fields.push(("StartIn", own(Value::from(ms))));
                }
                if let Some(r) = m.role {
                    let r = match r {
                        PunchRole::Client => "Client",
                        PunchRole::Server => "Server",
                    };
                    fields.push(("Role", own(Value::from(r))));
                }
                (m.ports, &m.extra)
            }
            Message::Relay(m) => {
                if let Some(id) = m.push_id {
                    fields.push(("PushId", own(Value::from(format!("{id:016x}")))));
                }
                let mut hex = String::with_capacity(32);
                for b in m.circuit {
                    let _ = write!(hex, "{b:02x}");
                }
                fields.push(("Circuit", own(Value::from(hex))));
                fields.push(("Relay", own(Value::from(m.relay.to_string()))));
                (Ports::default(), &m.extra)
            }
        };
        fields.push(("Command", own(Value::from(self.command()))));
        match self {
            Message::Push(Push { ip: None, .. }) => {}
            // A push never speaks for its sender (see `set_ip`).
            Message::Push(_) => fields.push(("IP", own(Value::from(self.ip().to_string())))),
            _ => fields.push((
                "IP",
                own(Value::from(ip.unwrap_or_else(|| self.ip()).to_string())),
            )),
        }
        if let Some(p) = ports.udp {
            fields.push(("UdpPort", own(Value::from(p))));
        }
        if let Some(p) = ports.tcp {
            fields.push(("TcpPort", own(Value::from(p))));
        }
        for (k, v) in extra {
            if !fields.iter().any(|(f, _)| f == k) {
                fields.push((k.as_str(), Cow::Borrowed(v)));
            }
        }
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(128);
        out.push(b'{');
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write_py(&mut out, *k);
            out.extend_from_slice(b": ");
            write_py(&mut out, &**v);
        }
        out.push(b'}');
        out
    }
}

/// A value made for one encoding.
fn own(v: Value) -> Cow<'static, Value> {
    Cow::Owned(v)
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

fn write_py<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
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

/// An optional 64-bit value written as exactly 16 lowercase hex digits.
fn take_hex64(obj: &mut Map<String, Value>, key: &'static str) -> Result<Option<u64>, ParseError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => parse_hex16(&s).map(Some).ok_or(ParseError::Invalid(key)),
        Some(_) => Err(ParseError::Invalid(key)),
    }
}

/// An optional `"IP:port"` with a port other than 0.
fn take_addr(
    obj: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<SocketAddr>, ParseError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => match s.parse::<SocketAddr>().map(crate::addr::normalize) {
            Ok(a) if a.port() != 0 => Ok(Some(a)),
            _ => Err(ParseError::Invalid(key)),
        },
        Some(_) => Err(ParseError::Invalid(key)),
    }
}

/// 16 bytes from exactly 32 lowercase hex digits.
fn parse_hex128(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
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

/// The fields of a Push (Command 5), whose `"IP"` is optional.
fn parse_push(obj: &mut Map<String, Value>) -> Result<Push, ParseError> {
    let ip = match obj.remove("IP") {
        Some(Value::String(s)) => Some(s.parse().map_err(|_| ParseError::Invalid("IP"))?),
        Some(_) => return Err(ParseError::Invalid("IP")),
        None => None,
    };
    let push_id = take_hex64(obj, "PushId")?.ok_or(ParseError::Missing("PushId"))?;
    let token = take_hex64(obj, "Token")?.ok_or(ParseError::Missing("Token"))?;
    let tcp_port = take_port(obj, "TcpPort")?.ok_or(ParseError::Missing("TcpPort"))?;
    Ok(Push {
        ip,
        push_id,
        token,
        tcp_port,
    })
}

/// A 64-bit number as 16 lowercase hex digits (push ids, tokens).
pub fn hex16(n: u64) -> String {
    format!("{n:016x}")
}

/// Parses exactly 16 lowercase hex digits.
pub fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
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
