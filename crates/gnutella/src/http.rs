//! The HTTP of Gnutella file exchange, as pure functions over bytes.
//!
//! ```text
//! GET /uri-res/N2R?urn:sha1:BASE32 HTTP/1.1      by content URN
//! GET /get/INDEX/NAME HTTP/1.1                   by the index and name of a hit
//! HEAD …                                         the same, headers only
//! Range: bytes=a-b | a- | -n                     one range
//!
//! HTTP/1.1 200 OK | 206 Partial Content | 404 Not Found |
//!          416 Requested Range Not Satisfiable | 503 Busy (Retry-After)
//! Content-Length, Content-Range: bytes a-b/total, X-Gnutella-Content-URN,
//! X-Alt: IP:port, IP:port, Server / User-Agent, Connection
//!
//! GIV INDEX:GUID_HEX/NAME\n\n                    a pushed connection
//! ```
//!
//! [`parse_request`], [`parse_response`] and [`parse_giv`] read one message
//! from the start of a buffer (`Ok(None)` while it is incomplete), bounded
//! by [`MAX_HEAD_LEN`], [`MAX_HEADERS`] and [`MAX_LINE_LEN`].

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::huge::Urn;

/// Longest request or response head accepted (start line and headers).
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// Most header lines in one head.
pub const MAX_HEADERS: usize = 64;
/// Longest line (start line or one header line, folding included).
pub const MAX_LINE_LEN: usize = 2048;
/// Longest file name (after percent-decoding) in `/get/INDEX/NAME` or GIV.
pub const MAX_NAME_LEN: usize = 1024;
/// Most alternate locations kept from `X-Alt` headers.
pub const MAX_ALT_LOCS: usize = 32;
/// Longest GIV line accepted, its closing empty line included.
pub const MAX_GIV_LEN: usize = 64 + MAX_NAME_LEN * 3;
/// The port assumed for an `X-Alt` entry without one.
pub const DEFAULT_PORT: u16 = 6346;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Longer than its bound without its closing empty line.
    #[error("HTTP head too long")]
    TooLong,
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("HTTP line too long")]
    LineTooLong,
    /// More than [`MAX_HEADERS`] headers.
    #[error("too many HTTP headers")]
    TooManyHeaders,
    /// The first line is not an HTTP request or status line.
    #[error("not an HTTP message")]
    BadStartLine,
    /// A method other than GET and HEAD.
    #[error("unsupported HTTP method")]
    BadMethod,
    /// A URI that names neither `/uri-res/N2R?urn:sha1:…` nor
    /// `/get/INDEX/NAME`, or a name with a path in it.
    #[error("unsupported or unsafe request URI")]
    BadUri,
    /// A header line without a colon, with a bad name, not UTF-8 or with
    /// control characters.
    #[error("malformed HTTP header")]
    BadHeader,
    /// A header value that does not parse (Range, Content-Range,
    /// Content-Length, GIV).
    #[error("malformed {0} value")]
    BadValue(&'static str),
}

