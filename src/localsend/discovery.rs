//! Finding LocalSend devices: announce on LocalSend's multicast group at start (three times,
//! a second apart, like LocalSend), listen for others' announcements, and answer each
//! (`announce: true`) with an HTTPS `POST /register` to the address and port it came from,
//! the server's certificate pinned to the announced fingerprint (falling back to a UDP
//! answer with `announce: false` when that fails). Every device heard (announcement,
//! register request or answer) goes into a bounded table.
//!
//! Every send names its outgoing interface (IP_MULTICAST_IF): a host without a default
//! route cannot send multicast otherwise.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::LOCALSEND_PORT;
use super::client::post_json;
use super::server::{MulticastConfig, Shared, lock, stopped};
use super::wire::DeviceInfo;

/// Devices remembered; the one heard longest ago goes first.
const MAX_DEVICES: usize = 256;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 64 * 1024;
/// How long a register request may take (LocalSend gives 500 ms; a little more here).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// A device is registered with at most once in this time.
const REGISTER_EVERY: Duration = Duration::from_secs(5);
/// Register requests in flight at once.
const MAX_REGISTERING: usize = 16;
/// Announcements at start, and the time between them.
const ANNOUNCEMENTS: u32 = 3;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// A LocalSend device heard on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendDevice {
    /// Its alias (hostile text: escape before showing).
    pub alias: String,
    pub device_type: String,
    pub device_model: Option<String>,
    /// SHA-256 of its certificate, upper-case hex (pinned when we connect).
    pub fingerprint: String,
    /// Its HTTPS (or HTTP) address and port.
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub protocol: String,
    /// How it was heard: `multicast`, `register`, `answer`.
    pub how: Vec<&'static str>,
    pub last_seen: Instant,
}

/// The devices heard, by fingerprint.
#[derive(Debug, Default)]
pub(super) struct DeviceTable {
    devices: HashMap<String, (LocalSendDevice, Option<Instant>)>,
}

impl DeviceTable {
    /// Records `info` heard from `addr` (its port: announced, or LocalSend's default).
    pub(super) fn heard(&mut self, info: DeviceInfo, addr: SocketAddr, how: &'static str) {
        let fingerprint = info.fingerprint.to_ascii_uppercase();
        if fingerprint.is_empty() || fingerprint.len() > 128 {
            return;
        }
        if !self.devices.contains_key(&fingerprint) && self.devices.len() >= MAX_DEVICES {
            let oldest = self
                .devices
                .iter()
                .min_by_key(|(_, (d, _))| d.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.devices.remove(&oldest);
            }
        }
        let entry = self.devices.entry(fingerprint.clone()).or_insert_with(|| {
            (
                LocalSendDevice {
                    alias: String::new(),
                    device_type: String::new(),
                    device_model: None,
                    fingerprint,
                    addr,
                    protocol: "https".to_owned(),
                    how: Vec::new(),
                    last_seen: Instant::now(),
                },
                None,
            )
        });
        let device = &mut entry.0;
        device.alias = info.label();
        device.device_type = info.kind().to_owned();
        device.device_model = info.device_model.map(|m| crate::protocol::clip(&m, 64));
        device.addr = addr;
        if let Some(protocol) = info.protocol {
            device.protocol = if protocol == "http" { "http" } else { "https" }.to_owned();
        }
        if !device.how.contains(&how) {
            device.how.push(how);
        }
        device.last_seen = Instant::now();
    }

