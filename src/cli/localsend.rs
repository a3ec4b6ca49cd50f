//! The CLI's LocalSend side, kept apart from `transfer.rs` so `serve` and `send` stay
//! readable: `ferry serve` starts the LocalSend receiver beside the Ferry server (same
//! folder, policy and name) and says it is on (port and fingerprint) or why not; `ferry
//! peers --wait` and `ferry send --to ALIAS` look for LocalSend devices (announcing, hearing
//! announcements and registers, probing typed addresses, sweeping the private /24s with
//! `POST /register` unless `--no-localsend-sweep`) and send to one. A device with encryption
//! turned off (plain HTTP) gets files only with `--no-encryption` and a note only with
//! `--plain`; without, the refusal says what sending to it means and how to proceed.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::discover::{NAME_CLASH_WAIT, NameTrust};
use super::{LocalSendToArgs, NoteArgs, SendArgs, ServeArgs, SweepArgs};
use crate::discovery::Choice;
use crate::events::{CancelToken, EventSink, event_channel};
use crate::localsend::identity::default_cert_dir;
use crate::localsend::{
    CertIdentity, LOCALSEND_PORT, LocalSendBatch, LocalSendConfig, LocalSendDevice, LocalSendError,
    LocalSendProtocol, LocalSendSender, LocalSendServer, LocalSendTarget,
};
use crate::protocol::escape_line;
use crate::transfer::AcceptPolicy;

/// How long a `POST /register` probe may take (LocalSend gives 500 ms).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// This install's LocalSend certificate (made once, kept in the config folder).
fn identity() -> Result<CertIdentity, crate::localsend::LocalSendError> {
    match default_cert_dir() {
        Some(config_dir) => CertIdentity::load_or_create(&config_dir),
        None => CertIdentity::generate(),
    }
}

/// Starts LocalSend receiving unless `--no-localsend`; prints one line either way. A port in
/// use or a certificate that cannot be made turns LocalSend off with a reason, never `serve`.
pub(super) fn start(
    args: &ServeArgs,
    dir: &Path,
    policy: AcceptPolicy,
    sink: EventSink,
) -> Option<LocalSendServer> {
    if args.no_localsend {
        return None;
    }
    let identity = match identity() {
        Ok(identity) => identity,
        Err(e) => {
            say!("LocalSend receiving is off: {e}");
            return None;
        }
    };
    let alias = args
        .name
        .clone()
        .unwrap_or_else(crate::secure::identity::default_device_name);
    let mut config = LocalSendConfig::new(dir.to_path_buf(), &alias, identity);
    config.bind = args.bind;
    config.port = args.localsend_port;
    config.device_type = "headless".to_owned();
    config.policy = policy;
    config.pin = args.localsend_pin.clone();
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout_secs.max(1));
    config.fsync = !args.no_fsync;
    config.direct_io = !args.no_direct_io;
    // A server bound to one address announces on that address's interface only (so
    // `--bind 127.0.0.1` stays on loopback), and sweeps only that interface's hosts.
    let choice = args.interfaces.choice().at_address(args.bind);
    config.multicast = (!args.no_discovery).then(|| crate::worker::localsend_multicast(&choice));
    match LocalSendServer::start(config, sink) {
        Ok(server) => {
            // No sweep when told not to go out on the LAN.
            if !args.no_discovery
                && let Some(targets) = sweep_targets(&args.sweep, &choice)
            {
                server.sweep(targets);
            }
            say!(
                "LocalSend receiving is on: {} (HTTPS){}, fingerprint {}{}",
                server.local_addr(),
                server
                    .local_addr_v6()
                    .map(|v6| format!(" and {v6}"))
                    .unwrap_or_default(),
                server.fingerprint(),
                if args.localsend_pin.is_some() {
                    ", PIN required"
                } else {
                    ""
                }
            );
            Some(server)
        }
        Err(e) => {
            say!("LocalSend receiving is off: {e} (--localsend-port picks another)");
            None
        }
    }
}

