//! Why a download did not complete, one type per layer: a source (the
//! wire and the protocol), verification, the local disk, the sources as a
//! whole, and cancellation. Every I/O failure keeps its [`io::Error`], so
//! callers decide from its kind (a full disk, a refused permission), never
//! from its text.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::names::NameError;
use crate::report::{SourceOutcome, SourceReport};
use crate::wire::Status;

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// A source could not be reached, refused the request or broke off.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A source sent a tree or data that failed verification.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Work on this machine's disk failed, or the request cannot be stored
    /// here.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// No source was given, or every one failed.
    #[error(transparent)]
    Exhausted(#[from] ExhaustedError),
    /// The download was stopped before it completed.
    #[error("the download was cancelled; the partial copy is kept: run the same download again to resume")]
    Cancelled,
}

impl DownloadError {
    /// The I/O error underneath, if one is: a local disk failure, or a
    /// socket failure with a source.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            DownloadError::Local(LocalError::Io { source, .. }) => Some(source),
            DownloadError::Source(e) => e.io_error(),
            _ => None,
        }
    }

    /// Whether the local disk (or the user's quota on it) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, DownloadError::Local(e) if e.is_disk_full())
    }
}

/// What went wrong with one source, on the wire or in the protocol.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing listens on the peer's port.
    #[error("peer {peer} refused the connection; check the address and that the peer is running")]
    Refused {
        /// The peer.
        peer: SocketAddr,
    },
    /// The connection could not be set up in time.
    #[error("peer {peer} did not answer the connection within {after:?}; check the address or try again later")]
    ConnectTimeout {
        /// The peer.
        peer: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The connection failed for another reason.
    #[error("could not connect to peer {peer}: {source}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The peer answered 0: it does not offer the file (or, when resuming,
    /// the partial copy is already as long as its file).
    #[error("peer {peer} does not offer {name:?}{}", not_found_hint(*.partial, .part))]
    NotFound {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
        /// Bytes of the partial copy offered for resumption.
        partial: u64,
        /// The partial file (kept when it holds data).
        part: PathBuf,
    },
    /// The reply does not start with a classic byte count: the first four
    /// bytes are the start of a text or of another protocol (an HTTP
    /// server's answer, a Gnutella handshake, a web page).
    #[error("peer {peer} answered the request for {name:?} with {start:?}, which is not a classic answer: it is not a file-sharing peer of this network, or it speaks another protocol on that port")]
    NotClassic {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
        /// The first bytes of the reply, as text.
        start: String,
    },
    /// The peer announced more bytes than the file it listed has.
    #[error("peer {peer} announced {announced} bytes for {name:?}, more than the {listed} bytes its search answer gave; nothing was kept")]
    TooLarge {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
        /// What the partial copy plus the announced count come to.
        announced: u64,
        /// The size in the search answer.
        listed: u64,
    },
    /// The peer closed without sending the byte count.
    #[error("peer {peer} closed the connection without answering the request for {name:?}; try again later")]
    NoReply {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
    },
    /// The transfer stopped before the end; the partial copy is kept and the
    /// same download resumes from it.
    #[error("download from peer {peer} stopped after {received} of {expected} bytes ({cause}); the partial copy {} is kept: run the same download again to resume", .part.display())]
    Interrupted {
        /// The peer.
        peer: SocketAddr,
        /// Bytes received in this session.
        received: u64,
        /// Bytes the peer announced for this session.
        expected: u64,
        /// The partial file.
        part: PathBuf,
        /// What happened.
        #[source]
        cause: Broken,
    },
    /// The peer did not answer the rutella hello.
    #[error("peer {peer} does not speak the rutella protocol ({reason}); if it is a classic peer, download by name instead")]
    NotRutella {
        /// The peer.
        peer: SocketAddr,
        /// What happened instead.
        #[source]
        reason: Broken,
    },
    /// The peer answered a rutella request with an error status.
    #[error("peer {peer} answered {status:?}: {message:?}")]
    Refusal {
        /// The peer.
        peer: SocketAddr,
        /// The status it sent.
        status: Status,
        /// Its message.
        message: String,
    },
    /// The peer broke the rutella protocol, stalled or closed early.
    #[error("connection with peer {peer} failed: {cause}")]
    Connection {
        /// The peer.
        peer: SocketAddr,
        /// What happened.
        #[source]
        cause: Broken,
    },
}

