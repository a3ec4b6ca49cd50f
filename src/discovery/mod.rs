//! LAN discovery: find other Ferry devices without typing addresses, and keep what is needed
//! to explain why one is not found (`ferry doctor`).
//!
//! Paths, all feeding one [`table::Table`] keyed by device id:
//! - **Beacons** ([`crate::protocol::beacon`]) on [`DISCOVERY_PORT`], sent per used interface
//!   to the link-local multicast group [`DISCOVERY_GROUP`] (IP_MULTICAST_IF set, TTL 1, loop on)
//!   and to the interface's subnet broadcast address; over IPv6 to
//!   [`crate::defaults::DISCOVERY_GROUP_V6`] on each used interface with a link-local address
//!   (by interface index; see `socket.rs`). A beacon with `query` set asks every
//!   announcing device to answer at once by unicast, so a browser (`ferry peers --wait 3`)
//!   does not wait for the next round.
//! - **DNS-SD** (`mdns.rs`): `_ferry._tcp.local.` announced and browsed with `mdns-sd` (its own
//!   thread) on the same used interfaces; a removed record is a goodbye.
//! - **Unicast probes**: query beacons sent straight to trusted devices' last addresses, to
//!   devices not heard for a while and to the user's favourites (a router that drops
//!   multicast and broadcast still passes them).
//!
//! Timing (beacons; mDNS keeps its own RFC 6762 schedule): a burst (0, 0.25, 1 and 2 s) at start, on [`Discovery::refresh`] and when the set
//! of interfaces changes (checked every 3 s), then a round every ~15 s with up to 3 s of
//! jitter. Stopping sends a goodbye on every path, which removes the device from other tables
//! at once. A device is "ready" only once a TCP connect to its announced port succeeded.
//!
//! Beacons are hints: nothing here proves identity (the secure handshake does). Everything
//! received is hostile: datagrams are bounded, the table is bounded, replies are rate-limited.
//!
//! Threads: one engine thread owning the sockets and the schedule, one reader per socket, the
//! mDNS daemon and its browse reader, and one short-lived thread per TCP check (at most
//! [`MAX_CHECKS_IN_FLIGHT`]).
//!
//! [`Config::beacons`] and [`Config::mdns`] switch each path off (tests use one path alone).

pub mod doctor;
mod engine;
pub mod interfaces;
mod mdns;
mod socket;
pub mod table;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::defaults::{DISCOVERY_GROUP, DISCOVERY_PORT, MDNS_PORT};
#[cfg(test)]
use crate::protocol::beacon::Beacon;
pub use crate::protocol::beacon::SentTo;
use engine::Engine;
pub use interfaces::{Choice, Interface, Use};
use socket::Sockets;
pub use socket::route_source;
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
    #[error("mDNS: {0}")]
    Mdns(String),
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

/// A trusted device, listed even when not heard, and probed at its last address and at the
/// IP its key was last proven at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub last_addr: Option<SocketAddr>,
    /// Probed only, never listed or sent to (no port is known with it).
    pub last_ip: Option<IpAddr>,
}

/// Everything discovery needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub me: Announce,
    pub port: u16,
    pub group: Ipv4Addr,
    pub choice: Choice,
    pub trusted: Vec<Known>,
    /// Extra addresses to probe by unicast (trusted devices' last IPs): like every
    /// discovery target, only those reached by a chosen interface when only some are.
    pub probe: Vec<IpAddr>,
    /// Addresses the user named (the window's favourites, `ferry peers --probe`): probed by
    /// unicast, and their beacons and records heard, whatever interfaces were chosen, as a
    /// typed address reaches everywhere (`--only-interface` keeps discovery's own traffic
    /// off other networks, not what the user asked for by address).
    pub favourites: Vec<IpAddr>,
    pub ages: Ages,
    pub interval: Duration,
    pub check_timeout: Duration,
    /// The beacon path (multicast, broadcast and unicast probes) on or off.
    pub beacons: bool,
    /// The DNS-SD path on or off, and its UDP port (5353; tests pick their own).
    pub mdns: bool,
    pub mdns_port: u16,
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
            favourites: Vec::new(),
            ages: Ages::default(),
            interval: Duration::from_secs(15),
            check_timeout: Duration::from_secs(1),
            beacons: true,
            mdns: true,
            mdns_port: MDNS_PORT,
        }
    }
}

