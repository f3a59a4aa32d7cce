//! Background hashing of shared files: BLAKE3 (the value `b3sum` prints)
//! and, in the same pass over the bytes, SHA-1 (Gnutella's `urn:sha1`)
//! and the Tiger tree root (Gnutella's `urn:tree:tiger`).

use crate::core::Core;
use crate::db::HashRecord;
use crate::walk;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffer: large enough for BLAKE3's SIMD to hash many chunks at once.
const BUF: usize = 1 << 20;

/// Outcome of hashing one file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hashed {
    /// The hash of the file, which had this size and time throughout.
    Done {
        hash: [u8; 32],
        sha1: [u8; 20],
        tth: [u8; 24],
        size: u64,
        mtime_ns: i64,
    },
    /// The file changed while it was read.
    Changed,
    /// The library is closing.
    Stopped,
}

/// Hashes the file at `path`, checking `stop` between reads.
pub(crate) fn hash_file(path: &Path, stop: impl Fn() -> bool) -> io::Result<Hashed> {
    let mut file = File::open(path)?;
    let before = file.metadata()?;
    let mut hasher = blake3::Hasher::new();
    let mut sha1 = sha1_smol::Sha1::new();
    let mut tth = rutella_gnutella::tiger::TreeHasher::new();
    let mut buf = vec![0u8; BUF];
    loop {
        if stop() {
            return Ok(Hashed::Stopped);
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        sha1.update(&buf[..n]);
        tth.update(&buf[..n]);
    }
    let after = file.metadata()?;
    let (size, mtime_ns) = (before.len(), walk::mtime_ns(&before));
    if after.len() != size || walk::mtime_ns(&after) != mtime_ns {
        return Ok(Hashed::Changed);
    }
    Ok(Hashed::Done {
        hash: *hasher.finalize().as_bytes(),
        sha1: sha1.digest().bytes(),
        tth: tth.finish(),
        size,
        mtime_ns,
    })
}

/// Hashes recorded in the database per transaction (at most).
const BATCH: usize = 512;
/// Longest time a computed hash waits to be recorded.
const BATCH_DELAY: Duration = Duration::from_millis(500);

fn flush(core: &Core, batch: &mut Vec<HashRecord>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = core.db().set_hashes(batch) {
        tracing::warn!(error = %e, "cannot record file hashes; they will be computed again after a restart");
    }
    batch.clear();
}

/// Body of the hashing thread: takes queued files one by one until the
/// library closes. Hashes are visible in memory at once and written to the
/// database in batches (one transaction per file would make hashing many
/// small files wait on the disk).
pub(crate) fn run(core: Arc<Core>) {
    let mut batch: Vec<HashRecord> = Vec::new();
    let mut oldest = Instant::now();
    loop {
        if batch.len() >= BATCH || (!batch.is_empty() && oldest.elapsed() >= BATCH_DELAY) {
            flush(&core, &mut batch);
        }
        let job = {
            let mut q = core.queue();
            loop {
                if core.stopped() {
                    drop(q);
                    flush(&core, &mut batch);
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    q.queued.remove(&job);
                    q.busy = true;
                    break job;
                }
                if !batch.is_empty() {
                    // Idle: record what is pending before sleeping (still
                    // busy for `wait_idle` until it is written).
                    q.busy = true;
                    drop(q);
                    flush(&core, &mut batch);
                    q = core.queue();
                    continue;
                }
                q.busy = false;
                if q.jobs.capacity() > 1024 {
                    // A large first hashing is over: give the memory back.
                    q.jobs.shrink_to_fit();
                    q.queued.shrink_to_fit();
                }
                q = core.queue_cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        if let Some(rec) = hash_one(&core, job.0, &job.1) {
            if batch.is_empty() {
                oldest = Instant::now();
            }
            batch.push(rec);
        }
        core.queue().busy = false;
    }
}

/// Hashes one queued file; returns the record to write if the hash was
/// stored in the index.
fn hash_one(core: &Core, share_id: u32, rel: &Arc<str>) -> Option<HashRecord> {
    let share = {
        let st = core.read();
        let share = st.share(share_id).cloned()?;
        let needed = st
            .index
            .find(share_id, rel)
            .and_then(|id| st.index.get(id))
            .is_some_and(|e| e.hash.is_none() || e.sha1.is_none() || e.tth.is_none());
        if !needed {
            return None;
        }
        share
    };
    // Same checks as for serving: only files inside the share are read.
    let file = match core.resolve_in(&share, rel, &core.excludes()) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(name = %rel, reason = %e, "not hashing a file that is no longer shared");
            return None;
        }
    };
    let result = match hash_file(&file.path, || core.stopped()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(file = %file.path.display(), error = %e, "cannot read shared file to hash it; it is offered without a hash");
            return None;
        }
    };
    let Hashed::Done {
        hash,
        sha1,
        tth,
        size,
        mtime_ns,
    } = result
    else {
        // Changed while read: the change is seen by the next refresh or
        // rescan, which queues the file again.
        return None;
    };
    core.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
    core.counters
        .bytes_hashed
        .fetch_add(size, Ordering::Relaxed);
    let recorded = {
        let mut st = core.write();
        match st.index.find(share_id, rel) {
            Some(id)
                if st
                    .index
                    .get(id)
                    .is_some_and(|e| e.size == size && e.mtime_ns == mtime_ns) =>
            {
                st.index.set_hashes(id, Some(hash), Some(sha1), Some(tth));
                true
            }
            _ => false,
        }
    };
    if !recorded {
        return None;
    }
    tracing::trace!(name = %rel, "hashed");
    Some(HashRecord {
        share: share.key(),
        rel: rel.clone(),
        size,
        mtime_ns,
        hash,
        sha1,
        tth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_b3sum() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // Known BLAKE3 value of the empty input.
        std::fs::write(&p, b"").unwrap();
        let Hashed::Done {
            hash, size, tth, ..
        } = hash_file(&p, || false).unwrap()
        else {
            panic!("not hashed");
        };
        assert_eq!(size, 0);
        // The published Tiger tree root of the empty file.
        assert_eq!(
            rutella_gnutella::huge::base32_encode(&tth),
            "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ"
        );
        assert_eq!(
            blake3::Hash::from(hash).to_hex().as_str(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        // More than one buffer.
        let data: Vec<u8> = (0..(BUF * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let Hashed::Done {
            hash, sha1, tth, ..
        } = hash_file(&p, || false).unwrap()
        else {
            panic!("not hashed");
        };
        assert_eq!(hash, *blake3::hash(&data).as_bytes());
        // SHA-1 and the Tiger root in the same pass, over buffer edges.
        assert_eq!(sha1, sha1_smol::Sha1::from(&data).digest().bytes());
        assert_eq!(tth, rutella_gnutella::tiger::root(&data));
        assert_eq!(hash_file(&p, || true).unwrap(), Hashed::Stopped);
    }
}
