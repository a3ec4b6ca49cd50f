//! Finding LocalSend devices: announce on LocalSend's multicast groups at start (three
//! times, a second apart, like LocalSend), again when asked (the window's Refresh) and when
//! an interface comes (the groups follow the interfaces, [`MulticastConfig::relist`]),
//! listen for others' announcements, and answer each (`announce: true`) with an HTTPS
//! `POST /register` to the address and port it came from, the server's certificate pinned
//! to the announced fingerprint (falling back to a UDP answer with `announce: false` when
//! that fails). Every device heard (announcement, register request or answer) goes into a
//! bounded table, one entry per fingerprint.
//!
//! One address is one device: an announcement that lists a device where an HTTPS device
//! was listed makes Ferry ask that device there, pinned (`check`, at most once per
//! address per 5 s, within a budget of its own like answers'). One that is gone there
//! loses that address, so LocalSend restarted with encryption off (a fresh id) or with a
//! new certificate is not shadowed by its old entry (the window prefers HTTPS at an
//! address): it is forgotten when that was its only address, and stays listed at its
//! address of the other family if it has one (nothing said that one went). One that
//! answers, or only completes the TLS handshake with its certificate (busy, its answer
//! late), stays, so a forged claim removes nothing; it counts as heard there as soon as
//! the handshake is done, so a sweep running meanwhile does not forget it.
//!
//! Two families, as LocalSend's newer core does: IPv4 on 224.0.0.167 and IPv6 on
//! `ff12::fd3a:e420` (link-local scope, hop limit 1), the same port. The IPv6 socket is
//! IPv6-only (the IPv4 one has the port's IPv4 side), joins the group on each interface
//! that has an IPv6 address (by index) and is optional: a host without IPv6 discovers over
//! IPv4 alone. An announcement from a link-local address is answered at that address with
//! the interface it came in on (`https://[fe80::…%scope]:port`). A device heard over both
//! families is one device: the table keeps its latest address of each family and lists the
//! IPv4 one first unless only IPv6 is current.
//!
//! Every send names its outgoing interface (IP_MULTICAST_IF / IPV6_MULTICAST_IF): a host
//! without a default route cannot send multicast otherwise. Which interfaces is the
//! caller's: the window and the CLI pick the same as Ferry's own discovery
//! (`worker::localsend_multicast`), and which senders are heard, whatever address they
//! sent to (see [`MulticastConfig::hears`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::budget::{ANSWERS, CHECKS};
use super::client::post_json_pinned;
use super::devices::Proof;
use super::groups::Live;
pub(super) use super::groups::Sockets;
use super::server::{Shared, lock, stopped};
use super::wire::DeviceInfo;
use super::{LOCALSEND_PORT, LocalSendProtocol};

/// Largest datagram read.
const MAX_DATAGRAM: usize = 64 * 1024;
/// How long a register request may take (LocalSend gives 500 ms; a little more here).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// Register requests in flight at once: answers to announcements, and apart from them (so
/// checks of silent hosts, which wait longer, never hold up answers) checks.
const MAX_REGISTERING: usize = 16;
const MAX_CHECKING: usize = 4;
/// Announcements at start, and the time between them.
const ANNOUNCEMENTS: u32 = 3;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Where discovery announces and listens.
#[derive(Debug, Clone)]
pub struct MulticastConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// The IPv4 addresses of the interfaces to announce on and join the group on (each
    /// send sets its outgoing interface explicitly).
    pub interfaces: Vec<Ipv4Addr>,
    /// The IPv6 group (`None`: IPv4 only).
    pub group_v6: Option<Ipv6Addr>,
    /// The indexes of the interfaces to join the IPv6 group on and announce on.
    pub interfaces_v6: Vec<u32>,
    /// Which senders are heard (`None`: all). The port's socket also gets datagrams sent to
    /// this host's address or to a broadcast address, by every network, whatever groups it
    /// joined: with only some interfaces chosen (`--only-interface`), the caller's filter
    /// keeps those from elsewhere out, neither listed nor answered (an answer would leave by
    /// an interface not chosen).
    pub hears: Option<Hears>,
    /// Lists the interfaces again (`None`: they stay as given). Every [`RELIST_EVERY`] the
    /// groups are joined on interfaces that came up or got an address since (and again on
    /// those listed before: see `groups::Live::follow`), and left on those gone, and an
    /// interface joined is announced on at once: the window started before the Wi-Fi
    /// connected still finds the devices there.
    pub relist: Option<Relist>,
}

