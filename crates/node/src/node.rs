//! Starting and stopping a node: the sockets, the library, and the tasks
//! (event loop, library watch, transfer server).

use crate::answer::InFlight;
use crate::client::Client;
use crate::clock::now;
use crate::command::{Command, NodeEvent};
use crate::config::NodeConfig;
use crate::downloads::Downloads;
use crate::event_loop::EventLoop;
use crate::own_address::OwnAddress;
use crate::pending::Journal;
use crate::source::LibrarySource;
use crate::tasks::Tasks;
use crate::NodeError;
use rutella_proto::Overlay;
use rutella_store::{Library, LibraryConfig};
use rutella_transfer::ServerConfig;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Commands waiting for the event loop; a [`Client`] call waits while the
/// queue is full.
const COMMAND_QUEUE: usize = 256;

/// Events kept for each subscriber that has not read them yet; one that
/// falls further behind loses the oldest (and is told how many).
const EVENT_QUEUE: usize = 256;

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
pub struct Node {
    client: Client,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    port_mapping: Option<watch::Receiver<crate::PortMapStatus>>,
}

/// The reachability check's state machine, told whether a port mapper runs.
fn reach_machine(
    config: &NodeConfig,
    udp: SocketAddr,
    tcp: SocketAddr,
    mapper: bool,
) -> rutella_proto::Reach {
    let now = now();
    let cfg = config.reach.machine_config(udp.port(), tcp.port());
    let mut reach = rutella_proto::Reach::new(cfg, now);
    if mapper {
        reach.set_mapping(now, rutella_proto::reach::Mapping::Pending);
    }
    reach
}

