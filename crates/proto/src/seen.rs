//! Learning our own external address from what rutella peers report.
//!
//! A rutella pong that answers a rutella ping carries `"Seen"`: the
//! address (`IP:port`) the ping came from, as the answering peer saw it.
//! Behind a NAT that is the router's external address. One peer could lie,
//! so an address counts as learned only once peers at two different IP
//! addresses report it, and only pongs that echo our ping's nonce (proof
//! that the reporter got our ping) are counted. Bounded: the latest report
//! of at most [`MAX_REPORTERS`] reporters is kept.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Reporters remembered (the oldest are forgotten first).
pub const MAX_REPORTERS: usize = 16;

/// Distinct reporter addresses needed before an address is believed.
pub const AGREEING: usize = 2;

/// The reports of our address as seen by peers.
#[derive(Debug, Default, Clone)]
pub struct SeenAddress {
    /// (reporter IP, what it saw), latest last, one entry per reporter IP.
    reports: VecDeque<(Ipv4Addr, Ipv4Addr)>,
    learned: Option<Ipv4Addr>,
}

impl SeenAddress {
    /// `reporter` says our datagrams come from `seen`. Returns the learned
    /// address when this report changes it.
    pub fn report(&mut self, reporter: Ipv4Addr, seen: SocketAddrV4) -> Option<Ipv4Addr> {
        let ip = *seen.ip();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return None;
        }
        self.reports.retain(|(r, _)| *r != reporter);
        if self.reports.len() >= MAX_REPORTERS {
            self.reports.pop_front();
        }
        self.reports.push_back((reporter, ip));
        let agreeing = self.reports.iter().filter(|(_, s)| *s == ip).count();
        let learned = if agreeing >= AGREEING {
            Some(ip)
        } else {
            // The old belief stands while enough reporters still hold it.
            self.learned
                .filter(|l| self.reports.iter().filter(|(_, s)| s == l).count() >= AGREEING)
        };
        (learned != self.learned).then(|| {
            self.learned = learned;
            learned
        })?
    }

    /// Our external address, once two reporters agree on it.
    pub fn learned(&self) -> Option<Ipv4Addr> {
        self.learned
    }
}

/// The `"Seen"` value of a pong, if it is an `IP:port`.
pub fn parse_seen(extra: &serde_json::Map<String, serde_json::Value>) -> Option<SocketAddrV4> {
    extra.get("Seen")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn two_reporters_at_different_ips_must_agree() {
        let mut s = SeenAddress::default();
        let p1 = Ipv4Addr::new(11, 0, 0, 2);
        let p2 = Ipv4Addr::new(11, 0, 0, 3);
        assert_eq!(s.report(p1, a("11.0.0.11:20000")), None);
        // The same reporter again (another port of it) is still one voice.
        assert_eq!(s.report(p1, a("11.0.0.11:20000")), None);
        assert_eq!(s.learned(), None);
        assert_eq!(
            s.report(p2, a("11.0.0.11:20001")),
            Some(Ipv4Addr::new(11, 0, 0, 11))
        );
        assert_eq!(s.learned(), Some(Ipv4Addr::new(11, 0, 0, 11)));
        assert_eq!(s.report(p2, a("11.0.0.11:20000")), None, "no change");
    }

    #[test]
    fn one_liar_cannot_move_it_and_a_changed_address_is_relearned() {
        let mut s = SeenAddress::default();
        let ext = Ipv4Addr::new(11, 0, 0, 11);
        s.report(Ipv4Addr::new(1, 0, 0, 1), a("11.0.0.11:1"));
        s.report(Ipv4Addr::new(1, 0, 0, 2), a("11.0.0.11:1"));
        s.report(Ipv4Addr::new(1, 0, 0, 3), a("11.0.0.11:1"));
        assert_eq!(s.report(Ipv4Addr::new(6, 6, 6, 6), a("6.6.6.6:1")), None);
        assert_eq!(s.learned(), Some(ext));
        // The router got a new address: the reporters say so one by one.
        assert_eq!(s.report(Ipv4Addr::new(1, 0, 0, 1), a("12.0.0.1:1")), None);
        let new = s.report(Ipv4Addr::new(1, 0, 0, 2), a("12.0.0.1:1"));
        assert_eq!(new, Some(Ipv4Addr::new(12, 0, 0, 1)));
    }

    #[test]
    fn nonsense_is_ignored_and_memory_is_bounded() {
        let mut s = SeenAddress::default();
        assert_eq!(s.report(Ipv4Addr::new(1, 0, 0, 1), a("0.0.0.0:1")), None);
        assert_eq!(s.report(Ipv4Addr::new(1, 0, 0, 2), a("127.0.0.1:1")), None);
        assert!(s.reports.is_empty());
        for i in 0..100u8 {
            s.report(Ipv4Addr::new(2, 0, 0, i), a("11.0.0.11:1"));
        }
        assert_eq!(s.reports.len(), MAX_REPORTERS);
        let mut m = serde_json::Map::new();
        m.insert("Seen".into(), "11.0.0.11:20000".into());
        assert_eq!(parse_seen(&m), Some(a("11.0.0.11:20000")));
        m.insert("Seen".into(), 5.into());
        assert_eq!(parse_seen(&m), None);
    }
}
