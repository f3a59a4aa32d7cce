//! The endpoints (docs/API.md), each a thin call on the node's client.

use crate::json::{DownloadJson, ErrorJson, PeerJson, ReachJson, Settings};
use crate::searches::{parse_hash, Search};
use crate::ApiConfig;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rutella_node::{Client, ControlError, DownloadState, PeerAddr};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub(crate) struct Api {
    client: Client,
    config: ApiConfig,
    searches: Mutex<(u64, BTreeMap<u64, Arc<Search>>)>,
    /// Serialises `PATCH /settings`.
    settings: tokio::sync::Mutex<()>,
}

type Shared = State<Arc<Api>>;

/// An error reply: `{"error": "…", "kind": "…"}` with a status.
pub(crate) struct ApiError(StatusCode, String, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorJson {
            error: self.1,
            kind: self.2,
        };
        (self.0, Json(body)).into_response()
    }
}

/// An error whose kind follows from its status (docs/API.md, "Error
/// kinds").
fn err(status: StatusCode, text: impl Into<String>) -> ApiError {
    let kind = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "no_such",
        StatusCode::CONFLICT => "conflict",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "stopped",
        _ => "internal",
    };
    ApiError(status, text.into(), kind)
}

/// An error of a kind of its own.
fn err_kind(status: StatusCode, kind: &'static str, text: impl Into<String>) -> ApiError {
    ApiError(status, text.into(), kind)
}

impl From<rutella_node::NodeError> for ApiError {
    fn from(e: rutella_node::NodeError) -> Self {
        use rutella_node::NodeError as E;
        match &e {
            E::Download(d) => err_kind(
                StatusCode::BAD_GATEWAY,
                rutella_node::FailureKind::of(d).as_str(),
                e.to_string(),
            ),
            _ => err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::NoSuch(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        let text = match e {
            ControlError::NoSuch(id) => format!("there is no download {id}"),
            other => other.to_string(),
        };
        err(status, text)
    }
}

/// A JSON body, with a one-line 400 when it does not parse.
pub(crate) struct Body<T>(T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| err(StatusCode::BAD_REQUEST, e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| err(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
    }
}

pub(crate) fn router(client: Client, config: ApiConfig) -> Router {
    let token: Arc<str> = Arc::from(config.token.as_str());
    let api = Arc::new(Api {
        client,
        config,
        searches: Mutex::new((0, BTreeMap::new())),
        settings: tokio::sync::Mutex::new(()),
    });
    let v1 = Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers).post(join))
        .route("/shares", get(shares).post(add_share).delete(remove_share))
        .route("/searches", post(start_search))
        .route("/searches/{id}", get(search).delete(stop_search))
        .route("/searches/{id}/events", get(search_events))
        .route("/downloads", get(downloads).post(start_download))
        .route("/downloads/{id}", axum::routing::delete(remove_download))
        .route("/downloads/{id}/pause", post(pause))
        .route("/downloads/{id}/resume", post(resume))
        .route("/downloads/{id}/cancel", post(cancel))
        .route("/downloads/{id}/move", post(move_download))
        .route("/uploads", get(uploads))
        .route("/settings", get(settings).patch(patch_settings))
        .route("/events", get(events))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(api);
    let protected = Router::new()
        .nest("/v1", v1)
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::auth::require,
        ));
    Router::new()
        .nest("/api", protected)
        .merge(crate::web::router())
}

// ---- status, peers, shares ----

