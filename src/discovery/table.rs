//! The one device table every discovery path feeds (beacons, unicast probes, and later other
//! announcement formats), keyed by device id. Pure bookkeeping: the caller passes the time
//! (`now`), so tests drive the clock and check staleness, expiry and goodbyes exactly.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

/// Devices kept at most (a LAN has far fewer; a flood of made-up ids is ignored beyond it).
pub const MAX_DEVICES: usize = 512;

/// How a device was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// Ferry's beacon, by multicast or broadcast.
    Beacon,
    /// DNS-SD (`_ferry._tcp.local.`).
    Mdns,
    /// A unicast probe of a trusted or recent device answered.
    Probe,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Beacon => "beacon",
            Path::Mdns => "mdns",
            Path::Probe => "probe",
        }
    }
}

/// What the TCP check of a device's announced port found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Not checked yet (or the address changed since).
    Unchecked,
    /// The port accepted a connection.
    Ready,
    /// The port refused or did not answer.
    NoAnswer,
}

/// What the user is shown for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Heard recently and its port answers.
    Ready,
    /// Heard recently; its port is being checked.
    Checking,
    /// Heard recently, but the announced port does not answer.
    PortSilent(u16),
    /// Not heard for a while (greyed out).
    Stale,
    /// A trusted device not heard at all (or it said goodbye).
    Offline,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Ready => f.write_str("ready"),
            State::Checking => f.write_str("checking"),
            State::PortSilent(port) => write!(f, "seen, but port {port} does not answer"),
            State::Stale => f.write_str("not heard recently"),
            State::Offline => f.write_str("offline"),
        }
    }
}

/// One announcement, from whichever path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub os: String,
    pub ip: IpAddr,
    /// The interface index of an IPv6 link-local address (0 otherwise).
    pub scope_id: u32,
    pub tcp_port: u16,
    pub udp_port: u16,
    pub path: Path,
}

/// How long until a silent device greys out and until it disappears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ages {
    pub stale_after: Duration,
    pub gone_after: Duration,
    /// A ready device's port is checked again after this long.
    pub recheck_after: Duration,
}

impl Default for Ages {
    fn default() -> Self {
        Ages {
            stale_after: Duration::from_secs(40),
            gone_after: Duration::from_secs(60),
            recheck_after: Duration::from_secs(30),
        }
    }
}

/// A device as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub os: String,
    /// The last address it was heard from (or, for a trusted device never heard, its last
    /// known address).
    pub addr: Option<SocketAddr>,
    pub udp_port: u16,
    pub trusted: bool,
    pub paths: BTreeSet<Path>,
    pub state: State,
    /// How long ago it was last heard (`None`: never, in this run).
    pub last_seen_ago: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Entry {
    sighting: Option<Sighting>,
    name: String,
    fingerprint: String,
    known_addr: Option<SocketAddr>,
    /// A trusted device's IP as the trust store last saw its key proven: a probe target
    /// (beacons, which anyone can send, cannot take it away), never an address to send to.
    proven_ip: Option<IpAddr>,
    trusted: bool,
    paths: BTreeSet<Path>,
    last_seen: Option<Instant>,
    said_bye: bool,
    reach: Reach,
    checked_at: Option<Instant>,
}

/// The table.
#[derive(Debug, Default)]
pub struct Table {
    ages: Ages,
    entries: HashMap<String, Entry>,
}

impl Table {
    pub fn new(ages: Ages) -> Self {
        Table {
            ages,
            entries: HashMap::new(),
        }
    }

    /// A trusted device: always listed (offline until heard), at its last known address;
    /// `proven_ip`, the IP its key was last proven at, is probed and never listed.
    pub fn add_trusted(
        &mut self,
        id: &str,
        name: &str,
        fingerprint: &str,
        known_addr: Option<SocketAddr>,
        proven_ip: Option<IpAddr>,
    ) {
        let entry = self.entries.entry(id.to_owned()).or_insert_with(|| Entry {
            sighting: None,
            name: name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            known_addr,
            proven_ip: None,
            trusted: true,
            paths: BTreeSet::new(),
            last_seen: None,
            said_bye: false,
            reach: Reach::Unchecked,
            checked_at: None,
        });
        // The trust store's name and fingerprint, not a beacon's: a trusted row must show
        // (and a click on it must pin) the key that was paired with.
        entry.name = name.to_owned();
        entry.fingerprint = fingerprint.to_owned();
        entry.trusted = true;
        entry.proven_ip = proven_ip;
    }

