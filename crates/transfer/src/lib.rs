//! File transfers between rutella peers and classic peers.
//!
//! Two exchanges share one TCP port:
//!
//! * the **classic exchange** of the original program (a little-endian `u32`
//!   partial size, then a file name; the reply is a `u32` byte count and the
//!   bytes), spoken byte for byte so that classic downloaders and servers keep
//!   working; see [`classic_download`] and [`serve_connection`];
//! * the **rutella protocol**, chosen by the connecting side with an initial
//!   magic, which asks for content by BLAKE3 hash with 64-bit ranges and
//!   explicit error replies.
//!
//! The server side needs only a [`FileSource`], which the node implements over
//! its shared-folder index. All the path-safety checks are the source's job:
//! this crate serves whatever path the source hands back.

#![warn(missing_docs)]

mod buf;
mod client;
pub mod dial;
mod download;
mod error;
mod fetch;
mod hex;
mod limit;
mod lock;
mod names;
mod report;
mod server;
pub mod state;
pub mod tree;
mod tree_cache;
pub mod wire;

use std::path::PathBuf;

pub use client::classic::{classic_download, ClassicGet};
pub use client::rutella::{RutellaConn, MAX_VERIFIED_READ};
pub use error::{
    is_disk_full, is_not_permitted, Broken, DownloadError, ExhaustedError, LocalError, SourceError,
    VerifyError,
};
pub use fetch::{
    fetch_by_hash, fetch_by_hash_growing, fetch_by_hash_until, part_paths, pending_progress,
    HashGet, PartPaths,
};
pub use limit::RateLimiter;
pub use names::{sanitize_basename, NameError};
pub use report::{DownloadReport, Progress, SourceOutcome, SourceReport};
pub use server::guard::{ServerLimits, UploadSlots};
pub use server::{
    run_server, run_server_with, serve_connection, Fault, HttpHook, Protocol, PushedConn,
    RelayHook, SendError, ServeError, ServeOutcome, ServeReport, ServerConfig, UploadEvent,
    UploadMeter, UploadNotice,
};
pub use tree_cache::TreeCache;

/// The files a server offers, as the node's shared-folder index sees them.
///
/// Implementors do every safety check: a name that escapes the shared folder,
/// an absolute path or a file that is not shared must give `None`.
pub trait FileSource: Send + Sync + 'static {
    /// The shared file a classic request names (the name as the peer sent it).
    fn by_name(&self, name: &str) -> Option<SourceFile>;
    /// The shared file whose whole-file BLAKE3 hash is `hash`.
    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile>;
}

/// A file the [`FileSource`] agreed to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where the file is on disk.
    pub path: PathBuf,
    /// Its size in bytes as indexed. The server trusts the size of the file it
    /// opens when the two differ.
    pub size: u64,
}
