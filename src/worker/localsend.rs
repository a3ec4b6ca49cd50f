//! The engine's LocalSend half (issue 16): while the Ferry server listens, a
//! [`LocalSendServer`] listens beside it (unless the window's "Receive from LocalSend" is
//! off) with the same folder, policy and timeouts, so LocalSend phones and desktops can send
//! to the window; its prompts, rows and text messages reach the window as the usual events
//! (offer ids are process-unique, so an answer can go to both servers). Its status (on with
//! its port and fingerprint, or off and why) is a [`ServerEvent::LocalSend`].
//!
//! The LocalSend devices it hears, plus those found by probing the favourites with
//! `POST /register`, are sent to the window as [`DiscoveryEvent::LocalSendDevices`] when
//! they change. Uploads and text messages to a LocalSend device run on threads of their own
//! through [`LocalSendSender`] (the engine keeps their cancel tokens like any upload's).
//!
//! On start and on Refresh the receiver also sweeps the private /24s with `POST /register`
//! (LocalSend's CLI never answers an announcement over UDP), unless the sweep setting is off.
//!
//! Safety in tests: multicast (announcing, hearing announcements) and the LAN sweep are on
//! only with "Find devices on the LAN" and a fixed port; a server bound to one address
//! announces on (and sweeps) that address's interface only, and port 0 (tests) never
//! announces nor sweeps the LAN (tests give the sweep loopback addresses of their own).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::Seams;
use super::engine::Upload;
use super::probe_runs::ProbeRuns;
use crate::discovery::{Choice, interfaces};
use crate::events::{
    CancelToken, DiscoveryEvent, Event, EventSink, Failure, FailureKind, LocalSendStatus,
    NoteEvent, PinProblem, Security, SeenLocalSend, ServerEvent, TransferEvent, TransferId,
};
use crate::localsend::identity::default_cert_dir;
use crate::localsend::{
    CertIdentity, Hears, LocalSendBatch, LocalSendConfig, LocalSendDevice, LocalSendSendError,
    LocalSendSender, LocalSendServer, LocalSendTarget, MulticastConfig, Relist, add_probed,
};
use crate::localsend::{LOCALSEND_GROUP, LOCALSEND_GROUP_V6, LOCALSEND_PORT};
use crate::transfer::{AcceptPolicy, Decision, ServerConfig};

/// LocalSend's groups and port on the interfaces `choice` picks, by the same rules as Ferry's
/// own discovery (up, neither loopback nor point-to-point, no virtual adapter such as a VPN
/// or a container bridge unless chosen; with `only_chosen`, the chosen ones alone): each
/// IPv4 address, and each interface that has an IPv6 address. Bound to one IPv4 address
/// (`only_addr`), that address alone and no IPv6, so `--bind 127.0.0.1` stays on loopback.
pub fn localsend_multicast(choice: &Choice) -> MulticastConfig {
    let (addrs, group_v6, interfaces_v6, relist) = match choice.only_addr {
        Some(addr) => (vec![addr], None, Vec::new(), None),
        None => {
            let (v4, v6) = interfaces::used_addrs(choice);
            // The same rules again as interfaces come and go.
            let again = choice.clone();
            let relist = Relist::new(move || {
                interfaces::try_used_addrs(&again)
                    .map_err(|e| log::debug!("LocalSend: cannot list the interfaces now: {e}"))
                    .ok()
            });
            (v4, Some(LOCALSEND_GROUP_V6), v6, Some(relist))
        }
    };
    MulticastConfig {
        group: LOCALSEND_GROUP,
        port: LOCALSEND_PORT,
        interfaces: addrs,
        group_v6,
        interfaces_v6,
        relist,
        hears: choice.only_chosen.then(|| {
            let within = Mutex::new(interfaces::Within::new(choice.clone()));
            Hears::new(move |from| {
                within
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .allows(from)
            })
        }),
    }
}

/// How long a `POST /register` probe of a favourite may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Addresses probed at most per round (favourites are few; this bounds a long list).
const MAX_PROBES: usize = 32;
/// Devices found by probing that are remembered.
const MAX_PROBED: usize = 64;

