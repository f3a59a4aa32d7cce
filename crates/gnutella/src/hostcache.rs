//! Bootstrapping from host caches, the pure parts: GWebCache requests and
//! answers (HTTP), and UDP host cache pings and pongs.
//!
//! ```text
//! GWebCache   GET /PATH?get=1&hostfile=1&net=gnutella&client=RTLA&version=V HTTP/1.0
//!             answered by lines: "H|IP:PORT|…" (spec 2), "IP:PORT" (spec 1),
//!             "U|URL|…" or "http://…" (other caches), "I|…" (info), "ERROR…"
//! UDP cache   Ping, TTL 1, hops 0, GGEP "SCP" = [0x00] (a leaf, wants ultrapeers)
//!             answered by a Pong with the Ping's GUID and GGEP "IPP":
//!             6 bytes an ultrapeer, IPv4 (network order) then port (LE)
//! ```
//!
//! Everything is bounded: answers are read up to [`MAX_GWC_BODY`] bytes and
//! [`MAX_HOSTS`] addresses, URLs to [`MAX_URL_LEN`] bytes. An address that
//! cannot be an ultrapeer (unspecified, port 0, multicast, broadcast) is
//! dropped, and so is a loopback or private one named by a cache that is
//! not itself loopback or private (a public cache cannot send us into our
//! own network).

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use crate::descriptor::{Descriptor, Guid, Payload, Ping};
use crate::ggep::Extension;

/// Bytes of a GWebCache answer read at most (head and body).
pub const MAX_GWC_BODY: usize = 64 * 1024;
/// Addresses kept from one answer.
pub const MAX_HOSTS: usize = 100;
/// Other caches' URLs kept from one answer.
pub const MAX_URLS: usize = 20;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 512;
/// Longest line of an answer looked at (longer ones are skipped).
pub const MAX_LINE: usize = 1024;

/// A GWebCache's `http://HOST[:PORT]/PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUrl {
    /// A DNS name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// 80 unless given.
    pub port: u16,
    /// Starts with `/`; no query part.
    pub path: String,
}

impl std::fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Parses a GWebCache URL: `http://` only (caches are plain HTTP), a host
/// of letters, digits, `.` and `-` (or an IP), an optional port, a path of
/// visible ASCII without `?` or `#`; at most [`MAX_URL_LEN`] bytes.
pub fn parse_url(url: &str) -> Option<CacheUrl> {
    if url.len() > MAX_URL_LEN {
        return None;
    }
    let rest = url
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        return None;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        let (h, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 80),
        };
        if h.is_empty()
            || h.len() > 253
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return None;
        }
        (h.to_ascii_lowercase(), port)
    };
    if port == 0 {
        return None;
    }
    Some(CacheUrl {
        host,
        port,
        path: path.to_string(),
    })
}

/// The request for ultrapeers to a GWebCache (both spec versions asked at
/// once: `get=1` for `H|` lines, `hostfile=1` for plain ones).
pub fn gwc_request(url: &CacheUrl, client: &[u8; 4], version: &str) -> Vec<u8> {
    let client = String::from_utf8_lossy(client);
    let version: String = version
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .take(32)
        .collect();
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host = if url.port == 80 {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    format!(
        "GET {}?get=1&hostfile=1&net=gnutella&client={client}&version={version} HTTP/1.0\r\n\
         Host: {host}\r\n\
         User-Agent: rutella/{version}\r\n\
         Connection: close\r\n\r\n",
        url.path
    )
    .into_bytes()
}

/// What a host cache told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// Ultrapeer addresses (at most [`MAX_HOSTS`], no duplicates).
    pub hosts: Vec<SocketAddrV4>,
    /// Other GWebCaches (at most [`MAX_URLS`]).
    pub caches: Vec<CacheUrl>,
}

/// Whether `ip` is in our own networks: loopback, private, link-local,
/// shared (100.64/10) or benchmarking (198.18/15).
pub fn is_local(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 198 && (o[1] & 0xFE) == 18)
}

/// Whether a cache at `cache` may name `ip`: never an address that cannot
/// be a servent; a local one only from a local cache.
pub fn acceptable(ip: Ipv4Addr, port: u16, cache: IpAddr) -> bool {
    if port == 0 || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return false;
    }
    let cache_local = match cache {
        IpAddr::V4(c) => is_local(c),
        IpAddr::V6(c) => {
            c.is_loopback()
                || c.to_ipv4_mapped().is_some_and(is_local)
                || (c.segments()[0] & 0xfe00) == 0xfc00
        }
    };
    cache_local || !is_local(ip)
}

fn push_host(out: &mut Learned, a: SocketAddrV4, cache: IpAddr) {
    if out.hosts.len() < MAX_HOSTS
        && acceptable(*a.ip(), a.port(), cache)
        && !out.hosts.contains(&a)
    {
        out.hosts.push(a);
    }
}

