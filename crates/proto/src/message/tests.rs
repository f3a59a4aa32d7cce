use super::*;
use std::net::{IpAddr, Ipv4Addr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Unknown fields are kept as they are when a ping is forwarded, floats
/// too: parsing what we encoded gives back the same number (serde_json
/// parses floats exactly only with its `float_roundtrip` feature).
#[test]
fn unknown_float_fields_round_trip_exactly() {
    let text = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1, "X": 1.0715660391465826e-75}"#;
    let m = Message::parse(text).unwrap();
    assert_eq!(Message::parse(&m.encode()).unwrap(), m);
}

#[test]
fn spec_examples_byte_for_byte() {
    let examples: [&str; 4] = [
        r#"{"Command": 1, "IP": "192.168.1.100", "TTL": 1}"#,
        r#"{"Command": 2, "IP": "192.168.1.101"}"#,
        r#"{"Command": 3, "Contents": "cl", "IP": "192.168.1.101"}"#,
        r#"{"Command": 4, "Contents": ["Cloud - Cloud models.png", "Cloud - CloudWatch 1.png"], "IP": "192.168.1.100"}"#,
    ];
    for ex in examples {
        let m = Message::parse(ex.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(m.encode()).unwrap(), ex);
    }
}

#[test]
fn spec_examples_decode_to_fields() {
    let m = Message::parse(br#"{"Command": 1, "IP": "192.168.1.100", "TTL": 1}"#).unwrap();
    let Message::Ping(p) = m else { panic!() };
    assert_eq!(
        (p.ip, p.ttl, p.ports),
        (ip("192.168.1.100"), 1, Ports::default())
    );
    let m = Message::parse(br#"{"Command": 4, "Contents": ["a.png", "b.png"], "IP": "10.0.0.1"}"#)
        .unwrap();
    let Message::QueryHit(h) = m else { panic!() };
    assert_eq!(
        h.files,
        vec![HitFile::named("a.png"), HitFile::named("b.png")]
    );
    assert!(!h.more && h.id.is_none());
}

#[test]
fn built_messages_encode_like_python() {
    let q = Message::Query(Query {
        ip: ip("192.168.1.101"),
        text: "cl".into(),
        id: None,
        ports: Ports::default(),
        extra: Map::new(),
    });
    assert_eq!(
        q.encode(),
        br#"{"Command": 3, "Contents": "cl", "IP": "192.168.1.101"}"#
    );
    let empty = Message::QueryHit(QueryHit {
        ip: ip("1.2.3.4"),
        files: vec![],
        id: None,
        more: false,
        ports: Ports::default(),
        extra: Map::new(),
    });
    assert_eq!(
        empty.encode(),
        br#"{"Command": 4, "Contents": [], "IP": "1.2.3.4"}"#
    );
}

#[test]
fn extensions_round_trip() {
    let h = Message::QueryHit(QueryHit {
        ip: ip("127.0.0.1"),
        files: vec![
            HitFile {
                name: "a/b.txt".into(),
                size: Some(5),
                hash: Some([7; 32]),
            },
            HitFile::named("c"),
        ],
        id: Some(42),
        more: true,
        ports: Ports::rutella(20001, 10001),
        extra: Map::new(),
    });
    assert_eq!(Message::parse(&h.encode()).unwrap(), h);
}

#[test]
fn unknown_fields_are_kept_when_forwarding() {
    let raw = br#"{"Command": 1, "IP": "10.0.0.1", "TTL": 2, "Zeta": [1, {"x": "y"}]}"#;
    let Message::Ping(mut p) = Message::parse(raw).unwrap() else {
        panic!()
    };
    p.ttl -= 1;
    assert_eq!(
        Message::Ping(p).encode(),
        br#"{"Command": 1, "IP": "10.0.0.1", "TTL": 1, "Zeta": [1, {"x": "y"}]}"#
    );
}

#[test]
fn bad_datagrams_are_errors() {
    let cases: [&[u8]; 10] = [
        b"",
        b"\xff\xfe",
        b"[1,2]",
        br#"{"IP": "1.2.3.4"}"#,
        br#"{"Command": 1, "IP": "1.2.3.4"}"#,
        br#"{"Command": 9, "IP": "1.2.3.4"}"#,
        br#"{"Command": 2, "IP": "1.2.3"}"#,
        br#"{"Command": 2, "IP": 5}"#,
        br#"{"Command": 4, "IP": "1.2.3.4", "Contents": "x"}"#,
        br#"{"Command": 2, "IP": "1.2.3.4", "UdpPort": 70000}"#,
    ];
    for c in cases {
        assert!(
            Message::parse(c).is_err(),
            "{:?}",
            String::from_utf8_lossy(c)
        );
    }
}

#[test]
fn hits_split_under_the_datagram_limit() {
    let template = QueryHit {
        ip: ip("10.1.2.3"),
        files: vec![],
        id: Some(9),
        more: false,
        ports: Ports::rutella(1, 2),
        extra: Map::new(),
    };
    let files: Vec<HitFile> = (0..1000)
        .map(|i| HitFile {
            name: format!("some folder/a fairly long file name number {i}.ogg"),
            size: Some(i * 1000),
            hash: Some([i as u8; 32]),
        })
        .collect();
    let parts = split_hits(&template, &files, MAX_DATAGRAM);
    assert!(parts.len() > 1);
    let mut back = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let bytes = Message::QueryHit(p.clone()).encode();
        assert!(bytes.len() <= MAX_DATAGRAM);
        assert_eq!(p.more, i + 1 < parts.len());
        back.extend(p.files.clone());
    }
    assert_eq!(back, files);
    // A name that can never fit is dropped, the rest kept.
    let huge = vec![HitFile::named("x".repeat(9000)), HitFile::named("ok")];
    let parts = split_hits(&template, &huge, MAX_DATAGRAM);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].files, vec![HitFile::named("ok")]);
}

