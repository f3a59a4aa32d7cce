//! Bootstrapping the Gnutella leaf from host caches: UDP host caches
//! first (one datagram each way), then GWebCaches (one HTTP GET each),
//! until enough ultrapeer addresses are known or
//! `GnutellaSettings::bootstrap_max_caches` caches were asked. The parsing
//! is `rutella_gnutella::hostcache`'s; this is the thin I/O around it.
//! Used only when no address was given and the host cache is empty.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rutella_gnutella::hostcache::{self, Learned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::gnutella_types::GnutellaSettings;

/// Addresses wanted before no more caches are asked.
const ENOUGH: usize = 10;
/// Datagrams read from one UDP host cache while waiting for its pong.
const MAX_DATAGRAMS: usize = 8;

/// Whether the test guard is set: then only loopback caches are asked.
fn no_public() -> bool {
    std::env::var(crate::NO_PUBLIC_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The first address `host:port` resolves to, within `t`; under the test
/// guard, loopback only.
async fn resolve(host: &str, port: u16, t: Duration) -> Option<SocketAddr> {
    let addrs = timeout(t, tokio::net::lookup_host((host, port)))
        .await
        .ok()?
        .ok()?;
    let mut addrs = addrs.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
    let a = addrs.find(|a| a.is_ipv4())?;
    if no_public() && !a.ip().is_loopback() {
        tracing::warn!(cache = %host, "{} is set: a cache that is not on loopback is not asked", crate::NO_PUBLIC_ENV);
        return None;
    }
    Some(a)
}

/// Asks the UDP host cache `cache` (`HOST:PORT`).
async fn ask_uhc(cache: &str, t: Duration) -> Option<Learned> {
    let (host, port) = cache.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let addr = resolve(host.trim_matches(['[', ']']), port, t).await?;
    let sock = tokio::net::UdpSocket::bind((IpAddr::from([0u8, 0, 0, 0]), 0))
        .await
        .ok()?;
    let guid = rutella_gnutella::leaf::new_guid();
    sock.send_to(&hostcache::uhc_ping(guid), addr).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let until = tokio::time::Instant::now() + t;
    for _ in 0..MAX_DATAGRAMS {
        let (n, from) = tokio::time::timeout_at(until, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from.ip().to_canonical() != addr.ip() {
            continue;
        }
        if let Some(l) = hostcache::parse_uhc_pong(&buf[..n], &guid, addr.ip()) {
            return Some(l);
        }
    }
    None
}

/// Asks the GWebCache at `url`.
async fn ask_gwc(url: &str, t: Duration) -> Option<Learned> {
    let u = hostcache::parse_url(url)?;
    let addr = resolve(&u.host, u.port, t).await?;
    let run = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = hostcache::gwc_request(
            &u,
            &rutella_gnutella::leaf::VENDOR_CODE,
            env!("CARGO_PKG_VERSION"),
        );
        s.write_all(&req).await.ok()?;
        let mut all = Vec::new();
        (&mut s)
            .take(hostcache::MAX_GWC_BODY as u64)
            .read_to_end(&mut all)
            .await
            .ok()?;
        hostcache::parse_gwc_answer(&all, addr.ip())
    };
    timeout(t, run).await.ok()?
}

/// Asks the configured caches (UDP first, then GWebCaches), at most
/// `bootstrap_max_caches` in all, until [`ENOUGH`] addresses are known.
pub(crate) async fn bootstrap(s: &GnutellaSettings) -> Vec<SocketAddrV4> {
    let mut found: Vec<SocketAddrV4> = Vec::new();
    let mut asked = 0usize;
    let t = s.bootstrap_timeout;
    // Start at a random place in each list, so that not every node asks
    // the first cache.
    let rot = |n: usize| {
        if n == 0 {
            0
        } else {
            rand::random::<u32>() as usize % n
        }
    };
    let mut uhc = s.udp_host_caches.clone();
    let r = rot(uhc.len());
    uhc.rotate_left(r);
    let mut gwc = s.gwebcaches.clone();
    let r = rot(gwc.len());
    gwc.rotate_left(r);
    let add = |l: Learned, found: &mut Vec<SocketAddrV4>| {
        for h in l.hosts {
            if !found.contains(&h) {
                found.push(h);
            }
        }
    };
    for c in &uhc {
        if asked >= s.bootstrap_max_caches || found.len() >= ENOUGH {
            break;
        }
        asked += 1;
        match ask_uhc(c, t).await {
            Some(l) => {
                tracing::info!(cache = %c, hosts = l.hosts.len(), "UDP host cache answered");
                add(l, &mut found);
            }
            None => tracing::debug!(cache = %c, "UDP host cache did not answer"),
        }
    }
    for c in &gwc {
        if asked >= s.bootstrap_max_caches || found.len() >= ENOUGH {
            break;
        }
        asked += 1;
        match ask_gwc(c, t).await {
            Some(l) => {
                tracing::info!(cache = %c, hosts = l.hosts.len(), "GWebCache answered");
                add(l, &mut found);
            }
            None => tracing::debug!(cache = %c, "GWebCache did not answer"),
        }
    }
    found
}
