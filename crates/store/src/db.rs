//! The SQLite side of the library: one row per shared file, so that hashes
//! survive restarts and are reused while size and modification time are
//! unchanged.

use crate::error::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the database remembers of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: Option<[u8; 32]>,
    /// SHA-1 (Gnutella's `urn:sha1`); a row from before this column has
    /// none, and its file is hashed again.
    pub(crate) sha1: Option<[u8; 20]>,
    /// Tiger tree root (Gnutella's `urn:tree:tiger`); a row from before
    /// this column has none, and its file is hashed again.
    pub(crate) tth: Option<[u8; 24]>,
}

/// A computed hash to record.
#[derive(Debug, Clone)]
pub(crate) struct HashRecord {
    pub(crate) share: String,
    pub(crate) rel: std::sync::Arc<str>,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: [u8; 32],
    pub(crate) sha1: [u8; 20],
    pub(crate) tth: [u8; 24],
}

/// A change to write.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Insert or replace the row of `rel`.
    Upsert { rel: String, row: Row },
    /// Delete the row of `rel`.
    Remove { rel: String },
}

pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

fn hash_of(blob: Option<Vec<u8>>) -> Option<[u8; 32]> {
    blob.and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
}

fn sha1_of(blob: Option<Vec<u8>>) -> Option<[u8; 20]> {
    blob.and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
}

fn tth_of(blob: Option<Vec<u8>>) -> Option<[u8; 24]> {
    blob.and_then(|b| <[u8; 24]>::try_from(b.as_slice()).ok())
}

