//! LAN discovery: find other Ferry devices without typing addresses, and keep what is needed
//! to explain why one is not found (`ferry doctor`).
//!
//! Paths, all feeding one [`table::Table`] keyed by device id:
//! - **Beacons** ([`crate::protocol::beacon`]) on [`DISCOVERY_PORT`], sent per used interface
//!   to the link-local multicast group [`DISCOVERY_GROUP`] (IP_MULTICAST_IF set, TTL 1, loop on)
//!   and to the interface's subnet broadcast address. A beacon with `query` set asks every
//!   announcing device to answer at once by unicast, so a browser (`ferry peers --wait 3`)
//!   does not wait for the next round.
//! - **Unicast probes**: query beacons sent straight to trusted devices' last addresses and to
//!   devices not heard for a while (a router that drops multicast and broadcast still passes
//!   them).
//!
//! Timing: a burst (0, 0.25, 1 and 2 s) at start, on [`Discovery::refresh`] and when the set
//! of interfaces changes (checked every 3 s), then a round every ~15 s with up to 3 s of
//! jitter. Stopping sends a goodbye on every path, which removes the device from other tables
//! at once. A device is "ready" only once a TCP connect to its announced port succeeded.
//!
//! Beacons are hints: nothing here proves identity (the secure handshake does). Everything
//! received is hostile: datagrams are bounded, the table is bounded, replies are rate-limited.
//!
//! Threads: one engine thread owning the sockets and the schedule, one reader per socket, and
//! one short-lived thread per TCP check (at most [`MAX_CHECKS_IN_FLIGHT`]).

pub mod doctor;
pub mod interfaces;
mod socket;
pub mod table;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::defaults::{DISCOVERY_GROUP, DISCOVERY_PORT};
use crate::protocol::beacon::{Beacon, MAX_BEACON_BYTES, SentTo};
pub use interfaces::{Choice, Interface, Use};
pub use table::{Ages, Device, Path, State};

/// TCP checks running at once; more wait for the next round.
pub const MAX_CHECKS_IN_FLIGHT: usize = 16;
/// Unicast answers to queries per second, at most (a flood of spoofed queries cannot turn
/// Ferry into a firehose).
const MAX_REPLIES_PER_SEC: u32 = 50;
/// The burst: offsets of the first sends after start, refresh or an interface change.
const BURST_MS: [u64; 4] = [0, 250, 1_000, 2_000];
/// How long receptions are kept for the doctor's "last minute" counts.
const HEARD_WINDOW: Duration = Duration::from_secs(60);
/// Receptions kept at most (a flood cannot grow the list without bound).
const MAX_HEARD: usize = 4_096;

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot open the discovery port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot list network interfaces: {0}")]
    Interfaces(std::io::Error),
    #[error("cannot start the discovery thread: {0}")]
    Thread(std::io::Error),
}

/// What this device announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    /// 0: browse only (not listed by others).
    pub tcp_port: u16,
    pub udp_port: u16,
}

/// A trusted device, listed even when not heard, and probed at its last address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub last_addr: Option<SocketAddr>,
}

/// Everything discovery needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub me: Announce,
    pub port: u16,
    pub group: Ipv4Addr,
    pub choice: Choice,
    pub trusted: Vec<Known>,
    /// Extra addresses to probe by unicast (favourites added by address).
    pub probe: Vec<IpAddr>,
    pub ages: Ages,
    pub interval: Duration,
    pub check_timeout: Duration,
}

impl Config {
    pub fn new(me: Announce) -> Self {
        Config {
            me,
            port: DISCOVERY_PORT,
            group: DISCOVERY_GROUP,
            choice: Choice::default(),
            trusted: Vec::new(),
            probe: Vec::new(),
            ages: Ages::default(),
            interval: Duration::from_secs(15),
            check_timeout: Duration::from_secs(1),
        }
    }
}

