//! Which address of ours a peer is told to use.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::sync::watch;

/// Which address of ours to write in `"IP"` for a given peer.
pub(crate) struct OwnAddress {
    bind: Ipv4Addr,
    advertise: Option<Ipv4Addr>,
    routes: HashMap<Ipv4Addr, Ipv4Addr>,
    /// The router's external address while the port mapper holds a mapping.
    external: Option<watch::Receiver<Option<Ipv4Addr>>>,
}

impl OwnAddress {
    pub(crate) fn new(bind: Ipv4Addr, advertise: Option<Ipv4Addr>) -> Self {
        OwnAddress {
            bind,
            advertise,
            routes: HashMap::new(),
            external: None,
        }
    }

    /// Follows the port mapper's external address: while it holds one,
    /// peers outside the local networks are told it.
    pub(crate) fn follow_external(&mut self, external: watch::Receiver<Option<Ipv4Addr>>) {
        self.external = Some(external);
    }

    /// A new external address from the port mapper, once per change.
    pub(crate) fn new_external(&mut self) -> Option<Ipv4Addr> {
        let rx = self.external.as_mut()?;
        if !rx.has_changed().unwrap_or(false) {
            return None;
        }
        *rx.borrow_and_update()
    }

    pub(crate) fn initial_ips(&self) -> Vec<Ipv4Addr> {
        let mut v = Vec::new();
        v.extend(self.advertise);
        if self.bind.is_unspecified() {
            v.push(Ipv4Addr::LOCALHOST);
        } else {
            v.push(self.bind);
        }
        v
    }

    /// The advertised address, else the bound one, else the local address
    /// the system routes to `dest` from (never 0.0.0.0).
    pub(crate) fn for_dest(&mut self, dest: Ipv4Addr) -> Ipv4Addr {
        if let Some(a) = self.advertise {
            return a;
        }
        if let Some(ip) = self.external.as_ref().and_then(|e| *e.borrow()) {
            if !is_local(dest) {
                return ip;
            }
        }
        if !self.bind.is_unspecified() {
            return self.bind;
        }
        if let Some(ip) = self.routes.get(&dest) {
            return *ip;
        }
        let ip = route_source(dest).unwrap_or(Ipv4Addr::LOCALHOST);
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
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((dest, 9)).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}