/// What the window asks the LocalSend side to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendSetup {
    /// Receive from LocalSend while the server listens ("Receive from LocalSend").
    pub receive: bool,
    /// The HTTPS port (LocalSend's 53317; 0 picks one and announces nothing, for tests).
    pub port: u16,
    /// Where the LocalSend certificate is kept (`None`: the default config folder).
    pub identity_dir: Option<PathBuf>,
    /// Announce and hear announcements on the LAN ("Find devices on the LAN").
    pub multicast: bool,
    /// Addresses asked who they are with `POST /register` (the favourites), on start and
    /// on Refresh.
    pub probe: Vec<SocketAddr>,
    /// The PIN LocalSend senders must give (`None`: none).
    pub pin: Option<String>,
    /// Sweep the private /24s with `POST /register` on start and on Refresh.
    pub sweep: bool,
    /// Sweep these instead of the LAN (tests: loopback addresses; empty: the LAN).
    pub sweep_hosts: Vec<SocketAddr>,
    /// The interfaces announced on and swept when the server listens on all addresses (the
    /// window's `--only-interface`; default: every LAN interface).
    pub interfaces: Choice,
}

impl Default for LocalSendSetup {
    fn default() -> Self {
        Self {
            receive: true,
            port: crate::localsend::LOCALSEND_PORT,
            identity_dir: None,
            multicast: true,
            probe: Vec::new(),
            pin: None,
            sweep: true,
            sweep_hosts: Vec::new(),
            interfaces: Choice::default(),
        }
    }
}

#[derive(Default)]
pub(super) struct LocalSendSide {
    setup: LocalSendSetup,
    server: Option<LocalSendServer>,
    /// The certificate, and the folder it was loaded from.
    identity: Option<(Option<PathBuf>, CertIdentity)>,
    /// Devices that answered a probe (shared with the probe threads).
    probed: Arc<Mutex<Vec<LocalSendDevice>>>,
    /// Probe runs, in order (see [`ProbeRuns`]).
    probe_runs: ProbeRuns,
    /// What the window was last told.
    told: Option<Vec<SeenLocalSend>>,
    /// The address the receiver is bound to, if one (its interface alone is swept).
    bound: Option<Ipv4Addr>,
}

impl LocalSendSide {
    /// Takes a new setup; a running receiver is started again with it (or stopped).
    pub(super) fn set(
        &mut self,
        setup: LocalSendSetup,
        ferry: Option<&ServerConfig>,
        alias: &str,
        sink: &EventSink,
        seams: &Seams,
    ) {
        // New favourites are only probed; anything else starts the receiver again.
        let without_probes = |s: &LocalSendSetup| LocalSendSetup {
            probe: Vec::new(),
            ..s.clone()
        };
        let changed = without_probes(&setup) != without_probes(&self.setup);
        let new_probes = setup.probe != self.setup.probe;
        self.setup = setup;
        match ferry {
            Some(ferry) if changed => {
                self.stop(sink);
                self.start(ferry, alias, sink, seams);
            }
            _ if new_probes => self.probe(alias, seams),
            _ => {}
        }
    }

    /// Starts receiving beside a Ferry server started with `ferry` (if on), and probes.
    pub(super) fn start(
        &mut self,
        ferry: &ServerConfig,
        alias: &str,
        sink: &EventSink,
        seams: &Seams,
    ) {
        self.stop_quietly();
        if self.setup.receive {
            let status = match self.identity() {
                Ok(identity) => self.start_server(ferry, alias, identity, sink),
                Err(reason) => LocalSendStatus::Off {
                    reason: Some(reason),
                },
            };
            sink.emit(Event::Server(ServerEvent::LocalSend(status)));
        } else {
            off(sink, None);
        }
        self.probe(alias, seams);
        self.sweep();
    }

    /// Announces again on LocalSend's multicast groups (see `LocalSendServer::announce`).
    pub(super) fn announce(&self) {
        if let Some(server) = &self.server {
            server.announce();
        }
    }

