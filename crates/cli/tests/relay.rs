//! `rutella serve` relays circuits on its TCP port unless told not to:
//! `--no-relay` and `relay = false` in the settings file refuse them with
//! the reason. Raw bytes on loopback, as docs/PROTOCOL.md writes them.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Introduces one side of circuit `id` and reads the relay's status and
/// reason.
fn introduce(addr: SocketAddr, id: u8, role: u8) -> (TcpStream, u8, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut intro = vec![0x52, 0x55, 0x54, 0xFF, 0xFF, 0x52, 0x4C, 0x01];
    intro.extend_from_slice(&[id; 16]);
    intro.extend_from_slice(&[role, 0]);
    s.write_all(&intro).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    let mut reason = vec![0u8; head[1] as usize];
    s.read_exact(&mut reason).unwrap();
    if head[0] == 0 {
        // The limits: bytes, milliseconds, bytes per second.
        let mut limits = [0u8; 24];
        s.read_exact(&mut limits).unwrap();
        assert!(u64::from_le_bytes(limits[..8].try_into().unwrap()) > 0);
    }
    (s, head[0], String::from_utf8(reason).unwrap())
}

#[test]
fn serve_relays_a_circuit_by_default() {
    let _serve = Serve::start(&["--bind", "127.0.44.1", "--no-lan-discovery"]);
    let addr: SocketAddr = "127.0.44.1:10000".parse().unwrap();
    let server = std::thread::spawn(move || introduce(addr, 7, 1));
    // The server side waits at the relay until the client side comes.
    std::thread::sleep(Duration::from_millis(100));
    let (mut c, status, reason) = introduce(addr, 7, 0);
    let (mut s, status2, _) = server.join().unwrap();
    assert_eq!((status, status2), (0, 0), "{reason}");
    c.write_all(b"hello through the relay").unwrap();
    let mut got = [0u8; 23];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello through the relay");
}

#[test]
fn no_relay_refuses_with_the_reason() {
    let serve = Serve::start(&["--bind", "127.0.44.2", "--no-lan-discovery", "--no-relay"]);
    let (mut s, status, reason) = introduce("127.0.44.2:10000".parse().unwrap(), 1, 0);
    assert_eq!(status, 1);
    assert_eq!(reason, "this node does not relay (--no-relay)");
    // Refused: the relay closes.
    assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0);
    serve.wait_log("relay circuit refused", Duration::from_secs(5));
}

#[test]
fn relay_false_in_the_settings_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "relay = false\n").unwrap();
    let mut cmd = bin();
    cmd.env("RUTELLA_CONFIG", &settings).args([
        "serve",
        "--no-port-mapping",
        "--no-lan-discovery",
        "--bind",
        "127.0.44.3",
    ]);
    let serve = Serve::spawn(cmd, dir);
    serve.wait_log("node started", Duration::from_secs(20));
    let (_, status, reason) = introduce("127.0.44.3:10000".parse().unwrap(), 1, 0);
    assert_eq!(
        (status, reason.as_str()),
        (1, "this node does not relay (--no-relay)")
    );
}
