//! Addresses at the socket boundary.
//!
//! A dual-stack socket (IPv6, `IPV6_V6ONLY` off) reports an IPv4 peer as
//! an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`). The overlay knows a
//! peer by one address whichever socket saw it, so every address that
//! comes in is passed through [`normalize`] (mapped becomes plain IPv4),
//! and every address that goes out to an IPv6 socket through
//! [`for_socket`].

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// `ip` with an IPv4-mapped IPv6 address turned into plain IPv4.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into plain IPv4.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalize_ip(addr.ip()), addr.port())
}

/// `addr` as a socket of this family takes it: an IPv4 address becomes
/// IPv4-mapped for an IPv6 (dual-stack) socket; anything else is unchanged.
pub fn for_socket(addr: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        other => other,
    }
}

/// The longest text an address of `addr`'s family can have in `"IP"`:
/// what the overlay counts when it sizes a datagram before the driver
/// writes our own address into it.
pub(crate) fn widest_ip(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(u128::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4_and_go_back_mapped() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:20000".parse().unwrap();
        let plain: SocketAddr = "192.0.2.7:20000".parse().unwrap();
        assert_eq!(normalize(mapped), plain);
        assert_eq!(normalize(plain), plain);
        let v6: SocketAddr = "[2001:db8::5]:20000".parse().unwrap();
        assert_eq!(normalize(v6), v6);
        assert_eq!(for_socket(plain, true), mapped);
        assert_eq!(for_socket(plain, false), plain);
        assert_eq!(for_socket(v6, true), v6);
        assert_eq!(normalize(for_socket(plain, true)), plain);
        // Only mapped addresses, not the deprecated IPv4-compatible ones.
        let compat: SocketAddr = "[::192.0.2.7]:1".parse().unwrap();
        assert_eq!(normalize(compat), compat);
    }

    #[test]
    fn the_widest_address_is_the_longest_text_of_its_family() {
        let v4: SocketAddr = "1.2.3.4:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(widest_ip(v4).to_string().len(), 15);
        assert_eq!(widest_ip(v6).to_string().len(), 39);
    }
}