/// One received beacon, for the doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Heard {
    at: Instant,
    iface: String,
    sent_to: SentTo,
    own: bool,
}

/// The doctor's view of what was heard in the last minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeardSummary {
    /// (interface, how our own beacon was heard on it).
    pub own: Vec<(String, SentTo)>,
    /// (interface, path, count) of other devices' beacons.
    pub others: Vec<(String, SentTo, usize)>,
    /// Interfaces whose multicast join failed, and why.
    pub join_failures: Vec<(String, String)>,
}

struct Shared {
    table: Mutex<table::Table>,
    heard: Mutex<VecDeque<Heard>>,
    interfaces: Mutex<Vec<(Interface, Use)>>,
    join_failures: Mutex<Vec<(String, String)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take discovery down with it: the data stays usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

enum Command {
    Refresh,
    Stop,
}

/// A running discovery. Dropping it stops it (with a goodbye).
pub struct Discovery {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    engine: Option<JoinHandle<()>>,
    local_port: u16,
}

impl Discovery {
    /// Opens the sockets and starts announcing and browsing.
    pub fn start(config: Config) -> Result<Discovery, DiscoveryError> {
        let mut table = table::Table::new(config.ages);
        for known in &config.trusted {
            table.add_trusted(&known.id, &known.name, &known.fingerprint, known.last_addr);
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(table),
            heard: Mutex::new(VecDeque::new()),
            interfaces: Mutex::new(Vec::new()),
            join_failures: Mutex::new(Vec::new()),
        });
        let (inbound_tx, inbound) = crossbeam_channel::bounded(1_024);
        let sockets = Sockets::open(&config, &shared, inbound_tx.clone())?;
        let local_port = config.port;
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let engine = Engine {
            config,
            shared: Arc::clone(&shared),
            sockets,
            inbound_tx,
            inbound,
            commands: command_rx,
            checks_in_flight: Arc::new(AtomicUsize::new(0)),
            replies: (Instant::now(), 0),
        };
        let engine = std::thread::Builder::new()
            .name("ferry-discovery".into())
            .spawn(move || engine.run())
            .map_err(DiscoveryError::Thread)?;
        Ok(Discovery {
            shared,
            commands,
            engine: Some(engine),
            local_port,
        })
    }

    /// The discovery port this instance listens on.
    pub fn port(&self) -> u16 {
        self.local_port
    }

    /// Every device known now, sorted by name.
    pub fn devices(&self) -> Vec<Device> {
        lock(&self.shared.table).devices(Instant::now())
    }

    /// A burst now (the Refresh button).
    pub fn refresh(&self) {
        let _ = self.commands.send(Command::Refresh);
    }

    /// The interfaces looked at, with the verdict for each.
    pub fn interfaces(&self) -> Vec<(Interface, Use)> {
        lock(&self.shared.interfaces).clone()
    }

    /// What was heard in the last minute, per interface and path.
    pub fn heard(&self) -> HeardSummary {
        let now = Instant::now();
        let heard = lock(&self.shared.heard);
        let mut own: Vec<(String, SentTo)> = Vec::new();
        let mut others: HashMap<(String, SentTo), usize> = HashMap::new();
        for h in heard
            .iter()
            .filter(|h| now.saturating_duration_since(h.at) < HEARD_WINDOW)
        {
            if h.own {
                if !own.contains(&(h.iface.clone(), h.sent_to)) {
                    own.push((h.iface.clone(), h.sent_to));
                }
            } else {
                *others.entry((h.iface.clone(), h.sent_to)).or_default() += 1;
            }
        }
        own.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
        let mut others: Vec<_> = others.into_iter().map(|((i, s), n)| (i, s, n)).collect();
        others.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
        HeardSummary {
            own,
            others,
            join_failures: lock(&self.shared.join_failures).clone(),
        }
    }

