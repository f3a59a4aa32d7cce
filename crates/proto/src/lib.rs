//! rutella's protocol core: the UDP messages and the overlay state machine.
//!
//! Nothing here does I/O: no sockets, no clock, no threads. A driver (the
//! tokio node, the simulator, or a test) feeds bytes and time in and takes
//! datagrams and events out.
#![warn(missing_docs)]

pub mod addr;
pub mod answer;
pub mod budget;
pub mod guard;
pub mod lan;
pub mod matching;
pub mod message;
pub mod overlay;
pub mod path;
pub mod punch;
pub mod push;
pub mod reach;
pub mod relay;
pub mod scalable;
pub mod seen;
mod shared;
#[cfg(test)]
mod testnet;
mod types;

pub use answer::AnswerPlan;
pub use budget::{BudgetConfig, Drops, KindLimits, Limit};
pub use message::{
    HitFile, Message, ParseError, Ping, Pong, Ports, Punch, PunchRole, PunchStep, Push, Query,
    QueryHit, RelayInvite, CLASSIC_TCP_PORT, CLASSIC_UDP_PORT, MAX_DATAGRAM,
};
pub use overlay::Overlay;
pub use push::{PushConfig, PushInfo, PushRoute};
pub use reach::{Reach, ReachConfig, Reachability};
pub use scalable::{QueryTrigrams, TrigramBloom};
pub use types::{
    Config, Event, IncomingQuery, Mode, Peer, ScalableConfig, SearchId, Tier, Transmit,
};

pub use matching::name_matches;

/// Prefix of a query for a content hash: `blake3:` and 64 hex digits.
/// rutella peers answer it with the file that has that hash, whatever its
/// name; classic peers find no name containing it and answer empty.
pub const HASH_QUERY_PREFIX: &str = "blake3:";

/// The query text that asks for the file with this BLAKE3 hash.
pub fn hash_query(hash: &[u8; 32]) -> String {
    format!("{HASH_QUERY_PREFIX}{}", message::hex32(hash))
}

/// The hash a query text asks for, when it is a hash query.
pub fn parse_hash_query(text: &str) -> Option<[u8; 32]> {
    message::parse_hex32(text.strip_prefix(HASH_QUERY_PREFIX)?)
}

#[cfg(test)]
mod hash_query_tests {
    use super::*;

    #[test]
    fn hash_queries_round_trip_and_names_are_not_hash_queries() {
        let h = [0xab; 32];
        assert_eq!(parse_hash_query(&hash_query(&h)), Some(h));
        assert_eq!(parse_hash_query("blake3:xyz"), None);
        assert_eq!(parse_hash_query(&message::hex32(&h)), None);
        assert_eq!(parse_hash_query("song.mp3"), None);
    }
}
