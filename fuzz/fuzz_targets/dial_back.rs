//! Dial-back messages (Commands 6 and 7): `message::DialBack::parse` on raw
//! bytes (an accepted message re-encodes to one that parses the same),
//! then the `reach::Reach` state machine driven by the same bytes cut into
//! steps (a parsed message from one of 16 sources, proven or not, a peer
//! joining or leaving, a dial-back ending, or a clock step): never a
//! panic; dial-backs running at once ≤ `max_running`; at most `probers`
//! requests per check; after `handle_timeout`, the next timeout is in the
//! future (no busy loop).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_proto::message::DialBack;
use rutella_proto::reach::{Reach, ReachConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = DialBack::parse(data) {
        assert_eq!(DialBack::parse(&m.encode()), Ok(m));
    }
    let cfg = ReachConfig {
        timeout: Duration::from_millis(100),
        udp_grace: Duration::from_millis(20),
        recheck: Duration::from_millis(1000),
        retry: Duration::from_millis(300),
        min_interval: Duration::from_millis(50),
        per_source: Duration::from_millis(200),
        max_sources: 4,
        per_minute: 600,
        burst: 3,
        max_running: 2,
        ..ReachConfig::default()
    };
    let (max_running, probers) = (cfg.max_running, cfg.probers);
    let mut now = Instant::now();
    let mut r = Reach::new(cfg, now);
    let mut running = Vec::new();
    // Sixteen sources: eight IPv4, eight IPv6.
    let src = |b: u8| {
        let ip = if b & 8 == 0 {
            IpAddr::V4(Ipv4Addr::new(11, 0, 0, b & 7))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                u16::from(b & 7),
            ))
        };
        SocketAddr::new(ip, 20000)
    };
    for step in data.chunks(12).take(64) {
        let (&op, rest) = match step.split_first() {
            Some(x) => x,
            None => break,
        };
        match op % 5 {
            0 => {
                now += Duration::from_millis(u64::from(op) * 2);
                r.handle_timeout(now);
                assert!(r.poll_timeout().is_none_or(|t| t > now), "no busy loop");
            }
            1 => r.add_peer(now, src(op >> 4)),
            2 => r.remove_peer(src(op >> 4)),
            3 => {
                if let Some(d) = running.pop() {
                    r.dial_done(d, op & 0x80 != 0);
                }
            }
            _ => {
                let token = rest.iter().fold(0u64, |t, b| t << 8 | u64::from(*b));
                let m = match op >> 6 {
                    0 => DialBack::Request {
                        token,
                        tcp_port: 10000,
                        udp_port: 20000,
                    },
                    1 => DialBack::UdpCheck { token },
                    _ => DialBack::Report {
                        token,
                        tcp: op & 0x20 != 0,
                        seen: None,
                    },
                };
                r.handle_message(now, src(op >> 3), op & 0x10 != 0, m);
            }
        }
        let mut requests = 0;
        while let Some((_, m)) = r.poll_transmit() {
            requests += usize::from(matches!(m, DialBack::Request { .. }));
        }
        assert!(requests <= probers);
        while let Some(d) = r.poll_dial() {
            running.push(d);
        }
        assert!(running.len() <= max_running);
    }
});
