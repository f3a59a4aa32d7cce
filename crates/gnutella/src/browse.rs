//! Browse host: a servent's whole library as query hits over HTTP, both
//! sides, as pure functions (the tokio side is [`fetch`], thin).
//!
//! ```text
//! client → servent   GET / HTTP/1.1
//!                    Host: IP:PORT
//!                    User-Agent: rutella/VERSION
//!                    Accept: application/x-gnutella-packets
//!                    Accept-Encoding: deflate
//!                    Connection: close
//! servent → client   HTTP/1.1 200 OK
//!                    Content-Type: application/x-gnutella-packets
//!                    Content-Encoding: deflate         (when accepted)
//!                    Content-Length: N | Transfer-Encoding: chunked | neither (until close)
//!                    then QueryHit descriptors (23-byte header and payload each),
//!                    as one zlib stream when deflated
//! ```
//!
//! [`encode_hits`] cuts a library into QueryHits of at most
//! [`MAX_HIT_PAYLOAD`] bytes; [`BrowseReader`] reads an answer (head,
//! chunked framing, inflation, descriptors) with bounded buffers, bounded
//! totals and a bounded number of results.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::deflate::{InflateError, Inflater};
use crate::descriptor::{
    encode_extensions, DecodeError, Descriptor, Guid, HitResult, Payload, QueryHit, Trailer,
};
use crate::framer::Framer;
use crate::http::{self, Headers, HttpError, Request, Response};

/// The media type of a stream of query hits.
pub const PACKETS: &str = "application/x-gnutella-packets";
/// The `X-Features` token that says a servent can be browsed.
pub const FEATURE: &str = "browse/1.0";
/// Largest QueryHit payload [`encode_hits`] writes (as gtk-gnutella: hits
/// of about 3.5 KB, many per stream).
pub const MAX_HIT_PAYLOAD: usize = 3500;
/// Longest chunk-size or trailer line read in a chunked body.
pub const MAX_CHUNK_LINE: usize = 1024;

/// Whether a request asks for query hits (`Accept` lists [`PACKETS`]).
pub fn wants_packets(req: &Request) -> bool {
    tokens(req, "accept").any(|t| t.eq_ignore_ascii_case(PACKETS))
}

/// Whether a request accepts a deflated body (`Accept-Encoding: deflate`).
pub fn accepts_deflate(req: &Request) -> bool {
    tokens(req, "accept-encoding").any(|t| t.eq_ignore_ascii_case("deflate"))
}

/// The comma-separated tokens of every header `name`, parameters (`;q=…`)
/// dropped.
fn tokens<'a>(req: &'a Request, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
}

/// Who the hits name: the servent's address, GUID and push flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HitOrigin {
    /// The address downloads go to.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// The servent GUID (pushes name it).
    pub servent: Guid,
    /// Whether the servent cannot be connected to.
    pub push: bool,
    /// The trailer's vendor code.
    pub vendor: [u8; 4],
}

/// The encoded length of one result in a QueryHit.
fn result_len(r: &HitResult) -> usize {
    let mut ext = Vec::new();
    encode_extensions(&r.ext, &mut ext);
    // Index, 32-bit size, name, NUL, extensions, NUL.
    4 + 4 + r.name.len() + 1 + ext.len() + 1
}

/// QueryHit descriptors (header and payload each, back to back) for these
/// results, under `guid`, TTL 1 and hops 0: as many results per hit as fit
/// in [`MAX_HIT_PAYLOAD`] bytes (at least one, at most 255).
pub fn encode_hits(guid: Guid, origin: &HitOrigin, results: Vec<HitResult>) -> Vec<u8> {
    // Count, port, IPv4, speed; the trailer (vendor, length, 2 flags);
    // the servent GUID.
    const FIXED: usize = 1 + 2 + 4 + 4 + (4 + 1 + 2) + 16;
    let mut out = Vec::new();
    let mut batch: Vec<HitResult> = Vec::new();
    let mut len = FIXED;
    let flush = |batch: &mut Vec<HitResult>, out: &mut Vec<u8>| {
        if batch.is_empty() {
            return;
        }
        let d = Descriptor {
            guid,
            ttl: 1,
            hops: 0,
            payload: Payload::QueryHit(QueryHit {
                port: origin.port,
                ip: origin.ip,
                speed: 0,
                results: std::mem::take(batch),
                trailer: Some(Trailer::plain(origin.vendor, origin.push)),
                servent: origin.servent,
            }),
        };
        out.extend_from_slice(&d.encode());
    };
    for r in results {
        let n = result_len(&r);
        if !batch.is_empty() && (len + n > MAX_HIT_PAYLOAD || batch.len() >= 255) {
            flush(&mut batch, &mut out);
            len = FIXED;
        }
        len += n;
        batch.push(r);
    }
    flush(&mut batch, &mut out);
    out
}

