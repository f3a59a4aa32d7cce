//! The bytes of the rutella transfer protocol, without any I/O.
//!
//! Every function here works on byte slices, so the decoders can be fuzzed
//! and property-tested. All integers are little-endian, like the classic
//! exchange's.
//!
//! ```text
//! client hello   8 bytes   MAGIC (7 bytes) + version (1 byte)
//! server hello   8 bytes   MAGIC (7 bytes) + version (1 byte)
//! request       49 bytes   kind u8 | hash [32] | offset u64 | len u64
//! response      24 bytes   status u8 | group_log u8 | 0 [6] | size u64 | len u64
//!                          followed by `len` payload bytes
//! ```

/// First bytes of every rutella connection, in both directions.
///
/// Read as a classic request, the first four bytes are a partial size of
/// 0xFF54_5552 bytes (just under 4 GiB), and the fifth is the first byte of
/// the file name: `0xFF`, which never occurs in UTF-8. A classic request
/// whose name is UTF-8 therefore can never be taken for a rutella hello.
pub const MAGIC: [u8; 7] = [b'R', b'U', b'T', 0xFF, 0xFF, b'L', b'A'];

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// Length of a hello.
pub const HELLO_LEN: usize = 8;
/// Length of an encoded [`Request`].
pub const REQUEST_LEN: usize = 49;
/// Length of an encoded [`ResponseHeader`].
pub const RESPONSE_LEN: usize = 24;
/// Longest error message a response may carry.
pub const MAX_MESSAGE_LEN: u64 = 1024;
/// Smallest chunk group: 16 KiB (2^14 bytes).
pub const MIN_GROUP_LOG: u8 = 14;
/// Largest chunk group: 16 MiB (2^24 bytes).
pub const MAX_GROUP_LOG: u8 = 24;

/// A malformed protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the message needs.
    #[error("message too short: {got} of {need} bytes")]
    Short {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error("not a rutella hello (wrong magic)")]
    BadMagic,
    /// A version this side does not speak.
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// An unknown request kind.
    #[error("unknown request kind {0}")]
    BadKind(u8),
    /// An unknown response status.
    #[error("unknown response status {0}")]
    BadStatus(u8),
    /// A field that must be zero is not, or a value is out of range.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// How the first bytes of a connection classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// A classic request (a `u32` partial size and a name).
    Classic,
    /// The rutella hello (or, from 7 bytes on, a rutella introduction
    /// other than a pushed connection or a relay circuit).
    Rutella,
    /// A relay circuit's introduction (`RELAY_INTRO`, 7 bytes seen).
    Relay,
    /// A pushed connection's introduction ([`PUSH_MAGIC`]): a peer we
    /// asked to connect to us, followed by the 8-byte token we gave.
    Pushed,
    /// Not enough bytes yet to tell.
    NeedMore,
}

/// The first 8 bytes of a relay circuit's introduction: the first 5 bytes
/// of [`MAGIC`], then `RL` and version 1 (see `rutella_proto::relay`).
pub const RELAY_INTRO: [u8; 8] = [b'R', b'U', b'T', 0xFF, 0xFF, b'R', b'L', 1];

/// The introduction of a pushed connection: the first 5 bytes of
/// [`MAGIC`], then `GV`; a version byte and an 8-byte little-endian token
/// follow.
pub const PUSH_MAGIC: [u8; 7] = [b'R', b'U', b'T', 0xFF, 0xFF, b'G', b'V'];

/// Length of a pushed connection's introduction: magic, version, token.
pub const PUSH_INTRO_LEN: usize = 16;

/// Tells the classic exchange from the rutella protocol by the first bytes
/// received: 5 bytes tell a classic request from a rutella introduction,
/// 7 tell a relay circuit or a pushed connection from the hello.
pub fn detect(prefix: &[u8]) -> Detect {
    let n = prefix.len().min(5);
    if prefix[..n] != MAGIC[..n] {
        return Detect::Classic;
    }
    if n < 5 {
        Detect::NeedMore
    } else if prefix.len() >= 7 && prefix[5..7] == RELAY_INTRO[5..7] {
        Detect::Relay
    } else if prefix.len() >= 7 && prefix[5..7] == PUSH_MAGIC[5..7] {
        Detect::Pushed
    } else {
        Detect::Rutella
    }
}

