//! A leaf link's input path without the socket: bytes (raw, or deflated
//! by the harness in pieces, or fed as they are to the inflater) go
//! through the inflater, the framer, the descriptor decoder and the leaf
//! session. Never a panic; the session never queues more descriptors or
//! events than its bounds; the framer never holds more than one
//! descriptor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::deflate::{Deflater, Inflater};
use rutella_gnutella::descriptor::{Descriptor, HEADER_LEN, MAX_PAYLOAD};
use rutella_gnutella::framer::Framer;
use rutella_gnutella::leaf::{LeafConfig, LeafSession};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let cfg = LeafConfig {
        listen: Some("127.0.0.1:6346".parse().expect("address")),
        servent_guid: [7; 16],
        max_events: 8,
        max_outgoing: 8,
        seen_capacity: 16,
        max_open_queries: 2,
        ..LeafConfig::default()
    };
    let mut session = LeafSession::new(cfg);
    session.query_with_guid([1; 16], "fuzz", vec![]);
    let wire = match mode % 3 {
        0 => data.to_vec(),
        1 => {
            let mut z = Deflater::new();
            let mut w = Vec::new();
            for piece in data.chunks(usize::from(mode).max(1)) {
                z.compress(piece, &mut w);
            }
            w
        }
        _ => data.to_vec(),
    };
    let mut inflater = (mode % 3 != 0).then(Inflater::new);
    let mut framer = Framer::new();
    let mut pos = 0;
    for _ in 0..10_000 {
        let mut plain = Vec::new();
        match &mut inflater {
            Some(z) => match z.inflate(&wire[pos..], &mut plain, framer.wants().min(4096)) {
                Ok(used) => {
                    pos += used;
                    if used == 0 && plain.is_empty() {
                        break;
                    }
                }
                Err(_) => break,
            },
            None => {
                let n = framer.wants().min(wire.len() - pos);
                if n == 0 {
                    break;
                }
                plain.extend_from_slice(&wire[pos..pos + n]);
                pos += n;
            }
        }
        let mut p = 0;
        while p < plain.len() {
            let Ok((n, frame)) = framer.push(&plain[p..]) else {
                return;
            };
            assert!(n > 0);
            p += n;
            assert!(framer.wants() <= MAX_PAYLOAD.max(HEADER_LEN));
            if let Some((h, payload)) = frame {
                if let Ok(d) = Descriptor::decode(&h, &payload) {
                    session.handle(d);
                }
            }
        }
        let mut sent = 0;
        while session.poll_transmit().is_some() {
            sent += 1;
        }
        let mut events = 0;
        while session.poll_event().is_some() {
            events += 1;
        }
        assert!(sent <= 8 + 1 && events <= 8);
    }
});