impl Node {
    /// Opens the library, binds the UDP and TCP ports, and starts the event
    /// loop and the transfer server.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let downloads_dir = config.downloads_dir();
        // A folder the user named, or the one inside a share, is made now so
        // that a problem shows at start; a node that shares nothing and was
        // given no folder (a one-shot search) leaves the disk alone, and its
        // downloads make the folder when they need it.
        if config.downloads.is_some() || !config.shares.is_empty() {
            std::fs::create_dir_all(&downloads_dir).map_err(|source| NodeError::Downloads {
                path: downloads_dir.clone(),
                source,
            })?;
        }
        let udp = bind_udp(&config).await?;
        set_recv_buffer(&udp, config.udp_recv_buffer);
        let tcp = bind_tcp(&config).await?;
        let udp_addr = udp
            .local_addr()
            .map_err(|e| NodeError::Other(e.to_string()))?;
        let tcp_addr = tcp
            .local_addr()
            .map_err(|e| NodeError::Other(e.to_string()))?;
        if let Some(parent) = config.db_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                NodeError::Other(format!(
                    "cannot create the folder {} for the library index: {e}",
                    parent.display()
                ))
            })?;
        }
        let lib_cfg = LibraryConfig {
            db_path: config.db_path.clone(),
            watch: config.watch,
            ..LibraryConfig::new(config.shares.clone())
        };
        let library = tokio::task::spawn_blocking(move || Library::open(lib_cfg))
            .await
            .map_err(|e| NodeError::Other(format!("library scan failed: {e}")))??;

        let mut overlay_cfg = config.overlay.clone();
        overlay_cfg.udp_port = udp_addr.port();
        overlay_cfg.tcp_port = tcp_addr.port();
        let now = now();
        let mut overlay = Overlay::new(overlay_cfg, now);
        overlay.set_reachable(config.reachable);
        // What an ultrapeer needs besides being reachable: the upload
        // bandwidth the settings allow (unlimited when not set).
        overlay.set_bandwidth(
            config
                .upload_limit
                .map_or(u32::MAX, |b| u32::try_from(b / 1000).unwrap_or(u32::MAX)),
        );
        let mut own = OwnAddress::new(config.bind, config.advertise);
        for ip in own.initial_ips() {
            overlay.add_own_ip(ip);
        }
        // The filter a scalable overlay sends its neighbours, built off the
        // event loop (a classic overlay needs none).
        let scalable = overlay.mode() == rutella_proto::Mode::Scalable;
        if scalable {
            let lib = library.clone();
            if let Ok(filter) = tokio::task::spawn_blocking(move || library_filter(&lib)).await {
                overlay.set_filter(filter);
            }
        }
        for p in &config.connect {
            overlay.connect(now, p.udp, p.tcp_port.unwrap_or(0));
        }
        // Ask the own address for the bootstrap peers now so they are known as own.
        for p in &config.connect {
            let ip = own.for_dest(p.udp.ip());
            overlay.add_own_ip(ip);
        }

        let dht = match dht_bind(config.bind) {
            Some(bind) => crate::dht::Dht::start(&config.dht, bind).await,
            None => {
                if config.dht.enabled {
                    tracing::warn!(bind = %config.bind, "DHT not started: it is IPv4 only, and the node is bound to one IPv6 address");
                }
                None
            }
        };
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let (lan_found_tx, lan_found) = watch::channel(0);
        let (reachability, reachability_rx) = watch::channel(rutella_proto::Reachability::Unknown);
        let (external, external_rx) = watch::channel(None);
        let (status, status_rx) = watch::channel(crate::PortMapStatus::Pending);
        let port_mapping = config.port_mapping.is_some().then_some(status_rx);
        let servent_guid = rutella_gnutella::leaf::new_guid();
        let (gnutella, gnutella_task) = match config.gnutella.clone() {
            Some(s) => {
                let ctx = crate::gnutella::Context {
                    library: library.clone(),
                    bind: config.bind,
                    advertise: config.advertise,
                    tcp_port: tcp_addr.port(),
                    firewalled: config.reachable == Some(false),
                    slots: config.max_uploads,
                    servent_guid,
                };
                let (h, t) = crate::gnutella::spawn(s, ctx, stop_rx.clone());
                (Some(h), Some(t))
            }
            None => (None, None),
        };
        let client = Client {
            tasks: Tasks::new(stop_rx.clone()),
            tx: tx.clone(),
            events: events.clone(),
            downloads: {
                let d = Downloads::default();
                d.set_max_active(config.max_active_downloads);
                d
            },
            journal: Journal::new(&downloads_dir),
            library: library.clone(),
            config: Arc::new(config.clone()),
            udp_addr,
            tcp_addr,
            dht: dht.clone(),
            lan_found,
            push: Arc::new(crate::push::PushTable::default()),
            download_limit: limiter(config.download_limit),
            upload_limit: limiter(config.upload_limit),
            upload_slots: rutella_transfer::UploadSlots::new(
                config.max_uploads,
                &config.upload_limits,
            ),
            uploads: crate::uploads::Uploads::default(),
            reachability: reachability_rx,
            port_mapping: port_mapping.clone(),
            gnutella,
        };
        // Pushed connections: those that come in introduced with a token
        // (we asked for them), and those we open on a peer's push (served
        // as accepted ones).
        let (pushed_in_tx, pushed_in) = mpsc::channel(crate::push::MAX_CONNECTING);
        let (pushed_out, pushed_out_rx) = mpsc::channel(crate::push::MAX_CONNECTING);
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, shares = ?config.shares, "node started");

        let mut event_loop = EventLoop {
            overlay,
            ipv6_socket: udp_addr.is_ipv6(),
            socket: udp,
            own,
            library: library.clone(),
            rx,
            tx,
            events,
            searches: HashMap::new(),
            in_flight: InFlight::default(),
            answers: Vec::new(),
            answering: JoinSet::new(),
            push: client.push.clone(),
            pushed_out,
            pushing: JoinSet::new(),
            connect_timeout: config.connect_timeout,
            reach: reach_machine(&config, udp_addr, tcp_addr, port_mapping.is_some()),
            reachable_forced: config.reachable.is_some(),
            reachability,
            mapping: port_mapping.clone(),
            dialing: JoinSet::new(),
            bind: config.bind,
            dial_timeout: config.reach.dial_timeout,
        };
        let mapper = match config.port_mapping.clone() {
            Some(cfg) => {
                event_loop.own.follow_external(external_rx);
                let out = crate::portmap::Outputs { external, status };
                let task = crate::portmap::run(
                    cfg,
                    udp_addr.port(),
                    tcp_addr.port(),
                    dht.as_ref().map(crate::dht::Dht::port),
                    out,
                    stop_rx.clone(),
                );
                Some(task)
            }
            None => None,
        };
        let mut tasks = vec![tokio::spawn(event_loop.run(stop_rx.clone()))];
        tasks.extend(crate::lan::spawn(
            config.lan.as_ref(),
            (udp_addr.port(), tcp_addr.port()),
            client.tx.clone(),
            lan_found_tx,
            stop_rx.clone(),
        ));
        tasks.extend(mapper.map(tokio::spawn));
        tasks.extend(gnutella_task);
        if scalable {
            tasks.push(tokio::spawn(watch_library(
                library.clone(),
                client.tx.clone(),
                config.library_poll,
                stop_rx.clone(),
            )));
        }
        if let Some(dht) = dht {
            tasks.push(tokio::spawn(crate::dht_task::run(
                dht,
                client.clone(),
                stop_rx.clone(),
            )));
        }
        let (uploads_tx, uploads_rx) = broadcast::channel(EVENT_QUEUE);
        tasks.push(tokio::spawn(announce_uploads(
            uploads_rx,
            library.clone(),
            client.uploads.clone(),
            client.events.clone(),
            stop_rx.clone(),
        )));
        let server_cfg = ServerConfig {
            uploads: Some(uploads_tx),
            total_limit: Some(client.upload_limit.clone()),
            slots: Some(client.upload_slots.clone()),
            rate_limit: config.upload_rate_limit,
            max_connections: config.max_uploads,
            limits: config.upload_limits.clone(),
            fault: config.upload_fault,
            shutdown_grace: config.shutdown_grace,
            relay: Some(crate::relay::Relay::new(config.relay.clone()).hook()),
            http: client
                .gnutella
                .as_ref()
                .map(crate::gnutella::GnutellaHandle::http_hook),
            pushed: Some(pushed_in_tx),
            ..ServerConfig::default()
        };
        tasks.push(tokio::spawn(crate::push::run_pushed(
            client.push.clone(),
            pushed_in,
            stop_rx.clone(),
        )));
        let source = Arc::new(LibrarySource(library));
        let mut server_stop = stop_rx;
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            let served =
                rutella_transfer::run_server_with(tcp, source, server_cfg, shutdown, pushed_out_rx);
            if let Err(e) = served.await {
                tracing::error!(error = %e, "transfer server stopped");
            }
        }));
        client.resume_pending();
        Ok(Node {
            client,
            stop,
            tasks,
            port_mapping,
        })
    }

    /// A handle for the user interface.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether others can reach this node, as last checked (see
    /// `rutella_proto::reach`); it changes as checks conclude.
    pub fn reachability(&self) -> watch::Receiver<rutella_proto::Reachability> {
        self.client.reachability()
    }

    /// The port mapper's status, when port mapping is on.
    pub fn port_mapping(&self) -> Option<watch::Receiver<crate::PortMapStatus>> {
        self.port_mapping.clone()
    }

    /// Stops the event loop, the transfer server and the downloads, and
    /// waits for them. A download by hash records its verified data and
    /// releases its partial file before it ends, so the next start resumes
    /// it; a classic download keeps its `.part` file. Downloads get at most
    /// [`NodeConfig::stop_timeout`], uploads [`NodeConfig::shutdown_grace`].
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.client
            .tasks
            .close(self.client.config.stop_timeout)
            .await;
        for t in self.tasks {
            let _ = t.await;
        }
        tracing::info!("node stopped");
    }
}