/// The introduction a pushed connection starts with.
pub fn encode_push_intro(token: u64) -> [u8; PUSH_INTRO_LEN] {
    let mut out = [0u8; PUSH_INTRO_LEN];
    out[..7].copy_from_slice(&PUSH_MAGIC);
    out[7] = VERSION;
    out[8..].copy_from_slice(&token.to_le_bytes());
    out
}

/// The token of a pushed connection's introduction.
pub fn decode_push_intro(buf: &[u8]) -> Result<u64, WireError> {
    let b = take::<PUSH_INTRO_LEN>(buf)?;
    if b[..7] != PUSH_MAGIC {
        return Err(WireError::BadMagic);
    }
    if b[7] != VERSION {
        return Err(WireError::BadVersion(b[7]));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[8..]);
    Ok(u64::from_le_bytes(t))
}

/// Encodes a hello for `version`.
pub fn encode_hello(version: u8) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..7].copy_from_slice(&MAGIC);
    out[7] = version;
    out
}

/// Decodes a hello and returns the version it announces.
pub fn decode_hello(buf: &[u8]) -> Result<u8, WireError> {
    let b = take::<HELLO_LEN>(buf)?;
    if b[..7] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if b[7] == 0 {
        return Err(WireError::BadVersion(0));
    }
    Ok(b[7])
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The chunk-group hashes of the whole file (its verification tree).
    Tree,
    /// The raw bytes `offset .. offset + len`.
    Range {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
}

/// One request of a rutella connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The whole-file BLAKE3 hash of the file wanted.
    pub hash: [u8; 32],
    /// What is wanted of it.
    pub kind: RequestKind,
}

const KIND_TREE: u8 = 1;
const KIND_RANGE: u8 = 2;

impl Request {
    /// Encodes the request.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        let (kind, offset, len) = match self.kind {
            RequestKind::Tree => (KIND_TREE, 0, 0),
            RequestKind::Range { offset, len } => (KIND_RANGE, offset, len),
        };
        out[0] = kind;
        out[1..33].copy_from_slice(&self.hash);
        out[33..41].copy_from_slice(&offset.to_le_bytes());
        out[41..49].copy_from_slice(&len.to_le_bytes());
        out
    }

    /// Decodes a request from the first [`REQUEST_LEN`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Request, WireError> {
        let b = take::<REQUEST_LEN>(buf)?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[1..33]);
        let offset = u64_at(&b, 33);
        let len = u64_at(&b, 41);
        let kind = match b[0] {
            KIND_TREE => {
                if offset != 0 || len != 0 {
                    return Err(WireError::Invalid("a tree request has offset and length 0"));
                }
                RequestKind::Tree
            }
            KIND_RANGE => {
                if offset.checked_add(len).is_none() {
                    return Err(WireError::Invalid("range end past 2^64"));
                }
                RequestKind::Range { offset, len }
            }
            k => return Err(WireError::BadKind(k)),
        };
        Ok(Request { hash, kind })
    }
}

/// The status of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The payload is what was asked for.
    Ok,
    /// No file with that hash is shared here.
    NotFound,
    /// Every upload slot is taken; ask again later.
    Busy,
    /// The request was malformed; the connection closes.
    BadRequest,
    /// The range goes past the end of the file.
    BadRange,
    /// The server failed to read its own file.
    ServerError,
}

impl Status {
    fn to_byte(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::NotFound => 1,
            Status::Busy => 2,
            Status::BadRequest => 3,
            Status::BadRange => 4,
            Status::ServerError => 5,
        }
    }
    fn from_byte(b: u8) -> Result<Status, WireError> {
        Ok(match b {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Busy,
            3 => Status::BadRequest,
            4 => Status::BadRange,
            5 => Status::ServerError,
            b => return Err(WireError::BadStatus(b)),
        })
    }
}

