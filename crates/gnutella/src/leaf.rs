//! A leaf's side of one connection to an ultrapeer, after the handshake:
//! sans-I/O. The driver ([`crate::link`]) feeds decoded descriptors and
//! commands in, and takes descriptors to send and events out.
//!
//! What it does: answers pings with a pong for itself, keeps the GUIDs of
//! the queries it sent and hands up the hits for them (other hits are
//! dropped: a leaf routes nothing), hands up queries routed to it and
//! answers them when told, sends its route table, pings for keep-alive,
//! and says Bye. Every queue and memory is bounded; descriptors whose
//! TTL + hops is over the limit and duplicate GUIDs are dropped.

use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::descriptor::{
    query_flags, Bye, Descriptor, Extensions, Guid, HitResult, Payload, Ping, Pong, Push, Query,
    QueryHit, Trailer,
};
use crate::huge::Urn;
use crate::qrp::{self, RouteTable};

/// Our vendor code in hit trailers.
pub const VENDOR_CODE: [u8; 4] = *b"RTLA";

/// Settings of a leaf connection. Every timer and bound is here so tests
/// run in milliseconds.
#[derive(Clone, Debug)]
pub struct LeafConfig {
    /// `User-Agent`.
    pub user_agent: String,
    /// Where we accept connections (pongs, hits, `Listen-IP`); `None`:
    /// firewalled, hits ask for Push.
    pub listen: Option<SocketAddrV4>,
    /// Offer `Accept-Encoding: deflate`.
    pub accept_deflate: bool,
    /// Compress what we send when the ultrapeer accepts it.
    pub send_deflate: bool,
    /// Our servent GUID (in hits).
    pub servent_guid: Guid,
    /// Files and kilobytes we share (in pongs).
    pub shared: (u32, u32),
    /// TTL of our queries.
    pub query_ttl: u8,
    /// Largest TTL + hops accepted on a received descriptor.
    pub max_ttl_hops: u8,
    /// GUIDs remembered to drop duplicates.
    pub seen_capacity: usize,
    /// Our queries whose hits are still wanted (oldest forgotten first).
    pub max_open_queries: usize,
    /// Events kept for the owner before new ones are dropped.
    pub max_events: usize,
    /// Descriptors queued for sending before new ones are dropped.
    pub max_outgoing: usize,
    /// Hash bits of the route table we send.
    pub qrp_bits: u8,
    /// Data bytes per route-table PATCH.
    pub qrp_chunk: usize,
    /// Time allowed to connect and complete the handshake.
    pub handshake_timeout: Duration,
    /// Ping the ultrapeer this often (TTL 1) to keep the link alive.
    pub keepalive: Duration,
    /// Close (Bye 405) after this long without receiving anything.
    pub idle_timeout: Duration,
    /// Time allowed to write one batch of descriptors.
    pub write_timeout: Duration,
}

impl Default for LeafConfig {
    fn default() -> Self {
        LeafConfig {
            user_agent: format!("rutella/{}", env!("CARGO_PKG_VERSION")),
            listen: None,
            accept_deflate: true,
            send_deflate: true,
            servent_guid: new_guid(),
            shared: (0, 0),
            query_ttl: 4,
            max_ttl_hops: 14,
            seen_capacity: 4096,
            max_open_queries: 64,
            max_events: 1024,
            max_outgoing: 1024,
            qrp_bits: qrp::DEFAULT_TABLE_BITS,
            qrp_chunk: qrp::DEFAULT_PATCH_CHUNK,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
        }
    }
}

pub use crate::descriptor::new_guid;

/// A query routed to us, to answer with [`LeafSession::answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingQuery {
    /// Its GUID (the hit must carry it).
    pub guid: Guid,
    /// Hops it travelled (our hit's TTL is this plus one).
    pub hops: u8,
    /// The query.
    pub query: Query,
}

impl IncomingQuery {
    /// The search text, lossily decoded (print it escaped).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.query.criteria).into_owned()
    }
}

/// What the session hands up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafEvent {
    /// A hit for one of our queries.
    Hit {
        /// The query's GUID.
        query: Guid,
        /// The hit.
        hit: QueryHit,
    },
    /// A query the ultrapeer routed to us.
    Query(IncomingQuery),
    /// A pong (a host for the host cache).
    Pong(Pong),
    /// A push request for us.
    Push(Push),
    /// The ultrapeer said Bye; the link closes.
    Bye(Bye),
}

