//! Any bytes fed to the host cache readers (a GWebCache's HTTP answer, a
//! UDP host cache's pong, a cache URL): never a panic, never more hosts
//! or caches than the bounds, never a host the cache may not name (a
//! loopback, private or port-0 address from a public cache).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::hostcache::{
    acceptable, parse_gwc_answer, parse_uhc_pong, parse_url, Learned, MAX_HOSTS, MAX_URLS,
    MAX_URL_LEN,
};
use std::net::{IpAddr, Ipv4Addr};

fn check(l: &Learned, cache: IpAddr) {
    assert!(l.hosts.len() <= MAX_HOSTS);
    assert!(l.caches.len() <= MAX_URLS);
    for h in &l.hosts {
        assert!(acceptable(*h.ip(), h.port(), cache));
    }
    for c in &l.caches {
        assert!(c.to_string().len() <= MAX_URL_LEN + 16);
    }
}

fuzz_target!(|data: &[u8]| {
    let public = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for cache in [public, local] {
        if let Some(l) = parse_gwc_answer(data, cache) {
            check(&l, cache);
        }
        if data.len() >= 16 {
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&data[..16]);
            if let Some(l) = parse_uhc_pong(&data[16..], &guid, cache) {
                check(&l, cache);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(u) = parse_url(s) {
            assert!(u.path.starts_with('/'));
            assert_eq!(parse_url(&u.to_string()), Some(u));
        }
    }
});
