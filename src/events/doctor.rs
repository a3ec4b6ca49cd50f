//! The doctor's findings ("Why can't I see my device?") as data: what
//! [`crate::discovery::doctor`] found about the interfaces, the beacons heard and a typed
//! address. `ferry doctor` prints each finding's English line ([`Finding`]'s `Display`, the
//! exact lines the CLI has always printed); the window words the same findings in its own
//! language. Kept in this layer so the window's events carry them without knowing discovery.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why discovery leaves an interface out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredWhy {
    /// The server is bound to another address, reachable there only.
    NotTheBoundAddress,
    Down,
    /// `--interface` was given and this one is not among them.
    NotChosen,
    Loopback,
    PointToPoint,
    /// A container, VM or VPN adapter (used only when chosen).
    Virtual,
    LinkLocalWithoutBroadcast,
}

impl fmt::Display for IgnoredWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoredWhy::NotTheBoundAddress => "not the address the server is bound to",
            IgnoredWhy::Down => "down",
            IgnoredWhy::NotChosen => "not among the chosen interfaces",
            IgnoredWhy::Loopback => "loopback (this machine only)",
            IgnoredWhy::PointToPoint => {
                "point-to-point link (a VPN or modem: no neighbours to find)"
            }
            IgnoredWhy::Virtual => {
                "virtual adapter (container, VM or VPN); choose it explicitly to use it"
            }
            IgnoredWhy::LinkLocalWithoutBroadcast => "link-local address without broadcast",
        })
    }
}

/// How a beacon travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconPath {
    Multicast,
    Broadcast,
    /// A unicast probe (of a favourite's address).
    Probe,
    Mdns,
}

impl fmt::Display for BeaconPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BeaconPath::Multicast => "multicast",
            BeaconPath::Broadcast => "broadcast",
            BeaconPath::Probe => "unicast (probe)",
            BeaconPath::Mdns => "mDNS",
        })
    }
}

/// One line of the doctor's report. Text fields are local detail (interface names, the
/// system's error messages, what the user typed), shown as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    NoInterfaces,
    /// A used interface (`net`: `10.0.0.5/24`) and how our own beacon was heard back on it
    /// (empty: not at all).
    Used {
        name: String,
        net: String,
        own: Vec<BeaconPath>,
    },
    Ignored {
        name: String,
        net: String,
        why: IgnoredWhy,
    },
    /// An interface chosen by name (`--interface`, `--only-interface`) that the machine has
    /// not, at least not with an IPv4 address (a typo?).
    NoSuchInterface {
        name: String,
    },
    /// A multicast join (or mDNS) failed on an interface.
    JoinFailed {
        name: String,
        reason: String,
    },
    /// No other device's beacon in the last minute.
    NoOthersHeard,
    /// The heading of the [`Finding::Heard`] lines.
    OthersHeard,
    /// `count` beacons of other devices on `name` by `path`.
    Heard {
        name: String,
        path: BeaconPath,
        count: usize,
    },
    /// Our own beacon comes back on `name` but nobody else's: client isolation?
    Isolated {
        name: String,
    },
    /// A typed address in the subnet of interface `name`.
    InSubnet {
        ip: IpAddr,
        name: String,
    },
    Loopback {
        ip: IpAddr,
    },
    OtherNetwork {
        ip: IpAddr,
    },
    Answers {
        addr: SocketAddr,
    },
    Refused {
        addr: SocketAddr,
    },
    TimedOut {
        addr: SocketAddr,
    },
    ConnectFailed {
        addr: SocketAddr,
        reason: String,
    },
    /// The ufw command that opens the ports.
    Ufw {
        tcp_port: u16,
        udp_port: u16,
    },
    /// The firewalld command that opens the ports.
    Firewalld {
        tcp_port: u16,
        udp_port: u16,
    },
    /// A typed address that does not resolve.
    CannotResolve {
        target: String,
        reason: String,
    },
    NoIpv4 {
        target: String,
    },
}

