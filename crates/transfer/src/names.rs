//! Local file names for downloads: sanitizing a remote name and picking a
//! name that does not overwrite anything.

use std::io;
use std::path::{Path, PathBuf};

/// Longest base name kept, in bytes, leaving room for ` (NNN)` and `.part`
/// under the usual 255-byte limit of file systems.
const MAX_BASENAME: usize = 200;

/// How many ` (N)` variants are tried before giving up.
const MAX_VARIANTS: u32 = 10_000;

/// Why a remote file name cannot be used locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing usable is left once the name is cleaned up.
    #[error("the file name {name:?} has no usable last component; ask for a file by its own name")]
    Empty {
        /// The name as received.
        name: String,
    },
}

/// Turns a remote file name into a safe local base name.
///
/// Keeps the last `/`-separated component, replaces backslashes, NUL and other
/// control characters with `_`, strips leading dots (so `..` and hidden names
/// cannot be produced) and trailing spaces, and cuts the result to 200 bytes
/// at a character boundary. Fails when nothing is left.
pub fn sanitize_basename(name: &str) -> Result<String, NameError> {
    let last = name.rsplit('/').next().unwrap_or("");
    let replaced: String = last
        .chars()
        .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    let trimmed = replaced
        .trim_start_matches('.')
        .trim_end_matches([' ', '.']);
    let mut end = trimmed.len().min(MAX_BASENAME);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let out = &trimmed[..end];
    if out.is_empty() {
        return Err(NameError::Empty {
            name: name.to_owned(),
        });
    }
    Ok(out.to_owned())
}

/// The `n`-th alternative of `base`: `name (n).ext`, or `name (n)` without an
/// extension. `n == 0` gives `base` itself.
pub(crate) fn variant(base: &str, n: u32) -> String {
    if n == 0 {
        return base.to_owned();
    }
    match base.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &base[..dot], &base[dot..]),
        _ => format!("{base} ({n})"),
    }
}

/// Moves the finished `part` file to `dir/base`, or to the first free
/// `name (N).ext` when that exists. Never replaces an existing file.
pub(crate) fn move_into_place(part: &Path, dir: &Path, base: &str) -> io::Result<PathBuf> {
    for n in 0..MAX_VARIANTS {
        let target = dir.join(variant(base, n));
        // A hard link fails atomically when the target exists, so two
        // downloads finishing at once cannot overwrite each other.
        match std::fs::hard_link(part, &target) {
            Ok(()) => {
                std::fs::remove_file(part)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // File systems without hard links: check, then rename.
                if std::fs::symlink_metadata(&target).is_ok() {
                    continue;
                }
                std::fs::rename(part, &target)?;
                return Ok(target);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "every name from {base:?} to {:?} is taken in {}",
            variant(base, MAX_VARIANTS - 1),
            dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_last_component() {
        assert_eq!(sanitize_basename("a/b/c.txt").unwrap(), "c.txt");
        assert_eq!(sanitize_basename("c.txt").unwrap(), "c.txt");
    }

    #[test]
    fn rejects_dots_and_empty() {
        assert!(sanitize_basename("..").is_err());
        assert!(sanitize_basename("a/..").is_err());
        assert!(sanitize_basename("").is_err());
        assert!(sanitize_basename("dir/").is_err());
        assert_eq!(sanitize_basename(".hidden").unwrap(), "hidden");
    }

    #[test]
    fn replaces_backslash_and_nul() {
        assert_eq!(sanitize_basename("..\\..\\x").unwrap(), "_.._x");
        assert_eq!(sanitize_basename("a\0b").unwrap(), "a_b");
    }

    #[test]
    fn cuts_long_names_on_char_boundary() {
        let long = "é".repeat(300);
        let s = sanitize_basename(&long).unwrap();
        assert!(s.len() <= MAX_BASENAME);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn variants() {
        assert_eq!(variant("a.txt", 0), "a.txt");
        assert_eq!(variant("a.txt", 2), "a (2).txt");
        assert_eq!(variant("archive.tar.gz", 1), "archive.tar (1).gz");
        assert_eq!(variant("noext", 1), "noext (1)");
    }

    #[test]
    fn move_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), b"old").unwrap();
        std::fs::write(dir.path().join("f (1).txt"), b"old1").unwrap();
        let part = dir.path().join("f.txt.part");
        std::fs::write(&part, b"new").unwrap();
        let at = move_into_place(&part, dir.path(), "f.txt").unwrap();
        assert_eq!(at, dir.path().join("f (2).txt"));
        assert_eq!(std::fs::read(dir.path().join("f.txt")).unwrap(), b"old");
        assert_eq!(std::fs::read(&at).unwrap(), b"new");
        assert!(!part.exists());
    }

    proptest! {
        #[test]
        fn sanitized_names_are_single_safe_components(name in ".{0,300}") {
            if let Ok(s) = sanitize_basename(&name) {
                prop_assert!(!s.is_empty());
                prop_assert!(!s.contains('/'));
                prop_assert!(!s.contains('\\'));
                prop_assert!(!s.contains('\0'));
                prop_assert!(!s.starts_with('.'));
                prop_assert!(s.len() <= MAX_BASENAME);
            }
        }
    }
}
