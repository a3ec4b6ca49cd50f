//! The register sweep: LocalSend's own CLI announces only when it starts and never answers
//! an announcement over UDP, so a device that was already running is found only by asking
//! it. A sweep sends `POST /register` (our info, the certificate pinned on first contact)
//! to every other host of our private subnets on LocalSend's port; each that answers with
//! a register body whose fingerprint is its certificate's goes into the same device table
//! as announcements, with the port and protocol of the address probed (the answer has
//! neither). A host that answers the TLS hello in plain text is asked once more over plain
//! HTTP: a LocalSend with encryption turned off, listed as such (see `probe`).
//!
//! Bounds: a host gets [`SweepSettings::connect_timeout`] to accept and
//! [`SweepSettings::host_timeout`] in all; at most [`SweepSettings::concurrency`] hosts
//! are asked at once; an answer is read up to [`MAX_SWEEP_ANSWER_BYTES`]; one sweep runs
//! at a time (`Sweeper::start` returns `None` while one does); the table stays bounded.
//!
//! A sweep that asked every target also forgets the devices listed at a target's address
//! that were not heard while it ran ([`DeviceTable::forget_silent`]): how a device that
//! left the network leaves the list (the window's Refresh sweeps again). A host that
//! completes the TLS handshake is heard, whatever follows: the device whose certificate it
//! showed, if listed at that address, is there (busy, late, or answering an error or a
//! body that is no register answer); over plain HTTP, any HTTP status keeps the devices
//! with encryption off listed there (`DeviceTable::reached_at`). Before it does, it
//! asks those addresses once more with a longer timeout
//! ([`SweepSettings::recheck_timeout`]), so a host slower than LocalSend's half second to
//! accept (a busy phone, a slow link) is not dropped by every Refresh and found again by
//! the next: as many addresses as it asks at once (proven devices first, then the most
//! recently heard), so that many devices gone at once, or forged claims at many
//! addresses, cost one recheck time, not one per round. A sweep cut short by the server
//! stopping forgets nothing.
//!
//! [`DeviceTable::forget_silent`]: super::devices::DeviceTable::forget_silent
//!
//! Which hosts: [`subnet_hosts`] is pure: for each private (RFC 1918) or link-local IPv4
//! interface address, the /24 around it (a wider subnet is not swept beyond that /24; a
//! narrower one only as far as it goes), never our own address, never loopback or public
//! addresses. Tests pass their own list of loopback addresses to `Sweeper::start`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::LocalSendProtocol;
use super::devices::{LocalSendDevice, Proof};
use super::probe::{device_of, register};
use super::server::{Shared, lock, stopped};

/// Largest register answer read from a swept host.
pub const MAX_SWEEP_ANSWER_BYTES: usize = 64 * 1024;
/// Most hosts one sweep asks (four /24s).
pub const MAX_SWEEP_HOSTS: usize = 4 * 254;
/// The narrowest prefix swept: a wider subnet is swept only in the /24 around us.
const WIDEST_SWEPT_PREFIX: u8 = 24;

/// How a sweep asks each host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    /// Time for a host to accept the connection (LocalSend waits 500 ms).
    pub connect_timeout: Duration,
    /// Time for a host in all: connect, TLS, the answer.
    pub host_timeout: Duration,
    /// Hosts asked at once.
    pub concurrency: usize,
    /// Time a device listed at a swept address gets in a second ask (connect and answer
    /// alike) when it did not answer the first in time, before it is forgotten: a slow
    /// host, or one whose answer was lost, is not dropped for it. Only `concurrency`
    /// addresses are asked again (one round).
    pub recheck_timeout: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            host_timeout: Duration::from_millis(1500),
            concurrency: 32,
            recheck_timeout: Duration::from_secs(4),
        }
    }
}

/// How a sweep went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Hosts asked.
    pub probed: usize,
    /// The devices that answered and proved their fingerprint.
    pub found: Vec<LocalSendDevice>,
}

