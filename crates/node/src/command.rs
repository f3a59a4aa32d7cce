//! What the event loop and the handles exchange: the commands sent to the
//! loop, the events it announces, and the stream of a search's answers.

use crate::config::PeerAddr;
use crate::downloads::DownloadId;
use rutella_proto::{Drops, HitFile, Peer, SearchId};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Things the user interface may want to announce.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A peer joined the list.
    PeerAdded(Peer),
    /// A peer left the list.
    PeerRemoved(Peer),
    /// A download completed.
    DownloadDone {
        /// Which.
        id: DownloadId,
        /// The name asked for.
        name: String,
        /// Where the file is.
        path: PathBuf,
    },
    /// A download stopped; its partial data is kept.
    DownloadFailed {
        /// Which.
        id: DownloadId,
        /// The name asked for.
        name: String,
        /// Why, in one sentence.
        reason: String,
    },
    /// The reachability check came to a new verdict.
    Reachability(rutella_proto::Reachability),
}

/// One peer's answer (or part of it) to a search.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// Who answered.
    pub peer: Peer,
    /// What it offers (possibly nothing).
    pub files: Vec<HitFile>,
}

/// The answers to one search, as they arrive. Ends when the search ends.
pub struct SearchStream {
    pub(crate) id: SearchId,
    pub(crate) rx: mpsc::Receiver<SearchHit>,
    pub(crate) tx: mpsc::Sender<Command>,
}

impl SearchStream {
    /// The next answer; `None` once every peer asked has answered or the
    /// search time ran out.
    pub async fn next(&mut self) -> Option<SearchHit> {
        self.rx.recv().await
    }
}

impl Drop for SearchStream {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Command::CancelSearch(self.id));
    }
}

pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<Peer>>),
    Answered(oneshot::Sender<usize>),
    Connect(PeerAddr),
    Search(String, mpsc::Sender<SearchHit>, oneshot::Sender<SearchId>),
    CancelSearch(SearchId),
    /// The ready datagrams of an answer to a query from this querier
    /// (possibly none), built off the loop.
    AnswerReady(Ipv4Addr, SocketAddrV4, Vec<Vec<u8>>),
    BudgetDrops(oneshot::Sender<Drops>),
    SetFilter(rutella_proto::TrigramBloom),
    /// A dial-back for a peer ended: whether the TCP connection worked.
    DialDone(rutella_proto::reach::Dial, bool),
}
