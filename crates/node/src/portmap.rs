//! Port mapping: asks the home router to forward the node's UDP and TCP
//! ports, and the DHT's UDP port when the DHT runs (UPnP IGD, then PCP,
//! then NAT-PMP), renews the mapping at half
//! its lease, removes it when the node stops, and publishes the outcome:
//! the router's external address goes to the event loop (it is what peers
//! are told, unless `--advertise` was given) and the status to whoever
//! shows it to the user.
//!
//! The decisions are the pure [`machine::Machine`]; this task only does
//! the requests, each bounded by a timeout.

mod gateway;
pub(crate) mod machine;

use machine::{Machine, Mapping, Protocol, Step, Timing, Transport};
pub use machine::{PortMapStatus, Protocol as PortMapProtocol};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU16;
use std::time::Duration;
use tokio::sync::watch;

/// Settings of the port mapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapConfig {
    /// Lease asked for (routers may grant another).
    pub lease: Duration,
    /// Wait after a round in which every protocol failed.
    pub retry: Duration,
    /// Failed rounds before giving up.
    pub rounds: u32,
    /// The longest one protocol's attempt (every port) may take.
    pub attempt_timeout: Duration,
    /// How long UPnP discovery (SSDP) waits for a router to answer.
    pub discovery_timeout: Duration,
    /// The protocols to try, in order; empty: UPnP, PCP, NAT-PMP.
    pub protocols: Vec<Protocol>,
}

impl Default for PortMapConfig {
    fn default() -> Self {
        PortMapConfig {
            lease: Duration::from_secs(3600),
            retry: Duration::from_secs(300),
            rounds: 3,
            attempt_timeout: Duration::from_secs(5),
            discovery_timeout: Duration::from_secs(2),
            protocols: Vec::new(),
        }
    }
}

/// The name the mappings carry on the router.
const DESCRIPTION: &str = "rutella";

/// The mappings of every port, held until renewed or removed.
enum Held {
    Upnp {
        gateway: igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
        local: Ipv4Addr,
        lease: u32,
    },
    /// PCP or NAT-PMP: one handle per port, in the order of the ports.
    Gateway(Vec<crab_nat::PortMapping>),
}

/// What the task publishes.
pub(crate) struct Outputs {
    /// The external address peers should be told (`None`: not mapped).
    pub(crate) external: watch::Sender<Option<Ipv4Addr>>,
    /// The status for the user.
    pub(crate) status: watch::Sender<PortMapStatus>,
}

/// Maps the overlay's `udp_port` and `tcp_port`, and `dht_port` (UDP)
/// when the DHT runs, until `stop`, then removes the mappings.
pub(crate) async fn run(
    cfg: PortMapConfig,
    udp_port: u16,
    tcp_port: u16,
    dht_port: Option<u16>,
    out: Outputs,
    mut stop: watch::Receiver<bool>,
) {
    let mut machine = Machine::new(
        Timing {
            lease: cfg.lease,
            retry: cfg.retry,
            rounds: cfg.rounds,
        },
        &cfg.protocols,
    );
    let wanted = machine::wanted(udp_port, tcp_port, dht_port);
    let ports: &[Mapping] = &wanted;
    let listed = ports
        .iter()
        .map(Mapping::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut held: Option<(Protocol, Held)> = None;
    loop {
        let step = machine.poll(crate::clock::now());
        let outcome = match step {
            Step::Wait(until) => {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                }
                continue;
            }
            Step::Done => {
                tracing::info!(
                    rounds = cfg.rounds,
                    "port mapping: the router mapped no port with UPnP, PCP or NAT-PMP; giving up"
                );
                let _ = stop.wait_for(|s| *s).await;
                break;
            }
            Step::Map(p) => {
                if let Some((_, old)) = held.take() {
                    remove(old, &cfg, ports).await;
                }
                let attempt = map(p, &cfg, ports);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    r = tokio::time::timeout(cfg.attempt_timeout, attempt) => {
                        r.unwrap_or_else(|_| Err("no answer in time".into()))
                    }
                }
                .map(|(ip, lease, h)| (ip, lease, Some(h)))
            }
            Step::Renew(_) => {
                let Some((_, h)) = held.as_mut() else {
                    machine.on_failed(crate::clock::now());
                    continue;
                };
                let attempt = renew(h, ports);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    r = tokio::time::timeout(cfg.attempt_timeout, attempt) => {
                        r.unwrap_or_else(|_| Err("no answer in time".into()))
                    }
                }
                .map(|(ip, lease)| (ip, lease, None))
            }
        };
        let protocol = match step {
            Step::Map(p) | Step::Renew(p) => p,
            _ => continue,
        };
        let now = crate::clock::now();
        let change = match outcome {
            Ok((ip, lease, new)) => {
                if let Some(h) = new {
                    held = Some((protocol, h));
                }
                tracing::debug!(%protocol, external = %ip, ?lease, "port mapping granted");
                machine.on_mapped(now, protocol, ip, lease)
            }
            Err(why) => {
                tracing::debug!(%protocol, %why, "port mapping failed");
                machine.on_failed(now)
            }
        };
        if let Some(status) = change {
            match status {
                PortMapStatus::Mapped {
                    protocol,
                    external_ip,
                } => {
                    tracing::info!(%protocol, external = %external_ip, udp = udp_port, tcp = tcp_port, dht = ?dht_port, ports = %listed, "ports mapped on the router");
                    let _ = out.external.send(Some(external_ip));
                }
                _ => {
                    tracing::info!("no port mapping on the router");
                    let _ = out.external.send(None);
                }
            }
            let _ = out.status.send(status);
        }
    }
    if let Some((protocol, h)) = held {
        remove(h, &cfg, ports).await;
        tracing::info!(%protocol, "port mappings removed");
    }
}

