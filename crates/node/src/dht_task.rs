//! The node's DHT task: it announces the node and its files and looks the
//! network up on their timers, handing every address found to the overlay
//! as a candidate (see [`crate::dht`]).

use crate::client::Client;
use crate::dht::{file_key, is_own, network_key, Dht, HashQueue};
use std::collections::HashSet;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) fn candidate(udp: SocketAddr) -> crate::PeerAddr {
    crate::PeerAddr {
        udp,
        tcp_port: None,
    }
}

/// Whether an address is this node's own overlay address as the DHT may
/// return it (the announcement of our own).
pub(crate) fn is_self(client: &Client, a: &SocketAddr) -> bool {
    is_own(a, client.udp_addr(), client.config.advertise)
}

/// The node's DHT task: announcements and lookups on their timers, until
/// `stop`.
pub(crate) async fn run(dht: Dht, client: Client, mut stop: watch::Receiver<bool>) {
    let cfg = dht.config().clone();
    let net_key = network_key(&cfg.network);
    let udp_port = client.udp_addr().port();
    let start = Instant::now();
    let mut announce_at = start;
    let mut lookup_at = start;
    let mut hash_at = start;
    let mut hashes = HashQueue::new(cfg.max_hashes);
    let mut first_peer_logged = false;
    loop {
        let next = if cfg.announce {
            announce_at.min(lookup_at).min(hash_at)
        } else {
            lookup_at
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let now = Instant::now();
        // The three run side by side: a lookup does not wait for an
        // announcement's round trips.
        let announce_self = async {
            if cfg.announce && now >= announce_at {
                announce_at = now + cfg.announce_interval;
                if dht.announce(net_key, udp_port).await {
                    tracing::debug!(port = udp_port, "announced on the DHT");
                }
            }
        };
        let look_up = async {
            if now < lookup_at {
                return;
            }
            lookup_at = now + cfg.lookup_interval;
            let answered = client.answered_peers().await.unwrap_or(0);
            if answered >= cfg.enough_peers {
                return;
            }
            let known: HashSet<SocketAddr> = client
                .peers()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.udp)
                .collect();
            let found = dht.lookup(net_key).await;
            let new: Vec<_> = found
                .into_iter()
                .filter(|a| !known.contains(a) && !is_self(&client, a))
                .collect();
            if !new.is_empty() {
                if !first_peer_logged {
                    first_peer_logged = true;
                    tracing::info!(
                        after_ms = start.elapsed().as_millis() as u64,
                        "first candidates found through the DHT"
                    );
                }
                tracing::debug!(candidates = new.len(), "DHT candidates");
            }
            for a in new {
                let _ = client.connect(candidate(a)).await;
            }
        };
        let announce_file = async {
            if cfg.announce && now >= hash_at {
                hash_at = now + cfg.hash_interval;
                hashes.refresh(client.library()).await;
                if let Some(h) = hashes.next() {
                    if dht.announce(file_key(&cfg.network, &h), udp_port).await {
                        tracing::debug!(hash = %rutella_proto::message::hex32(&h), "file announced on the DHT");
                    }
                }
            }
        };
        let work = async {
            tokio::join!(announce_self, look_up, announce_file);
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = work => {}
        }
    }
}