/// Turns the transfer server's upload notices into node events, naming
/// each file as it is shared (its path inside its shared folder).
/// A limiter shared by all transfers of one direction, unlimited until
/// set (it may be set, changed or lifted while the node runs).
fn limiter(rate: Option<u64>) -> rutella_transfer::RateLimiter {
    let l = rutella_transfer::RateLimiter::unlimited();
    l.set_rate(rate);
    l
}

async fn announce_uploads(
    mut rx: broadcast::Receiver<rutella_transfer::UploadNotice>,
    library: Library,
    uploads: crate::uploads::Uploads,
    events: broadcast::Sender<NodeEvent>,
    mut stop: watch::Receiver<bool>,
) {
    use rutella_transfer::UploadEvent;
    loop {
        let notice = tokio::select! {
            n = rx.recv() => match n {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let name = library
            .shares()
            .iter()
            .find_map(|s| notice.file.strip_prefix(s).ok())
            .unwrap_or(&notice.file)
            .to_string_lossy()
            .into_owned();
        let event = match notice.event {
            UploadEvent::Started => {
                let file = notice.file.clone();
                let size = tokio::task::spawn_blocking(move || std::fs::metadata(file).ok())
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.len());
                uploads.started(
                    crate::uploads::UploadInfo {
                        peer: notice.peer,
                        name: name.clone(),
                        size,
                        started: std::time::Instant::now(),
                        sent: 0,
                        speed: 0.0,
                    },
                    notice.sent.clone(),
                );
                NodeEvent::UploadStarted {
                    peer: notice.peer,
                    name,
                }
            }
            UploadEvent::Ended { bytes } => {
                uploads.ended(notice.peer, &name, bytes);
                NodeEvent::UploadEnded {
                    peer: notice.peer,
                    name,
                    bytes,
                }
            }
        };
        let _ = events.send(event);
    }
}

/// Asks for a larger receive buffer, so that a burst of datagrams waits in
/// the kernel instead of being lost before the loop reads it. The system
/// may give less (on Linux, at most `net.core.rmem_max`); that is logged.
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!(error = %e, bytes, "could not set the UDP receive buffer size");
        return;
    }
    match sock.recv_buffer_size() {
        // Linux reports twice what it grants (the other half is its bookkeeping).
        Ok(got) if got < bytes => tracing::info!(
            asked = bytes,
            got,
            "the system gave a smaller UDP receive buffer than asked (see net.core.rmem_max)"
        ),
        Ok(got) => tracing::debug!(bytes = got, "UDP receive buffer"),
        Err(e) => tracing::debug!(error = %e, "cannot read the UDP receive buffer size"),
    }
}

