//! `rutella browse IP:PORT`: the shared files of a Gnutella servent
//! (browse host), listed once. No node is needed: it is one HTTP exchange.

use std::net::{IpAddr, SocketAddr};

use crate::args::{secs, BrowseArgs};
use crate::escape::escape;
use crate::oneshot::print_line;
use crate::{exit, Failure};

/// `IP:PORT`, `[IPv6]:PORT`, or a bare IP for the Gnutella port 6346.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, rutella_gnutella::http::DEFAULT_PORT)),
        Err(_) => Err(format!(
            "{:?} is not an address: write IP:PORT, e.g. 192.168.1.7:6346",
            escape(s)
        )),
    }
}

pub(crate) async fn oneshot(a: BrowseArgs) -> Result<(), Failure> {
    use rutella_gnutella::browse::{fetch, BrowseLimits};
    let addr = parse_addr(&a.addr).map_err(|m| Failure::new(exit::USAGE, m))?;
    let wait = secs(a.wait).map_err(|m| Failure::new(exit::USAGE, m))?;
    let limits = BrowseLimits {
        total_timeout: wait,
        connect_timeout: wait.min(BrowseLimits::default().connect_timeout),
        ..BrowseLimits::default()
    };
    let agent = concat!("rutella/", env!("CARGO_PKG_VERSION"));
    let hits = tokio::select! {
        h = fetch(addr, agent, limits) => h.map_err(|e| Failure::new(exit::NETWORK, format!("browse of {addr} failed: {e}")))?,
        _ = crate::oneshot::stop_signal() => return Err(Failure::new(exit::INTERRUPTED, "browse interrupted")),
    };
    let mut n = 0usize;
    for hit in hits {
        let vendor: String = hit.vendor_code();
        let push = hit.needs_push();
        for r in &hit.results {
            let name = String::from_utf8_lossy(&r.name);
            let sha1 = r.ext.urns.iter().find_map(|u| u.sha1().copied());
            let line = if a.json {
                serde_json::json!({
                    "tcp": addr.to_string(),
                    "name": name,
                    "size": r.size,
                    "network": "gnutella",
                    "sha1": sha1.map(|h| rutella_gnutella::huge::Urn::Sha1(h).to_string()),
                    "index": r.index,
                    "vendor": vendor,
                    "firewalled": push,
                })
                .to_string()
            } else {
                format!("{addr}\t{}\t{}", r.size, escape(&name))
            };
            n += 1;
            if !print_line(&line)? {
                return Ok(());
            }
        }
    }
    if n == 0 {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!("{addr} shares no file"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("127.0.0.1:7000").unwrap(),
            "127.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(
            parse_addr("10.0.0.1").unwrap(),
            "10.0.0.1:6346".parse().unwrap()
        );
        // Nothing typed is echoed raw.
        assert!(!parse_addr("nowhere\u{1b}[31m")
            .unwrap_err()
            .contains('\u{1b}'));
    }
}
