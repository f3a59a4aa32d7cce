//! LAN discovery: `lan::LanMessage::parse` on raw bytes (an accepted
//! datagram re-encodes to its first 18 bytes), then the
//! `lan::LanDiscovery` state machine (announcing, or only looking, by the
//! first byte) driven by the same bytes cut into steps (a datagram from
//! one of 16 sources, or a clock step): never a panic; at most 2
//! datagrams queued; candidates in any window of `take_interval` at most
//! 2 × `take_max` (a window of ours may straddle two of the machine's);
//! addresses remembered ≤ `max_remembered`; after `handle_timeout`, the
//! next timeout is in the future (no busy loop).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_proto::lan::{LanConfig, LanDiscovery, LanMessage, LEN};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = LanMessage::parse(data) {
        assert_eq!(&m.encode()[..], &data[..LEN]);
    }
    let cfg = LanConfig {
        announce_interval: Duration::from_millis(500),
        reply_gap: Duration::from_millis(50),
        take_interval: Duration::from_millis(200),
        take_max: 3,
        retry_after: Duration::from_millis(1000),
        max_remembered: 8,
        announce: data.first().is_none_or(|b| b & 0x80 == 0),
    };
    let (take_max, max_remembered, take_interval) = (cfg.take_max, cfg.max_remembered, cfg.take_interval);
    let t0 = Instant::now();
    let mut now = t0;
    let mut d = LanDiscovery::new(cfg, 20_000, 10_000, 42, now);
    let mut window = (now, 0usize);
    for step in data.chunks(LEN + 2).take(64) {
        let (&op, rest) = match step.split_first() {
            Some(x) => x,
            None => break,
        };
        if op & 1 == 0 {
            now += Duration::from_millis(u64::from(op) * 4);
            d.handle_timeout(now);
            assert!(d.poll_timeout() > now, "no busy loop");
        } else {
            let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, op >> 4), u16::from(op));
            d.handle_datagram(now, src, rest);
        }
        let mut sent = 0;
        while d.poll_transmit().is_some() {
            sent += 1;
        }
        assert!(sent <= 2);
        if now >= window.0 + take_interval {
            window = (now, 0);
        }
        while d.poll_candidate().is_some() {
            window.1 += 1;
        }
        // A window of the machine may straddle two of ours: at most twice.
        assert!(window.1 <= 2 * take_max);
        assert!(d.found() <= max_remembered);
    }
});
