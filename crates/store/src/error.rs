//! Error types of the store.

use std::path::PathBuf;

/// An operation on the library failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A folder given as a share does not exist or is not a directory.
    #[error("shared folder {path} is not an existing directory: create it or fix the path")]
    NotADirectory {
        /// The path as given.
        path: PathBuf,
    },
    /// Reading the file system failed.
    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The library database could not be opened, read or written.
    #[error("library database {path}: {source}; check the path and free disk space, or delete the file to rebuild the index")]
    Db {
        /// The database file (`:memory:` for an in-memory one).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A background thread could not be started.
    #[error("cannot start the library's {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a requested file name was not resolved to a shared file.
///
/// Every variant is a refusal: the caller must answer "not found" (or an
/// equivalent) and never fall back to opening the name itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The name is empty.
    #[error("empty file name")]
    Empty,
    /// The name is longer than [`crate::MAX_NAME_LEN`] bytes.
    #[error("file name of {len} bytes is longer than the limit of {max} bytes")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a NUL byte.
    #[error("file name contains a NUL byte")]
    NulByte,
    /// The name contains a control character other than NUL.
    #[error("file name contains a control character")]
    ControlChar,
    /// The name contains a backslash (names use `/` only).
    #[error("file name contains a backslash; names are relative paths separated by '/'")]
    Backslash,
    /// The name starts with a drive letter such as `C:`, or contains a `:`.
    #[error("file name contains a drive letter or ':'")]
    Colon,
    /// The name is an absolute path.
    #[error("file name is an absolute path; names are relative to a shared folder")]
    Absolute,
    /// The name has a `.` or `..` component.
    #[error("file name has a '.' or '..' component")]
    DotComponent,
    /// The name has an empty component (`a//b`, trailing `/`).
    #[error("file name has an empty path component")]
    EmptyComponent,
    /// The name (or the file a symbolic link leads to) is hidden: a component starts with `.`.
    #[error("file is hidden (a path component starts with '.') and is never shared")]
    Hidden,
    /// The name (or the file a symbolic link leads to) is a partial download (`.part`).
    #[error("file is a partial download (.part) and is never shared")]
    Partial,
    /// The file lies under a folder excluded from sharing.
    #[error("file lies in a folder excluded from sharing")]
    Excluded,
    /// A symbolic link on the way leads outside the shared folder.
    #[error("file lies outside the shared folders (a symbolic link leads out)")]
    OutsideShare,
    /// The name exists but is not a regular file (a directory, a device, ...).
    #[error("not a regular file")]
    NotAFile,
    /// No shared folder holds a file of that name.
    #[error("no shared file of that name")]
    NotFound,
}

impl ResolveError {
    /// True for refusals that point at a probe (a path that tries to leave
    /// the shares or reach a file that is never shared), as opposed to a
    /// plain "not found".
    pub fn is_suspicious(&self) -> bool {
        !matches!(self, ResolveError::NotFound | ResolveError::NotAFile)
    }
}