/// Counters of what the session dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafDrops {
    /// TTL + hops over the limit.
    pub ttl_hops: u64,
    /// GUID seen before.
    pub duplicate: u64,
    /// Hit for a query we did not send (or have forgotten).
    pub unsolicited_hit: u64,
    /// Event queue full.
    pub events_full: u64,
    /// Send queue full.
    pub outgoing_full: u64,
    /// Kinds a leaf ignores (route tables, vendor messages, unknown).
    pub ignored: u64,
}

/// One leaf connection's logic.
pub struct LeafSession {
    cfg: LeafConfig,
    seen: HashSet<Guid>,
    seen_order: VecDeque<Guid>,
    queries: VecDeque<Guid>,
    out: VecDeque<Descriptor>,
    events: VecDeque<LeafEvent>,
    drops: LeafDrops,
    closed: bool,
    last_table: Option<RouteTable>,
}

impl LeafSession {
    /// A session with these settings.
    pub fn new(cfg: LeafConfig) -> LeafSession {
        LeafSession {
            cfg,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            queries: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            drops: LeafDrops::default(),
            closed: false,
            last_table: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeafConfig {
        &self.cfg
    }

    /// What was dropped so far.
    pub fn drops(&self) -> LeafDrops {
        self.drops
    }

    /// Whether a Bye was sent or received: nothing more is sent after it.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn send(&mut self, d: Descriptor) {
        if self.closed {
            return;
        }
        if self.out.len() >= self.cfg.max_outgoing {
            self.drops.outgoing_full += 1;
            return;
        }
        self.out.push_back(d);
    }

    fn event(&mut self, e: LeafEvent) {
        if self.events.len() >= self.cfg.max_events {
            self.drops.events_full += 1;
            return;
        }
        self.events.push_back(e);
    }

    /// Remembers a GUID; false when it was already known.
    fn first_sight(&mut self, g: Guid) -> bool {
        if self.seen.contains(&g) {
            return false;
        }
        if self.seen_order.len() >= self.cfg.seen_capacity.max(1) {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(g);
        self.seen_order.push_back(g);
        true
    }

    /// Handles one received descriptor.
    pub fn handle(&mut self, d: Descriptor) {
        if self.closed {
            return;
        }
        if u16::from(d.ttl) + u16::from(d.hops) > u16::from(self.cfg.max_ttl_hops) {
            self.drops.ttl_hops += 1;
            return;
        }
        match d.payload {
            Payload::Ping(_) => {
                if !self.first_sight(d.guid) {
                    self.drops.duplicate += 1;
                    return;
                }
                let (ip, port) = self.our_address();
                let (files, kbytes) = self.cfg.shared;
                self.send(Descriptor {
                    guid: d.guid,
                    ttl: d.hops.saturating_add(1),
                    hops: 0,
                    payload: Payload::Pong(Pong {
                        port,
                        ip,
                        files,
                        kbytes,
                        ggep: vec![],
                    }),
                });
            }
            Payload::Pong(p) => self.event(LeafEvent::Pong(p)),
            Payload::Bye(b) => {
                self.closed = true;
                self.out.clear();
                self.event(LeafEvent::Bye(b));
            }
            Payload::Query(q) => {
                if !self.first_sight(d.guid) {
                    self.drops.duplicate += 1;
                    return;
                }
                self.event(LeafEvent::Query(IncomingQuery {
                    guid: d.guid,
                    hops: d.hops,
                    query: q,
                }));
            }
            Payload::QueryHit(h) => {
                if self.queries.contains(&d.guid) {
                    self.event(LeafEvent::Hit {
                        query: d.guid,
                        hit: h,
                    });
                } else {
                    self.drops.unsolicited_hit += 1;
                }
            }
            Payload::Push(p) => {
                if p.servent == self.cfg.servent_guid && self.first_sight(d.guid) {
                    self.event(LeafEvent::Push(p));
                } else {
                    self.drops.ignored += 1;
                }
            }
            Payload::RouteTable(_) | Payload::Unknown { .. } => self.drops.ignored += 1,
        }
    }

    fn our_address(&self) -> (Ipv4Addr, u16) {
        match self.cfg.listen {
            Some(a) => (*a.ip(), a.port()),
            None => (Ipv4Addr::UNSPECIFIED, 0),
        }
    }

    /// Sends a query for `text` (and these URNs) with a fresh GUID, and
    /// remembers it for its hits. Returns the GUID.
    pub fn query(&mut self, text: &str, urns: Vec<Urn>) -> Guid {
        let guid = new_guid();
        self.query_with_guid(guid, text, urns);
        guid
    }

    /// Like [`LeafSession::query`] with a GUID chosen by the caller.
    pub fn query_with_guid(&mut self, guid: Guid, text: &str, urns: Vec<Urn>) {
        let mut flags = query_flags::MARKED | query_flags::GGEP_H;
        if self.cfg.listen.is_none() {
            flags |= query_flags::FIREWALLED;
        }
        if self.queries.len() >= self.cfg.max_open_queries.max(1) {
            self.queries.pop_front();
        }
        self.queries.push_back(guid);
        self.first_sight(guid);
        let criteria = text
            .as_bytes()
            .iter()
            .copied()
            .filter(|&b| b != 0)
            .collect();
        self.send(Descriptor {
            guid,
            ttl: self.cfg.query_ttl,
            hops: 0,
            payload: Payload::Query(Query {
                flags,
                criteria,
                ext: Extensions {
                    urns,
                    ..Default::default()
                },
            }),
        });
    }

    /// Sends a Push (fresh GUID, hops 0) asking the firewalled `servent`
    /// to connect to `to` and offer file `index`.
    pub fn push(&mut self, servent: Guid, index: u32, to: SocketAddrV4, ttl: u8) {
        let d = crate::push::push_descriptor(servent, index, to, ttl);
        self.first_sight(d.guid);
        self.send(d);
    }

    /// Stops collecting hits for a query.
    pub fn forget_query(&mut self, guid: &Guid) {
        self.queries.retain(|g| g != guid);
    }

    /// Answers a routed query with these files (at most 255; nothing is
    /// sent for none).
    pub fn answer(&mut self, q: &IncomingQuery, mut results: Vec<HitResult>) {
        if results.is_empty() {
            return;
        }
        results.truncate(255);
        let (ip, port) = self.our_address();
        let push = self.cfg.listen.is_none();
        self.send(Descriptor {
            guid: q.guid,
            ttl: q.hops.saturating_add(1),
            hops: 0,
            payload: Payload::QueryHit(QueryHit {
                port,
                ip,
                speed: 0,
                results,
                trailer: Some(Trailer::plain(VENDOR_CODE, push)),
                servent: self.cfg.servent_guid,
            }),
        });
    }

    /// Sends our route table (TTL 1, compressed 4-bit PATCHes): the first
    /// time, or when its size changed, a RESET and the whole table; after
    /// that only a patch of the slots that changed since the table last
    /// sent (nothing when none did).
    pub fn send_route_table(&mut self, table: &RouteTable) {
        let opts = qrp::PatchOptions {
            chunk: self.cfg.qrp_chunk,
            ..qrp::PatchOptions::default()
        };
        let msgs = match &self.last_table {
            Some(last) if last.len() == table.len() => {
                if last == table {
                    return;
                }
                table.patch_messages(Some(last), opts)
            }
            _ => table.to_messages(opts),
        };
        if self.closed || self.out.len() + msgs.len() > self.cfg.max_outgoing {
            // A table sent in part would leave the ultrapeer's copy wrong:
            // send none, and the whole table next time.
            self.drops.outgoing_full += u64::from(!self.closed);
            self.last_table = None;
            return;
        }
        for m in msgs {
            self.send(Descriptor {
                guid: new_guid(),
                ttl: 1,
                hops: 0,
                payload: Payload::RouteTable(m),
            });
        }
        self.last_table = Some(table.clone());
    }

    /// Queues a keep-alive ping (TTL 1, hops 0).
    pub fn keepalive_ping(&mut self) {
        let g = new_guid();
        self.first_sight(g);
        self.send(Descriptor {
            guid: g,
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        });
    }

    /// Queues a Bye (TTL 1, hops 0) with this code and reason, and a
    /// `Server:` header line as the Bye note asks; nothing is sent after
    /// it.
    pub fn bye(&mut self, code: u16, reason: &str) {
        if self.closed {
            return;
        }
        let text = format!(
            "{}\r\nServer: {}\r\n\r\n",
            reason.replace(['\r', '\n', '\0'], " "),
            self.cfg.user_agent
        );
        // The Bye goes even when the queue is full: it replaces the rest.
        if self.out.len() >= self.cfg.max_outgoing {
            self.out.clear();
        }
        self.out.push_back(Descriptor {
            guid: new_guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::Bye(Bye {
                code,
                message: text.into_bytes(),
            }),
        });
        self.closed = true;
    }

    /// The next descriptor to send.
    pub fn poll_transmit(&mut self) -> Option<Descriptor> {
        self.out.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<LeafEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> LeafSession {
        LeafSession::new(LeafConfig {
            listen: Some("127.0.0.1:6346".parse().unwrap()),
            shared: (2, 10),
            servent_guid: [7; 16],
            seen_capacity: 4,
            max_events: 3,
            ..LeafConfig::default()
        })
    }

    #[test]
    fn ping_gets_our_pong_once() {
        let mut s = session();
        let ping = Descriptor {
            guid: [1; 16],
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        };
        s.handle(ping.clone());
        let pong = s.poll_transmit().unwrap();
        assert_eq!(pong.guid, [1; 16]);
        assert_eq!((pong.ttl, pong.hops), (1, 0));
        assert_eq!(
            pong.payload,
            Payload::Pong(Pong {
                port: 6346,
                ip: Ipv4Addr::LOCALHOST,
                files: 2,
                kbytes: 10,
                ggep: vec![]
            })
        );
        s.handle(ping);
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.drops().duplicate, 1);
    }

    #[test]
    fn hits_only_for_our_queries_and_ttl_hops_bound() {
        let mut s = session();
        let g = s.query("free song", vec![]);
        let q = s.poll_transmit().unwrap();
        let Payload::Query(query) = &q.payload else {
            panic!("not a query")
        };
        assert_eq!(query.criteria, b"free song");
        assert_eq!(query.flags, query_flags::MARKED | query_flags::GGEP_H);
        let hit = |guid| Descriptor {
            guid,
            ttl: 3,
            hops: 1,
            payload: Payload::QueryHit(QueryHit {
                port: 1,
                ip: Ipv4Addr::LOCALHOST,
                speed: 0,
                results: vec![],
                trailer: None,
                servent: [2; 16],
            }),
        };
        s.handle(hit(g));
        assert!(matches!(s.poll_event(), Some(LeafEvent::Hit { query, .. }) if query == g));
        s.handle(hit([9; 16]));
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.drops().unsolicited_hit, 1);
        let mut far = hit(g);
        far.ttl = 10;
        far.hops = 5;
        s.handle(far);
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.drops().ttl_hops, 1);
    }

