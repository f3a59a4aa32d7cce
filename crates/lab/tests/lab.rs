//! The lab itself: a host behind a router reaches the internet, nothing
//! unsolicited reaches it, and a mapping made through miniupnpd lets a
//! public host in. Needs root; prints one skip line elsewhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use rutella_lab::{Lab, RouterKind};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn behind_a_router_out_works_in_does_not_until_mapped() {
    let Some(mut lab) = Lab::or_skip() else {
        return;
    };
    let p = lab.public_host("p", 2).unwrap();
    let upnp = RouterKind {
        port_mapping: Command::new("miniupnpd").arg("--version").output().is_ok(),
        ..Default::default()
    };
    let r1 = lab.router("r1", 11, upnp).unwrap();
    let h1 = lab.host_behind(&r1, "h1").unwrap();

    // Out: H1 connects to P, and P sees the router's address.
    let listener = p
        .enter(|| TcpListener::bind("0.0.0.0:7000"))
        .unwrap()
        .unwrap();
    let to_p = SocketAddr::from((p.ip, 7000));
    let mut out = h1
        .enter(move || TcpStream::connect_timeout(&to_p, WAIT))
        .unwrap()
        .unwrap();
    let (mut inbound, seen) = listener.accept().unwrap();
    assert_eq!(seen.ip(), r1.host.ip, "P sees H1 as the router's address");
    out.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    inbound.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");

    // UDP out and the answer back in, through the NAT's binding.
    let u1 = h1
        .enter(|| UdpSocket::bind("0.0.0.0:7001"))
        .unwrap()
        .unwrap();
    let up = p
        .enter(|| UdpSocket::bind("0.0.0.0:7001"))
        .unwrap()
        .unwrap();
    up.set_read_timeout(Some(WAIT)).unwrap();
    u1.set_read_timeout(Some(WAIT)).unwrap();
    u1.send_to(b"ping", (p.ip, 7001)).unwrap();
    let (n, from) = up.recv_from(&mut [0u8; 16]).unwrap();
    assert_eq!((n, from.ip()), (4, std::net::IpAddr::V4(r1.host.ip)));
    up.send_to(b"pong", from).unwrap();
    let (n, _) = u1.recv_from(&mut [0u8; 16]).unwrap();
    assert_eq!(n, 4, "the answer comes back through the NAT");

    // In, unsolicited: dropped (a timeout, not a refusal or a connection).
    let h1_listener = h1
        .enter(|| TcpListener::bind("0.0.0.0:7002"))
        .unwrap()
        .unwrap();
    let wan = SocketAddr::from((r1.host.ip, 7002));
    let err = p
        .enter(move || TcpStream::connect_timeout(&wan, Duration::from_millis(500)))
        .unwrap()
        .expect_err("an unsolicited connection must not get through");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    if !upnp.port_mapping {
        eprintln!("skipped the mapping part: miniupnpd is not installed");
        return;
    }
    // In, mapped with UPnP from H1: P's connection reaches H1.
    let out = h1
        .command("upnpc")
        .args(["-e", "lab", "-a", &h1.ip.to_string(), "7002", "7002", "TCP"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is redirected to internal"),
        "upnpc: {text}\n{}",
        lab.miniupnpd_log("r1")
    );
    let listed = h1.command("upnpc").arg("-l").output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("7002->192.168.1.10:7002"),
        "upnpc -l: {listed}"
    );
    let _conn = p
        .enter(move || TcpStream::connect_timeout(&wan, WAIT))
        .unwrap()
        .unwrap();
    let (_, seen) = h1_listener.accept().unwrap();
    assert_eq!(
        seen.ip(),
        std::net::IpAddr::V4(p.ip),
        "H1 sees P's own address"
    );
}