type Granted = (Ipv4Addr, Duration, Held);

async fn map(p: Protocol, cfg: &PortMapConfig, ports: &[Mapping]) -> Result<Granted, String> {
    match p {
        Protocol::Upnp => map_upnp(cfg, ports).await,
        Protocol::Pcp | Protocol::NatPmp => map_gateway(p, ports).await,
    }
}

/// Renews the mappings held, in place: the handle stays held whatever
/// happens, so that it is removed at exit or before the next attempt.
async fn renew(h: &mut Held, ports: &[Mapping]) -> Result<(Ipv4Addr, Duration), String> {
    match h {
        Held::Upnp {
            gateway,
            local,
            lease,
        } => {
            add_upnp(gateway, *local, ports, *lease).await?;
            let ip = upnp_external(gateway).await?;
            Ok((ip, secs(*lease)))
        }
        Held::Gateway(maps) => {
            for m in maps.iter_mut() {
                m.renew().await.map_err(|e| e.to_string())?;
            }
            let first = maps.first().ok_or("no port to renew")?;
            let ip = gateway_external(first).await?;
            Ok((ip, shortest(maps)))
        }
    }
}

/// The shortest lease among the handles.
fn shortest(maps: &[crab_nat::PortMapping]) -> Duration {
    secs(maps.iter().map(|m| m.lifetime()).min().unwrap_or(0))
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

async fn map_upnp(cfg: &PortMapConfig, ports: &[Mapping]) -> Result<Granted, String> {
    let mut options = igd_next::SearchOptions::default();
    options.timeout = Some(cfg.discovery_timeout);
    options.single_search_timeout = Some(cfg.discovery_timeout);
    let gateway = igd_next::aio::tokio::search_gateway(options)
        .await
        .map_err(|e| format!("no UPnP router found: {e}"))?;
    let router = match gateway.addr {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => return Err("UPnP router has no IPv4 address".into()),
    };
    let local = crate::own_address::route_source(router)
        .ok_or_else(|| format!("no local address routes to {router}"))?;
    let mut lease = u32::try_from(cfg.lease.as_secs()).unwrap_or(u32::MAX);
    match add_upnp(&gateway, local, ports, lease).await {
        Ok(()) => {}
        Err(e) if e.contains("permanent") => {
            lease = 0;
            add_upnp(&gateway, local, ports, lease).await?;
        }
        Err(e) => return Err(e),
    }
    let held = Held::Upnp {
        gateway,
        local,
        lease,
    };
    let Held::Upnp { gateway, .. } = &held else {
        return Err("unreachable".into());
    };
    match upnp_external(gateway).await {
        Ok(ip) => Ok((ip, secs(lease), held)),
        Err(e) => {
            remove(held, cfg, ports).await;
            Err(e)
        }
    }
}

async fn add_upnp(
    gateway: &igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
    local: Ipv4Addr,
    ports: &[Mapping],
    lease: u32,
) -> Result<(), String> {
    for (i, m) in ports.iter().enumerate() {
        let to = SocketAddr::V4(SocketAddrV4::new(local, m.port));
        let proto = upnp_protocol(m.transport);
        if let Err(e) = gateway
            .add_port(proto, m.port, to, lease, DESCRIPTION)
            .await
        {
            // All or none: the ports mapped before this one go again.
            for done in &ports[..i] {
                let _ = gateway
                    .remove_port(upnp_protocol(done.transport), done.port)
                    .await;
            }
            return Err(format!("UPnP {m}: {e}"));
        }
    }
    Ok(())
}

fn upnp_protocol(t: Transport) -> igd_next::PortMappingProtocol {
    match t {
        Transport::Udp => igd_next::PortMappingProtocol::UDP,
        Transport::Tcp => igd_next::PortMappingProtocol::TCP,
    }
}

async fn upnp_external(
    gateway: &igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
) -> Result<Ipv4Addr, String> {
    match gateway.get_external_ip().await {
        Ok(std::net::IpAddr::V4(ip)) if usable(ip) => Ok(ip),
        Ok(ip) => Err(format!("the router's external address {ip} is not usable")),
        Err(e) => Err(format!("UPnP external address: {e}")),
    }
}

/// An external address worth telling peers.
fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || ip.is_multicast())
}

