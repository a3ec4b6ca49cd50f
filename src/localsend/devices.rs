//! The table of LocalSend devices heard (announcements on either IP family, register
//! requests, register answers, the sweep, probes): bounded, one entry per certificate
//! fingerprint, so a device heard over IPv4 and IPv6 is one device with an address of each
//! family (the IPv4 one listed first unless only the IPv6 one is current). A plain-HTTP
//! claim never turns a device known to speak HTTPS into a plain one, here and where probe
//! answers join a list ([`add_probed`]); a claimed fingerprint must be printable ASCII.
//!
//! LocalSend devices announce only when they start, so nothing says when one leaves. A
//! register sweep that asked a device's address and got no answer from it is the evidence:
//! [`DeviceTable::forget_silent`] drops such devices when the sweep ends. A device at an
//! address no sweep asks (another port, IPv6 only) stays listed, as in LocalSend itself.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::LocalSendProtocol;
use super::wire::DeviceInfo;

/// Devices remembered. When full, the one heard longest ago goes first, of those with the
/// weakest [`Proof`]: anyone can announce fresh fingerprints from forged addresses (or
/// register with fresh certificates of its own), and a flood of them must not push out the
/// devices that proved who they are where they are.
const MAX_DEVICES: usize = 256;
/// A device is registered with at most once in this time at one address (an address of
/// the other family, or a new one, is due at once).
const REGISTER_EVERY: Duration = Duration::from_secs(5);
/// A device's IPv4 address is listed first unless its IPv6 one was heard this much later.
const FAMILY_STALE: Duration = Duration::from_secs(60);

/// A LocalSend device heard on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendDevice {
    /// Its alias (hostile text: escape before showing).
    pub alias: String,
    pub device_type: String,
    pub device_model: Option<String>,
    /// SHA-256 of its certificate, upper-case hex (pinned when we connect); for a plain-HTTP
    /// device only the id it claims (nothing proves it).
    pub fingerprint: String,
    /// Its HTTPS (or HTTP) address and port: the IPv4 one when it was heard over IPv4 (and
    /// its IPv6 one is not much newer), else the IPv6 one (a link-local one with its scope).
    pub addr: SocketAddr,
    /// Its IPv6 address and port, when it was heard over IPv6.
    pub addr_v6: Option<SocketAddr>,
    /// HTTPS, or plain HTTP (its encryption is turned off).
    pub protocol: LocalSendProtocol,
    /// How it was heard: `multicast`, `register`, `answer`.
    pub how: Vec<&'static str>,
    pub last_seen: Instant,
    /// Whether a certificate with its fingerprint was seen (a pinned register answer, a
    /// register request with a client certificate, a sweep or probe over HTTPS). A proven
    /// device changes only through such contact: a claim (an announcement, a register
    /// without a certificate) from another address, which anyone can forge, moves nothing.
    pub proven: bool,
}

/// Adds a device a register probe found to `devices` (one per fingerprint): a device
/// already listed stays as it is, unless the probe proved with its certificate that one
/// listed as plain HTTP (anyone can claim a fingerprint) speaks HTTPS.
pub fn add_probed(devices: &mut Vec<LocalSendDevice>, found: LocalSendDevice) {
    match devices
        .iter_mut()
        .find(|d| d.fingerprint == found.fingerprint)
    {
        Some(listed)
            if listed.protocol == LocalSendProtocol::Http
                && found.protocol == LocalSendProtocol::Https =>
        {
            *listed = found;
        }
        Some(_) => {}
        None => devices.push(found),
    }
}

/// What showed that a device is who it says, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Proof {
    /// Only its word: an announcement, a register without a client certificate, a plain
    /// HTTP answer.
    Claimed,
    /// It connected to us with a client certificate whose fingerprint is the one it named
    /// (anyone can make a certificate: it proves the key, not which device).
    Certificate,
    /// We reached it at its address and its certificate had the fingerprint: a pinned
    /// answer to its announcement, the sweep over HTTPS.
    Reached,
}