impl SourceError {
    /// The socket error underneath, if one is.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            SourceError::Connect { source, .. } => Some(source),
            SourceError::Interrupted { cause, .. }
            | SourceError::NotRutella { reason: cause, .. }
            | SourceError::Connection { cause, .. } => cause.io_error(),
            _ => None,
        }
    }
}

/// What broke an exchange with a source.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    /// Nothing moved within the idle timeout.
    #[error("stalled: no progress for {idle:?} while {during}")]
    Stalled {
        /// The idle timeout.
        idle: Duration,
        /// What was being done.
        during: &'static str,
    },
    /// The peer closed the connection early.
    #[error("the peer closed the connection while {during}")]
    Closed {
        /// What was being done.
        during: &'static str,
    },
    /// A socket or system call failed.
    #[error("{during} failed: {source}")]
    Io {
        /// What was being done.
        during: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The peer broke the protocol's rules.
    #[error("{0}")]
    Protocol(String),
}

impl Broken {
    /// The I/O error underneath, if one is.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Broken::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the other side closed or reset the connection (rather than
    /// stalling or breaking the protocol): what a server does to a
    /// connection that sat idle.
    pub fn is_closed(&self) -> bool {
        match self {
            Broken::Closed { .. } => true,
            Broken::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            Broken::Stalled { .. } | Broken::Protocol(_) => false,
        }
    }

    /// A failed read with `idle` as its timeout, or `None` when it was
    /// only interrupted and should be retried.
    pub(crate) fn from_read(e: io::Error, idle: Duration, during: &'static str) -> Option<Broken> {
        match e.kind() {
            io::ErrorKind::Interrupted => None,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Some(Broken::Stalled { idle, during })
            }
            io::ErrorKind::UnexpectedEof => Some(Broken::Closed { during }),
            _ => Some(Broken::Io { during, source: e }),
        }
    }
}

/// A source sent something that failed verification; it is not asked again
/// for this file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The peer's tree does not combine into the requested hash.
    #[error("peer {peer} sent a tree that does not match the requested hash ({reason}); it is not asked again for this file")]
    BadTree {
        /// The peer.
        peer: SocketAddr,
        /// Why it was refused.
        reason: String,
    },
    /// The peer sent bytes that failed verification.
    #[error("peer {peer} sent data that failed verification at byte {offset}; it is not asked again for this file")]
    BadData {
        /// The peer.
        peer: SocketAddr,
        /// Start of the group that failed.
        offset: u64,
    },
}

/// Work on this machine failed, or the request cannot be stored here.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The remote name cannot be turned into a local file name.
    #[error("cannot download {name:?}: {source}")]
    InvalidName {
        /// The remote name.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// The partial copy is too large to resume over the classic exchange.
    #[error("the partial copy {} holds {partial} bytes, more than the classic exchange can resume (4 GiB); download it by hash from a rutella peer", .part.display())]
    PartialTooLarge {
        /// The partial file.
        part: PathBuf,
        /// Its size.
        partial: u64,
    },
    /// A file operation failed.
    #[error("{what} {} failed: {source}{}", .path.display(), io_hint(.source))]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl LocalError {
    /// A closure turning an I/O error of `what` on `path` into a
    /// [`LocalError::Io`].
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocalError {
        let path = path.to_owned();
        move |source| LocalError::Io { what, path, source }
    }

    /// Whether the disk (or the user's quota on it) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LocalError::Io { source, .. } if is_disk_full(source))
    }
}

/// Whether `e` says the disk, or the user's quota on it, is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether `e` says this user may not write there (or nobody may: a
/// read-only file system).
pub fn is_not_permitted(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

/// What to do about a local I/O failure, by its kind.
fn io_hint(e: &io::Error) -> &'static str {
    if is_disk_full(e) {
        "; the disk is full: free some space, then run the same download again to resume (the partial copy is kept)"
    } else if is_not_permitted(e) {
        "; this folder cannot be written: choose another downloads folder or change its permissions"
    } else {
        ""
    }
}

/// No source was given, or every one failed.
#[derive(Debug, thiserror::Error)]
pub enum ExhaustedError {
    /// A download by hash was given no source.
    #[error("no source to download {hash} from; search for the file first")]
    NoSources {
        /// The hash, in hex.
        hash: String,
    },
    /// Every source of a download by hash failed before it completed.
    #[error("download of {hash} stopped with {missing} of {size} bytes missing because every source failed ({}); the verified part is kept: run the same download again to resume", summarize(.sources))]
    SourcesExhausted {
        /// The hash, in hex.
        hash: String,
        /// Bytes still missing.
        missing: u64,
        /// The file's size (0 when no tree could be had).
        size: u64,
        /// What each source did.
        sources: Vec<SourceReport>,
    },
}