    /// Says goodbye on every path and stops every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A datagram from one of the sockets.
struct Inbound {
    bytes: Vec<u8>,
    from: SocketAddr,
}

/// The sockets of one set of interfaces, with their reader threads.
struct Sockets {
    senders: Vec<(Interface, Arc<UdpSocket>)>,
    prober: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    used: Vec<Interface>,
}

impl Sockets {
    fn open(
        config: &Config,
        shared: &Shared,
        inbound: Sender<Inbound>,
    ) -> Result<Sockets, DiscoveryError> {
        let all = interfaces::list(&config.choice).map_err(DiscoveryError::Interfaces)?;
        let used: Vec<Interface> = all
            .iter()
            .filter(|(_, u)| *u == Use::Used)
            .map(|(i, _)| i.clone())
            .collect();
        let (listener, failures) =
            socket::listener(config.port, config.group, &used).map_err(|source| {
                DiscoveryError::Bind {
                    port: config.port,
                    source,
                }
            })?;
        let mut senders = Vec::new();
        let mut failures = failures;
        for iface in &used {
            match socket::sender(iface) {
                Ok(s) => senders.push((iface.clone(), Arc::new(s))),
                Err(e) => failures.push((iface.name.clone(), format!("cannot send: {e}"))),
            }
        }
        *lock(&shared.interfaces) = all;
        *lock(&shared.join_failures) = failures;
        let prober =
            Arc::new(socket::prober().map_err(|source| DiscoveryError::Bind { port: 0, source })?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut all_sockets = vec![Arc::new(listener), Arc::clone(&prober)];
        all_sockets.extend(senders.iter().map(|(_, s)| Arc::clone(s)));
        for socket in all_sockets {
            let stop = Arc::clone(&stop);
            let inbound = inbound.clone();
            let reader = std::thread::Builder::new()
                .name("ferry-discovery-rx".into())
                .spawn(move || read_loop(&socket, &stop, &inbound))
                .map_err(DiscoveryError::Thread)?;
            readers.push(reader);
        }
        Ok(Sockets {
            senders,
            prober,
            stop,
            readers,
            used,
        })
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers {
            let _ = reader.join();
        }
    }
}

fn read_loop(socket: &UdpSocket, stop: &AtomicBool, inbound: &Sender<Inbound>) {
    // One byte more than a beacon may be, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; MAX_BEACON_BYTES + 1];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                // A full queue drops the datagram: beacons repeat.
                let _ = inbound.try_send(Inbound {
                    bytes: buf[..n].to_vec(),
                    from,
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                log::debug!("discovery socket: {e}");
                std::thread::sleep(socket::READ_TICK);
            }
        }
    }
}

struct Engine {
    config: Config,
    shared: Arc<Shared>,
    sockets: Sockets,
    inbound_tx: Sender<Inbound>,
    inbound: Receiver<Inbound>,
    commands: Receiver<Command>,
    checks_in_flight: Arc<AtomicUsize>,
    /// (start of the current second, replies sent in it).
    replies: (Instant, u32),
}

impl Engine {
    fn run(mut self) {
        let (check_tx, check_rx) = crossbeam_channel::unbounded::<(String, SocketAddr, bool)>();
        let mut burst_start = Instant::now();
        let mut burst_step = 0usize;
        let mut next_send = burst_start;
        let mut next_iface_check = burst_start + Duration::from_secs(3);
        let mut round = 0u64;
        loop {
            let now = Instant::now();
            let wake = next_send.min(next_iface_check).max(now);
            crossbeam_channel::select! {
                recv(self.inbound) -> msg => if let Ok(msg) = msg {
                    self.handle(msg, &check_tx);
                },
                recv(check_rx) -> result => if let Ok((id, addr, ok)) = result {
                    lock(&self.shared.table).checked(&id, addr, ok);
                },
                recv(self.commands) -> command => match command {
                    Ok(Command::Refresh) => {
                        burst_start = Instant::now();
                        burst_step = 0;
                        next_send = burst_start;
                    }
                    Ok(Command::Stop) | Err(_) => break,
                },
                default(wake.saturating_duration_since(now)) => {}
            }
            let now = Instant::now();
            if now >= next_send {
                let query = burst_step < BURST_MS.len();
                self.send_round(query, false, now);
                round += 1;
                burst_step += 1;
                next_send = match BURST_MS.get(burst_step) {
                    Some(ms) => burst_start + Duration::from_millis(*ms),
                    None => now + self.config.interval + jitter(&self.config.me.id, round),
                };
            }
            if now >= next_iface_check {
                next_iface_check = now + Duration::from_secs(3);
                if self.interfaces_changed() {
                    log::info!("network interfaces changed: reopening discovery sockets");
                    if self.reopen() {
                        burst_start = now;
                        burst_step = 0;
                        next_send = now;
                    }
                }
            }
            lock(&self.shared.table).expire(now);
            prune(&mut lock(&self.shared.heard), now);
        }
        self.send_round(false, true, Instant::now());
        self.sockets.close();
    }

