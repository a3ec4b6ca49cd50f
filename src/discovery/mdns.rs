//! The DNS-SD path of discovery: announce this device as `_ferry._tcp.local.` and browse for
//! others with the `mdns-sd` crate (it runs its own thread; no async runtime), restricted to
//! the interfaces discovery selected. Found services become [`Sighting`]s with
//! [`Path::Mdns`] in the same device table as beacons; a removed service (the other side's
//! goodbye, TTL 0) removes the device at once, like a beacon goodbye.
//!
//! # What is announced
//! - instance name: the device name (clipped to a DNS label, 63 bytes);
//! - host: `ferry-<first 12 hex digits of the device id>.local.`, addresses of the used
//!   interfaces (kept up to date by the daemon when addresses change);
//! - port: the TCP transfer port;
//! - TXT: `v` (the beacon version, [`BEACON_VERSION`]), `id` (device id), `name` (device
//!   name), `fp` (fingerprint), `udp` (notes port, 0 if none), `os`.
//!
//! Like beacons, these are hints: everything in a record is hostile and bounded here, and
//! identity is proven by the secure handshake only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::interfaces::Interface;
use super::socket::READ_TICK;
use super::table::{MAX_DEVICES, Path, Sighting};
use super::{Announce, DiscoveryError};
use crate::protocol::beacon::{BEACON_VERSION, MAX_BEACON_NAME_BYTES};
use crate::protocol::clip;

/// The DNS-SD service type Ferry announces and browses.
pub const SERVICE_TYPE: &str = "_ferry._tcp.local.";
/// The longest DNS label (the instance name is one label).
const MAX_LABEL_BYTES: usize = 63;
const MAX_FINGERPRINT_BYTES: usize = 128;
const MAX_OS_BYTES: usize = 32;
/// How long stopping waits for the goodbye and the daemon's shutdown.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// What the browser reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MdnsEvent {
    /// Another device's service, resolved.
    Seen(Sighting),
    /// Our own service, seen by our browser (the doctor's "heard back").
    Own(IpAddr),
    /// A service said goodbye (or expired): its device id.
    Gone(String),
}

/// The running announcer and browser.
pub(super) struct Mdns {
    daemon: ServiceDaemon,
    registered: Option<String>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Mdns {
    /// Starts the daemon on `port` (5353 outside tests), limited to `used`, announcing `me`
    /// unless it only browses (TCP port 0).
    pub(super) fn start(
        port: u16,
        me: &Announce,
        used: &[Interface],
        events: Sender<MdnsEvent>,
    ) -> Result<Mdns, DiscoveryError> {
        let fail = |e: mdns_sd::Error| DiscoveryError::Mdns(e.to_string());
        let daemon = ServiceDaemon::new_with_port(port).map_err(fail)?;
        let mdns = Mdns {
            daemon,
            registered: None,
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
        };
        mdns.select(used)?;
        let browse = mdns.daemon.browse(SERVICE_TYPE).map_err(fail)?;
        let mut mdns = mdns;
        let stop = Arc::clone(&mdns.stop);
        let my_id = me.id.clone();
        let reader = std::thread::Builder::new()
            .name("ferry-mdns-rx".into())
            .spawn(move || read_loop(&browse, &stop, &my_id, &events))
            .map_err(DiscoveryError::Thread)?;
        mdns.reader = Some(reader);
        if me.tcp_port != 0 {
            let info = service_info(me, used)?;
            let fullname = info.get_fullname().to_owned();
            mdns.daemon.register(info).map_err(fail)?;
            mdns.registered = Some(fullname);
        }
        Ok(mdns)
    }

    /// Limits the daemon to the interfaces in `used` (called again when they change).
    pub(super) fn select(&self, used: &[Interface]) -> Result<(), DiscoveryError> {
        let fail = |e: mdns_sd::Error| DiscoveryError::Mdns(e.to_string());
        self.daemon.disable_interface(IfKind::All).map_err(fail)?;
        let names: Vec<IfKind> = used.iter().map(|i| IfKind::Name(i.name.clone())).collect();
        if !names.is_empty() {
            self.daemon.enable_interface(names).map_err(fail)?;
        }
        Ok(())
    }

    /// Says goodbye (unregisters, which sends the records with TTL 0) and stops the daemon.
    pub(super) fn stop(mut self) {
        if let Some(fullname) = self.registered.take()
            && let Ok(status) = self.daemon.unregister(&fullname)
        {
            let _ = status.recv_timeout(STOP_WAIT);
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = status.recv_timeout(STOP_WAIT);
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The service record for `me` on `used`.
fn service_info(me: &Announce, used: &[Interface]) -> Result<ServiceInfo, DiscoveryError> {
    let host = format!("ferry-{}.local.", me.id.get(..12).unwrap_or(&me.id));
    let addrs: Vec<IpAddr> = used.iter().map(|i| IpAddr::V4(i.addr)).collect();
    let udp = me.udp_port.to_string();
    let version = BEACON_VERSION.to_string();
    let name = clip(&me.name, MAX_BEACON_NAME_BYTES);
    let fingerprint = clip(&me.fingerprint, MAX_FINGERPRINT_BYTES);
    let txt = [
        ("v", version.as_str()),
        ("id", me.id.as_str()),
        ("name", name.as_str()),
        ("fp", fingerprint.as_str()),
        ("udp", udp.as_str()),
        ("os", std::env::consts::OS),
    ];
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        &clip(&me.name, MAX_LABEL_BYTES),
        &host,
        &addrs[..],
        me.tcp_port,
        &txt[..],
    )
    .map_err(|e| DiscoveryError::Mdns(e.to_string()))?
    .enable_addr_auto();
    info.set_interfaces(used.iter().map(|i| IfKind::Name(i.name.clone())).collect());
    Ok(info)
}

fn read_loop(
    browse: &mdns_sd::Receiver<ServiceEvent>,
    stop: &AtomicBool,
    my_id: &str,
    events: &Sender<MdnsEvent>,
) {
    // fullname -> device id, to turn a removal into a goodbye (bounded like the table).
    let mut ids: HashMap<String, String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let event = match browse.recv_timeout(READ_TICK) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let Some(sighting) = sighting_of(&service) else {
                    log::debug!("mdns: ignored {}", service.get_fullname());
                    continue;
                };
                if sighting.id == my_id {
                    let _ = events.try_send(MdnsEvent::Own(sighting.ip));
                    continue;
                }
                if ids.len() < MAX_DEVICES || ids.contains_key(service.get_fullname()) {
                    ids.insert(service.get_fullname().to_owned(), sighting.id.clone());
                }
                let _ = events.try_send(MdnsEvent::Seen(sighting));
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some(id) = ids.remove(&fullname) {
                    let _ = events.try_send(MdnsEvent::Gone(id));
                }
            }
            _ => {}
        }
    }
}

