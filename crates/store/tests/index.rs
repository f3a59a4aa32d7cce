//! The indexed library: hashes, their reuse across restarts, and changes
//! seen while running. Every wait is bounded by a deadline.

use rutella_store::{Library, LibraryConfig, ResolveError};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn b3(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// Polls `cond` until it holds or the deadline passes. For changes on disk:
/// the library's monitor thread picks them up and announces nothing.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for: {what}");
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, data).unwrap();
}

fn hash_of(lib: &Library, name: &str) -> Option<[u8; 32]> {
    lib.list()
        .into_iter()
        .find(|f| f.name == name)
        .and_then(|f| f.hash)
}

struct Setup {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    db: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write(&share.join("one.txt"), b"first file");
    write(&share.join("dir/two.bin"), &vec![7u8; 3 * 1024 * 1024 + 5]);
    write(&share.join("dir/sub/three.mp3"), b"");
    // The state folder does not exist yet: opening creates it.
    let db = tmp.path().join("state/library.sqlite");
    Setup {
        _tmp: tmp,
        share,
        db,
    }
}

fn config(s: &Setup, watch: bool, rescan: Duration) -> LibraryConfig {
    let mut cfg = LibraryConfig::new(vec![s.share.clone()]);
    cfg.db_path = Some(s.db.clone());
    cfg.watch = watch;
    cfg.rescan_interval = rescan;
    cfg
}

const NEVER: Duration = Duration::from_secs(3600);

#[test]
fn hashes_are_blake3_and_progress_completes() {
    let s = setup();
    let lib = Library::open(config(&s, false, NEVER)).unwrap();
    assert_eq!(lib.len(), 3, "listed as soon as open returns");
    assert!(lib.wait_idle(DEADLINE));
    let p = lib.progress();
    assert!(p.is_complete(), "{p:?}");
    assert_eq!(p.files_total, 3);
    assert_eq!(p.bytes_total, 10 + 3 * 1024 * 1024 + 5);
    assert_eq!(p.bytes_hashed, p.bytes_total);
    assert_eq!(hash_of(&lib, "one.txt"), Some(b3(b"first file")));
    assert_eq!(
        hash_of(&lib, "dir/two.bin"),
        Some(b3(&vec![7u8; 3 * 1024 * 1024 + 5]))
    );
    assert_eq!(hash_of(&lib, "dir/sub/three.mp3"), Some(b3(b"")));
    assert_eq!(lib.stats().files_hashed, 3);
    let r = lib.resolve("one.txt").unwrap();
    assert_eq!(r.hash, Some(b3(b"first file")));
    let found = lib.by_hash(&b3(b"first file")).unwrap();
    assert_eq!(found.name, "one.txt");
    assert_eq!(
        found.path,
        fs::canonicalize(s.share.join("one.txt")).unwrap()
    );
    assert!(lib.by_hash(&[0; 32]).is_none());
}

#[test]
fn reopening_reuses_hashes_and_rehashes_only_changed_files() {
    let s = setup();
    {
        let lib = Library::open(config(&s, false, NEVER)).unwrap();
        assert!(lib.wait_idle(DEADLINE));
        assert_eq!(lib.stats().files_hashed, 3);
    }
    {
        let lib = Library::open(config(&s, false, NEVER)).unwrap();
        // Known right away, from the database, before any hashing.
        assert_eq!(hash_of(&lib, "one.txt"), Some(b3(b"first file")));
        assert!(lib.progress().is_complete());
        assert!(lib.wait_idle(DEADLINE));
        assert_eq!(lib.stats().files_hashed, 0, "nothing hashed again");
    }
    write(&s.share.join("one.txt"), b"first file, edited");
    fs::remove_file(s.share.join("dir/sub/three.mp3")).unwrap();
    let lib = Library::open(config(&s, false, NEVER)).unwrap();
    assert!(lib.wait_idle(DEADLINE));
    assert_eq!(lib.stats().files_hashed, 1, "only the edited file");
    assert_eq!(hash_of(&lib, "one.txt"), Some(b3(b"first file, edited")));
    assert_eq!(lib.len(), 2);
}

