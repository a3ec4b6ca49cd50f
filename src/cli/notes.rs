//! `ferry note`, `ferry listen` and `ferry chat`: the notes engine ([`crate::notes`]) on a
//! terminal.
//!
//! Every received note is printed as `[HH:MM:SS UTC] MARK ADDR: TEXT`, where MARK is
//! `[encrypted: NAME]` (sealed by the trusted device NAME) or `[not encrypted]` (a plain
//! peer: anyone on the LAN could have read or forged it). A sealed datagram that did not
//! open is never printed as text: `(refused an encrypted note from ADDR: REASON)` stands in
//! its place. Notes to a trusted device are encrypted (`--to NAME`, or its last address);
//! `--plain` sends plain text to plain peers. The identity and the trusted devices are read
//! from the config folder; one that cannot be read means plain notes only, with a warning.
//! A peer's text never drives
//! the terminal: control, bidirectional-control and line-separator characters are shown as
//! visible escapes ([`crate::protocol::escape_note`]); only its line breaks are kept, each
//! followed by an indent of [`NOTE_INDENT`], so every line of Ferry's own output (and the
//! start of every note) is flush left and a note cannot forge one. Times are UTC because the standard library has no time zones. Stdout is flushed after
//! every line, so a script or a test reading through a pipe sees each line at once.
//! Warnings and errors go to stderr. Notes that arrive faster than they can be printed wait
//! in a bounded queue ([`crate::notes`]); when it overflows, the oldest are dropped and a line
//! `(dropped N notes: arriving faster than they could be shown)` stands where they were.

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, select};

use super::{ChatArgs, ListenArgs, NoteArgs, resolve_destination};
use crate::defaults::could_name_a_host;
use crate::events::{Event, NoteEvent, Security, event_channel};
use crate::notes::{NotesConfig, NotesError, NotesHandle, Seal, resolve_peer};
use crate::protocol::{check_note, escape_line, escape_note};
use crate::secure::Keyring;

/// The identity and trusted devices in the config folder, or `None` (plain notes only) with a
/// warning when there is no such folder or it cannot be read.
fn load_keyring() -> Option<Keyring> {
    let Some(dir) = crate::secure::identity::default_config_dir() else {
        tell!(
            "ferry: warning: no config folder (neither $XDG_CONFIG_HOME nor a home folder): notes are not encrypted"
        );
        return None;
    };
    match Keyring::load(&dir) {
        Ok(keyring) => Some(keyring),
        Err(e) => {
            tell!("ferry: warning: {e}: notes are not encrypted");
            None
        }
    }
}

/// Where `--to` points and how to seal: a trusted device's name means its last address,
/// sealed to its key; a word that could name a host is `HOST[:PORT]`, sealed if it is a
/// trusted device's address (unless `plain`); any other word is refused without asking the
/// resolver (for `note`, a LocalSend device of that name is looked for next). Returns the
/// `HOST:PORT` to resolve.
fn destination(keyring: Option<&Keyring>, to: &str, plain: bool) -> anyhow::Result<(String, Seal)> {
    let device = keyring.and_then(|k| k.trust.by_name(to));
    if let Some(device) = device {
        let address = device.last_address.clone().with_context(|| {
            format!(
                "no address is known for the trusted device {}; use --to HOST:PORT",
                escape_line(to)
            )
        })?;
        let seal = match (plain, device.key()) {
            (true, _) => Seal::Plain,
            (false, Some(key)) => Seal::Device(key),
            (false, None) => anyhow::bail!(
                "the trust store holds no valid key for {}; forget and pair it again",
                escape_line(to)
            ),
        };
        return Ok((address, seal));
    }
    // `客厅` or `My Laptop` is no host: the resolver would ask the DNS server all the same.
    if !could_name_a_host(to) {
        anyhow::bail!(
            "no trusted device is named {:?} (another device takes --to HOST:PORT, which \
             `ferry peers --wait 3` shows)",
            escape_line(to)
        );
    }
    let seal = if plain { Seal::Plain } else { Seal::Auto };
    Ok((resolve_destination(to)?.to_string(), seal))
}

/// `ferry note`: send one note from a fresh ephemeral port, optionally wait for a reply.
pub fn note(args: NoteArgs) -> anyhow::Result<ExitCode> {
    let wait = args
        .wait
        .map(|secs| {
            Duration::try_from_secs_f64(secs).map_err(|_| {
                anyhow::anyhow!("--wait takes a number of seconds, 0 or more, not {secs}")
            })
        })
        .transpose()?;
    // Refuse an over-long note before touching the network.
    check_note(&args.text)?;
    let keyring = load_keyring();
    let (to, seal) = match destination(keyring.as_ref(), &args.to, args.plain) {
        Ok(found) => found,
        // Not a Ferry device nor an address: perhaps a LocalSend device of that name.
        Err(e) => return super::localsend::note_by_alias(&args, e),
    };
    let peer = resolve_peer(&to)?;
    let bind = reply_address(peer);
    let (sink, events) = event_channel(None);
    let notes = NotesHandle::start(NotesConfig::new(bind, 0).with_keyring(keyring), sink)?;
    let result = send_and_wait(&notes, (peer, seal), &args.text, wait, &events);
    // Closing the channel first frees a receive thread waiting on a full channel.
    drop(events);
    notes.stop();
    result
}