    /// Records an announcement. Returns the address whose TCP port should be checked now, if
    /// any (a new device, a changed address or port, or an old check).
    pub fn observe(&mut self, sighting: Sighting, now: Instant) -> Option<SocketAddr> {
        if self.entries.len() >= MAX_DEVICES && !self.entries.contains_key(&sighting.id) {
            return None; // a flood of made-up devices cannot grow the table
        }
        if !crate::protocol::is_device_address(sighting.ip) {
            return None; // a forged beacon or mDNS record: never listed, never checked
        }
        let addr = match sighting.ip {
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(
                v6,
                sighting.tcp_port,
                0,
                sighting.scope_id,
            )),
            IpAddr::V4(_) => SocketAddr::new(sighting.ip, sighting.tcp_port),
        };
        let entry = self
            .entries
            .entry(sighting.id.clone())
            .or_insert_with(|| Entry {
                sighting: None,
                name: String::new(),
                fingerprint: String::new(),
                known_addr: None,
                proven_ip: None,
                trusted: false,
                paths: BTreeSet::new(),
                last_seen: None,
                said_bye: false,
                reach: Reach::Unchecked,
                checked_at: None,
            });
        // A device heard over IPv4 and IPv6 keeps its IPv4 address while that is fresh (it is
        // what servers listen on and what needs no interface index).
        if addr.is_ipv6()
            && entry.known_addr.is_some_and(|known| known.is_ipv4())
            && entry
                .last_seen
                .is_some_and(|seen| now.saturating_duration_since(seen) < self.ages.stale_after)
        {
            entry.paths.insert(sighting.path);
            return None;
        }
        // A device heard at several addresses (several interfaces, or a reply routed another
        // way) keeps the one that answered while that one is fresh: no flapping.
        let back_to_v4 = addr.is_ipv4() && entry.known_addr.is_some_and(|k| k.is_ipv6());
        if entry.reach == Reach::Ready
            && !back_to_v4
            && entry.known_addr.is_some_and(|known| known != addr)
            && entry
                .last_seen
                .is_some_and(|seen| now.saturating_duration_since(seen) < self.ages.recheck_after)
        {
            entry.paths.insert(sighting.path);
            entry.last_seen = Some(now);
            entry.said_bye = false;
            return None;
        }
        let moved = entry.known_addr != Some(addr);
        if moved {
            entry.reach = Reach::Unchecked;
            entry.checked_at = None;
        }
        // Beacons are hints anyone on the LAN can send with a trusted device's id: they may
        // move its address (the handshake proves who answers there), never rename it or
        // change the fingerprint the window pins the upload's key by.
        if !entry.trusted {
            entry.name = sighting.name.clone();
            entry.fingerprint = sighting.fingerprint.clone();
        }
        entry.known_addr = Some(addr);
        entry.paths.insert(sighting.path);
        entry.last_seen = Some(now);
        entry.said_bye = false;
        entry.sighting = Some(sighting);
        let due = match entry.checked_at {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= self.ages.recheck_after,
        };
        if due {
            // Marked now so a burst of beacons asks for one check, not one per copy.
            entry.checked_at = Some(now);
            Some(addr)
        } else {
            None
        }
    }

    /// The result of a TCP check of `addr` (ignored if the device moved on meanwhile).
    pub fn checked(&mut self, id: &str, addr: SocketAddr, answered: bool) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.known_addr == Some(addr)
        {
            entry.reach = if answered {
                Reach::Ready
            } else {
                Reach::NoAnswer
            };
        }
    }

    /// A goodbye: the device goes at once (a trusted one stays, offline).
    pub fn goodbye(&mut self, id: &str) {
        match self.entries.get_mut(id) {
            Some(entry) if entry.trusted => {
                entry.said_bye = true;
                entry.reach = Reach::Unchecked;
                entry.checked_at = None;
            }
            Some(_) => {
                self.entries.remove(id);
            }
            None => {}
        }
    }

    /// Drops devices silent for longer than `gone_after` (trusted ones stay).
    pub fn expire(&mut self, now: Instant) {
        let gone_after = self.ages.gone_after;
        self.entries.retain(|_, entry| {
            entry.trusted
                || entry
                    .last_seen
                    .is_some_and(|seen| now.saturating_duration_since(seen) < gone_after)
        });
    }

    /// The addresses worth a unicast probe: trusted devices' last addresses and the IPs
    /// their keys were last proven at (a device that only ever sent, from `ferry send`, has
    /// no address but that IP), and devices not heard for a while.
    pub fn probe_targets(&self, now: Instant, quiet_for: Duration) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .entries
            .values()
            .filter(|e| {
                e.trusted
                    || e.last_seen
                        .is_none_or(|seen| now.saturating_duration_since(seen) >= quiet_for)
            })
            .flat_map(|e| [e.known_addr.map(|a| a.ip()), e.proven_ip])
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every device, sorted by name then id, with its state at `now`.
    pub fn devices(&self, now: Instant) -> Vec<Device> {
        let mut out: Vec<Device> = self
            .entries
            .iter()
            .map(|(id, e)| {
                let ago = e.last_seen.map(|seen| now.saturating_duration_since(seen));
                let port = e.known_addr.map_or(0, |a| a.port());
                let state = match ago {
                    _ if e.said_bye => State::Offline,
                    None => State::Offline,
                    Some(ago) if ago >= self.ages.gone_after => State::Offline,
                    Some(ago) if ago >= self.ages.stale_after => State::Stale,
                    Some(_) => match e.reach {
                        Reach::Unchecked => State::Checking,
                        Reach::Ready => State::Ready,
                        Reach::NoAnswer => State::PortSilent(port),
                    },
                };
                Device {
                    id: id.clone(),
                    name: e.name.clone(),
                    fingerprint: e.fingerprint.clone(),
                    os: e
                        .sighting
                        .as_ref()
                        .map(|s| s.os.clone())
                        .unwrap_or_default(),
                    addr: e.known_addr,
                    udp_port: e.sighting.as_ref().map_or(0, |s| s.udp_port),
                    trusted: e.trusted,
                    paths: e.paths.clone(),
                    state,
                    last_seen_ago: ago,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sighting(id: &str, last: u8, path: Path) -> Sighting {
        Sighting {
            id: id.into(),
            name: format!("dev-{id}"),
            fingerprint: "a b c d e f".into(),
            os: "linux".into(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 77, 0, last)),
            scope_id: 0,
            tcp_port: 8080,
            udp_port: 0,
            path,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_entry_per_device_id_fed_by_every_path() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        assert!(table.observe(sighting("a", 2, Path::Beacon), t0).is_some());
        // The same device by another path and again: no second entry, no second check.
        assert!(table.observe(sighting("a", 2, Path::Probe), t0).is_none());
        assert!(table.observe(sighting("a", 2, Path::Mdns), t0).is_none());
        let devices = table.devices(t0);
        assert_eq!(devices.len(), 1);
        assert_eq!(
            devices[0].paths.iter().copied().collect::<Vec<_>>(),
            [Path::Beacon, Path::Mdns, Path::Probe]
        );
        assert_eq!(devices[0].state, State::Checking);
    }

    #[test]
    fn no_device_is_listed_or_checked_at_an_unspecified_multicast_or_broadcast_address() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        for forged in [
            "0.0.0.0",
            "224.0.0.251",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
        ] {
            let forged = Sighting {
                ip: forged.parse().unwrap(),
                ..sighting("f", 2, Path::Mdns)
            };
            assert_eq!(table.observe(forged, t0), None, "no check");
        }
        assert!(table.devices(t0).is_empty());
    }

    #[test]
    fn ipv4_is_kept_over_ipv6_and_ipv6_keeps_its_interface_index() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        let v6 = |s: Sighting| Sighting {
            ip: "fe80::1".parse().unwrap(),
            scope_id: 7,
            ..s
        };
        // Heard over IPv6 first: the address carries the interface index.
        let addr = table
            .observe(v6(sighting("a", 2, Path::Beacon)), t0)
            .unwrap();
        assert_eq!(addr.to_string(), "[fe80::1%7]:8080");
        table.checked("a", addr, true);
        // IPv4 replaces it even though the IPv6 one is ready.
        let addr = table.observe(sighting("a", 2, Path::Beacon), t0 + secs(1));
        assert_eq!(addr, Some("10.77.0.2:8080".parse().unwrap()));
        // While IPv4 is fresh, IPv6 copies change nothing (and do not keep it alive).
        assert_eq!(
            table.observe(v6(sighting("a", 2, Path::Beacon)), t0 + secs(2)),
            None
        );
        let device = &table.devices(t0 + secs(2))[0];
        assert_eq!(device.addr, Some("10.77.0.2:8080".parse().unwrap()));
        assert_eq!(device.last_seen_ago, Some(secs(1)));
        // IPv4 silent long enough: IPv6 takes over.
        let addr = table.observe(v6(sighting("a", 2, Path::Beacon)), t0 + secs(45));
        assert_eq!(addr.map(|a| a.to_string()), Some("[fe80::1%7]:8080".into()));
    }

    #[test]
    fn ready_only_after_the_port_answers() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        let addr = table.observe(sighting("a", 2, Path::Beacon), t0).unwrap();
        table.checked("a", addr, false);
        assert_eq!(table.devices(t0)[0].state, State::PortSilent(8080));
        assert_eq!(
            table.devices(t0)[0].state.to_string(),
            "seen, but port 8080 does not answer"
        );
        table.checked("a", addr, true);
        assert_eq!(table.devices(t0)[0].state, State::Ready);
        // Another address while the ready one is fresh: kept (no flapping between the
        // interfaces of a multi-homed device).
        assert_eq!(
            table.observe(sighting("a", 3, Path::Beacon), t0 + secs(1)),
            None
        );
        assert_eq!(table.devices(t0 + secs(1))[0].state, State::Ready);
        assert_eq!(table.devices(t0 + secs(1))[0].addr, Some(addr));
        // Once the old one is not heard for a while, a new address needs a new check.
        let moved = table.observe(sighting("a", 3, Path::Beacon), t0 + secs(32));
        assert_eq!(moved, Some("10.77.0.3:8080".parse().unwrap()));
        assert_eq!(table.devices(t0 + secs(32))[0].state, State::Checking);
        // A late check result for the old address changes nothing.
        table.checked("a", addr, true);
        assert_eq!(table.devices(t0 + secs(32))[0].state, State::Checking);
    }

    #[test]
    fn silent_devices_grey_out_then_disappear_trusted_ones_stay_offline() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        table.add_trusted("t", "trusted-one", "x", None, None);
        assert_eq!(table.devices(t0)[0].state, State::Offline);
        let a = table.observe(sighting("a", 2, Path::Beacon), t0).unwrap();
        table.checked("a", a, true);
        let t = table.observe(sighting("t", 3, Path::Beacon), t0).unwrap();
        table.checked("t", t, true);
        let at = |table: &Table, s| {
            table
                .devices(t0 + secs(s))
                .into_iter()
                .map(|d| (d.id, d.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(&table, 39),
            [("a".into(), State::Ready), ("t".into(), State::Ready)]
        );
        assert_eq!(
            at(&table, 40),
            [("a".into(), State::Stale), ("t".into(), State::Stale)]
        );
        table.expire(t0 + secs(59));
        assert_eq!(table.devices(t0).len(), 2);
        table.expire(t0 + secs(60));
        assert_eq!(at(&table, 60), [("t".into(), State::Offline)]);
    }

    #[test]
    fn a_goodbye_removes_at_once_and_a_trusted_device_goes_offline() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        table.add_trusted("t", "trusted-one", "x", None, None);
        table.observe(sighting("a", 2, Path::Beacon), t0);
        table.observe(sighting("t", 3, Path::Beacon), t0);
        table.goodbye("a");
        table.goodbye("t");
        let devices = table.devices(t0);
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].state, State::Offline);
        // Heard again: back.
        table.observe(sighting("t", 3, Path::Beacon), t0 + secs(1));
        assert_eq!(table.devices(t0 + secs(1))[0].state, State::Checking);
    }

    #[test]
    fn a_trusted_devices_proven_ip_is_probed_and_never_its_address() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        let proven: IpAddr = "10.77.0.5".parse().unwrap();
        table.add_trusted("t", "sender-only", "x", None, Some(proven));
        assert_eq!(table.probe_targets(t0, secs(15)), [proven]);
        assert_eq!(table.devices(t0)[0].addr, None);
        // A beacon claiming its id moves its address; the proven IP is still probed.
        table.observe(sighting("t", 66, Path::Beacon), t0);
        let beacon: IpAddr = "10.77.0.66".parse().unwrap();
        assert_eq!(table.probe_targets(t0, secs(15)), [proven, beacon]);
    }

    #[test]
    fn probe_targets_are_trusted_and_quiet_devices() {
        let t0 = Instant::now();
        let mut table = Table::new(Ages::default());
        table.add_trusted(
            "t",
            "trusted-one",
            "x",
            Some("10.77.0.9:8080".parse().unwrap()),
            None,
        );
        table.observe(sighting("a", 2, Path::Beacon), t0);
        assert_eq!(
            table.probe_targets(t0 + secs(1), secs(15)),
            ["10.77.0.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(table.probe_targets(t0 + secs(20), secs(15)).len(), 2);
    }
}