fn changes_are_seen(watch: bool, rescan: Duration) {
    let s = setup();
    let lib = Library::open(config(&s, watch, rescan)).unwrap();
    assert!(lib.wait_idle(DEADLINE));
    let old = b3(b"first file");

    // Changed: new hash, old hash no longer served.
    write(&s.share.join("one.txt"), b"changed content!");
    eventually("changed file gets its new hash", || {
        hash_of(&lib, "one.txt") == Some(b3(b"changed content!"))
    });
    assert!(lib.by_hash(&old).is_none());
    assert_eq!(
        lib.by_hash(&b3(b"changed content!")).unwrap().name,
        "one.txt"
    );

    // Added, in a new folder.
    write(&s.share.join("newdir/added.flac"), b"added");
    eventually("added file is found with its hash", || {
        lib.search("ADDED", 10)
            .first()
            .is_some_and(|f| f.name == "newdir/added.flac" && f.hash == Some(b3(b"added")))
    });

    // Removed: neither found nor resolved.
    fs::remove_file(s.share.join("dir/two.bin")).unwrap();
    assert_eq!(lib.resolve("dir/two.bin"), Err(ResolveError::NotFound));
    eventually("removed file is no longer found", || {
        lib.search("two", 10).is_empty()
    });

    // Renamed: old name gone, new name found with the same hash.
    fs::rename(s.share.join("dir/sub/three.mp3"), s.share.join("dir/3.mp3")).unwrap();
    eventually("renamed file is found under its new name", || {
        let hits = lib.search(".mp3", 10);
        hits.len() == 1 && hits[0].name == "dir/3.mp3" && hits[0].hash == Some(b3(b""))
    });

    // A folder renamed to a hidden name stops being offered.
    fs::rename(s.share.join("newdir"), s.share.join(".newdir")).unwrap();
    eventually("files in a folder made hidden disappear", || {
        lib.search("added", 10).is_empty()
    });

    let stats = lib.stats();
    if watch {
        assert!(stats.refreshes > 0, "{stats:?}");
        assert_eq!(stats.rescans, 1, "only the walk at open: {stats:?}");
    } else {
        assert_eq!(stats.refreshes, 0, "{stats:?}");
        assert!(stats.rescans > 1, "{stats:?}");
    }
}

#[test]
fn changes_are_seen_through_notifications() {
    changes_are_seen(true, NEVER);
}

#[test]
fn changes_are_seen_by_periodic_rescan_without_notifications() {
    changes_are_seen(false, Duration::from_millis(100));
}

#[test]
fn partial_downloads_appear_when_renamed_to_their_final_name() {
    let s = setup();
    let lib = Library::open(config(&s, true, NEVER)).unwrap();
    let part = s.share.join("film.mkv.part");
    write(&part, b"half");
    // A file written after the partial one: once the library offers it, it
    // has seen the partial file too.
    write(&s.share.join("marker.ogg"), b"after the partial file");
    eventually("a file written later is offered", || {
        lib.search("marker", 10)
            .first()
            .is_some_and(|f| f.hash == Some(b3(b"after the partial file")))
    });
    assert!(lib.wait_idle(DEADLINE));
    assert!(lib.search("film", 10).is_empty());
    write(&part, b"half and the rest");
    fs::rename(&part, s.share.join("film.mkv")).unwrap();
    eventually("completed download is offered with its hash", || {
        lib.search("film", 10)
            .first()
            .is_some_and(|f| f.hash == Some(b3(b"half and the rest")))
    });
}

#[test]
fn removed_share_forgets_its_files() {
    let s = setup();
    let lib = Library::open(config(&s, false, NEVER)).unwrap();
    assert!(lib.wait_idle(DEADLINE));
    assert!(lib.remove_share(&s.share));
    assert!(lib.by_hash(&b3(b"first file")).is_none());
    assert_eq!(lib.progress().files_total, 0);
    lib.add_share(&s.share).unwrap();
    assert!(lib.wait_idle(DEADLINE));
    assert_eq!(lib.stats().files_hashed, 6, "hashed again after re-adding");
}

