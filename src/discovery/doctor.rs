//! "Why can't I see my device?": the checks behind `ferry doctor [ADDRESS[:PORT]]` (and the
//! window's panel later): which interfaces are used or ignored and why, what discovery heard,
//! and for a typed address whether it is in one of our subnets and whether its TCP port
//! refuses (nothing listening) or times out (a firewall or client isolation).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::interfaces::{Interface, Use};
use super::{HeardSummary, SentTo};
use crate::defaults::{DEFAULT_PORT, DISCOVERY_PORT};

/// What a TCP connect to a typed address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// Something accepted the connection.
    Answers,
    /// Refused: the machine is there but nothing listens on the port.
    Refused,
    /// No answer before the timeout: a firewall drops it, or the network isolates clients.
    TimedOut,
    /// Anything else (no route, unreachable, ...).
    Failed(String),
}

/// The report for one typed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressReport {
    pub addr: SocketAddr,
    /// The interface whose subnet holds the address, if any.
    pub subnet_of: Option<String>,
    pub connect: Connect,
}

/// Parses `ADDRESS[:PORT]` (port defaults to the transfer port).
pub fn parse_target(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let with_port = if text.contains(':') {
        text.to_owned()
    } else {
        format!("{text}:{DEFAULT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{text} has no IPv4 address"))
}

/// Checks one address: subnet membership and a TCP connect with `timeout`.
pub fn check_address(addr: SocketAddr, used: &[Interface], timeout: Duration) -> AddressReport {
    let subnet_of = match addr.ip() {
        IpAddr::V4(v4) => used.iter().find(|i| i.contains(v4)).map(|i| i.name.clone()),
        IpAddr::V6(_) => None,
    };
    let connect = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Connect::Answers,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Connect::Refused,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Connect::TimedOut
        }
        Err(e) => Connect::Failed(e.to_string()),
    };
    AddressReport {
        addr,
        subnet_of,
        connect,
    }
}

/// The firewall hints, for a port that times out or a beacon never heard.
pub fn firewall_hints(tcp_port: u16) -> Vec<String> {
    vec![
        format!(
            "  ufw:       sudo ufw allow {tcp_port}/tcp && sudo ufw allow {DISCOVERY_PORT}/udp"
        ),
        format!(
            "  firewalld: sudo firewall-cmd --add-port={tcp_port}/tcp --add-port={DISCOVERY_PORT}/udp (add --permanent to keep it)"
        ),
    ]
}

/// The lines of the address part of the report.
pub fn address_lines(report: &AddressReport) -> Vec<String> {
    let mut out = Vec::new();
    let addr = report.addr;
    match &report.subnet_of {
        Some(iface) => out.push(format!("{}: in the subnet of {iface}", addr.ip())),
        None if addr.ip().is_loopback() => out.push(format!(
            "{}: this machine (loopback): only programs on this machine can use it",
            addr.ip()
        )),
        None => out.push(format!(
            "{}: not in any of our subnets (another network: discovery cannot reach it; typed addresses still work if routed)",
            addr.ip()
        )),
    }
    match &report.connect {
        Connect::Answers => out.push(format!("TCP {addr}: answers (ready to receive)")),
        Connect::Refused => out.push(format!(
            "TCP {addr}: connection refused: the machine is there, but nothing listens on port {} (Ferry not running, or another port)",
            addr.port()
        )),
        Connect::TimedOut => {
            out.push(format!(
                "TCP {addr}: timed out: a firewall drops the connection, or the network isolates its clients (Wi-Fi client/AP isolation, guest network)"
            ));
            out.extend(firewall_hints(addr.port()));
        }
        Connect::Failed(reason) => out.push(format!("TCP {addr}: failed: {reason}")),
    }
    out
}

/// The lines of the interface and "heard" part of the report.
pub fn interface_lines(interfaces: &[(Interface, Use)], heard: &HeardSummary) -> Vec<String> {
    let mut out = Vec::new();
    if interfaces.is_empty() {
        out.push("no IPv4 interfaces at all".to_owned());
    }
    for (iface, verdict) in interfaces {
        let net = format!("{}/{}", iface.addr, iface.prefix_len());
        match verdict {
            Use::Used => {
                let mut own: Vec<&str> = heard
                    .own
                    .iter()
                    .filter(|(name, _)| name == &iface.name)
                    .map(|(_, s)| s.as_str())
                    .collect();
                if heard.own_mdns.contains(&iface.name) {
                    own.push("mDNS");
                }
                let own = if own.is_empty() {
                    "our own beacon NOT heard back (multicast and broadcast blocked here?)"
                        .to_owned()
                } else {
                    format!("our own beacon heard by {}", own.join(" and "))
                };
                out.push(format!("interface {} {net}: used; {own}", iface.name));
            }
            Use::Ignored(reason) => {
                out.push(format!("interface {} {net}: ignored: {reason}", iface.name));
            }
        }
    }
    for (iface, reason) in &heard.join_failures {
        out.push(format!("interface {iface}: {reason}"));
    }
    if heard.others.is_empty() && heard.others_mdns.is_empty() {
        out.push(
            "beacons from other devices in the last minute: none (is Ferry running there, on this network, with discovery on?)"
                .to_owned(),
        );
    } else {
        out.push("beacons from other devices in the last minute:".to_owned());
        for (iface, sent_to, count) in &heard.others {
            let path = match sent_to {
                SentTo::Multicast => "multicast",
                SentTo::Broadcast => "broadcast",
                SentTo::Unicast => "unicast (probe)",
            };
            out.push(format!("  {iface}: {count} by {path}"));
        }
        for (iface, count) in &heard.others_mdns {
            out.push(format!("  {iface}: {count} by mDNS"));
        }
    }
    out.extend(isolation_lines(interfaces, heard));
    out
}