/// Reads the body of a GWebCache answer (after the HTTP head) from the
/// cache at `cache`: `H|IP:PORT|…` and plain `IP:PORT` lines are hosts,
/// `U|URL|…` and plain `http://…` lines are caches; everything else
/// (`I|`, `ERROR`, HTML) is skipped. At most [`MAX_GWC_BODY`] bytes are
/// looked at.
pub fn parse_gwc_body(body: &[u8], cache: IpAddr) -> Learned {
    let body = &body[..body.len().min(MAX_GWC_BODY)];
    let mut out = Learned::default();
    for line in body.split(|&b| b == b'\n') {
        if line.len() > MAX_LINE {
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim();
        let mut fields = line.split('|');
        let first = fields.next().unwrap_or("");
        match first {
            "H" | "h" => {
                if let Some(a) = fields.next().and_then(|a| a.trim().parse().ok()) {
                    push_host(&mut out, a, cache);
                }
            }
            "U" | "u" => {
                if let Some(u) = fields.next().and_then(|u| parse_url(u.trim())) {
                    if out.caches.len() < MAX_URLS && !out.caches.contains(&u) {
                        out.caches.push(u);
                    }
                }
            }
            _ if line.contains('|') => {}
            _ => {
                if let Ok(a) = line.parse::<SocketAddrV4>() {
                    push_host(&mut out, a, cache);
                } else if let Some(u) = parse_url(line) {
                    if out.caches.len() < MAX_URLS && !out.caches.contains(&u) {
                        out.caches.push(u);
                    }
                }
            }
        }
    }
    out
}

/// A whole GWebCache answer (HTTP head and body): `None` unless it is a
/// `200`.
pub fn parse_gwc_answer(bytes: &[u8], cache: IpAddr) -> Option<Learned> {
    let bytes = &bytes[..bytes.len().min(MAX_GWC_BODY)];
    let (resp, used) = crate::http::parse_response(bytes).ok()??;
    (resp.code == 200).then(|| parse_gwc_body(&bytes[used..], cache))
}

/// The UDP host cache ping: TTL 1, hops 0, GGEP `SCP` with one flags byte
/// 0 (a leaf that wants ultrapeers).
pub fn uhc_ping(guid: Guid) -> Vec<u8> {
    Descriptor {
        guid,
        ttl: 1,
        hops: 0,
        payload: Payload::Ping(Ping {
            ggep: vec![Extension::new(b"SCP", vec![0])],
        }),
    }
    .encode()
}

/// Reads a datagram from the UDP host cache at `cache` as the answer to
/// our ping `guid`: a Pong with that GUID, whose own address and GGEP
/// `IPP` entries are the hosts. `None` for anything else.
pub fn parse_uhc_pong(datagram: &[u8], guid: &Guid, cache: IpAddr) -> Option<Learned> {
    let d = Descriptor::decode_bytes(datagram).ok()?;
    if d.guid != *guid {
        return None;
    }
    let Payload::Pong(p) = d.payload else {
        return None;
    };
    let mut out = Learned::default();
    for e in p.ggep.iter().filter(|e| e.id == b"IPP") {
        for c in e.data.chunks_exact(6) {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            let port = u16::from_le_bytes([c[4], c[5]]);
            push_host(&mut out, SocketAddrV4::new(ip, port), cache);
        }
    }
    push_host(&mut out, SocketAddrV4::new(p.ip, p.port), cache);
    Some(out)
}

/// The GGEP `IPP` data of these addresses (what a UDP host cache sends;
/// for tests and caches).
pub fn encode_ipp(hosts: &[SocketAddrV4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hosts.len() * 6);
    for h in hosts {
        out.extend_from_slice(&h.ip().octets());
        out.extend_from_slice(&h.port().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Pong;
    use proptest::prelude::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn urls() {
        let u = parse_url("http://Cache.Example.org/gwc/gcache.php").unwrap();
        assert_eq!(
            u,
            CacheUrl {
                host: "cache.example.org".into(),
                port: 80,
                path: "/gwc/gcache.php".into()
            }
        );
        assert_eq!(parse_url("http://127.0.0.1:8080").unwrap().path, "/");
        assert_eq!(parse_url("http://[::1]:81/x").unwrap().host, "::1");
        for bad in [
            "https://a.org/",
            "ftp://a.org/",
            "http://",
            "http://a b/",
            "http://a.org:0/",
            "http://a.org:99999/",
            "http://a.org/x?y=1",
            "http://a.org/\u{1b}[31m",
            "http://user@a.org/",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
        assert!(parse_url(&format!("http://a.org/{}", "x".repeat(600))).is_none());
        let r = gwc_request(
            &parse_url("http://127.0.0.1:8080/g.php").unwrap(),
            b"RTLA",
            "0.1.0",
        );
        assert!(r.starts_with(
            b"GET /g.php?get=1&hostfile=1&net=gnutella&client=RTLA&version=0.1.0 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"
        ));
    }

    #[test]
    fn gwc_answers_of_both_versions() {
        let body = b"I|pong|cache 1.0\r\nH|1.2.3.4:6346|120\r\nH|5.6.7.8:6347\r\n9.9.9.9:6348\r\n\
U|http://other.example/g.php|100\r\nhttp://third.example/x\r\nERROR\r\nH|junk\r\n\
H|0.0.0.0:1\r\nH|1.2.3.4:0\r\nH|224.0.0.1:6346\r\nH|1.2.3.4:6346\r\nH|10.0.0.1:6346\r\n<html>\r\n";
        let l = parse_gwc_body(body, PUBLIC);
        let want: Vec<SocketAddrV4> = ["1.2.3.4:6346", "5.6.7.8:6347", "9.9.9.9:6348"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(l.hosts, want);
        assert_eq!(l.caches.len(), 2);
        // A local cache may name local hosts; a public one may not.
        let l = parse_gwc_body(b"H|127.0.0.1:7000\n10.0.0.1:7001\n", LOCAL);
        assert_eq!(l.hosts.len(), 2);
        let l = parse_gwc_body(b"H|127.0.0.1:7000\n10.0.0.1:7001\n", PUBLIC);
        assert!(l.hosts.is_empty());
        // Bounded.
        let many: String = (0..500)
            .map(|i| format!("H|1.2.{}.{}:6346\n", i / 250, i % 250 + 1))
            .collect();
        assert_eq!(
            parse_gwc_body(many.as_bytes(), PUBLIC).hosts.len(),
            MAX_HOSTS
        );
        // Only a 200 counts.
        assert!(
            parse_gwc_answer(b"HTTP/1.0 404 Not Found\r\n\r\nH|1.2.3.4:6346\n", PUBLIC).is_none()
        );
        let l = parse_gwc_answer(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nH|1.2.3.4:6346\n",
            PUBLIC,
        )
        .unwrap();
        assert_eq!(l.hosts, vec!["1.2.3.4:6346".parse().unwrap()]);
    }

    #[test]
    fn uhc_ping_and_pong() {
        let guid = [9u8; 16];
        let ping = uhc_ping(guid);
        // Header: GUID, kind 0, TTL 1, hops 0, then the GGEP block with SCP.
        assert_eq!(&ping[..16], &guid);
        assert_eq!(&ping[16..19], &[0x00, 1, 0]);
        assert_eq!(ping[23], 0xC3);
        assert!(ping.windows(3).any(|w| w == b"SCP"));
        let hosts: Vec<SocketAddrV4> = vec![
            "1.2.3.4:6346".parse().unwrap(),
            "5.6.7.8:7000".parse().unwrap(),
        ];
        let ipp = encode_ipp(&hosts);
        assert_eq!(&ipp[..6], &[1, 2, 3, 4, 0xCA, 0x18]);
        let pong = |g: Guid| {
            Descriptor {
                guid: g,
                ttl: 1,
                hops: 0,
                payload: Payload::Pong(Pong {
                    port: 6346,
                    ip: Ipv4Addr::new(9, 8, 7, 6),
                    files: 0,
                    kbytes: 0,
                    ggep: vec![Extension::new(b"IPP", ipp.clone())],
                }),
            }
            .encode()
        };
        let l = parse_uhc_pong(&pong(guid), &guid, PUBLIC).unwrap();
        assert_eq!(
            l.hosts,
            vec![hosts[0], hosts[1], "9.8.7.6:6346".parse().unwrap()]
        );
        // Another GUID, a ping, garbage: nothing.
        assert!(parse_uhc_pong(&pong([1; 16]), &guid, PUBLIC).is_none());
        assert!(parse_uhc_pong(&ping, &guid, PUBLIC).is_none());
        assert!(parse_uhc_pong(b"junk", &guid, PUBLIC).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2000), g in any::<[u8; 16]>()) {
            let l = parse_gwc_body(&bytes, PUBLIC);
            prop_assert!(l.hosts.len() <= MAX_HOSTS && l.caches.len() <= MAX_URLS);
            let _ = parse_gwc_answer(&bytes, LOCAL);
            if let Some(l) = parse_uhc_pong(&bytes, &g, LOCAL) {
                prop_assert!(l.hosts.len() <= MAX_HOSTS);
            }
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Some(u) = parse_url(s) {
                    prop_assert_eq!(parse_url(&u.to_string()), Some(u));
                }
            }
        }

        #[test]
        fn ipp_round_trips(hosts in proptest::collection::vec((1u8..224, any::<u8>(), any::<u8>(), 1u8..255, 1u16..), 0..50)) {
            let hosts: Vec<SocketAddrV4> = hosts.into_iter().map(|(a, b, c, d, p)| SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), p)).collect();
            let guid = [3u8; 16];
            let pong = Descriptor {
                guid,
                ttl: 1,
                hops: 0,
                payload: Payload::Pong(Pong { port: 1, ip: Ipv4Addr::new(127, 0, 0, 1), files: 0, kbytes: 0, ggep: vec![Extension::new(b"IPP", encode_ipp(&hosts))] }),
            }.encode();
            let l = parse_uhc_pong(&pong, &guid, LOCAL).unwrap();
            let mut want: Vec<SocketAddrV4> = Vec::new();
            for h in hosts.iter().chain(std::iter::once(&"127.0.0.1:1".parse().unwrap())) {
                if !want.contains(h) && want.len() < MAX_HOSTS { want.push(*h); }
            }
            prop_assert_eq!(l.hosts, want);
        }
    }
}
