//! The rutella node: a thin tokio driver around the sans-I/O overlay, the
//! shared-folder library and the transfer server.
//!
//! [`Node::start`] binds the sockets and spawns the event loop and the
//! transfer server; the user interface talks to it only through the
//! cloneable [`Client`], whose commands carry oneshot replies over a
//! bounded channel, and which gets files with [`Client::get`]. Downloads
//! belong to the node: [`Node::shutdown`] stops them and waits for them.
#![warn(missing_docs)]

mod answer;
mod client;
mod clock;
mod command;
mod config;
mod dht;
mod dht_task;
mod downloads;
mod event_loop;
mod get;
mod gnutella;
mod gnutella_bootstrap;
mod gnutella_browse;
mod gnutella_get;
mod gnutella_push;
mod gnutella_types;
mod lan;
mod node;
mod own_address;
mod paths;
mod pending;
mod portmap;
pub mod punch;
mod push;
mod reach;
pub mod relay;
mod source;
mod tasks;
mod transfers;
mod uploads;

pub use client::{Client, Limits};
pub use command::{NodeEvent, SearchHit, SearchStream};
pub use config::{LanSettings, NodeConfig, PeerAddr, ReachSettings};
pub use dht::{file_key, network_key, DhtConfig, DEFAULT_NETWORK, NO_PUBLIC_ENV, PUBLIC_BOOTSTRAP};
pub use downloads::{ControlError, DownloadId, DownloadInfo, DownloadState, FailureKind};
pub use get::{Got, Want};
pub use gnutella_types::{
    GnutellaFile, GnutellaSettings, GnutellaSource, GWEBCACHES, UDP_HOST_CACHES,
};
pub use node::Node;
pub use portmap::{PortMapConfig, PortMapProtocol, PortMapStatus};
pub use rutella_proto::lan::LanConfig;
pub use rutella_proto::reach::{MappedBy, ReachConfig, Reachability};
pub use rutella_proto::{HitFile, Peer};
pub use transfers::DownloadHandle;
pub use uploads::UploadInfo;

/// Why the node could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A port is taken by another program.
    #[error("{proto} port {port} on {ip} is already in use: stop the other program or choose another port with {flag}")]
    PortInUse {
        /// "UDP" or "TCP".
        proto: &'static str,
        /// The address.
        ip: std::net::IpAddr,
        /// The port.
        port: u16,
        /// The flag that changes it.
        flag: &'static str,
    },
    /// Binding a socket failed otherwise.
    #[error("cannot open {proto} port {port} on {ip}: {source}")]
    Bind {
        /// "UDP" or "TCP".
        proto: &'static str,
        /// The address.
        ip: std::net::IpAddr,
        /// The port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The shared-folder library failed.
    #[error(transparent)]
    Store(#[from] rutella_store::StoreError),
    /// The downloads folder could not be created.
    #[error("cannot create the downloads folder {path}: {source}")]
    Downloads {
        /// The folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A download failed.
    #[error(transparent)]
    Download(#[from] rutella_transfer::DownloadError),
    /// Something else, said in words.
    #[error("{0}")]
    Other(String),
}
