//! Which address of ours a peer is told to use.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::sync::watch;

/// Which address of ours to write in `"IP"` for a given peer: always one
/// of the peer's family, so that a classic (IPv4) peer never reads an
/// IPv6 address.
pub(crate) struct OwnAddress {
    bind: IpAddr,
    advertise: Option<IpAddr>,
    routes: HashMap<IpAddr, IpAddr>,
    /// The router's external address while the port mapper holds a mapping.
    external: Option<watch::Receiver<Option<Ipv4Addr>>>,
    /// Our address as rutella peers agree they see it (no mapping needed).
    seen: Option<Ipv4Addr>,
}

impl OwnAddress {
    pub(crate) fn new(bind: IpAddr, advertise: Option<IpAddr>) -> Self {
        OwnAddress {
            bind: rutella_proto::addr::normalize_ip(bind),
            advertise: advertise.map(rutella_proto::addr::normalize_ip),
            routes: HashMap::new(),
            external: None,
            seen: None,
        }
    }

    /// Follows the port mapper's external address: while it holds one,
    /// peers outside the local networks are told it.
    pub(crate) fn follow_external(&mut self, external: watch::Receiver<Option<Ipv4Addr>>) {
        self.external = Some(external);
    }

    /// Takes in what changed: the port mapper's external address and the
    /// address peers report seeing us at; the overlay learns both as ours.
    pub(crate) fn refresh(&mut self, overlay: &mut rutella_proto::Overlay) {
        if let Some(ip) = self.new_external() {
            overlay.add_own_ip(ip.into());
        }
        let seen = overlay.seen_address();
        if seen != self.seen {
            if let Some(ip) = seen {
                tracing::info!(external = %ip, "peers report seeing us at this address");
                overlay.add_own_ip(ip.into());
            }
            self.seen = seen;
        }
    }

    /// A new external address from the port mapper, once per change.
    pub(crate) fn new_external(&mut self) -> Option<Ipv4Addr> {
        let rx = self.external.as_mut()?;
        if !rx.has_changed().unwrap_or(false) {
            return None;
        }
        *rx.borrow_and_update()
    }

    pub(crate) fn initial_ips(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        v.extend(self.advertise);
        match self.bind {
            IpAddr::V4(ip) if ip.is_unspecified() => v.push(Ipv4Addr::LOCALHOST.into()),
            // `::` takes IPv4 too.
            IpAddr::V6(ip) if ip.is_unspecified() => {
                v.push(Ipv4Addr::LOCALHOST.into());
                v.push(Ipv6Addr::LOCALHOST.into());
            }
            ip => v.push(ip),
        }
        v
    }

    /// The advertised address, else the bound one, else the local address
    /// the system routes to `dest` from (never unspecified); always of
    /// `dest`'s family.
    pub(crate) fn for_dest(&mut self, dest: IpAddr) -> IpAddr {
        let dest = rutella_proto::addr::normalize_ip(dest);
        let same = |ip: &IpAddr| ip.is_ipv4() == dest.is_ipv4();
        if let Some(a) = self.advertise.filter(same) {
            return a;
        }
        if let IpAddr::V4(d) = dest {
            let mapped = self.external.as_ref().and_then(|e| *e.borrow());
            if let Some(ip) = mapped.or(self.seen) {
                if !is_local(d) {
                    return ip.into();
                }
            }
        }
        if !self.bind.is_unspecified() && same(&self.bind) {
            return self.bind;
        }
        if let Some(ip) = self.routes.get(&dest) {
            return *ip;
        }
        let fallback = match dest {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let ip = route_source_ip(dest).unwrap_or(fallback);
        if self.routes.len() >= 4096 {
            self.routes.clear();
        }
        self.routes.insert(dest, ip);
        ip
    }
}

/// Addresses of the local networks: peers there reach us directly.
fn is_local(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private() || ip.is_link_local()
}

/// The source address the system picks for datagrams to `dest`.
pub(crate) fn route_source(dest: Ipv4Addr) -> Option<Ipv4Addr> {
    match route_source_ip(dest.into())? {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// The same for either family.
fn route_source_ip(dest: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = match dest {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = std::net::UdpSocket::bind((any, 0)).ok()?;
    s.connect((dest, 9)).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(IpAddr::V4(*a.ip())),
        SocketAddr::V6(a) if !a.ip().is_unspecified() => Some(IpAddr::V6(*a.ip())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_mapped_external_address_goes_to_peers_outside_the_local_networks() {
        let (tx, rx) = watch::channel(None);
        let mut own = OwnAddress::new(ip("192.168.1.10"), None);
        own.follow_external(rx);
        let public = ip("11.0.0.2");
        assert_eq!(own.for_dest(public), ip("192.168.1.10"));
        assert_eq!(own.new_external(), None);
        let ext = Ipv4Addr::new(11, 0, 0, 11);
        tx.send(Some(ext)).unwrap();
        assert_eq!(own.new_external(), Some(ext));
        assert_eq!(own.new_external(), None, "once per change");
        assert_eq!(own.for_dest(public), ext);
        assert_eq!(
            own.for_dest(ip("192.168.1.20")),
            ip("192.168.1.10"),
            "a LAN peer gets the LAN address"
        );
        tx.send(None).unwrap();
        assert_eq!(own.for_dest(public), ip("192.168.1.10"));
        // Without a mapping, the address peers agree they see us at.
        own.seen = Some(Ipv4Addr::new(11, 0, 0, 12));
        assert_eq!(own.for_dest(public), ip("11.0.0.12"));
        tx.send(Some(ext)).unwrap();
        assert_eq!(own.for_dest(public), ext, "the mapping comes first");
        // --advertise wins over the mapping.
        let (_tx, rx) = watch::channel(Some(ext));
        let adv = ip("11.0.0.99");
        let mut own = OwnAddress::new(ip("0.0.0.0"), Some(adv));
        own.follow_external(rx);
        assert_eq!(own.for_dest(public), adv);
    }

    #[test]
    fn a_peer_is_told_an_address_of_its_own_family() {
        // Bound to ::, with an IPv4 and an IPv6 address to advertise in
        // turn, a mapping and a seen address: IPv4 peers (classic ones
        // among them) only ever get IPv4, IPv6 peers IPv6.
        let (_tx, rx) = watch::channel(Some(Ipv4Addr::new(11, 0, 0, 11)));
        for adv in [None, Some(ip("11.0.0.99")), Some(ip("2001:db8::99"))] {
            let mut own = OwnAddress::new(ip("::"), adv);
            own.follow_external(rx.clone());
            own.seen = Some(Ipv4Addr::new(11, 0, 0, 12));
            for dest in ["127.0.0.1", "11.0.0.2", "::ffff:11.0.0.2", "192.168.1.20"] {
                assert!(own.for_dest(ip(dest)).is_ipv4(), "{dest} {adv:?}");
            }
            for dest in ["::1", "2001:db8::7"] {
                assert!(own.for_dest(ip(dest)).is_ipv6(), "{dest} {adv:?}");
            }
        }
        let mut own = OwnAddress::new(ip("::"), Some(ip("2001:db8::99")));
        assert_eq!(own.for_dest(ip("2001:db8::7")), ip("2001:db8::99"));
        // Bound to one address, that one to its family.
        let mut own = OwnAddress::new(ip("::1"), None);
        assert_eq!(own.for_dest(ip("::1")), ip("::1"));
        assert_eq!(own.initial_ips(), vec![ip("::1")]);
        let own = OwnAddress::new(ip("::"), None);
        assert_eq!(own.initial_ips(), vec![ip("127.0.0.1"), ip("::1")]);
    }
}
