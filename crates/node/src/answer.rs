//! Answering queries: planned on the event loop, the library lookup and the
//! encoding done on the blocking pool, with a bound on how many are in
//! flight in all and per querier.

use crate::command::Command;
use rutella_proto::{AnswerPlan, HitFile, IncomingQuery};
use rutella_store::Library;
use std::collections::HashMap;
use std::net::IpAddr;
use tokio::sync::mpsc;

/// Answers to queries being computed at once; more are dropped.
const MAX_QUERIES_IN_FLIGHT: usize = 64;
/// Of those, at most this many for one querier's address, so that one
/// address cannot take every slot.
const MAX_QUERIES_IN_FLIGHT_PER_SOURCE: usize = 8;
/// Most files one answer names.
const MAX_ANSWER_FILES: usize = 500;

/// Queries whose answers are being computed, in all and by querier.
#[derive(Default)]
pub(crate) struct InFlight {
    total: usize,
    /// At most [`MAX_QUERIES_IN_FLIGHT`] entries.
    by_source: HashMap<IpAddr, usize>,
}

impl InFlight {
    pub(crate) fn start(&mut self, source: IpAddr) -> bool {
        let mine = self.by_source.entry(source).or_insert(0);
        if self.total >= MAX_QUERIES_IN_FLIGHT || *mine >= MAX_QUERIES_IN_FLIGHT_PER_SOURCE {
            if *mine == 0 {
                self.by_source.remove(&source);
            }
            return false;
        }
        *mine += 1;
        self.total += 1;
        true
    }

    pub(crate) fn end(&mut self, source: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

/// Builds the answer to `q` as `plan` says, off the event loop (on the
/// blocking pool); the ready datagrams come back to the loop as
/// [`Command::AnswerReady`], so the loop only sends them and a query,
/// however many files it matches, never holds up pings.
pub(crate) fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    library: Library,
    tx: mpsc::Sender<Command>,
    q: IncomingQuery,
    plan: AnswerPlan,
    own_ip: IpAddr,
) {
    let source = q.reply_to.ip();
    tasks.spawn(async move {
        let dest = plan.dest();
        let datagrams =
            tokio::task::spawn_blocking(move || build_answer(&library, &q, &plan, own_ip))
                .await
                .unwrap_or_default();
        let _ = tx.send(Command::AnswerReady(source, dest, datagrams)).await;
    });
}

/// The datagrams answering `q`: the library lookup and the encoding, both
/// linear in the files found (at most [`MAX_ANSWER_FILES`]).
fn build_answer(
    library: &Library,
    q: &IncomingQuery,
    plan: &AnswerPlan,
    own_ip: IpAddr,
) -> Vec<Vec<u8>> {
    let rutella = q.from.rutella;
    let found: Vec<HitFile> = match rutella_proto::parse_hash_query(&q.text) {
        // A query for a content hash: the file with that hash, whatever its name.
        Some(hash) => library
            .by_hash(&hash)
            .map(|f| HitFile {
                name: f.name,
                size: Some(f.size),
                hash: Some(hash),
            })
            .into_iter()
            .collect(),
        None => library
            .search(&q.text, MAX_ANSWER_FILES)
            .into_iter()
            .map(|f| HitFile {
                name: f.name,
                size: Some(f.size),
                hash: f.hash,
            })
            .collect(),
    };
    let files: Vec<HitFile> = found
        .into_iter()
        .map(|f| HitFile {
            // Classic peers cannot use sizes and hashes: leave room for names.
            size: f.size.filter(|_| rutella),
            hash: f.hash.filter(|_| rutella),
            name: f.name,
        })
        .collect();
    tracing::debug!(from = %q.reply_to, text = ?q.text, hits = files.len(), "answering query");
    plan.encode(own_ip, &files)
}