/// Where `ferry note` listens for the reply: the address the route to the peer leaves from,
/// so the port is open on that interface alone (bound to every address, anyone on another
/// network, a VPN say, could answer in the peer's place). An IPv6 link-local source needs its
/// scope, which the notes' bind address cannot carry, and without a route the send fails on
/// its own: both take the unspecified address.
fn reply_address(peer: SocketAddr) -> IpAddr {
    let any = match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    match crate::discovery::route_source(peer) {
        Some(IpAddr::V6(v6)) if v6.is_unicast_link_local() => any,
        Some(source) => source,
        None => any,
    }
}

fn send_and_wait(
    notes: &NotesHandle,
    (peer, seal): (SocketAddr, Seal),
    text: &str,
    wait: Option<Duration>,
    events: &Receiver<Event>,
) -> anyhow::Result<ExitCode> {
    let sent = notes.send_with(peer, text, seal)?;
    if let Some(warning) = sent.warning {
        tell!("ferry: warning: {warning}");
    }
    say!("sent to {} {}", sent.to, mark(&sent.security));
    let Some(wait) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    // A wait too long to represent is as good as forever.
    let deadline = Instant::now().checked_add(wait);
    loop {
        let event = match deadline {
            Some(deadline) => events.recv_deadline(deadline).ok(),
            None => events.recv().ok(),
        };
        match event {
            Some(Event::Note(NoteEvent::Received {
                from,
                text,
                at,
                security,
            })) if is_from_the_peer(from, peer) => {
                say!("{}", note_line(at, from, &text, &security));
                return Ok(ExitCode::SUCCESS);
            }
            // Anyone who guessed the port could otherwise answer in the peer's place.
            Some(Event::Note(NoteEvent::Received { from, .. })) => {
                tell!("ferry: ignored a note from {from}: not the reply of {peer}");
            }
            Some(event @ Event::Note(NoteEvent::Refused { .. })) => print_event(event),
            Some(_) => {}
            None => anyhow::bail!(
                "no reply within {} s (the note was sent to {peer})",
                wait.as_secs_f64()
            ),
        }
    }
}

/// Whether a note `from` can be the reply of `peer`: from its address (a plain peer answers
/// from any port) and, for a link-local one, over its link, which the scope names: the reply
/// port listens on every address then (see [`reply_address`]), and a device on another link
/// may use the same `fe80::` address.
fn is_from_the_peer(from: SocketAddr, peer: SocketAddr) -> bool {
    match (from, peer) {
        (SocketAddr::V6(from), SocketAddr::V6(peer)) if peer.ip().is_unicast_link_local() => {
            from.ip() == peer.ip() && from.scope_id() == peer.scope_id()
        }
        _ => from.ip() == peer.ip(),
    }
}

/// A port in use gets a hint at what to do about it.
fn port_hint(e: NotesError) -> anyhow::Error {
    match e {
        NotesError::PortInUse { .. } => anyhow::anyhow!(
            "{e} (another program, perhaps another Ferry, listens there; --port picks another)"
        ),
        e => e.into(),
    }
}

/// `ferry listen`: print every note until Ctrl-C.
pub fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let (sink, events) = event_channel(None);
    let config = NotesConfig::new(args.bind, args.port).with_keyring(load_keyring());
    let notes = NotesHandle::start(config, sink).map_err(port_hint)?;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let result = print_notes(&notes, &events, &stop_rx);
    drop(events);
    notes.stop();
    result
}

