//! The CLI's discovery commands: `ferry peers` (trusted devices; `--wait SECS` browses the LAN),
//! `ferry peers forget NAME`, `ferry doctor [ADDRESS[:PORT]]`, plus the two hooks other
//! commands use: announcing while `ferry serve` runs, and resolving `ferry send --to NAME`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{DoctorArgs, PeersAction, PeersArgs};
use crate::discovery::doctor::{address_lines, check_address, interface_lines, parse_target};
use crate::discovery::{
    Announce, Choice, Config, Device, Discovery, Known, State, Use, interfaces,
};
use crate::protocol::escape_line;
use crate::secure::identity::{default_config_dir, device_id, fingerprint};
use crate::secure::trust::TrustStore;
use crate::secure::{Identity, SecureError};

/// The config folder, or an error saying there is none.
fn config_dir() -> anyhow::Result<std::path::PathBuf> {
    default_config_dir().context("no config folder (neither $XDG_CONFIG_HOME nor a home folder)")
}

/// Trusted devices as discovery hints (listed even when silent, probed at their last address
/// and at the IP their key was last proven at).
fn known_devices(store: &TrustStore) -> Vec<Known> {
    store
        .devices()
        .iter()
        .map(|d| Known {
            id: d.device_id.clone(),
            name: d.name.clone(),
            fingerprint: d.key().map(|k| fingerprint(&k)).unwrap_or_default(),
            last_addr: d.last_socket_addr(),
            last_ip: d.last_ip,
        })
        .collect()
}

/// A discovery config for this device: `name` overrides the stored device name, `tcp_port` 0
/// browses only.
fn discovery_config(name: Option<&str>, tcp_port: u16, choice: Choice) -> anyhow::Result<Config> {
    let dir = config_dir()?;
    let identity = Identity::load_or_create(&dir)?;
    let trusted = TrustStore::load(&dir).map_err(|e: SecureError| anyhow::anyhow!(e))?;
    let mut config = Config::new(Announce {
        id: device_id(identity.public_key()),
        name: name.unwrap_or(identity.name()).to_owned(),
        fingerprint: identity.fingerprint(),
        tcp_port,
        udp_port: 0,
    });
    config.choice = choice;
    config.trusted = known_devices(&trusted);
    Ok(config)
}

/// Starts announcing for `ferry serve`; a failure is printed and serving goes on without it.
/// A server bound to one address is announced only on that address's interface.
pub fn announce(name: Option<&str>, bound: SocketAddr, choice: Choice) -> Option<Discovery> {
    let started = discovery_config(name, bound.port(), choice.at_address(bound.ip()))
        .and_then(|config| {
            let name = config.me.name.clone();
            Discovery::start(config)
                .map(|d| (d, name))
                .map_err(anyhow::Error::from)
        })
        .map(|(discovery, name)| {
            let used = discovery
                .interfaces()
                .iter()
                .filter(|(_, u)| *u == Use::Used)
                .count();
            say!(
                "discovery: announcing as {:?} on {used} interface(s) (ferry doctor says why one is not used)",
                escape_line(&name)
            );
            discovery
        });
    match started {
        Ok(discovery) => Some(discovery),
        Err(e) => {
            say!(
                "discovery off: {}; typed addresses still work",
                escape_line(&format!("{e:#}"))
            );
            None
        }
    }
}

/// One line per device: name, ADDRESS:PORT, trusted or not, how found, state.
pub fn device_line(device: &Device) -> String {
    let addr = device
        .addr
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    let how: Vec<&str> = device.paths.iter().map(|p| p.as_str()).collect();
    let how = if how.is_empty() {
        "-".to_owned()
    } else {
        how.join("+")
    };
    format!(
        "{}  {addr}  {}  {how}  {}",
        escape_line(&device.name),
        if device.trusted {
            "trusted"
        } else {
            "not trusted"
        },
        device.state
    )
}