/// The browse request for the servent at `host`.
pub fn request(host: SocketAddr, agent: &str) -> Vec<u8> {
    Request::new(
        http::Method::Get,
        http::Target::Browse,
        vec![
            ("Host".into(), host.to_string()),
            ("User-Agent".into(), agent.into()),
            ("Accept".into(), PACKETS.into()),
            ("Accept-Encoding".into(), "deflate".into()),
            ("Connection".into(), "close".into()),
        ],
    )
    .encode()
}

/// Bounds on what a browse answer may make us hold or do.
#[derive(Clone, Debug)]
pub struct BrowseLimits {
    /// Body bytes received (compressed, with the chunked framing).
    pub max_body: u64,
    /// Body bytes after inflation.
    pub max_inflated: u64,
    /// Results kept; the answer is cut there.
    pub max_results: usize,
    /// Time for the connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange.
    pub total_timeout: Duration,
}

impl Default for BrowseLimits {
    fn default() -> Self {
        BrowseLimits {
            max_body: 16 * 1024 * 1024,
            max_inflated: 64 * 1024 * 1024,
            max_results: 10_000,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a browse answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowseError {
    /// The head does not parse.
    #[error("bad HTTP answer: {0}")]
    Http(#[from] HttpError),
    /// An answer other than 200 (406: the servent does not give query
    /// hits; 503: busy).
    #[error("servent answered {code} {reason}")]
    Status {
        /// The status code.
        code: u16,
        /// Its reason text, as received.
        reason: String,
    },
    /// A 200 whose body is not query hits.
    #[error("servent answered something other than query hits")]
    NotPackets,
    /// An encoding other than deflate, or a transfer coding other than
    /// chunked.
    #[error("unsupported encoding")]
    Encoding,
    /// The chunked framing is broken.
    #[error("malformed chunked body")]
    Chunked,
    /// The deflated body is corrupt.
    #[error("corrupt deflated body")]
    Inflate,
    /// A descriptor that cannot be framed.
    #[error("bad descriptor: {0}")]
    Descriptor(#[from] DecodeError),
    /// More body than [`BrowseLimits`] allow.
    #[error("answer larger than allowed")]
    TooLarge,
    /// The connection ended before the body did.
    #[error("answer cut short")]
    Truncated,
}

/// How the body ends.
#[derive(Debug)]
enum Length {
    /// After this many more bytes.
    Fixed(u64),
    /// Chunked: the state of the framing.
    Chunked(Chunk),
    /// When the connection closes.
    Close,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// This many bytes of data left in the chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty one.
    Trailer(Vec<u8>),
    /// The body is over.
    Done,
}

/// Reads a browse answer fed in pieces: the head, then the body's query
/// hits, each handed out as soon as it is whole.
pub struct BrowseReader {
    limits: BrowseLimits,
    head: Option<Vec<u8>>,
    length: Length,
    inflater: Option<Inflater>,
    framer: Framer,
    body: u64,
    inflated: u64,
    results: usize,
    full: bool,
}

/// What one [`BrowseReader::push`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// Query hits completed (their results cut to the limit).
    pub hits: Vec<QueryHit>,
    /// Descriptors of other kinds, skipped.
    pub skipped: usize,
}

impl BrowseReader {
    /// A reader within `limits`.
    pub fn new(limits: BrowseLimits) -> BrowseReader {
        BrowseReader {
            limits,
            head: Some(Vec::new()),
            length: Length::Close,
            inflater: None,
            framer: Framer::new(),
            body: 0,
            inflated: 0,
            results: 0,
            full: false,
        }
    }

    /// Whether the answer is over: the body's length reached, the last
    /// chunk read, or [`BrowseLimits::max_results`] results kept.
    pub fn is_done(&self) -> bool {
        self.full
            || matches!(self.length, Length::Fixed(0))
            || matches!(self.length, Length::Chunked(Chunk::Done))
    }

    /// Results handed out so far.
    pub fn results(&self) -> usize {
        self.results
    }

    /// Feeds bytes as they arrive.
    pub fn push(&mut self, mut input: &[u8]) -> Result<Found, BrowseError> {
        let mut found = Found::default();
        if let Some(buf) = &mut self.head {
            let room = http::MAX_HEAD_LEN.saturating_sub(buf.len()) + 1;
            let take = input.len().min(room);
            buf.extend_from_slice(&input[..take]);
            let Some((resp, used)) = http::parse_response(buf)? else {
                if buf.len() > http::MAX_HEAD_LEN {
                    return Err(HttpError::TooLong.into());
                }
                return Ok(found);
            };
            // The head's bytes were all in `buf`; what followed it in
            // `input` is body.
            let rest = buf.len() - used;
            input = &input[take - rest..];
            self.start(&resp)?;
            self.head = None;
        }
        self.body(input, &mut found)?;
        Ok(found)
    }

    /// The connection closed: an error unless the body was complete (or
    /// ends with the connection).
    pub fn finish(&self) -> Result<(), BrowseError> {
        if self.head.is_some() {
            return Err(BrowseError::Truncated);
        }
        match &self.length {
            _ if self.full => Ok(()),
            Length::Fixed(0) | Length::Chunked(Chunk::Done) => Ok(()),
            Length::Close if !self.framer.is_mid_descriptor() => Ok(()),
            _ => Err(BrowseError::Truncated),
        }
    }

    fn start(&mut self, resp: &Response) -> Result<(), BrowseError> {
        if resp.code != 200 {
            return Err(BrowseError::Status {
                code: resp.code,
                reason: resp.reason.chars().take(200).collect(),
            });
        }
        let ct = resp.header("content-type").unwrap_or("");
        let ct = ct.split(';').next().unwrap_or("").trim();
        if !ct.eq_ignore_ascii_case(PACKETS) {
            return Err(BrowseError::NotPackets);
        }
        match resp.header("content-encoding").map(str::trim) {
            None => {}
            Some(e) if e.eq_ignore_ascii_case("deflate") => self.inflater = Some(Inflater::new()),
            Some(e) if e.eq_ignore_ascii_case("identity") => {}
            Some(_) => return Err(BrowseError::Encoding),
        }
        self.length = match resp.header("transfer-encoding").map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("chunked") => {
                Length::Chunked(Chunk::Size(Vec::new()))
            }
            Some(t) if !t.eq_ignore_ascii_case("identity") => return Err(BrowseError::Encoding),
            _ => match resp.content_length()? {
                Some(n) if n > self.limits.max_body => return Err(BrowseError::TooLarge),
                Some(n) => Length::Fixed(n),
                None => Length::Close,
            },
        };
        Ok(())
    }

    /// Raw body bytes: the chunked framing taken off, then on.
    fn body(&mut self, input: &[u8], found: &mut Found) -> Result<(), BrowseError> {
        if input.is_empty() || self.full {
            return Ok(());
        }
        self.body += input.len() as u64;
        if self.body > self.limits.max_body {
            return Err(BrowseError::TooLarge);
        }
        match &mut self.length {
            Length::Close => self.content(input, found),
            Length::Fixed(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *left -= n as u64;
                // Bytes past the announced length are ignored.
                self.content(&input[..n], found)
            }
            Length::Chunked(_) => {
                let mut at = 0;
                while at < input.len() {
                    let Length::Chunked(state) = &mut self.length else {
                        return Ok(());
                    };
                    let b = input[at];
                    match state {
                        Chunk::Size(line) => {
                            at += 1;
                            if b != b'\n' {
                                line.push(b);
                                if line.len() > MAX_CHUNK_LINE {
                                    return Err(BrowseError::Chunked);
                                }
                                continue;
                            }
                            let n = chunk_size(line).ok_or(BrowseError::Chunked)?;
                            *state = if n == 0 {
                                Chunk::Trailer(Vec::new())
                            } else {
                                Chunk::Data(n)
                            };
                        }
                        Chunk::Data(left) => {
                            let n = usize::try_from(*left)
                                .unwrap_or(usize::MAX)
                                .min(input.len() - at);
                            *left -= n as u64;
                            if *left == 0 {
                                *state = Chunk::DataEnd;
                            }
                            self.content(&input[at..at + n], found)?;
                            at += n;
                        }
                        Chunk::DataEnd => {
                            at += 1;
                            match b {
                                b'\r' => {}
                                b'\n' => *state = Chunk::Size(Vec::new()),
                                _ => return Err(BrowseError::Chunked),
                            }
                        }
                        Chunk::Trailer(line) => {
                            at += 1;
                            if b != b'\n' {
                                line.push(b);
                                if line.len() > MAX_CHUNK_LINE {
                                    return Err(BrowseError::Chunked);
                                }
                                continue;
                            }
                            if line.is_empty() || line == b"\r" {
                                *state = Chunk::Done;
                            } else {
                                line.clear();
                            }
                        }
                        // Bytes after the last chunk are ignored.
                        Chunk::Done => return Ok(()),
                    }
                }
                Ok(())
            }
        }
    }

    /// Content bytes (still deflated when the body is).
    fn content(&mut self, mut input: &[u8], found: &mut Found) -> Result<(), BrowseError> {
        let Some(mut inf) = self.inflater.take() else {
            return self.packets(input, found);
        };
        let r = (|| {
            let mut out = Vec::new();
            // Until all input is in and nothing more comes out (output
            // is taken 64 KiB at a time).
            while !self.full {
                out.clear();
                let used = match inf.inflate(input, &mut out, 64 * 1024) {
                    Ok(u) => u,
                    // Bytes after the end of the zlib stream are ignored.
                    Err(InflateError::Ended) => return Ok(()),
                    Err(InflateError::Corrupt) => return Err(BrowseError::Inflate),
                };
                input = &input[used..];
                if used == 0 && out.is_empty() {
                    break;
                }
                self.packets(&out, found)?;
            }
            Ok(())
        })();
        self.inflater = Some(inf);
        r
    }

    /// Plain descriptor bytes.
    fn packets(&mut self, mut input: &[u8], found: &mut Found) -> Result<(), BrowseError> {
        self.inflated += input.len() as u64;
        if self.inflated > self.limits.max_inflated {
            return Err(BrowseError::TooLarge);
        }
        while !input.is_empty() && !self.full {
            let (used, frame) = self.framer.push(input)?;
            input = &input[used..];
            let Some((h, payload)) = frame else { continue };
            match Descriptor::decode(&h, &payload) {
                Ok(Descriptor {
                    payload: Payload::QueryHit(mut hit),
                    ..
                }) => {
                    let room = self.limits.max_results - self.results;
                    if hit.results.len() >= room {
                        hit.results.truncate(room);
                        self.full = true;
                    }
                    self.results += hit.results.len();
                    found.hits.push(hit);
                }
                // Other kinds, and hits that do not decode, are skipped:
                // the framing still holds.
                _ => found.skipped += 1,
            }
        }
        Ok(())
    }
}

/// The size of a chunk-size line (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    let hex = line.split(';').next()?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Why a browse failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The answer was refused.
    #[error("{0}")]
    Answer(#[from] BrowseError),
    /// No connection, or it failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// [`BrowseLimits::connect_timeout`] or
    /// [`BrowseLimits::total_timeout`] passed.
    #[error("no answer in time")]
    Timeout,
}

/// Browses the servent at `addr`: its query hits, within `limits`.
pub async fn fetch(
    addr: SocketAddr,
    agent: &str,
    limits: BrowseLimits,
) -> Result<Vec<QueryHit>, FetchError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let total = limits.total_timeout;
    let connect = limits.connect_timeout;
    let run = async move {
        let mut s = tokio::time::timeout(connect, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| FetchError::Timeout)??;
        s.write_all(&request(addr, agent)).await?;
        let mut reader = BrowseReader::new(limits);
        let mut hits = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                reader.finish()?;
                break;
            }
            hits.extend(reader.push(&buf[..n])?.hits);
            if reader.is_done() {
                break;
            }
        }
        Ok(hits)
    };
    tokio::time::timeout(total, run)
        .await
        .map_err(|_| FetchError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::deflate_all;
    use crate::descriptor::Extensions;
    use crate::huge::Urn;
    use proptest::prelude::*;

    fn origin() -> HitOrigin {
        HitOrigin {
            ip: Ipv4Addr::new(127, 0, 0, 1),
            port: 6346,
            servent: [7; 16],
            push: false,
            vendor: *b"RTLA",
        }
    }

    fn files(n: usize) -> Vec<HitResult> {
        (0..n)
            .map(|i| HitResult {
                index: i as u32,
                size: 1000 + i as u64,
                name: format!("song number {i}.ogg").into_bytes(),
                ext: Extensions {
                    urns: vec![Urn::Sha1([i as u8; 20])],
                    ..Extensions::default()
                },
            })
            .collect()
    }

    fn answer(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut a = format!("HTTP/1.1 200 OK\r\n{headers}\r\n").into_bytes();
        a.extend_from_slice(body);
        a
    }

    fn read_all(
        bytes: &[u8],
        step: usize,
        limits: BrowseLimits,
    ) -> Result<Vec<QueryHit>, BrowseError> {
        let mut r = BrowseReader::new(limits);
        let mut hits = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            hits.extend(r.push(piece)?.hits);
        }
        r.finish()?;
        Ok(hits)
    }