/// The address the DHT (IPv4 only) binds to: the node's IPv4 address, every
/// interface for `::`, loopback for `::1`, none for another IPv6 address.
fn dht_bind(bind: IpAddr) -> Option<Ipv4Addr> {
    match bind {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) if ip.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => Some(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => None,
    }
}

/// A UDP socket at `ip`: an IPv6 address gives a dual-stack socket
/// (`IPV6_V6ONLY` off), so that with `::` IPv4 peers reach the same socket
/// (their addresses arrive IPv4-mapped and are normalized by the overlay).
async fn udp_at(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    if ip.is_ipv4() {
        return UdpSocket::bind((ip, port)).await;
    }
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(false)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(ip, port).into())?;
    UdpSocket::from_std(s.into())
}

/// A TCP listener at `ip`, dual-stack for an IPv6 address as [`udp_at`].
async fn bind_udp(config: &NodeConfig) -> Result<UdpSocket, NodeError> {
    let first = udp_at(config.bind, config.udp_port).await;
    match first {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && config.port_fallback => {
            let s = udp_at(config.bind, 0)
                .await
                .map_err(|source| bind_error("UDP", config.bind, 0, source))?;
            if let Ok(a) = s.local_addr() {
                tracing::warn!(
                    "UDP port {} is in use, using {} instead",
                    config.udp_port,
                    a.port()
                );
            }
            Ok(s)
        }
        Err(e) => Err(bind_error("UDP", config.bind, config.udp_port, e)),
    }
}

async fn bind_tcp(config: &NodeConfig) -> Result<TcpListener, NodeError> {
    // Bound so that hole punching can use the same port (see punch.rs).
    let first = crate::punch::listen(SocketAddr::new(config.bind, config.tcp_port));
    match first {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && config.port_fallback => {
            let s = crate::punch::listen(SocketAddr::new(config.bind, 0))
                .map_err(|source| bind_error("TCP", config.bind, 0, source))?;
            if let Ok(a) = s.local_addr() {
                tracing::warn!(
                    "TCP port {} is in use, using {} instead",
                    config.tcp_port,
                    a.port()
                );
            }
            Ok(s)
        }
        Err(e) => Err(bind_error("TCP", config.bind, config.tcp_port, e)),
    }
}

fn bind_error(proto: &'static str, ip: IpAddr, port: u16, source: io::Error) -> NodeError {
    let flag = if proto == "UDP" {
        "--udp-port"
    } else {
        "--tcp-port"
    };
    match source.kind() {
        io::ErrorKind::AddrInUse => NodeError::PortInUse {
            proto,
            ip,
            port,
            flag,
        },
        _ => NodeError::Bind {
            proto,
            ip,
            port,
            source,
        },
    }
}

/// The trigram filter of the library's relative paths (folders included,
/// as the library matches them), for a scalable overlay's neighbours.
fn library_filter(library: &Library) -> rutella_proto::TrigramBloom {
    let names: Vec<String> = library.list().into_iter().map(|f| f.name).collect();
    rutella_proto::TrigramBloom::from_names(names)
}

/// Gives a scalable overlay the library's filter again, built off the
/// event loop, whenever the library changed (a rescan or a refreshed
/// path), checking every `every`.
async fn watch_library(
    library: Library,
    tx: mpsc::Sender<Command>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let generation = |l: &Library| {
        let s = l.stats();
        (s.rescans, s.refreshes, l.len())
    };
    let mut last = generation(&library);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = generation(&library);
        if now == last {
            continue;
        }
        last = now;
        let lib = library.clone();
        let Ok(filter) = tokio::task::spawn_blocking(move || library_filter(&lib)).await else {
            continue;
        };
        if tx.send(Command::SetFilter(filter)).await.is_err() {
            return;
        }
    }
}