/// One device of the table, with what only the table needs.
#[derive(Debug)]
struct Entry {
    device: LocalSendDevice,
    /// Where and when we last registered with it, per family (index: [`family`]).
    registered: [Option<(SocketAddr, Instant)>; 2],
    /// Its latest address of each family, and when it was heard there.
    v4: Option<(SocketAddr, Instant)>,
    v6: Option<(SocketAddr, Instant)>,
    /// The strongest proof seen (`device.proven` says whether it is above a claim).
    proof: Proof,
}

/// The devices heard, by fingerprint.
#[derive(Debug, Default)]
pub(super) struct DeviceTable {
    devices: HashMap<String, Entry>,
}

impl DeviceTable {
    /// Records `info` heard from `addr` (its port: announced, or LocalSend's default).
    pub(super) fn heard(&mut self, info: DeviceInfo, addr: SocketAddr, how: &'static str) {
        self.heard_at(info, addr, how, Instant::now());
    }

    fn heard_at(&mut self, info: DeviceInfo, addr: SocketAddr, how: &'static str, now: Instant) {
        self.record(info, addr, how, now, Proof::Claimed);
    }

    /// As [`DeviceTable::heard`], over TLS from a certificate whose fingerprint is the one
    /// `info` names (the caller checked it), in the way `proof` says.
    pub(super) fn heard_proven(
        &mut self,
        info: DeviceInfo,
        addr: SocketAddr,
        how: &'static str,
        proof: Proof,
    ) {
        self.record(info, addr, how, Instant::now(), proof);
    }

    /// A pinned answer heard at `now` (tests).
    #[cfg(test)]
    fn heard_proven_at(
        &mut self,
        info: DeviceInfo,
        addr: SocketAddr,
        how: &'static str,
        now: Instant,
    ) {
        self.record(info, addr, how, now, Proof::Reached);
    }