#[test]
fn hashes_are_in_the_database_once_idle() {
    let s = setup();
    let first = Library::open(config(&s, false, NEVER)).unwrap();
    assert!(first.wait_idle(DEADLINE));
    // The first library is still open: its hashes must already be on disk.
    let second = Library::open(config(&s, false, NEVER)).unwrap();
    assert!(second.progress().is_complete(), "{:?}", second.progress());
    assert!(second.wait_idle(DEADLINE));
    assert_eq!(second.stats().files_hashed, 0);
    drop(first);
}

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

fn sha1_of(lib: &Library, name: &str) -> Option<[u8; 20]> {
    lib.list()
        .into_iter()
        .find(|f| f.name == name)
        .and_then(|f| f.sha1)
}

#[test]
fn sha1_is_kept_beside_blake3_and_found_by_lookup() {
    let s = setup();
    {
        let lib = Library::open(config(&s, false, NEVER)).unwrap();
        assert!(lib.wait_idle(DEADLINE));
        assert_eq!(sha1_of(&lib, "one.txt"), Some(sha1(b"first file")));
        assert_eq!(
            sha1_of(&lib, "dir/two.bin"),
            Some(sha1(&vec![7u8; 3 * 1024 * 1024 + 5]))
        );
        assert_eq!(sha1_of(&lib, "dir/sub/three.mp3"), Some(sha1(b"")));
        let found = lib.by_sha1(&sha1(b"first file")).unwrap();
        assert_eq!(found.name, "one.txt");
        assert_eq!(found.sha1, Some(sha1(b"first file")));
        assert_eq!(found.hash, Some(b3(b"first file")));
        assert!(lib.by_sha1(&[0; 20]).is_none());
        assert_eq!(
            lib.resolve("one.txt").unwrap().sha1,
            Some(sha1(b"first file"))
        );
        // The Tiger tree root, computed in the same pass.
        let tth = rutella_gnutella::tiger::root(b"first file");
        assert_eq!(found.tth, Some(tth));
        assert_eq!(lib.resolve("one.txt").unwrap().tth, Some(tth));
        let listed = lib.list().into_iter().find(|f| f.name == "dir/two.bin");
        assert_eq!(
            listed.and_then(|f| f.tth),
            Some(rutella_gnutella::tiger::root(&vec![
                7u8;
                3 * 1024 * 1024 + 5
            ]))
        );
    }
    // Reopened: the hashes come from the database, nothing is read again.
    let lib = Library::open(config(&s, false, NEVER)).unwrap();
    assert_eq!(sha1_of(&lib, "one.txt"), Some(sha1(b"first file")));
    assert_eq!(
        lib.by_sha1(&sha1(b"first file")).and_then(|f| f.tth),
        Some(rutella_gnutella::tiger::root(b"first file"))
    );
    assert!(lib.wait_idle(DEADLINE));
    assert_eq!(lib.stats().files_hashed, 0);
    // A changed file loses its old SHA-1 at once and gets the new one.
    write(&s.share.join("one.txt"), b"first file, edited");
    lib.rescan().unwrap();
    assert!(lib.by_sha1(&sha1(b"first file")).is_none());
    assert!(lib.wait_idle(DEADLINE));
    assert_eq!(
        lib.by_sha1(&sha1(b"first file, edited")).map(|f| f.name),
        Some("one.txt".to_string())
    );
}

#[test]
fn a_library_from_before_sha1_is_migrated_and_hashed_again_once() {
    let s = setup();
    {
        let lib = Library::open(config(&s, false, NEVER)).unwrap();
        assert!(lib.wait_idle(DEADLINE));
    }
    // Make it a library of the first schema: no sha1 column.
    {
        let c = rusqlite::Connection::open(&s.db).unwrap();
        c.execute_batch("ALTER TABLE files DROP COLUMN sha1;")
            .unwrap();
    }
    {
        let lib = Library::open(config(&s, false, NEVER)).unwrap();
        assert!(lib.wait_idle(DEADLINE));
        assert_eq!(lib.stats().files_hashed, 3, "hashed again for SHA-1");
        assert_eq!(sha1_of(&lib, "one.txt"), Some(sha1(b"first file")));
        assert_eq!(hash_of(&lib, "one.txt"), Some(b3(b"first file")));
    }
    let lib = Library::open(config(&s, false, NEVER)).unwrap();
    assert!(lib.wait_idle(DEADLINE));
    assert_eq!(lib.stats().files_hashed, 0, "only once");
}
