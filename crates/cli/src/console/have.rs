//! "You already have it": a copy of a file, known by its hash, in the
//! library or in the downloads folder.

use rutella_store::Library;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most files of the right size in the downloads folder whose content
/// is hashed to compare (the folder is not searched deeper than its top).
const MAX_CANDIDATES: usize = 32;
/// The most entries of the downloads folder looked at.
const MAX_ENTRIES: usize = 100_000;

/// Where a file with this content already is: a shared file the library
/// knows by its hash, else a file of the same size at the top of the
/// downloads folder whose BLAKE3 hash is `hash`. Reads files: call off the
/// event loop.
pub(crate) fn find(
    library: &Library,
    downloads: &Path,
    hash: &[u8; 32],
    size: Option<u64>,
) -> Option<PathBuf> {
    if let Some(f) = library.by_hash(hash) {
        return Some(f.path);
    }
    let size = size?;
    let entries = std::fs::read_dir(downloads).ok()?;
    let mut hashed = 0;
    for entry in entries.take(MAX_ENTRIES).flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.len() != size {
            continue;
        }
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "part") {
            continue;
        }
        if hashed == MAX_CANDIDATES {
            break;
        }
        hashed += 1;
        if hash_of(&path).is_some_and(|h| h == *hash) {
            return Some(path);
        }
    }
    None
}

fn hash_of(path: &Path) -> Option<[u8; 32]> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_same_content_in_the_downloads_folder_is_found() {
        let shared = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut cfg = rutella_store::LibraryConfig::new(vec![shared.path().to_path_buf()]);
        cfg.watch = false;
        let lib = Library::open(cfg).unwrap();
        let data = b"some bytes of a song";
        let hash = *blake3::hash(data).as_bytes();
        let size = Some(data.len() as u64);
        assert_eq!(find(&lib, downloads.path(), &hash, size), None);
        // Same size, other content: not it.
        std::fs::write(downloads.path().join("a.ogg"), b"other bytes of a son").unwrap();
        assert_eq!(find(&lib, downloads.path(), &hash, size), None);
        let copy = downloads.path().join("b.ogg");
        std::fs::write(&copy, data).unwrap();
        assert_eq!(find(&lib, downloads.path(), &hash, size), Some(copy));
        assert_eq!(find(&lib, downloads.path(), &hash, None), None);
    }
}