async fn status(State(api): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &api.client;
    let peers = c.peers().await?.len();
    let list = c.downloads();
    let active = list
        .iter()
        .filter(|d| matches!(d.state, DownloadState::Running | DownloadState::Paused))
        .count();
    let done = list
        .iter()
        .filter(|d| matches!(d.state, DownloadState::Done(_)))
        .count();
    let queued = list
        .iter()
        .filter(|d| d.state == DownloadState::Queued)
        .count();
    let bytes_down: u64 = list.iter().map(|d| d.received).sum();
    let reach = ReachJson::from(&*c.reachability().borrow());
    let tier = match c.tier().await? {
        Some((true, leaves)) => serde_json::json!({"role": "ultrapeer", "leaves": leaves}),
        Some((false, _)) => serde_json::json!({"role": "leaf"}),
        None => serde_json::Value::Null,
    };
    Ok(Json(serde_json::json!({
        "tier": tier,
        "version": env!("CARGO_PKG_VERSION"),
        "udp": c.udp_addr().to_string(),
        "tcp": c.tcp_addr().to_string(),
        "reachability": reach,
        "shares": c.shares().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "peers": peers,
        "downloads": {"active": active, "done": done, "queued": queued},
        "uploads": c.uploads().len(),
        "bytes_up": c.bytes_uploaded(),
        "bytes_down": bytes_down,
        "limits": Settings::of(c),
    })))
}

async fn peers(State(api): Shared) -> Result<Json<Vec<PeerJson>>, ApiError> {
    Ok(Json(
        api.client
            .peers()
            .await?
            .iter()
            .map(PeerJson::from)
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    addr: String,
}

async fn join(State(api): Shared, Body(b): Body<JoinBody>) -> Result<Json<PeerJson>, ApiError> {
    let peer: PeerAddr = b
        .addr
        .parse()
        .map_err(|e: String| err(StatusCode::BAD_REQUEST, e))?;
    api.client.connect(peer).await?;
    let wait = api.config.join_wait;
    match api.client.wait_peer(peer.udp, wait, |_| true).await? {
        Some(p) => Ok(Json(PeerJson::from(&p))),
        None => Err(err(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{} did not answer within {:.1} s (it is tried again at every ping round)",
                peer.udp,
                wait.as_secs_f64()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    path: PathBuf,
}

fn share_json(client: &Client, path: Option<&std::path::Path>) -> Vec<serde_json::Value> {
    client
        .library()
        .share_totals()
        .into_iter()
        .filter(|(p, _, _)| path.is_none_or(|want| p == want))
        .map(|(p, files, bytes)| {
            serde_json::json!({"path": p.display().to_string(), "files": files, "bytes": bytes})
        })
        .collect()
}

async fn shares(State(api): Shared) -> Json<Vec<serde_json::Value>> {
    let client = api.client.clone();
    let list = tokio::task::spawn_blocking(move || share_json(&client, None))
        .await
        .unwrap_or_default();
    Json(list)
}

async fn add_share(State(api): Shared, Body(b): Body<ShareBody>) -> Result<Response, ApiError> {
    if !b.path.is_dir() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("{}: no such directory", b.path.display()),
        ));
    }
    api.client
        .share(&b.path)
        .await
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let client = api.client.clone();
    let path = b.path.clone();
    let one = tokio::task::spawn_blocking(move || share_json(&client, Some(&path)))
        .await
        .unwrap_or_default();
    let body = one.into_iter().next().unwrap_or_else(
        || serde_json::json!({"path": b.path.display().to_string(), "files": 0, "bytes": 0}),
    );
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn remove_share(
    State(api): Shared,
    Body(b): Body<ShareBody>,
) -> Result<StatusCode, ApiError> {
    if api.client.unshare(&b.path).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(err(
            StatusCode::NOT_FOUND,
            format!("{} is not shared", b.path.display()),
        ))
    }
}

// ---- searches ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
}

async fn start_search(State(api): Shared, Body(b): Body<SearchBody>) -> Result<Response, ApiError> {
    let query = b.query.trim().to_string();
    if query.is_empty() {
        return Err(err(StatusCode::BAD_REQUEST, "the query is empty"));
    }
    let id = {
        let mut s = api.searches.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.0
    };
    let search = Search::start(&api.client, id, query, api.config.max_results).await?;
    let mut s = api.searches.lock().unwrap_or_else(|e| e.into_inner());
    s.1.insert(id, search);
    while s.1.len() > api.config.max_searches.max(1) {
        if let Some((_, old)) = s.1.pop_first() {
            old.stop();
        }
    }
    Ok((StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response())
}

fn find_search(api: &Api, id: u64) -> Result<Arc<Search>, ApiError> {
    let s = api.searches.lock().unwrap_or_else(|e| e.into_inner());
    s.1.get(&id)
        .cloned()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("there is no search {id}")))
}

