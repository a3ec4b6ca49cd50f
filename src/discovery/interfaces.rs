//! Which network interfaces discovery uses, and why each other one is left out: loopback, down
//! and point-to-point interfaces are skipped, virtual adapters (Docker, VMs, VPNs) are left out
//! unless the user chooses them. The reason is kept for `ferry doctor`, which must say why a
//! device on "the other network" is not found.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub use crate::events::IgnoredWhy;

/// Name prefixes of virtual adapters: containers, bridges, VMs and VPNs. Beacons sent there
/// reach no one the user means, and devices "found" there are not on the LAN.
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker",
    "br-",
    "veth",
    "virbr",
    "vmnet",
    "vboxnet",
    "vethernet",
    "tailscale",
    "wg",
    "tun",
];

/// One IPv4 address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The subnet's broadcast address, if the interface has one.
    pub broadcast: Option<Ipv4Addr>,
}

impl Interface {
    /// Whether `ip` is in this interface's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }

    /// The prefix length of the netmask (24 for 255.255.255.0).
    pub fn prefix_len(&self) -> u32 {
        u32::from(self.netmask).count_ones()
    }
}

/// Whether discovery uses an interface, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    Used,
    Ignored(IgnoredWhy),
}

/// What the system says about an interface besides its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub up: bool,
    pub loopback: bool,
    pub point_to_point: bool,
}

/// Which interfaces the user asked for beyond the default choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Use loopback too (tests on one machine).
    pub loopback: bool,
    /// Interface names to use even though they look virtual; when non-empty and
    /// `only_chosen` is set, nothing else is used.
    pub chosen: Vec<String>,
    pub only_chosen: bool,
    /// Use only the interface with this address (a server bound to one address is reachable
    /// only there; bound to loopback, it is announced on loopback only).
    pub only_addr: Option<Ipv4Addr>,
}

impl Choice {
    /// The user's choice: `also` used even if they look virtual; with `only` named, those
    /// (and `also`) and nothing else. `lo` names loopback.
    pub fn named(also: &[String], only: &[String]) -> Choice {
        let only: Vec<String> = only
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        let chosen: Vec<String> = also.iter().chain(&only).cloned().collect();
        Choice {
            loopback: chosen.iter().any(|c| c == "lo"),
            only_chosen: !only.is_empty(),
            chosen,
            only_addr: None,
        }
    }

    /// This choice with the one IPv4 address a server is bound to, if it is, as the only
    /// address used (announced on its own interface only); the names chosen stay, so with
    /// `--only-interface` the route checks do too. Bound to every address, the choice as it
    /// is. The window's discovery and `ferry serve`'s, Ferry's and LocalSend's alike.
    pub fn at_address(self, bound: std::net::IpAddr) -> Choice {
        match bound {
            std::net::IpAddr::V4(v4) if !v4.is_unspecified() => Choice {
                only_addr: Some(v4),
                ..self
            },
            _ => self,
        }
    }
}

/// Whether the route to a sender leaves by one of the interfaces `choice` uses, with them
/// listed again at most every [`Within::RELIST`] (an address may change while a server
/// runs). For LocalSend's discovery socket, which gets datagrams from every network.
pub struct Within {
    choice: Choice,
    addrs: Vec<Ipv4Addr>,
    indexes: Vec<u32>,
    listed: Option<Instant>,
}

impl Within {
    pub const RELIST: Duration = Duration::from_secs(3);

    pub fn new(choice: Choice) -> Self {
        Within {
            choice,
            addrs: Vec::new(),
            indexes: Vec::new(),
            listed: None,
        }
    }

    /// Whether a datagram from `from` is heard.
    pub fn allows(&mut self, from: SocketAddr) -> bool {
        let choice = &self.choice;
        let now = Instant::now();
        if self
            .listed
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::RELIST)
        {
            self.listed = Some(now);
            (self.addrs, self.indexes) = used_addrs(choice);
        }
        super::socket::routed_via(
            from,
            self.addrs.iter().copied(),
            self.indexes.iter().copied(),
        )
    }
}

