//! Telling the user of `rutella serve` whether peers on the internet can
//! reach the node: one plain line once the port mapper knows, and one
//! more whenever that changes.

use rutella_node::PortMapStatus;
use tokio::sync::watch;

/// The line for a status; `None` while still trying.
pub(crate) fn line(status: PortMapStatus, udp_port: u16) -> Option<String> {
    match status {
        PortMapStatus::Pending => None,
        PortMapStatus::Mapped {
            protocol,
            external_ip,
        } => Some(format!(
            "Reachable at {external_ip}:{udp_port} (mapped by {protocol})"
        )),
        PortMapStatus::Unmapped => {
            Some("Not reachable from the internet: no port mapping on your router".into())
        }
    }
}

/// Prints the line for every status the port mapper reports.
pub(crate) async fn tell(mut status: watch::Receiver<PortMapStatus>, udp_port: u16) {
    loop {
        if let Some(l) = line(*status.borrow_and_update(), udp_port) {
            println!("{l}");
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rutella_node::PortMapProtocol;

    #[test]
    fn lines() {
        let mapped = PortMapStatus::Mapped {
            protocol: PortMapProtocol::Upnp,
            external_ip: [11, 0, 0, 11].into(),
        };
        assert_eq!(
            line(mapped, 20000).unwrap(),
            "Reachable at 11.0.0.11:20000 (mapped by UPnP)"
        );
        assert_eq!(
            line(PortMapStatus::Unmapped, 20000).unwrap(),
            "Not reachable from the internet: no port mapping on your router"
        );
        assert_eq!(line(PortMapStatus::Pending, 20000), None);
    }
}
