//! Relay circuits: `relay::parse_intro` and `relay::Answer::parse` on raw
//! bytes (an accepted introduction re-encodes to its first 26 bytes; an
//! answer with a whole UTF-8 reason re-encodes to the bytes it came from),
//! then the `relay::Admission` machine driven by the same bytes cut into
//! steps (an introduction from one of 8 addresses, a close, or a clock
//! step): never a panic; circuits held never above `max_circuits`; after
//! `handle_timeout`, no wait ends in the past (no busy loop).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_proto::relay::{
    encode_intro, parse_intro, Admission, Answer, CircuitLimits, RelayConfig, Role, INTRO_LEN,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok((id, role)) = parse_intro(data) {
        assert_eq!(&encode_intro(&id, role)[..], &data[..INTRO_LEN]);
    }
    if let Ok(a) = Answer::parse(data) {
        let len = Answer::len_from_head([data[0], data[1]]);
        if std::str::from_utf8(&data[2..2 + data[1] as usize]).is_ok() {
            assert_eq!(a.encode(), &data[..len]);
        }
    }
    let cfg = RelayConfig {
        enabled: data.first().is_none_or(|b| b & 0x80 == 0),
        max_circuits: 4,
        max_per_ip: 2,
        wait_timeout: Duration::from_millis(100),
        limits: CircuitLimits {
            max_bytes: 1000,
            max_duration: Duration::from_secs(1),
            rate: None,
        },
    };
    let mut adm = Admission::new(cfg);
    let mut now = Instant::now();
    for step in data.chunks(3).take(128) {
        let [op, a, b] = match *step {
            [op, a, b] => [op, a, b],
            _ => break,
        };
        let id = [a & 7; 16];
        match op % 4 {
            0 => {
                now += Duration::from_millis(u64::from(a));
                adm.handle_timeout(now);
                assert!(adm.poll_timeout().is_none_or(|t| t > now), "no busy loop");
            }
            1 => adm.close(&id),
            _ => {
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, b & 7));
                let role = if op & 4 == 0 { Role::Client } else { Role::Server };
                let _ = adm.arrive(now, ip, id, role);
            }
        }
        assert!(adm.circuits() <= 4);
    }
});