/// The fixed header of every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The outcome.
    pub status: Status,
    /// log2 of the chunk-group size of the tree (tree responses), else 0.
    pub group_log: u8,
    /// The whole file's size (`Ok` responses), else 0.
    pub size: u64,
    /// Payload bytes that follow: the tree, the range, or for an error a
    /// UTF-8 message of at most [`MAX_MESSAGE_LEN`] bytes.
    pub len: u64,
}

impl ResponseHeader {
    /// An error response carrying `message_len` bytes of message.
    pub fn error(status: Status, message_len: u64) -> ResponseHeader {
        ResponseHeader {
            status,
            group_log: 0,
            size: 0,
            len: message_len,
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; RESPONSE_LEN] {
        let mut out = [0u8; RESPONSE_LEN];
        out[0] = self.status.to_byte();
        out[1] = self.group_log;
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Decodes a header from the first [`RESPONSE_LEN`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<ResponseHeader, WireError> {
        let b = take::<RESPONSE_LEN>(buf)?;
        let status = Status::from_byte(b[0])?;
        if b[2..8].iter().any(|&x| x != 0) {
            return Err(WireError::Invalid("reserved header bytes are not zero"));
        }
        let h = ResponseHeader {
            status,
            group_log: b[1],
            size: u64_at(&b, 8),
            len: u64_at(&b, 16),
        };
        if status != Status::Ok && h.len > MAX_MESSAGE_LEN {
            return Err(WireError::Invalid("error message too long"));
        }
        if h.group_log != 0 && !(MIN_GROUP_LOG..=MAX_GROUP_LOG).contains(&h.group_log) {
            return Err(WireError::Invalid("chunk-group size out of range"));
        }
        Ok(h)
    }
}

/// Length of the fixed part of a classic request: the `u32` partial size.
pub const CLASSIC_HEADER_LEN: usize = 4;

/// Why a classic request names no file that could be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClassicNameError {
    /// Fewer than [`CLASSIC_HEADER_LEN`] bytes.
    #[error("classic request shorter than its 4-byte header")]
    Short,
    /// The name is not UTF-8.
    #[error("file name is not UTF-8")]
    NotUtf8,
    /// The name is empty.
    #[error("no file name")]
    Empty,
}

/// A classic request: the size of the partial copy the client holds, and
/// the name of the file it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassicRequest<'a> {
    /// Bytes the client already has.
    pub partial: u32,
    /// The file name, as sent.
    pub name: &'a str,
}

/// Decodes the name part of a classic request (everything after the
/// 4-byte header that arrived with it).
pub fn decode_classic_name(name: &[u8]) -> Result<&str, ClassicNameError> {
    let name = std::str::from_utf8(name).map_err(|_| ClassicNameError::NotUtf8)?;
    if name.is_empty() {
        return Err(ClassicNameError::Empty);
    }
    Ok(name)
}

/// Decodes a whole classic request: the little-endian partial size, then
/// the name to the end of `buf`.
pub fn decode_classic_request(buf: &[u8]) -> Result<ClassicRequest<'_>, ClassicNameError> {
    let head = take::<CLASSIC_HEADER_LEN>(buf).map_err(|_| ClassicNameError::Short)?;
    let name = decode_classic_name(&buf[CLASSIC_HEADER_LEN..])?;
    Ok(ClassicRequest {
        partial: u32::from_le_bytes(head),
        name,
    })
}

