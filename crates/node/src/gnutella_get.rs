//! Downloading a Gnutella hit's file over HTTP, as a row of the downloads
//! table (pause, cancel and resume like the others).

use crate::downloads::{Control, DownloadId, DownloadState, Recipe};
use crate::gnutella_types::{GnutellaFile, GnutellaSource};
use crate::transfers::DownloadHandle;
use crate::NodeError;
use rutella_gnutella::download::{
    download_via, Direct, Download, DownloadConfig, DownloadError, DownloadProgress,
};
use rutella_gnutella::http::Target;
use rutella_transfer::{DownloadReport, Progress};
use std::path::PathBuf;
use tokio::sync::watch;

impl crate::Client {
    /// Downloads one file of a Gnutella hit over HTTP/1.1 into the
    /// downloads folder and waits for it: see
    /// [`crate::Client::download_gnutella`]. Returns the file's path.
    pub async fn get_gnutella(
        &self,
        source: &GnutellaSource,
        name: &str,
        file: GnutellaFile,
        size: Option<u64>,
    ) -> Result<PathBuf, NodeError> {
        let h = self.download_gnutella(source, name, file, size).await?;
        h.wait().await.map(|r| r.path)
    }

    /// Starts downloading one file of a Gnutella hit over HTTP/1.1 into
    /// the downloads folder, as a row of the downloads table: by
    /// `urn:sha1` (N2R) when the hit gave one, else by `/get/INDEX/NAME`;
    /// a `NAME.part` left by an earlier try is resumed with `Range`; the
    /// SHA-1 is checked at the end. A firewalled servent (or one that
    /// cannot be connected to) is asked for a Push through the ultrapeer
    /// the hit came from, when this node accepts connections, and the
    /// file comes over the connection it opens back (`GIV`).
    pub async fn download_gnutella(
        &self,
        source: &GnutellaSource,
        name: &str,
        file: GnutellaFile,
        size: Option<u64>,
    ) -> Result<DownloadHandle, NodeError> {
        let dir = self.downloads_dir();
        let base = rutella_transfer::sanitize_basename(name)
            .map_err(|e| NodeError::Other(format!("cannot save a file of that name: {e}")))?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| NodeError::Downloads {
                path: dir.clone(),
                source,
            })?;
        let dest = dir.join(&base);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Err(NodeError::Other(format!(
                "{} already exists",
                dest.display()
            )));
        }
        if self.gnutella.is_none() {
            return Err(NodeError::Other("Gnutella is off".into()));
        }
        let recipe = Recipe::Gnutella {
            source: source.clone(),
            name: name.to_string(),
            file,
            size,
        };
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let (id, control) =
            self.downloads
                .add(name.to_string(), vec![source.servent], progress_rx, recipe);
        Ok(self.gnutella_again(
            id,
            progress_tx,
            control,
            source.clone(),
            name.to_string(),
            file,
            size,
        ))
    }

    /// Runs a Gnutella download in row `id` (new, or resumed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gnutella_again(
        &self,
        id: DownloadId,
        progress: watch::Sender<Progress>,
        control: watch::Receiver<Control>,
        source: GnutellaSource,
        name: String,
        file: GnutellaFile,
        size: Option<u64>,
    ) -> DownloadHandle {
        let client = self.clone();
        let node_stop = self.tasks.stopping();
        let task = async move {
            let mut asked = control.clone();
            let ran = tokio::select! {
                r = client.gnutella_fetch(id, &source, &name, file, size, &progress) => Some(r),
                _ = asked.wait_for(|c| *c != Control::Run) => None,
                () = node_stop => None,
            };
            let downloads = &client.downloads;
            let asked_now = *control.borrow();
            let sent = match (ran, asked_now) {
                (Some(Ok(report)), _) => {
                    tracing::info!(name = ?name, path = ?report.path, "Gnutella download complete");
                    downloads.set_state(id, DownloadState::Done(report.path.clone()));
                    let _ = client.events.send(crate::command::NodeEvent::DownloadDone {
                        id,
                        name,
                        path: report.path.clone(),
                    });
                    Ok(report)
                }
                (_, Control::Pause) => {
                    downloads.set_state(id, DownloadState::Paused);
                    Err(NodeError::Other("paused".into()))
                }
                (_, Control::Cancel) => {
                    let recipe = downloads.get(id).map(|(_, r)| r);
                    if let Some(r) = recipe {
                        client.delete_partial(r).await;
                    }
                    downloads.set_state(id, DownloadState::Failed("cancelled".into()));
                    let _ = downloads.remove(id);
                    Err(NodeError::Other("cancelled".into()))
                }
                (Some(Err(reason)), Control::Run) => {
                    tracing::warn!(name = ?name, reason = ?reason, "Gnutella download failed");
                    downloads.set_state(id, DownloadState::Failed(reason.clone()));
                    let _ = client
                        .events
                        .send(crate::command::NodeEvent::DownloadFailed {
                            id,
                            name,
                            reason: reason.clone(),
                        });
                    Err(NodeError::Other(format!(
                        "Gnutella download failed: {reason}"
                    )))
                }
                (None, Control::Run) => {
                    downloads.set_state(
                        id,
                        DownloadState::Failed(
                            "the node stopped; the partial data is kept for a resume".into(),
                        ),
                    );
                    Err(NodeError::Stopped)
                }
            };
            sent
        };
        // Gnutella downloads wait in the same queue as the others.
        self.queue_download(id, task)
    }

    /// The download itself: direct, else by Push.
    async fn gnutella_fetch(
        &self,
        id: DownloadId,
        source: &GnutellaSource,
        name: &str,
        file: GnutellaFile,
        size: Option<u64>,
        progress: &watch::Sender<Progress>,
    ) -> Result<DownloadReport, String> {
        use rutella_gnutella::push::should_push;
        let handle = self.gnutella.clone().ok_or("Gnutella is off")?;
        let dir = self.downloads_dir();
        let base = rutella_transfer::sanitize_basename(name).map_err(|e| e.to_string())?;
        let dest = dir.join(&base);
        let part = dir.join(format!("{base}.part"));
        let target = match file.sha1 {
            Some(h) => Target::Sha1(h),
            None => Target::Index {
                index: file.index,
                name: name.to_string(),
            },
        };
        let cfg = DownloadConfig {
            connect_timeout: self.config.connect_timeout,
            read_timeout: self.config.idle_timeout,
            ..DownloadConfig::default()
        };
        let d = Download {
            addr: source.servent,
            target,
            sha1: file.sha1,
            size,
            tth: file.tth,
        };
        let report = |p: DownloadProgress| {
            progress.send_replace(Progress {
                received: p.fetched,
                done: p.have,
                total: p.total,
            });
        };
        let done = |got: rutella_gnutella::download::Downloaded| DownloadReport {
            path: dest.clone(),
            size: got.size,
            resumed_from: got.resumed_from,
            bytes_received: got.fetched,
            sources: Vec::new(),
        };
        let reachable = handle.reachable();
        // A file of known SHA-1 and size from a servent that takes
        // connections: from every servent known to have it at once.
        if let (false, Some(sha1), Some(size)) = (source.push, file.sha1, size) {
            let mut sources = vec![source.servent];
            for s in handle.sources_of(sha1).await {
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
            self.downloads.set_sources(id, sources.clone());
            for s in &sources {
                self.downloads.set_path(id, *s, "direct".to_string());
            }
            let multi = handle.settings().multi.clone();
            let r = rutella_gnutella::multi::multi_download(
                sources,
                d.target.clone(),
                sha1,
                size,
                file.tth,
                &part,
                &dest,
                &cfg,
                &multi,
                &report,
            )
            .await;
            match r {
                Ok(got) => {
                    let all: Vec<std::net::SocketAddr> =
                        got.sources.iter().map(|s| s.addr).collect();
                    self.downloads.set_sources(id, all);
                    for s in got.sources.iter().filter(|s| s.dropped.is_some()) {
                        tracing::info!(source = %s.addr, reason = ?s.dropped, "Gnutella source dropped");
                    }
                    // Sources whose bytes were kept in a file whose SHA-1
                    // checked out: named in X-Alt by our uploads.
                    handle.served_by(
                        sha1,
                        got.sources
                            .iter()
                            .filter(|s| s.dropped.is_none() && s.bytes > 0)
                            .map(|s| s.addr),
                    );
                    return Ok(DownloadReport {
                        path: dest.clone(),
                        size: got.size,
                        resumed_from: 0,
                        bytes_received: got.fetched,
                        sources: Vec::new(),
                    });
                }
                Err(DownloadError::Unreachable(why)) if should_push(false, true, reachable) => {
                    tracing::info!(servent = %source.servent, "{why}; asking for a push");
                    self.downloads.set_sources(id, vec![source.servent]);
                }
                Err(e) => return Err(e.to_string()),
            }
        } else if !source.push {
            let mut direct = Direct {
                addr: source.servent,
                timeout: cfg.connect_timeout,
            };
            self.downloads
                .set_path(id, source.servent, "direct".to_string());
            match download_via(&d, &part, &dest, &cfg, &mut direct, &report).await {
                Ok(got) => {
                    handle.served_by(got.sha1, [source.servent]);
                    return Ok(done(got));
                }
                Err(DownloadError::Unreachable(why)) if should_push(false, true, reachable) => {
                    tracing::info!(servent = %source.servent, "{why}; asking for a push");
                }
                Err(e) => return Err(e.to_string()),
            }
        } else if !should_push(true, false, reachable) {
            return Err(format!(
                "the Gnutella servent {} is firewalled (it asks for a push) and this node does not accept connections, so it cannot take the servent's GIV",
                source.servent
            ));
        }
        let wait = handle.settings().push.giv_timeout;
        let mut pc = crate::gnutella::push::PushConnector {
            handle,
            via: source.via,
            servent: source.servent,
            guid: source.servent_guid,
            index: file.index,
            wait,
        };
        let how = match source.via {
            Some(v) => format!("push via {v}"),
            None => "push".to_string(),
        };
        self.downloads.set_path(id, source.servent, how);
        download_via(&d, &part, &dest, &cfg, &mut pc, &report)
            .await
            .map(done)
            .map_err(|e| e.to_string())
    }
}