impl ExhaustedError {
    /// Whether no source has the file: none was given, or every one said
    /// it does not have it.
    pub fn nobody_has_it(&self) -> bool {
        match self {
            ExhaustedError::NoSources { .. } => true,
            ExhaustedError::SourcesExhausted { sources, .. } => {
                !sources.is_empty() && sources.iter().all(|s| s.outcome == SourceOutcome::NotFound)
            }
        }
    }
}

fn summarize(sources: &[SourceReport]) -> String {
    sources
        .iter()
        .map(|s| format!("{}: {}", s.peer, s.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

fn not_found_hint(partial: u64, part: &Path) -> String {
    if partial > 0 {
        format!(
            " past the {partial} bytes already in {}; if that partial copy is complete, rename it, otherwise delete it and download again",
            part.display()
        )
    } else {
        "; search again to find who has it".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(e: io::Error) -> DownloadError {
        LocalError::io("writing to", Path::new("/x/a.part"))(e).into()
    }

    #[test]
    fn a_full_disk_is_known_by_its_kind_and_says_what_to_do() {
        for e in [
            io::Error::from_raw_os_error(libc::ENOSPC),
            io::Error::from_raw_os_error(libc::EDQUOT),
            io::Error::from(io::ErrorKind::StorageFull),
        ] {
            let d = local(e);
            assert!(d.is_disk_full(), "{d:?}");
            let m = d.to_string();
            assert!(m.starts_with("writing to /x/a.part failed: "), "{m}");
            assert!(m.contains("the disk is full: free some space"), "{m}");
        }
        // The text alone decides nothing.
        let d = local(io::Error::other("No space left on device (os error 28)"));
        assert!(!d.is_disk_full());
        assert!(!d.to_string().contains("the disk is full"));
    }

    #[test]
    fn a_refused_permission_is_known_by_its_kind() {
        let d = local(io::Error::from_raw_os_error(libc::EACCES));
        assert!(!d.is_disk_full());
        assert!(d.to_string().contains("cannot be written"), "{d}");
        let d = local(io::Error::from_raw_os_error(libc::EROFS));
        assert!(d.to_string().contains("cannot be written"), "{d}");
        assert_eq!(
            d.io_error().and_then(io::Error::raw_os_error),
            Some(libc::EROFS)
        );
    }

    #[test]
    fn a_socket_error_is_kept_under_a_source_error() {
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let e: DownloadError = SourceError::Connection {
            peer,
            cause: Broken::from_read(
                io::Error::from(io::ErrorKind::ConnectionReset),
                Duration::from_secs(1),
                "receiving data",
            )
            .unwrap_or(Broken::Protocol(String::new())),
        }
        .into();
        assert_eq!(
            e.io_error().map(io::Error::kind),
            Some(io::ErrorKind::ConnectionReset)
        );
        assert!(!e.is_disk_full());
    }

    #[test]
    fn a_closed_connection_is_known_by_its_kind() {
        let io = |kind: io::ErrorKind| Broken::Io {
            during: "sending a request",
            source: kind.into(),
        };
        assert!(Broken::Closed { during: "x" }.is_closed());
        assert!(io(io::ErrorKind::ConnectionReset).is_closed());
        assert!(io(io::ErrorKind::BrokenPipe).is_closed());
        assert!(!io(io::ErrorKind::PermissionDenied).is_closed());
        let stalled = Broken::Stalled {
            idle: Duration::from_secs(1),
            during: "x",
        };
        assert!(!stalled.is_closed());
        assert!(!Broken::Protocol("connection reset".into()).is_closed());
    }

    #[test]
    fn reads_are_classified_by_kind() {
        let idle = Duration::from_secs(2);
        assert!(Broken::from_read(io::ErrorKind::Interrupted.into(), idle, "x").is_none());
        assert!(matches!(
            Broken::from_read(io::ErrorKind::WouldBlock.into(), idle, "x"),
            Some(Broken::Stalled { .. })
        ));
        assert!(matches!(
            Broken::from_read(io::ErrorKind::UnexpectedEof.into(), idle, "x"),
            Some(Broken::Closed { .. })
        ));
    }
}
