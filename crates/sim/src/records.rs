//! The record of each search of a simulation (which peers could answer it,
//! what came of it), kept by the engine and the searches and read by the
//! summary.

use rutella_proto::SearchId;
use std::sync::Arc;

/// Which peers could answer a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unanswerable,
    Unique,
    Middle,
    Popular,
}

/// One search and what came of it.
pub(crate) struct QRec {
    pub(crate) t0: u64,
    pub(crate) text: String,
    pub(crate) matches: Arc<Vec<u32>>,
    pub(crate) querier: Option<(usize, u32)>,
    pub(crate) search: Option<SearchId>,
    pub(crate) class: Class,
    pub(crate) msgs: u64,
    pub(crate) first_hit: Option<(u64, u64)>,
}

/// The hops an answer travelled, from its `"Hops"` field (1 when absent).
pub(crate) fn hops_of(extra: &serde_json::Map<String, serde_json::Value>) -> u64 {
    extra.get("Hops").and_then(|v| v.as_u64()).unwrap_or(1)
}