fn timeouts() -> crab_nat::TimeoutConfig {
    crab_nat::TimeoutConfig {
        initial_timeout: Duration::from_millis(250),
        max_retries: 2,
        max_retry_timeout: Some(Duration::from_secs(1)),
    }
}

async fn map_gateway(p: Protocol, ports: &[Mapping]) -> Result<Granted, String> {
    let router = gateway::read().ok_or("no default gateway")?;
    let local = crate::own_address::route_source(router)
        .ok_or_else(|| format!("no local address routes to {router}"))?;
    let mut maps = Vec::with_capacity(ports.len());
    for m in ports {
        let proto = match m.transport {
            Transport::Udp => crab_nat::InternetProtocol::Udp,
            Transport::Tcp => crab_nat::InternetProtocol::Tcp,
        };
        match map_one(p, router, local, proto, m.port).await {
            Ok(h) => maps.push(h),
            Err(e) => {
                // All or none: the ports mapped before this one go again.
                drop_gateway(Held::Gateway(maps)).await;
                return Err(e);
            }
        }
    }
    let lease = shortest(&maps);
    let Some(first) = maps.first() else {
        return Err("no port to map".into());
    };
    let external = gateway_external(first).await;
    let held = Held::Gateway(maps);
    match external {
        Ok(ip) => Ok((ip, lease, held)),
        Err(e) => {
            drop_gateway(held).await;
            Err(e)
        }
    }
}

async fn map_one(
    p: Protocol,
    router: Ipv4Addr,
    local: Ipv4Addr,
    proto: crab_nat::InternetProtocol,
    port: u16,
) -> Result<crab_nat::PortMapping, String> {
    let internal = NonZeroU16::new(port).ok_or("port 0")?;
    let options = crab_nat::PortMappingOptions {
        external_port: Some(internal),
        lifetime_seconds: None,
        timeout_config: Some(timeouts()),
    };
    let gw = crab_nat::GatewayAddress::IpV4(router);
    let m = match p {
        Protocol::Pcp => crab_nat::pcp::port_mapping(
            crab_nat::pcp::BaseMapRequest::new(gw, local.into(), proto, internal),
            None,
            None,
            options,
        )
        .await
        .map_err(|e| format!("PCP {proto}: {e}"))?,
        _ => crab_nat::natpmp::port_mapping(gw, proto, internal, options)
            .await
            .map_err(|e| format!("NAT-PMP {proto}: {e}"))?,
    };
    // Peers are told our own port numbers: another external port would
    // send them nowhere.
    if m.external_port() != internal {
        let other = m.external_port();
        let _ = m.try_drop().await;
        return Err(format!(
            "{p} {proto}: the router offered external port {other} instead of {port}"
        ));
    }
    Ok(m)
}

async fn gateway_external(m: &crab_nat::PortMapping) -> Result<Ipv4Addr, String> {
    let ip = match m.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => match external_ip {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .ok_or_else(|| format!("PCP external address {v6} is not IPv4"))?,
        },
        crab_nat::PortMappingType::NatPmp => {
            crab_nat::natpmp::external_address(m.gateway(), Some(timeouts()))
                .await
                .map_err(|e| format!("NAT-PMP external address: {e}"))?
        }
    };
    if usable(ip) {
        Ok(ip)
    } else {
        Err(format!("the router's external address {ip} is not usable"))
    }
}

async fn drop_gateway(h: Held) {
    if let Held::Gateway(maps) = h {
        for m in maps {
            let port = m.internal_port();
            if let Err((e, _)) = m.try_drop().await {
                tracing::debug!(port, error = %e, "removing a mapping failed");
            }
        }
    }
}

/// Removes every mapping, bounded by the attempt timeout.
async fn remove(h: Held, cfg: &PortMapConfig, ports: &[Mapping]) {
    let work = async move {
        match h {
            Held::Upnp { gateway, .. } => {
                for m in ports {
                    let proto = upnp_protocol(m.transport);
                    if let Err(e) = gateway.remove_port(proto, m.port).await {
                        tracing::debug!(%proto, port = m.port, error = %e, "removing a UPnP mapping failed");
                    }
                }
            }
            h @ Held::Gateway { .. } => drop_gateway(h).await,
        }
    };
    if tokio::time::timeout(cfg.attempt_timeout, work)
        .await
        .is_err()
    {
        tracing::warn!("the router did not confirm removing the port mappings in time");
    }
}
