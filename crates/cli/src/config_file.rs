//! The settings file: TOML at the platform's config location (or at
//! `$RUTELLA_CONFIG`), holding shares, ports, the downloads folder and the
//! peers that answered, so a restarted node rejoins by itself.

use crate::{exit, Failure};
use rutella_node::PeerAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item};

/// Environment variable naming another settings file.
pub(crate) const ENV: &str = "RUTELLA_CONFIG";

/// The most peers remembered; the oldest are forgotten first.
const MAX_PEERS: usize = 64;

/// A remembered peer not seen answering for this long is forgotten.
pub(crate) const PEER_MAX_AGE: u64 = 14 * 24 * 3600;

/// Seconds since 1970, now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the settings file holds. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Shared folders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) shares: Vec<PathBuf>,
    /// Where downloads go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) downloads: Option<PathBuf>,
    /// Address to bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bind: Option<IpAddr>,
    /// UDP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) udp_port: Option<u16>,
    /// TCP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tcp_port: Option<u16>,
    /// Known peers (`IP`, `IP:UDPPORT` or `[IPv6]:UDPPORT`), newest last. Absent: never
    /// asked; empty: the node waits to be joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peers: Option<Vec<String>>,
    /// When each of `peers` was last seen answering (seconds since
    /// 1970); a peer not seen for [`PEER_MAX_AGE`] is forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peers_seen: Option<BTreeMap<String, u64>>,
    /// `false`: do not look for peers on the local network (as
    /// `--no-lan-discovery`). Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lan_discovery: Option<bool>,
    /// `false`: never ask the router to forward ports (`serve`'s
    /// `--no-port-mapping`). Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port_mapping: Option<bool>,
    /// `false`: relay no circuits for other peers (as `serve`'s
    /// `--no-relay`). Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) relay: Option<bool>,
    /// `false` turns the BitTorrent DHT off (as `--no-dht`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dht: Option<bool>,
    /// `false`: stay out of the Gnutella network (as `--no-gnutella`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gnutella: Option<bool>,
    /// DHT nodes to bootstrap from (`HOST:PORT`) instead of the public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dht_bootstrap: Option<Vec<String>>,
    /// Upload speed limit of all uploads together, bytes per second (as
    /// `--upload-limit`). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upload_limit: Option<u64>,
    /// Download speed limit of all downloads together, bytes per second
    /// (as `--download-limit`). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) download_limit: Option<u64>,
    /// Uploads served at once (`rutella daemon`, changed live through its
    /// API). Absent: the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upload_slots: Option<usize>,
    /// Downloads running at once (as `--max-downloads`; changed live
    /// through the daemon's API). Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_downloads: Option<usize>,
    /// Where `rutella daemon` serves its control API (`IP:PORT`, as
    /// `--api-listen`). Absent: 127.0.0.1:6347.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api_listen: Option<std::net::SocketAddr>,
    /// `false`: the console does not announce peers joining and
    /// downloads from this node. Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) notices: Option<bool>,
    /// The network to find on the DHT (as `--network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<String>,
}