/// The verdict for one interface (pure, so every rule is tested without a network).
pub fn classify(iface: &Interface, flags: Flags, choice: &Choice) -> Use {
    if let Some(only) = choice.only_addr {
        if iface.addr != only {
            return Use::Ignored(IgnoredWhy::NotTheBoundAddress);
        }
        if !flags.up {
            return Use::Ignored(IgnoredWhy::Down);
        }
        return Use::Used;
    }
    let flags = Flags {
        loopback: flags.loopback || iface.addr.is_loopback(),
        ..flags
    };
    match by_name(&iface.name, flags, choice) {
        Use::Used => {}
        ignored => return ignored,
    }
    if iface.addr.is_link_local() && iface.broadcast.is_none() {
        return Use::Ignored(IgnoredWhy::LinkLocalWithoutBroadcast);
    }
    Use::Used
}

/// The rules of [`classify`] that need no IPv4 address: the user's choice, the flags and the
/// name. IPv6 interfaces (known by index, not by an IPv4 address) get these alone.
fn by_name(name: &str, flags: Flags, choice: &Choice) -> Use {
    let chosen = choice.chosen.iter().any(|c| c == name);
    if choice.only_chosen && !chosen {
        return Use::Ignored(IgnoredWhy::NotChosen);
    }
    if !flags.up {
        return Use::Ignored(IgnoredWhy::Down);
    }
    if flags.loopback {
        return if choice.loopback {
            Use::Used
        } else {
            Use::Ignored(IgnoredWhy::Loopback)
        };
    }
    if flags.point_to_point {
        return Use::Ignored(IgnoredWhy::PointToPoint);
    }
    if is_virtual(name) && !chosen {
        return Use::Ignored(IgnoredWhy::Virtual);
    }
    Use::Used
}