    #[test]
    fn events_and_seen_are_bounded() {
        let mut s = session();
        for i in 0..10u8 {
            s.handle(Descriptor {
                guid: [i; 16],
                ttl: 1,
                hops: 1,
                payload: Payload::Query(Query {
                    flags: 0,
                    criteria: b"abc".to_vec(),
                    ext: Extensions::default(),
                }),
            });
        }
        assert_eq!(s.drops().events_full, 7);
        assert!(s.seen.len() <= 4 && s.seen_order.len() <= 4);
        let q = match s.poll_event() {
            Some(LeafEvent::Query(q)) => q,
            other => panic!("{other:?}"),
        };
        s.answer(
            &q,
            vec![HitResult {
                index: 1,
                size: 3,
                name: b"abc.txt".to_vec(),
                ext: Extensions::default(),
            }],
        );
        let hit = s.poll_transmit().unwrap();
        assert_eq!((hit.guid, hit.ttl, hit.hops), (q.guid, 2, 0));
    }

    /// Every kind the leaf sends, captured from the session's output and
    /// checked byte by byte against the layouts of the specification.
    #[test]
    fn wire_capture_of_every_kind_the_leaf_sends() {
        fn hdr(guid: &Guid, kind: u8, ttl: u8, hops: u8, len: usize) -> Vec<u8> {
            let mut v = guid.to_vec();
            v.extend([kind, ttl, hops]);
            v.extend((len as u32).to_le_bytes());
            v
        }
        let mut s = session();
        // Pong to a ping of hops 0: TTL 1, our port (LE), IP, files, kB.
        s.handle(Descriptor {
            guid: [1; 16],
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        });
        let mut e = hdr(&[1; 16], 0x01, 1, 0, 14);
        e.extend([0xca, 0x18, 127, 0, 0, 1, 2, 0, 0, 0, 10, 0, 0, 0]);
        assert_eq!(s.poll_transmit().unwrap().encode(), e);
        // Query: big-endian flags 0x8800, the text, NUL; TTL 4.
        let g = s.query("free song", vec![]);
        assert_eq!(g[8], 0xff, "marked GUID");
        assert_eq!(g[15], 0);
        let mut e = hdr(&g, 0x80, 4, 0, 12);
        e.extend([0x88, 0x00]);
        e.extend(b"free song\0");
        assert_eq!(s.poll_transmit().unwrap().encode(), e);
        // QueryHit answering a query of hops 2: TTL 3, one result, trailer
        // RTLA with push meaningful and false, busy and uploaded false.
        let q = IncomingQuery {
            guid: [5; 16],
            hops: 2,
            query: Query {
                flags: 0,
                criteria: b"abc".to_vec(),
                ext: Extensions::default(),
            },
        };
        s.answer(
            &q,
            vec![HitResult {
                index: 9,
                size: 300,
                name: b"abc.txt".to_vec(),
                ext: Extensions::default(),
            }],
        );
        let mut p = vec![1, 0xca, 0x18, 127, 0, 0, 1, 0, 0, 0, 0];
        p.extend([9, 0, 0, 0, 0x2c, 0x01, 0, 0]);
        p.extend(b"abc.txt\0\0");
        p.extend(b"RTLA");
        p.extend([2, 0x04 | 0x08, 0x01]);
        p.extend([7; 16]);
        let mut e = hdr(&[5; 16], 0x81, 3, 0, p.len());
        e.extend(p);
        assert_eq!(s.poll_transmit().unwrap().encode(), e);
        // Keep-alive ping: TTL 1, hops 0, empty.
        s.keepalive_ping();
        let d = s.poll_transmit().unwrap();
        assert_eq!(d.encode(), hdr(&d.guid, 0x00, 1, 0, 0));
        // Route table: RESET 65536 slots, INFINITY 7; then zlib PATCHes of
        // 4-bit entries, TTL 1.
        s.send_route_table(&RouteTable::from_names(16, ["hello world"]));
        let d = s.poll_transmit().unwrap();
        let mut e = hdr(&d.guid, 0x30, 1, 0, 6);
        e.extend([0x00, 0x00, 0x00, 0x01, 0x00, 0x07]);
        assert_eq!(d.encode(), e);
        let d = s.poll_transmit().unwrap();
        let b = d.encode();
        assert_eq!(&b[16..19], &[0x30, 1, 0]);
        assert_eq!(b[23], 0x01, "PATCH");
        assert_eq!(b[24], 1, "SEQ_NO");
        assert_eq!((b[26], b[27]), (1, 4), "zlib, 4 bits");
        assert_eq!(b[28], 0x78, "zlib header");
        let pieces = b[25];
        for _ in 1..pieces {
            assert_eq!(s.poll_transmit().unwrap().payload.kind(), 0x30);
        }
        // Push: the servent's GUID, the file index (LE), our IP and port
        // (LE), no GGEP; TTL as asked, hops 0.
        s.push([9; 16], 7, "127.0.0.1:6346".parse().unwrap(), 4);
        let d = s.poll_transmit().unwrap();
        let mut e = hdr(&d.guid, 0x40, 4, 0, 26);
        e.extend([9; 16]);
        e.extend([7, 0, 0, 0]);
        e.extend([127, 0, 0, 1]);
        e.extend([0xca, 0x18]);
        assert_eq!(d.encode(), e);
        // Bye: code LE, the reason, a Server line, an empty line, NUL.
        s.bye(200, "Done");
        let d = s.poll_transmit().unwrap();
        let text = format!(
            "Done\r\nServer: rutella/{}\r\n\r\n\0",
            env!("CARGO_PKG_VERSION")
        );
        let mut e = hdr(&d.guid, 0x02, 1, 0, 2 + text.len());
        e.extend([200, 0]);
        e.extend(text.as_bytes());
        assert_eq!(d.encode(), e);
        assert_eq!(s.poll_transmit(), None);
    }