    /// Whether to register with this device now (not done within [`REGISTER_EVERY`]).
    fn register_due(&mut self, fingerprint: &str) -> bool {
        let Some((_, last)) = self.devices.get_mut(&fingerprint.to_ascii_uppercase()) else {
            return false;
        };
        let due = last.is_none_or(|t| t.elapsed() >= REGISTER_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    pub(super) fn list(&self) -> Vec<LocalSendDevice> {
        let mut list: Vec<LocalSendDevice> =
            self.devices.values().map(|(d, _)| d.clone()).collect();
        list.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
        list
    }
}

/// The discovery socket: the group's port, the group joined on each interface.
pub(super) fn bind(config: &MulticastConfig) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port).into())?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    for iface in &config.interfaces {
        if let Err(e) = socket.join_multicast_v4(&config.group, iface) {
            log::warn!("LocalSend: cannot join {} on {iface}: {e}", config.group);
        }
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Sends `info` to the group on every interface, each send on its own outgoing interface.
async fn to_group(socket: &tokio::net::UdpSocket, config: &MulticastConfig, info: &DeviceInfo) {
    let Ok(bytes) = serde_json::to_vec(info) else {
        return;
    };
    let target = SocketAddr::new(IpAddr::V4(config.group), config.port);
    for iface in &config.interfaces {
        if let Err(e) = SockRef::from(socket).set_multicast_if_v4(iface) {
            log::debug!("LocalSend: cannot send on {iface}: {e}");
            continue;
        }
        if let Err(e) = socket.send_to(&bytes, target).await {
            log::debug!("LocalSend: announcing on {iface}: {e}");
        }
    }
}

/// Announces, then hears announcements until the server stops.
pub(super) async fn run(socket: UdpSocket, shared: Arc<Shared>) {
    let Some(config) = shared.config.multicast.clone() else {
        return;
    };
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(socket) => Arc::new(socket),
        Err(e) => {
            log::warn!("LocalSend discovery: {e}");
            return;
        }
    };
    let mut announcement = shared.info.clone();
    announcement.announce = Some(true);
    let registering = Arc::new(tokio::sync::Semaphore::new(MAX_REGISTERING));
    let mut stop = shared.stop.clone();
    let mut announced = 0;
    let mut next_announce = tokio::time::Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep_until(next_announce), if announced < ANNOUNCEMENTS => {
                to_group(&socket, &config, &announcement).await;
                announced += 1;
                next_announce += ANNOUNCE_INTERVAL;
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let Some(info) = hear(&shared, &buf[..len], from) else { continue };
                let Ok(permit) = Arc::clone(&registering).try_acquire_owned() else { continue };
                let shared = Arc::clone(&shared);
                let socket = Arc::clone(&socket);
                let config = config.clone();
                tokio::spawn(async move {
                    answer(&shared, &socket, &config, info, from.ip()).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Parses a datagram and records its device; `Some` when it asks to be answered now.
pub(super) fn hear(shared: &Shared, datagram: &[u8], from: SocketAddr) -> Option<DeviceInfo> {
    let info: DeviceInfo = serde_json::from_slice(datagram).ok()?;
    if info
        .fingerprint
        .eq_ignore_ascii_case(&shared.info.fingerprint)
    {
        return None; // our own announcement, looped back
    }
    let port = info.port.unwrap_or(LOCALSEND_PORT);
    let mut devices = lock(&shared.devices);
    devices.heard(info.clone(), SocketAddr::new(from.ip(), port), "multicast");
    let wants_answer = info.announce == Some(true) && devices.register_due(&info.fingerprint);
    drop(devices);
    (wants_answer && may_answer(from.ip(), Instant::now())).then_some(info)
}

/// Answers (outbound HTTPS registers) allowed per window, in all and per address: an
/// announcement costs its sender one datagram and us a TLS connection, so a flood with fresh
/// fingerprints or spoofed addresses must not turn Ferry into a scanner or amplifier.
const ANSWERS_PER_WINDOW: u32 = 16;
const ANSWER_WINDOW: Duration = Duration::from_secs(10);

/// Whether an announcement from `ip` may be answered now: only from addresses on a LAN (private,
/// link-local, loopback, unique-local), once per address per window, and at most
/// [`ANSWERS_PER_WINDOW`] in all per window.
fn may_answer(ip: IpAddr, now: Instant) -> bool {
    struct Budget {
        window_start: Option<Instant>,
        spent: u32,
        answered: std::collections::BTreeSet<IpAddr>,
    }
    static BUDGET: std::sync::Mutex<Budget> = std::sync::Mutex::new(Budget {
        window_start: None,
        spent: 0,
        answered: std::collections::BTreeSet::new(),
    });
    let lan = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unique_local(),
    };
    if !lan {
        return false;
    }
    let mut budget = BUDGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if budget
        .window_start
        .is_none_or(|start| now.saturating_duration_since(start) >= ANSWER_WINDOW)
    {
        budget.window_start = Some(now);
        budget.spent = 0;
        budget.answered.clear();
    }
    if budget.spent >= ANSWERS_PER_WINDOW || !budget.answered.insert(ip) {
        return false;
    }
    budget.spent += 1;
    true
}

/// Answers an announcement: `POST /register` over HTTPS (pinned), else a UDP answer.
async fn answer(
    shared: &Shared,
    socket: &tokio::net::UdpSocket,
    config: &MulticastConfig,
    info: DeviceInfo,
    ip: IpAddr,
) {
    let port = info.port.unwrap_or(LOCALSEND_PORT);
    let addr = SocketAddr::new(ip, port);
    if info.protocol.as_deref() != Some("http") {
        let mut ours = shared.info.clone();
        ours.announce = None;
        let body = serde_json::to_vec(&ours).unwrap_or_default();
        match post_json(
            &shared.config.identity,
            addr,
            Some(&info.fingerprint),
            "/api/localsend/v2/register",
            body,
            REGISTER_TIMEOUT,
        )
        .await
        {
            Ok(answer) if answer.status.is_success() => {
                if let Ok(mut theirs) = serde_json::from_slice::<DeviceInfo>(&answer.body) {
                    // The answer has no port or protocol (LocalSend 1.18): the announcement's.
                    theirs.fingerprint = answer.fingerprint.unwrap_or(info.fingerprint);
                    theirs.port = Some(port);
                    theirs.protocol = info.protocol.clone();
                    lock(&shared.devices).heard(theirs, addr, "answer");
                }
                return;
            }
            Ok(answer) => log::debug!("LocalSend register at {addr}: {}", answer.status),
            Err(e) => log::debug!("LocalSend register at {addr}: {e}"),
        }
    }
    let mut ours = shared.info.clone();
    ours.announce = Some(false);
    to_group(socket, config, &ours).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_only_to_lan_addresses_once_each_and_within_a_budget() {
        let t = Instant::now() + Duration::from_secs(3600);
        assert!(!may_answer("8.8.8.8".parse().unwrap(), t), "not on a LAN");
        assert!(may_answer("10.9.0.1".parse().unwrap(), t));
        assert!(
            !may_answer("10.9.0.1".parse().unwrap(), t),
            "once per window"
        );
        let granted = (2..=40u8)
            .filter(|i| may_answer(IpAddr::from([192, 168, 77, *i]), t))
            .count();
        assert_eq!(
            granted as u32,
            ANSWERS_PER_WINDOW - 1,
            "a budget per window"
        );
        // The next window starts afresh.
        assert!(may_answer("10.9.0.1".parse().unwrap(), t + ANSWER_WINDOW));
    }
}
