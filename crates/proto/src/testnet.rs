//! Several overlays on a perfect in-memory network with a virtual clock:
//! the test harness of the overlay's unit tests.

use crate::{Event, HitFile, Message, Overlay, SearchId, MAX_DATAGRAM};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The network: each node with its address, overlay and file names.
pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<(SocketAddr, Overlay, Vec<String>)>,
    /// Nodes that are down: they neither send nor receive.
    pub(crate) down: HashSet<SocketAddr>,
    /// Datagrams delivered so far.
    pub(crate) delivered: usize,
    /// (node, search, answering peer, names) for every answer.
    pub(crate) results: Vec<(usize, SearchId, SocketAddr, Vec<String>)>,
    pub(crate) finished: Vec<(usize, SearchId)>,
    /// (from, to, message) of every datagram sent by a node that is up.
    pub(crate) sent: Vec<(SocketAddr, SocketAddr, Message)>,
    /// (node, answering peer, what its answer said of pushes).
    pub(crate) push_infos: Vec<(usize, SocketAddr, crate::PushInfo)>,
    /// (node, event) of every push request.
    pub(crate) push_requests: Vec<(usize, Event)>,
}

impl Net {
    pub(crate) fn new(now: Instant, nodes: Vec<(SocketAddr, Overlay, Vec<String>)>) -> Net {
        Net {
            now,
            nodes,
            down: HashSet::new(),
            delivered: 0,
            results: vec![],
            finished: vec![],
            sent: vec![],
            push_infos: vec![],
            push_requests: vec![],
        }
    }

    pub(crate) fn idx(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|(x, _, _)| *x == a)
    }

    /// Delivers everything queued, answering queries from each node's
    /// names, until the network is quiet.
    pub(crate) fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let src = self.nodes[i].0;
                if self.down.contains(&src) {
                    while self.nodes[i].1.poll_transmit().is_some() {}
                    continue;
                }
                while let Some(ev) = self.nodes[i].1.poll_event() {
                    match ev {
                        Event::Query(q) => {
                            let files: Vec<HitFile> = self.nodes[i]
                                .2
                                .iter()
                                .filter(|n| crate::name_matches(&q.text, n))
                                .map(HitFile::named)
                                .collect();
                            self.nodes[i].1.answer_query(&q, &files);
                        }
                        Event::SearchResult {
                            search,
                            peer,
                            files,
                            push,
                        } => {
                            self.push_infos.push((i, peer.udp, push));
                            self.results.push((
                                i,
                                search,
                                peer.udp,
                                files.into_iter().map(|f| f.name).collect(),
                            ))
                        }
                        e @ (Event::PushRequest { .. }
                        | Event::PunchGo { .. }
                        | Event::RelayInvite { .. }) => self.push_requests.push((i, e)),
                        Event::SearchFinished { search } => self.finished.push((i, search)),
                        _ => {}
                    }
                }
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    moved = true;
                    let bytes = t.encode(src.ip());
                    assert!(bytes.len() <= MAX_DATAGRAM);
                    self.sent
                        .push((src, t.dest, Message::parse(&bytes).unwrap()));
                    if self.down.contains(&t.dest) {
                        continue;
                    }
                    if let Some(j) = self.idx(t.dest) {
                        self.delivered += 1;
                        let now = self.now;
                        self.nodes[j].1.handle_datagram(now, src, &bytes);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network never went quiet");
    }

    /// Moves the clock forward by `d`, firing every timeout on the way.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter(|n| !self.down.contains(&n.0))
                .filter_map(|n| n.1.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for i in 0..self.nodes.len() {
                        if !self.down.contains(&self.nodes[i].0) {
                            self.nodes[i].1.handle_timeout(now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// The peers node `i` knows, sorted.
    pub(crate) fn peer_set(&self, i: usize) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.nodes[i].1.peers().iter().map(|p| p.udp).collect();
        v.sort();
        v
    }
}
