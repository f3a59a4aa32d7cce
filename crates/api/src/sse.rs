//! The Server-Sent Event streams: a search's results, and the node's
//! events.

use crate::json::DownloadJson;
use crate::searches::{Search, Update};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_lite::Stream;
use rutella_node::{Client, NodeEvent};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "null".into()))
}

/// The response of a stream.
pub(crate) fn respond(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}

/// A search's results so far, then each new or grown one, then `done`.
pub(crate) fn search_events(
    search: Arc<Search>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let (backlog, rx, over) = {
        let f = search.found.lock().unwrap_or_else(|e| e.into_inner());
        let rx = search.updates.subscribe();
        let mut backlog: VecDeque<Event> = f.results.iter().map(|r| event("result", r)).collect();
        let over = !f.running;
        if over {
            backlog.push_back(event(
                "done",
                &serde_json::json!({"peers_answered": Search::answered(&f)}),
            ));
        }
        (backlog, rx, over)
    };
    struct St {
        backlog: VecDeque<Event>,
        rx: broadcast::Receiver<Update>,
        over: bool,
    }
    futures_lite::stream::unfold(St { backlog, rx, over }, |mut st| async move {
        if let Some(e) = st.backlog.pop_front() {
            return Some((Ok(e), st));
        }
        if st.over {
            return None;
        }
        match st.rx.recv().await {
            Ok(Update::Result(r)) => Some((Ok(event("result", &r)), st)),
            Ok(Update::Done { peers_answered }) => {
                st.over = true;
                let e = event(
                    "done",
                    &serde_json::json!({"peers_answered": peers_answered}),
                );
                Some((Ok(e), st))
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Some((Ok(event("lagged", &serde_json::json!({"missed": n}))), st))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

/// The node's events, and the progress of running downloads (at most
/// once per `interval` each, when it changed).
pub(crate) fn node_events(
    client: Client,
    interval: Duration,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    struct St {
        client: Client,
        rx: broadcast::Receiver<NodeEvent>,
        tick: tokio::time::Interval,
        last: HashMap<u64, (&'static str, u64)>,
        backlog: VecDeque<Event>,
    }
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let st = St {
        rx: client.subscribe(),
        client,
        tick,
        last: HashMap::new(),
        backlog: VecDeque::new(),
    };
    futures_lite::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.backlog.pop_front() {
                return Some((Ok(e), st));
            }
            tokio::select! {
                got = st.rx.recv() => match got {
                    Ok(ev) => {
                        if let Some(e) = node_event(&st.client, ev) {
                            return Some((Ok(e), st));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some((Ok(event("lagged", &serde_json::json!({"missed": n}))), st));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = st.tick.tick() => {
                    let list = st.client.downloads();
                    st.last.retain(|id, _| list.iter().any(|d| d.id == *id));
                    for d in list {
                        use rutella_node::DownloadState as S;
                        // Running ones as bytes come; queued and paused
                        // ones when they become so (done and failed have
                        // events of their own).
                        if !matches!(d.state, S::Running | S::Queued | S::Paused) {
                            continue;
                        }
                        let json = DownloadJson::from(&d);
                        let now = (json.state, d.done);
                        if st.last.insert(d.id, now) != Some(now) {
                            st.backlog.push_back(event("download_progress", &json));
                        }
                    }
                }
            }
        }
    })
}

fn download(client: &Client, id: u64) -> Option<DownloadJson> {
    client
        .downloads()
        .iter()
        .find(|d| d.id == id)
        .map(DownloadJson::from)
}

fn node_event(client: &Client, ev: NodeEvent) -> Option<Event> {
    Some(match ev {
        NodeEvent::PeerAdded(p) => event(
            "peer_joined",
            &serde_json::json!({"addr": p.udp.to_string()}),
        ),
        NodeEvent::PeerRemoved(p) => {
            event("peer_left", &serde_json::json!({"addr": p.udp.to_string()}))
        }
        NodeEvent::DownloadDone { id, name, path } => match download(client, id) {
            Some(d) => event("download_done", &d),
            None => event(
                "download_done",
                &serde_json::json!({"id": id, "name": name, "state": "done", "file": path.display().to_string()}),
            ),
        },
        NodeEvent::DownloadFailed { id, name, reason } => match download(client, id) {
            Some(d) => event("download_failed", &d),
            None => event(
                "download_failed",
                &serde_json::json!({"id": id, "name": name, "state": "failed", "error": reason}),
            ),
        },
        NodeEvent::UploadStarted { peer, name } => event(
            "upload_started",
            &serde_json::json!({"peer": peer.to_string(), "name": name}),
        ),
        NodeEvent::UploadEnded { peer, name, bytes } => event(
            "upload_done",
            &serde_json::json!({"peer": peer.to_string(), "name": name, "sent": bytes}),
        ),
        NodeEvent::Reachability(r) => event("reachability", &crate::json::ReachJson::from(&r)),
    })
}