async fn search(
    State(api): Shared,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = find_search(&api, id)?;
    let f = s.found.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(serde_json::json!({
        "id": s.id,
        "query": s.query,
        "running": f.running,
        "results": f.results,
    })))
}

async fn search_events(State(api): Shared, Path(id): Path<u64>) -> Result<Response, ApiError> {
    let s = find_search(&api, id)?;
    Ok(crate::sse::respond(crate::sse::search_events(s)).into_response())
}

async fn stop_search(State(api): Shared, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    let s = api
        .searches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .remove(&id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("there is no search {id}")))?;
    s.stop();
    Ok(StatusCode::NO_CONTENT)
}

// ---- downloads ----

fn one(api: &Api, id: u64) -> Result<DownloadJson, ApiError> {
    api.client
        .downloads()
        .iter()
        .find(|d| d.id == id)
        .map(DownloadJson::from)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("there is no download {id}")))
}

async fn downloads(State(api): Shared) -> Json<Vec<DownloadJson>> {
    Json(
        api.client
            .downloads()
            .iter()
            .map(DownloadJson::from)
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum StartBody {
    FromSearch {
        search: u64,
        index: usize,
    },
    ByHash {
        hash: String,
        #[serde(default)]
        size: Option<u64>,
        name: String,
        #[serde(default)]
        sources: Vec<String>,
    },
    ByName {
        from: String,
        name: String,
    },
}

fn addrs(list: &[String]) -> Result<Vec<SocketAddr>, ApiError> {
    list.iter()
        .map(|s| {
            s.parse().map_err(|_| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("{s:?} is not an ip:port address"),
                )
            })
        })
        .collect()
}

async fn start_download(
    State(api): Shared,
    body: Result<Body<StartBody>, ApiError>,
) -> Result<Response, ApiError> {
    let Body(b) = body.map_err(|_| {
        err(
            StatusCode::BAD_REQUEST,
            "give {\"search\", \"index\"}, {\"hash\", \"size\", \"name\", \"sources\"} or {\"from\", \"name\"}",
        )
    })?;
    let c = &api.client;
    let handle = match b {
        StartBody::FromSearch { search, index } => {
            let s = find_search(&api, search)?;
            let (name, size, hash, sources) = {
                let f = s.found.lock().unwrap_or_else(|e| e.into_inner());
                let r = f.results.get(index).ok_or_else(|| {
                    err(
                        StatusCode::NOT_FOUND,
                        format!("search {search} has no result {index}"),
                    )
                })?;
                let (hash, sources) = f.sources.get(index).cloned().unwrap_or_default();
                (r.name.clone(), r.size, hash, sources)
            };
            match (hash, sources.first()) {
                (Some(h), _) => c.download_hash(h, &name, size, sources),
                (None, Some(from)) => c.download_listed(*from, &name, size),
                (None, None) => {
                    return Err(err_kind(
                        StatusCode::NOT_FOUND,
                        "no_source",
                        "that result has no source",
                    ))
                }
            }
        }
        StartBody::ByHash {
            hash,
            size,
            name,
            sources,
        } => {
            let h = parse_hash(&hash).ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("{hash:?} is not a hash: write blake3: and 64 hex digits"),
                )
            })?;
            let mut sources = addrs(&sources)?;
            if sources.is_empty() {
                if let Some((_, found)) = c.find_sources(&h).await? {
                    sources = found;
                }
            }
            if sources.is_empty() {
                return Err(err_kind(
                    StatusCode::NOT_FOUND,
                    "no_source",
                    "no peer offers that hash",
                ));
            }
            c.download_hash(h, &name, size, sources)
        }
        StartBody::ByName { from, name } => {
            let from = addrs(&[from])?[0];
            c.download(from, &name)
        }
    };
    let id = handle.id;
    // The handle's result is not needed: the table and the events say
    // how the download ends.
    drop(handle);
    Ok((StatusCode::CREATED, Json(one(&api, id)?)).into_response())
}

