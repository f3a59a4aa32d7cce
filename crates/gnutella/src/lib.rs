//! Gnutella 0.6 for rutella.
//!
//! The codecs are pure functions over bytes, no I/O: the handshake
//! ([`handshake`]), descriptors ([`descriptor`]), GGEP ([`ggep`]), HUGE
//! URNs ([`huge`]), query routing ([`qrp`]) and the zlib streams of
//! compressed links ([`deflate`]), and the HTTP of file exchange
//! ([`http`]). [`framer`] cuts a byte stream into descriptors.
//!
//! The tokio sides are thin: [`link`] drives a leaf's connection to an
//! ultrapeer, [`upload`] serves files over HTTP and [`download`] fetches
//! them.
#![warn(missing_docs)]

pub mod browse;
pub mod deflate;
pub mod descriptor;
pub mod download;
pub mod framer;
pub mod ggep;
pub mod handshake;
pub mod hostcache;
pub mod http;
pub mod huge;
pub mod leaf;
pub mod link;
pub mod multi;
pub mod push;
pub mod qrp;
pub mod testkit;
pub mod upload;

pub use descriptor::{Descriptor, Guid, Header, Payload};
