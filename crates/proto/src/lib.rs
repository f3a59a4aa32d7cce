//! rutella's protocol core: the UDP messages and the overlay state machine.
//!
//! Nothing here does I/O: no sockets, no clock, no threads. A driver (the
//! tokio node, the simulator, or a test) feeds bytes and time in and takes
//! datagrams and events out.
#![warn(missing_docs)]

pub mod message;
pub mod overlay;
pub mod scalable;

pub use message::{
    HitFile, Message, ParseError, Ping, Pong, Ports, Query, QueryHit, CLASSIC_TCP_PORT,
    CLASSIC_UDP_PORT, MAX_DATAGRAM,
};
pub use overlay::{Config, Event, IncomingQuery, Mode, Overlay, Peer, SearchId, Transmit};
pub use scalable::{QueryTrigrams, ScalableConfig, TrigramBloom};

/// Whether `name` matches a query: the query text is a case-insensitive
/// substring of it. An empty query matches nothing.
pub fn name_matches(query: &str, name: &str) -> bool {
    !query.is_empty() && name.to_lowercase().contains(&query.to_lowercase())
}