/// One received beacon, for the doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Heard {
    at: Instant,
    iface: String,
    via: Via,
    own: bool,
}

/// How something was heard: a beacon (addressed how) or a DNS-SD record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Via {
    Beacon(SentTo),
    Mdns,
}

/// The doctor's view of what was heard in the last minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeardSummary {
    /// (interface, how our own beacon was heard on it).
    pub own: Vec<(String, SentTo)>,
    /// (interface, path, count) of other devices' beacons.
    pub others: Vec<(String, SentTo, usize)>,
    /// Interfaces our own DNS-SD record was heard back on.
    pub own_mdns: Vec<String>,
    /// (interface, count) of other devices' DNS-SD records.
    pub others_mdns: Vec<(String, usize)>,
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
    /// New extra probe targets ([`Config::probe`]).
    SetProbes(Vec<IpAddr>),
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
            table.add_trusted(
                &known.id,
                &known.name,
                &known.fingerprint,
                known.last_addr,
                known.last_ip,
            );
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
        let (mdns_tx, mdns_rx) = crossbeam_channel::bounded(1_024);
        // Only loopback in use (a server bound to 127.0.0.1): no neighbours to announce to,
        // and starting the mDNS daemon would join its group on every interface for nothing.
        // Loopback chosen on purpose (tests) still gets it.
        let only_loopback =
            !sockets.used.is_empty() && sockets.used.iter().all(|i| i.addr.is_loopback());
        let mdns = if config.mdns && (config.choice.loopback || !only_loopback) {
            match mdns::Mdns::start(config.mdns_port, &config.me, &sockets.used, mdns_tx) {
                Ok(mdns) => Some(mdns),
                Err(e) => {
                    // Beacons still work: say why in the doctor, go on.
                    log::warn!("discovery: {e}");
                    lock(&shared.join_failures).push(("mDNS".into(), e.to_string()));
                    None
                }
            }
        } else {
            None
        };
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let engine = Engine {
            config,
            shared: Arc::clone(&shared),
            sockets,
            inbound_tx,
            inbound,
            mdns,
            mdns_events: mdns_rx,
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

    /// Replaces the extra addresses probed by unicast ([`Config::probe`]: trusted devices'
    /// last IPs) from the next round on.
    pub fn set_probes(&self, probe: Vec<IpAddr>) {
        let _ = self.commands.send(Command::SetProbes(probe));
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
        let mut own_mdns: Vec<String> = Vec::new();
        let mut others: HashMap<(String, SentTo), usize> = HashMap::new();
        let mut others_mdns: HashMap<String, usize> = HashMap::new();
        for h in heard
            .iter()
            .filter(|h| now.saturating_duration_since(h.at) < HEARD_WINDOW)
        {
            match (h.own, h.via) {
                (true, Via::Beacon(sent_to)) => {
                    if !own.contains(&(h.iface.clone(), sent_to)) {
                        own.push((h.iface.clone(), sent_to));
                    }
                }
                (true, Via::Mdns) => {
                    if !own_mdns.contains(&h.iface) {
                        own_mdns.push(h.iface.clone());
                    }
                }
                (false, Via::Beacon(sent_to)) => {
                    *others.entry((h.iface.clone(), sent_to)).or_default() += 1;
                }
                (false, Via::Mdns) => *others_mdns.entry(h.iface.clone()).or_default() += 1,
            }
        }
        own.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
        own_mdns.sort();
        let mut others: Vec<_> = others.into_iter().map(|((i, s), n)| (i, s, n)).collect();
        others.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
        let mut others_mdns: Vec<_> = others_mdns.into_iter().collect();
        others_mdns.sort();
        HeardSummary {
            own,
            others,
            own_mdns,
            others_mdns,
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

#[cfg(test)]
mod tests;