/// How often [`MulticastConfig::relist`] is asked (as Ferry's own discovery checks).
pub const RELIST_EVERY: Duration = Duration::from_secs(3);

/// The interfaces to use now: IPv4 addresses and IPv6 interface indexes, as
/// [`MulticastConfig::interfaces`] and [`MulticastConfig::interfaces_v6`]; `None` when the
/// system could not list them this time (the groups joined stay as they are: a failed
/// listing is no interface gone).
#[derive(Clone)]
pub struct Relist(Arc<RelistFn>);

type RelistFn = dyn Fn() -> Option<(Vec<Ipv4Addr>, Vec<u32>)> + Send + Sync;

impl Relist {
    pub fn new(
        relist: impl Fn() -> Option<(Vec<Ipv4Addr>, Vec<u32>)> + Send + Sync + 'static,
    ) -> Self {
        Relist(Arc::new(relist))
    }
}

impl std::fmt::Debug for Relist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relist(..)")
    }
}

/// `addr`'s address (with its IPv6 scope: a link-local address is useless without it) on
/// another port.
pub(super) fn with_port(addr: SocketAddr, port: u16) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V4(*v4.ip()), port),
        SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), port, 0, v6.scope_id())),
    }
}

/// Whether a datagram from an address is heard at all (see [`MulticastConfig::hears`]).
#[derive(Clone)]
pub struct Hears(Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>);

impl Hears {
    pub fn new(hears: impl Fn(SocketAddr) -> bool + Send + Sync + 'static) -> Self {
        Hears(Arc::new(hears))
    }
}

impl std::fmt::Debug for Hears {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hears(..)")
    }
}

