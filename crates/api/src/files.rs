//! The files beside the settings through which clients find a running
//! daemon: `api-token` (the secret, mode 0600, made at first start) and
//! `api.json` (where the API listens, and the daemon's pid).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the token file, beside the settings file.
pub const TOKEN_FILE: &str = "api-token";
/// Name of the file saying where a running daemon listens.
pub const API_JSON: &str = "api.json";

/// Why a file of the API could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// "read", "create", "write".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("{0} holds no token: delete it and start the daemon again to make a new one")]
    Empty(PathBuf),
    /// The token file can be read by others.
    #[error(
        "{0} can be read by other users: run chmod 600 on it (or delete it to make a new token)"
    )]
    Open(PathBuf),
}

/// The content of `api.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiJson {
    /// Where the API listens, e.g. `http://127.0.0.1:6347`.
    pub url: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// A new token: 32 random bytes as 64 lowercase hex digits.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token in `path`, made (mode 0600) if the file does not exist.
/// Returns it and whether it was made now.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool), FileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let t = text.trim().to_string();
            if t.is_empty() {
                return Err(FileError::Empty(path.to_path_buf()));
            }
            Ok((t, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = new_token();
            write_private(path, format!("{token}\n").as_bytes(), "create")?;
            Ok((token, true))
        }
        Err(source) => Err(FileError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether a token file exists and holds a token.
pub fn token_exists(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| !t.trim().is_empty())
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Err(FileError::Open(path.to_path_buf())),
        Ok(_) => Ok(()),
        Err(source) => Err(FileError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), FileError> {
    Ok(())
}

/// Writes a file only its owner can read (created with mode 0600, never
/// readable by others in between), replacing it whole.
fn write_private(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `api.json`.
pub fn write_api_json(path: &Path, info: &ApiJson) -> Result<(), FileError> {
    let text = serde_json::to_string(info).unwrap_or_default();
    write_private(path, format!("{text}\n").as_bytes(), "write")
}

/// Reads `api.json`; `None` when it is missing or unreadable.
pub fn read_api_json(path: &Path) -> Option<ApiJson> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(TOKEN_FILE);
        let (t, made) = load_or_create_token(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(made);
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let (again, made) = load_or_create_token(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!made);
            assert_eq!(again, t);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(
                load_or_create_token(&path),
                Err(FileError::Open(_))
            ));
        }
        assert_ne!(new_token(), t);
    }
}