pub fn peers(args: PeersArgs) -> anyhow::Result<ExitCode> {
    let dir = config_dir()?;
    if let Some(PeersAction::Forget { name }) = args.action {
        let mut store = TrustStore::load(&dir)?;
        // The name as stored, or as `ferry peers` lists it (a name with a control character
        // is listed escaped and cannot be typed as it is), or the device's fingerprint.
        let stored = store
            .devices()
            .iter()
            .find(|d| d.name == name)
            .or_else(|| {
                store.devices().iter().find(|d| {
                    escape_line(&d.name) == name
                        || d.key().is_some_and(|k| fingerprint(&k) == name.trim())
                })
            })
            .map(|d| d.name.clone());
        let Some(stored) = stored.filter(|stored| store.forget(stored)) else {
            anyhow::bail!("no trusted device is named {:?}", escape_line(&name));
        };
        store.save()?;
        say!("forgot {:?}", escape_line(&stored));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(wait_secs) = args.wait else {
        let store = TrustStore::load(&dir)?;
        if store.devices().is_empty() {
            say!("no trusted devices (ferry peers --wait 3 looks for devices on the LAN)");
        }
        for d in store.devices() {
            let fp = d.key().map(|k| fingerprint(&k)).unwrap_or_default();
            // A device that only ever sent has no address, but the IP it sent from.
            let seen_at = match (&d.last_address, d.last_ip) {
                (None, Some(ip)) => format!("  last seen at {ip} (no port known)"),
                _ => String::new(),
            };
            say!(
                "{}  {}  trusted  {}{seen_at}",
                escape_line(&d.name),
                escape_line(d.last_address.as_deref().unwrap_or("-")),
                fp
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let choice = args.interfaces.choice();
    let mut config = discovery_config(None, 0, choice.clone())?;
    config.favourites = probe_ips(&args.probe)?;
    let discovery = Discovery::start(config)?;
    // LocalSend devices are looked for over the same seconds.
    let localsend = super::localsend::Lookup::start(&args.localsend_probe, &args.sweep, &choice);
    std::thread::sleep(Duration::from_secs_f64(wait_secs.clamp(0.0, 3600.0)));
    let devices = discovery.devices();
    discovery.stop();
    let localsend_devices = localsend.finish();
    if devices.is_empty() && localsend_devices.is_empty() {
        tell!("no devices found (ferry doctor says why)");
    }
    for device in &devices {
        say!("{}", device_line(device));
    }
    for device in &localsend_devices {
        say!("{}", super::localsend::device_line(device));
    }
    Ok(ExitCode::SUCCESS)
}

/// `peers --probe`: each host's IPv4 addresses (a host name may have several; probes go to
/// IPv4 only), or why not. Read as `--to` is: a number the resolver would read as another
/// address (`0177.0.0.1`) is refused, and a word no host can have (`客厅`) is never handed
/// to the resolver.
fn probe_ips(hosts: &[String]) -> anyhow::Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for typed in hosts {
        let refused = |why: String| anyhow::anyhow!("--probe {:?}: {why}", escape_line(typed));
        let host = crate::defaults::parse_destination(typed)
            .map_err(|e| refused(e.to_string()))?
            .host;
        if !crate::defaults::could_name_a_host(&host) {
            return Err(refused("not an address or a host name".to_owned()));
        }
        let found = (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| refused(e.to_string()))?;
        let before = ips.len();
        ips.extend(found.map(|addr| addr.ip()).filter(IpAddr::is_ipv4));
        if ips.len() == before {
            return Err(refused(
                "no IPv4 address (discovery probes IPv4 only)".to_owned(),
            ));
        }
    }
    Ok(ips)
}

pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let target = args
        .address
        .as_deref()
        .map(parse_target)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let config = discovery_config(None, 0, args.interfaces.choice())?;
    let choice = config.choice.clone();
    match Discovery::start(config) {
        Ok(discovery) => {
            std::thread::sleep(Duration::from_secs_f64(args.wait.clamp(0.0, 3600.0)));
            let heard = discovery.heard();
            for finding in interface_lines(&discovery.interfaces(), &heard, &choice.chosen) {
                say!("{finding}");
            }
            let devices = discovery.devices();
            discovery.stop();
            say!("devices found: {}", devices.len());
            for device in &devices {
                say!("  {}", device_line(device));
            }
        }
        Err(e) => say!(
            "discovery cannot run: {} (another program holds the port?)",
            escape_line(&e.to_string())
        ),
    }
    if let Some(addr) = target {
        let used: Vec<_> = interfaces::used(&choice).unwrap_or_default();
        let report = check_address(addr, &used, Duration::from_secs(3));
        for finding in address_lines(&report) {
            say!("{finding}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How a typed name stands to the trusted devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTrust {
    /// A trusted device's name, exactly.
    Trusted,
    /// Not one, but it looks like one (another case, invisible characters): never to be
    /// taken for another device's name, a LocalSend alias included.
    LooksTrusted,
    /// No trusted device's (or the store cannot be read).
    Untrusted,
}

/// How `name` stands to the trusted devices (one read of the store).
pub fn name_trust(name: &str) -> NameTrust {
    let store = config_dir()
        .ok()
        .and_then(|dir| TrustStore::load(&dir).ok());
    match store {
        Some(store) if store.by_name(name).is_some() => NameTrust::Trusted,
        Some(store) if store.looks_like_a_trusted_name(name) => NameTrust::LooksTrusted,
        _ => NameTrust::Untrusted,
    }
}

/// `--to` for `ferry send`: HOST:PORT as given, otherwise the name of a discovered (ready)
/// or trusted device, and the key a trusted device of that name must present (`None` for
/// untrusted names).
pub fn find_device(to: &str, choice: &Choice) -> anyhow::Result<(String, Option<[u8; 32]>)> {
    if looks_like_address(to) {
        return Ok((to.to_owned(), None));
    }
    let config = discovery_config(None, 0, choice.clone())?;
    let dir = config_dir()?;
    let trusted = TrustStore::load(&dir)?;
    let key = trusted.by_name(to).and_then(|d| d.key());
    let discovery = Discovery::start(config)?;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut decided = None;
    let found = loop {
        let now = Instant::now();
        let devices = discovery.devices();
        let found = named(&devices, to, key.is_some());
        match found {
            // A trusted device answers for its key, so the first ready one will do.
            Named::One(_) if key.is_some() => break found,
            // A name anyone can announce: listen a little longer for another of that name,
            // and wait for any of that name whose port is still being checked.
            Named::One(_) => {
                let checking = of_name(&devices, to, false).any(|d| d.state == State::Checking);
                if now >= *decided.get_or_insert(now + NAME_CLASH_WAIT) && !checking {
                    break found;
                }
            }
            Named::Several(_) => break found,
            Named::None => {}
        }
        if now >= deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    discovery.stop();
    match found {
        Named::One(addr) => return Ok((addr.to_string(), key)),
        Named::Several(all) => {
            let all: Vec<String> = all
                .iter()
                .map(|(addr, fingerprint)| format!("{addr} ({})", escape_line(fingerprint)))
                .collect();
            anyhow::bail!(
                "several devices are named {:?} on the LAN: {}; use --to ADDRESS:PORT for the one you mean (its fingerprint is on its screen), or pair with it",
                escape_line(to),
                all.join(", ")
            );
        }
        Named::None => {}
    }
    if let Some(device) = trusted.by_name(to) {
        // A device that never said where its server listens (it only ever sent, with
        // `ferry send`) has no address: no port is guessed for it.
        return match device.last_address.clone() {
            Some(last) => Ok((last, key)),
            None => anyhow::bail!(
                "the trusted device {:?} is not on the LAN now, and no address is known for it \
                 (it never said which port its server listens on); use --to HOST:PORT",
                escape_line(to)
            ),
        };
    }
    anyhow::bail!(
        "no device named {:?} found on the LAN or among trusted devices (ferry peers --wait 3 lists them; ferry doctor says why one is missing)",
        escape_line(to)
    )
}

/// How long `send --to NAME` listens for a second device of an untrusted name once it heard
/// one, so that two devices announcing one name are told apart rather than one picked (a
/// LocalSend device's name too).
pub(super) const NAME_CLASH_WAIT: Duration = Duration::from_millis(600);

/// The ready devices called `to`.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    None,
    One(SocketAddr),
    /// Their addresses and fingerprints.
    Several(Vec<(SocketAddr, String)>),
}

/// The devices called `to`, trusted ones or the others.
fn of_name<'a>(
    devices: &'a [Device],
    to: &'a str,
    trusted: bool,
) -> impl Iterator<Item = &'a Device> {
    devices
        .iter()
        .filter(move |d| d.name == to && d.trusted == trusted)
}

/// The ready devices called `to` among `devices`: for a trusted name, only the trusted device
/// (anyone can announce its name; the pinned key would refuse them, but the real one should
/// be tried); otherwise every device announcing that name, one per device.
fn named(devices: &[Device], to: &str, trusted: bool) -> Named {
    let mut ready = of_name(devices, to, trusted)
        .filter(|d| d.state == State::Ready)
        .filter_map(|d| Some((d.addr?, d.fingerprint.clone())));
    match (ready.next(), ready.next()) {
        (None, _) => Named::None,
        (Some((addr, _)), None) => Named::One(addr),
        (Some(first), Some(second)) => {
            Named::Several([first, second].into_iter().chain(ready).collect())
        }
    }
}

/// HOST:PORT (with a numeric port) or a bare socket address: not a device name.
fn looks_like_address(to: &str) -> bool {
    to.parse::<SocketAddr>().is_ok()
        || to
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str, last: u8, trusted: bool, state: State) -> Device {
        Device {
            id: id.into(),
            name: name.into(),
            fingerprint: format!("words of {id}"),
            os: "linux".into(),
            addr: Some(SocketAddr::from(([10, 0, 0, last], 8080))),
            udp_port: 0,
            trusted,
            paths: Default::default(),
            state,
            last_seen_ago: None,
        }
    }

    /// A device that only ever sent is a probe target at its IP, never an address.
    #[test]
    fn trusted_devices_are_hints_at_their_address_and_at_their_proven_ip() {
        use crate::secure::trust::SeenAt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = TrustStore::load(dir.path()).unwrap();
        let ip: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        store
            .pin("sender", &[1; 32], Some(SeenAt::Ip(ip)), 1)
            .unwrap();
        let server: SocketAddr = "10.0.0.2:7878".parse().unwrap();
        store
            .pin("server", &[2; 32], Some(SeenAt::Server(server)), 1)
            .unwrap();
        let known = known_devices(&store);
        let at: Vec<_> = known.iter().map(|k| (k.last_addr, k.last_ip)).collect();
        assert_eq!(at, [(None, Some(ip)), (Some(server), Some(server.ip()))]);
    }

    #[test]
    fn a_name_is_one_ready_device_or_says_there_are_several() {
        let desk = |last| SocketAddr::from(([10, 0, 0, last], 8080));
        let devices = [
            device("a", "desk", 2, false, State::Ready),
            device("b", "desk", 3, false, State::Checking),
            device("c", "laptop", 4, false, State::Ready),
        ];
        assert_eq!(named(&devices, "desk", false), Named::One(desk(2)));
        assert_eq!(named(&devices, "phone", false), Named::None);
        let devices = [
            device("a", "desk", 2, false, State::Ready),
            device("b", "desk", 3, false, State::Ready),
        ];
        assert_eq!(
            named(&devices, "desk", false),
            Named::Several(vec![
                (desk(2), "words of a".into()),
                (desk(3), "words of b".into())
            ])
        );
        // A trusted name: only the trusted device, whoever else announces that name (and
        // whichever comes first in the list).
        let devices = [
            device("x", "desk", 9, false, State::Ready),
            device("a", "desk", 2, true, State::Ready),
        ];
        assert_eq!(named(&devices, "desk", true), Named::One(desk(2)));
        let devices = [
            device("x", "desk", 9, false, State::Ready),
            device("a", "desk", 2, true, State::Offline),
        ];
        assert_eq!(named(&devices, "desk", true), Named::None);
    }

    #[test]
    fn addresses_are_not_names() {
        assert!(looks_like_address("10.0.0.2:8080"));
        assert!(looks_like_address("desk.local:8080"));
        assert!(looks_like_address("[::1]:8080"));
        assert!(!looks_like_address("desk"));
        assert!(!looks_like_address("my laptop"));
    }
}