/// GET or HEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Headers and body.
    Get,
    /// Headers only.
    Head,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/uri-res/N2R?urn:sha1:BASE32` (a bitprint URN names its SHA-1).
    Sha1([u8; 20]),
    /// `/get/INDEX/NAME`: the index and name of a query hit's result.
    Index {
        /// The result's index.
        index: u32,
        /// The file name, percent-decoded, without any path.
        name: String,
    },
    /// `/`: browse host, every shared file as query hits (see
    /// [`crate::browse`]).
    Browse,
    /// `/uri-res/N2X?urn:sha1:BASE32`: the THEX serialisation of the
    /// file's Tiger tree (see [`crate::thex`]).
    Thex([u8; 20]),
}

/// What an `X-Thex-URI` header names: where the tree of the file is
/// served (only an N2X URI is taken) and its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThexUri {
    /// The SHA-1 of the N2X URI.
    pub sha1: [u8; 20],
    /// The root given after the `;`.
    pub root: [u8; 24],
}

impl Target {
    /// The request URI for this target (names percent-encoded).
    pub fn uri(&self) -> String {
        match self {
            Target::Sha1(h) => format!("/uri-res/N2R?{}", Urn::Sha1(*h)),
            Target::Index { index, name } => format!("/get/{index}/{}", percent_encode(name)),
            Target::Browse => "/".to_string(),
            Target::Thex(h) => format!("/uri-res/N2X?{}", Urn::Sha1(*h)),
        }
    }
}

/// The value of `X-Thex-URI` for the file of `sha1` whose tree has this
/// root: `/uri-res/N2X?urn:sha1:SHA1;ROOT`.
pub fn thex_uri_value(sha1: &[u8; 20], root: &[u8; 24]) -> String {
    format!(
        "{};{}",
        Target::Thex(*sha1).uri(),
        crate::huge::base32_encode(root)
    )
}

/// A request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// GET or HEAD.
    pub method: Method,
    /// What is asked for.
    pub target: Target,
    /// The minor version of `HTTP/1.x` (0 or 1).
    pub minor: u8,
    /// The headers in order, names as received.
    pub headers: Vec<(String, String)>,
}

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The minor version of `HTTP/1.x`.
    pub minor: u8,
    /// The status code, 100..=999.
    pub code: u16,
    /// The reason text (may be empty).
    pub reason: String,
    /// The headers in order, names as received.
    pub headers: Vec<(String, String)>,
}

/// A single byte range as asked in `Range: bytes=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` (both inclusive) or `a-` (to the end).
    From {
        /// The first byte.
        first: u64,
        /// The last byte, inclusive; `None` for the end of the file.
        last: Option<u64>,
    },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The range within a file of `size` bytes, as `(start, end)` with
    /// `end` exclusive; `None` when it is not satisfiable (416).
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        match *self {
            ByteRange::From { first, last } => {
                if first >= size {
                    return None;
                }
                let end = last.map_or(size, |l| l.saturating_add(1).min(size));
                Some((first, end))
            }
            ByteRange::Suffix(n) => (n > 0 && size > 0).then(|| (size - n.min(size), size)),
        }
    }

    /// The `Range` header value.
    pub fn header_value(&self) -> String {
        match *self {
            ByteRange::From { first, last: None } => format!("bytes={first}-"),
            ByteRange::From {
                first,
                last: Some(l),
            } => format!("bytes={first}-{l}"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

/// `Content-Range: bytes a-b/total` (or `bytes */total` with a 416).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// First and last byte (inclusive) sent; `None` for `*`.
    pub range: Option<(u64, u64)>,
    /// The whole file's size; `None` for `*`.
    pub total: Option<u64>,
}

/// Headers common to requests and responses.
pub trait Headers {
    /// The headers in order.
    fn headers(&self) -> &[(String, String)];
    /// The minor version of `HTTP/1.x`.
    fn minor(&self) -> u8;

    /// The value of the first header with this name (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after this message: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection:
    /// keep-alive`.
    fn keep_alive(&self) -> bool {
        let has = |t: &str| {
            self.headers()
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|x| x.trim().eq_ignore_ascii_case(t))
        };
        if self.minor() >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }

    /// `Content-Length`, when present. Two different values are an error.
    fn content_length(&self) -> Result<Option<u64>, HttpError> {
        let mut found = None;
        for (_, v) in self
            .headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let n = parse_u64(v.trim()).ok_or(HttpError::BadValue("Content-Length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(HttpError::BadValue("Content-Length"));
            }
            found = Some(n);
        }
        Ok(found)
    }

    /// The SHA-1 of `X-Gnutella-Content-URN` (or `X-Content-URN`), when one
    /// of its URNs names one.
    fn content_sha1(&self) -> Option<[u8; 20]> {
        self.headers()
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case("x-gnutella-content-urn")
                    || n.eq_ignore_ascii_case("x-content-urn")
            })
            .flat_map(|(_, v)| v.split(','))
            .find_map(|u| Urn::parse(u.trim()).and_then(|u| u.sha1().copied()))
    }

    /// The addresses of `X-Alt` headers (`IP[:port]`, comma-separated; at
    /// most [`MAX_ALT_LOCS`]; entries that do not parse, such as `tls=…`,
    /// are skipped).
    fn alt_locs(&self) -> Vec<SocketAddrV4> {
        let mut out = Vec::new();
        for (_, v) in self
            .headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-alt"))
        {
            for e in v.split(',') {
                if out.len() >= MAX_ALT_LOCS {
                    return out;
                }
                if let Some(a) = parse_alt(e.trim()) {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }

    /// `X-Thex-URI: /uri-res/N2X?urn:sha1:SHA1;ROOT`, when it names an
    /// N2X URI and a root (any other URI is not followed).
    fn thex_uri(&self) -> Option<ThexUri> {
        let v = self.header("x-thex-uri")?;
        let (uri, root) = v.split_once(';')?;
        let sha1 = match parse_target(uri.trim()).ok()? {
            Target::Thex(h) => h,
            _ => return None,
        };
        let root = crate::huge::base32_decode(root.trim())?;
        Some(ThexUri {
            sha1,
            root: <[u8; 24]>::try_from(root.as_slice()).ok()?,
        })
    }

    /// The peer's software (`Server` or `User-Agent`), as received.
    fn agent(&self) -> Option<&str> {
        self.header("server").or_else(|| self.header("user-agent"))
    }
}

impl Headers for Request {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn minor(&self) -> u8 {
        self.minor
    }
}

impl Headers for Response {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn minor(&self) -> u8 {
        self.minor
    }
}

impl Request {
    /// A GET or HEAD of `target` over HTTP/1.1 with these headers.
    pub fn new(method: Method, target: Target, headers: Vec<(String, String)>) -> Request {
        Request {
            method,
            target,
            minor: 1,
            headers,
        }
    }

    /// The single range asked for, if any. More than one range, or a range
    /// that is not `bytes=`, is an error.
    pub fn range(&self) -> Result<Option<ByteRange>, HttpError> {
        self.header("range").map(parse_range).transpose()
    }

    /// The request as bytes, closing empty line included (CR and LF in
    /// header text replaced by spaces).
    pub fn encode(&self) -> Vec<u8> {
        let m = match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
        };
        let mut s = format!("{m} {} HTTP/1.{}\r\n", self.target.uri(), self.minor);
        push_headers(&mut s, &self.headers);
        s.into_bytes()
    }
}

impl Response {
    /// An HTTP/1.1 response with the usual reason for `code`.
    pub fn new(code: u16, headers: Vec<(String, String)>) -> Response {
        Response {
            minor: 1,
            code,
            reason: reason(code).into(),
            headers,
        }
    }

    /// `Content-Range`, when present.
    pub fn content_range(&self) -> Result<Option<ContentRange>, HttpError> {
        self.header("content-range")
            .map(parse_content_range)
            .transpose()
    }

    /// `Retry-After` in seconds (the delta form; an HTTP date is ignored).
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| parse_u64(v.trim()))
    }

    /// The response head as bytes, closing empty line included.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "HTTP/1.{} {} {}\r\n",
            self.minor,
            self.code,
            clean(&self.reason)
        );
        push_headers(&mut s, &self.headers);
        s.into_bytes()
    }
}