    fn interfaces_changed(&self) -> bool {
        match interfaces::used(&self.config.choice) {
            Ok(now_used) => now_used != self.sockets.used,
            Err(_) => false,
        }
    }

    fn reopen(&mut self) -> bool {
        match Sockets::open(&self.config, &self.shared, self.inbound_tx.clone()) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.sockets, fresh);
                old.close();
                true
            }
            Err(e) => {
                log::warn!("discovery: {e}");
                false
            }
        }
    }

    fn beacon(&self, query: bool, bye: bool, sent_to: SentTo) -> Option<Vec<u8>> {
        let me = &self.config.me;
        let mut beacon = Beacon::hello(&me.id, &me.name, &me.fingerprint, me.tcp_port, me.udp_port);
        beacon.query = query;
        beacon.bye = bye;
        beacon.sent_to = sent_to;
        match beacon.encode() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                log::warn!("discovery: our own beacon cannot be encoded: {e}");
                None
            }
        }
    }

    /// One round: multicast and broadcast on each interface, unicast probes.
    fn send_round(&self, query: bool, bye: bool, now: Instant) {
        let port = self.config.port;
        let multicast = self.beacon(query, bye, SentTo::Multicast);
        let broadcast = self.beacon(query, bye, SentTo::Broadcast);
        for (iface, sock) in &self.sockets.senders {
            if let Some(bytes) = &multicast {
                let to = SocketAddr::from((self.config.group, port));
                if let Err(e) = sock.send_to(bytes, to) {
                    log::debug!("discovery: multicast on {}: {e}", iface.name);
                }
            }
            if let (Some(bytes), Some(bcast)) = (&broadcast, socket::broadcast_of(iface))
                && let Err(e) = sock.send_to(bytes, SocketAddr::from((bcast, port)))
            {
                log::debug!("discovery: broadcast on {}: {e}", iface.name);
            }
        }
        // Probes: trusted and quiet devices, favourites; on goodbye, everyone we know.
        let quiet_for = if bye {
            Duration::ZERO
        } else {
            self.config.interval
        };
        let mut targets = lock(&self.shared.table).probe_targets(now, quiet_for);
        targets.extend(self.config.probe.iter().copied());
        targets.sort();
        targets.dedup();
        if let Some(bytes) = self.beacon(!bye, bye, SentTo::Unicast) {
            for ip in targets {
                let _ = self
                    .sockets
                    .prober
                    .send_to(&bytes, SocketAddr::new(ip, port));
            }
        }
    }

    fn iface_of(&self, ip: IpAddr) -> String {
        let IpAddr::V4(v4) = ip else {
            return "IPv6".into();
        };
        self.sockets
            .used
            .iter()
            .find(|i| i.contains(v4))
            .map_or_else(
                || "routed (no interface's subnet)".into(),
                |i| i.name.clone(),
            )
    }

    fn handle(&mut self, msg: Inbound, check_tx: &Sender<(String, SocketAddr, bool)>) {
        let beacon = match Beacon::decode(&msg.bytes) {
            Ok(beacon) => beacon,
            Err(e) => {
                log::debug!("discovery: ignored a datagram from {}: {e}", msg.from);
                return;
            }
        };
        let now = Instant::now();
        let own = beacon.id == self.config.me.id;
        {
            let mut heard = lock(&self.shared.heard);
            if heard.len() >= MAX_HEARD {
                heard.pop_front();
            }
            heard.push_back(Heard {
                at: now,
                iface: self.iface_of(msg.from.ip()),
                sent_to: beacon.sent_to,
                own,
            });
        }
        if own {
            return;
        }
        if beacon.bye {
            lock(&self.shared.table).goodbye(&beacon.id);
            return;
        }
        if beacon.query && self.config.me.tcp_port != 0 {
            self.reply(msg.from);
        }
        if beacon.tcp_port == 0 {
            return; // a browser, not a device to list
        }
        let sighting = table::Sighting {
            id: beacon.id.clone(),
            name: beacon.name,
            fingerprint: beacon.fingerprint,
            os: beacon.os,
            ip: msg.from.ip(),
            tcp_port: beacon.tcp_port,
            udp_port: beacon.udp_port,
            path: match beacon.sent_to {
                SentTo::Unicast => Path::Probe,
                SentTo::Multicast | SentTo::Broadcast => Path::Beacon,
            },
        };
        let check = lock(&self.shared.table).observe(sighting, now);
        if let Some(addr) = check {
            self.check(beacon.id, addr, check_tx);
        }
    }

    /// Answers a query by unicast, from the socket of the interface it came in on.
    fn reply(&mut self, to: SocketAddr) {
        let now = Instant::now();
        if now.saturating_duration_since(self.replies.0) >= Duration::from_secs(1) {
            self.replies = (now, 0);
        }
        if self.replies.1 >= MAX_REPLIES_PER_SEC {
            return;
        }
        self.replies.1 += 1;
        let Some(bytes) = self.beacon(false, false, SentTo::Unicast) else {
            return;
        };
        let socket = match to.ip() {
            IpAddr::V4(v4) => self
                .sockets
                .senders
                .iter()
                .find(|(i, _)| i.contains(v4))
                .map(|(_, s)| s),
            IpAddr::V6(_) => None,
        }
        .unwrap_or(&self.sockets.prober);
        if let Err(e) = socket.send_to(&bytes, to) {
            log::debug!("discovery: reply to {to}: {e}");
        }
    }

    /// A TCP connect to the announced port, on a thread of its own.
    fn check(&self, id: String, addr: SocketAddr, results: &Sender<(String, SocketAddr, bool)>) {
        if self.checks_in_flight.load(Ordering::Relaxed) >= MAX_CHECKS_IN_FLIGHT {
            return; // checked again at a later sighting
        }
        self.checks_in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = Arc::clone(&self.checks_in_flight);
        let results = results.clone();
        let timeout = self.config.check_timeout;
        let spawned = std::thread::Builder::new()
            .name("ferry-discovery-check".into())
            .spawn(move || {
                let ok = TcpStream::connect_timeout(&addr, timeout).is_ok();
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = results.send((id, addr, ok));
            });
        if spawned.is_err() {
            self.checks_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn prune(heard: &mut VecDeque<Heard>, now: Instant) {
    while heard
        .front()
        .is_some_and(|h| now.saturating_duration_since(h.at) >= HEARD_WINDOW)
    {
        heard.pop_front();
    }
}

/// Up to 3 s, different per device and round (so devices that started together drift apart).
fn jitter(id: &str, round: u64) -> Duration {
    let hash = blake3::hash(format!("{id}/{round}").as_bytes());
    let bytes = hash.as_bytes();
    let ms = u64::from(u16::from_le_bytes([bytes[0], bytes[1]])) % 3_000;
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests;
