//! Each descriptor kind checked byte by byte against the layout of the
//! specification, then decoded back; property tests for the round trip.

use super::*;
use proptest::prelude::*;

const G: Guid = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0xff, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x00,
];
const S: Guid = [0xa0; 16];

fn header(kind: u8, ttl: u8, hops: u8, len: u32) -> Vec<u8> {
    let mut v = G.to_vec();
    v.extend([kind, ttl, hops]);
    v.extend(len.to_le_bytes());
    v
}

fn check(d: Descriptor, expect: Vec<u8>) {
    let bytes = d.encode();
    assert_eq!(bytes, expect);
    assert_eq!(Descriptor::decode_bytes(&bytes).unwrap(), d);
}

#[test]
fn header_layout() {
    let h = Header {
        guid: G,
        kind: 0x80,
        ttl: 4,
        hops: 1,
        length: 0x0102,
    };
    let b = h.encode();
    assert_eq!(&b[..16], &G);
    assert_eq!(&b[16..], &[0x80, 4, 1, 0x02, 0x01, 0, 0]);
    assert_eq!(Header::decode(&b), h);
}

#[test]
fn ping_keep_alive() {
    // A keep-alive ping: TTL 1, hops 0, no payload.
    check(
        Descriptor {
            guid: G,
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        },
        header(0, 1, 0, 0),
    );
}

#[test]
fn pong_layout() {
    let d = Descriptor {
        guid: G,
        ttl: 1,
        hops: 0,
        payload: Payload::Pong(Pong {
            port: 6346,
            ip: Ipv4Addr::new(127, 0, 0, 1),
            files: 3,
            kbytes: 0x0400,
            ggep: vec![],
        }),
    };
    let mut e = header(1, 1, 0, 14);
    e.extend([0xca, 0x18, 127, 0, 0, 1, 3, 0, 0, 0, 0x00, 0x04, 0, 0]);
    check(d, e);
}

#[test]
fn bye_layout() {
    let d = Descriptor {
        guid: G,
        ttl: 1,
        hops: 0,
        payload: Payload::Bye(Bye {
            code: 200,
            message: b"Shutting down".to_vec(),
        }),
    };
    let mut e = header(2, 1, 0, 2 + 13 + 1);
    e.extend([200, 0]);
    e.extend(b"Shutting down\0");
    check(d, e);
}

#[test]
fn push_layout() {
    let d = Descriptor {
        guid: G,
        ttl: 3,
        hops: 0,
        payload: Payload::Push(Push {
            servent: S,
            index: 7,
            ip: Ipv4Addr::new(127, 0, 0, 2),
            port: 6347,
            ggep: vec![],
        }),
    };
    let mut e = header(0x40, 3, 0, 26);
    e.extend(S);
    e.extend([7, 0, 0, 0, 127, 0, 0, 2, 0xcb, 0x18]);
    check(d, e);
}

#[test]
fn query_layout_with_huge_urn() {
    let sha1 = [0x5a; 20];
    let d = Descriptor {
        guid: G,
        ttl: 4,
        hops: 0,
        payload: Payload::Query(Query {
            flags: query_flags::MARKED | query_flags::GGEP_H,
            criteria: b"free music".to_vec(),
            ext: Extensions {
                urns: vec![Urn::Sha1(sha1)],
                ..Default::default()
            },
        }),
    };
    let urn = format!("urn:sha1:{}", huge::base32_encode(&sha1));
    let mut e = header(0x80, 4, 0, (2 + 11 + urn.len()) as u32);
    e.extend([0x88, 0x00]); // big-endian flags: marked + GGEP H
    e.extend(b"free music\0");
    e.extend(urn.as_bytes());
    check(d, e);
}

#[test]
fn query_hit_layout_with_trailer() {
    let sha1 = [0x01; 20];
    let urn = format!("urn:sha1:{}", huge::base32_encode(&sha1));
    let d = Descriptor {
        guid: G,
        ttl: 2,
        hops: 0,
        payload: Payload::QueryHit(QueryHit {
            port: 6346,
            ip: Ipv4Addr::new(127, 0, 0, 1),
            speed: 1000,
            results: vec![HitResult {
                index: 5,
                size: 1234,
                name: b"song.mp3".to_vec(),
                ext: Extensions {
                    urns: vec![Urn::Sha1(sha1)],
                    ..Default::default()
                },
            }],
            trailer: Some(Trailer {
                vendor: *b"RTLA",
                flags: HitFlags {
                    push: Some(true),
                    busy: Some(false),
                    uploaded: Some(false),
                    measured_speed: None,
                    ggep: false,
                },
                open_extra: vec![],
                ggep: vec![],
                private: vec![],
            }),
            servent: S,
        }),
    };
    let mut p = vec![1, 0xca, 0x18, 127, 0, 0, 1, 0xe8, 0x03, 0, 0];
    p.extend([5, 0, 0, 0, 0xd2, 0x04, 0, 0]);
    p.extend(b"song.mp3\0");
    p.extend(urn.as_bytes());
    p.push(0);
    // Trailer: vendor, open size 2, flags: first byte = push value (1) |
    // busy meaningful (4) | uploaded meaningful (8); second byte = push
    // meaningful (1), busy and uploaded false.
    p.extend(b"RTLA");
    p.extend([2, 0x01 | 0x04 | 0x08, 0x01]);
    p.extend(S);
    let mut e = header(0x81, 2, 0, p.len() as u32);
    e.extend(p);
    check(d.clone(), e);
    let Payload::QueryHit(h) = d.payload else {
        unreachable!()
    };
    assert!(h.needs_push());
}

