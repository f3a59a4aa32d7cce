//! The default route's gateway, from Linux's `/proc/net/route`: where
//! NAT-PMP and PCP requests go.

use std::net::Ipv4Addr;

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The gateway of the default route with the lowest metric in the text of
/// `/proc/net/route`, if any. Addresses there are the kernel's in-memory
/// words printed in hex, so their bytes are in the machine's order.
pub(crate) fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
            let (dest, gw, flags, metric, mask) = (hex(1)?, hex(2)?, hex(3)?, f.get(6)?, hex(7)?);
            let metric: u32 = metric.parse().ok()?;
            let up_gateway = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
            (dest == 0 && mask == 0 && up_gateway && gw != 0)
                .then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gw)| gw)
}

/// The default gateway of this machine (Linux; `None` elsewhere).
pub(crate) fn read() -> Option<Ipv4Addr> {
    std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_gateway(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_default_route_with_the_lowest_metric() {
        let word = |ip: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(ip.octets()));
        let gw1 = word(Ipv4Addr::new(192, 168, 1, 1));
        let gw2 = word(Ipv4Addr::new(10, 0, 0, 1));
        let net = word(Ipv4Addr::new(192, 168, 1, 0));
        let mask = word(Ipv4Addr::new(255, 255, 255, 0));
        let table = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t{net}\t00000000\t0001\t0\t0\t0\t{mask}\t0\t0\t0\n\
             wlan0\t00000000\t{gw2}\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth0\t00000000\t{gw1}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             down0\t00000000\t{gw2}\t0002\t0\t0\t1\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_gateway(&table), Some(Ipv4Addr::new(192, 168, 1, 1)));
    }

    #[test]
    fn no_default_route_or_garbage_is_none() {
        assert_eq!(default_gateway(""), None);
        assert_eq!(
            default_gateway("Iface\tDestination\nlo\tzz\n\n\t\t\neth0 00000000"),
            None
        );
        #[cfg(target_endian = "little")]
        assert_eq!(
            default_gateway("h\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
    }
}