/// The hosts to sweep for interfaces given as (address, prefix length), on `port`: see the
/// module doc. Duplicates are dropped; at most [`MAX_SWEEP_HOSTS`].
pub fn subnet_hosts(interfaces: &[(Ipv4Addr, u8)], port: u16) -> Vec<SocketAddr> {
    let ours: Vec<Ipv4Addr> = interfaces.iter().map(|(ip, _)| *ip).collect();
    let mut hosts: Vec<SocketAddr> = Vec::new();
    for &(ip, prefix) in interfaces {
        if !(ip.is_private() || ip.is_link_local()) {
            continue;
        }
        let prefix = prefix.clamp(WIDEST_SWEPT_PREFIX, 32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let network = u32::from(ip) & mask;
        let last = network | !mask;
        // /31 (point-to-point) has no network or broadcast address; /32 has no one else.
        let (first, last) = if prefix >= 31 {
            (network, last)
        } else {
            (network + 1, last - 1)
        };
        for host in first..=last {
            let host = Ipv4Addr::from(host);
            let addr = SocketAddr::new(IpAddr::V4(host), port);
            if !ours.contains(&host) && !hosts.contains(&addr) {
                hosts.push(addr);
            }
            if hosts.len() >= MAX_SWEEP_HOSTS {
                return hosts;
            }
        }
    }
    hosts
}

/// Runs sweeps on the LocalSend runtime, one at a time.
pub(super) struct Sweeper {
    runtime: tokio::runtime::Handle,
    running: Arc<AtomicBool>,
}

/// Clears the running flag however a sweep ends (done, stopped, or its runtime dropped).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Sweeper {
    pub(super) fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            runtime,
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Starts a sweep of `targets`; `None` when one is already running (it is not
    /// restarted). The receiver gets the report when the sweep ends.
    pub(super) fn start(
        &self,
        shared: Arc<Shared>,
        mut targets: Vec<SocketAddr>,
        settings: SweepSettings,
    ) -> Option<crossbeam_channel::Receiver<SweepReport>> {
        if self
            .running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        let running = Running(Arc::clone(&self.running));
        targets.truncate(MAX_SWEEP_HOSTS);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.runtime.spawn(async move {
            let report = sweep(&shared, targets, settings).await;
            drop(running);
            let _ = tx.send(report);
        });
        Some(rx)
    }
}

/// Asks every target, `settings.concurrency` at a time, until done or the server stops.
async fn sweep(
    shared: &Arc<Shared>,
    targets: Vec<SocketAddr>,
    settings: SweepSettings,
) -> SweepReport {
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    let mut stop = shared.stop.clone();
    let mut found = Vec::new();
    let probed = targets.len();
    let asked: HashSet<SocketAddr> = targets.iter().copied().collect();
    let began = Instant::now();
    let all_asked = async {
        ask_all(shared, targets, settings, &slots, &mut found).await;
        // The listed devices that stayed silent get one more, patient, chance: as many
        // as are asked at once, so the sweep takes one recheck time longer at most.
        let most = settings.concurrency.max(1);
        let silent = lock(&shared.devices).silent(&asked, began, most);
        if !silent.is_empty() {
            let patient = SweepSettings {
                connect_timeout: settings.recheck_timeout,
                host_timeout: settings.recheck_timeout,
                ..settings
            };
            ask_all(shared, silent, patient, &slots, &mut found).await;
        }
    };
    let finished = tokio::select! {
        () = all_asked => true,
        _ = stopped(&mut stop) => false,
    };
    if finished {
        let forgotten = lock(&shared.devices).forget_silent(&asked, began);
        if forgotten > 0 {
            log::debug!("LocalSend sweep: {forgotten} devices listed did not answer");
        }
    }
    log::debug!("LocalSend sweep: {probed} hosts, {} answered", found.len());
    SweepReport { probed, found }
}

/// Asks every target, as many at once as `slots` allow; what answers goes into `found`.
async fn ask_all(
    shared: &Arc<Shared>,
    targets: Vec<SocketAddr>,
    settings: SweepSettings,
    slots: &Arc<tokio::sync::Semaphore>,
    found: &mut Vec<LocalSendDevice>,
) {
    let mut asking = tokio::task::JoinSet::new();
    for addr in targets {
        let Ok(permit) = Arc::clone(slots).acquire_owned().await else {
            break;
        };
        let shared = Arc::clone(shared);
        asking.spawn(async move {
            let device = ask(&shared, addr, settings).await;
            drop(permit);
            device
        });
        // Collect what is done so far, so the set does not grow with the targets.
        while let Some(done) = asking.try_join_next() {
            found.extend(done.ok().flatten());
        }
    }
    while let Some(done) = asking.join_next().await {
        found.extend(done.ok().flatten());
    }
}

/// `POST /register` to one host (over plain HTTP if it speaks no TLS: see `probe`);
/// records and returns the device if it answers as one.
async fn ask(
    shared: &Shared,
    addr: SocketAddr,
    settings: SweepSettings,
) -> Option<LocalSendDevice> {
    let mut ours = shared.info.clone();
    ours.announce = None;
    let body = serde_json::to_vec(&ours).ok()?;
    let identity = &shared.config.identity;
    let connect = settings.connect_timeout;
    // Whoever completes the TLS handshake holds the key of the certificate it showed: the
    // device of that fingerprint listed at this address is there, however its answer goes
    // (late, too big, an error: see `DeviceTable::reached_at`).
    let reached = |fingerprint: &str| lock(&shared.devices).reached_at(addr, Some(fingerprint));
    let shaken: &(dyn Fn(&str) + Sync) = &reached;
    let work = register(
        identity,
        addr,
        body,
        connect,
        MAX_SWEEP_ANSWER_BYTES,
        Some(shaken),
    );
    let (answer, protocol) = tokio::time::timeout(settings.host_timeout, work)
        .await
        .ok()?
        .map_err(|e| log::debug!("LocalSend sweep of {addr}: {e}"))
        .ok()?;
    // A body claiming another device's fingerprint is ignored, as LocalSend does.
    let described = if answer.status.is_success() {
        device_of(&answer, protocol)
    } else {
        Err(format!("answered {}", answer.status))
    };
    let mut info = match described {
        Ok(info) => info,
        Err(e) => {
            log::debug!("LocalSend sweep of {addr}: {e}");
            // Refused, or no register body: no device to list, but whoever answered is
            // there, so the sweep does not forget it. Over HTTPS the handshake said so
            // already (above); over plain HTTP nothing names one: the devices listed there
            // with encryption off (see `DeviceTable::reached_at`).
            if protocol == LocalSendProtocol::Http {
                lock(&shared.devices).reached_at(addr, None);
            }
            return None;
        }
    };
    if info
        .fingerprint
        .eq_ignore_ascii_case(&shared.info.fingerprint)
    {
        return None;
    }
    // The answer has no port: the address probed is where it listens.
    info.port = Some(addr.port());
    let fingerprint = info.fingerprint.clone();
    let mut devices = lock(&shared.devices);
    // Over HTTPS the fingerprint was checked against the certificate (`device_of`).
    let proof = match protocol {
        LocalSendProtocol::Https => Proof::Reached,
        LocalSendProtocol::Http => Proof::Claimed,
    };
    devices.heard(info, addr, "sweep", proof);
    devices
        .list()
        .into_iter()
        .find(|d| d.fingerprint.eq_ignore_ascii_case(&fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("address")
    }

    #[test]
    fn a_slash_24_is_every_other_host_of_it() {
        let hosts = subnet_hosts(&[(ip("192.168.1.77"), 24)], 53317);
        assert_eq!(hosts.len(), 253);
        assert_eq!(hosts[0], "192.168.1.1:53317".parse().expect("addr"));
        assert_eq!(hosts[252], "192.168.1.254:53317".parse().expect("addr"));
        assert!(!hosts.contains(&"192.168.1.77:53317".parse().expect("addr")));
        assert!(!hosts.contains(&"192.168.1.0:53317".parse().expect("addr")));
        assert!(!hosts.contains(&"192.168.1.255:53317".parse().expect("addr")));
    }

    #[test]
    fn a_wider_subnet_is_swept_only_in_our_slash_24_and_a_narrower_one_as_far_as_it_goes() {
        let wide = subnet_hosts(&[(ip("10.20.30.40"), 8)], 9);
        assert_eq!(wide.len(), 253);
        assert!(
            wide.iter()
                .all(|a| a.ip().to_string().starts_with("10.20.30."))
        );
        let narrow = subnet_hosts(&[(ip("172.16.5.18"), 28)], 9);
        let want: Vec<SocketAddr> = (17..=30)
            .filter(|h| *h != 18)
            .map(|h| SocketAddr::from(([172, 16, 5, h], 9)))
            .collect();
        assert_eq!(narrow, want);
        let link_local = subnet_hosts(&[(ip("169.254.3.4"), 16)], 9);
        assert_eq!(link_local.len(), 253);
        assert_eq!(subnet_hosts(&[(ip("10.0.0.1"), 32)], 9), vec![]);
        assert_eq!(
            subnet_hosts(&[(ip("10.0.0.0"), 31)], 9),
            vec![SocketAddr::from(([10, 0, 0, 1], 9))]
        );
    }

    #[test]
    fn loopback_and_public_addresses_are_never_swept_and_hosts_are_bounded() {
        assert!(subnet_hosts(&[(ip("127.0.0.1"), 8)], 9).is_empty());
        assert!(subnet_hosts(&[(ip("8.8.8.8"), 24)], 9).is_empty());
        assert!(
            subnet_hosts(&[(ip("100.64.1.1"), 24)], 9).is_empty(),
            "CGNAT is not a LAN"
        );
        // Two addresses in one /24: swept once, neither of ours asked.
        let twice = subnet_hosts(&[(ip("10.1.1.5"), 24), (ip("10.1.1.6"), 24)], 9);
        assert_eq!(twice.len(), 252);
        let many: Vec<(Ipv4Addr, u8)> = (0..10u8)
            .map(|i| (Ipv4Addr::new(10, i, 0, 1), 24))
            .collect();
        assert_eq!(subnet_hosts(&many, 9).len(), MAX_SWEEP_HOSTS);
    }
}
