//! The discovery engine thread: owns the sockets and the schedule (bursts, rounds with
//! jitter, interface changes), decodes what the readers receive, answers queries, feeds the
//! device table, runs the TCP readiness checks and says goodbye on the way out.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::mdns::{Mdns, MdnsEvent};
use super::socket::{self, Inbound, Sockets};
use super::{
    BURST_MS, Command, Config, HEARD_WINDOW, Heard, MAX_CHECKS_IN_FLIGHT, MAX_HEARD,
    MAX_REPLIES_PER_SEC, Path, Shared, Via, interfaces, lock, table,
};
use crate::defaults::DISCOVERY_GROUP_V6;
use crate::protocol::beacon::{Beacon, SentTo};

pub(super) struct Engine {
    pub(super) config: Config,
    pub(super) shared: Arc<Shared>,
    pub(super) sockets: Sockets,
    pub(super) inbound_tx: Sender<Inbound>,
    pub(super) inbound: Receiver<Inbound>,
    pub(super) mdns: Option<Mdns>,
    pub(super) mdns_events: Receiver<MdnsEvent>,
    pub(super) commands: Receiver<Command>,
    pub(super) checks_in_flight: Arc<AtomicUsize>,
    /// (start of the current second, replies sent in it).
    pub(super) replies: (Instant, u32),
}

