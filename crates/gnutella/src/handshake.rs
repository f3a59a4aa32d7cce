//! The Gnutella 0.6 handshake: three messages of HTTP-like text.
//!
//! ```text
//! leaf → ultrapeer   GNUTELLA CONNECT/0.6\r\n  headers  \r\n
//! ultrapeer → leaf   GNUTELLA/0.6 200 OK\r\n   headers  \r\n
//! leaf → ultrapeer   GNUTELLA/0.6 200 OK\r\n   headers  \r\n
//! ```
//!
//! [`parse`] reads one message from the start of a buffer (at most
//! [`MAX_HANDSHAKE_LEN`] bytes, [`MAX_HEADERS`] headers, lines at most
//! [`MAX_LINE_LEN`]); [`Handshake::encode`] writes one. The leaf's side of
//! the negotiation (which headers it sends, what it requires of the answer)
//! is in [`LeafOffer`] and [`check_ultrapeer_answer`].

use std::net::{Ipv4Addr, SocketAddrV4};

/// Longest handshake message accepted, headers included.
pub const MAX_HANDSHAKE_LEN: usize = 8 * 1024;
/// Most header lines in one message.
pub const MAX_HEADERS: usize = 64;
/// Longest line (start line or one header line, folding included).
pub const MAX_LINE_LEN: usize = 2048;
/// Most addresses kept from an `X-Try-Ultrapeers` header.
pub const MAX_TRY_ADDRESSES: usize = 32;

/// The first line of a handshake message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `GNUTELLA CONNECT/<version>`.
    Connect {
        /// The protocol version, e.g. `0.6`.
        version: String,
    },
    /// `GNUTELLA/<version> <code> <reason>`.
    Status {
        /// The protocol version, e.g. `0.6`.
        version: String,
        /// The status code, 100..=999.
        code: u16,
        /// The reason text (may be empty).
        reason: String,
    },
}

/// One handshake message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The first line.
    pub start: StartLine,
    /// The headers in order, names as received.
    pub headers: Vec<(String, String)>,
}

/// Why a handshake message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Longer than [`MAX_HANDSHAKE_LEN`] without its closing empty line.
    #[error("handshake message too long")]
    TooLong,
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("handshake line too long")]
    LineTooLong,
    /// More than [`MAX_HEADERS`] headers.
    #[error("too many handshake headers")]
    TooManyHeaders,
    /// The first line is neither a CONNECT nor a status line.
    #[error("not a Gnutella handshake")]
    BadStartLine,
    /// A header line without a colon, with a bad name, or text that is not
    /// UTF-8 or holds control characters.
    #[error("malformed handshake header")]
    BadHeader,
}

impl Handshake {
    /// `GNUTELLA CONNECT/0.6` with these headers.
    pub fn connect(headers: Vec<(String, String)>) -> Handshake {
        Handshake {
            start: StartLine::Connect {
                version: "0.6".into(),
            },
            headers,
        }
    }