/// The usual reason text of the codes this module uses.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        416 => "Requested Range Not Satisfiable",
        503 => "Busy",
        _ => "",
    }
}

fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn push_headers(s: &mut String, headers: &[(String, String)]) {
    for (n, v) in headers {
        let _ = write!(s, "{}: {}\r\n", clean(n), clean(v));
    }
    s.push_str("\r\n");
}

/// A decimal u64 of digits only (no sign, no spaces), at most 19 digits.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_alt(e: &str) -> Option<SocketAddrV4> {
    let (ip, port) = match e.split_once(':') {
        Some((ip, p)) => (ip, p.parse::<u16>().ok()?),
        None => (e, DEFAULT_PORT),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    (port != 0).then(|| SocketAddrV4::new(ip, port))
}

/// Parses a `Range` value: `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range).
pub fn parse_range(v: &str) -> Result<ByteRange, HttpError> {
    let bad = HttpError::BadValue("Range");
    let v = v.trim();
    let spec = v
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| v[6..].trim())
        .ok_or(bad.clone())?;
    let (a, b) = spec.split_once('-').ok_or(bad.clone())?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return parse_u64(b).map(ByteRange::Suffix).ok_or(bad);
    }
    let first = parse_u64(a).ok_or(bad.clone())?;
    let last = if b.is_empty() {
        None
    } else {
        Some(parse_u64(b).ok_or(bad.clone())?)
    };
    if last.is_some_and(|l| l < first) {
        return Err(bad);
    }
    Ok(ByteRange::From { first, last })
}