/// Where the settings file is: `$RUTELLA_CONFIG`, else the platform's
/// config folder.
pub(crate) fn path() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "rutella")
        .map(|d| d.config_dir().join("config.toml"))
        .ok_or_else(|| {
            Failure::new(
                exit::FAILURE,
                format!("cannot tell where your home folder is: set {ENV} to the path of a settings file"),
            )
        })
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub(crate) fn load(path: &Path) -> Result<ConfigFile, Failure> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(e) => {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!("cannot read the settings file {}: {e}", path.display()),
                ))
            }
        };
        toml::from_str(&text).map_err(|e| {
            let why = e.message().to_string();
            Failure::new(
                exit::USAGE,
                format!(
                    "the settings file {} is not valid ({}): fix it or delete it",
                    path.display(),
                    why.trim_end_matches('\n')
                ),
            )
        })
    }

    /// Writes the file (creating its folder), replacing it atomically.
    /// What the user wrote around the settings (comments, blank lines,
    /// the order of the keys) is kept: only the keys whose value changed
    /// are rewritten, new keys are added at the end, removed ones go.
    pub(crate) fn save(&self, path: &Path) -> Result<(), Failure> {
        let fail = |e: std::io::Error| {
            Failure::new(
                exit::FAILURE,
                format!("cannot write the settings file {}: {e}", path.display()),
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string_pretty(self)
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot write settings: {e}")))?;
        let fresh: DocumentMut = text
            .parse()
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot write settings: {e}")))?;
        let old = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.parse::<DocumentMut>().ok());
        let doc = match old {
            Some(mut doc) => {
                merge(&mut doc, &fresh);
                doc.to_string()
            }
            None => format!("# rutella settings\n{fresh}"),
        };
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, doc).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// The known peers that parse; the others are skipped with a warning.
    pub(crate) fn peer_addrs(&self) -> Vec<PeerAddr> {
        self.peers
            .iter()
            .flatten()
            .filter_map(|p| match p.parse::<PeerAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!("ignoring a peer in the settings file: {e}");
                    None
                }
            })
            .collect()
    }

    /// Remembers a peer that answered; returns whether anything changed.
    pub(crate) fn remember_peer(&mut self, peer: &str) -> bool {
        self.remember_peer_at(peer, now_secs())
    }

    /// Remembers a peer that answered at `now` (seconds since 1970).
    pub(crate) fn remember_peer_at(&mut self, peer: &str, now: u64) -> bool {
        let seen = self.peers_seen.get_or_insert_with(BTreeMap::new);
        // Seen again within the hour: not worth a write.
        let fresh = seen
            .get(peer)
            .is_some_and(|t| now.saturating_sub(*t) < 3600);
        seen.insert(peer.to_string(), now);
        let peers = self.peers.get_or_insert_with(Vec::new);
        if peers.last().map(String::as_str) == Some(peer) {
            return !fresh;
        }
        peers.retain(|p| p != peer);
        peers.push(peer.to_string());
        if peers.len() > MAX_PEERS {
            let extra = peers.len() - MAX_PEERS;
            peers.drain(..extra);
        }
        self.tidy_seen();
        true
    }

    /// Forgets the remembered peers not seen answering for
    /// [`PEER_MAX_AGE`]; a peer with no date (written by hand) is dated
    /// now and ages from there. Returns whether anything changed.
    pub(crate) fn forget_stale(&mut self, now: u64) -> bool {
        let Some(peers) = self.peers.as_mut() else {
            return false;
        };
        let seen = self.peers_seen.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        peers.retain(|p| match seen.get(p) {
            Some(t) if now.saturating_sub(*t) > PEER_MAX_AGE => {
                changed = true;
                false
            }
            Some(_) => true,
            None => {
                seen.insert(p.clone(), now);
                changed = true;
                true
            }
        });
        changed |= self.tidy_seen();
        changed
    }

    /// Keeps dates only for remembered peers.
    fn tidy_seen(&mut self) -> bool {
        let peers = self.peers.as_deref().unwrap_or_default();
        let Some(seen) = self.peers_seen.as_mut() else {
            return false;
        };
        let before = seen.len();
        seen.retain(|p, _| peers.contains(p));
        if seen.is_empty() {
            self.peers_seen = None;
        }
        before != self.peers_seen.as_ref().map_or(0, BTreeMap::len)
    }
}

/// Brings `doc` (the file as the user left it) to the values of `fresh`
/// (the settings as written from scratch), keeping the comments and the
/// layout of every key whose value did not change, and the comments
/// around those that did.
fn merge(doc: &mut DocumentMut, fresh: &DocumentMut) {
    let gone: Vec<String> = doc
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !fresh.contains_key(k))
        .collect();
    for k in gone {
        doc.remove(&k);
    }
    for (k, new) in fresh.iter() {
        match doc.get_mut(k) {
            Some(old) if same(old, new) => {}
            Some(Item::Value(old)) if new.is_value() => {
                let decor = old.decor().clone();
                if let Some(v) = new.as_value() {
                    *old = v.clone();
                    *old.decor_mut() = decor;
                }
            }
            Some(old) => *old = new.clone(),
            None => {
                doc.insert(k, new.clone());
            }
        }
    }
}