/// Whether a name looks like a virtual adapter's.
pub fn is_virtual(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    VIRTUAL_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Every IPv4 interface of this machine with its verdict.
pub fn list(choice: &Choice) -> std::io::Result<Vec<(Interface, Use)>> {
    let mut out = Vec::new();
    for iface in if_addrs::get_if_addrs()? {
        let if_addrs::IfAddr::V4(v4) = &iface.addr else {
            continue;
        };
        let interface = Interface {
            name: iface.name.clone(),
            addr: v4.ip,
            netmask: v4.netmask,
            broadcast: v4.broadcast,
        };
        // Elsewhere than Linux: an interface listed with an address is taken as up.
        let loopback = interface.addr.is_loopback();
        let guess = Flags {
            up: true,
            loopback,
            point_to_point: v4.broadcast.is_none() && !loopback,
        };
        let flags = flags_of(&iface.name, guess);
        let verdict = classify(&interface, flags, choice);
        out.push((interface, verdict));
    }
    Ok(out)
}

/// The used interfaces only.
pub fn used(choice: &Choice) -> std::io::Result<Vec<Interface>> {
    Ok(list(choice)?
        .into_iter()
        .filter(|(_, verdict)| *verdict == Use::Used)
        .map(|(iface, _)| iface)
        .collect())
}

/// The indexes of the interfaces discovery uses for IPv6 (LocalSend's IPv6 group): each
/// interface with an IPv6 address that the rules of [`classify`] about names and flags let
/// through, the user's choice included. Never loopback (it carries no IPv6 multicast), and
/// none for a server bound to one IPv4 address (announced on that address's interface only).
pub fn used_v6(choice: &Choice) -> std::io::Result<Vec<u32>> {
    if choice.only_addr.is_some() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for iface in if_addrs::get_if_addrs()? {
        let (if_addrs::IfAddr::V6(v6), Some(index)) = (&iface.addr, iface.index) else {
            continue;
        };
        let guess = Flags {
            up: true,
            loopback: v6.ip.is_loopback(),
            point_to_point: false,
        };
        let flags = flags_of(&iface.name, guess);
        if out.contains(&index) || flags.loopback || v6.ip.is_loopback() {
            continue;
        }
        if by_name(&iface.name, flags, choice) == Use::Used {
            out.push(index);
        }
    }
    Ok(out)
}

/// The IPv4 addresses of the interfaces `choice` uses, and the indexes of those it uses for
/// IPv6 ([`used`], [`used_v6`]); none of a kind the system cannot list (logged).
pub fn used_addrs(choice: &Choice) -> (Vec<Ipv4Addr>, Vec<u32>) {
    let v4 = used(choice)
        .map_err(|e| log::warn!("discovery: cannot list interfaces: {e}"))
        .unwrap_or_default();
    let v6 = used_v6(choice)
        .map_err(|e| log::warn!("discovery: cannot list IPv6 interfaces: {e}"))
        .unwrap_or_default();
    (v4.into_iter().map(|i| i.addr).collect(), v6)
}

/// [`used_addrs`], or why the system could not list the interfaces (then none of either
/// kind: for a caller that keeps what it had rather than take a failure for no interface).
pub fn try_used_addrs(choice: &Choice) -> std::io::Result<(Vec<Ipv4Addr>, Vec<u32>)> {
    let v4 = used(choice)?.into_iter().map(|i| i.addr).collect();
    Ok((v4, used_v6(choice)?))
}

/// Reads the kernel's flags for `name` (Linux: `/sys/class/net/NAME/flags`); elsewhere
/// `guess`, made from the address.
fn flags_of(name: &str, guess: Flags) -> Flags {
    const IFF_UP: u32 = 0x1;
    const IFF_LOOPBACK: u32 = 0x8;
    const IFF_POINTOPOINT: u32 = 0x10;
    // Interface names never contain '/', but a hostile one must not walk the file system.
    let from_sys = if name.contains('/') || name.contains("..") {
        None
    } else {
        std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
    };
    match from_sys {
        Some(bits) => Flags {
            up: bits & IFF_UP != 0,
            loopback: bits & IFF_LOOPBACK != 0,
            point_to_point: bits & IFF_POINTOPOINT != 0,
        },
        None => guess,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: [u8; 4]) -> Interface {
        Interface {
            name: name.into(),
            addr: Ipv4Addr::from(addr),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            broadcast: Some(Ipv4Addr::new(addr[0], addr[1], addr[2], 255)),
        }
    }

    const UP: Flags = Flags {
        up: true,
        loopback: false,
        point_to_point: false,
    };

    #[test]
    fn an_ordinary_lan_interface_is_used() {
        assert_eq!(
            classify(&iface("eth0", [192, 168, 1, 5]), UP, &Choice::default()),
            Use::Used
        );
        assert_eq!(
            classify(&iface("wlp2s0", [10, 0, 0, 5]), UP, &Choice::default()),
            Use::Used
        );
    }

    #[test]
    fn loopback_down_and_point_to_point_are_skipped_with_reasons() {
        let lo = Flags {
            loopback: true,
            ..UP
        };
        assert!(matches!(
            classify(&iface("lo", [127, 0, 0, 1]), lo, &Choice::default()),
            Use::Ignored(IgnoredWhy::Loopback)
        ));
        let with_lo = Choice {
            loopback: true,
            ..Choice::default()
        };
        assert_eq!(
            classify(&iface("lo", [127, 0, 0, 1]), lo, &with_lo),
            Use::Used
        );
        let down = Flags { up: false, ..UP };
        assert_eq!(
            classify(&iface("eth0", [10, 0, 0, 1]), down, &Choice::default()),
            Use::Ignored(IgnoredWhy::Down)
        );
        let p2p = Flags {
            point_to_point: true,
            ..UP
        };
        assert!(matches!(
            classify(&iface("ppp0", [10, 0, 0, 1]), p2p, &Choice::default()),
            Use::Ignored(IgnoredWhy::PointToPoint)
        ));
    }

    #[test]
    fn virtual_adapters_are_left_out_unless_chosen() {
        for name in [
            "docker0",
            "br-1a2b3c",
            "veth12ab",
            "virbr0",
            "vmnet8",
            "vboxnet0",
            "vEthernet (WSL)",
            "tailscale0",
            "wg0",
            "tun0",
        ] {
            assert!(
                matches!(
                    classify(&iface(name, [172, 17, 0, 1]), UP, &Choice::default()),
                    Use::Ignored(IgnoredWhy::Virtual)
                ),
                "{name}"
            );
            let chosen = Choice {
                chosen: vec![name.to_owned()],
                ..Choice::default()
            };
            assert_eq!(
                classify(&iface(name, [172, 17, 0, 1]), UP, &chosen),
                Use::Used,
                "{name}"
            );
        }
    }

    #[test]
    fn only_chosen_leaves_out_the_rest() {
        let choice = Choice {
            chosen: vec!["eth1".into()],
            only_chosen: true,
            ..Choice::default()
        };
        assert_eq!(
            classify(&iface("eth1", [10, 0, 0, 1]), UP, &choice),
            Use::Used
        );
        assert!(matches!(
            classify(&iface("eth0", [10, 0, 1, 1]), UP, &choice),
            Use::Ignored(_)
        ));
    }

    #[test]
    fn a_bound_address_picks_its_interface_only_loopback_included() {
        let choice = Choice {
            only_addr: Some(Ipv4Addr::LOCALHOST),
            ..Choice::default()
        };
        let lo = Flags {
            loopback: true,
            ..UP
        };
        assert_eq!(
            classify(&iface("lo", [127, 0, 0, 1]), lo, &choice),
            Use::Used
        );
        assert!(matches!(
            classify(&iface("eth0", [10, 0, 0, 1]), UP, &choice),
            Use::Ignored(_)
        ));
    }

    #[test]
    fn an_interface_known_by_index_alone_gets_the_same_rules_by_name() {
        let docker = by_name("docker0", UP, &Choice::default());
        assert_eq!(docker, Use::Ignored(IgnoredWhy::Virtual));
        let chosen = Choice {
            chosen: vec!["docker0".into()],
            ..Choice::default()
        };
        assert_eq!(by_name("docker0", UP, &chosen), Use::Used);
        let only = Choice {
            only_chosen: true,
            ..chosen
        };
        assert_eq!(by_name("docker0", UP, &only), Use::Used);
        assert_eq!(
            by_name("eth0", UP, &only),
            Use::Ignored(IgnoredWhy::NotChosen)
        );
        let p2p = Flags {
            point_to_point: true,
            ..UP
        };
        assert_eq!(
            by_name("wwan0", p2p, &Choice::default()),
            Use::Ignored(IgnoredWhy::PointToPoint)
        );
    }

    #[test]
    fn ipv6_never_uses_loopback_nor_anything_beside_a_bound_address() {
        let lo_only = Choice {
            loopback: true,
            chosen: vec!["lo".into()],
            only_chosen: true,
            only_addr: None,
        };
        assert_eq!(used_v6(&lo_only).unwrap(), Vec::<u32>::new());
        let bound = Choice {
            only_addr: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..Choice::default()
        };
        assert_eq!(used_v6(&bound).unwrap(), Vec::<u32>::new());
        // Whatever this machine has, loopback's index is never among the default's.
        let loopback_indexes: Vec<u32> = if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .filter(|i| i.is_loopback())
            .filter_map(|i| i.index)
            .collect();
        for index in used_v6(&Choice::default()).unwrap() {
            assert!(!loopback_indexes.contains(&index), "{index}");
        }
    }

    #[test]
    fn a_named_choice_trims_skips_blanks_and_knows_loopback() {
        let only = Choice::named(
            &["docker0".into()],
            &[" lo".into(), "".into(), "eth1 ".into()],
        );
        assert_eq!(only.chosen, ["docker0", "lo", "eth1"]);
        assert!(only.only_chosen && only.loopback);
        let also = Choice::named(&["wg0".into()], &[" ".into()]);
        assert!(!also.only_chosen && !also.loopback);
        assert_eq!(also.chosen, ["wg0"]);
        assert_eq!(Choice::named(&[], &[]), Choice::default());
        // Bound to one IPv4 address, that address's interface alone; the names stay for the
        // route checks.
        let bound = only.clone().at_address("10.0.0.5".parse().unwrap());
        assert_eq!(bound.only_addr, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(
            (bound.chosen.as_slice(), bound.only_chosen),
            (only.chosen.as_slice(), true)
        );
        assert_eq!(only.clone().at_address("0.0.0.0".parse().unwrap()), only);
        assert_eq!(only.clone().at_address("::".parse().unwrap()), only);
    }

    #[test]
    fn subnet_membership() {
        let eth = iface("eth0", [10, 77, 0, 2]);
        assert!(eth.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!eth.contains(Ipv4Addr::new(10, 77, 1, 2)));
        assert_eq!(eth.prefix_len(), 24);
    }

    #[test]
    fn the_machine_lists_its_loopback_as_ignored_by_default() {
        let all = list(&Choice::default()).unwrap();
        // A machine (or namespace) with loopback up shows it, ignored; some sandboxes have none.
        for (iface, verdict) in all {
            if iface.addr.is_loopback() {
                assert!(matches!(verdict, Use::Ignored(_)), "{iface:?}");
            }
        }
    }
}
