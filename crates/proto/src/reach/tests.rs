use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg() -> ReachConfig {
    ReachConfig {
        tcp_port: 10000,
        udp_port: 20000,
        timeout: ms(100),
        udp_grace: ms(20),
        recheck: ms(10_000),
        retry: ms(1_000),
        min_interval: ms(50),
        seed: 7,
        ..ReachConfig::default()
    }
}

/// The requests sent, as (peer, token).
fn requests(r: &mut Reach) -> Vec<(SocketAddr, u64)> {
    let mut out = Vec::new();
    while let Some((to, m)) = r.poll_transmit() {
        match m {
            DialBack::Request {
                token,
                tcp_port,
                udp_port,
            } => {
                assert_eq!((tcp_port, udp_port), (10000, 20000));
                out.push((to, token));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn report(r: &mut Reach, now: Instant, from: SocketAddr, token: u64, tcp: bool) {
    let seen = Some(a("11.0.0.11:10000"));
    r.handle_message(now, from, true, DialBack::Report { token, tcp, seen });
}

fn udp(r: &mut Reach, now: Instant, token: u64) {
    // From any address: a fresh socket of the prober.
    r.handle_message(
        now,
        a("11.0.0.2:45678"),
        false,
        DialBack::UdpCheck { token },
    );
}

#[test]
fn only_peers_outside_our_networks_and_not_at_our_address_are_asked() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.set_mapping(
        t0,
        Mapping::Mapped(MappedBy::Upnp, Ipv4Addr::new(11, 0, 0, 11)),
    );
    for p in [
        "127.0.0.1:20001",
        "192.168.1.20:20000",
        "10.0.0.3:20000",
        "169.254.1.1:20000",
        "11.0.0.11:20001",
    ] {
        r.add_peer(t0, a(p));
    }
    assert!(requests(&mut r).is_empty(), "nobody suitable");
    assert_eq!(r.poll_timeout(), None, "nothing to wait for");
    assert!(!r.has_prober());
    r.add_peer(t0, a("11.0.0.2:20000"));
    assert_eq!(requests(&mut r).len(), 1);
    assert!(r.checking());

    // Allowed for tests.
    let mut r = Reach::new(
        ReachConfig {
            allow_local: true,
            ..cfg()
        },
        t0,
    );
    r.add_peer(t0, a("127.0.0.1:20001"));
    assert_eq!(requests(&mut r)[0].0, a("127.0.0.1:20001"));
}

#[test]
fn two_probers_at_distinct_ips_and_both_reached_make_it_reachable() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.set_mapping(t0, Mapping::Pending);
    r.add_peer(t0, a("11.0.0.2:20000"));
    r.add_peer(t0, a("11.0.0.2:20001"));
    r.add_peer(t0, a("11.0.0.3:20000"));
    assert!(
        requests(&mut r).is_empty(),
        "no check while the mapping is pending"
    );
    assert_eq!(r.poll_timeout(), None);
    r.set_mapping(
        t0,
        Mapping::Mapped(MappedBy::Upnp, Ipv4Addr::new(11, 0, 0, 11)),
    );
    let asked = requests(&mut r);
    assert_eq!(asked.len(), 2);
    assert_ne!(asked[0].0.ip(), asked[1].0.ip(), "{asked:?}");
    assert_ne!(asked[0].1, asked[1].1, "tokens differ");
    let (p, token) = asked[0];
    let t1 = t0 + ms(10);
    udp(&mut r, t1, token);
    report(&mut r, t1, p, token, true);
    assert_eq!(
        r.verdict(),
        Reachability::Unknown,
        "waits for the other prober"
    );
    // The other never answers: one full success is enough.
    r.handle_timeout(t0 + ms(100));
    let v = Reachability::Reachable {
        addr: a("11.0.0.11:20000"),
        mapped_by: Some(MappedBy::Upnp),
    };
    assert_eq!(r.verdict(), v);
    assert_eq!(r.poll_verdict(), Some(v));
    assert_eq!(r.poll_verdict(), None, "once per change");
    assert!(!r.checking());
    // The next check comes after the recheck interval.
    assert_eq!(r.poll_timeout(), Some(t0 + ms(100) + ms(10_000)));
}

#[test]
fn a_report_without_the_fresh_socket_datagram_means_udp_is_closed() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.add_peer(t0, a("11.0.0.2:20000"));
    let (p, token) = requests(&mut r)[0];
    report(&mut r, t0 + ms(5), p, token, true);
    // The datagram may still come within the grace period.
    assert_eq!(r.poll_timeout(), Some(t0 + ms(25)));
    r.handle_timeout(t0 + ms(25));
    assert_eq!(
        r.verdict(),
        Reachability::NotReachable {
            tcp: true,
            udp: false
        }
    );
    assert_eq!(r.verdict().tcp_reachable(), Some(true));
}

#[test]
fn the_datagram_before_the_report_counts_and_ends_the_wait() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.add_peer(t0, a("11.0.0.2:20000"));
    let (p, token) = requests(&mut r)[0];
    udp(&mut r, t0 + ms(1), token);
    report(&mut r, t0 + ms(2), p, token, true);
    assert!(matches!(
        r.verdict(),
        Reachability::Reachable {
            mapped_by: None,
            ..
        }
    ));
}

