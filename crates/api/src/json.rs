//! The JSON shapes of the API (docs/API.md), built from the node's types.

use rutella_node::{DownloadInfo, DownloadState, Limits, Peer, Reachability};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `GET /settings`, and what `PATCH /settings` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Bytes per second of all uploads together; `None`: no limit.
    pub upload_limit_bps: Option<u64>,
    /// Bytes per second of all downloads together; `None`: no limit.
    pub download_limit_bps: Option<u64>,
    /// Uploads served at once.
    pub upload_slots: usize,
}

impl From<Limits> for Settings {
    fn from(l: Limits) -> Self {
        Settings {
            upload_limit_bps: l.upload_limit,
            download_limit_bps: l.download_limit,
            upload_slots: l.upload_slots,
        }
    }
}

impl From<Settings> for Limits {
    fn from(s: Settings) -> Self {
        Limits {
            upload_limit: s.upload_limit_bps,
            download_limit: s.download_limit_bps,
            upload_slots: s.upload_slots,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PeerJson {
    pub(crate) addr: String,
    pub(crate) kind: &'static str,
}

impl From<&Peer> for PeerJson {
    fn from(p: &Peer) -> Self {
        PeerJson {
            addr: p.udp.to_string(),
            kind: if p.rutella { "rutella" } else { "classic" },
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ReachJson {
    pub(crate) state: &'static str,
    pub(crate) text: String,
    pub(crate) external: Option<String>,
    pub(crate) mapped_by: Option<String>,
}

impl From<&Reachability> for ReachJson {
    fn from(r: &Reachability) -> Self {
        match r {
            Reachability::Unknown => ReachJson {
                state: "unknown",
                text: "Reachability not known yet".into(),
                external: None,
                mapped_by: None,
            },
            Reachability::Reachable { addr, mapped_by } => ReachJson {
                state: "reachable",
                text: match mapped_by {
                    Some(by) => format!("Reachable at {addr} (mapped by {by})"),
                    None => format!("Reachable at {addr}"),
                },
                external: Some(addr.to_string()),
                mapped_by: mapped_by.map(|b| b.to_string()),
            },
            Reachability::NotReachable { tcp, udp } => ReachJson {
                state: "not_reachable",
                text: match (tcp, udp) {
                    (true, false) => "Not reachable from outside by UDP (TCP works)".into(),
                    (false, true) => "Not reachable from outside by TCP (UDP works)".into(),
                    _ => "Not reachable from outside".into(),
                },
                external: None,
                mapped_by: None,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SourceJson {
    pub(crate) addr: String,
    pub(crate) path: Option<String>,
}

/// A row of the downloads list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DownloadJson {
    pub(crate) id: u64,
    pub(crate) name: String,
    /// `"classic"`, `"rutella"` or `"gnutella"`.
    pub(crate) network: &'static str,
    pub(crate) state: &'static str,
    pub(crate) size: Option<u64>,
    pub(crate) done: u64,
    pub(crate) speed_bps: u64,
    pub(crate) eta_secs: Option<u64>,
    pub(crate) sources: Vec<SourceJson>,
    pub(crate) file: Option<String>,
    pub(crate) error: Option<String>,
}

impl From<&DownloadInfo> for DownloadJson {
    fn from(d: &DownloadInfo) -> Self {
        let (state, file, error) = match &d.state {
            DownloadState::Running => ("running", None, None),
            DownloadState::Paused => ("paused", None, None),
            DownloadState::Done(p) => ("done", Some(p.display().to_string()), None),
            DownloadState::Failed(why) => ("failed", None, Some(why.clone())),
        };
        let running = state == "running";
        let speed = if running { d.speed() } else { 0.0 };
        let speed_bps = speed.max(0.0) as u64;
        let eta_secs = match (running, d.total) {
            (true, Some(total)) if speed >= 1.0 => {
                Some((total.saturating_sub(d.done) as f64 / speed).ceil() as u64)
            }
            _ => None,
        };
        let path_of = |s: &SocketAddr| d.paths.iter().find(|(a, _)| a == s).map(|(_, p)| p.clone());
        DownloadJson {
            id: d.id,
            name: d.name.clone(),
            network: d.network,
            state,
            size: d.total,
            done: d.done,
            speed_bps,
            eta_secs,
            sources: d
                .sources
                .iter()
                .map(|s| SourceJson {
                    addr: s.to_string(),
                    path: path_of(s),
                })
                .collect(),
            file,
            error,
        }
    }
}

/// `{"error": "…"}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorJson {
    pub(crate) error: String,
}
