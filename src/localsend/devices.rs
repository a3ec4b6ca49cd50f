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
//! An answer without a register body (an HTTP error, a pinned handshake whose answer is
//! late) is no silence: [`DeviceTable::reached_at`] counts the device it proves as heard.
//! A check (another device claimed its address) that it does not answer forgets that
//! address only ([`DeviceTable::forget_at`]): the device goes when it was its last. One
//! kept at its IPv6 address that way is still asked for at the IPv4 address it lost: a
//! sweep that does not hear it at all forgets it, as one listed at both families.

use std::cmp::Reverse;
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
/// already listed stays as it is, unless the probe proved with its certificate what the
/// listed one only claims (anyone can claim a fingerprint, from any address): then the
/// probe's address, name and protocol win.
pub fn add_probed(devices: &mut Vec<LocalSendDevice>, found: LocalSendDevice) {
    match devices
        .iter_mut()
        .find(|d| d.fingerprint == found.fingerprint)
    {
        Some(listed) if found.proven && !listed.proven => {
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

/// Where and when a kind of contact with a device was last made, per family (index:
/// [`family`]).
type Contacts = [Option<(SocketAddr, Instant)>; 2];

/// One device of the table, with what only the table needs.
#[derive(Debug)]
struct Entry {
    device: LocalSendDevice,
    /// Where and when we last registered with it.
    registered: Contacts,
    /// Where and when we last checked it was still there (see `discovery`), likewise.
    checked: Contacts,
    /// Its latest address of each family, and when it was heard there.
    v4: Option<(SocketAddr, Instant)>,
    v6: Option<(SocketAddr, Instant)>,
    /// The IPv4 address a check forgot while its IPv6 one kept it listed
    /// ([`DeviceTable::forget_at`]), until it is heard over IPv4 again: where sweeps (IPv4
    /// only) still ask for it, so a device gone from both families does not stay listed for
    /// ever at an IPv6 address nothing asks.
    lost_v4: Option<SocketAddr>,
    /// The strongest proof seen (`device.proven` says whether it is above a claim).
    proof: Proof,
}

impl Entry {
    /// Its IPv4 address, if that is one of `asked` and the device was not heard at all
    /// since `since` (not there, nor over IPv6, nor by announcing).
    /// An address a check forgot counts as its IPv4 one (see [`Entry::lost_v4`]).
    fn silent_at(&self, asked: &HashSet<SocketAddr>, since: Instant) -> Option<SocketAddr> {
        let addr = self.v4.map(|(addr, _)| addr).or(self.lost_v4)?;
        (asked.contains(&addr) && self.device.last_seen < since).then_some(addr)
    }

    /// Its address listed for `addr`'s family, if any.
    fn listed(&self, addr: SocketAddr) -> Option<SocketAddr> {
        match addr {
            SocketAddr::V4(_) => self.v4.map(|(a, _)| a),
            SocketAddr::V6(_) => self.v6.map(|(a, _)| a),
        }
    }

    /// Its slot for `addr`'s family.
    fn slot(&mut self, addr: SocketAddr) -> &mut Option<(SocketAddr, Instant)> {
        match addr {
            SocketAddr::V4(_) => &mut self.v4,
            SocketAddr::V6(_) => &mut self.v6,
        }
    }

    /// Records that it was heard at `addr` (an address of that family), `how`, at `now`
    /// (see [`Entry::touched`]).
    fn seen(&mut self, addr: SocketAddr, how: &'static str, now: Instant) {
        self.touched(addr, now);
        if !self.device.how.contains(&how) {
            self.device.how.push(how);
        }
    }

    /// Records that it was heard at `addr` at `now`, and lists it at its IPv4 address
    /// unless its IPv6 one was heard [`FAMILY_STALE`] later.
    fn touched(&mut self, addr: SocketAddr, now: Instant) {
        *self.slot(addr) = Some((addr, now));
        if addr.is_ipv4() {
            self.lost_v4 = None;
        }
        self.relist();
        self.device.last_seen = now;
    }

    /// Lists it at the address of the family its addresses say (see [`Entry::touched`]);
    /// called whenever one changes. Keeps the listed address when it has none (never the
    /// case for an entry of the table: one whose last address goes is removed).
    fn relist(&mut self) {
        self.device.addr = match (self.v4, self.v6) {
            (Some((v4, at4)), Some((v6, at6))) => {
                if at6.saturating_duration_since(at4) > FAMILY_STALE {
                    v6
                } else {
                    v4
                }
            }
            (Some((v4, _)), None) => v4,
            (None, Some((v6, _))) => v6,
            (None, None) => self.device.addr,
        };
        self.device.addr_v6 = self.v6.map(|(v6, _)| v6);
    }
}

/// The devices heard, by fingerprint.
#[derive(Debug, Default)]
pub(super) struct DeviceTable {
    devices: HashMap<String, Entry>,
}

impl DeviceTable {
    /// Records `info` heard from `addr` (its port: announced, or LocalSend's default);
    /// `proof`: what showed it is the device `info` names (above [`Proof::Claimed`], the
    /// caller checked the certificate's fingerprint).
    pub(super) fn heard(
        &mut self,
        info: DeviceInfo,
        addr: SocketAddr,
        how: &'static str,
        proof: Proof,
    ) {
        self.record(info, addr, how, Instant::now(), proof);
    }

    /// A claim heard at `now` (tests).
    #[cfg(test)]
    fn heard_at(&mut self, info: DeviceInfo, addr: SocketAddr, how: &'static str, now: Instant) {
        self.record(info, addr, how, now, Proof::Claimed);
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
        if !crate::protocol::is_device_address(addr.ip()) {
            log::debug!("LocalSend: not listing a device at {addr} (no one host's address)");
            return;
        }
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
            if known.listed(addr) == Some(addr) {
                known.seen(addr, how, now);
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
                checked: [None; 2],
                v4: None,
                v6: None,
                lost_v4: None,
                proof: Proof::Claimed,
            });
        entry.seen(addr, how, now);
        let device = &mut entry.device;
        device.alias = info.label();
        device.device_type = info.kind().to_owned();
        device.device_model = info.device_model.map(|m| crate::protocol::clip(&m, 64));
        if let Some(protocol) = protocol {
            device.protocol = protocol;
        }
        entry.proof = entry.proof.max(proof);
        device.proven = entry.proof > Proof::Claimed;
    }

    /// Whether to register with this device at `addr` now (not done there within
    /// [`REGISTER_EVERY`]). Per address, not per device: a claim to a proven device from an
    /// address not listed for it moves nothing, so only the pinned answer there can list
    /// it there; one answer per device would leave the address of the family heard second
    /// (a device announces on both at once) or the one it just moved to unlisted. Only when
    /// it is due is `allowed` asked (the answer budget); an answer it refuses is not counted
    /// as done, so the device's next announcement there is answered once the budget allows.
    pub(super) fn register_due(
        &mut self,
        fingerprint: &str,
        addr: SocketAddr,
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        self.due(fingerprint, addr, |e| &mut e.registered, allowed)
    }

    /// Whether to check now that this device is still at `addr` (see
    /// [`DeviceTable::https_others_at`]): as [`DeviceTable::register_due`], but counted
    /// apart, so an answer just given does not put off a check.
    pub(super) fn check_due(
        &mut self,
        fingerprint: &str,
        addr: SocketAddr,
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        self.due(fingerprint, addr, |e| &mut e.checked, allowed)
    }

    /// Whether a contact with the device at `addr` is due now (a new address at once, the
    /// same one after [`REGISTER_EVERY`]), its last ones per family in `last`; only then is
    /// `allowed` asked, and only an allowed one counts as made.
    fn due(
        &mut self,
        fingerprint: &str,
        addr: SocketAddr,
        last: fn(&mut Entry) -> &mut Contacts,
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        let Some(entry) = self.devices.get_mut(&fingerprint.to_ascii_uppercase()) else {
            return false;
        };
        let last = &mut last(entry)[family(addr)];
        let now = Instant::now();
        let due = last.is_none_or(|(at, t)| at != addr || now.duration_since(t) >= REGISTER_EVERY);
        let made = due && allowed();
        if made {
            *last = Some((addr, now));
        }
        made
    }

    /// Forgets the devices listed at an address in `asked` (a sweep's targets) that were
    /// not heard at all since `since` (when the sweep began): not at that address, nor over
    /// IPv6, nor by announcing. Returns how many were forgotten.
    pub(super) fn forget_silent(&mut self, asked: &HashSet<SocketAddr>, since: Instant) -> usize {
        let before = self.devices.len();
        self.devices
            .retain(|_, entry| entry.silent_at(asked, since).is_none());
        before - self.devices.len()
    }

    /// The addresses (in `asked`) of the devices [`DeviceTable::forget_silent`] would forget
    /// now, each once, `most` at the most: those of proven devices first (a forged claim
    /// lists a device at any address, for nothing), then the most recently heard.
    pub(super) fn silent(
        &self,
        asked: &HashSet<SocketAddr>,
        since: Instant,
        most: usize,
    ) -> Vec<SocketAddr> {
        let mut silent: Vec<(&Entry, SocketAddr)> = self
            .devices
            .values()
            .filter_map(|entry| Some((entry, entry.silent_at(asked, since)?)))
            .collect();
        silent.sort_by_key(|(entry, _)| Reverse((entry.proof, entry.device.last_seen)));
        let mut addrs = Vec::new();
        for (_, addr) in silent {
            if addrs.len() >= most {
                break;
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// When the device `fingerprint` is listed at `addr` (for its family), the HTTPS
    /// devices other than it listed there too. One address is one listening socket, so one
    /// of them has gone (LocalSend restarted with encryption off or a new certificate), or
    /// the claim that listed it there is forged: asking each there tells which (see
    /// `discovery`).
    pub(super) fn https_others_at(&self, addr: SocketAddr, fingerprint: &str) -> Vec<String> {
        let key = fingerprint.to_ascii_uppercase();
        if self.devices.get(&key).and_then(|e| e.listed(addr)) != Some(addr) {
            return Vec::new();
        }
        self.devices
            .iter()
            .filter(|(fp, entry)| {
                !fp.eq_ignore_ascii_case(fingerprint)
                    && entry.device.protocol == LocalSendProtocol::Https
                    && entry.listed(addr) == Some(addr)
            })
            .map(|(fp, _)| fp.clone())
            .collect()
    }

    /// Forgets the device `fingerprint`'s address `addr` if it is still listed there and
    /// was not heard there since `since` (when it was asked there and did not answer): the
    /// device stays, listed at its address of the other family, if it has one (nothing
    /// said that one went), and is forgotten when that was its only address. An IPv4
    /// address forgotten so is still where sweeps ask for it ([`Entry::lost_v4`]). Whether
    /// the address was forgotten.
    pub(super) fn forget_at(
        &mut self,
        fingerprint: &str,
        addr: SocketAddr,
        since: Instant,
    ) -> bool {
        let key = fingerprint.to_ascii_uppercase();
        let Some(entry) = self.devices.get_mut(&key) else {
            return false;
        };
        let slot = entry.slot(addr);
        if !slot.is_some_and(|(at, when)| at == addr && when < since) {
            return false;
        }
        *slot = None;
        if entry.v4.is_none() && entry.v6.is_none() {
            self.devices.remove(&key);
        } else {
            if addr.is_ipv4() {
                entry.lost_v4 = Some(addr);
            }
            entry.relist();
        }
        true
    }

    /// A device showed at `addr` that it is there without a usable answer: over HTTPS,
    /// the device whose certificate it showed (`Some(fingerprint)`: a completed TLS
    /// handshake, whatever came after it, or an HTTP error status or a bad body); over
    /// plain HTTP (`None`), whatever answered with an HTTP status, so the plain-HTTP
    /// devices listed there (nothing names one: their ids are only claims). Each listed
    /// at `addr` counts as heard there now (a sweep or check does not forget it); nothing
    /// else changes, and a device listed elsewhere is not moved (only a register body,
    /// pinned, does that).
    pub(super) fn reached_at(&mut self, addr: SocketAddr, fingerprint: Option<&str>) {
        self.reached_at_time(addr, fingerprint, Instant::now());
    }

    /// [`DeviceTable::reached_at`] at `now`.
    fn reached_at_time(&mut self, addr: SocketAddr, fingerprint: Option<&str>, now: Instant) {
        for (key, entry) in &mut self.devices {
            let named = match fingerprint {
                Some(fingerprint) => key.eq_ignore_ascii_case(fingerprint),
                None => entry.device.protocol == LocalSendProtocol::Http,
            };
            if named && entry.listed(addr) == Some(addr) {
                entry.touched(addr, now);
            }
        }
    }

    pub(super) fn list(&self) -> Vec<LocalSendDevice> {
        let mut list: Vec<LocalSendDevice> =
            self.devices.values().map(|e| e.device.clone()).collect();
        list.sort_by_key(|d| Reverse(d.last_seen));
        list
    }
}

/// 0 for an IPv4 address, 1 for an IPv6 one.
fn family(addr: SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