#[test]
fn two_failed_probers_make_it_not_reachable_one_failure_and_one_silence_decide_nothing() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    // Both known before the check starts (else the first is asked alone).
    r.set_mapping(t0, Mapping::Pending);
    r.add_peer(t0, a("11.0.0.2:20000"));
    r.add_peer(t0, a("11.0.0.3:20000"));
    r.set_mapping(t0, Mapping::None);
    let asked = requests(&mut r);
    report(&mut r, t0 + ms(5), asked[0].0, asked[0].1, false);
    r.handle_timeout(t0 + ms(100));
    assert_eq!(r.verdict(), Reachability::Unknown, "one report of two");
    assert_eq!(r.poll_verdict(), None);
    // Tried again after `retry`, with the peers asked longest ago first.
    assert_eq!(r.poll_timeout(), Some(t0 + ms(1100)));
    r.handle_timeout(t0 + ms(1100));
    let asked = requests(&mut r);
    assert_eq!(asked.len(), 2);
    for (p, token) in &asked {
        report(&mut r, t0 + ms(1110), *p, *token, false);
    }
    r.handle_timeout(t0 + ms(1130));
    assert_eq!(
        r.verdict(),
        Reachability::NotReachable {
            tcp: false,
            udp: false
        }
    );
    assert_eq!(r.verdict().tcp_reachable(), Some(false));
}

#[test]
fn with_a_single_prober_its_failure_is_enough() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.add_peer(t0, a("11.0.0.2:20000"));
    let (p, token) = requests(&mut r)[0];
    report(&mut r, t0 + ms(5), p, token, false);
    r.handle_timeout(t0 + ms(25));
    assert!(matches!(r.verdict(), Reachability::NotReachable { .. }));
}

#[test]
fn reports_count_only_from_the_peer_asked_and_with_its_token() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.add_peer(t0, a("11.0.0.2:20000"));
    let (p, token) = requests(&mut r)[0];
    // Another address with the right token, the right peer with a wrong one.
    report(&mut r, t0 + ms(1), a("11.0.0.9:20000"), token, true);
    report(&mut r, t0 + ms(1), p, token ^ 1, true);
    udp(&mut r, t0 + ms(1), token ^ 1);
    r.handle_timeout(t0 + ms(100));
    assert_eq!(r.verdict(), Reachability::Unknown);
    // A late report for a finished check changes nothing either.
    udp(&mut r, t0 + ms(101), token);
    report(&mut r, t0 + ms(101), p, token, true);
    assert_eq!(r.verdict(), Reachability::Unknown);
}

#[test]
fn a_new_mapping_or_external_address_starts_a_new_check_soon() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.add_peer(t0, a("11.0.0.2:20000"));
    let (p, token) = requests(&mut r)[0];
    report(&mut r, t0 + ms(5), p, token, false);
    r.handle_timeout(t0 + ms(25));
    assert!(matches!(r.verdict(), Reachability::NotReachable { .. }));
    assert_eq!(r.poll_timeout(), Some(t0 + ms(10_025)));
    // The mapping arrives: a check at once, since the last one started
    // more than `min_interval` ago.
    let t1 = t0 + ms(60);
    r.set_mapping(
        t1,
        Mapping::Mapped(MappedBy::Pcp, Ipv4Addr::new(11, 0, 0, 11)),
    );
    let (p, token) = requests(&mut r)[0];
    udp(&mut r, t1, token);
    report(&mut r, t1, p, token, true);
    assert_eq!(
        r.poll_verdict(),
        Some(Reachability::Reachable {
            addr: a("11.0.0.11:20000"),
            mapped_by: Some(MappedBy::Pcp)
        })
    );
    // A learned address right after: not before `min_interval`.
    r.set_seen(t1 + ms(1), Some(Ipv4Addr::new(11, 0, 0, 11)));
    assert!(requests(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), Some(t1 + ms(50)));
    r.handle_timeout(t1 + ms(50));
    assert_eq!(requests(&mut r).len(), 1);
}

