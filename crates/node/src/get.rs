//! How the node gets a file the user asked for: the one strategy behind
//! every user interface's `get`. Waiting on the node's events, never
//! polling: for discovery to settle, for a peer to tell its TCP port, for
//! sources of a hash to answer (each joins the running download).

use crate::client::Client;
use crate::command::NodeEvent;
use crate::config::PeerAddr;
use crate::transfers::DownloadHandle;
use crate::NodeError;
use rutella_proto::{HitFile, Peer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// The least quiet time that ends discovery.
const QUIET: Duration = Duration::from_millis(20);

/// The longest wait for discovery before a search by hash asks the
/// whole network.
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// Sources found but not yet taken by the download: the search that
/// found them waits while this many are queued.
const FOUND_QUEUE: usize = 64;

/// What to get.
#[derive(Debug, Clone)]
pub enum Want {
    /// A file by name from one peer (the classic exchange).
    ByName {
        /// The peer; its TCP port is learnt from its pong when not given.
        from: PeerAddr,
        /// The file's name as the peer offers it.
        name: String,
        /// The size its search answer gave, when it did: a reply
        /// announcing more is refused.
        listed_size: Option<u64>,
    },
    /// A file by content, from every peer that has it.
    ByHash {
        /// Its BLAKE3 hash.
        hash: [u8; 32],
        /// The file as a search found it, with the TCP addresses of the
        /// peers that offer it; with none, the network is searched first.
        found: Option<(HitFile, Vec<SocketAddr>)>,
    },
}

/// How [`Client::get`] went.
#[derive(Debug)]
pub enum Got {
    /// The download runs in the background.
    Started {
        /// The download.
        handle: DownloadHandle,
        /// The name it is saved under (before any ` (N)` for a name taken).
        name: String,
        /// The peers it started with (TCP addresses).
        sources: Vec<SocketAddr>,
    },
    /// The peer named did not tell its TCP port within the time given.
    PeerSilent,
    /// No peer found within the time given offers the hash.
    NotOffered,
}

impl Client {
    /// Gets a file, in the background once it can start.
    ///
    /// By name: from the peer given, once its TCP port is known (it joins
    /// if it is not a peer yet; waits at most `wait`).
    ///
    /// By hash: starts at once with the sources given, or else with the
    /// first peer that answers a search for the hash (the peers known at
    /// once are asked at once; the whole network is asked again once
    /// discovery settles, at most half of `wait`). Every other peer that
    /// answers with the file joins the running download as a source.
    pub async fn get(&self, want: Want, wait: Duration) -> Result<Got, NodeError> {
        match want {
            Want::ByName {
                from,
                name,
                listed_size,
            } => {
                let tcp = match from.tcp_port {
                    Some(port) => SocketAddr::new(from.udp.ip(), port),
                    None => match self.learn_tcp(from, wait).await? {
                        Some(tcp) => tcp,
                        None => return Ok(Got::PeerSilent),
                    },
                };
                Ok(Got::Started {
                    handle: self.download_listed(tcp, &name, listed_size),
                    name,
                    sources: vec![tcp],
                })
            }
            Want::ByHash { hash, found } => self.get_by_hash(hash, found, wait).await,
        }
    }

    async fn get_by_hash(
        &self,
        hash: [u8; 32],
        found: Option<(HitFile, Vec<SocketAddr>)>,
        wait: Duration,
    ) -> Result<Got, NodeError> {
        let (found_tx, mut found_rx) = mpsc::channel(FOUND_QUEUE);
        let mut finder = Box::pin(find_sources(
            self.clone(),
            hash,
            (wait / 2).min(SETTLE_MAX),
            found_tx,
        ));
        let mut finder_done = false;
        let mut stopping = Box::pin(self.tasks.stopping());
        // A file the caller found keeps the name it was shown under (the
        // download saves it under its last component either way).
        let (name, size, sources) = match found {
            Some((file, sources)) if !sources.is_empty() => (file.name, file.size, sources),
            _ => loop {
                tokio::select! {
                    next = found_rx.recv() => match next {
                        Some((file, peer)) => {
                            let name = file.name.rsplit('/').next().unwrap_or(&file.name);
                            break (name.to_string(), file.size, vec![peer]);
                        }
                        // The searches ended (and dropped the sender).
                        None => return Ok(Got::NotOffered),
                    },
                    r = &mut finder, if !finder_done => {
                        finder_done = true;
                        r?;
                    }
                    () = &mut stopping => return Err(NodeError::Stopped),
                }
            },
        };
        tracing::info!(name = ?name, sources = ?sources, "downloading by hash");
        let (more_tx, more_rx) = mpsc::channel(FOUND_QUEUE);
        let handle = self.download_hash_growing(hash, &name, size, sources.clone(), more_rx);
        // Later answers join the download, in a task the node owns.
        let feed = async move {
            let search = async move {
                if !finder_done {
                    if let Err(e) = finder.await {
                        tracing::debug!(error = %e, "the search for more sources ended");
                    }
                }
            };
            let pass = async move {
                while let Some((_, peer)) = found_rx.recv().await {
                    // A download that ended takes no more; the rest is
                    // still read so that the search never waits on it.
                    let _ = more_tx.send(peer).await;
                }
            };
            tokio::select! {
                _ = async { tokio::join!(search, pass) } => {}
                () = stopping => {}
            }
        };
        self.tasks.spawn(feed);
        Ok(Got::Started {
            handle,
            name,
            sources,
        })
    }

    /// Waits until discovery settles: some peer has answered, and the list
    /// of peers with a known TCP port has then not changed for twice the
    /// time that first answer took (at least 20 ms), or `max` passed.
    /// Peers that answer later are still asked by a search that runs: it
    /// reaches every peer that joins meanwhile.
    pub async fn settle(&self, max: Duration) -> Result<(), NodeError> {
        let mut events = self.subscribe();
        let start = Instant::now();
        let deadline = start + max;
        let mut first_answer: Option<Duration> = None;
        let mut last: Option<Vec<SocketAddr>> = None;
        let mut stable_since = start;
        loop {
            if first_answer.is_none() && self.answered_peers().await? > 0 {
                first_answer = Some(start.elapsed());
            }
            let mut now: Vec<SocketAddr> = self
                .peers()
                .await?
                .iter()
                .filter(|p| p.tcp_port != 0)
                .map(|p| p.udp)
                .collect();
            now.sort();
            if last.as_ref() != Some(&now) {
                last = Some(now);
                stable_since = Instant::now();
            }
            let wake = match first_answer {
                Some(rtt) => deadline.min(stable_since + QUIET.max(rtt * 2)),
                None => deadline,
            };
            if Instant::now() >= wake {
                return Ok(());
            }
            tokio::select! {
                ev = events.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = ev {
                        return Err(NodeError::Stopped);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Waits (at most `max`) until the peer at this UDP address is in the
    /// list and `ok` says it is the one wanted.
    pub async fn wait_peer(
        &self,
        udp: SocketAddr,
        max: Duration,
        ok: impl Fn(&Peer) -> bool,
    ) -> Result<Option<Peer>, NodeError> {
        let mut events = self.subscribe();
        let deadline = Instant::now() + max;
        let wanted = |p: &Peer| p.udp == udp && ok(p);
        loop {
            // Checked after subscribing, and again after every event: a
            // peer that joins in between is not missed.
            if let Some(p) = self.peers().await?.into_iter().find(|p| wanted(p)) {
                return Ok(Some(p));
            }
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(NodeEvent::PeerAdded(p)) if wanted(&p) => return Ok(Some(p)),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(NodeError::Stopped),
                },
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    /// Waits (at most `max`) until at least one peer is known; returns
    /// how many are.
    pub async fn wait_any_peer(&self, max: Duration) -> Result<usize, NodeError> {
        let mut events = self.subscribe();
        let deadline = Instant::now() + max;
        loop {
            let n = self.peers().await?.len();
            if n > 0 {
                return Ok(n);
            }
            tokio::select! {
                ev = events.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = ev {
                        return Err(NodeError::Stopped);
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Ok(0),
            }
        }
    }

    /// A rutella peer named by its UDP address tells its TCP port in its
    /// pong: joins it if it is not a peer yet, and waits for that.
    async fn learn_tcp(
        &self,
        from: PeerAddr,
        wait: Duration,
    ) -> Result<Option<SocketAddr>, NodeError> {
        let has_tcp = |p: &Peer| p.tcp_port != 0;
        if !self.peers().await?.iter().any(|p| p.udp == from.udp) {
            self.connect(from).await?;
        }
        Ok(self
            .wait_peer(from.udp, wait, has_tcp)
            .await?
            .map(|p| p.tcp()))
    }
}

/// Sends every peer that offers the file with this hash, with the file as
/// it names it, as their answers arrive: the peers known now are asked at
/// once, and the whole network once discovery settled (at most `settle`).
/// Ends when both searches ended, or when nobody reads any more.
async fn find_sources(
    client: Client,
    hash: [u8; 32],
    settle: Duration,
    tx: mpsc::Sender<(HitFile, SocketAddr)>,
) -> Result<(), NodeError> {
    let ask = |client: Client, tx: mpsc::Sender<(HitFile, SocketAddr)>| async move {
        let mut stream = client.search(&rutella_proto::hash_query(&hash)).await?;
        while let Some(hit) = stream.next().await {
            for f in hit.files {
                if f.hash == Some(hash) && tx.send((f, hit.peer.tcp())).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<(), NodeError>(())
    };
    let early = ask(client.clone(), tx.clone());
    let full = async {
        client.settle(settle).await?;
        ask(client.clone(), tx).await
    };
    let (a, b) = tokio::join!(early, full);
    a.and(b)
}