    /// Records the device (see [`LocalSendDevice::proven`] and [`Proof`]).
    fn record(
        &mut self,
        info: DeviceInfo,
        addr: SocketAddr,
        how: &'static str,
        now: Instant,
        proof: Proof,
    ) {
        let Some(fingerprint) = super::claimed_fingerprint(&info.fingerprint) else {
            return;
        };
        // Said by announcements and registers; a body without it changes nothing.
        let protocol = info
            .protocol
            .as_deref()
            .map(|p| LocalSendProtocol::announced(Some(p)));
        // A device known to speak HTTPS is never turned into a plain-HTTP one by a claim, so
        // its files never go in the clear to whoever claimed it.
        if let Some(known) = self.devices.get(&fingerprint)
            && let Some(claimed) = protocol
            && !known.device.protocol.may_become(claimed)
        {
            log::debug!("LocalSend: ignoring a plain-HTTP claim to an HTTPS device from {addr}");
            return;
        }
        // A claim to a proven device only says it is still there, and only from where it
        // is: anyone can announce its fingerprint from elsewhere (its own answer to an
        // announcement from a new address is proven, and moves it).
        if proof == Proof::Claimed
            && let Some(known) = self.devices.get_mut(&fingerprint)
            && known.proof > Proof::Claimed
        {
            let listed = match addr {
                SocketAddr::V4(_) => known.v4.map(|(a, _)| a),
                SocketAddr::V6(_) => known.v6.map(|(a, _)| a),
            };
            if listed == Some(addr) {
                known.device.last_seen = now;
                if !known.device.how.contains(&how) {
                    known.device.how.push(how);
                }
            } else {
                log::debug!("LocalSend: ignoring a claim that moves a proven device to {addr}");
            }
            return;
        }
        if !self.devices.contains_key(&fingerprint) && self.devices.len() >= MAX_DEVICES {
            let oldest = self
                .devices
                .iter()
                .min_by_key(|(_, e)| (e.proof, e.device.last_seen))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.devices.remove(&oldest);
            }
        }
        let entry = self
            .devices
            .entry(fingerprint.clone())
            .or_insert_with(|| Entry {
                device: LocalSendDevice {
                    alias: String::new(),
                    device_type: String::new(),
                    device_model: None,
                    fingerprint,
                    addr,
                    addr_v6: None,
                    protocol: LocalSendProtocol::Https,
                    how: Vec::new(),
                    last_seen: now,
                    proven: false,
                },
                registered: [None; 2],
                v4: None,
                v6: None,
                proof: Proof::Claimed,
            });
        match addr {
            SocketAddr::V4(_) => entry.v4 = Some((addr, now)),
            SocketAddr::V6(_) => entry.v6 = Some((addr, now)),
        }
        let device = &mut entry.device;
        device.alias = info.label();
        device.device_type = info.kind().to_owned();
        device.device_model = info.device_model.map(|m| crate::protocol::clip(&m, 64));
        device.addr = match (entry.v4, entry.v6) {
            (Some((v4, at4)), Some((v6, at6))) => {
                if at6.saturating_duration_since(at4) > FAMILY_STALE {
                    v6
                } else {
                    v4
                }
            }
            (Some((v4, _)), None) => v4,
            (None, Some((v6, _))) => v6,
            (None, None) => addr,
        };
        device.addr_v6 = entry.v6.map(|(v6, _)| v6);
        if let Some(protocol) = protocol {
            device.protocol = protocol;
        }
        if !device.how.contains(&how) {
            device.how.push(how);
        }
        device.last_seen = now;
        entry.proof = entry.proof.max(proof);
        device.proven = entry.proof > Proof::Claimed;
    }

    /// Whether to register with this device at `addr` now (not done there within
    /// [`REGISTER_EVERY`]). Per address, not per device: a claim to a proven device from an
    /// address not listed for it moves nothing, so only the pinned answer there can list
    /// it there; one answer per device would leave the address of the family heard second
    /// (a device announces on both at once) or the one it just moved to unlisted.
    pub(super) fn register_due(&mut self, fingerprint: &str, addr: SocketAddr) -> bool {
        let Some(entry) = self.devices.get_mut(&fingerprint.to_ascii_uppercase()) else {
            return false;
        };
        let now = Instant::now();
        let last = &mut entry.registered[family(addr)];
        let due = last.is_none_or(|(at, t)| at != addr || now.duration_since(t) >= REGISTER_EVERY);
        if due {
            *last = Some((addr, now));
        }
        due
    }

    /// Forgets the devices listed at an address in `asked` (a sweep's targets) that were
    /// not heard at all since `since` (when the sweep began): not at that address, nor over
    /// IPv6, nor by announcing. Returns how many were forgotten.
    pub(super) fn forget_silent(&mut self, asked: &HashSet<SocketAddr>, since: Instant) -> usize {
        let before = self.devices.len();
        self.devices.retain(|_, entry| {
            let swept = entry.v4.is_some_and(|(addr, _)| asked.contains(&addr));
            !swept || entry.device.last_seen >= since
        });
        before - self.devices.len()
    }

    pub(super) fn list(&self) -> Vec<LocalSendDevice> {
        let mut list: Vec<LocalSendDevice> =
            self.devices.values().map(|e| e.device.clone()).collect();
        list.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
        list
    }
}