impl Engine {
    pub(super) fn run(mut self) {
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
                recv(self.mdns_events) -> event => match event {
                    Ok(event) => self.handle_mdns(event, &check_tx),
                    // No mDNS (off, or it stopped): a closed channel is always ready, and
                    // selecting on it would spin this thread at full CPU.
                    Err(_) => self.mdns_events = crossbeam_channel::never(),
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
                    Ok(Command::SetProbes(probe)) => self.config.probe = probe,
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
        if let Some(mdns) = self.mdns.take() {
            mdns.stop();
        }
        self.sockets.close();
    }

    fn interfaces_changed(&self) -> bool {
        match interfaces::used(&self.config.choice) {
            Ok(now_used) => {
                now_used != self.sockets.used
                    || (self.config.beacons && socket::v6_links(&now_used) != self.sockets.links_v6)
            }
            Err(_) => false,
        }
    }

    fn reopen(&mut self) -> bool {
        match Sockets::open(&self.config, &self.shared, self.inbound_tx.clone()) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.sockets, fresh);
                old.close();
                if let Some(mdns) = &self.mdns
                    && let Err(e) = mdns.select(&self.sockets.used)
                {
                    log::warn!("discovery: {e}");
                }
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
        if !self.config.beacons {
            return;
        }
        let port = self.config.port;
        let multicast = self.beacon(query, bye, SentTo::Multicast);
        let broadcast = self.beacon(query, bye, SentTo::Broadcast);
        if let Some(bytes) = &multicast {
            for (link, sock) in &self.sockets.senders_v6 {
                let to = SocketAddrV6::new(DISCOVERY_GROUP_V6, port, 0, link.index);
                if let Err(e) = sock.send_to(bytes, to) {
                    log::debug!("discovery: IPv6 multicast on {}: {e}", link.name);
                }
            }
        }
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
        targets.extend(self.config.favourites.iter().copied());
        // Link-local IPv6 needs an interface index the table does not keep: IPv4 only. Only
        // some interfaces chosen: only addresses reached by one of them, and favourites.
        targets.retain(|ip| ip.is_ipv4() && self.within_choice(SocketAddr::new(*ip, port)));
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

    /// Whether discovery may talk with `addr`: always, unless only some interfaces were chosen
    /// (`--only-interface`); then only when the route to it leaves by one of them (IPv4: the
    /// source address the kernel would use is one of theirs; IPv6: its scope is one of their
    /// links), or when it is one of the user's favourites.
    fn within_choice(&self, addr: SocketAddr) -> bool {
        if !self.config.choice.only_chosen || self.config.favourites.contains(&addr.ip()) {
            return true;
        }
        socket::routed_via(
            addr,
            self.sockets.used.iter().map(|i| i.addr),
            self.sockets.links_v6.iter().map(|l| l.index),
        )
    }

    fn iface_of(&self, from: SocketAddr) -> String {
        let v4 = match from {
            SocketAddr::V4(v4) => *v4.ip(),
            SocketAddr::V6(v6) => {
                return self
                    .sockets
                    .links_v6
                    .iter()
                    .find(|l| l.index == v6.scope_id())
                    .map_or_else(|| "IPv6".into(), |l| format!("{} (IPv6)", l.name));
            }
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
        if !self.config.beacons {
            return; // the beacon path is off: what it hears is not used either
        }
        if !crate::protocol::is_device_address(msg.from.ip()) || self.is_broadcast(msg.from) {
            // A forged source (multicast, broadcast, unspecified): not heard, not answered
            // (no reply to a broadcast address), not listed.
            log::debug!("discovery: ignored a beacon from {}", msg.from);
            return;
        }
        if !self.within_choice(msg.from) {
            // Only some interfaces chosen (`--only-interface`): a beacon from a network reached
            // by another is neither listed, answered nor checked (a TCP connect there). A
            // unicast one too: `sent_to` is the sender's word (absent reads as unicast), and a
            // broadcast saying "unicast" would otherwise pass; typed addresses still work.
            log::debug!(
                "discovery: ignored a beacon from {} (not a chosen interface)",
                msg.from
            );
            return;
        }
        let now = Instant::now();
        let own = beacon.id == self.config.me.id;
        self.record_heard(msg.from, Via::Beacon(beacon.sent_to), own, now);
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
            scope_id: match msg.from {
                SocketAddr::V6(v6) => v6.scope_id(),
                SocketAddr::V4(_) => 0,
            },
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

    /// Whether `from` is the subnet broadcast address of an interface we use.
    fn is_broadcast(&self, from: SocketAddr) -> bool {
        let SocketAddr::V4(v4) = from else {
            return false;
        };
        let bcast = Some(*v4.ip());
        self.sockets
            .senders
            .iter()
            .any(|(iface, _)| socket::broadcast_of(iface) == bcast)
    }

    fn record_heard(&self, from: SocketAddr, via: Via, own: bool, now: Instant) {
        let iface = self.iface_of(from);
        let mut heard = lock(&self.shared.heard);
        if heard.len() >= MAX_HEARD {
            heard.pop_front();
        }
        heard.push_back(Heard {
            at: now,
            iface,
            via,
            own,
        });
    }

    /// A DNS-SD sighting, goodbye or our own record heard back.
    fn handle_mdns(&mut self, event: MdnsEvent, check_tx: &Sender<(String, SocketAddr, bool)>) {
        let now = Instant::now();
        match event {
            MdnsEvent::Own(ip) => self.record_heard(SocketAddr::new(ip, 0), Via::Mdns, true, now),
            MdnsEvent::Gone(id) => lock(&self.shared.table).goodbye(&id),
            MdnsEvent::Seen(sighting) => {
                if !self.within_choice(SocketAddr::new(sighting.ip, sighting.tcp_port)) {
                    // Only some interfaces chosen: a record (heard on one of them) naming an
                    // address reached by another is neither listed nor checked there.
                    log::debug!(
                        "discovery: ignored a DNS-SD record for {} (not a chosen interface)",
                        sighting.ip
                    );
                    return;
                }
                self.record_heard(SocketAddr::new(sighting.ip, 0), Via::Mdns, false, now);
                let id = sighting.id.clone();
                let check = lock(&self.shared.table).observe(sighting, now);
                if let Some(addr) = check {
                    self.check(id, addr, check_tx);
                }
            }
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
            IpAddr::V6(_) => {
                let SocketAddr::V6(v6) = to else {
                    return; // an IPv6 address is always a V6 socket address
                };
                let Some((_, socket)) = self
                    .sockets
                    .senders_v6
                    .iter()
                    .find(|(l, _)| l.index == v6.scope_id())
                else {
                    return; // not one of our links: no route for a link-local answer
                };
                Some(socket)
            }
        }
        // A server bound to one address answers from it (the source is what others connect
        // to); otherwise the kernel picks the route.
        .or_else(|| {
            self.config
                .choice
                .only_addr
                .and_then(|_| self.sockets.senders.first().map(|(_, s)| s))
        })
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
