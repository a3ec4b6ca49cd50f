//! "Why can't I see my device?": the checks behind `ferry doctor [ADDRESS[:PORT]]` and the
//! window's panel: which interfaces are used or ignored and why, what discovery heard, and
//! for a typed address whether it is in one of our subnets and whether its TCP port refuses
//! (nothing listening) or times out (a firewall or client isolation). The report is a list
//! of [`Finding`]s: the CLI prints their English lines, the window words them in its language.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::interfaces::{Interface, Use};
use super::{HeardSummary, SentTo};
use crate::defaults::{DEFAULT_PORT, DISCOVERY_PORT};
use crate::events::{BeaconPath, Finding};

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

/// Parses `ADDRESS[:PORT]` (port defaults to the transfer port), as `--to` reads it.
pub fn parse_target(text: &str) -> Result<SocketAddr, Finding> {
    // Read as `--to` is: an IPv6 zone by the interface's name (`[fe80::1%eth0]:8080`, which
    // the readers below take by number only) becomes its number, and a number the resolver
    // would read as another address (`0177.0.0.1`) is refused.
    let read = crate::defaults::engine_destination(text).map_err(|e| Finding::CannotResolve {
        target: text.to_owned(),
        reason: e.to_string(),
    })?;
    let text = read.as_str();
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
        .map_err(|e| Finding::CannotResolve {
            target: text.to_owned(),
            reason: e.to_string(),
        })?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| Finding::NoIpv4 {
            target: text.to_owned(),
        })
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
pub fn firewall_hints(tcp_port: u16) -> Vec<Finding> {
    let udp_port = DISCOVERY_PORT;
    vec![
        Finding::Ufw { tcp_port, udp_port },
        Finding::Firewalld { tcp_port, udp_port },
    ]
}

/// The findings of the address part of the report.
pub fn address_lines(report: &AddressReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let addr = report.addr;
    let ip = addr.ip();
    out.push(match &report.subnet_of {
        Some(name) => Finding::InSubnet {
            ip,
            name: name.clone(),
        },
        None if ip.is_loopback() => Finding::Loopback { ip },
        None => Finding::OtherNetwork { ip },
    });
    match &report.connect {
        Connect::Answers => out.push(Finding::Answers { addr }),
        Connect::Refused => out.push(Finding::Refused { addr }),
        Connect::TimedOut => {
            out.push(Finding::TimedOut { addr });
            out.extend(firewall_hints(addr.port()));
        }
        Connect::Failed(reason) => out.push(Finding::ConnectFailed {
            addr,
            reason: reason.clone(),
        }),
    }
    out
}

/// The findings of the interface and "heard" part of the report; `chosen`: the interface
/// names the user gave (a name the machine has not is said so: otherwise a typo in
/// `--only-interface` silently leaves discovery nowhere).
pub fn interface_lines(
    interfaces: &[(Interface, Use)],
    heard: &HeardSummary,
    chosen: &[String],
) -> Vec<Finding> {
    let mut out = Vec::new();
    if interfaces.is_empty() {
        out.push(Finding::NoInterfaces);
    }
    for (i, name) in chosen.iter().enumerate() {
        let known = interfaces.iter().any(|(iface, _)| &iface.name == name);
        if !known && !chosen[..i].contains(name) {
            out.push(Finding::NoSuchInterface { name: name.clone() });
        }
    }
    for (iface, verdict) in interfaces {
        let net = format!("{}/{}", iface.addr, iface.prefix_len());
        let name = iface.name.clone();
        out.push(match verdict {
            Use::Used => {
                let mut own: Vec<BeaconPath> = heard
                    .own
                    .iter()
                    .filter(|(n, _)| n == &iface.name)
                    .map(|(_, s)| path(*s))
                    .collect();
                if heard.own_mdns.contains(&iface.name) {
                    own.push(BeaconPath::Mdns);
                }
                Finding::Used { name, net, own }
            }
            Use::Ignored(why) => Finding::Ignored {
                name,
                net,
                why: *why,
            },
        });
    }
    for (name, reason) in &heard.join_failures {
        out.push(Finding::JoinFailed {
            name: name.clone(),
            reason: reason.clone(),
        });
    }
    if heard.others.is_empty() && heard.others_mdns.is_empty() {
        out.push(Finding::NoOthersHeard);
    } else {
        out.push(Finding::OthersHeard);
        for (name, sent_to, count) in &heard.others {
            out.push(Finding::Heard {
                name: name.clone(),
                path: path(*sent_to),
                count: *count,
            });
        }
        for (name, count) in &heard.others_mdns {
            out.push(Finding::Heard {
                name: name.clone(),
                path: BeaconPath::Mdns,
                count: *count,
            });
        }
    }
    out.extend(isolation_lines(interfaces, heard));
    out
}

