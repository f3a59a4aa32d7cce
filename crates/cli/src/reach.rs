//! Telling the user whether peers on the internet can reach the node: the
//! port mapper's result first (a hint: a mapping made is not yet a port
//! others can reach), then the checked answer of the dial-back check, and
//! one more line whenever either changes.

use rutella_node::{Client, PortMapStatus, Reachability};
use tokio::sync::watch;

/// The port mapper's result, shown while the check runs; `None` while it
/// is still trying.
pub(crate) fn hint(status: PortMapStatus) -> Option<String> {
    match status {
        PortMapStatus::Pending => None,
        PortMapStatus::Mapped {
            protocol,
            external_ip,
        } => Some(format!(
            "Ports mapped by {protocol} on your router at {external_ip}; checking that peers can reach you"
        )),
        PortMapStatus::Unmapped => Some(
            "No port mapping on your router; checking whether peers can reach you anyway".into(),
        ),
    }
}

/// The checked answer, in plain words.
pub(crate) fn line(v: Reachability) -> String {
    match v {
        Reachability::Unknown => {
            "Reachability not checked yet: no peer outside your network has been asked".into()
        }
        Reachability::Reachable {
            addr,
            mapped_by: Some(by),
        } => format!("Reachable at {addr} (mapped by {by})"),
        Reachability::Reachable {
            addr,
            mapped_by: None,
        } => format!("Reachable at {addr}"),
        Reachability::NotReachable { tcp: false, .. } => {
            "Not reachable from the internet: others can still download from you through push"
                .into()
        }
        Reachability::NotReachable { tcp: true, .. } => {
            "Partly reachable from the internet: peers can download from you, but your UDP port is closed to new peers".into()
        }
    }
}

/// Prints the mapper's hint and the check's verdict, each once per change,
/// until the node stops.
pub(crate) async fn tell(client: Client) {
    let mut verdict = client.reachability();
    let mut mapping = client.port_mapping();
    if let Some(l) = mapping.as_mut().and_then(|m| hint(*m.borrow_and_update())) {
        println!("{l}");
    }
    let v = *verdict.borrow_and_update();
    if v != Reachability::Unknown {
        println!("{}", line(v));
    }
    loop {
        tokio::select! {
            r = verdict.changed() => {
                if r.is_err() {
                    return;
                }
                let v = *verdict.borrow_and_update();
                if v != Reachability::Unknown {
                    println!("{}", line(v));
                }
            }
            Some(status) = next_status(&mut mapping) => {
                if let Some(l) = hint(status) {
                    println!("{l}");
                }
            }
        }
    }
}

/// The mapper's next status; never when it has none left.
async fn next_status(m: &mut Option<watch::Receiver<PortMapStatus>>) -> Option<PortMapStatus> {
    if let Some(rx) = m {
        if rx.changed().await.is_ok() {
            return Some(*rx.borrow_and_update());
        }
        *m = None;
    }
    std::future::pending().await
}

/// The console's `status`: addresses, peers, shares, the mapping and the
/// reachability line.
pub(crate) async fn status(client: &Client) -> Vec<String> {
    let mut out = vec![format!(
        "Listening on UDP {} and TCP {}.",
        client.udp_addr(),
        client.tcp_addr()
    )];
    match client.answered_peers().await {
        Ok(n) => out.push(format!("Peers: {n}.")),
        Err(e) => out.push(e.to_string()),
    }
    match client.tier().await {
        Ok(Some((true, leaves))) => out.push(format!("Tier: ultrapeer with {leaves} leaves.")),
        Ok(Some((false, _))) => out.push("Tier: leaf.".to_string()),
        Ok(None) => {}
        Err(e) => out.push(e.to_string()),
    }
    let shares: Vec<String> = client
        .shares()
        .iter()
        .map(|s| crate::escape::path(s))
        .collect();
    out.push(format!(
        "Sharing {} file(s) from {}.",
        client.library().len(),
        if shares.is_empty() {
            "no folder".to_string()
        } else {
            shares.join(", ")
        }
    ));
    out.push(match client.port_mapping().map(|m| *m.borrow()) {
        None => "Port mapping: off.".to_string(),
        Some(PortMapStatus::Pending) => "Port mapping: asking your router...".to_string(),
        Some(PortMapStatus::Unmapped) => "Port mapping: none made by your router.".to_string(),
        Some(PortMapStatus::Mapped {
            protocol,
            external_ip,
        }) => format!("Port mapping: made by {protocol} at {external_ip}."),
    });
    out.push(line(*client.reachability().borrow()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rutella_node::{MappedBy, PortMapProtocol};

    #[test]
    fn lines() {
        let mapped = PortMapStatus::Mapped {
            protocol: PortMapProtocol::Upnp,
            external_ip: [11, 0, 0, 11].into(),
        };
        assert_eq!(
            hint(mapped).unwrap(),
            "Ports mapped by UPnP on your router at 11.0.0.11; checking that peers can reach you"
        );
        assert!(hint(PortMapStatus::Unmapped)
            .unwrap()
            .starts_with("No port mapping on your router"));
        assert_eq!(hint(PortMapStatus::Pending), None);
        let addr = "11.0.0.11:20000".parse().unwrap();
        assert_eq!(
            line(Reachability::Reachable {
                addr,
                mapped_by: Some(MappedBy::NatPmp)
            }),
            "Reachable at 11.0.0.11:20000 (mapped by NAT-PMP)"
        );
        assert_eq!(
            line(Reachability::Reachable {
                addr,
                mapped_by: None
            }),
            "Reachable at 11.0.0.11:20000"
        );
        assert_eq!(
            line(Reachability::NotReachable {
                tcp: false,
                udp: true
            }),
            "Not reachable from the internet: others can still download from you through push"
        );
        assert!(line(Reachability::NotReachable {
            tcp: true,
            udp: false
        })
        .starts_with("Partly reachable"));
        assert!(line(Reachability::Unknown).starts_with("Reachability not checked yet"));
    }
}
