//! The HTTP JSON control API of `rutella daemon` (see docs/API.md).
//!
//! A thin layer over the node's [`rutella_node::Client`]: each endpoint
//! turns a request into calls on the client and its answer into JSON; the
//! only state kept here is what the API adds (searches by id, the order of
//! the downloads list). Access control (the token, the Origin check) is in
//! [`auth`]; the token and the `api.json` file in [`files`].
#![warn(missing_docs)]

pub mod auth;
pub mod files;
mod json;
mod routes;
mod searches;
mod sse;
mod web;

use rutella_node::Client;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use json::Settings;

/// Saves settings changed through the API (the daemon writes them into
/// its settings file); an error is one line for the user.
pub type SaveSettings = Arc<dyn Fn(&Settings) -> Result<(), String> + Send + Sync>;

/// How the API server runs.
#[derive(Clone)]
pub struct ApiConfig {
    /// The token every `/api/` request must carry.
    pub token: String,
    /// How long `POST /peers` waits for the peer to answer.
    pub join_wait: Duration,
    /// How often `GET /events` reports the progress of each running
    /// download (at most).
    pub progress_interval: Duration,
    /// Searches kept at once (the oldest is dropped beyond).
    pub max_searches: usize,
    /// Results kept per search.
    pub max_results: usize,
    /// Called after `PATCH /settings` applied new settings.
    pub save_settings: Option<SaveSettings>,
}

impl ApiConfig {
    /// The defaults, with this token.
    pub fn new(token: String) -> ApiConfig {
        ApiConfig {
            token,
            join_wait: Duration::from_secs(5),
            progress_interval: Duration::from_millis(250),
            max_searches: 32,
            max_results: 2000,
            save_settings: None,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(%local, "control API listening");
    let app = routes::router(client, config);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
