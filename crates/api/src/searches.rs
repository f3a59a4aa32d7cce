//! Searches started through the API: each runs in a task that groups the
//! node's answers into results (one per distinct file) and announces
//! every new or grown result to the streams that follow it.

use rutella_node::{Client, SearchHit};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Updates waiting for a slow stream; beyond, it is told it lagged.
const UPDATES: usize = 256;

/// One result: a distinct file and the peers that offer it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResultJson {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) size: Option<u64>,
    pub(crate) hash: Option<String>,
    /// TCP addresses of the peers that offer it.
    pub(crate) peers: Vec<String>,
    pub(crate) network: &'static str,
}

/// What a search stream is sent.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Result(ResultJson),
    Done { peers_answered: usize },
}

/// A file's key for grouping: its hash when known, else its name and size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Hash([u8; 32]),
    Named(String, Option<u64>),
}

#[derive(Default)]
pub(crate) struct Found {
    pub(crate) results: Vec<ResultJson>,
    /// Hash and peer addresses per result, for downloads.
    pub(crate) sources: Vec<(Option<[u8; 32]>, Vec<SocketAddr>)>,
    keys: BTreeMap<Key, usize>,
    answered: HashSet<SocketAddr>,
    pub(crate) running: bool,
}

pub(crate) struct Search {
    pub(crate) id: u64,
    pub(crate) query: String,
    pub(crate) found: Mutex<Found>,
    pub(crate) updates: broadcast::Sender<Update>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Search {
    /// Starts searching for `query`; the task ends with the node's search.
    pub(crate) async fn start(
        client: &Client,
        id: u64,
        query: String,
        max_results: usize,
    ) -> Result<Arc<Search>, rutella_node::NodeError> {
        let mut stream = client.search(&query).await?;
        let (updates, _) = broadcast::channel(UPDATES);
        let search = Arc::new(Search {
            id,
            query,
            found: Mutex::new(Found {
                running: true,
                ..Found::default()
            }),
            updates,
            task: Mutex::new(None),
        });
        let s = Arc::clone(&search);
        let task = tokio::spawn(async move {
            while let Some(hit) = stream.next().await {
                s.add(hit, max_results);
            }
            s.finish();
        });
        *search.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Ok(search)
    }

    fn add(&self, hit: SearchHit, max_results: usize) {
        let mut f = self.found.lock().unwrap_or_else(|e| e.into_inner());
        f.answered.insert(hit.peer.udp);
        let tcp = hit.peer.tcp();
        let network = if hit.peer.rutella {
            "rutella"
        } else {
            "classic"
        };
        for file in hit.files {
            let key = match file.hash {
                Some(h) => Key::Hash(h),
                None => Key::Named(file.name.clone(), file.size),
            };
            let index = match f.keys.get(&key) {
                Some(&i) => i,
                None => {
                    if f.results.len() >= max_results {
                        continue;
                    }
                    let i = f.results.len();
                    f.keys.insert(key, i);
                    f.results.push(ResultJson {
                        index: i,
                        name: file.name.clone(),
                        size: file.size,
                        hash: file.hash.map(|h| format!("blake3:{}", hex(&h))),
                        peers: Vec::new(),
                        network,
                    });
                    f.sources.push((file.hash, Vec::new()));
                    i
                }
            };
            let Some((_, sources)) = f.sources.get_mut(index) else {
                continue;
            };
            if sources.contains(&tcp) {
                continue;
            }
            sources.push(tcp);
            let Some(r) = f.results.get_mut(index) else {
                continue;
            };
            r.peers.push(tcp.to_string());
            // Sent under the lock: a stream that subscribed under it saw
            // the list before this change.
            let _ = self.updates.send(Update::Result(r.clone()));
        }
    }

    fn finish(&self) {
        let mut f = self.found.lock().unwrap_or_else(|e| e.into_inner());
        f.running = false;
        let _ = self.updates.send(Update::Done {
            peers_answered: f.answered.len(),
        });
    }

    /// Stops the search (its node search is cancelled with its stream).
    pub(crate) fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        let mut f = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if f.running {
            f.running = false;
            let _ = self.updates.send(Update::Done {
                peers_answered: f.answered.len(),
            });
        }
    }

    /// How many peers answered.
    pub(crate) fn answered(f: &Found) -> usize {
        f.answered.len()
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `blake3:HEX` or plain `HEX` (64 digits).
pub(crate) fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("blake3:").unwrap_or(s);
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