/// The hosts a sweep asks (`None`: no sweep): the typed ones, else every other host of the
/// private /24s of the interfaces `choice` uses (never loopback).
pub(super) fn sweep_targets(sweep: &SweepArgs, choice: &Choice) -> Option<Vec<SocketAddr>> {
    if sweep.no_localsend_sweep {
        return None;
    }
    if !sweep.localsend_sweep_host.is_empty() {
        return Some(
            sweep
                .localsend_sweep_host
                .iter()
                .filter_map(|h| probe_addr(h))
                .collect(),
        );
    }
    let interfaces: Vec<(Ipv4Addr, u8)> = crate::discovery::interfaces::used(choice)
        .map_err(|e| log::warn!("LocalSend sweep: cannot list interfaces: {e}"))
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.addr, u8::try_from(i.prefix_len()).unwrap_or(32)))
        .collect();
    Some(crate::localsend::subnet_hosts(&interfaces, LOCALSEND_PORT))
}

/// The lookup's receiver, on a port of its own: it never holds LocalSend's port, which a
/// receiver started while a lookup runs (up to `--localsend-wait`, an hour at most) would
/// otherwise fail to bind, and stay off. LocalSend keeps one entry per IP address, and the
/// port last told (by an announcement or a register) wins, so when a receiver here (the
/// window's, `ferry serve`'s) holds LocalSend's port, devices are told that port rather than
/// one nobody serves once the lookup ends: their register answers then go to that receiver,
/// and the lookup learns of them from the sweep's and the probes' answers and from their
/// multicast datagrams. When none holds it, devices are told the lookup's own port, where
/// their register answers reach the lookup (nothing here serves either port afterwards).
fn start_receiver(mut config: LocalSendConfig) -> Result<LocalSendServer, LocalSendError> {
    let port = config.port;
    let held = matches!(
        std::net::TcpListener::bind((config.bind, port)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    );
    if held {
        log::info!("LocalSend lookup: port {port} is held here; telling devices that one");
        config.advertised_port = Some(port);
    }
    config.port = 0;
    LocalSendServer::start(config, event_channel(None).0)
}

/// Looking for LocalSend devices: a receiver that takes nothing (every offer refused) so
/// devices can register back, announcing on the LAN, plus `POST /register` probes and the
/// sweep.
/// A LocalSend lookup and when it began (its wait counts from then).
pub(super) struct Started {
    lookup: Lookup,
    at: Instant,
}

pub(super) struct Lookup {
    server: Option<LocalSendServer>,
    probes: Option<JoinHandle<Vec<LocalSendDevice>>>,
}

impl Lookup {
    pub(super) fn start(probes: &[String], sweep: &SweepArgs, choice: &Choice) -> Self {
        let alias = crate::secure::identity::default_device_name();
        let server = identity().ok().and_then(|identity| {
            let mut config = LocalSendConfig::new(std::env::temp_dir(), &alias, identity);
            config.device_type = "headless".to_owned();
            // Looking only: nothing is ever accepted or written.
            config.policy = AcceptPolicy::TrustedOnly;
            config.fsync = false;
            config.multicast = Some(crate::worker::localsend_multicast(choice));
            let server = start_receiver(config)
                .map_err(|e| log::warn!("LocalSend lookup: {e}"))
                .ok()?;
            if let Some(targets) = sweep_targets(sweep, choice) {
                server.sweep(targets);
            }
            Some(server)
        });
        let addrs: Vec<SocketAddr> = probes.iter().filter_map(|p| probe_addr(p)).collect();
        // A probe is a register: the device lists us at the port the receiver tells.
        let port = server.as_ref().map(LocalSendServer::advertised_port);
        let probes = (!addrs.is_empty())
            .then(|| identity().ok())
            .flatten()
            .and_then(|identity| {
                let mut sender = LocalSendSender::new(identity, &alias);
                if let Some(port) = port {
                    sender.port = port;
                }
                std::thread::Builder::new()
                    .name("ferry-localsend-probe".into())
                    .spawn(move || {
                        addrs
                            .into_iter()
                            .filter_map(|addr| match sender.probe(addr, PROBE_TIMEOUT) {
                                Ok(device) => Some(device),
                                Err(e) => {
                                    tell!("LocalSend probe of {addr}: {e}");
                                    None
                                }
                            })
                            .collect()
                    })
                    .ok()
            });
        Self { server, probes }
    }

    /// A lookup for `--to NAME`, as its LocalSend flags ask, starting now.
    pub(super) fn start_for(how: &LocalSendToArgs) -> Started {
        Started {
            lookup: Self::start(&how.localsend_probe, &how.sweep, &how.interfaces.choice()),
            at: Instant::now(),
        }
    }

    /// The devices heard so far by the receiver (probes are added by [`Lookup::finish`]).
    fn heard(&self) -> Vec<LocalSendDevice> {
        self.server
            .as_ref()
            .map(|s| s.devices())
            .unwrap_or_default()
    }

    /// Whether the sweep is still asking hosts.
    fn sweeping(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(LocalSendServer::is_sweeping)
    }

    /// Stops looking; every device found, one per fingerprint.
    pub(super) fn finish(mut self) -> Vec<LocalSendDevice> {
        let mut devices = self.heard();
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Some(probes) = self.probes.take() {
            for found in probes.join().unwrap_or_default() {
                crate::localsend::add_probed(&mut devices, found);
            }
        }
        devices
    }
}

/// `HOST[:PORT]` (port 53317 unless given) as an address, read as `--to` is (an IPv6 zone
/// by the interface's name; `0177.0.0.1`, which the resolver reads as 127.0.0.1, refused);
/// a warning when it is not one.
fn probe_addr(typed: &str) -> Option<SocketAddr> {
    let read = crate::defaults::parse_destination_or_port(typed, LOCALSEND_PORT);
    let found = match &read {
        Ok(destination) => {
            (destination.to_string().to_socket_addrs().ok()).and_then(|mut addrs| addrs.next())
        }
        Err(_) => None,
    };
    if found.is_none() {
        let why = match read {
            Err(e) => format!(" ({})", escape_line(&e.to_string())),
            Ok(_) => String::new(),
        };
        tell!(
            "LocalSend probe: {:?} is not an address{why}",
            escape_line(typed)
        );
    }
    found
}

/// One `ferry peers` line for a LocalSend device (the word `localsend` marks it; one with
/// encryption off says so: its "fingerprint" is only an id it claims).
pub(super) fn device_line(device: &LocalSendDevice) -> String {
    let encryption = match device.protocol {
        LocalSendProtocol::Https => "",
        LocalSendProtocol::Http => "  encryption off (plain HTTP)",
    };
    format!(
        "{}  {}  localsend {}  {}{encryption}  {}",
        escape_line(&device.alias),
        device.addr,
        device.device_type,
        device.how.join("+"),
        proof_words(device)
    )
}

/// `fingerprint F` for a device with a certificate; `id F (claimed, no certificate)` for one
/// with encryption off, whose "fingerprint" nothing proves (escaped either way).
fn proof_words(device: &LocalSendDevice) -> String {
    let fingerprint = escape_line(&device.fingerprint);
    match device.protocol {
        LocalSendProtocol::Https => format!("fingerprint {fingerprint}"),
        LocalSendProtocol::Http => format!("id {fingerprint} (claimed, no certificate)"),
    }
}

/// The shortest beginning of a fingerprint `--localsend-fingerprint` takes.
const MIN_FINGERPRINT_PREFIX: usize = 8;

/// Whether `device` is the one `--localsend-fingerprint` names (any device when not given):
/// its fingerprint (a plain-HTTP device's claimed id) begins so, in any case.
fn fingerprint_chosen(device: &LocalSendDevice, how: &LocalSendToArgs) -> bool {
    how.localsend_fingerprint.as_deref().is_none_or(|wanted| {
        device
            .fingerprint
            .to_ascii_uppercase()
            .starts_with(&wanted.trim().to_ascii_uppercase())
    })
}

/// The LocalSend devices called `alias` (and chosen by `--localsend-fingerprint`): looked for
/// up to `--localsend-wait` and then as long as the sweep still runs; once one is heard, as
/// for a Ferry device's name, [`NAME_CLASH_WAIT`] more for another of that name (anyone can
/// announce any name, with a certificate of its own or none).
fn find(alias: &str, how: &LocalSendToArgs, started: Option<Started>) -> Vec<LocalSendDevice> {
    let Started { lookup, at } = started.unwrap_or_else(|| Lookup::start_for(how));
    let wait = Duration::from_secs_f64(how.localsend_wait.clamp(0.0, 3600.0));
    let deadline = at + wait;
    let wanted = |d: &LocalSendDevice| d.alias == alias && fingerprint_chosen(d, how);
    let mut decided: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let heard = lookup.heard().iter().filter(|d| wanted(d)).count();
        let done = match heard {
            0 => now >= deadline && !lookup.sweeping(),
            1 => now >= *decided.get_or_insert(now + NAME_CLASH_WAIT),
            _ => true,
        };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lookup.finish().into_iter().filter(wanted).collect()
}

/// The LocalSend device called `alias` (`--to` that is neither a Ferry device nor an
/// address); none, or an address, gives back the Ferry error (`ferry_error`). Several of that
/// name (a plain-HTTP one beside one with a certificate too: either may be the impostor) are
/// refused, naming each, until `--localsend-fingerprint` picks one.
fn find_named(
    alias: &str,
    how: &LocalSendToArgs,
    ferry_error: anyhow::Error,
    started: Option<Started>,
) -> anyhow::Result<LocalSendDevice> {
    // A LocalSend device calling itself like a trusted Ferry device does not get its files.
    if alias.contains(':') || super::discover::name_trust(alias) != NameTrust::Untrusted {
        return Err(ferry_error);
    }
    if let Some(wanted) = &how.localsend_fingerprint
        && wanted.trim().chars().count() < MIN_FINGERPRINT_PREFIX
    {
        anyhow::bail!(
            "--localsend-fingerprint takes the fingerprint `ferry peers` shows, or at least its \
             first {MIN_FINGERPRINT_PREFIX} characters"
        );
    }
    let mut named = find(alias, how, started);
    if named.len() > 1 {
        let all: Vec<String> = named
            .iter()
            .map(|d| format!("{} ({})", d.addr, proof_words(d)))
            .collect();
        anyhow::bail!(
            "several LocalSend devices are called {:?}: {}; anyone on the network can take a \
             name, so add --localsend-fingerprint with the one you mean (`ferry peers --wait 3` \
             lists them)",
            escape_line(alias),
            all.join(", ")
        );
    }
    named.pop().ok_or_else(|| {
        let chosen = match &how.localsend_fingerprint {
            Some(wanted) => format!(" with a fingerprint beginning {:?}", escape_line(wanted)),
            None => String::new(),
        };
        // The Ferry search came first, so its answer reads first.
        anyhow::anyhow!(
            "{ferry_error:#}; no LocalSend device is called {:?}{chosen} either",
            escape_line(alias)
        )
    })
}

/// To a device with encryption off (plain HTTP): refused unless the user agreed with `flag`
/// (the refusal says what that means and how to proceed), and said when agreed. `what`:
/// what goes unencrypted ("the files", "the note").
fn agreed_or_refused(
    device: &LocalSendDevice,
    flag: &str,
    agreed: bool,
    what: &str,
) -> anyhow::Result<()> {
    if device.protocol != LocalSendProtocol::Http {
        return Ok(());
    }
    let alias = escape_line(&device.alias);
    if !agreed {
        anyhow::bail!(
            "the LocalSend device {alias} has encryption turned off (it speaks plain HTTP): \
             anyone on the network could read {what} and it cannot prove who it is; add {flag} \
             to send anyway, or turn Encryption back on in its settings"
        );
    }
    say!(
        "sending {what} unencrypted (plain HTTP) to LocalSend device {alias}: encryption is \
         off on it, so anyone on the network can read {what}"
    );
    Ok(())
}

/// `ferry send --to ALIAS` when ALIAS is no Ferry device nor address: a LocalSend device of
/// that name gets the files; none gives back the Ferry error (`ferry_error`).
/// `started`: the lookup begun while the Ferry search ran, if one was.
pub(super) fn send_by_alias(
    args: SendArgs,
    ferry_error: anyhow::Error,
    started: Option<Started>,
) -> anyhow::Result<ExitCode> {
    if args.plain || args.code.is_some() {
        return Err(ferry_error);
    }
    let device = find_named(&args.to, &args.localsend, ferry_error, started)?;
    agreed_or_refused(&device, "--no-encryption", args.no_encryption, "the files")?;
    say!(
        "sending to LocalSend device {} at {} ({})",
        escape_line(&device.alias),
        device.addr,
        proof_words(&device)
    );
    let identity = identity().context("LocalSend certificate")?;
    let mut sender =
        LocalSendSender::new(identity, &crate::secure::identity::default_device_name());
    sender.pin = args.localsend.pin;
    sender.send_unencrypted = args.no_encryption;
    let target = LocalSendTarget::from(&device);
    let (sink, events) = event_channel(None);
    let (items, shown) = super::transfer::read_items(args.files, |_| Ok(()))?;
    let batch = LocalSendBatch::of(&items);
    for empty in &batch.empty_folders {
        // Said, not silently dropped: LocalSend v2 names files only.
        say!(
            "{}: not sent (an empty folder: LocalSend cannot send empty folders)",
            escape_line(empty)
        );
    }
    // Ctrl-C cancels the session on the device too (`/cancel`), so the device is free for
    // the next sender at once instead of busy (409) until its own timeout; a second Ctrl-C
    // quits without waiting.
    let cancel = CancelToken::new();
    let on_ctrl_c = cancel.clone();
    ctrlc::set_handler(move || {
        if on_ctrl_c.is_cancelled() {
            std::process::exit(130);
        }
        tell!("ferry: cancelling (Ctrl-C again quits at once)");
        on_ctrl_c.cancel();
    })
    .context("cannot install the Ctrl-C handler")?;
    super::transfer::run_send("ferry-localsend-send", &events, &shown, move || {
        sender.send_batch(&target, &batch, &sink, &cancel)
    })
}

/// `ferry note --to ALIAS` when ALIAS is no Ferry device nor address: a LocalSend device of
/// that name gets the note as a text message (LocalSend has no reply, so `--wait` does not
/// apply); none gives back the Ferry error (`ferry_error`).
pub(super) fn note_by_alias(
    args: &NoteArgs,
    ferry_error: anyhow::Error,
) -> anyhow::Result<ExitCode> {
    // A HOST:PORT that failed (a port that is no number, a host that does not resolve) is
    // no name: say why it failed, not that a search begins.
    if args.to.contains(':') {
        return Err(ferry_error);
    }
    tell!(
        "looking for a LocalSend device named {:?} on the LAN...",
        escape_line(&args.to)
    );
    let device = find_named(&args.to, &args.localsend, ferry_error, None)?;
    // `--plain` (send plain text) is the agreement to send a note in the clear.
    agreed_or_refused(&device, "--plain", args.plain, "the note")?;
    let identity = identity().context("LocalSend certificate")?;
    let mut sender =
        LocalSendSender::new(identity, &crate::secure::identity::default_device_name());
    sender.pin.clone_from(&args.localsend.pin);
    sender.send_unencrypted = args.plain;
    let target = LocalSendTarget::from(&device);
    sender
        .send_text(&target, &args.text, &CancelToken::new())
        .with_context(|| format!("LocalSend device {}", escape_line(&device.alias)))?;
    say!(
        "sent to LocalSend device {} at {} ({}; LocalSend has no replies)",
        escape_line(&device.alias),
        device.addr,
        proof_words(&device)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LocalSend device's fingerprint is whatever its multicast datagram said (any text up
    /// to 128 bytes): its `ferry peers` line must not let it drive the terminal.
    #[test]
    fn a_devices_line_escapes_its_announced_fingerprint() {
        let device = LocalSendDevice {
            alias: "phone".into(),
            device_type: "mobile".into(),
            device_model: None,
            fingerprint: "AB\u{1b}]0;OWNED\u{7}\u{1b}[2J".into(),
            addr: ([192, 0, 2, 1], 53317).into(),
            addr_v6: None,
            protocol: LocalSendProtocol::Https,
            how: vec!["multicast"],
            last_seen: Instant::now(),
            proven: false,
        };
        let line = device_line(&device);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("fingerprint AB\\u{1b}]0;OWNED"), "{line:?}");
        assert!(!line.contains("encryption off"), "{line:?}");
        let plain = LocalSendDevice {
            protocol: LocalSendProtocol::Http,
            ..device
        };
        assert!(
            device_line(&plain)
                .contains("  multicast  encryption off (plain HTTP)  id AB\\u{1b}]0;OWNED"),
            "{}",
            device_line(&plain)
        );
        assert!(!device_line(&plain).contains("fingerprint"));
    }
}