/// Parses a `Content-Range` value: `bytes a-b/total`, `bytes a-b/*`,
/// `bytes */total` (a `=` after `bytes` is accepted too).
pub fn parse_content_range(v: &str) -> Result<ContentRange, HttpError> {
    let bad = HttpError::BadValue("Content-Range");
    let v = v.trim();
    let rest = v
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("bytes"))
        .map(|_| v[5..].trim_start_matches([' ', '=']))
        .ok_or(bad.clone())?;
    let (r, t) = rest.split_once('/').ok_or(bad.clone())?;
    let total = match t.trim() {
        "*" => None,
        t => Some(parse_u64(t).ok_or(bad.clone())?),
    };
    let range = match r.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-').ok_or(bad.clone())?;
            let a = parse_u64(a.trim()).ok_or(bad.clone())?;
            let b = parse_u64(b.trim()).ok_or(bad.clone())?;
            if b < a || total.is_some_and(|t| b >= t) {
                return Err(bad);
            }
            Some((a, b))
        }
    };
    if range.is_none() && total.is_none() {
        return Err(bad);
    }
    Ok(ContentRange { range, total })
}

/// Percent-encodes a file name for a `/get/` URI: everything but
/// unreserved characters (RFC 3986) is written `%XX`.
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-decodes a URI segment into UTF-8 text. `None` on a bad escape
/// or bytes that are not UTF-8. (`+` is kept: it is not a space in paths.)
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            // from_str_radix would take a sign: only two hex digits pass.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a decoded file name is a plain name: not empty, at most
/// [`MAX_NAME_LEN`] bytes, no `/` or `\` (so no absolute path and no
/// `..` component), not `.` or `..`, no drive letter, no control character.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

fn parse_target(uri: &str) -> Result<Target, HttpError> {
    if uri == "/" {
        return Ok(Target::Browse);
    }
    if let Some(q) = uri.strip_prefix("/uri-res/N2R?") {
        let urn = percent_decode(q).ok_or(HttpError::BadUri)?;
        let h = Urn::parse(&urn)
            .and_then(|u| u.sha1().copied())
            .ok_or(HttpError::BadUri)?;
        return Ok(Target::Sha1(h));
    }
    if let Some(q) = uri.strip_prefix("/uri-res/N2X?") {
        let urn = percent_decode(q).ok_or(HttpError::BadUri)?;
        let h = Urn::parse(&urn)
            .and_then(|u| u.sha1().copied())
            .ok_or(HttpError::BadUri)?;
        return Ok(Target::Thex(h));
    }
    if let Some(rest) = uri.strip_prefix("/get/") {
        let (index, name) = rest.split_once('/').ok_or(HttpError::BadUri)?;
        let index = parse_u64(index)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or(HttpError::BadUri)?;
        // A query part is not part of the name.
        let name = name.split_once('?').map_or(name, |(n, _)| n);
        let name = percent_decode(name).ok_or(HttpError::BadUri)?;
        if !is_safe_name(&name) {
            return Err(HttpError::BadUri);
        }
        return Ok(Target::Index { index, name });
    }
    Err(HttpError::BadUri)
}

/// Lines of one head: the start line and the headers (folded lines
/// joined), and the bytes the head took.
type Head = (String, Vec<(String, String)>, usize);

fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let end = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_HEAD_LEN {
                return Err(HttpError::TooLong);
            }
            if buf.len() - pos > MAX_LINE_LEN {
                return Err(HttpError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        if pos > MAX_HEAD_LEN {
            return Err(HttpError::TooLong);
        }
        if line.len() > MAX_LINE_LEN {
            return Err(HttpError::LineTooLong);
        }
        if line.is_empty() {
            if lines.is_empty() {
                // Tolerate empty lines before the start line (RFC 7230 3.5)
                // only as far as the head bound.
                continue;
            }
            break pos;
        }
        lines.push(line);
        if lines.len() > MAX_HEADERS + 1 {
            return Err(HttpError::TooManyHeaders);
        }
    };
    let text = |b: &[u8]| -> Result<String, HttpError> {
        let s = std::str::from_utf8(b).map_err(|_| HttpError::BadHeader)?;
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HttpError::BadHeader);
        }
        Ok(s.to_string())
    };
    let Some((first, rest)) = lines.split_first() else {
        return Err(HttpError::BadStartLine);
    };
    let first = text(first).map_err(|_| HttpError::BadStartLine)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in rest {
        let l = text(l)?;
        if l.starts_with([' ', '\t']) {
            let last = headers.last_mut().ok_or(HttpError::BadHeader)?;
            let more = l.trim();
            if last.1.len() + more.len() + 1 > MAX_LINE_LEN {
                return Err(HttpError::LineTooLong);
            }
            if !more.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(more);
            }
            continue;
        }
        let (name, value) = l.split_once(':').ok_or(HttpError::BadHeader)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::BadHeader);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some((first, headers, end)))
}

fn parse_version(v: &str) -> Option<u8> {
    match v {
        "HTTP/1.0" => Some(0),
        "HTTP/1.1" => Some(1),
        _ => None,
    }
}

/// Reads one request head from the start of `buf`: `Ok(None)` while it is
/// incomplete, else the request and the bytes its head took. Lines end in
/// CRLF or a bare LF; a line starting with a space or tab continues the
/// previous header.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some((first, headers, used)) = parse_head(buf)? else {
        return Ok(None);
    };
    let mut parts = first.split(' ');
    let (Some(m), Some(uri), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadStartLine);
    };
    let minor = parse_version(v).ok_or(HttpError::BadStartLine)?;
    let method = match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(HttpError::BadMethod),
    };
    let target = parse_target(uri)?;
    Ok(Some((
        Request {
            method,
            target,
            minor,
            headers,
        },
        used,
    )))
}

/// Reads one response head from the start of `buf`: `Ok(None)` while it is
/// incomplete, else the response and the bytes its head took (the body, if
/// any, follows).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    // Refuse early what cannot become an HTTP status line, so that a peer
    // that speaks something else is told apart at once.
    let probe = &buf[..buf.len().min(5)];
    if !b"HTTP/"[..probe.len()].eq_ignore_ascii_case(probe) {
        return Err(HttpError::BadStartLine);
    }
    let Some((first, headers, used)) = parse_head(buf)? else {
        return Ok(None);
    };
    let (v, rest) = first.split_once(' ').ok_or(HttpError::BadStartLine)?;
    let minor = parse_version(v).ok_or(HttpError::BadStartLine)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadStartLine);
    }
    let code: u16 = code.parse().map_err(|_| HttpError::BadStartLine)?;
    if code < 100 {
        return Err(HttpError::BadStartLine);
    }
    Ok(Some((
        Response {
            minor,
            code,
            reason: reason.trim().to_string(),
            headers,
        },
        used,
    )))
}

/// The line a firewalled servent sends on a connection it opens for a Push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Giv {
    /// The file index of the Push.
    pub index: u32,
    /// The servent's GUID.
    pub guid: [u8; 16],
    /// The file name (as sent, percent-decoded when it decodes; may be
    /// empty).
    pub name: String,
}

impl Giv {
    /// `GIV INDEX:GUID_HEX/NAME\n\n` (GUID in upper-case hex).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("GIV {}:", self.index);
        for b in self.guid {
            let _ = write!(s, "{b:02X}");
        }
        s.push('/');
        s.push_str(&percent_encode(&self.name));
        s.push_str("\n\n");
        s.into_bytes()
    }
}

