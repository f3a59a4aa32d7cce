//! What the overlay does with hole punching (Command 8) and relay invites
//! (Command 9): as a proxy it sets up punches between a proven downloader
//! and a peer whose push id it holds, and passes relay invites on; as the
//! firewalled peer, or the downloader, it turns a go or an invite from a
//! current peer into an event for the driver, within the push budgets.

use super::Overlay;
use crate::message::{Message, Ports, Punch, PunchRole, PunchStep, RelayInvite};
use crate::punch::Side;
use crate::push::MAX_PROXIES;
use crate::types::{Event, Transmit};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// Whether `ip` can be connected to at all.
fn connectable(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) || ip.is_multicast())
}

impl Overlay {
    /// The proxies of a source that are current peers of ours (a punch
    /// ask and a relay invite go only to those: they must know us).
    pub fn peer_proxies(&self, proxies: &[SocketAddr]) -> Vec<SocketAddr> {
        proxies
            .iter()
            .copied()
            .filter(|p| self.peers.contains_key(p) && !self.sh.is_self(*p))
            .take(MAX_PROXIES)
            .collect()
    }

    /// Where to ask for a punch or send a relay invite for the source at
    /// TCP address `tcp` whose answers said `info`: its push id (from
    /// `info`, or told by the source itself when it is a peer of ours),
    /// and its proxies that are peers of ours; when its answers named
    /// none, up to four of our rutella peers other than the source (only
    /// one holding the push id acts on it). `None` without a push id or
    /// a proxy.
    pub fn punch_route(
        &self,
        tcp: SocketAddr,
        info: &crate::push::PushInfo,
    ) -> Option<(u64, Vec<SocketAddr>)> {
        let source = self.peers.values().find(|p| p.info.tcp() == tcp);
        let id = info
            .push_id
            .or_else(|| source.and_then(|s| self.push.id_of(&s.info.udp)))?;
        let mut proxies = self.peer_proxies(&info.proxies);
        if proxies.is_empty() {
            let mut peers: Vec<(bool, u64, SocketAddr)> = self
                .peers
                .values()
                .filter(|p| p.info.rutella && p.info.tcp() != tcp)
                .map(|p| {
                    (
                        crate::push::is_local(&p.info.udp.ip()),
                        p.joined,
                        p.info.udp,
                    )
                })
                .collect();
            peers.sort();
            proxies = peers
                .into_iter()
                .take(MAX_PROXIES)
                .map(|(_, _, a)| a)
                .collect();
        }
        (!proxies.is_empty()).then_some((id, proxies))
    }

    /// The TCP address of current peer `udp`, if it is one.
    pub fn peer_tcp(&self, udp: &SocketAddr) -> Option<SocketAddr> {
        self.peers.get(udp).map(|p| p.info.tcp())
    }

    /// Asks `proxy` (a current peer) to set up a hole punch with the peer
    /// of push id `push_id`; our TCP port `tcp_port` is where the other
    /// side sends its SYNs. `false` when `proxy` is not a peer.
    pub fn send_punch_ask(
        &mut self,
        proxy: SocketAddr,
        push_id: u64,
        token: u64,
        tcp_port: u16,
    ) -> bool {
        if !self.peers.contains_key(&proxy) {
            return false;
        }
        let message = Message::Punch(Punch {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            step: PunchStep::Ask,
            push_id: Some(push_id),
            token,
            ports: Ports {
                udp: None,
                tcp: Some(tcp_port),
            },
            peer: None,
            start_in: None,
            role: None,
            extra: Default::default(),
        });
        // Asked for by our user, like a push.
        self.sh.push_unchecked(Transmit {
            dest: proxy,
            message,
            from_self: true,
        });
        true
    }

    /// Sends `proxy` (a current peer) a relay invite for the peer of push
    /// id `push_id`: connect to `relay` as the server side of `circuit`.
    /// `false` when `proxy` is not a peer.
    pub fn send_relay_invite(
        &mut self,
        proxy: SocketAddr,
        push_id: u64,
        circuit: [u8; 16],
        relay: SocketAddr,
    ) -> bool {
        if !self.peers.contains_key(&proxy) {
            return false;
        }
        self.sh.push_unchecked(Transmit {
            dest: proxy,
            message: Message::Relay(RelayInvite {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                push_id: Some(push_id),
                circuit,
                relay,
                extra: Default::default(),
            }),
            from_self: true,
        });
        true
    }

    /// A Punch: an ask from a proven address for a peer of ours is set up
    /// (both sides get a go, within the rendezvous budgets); a go from a
    /// current peer becomes [`Event::PunchGo`] (as the server side, within
    /// the budget of connections opened on request; each token once).
    pub(super) fn on_punch(&mut self, now: Instant, from: SocketAddr, p: Punch) {
        match p.step {
            PunchStep::Ask => self.on_punch_ask(now, from, p),
            PunchStep::Go => self.on_punch_go(now, from, p),
        }
    }