fn print_notes(
    notes: &NotesHandle,
    events: &Receiver<Event>,
    stop: &Receiver<()>,
) -> anyhow::Result<ExitCode> {
    say!("listening on {}", notes.local_addr());
    while !super::out::gone() {
        select! {
            recv(events) -> event => match event {
                Ok(event) => print_event(event),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry chat`: send each stdin line to the peer, print notes as they arrive, end at EOF.
pub fn chat(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let keyring = load_keyring();
    let (to, seal) = destination(keyring.as_ref(), &args.to, args.plain)?;
    let (sink, events) = event_channel(None);
    let config = NotesConfig::new(args.bind, args.port).with_keyring(keyring);
    let notes = NotesHandle::start(config, sink).map_err(port_hint)?;
    let result = chat_with(&notes, (&to, seal), &events);
    drop(events);
    notes.stop();
    result
}

fn chat_with(
    notes: &NotesHandle,
    (to, seal): (&str, Seal),
    events: &Receiver<Event>,
) -> anyhow::Result<ExitCode> {
    let peer = notes.resolve(to)?;
    say!("listening on {}", notes.local_addr());
    tell!("ferry: each line you type is sent to {peer}; end with Ctrl-D");
    let lines = stdin_lines()?;
    while !super::out::gone() {
        select! {
            recv(lines) -> line => match line {
                Ok(Ok(line)) if line.is_empty() => {}
                Ok(Ok(line)) => match notes.send_with(peer, &line, seal) {
                    Ok(sent) => {
                        if let Some(warning) = sent.warning {
                            tell!("ferry: warning: {warning}");
                        }
                    }
                    // One bad line (too long, a network hiccup) does not end the chat.
                    Err(e) => tell!("ferry: {e}"),
                },
                Ok(Err(e)) => return Err(e).context("cannot read stdin"),
                Err(_) => return Ok(ExitCode::SUCCESS),
            },
            recv(events) -> event => match event {
                Ok(event) => print_event(event),
                Err(_) => return Ok(ExitCode::SUCCESS),
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads stdin on a thread of its own, one line per message, without the line ending.
/// Invalid UTF-8 is replaced, like a received note. The channel closes at end of input.
/// The thread is not joined: it may be blocked in a read when the chat ends.
fn stdin_lines() -> anyhow::Result<Receiver<io::Result<String>>> {
    let (tx, rx) = crossbeam_channel::bounded(16);
    thread::Builder::new()
        .name("ferry-chat-stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let line = match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) => return,
                    Ok(_) => {
                        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        Ok(String::from_utf8_lossy(line).into_owned())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = line.is_err();
                if tx.send(line).is_err() || failed {
                    return;
                }
            }
        })
        .context("cannot start the stdin thread")?;
    Ok(rx)
}

/// Prints a note event's line (through [`super::out`], like every line of the CLI: `listen`
/// and `chat` end, as `serve` does, once stdout's reader has gone).
fn print_event(event: Event) {
    match event {
        Event::Note(NoteEvent::Received {
            from,
            text,
            at,
            security,
        }) => say!("{}", note_line(at, from, &text, &security)),
        Event::Note(NoteEvent::Refused { from, reason, .. }) => say!(
            "(refused an encrypted note from {from}: {})",
            escape_line(&reason)
        ),
        Event::Note(NoteEvent::Dropped { count }) => say!("{}", dropped_line(count)),
        Event::Note(_)
        | Event::Transfer(_)
        | Event::Server(_)
        | Event::Discovery(_)
        | Event::Keyring(_)
        | Event::Speed { .. } => {}
    }
}

/// What continues a note's line after a line break.
pub const NOTE_INDENT: &str = "    ";

/// `[HH:MM:SS UTC] MARK ADDR: TEXT`, each further line of TEXT indented by [`NOTE_INDENT`].
fn note_line(at: SystemTime, from: SocketAddr, text: &str, security: &Security) -> String {
    format!(
        "[{} UTC] {} {from}: {}",
        utc_time_of_day(at),
        mark(security),
        escape_note(text, NOTE_INDENT)
    )
}

/// `[encrypted: NAME]` (the device name escaped like any peer text) or `[not encrypted]`.
fn mark(security: &Security) -> String {
    match security {
        Security::Encrypted { device, .. } => format!("[encrypted: {}]", escape_line(device)),
        Security::Plain => "[not encrypted]".to_owned(),
        Security::LocalSend { alias, .. } => format!("[LocalSend: {}]", escape_line(alias)),
    }
}

/// Said where notes were lost to a flood, before the ones that were kept.
fn dropped_line(count: u64) -> String {
    format!("(dropped {count} notes: arriving faster than they could be shown)")
}

/// `HH:MM:SS` of `at` in UTC (`00:00:00` for times before 1970).
fn utc_time_of_day(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(3 * 86_400 + 13 * 3_600 + 4 * 60 + 5);
        assert_eq!(utc_time_of_day(at), "13:04:05");
        assert_eq!(utc_time_of_day(SystemTime::UNIX_EPOCH), "00:00:00");
        assert_eq!(
            utc_time_of_day(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            "00:00:00"
        );
    }

    #[test]
    fn note_line_has_time_sender_and_text() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(59);
        let from: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        assert_eq!(
            note_line(at, from, "hi\nthere\u{1b}[2J", &Security::Plain),
            "[00:00:59 UTC] [not encrypted] 192.0.2.9:40000: hi\n    there\\u{1b}[2J"
        );
        let sealed = Security::Encrypted {
            device: "desk\u{1b}[2J".into(),
            fingerprint: "a b c d e f".into(),
            trusted: true,
        };
        assert_eq!(
            note_line(at, from, "hi", &sealed),
            "[00:00:59 UTC] [encrypted: desk\\u{1b}[2J] 192.0.2.9:40000: hi"
        );
    }
}
