//! The engine's discovery half: while the server listens (and the window's "Find devices on
//! the LAN" is on), [`crate::discovery::Discovery`] announces the server's port under this
//! device's name, and the device list and the doctor's report reach the window as
//! [`DiscoveryEvent`]s, sent only when they changed (polled once a second: cheap, no locks
//! held across frames). A typed address is checked on a thread of its own.
//!
//! Safety on loopback: a server bound to one address is announced on that address's
//! interface only ([`config_for`]); bound to 127.0.0.1 that is loopback alone, where the
//! driver sends no mDNS at all. Tests rely on this to never send beacons to a real network.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::discovery::doctor::{address_lines, check_address, interface_lines, parse_target};
use crate::discovery::{Announce, Choice, Config, Device, Discovery, State, interfaces};
use crate::events::{DiscoveryEvent, Event, EventSink, Finding, SeenDevice, SeenState};
use crate::secure::Identity;
use crate::secure::identity::default_config_dir;
use crate::secure::trust::TrustStore;

/// How long the reachability check of a typed address waits for a TCP connect.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the window asks discovery to run with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverySetup {
    /// Where the device identity is kept (`None`: the default config folder).
    pub identity_dir: Option<PathBuf>,
    /// The discovery port (`None`: the standard one; tests pick their own).
    pub port: Option<u16>,
    /// Favourites' addresses, probed by unicast whatever the interface choice (names are left
    /// to typed use).
    pub probe: Vec<IpAddr>,
    /// The interfaces to use when the server listens on all addresses (the window's
    /// `--only-interface`; default: every LAN interface).
    pub choice: Choice,
}

/// The discovery config for a server bound to `bound`: announced with its port (and the
/// notes port, `0` when notes are not listening, so a click on this device sends notes where
/// they are heard), on the bound address's interface only unless bound to all.
pub fn config_for(
    setup: &DiscoverySetup,
    identity: &Identity,
    bound: SocketAddr,
    notes_port: u16,
) -> Config {
    let mut config = Config::new(Announce {
        id: identity.device_id(),
        name: identity.name().to_owned(),
        fingerprint: identity.fingerprint(),
        tcp_port: bound.port(),
        udp_port: notes_port,
    });
    if let Some(port) = setup.port {
        config.port = port;
    }
    config.favourites = setup.probe.clone();
    config.choice = setup.choice.clone().at_address(bound.ip());
    config
}

/// A running discovery and what the window was last told.
pub(super) struct Running {
    discovery: Discovery,
    choice: Choice,
    /// Where the trust store is (its devices' last IPs are probed).
    dir: PathBuf,
    devices: Option<Vec<SeenDevice>>,
    doctor: Vec<Finding>,
}

/// Starts discovery for a server bound to `bound`; says why not when it cannot.
pub(super) fn start(
    setup: &DiscoverySetup,
    bound: SocketAddr,
    notes_port: u16,
    sink: &EventSink,
) -> Option<Running> {
    let dir = setup.identity_dir.clone().or_else(default_config_dir);
    let Some(dir) = dir else {
        off(
            sink,
            Some("no config folder for the device identity".to_owned()),
        );
        return None;
    };
    let identity = match Identity::load_or_create(&dir) {
        Ok(identity) => identity,
        Err(e) => {
            off(sink, Some(e.to_string()));
            return None;
        }
    };
    let mut config = config_for(setup, &identity, bound, notes_port);
    config.probe = trusted_ips(&dir);
    let choice = config.choice.clone();
    match Discovery::start(config) {
        Ok(discovery) => {
            sink.emit(Event::Discovery(DiscoveryEvent::Announcing {
                name: identity.name().to_owned(),
            }));
            let mut running = Running {
                discovery,
                choice,
                dir,
                devices: None,
                doctor: Vec::new(),
            };
            running.poll(sink);
            Some(running)
        }
        Err(e) => {
            off(sink, Some(e.to_string()));
            None
        }
    }
}

