//! Search results as the console shows them: numbered across all peers in
//! the order they arrive, identical files from several peers grouped.

use crate::escape::escape;
use rutella_node::{HitFile, Peer, PeerAddr};

/// The most results one search keeps; later ones are counted, not kept.
pub(crate) const MAX_RESULTS: usize = 2000;

/// One file, offered by one or more peers.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) name: String,
    pub(crate) size: Option<u64>,
    pub(crate) hash: Option<[u8; 32]>,
    /// The peers offering it, first answer first.
    pub(crate) sources: Vec<Peer>,
    /// When it came first from a Gnutella servent: that hit, and the
    /// file's place in it.
    pub(crate) gnutella: Option<(rutella_node::GnutellaSource, usize)>,
}

/// What adding a hit did, for printing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// A new result, numbered from 1.
    New(usize),
    /// One more peer for result N.
    AlsoOn(usize),
    /// Already listed for that peer, or over the limit.
    Ignored,
}

/// The results of the last search.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) items: Vec<Found>,
}

impl Results {
    /// Files are the same when their hashes are equal, or, when either has
    /// no hash, when both name and a known size are equal.
    fn same(a: &Found, f: &HitFile) -> bool {
        match (a.hash, f.hash) {
            (Some(x), Some(y)) => x == y,
            _ => a.size.is_some() && a.size == f.size && a.name == f.name,
        }
    }

    pub(crate) fn add(&mut self, peer: &Peer, f: &HitFile) -> Added {
        if let Some(i) = self.items.iter().position(|a| Self::same(a, f)) {
            let item = &mut self.items[i];
            if item.sources.iter().any(|p| p.udp == peer.udp) {
                return Added::Ignored;
            }
            if item.hash.is_none() {
                item.hash = f.hash;
            }
            item.sources.push(*peer);
            return Added::AlsoOn(i + 1);
        }
        if self.items.len() >= MAX_RESULTS {
            return Added::Ignored;
        }
        self.items.push(Found {
            name: f.name.clone(),
            size: f.size,
            hash: f.hash,
            sources: vec![*peer],
            gnutella: None,
        });
        Added::New(self.items.len())
    }

    /// Records that new result `n` came from a Gnutella hit (file `i` of
    /// it).
    pub(crate) fn set_gnutella(&mut self, n: usize, g: &rutella_node::GnutellaSource, i: usize) {
        if let Some(item) = n.checked_sub(1).and_then(|i| self.items.get_mut(i)) {
            item.gnutella = Some((g.clone(), i));
        }
    }

    pub(crate) fn get(&self, n: usize) -> Option<&Found> {
        n.checked_sub(1).and_then(|i| self.items.get(i))
    }
}

/// A peer as the user types it: `IP` for classic ports, else `IP:UDPPORT`.
pub(crate) fn peer_name(p: &Peer) -> String {
    PeerAddr {
        udp: p.udp,
        tcp_port: Some(p.tcp_port),
    }
    .to_string()
}

/// Bytes for people, short: `812 B`, `1.5 KiB`, `614 KiB`, `3.1 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 9.95 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// One result line: number, peer, size, name; before the name, the
/// network of its first source when it is not rutella: `[g]` for a
/// Gnutella servent, `[c]` for a classic peer.
pub(crate) fn line(n: usize, f: &Found) -> String {
    let size = f.size.map(bytes).unwrap_or_else(|| "-".into());
    let first = f.sources.first();
    let peer = first.map(peer_name).unwrap_or_default();
    let tag = if f.gnutella.is_some() {
        "[g] "
    } else if first.is_some_and(|p| !p.rutella) {
        "[c] "
    } else {
        ""
    };
    format!("{n:>4}  {peer:<21} {size:>10}  {tag}{}", escape(&f.name))
}

/// The line for one more peer offering result N.
pub(crate) fn also_line(n: usize, p: &Peer, count: usize) -> String {
    format!(
        "{:>4}  {:<21} {:>10}  (same file as {n}: {count} peers)",
        "+",
        peer_name(p),
        ""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> Peer {
        Peer {
            udp: format!("127.0.0.1:{port}").parse().unwrap(),
            tcp_port: port + 1,
            rutella: true,
        }
    }

    fn file(name: &str, size: Option<u64>, hash: Option<u8>) -> HitFile {
        HitFile {
            name: name.into(),
            size,
            hash: hash.map(|h| [h; 32]),
        }
    }

    #[test]
    fn numbered_across_peers_and_grouped() {
        let mut r = Results::default();
        let (a, b, c) = (peer(1000), peer(2000), peer(3000));
        assert_eq!(r.add(&a, &file("x.ogg", Some(5), Some(1))), Added::New(1));
        assert_eq!(r.add(&a, &file("y.png", Some(7), None)), Added::New(2));
        // Same hash under another name: the same file.
        assert_eq!(
            r.add(&b, &file("renamed.ogg", Some(5), Some(1))),
            Added::AlsoOn(1)
        );
        // Same name and size, no hash: the same file.
        assert_eq!(r.add(&b, &file("y.png", Some(7), None)), Added::AlsoOn(2));
        // Same name, other size: another file.
        assert_eq!(r.add(&c, &file("y.png", Some(8), None)), Added::New(3));
        // Classic peers give no size: never grouped by name alone.
        assert_eq!(r.add(&c, &file("x.ogg", None, None)), Added::New(4));
        assert_eq!(r.add(&b, &file("x.ogg", None, None)), Added::New(5));
        // The same peer answering twice is not a second source.
        assert_eq!(r.add(&a, &file("x.ogg", Some(5), Some(1))), Added::Ignored);
        // Different hashes: different files even with the same name and size.
        assert_eq!(r.add(&c, &file("x.ogg", Some(5), Some(2))), Added::New(6));
        assert_eq!(r.get(1).unwrap().sources.len(), 2);
        assert!(r.get(0).is_none() && r.get(7).is_none());
    }

    #[test]
    fn lines_show_peer_size_and_name() {
        let mut r = Results::default();
        r.add(&peer(1000), &file("Cloud models.png", Some(3 << 20), None));
        let l = line(1, r.get(1).unwrap());
        assert!(l.contains("127.0.0.1:1000"), "{l}");
        assert!(l.contains("3.0 MiB"), "{l}");
        assert!(l.ends_with("  Cloud models.png"), "{l}");
        // A classic peer's result says so.
        let classic = Peer {
            rutella: false,
            ..peer(2000)
        };
        r.add(&classic, &file("old.png", None, None));
        assert!(line(2, r.get(2).unwrap()).ends_with("  [c] old.png"));
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(629_146), "614 KiB");
        assert_eq!(bytes(3_200_000), "3.1 MiB");
        assert_eq!(bytes(5 << 40), "5.0 TiB");
    }
}