/// A resolved service as a sighting, or None if anything is missing or out of bounds.
pub(super) fn sighting_of(service: &ResolvedService) -> Option<Sighting> {
    let txt = |key: &str| service.get_property_val_str(key);
    if txt("v")? != BEACON_VERSION.to_string() {
        return None;
    }
    let id = txt("id")?;
    let id_ok = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let instance = service
        .get_fullname()
        .strip_suffix(SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .map(unescape)
        .unwrap_or_default();
    let name = txt("name").map_or(instance, str::to_owned);
    let fingerprint = txt("fp").unwrap_or("");
    let os = txt("os").unwrap_or("");
    let bounded = name.len() <= MAX_BEACON_NAME_BYTES
        && !name.trim().is_empty()
        && fingerprint.len() <= MAX_FINGERPRINT_BYTES
        && os.len() <= MAX_OS_BYTES;
    let tcp_port = service.get_port();
    if !id_ok || !bounded || tcp_port == 0 {
        return None;
    }
    let mut v4: Vec<Ipv4Addr> = service.get_addresses_v4().into_iter().collect();
    v4.sort();
    let ip = IpAddr::V4(*v4.first()?);
    Some(Sighting {
        id: id.to_owned(),
        name,
        fingerprint: fingerprint.to_owned(),
        os: os.to_owned(),
        ip,
        scope_id: 0,
        tcp_port,
        udp_port: txt("udp").and_then(|p| p.parse().ok()).unwrap_or(0),
        path: Path::Mdns,
    })
}

/// An instance label with DNS-SD escapes (`\.`, `\\`) undone.
fn unescape(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut chars = label.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(txt: &[(&str, &str)], port: u16) -> ResolvedService {
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            "desk.top",
            "ferry-aaaa.local.",
            "10.77.0.9",
            port,
            txt,
        )
        .unwrap();
        info.as_resolved_service()
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_complete_record_is_a_sighting_and_bad_ones_are_not() {
        let good = resolved(&[("v", "1"), ("id", ID), ("fp", "a b"), ("udp", "9")], 8080);
        let s = sighting_of(&good).unwrap();
        assert_eq!(s.id, ID);
        // No `name` in TXT: the instance label, unescaped.
        assert_eq!(s.name, "desk.top");
        assert_eq!(s.ip, IpAddr::V4(Ipv4Addr::new(10, 77, 0, 9)));
        assert_eq!((s.tcp_port, s.udp_port, s.path), (8080, 9, Path::Mdns));

        let long = "x".repeat(MAX_BEACON_NAME_BYTES + 1);
        for bad in [
            resolved(&[("v", "2"), ("id", ID)], 8080),
            resolved(&[("id", ID)], 8080),
            resolved(&[("v", "1"), ("id", "ABC")], 8080),
            resolved(&[("v", "1"), ("id", ID)], 0),
            resolved(&[("v", "1"), ("id", ID), ("name", &long)], 8080),
            resolved(&[("v", "1"), ("id", ID), ("name", "  ")], 8080),
        ] {
            assert_eq!(sighting_of(&bad), None, "{bad:?}");
        }
    }
}