#[test]
fn a_prober_answers_proven_peers_only_and_dials_the_source_address() {
    let t0 = Instant::now();
    let c = ReachConfig {
        check: false,
        ..cfg()
    };
    let mut r = Reach::new(c, t0);
    let req = DialBack::Request {
        token: 42,
        tcp_port: 10000,
        udp_port: 20000,
    };
    // Not proven: kept until the address proves itself.
    r.handle_message(t0, a("11.0.0.11:20000"), false, req);
    assert_eq!(r.poll_dial(), None);
    r.add_peer(t0 + ms(50), a("11.0.0.12:20000"));
    assert_eq!(r.poll_dial(), None, "another peer proves nothing for it");
    r.add_peer(t0 + ms(50), a("11.0.0.11:20000"));
    let d = r.poll_dial().unwrap();
    assert_eq!(d.tcp, a("11.0.0.11:10000"));
    assert_eq!(d.udp, a("11.0.0.11:20000"));
    assert_eq!(d.reply_to, a("11.0.0.11:20000"));
    assert_eq!(
        DialBack::parse(&d.udp_check()),
        Ok(DialBack::UdpCheck { token: 42 })
    );
    r.dial_done(d, true);
    assert_eq!(
        r.poll_transmit(),
        Some((
            a("11.0.0.11:20000"),
            DialBack::Report {
                token: 42,
                tcp: true,
                seen: Some(a("11.0.0.11:10000"))
            }
        ))
    );
    // One never proven is forgotten after the timeout, and the table of
    // waiting requests is bounded.
    let spoofed = a("11.0.0.13:20000");
    r.handle_message(
        t0,
        spoofed,
        false,
        DialBack::Request {
            token: 1,
            tcp_port: 10000,
            udp_port: 20000,
        },
    );
    r.add_peer(t0 + ms(100), spoofed);
    assert_eq!(r.poll_dial(), None);
    for i in 0..=MAX_WAITING as u16 {
        let src = SocketAddr::from((Ipv4Addr::new(11, 0, 2, 1), 1000 + i));
        r.handle_message(t0 + ms(200), src, false, req);
    }
    assert_eq!(r.waiting.len(), MAX_WAITING);
    assert_eq!(r.prober_drops().unproven, 1);
}

#[test]
fn a_node_that_does_not_check_still_answers() {
    let t0 = Instant::now();
    let mut r = Reach::new(
        ReachConfig {
            check: false,
            ..cfg()
        },
        t0,
    );
    r.add_peer(t0, a("11.0.0.2:20000"));
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.poll_timeout(), None);
    let req = DialBack::Request {
        token: 1,
        tcp_port: 1,
        udp_port: 2,
    };
    r.handle_message(t0, a("11.0.0.2:20000"), true, req);
    assert!(r.poll_dial().is_some());
}

#[test]
fn a_prober_limits_each_source_and_the_whole_node() {
    let t0 = Instant::now();
    let c = ReachConfig {
        per_source: ms(1000),
        per_minute: 60,
        burst: 3,
        max_running: 2,
        max_sources: 3,
        ..cfg()
    };
    let mut r = Reach::new(c, t0);
    let req = |t| DialBack::Request {
        token: t,
        tcp_port: 1,
        udp_port: 2,
    };
    let src = |i: u8| SocketAddr::from((Ipv4Addr::new(11, 0, 1, i), 20000));
    r.handle_message(t0, src(1), true, req(1));
    // The same IP again (another port too) within `per_source`.
    r.handle_message(t0, src(1), true, req(2));
    r.handle_message(
        t0,
        SocketAddr::from((Ipv4Addr::new(11, 0, 1, 1), 9)),
        true,
        req(3),
    );
    assert_eq!(r.prober_drops().per_source, 2);
    r.handle_message(t0, src(2), true, req(4));
    // Two running: the cap.
    r.handle_message(t0, src(3), true, req(5));
    assert_eq!(r.prober_drops().node, 1);
    let d1 = r.poll_dial().unwrap();
    let d2 = r.poll_dial().unwrap();
    assert_eq!(r.poll_dial(), None);
    r.dial_done(d1, false);
    r.dial_done(d2, false);
    // One token left of the burst of 3.
    r.handle_message(t0, src(3), true, req(6));
    let d = r.poll_dial().unwrap();
    r.dial_done(d, true);
    // The table of sources is full (3) until its entries expire.
    r.handle_message(t0 + ms(999), src(4), true, req(7));
    assert_eq!(r.prober_drops().per_source, 3, "table full");
    assert_eq!(r.poll_dial(), None);
    // Expired entries are forgotten; one second refilled one token.
    let t2 = t0 + ms(1000);
    r.handle_message(t2, src(4), true, req(8));
    assert!(r.poll_dial().is_some());
    assert_eq!(r.sources.len(), 1);
    r.handle_message(t2, src(5), true, req(9));
    assert_eq!(r.prober_drops().node, 2, "bucket empty");
    assert_eq!(r.poll_dial(), None);
}

#[test]
fn a_prober_done_early_does_not_make_the_timer_fire_in_the_past() {
    let t0 = Instant::now();
    let mut r = Reach::new(cfg(), t0);
    r.set_mapping(t0, Mapping::Pending);
    r.add_peer(t0, a("11.0.0.2:20000"));
    r.add_peer(t0, a("11.0.0.3:20000"));
    r.set_mapping(t0, Mapping::None);
    let asked = requests(&mut r);
    // One reports at once (TCP only); its grace ends while the other is
    // still awaited.
    report(&mut r, t0 + ms(1), asked[0].0, asked[0].1, true);
    let t1 = t0 + ms(30);
    r.handle_timeout(t1);
    assert!(r.checking());
    let next = r.poll_timeout().unwrap();
    assert!(next > t1, "the timer would fire again at once");
    assert_eq!(next, t0 + ms(100), "the other prober's deadline");
}