/// Reads a GIV line (`GIV INDEX:GUID_HEX/NAME`, then an empty line; CRLF
/// or LF) from the start of `buf`: `Ok(None)` while incomplete, else the
/// GIV and the bytes it took.
pub fn parse_giv(buf: &[u8]) -> Result<Option<(Giv, usize)>, HttpError> {
    let bad = HttpError::BadValue("GIV");
    let probe = &buf[..buf.len().min(4)];
    if !b"GIV "[..probe.len()].eq_ignore_ascii_case(probe) {
        return Err(HttpError::BadStartLine);
    }
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_GIV_LEN {
            Err(HttpError::TooLong)
        } else {
            Ok(None)
        };
    };
    let after = match buf.get(nl + 1) {
        None => return Ok(None),
        Some(b'\n') => nl + 2,
        Some(b'\r') => match buf.get(nl + 2) {
            None => return Ok(None),
            Some(b'\n') => nl + 3,
            Some(_) => return Err(bad),
        },
        Some(_) => return Err(bad),
    };
    if after > MAX_GIV_LEN {
        return Err(HttpError::TooLong);
    }
    let mut line = &buf[4..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let line = std::str::from_utf8(line).map_err(|_| bad.clone())?;
    let (index, rest) = line.split_once(':').ok_or(bad.clone())?;
    let index = parse_u64(index.trim())
        .and_then(|i| u32::try_from(i).ok())
        .ok_or(bad.clone())?;
    let (hex, name) = rest.split_once('/').unwrap_or((rest, ""));
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad);
    }
    let mut guid = [0u8; 16];
    for (i, g) in guid.iter_mut().enumerate() {
        *g = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| bad.clone())?;
    }
    let name = percent_decode(name).unwrap_or_else(|| name.to_string());
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(bad);
    }
    Ok(Some((Giv { index, guid, name }, after)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(s: &str) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn n2r_request_of_gtk_gnutella() {
        let raw = "GET /uri-res/N2R?urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB HTTP/1.1\r\n\
                   Host: 127.0.0.1:6346\r\nUser-Agent: gtk-gnutella/1.2.2\r\n\
                   Range: bytes=100-199\r\nX-Alt: 127.0.0.2:6346, 127.0.0.3, tls=3\r\n\r\nrest";
        let (r, used) = req(raw).unwrap().unwrap();
        assert_eq!(&raw[used..], "rest");
        assert_eq!(r.method, Method::Get);
        let h = crate::huge::base32_decode("PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB").unwrap();
        assert_eq!(r.target, Target::Sha1(h.try_into().unwrap()));
        assert_eq!(
            r.range().unwrap(),
            Some(ByteRange::From {
                first: 100,
                last: Some(199)
            })
        );
        assert_eq!(r.agent(), Some("gtk-gnutella/1.2.2"));
        assert_eq!(
            r.alt_locs(),
            vec![
                "127.0.0.2:6346".parse().unwrap(),
                "127.0.0.3:6346".parse().unwrap()
            ]
        );
        assert!(r.keep_alive());
        let again = parse_request(&r.encode()).unwrap().unwrap().0;
        assert_eq!(again, r);
    }

    #[test]
    fn thex_uri_of_gtk_gnutella() {
        let sha1 = "PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB";
        let root = "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ";
        let raw =
            format!("HTTP/1.1 200 OK\r\nX-Thex-URI: /uri-res/N2X?urn:sha1:{sha1};{root}\r\n\r\n");
        let (r, _) = parse_response(raw.as_bytes()).unwrap().unwrap();
        let t = r.thex_uri().unwrap();
        let h: [u8; 20] = crate::huge::base32_decode(sha1)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(t.sha1, h);
        assert_eq!(t.root, crate::tiger::root(b""));
        assert_eq!(
            thex_uri_value(&t.sha1, &t.root),
            format!("/uri-res/N2X?urn:sha1:{sha1};{root}")
        );
        let (q, _) = req(&format!(
            "GET /uri-res/N2X?urn:sha1:{sha1} HTTP/1.1\r\n\r\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(q.target, Target::Thex(h));
        // Another URI, or no root: not followed.
        for v in [
            format!("/elsewhere?x;{root}"),
            format!("/uri-res/N2X?urn:sha1:{sha1}"),
            format!("/uri-res/N2X?urn:sha1:{sha1};{}", &root[1..]),
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nX-Thex-URI: {v}\r\n\r\n");
            let (r, _) = parse_response(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(r.thex_uri(), None, "{v}");
        }
    }

    #[test]
    fn get_by_index_decodes_the_name() {
        let (r, _) = req("HEAD /get/42/My%20Song%20%C3%A9.mp3 HTTP/1.0\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.method, Method::Head);
        assert_eq!(
            r.target,
            Target::Index {
                index: 42,
                name: "My Song é.mp3".into()
            }
        );
        assert!(!r.keep_alive());
        assert_eq!(parse_request(&r.encode()).unwrap().unwrap().0, r);
    }

    #[test]
    fn paths_and_traversal_are_refused() {
        for uri in [
            "/get/1/../../etc/passwd",
            "/get/1/..",
            "/get/1/%2E%2E",
            "/get/1/..%2F..%2Fetc%2Fpasswd",
            "/get/1//etc/passwd",
            "/get/1/%2Fetc%2Fpasswd",
            "/get/1/a%5Cb",
            "/get/1/C:%5Cwindows",
            "/get/1/",
            "/get/1/a%00b",
            "/get/1/bad%zz",
            "/get/1/bad%2",
            "/get/x/name",
            "/get/4294967296/name",
            "/etc/passwd",
            "/uri-res/N2R?urn:sha1:TOOSHORT",
            "/uri-res/N2R?urn:ed2k:abc",
        ] {
            let raw = format!("GET {uri} HTTP/1.1\r\n\r\n");
            assert_eq!(req(&raw), Err(HttpError::BadUri), "{uri}");
        }
        assert_eq!(
            req("POST /get/1/a HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadMethod)
        );
        assert_eq!(req("GET /get/1/a\r\n\r\n"), Err(HttpError::BadStartLine));
        assert_eq!(
            req("GET /get/1/a HTTP/2.0\r\n\r\n"),
            Err(HttpError::BadStartLine)
        );
    }

    #[test]
    fn percent_escapes_are_two_hex_digits() {
        assert_eq!(percent_decode("a%20b%C3%A9").as_deref(), Some("a bé"));
        for bad in ["%+1", "%-1", "%2", "%", "%g0", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(
            percent_decode(&percent_encode("a/b é+%")).as_deref(),
            Some("a/b é+%")
        );
    }

    #[test]
    fn head_bounds() {
        assert_eq!(req("GET /get/1/a HTTP/1.1\r\n"), Ok(None));
        let long = format!(
            "GET /get/1/a HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_LINE_LEN)
        );
        assert_eq!(req(&long), Err(HttpError::LineTooLong));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        let raw = format!("GET /get/1/a HTTP/1.1\r\n{many}\r\n");
        assert_eq!(req(&raw), Err(HttpError::TooManyHeaders));
        let big: String = (0..10)
            .map(|i| format!("X{i}: {}\r\n", "b".repeat(1000)))
            .collect();
        let raw = format!("GET /get/1/a HTTP/1.1\r\n{big}");
        assert_eq!(req(&raw), Err(HttpError::TooLong));
        // An endless line without a newline is refused before the head bound.
        assert_eq!(
            req(&"G".repeat(MAX_LINE_LEN + 1)),
            Err(HttpError::LineTooLong)
        );
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(
            parse_range("bytes=0-"),
            Ok(From {
                first: 0,
                last: None
            })
        );
        assert_eq!(parse_range("bytes=-500"), Ok(Suffix(500)));
        assert!(parse_range("bytes=5-1").is_err());
        assert!(parse_range("bytes=0-1,5-6").is_err());
        assert!(parse_range("items=0-1").is_err());
        assert!(parse_range("bytes=-").is_err());
        assert!(parse_range("bytes=+1-2").is_err());
        let r = |first, last| From { first, last };
        assert_eq!(r(0, Some(9)).resolve(100), Some((0, 10)));
        assert_eq!(r(90, Some(200)).resolve(100), Some((90, 100)));
        assert_eq!(r(100, None).resolve(100), None);
        assert_eq!(r(0, None).resolve(0), None);
        assert_eq!(Suffix(10).resolve(100), Some((90, 100)));
        assert_eq!(Suffix(1000).resolve(100), Some((0, 100)));
        assert_eq!(Suffix(0).resolve(100), None);
        assert_eq!(r(0, Some(u64::MAX)).resolve(5), Some((0, 5)));
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 206 Partial Content\r\nServer: gtk-gnutella/1.2.2\r\n\
            Content-Range: bytes 10-19/100\r\nContent-Length: 10\r\n\
            X-Gnutella-Content-URN: urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB\r\n\r\n0123456789";
        let (r, used) = parse_response(raw).unwrap().unwrap();
        assert_eq!(&raw[used..], b"0123456789");
        assert_eq!(r.code, 206);
        assert_eq!(r.content_length(), Ok(Some(10)));
        assert_eq!(
            r.content_range(),
            Ok(Some(ContentRange {
                range: Some((10, 19)),
                total: Some(100)
            }))
        );
        assert!(r.content_sha1().is_some());
        assert_eq!(r.agent(), Some("gtk-gnutella/1.2.2"));
        assert_eq!(parse_response(&r.encode()).unwrap().unwrap().0, r);

        let (r, _) = parse_response(b"HTTP/1.0 503 Busy\nRetry-After: 60\n\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.code, r.retry_after()), (503, Some(60)));
        assert_eq!(
            parse_content_range("bytes */100"),
            Ok(ContentRange {
                range: None,
                total: Some(100)
            })
        );
        assert!(parse_content_range("bytes 0-100/100").is_err());
        assert!(parse_content_range("bytes */*").is_err());
        assert_eq!(
            parse_response(b"GNUTELLA/0.6 200 OK\r\n\r\n"),
            Err(HttpError::BadStartLine)
        );
        assert_eq!(parse_response(b"HT"), Ok(None));
        assert_eq!(parse_response(b"<html>"), Err(HttpError::BadStartLine));
        let (r, _) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(r.content_length().is_err());
    }

    #[test]
    fn giv_lines() {
        let g = Giv {
            index: 7,
            guid: [0xAB; 16],
            name: "a b.txt".into(),
        };
        let raw = g.encode();
        assert_eq!(
            raw,
            b"GIV 7:ABABABABABABABABABABABABABABABAB/a%20b.txt\n\n".to_vec()
        );
        let mut more = raw.clone();
        more.extend_from_slice(b"HTTP");
        assert_eq!(parse_giv(&more), Ok(Some((g, raw.len()))));
        let (g, used) = parse_giv(b"GIV 0:00112233445566778899aabbccddeeff/\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (g.index, g.guid[15], g.name.as_str(), used),
            (0, 0xff, "", 43)
        );
        assert_eq!(
            parse_giv(b"GIV 1:00/x\n\n"),
            Err(HttpError::BadValue("GIV"))
        );
        assert_eq!(parse_giv(b"GIV 1:"), Ok(None));
        assert_eq!(parse_giv(b"GET /"), Err(HttpError::BadStartLine));
        assert_eq!(parse_giv(b"GGV "), Err(HttpError::BadStartLine));
        let mut long = b"GIV 1:".to_vec();
        long.resize(MAX_GIV_LEN + 1, b'0');
        assert_eq!(parse_giv(&long), Err(HttpError::TooLong));
    }

    proptest! {
        #[test]
        fn names_round_trip(name in "[^/\\\\:\\x00-\\x1f\\x7f]{1,64}") {
            prop_assume!(is_safe_name(&name));
            let t = Target::Index { index: 3, name };
            let r = Request::new(Method::Get, t, vec![]);
            prop_assert_eq!(parse_request(&r.encode()).unwrap().unwrap().0, r);
        }

        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&data);
            let _ = parse_response(&data);
            let _ = parse_giv(&data);
        }

        #[test]
        fn ranges_stay_inside_the_file(first in 0u64..200, len in 0u64..200, size in 0u64..200) {
            let r = ByteRange::From { first, last: Some(first + len) };
            if let Some((s, e)) = r.resolve(size) {
                prop_assert!(s < e && e <= size);
            }
            prop_assert_eq!(parse_range(&r.header_value()), Ok(r));
        }
    }
}