/// How the first bytes of a connection that may be an HTTP request read
/// (see [`detect_http`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpDetect {
    /// A whole HTTP/1.x request line (`GET /… HTTP/1.x` or `HEAD /…
    /// HTTP/1.x`, then CRLF or LF).
    Http,
    /// Not an HTTP request line: a classic request (its partial size
    /// happens to spell `GET ` or `HEAD`, or not).
    Classic,
    /// A prefix of an HTTP request line so far: more bytes are needed.
    /// A classic request whose name reads as such a prefix (a name that
    /// starts with `/`, or with ` /` after `HEAD`) stays here; the caller
    /// takes it for classic once no more bytes come within its deadline.
    NeedMore,
}

/// Tells a Gnutella `GIV INDEX:GUID/NAME` line (a pushed servent's first
/// line) from a classic request whose partial size spells `GIV ` (0.54 GB
/// into a file): `GIV `, 1 to 10 digits, `:`, 32 hexadecimal digits, `/`,
/// then a name without control bytes up to LF, within [`HTTP_LINE_MAX`]
/// bytes. It is reported as [`HttpDetect::Http`] (the HTTP hook takes it).
fn detect_giv(p: &[u8]) -> HttpDetect {
    let mut i = 0;
    for &c in b"GIV " {
        match p.get(i) {
            None => return HttpDetect::NeedMore,
            Some(&b) if b == c => i += 1,
            Some(_) => return HttpDetect::Classic,
        }
    }
    let digits = i;
    while p.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        if i - digits > 10 {
            return HttpDetect::Classic;
        }
    }
    match p.get(i) {
        None => return HttpDetect::NeedMore,
        Some(b':') if i > digits => i += 1,
        Some(_) => return HttpDetect::Classic,
    }
    for _ in 0..32 {
        match p.get(i) {
            None => return HttpDetect::NeedMore,
            Some(b) if b.is_ascii_hexdigit() => i += 1,
            Some(_) => return HttpDetect::Classic,
        }
    }
    match p.get(i) {
        None => return HttpDetect::NeedMore,
        Some(b'/') => i += 1,
        Some(_) => return HttpDetect::Classic,
    }
    loop {
        if i >= HTTP_LINE_MAX {
            return HttpDetect::Classic;
        }
        match p.get(i) {
            None => return HttpDetect::NeedMore,
            Some(b'\n') => return HttpDetect::Http,
            Some(b'\r') | Some(0x20..) => i += 1,
            Some(_) => return HttpDetect::Classic,
        }
    }
}

/// Longest HTTP request line [`detect_http`] waits for; a longer one is
/// classic (the Gnutella HTTP parser refuses lines this long anyway).
pub const HTTP_LINE_MAX: usize = 2048;

/// Tells an HTTP request from a classic request whose 4-byte partial size
/// spells `GET ` or `HEAD` (0.54 or 1.14 GB into a file), by the whole request
/// line: `GET` or `HEAD`, one space, a target that starts with `/` and
/// holds only visible ASCII, one space, `HTTP/1.0` or `HTTP/1.1`, then CRLF
/// or LF, within [`HTTP_LINE_MAX`] bytes. Anything that departs from this
/// is classic as soon as it departs.
pub fn detect_http(prefix: &[u8]) -> HttpDetect {
    enum Step {
        Done,
        More,
        No,
    }
    fn lit(p: &[u8], i: &mut usize, l: &[u8]) -> Step {
        for &c in l {
            match p.get(*i) {
                None => return Step::More,
                Some(&b) if b == c => *i += 1,
                Some(_) => return Step::No,
            }
        }
        Step::Done
    }
    macro_rules! step {
        ($e:expr) => {
            match $e {
                Step::Done => {}
                Step::More => return HttpDetect::NeedMore,
                Step::No => return HttpDetect::Classic,
            }
        };
    }
    if prefix.starts_with(b"GI") {
        return detect_giv(prefix);
    }
    let mut i = 0;
    let method: &[u8] = match prefix.first() {
        None => return HttpDetect::NeedMore,
        Some(b'G') => b"GET /",
        Some(b'H') => b"HEAD /",
        Some(_) => return HttpDetect::Classic,
    };
    step!(lit(prefix, &mut i, method));
    loop {
        if i >= HTTP_LINE_MAX {
            return HttpDetect::Classic;
        }
        match prefix.get(i) {
            None => return HttpDetect::NeedMore,
            Some(b' ') => break,
            Some(0x21..=0x7E) => i += 1,
            Some(_) => return HttpDetect::Classic,
        }
    }
    step!(lit(prefix, &mut i, b" HTTP/1."));
    match prefix.get(i) {
        None => return HttpDetect::NeedMore,
        Some(b'0' | b'1') => i += 1,
        Some(_) => return HttpDetect::Classic,
    }
    if prefix.get(i) == Some(&b'\r') {
        i += 1;
    }
    match prefix.get(i) {
        _ if i >= HTTP_LINE_MAX => HttpDetect::Classic,
        None => HttpDetect::NeedMore,
        Some(b'\n') => HttpDetect::Http,
        Some(_) => HttpDetect::Classic,
    }
}