    /// `GNUTELLA/0.6 <code> <reason>` with these headers.
    pub fn status(code: u16, reason: &str, headers: Vec<(String, String)>) -> Handshake {
        Handshake {
            start: StartLine::Status {
                version: "0.6".into(),
                code,
                reason: reason.into(),
            },
            headers,
        }
    }

    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header lists `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether a header says `True` (case-insensitive).
    pub fn header_is_true(&self, name: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The status code, for a status line.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Status { code, .. } => Some(code),
            StartLine::Connect { .. } => None,
        }
    }

    /// The message as bytes, closing empty line included. Header names and
    /// values are written as given, CR and LF replaced by spaces.
    pub fn encode(&self) -> Vec<u8> {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let mut s = match &self.start {
            StartLine::Connect { version } => format!("GNUTELLA CONNECT/{}\r\n", clean(version)),
            StartLine::Status {
                version,
                code,
                reason,
            } => {
                format!("GNUTELLA/{} {} {}\r\n", clean(version), code, clean(reason))
            }
        };
        for (n, v) in &self.headers {
            s.push_str(&clean(n));
            s.push_str(": ");
            s.push_str(&clean(v));
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// Reads one handshake message from the start of `buf`: `Ok(None)` while
/// it is incomplete, else the message and the number of bytes it took
/// (what follows may already be descriptors). Lines end in CRLF or a bare
/// LF; a line starting with a space or tab continues the previous header.
pub fn parse(buf: &[u8]) -> Result<Option<(Handshake, usize)>, HandshakeError> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let end = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_HANDSHAKE_LEN {
                return Err(HandshakeError::TooLong);
            }
            if buf.len() - pos > MAX_LINE_LEN {
                return Err(HandshakeError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        if pos > MAX_HANDSHAKE_LEN {
            return Err(HandshakeError::TooLong);
        }
        if line.len() > MAX_LINE_LEN {
            return Err(HandshakeError::LineTooLong);
        }
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
        if lines.len() > MAX_HEADERS + 1 {
            return Err(HandshakeError::TooManyHeaders);
        }
    };
    let text = |b: &[u8]| -> Result<String, HandshakeError> {
        let s = std::str::from_utf8(b).map_err(|_| HandshakeError::BadHeader)?;
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HandshakeError::BadHeader);
        }
        Ok(s.to_string())
    };
    let Some((first, rest)) = lines.split_first() else {
        return Err(HandshakeError::BadStartLine);
    };
    let first = text(first).map_err(|_| HandshakeError::BadStartLine)?;
    let start = parse_start(&first).ok_or(HandshakeError::BadStartLine)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in rest {
        let l = text(l)?;
        if l.starts_with([' ', '\t']) {
            let last = headers.last_mut().ok_or(HandshakeError::BadHeader)?;
            let more = l.trim();
            if last.1.len() + more.len() + 1 > MAX_LINE_LEN {
                return Err(HandshakeError::LineTooLong);
            }
            // A blank continuation adds nothing (so that the value written
            // back parses to the same).
            if !more.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(more);
            }
            continue;
        }
        let (name, value) = l.split_once(':').ok_or(HandshakeError::BadHeader)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HandshakeError::BadHeader);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some((Handshake { start, headers }, end)))
}

fn parse_start(line: &str) -> Option<StartLine> {
    if let Some(v) = line.strip_prefix("GNUTELLA CONNECT/") {
        let version = v.trim();
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        return Some(StartLine::Connect {
            version: version.into(),
        });
    }
    let rest = line.strip_prefix("GNUTELLA/")?;
    let (version, rest) = rest.split_once(' ')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    if code < 100 {
        return None;
    }
    Some(StartLine::Status {
        version: version.into(),
        code,
        reason: reason.trim().into(),
    })
}

/// Parses `X-Try-Ultrapeers` / `X-Try` values: `ip:port` separated by
/// commas; at most [`MAX_TRY_ADDRESSES`]; anything else is skipped.
pub fn parse_try_list(value: &str) -> Vec<SocketAddrV4> {
    value
        .split(',')
        .filter_map(|a| a.trim().parse::<SocketAddrV4>().ok())
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
        .take(MAX_TRY_ADDRESSES)
        .collect()
}

/// What a leaf says about itself in its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafOffer {
    /// `User-Agent`.
    pub user_agent: String,
    /// Where the leaf listens (for `Listen-IP`), if anywhere.
    pub listen: Option<SocketAddrV4>,
    /// The ultrapeer's address as the leaf sees it (`Remote-IP`).
    pub remote_ip: Option<Ipv4Addr>,
    /// Offer `Accept-Encoding: deflate` (receive compressed).
    pub accept_deflate: bool,
    /// Compress what the leaf sends when the ultrapeer accepts it.
    pub send_deflate: bool,
}

impl LeafOffer {
    /// The first message: `GNUTELLA CONNECT/0.6` with the leaf's headers.
    pub fn connect_request(&self) -> Handshake {
        let mut h: Vec<(String, String)> = vec![
            ("User-Agent".into(), self.user_agent.clone()),
            ("X-Ultrapeer".into(), "False".into()),
            ("X-Query-Routing".into(), "0.2".into()),
            ("GGEP".into(), "0.5".into()),
            ("Pong-Caching".into(), "0.1".into()),
            ("Bye-Packet".into(), "0.1".into()),
        ];
        if let Some(l) = self.listen {
            h.push(("Listen-IP".into(), l.to_string()));
        }
        if let Some(r) = self.remote_ip {
            h.push(("Remote-IP".into(), r.to_string()));
        }
        if self.accept_deflate {
            h.push(("Accept-Encoding".into(), "deflate".into()));
        }
        Handshake::connect(h)
    }
}

/// What the handshake settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The ultrapeer compresses what it sends.
    pub inflate_input: bool,
    /// The leaf compresses what it sends.
    pub deflate_output: bool,
    /// The ultrapeer's `User-Agent` (as received; print it escaped).
    pub user_agent: Option<String>,
}

/// Why the ultrapeer's answer ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A status other than 200 (with the reason and any `X-Try-Ultrapeers`
    /// addresses it offered).
    #[error("refused: {code} {reason}")]
    Status {
        /// The code.
        code: u16,
        /// The reason text (as received; print it escaped).
        reason: String,
        /// Other ultrapeers it suggested.
        try_ultrapeers: Vec<SocketAddrV4>,
    },
    /// The answer was a CONNECT line.
    #[error("answer is not a status line")]
    NotStatus,
    /// The peer said 200 but is not an ultrapeer.
    #[error("peer is not an ultrapeer")]
    NotUltrapeer,
    /// The peer will compress with something other than deflate.
    #[error("unsupported Content-Encoding")]
    BadEncoding,
}

/// Checks the ultrapeer's answer (step 2) and settles compression.
pub fn check_ultrapeer_answer(
    offer: &LeafOffer,
    answer: &Handshake,
) -> Result<Negotiated, Refusal> {
    let StartLine::Status { code, reason, .. } = &answer.start else {
        return Err(Refusal::NotStatus);
    };
    if *code != 200 {
        let try_ultrapeers = answer
            .header("X-Try-Ultrapeers")
            .map(parse_try_list)
            .unwrap_or_default();
        return Err(Refusal::Status {
            code: *code,
            reason: reason.clone(),
            try_ultrapeers,
        });
    }
    if !answer.header_is_true("X-Ultrapeer") {
        return Err(Refusal::NotUltrapeer);
    }
    let inflate_input = match answer.header("Content-Encoding").map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("deflate") && offer.accept_deflate => true,
        Some(_) => return Err(Refusal::BadEncoding),
    };
    let deflate_output =
        offer.send_deflate && answer.header_has_token("Accept-Encoding", "deflate");
    Ok(Negotiated {
        inflate_input,
        deflate_output,
        user_agent: answer.header("User-Agent").map(str::to_string),
    })
}

/// The leaf's closing message (step 3): `200 OK`, with `Content-Encoding:
/// deflate` when it compresses.
pub fn leaf_final_answer(n: &Negotiated) -> Handshake {
    let mut h = Vec::new();
    if n.deflate_output {
        h.push(("Content-Encoding".into(), "deflate".into()));
    }
    Handshake::status(200, "OK", h)
}

/// The leaf's step 3 when it gives up after step 2 (e.g. the peer is not
/// an ultrapeer).
pub fn leaf_refusal(code: u16, reason: &str) -> Handshake {
    Handshake::status(code, reason, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_draft_example() {
        // The example exchange of the 0.6 handshake draft (with compression
        // as the compression note adds it).
        let step1 = b"GNUTELLA CONNECT/0.6\r\n\
User-Agent: BearShare/1.0\r\n\
Pong-Caching: 0.1\r\n\
GGEP: 0.5\r\n\
\r\n";
        let (h, used) = parse(step1).unwrap().unwrap();
        assert_eq!(used, step1.len());
        assert_eq!(
            h.start,
            StartLine::Connect {
                version: "0.6".into()
            }
        );
        assert_eq!(h.header("user-agent"), Some("BearShare/1.0"));
        assert_eq!(h.header("GGEP"), Some("0.5"));
        let step2 = b"GNUTELLA/0.6 200 OK\r\nUser-Agent: BearShare/1.0\r\nX-Ultrapeer: True\r\n\
Accept-Encoding: deflate\r\nContent-Encoding: deflate\r\nX-Query-Routing: 0.2\r\n\r\n\x00\x01";
        let (h, used) = parse(step2).unwrap().unwrap();
        assert_eq!(
            used,
            step2.len() - 2,
            "descriptors after the blank line stay in the buffer"
        );
        assert_eq!(h.code(), Some(200));
        let offer = LeafOffer {
            user_agent: "rutella/0.1.0".into(),
            listen: None,
            remote_ip: None,
            accept_deflate: true,
            send_deflate: true,
        };
        let n = check_ultrapeer_answer(&offer, &h).unwrap();
        assert!(n.inflate_input && n.deflate_output);
        assert_eq!(
            leaf_final_answer(&n).encode(),
            b"GNUTELLA/0.6 200 OK\r\nContent-Encoding: deflate\r\n\r\n"
        );
    }

    #[test]
    fn the_leaf_request_byte_by_byte() {
        let offer = LeafOffer {
            user_agent: "rutella/0.1.0".into(),
            listen: Some("127.0.0.1:6346".parse().unwrap()),
            remote_ip: Some(Ipv4Addr::LOCALHOST),
            accept_deflate: true,
            send_deflate: true,
        };
        let bytes = offer.connect_request().encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "GNUTELLA CONNECT/0.6\r\nUser-Agent: rutella/0.1.0\r\nX-Ultrapeer: False\r\n\
X-Query-Routing: 0.2\r\nGGEP: 0.5\r\nPong-Caching: 0.1\r\nBye-Packet: 0.1\r\n\
Listen-IP: 127.0.0.1:6346\r\nRemote-IP: 127.0.0.1\r\nAccept-Encoding: deflate\r\n\r\n"
        );
        assert_eq!(parse(&bytes).unwrap().unwrap().0, offer.connect_request());
    }

    #[test]
    fn refusal_carries_try_ultrapeers() {
        let b = b"GNUTELLA/0.6 403 Gnet connection not compressed\r\n\
X-Try-Ultrapeers: 127.0.0.2:6346, bogus, 127.0.0.3:6347,0.0.0.0:1\r\n\r\n";
        let (h, _) = parse(b).unwrap().unwrap();
        let offer = LeafOffer {
            user_agent: "x".into(),
            listen: None,
            remote_ip: None,
            accept_deflate: false,
            send_deflate: false,
        };
        assert_eq!(
            check_ultrapeer_answer(&offer, &h),
            Err(Refusal::Status {
                code: 403,
                reason: "Gnet connection not compressed".into(),
                try_ultrapeers: vec![
                    "127.0.0.2:6346".parse().unwrap(),
                    "127.0.0.3:6347".parse().unwrap()
                ],
            })
        );
        let leaf = parse(b"GNUTELLA/0.6 200 OK\r\nX-Ultrapeer: False\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            check_ultrapeer_answer(&offer, &leaf),
            Err(Refusal::NotUltrapeer)
        );
        let z =
            parse(b"GNUTELLA/0.6 200 OK\r\nX-Ultrapeer: true\r\nContent-Encoding: deflate\r\n\r\n")
                .unwrap()
                .unwrap()
                .0;
        assert_eq!(
            check_ultrapeer_answer(&offer, &z),
            Err(Refusal::BadEncoding),
            "we did not offer it"
        );
    }

    #[test]
    fn incomplete_folded_and_bounded() {
        assert_eq!(
            parse(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: x\r\n"),
            Ok(None)
        );
        let (h, _) = parse(b"GNUTELLA/0.6 200 OK\nX-Try: 1.2.3.4:5,\n  6.7.8.9:10\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.header("x-try"), Some("1.2.3.4:5, 6.7.8.9:10"));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(HandshakeError::BadStartLine)
        );
        assert_eq!(
            parse(b"GNUTELLA/0.6 2000 OK\r\n\r\n"),
            Err(HandshakeError::BadStartLine)
        );
        assert_eq!(
            parse(b"GNUTELLA/0.6 200 OK\r\nNoColon\r\n\r\n"),
            Err(HandshakeError::BadHeader)
        );
        assert_eq!(
            parse(b"GNUTELLA/0.6 200 OK\r\n continued\r\n\r\n"),
            Err(HandshakeError::BadHeader)
        );
        assert_eq!(
            parse(b"GNUTELLA/0.6 200 OK\r\nA: \x01\r\n\r\n"),
            Err(HandshakeError::BadHeader)
        );
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert_eq!(parse(&long), Err(HandshakeError::LineTooLong));
        let mut many = b"GNUTELLA/0.6 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse(&many), Err(HandshakeError::TooManyHeaders));
        let mut big = b"GNUTELLA/0.6 200 OK\r\n".to_vec();
        while big.len() <= MAX_HANDSHAKE_LEN {
            big.extend(b"X-Long: ");
            big.extend(vec![b'v'; 1000]);
            big.extend(b"\r\n");
        }
        assert!(matches!(
            parse(&big),
            Err(HandshakeError::TooLong) | Err(HandshakeError::TooManyHeaders)
        ));
    }

    proptest::proptest! {
        #[test]
        fn round_trip(
            code in 100u16..1000, reason in "[ -~]{0,30}",
            headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[!-~]([ -~]{0,40}[!-~])?"), 0..10),
        ) {
            let h = Handshake::status(code, reason.trim(), headers.into_iter().collect());
            let bytes = h.encode();
            proptest::prop_assert_eq!(parse(&bytes).unwrap().unwrap(), (h, bytes.len()));
        }
    }
}
