//! What the event loop and the handles exchange: the commands sent to the
//! loop, the events it announces, and the stream of a search's answers.

use crate::config::PeerAddr;
use crate::downloads::DownloadId;
use rutella_proto::{Drops, HitFile, Peer, PushInfo, PushRoute, SearchId};
use std::net::{IpAddr, SocketAddr};
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
    /// A peer started downloading a shared file from this node.
    UploadStarted {
        /// The downloading peer (its TCP address).
        peer: std::net::SocketAddr,
        /// The file, as named inside its shared folder.
        name: String,
    },
    /// A peer's download from this node ended (complete or not).
    UploadEnded {
        /// The downloading peer (its TCP address).
        peer: std::net::SocketAddr,
        /// The file, as named inside its shared folder.
        name: String,
        /// File bytes sent in that connection.
        bytes: u64,
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
    /// How it can be reached by push (`"PushId"`, `"Proxies"`,
    /// `"Firewalled"` of its answer).
    pub push: PushInfo,
    /// For a Gnutella servent's hit: how to fetch its files; `None` for a
    /// classic or rutella peer's answer.
    pub gnutella: Option<crate::gnutella_types::GnutellaSource>,
}

impl SearchHit {
    /// The network the answer came from: `"gnutella"`, `"rutella"` or
    /// `"classic"`.
    pub fn network(&self) -> &'static str {
        if self.gnutella.is_some() {
            "gnutella"
        } else if self.peer.rutella {
            "rutella"
        } else {
            "classic"
        }
    }
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
    /// The scalable overlay's tier: whether an ultrapeer, and its leaves
    /// (`None` in classic mode).
    Tier(oneshot::Sender<Option<(bool, usize)>>),
    Connect(PeerAddr),
    Forget(SocketAddr),
    Search(String, mpsc::Sender<SearchHit>, oneshot::Sender<SearchId>),
    CancelSearch(SearchId),
    /// The ready datagrams of an answer to a query from this querier
    /// (possibly none), built off the loop.
    AnswerReady(IpAddr, SocketAddr, Vec<Vec<u8>>),
    BudgetDrops(oneshot::Sender<Drops>),
    SetFilter(rutella_proto::TrigramBloom),
    /// Ask the source at this TCP address (whose answers said `info`) to
    /// connect to our TCP port with this token; the reply says where the
    /// push went, `None` when it could not be sent.
    Push {
        tcp: SocketAddr,
        info: PushInfo,
        token: u64,
        tcp_port: u16,
        reply: oneshot::Sender<Option<PushRoute>>,
    },
    /// A dial-back for a peer ended: whether the TCP connection worked.
    DialDone(rutella_proto::reach::Dial, bool),
    /// Ask the proxies of a source (whose answers said `info`) that are
    /// peers of ours for a hole punch towards our TCP port; the reply
    /// names the first proxy asked, `None` when none could be.
    PunchAsk {
        tcp: SocketAddr,
        info: PushInfo,
        token: u64,
        tcp_port: u16,
        reply: oneshot::Sender<Option<SocketAddr>>,
    },
    /// Invite a source (whose answers said `info`) through a proxy that is
    /// a peer of ours to circuit `circuit` at that proxy's relay; the
    /// reply is the relay's TCP address, `None` when there is no such
    /// proxy.
    RelayInvite {
        tcp: SocketAddr,
        info: PushInfo,
        circuit: [u8; 16],
        reply: oneshot::Sender<Option<SocketAddr>>,
    },
}
