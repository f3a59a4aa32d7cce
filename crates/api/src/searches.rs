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
    /// What each peer of `peers` (same order) said of itself and the file.
    pub(crate) sources: Vec<SourceFacts>,
}

/// What one peer's answer said beyond the file: how to reach it by push,
/// and for a Gnutella servent the file's index, SHA-1 and its vendor.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SourceFacts {
    pub(crate) tcp: String,
    pub(crate) udp: String,
    pub(crate) network: &'static str,
    pub(crate) push_id: Option<String>,
    pub(crate) proxies: Vec<String>,
    pub(crate) firewalled: bool,
    pub(crate) sha1: Option<String>,
    pub(crate) index: Option<u32>,
    pub(crate) vendor: Option<String>,
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
        let hit_network = hit.network();
        for (i, file) in hit.files.into_iter().enumerate() {
            let gnutella = hit.gnutella.as_ref();
            let g_file = gnutella.and_then(|g| g.files.get(i));
            let facts = SourceFacts {
                tcp: tcp.to_string(),
                udp: hit.peer.udp.to_string(),
                network: hit_network,
                push_id: hit.push.push_id.map(rutella_proto::message::hex16),
                proxies: hit.push.proxies.iter().map(|p| p.to_string()).collect(),
                firewalled: hit.push.firewalled,
                sha1: g_file
                    .and_then(|f| f.sha1)
                    .map(|h| format!("urn:sha1:{}", base32(&h))),
                index: g_file.map(|f| f.index),
                vendor: gnutella.map(|g| g.vendor.clone()),
            };
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
                        sources: Vec::new(),
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
            r.sources.push(facts);
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

/// RFC 4648 base32 without padding, as `urn:sha1:` writes it.
fn base32(bytes: &[u8]) -> String {
    const ABC: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ABC[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ABC[((acc << (5 - bits)) & 31) as usize]));
    }
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn base32_is_that_of_urn_sha1() {
        // SHA-1 of nothing, as Gnutella servents write it.
        let h: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(
                    &"da39a3ee5e6b4b0d3255bfef95601890afd80709"[2 * i..2 * i + 2],
                    16,
                )
                .unwrap_or(0)
            })
            .collect();
        assert_eq!(super::base32(&h), "3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
    }
}