/// The path a beacon was sent by, as the report names it.
fn path(sent_to: SentTo) -> BeaconPath {
    match sent_to {
        SentTo::Multicast => BeaconPath::Multicast,
        SentTo::Broadcast => BeaconPath::Broadcast,
        SentTo::Unicast => BeaconPath::Probe,
    }
}

/// Interfaces where our own announcement comes back but nobody else's does: the sign of a
/// network that isolates its clients (or of a network with no other Ferry on it).
fn isolation_lines(interfaces: &[(Interface, Use)], heard: &HeardSummary) -> Vec<Finding> {
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
        .map(|name| Finding::Isolated { name: name.clone() })
        .collect()
}

/// The English lines of `findings`, as `ferry doctor` prints them.
pub fn english(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
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
        let lines = english(&address_lines(&report)).join("\n");
        assert!(lines.contains("this machine (loopback)"), "{lines}");
        assert!(lines.contains("connection refused"), "{lines}");
        let elsewhere = AddressReport {
            addr: "192.0.2.7:8080".parse().unwrap(),
            ..report
        };
        let lines = english(&address_lines(&elsewhere)).join("\n");
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
        let text = english(&interface_lines(&ifaces, &heard, &[])).join("\n");
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
        let text = english(&interface_lines(&ifaces, &HeardSummary::default(), &[])).join("\n");
        assert!(!text.contains("isolate"), "{text}");
        // A device found only by mDNS on wlan0: not isolated.
        let heard = HeardSummary {
            own: vec![("wlan0".into(), SentTo::Broadcast)],
            others_mdns: vec![("wlan0".into(), 1)],
            ..HeardSummary::default()
        };
        let text = english(&interface_lines(&ifaces, &heard, &[])).join("\n");
        assert!(text.contains("  wlan0: 1 by mDNS"), "{text}");
        assert!(!text.contains("isolate"), "{text}");
    }

    /// Our own beacon heard back by unicast (a probe of an address that is ours) is said as
    /// `ferry doctor` always said it: "unicast"; only other devices' unicast beacons are
    /// "unicast (probe)".
    #[test]
    fn own_beacon_heard_by_unicast_is_said_as_before() {
        let heard = HeardSummary {
            own: vec![
                ("eth0".into(), SentTo::Broadcast),
                ("eth0".into(), SentTo::Unicast),
            ],
            others: vec![("eth0".into(), SentTo::Unicast, 2)],
            ..HeardSummary::default()
        };
        let lines = english(&interface_lines(&[eth("eth0")], &heard, &[]));
        assert!(
            lines.contains(
                &"interface eth0 10.77.0.1/24: used; our own beacon heard by broadcast and unicast"
                    .to_owned()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  eth0: 2 by unicast (probe)".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_chosen_name_the_machine_has_not_is_said_once() {
        let chosen = ["eth0".to_owned(), "eht0".to_owned(), "eht0".to_owned()];
        let lines = english(&interface_lines(
            &[eth("eth0")],
            &HeardSummary::default(),
            &chosen,
        ));
        let missing: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("chosen, but this machine has no interface"))
            .collect();
        assert_eq!(missing.len(), 1, "{lines:?}");
        assert!(missing[0].starts_with("interface eht0: "), "{lines:?}");
    }
}