    /// Sweeps for LocalSend devices (see the module doc); a sweep already running goes on
    /// and none is started.
    pub(super) fn sweep(&self) {
        let Some(server) = &self.server else {
            return;
        };
        if !self.setup.sweep {
            return;
        }
        let targets = if !self.setup.sweep_hosts.is_empty() {
            self.setup.sweep_hosts.clone()
        } else if self.setup.multicast && self.setup.port != 0 {
            let choice = match self.bound {
                Some(bound) => self.setup.interfaces.clone().at_address(IpAddr::V4(bound)),
                None => self.setup.interfaces.clone(),
            };
            let interfaces: Vec<(Ipv4Addr, u8)> = crate::discovery::interfaces::used(&choice)
                .unwrap_or_default()
                .into_iter()
                .map(|i| (i.addr, u8::try_from(i.prefix_len()).unwrap_or(32)))
                .collect();
            crate::localsend::subnet_hosts(&interfaces, crate::localsend::LOCALSEND_PORT)
        } else {
            return;
        };
        if server.sweep(targets).is_none() {
            log::debug!("LocalSend: a sweep is already running");
        }
    }

    fn start_server(
        &mut self,
        ferry: &ServerConfig,
        alias: &str,
        identity: CertIdentity,
        sink: &EventSink,
    ) -> LocalSendStatus {
        let mut config = LocalSendConfig::new(ferry.dir.clone(), alias, identity);
        config.bind = ferry.bind;
        config.port = self.setup.port;
        config.device_type = "desktop".to_owned();
        config.policy = ferry.policy;
        config.decision_timeout = ferry.decision_timeout;
        config.idle_timeout = ferry.idle_timeout;
        config.min_rate = ferry.min_rate;
        config.fsync = ferry.fsync;
        config.direct_io = ferry.direct_io;
        config.pin = self.setup.pin.clone().filter(|pin| !pin.is_empty());
        self.bound = match ferry.bind {
            IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        config.multicast = (self.setup.multicast && self.setup.port != 0).then(|| {
            // Bound to one address: announced on that address's interface only.
            let mut multicast =
                localsend_multicast(&self.setup.interfaces.clone().at_address(ferry.bind));
            multicast.port = self.setup.port;
            multicast
        });
        match LocalSendServer::start(config, sink.clone()) {
            Ok(server) => {
                let status = LocalSendStatus::On {
                    addr: server.local_addr(),
                    addr_v6: server.local_addr_v6(),
                    fingerprint: server.fingerprint().to_owned(),
                    discovery_port: server.discovery_port(),
                };
                self.server = Some(server);
                status
            }
            Err(e) => LocalSendStatus::Off {
                reason: Some(e.to_string()),
            },
        }
    }

    /// Stops receiving and says so.
    pub(super) fn stop(&mut self, sink: &EventSink) {
        if self.stop_quietly() {
            off(sink, None);
        }
    }

    fn stop_quietly(&mut self) -> bool {
        match self.server.take() {
            Some(server) => {
                server.stop();
                true
            }
            None => false,
        }
    }

    /// The certificate (made on first use), loaded once per folder.
    fn identity(&mut self) -> Result<CertIdentity, String> {
        let dir = self.setup.identity_dir.clone();
        if let Some((loaded_from, identity)) = &self.identity
            && *loaded_from == dir
        {
            return Ok(identity.clone());
        }
        let identity = match dir.clone().or_else(default_cert_dir) {
            Some(folder) => CertIdentity::load_or_create(&folder),
            None => CertIdentity::generate(),
        }
        .map_err(|e| e.to_string())?;
        self.identity = Some((dir, identity.clone()));
        Ok(identity)
    }

    pub(super) fn answer(&self, offer_id: u64, decision: Decision) {
        if let Some(server) = &self.server {
            server.answer(offer_id, decision);
        }
    }

    pub(super) fn set_policy(&self, policy: AcceptPolicy) {
        if let Some(server) = &self.server {
            server.set_policy(policy);
        }
    }

    pub(super) fn cancel(&self, id: TransferId) {
        if let Some(server) = &self.server {
            server.cancel(id);
        }
    }

    /// Asks the favourites who they are, on a thread of its own (each probe times out).
    pub(super) fn probe(&mut self, alias: &str, seams: &Seams) {
        let mut addrs = self.setup.probe.clone();
        addrs.truncate(MAX_PROBES);
        if addrs.is_empty() {
            return;
        }
        let Ok(identity) = self.identity() else {
            return;
        };
        // A favourite on this machine is answered by our own receiver: not a device to list.
        let own = identity.fingerprint().to_owned();
        let sender = self.sender(identity, alias, Sending::default());
        let probed = Arc::clone(&self.probed);
        let (runs, run) = (self.probe_runs.clone(), self.probe_runs.begin());
        let spawned = (seams.spawner)(
            "ferry-localsend-probe",
            Box::new(move || {
                for addr in addrs {
                    let Some(answer) = runs.ask(run, || sender.probe(addr, PROBE_TIMEOUT)) else {
                        log::debug!("LocalSend probes: a later run asks instead");
                        return;
                    };
                    match answer {
                        Ok(device) if device.fingerprint.eq_ignore_ascii_case(&own) => {
                            log::debug!("LocalSend probe of {addr}: our own receiver");
                        }
                        Ok(device) => {
                            let mut probed = probed.lock().unwrap_or_else(PoisonError::into_inner);
                            // As the device table: another favourite answering in plain
                            // HTTP with a fingerprint probed over HTTPS changes nothing.
                            let downgrade = probed.iter().any(|d| {
                                d.fingerprint == device.fingerprint
                                    && !d.protocol.may_become(device.protocol)
                            });
                            if downgrade {
                                log::debug!(
                                    "LocalSend probe of {addr}: a plain-HTTP claim to an HTTPS device"
                                );
                                continue;
                            }
                            // The address answered for this device only (one port, one
                            // server): another listed there (an old certificate, or the
                            // HTTPS one before its owner turned encryption off) is gone.
                            probed.retain(|d| {
                                d.fingerprint != device.fingerprint && d.addr != device.addr
                            });
                            probed.insert(0, device);
                            probed.truncate(MAX_PROBED);
                        }
                        // A favourite that no longer answers leaves the list (until it
                        // answers again: each Refresh probes again).
                        Err(e) => {
                            log::debug!("LocalSend probe of {addr}: {e}");
                            probed
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .retain(|d| d.addr != addr);
                        }
                    }
                }
            }),
        );
        if let Err(e) = spawned {
            log::warn!("cannot start a LocalSend probe: {e}");
        }
    }

    fn sender(&self, identity: CertIdentity, alias: &str, how: Sending) -> LocalSendSender {
        let mut sender = LocalSendSender::new(identity, alias);
        sender.device_type = "desktop".to_owned();
        sender.pin = how.pin;
        sender.send_unencrypted = how.unencrypted;
        // Devices list us where our receiver is (it shares the identity).
        if let Some(server) = &self.server {
            sender.port = server.local_addr().port();
        }
        sender
    }

    /// Tells the window the LocalSend devices, if they changed.
    pub(super) fn poll(&mut self, sink: &EventSink) {
        let mut devices: Vec<LocalSendDevice> = self
            .server
            .as_ref()
            .map(LocalSendServer::devices)
            .unwrap_or_default();
        let probed = self
            .probed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for found in probed {
            add_probed(&mut devices, found);
        }
        let seen: Vec<SeenLocalSend> = devices
            .into_iter()
            .map(|d| SeenLocalSend {
                alias: d.alias,
                device_type: d.device_type,
                fingerprint: d.fingerprint,
                addr: d.addr,
                addr_v6: d.addr_v6,
                protocol: d.protocol,
                how: d.how,
                proven: d.proven,
                last_seen: d.last_seen,
            })
            .collect();
        if self.told.as_ref() != Some(&seen) {
            sink.emit(Event::Discovery(DiscoveryEvent::LocalSendDevices(
                seen.clone(),
            )));
            self.told = Some(seen);
        }
    }

    /// Sends files to a LocalSend device on a thread of its own; every file gets its end.
    pub(super) fn send_files(
        &mut self,
        to: LocalSendTarget,
        batch: LocalSendBatch,
        how: Sending,
        alias: &str,
        sink: &EventSink,
        seams: &Seams,
    ) -> Option<Upload> {
        let ids: Vec<TransferId> = batch.files.iter().map(|(f, _)| f.id).collect();
        let fail = |detail: String| {
            for &id in &ids {
                let failure = Failure::new(FailureKind::NotStarted, detail.clone());
                sink.transfer(TransferEvent::Failed { id, failure });
            }
        };
        let identity = match self.identity() {
            Ok(identity) => identity,
            Err(reason) => {
                fail(reason);
                return None;
            }
        };
        let sender = self.sender(identity, alias, how);
        let cancel = CancelToken::new();
        let (token, events) = (cancel.clone(), sink.clone());
        let spawned = (seams.spawner)(
            "ferry-localsend-send",
            Box::new(move || {
                // Every outcome, a refusal included, reaches the window as events.
                if let Err(e) = sender.send_batch(&to, &batch, &events, &token) {
                    log::info!("LocalSend send to {}: {e}", to.addr);
                }
            }),
        );
        match spawned {
            Ok(thread) => Some(Upload {
                ids,
                cancel,
                thread,
            }),
            Err(e) => {
                fail(format!("cannot start the upload: {e}"));
                None
            }
        }
    }

    /// Sends a text message to a LocalSend device (with `pin` when it asked for one); the
    /// notes panel hears how it went, a refusal over the PIN as `NoteEvent::PinNeeded`.
    pub(super) fn send_text(
        &mut self,
        to: LocalSendTarget,
        text: String,
        how: Sending,
        alias: &str,
        sink: &EventSink,
        seams: &Seams,
    ) {
        let identity = match self.identity() {
            Ok(identity) => identity,
            Err(reason) => return note_error(sink, reason),
        };
        let sender = self.sender(identity, alias, how);
        let events = sink.clone();
        let spawned = (seams.spawner)(
            "ferry-localsend-text",
            Box::new(
                move || match sender.send_text(&to, &text, &CancelToken::new()) {
                    Ok(()) => events.emit(Event::Note(NoteEvent::Sent {
                        to: to.addr,
                        text,
                        at: SystemTime::now(),
                        security: Security::LocalSend {
                            alias: to.alias,
                            device_type: to.device_type,
                            fingerprint: to.fingerprint,
                            encrypted: to.protocol.is_encrypted(),
                        },
                    })),
                    Err(e) => match pin_problem(&e) {
                        Some(problem) => events.emit(Event::Note(NoteEvent::PinNeeded {
                            to: to.addr,
                            text,
                            problem,
                        })),
                        None => note_error(&events, format!("LocalSend {}: {e}", to.alias)),
                    },
                },
            ),
        );
        if let Err(e) = spawned {
            note_error(sink, format!("cannot send to LocalSend: {e}"));
        }
    }
}

/// How one send to a LocalSend device goes: the PIN it asked for, and whether the user
/// agreed to send unencrypted to a device with encryption off.
#[derive(Default)]
pub(super) struct Sending {
    pub(super) pin: Option<String>,
    pub(super) unencrypted: bool,
}

fn off(sink: &EventSink, reason: Option<String>) {
    sink.emit(Event::Server(ServerEvent::LocalSend(
        LocalSendStatus::Off { reason },
    )));
}

/// The PIN problem a refused send had, if that is why it was refused.
fn pin_problem(error: &LocalSendSendError) -> Option<PinProblem> {
    match error {
        LocalSendSendError::PinRequired => Some(PinProblem::Required),
        LocalSendSendError::WrongPin => Some(PinProblem::Wrong),
        LocalSendSendError::TooManyPinTries => Some(PinProblem::TooManyTries),
        _ => None,
    }
}

fn note_error(sink: &EventSink, reason: String) {
    sink.emit(Event::Note(NoteEvent::Error { reason }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localsend_multicast_follows_the_choice() {
        let lo = localsend_multicast(&Choice::named(&[], &["lo".into()]));
        assert_eq!(lo.interfaces, [Ipv4Addr::LOCALHOST]);
        assert!(
            lo.interfaces_v6.is_empty(),
            "loopback has no IPv6 multicast"
        );
        assert_eq!((lo.group, lo.port), (LOCALSEND_GROUP, LOCALSEND_PORT));
        let none = localsend_multicast(&Choice::named(&[], &["no-such-interface".into()]));
        assert!(none.interfaces.is_empty() && none.interfaces_v6.is_empty());
        let bound = Choice::default().at_address("10.1.2.3".parse().unwrap());
        let one = localsend_multicast(&bound);
        assert_eq!(one.interfaces, [Ipv4Addr::new(10, 1, 2, 3)]);
        assert_eq!(one.group_v6, None);
        // The default never announces on loopback.
        let default = localsend_multicast(&Choice::default());
        assert!(default.interfaces.iter().all(|ip| !ip.is_loopback()));
    }
}