/// Schema migrations: columns added since the first schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_sha1 = conn
        .prepare("SELECT 1 FROM pragma_table_info('files') WHERE name = 'sha1'")?
        .exists([])?;
    if !has_sha1 {
        // Rows of older libraries get NULL: their files are hashed again
        // (both hashes in one pass) at the next scan.
        conn.execute_batch("ALTER TABLE files ADD COLUMN sha1 BLOB;")?;
    }
    let has_tth = conn
        .prepare("SELECT 1 FROM pragma_table_info('files') WHERE name = 'tth'")?
        .exists([])?;
    if !has_tth {
        // The same: rows without a Tiger root are hashed again (all three
        // hashes in one pass).
        conn.execute_batch("ALTER TABLE files ADD COLUMN tth BLOB;")?;
    }
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path`, or an in-memory
    /// one.
    pub(crate) fn open(path: Option<&Path>) -> Result<Db, StoreError> {
        let shown = path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf);
        let err = |source| StoreError::Db {
            path: shown.clone(),
            source,
        };
        if let Some(dir) = path.and_then(Path::parent) {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let conn = match path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        if path.is_some() {
            // WAL: readers never wait for the hasher's writes; NORMAL sync is
            // safe with WAL (a crash loses at most the last hashes).
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(err)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(err)?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files (
                share    TEXT NOT NULL,
                rel      TEXT NOT NULL,
                size     INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                hash     BLOB,
                PRIMARY KEY (share, rel)
            );
            CREATE INDEX IF NOT EXISTS files_hash ON files(hash);",
        )
        .map_err(err)?;
        migrate(&conn).map_err(err)?;
        Ok(Db { conn, path: shown })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Every row of one share.
    pub(crate) fn load_share(&self, share: &str) -> Result<HashMap<String, Row>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rel, size, mtime_ns, hash, sha1, tth FROM files WHERE share = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([share], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Row {
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        hash: hash_of(r.get(3)?),
                        sha1: sha1_of(r.get(4)?),
                        tth: tth_of(r.get(5)?),
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (rel, row) = row.map_err(|e| self.err(e))?;
            out.insert(rel, row);
        }
        Ok(out)
    }

    /// The row of one file.
    pub(crate) fn get(&self, share: &str, rel: &str) -> Result<Option<Row>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT size, mtime_ns, hash, sha1, tth FROM files WHERE share = ?1 AND rel = ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![share, rel], |r| {
            Ok(Row {
                size: r.get::<_, i64>(0)? as u64,
                mtime_ns: r.get(1)?,
                hash: hash_of(r.get(2)?),
                sha1: sha1_of(r.get(3)?),
                tth: tth_of(r.get(4)?),
            })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Writes changes of one share in one transaction.
    pub(crate) fn apply(&mut self, share: &str, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(|e| StoreError::Db {
            path: self.path.clone(),
            source: e,
        })?;
        let res = (|| -> rusqlite::Result<()> {
            let mut up = tx.prepare_cached(
                "INSERT OR REPLACE INTO files (share, rel, size, mtime_ns, hash, sha1, tth)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut rm = tx.prepare_cached("DELETE FROM files WHERE share = ?1 AND rel = ?2")?;
            for c in changes {
                match c {
                    Change::Upsert { rel, row } => {
                        up.execute(params![
                            share,
                            rel,
                            row.size as i64,
                            row.mtime_ns,
                            row.hash.as_ref().map(|h| h.as_slice()),
                            row.sha1.as_ref().map(|h| h.as_slice()),
                            row.tth.as_ref().map(|h| h.as_slice())
                        ])?;
                    }
                    Change::Remove { rel } => {
                        rm.execute(params![share, rel])?;
                    }
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => tx.commit().map_err(|e| StoreError::Db {
                path: self.path.clone(),
                source: e,
            }),
            Err(e) => Err(StoreError::Db {
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    /// Records hashes of files, each only if its row still has the size
    /// and time the file had when hashed; one transaction.
    pub(crate) fn set_hashes(&mut self, items: &[HashRecord]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE files SET hash = ?1, sha1 = ?6, tth = ?7
                     WHERE share = ?2 AND rel = ?3 AND size = ?4 AND mtime_ns = ?5",
                )
                .map_err(err)?;
            for r in items {
                stmt.execute(params![
                    &r.hash[..],
                    r.share,
                    &*r.rel,
                    r.size as i64,
                    r.mtime_ns,
                    &r.sha1[..],
                    &r.tth[..]
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Forgets a whole share.
    pub(crate) fn remove_share(&self, share: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM files WHERE share = ?1", [share])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_stale_hashes_are_ignored() {
        let mut db = Db::open(None).unwrap();
        let row = |size| Row {
            size,
            mtime_ns: 5,
            hash: None,
            sha1: None,
            tth: None,
        };
        let up = |rel: &str, size| Change::Upsert {
            rel: rel.to_string(),
            row: row(size),
        };
        db.apply(
            "s",
            &[up("a_b/x", 1), up("a_b/y", 2), up("axb/z", 3), up("a_b", 4)],
        )
        .unwrap();
        let rec = |rel: &str, size| HashRecord {
            share: "s".to_string(),
            rel: rel.into(),
            size,
            mtime_ns: 5,
            hash: [9; 32],
            sha1: [8; 20],
            tth: [7; 24],
        };
        // The second is stale (other size): ignored.
        db.set_hashes(&[rec("a_b/x", 1), rec("a_b/y", 99)]).unwrap();
        assert_eq!(db.get("s", "a_b/x").unwrap().unwrap().hash, Some([9; 32]));
        assert_eq!(db.get("s", "a_b/x").unwrap().unwrap().sha1, Some([8; 20]));
        assert_eq!(db.get("s", "a_b/x").unwrap().unwrap().tth, Some([7; 24]));
        assert_eq!(db.get("s", "a_b/y").unwrap().unwrap().hash, None);
        db.apply(
            "s",
            &[Change::Remove {
                rel: "a_b/y".to_string(),
            }],
        )
        .unwrap();
        let left = db.load_share("s").unwrap();
        let mut names: Vec<_> = left.keys().cloned().collect();
        names.sort();
        assert_eq!(names, vec!["a_b", "a_b/x", "axb/z"]);
        db.remove_share("s").unwrap();
        assert!(db.load_share("s").unwrap().is_empty());
    }

    #[test]
    fn a_library_with_sha1_but_no_tth_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE files (share TEXT NOT NULL, rel TEXT NOT NULL,
                 size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash BLOB,
                 sha1 BLOB, PRIMARY KEY (share, rel));",
            )
            .unwrap();
            c.execute(
                "INSERT INTO files VALUES ('s', 'old', 3, 4, ?1, ?2)",
                [&[1u8; 32][..], &[2u8; 20][..]],
            )
            .unwrap();
        }
        let db = Db::open(Some(&path)).unwrap();
        let row = db.get("s", "old").unwrap().unwrap();
        assert_eq!((row.sha1, row.tth), (Some([2; 20]), None));
    }

    #[test]
    fn an_older_library_gains_the_sha1_and_tth_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE files (share TEXT NOT NULL, rel TEXT NOT NULL,
                 size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash BLOB,
                 PRIMARY KEY (share, rel));",
            )
            .unwrap();
            c.execute(
                "INSERT INTO files VALUES ('s', 'old', 3, 4, ?1)",
                [&[1u8; 32][..]],
            )
            .unwrap();
        }
        let db = Db::open(Some(&path)).unwrap();
        let row = db.get("s", "old").unwrap().unwrap();
        assert_eq!(
            (row.size, row.hash, row.sha1, row.tth),
            (3, Some([1; 32]), None, None)
        );
        drop(db);
        // Opening again finds the column in place.
        let mut db = Db::open(Some(&path)).unwrap();
        db.set_hashes(&[HashRecord {
            share: "s".into(),
            rel: "old".into(),
            size: 3,
            mtime_ns: 4,
            hash: [1; 32],
            sha1: [2; 20],
            tth: [3; 24],
        }])
        .unwrap();
        assert_eq!(db.get("s", "old").unwrap().unwrap().sha1, Some([2; 20]));
        assert_eq!(db.get("s", "old").unwrap().unwrap().tth, Some([3; 24]));
    }
}
