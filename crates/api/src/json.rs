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
    /// Downloads running at once (further ones wait, queued); `None`: no
    /// limit.
    pub max_downloads: Option<usize>,
}

impl Settings {
    /// The settings in force in a node.
    pub fn of(client: &rutella_node::Client) -> Settings {
        let l = client.limits();
        Settings {
            upload_limit_bps: l.upload_limit,
            download_limit_bps: l.download_limit,
            upload_slots: l.upload_slots,
            max_downloads: client.max_active_downloads(),
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
    /// Once done: file bytes received from it in the last run.
    pub(crate) received: Option<u64>,
    /// Once done: of those, bytes verified and kept.
    pub(crate) verified: Option<u64>,
    /// Once done: how it ended (`served`, `unused`, …).
    pub(crate) outcome: Option<String>,
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
    /// Why it failed, stable for scripts (`not_found`, `no_source`, …).
    pub(crate) error_kind: Option<&'static str>,
    /// File bytes received in this run (the whole run's, once done).
    pub(crate) received: u64,
    /// Once done: the bytes that were on disk when its last run started.
    pub(crate) resumed_from: Option<u64>,
}

impl From<&DownloadInfo> for DownloadJson {
    fn from(d: &DownloadInfo) -> Self {
        let (state, file, error) = match &d.state {
            DownloadState::Queued => ("queued", None, None),
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
        let report = d.report.as_ref();
        let of_source =
            |s: &SocketAddr| report.and_then(|r| r.sources.iter().find(|x| x.peer == *s));
        // Sources the run found besides those it was given come after.
        let mut addrs: Vec<SocketAddr> = d.sources.clone();
        for s in report.map(|r| r.sources.as_slice()).unwrap_or_default() {
            if !addrs.contains(&s.peer) {
                addrs.push(s.peer);
            }
        }
        DownloadJson {
            id: d.id,
            name: d.name.clone(),
            network: d.network,
            state,
            size: d.total,
            done: d.done,
            speed_bps,
            eta_secs,
            sources: addrs
                .iter()
                .map(|s| SourceJson {
                    addr: s.to_string(),
                    path: path_of(s),
                    received: of_source(s).map(|x| x.bytes_received),
                    verified: of_source(s).map(|x| x.bytes_verified),
                    outcome: of_source(s).map(|x| x.outcome.to_string()),
                })
                .collect(),
            file,
            error,
            error_kind: d.failure.map(|k| k.as_str()),
            received: report.map_or(d.received, |r| r.bytes_received),
            resumed_from: report.map(|r| r.resumed_from),
        }
    }
}

/// `{"error": "…", "kind": "…"}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorJson {
    pub(crate) error: String,
    pub(crate) kind: &'static str,
}
