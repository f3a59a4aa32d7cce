//! The settings file: TOML at the platform's config location (or at
//! `$RUTELLA_CONFIG`), holding shares, ports, the downloads folder and the
//! peers that answered, so a restarted node rejoins by itself.

use crate::{exit, Failure};
use rutella_node::PeerAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Environment variable naming another settings file.
pub(crate) const ENV: &str = "RUTELLA_CONFIG";

/// The most peers remembered; the oldest are forgotten first.
const MAX_PEERS: usize = 64;

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
    /// `false`: do not look for peers on the local network (as
    /// `--no-lan-discovery`). Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lan_discovery: Option<bool>,
    /// `false`: never ask the router to forward ports (`serve`'s
    /// `--no-port-mapping`). Absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port_mapping: Option<bool>,
    /// `false` turns the BitTorrent DHT off (as `--no-dht`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dht: Option<bool>,
    /// DHT nodes to bootstrap from (`HOST:PORT`) instead of the public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dht_bootstrap: Option<Vec<String>>,
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
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, format!("# rutella settings\n{text}")).map_err(fail)?;
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
        let peers = self.peers.get_or_insert_with(Vec::new);
        if peers.last().map(String::as_str) == Some(peer) {
            return false;
        }
        peers.retain(|p| p != peer);
        peers.push(peer.to_string());
        if peers.len() > MAX_PEERS {
            let extra = peers.len() - MAX_PEERS;
            peers.drain(..extra);
        }
        true
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
        std::fs::write(&path, "udp_port = \"lots\"\n").unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("fix it or delete it"), "{}", e.message);
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