/// 0 for an IPv4 address, 1 for an IPv6 one.
fn family(addr: SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(alias: &str, fingerprint: &str) -> DeviceInfo {
        serde_json::from_value(serde_json::json!({
            "alias": alias, "version": "2.2", "deviceType": "mobile",
            "fingerprint": fingerprint, "port": 53317, "protocol": "https"
        }))
        .expect("device info")
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_register_is_due_once_per_address_so_a_moved_or_second_family_address_is_asked() {
        let mut table = DeviceTable::default();
        let (home, moved, v6) = (
            addr("10.0.0.7:1"),
            addr("10.0.0.9:1"),
            addr("[fe80::7%2]:1"),
        );
        table.heard_proven_at(info("Phone", "AB-12"), home, "answer", Instant::now());
        assert!(table.register_due("ab-12", home));
        assert!(
            !table.register_due("AB-12", home),
            "not again there so soon"
        );
        assert!(table.register_due("AB-12", v6), "its other family");
        assert!(table.register_due("AB-12", moved), "where it moved");
        assert!(!table.register_due("CD-34", home), "an unknown device");
    }

    #[test]
    fn a_claim_from_elsewhere_never_moves_or_renames_a_proven_device() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        let home = addr("10.0.0.7:53317");
        table.heard_proven_at(info("Phone", "AB-12"), home, "answer", t0);
        let phone = |t: &DeviceTable| t.list().into_iter().find(|d| d.fingerprint == "AB-12");
        assert!(phone(&table).is_some_and(|d| d.proven));

        let t1 = t0 + Duration::from_secs(1);
        table.heard_at(
            info("Evil", "AB-12"),
            addr("10.0.0.66:53317"),
            "multicast",
            t1,
        );
        table.heard_at(
            info("Evil", "AB-12"),
            addr("[fe80::66%2]:53317"),
            "register",
            t1,
        );
        let listed = phone(&table).expect("listed");
        assert_eq!((listed.addr, listed.addr_v6), (home, None));
        assert_eq!(listed.alias, "Phone");
        assert_eq!(
            listed.last_seen, t0,
            "a claim from elsewhere is not a sign of life"
        );

        // Its own announcement, from where it is, says it is still there.
        let t2 = t0 + Duration::from_secs(2);
        table.heard_at(info("Phone", "AB-12"), home, "multicast", t2);
        let listed = phone(&table).expect("listed");
        assert_eq!((listed.addr, listed.last_seen), (home, t2));
        assert!(listed.how.contains(&"multicast"), "{:?}", listed.how);

        // Proven contact at a new address (its answer after it moved) moves it.
        let moved = addr("10.0.0.9:53317");
        table.heard_proven_at(info("Phone 2", "AB-12"), moved, "answer", t2);
        let listed = phone(&table).expect("listed");
        assert_eq!((listed.addr, listed.alias.as_str()), (moved, "Phone 2"));
    }

    #[test]
    fn a_flood_of_claimed_fingerprints_never_evicts_a_device_that_proved_its_own() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        table.heard_proven_at(info("Phone", "AB-12"), addr("10.0.0.7:53317"), "answer", t0);
        // Heard once more later, by a claim: it stays proven.
        table.heard_at(
            info("Phone", "AB-12"),
            addr("10.0.0.7:53317"),
            "multicast",
            t0,
        );
        for i in 0..3 * MAX_DEVICES {
            let at = t0 + Duration::from_millis(1 + i as u64);
            let fake = format!("FAKE-{i}");
            table.heard_at(
                info("Fake", &fake),
                addr("10.0.0.66:53317"),
                "multicast",
                at,
            );
        }
        let listed = table.list();
        assert_eq!(listed.len(), MAX_DEVICES);
        assert!(
            listed.iter().any(|d| d.alias == "Phone"),
            "the proven device stays"
        );
        // The newest claims are kept, the oldest went first.
        let last = format!("FAKE-{}", 3 * MAX_DEVICES - 1);
        assert!(listed.iter().any(|d| d.fingerprint == last));
        assert!(!listed.iter().any(|d| d.fingerprint == "FAKE-0"));
        // Registers, each with a fresh certificate of its own, outrank claims but not a
        // device reached at its address.
        for i in 0..3 * MAX_DEVICES {
            let at = t0 + Duration::from_secs(1) + Duration::from_millis(i as u64);
            let fake = format!("CERT-{i}");
            let from = addr("10.0.0.67:53317");
            table.record(
                info("Cert", &fake),
                from,
                "register",
                at,
                Proof::Certificate,
            );
        }
        let listed = table.list();
        assert_eq!(listed.len(), MAX_DEVICES);
        assert!(listed.iter().any(|d| d.alias == "Phone"), "reached: stays");
        assert!(listed.iter().all(|d| d.proven), "the claims went first");
        // A table of proven devices only still makes room (the oldest goes).
        let mut proven = DeviceTable::default();
        for i in 0..=MAX_DEVICES {
            let at = t0 + Duration::from_millis(i as u64);
            let fp = format!("REAL-{i}");
            proven.heard_proven_at(info("Real", &fp), addr("10.0.0.8:53317"), "answer", at);
        }
        let listed = proven.list();
        assert_eq!(listed.len(), MAX_DEVICES);
        assert!(!listed.iter().any(|d| d.fingerprint == "REAL-0"));
    }

    #[test]
    fn a_sweep_forgets_only_devices_it_asked_that_were_not_heard_while_it_ran() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        let (gone, back, elsewhere, v6_too) = (
            addr("192.168.1.10:53317"),
            addr("192.168.1.11:53317"),
            addr("192.168.1.12:9000"),
            addr("192.168.1.13:53317"),
        );
        table.heard_at(info("Gone", "AA-01"), gone, "multicast", t0);
        table.heard_at(info("Back", "AA-02"), back, "multicast", t0);
        table.heard_at(info("Elsewhere", "AA-03"), elsewhere, "multicast", t0);
        table.heard_at(info("Both", "AA-04"), v6_too, "multicast", t0);
        let swept_at = t0 + Duration::from_secs(10);
        table.heard_at(info("Back", "AA-02"), back, "sweep", swept_at);
        // Silent at its IPv4 address, but it announced over IPv6 while the sweep ran.
        let v6 = addr("[fe80::1%2]:53317");
        table.heard_at(info("Both", "AA-04"), v6, "multicast", swept_at);
        let asked: HashSet<SocketAddr> = [gone, back, v6_too, addr("192.168.1.99:53317")]
            .into_iter()
            .collect();

        assert_eq!(table.forget_silent(&asked, swept_at), 1);
        let mut left: Vec<String> = table.list().into_iter().map(|d| d.alias).collect();
        left.sort();
        assert_eq!(left, ["Back", "Both", "Elsewhere"]);
        // A sweep that began before the device was last heard forgets nothing.
        assert_eq!(table.forget_silent(&asked, t0), 0);
    }

    #[test]
    fn a_device_heard_over_both_families_is_one_device_listed_at_its_ipv4_address() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        table.heard_at(
            info("Phone", "ab12"),
            addr("10.0.0.7:53317"),
            "multicast",
            t0,
        );
        let v6 = addr("[fe80::7%2]:53317");
        table.heard_at(
            info("Phone", "AB12"),
            v6,
            "register",
            t0 + Duration::from_secs(1),
        );
        let list = table.list();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].addr, addr("10.0.0.7:53317"));
        assert_eq!(list[0].addr_v6, Some(v6));
        // The scope survives: a link-local address is useless without it.
        assert!(matches!(list[0].addr_v6, Some(SocketAddr::V6(a)) if a.scope_id() == 2));
        assert_eq!(list[0].how, vec!["multicast", "register"]);
    }

    #[test]
    fn a_plain_http_claim_never_turns_an_https_device_plain_but_the_other_way_is_fine() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        let phone = addr("10.0.0.7:53317");
        table.heard_at(info("Phone", "AB12"), phone, "multicast", t0);
        let mut lie = info("Phone", "ab12");
        lie.protocol = Some("http".to_owned());
        table.heard_at(lie, addr("10.0.0.66:53317"), "multicast", t0);
        let list = table.list();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].protocol, LocalSendProtocol::Https);
        assert_eq!(list[0].addr, phone, "the claim moved nothing");
        // A device first heard over HTTP whose owner turns Encryption on is HTTPS from then.
        let mut plain = info("Laptop", "CD34");
        plain.protocol = Some("http".to_owned());
        table.heard_at(plain, addr("10.0.0.8:53317"), "multicast", t0);
        let laptop = |t: &DeviceTable| t.list().into_iter().find(|d| d.alias == "Laptop");
        assert_eq!(
            laptop(&table).map(|d| d.protocol),
            Some(LocalSendProtocol::Http)
        );
        table.heard_at(
            info("Laptop", "CD34"),
            addr("10.0.0.8:53317"),
            "multicast",
            t0,
        );
        assert_eq!(
            laptop(&table).map(|d| d.protocol),
            Some(LocalSendProtocol::Https)
        );
    }

    #[test]
    fn a_probe_proving_https_wins_over_a_plain_claim_and_never_the_other_way() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        let mut claim = info("Laptop", "CD34");
        claim.protocol = Some("http".to_owned());
        table.heard_at(claim, addr("10.0.0.66:53317"), "multicast", t0);
        let mut listed = table.list();
        let proven = LocalSendDevice {
            protocol: LocalSendProtocol::Https,
            addr: addr("10.0.0.8:53317"),
            how: vec!["probe"],
            ..listed[0].clone()
        };
        add_probed(&mut listed, proven.clone());
        assert_eq!(listed, vec![proven.clone()]);
        let plain = LocalSendDevice {
            protocol: LocalSendProtocol::Http,
            addr: addr("10.0.0.66:53317"),
            ..proven.clone()
        };
        add_probed(&mut listed, plain);
        assert_eq!(listed, vec![proven], "a plain claim changes nothing");
    }

    #[test]
    fn a_claimed_fingerprint_that_is_no_printable_ascii_lists_no_device() {
        // Over plain HTTP nothing proves the id, and it is printed: a terminal escape in it
        // never gets into the table.
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        for hostile in ["AB\u{1b}]0;OWNED\u{7}", "AB CD", "指纹", "AB\n12", "  "] {
            let mut plain = info("Sneaky", hostile);
            plain.protocol = Some("http".to_owned());
            table.heard_at(plain, addr("10.0.0.9:53317"), "multicast", t0);
        }
        assert!(table.list().is_empty(), "{:?}", table.list());
        table.heard_at(
            info("Fine", " ab-12 "),
            addr("10.0.0.9:53317"),
            "register",
            t0,
        );
        assert_eq!(table.list()[0].fingerprint, "AB-12");
    }

    #[test]
    fn the_ipv6_address_is_listed_first_only_when_the_ipv4_one_is_stale() {
        let mut table = DeviceTable::default();
        let t0 = Instant::now();
        let v4 = addr("192.168.1.9:53317");
        let v6 = addr("[fd00::9]:53317");
        table.heard_at(info("Laptop", "CD34"), v6, "multicast", t0);
        assert_eq!(table.list()[0].addr, v6, "only IPv6 heard so far");
        table.heard_at(info("Laptop", "CD34"), v4, "multicast", t0);
        assert_eq!(table.list()[0].addr, v4);
        let soon = t0 + Duration::from_secs(1);
        table.heard_at(info("Laptop", "CD34"), v6, "multicast", soon);
        assert_eq!(
            table.list()[0].addr,
            v4,
            "a newer IPv6 address alone does not win"
        );
        let later = t0 + FAMILY_STALE + Duration::from_secs(1);
        table.heard_at(info("Laptop", "CD34"), v6, "multicast", later);
        assert_eq!(table.list()[0].addr, v6, "the IPv4 address went quiet");
        table.heard_at(info("Laptop", "CD34"), v4, "multicast", later);
        assert_eq!(table.list()[0].addr, v4);
        assert_eq!(table.list().len(), 1);
    }
}