/// Interfaces where our own announcement comes back but nobody else's does: the sign of a
/// network that isolates its clients (or of a network with no other Ferry on it).
fn isolation_lines(interfaces: &[(Interface, Use)], heard: &HeardSummary) -> Vec<String> {
    interfaces
        .iter()
        .filter(|(_, verdict)| *verdict == Use::Used)
        .map(|(iface, _)| &iface.name)
        .filter(|name| {
            // "eth0 (IPv6)" is eth0 too.
            let on = |n: &str| n.strip_suffix(" (IPv6)").unwrap_or(n) == name.as_str();
            let own = heard.own.iter().any(|(n, _)| on(n)) || heard.own_mdns.iter().any(|n| on(n));
            let others = heard.others.iter().any(|(n, _, _)| on(n))
                || heard.others_mdns.iter().any(|(n, _)| on(n));
            own && !others
        })
        .map(|name| {
            format!(
                "no other device heard on {name}, though our own beacon is: the network may isolate clients (Wi-Fi client/AP isolation, a guest network), or no other Ferry runs there with discovery on"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn targets_parse_with_and_without_port() {
        assert_eq!(
            parse_target("10.77.0.5").unwrap(),
            "10.77.0.5:8080".parse().unwrap()
        );
        assert_eq!(
            parse_target("10.77.0.5:9000").unwrap(),
            "10.77.0.5:9000".parse().unwrap()
        );
        assert!(parse_target("no such host.invalid").is_err());
    }

    #[test]
    fn refused_and_answering_ports_are_told_apart() {
        let lo = Interface {
            name: "lo".into(),
            addr: Ipv4Addr::LOCALHOST,
            netmask: Ipv4Addr::new(255, 0, 0, 0),
            broadcast: None,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        let report = check_address(open, std::slice::from_ref(&lo), Duration::from_secs(2));
        assert_eq!(report.connect, Connect::Answers);
        assert_eq!(report.subnet_of.as_deref(), Some("lo"));
        drop(listener);
        let report = check_address(open, &[], Duration::from_secs(2));
        assert_eq!(report.connect, Connect::Refused);
        assert_eq!(report.subnet_of, None);
        let lines = address_lines(&report).join("\n");
        assert!(lines.contains("this machine (loopback)"), "{lines}");
        assert!(lines.contains("connection refused"), "{lines}");
        let elsewhere = AddressReport {
            addr: "192.0.2.7:8080".parse().unwrap(),
            ..report
        };
        let lines = address_lines(&elsewhere).join("\n");
        assert!(lines.contains("not in any of our subnets"), "{lines}");
    }

    fn eth(name: &str) -> (Interface, Use) {
        let iface = Interface {
            name: name.into(),
            addr: Ipv4Addr::new(10, 77, 0, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            broadcast: None,
        };
        (iface, Use::Used)
    }

    #[test]
    fn own_beacon_heard_but_nobody_else_suggests_client_isolation() {
        let ifaces = [eth("eth0"), eth("wlan0")];
        let heard = HeardSummary {
            own: vec![
                ("eth0".into(), SentTo::Multicast),
                ("wlan0".into(), SentTo::Broadcast),
            ],
            others: vec![("eth0".into(), SentTo::Multicast, 3)],
            own_mdns: vec!["wlan0".into()],
            ..HeardSummary::default()
        };
        let text = interface_lines(&ifaces, &heard).join("\n");
        assert!(
            text.contains(
                "interface wlan0 10.77.0.1/24: used; our own beacon heard by broadcast and mDNS"
            ),
            "{text}"
        );
        assert!(
            text.contains("no other device heard on wlan0, though our own beacon is: the network may isolate clients"),
            "{text}"
        );
        assert!(!text.contains("heard on eth0"), "{text}");
        // Nothing heard at all is another problem (blocked), not isolation.
        let text = interface_lines(&ifaces, &HeardSummary::default()).join("\n");
        assert!(!text.contains("isolate"), "{text}");
        // A device found only by mDNS on wlan0: not isolated.
        let heard = HeardSummary {
            own: vec![("wlan0".into(), SentTo::Broadcast)],
            others_mdns: vec![("wlan0".into(), 1)],
            ..HeardSummary::default()
        };
        let text = interface_lines(&ifaces, &heard).join("\n");
        assert!(text.contains("  wlan0: 1 by mDNS"), "{text}");
        assert!(!text.contains("isolate"), "{text}");
    }
}