impl Finding {
    /// The same finding with `f` applied to each of its text fields (the window escapes them).
    pub fn map_text(self, f: impl Fn(String) -> String) -> Self {
        match self {
            Finding::Used { name, net, own } => Finding::Used {
                name: f(name),
                net,
                own,
            },
            Finding::Ignored { name, net, why } => Finding::Ignored {
                name: f(name),
                net,
                why,
            },
            Finding::JoinFailed { name, reason } => Finding::JoinFailed {
                name: f(name),
                reason: f(reason),
            },
            Finding::Heard { name, path, count } => Finding::Heard {
                name: f(name),
                path,
                count,
            },
            Finding::Isolated { name } => Finding::Isolated { name: f(name) },
            Finding::NoSuchInterface { name } => Finding::NoSuchInterface { name: f(name) },
            Finding::InSubnet { ip, name } => Finding::InSubnet { ip, name: f(name) },
            Finding::ConnectFailed { addr, reason } => Finding::ConnectFailed {
                addr,
                reason: f(reason),
            },
            Finding::CannotResolve { target, reason } => Finding::CannotResolve {
                target: f(target),
                reason: f(reason),
            },
            Finding::NoIpv4 { target } => Finding::NoIpv4 { target: f(target) },
            other => other,
        }
    }
}

/// The English line, exactly as `ferry doctor` prints it.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NoInterfaces => f.write_str("no IPv4 interfaces at all"),
            Finding::Used { name, net, own } if own.is_empty() => write!(
                f,
                "interface {name} {net}: used; our own beacon NOT heard back (multicast and broadcast blocked here?)"
            ),
            Finding::Used { name, net, own } => {
                // Our own beacon back by unicast (a probe of an address of ours) has always
                // been plain "unicast" here; "unicast (probe)" is for other devices' beacons.
                let paths: Vec<String> = own
                    .iter()
                    .map(|p| match p {
                        BeaconPath::Probe => "unicast".to_owned(),
                        other => other.to_string(),
                    })
                    .collect();
                write!(
                    f,
                    "interface {name} {net}: used; our own beacon heard by {}",
                    paths.join(" and ")
                )
            }
            Finding::Ignored { name, net, why } => {
                write!(f, "interface {name} {net}: ignored: {why}")
            }
            Finding::NoSuchInterface { name } => write!(
                f,
                "interface {name}: chosen, but this machine has no interface of that name with an IPv4 address (`ip link` lists the names)"
            ),
            Finding::JoinFailed { name, reason } => write!(f, "interface {name}: {reason}"),
            Finding::NoOthersHeard => f.write_str(
                "beacons from other devices in the last minute: none (is Ferry running there, on this network, with discovery on?)",
            ),
            Finding::OthersHeard => f.write_str("beacons from other devices in the last minute:"),
            Finding::Heard { name, path, count } => write!(f, "  {name}: {count} by {path}"),
            Finding::Isolated { name } => write!(
                f,
                "no other device heard on {name}, though our own beacon is: the network may isolate clients (Wi-Fi client/AP isolation, a guest network), or no other Ferry runs there with discovery on"
            ),
            Finding::InSubnet { ip, name } => write!(f, "{ip}: in the subnet of {name}"),
            Finding::Loopback { ip } => write!(
                f,
                "{ip}: this machine (loopback): only programs on this machine can use it"
            ),
            Finding::OtherNetwork { ip } => write!(
                f,
                "{ip}: not in any of our subnets (another network: discovery cannot reach it; typed addresses still work if routed)"
            ),
            Finding::Answers { addr } => write!(f, "TCP {addr}: answers (ready to receive)"),
            Finding::Refused { addr } => write!(
                f,
                "TCP {addr}: connection refused: the machine is there, but nothing listens on port {} (Ferry not running, or another port)",
                addr.port()
            ),
            Finding::TimedOut { addr } => write!(
                f,
                "TCP {addr}: timed out: a firewall drops the connection, or the network isolates its clients (Wi-Fi client/AP isolation, guest network)"
            ),
            Finding::ConnectFailed { addr, reason } => {
                write!(f, "TCP {addr}: failed: {reason}")
            }
            Finding::Ufw { tcp_port, udp_port } => write!(
                f,
                "  ufw:       sudo ufw allow {tcp_port}/tcp && sudo ufw allow {udp_port}/udp"
            ),
            Finding::Firewalld { tcp_port, udp_port } => write!(
                f,
                "  firewalld: sudo firewall-cmd --add-port={tcp_port}/tcp --add-port={udp_port}/udp (add --permanent to keep it)"
            ),
            Finding::CannotResolve { target, reason } => {
                write!(f, "cannot resolve {target}: {reason}")
            }
            Finding::NoIpv4 { target } => write!(f, "{target} has no IPv4 address"),
        }
    }
}