    #[test]
    fn route_table_updates_are_incremental() {
        let mut s = session();
        let mut up = qrp::Receiver::new();
        let mut apply = |s: &mut LeafSession| {
            let mut n = 0;
            while let Some(d) = s.poll_transmit() {
                let Payload::RouteTable(m) = d.payload else {
                    panic!("not a route table")
                };
                up.apply(&m).unwrap();
                n += 1;
            }
            (n, up.matches_query("alpha"), up.matches_query("beta"))
        };
        s.send_route_table(&RouteTable::from_names(16, ["alpha.txt"]));
        let (n, a, b) = apply(&mut s);
        assert!(n >= 2, "RESET and PATCH");
        assert!(a && !b);
        s.send_route_table(&RouteTable::from_names(16, ["beta.txt"]));
        let (n, a, b) = apply(&mut s);
        assert_eq!(n, 1, "a patch alone, no RESET");
        assert!(!a && b);
        s.send_route_table(&RouteTable::from_names(16, ["beta.txt"]));
        assert_eq!(apply(&mut s).0, 0, "nothing when nothing changed");
    }

    #[test]
    fn bye_is_last() {
        let mut s = session();
        s.bye(200, "Shutting down");
        s.keepalive_ping();
        let b = s.poll_transmit().unwrap();
        let Payload::Bye(bye) = b.payload else {
            panic!("not a bye")
        };
        assert_eq!(bye.code, 200);
        assert!(bye
            .message
            .starts_with(b"Shutting down\r\nServer: rutella/"));
        assert_eq!(s.poll_transmit(), None);
    }
}