fn take<const N: usize>(buf: &[u8]) -> Result<[u8; N], WireError> {
    buf.get(..N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(WireError::Short {
            got: buf.len(),
            need: N,
        })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Ok),
            Just(Status::NotFound),
            Just(Status::Busy),
            Just(Status::BadRequest),
            Just(Status::BadRange),
            Just(Status::ServerError),
        ]
    }

    /// Partial sizes for classic requests: most of them spell the first
    /// one to four bytes of [`MAGIC`] (the rest random), so that the branch
    /// where a classic request looks like a rutella hello is reached.
    fn classic_partial() -> impl Strategy<Value = u32> {
        let magic = u32::from_le_bytes([MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3]]);
        prop_oneof![
            1 => any::<u32>(),
            3 => Just(magic),
            2 => (1u32..4, any::<u32>()).prop_map(move |(k, r)| {
                // Keep the first k bytes of the magic, randomise the rest.
                let keep = (1u32 << (8 * k)) - 1;
                (magic & keep) | (r & !keep)
            }),
        ]
    }

    proptest! {
        #[test]
        fn request_round_trips(hash in any::<[u8; 32]>(), offset in any::<u64>(), len in any::<u64>(), tree in any::<bool>()) {
            let len = len.min(u64::MAX - offset);
            let kind = if tree { RequestKind::Tree } else { RequestKind::Range { offset, len } };
            let r = Request { hash, kind };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn response_round_trips(st in status(), size in any::<u64>(), len in 0..=MAX_MESSAGE_LEN, g in MIN_GROUP_LOG..=MAX_GROUP_LOG) {
            let h = ResponseHeader { status: st, group_log: g, size, len };
            prop_assert_eq!(ResponseHeader::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Request::decode(&bytes);
            let _ = ResponseHeader::decode(&bytes);
            let _ = decode_hello(&bytes);
            let _ = detect(&bytes);
        }

        #[test]
        fn classic_requests_are_never_rutella(partial in classic_partial(), name in ".{1,64}") {
            let mut req = partial.to_le_bytes().to_vec();
            req.extend_from_slice(name.as_bytes());
            for cut in 0..=req.len() {
                prop_assert_ne!(detect(&req[..cut]), Detect::Rutella);
            }
            // A whole request is always told apart, and as classic.
            prop_assert_eq!(detect(&req), Detect::Classic);
            // A partial size that spells a prefix of the magic keeps the
            // detector waiting until the first byte of the name decides.
            let agree = req.iter().zip(MAGIC.iter()).take_while(|(a, b)| a == b).count();
            for cut in 0..=agree.min(4) {
                prop_assert_eq!(detect(&req[..cut]), Detect::NeedMore);
            }
        }

        #[test]
        fn http_detection_is_exact(partial in any::<u32>(), name in "[^/ ].{0,64}", target in "/[!-~]{0,64}", v in 0u8..2, cr in any::<bool>()) {
            // A classic request whose name does not start like a request
            // target is classic once whole, whatever its partial size.
            let mut req = partial.to_le_bytes().to_vec();
            req.extend_from_slice(name.as_bytes());
            prop_assert_eq!(detect_http(&req), HttpDetect::Classic);
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(name.as_bytes());
            prop_assert_eq!(detect_http(&req), HttpDetect::Classic);
            // Every request line is HTTP once whole, and undecided before.
            for m in ["GET ", "HEAD "] {
                let line = format!("{m}{target} HTTP/1.{v}{}\n", if cr { "\r" } else { "" });
                let b = line.as_bytes();
                prop_assert_eq!(detect_http(b), HttpDetect::Http);
                for cut in 0..b.len() {
                    prop_assert_eq!(detect_http(&b[..cut]), HttpDetect::NeedMore);
                }
            }
        }

        #[test]
        fn http_detection_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = detect_http(&bytes);
        }

        #[test]
        fn hello_round_trips(v in 1u8..) {
            prop_assert_eq!(decode_hello(&encode_hello(v)), Ok(v));
        }
    }

    #[test]
    fn classic_requests_spelling_get_or_head_are_classic() {
        for partial in [*b"GET ", *b"HEAD"] {
            let mut req = partial.to_vec();
            req.extend_from_slice("music/a b.ogg".as_bytes());
            assert_eq!(detect_http(&req), HttpDetect::Classic);
            // The sizes are about 0.54 GB (`GET `) and 1.14 GB (`HEAD`).
            let size = u32::from_le_bytes(partial);
            assert!(size > 500_000_000, "{size}");
        }
        // A name that reads like a request target stays undecided until
        // something departs from a request line.
        assert_eq!(detect_http(b"GET /music/a.ogg"), HttpDetect::NeedMore);
        assert_eq!(detect_http(b"GET /music/a.ogg HTTP/2"), HttpDetect::Classic);
        assert_eq!(detect_http(b"GET /a\tb HTTP/1.1\n"), HttpDetect::Classic);
        assert_eq!(detect_http(b"HEAD/x HTTP/1.1\r\n"), HttpDetect::Classic);
        assert_eq!(detect_http(b"GET  /x HTTP/1.1\r\n"), HttpDetect::Classic);
        assert_eq!(detect_http(b"GET /x HTTP/1.1\rX"), HttpDetect::Classic);
        let mut long = b"GET /".to_vec();
        long.resize(HTTP_LINE_MAX + 10, b'a');
        assert_eq!(detect_http(&long), HttpDetect::Classic);
    }

    #[test]
    fn giv_lines_are_told_from_classic_requests_spelling_giv() {
        let giv = b"GIV 7:00112233445566778899AABBCCDDEEFF/a%20b.txt\n\n";
        assert_eq!(detect_http(giv), HttpDetect::Http);
        for cut in 0..giv.iter().position(|&b| b == b'\n').unwrap_or(0) {
            assert_eq!(detect_http(&giv[..cut]), HttpDetect::NeedMore, "{cut}");
        }
        // A classic request 0.54 GB into a file: its partial size spells
        // `GIV ` and its name follows.
        assert_eq!(detect_http(b"GIV music/a.ogg"), HttpDetect::Classic);
        assert_eq!(detect_http(b"GIV 7:0011/x\n"), HttpDetect::Classic);
        assert_eq!(
            detect_http(b"GIV :00112233445566778899aabbccddeeff/x\n"),
            HttpDetect::Classic
        );
        assert_eq!(
            detect_http(b"GIV 12345678901:00112233445566778899aabbccddeeff/x\n"),
            HttpDetect::Classic
        );
        assert_eq!(
            detect_http(b"GIV 1:00112233445566778899aabbccddeeff/a\x01\n"),
            HttpDetect::Classic
        );
    }

    #[test]
    fn http_request_lines_are_http() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET /uri-res/N2R?urn:sha1:ABC HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /get/1/a%20b.ogg HTTP/1.0\n",
        ] {
            assert_eq!(detect_http(line), HttpDetect::Http);
            let end = line.iter().position(|&b| b == b'\n').unwrap();
            for cut in 0..=end {
                assert_eq!(detect_http(&line[..cut]), HttpDetect::NeedMore, "{cut}");
            }
        }
    }

    #[test]
    fn classic_requests_decode() {
        let mut req = 1024u32.to_le_bytes().to_vec();
        req.extend_from_slice("music/a b.ogg".as_bytes());
        assert_eq!(
            decode_classic_request(&req),
            Ok(ClassicRequest {
                partial: 1024,
                name: "music/a b.ogg"
            })
        );
        assert_eq!(
            decode_classic_request(&req[..3]),
            Err(ClassicNameError::Short)
        );
        assert_eq!(
            decode_classic_request(&req[..4]),
            Err(ClassicNameError::Empty)
        );
        let mut bad = req[..4].to_vec();
        bad.extend_from_slice(b"a\xffb");
        assert_eq!(decode_classic_request(&bad), Err(ClassicNameError::NotUtf8));
    }

    #[test]
    fn pushed_introductions_are_told_apart_from_the_hello() {
        let intro = encode_push_intro(0x0102_0304_0506_0708);
        assert_eq!(
            &intro[..8],
            &[0x52, 0x55, 0x54, 0xFF, 0xFF, 0x47, 0x56, 0x01]
        );
        assert_eq!(detect(&intro[..5]), Detect::Rutella);
        assert_eq!(detect(&intro[..7]), Detect::Pushed);
        assert_eq!(detect(&intro), Detect::Pushed);
        assert_eq!(detect(&encode_hello(VERSION)), Detect::Rutella);
        assert_eq!(decode_push_intro(&intro), Ok(0x0102_0304_0506_0708));
        assert!(decode_push_intro(&intro[..15]).is_err());
        let mut bad = intro;
        bad[7] = 2;
        assert!(decode_push_intro(&bad).is_err());
        assert!(decode_push_intro(&encode_hello(VERSION)).is_err());
    }

    #[test]
    fn hello_is_detected() {
        let h = encode_hello(VERSION);
        for cut in 0..5 {
            assert_eq!(detect(&h[..cut]), Detect::NeedMore);
        }
        assert_eq!(detect(&h), Detect::Rutella);
        assert_eq!(detect(&RELAY_INTRO), Detect::Relay);
        assert_eq!(detect(&RELAY_INTRO[..7]), Detect::Relay);
        assert_eq!(detect(&RELAY_INTRO[..5]), Detect::Rutella);
        assert!(decode_hello(&RELAY_INTRO).is_err());
        // A classic peer resuming from exactly that partial size, with a
        // UTF-8 name, stays classic.
        let mut classic = MAGIC[..4].to_vec();
        classic.extend_from_slice("Ýname".as_bytes());
        assert_eq!(detect(&classic), Detect::Classic);
    }

    #[test]
    fn rejects_bad_fields() {
        let mut r = Request {
            hash: [1; 32],
            kind: RequestKind::Tree,
        }
        .encode();
        r[40] = 1;
        assert!(Request::decode(&r).is_err());
        r[0] = 9;
        assert_eq!(Request::decode(&r), Err(WireError::BadKind(9)));
        let mut h = ResponseHeader::error(Status::NotFound, 3).encode();
        h[3] = 1;
        assert!(ResponseHeader::decode(&h).is_err());
        let h = ResponseHeader::error(Status::NotFound, MAX_MESSAGE_LEN + 1).encode();
        assert!(ResponseHeader::decode(&h).is_err());
        assert_eq!(
            Request::decode(&[0; 10]),
            Err(WireError::Short { got: 10, need: 49 })
        );
        let bad = Request {
            hash: [0; 32],
            kind: RequestKind::Range {
                offset: u64::MAX,
                len: 0,
            },
        };
        let mut b = bad.encode();
        b[41] = 1;
        assert!(Request::decode(&b).is_err());
    }
}