/// Sends `info` to the group of `family` (`None`: both) on every interface joined, each send
/// on its own outgoing interface.
async fn to_groups(
    sockets: &Live,
    config: &MulticastConfig,
    info: &DeviceInfo,
    family: Option<Family>,
) {
    let Ok(bytes) = serde_json::to_vec(info) else {
        return;
    };
    let (interfaces, interfaces_v6) = lock(&sockets.joined).clone();
    if family != Some(Family::V6) {
        let target = SocketAddr::new(IpAddr::V4(config.group), config.port_of(&sockets.v4));
        for iface in &interfaces {
            if let Err(e) = SockRef::from(&sockets.v4).set_multicast_if_v4(iface) {
                log::debug!("LocalSend: cannot send on {iface}: {e}");
                continue;
            }
            if let Err(e) = sockets.v4.send_to(&bytes, target).await {
                log::debug!("LocalSend: announcing on {iface}: {e}");
            }
        }
    }
    if family != Some(Family::V4)
        && let (Some(socket), Some(group)) = (&sockets.v6, config.group_v6)
    {
        let port = config.port_of(socket);
        for &index in &interfaces_v6 {
            if let Err(e) = SockRef::from(socket).set_multicast_if_v6(index) {
                log::debug!("LocalSend: cannot send on interface {index}: {e}");
                continue;
            }
            // The scope names the interface too: a link-local group needs one.
            let target = SocketAddr::V6(SocketAddrV6::new(group, port, 0, index));
            if let Err(e) = socket.send_to(&bytes, target).await {
                log::debug!("LocalSend: announcing on interface {index}: {e}");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl MulticastConfig {
    /// The port announcements go to: the configured one, or (port 0, tests) the one bound.
    fn port_of(&self, socket: &tokio::net::UdpSocket) -> u16 {
        if self.port != 0 {
            return self.port;
        }
        socket.local_addr().map_or(self.port, |a| a.port())
    }
}

/// Receives on `socket`, or waits forever when there is none.
async fn recv(
    socket: Option<&tokio::net::UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Announces, then hears announcements until the server stops.
pub(super) async fn run(sockets: Sockets, shared: Arc<Shared>) {
    let Some(config) = shared.config.multicast.clone() else {
        return;
    };
    let live = match Live::new(sockets, &config) {
        Ok(live) => live,
        Err(e) => {
            log::warn!("LocalSend discovery: {e}");
            return;
        }
    };
    let live = Arc::new(live);
    let mut announcement = shared.info.clone();
    announcement.announce = Some(true);
    let registering = Arc::new(Semaphore::new(MAX_REGISTERING));
    let checking = Arc::new(Semaphore::new(MAX_CHECKING));
    let mut stop = shared.stop.clone();
    let mut announced = 0;
    let mut next_announce = tokio::time::Instant::now();
    let mut buf_v4 = vec![0u8; MAX_DATAGRAM];
    let mut buf_v6 = vec![0u8; MAX_DATAGRAM];
    let mut relist =
        tokio::time::interval_at(tokio::time::Instant::now() + RELIST_EVERY, RELIST_EVERY);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (received, buf) = tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = relist.tick(), if config.relist.is_some() => {
                if let Some(Relist(list)) = &config.relist
                    && let Some(now) = list()
                    && live.follow(&config, now)
                {
                    // Announced on every interface again, the new one included.
                    announced = 0;
                    next_announce = tokio::time::Instant::now();
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_announce), if announced < ANNOUNCEMENTS => {
                to_groups(&live, &config, &announcement, None).await;
                announced += 1;
                next_announce += ANNOUNCE_INTERVAL;
                continue;
            }
            () = shared.announce.notified() => {
                announced = 0;
                next_announce = tokio::time::Instant::now();
                continue;
            }
            received = recv(Some(&live.v4), &mut buf_v4) => (received, &buf_v4),
            received = recv(live.v6.as_ref(), &mut buf_v6) => (received, &buf_v6),
        };
        let Ok((len, from)) = received else { continue };
        if let Some(hears) = &config.hears
            && !(hears.0)(from)
        {
            log::debug!("LocalSend: ignored a datagram from {from} (not a chosen interface)");
            continue;
        }
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        let Some(heard) = hear(&shared, datagram, from, &checking) else {
            continue;
        };
        for (fingerprint, permit) in heard.check {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                check(&shared, &fingerprint, heard.addr).await;
                drop(permit);
            });
        }
        let Some(info) = heard.answer else {
            continue;
        };
        let Ok(permit) = Arc::clone(&registering).try_acquire_owned() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let live = Arc::clone(&live);
        let config = config.clone();
        tokio::spawn(async move {
            answer(&shared, &live, &config, info, from).await;
            drop(permit);
        });
    }
}

/// What a datagram asks of the discovery loop.
pub(super) struct Heard {
    /// The announcement to answer now, if any.
    pub answer: Option<DeviceInfo>,
    /// The address its device is listed at now.
    pub addr: SocketAddr,
    /// The HTTPS devices listed at that address before it, to ask there now (see
    /// [`check`]), each with its slot of `checking`.
    pub check: Vec<(String, OwnedSemaphorePermit)>,
}

/// Parses a datagram and records its device; `None` when it was not another device's. A
/// check is due only when one of `checking`'s slots is free: one that is not made is
/// neither counted as made nor paid for, so the device's next announcement asks again.
pub(super) fn hear(
    shared: &Shared,
    datagram: &[u8],
    from: SocketAddr,
    checking: &Arc<Semaphore>,
) -> Option<Heard> {
    if !crate::protocol::is_device_address(from.ip()) {
        // A forged source (multicast, broadcast, unspecified): nothing to list, answer or
        // check there.
        log::debug!("LocalSend: ignored a datagram from {from}");
        return None;
    }
    let info: DeviceInfo = serde_json::from_slice(datagram).ok()?;
    if info
        .fingerprint
        .eq_ignore_ascii_case(&shared.info.fingerprint)
    {
        return None; // our own announcement, looped back
    }
    let addr = with_port(from, info.port.unwrap_or(LOCALSEND_PORT));
    if shared.own.is(addr) {
        // Not another device (see `OwnAddress`): nothing to list, answer or check.
        log::debug!("LocalSend: an announcement naming our own address {addr}: ignored");
        return None;
    }
    let mut devices = lock(&shared.devices);
    devices.heard(info.clone(), addr, "multicast", Proof::Claimed);
    let now = Instant::now();
    // Budgets are asked (and spent) only for what is due.
    let mut check = Vec::new();
    for other in devices.https_others_at(addr, &info.fingerprint) {
        let mut slot = None;
        let due = devices.check_due(&other, addr, || {
            slot = Arc::clone(checking).try_acquire_owned().ok();
            slot.is_some() && CHECKS.allow(from.ip(), now)
        });
        if let (true, Some(slot)) = (due, slot) {
            check.push((other, slot));
        }
    }
    let answer = info.announce == Some(true)
        && devices.register_due(&info.fingerprint, addr, || ANSWERS.allow(from.ip(), now));
    drop(devices);
    Some(Heard {
        answer: answer.then_some(info),
        addr,
        check,
    })
}

/// What a pinned register got.
enum Pinned {
    /// A success answer (recorded as the device's, proven, when it is a register body).
    Answered,
    /// Another status, or an answer that failed after the TLS handshake (late, cut short,
    /// too big): the device is there (it holds the pinned certificate's key).
    Refused,
    /// No TLS handshake with that certificate: not there, or not that device.
    Unreached,
}

/// `POST /register` over HTTPS to `addr` (its device's port) within `timeout`, the
/// certificate pinned to `fingerprint`.
async fn register_pinned(
    shared: &Shared,
    fingerprint: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Pinned {
    let mut ours = shared.info.clone();
    ours.announce = None;
    let body = serde_json::to_vec(&ours).unwrap_or_default();
    let identity = &shared.config.identity;
    let path = "/api/localsend/v2/register";
    // Pinned: whoever completes the handshake holds the device's key, at `addr`. That
    // counts as hearing it there at once, however its answer goes (a sweep running
    // meanwhile must not forget a device that just proved itself).
    let reached = || lock(&shared.devices).reached_at(addr, Some(fingerprint));
    let (answered, shaken) =
        post_json_pinned(identity, fingerprint, addr, path, body, timeout, &reached).await;
    match answered {
        Ok(answer) if answer.status.is_success() => {
            if let Ok(mut theirs) = serde_json::from_slice::<DeviceInfo>(&answer.body) {
                // The answer has no port or protocol (LocalSend 1.18): the address's port,
                // and HTTPS, which it just spoke there.
                theirs.fingerprint = answer.fingerprint.unwrap_or_else(|| fingerprint.to_owned());
                theirs.port = Some(addr.port());
                theirs.protocol = Some(LocalSendProtocol::Https.as_str().to_owned());
                // Pinned: the certificate's fingerprint is the expected one.
                lock(&shared.devices).heard(theirs, addr, "answer", Proof::Reached);
            }
            Pinned::Answered
        }
        Ok(answer) => {
            log::debug!("LocalSend register at {addr}: {}", answer.status);
            Pinned::Refused
        }
        Err(e) if shaken => {
            log::debug!("LocalSend register at {addr}, after the handshake: {e}");
            Pinned::Refused
        }
        Err(e) => {
            log::debug!("LocalSend register at {addr}: {e}");
            Pinned::Unreached
        }
    }
}

/// Asks the HTTPS device `fingerprint`, listed at `addr` where another device was just
/// claimed, whether it is still there (pinned, given the sweep's recheck time): one that is
/// not is forgotten, so a device that restarted with encryption off (a new plain-HTTP id)
/// or a new certificate is not shadowed by its old entry; one that is stays, whatever was
/// claimed.
async fn check(shared: &Shared, fingerprint: &str, addr: SocketAddr) {
    let began = Instant::now();
    let timeout = shared.config.sweep.recheck_timeout;
    if let Pinned::Unreached = register_pinned(shared, fingerprint, addr, timeout).await
        && lock(&shared.devices).forget_at(fingerprint, addr, began)
    {
        // Only that address: listed at one of the other family too, it stays there.
        log::debug!("LocalSend: the device listed at {addr} before another is no longer there");
    }
}

/// Answers an announcement from `from` (an IPv6 link-local one with its scope): `POST
/// /register` over HTTPS (pinned) to its address and announced port, else a UDP answer on
/// the family it came in on (also to a device announcing plain HTTP: no request goes out
/// in the clear on an announcement's word).
async fn answer(
    shared: &Shared,
    sockets: &Live,
    config: &MulticastConfig,
    info: DeviceInfo,
    from: SocketAddr,
) {
    let addr = with_port(from, info.port.unwrap_or(LOCALSEND_PORT));
    if LocalSendProtocol::announced(info.protocol.as_deref()) == LocalSendProtocol::Https
        && let Pinned::Answered =
            register_pinned(shared, &info.fingerprint, addr, REGISTER_TIMEOUT).await
    {
        return;
    }
    let mut ours = shared.info.clone();
    ours.announce = Some(false);
    let family = match from {
        SocketAddr::V4(_) => Family::V4,
        SocketAddr::V6(_) => Family::V6,
    };
    to_groups(sockets, config, &ours, Some(family)).await;
}

#[cfg(test)]
mod family_tests {
    use super::*;

    #[test]
    fn another_port_keeps_the_ipv6_scope() {
        let from: SocketAddr = "[fe80::9%4]:40000".parse().expect("address");
        assert_eq!(
            with_port(from, 53317),
            "[fe80::9%4]:53317".parse::<SocketAddr>().expect("address")
        );
        let from: SocketAddr = "10.1.2.3:40000".parse().expect("address");
        assert_eq!(
            with_port(from, 9),
            "10.1.2.3:9".parse::<SocketAddr>().expect("a")
        );
    }
}