#[test]
fn gtk_gnutella_trailer_flags() {
    // gtk-gnutella's trailer: enabling byte 0x04|0x08|0x20 (plus 0x01 when
    // firewalled), flags byte 0x01 (push flag valid) plus busy/uploaded.
    let f = HitFlags::decode(&[0x04 | 0x08 | 0x20 | 0x01, 0x01 | 0x08 | 0x20]);
    assert_eq!(f.push, Some(true));
    assert_eq!(f.busy, Some(false));
    assert_eq!(f.uploaded, Some(true));
    assert_eq!(f.measured_speed, None);
    assert!(f.ggep);
    let f = HitFlags::decode(&[0x04 | 0x08, 0x01]);
    assert_eq!(f.push, Some(false));
}

#[test]
fn hit_with_ggep_h_lf_and_private_ggep() {
    let sha1 = [0x33; 20];
    let mut area = Vec::new();
    ggep::encode_block(
        &[
            Extension::new(b"H", huge::encode_ggep_h_sha1(&sha1)),
            Extension::new(b"LF", ggep::le_uint_bytes(5_000_000_000)),
        ],
        EncodeOptions {
            avoid_nul: true,
            compress: false,
        },
        &mut area,
    );
    let mut p = vec![1, 0xca, 0x18, 127, 0, 0, 1, 0, 0, 0, 0];
    p.extend([9, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    p.extend(b"big.iso\0");
    p.extend(&area);
    p.push(0);
    p.extend(b"GTKG");
    p.extend([2, 0x04 | 0x08 | 0x20, 0x01 | 0x20]);
    ggep::encode_block(
        &[Extension::new(b"BH", vec![])],
        EncodeOptions::default(),
        &mut p,
    );
    p.extend(S);
    let mut bytes = header(0x81, 3, 1, p.len() as u32);
    bytes.extend(&p);
    let d = Descriptor::decode_bytes(&bytes).unwrap();
    let Payload::QueryHit(h) = &d.payload else {
        panic!("not a hit")
    };
    assert_eq!(h.results[0].size, 5_000_000_000);
    assert_eq!(h.results[0].ext.urns, vec![Urn::Sha1(sha1)]);
    let t = h.trailer.as_ref().unwrap();
    assert_eq!(&t.vendor, b"GTKG");
    assert_eq!(t.flags.push, Some(false));
    assert_eq!(t.ggep, vec![Extension::new(b"BH", vec![])]);
    assert!(t.private.is_empty());
    // It re-encodes to a hit that decodes to the same.
    assert_eq!(Descriptor::decode_bytes(&d.encode()).unwrap(), d);
}

#[test]
fn refusals() {
    let h = Header {
        guid: G,
        kind: kind::QUERY,
        ttl: 1,
        hops: 0,
        length: (MAX_QUERY_PAYLOAD + 1) as u32,
    };
    assert!(matches!(check_length(&h), Err(DecodeError::TooLong { .. })));
    let h = Header {
        guid: G,
        kind: kind::PING,
        ttl: 1,
        hops: 0,
        length: (MAX_PAYLOAD + 1) as u32,
    };
    assert!(matches!(check_length(&h), Err(DecodeError::TooLong { .. })));
    // Pong too short, push too short.
    let mut b = header(1, 1, 0, 13);
    b.extend([0; 13]);
    assert_eq!(Descriptor::decode_bytes(&b), Err(DecodeError::Truncated));
    // Pong with junk after its fixed part.
    let mut b = header(1, 1, 0, 15);
    b.extend([0; 15]);
    assert!(Descriptor::decode_bytes(&b).is_err());
    // Query without its NUL.
    let mut b = header(0x80, 1, 0, 5);
    b.extend([0, 0, b'a', b'b', b'c']);
    assert_eq!(Descriptor::decode_bytes(&b), Err(DecodeError::BadString));
    // Hit claiming two results with room for one.
    let mut p = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend([1, 0, 0, 0, 1, 0, 0, 0, b'a', 0, 0]);
    p.extend(S);
    let mut b = header(0x81, 1, 0, p.len() as u32);
    b.extend(p);
    assert_eq!(Descriptor::decode_bytes(&b), Err(DecodeError::BadHit));
    // Payload shorter than the header says.
    let mut b = header(0, 1, 0, 4);
    b.extend([0xc3]);
    assert_eq!(Descriptor::decode_bytes(&b), Err(DecodeError::Truncated));
}

#[test]
fn legacy_extension_fields_are_kept_and_bounded() {
    let mut area = b"urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ".to_vec();
    for i in 0..10 {
        area.push(0x1c);
        area.extend(format!("<xml {i}/>").as_bytes());
    }
    let e = decode_extensions(&area);
    assert_eq!(e.urns.len(), 1);
    assert_eq!(e.other.len(), MAX_OTHER_EXT);
    // A broken GGEP block ends the area instead of failing the message.
    let e = decode_extensions(&[0xc3, 0x00]);
    assert_eq!(e, Extensions::default());
}

fn arb_ext() -> impl Strategy<Value = Extensions> {
    (
        proptest::collection::vec(
            proptest::array::uniform20(any::<u8>()).prop_map(Urn::Sha1),
            0..3,
        ),
        proptest::collection::vec(
            (
                proptest::collection::vec(1u8..=255, 1..=4),
                proptest::collection::vec(any::<u8>(), 0..40),
            )
                .prop_filter("no H", |(id, _)| id != b"H")
                .prop_map(|(id, data)| Extension { id, data }),
            0..3,
        ),
    )
        .prop_map(|(mut urns, ggep)| {
            urns.dedup();
            Extensions {
                urns,
                ggep,
                other: vec![],
            }
        })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    let ip = any::<[u8; 4]>().prop_map(Ipv4Addr::from);
    prop_oneof![
        Just(Payload::Ping(Ping::default())),
        (any::<u16>(), ip.clone(), any::<u32>(), any::<u32>()).prop_map(
            |(port, ip, files, kbytes)| Payload::Pong(Pong {
                port,
                ip,
                files,
                kbytes,
                ggep: vec![]
            })
        ),
        (any::<u16>(), proptest::collection::vec(1u8..=255, 0..100))
            .prop_map(|(code, message)| Payload::Bye(Bye { code, message })),
        (any::<[u8; 16]>(), any::<u32>(), ip.clone(), any::<u16>()).prop_map(
            |(servent, index, ip, port)| Payload::Push(Push {
                servent,
                index,
                ip,
                port,
                ggep: vec![]
            })
        ),
        (
            any::<u16>(),
            proptest::collection::vec(1u8..=255, 0..100),
            arb_ext()
        )
            .prop_map(|(flags, criteria, ext)| Payload::Query(Query {
                flags,
                criteria,
                ext
            })),
        (
            any::<u16>(),
            ip,
            any::<u32>(),
            proptest::collection::vec(
                (
                    any::<u32>(),
                    0u64..u64::from(u32::MAX),
                    proptest::collection::vec(1u8..=255, 0..40),
                    arb_ext()
                )
                    .prop_map(|(index, size, name, ext)| HitResult {
                        index,
                        size,
                        name,
                        ext
                    }),
                0..5
            ),
            proptest::option::of((
                any::<[u8; 4]>(),
                any::<Option<bool>>(),
                any::<Option<bool>>()
            )),
            any::<[u8; 16]>(),
        )
            .prop_map(|(port, ip, speed, results, tr, servent)| {
                let trailer = tr.map(|(vendor, push, busy)| Trailer {
                    vendor,
                    flags: HitFlags {
                        push,
                        busy,
                        ..Default::default()
                    },
                    open_extra: vec![],
                    ggep: vec![],
                    private: vec![],
                });
                Payload::QueryHit(QueryHit {
                    port,
                    ip,
                    speed,
                    results,
                    trailer,
                    servent,
                })
            }),
    ]
}

proptest! {
    #[test]
    fn round_trip(guid in any::<[u8; 16]>(), ttl in any::<u8>(), hops in any::<u8>(), payload in arb_payload()) {
        let d = Descriptor { guid, ttl, hops, payload };
        let bytes = d.encode();
        prop_assert_eq!(Descriptor::decode_bytes(&bytes).unwrap(), d);
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), k in prop_oneof![Just(0u8), Just(1), Just(2), Just(0x30), Just(0x40), Just(0x80), Just(0x81)]) {
        let h = Header { guid: G, kind: k, ttl: 1, hops: 0, length: bytes.len() as u32 };
        if let Ok(d) = Descriptor::decode(&h, &bytes) {
            let again = Descriptor::decode_bytes(&d.encode());
            prop_assert!(again.is_ok());
        }
    }
}

/// Found by the `gnutella_descriptor` fuzz target: a hit whose private
/// data holds legacy bytes and GGEP blocks encoded back to bytes where
/// another 0xC3 came first, so decoding again gave other extensions. The
/// GGEP block now goes first, and a broken later block ends the sequence.
#[test]
fn hit_private_data_normalises_once() {
    let input: &[u8] = &[
        67, 195, 153, 195, 195, 195, 0, 0, 1, 64, 10, 0, 85, 0, 127, 0, 129, 210, 1, 63, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 1, 255, 0, 0, 0, 0, 0, 0, 0, 70, 70, 65, 63, 0, 0, 0, 86, 0, 0, 3,
        255, 255, 255, 86, 0, 195, 129, 252, 64, 1, 0, 195, 131, 70, 70, 70, 66, 1, 0, 148, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let d = Descriptor::decode_bytes(input).unwrap();
    let d2 = Descriptor::decode_bytes(&d.encode()).unwrap();
    let d3 = Descriptor::decode_bytes(&d2.encode()).unwrap();
    assert_eq!(d3, d2);
}