/// `split_hits` as it was before sizes were added up: the datagram
/// encoded again after each name. The linear version must give the
/// same parts.
fn split_hits_by_encoding(template: &QueryHit, files: &[HitFile], limit: usize) -> Vec<QueryHit> {
    let mut parts = Vec::new();
    let mut current: Vec<HitFile> = Vec::new();
    let fits = |files: &[HitFile]| {
        let m = QueryHit {
            files: files.to_vec(),
            more: true,
            ..template.clone()
        };
        Message::QueryHit(m).encode().len() <= limit
    };
    for f in files {
        current.push(f.clone());
        if fits(&current) {
            continue;
        }
        current.pop();
        if current.is_empty() {
            continue;
        }
        parts.push(std::mem::take(&mut current));
        current.push(f.clone());
        if !fits(&current) {
            current.clear();
        }
    }
    parts.push(current);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, files)| QueryHit {
            files,
            more: i + 1 < n,
            ..template.clone()
        })
        .collect()
}

fn arb_file() -> impl proptest::strategy::Strategy<Value = HitFile> {
    use proptest::prelude::*;
    (
        prop_oneof![
            "[a-z0-9 ./]{0,40}",
            "\\PC{0,30}",
            ".{0,20}",
            "[\\x00-\\x1f\"\\\\]{0,10}",
            "x{0,300}",
        ],
        proptest::option::of(proptest::num::u64::ANY),
        proptest::option::of(proptest::array::uniform32(proptest::num::u8::ANY)),
    )
        .prop_map(|(name, size, hash)| HitFile { name, size, hash })
}

