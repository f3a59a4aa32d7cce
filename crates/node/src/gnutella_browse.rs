//! Browse host, the client side: `Client::browse` lists a Gnutella
//! servent's files as search hits that can be fetched. (Serving it is the
//! HTTP hook's, in `gnutella`.)

use std::net::{SocketAddr, SocketAddrV4};

use rutella_gnutella::browse::{fetch, BrowseLimits};

use crate::command::SearchHit;

impl crate::Client {
    /// Browses the Gnutella servent at `addr` (browse host: `GET /` for
    /// query hits over HTTP): its shared files, as search hits whose files
    /// [`crate::Client::get_gnutella`] fetches from `addr`. Within the
    /// default [`BrowseLimits`] (16 MiB received, 10 000 results, 60 s),
    /// with the node's connect timeout.
    pub async fn browse(&self, addr: SocketAddr) -> Result<Vec<SearchHit>, crate::NodeError> {
        let limits = BrowseLimits {
            connect_timeout: self.config.connect_timeout,
            ..BrowseLimits::default()
        };
        self.browse_with(addr, limits).await
    }

    /// [`crate::Client::browse`] within `limits`.
    pub async fn browse_with(
        &self,
        addr: SocketAddr,
        limits: BrowseLimits,
    ) -> Result<Vec<SearchHit>, crate::NodeError> {
        let agent = concat!("rutella/", env!("CARGO_PKG_VERSION"));
        let hits = fetch(addr, agent, limits)
            .await
            .map_err(|e| crate::NodeError::Other(format!("browse of {addr} failed: {e}")))?;
        // An IPv4-mapped address is fetched from as IPv4.
        let servent = match addr {
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, a.port())),
                None => addr,
            },
            a => a,
        };
        Ok(hits
            .into_iter()
            .filter(|h| !h.results.is_empty())
            .map(|h| crate::gnutella::search_hit(h, servent, None))
            .collect())
    }
}