/// The trusted devices' IPs to probe (from the trust store in `dir`; a store that cannot be
/// read gives none, and says so in the log). The favourites are probed apart
/// ([`Config::favourites`]).
fn trusted_ips(dir: &std::path::Path) -> Vec<IpAddr> {
    match TrustStore::load(dir) {
        Ok(store) => trusted_probes(&store),
        Err(e) => {
            log::warn!("discovery: trusted devices not probed: {e}");
            Vec::new()
        }
    }
}

/// Most trusted devices probed by unicast (the most recently seen first).
const MAX_TRUSTED_PROBES: usize = 32;

/// Where the window probes trusted devices by unicast, as `ferry serve` and `peers` do: the
/// IP of each one's last address and the IP its key was last proven at (a device that only
/// ever sent with `ferry send` has no address), so a network that blocks multicast and
/// broadcast still finds them. Only probed: what answers is listed from its own beacon.
fn trusted_probes(store: &TrustStore) -> Vec<IpAddr> {
    let mut devices: Vec<_> = store.devices().iter().collect();
    devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen_unix_secs));
    let mut ips: Vec<IpAddr> = Vec::new();
    for device in devices.into_iter().take(MAX_TRUSTED_PROBES) {
        let at = device.last_socket_addr().map(|a| a.ip());
        for ip in at.into_iter().chain(device.last_ip) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

pub(super) fn off(sink: &EventSink, reason: Option<String>) {
    sink.emit(Event::Discovery(DiscoveryEvent::Off { reason }));
}

impl Running {
    /// Tells the window the device list and the doctor's report, if either changed.
    pub(super) fn poll(&mut self, sink: &EventSink) {
        let devices: Vec<SeenDevice> = self.discovery.devices().iter().map(seen).collect();
        let doctor = interface_lines(
            &self.discovery.interfaces(),
            &self.discovery.heard(),
            &self.choice.chosen,
        );
        // "Last seen" ticks every second; compare without it so an idle list sends nothing,
        // except once a second at most (the poll rate) when something else changed.
        let same = |a: &[SeenDevice], b: &[SeenDevice]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    SeenDevice {
                        last_seen_ago: None,
                        ..x.clone()
                    } == SeenDevice {
                        last_seen_ago: None,
                        ..y.clone()
                    }
                })
        };
        let changed = match &self.devices {
            Some(old) => !same(old, &devices) || doctor != self.doctor,
            None => true,
        };
        if changed {
            self.devices = Some(devices.clone());
            self.doctor = doctor.clone();
            sink.emit(Event::Discovery(DiscoveryEvent::Devices {
                devices,
                doctor,
            }));
        }
    }

    pub(super) fn refresh(&self) {
        self.discovery.refresh();
    }

    /// The trusted devices changed (paired, trusted, forgotten): probe them as they are now,
    /// starting with a burst (a device just paired is looked for at once).
    pub(super) fn trust_changed(&self) {
        self.discovery.set_probes(trusted_ips(&self.dir));
        self.discovery.refresh();
    }

    pub(super) fn choice(&self) -> Choice {
        self.choice.clone()
    }

    /// Says goodbye and stops.
    pub(super) fn stop(self) {
        self.discovery.stop();
    }
}

/// A row of the discovery table, as the window's event carries it.
fn seen(device: &Device) -> SeenDevice {
    SeenDevice {
        id: device.id.clone(),
        name: device.name.clone(),
        fingerprint: device.fingerprint.clone(),
        addr: device.addr,
        udp_port: device.udp_port,
        trusted: device.trusted,
        how: device.paths.iter().map(|p| p.as_str()).collect(),
        state: match device.state {
            State::Ready => SeenState::Ready,
            State::Checking => SeenState::Checking,
            State::PortSilent(port) => SeenState::PortSilent(port),
            State::Stale => SeenState::Stale,
            State::Offline => SeenState::Offline,
        },
        last_seen_ago: device.last_seen_ago,
    }
}

/// Runs [`check`] on a thread of its own and sends its lines as `DiscoveryEvent::Checked`.
pub(super) fn spawn_check(seams: &super::Seams, sink: &EventSink, choice: Choice, target: String) {
    let sink = sink.clone();
    let spawned = (seams.spawner)(
        "ferry-doctor",
        Box::new(move || {
            let lines = check(&target, &choice);
            sink.emit(Event::Discovery(DiscoveryEvent::Checked { target, lines }));
        }),
    );
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to check an address: {e}");
    }
}