fn arb_template() -> impl proptest::strategy::Strategy<Value = QueryHit> {
    use proptest::prelude::*;
    (
        proptest::num::u32::ANY,
        proptest::option::of(proptest::num::u64::ANY),
        proptest::option::of(1u16..),
        proptest::option::of(1u16..),
        proptest::option::of(0u64..300),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(|(ip, id, udp, tcp, hops, odd)| {
            let mut extra = Map::new();
            if let Some(h) = hops {
                extra.insert("Hops".into(), Value::from(h));
            }
            if let Some(o) = odd {
                extra.insert("Zeta".into(), Value::from(o));
            }
            QueryHit {
                ip: IpAddr::V4(Ipv4Addr::from(ip)),
                files: Vec::new(),
                id,
                more: false,
                ports: Ports { udp, tcp },
                extra,
            }
        })
}

proptest::proptest! {
    #[test]
    fn split_hits_matches_encoding_after_each_name(
        template in arb_template(),
        files in proptest::collection::vec(arb_file(), 0..120),
        limit in proptest::prop_oneof![100usize..1000, 1000usize..9000],
    ) {
        let fast = split_hits(&template, &files, limit);
        proptest::prop_assert_eq!(&fast, &split_hits_by_encoding(&template, &files, limit));
        for p in &fast {
            let len = Message::QueryHit(p.clone()).encode().len();
            proptest::prop_assert!(p.files.is_empty() || len <= limit, "{} > {}", len, limit);
        }
    }
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn query_round_trips(text in ".{0,60}", id in proptest::option::of(0u64..u64::MAX), a in 0u32..u32::MAX) {
        let m = Message::Query(Query { ip: IpAddr::V4(Ipv4Addr::from(a)), text, id, ports: Ports::default(), extra: Map::new() });
        proptest::prop_assert_eq!(Message::parse(&m.encode()).unwrap(), m);
    }
}

#[test]
fn ipv6_addresses_are_for_rutella_messages_only() {
    let wire = br#"{"Command": 2, "IP": "2001:db8::5", "UdpPort": 20000}"#;
    let m = Message::parse(wire).unwrap();
    assert_eq!(m.ip(), "2001:db8::5".parse::<IpAddr>().unwrap());
    assert_eq!(m.encode(), wire.to_vec());
    // Without "UdpPort" a message is classic, and classic peers are IPv4.
    for classic in [
        &br#"{"Command": 2, "IP": "2001:db8::5"}"#[..],
        br#"{"Command": 2, "IP": "2001:db8::5", "TcpPort": 10000}"#,
        br#"{"Command": 1, "IP": "::1", "TTL": 1}"#,
    ] {
        assert_eq!(Message::parse(classic), Err(ParseError::Invalid("IP")));
    }
    // An IPv4-mapped address is the IPv4 address, classic or not.
    let m = Message::parse(br#"{"Command": 2, "IP": "::ffff:192.0.2.1"}"#).unwrap();
    assert_eq!(m.ip(), ip("192.0.2.1"));
    // "IP" is an address, not a socket address.
    for bad in [
        &br#"{"Command": 2, "IP": "[::1]", "UdpPort": 1}"#[..],
        br#"{"Command": 2, "IP": "[::1]:20000", "UdpPort": 1}"#,
        br#"{"Command": 2, "IP": "fe80::1%eth0", "UdpPort": 1}"#,
    ] {
        assert_eq!(Message::parse(bad), Err(ParseError::Invalid("IP")));
    }
}

proptest::proptest! {
    #[test]
    fn rutella_messages_round_trip_with_ipv6(
        text in ".{0,60}",
        id in proptest::option::of(0u64..u64::MAX),
        a in proptest::num::u128::ANY,
        udp in 1u16..,
    ) {
        let a = std::net::Ipv6Addr::from(a);
        proptest::prop_assume!(a.to_ipv4_mapped().is_none());
        let ports = Ports { udp: Some(udp), tcp: None };
        let m = Message::Query(Query { ip: IpAddr::V6(a), text, id, ports, extra: Map::new() });
        proptest::prop_assert_eq!(Message::parse(&m.encode()).unwrap(), m);
    }
}
