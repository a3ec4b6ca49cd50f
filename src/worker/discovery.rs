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

/// How long the reachability check of a typed address waits for a TCP connect.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the window asks discovery to run with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverySetup {
    /// Where the device identity is kept (`None`: the default config folder).
    pub identity_dir: Option<PathBuf>,
    /// The discovery port (`None`: the standard one; tests pick their own).
    pub port: Option<u16>,
    /// Favourites' addresses, probed by unicast (names are left to typed use).
    pub probe: Vec<IpAddr>,
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
    config.probe = setup.probe.clone();
    if let IpAddr::V4(v4) = bound.ip()
        && !v4.is_unspecified()
    {
        config.choice = Choice {
            only_addr: Some(v4),
            ..Choice::default()
        };
    }
    config
}

/// A running discovery and what the window was last told.
pub(super) struct Running {
    discovery: Discovery,
    choice: Choice,
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
    let config = config_for(setup, &identity, bound, notes_port);
    let choice = config.choice.clone();
    match Discovery::start(config) {
        Ok(discovery) => {
            sink.emit(Event::Discovery(DiscoveryEvent::Announcing {
                name: identity.name().to_owned(),
            }));
            let mut running = Running {
                discovery,
                choice,
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

pub(super) fn off(sink: &EventSink, reason: Option<String>) {
    sink.emit(Event::Discovery(DiscoveryEvent::Off { reason }));
}

impl Running {
    /// Tells the window the device list and the doctor's report, if either changed.
    pub(super) fn poll(&mut self, sink: &EventSink) {
        let devices: Vec<SeenDevice> = self.discovery.devices().iter().map(seen).collect();
        let doctor = interface_lines(&self.discovery.interfaces(), &self.discovery.heard());
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