    fn chunked(body: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in body.chunks(size.max(1)) {
            out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nX-Trailer: y\r\n\r\n");
        out
    }

    #[test]
    fn hits_are_cut_to_size_and_read_back_every_way() {
        let body = encode_hits([1; 16], &origin(), files(300));
        let mut n = 0;
        let mut at = 0;
        while at < body.len() {
            let len = u32::from_le_bytes(body[at + 19..at + 23].try_into().unwrap()) as usize;
            assert!(len <= MAX_HIT_PAYLOAD, "{len}");
            assert_eq!(body[at + 16], 0x81);
            at += 23 + len;
            n += 1;
        }
        assert!(n > 1);
        let deflated = deflate_all(&body);
        let t = PACKETS;
        for (headers, b) in [
            (format!("Content-Type: {t}\r\nContent-Length: {}\r\n", body.len()), body.clone()),
            (format!("Content-Type: {t}\r\n"), body.clone()),
            (format!("Content-Type: {t}\r\nContent-Encoding: deflate\r\n"), deflated.clone()),
            (
                format!("Content-Type: {t}\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n"),
                chunked(&deflated, 333),
            ),
            (format!("Content-Type: {t}\r\nTransfer-Encoding: chunked\r\n"), chunked(&body, 1000)),
        ] {
            for step in [1, 7, 4096, usize::MAX] {
                let hits = read_all(&answer(&headers, &b), step, BrowseLimits::default()).unwrap();
                let got: Vec<HitResult> = hits.into_iter().flat_map(|h| h.results).collect();
                assert_eq!(got, files(300), "{headers} {step}");
            }
        }
    }

    #[test]
    fn limits_hold() {
        let body = encode_hits([1; 16], &origin(), files(300));
        let t = PACKETS;
        let a = answer(&format!("Content-Type: {t}\r\n"), &body);
        // Results are cut at the limit, and the answer is then over.
        let mut r = BrowseReader::new(BrowseLimits {
            max_results: 10,
            ..BrowseLimits::default()
        });
        let found = r.push(&a).unwrap();
        assert_eq!(
            found.hits.iter().map(|h| h.results.len()).sum::<usize>(),
            10
        );
        assert!(r.is_done());
        // A body larger than allowed is refused, announced or not.
        let small = BrowseLimits {
            max_body: 1000,
            ..BrowseLimits::default()
        };
        assert_eq!(
            read_all(&a, 512, small.clone()).unwrap_err(),
            BrowseError::TooLarge
        );
        let a2 = answer(
            &format!("Content-Type: {t}\r\nContent-Length: 5000\r\n"),
            b"",
        );
        assert_eq!(
            read_all(&a2, 512, small).unwrap_err(),
            BrowseError::TooLarge
        );
        // A deflate bomb is stopped by the inflated bound.
        let bomb = deflate_all(&vec![0u8; 4 << 20]);
        let a3 = answer(
            &format!("Content-Type: {t}\r\nContent-Encoding: deflate\r\n"),
            &bomb,
        );
        let r = read_all(
            &a3,
            4096,
            BrowseLimits {
                max_inflated: 1 << 20,
                ..BrowseLimits::default()
            },
        );
        assert!(
            matches!(r, Err(BrowseError::TooLarge | BrowseError::Descriptor(_))),
            "{r:?}"
        );
    }

    #[test]
    fn refusals_are_told_apart() {
        let r = read_all(
            b"HTTP/1.1 406 Not Acceptable\r\n\r\n",
            100,
            BrowseLimits::default(),
        );
        assert_eq!(
            r.unwrap_err(),
            BrowseError::Status {
                code: 406,
                reason: "Not Acceptable".into()
            }
        );
        let r = read_all(
            &answer("Content-Type: text/html\r\n", b"<html>"),
            100,
            BrowseLimits::default(),
        );
        assert_eq!(r.unwrap_err(), BrowseError::NotPackets);
        let t = PACKETS;
        let r = read_all(
            &answer(
                &format!("Content-Type: {t}\r\nContent-Encoding: gzip\r\n"),
                b"",
            ),
            100,
            BrowseLimits::default(),
        );
        assert_eq!(r.unwrap_err(), BrowseError::Encoding);
        let r = read_all(
            &answer(
                &format!("Content-Type: {t}\r\nTransfer-Encoding: chunked\r\n"),
                b"zz\r\n",
            ),
            100,
            BrowseLimits::default(),
        );
        assert_eq!(r.unwrap_err(), BrowseError::Chunked);
        // Cut in the middle of a descriptor, or of a fixed-length body.
        let body = encode_hits([1; 16], &origin(), files(3));
        let r = read_all(
            &answer(&format!("Content-Type: {t}\r\n"), &body[..body.len() - 3]),
            100,
            BrowseLimits::default(),
        );
        assert_eq!(r.unwrap_err(), BrowseError::Truncated);
        let r = read_all(
            &answer(
                &format!("Content-Type: {t}\r\nContent-Length: 9999\r\n"),
                &body,
            ),
            100,
            BrowseLimits::default(),
        );
        assert_eq!(r.unwrap_err(), BrowseError::Truncated);
        assert_eq!(
            read_all(b"HTTP/1.1 200", 100, BrowseLimits::default()).unwrap_err(),
            BrowseError::Truncated
        );
        assert!(read_all(b"SSH-2.0\r\n", 100, BrowseLimits::default()).is_err());
    }

    #[test]
    fn the_request_and_its_recognition() {
        let raw = request("127.0.0.1:6346".parse().unwrap(), "rutella/test");
        let (req, used) = http::parse_request(&raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(req.target, http::Target::Browse);
        assert!(raw.starts_with(b"GET / HTTP/1.1\r\n"));
        assert!(wants_packets(&req));
        assert!(accepts_deflate(&req));
        let (other, _) = http::parse_request(
            b"GET / HTTP/1.1\r\nAccept: text/html, application/X-Gnutella-Packets;q=0.5\r\nAccept-Encoding: gzip\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(wants_packets(&other));
        assert!(!accepts_deflate(&other));
    }

    proptest! {
        #[test]
        fn the_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..64) {
            let t = PACKETS;
            for head in [
                String::new(),
                format!("HTTP/1.1 200 OK\r\nContent-Type: {t}\r\n\r\n"),
                format!("HTTP/1.1 200 OK\r\nContent-Type: {t}\r\nTransfer-Encoding: chunked\r\nContent-Encoding: deflate\r\n\r\n"),
            ] {
                let mut a = head.into_bytes();
                a.extend_from_slice(&bytes);
                let mut r = BrowseReader::new(BrowseLimits { max_results: 5, ..BrowseLimits::default() });
                let mut n = 0;
                for piece in a.chunks(step) {
                    match r.push(piece) {
                        Ok(f) => n += f.hits.iter().map(|h| h.results.len()).sum::<usize>(),
                        Err(_) => break,
                    }
                }
                prop_assert!(n <= 5);
                let _ = r.finish();
            }
        }

        #[test]
        fn encoded_hits_read_back(n in 0usize..400, step in 1usize..5000) {
            let body = encode_hits([2; 16], &origin(), files(n));
            let a = answer(&format!("Content-Type: {PACKETS}\r\nContent-Encoding: deflate\r\n"), &deflate_all(&body));
            let hits = read_all(&a, step, BrowseLimits::default()).unwrap();
            for h in &hits {
                prop_assert_eq!(h.port, 6346);
                prop_assert_eq!(h.servent, [7; 16]);
            }
            let got: Vec<HitResult> = hits.into_iter().flat_map(|h| h.results).collect();
            prop_assert_eq!(got, files(n));
        }
    }
}
