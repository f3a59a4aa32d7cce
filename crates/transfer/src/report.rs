//! What a download reports, by name or by hash: its progress, and what it
//! and each of its sources did. A failed download carries the same source
//! reports (see `error.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// How far a download is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received in this session.
    pub received: u64,
    /// Bytes of the file on disk (resumed part included).
    pub done: u64,
    /// The whole size, once the peer said it.
    pub total: Option<u64>,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReport {
    /// Where the complete file now is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes that were already on disk when this session started.
    pub resumed_from: u64,
    /// Bytes of the file that crossed the wire in this session (for a
    /// download by hash, data that failed verification included).
    pub bytes_received: u64,
    /// What each source did.
    pub sources: Vec<SourceReport>,
}

/// What one source contributed to a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The source.
    pub peer: SocketAddr,
    /// File bytes received from it in this session.
    pub bytes_received: u64,
    /// Of those, bytes that passed verification and were kept.
    pub bytes_verified: u64,
    /// How it ended.
    pub outcome: SourceOutcome,
}

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// It served until there was nothing left to ask.
    Served,
    /// It was not needed (or not reached before the end).
    Unused,
    /// It sent data or a tree that failed verification: never asked again
    /// for this file.
    BadData,
    /// It does not have the file.
    NotFound,
    /// It stayed busy.
    Busy,
    /// The connection failed, stalled or broke the protocol.
    Failed(String),
}

impl std::fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceOutcome::Served => f.write_str("served"),
            SourceOutcome::Unused => f.write_str("unused"),
            SourceOutcome::BadData => f.write_str("sent data that failed verification"),
            SourceOutcome::NotFound => f.write_str("does not have the file"),
            SourceOutcome::Busy => f.write_str("busy"),
            SourceOutcome::Failed(why) => f.write_str(why),
        }
    }
}