    fn on_punch_ask(&mut self, now: Instant, from: SocketAddr, p: Punch) {
        if !(self.peers.contains_key(&from) || self.sh.guard.proven(&from)) {
            tracing::debug!(%from, "punch ask from an unproven address, dropped");
            return;
        }
        let (Some(id), Some(tcp_port)) = (p.push_id, p.ports.tcp) else {
            return;
        };
        if tcp_port == 0 {
            return;
        }
        self.mark_alive(from, Ports::default());
        let target = self
            .push
            .peer_of(id)
            .filter(|t| *t != from)
            .and_then(|t| self.peers.get(&t))
            .map(|t| Side {
                udp: t.info.udp,
                tcp_port: t.info.tcp_port,
                rtt: None,
            });
        let asker = Side {
            udp: from,
            tcp_port,
            rtt: None,
        };
        match self.rendezvous.ask(now, asker, &p, target) {
            Ok(goes) => {
                tracing::debug!(%from, "setting up a punch");
                for (dest, go) in goes {
                    self.sh.push_unchecked(Transmit {
                        dest,
                        message: Message::Punch(go),
                        from_self: true,
                    });
                }
            }
            Err(why) => tracing::debug!(%from, %why, "punch not set up"),
        }
    }

    fn on_punch_go(&mut self, now: Instant, from: SocketAddr, p: Punch) {
        if !self.peers.contains_key(&from) {
            tracing::debug!(%from, "punch go from an address that is not a peer, dropped");
            return;
        }
        let (Some(peer), Some(start_in), Some(role)) = (p.peer, p.start_in, p.role) else {
            return;
        };
        if !connectable(peer.ip()) || peer.port() == 0 {
            tracing::debug!(%from, %peer, "punch towards an address that cannot be one, dropped");
            return;
        }
        // A go cannot set a start far away: at most one punching window.
        if start_in > self.push.cfg.punch.window {
            tracing::debug!(%from, "punch go starting too late, dropped");
            return;
        }
        self.mark_alive(from, Ports::default());
        if !self.punch_seen.first_time(p.token) {
            tracing::debug!(%from, "punch go already acted on, dropped");
            return;
        }
        if role == PunchRole::Server {
            if let Err(why) = self.push.allow_connect(peer.ip(), now) {
                tracing::debug!(%from, target = %peer, ?why, "punch over its budget, dropped");
                return;
            }
        }
        self.sh.push_event(Event::PunchGo {
            peer,
            start_in,
            role,
            token: p.token,
            via: from,
        });
    }

    /// A relay invite: for a peer of ours (its push id) from a proven
    /// address, passed on within the forwarding budgets; for us from a
    /// current peer, [`Event::RelayInvite`] within the budget of
    /// connections opened on request.
    pub(super) fn on_relay_invite(&mut self, now: Instant, from: SocketAddr, r: RelayInvite) {
        if !connectable(r.relay.ip()) || r.relay.port() == 0 {
            tracing::debug!(%from, relay = %r.relay, "relay invite to an address that cannot be one, dropped");
            return;
        }
        let for_us = r.push_id.is_none_or(|id| id == self.push.own_id);
        if for_us {
            if !self.peers.contains_key(&from) {
                tracing::debug!(%from, "relay invite from an address that is not a peer, dropped");
                return;
            }
            self.mark_alive(from, Ports::default());
            if let Err(why) = self.push.allow_connect(r.relay.ip(), now) {
                tracing::debug!(%from, relay = %r.relay, ?why, "relay invite over its budget, dropped");
                return;
            }
            self.sh.push_event(Event::RelayInvite {
                relay: r.relay,
                circuit: r.circuit,
                via: from,
            });
            return;
        }
        if !(self.peers.contains_key(&from) || self.sh.guard.proven(&from)) {
            tracing::debug!(%from, "relay invite from an unproven address, dropped");
            return;
        }
        let Some(peer) = r
            .push_id
            .and_then(|id| self.push.peer_of(id))
            .filter(|p| self.peers.contains_key(p) && *p != from)
        else {
            tracing::debug!(%from, "relay invite for no current peer, dropped");
            return;
        };
        if let Err(why) = self.push.allow_forward(from.ip(), now) {
            tracing::debug!(%from, ?why, "relay invite over its budget, dropped");
            return;
        }
        self.mark_alive(from, Ports::default());
        self.push_transmit(Transmit {
            dest: peer,
            message: Message::Relay(RelayInvite { ip: from.ip(), ..r }),
            from_self: false,
        });
    }
}