async fn pause(State(api): Shared, Path(id): Path<u64>) -> Result<Json<DownloadJson>, ApiError> {
    api.client.pause(id).await?;
    Ok(Json(one(&api, id)?))
}

async fn resume(State(api): Shared, Path(id): Path<u64>) -> Result<Json<DownloadJson>, ApiError> {
    drop(api.client.resume(id)?);
    Ok(Json(one(&api, id)?))
}

async fn cancel(State(api): Shared, Path(id): Path<u64>) -> Result<Json<DownloadJson>, ApiError> {
    let mut before = one(&api, id)?;
    api.client.cancel(id).await?;
    // The node forgets a cancelled download; the reply says how it ended.
    before.state = "cancelled";
    before.speed_bps = 0;
    before.eta_secs = None;
    Ok(Json(before))
}

async fn remove_download(State(api): Shared, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    let d = one(&api, id)?;
    if matches!(d.state, "running" | "paused" | "queued") {
        return Err(err(
            StatusCode::CONFLICT,
            format!("download {id} is {}: cancel it first", d.state),
        ));
    }
    api.client.remove(id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    position: usize,
}

async fn move_download(
    State(api): Shared,
    Path(id): Path<u64>,
    Body(b): Body<MoveBody>,
) -> Result<Json<Vec<DownloadJson>>, ApiError> {
    api.client.move_download(id, b.position)?;
    let list = api.client.downloads();
    Ok(Json(list.iter().map(DownloadJson::from).collect()))
}

// ---- uploads, settings, events ----

async fn uploads(State(api): Shared) -> Json<Vec<serde_json::Value>> {
    Json(
        api.client
            .uploads()
            .iter()
            .map(|u| {
                serde_json::json!({
                    "peer": u.peer.to_string(),
                    "name": u.name,
                    "size": u.size,
                    "secs": u.started.elapsed().as_secs(),
                    "sent": u.sent,
                    "speed_bps": u.speed.max(0.0) as u64,
                })
            })
            .collect(),
    )
}

async fn settings(State(api): Shared) -> Json<Settings> {
    Json(Settings::of(&api.client))
}

async fn patch_settings(
    State(api): Shared,
    Body(b): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Settings>, ApiError> {
    let _one_at_a_time = api.settings.lock().await;
    let mut s = Settings::of(&api.client);
    let bad = |k: &str, why: &str| err(StatusCode::BAD_REQUEST, format!("{k}: {why}"));
    for (k, v) in &b {
        match k.as_str() {
            "upload_limit_bps" | "download_limit_bps" => {
                let limit = match v {
                    serde_json::Value::Null => None,
                    v => match v.as_u64() {
                        Some(0) | None => {
                            return Err(bad(k, "give bytes per second (at least 1), or null for no limit"))
                        }
                        Some(n) => Some(n),
                    },
                };
                if k == "upload_limit_bps" {
                    s.upload_limit_bps = limit;
                } else {
                    s.download_limit_bps = limit;
                }
            }
            "upload_slots" => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if (1..=4096).contains(&n) => s.upload_slots = n,
                _ => return Err(bad(k, "give a number from 1 to 4096")),
            },
            "max_downloads" => match v {
                serde_json::Value::Null => s.max_downloads = None,
                v => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(n) if (1..=4096).contains(&n) => s.max_downloads = Some(n),
                    _ => return Err(bad(k, "give a number from 1 to 4096, or null for no limit")),
                },
            },
            other => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("unknown setting {other:?}: upload_limit_bps, download_limit_bps, upload_slots or max_downloads"),
                ))
            }
        }
    }
    api.client.set_limits(s.into());
    api.client.set_max_active_downloads(s.max_downloads);
    if let Some(save) = &api.config.save_settings {
        let save = Arc::clone(save);
        let saved = tokio::task::spawn_blocking(move || save(&s))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = saved {
            return Err(err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("applied, but not saved: {e}"),
            ));
        }
    }
    Ok(Json(s))
}

async fn events(State(api): Shared) -> Response {
    let stream = crate::sse::node_events(api.client.clone(), api.config.progress_interval);
    crate::sse::respond(stream).into_response()
}