/// Whether two settings have the same value, whatever their layout.
fn same(a: &Item, b: &Item) -> bool {
    let parse = |i: &Item| {
        let mut i = i.clone();
        if let Some(v) = i.as_value_mut() {
            v.decor_mut().clear();
        }
        toml::from_str::<toml::Table>(&format!("x = {i}")).ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());
        let mut c = ConfigFile {
            shares: vec!["/srv/music".into()],
            downloads: Some("/srv/dl".into()),
            udp_port: Some(20001),
            lan_discovery: Some(false),
            ..ConfigFile::default()
        };
        assert!(c.remember_peer("192.168.1.100"));
        assert!(c.remember_peer("127.0.0.1:20002"));
        assert!(!c.remember_peer("127.0.0.1:20002"));
        assert!(c.remember_peer("192.168.1.100"));
        c.save(&path).unwrap();
        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.peers.as_deref().unwrap(),
            ["127.0.0.1:20002", "192.168.1.100"]
        );
        assert_eq!(back.peer_addrs().len(), 2);
    }

    #[test]
    fn bad_file_is_one_clear_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "port_mapping = false\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().port_mapping, Some(false));
        std::fs::write(&path, "relay = false\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().relay, Some(false));
        std::fs::write(&path, "udp_port = \"lots\"\n").unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("fix it or delete it"), "{}", e.message);
    }

    #[test]
    fn comments_and_layout_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = "# my settings\n\n# the music I share\nshares = [\"/srv/music\"] # keep\n\n# my friend\npeers = [\"192.168.1.100\"]\nudp_port = 20001 # fixed for the router\n";
        std::fs::write(&path, text).unwrap();
        let mut c = ConfigFile::load(&path).unwrap();
        // Nothing changed: the file is written back as it was.
        c.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(c.remember_peer("127.0.0.1:20002"));
        c.tcp_port = Some(10001);
        c.save(&path).unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        for kept in [
            "# my settings",
            "# the music I share\nshares = [\"/srv/music\"] # keep",
            "# my friend\npeers",
            "udp_port = 20001 # fixed for the router",
        ] {
            assert!(saved.contains(kept), "{kept:?} lost:\n{saved}");
        }
        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(back, c);
        // A key set back to nothing goes; its neighbours stay.
        c.udp_port = None;
        c.save(&path).unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        assert!(!saved.contains("udp_port"), "{saved}");
        assert!(saved.contains("# the music I share"), "{saved}");
    }

    #[test]
    fn peers_not_seen_for_long_are_forgotten() {
        let day = 24 * 3600;
        let t0 = 1_800_000_000;
        let mut c = ConfigFile {
            // One written by hand, without a date.
            peers: Some(vec!["192.168.1.5".into()]),
            ..ConfigFile::default()
        };
        assert!(c.remember_peer_at("10.0.0.1", t0));
        assert!(c.remember_peer_at("10.0.0.2", t0));
        // The hand-written one is dated now.
        assert!(c.forget_stale(t0 + day));
        assert_eq!(c.peers.as_ref().unwrap().len(), 3);
        assert!(c.remember_peer_at("10.0.0.2", t0 + 10 * day));
        // 10.0.0.1 was last seen 15 days ago: gone; the others stay.
        assert!(c.forget_stale(t0 + 15 * day));
        assert_eq!(
            c.peers.as_deref().unwrap(),
            ["192.168.1.5", "10.0.0.2"],
            "{c:?}"
        );
        assert!(!c.peers_seen.as_ref().unwrap().contains_key("10.0.0.1"));
        assert!(!c.forget_stale(t0 + 15 * day));
        // A round trip keeps the dates.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        c.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), c);
    }

    #[test]
    fn ipv6_peers_and_bind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "bind = \"::\"\npeers = [\"[::1]:20001\", \"2001:db8::5\", \"192.168.1.100\"]\n",
        )
        .unwrap();
        let c = ConfigFile::load(&path).unwrap();
        assert_eq!(c.bind, Some("::".parse().unwrap()));
        let peers: Vec<String> = c.peer_addrs().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            peers,
            vec!["[::1]:20001", "[2001:db8::5]:20000", "192.168.1.100"]
        );
    }

    #[test]
    fn peers_are_bounded() {
        let mut c = ConfigFile::default();
        for i in 0..100 {
            c.remember_peer(&format!("10.0.0.{i}"));
        }
        let peers = c.peers.unwrap();
        assert_eq!(peers.len(), MAX_PEERS);
        assert_eq!(peers.last().unwrap(), "10.0.0.99");
    }
}