/// The doctor's check of a typed address (blocks up to [`CHECK_TIMEOUT`]): run it off the
/// engine thread.
pub(super) fn check(target: &str, choice: &Choice) -> Vec<Finding> {
    match parse_target(target) {
        Ok(addr) => {
            let used = interfaces::used(choice).unwrap_or_default();
            address_lines(&check_address(addr, &used, CHECK_TIMEOUT))
        }
        Err(e) => vec![e],
    }
}

/// The addresses a sender on the LAN can type: every non-loopback interface address when
/// bound to all interfaces, otherwise the bound address.
pub(super) fn reachable_addrs(bind: IpAddr, port: u16) -> Vec<SocketAddr> {
    if !bind.is_unspecified() {
        return vec![SocketAddr::new(bind, port)];
    }
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip| !ip.is_loopback() && ip.is_ipv4() == bind.is_ipv4())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn identity() -> Identity {
        Identity::from_private([7; 32], "desk")
    }

    #[test]
    fn a_server_on_loopback_is_announced_on_loopback_only() {
        let setup = DiscoverySetup {
            port: Some(40_001),
            ..DiscoverySetup::default()
        };
        let config = config_for(&setup, &identity(), "127.0.0.1:9000".parse().unwrap(), 0);
        assert_eq!(config.choice.only_addr, Some(Ipv4Addr::LOCALHOST));
        assert!(!config.choice.loopback, "mDNS stays off for loopback only");
        assert_eq!(config.port, 40_001);
        assert_eq!(config.me.tcp_port, 9000);
        assert_eq!(
            config.me.udp_port, 0,
            "no notes port while notes do not listen"
        );
        assert_eq!(config.me.name, "desk");
        assert_eq!(config.me.id, identity().device_id());
        // Every interface this config uses is loopback.
        let used = interfaces::used(&config.choice).unwrap();
        assert!(used.iter().all(|i| i.addr.is_loopback()), "{used:?}");
    }

    #[test]
    fn a_server_on_all_interfaces_uses_the_default_choice() {
        let config = config_for(
            &DiscoverySetup::default(),
            &identity(),
            "0.0.0.0:8080".parse().unwrap(),
            9090,
        );
        assert_eq!(config.choice, Choice::default());
        assert_eq!((config.me.tcp_port, config.me.udp_port), (8080, 9090));
        assert_eq!(config.port, crate::defaults::DISCOVERY_PORT);
    }

    #[test]
    fn a_server_on_all_interfaces_keeps_the_windows_choice_and_one_address_narrows_it() {
        let setup = DiscoverySetup {
            choice: Choice::named(&[], &["lo".into()]),
            ..DiscoverySetup::default()
        };
        let all = config_for(&setup, &identity(), "0.0.0.0:8080".parse().unwrap(), 0);
        assert!(
            all.choice.only_chosen && all.choice.loopback,
            "{:?}",
            all.choice
        );
        assert_eq!(all.choice.chosen, ["lo"]);
        // Bound to one address: that address alone, and the names kept so that peers are
        // still heard only by the routes chosen (as `ferry serve` does).
        let one = config_for(&setup, &identity(), "127.0.0.1:8080".parse().unwrap(), 0);
        assert_eq!(
            one.choice,
            Choice {
                only_addr: Some(Ipv4Addr::LOCALHOST),
                ..setup.choice.clone()
            }
        );
    }

    /// A device reachable by unicast alone at `ip` (a socket bound to that one loopback
    /// address, which no broadcast or multicast beacon reaches), on a free port.
    fn unicast_only(ip: Ipv4Addr) -> (std::net::UdpSocket, u16) {
        let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.bind(&SocketAddr::from((ip, port)).into()).unwrap();
        (socket.into(), port)
    }

    /// The window's discovery (its identity and trust store in `dir`) on loopback.
    fn running_in(
        dir: &std::path::Path,
        port: u16,
    ) -> (Running, crossbeam_channel::Receiver<Event>) {
        let setup = DiscoverySetup {
            identity_dir: Some(dir.to_owned()),
            port: Some(port),
            probe: Vec::new(),
            choice: Choice::default(),
        };
        let (sink, events) = crate::events::event_channel(None);
        let running = start(&setup, "127.0.0.1:9000".parse().unwrap(), 0, &sink).unwrap();
        (running, events)
    }

    fn trust_at(dir: &std::path::Path, ip: Ipv4Addr) {
        let mut store = TrustStore::load(dir).unwrap();
        let seen = Some(crate::secure::trust::SeenAt::Ip(ip.into()));
        store.pin("laptop", &[9; 32], seen, 1).unwrap();
        store.save().unwrap();
    }

    /// Waits (up to 10 s) for a probe from the discovery in `dir`.
    fn assert_probed(laptop: &std::net::UdpSocket, dir: &std::path::Path) {
        laptop
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let (len, _) = laptop.recv_from(&mut buf).expect("no probe reached the IP");
        let probe = crate::protocol::beacon::Beacon::decode(&buf[..len]).unwrap();
        assert_eq!(probe.id, identity_in(dir).device_id());
    }

    /// The window probes trusted devices where it last saw them, as the CLI does. Real UDP
    /// on 127.0.0.0/8.
    #[test]
    fn the_window_probes_a_trusted_device_where_its_key_was_last_proven() {
        let dir = tempfile::tempdir().unwrap();
        let laptop_ip = Ipv4Addr::new(127, 0, 0, 78);
        let (laptop, port) = unicast_only(laptop_ip);
        trust_at(dir.path(), laptop_ip);
        let _running = running_in(dir.path(), port);
        assert_probed(&laptop, dir.path());
    }

    /// A device trusted while discovery runs (paired in the window) is probed from then on.
    #[test]
    fn a_device_trusted_while_discovery_runs_is_probed_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let laptop_ip = Ipv4Addr::new(127, 0, 0, 79);
        let (laptop, port) = unicast_only(laptop_ip);
        let (running, _events) = running_in(dir.path(), port);
        // Nothing is probed there while nobody is trusted.
        laptop
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        assert!(
            laptop.recv_from(&mut [0u8; 2048]).is_err(),
            "probed before trusted"
        );
        trust_at(dir.path(), laptop_ip);
        running.trust_changed();
        assert_probed(&laptop, dir.path());
    }

    fn identity_in(dir: &std::path::Path) -> Identity {
        Identity::load_or_create(dir).unwrap()
    }

    #[test]
    fn trusted_devices_are_probed_at_their_address_and_proven_ip_most_recent_first() {
        use crate::secure::trust::SeenAt;

        let dir = tempfile::tempdir().unwrap();
        let mut store = TrustStore::load(dir.path()).unwrap();
        let server = |a: &str| Some(SeenAt::Server(a.parse().unwrap()));
        store
            .pin("old", &[1; 32], server("10.0.0.5:9000"), 50)
            .unwrap();
        store
            .pin("desk", &[2; 32], server("10.0.0.5:8080"), 100)
            .unwrap();
        store
            .pin(
                "phone",
                &[3; 32],
                Some(SeenAt::Ip("10.0.0.9".parse().unwrap())),
                200,
            )
            .unwrap();
        store.pin("nowhere", &[4; 32], None, 300).unwrap();
        let ips: Vec<String> = trusted_probes(&store)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.9", "10.0.0.5"]);
        for i in 0..40u8 {
            let seen = Some(SeenAt::Ip(IpAddr::from([10, 1, 0, i])));
            store
                .pin(&format!("d{i}"), &[i + 10; 32], seen, 1000)
                .unwrap();
        }
        assert_eq!(trusted_probes(&store).len(), MAX_TRUSTED_PROBES);
    }

    #[test]
    fn a_typed_address_that_does_not_parse_says_so() {
        let lines = check("no port here", &Choice::default());
        assert_eq!(lines.len(), 1);
        assert!(
            matches!(
                &lines[0],
                Finding::CannotResolve { target, .. } if target == "no port here"
            ),
            "{lines:?}"
        );
    }
}
