//! The leaf link against a test ultrapeer written here from the
//! specification (handshake, deflate, QRP, ping/pong, query routing, Bye),
//! on loopback only.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rutella_gnutella::deflate::{Deflater, Inflater};
use rutella_gnutella::descriptor::{
    kind, Descriptor, Extensions, HitResult, Payload, Ping, Query, QueryHit, HEADER_LEN,
};
use rutella_gnutella::framer::Framer;
use rutella_gnutella::handshake::{self, Handshake, StartLine};
use rutella_gnutella::leaf::{new_guid, LeafConfig, LeafEvent};
use rutella_gnutella::link::{wait_for, LeafLink, LinkError};
use rutella_gnutella::qrp::{Receiver, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn leaf_config() -> LeafConfig {
    LeafConfig {
        listen: Some("127.0.0.1:6346".parse().unwrap()),
        handshake_timeout: Duration::from_secs(5),
        keepalive: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        qrp_chunk: 256,
        ..LeafConfig::default()
    }
}

/// The ultrapeer's end of one connection.
struct TestUltrapeer {
    stream: TcpStream,
    inflater: Option<Inflater>,
    deflater: Option<Deflater>,
    raw: Vec<u8>,
    framer: Framer,
    got: VecDeque<Descriptor>,
    leaf_hello: Handshake,
}

struct UpOptions {
    /// Refuse a leaf that does not accept deflate (as gtk-gnutella does).
    require_deflate: bool,
    /// Compress what we send when the leaf accepts it.
    compress: bool,
}

async fn read_handshake(s: &mut TcpStream, buf: &mut Vec<u8>) -> (Handshake, Vec<u8>) {
    loop {
        if let Some((h, used)) = handshake::parse(buf).expect("handshake parses") {
            let rest = buf[used..].to_vec();
            return (h, rest);
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "peer closed during handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl TestUltrapeer {
    /// Accepts one leaf and runs the ultrapeer's side of the handshake;
    /// `None` when it refused the leaf.
    async fn accept(l: &TcpListener, o: UpOptions) -> Option<TestUltrapeer> {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = Vec::new();
        let (hello, _) = read_handshake(&mut s, &mut buf).await;
        assert_eq!(
            hello.start,
            StartLine::Connect {
                version: "0.6".into()
            }
        );
        let leaf_accepts = hello.header_has_token("Accept-Encoding", "deflate");
        if o.require_deflate && !leaf_accepts {
            let refuse = Handshake::status(403, "Gnet connection not compressed", vec![]);
            s.write_all(&refuse.encode()).await.expect("write");
            return None;
        }
        let compress = o.compress && leaf_accepts;
        let mut h = vec![
            ("User-Agent".to_string(), "TestUP/0.6".to_string()),
            ("X-Ultrapeer".to_string(), "True".to_string()),
            ("X-Query-Routing".to_string(), "0.2".to_string()),
            ("Accept-Encoding".to_string(), "deflate".to_string()),
        ];
        if compress {
            h.push(("Content-Encoding".to_string(), "deflate".to_string()));
        }
        s.write_all(&Handshake::status(200, "OK", h).encode())
            .await
            .expect("write");
        let mut buf = Vec::new();
        let (fin, rest) = read_handshake(&mut s, &mut buf).await;
        assert_eq!(fin.code(), Some(200));
        let leaf_compresses = fin
            .header("Content-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("deflate"));
        Some(TestUltrapeer {
            stream: s,
            inflater: leaf_compresses.then(Inflater::new),
            deflater: compress.then(Deflater::new),
            raw: rest,
            framer: Framer::new(),
            got: VecDeque::new(),
            leaf_hello: hello,
        })
    }

    async fn send(&mut self, d: &Descriptor) {
        let bytes = d.encode();
        let wire = match &mut self.deflater {
            Some(z) => {
                let mut w = Vec::new();
                z.compress(&bytes, &mut w);
                w
            }
            None => bytes,
        };
        self.stream.write_all(&wire).await.expect("write");
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let wire = match &mut self.deflater {
            Some(z) => {
                let mut w = Vec::new();
                z.compress(bytes, &mut w);
                w
            }
            None => bytes.to_vec(),
        };
        self.stream.write_all(&wire).await.expect("write");
    }

    fn drain(&mut self) {
        let mut plain = Vec::new();
        match &mut self.inflater {
            Some(z) => loop {
                let before = plain.len();
                let used = z
                    .inflate(&self.raw, &mut plain, 64 * 1024)
                    .expect("leaf's stream inflates");
                self.raw.drain(..used);
                if used == 0 && plain.len() == before {
                    break;
                }
            },
            None => plain = std::mem::take(&mut self.raw),
        }
        let mut p = 0;
        while p < plain.len() {
            let (n, f) = self.framer.push(&plain[p..]).expect("leaf frames well");
            p += n;
            if let Some((h, payload)) = f {
                self.got.push_back(
                    Descriptor::decode(&h, &payload).expect("leaf's descriptor decodes"),
                );
            }
        }
    }

    /// The next descriptor from the leaf; `None` on end of stream.
    async fn recv(&mut self) -> Option<Descriptor> {
        timeout(LIMIT, async {
            loop {
                self.drain();
                if let Some(d) = self.got.pop_front() {
                    return Some(d);
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.raw.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("leaf sent nothing in time")
    }

    /// The next descriptor of this kind; others stay queued in order.
    async fn recv_kind(&mut self, k: u8) -> Descriptor {
        timeout(LIMIT, async {
            loop {
                self.drain();
                if let Some(i) = self.got.iter().position(|d| d.payload.kind() == k) {
                    return self.got.remove(i).expect("index is in range");
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                assert!(n > 0, "stream ended before a descriptor of kind {k:#04x}");
                self.raw.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("leaf sent nothing of that kind in time")
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind loopback");
    let a = l.local_addr().expect("addr");
    (l, a)
}

async fn full_session(compress: bool) {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        let mut up = TestUltrapeer::accept(
            &l,
            UpOptions {
                require_deflate: compress,
                compress,
            },
        )
        .await
        .expect("accepted");
        // The leaf's handshake headers.
        let h = &up.leaf_hello;
        assert_eq!(h.header("X-Ultrapeer"), Some("False"));
        assert_eq!(h.header("X-Query-Routing"), Some("0.2"));
        assert!(h
            .header("User-Agent")
            .is_some_and(|v| v.starts_with("rutella/")));
        assert_eq!(
            up.inflater.is_some(),
            compress,
            "leaf compresses iff negotiated"
        );

        // 1. The route table: RESET then PATCHes, TTL 1, hops 0.
        let mut table = Receiver::new();
        while !table.is_complete() {
            let d = up.recv_kind(kind::ROUTE_TABLE).await;
            assert_eq!((d.ttl, d.hops), (1, 0));
            let Payload::RouteTable(m) = d.payload else {
                unreachable!()
            };
            table.apply(&m).expect("route table applies");
        }
        assert_eq!(table.len(), 1 << 16);
        assert!(table.matches_query("beatles"));
        assert!(table.matches_query("Let It Be mp3"));
        assert!(
            !table.matches_query("zeppelin"),
            "a word not shared is not routed"
        );

        // 2. A ping gets a pong with its GUID.
        let ping = Descriptor {
            guid: new_guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        };
        up.send(&ping).await;
        let pong = up.recv_kind(kind::PONG).await;
        assert_eq!(pong.guid, ping.guid);
        let Payload::Pong(p) = pong.payload else {
            unreachable!()
        };
        assert_eq!((p.ip, p.port), (Ipv4Addr::LOCALHOST, 6346));

        // 3. The leaf's query comes; we answer it with a hit.
        let q = up.recv_kind(kind::QUERY).await;
        let Payload::Query(query) = &q.payload else {
            unreachable!()
        };
        assert_eq!(query.criteria, b"free song");
        assert_eq!((q.ttl, q.hops), (4, 0));
        let hit = Descriptor {
            guid: q.guid,
            ttl: 3,
            hops: 1,
            payload: Payload::QueryHit(QueryHit {
                port: 6348,
                ip: Ipv4Addr::new(127, 0, 0, 3),
                speed: 100,
                results: vec![HitResult {
                    index: 3,
                    size: 4096,
                    name: b"free song.ogg".to_vec(),
                    ext: Extensions::default(),
                }],
                trailer: None,
                servent: [3; 16],
            }),
        };
        up.send(&hit).await;

        // 4. Route a query to the leaf only if its table says so, and
        // collect the leaf's answer.
        let routed = Descriptor {
            guid: new_guid(),
            ttl: 2,
            hops: 2,
            payload: Payload::Query(Query {
                flags: 0x8000,
                criteria: b"beatles let".to_vec(),
                ext: Extensions::default(),
            }),
        };
        let Payload::Query(rq) = &routed.payload else {
            unreachable!()
        };
        assert!(table.matches_query(std::str::from_utf8(&rq.criteria).unwrap()));
        up.send(&routed).await;
        let answer = up.recv_kind(kind::QUERY_HIT).await;
        assert_eq!(answer.guid, routed.guid);
        assert_eq!((answer.ttl, answer.hops), (3, 0));
        let Payload::QueryHit(h) = answer.payload else {
            unreachable!()
        };
        assert_eq!(h.results.len(), 1);
        assert_eq!(h.results[0].name, b"The Beatles - Let It Be.mp3");
        assert_eq!(&h.trailer.as_ref().expect("trailer").vendor, b"RTLA");
        assert!(!h.needs_push());

        // 5. The leaf says Bye and closes.
        let bye = up.recv_kind(kind::BYE).await;
        assert_eq!((bye.ttl, bye.hops), (1, 0));
        let Payload::Bye(b) = bye.payload else {
            unreachable!()
        };
        assert_eq!(b.code, 200);
        assert!(b.message.starts_with(b"Test over"));
        assert!(up.recv().await.is_none(), "closed after Bye");
    });

    let cfg = LeafConfig {
        accept_deflate: compress,
        send_deflate: compress,
        ..leaf_config()
    };
    let mut link = LeafLink::connect(addr, cfg).await.expect("handshake");
    assert_eq!(link.negotiated().inflate_input, compress);
    assert_eq!(link.negotiated().deflate_output, compress);
    link.send_route_table(RouteTable::from_names(
        16,
        ["The Beatles - Let It Be.mp3", "notes.txt"],
    ))
    .await
    .unwrap();
    let g = link.query("free song", vec![]).await.unwrap();
    let hit = wait_for(&mut link, LIMIT, |e| match e {
        LeafEvent::Hit { query, hit } if query == g => Some(hit),
        _ => None,
    })
    .await
    .expect("hit arrives");
    assert_eq!(hit.results[0].name, b"free song.ogg");
    assert_eq!(hit.ip, Ipv4Addr::new(127, 0, 0, 3));
    let q = wait_for(&mut link, LIMIT, |e| match e {
        LeafEvent::Query(q) => Some(q),
        _ => None,
    })
    .await
    .expect("routed query arrives");
    assert_eq!(q.text(), "beatles let");
    link.answer(
        q,
        vec![HitResult {
            index: 1,
            size: 1234,
            name: b"The Beatles - Let It Be.mp3".to_vec(),
            ext: Extensions::default(),
        }],
    )
    .await
    .unwrap();
    // Commands are handled in order: the hit is written before the Bye.
    link.bye(200, "Test over").await.expect("clean close");
    up.await.expect("ultrapeer side passed");
}

#[tokio::test]
async fn compressed_link_routes_queries_and_hits() {
    full_session(true).await;
}

#[tokio::test]
async fn uncompressed_link_works_too() {
    full_session(false).await;
}

#[tokio::test]
async fn leaf_without_deflate_is_refused_like_gtk_gnutella_does() {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        assert!(TestUltrapeer::accept(
            &l,
            UpOptions {
                require_deflate: true,
                compress: true
            }
        )
        .await
        .is_none());
    });
    let cfg = LeafConfig {
        accept_deflate: false,
        ..leaf_config()
    };
    match LeafLink::connect(addr, cfg).await {
        Err(LinkError::Refused(handshake::Refusal::Status {
            code: 403, reason, ..
        })) => {
            assert_eq!(reason, "Gnet connection not compressed")
        }
        other => panic!("expected a 403 refusal, got {:?}", other.map(|_| ())),
    }
    up.await.unwrap();
}

#[tokio::test]
async fn keepalive_pings_and_idle_bye() {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        let mut up = TestUltrapeer::accept(
            &l,
            UpOptions {
                require_deflate: false,
                compress: true,
            },
        )
        .await
        .unwrap();
        // Keep-alive pings arrive (TTL 1, hops 0); we never answer, so
        // after the idle timeout the leaf says Bye 405.
        let p = up.recv_kind(kind::PING).await;
        assert_eq!((p.ttl, p.hops), (1, 0));
        let bye = up.recv_kind(kind::BYE).await;
        let Payload::Bye(b) = bye.payload else {
            unreachable!()
        };
        assert_eq!(b.code, 405);
    });
    let cfg = LeafConfig {
        keepalive: Duration::from_millis(20),
        idle_timeout: Duration::from_millis(300),
        ..leaf_config()
    };
    let mut link = LeafLink::connect(addr, cfg).await.unwrap();
    let end = timeout(LIMIT, link.finish())
        .await
        .expect("link ends on its own");
    assert!(matches!(end, Err(LinkError::Idle)), "{end:?}");
    up.await.unwrap();
}

#[tokio::test]
async fn oversized_descriptor_gets_bye_400() {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        let mut up = TestUltrapeer::accept(
            &l,
            UpOptions {
                require_deflate: false,
                compress: true,
            },
        )
        .await
        .unwrap();
        // A Query header announcing 1 MiB: the leaf must not wait for it.
        let mut h = [0u8; HEADER_LEN];
        h[16] = kind::QUERY;
        h[17] = 1;
        h[19..].copy_from_slice(&(1u32 << 20).to_le_bytes());
        up.send_raw(&h).await;
        let bye = up.recv_kind(kind::BYE).await;
        let Payload::Bye(b) = bye.payload else {
            unreachable!()
        };
        assert_eq!(b.code, 400);
    });
    let mut link = LeafLink::connect(addr, leaf_config()).await.unwrap();
    let end = timeout(LIMIT, link.finish()).await.expect("link ends");
    assert!(matches!(end, Err(LinkError::Framing(_))), "{end:?}");
    up.await.unwrap();
}

#[tokio::test]
async fn ultrapeer_bye_ends_the_link() {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        let mut up = TestUltrapeer::accept(
            &l,
            UpOptions {
                require_deflate: false,
                compress: true,
            },
        )
        .await
        .unwrap();
        let bye = Descriptor {
            guid: new_guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::Bye(rutella_gnutella::descriptor::Bye {
                code: 502,
                message: b"Send queue full".to_vec(),
            }),
        };
        up.send(&bye).await;
        // The leaf does not answer a Bye with a Bye: it just closes.
        while let Some(d) = up.recv().await {
            assert_ne!(d.payload.kind(), kind::BYE);
        }
    });
    let mut link = LeafLink::connect(addr, leaf_config()).await.unwrap();
    let b = wait_for(&mut link, LIMIT, |e| match e {
        LeafEvent::Bye(b) => Some(b),
        _ => None,
    })
    .await
    .expect("bye event");
    assert_eq!(b.code, 502);
    let end = timeout(LIMIT, link.finish()).await.expect("link ends");
    assert!(matches!(end, Err(LinkError::Closed)), "{end:?}");
    up.await.unwrap();
}

#[tokio::test]
async fn silent_ultrapeer_times_the_handshake_out() {
    let (l, addr) = listener().await;
    let up = tokio::spawn(async move {
        // Accept, read the request, never answer; hold the socket until
        // the leaf gives up.
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = Vec::new();
        let _ = read_handshake(&mut s, &mut buf).await;
        let mut rest = [0u8; 64];
        let _ = timeout(LIMIT, s.read(&mut rest)).await;
    });
    let cfg = LeafConfig {
        handshake_timeout: Duration::from_millis(200),
        ..leaf_config()
    };
    let r = timeout(LIMIT, LeafLink::connect(addr, cfg))
        .await
        .expect("connect gives up on its own");
    assert!(
        matches!(r, Err(LinkError::HandshakeTimeout)),
        "{:?}",
        r.map(|_| ())
    );
    up.await.unwrap();
}
