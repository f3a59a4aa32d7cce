//! `rutella daemon`: the node of `serve` plus the HTTP JSON control API
//! (crates/api). Thin: it finds the settings folder, makes or reads the
//! token, binds the API, writes `api.json`, and stops everything on
//! SIGTERM or Ctrl-C.

use crate::args::DaemonArgs;
use crate::config_file::ConfigFile;
use crate::{exit, Failure};
use rutella_api::files::{self, ApiJson};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the API listens unless told otherwise.
pub(crate) const DEFAULT_API: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6347);

fn file_failure(e: files::FileError) -> Failure {
    Failure::new(exit::FAILURE, e.to_string())
}

/// Binds the API: the address asked for; the default one, when taken,
/// gives way to a free port on the same address.
async fn bind(addr: SocketAddr, explicit: bool) -> Result<tokio::net::TcpListener, Failure> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !explicit => {
            tracing::info!(%addr, "the API port is taken; using a free one");
            tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .map_err(|e| Failure::new(exit::NETWORK, format!("cannot listen on {}: {e}", addr.ip())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Failure::new(
            exit::NETWORK,
            format!("the API address {addr} is already in use: stop the other program or give another --api-listen"),
        )),
        Err(e) => Err(Failure::new(exit::NETWORK, format!("cannot listen on {addr}: {e}"))),
    }
}

/// Saves the limits changed through the API into the settings file.
fn saver(path: PathBuf) -> rutella_api::SaveSettings {
    Arc::new(move |s: &rutella_api::Settings| {
        let mut file = ConfigFile::load(&path).map_err(|f| f.message)?;
        file.upload_limit = s.upload_limit_bps;
        file.download_limit = s.download_limit_bps;
        file.upload_slots = Some(s.upload_slots);
        file.max_downloads = s.max_downloads;
        file.save(&path).map_err(|f| f.message)
    })
}

fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub(crate) async fn run(a: DaemonArgs) -> Result<(), Failure> {
    let settings = crate::config_file::path()?;
    let dir = settings
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file = ConfigFile::load(&settings)?;
    let explicit = a.api_listen.or(file.api_listen);
    let listen = explicit.unwrap_or(DEFAULT_API);
    let token_path = dir.join(files::TOKEN_FILE);
    if !listen.ip().is_loopback() && !files::token_exists(&token_path) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "the API would listen on {listen}, beyond this computer, without a token yet: start `rutella daemon` once on 127.0.0.1 to make {}, then again with --api-listen",
                token_path.display()
            ),
        ));
    }
    let (token, made) = files::load_or_create_token(&token_path).map_err(file_failure)?;
    if made {
        tracing::info!(path = %token_path.display(), "made a new API token (readable by you only)");
    }
    let listener = bind(listen, explicit.is_some()).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(exit::NETWORK, format!("cannot listen on {listen}: {e}")))?;

    let slots = file.upload_slots;
    let mut join_wait = std::time::Duration::from_secs(5);
    let serving = crate::oneshot::start_serving(a.serve, |cfg| {
        if let Some(n) = slots {
            cfg.max_uploads = n.max(1);
        }
        // A peer that answers does so within a ping's deadline.
        join_wait = cfg.overlay.pong_timeout * 2;
    })
    .await?;
    let client = serving.node.client();

    let mut config = rutella_api::ApiConfig::new(token);
    config.join_wait = join_wait;
    config.save_settings = Some(saver(settings.clone()));
    let (stop_api, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(rutella_api::serve(listener, client, config, async move {
        let _ = stopped.await;
    }));

    let json_path = dir.join(files::API_JSON);
    let info = ApiJson {
        url: url_of(local),
        pid: std::process::id(),
    };
    files::write_api_json(&json_path, &info).map_err(file_failure)?;
    println!(
        "rutella daemon: API at {} (token in {}; web page at {}/)",
        info.url,
        token_path.display(),
        info.url
    );

    crate::oneshot::stop_signal().await;
    tracing::info!("stopping the daemon");
    let _ = stop_api.send(());
    // Open event streams would hold the graceful stop: give it a moment.
    match tokio::time::timeout(std::time::Duration::from_secs(2), api).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the API server failed"),
        Err(_) => tracing::info!("API streams still open at exit; closed"),
        _ => {}
    }
    serving.stop().await;
    if files::read_api_json(&json_path).is_some_and(|j| j.pid == info.pid) {
        let _ = std::fs::remove_file(&json_path);
    }
    Ok(())
}
