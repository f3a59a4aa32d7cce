//! Browse host both ways, on loopback: a node answers `GET /` with
//! `Accept: application/x-gnutella-packets` by its shared files as
//! QueryHit descriptors (read here by a client written from the
//! specification, byte by byte), and `Client::browse` lists another
//! node's files as hits that `get_gnutella` fetches.

use rutella_node::{GnutellaSettings, Node, NodeConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);
const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

fn config(share: &Path, downloads: &Path) -> NodeConfig {
    NodeConfig {
        shares: vec![share.to_path_buf()],
        downloads: Some(downloads.to_path_buf()),
        bind: IP.into(),
        udp_port: 0,
        tcp_port: 0,
        // Gnutella on, with no ultrapeer to join: only HTTP is used.
        gnutella: Some(GnutellaSettings {
            tick: Duration::from_millis(20),
            ..GnutellaSettings::default()
        }),
        ..NodeConfig::default()
    }
}

struct Shared {
    _dir: tempfile::TempDir,
    share: std::path::PathBuf,
    downloads: std::path::PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

fn shared() -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(share.join("sub")).unwrap();
    let files = vec![
        (
            "sub/Let It Be.mp3".to_string(),
            (0..50_000u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("notes.txt".to_string(), b"just notes".to_vec()),
    ];
    for (n, d) in &files {
        std::fs::write(share.join(n), d).unwrap();
    }
    Shared {
        _dir: dir,
        share,
        downloads,
        files,
    }
}

async fn start(s: &Shared) -> Node {
    let node = Node::start(config(&s.share, &s.downloads)).await.unwrap();
    let lib = node.client().library().clone();
    assert!(tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT))
        .await
        .unwrap());
    node
}

/// Sends `request`, returns the head (as text) and the body.
async fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut all))
        .await
        .expect("an answer in time")
        .unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    (
        String::from_utf8(all[..end].to_vec()).unwrap(),
        all[end..].to_vec(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// One result as read from the wire: index, size, name, URNs.
#[derive(Debug)]
struct Wire {
    size: u32,
    name: String,
    ext: String,
}

/// Reads a stream of QueryHit descriptors as the specification lays them
/// out: the 23-byte header (GUID, 0x81, TTL, hops, length LE), then the
/// count, port (LE), IPv4, speed, the results (index LE, size LE, name,
/// NUL, extensions, NUL), the trailer and the 16-byte servent GUID.
fn read_hits(mut b: &[u8], port: u16) -> Vec<Wire> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 23);
        assert_eq!(b[16], 0x81, "a QueryHit");
        assert!(b[17] >= 1, "TTL");
        let len = u32::from_le_bytes(b[19..23].try_into().unwrap()) as usize;
        assert!(len <= 64 * 1024);
        let p = &b[23..23 + len];
        b = &b[23 + len..];
        let count = p[0] as usize;
        assert_eq!(u16::from_le_bytes([p[1], p[2]]), port);
        assert_eq!(&p[3..7], &[127, 0, 0, 1]);
        let mut at = 11;
        for _ in 0..count {
            let size = u32::from_le_bytes(p[at + 4..at + 8].try_into().unwrap());
            at += 8;
            let nul = at + p[at..].iter().position(|&c| c == 0).unwrap();
            let name = String::from_utf8(p[at..nul].to_vec()).unwrap();
            at = nul + 1;
            let nul = at + p[at..].iter().position(|&c| c == 0).unwrap();
            let ext = String::from_utf8_lossy(&p[at..nul]).into_owned();
            at = nul + 1;
            out.push(Wire { size, name, ext });
        }
        // The trailer: vendor code and the open data.
        assert_eq!(&p[at..at + 4], b"RTLA");
        // The servent GUID ends the payload.
        assert!(p.len() >= at + 4 + 16);
    }
    out
}

#[tokio::test]
async fn a_node_serves_browse_host_as_query_hits() {
    let s = shared();
    let node = start(&s).await;
    let addr = node.client().tcp_addr();
    let port = addr.port();
    let ask = |accept: &str, encoding: &str| {
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n{accept}{encoding}Connection: close\r\n\r\n")
    };

    // Deflated, as gtk-gnutella and LimeWire ask.
    let (head, body) = exchange(
        addr,
        &ask(
            "Accept: text/html, application/x-gnutella-packets\r\n",
            "Accept-Encoding: deflate\r\n",
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("application/x-gnutella-packets")
    );
    assert_eq!(header(&head, "Content-Encoding"), Some("deflate"));
    assert_eq!(header(&head, "X-Features"), Some("browse/1.0"));
    assert_eq!(
        header(&head, "Content-Length"),
        Some(body.len().to_string().as_str())
    );
    // One whole zlib stream (RFC 1950).
    let plain = rutella_gnutella::deflate::inflate_bounded(&body, 1 << 20).expect("a zlib stream");
    let mut got = read_hits(&plain, port);
    got.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got.len(), 2, "{got:?}");
    for (w, (name, data)) in got.iter().zip([&s.files[0], &s.files[1]]) {
        let base = name.rsplit('/').next().unwrap();
        assert_eq!(w.name, base);
        assert_eq!(w.size as usize, data.len());
        let urn = rutella_gnutella::huge::Urn::Sha1(sha1(data)).to_string();
        assert!(w.ext.contains(&urn), "{} lacks {urn}", w.ext);
    }

    // Not deflated when not asked.
    let (head, body) = exchange(addr, &ask("Accept: application/x-gnutella-packets\r\n", "")).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "Content-Encoding"), None);
    assert_eq!(read_hits(&body, port).len(), 2);

    // Another media type only: 406.
    let (head, _) = exchange(addr, &ask("Accept: text/html\r\n", "")).await;
    assert!(head.starts_with("HTTP/1.1 406"), "{head}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_browses_another_and_gets_a_file() {
    let s = shared();
    let served = start(&s).await;
    let other = shared();
    let me = start(&other).await;
    let client = me.client();
    let hits = client
        .browse(served.client().tcp_addr())
        .await
        .expect("a browse");
    let files: Vec<(&rutella_node::HitFile, &rutella_node::GnutellaSource, usize)> = hits
        .iter()
        .flat_map(|h| {
            let g = h.gnutella.as_ref().expect("a Gnutella hit");
            assert_eq!(h.network(), "gnutella");
            h.files.iter().enumerate().map(move |(i, f)| (f, g, i))
        })
        .collect();
    assert_eq!(files.len(), 2);
    let (f, g, i) = files
        .iter()
        .find(|(f, _, _)| f.name == "Let It Be.mp3")
        .copied()
        .expect("the song");
    assert_eq!(g.servent, served.client().tcp_addr());
    assert_eq!(g.files[i].sha1, Some(sha1(&s.files[0].1)));
    let path = client
        .get_gnutella(g, &f.name, g.files[i], f.size)
        .await
        .expect("the file");
    assert_eq!(std::fs::read(path).unwrap(), s.files[0].1);

    // A port that does not browse: an error, not a hang.
    let nothing = tokio::net::TcpListener::bind((IP, 0)).await.unwrap();
    let dead = nothing.local_addr().unwrap();
    drop(nothing);
    assert!(client.browse(dead).await.is_err());
    me.shutdown().await;
    served.shutdown().await;
}
