//! `ferry serve` and `ferry send`: progress bars on stderr, one result line per file on stdout.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;

use super::ask::{AskPrompts, Reply, security_words};
use super::bars::Bars;
use super::{SendArgs, ServeArgs};
use crate::defaults::default_download_dir;
use crate::events::{CancelToken, Event, ServerEvent, event_channel};
use crate::protocol::Mode;
use crate::protocol::escape_line;
use crate::secure::Keyring;
use crate::secure::identity::default_config_dir;
use crate::secure::pairing::{CODE_LIFETIME, PairingCode};
use crate::transfer::{
    AcceptPolicy, Decision, FileOutcome, OutgoingFile, OutgoingItem, SendOptions, ServerConfig,
    ServerHandle, ServerStartError, send_items, walk_folder,
};

/// This device's identity and trusted devices from the config folder, or `None` with a
/// warning (then nothing is encrypted, and plain transfers work as ever).
pub(super) fn keyring() -> Option<Keyring> {
    let Some(dir) = default_config_dir() else {
        tell!(
            "ferry: no config folder (neither $XDG_CONFIG_HOME nor a home folder): encryption is off"
        );
        return None;
    };
    match Keyring::load(&dir) {
        Ok(keyring) => Some(keyring),
        Err(e) => {
            tell!("ferry: {}: encryption is off", escape_line(&e.to_string()));
            None
        }
    }
}

/// What `ferry serve` says about whose files it takes.
fn policy_line(policy: AcceptPolicy, require_encryption: bool) -> String {
    let mut line = match policy {
        AcceptPolicy::Everyone => {
            "accepting uploads from everyone without asking, like the original (--ask asks first, --trusted-only takes only trusted devices)"
        }
        AcceptPolicy::Ask => "asking before accepting each upload; plain senders are refused",
        AcceptPolicy::Trusted => {
            "accepting trusted devices without asking, asking about other Ferry devices; plain senders are refused"
        }
        AcceptPolicy::TrustedOnly => {
            "accepting only trusted devices (ferry serve --pair pairs one); everything else is refused"
        }
    }
    .to_owned();
    if require_encryption {
        line.push_str("; encryption required: plain senders are refused");
    }
    line
}

/// `--name` as every face of this server gives it (the LAN announcement, LocalSend, the
/// handshake): trimmed and cut to a device name's length once, here, so that no peer sees a
/// name the others do not; a name that is only blanks is refused rather than announced.
fn serve_name(name: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(name) = name else {
        return Ok(None);
    };
    let clipped = crate::secure::identity::clip_name(&name);
    anyhow::ensure!(
        !clipped.is_empty(),
        "--name needs a name (it was {:?}); leave it out to use the device name",
        escape_line(&name)
    );
    Ok(Some(clipped))
}

pub fn serve(mut args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.name = serve_name(args.name.take())?;
    let defaulted = args.dir.is_none();
    let asked = args.dir.clone().unwrap_or_else(default_download_dir);
    let dir = prepare_download_dir(&asked)?;
    let mut config = ServerConfig::new(args.bind, args.port, dir.clone());
    config.max_connections = args.max_connections.max(1);
    config.idle_timeout = Duration::from_secs(args.idle_timeout_secs.max(1));
    config.policy = match (args.ask, args.trusted_only) {
        (false, false) => AcceptPolicy::Everyone,
        (true, false) => AcceptPolicy::Ask,
        (false, true) => AcceptPolicy::TrustedOnly,
        (true, true) => AcceptPolicy::Trusted,
    };
    config.require_encryption = args.require_encryption;
    config.keyring = keyring().map(|mut keyring| {
        // --name is this server's name everywhere: on the LAN, to LocalSend, and in the
        // handshake, so a sender's rows name it as its device list does.
        if let Some(name) = &args.name {
            keyring.identity = std::sync::Arc::new(keyring.identity.called(name));
        }
        keyring
    });
    let keyring = config.keyring.clone();
    let policy = config.policy;
    config.max_per_peer = args.max_per_peer.max(1);
    config.max_files_per_connection = args.max_files_per_connection.max(1);
    config.partial_max_age =
        Duration::from_secs(args.partial_max_age_days.saturating_mul(24 * 3600));
    config.fsync = !args.no_fsync;
    config.direct_io = !args.no_direct_io;

    let (sink, events) = event_channel(None);
    let server = ServerHandle::start(config, sink.clone()).map_err(|e| match e {
        ServerStartError::PortInUse { .. } => anyhow::anyhow!(
            "{e} (another program, perhaps another Ferry, listens there; --port picks another)"
        ),
        e => e.into(),
    })?;
    // Ctrl-C and SIGTERM stop the server cleanly: unfinished plain uploads leave nothing,
    // interrupted Ferry uploads keep their .part so that sending again resumes
    // (tests/it/paths.rs, ctrl_c_on_serve_mid_upload_keeps_the_partial_and_sending_again_resumes).
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    // The first line says where files go, so nobody is surprised by the default folder.
    say!(
        "Ferry listening on {} (TCP), saving to {}{}",
        server.local_addr(),
        dir.display(),
        if defaulted {
            " (the default folder; --dir picks another)"
        } else {
            ""
        }
    );
    match &keyring {
        Some(keyring) => say!(
            "this device: \"{}\", fingerprint {}",
            escape_line(keyring.identity.name()),
            keyring.identity.fingerprint()
        ),
        None => say!("no device identity: Ferry senders cannot encrypt to this server"),
    }
    say!("{}", policy_line(policy, args.require_encryption));
    if args.pair {
        let lasts = args
            .pair_secs
            .map_or(CODE_LIFETIME, |secs| Duration::from_secs(secs.min(600)));
        let code = server
            .start_pairing_for(lasts)
            .context("cannot make a pairing code")?;
        say!("pairing code: {}", code.as_str());
        say!("  (type it on the sender: ferry send --code CODE; it lasts 10 minutes and 3 tries)");
    }
    // Announced after the first line, so scripts reading that line are unaffected; dropped
    // (with a goodbye on the LAN) when serving stops.
    let discovery = (!args.no_discovery).then(|| {
        super::discover::announce(
            args.name.as_deref(),
            server.local_addr(),
            args.interfaces.choice(),
        )
    });
    // LocalSend apps send into the same folder under the same policy; their offers are
    // asked about in the same prompts (an answer goes to whichever server asked).
    let localsend = super::localsend::start(&args, &dir, policy, sink.clone());
    let mut bars = Bars::new();
    // With --ask, answers come from stdin; each names the offer it decides.
    let mut answers = if args.ask {
        stdin_lines()?
    } else {
        crossbeam_channel::never()
    };
    // Set when stdin ended: nobody can answer any more, so offers are declined at once.
    let mut answers_closed = false;
    let mut prompts = AskPrompts::default();
    let mut pairing = super::pairing::PairingWatch::new(&server);
    let expiry = pairing.expiry();
    // Until Ctrl-C, or until stdout's reader goes away (`ferry serve | head`): then, as a
    // program killed by SIGPIPE would, it stops (but cleanly).
    while !super::out::gone() {
        crossbeam_channel::select! {
            recv(events) -> event => match event {
                Ok(Event::Server(ServerEvent::OfferPending(offer))) => {
                    let offer_id = offer.offer_id;
                    let prompt = prompts.offer(&offer);
                    if answers_closed {
                        let _declined_below = prompts.close(offer_id);
                        bars.line(format!("{prompt}\ndeclined offer {offer_id}: nobody can answer (standard input is closed)"));
                        server.decide(offer_id, false);
                        if let Some(localsend) = &localsend {
                            localsend.answer(offer_id, Decision::Decline);
                        }
                    } else {
                        bars.line(prompt);
                    }
                }
                Ok(Event::Server(ServerEvent::OfferClosed { offer_id })) => {
                    // Closed while still waiting for an answer here: say so, or the prompt
                    // above would seem to wait still.
                    if let Some(peer) = prompts.close(offer_id) {
                        bars.line(format!(
                            "offer {offer_id} from {peer} closed before it was answered: the sender left, or it waited too long"
                        ));
                    }
                }
                // A LocalSend text message (the peer's text, escaped).
                Ok(Event::Note(crate::events::NoteEvent::Received { from, text, security, .. })) => {
                    bars.line(format!("note from {from} ({}): {}", security_words(&security), escape_line(&text)));
                }
                Ok(event) => {
                    bars.show(&event);
                    match event {
                        Event::Server(ServerEvent::Paired { .. }) => pairing.paired(),
                        Event::Server(ServerEvent::ConnectionError { .. }) => {
                            if let Some(line) = pairing.after_failure(&server) {
                                bars.line(line);
                            }
                        }
                        _ => {}
                    }
                }
                Err(_) => break,
            },
            recv(answers) -> line => match line {
                Ok(line) => match prompts.reply(&line) {
                    Reply::Decide { offer_id, decision } => {
                        server.answer(offer_id, decision);
                        if let Some(localsend) = &localsend {
                            localsend.answer(offer_id, decision);
                        }
                        let verb = match decision {
                            Decision::Accept => "accepted",
                            Decision::AcceptAndTrust => "accepted (device trusted from now on)",
                            Decision::Decline => "declined",
                        };
                        bars.line(format!("{verb} offer {offer_id}"));
                    }
                    Reply::Say(text) if text.is_empty() => {}
                    Reply::Say(text) => bars.line(text),
                },
                Err(_) => {
                    log::warn!("standard input closed: declining offers from now on");
                    for offer_id in prompts.drain() {
                        server.decide(offer_id, false);
                        if let Some(localsend) = &localsend {
                            localsend.answer(offer_id, Decision::Decline);
                        }
                    }
                    answers_closed = true;
                    answers = crossbeam_channel::never();
                }
            },
            recv(expiry) -> _ => {
                if let Some(line) = pairing.after_failure(&server) {
                    bars.line(line);
                }
            }
            recv(stop_rx) -> _ => break,
        }
    }
    say!("stopping");
    drop(discovery);
    drop(localsend);
    drop(events);
    server.stop();
    Ok(ExitCode::SUCCESS)
}

/// Creates the download folder if missing and checks, before listening, that files can be
/// written there: a sender should never be accepted into a folder that fails every file.
fn prepare_download_dir(asked: &Path) -> anyhow::Result<PathBuf> {
    let shown = asked.display();
    if asked.exists() && !asked.is_dir() {
        anyhow::bail!("the download folder {shown} is a file, not a folder; --dir picks another");
    }
    std::fs::create_dir_all(asked)
        .with_context(|| format!("cannot create the download folder {shown}"))?;
    let dir = asked
        .canonicalize()
        .with_context(|| format!("cannot open the download folder {shown}"))?;
    // A probe file, removed at once: the only sure test of "can write here" (permissions,
    // read-only mounts, ACLs all show up). Its name is one no received file can take.
    let probe = dir.join(format!(".ferry-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(dir)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot write to the download folder {}: {e}; --dir picks another",
            dir.display()
        )),
    }
}

/// Lines typed on stdin, read on a thread of their own; the channel closes at end of input.
fn stdin_lines() -> anyhow::Result<crossbeam_channel::Receiver<String>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::Builder::new()
        .name("ferry-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the stdin thread")?;
    Ok(rx)
}

pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be checked here is checked before connecting: a missing file is
    // reported as such, not as whatever the network says.
    let unsendable: Vec<String> = args
        .files
        .iter()
        .filter_map(|path| {
            local_file_problem(path).map(|problem| {
                format!(
                    "cannot send {}: {problem}",
                    escape_line(&path.display().to_string())
                )
            })
        })
        .collect();
    if !unsendable.is_empty() {
        for line in &unsendable {
            tell!("ferry: {line}");
        }
        tell!("ferry: nothing was sent");
        return Ok(ExitCode::FAILURE);
    }
    // A name no trusted device has may be a LocalSend device's: look for one at the same
    // time as for a Ferry device, so a name that is neither costs one wait, not two.
    let mut localsend = None;
    let choice = args.localsend.interfaces.choice();
    let looked_up = super::destination::destination_or_device_then(&args.to, &choice, |trusted| {
        if !trusted && !args.plain && args.code.is_none() {
            localsend = Some(super::localsend::Lookup::start_for(&args.localsend));
        }
    });
    let (to, expect_key) = match looked_up {
        Ok(found) => {
            // A Ferry device (or an address): stop looking for LocalSend ones.
            drop(localsend);
            found
        }
        // Not a Ferry device nor an address: perhaps a LocalSend device of that name.
        Err(e) => return super::localsend::send_by_alias(args, e, localsend),
    };
    let mut opts = SendOptions::new(to);
    opts.msg = args.msg;
    opts.mode = if args.plain { Mode::Plain } else { Mode::Ferry };
    if !args.plain {
        opts.keyring = if args.no_encryption { None } else { keyring() };
        opts.expect_key = expect_key;
        opts.code = args
            .code
            .as_deref()
            .map(PairingCode::parse)
            .transpose()
            .context("--code")?;
        if opts.code.is_some() && opts.keyring.is_none() {
            anyhow::bail!("cannot pair: this device has no identity (see the warning above)");
        }
    } else if args.code.is_some() {
        anyhow::bail!("--code pairs two Ferry devices; a --plain send cannot pair");
    }
    let (sink, events) = event_channel(None);
    let cancel = CancelToken::new();
    let plain = args.plain && !args.flatten;
    let (items, shown) = read_items(args.files, |folder| {
        if plain {
            anyhow::bail!(
                "{} is a folder, and plain receivers have no folders: add --flatten to send its \
                 files with their relative paths as names, or send without --plain",
                escape_line(&folder.display().to_string())
            );
        }
        Ok(())
    })?;
    opts.flatten = args.flatten;
    run_send("ferry-send", &events, &shown, move || {
        send_items(&opts, &items, &sink, &cancel)
    })
}

/// The files and folders named on the command line, folders walked (what a folder leaves out
/// is said on stdout, so a script sees it too), and per file to send the name its result line
/// gives it: as typed, a folder's file as the typed folder joined with its path in the folder,
/// made safe for a terminal (a local name can hold control characters: a process that can
/// write into a folder being sent must not drive the sender's terminal). `check_folder` may
/// refuse a folder before it is walked.
pub(super) fn read_items(
    paths: Vec<PathBuf>,
    check_folder: impl Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<OutgoingItem>, Vec<String>)> {
    let shown = |path: &Path| escape_line(&path.display().to_string()).into_owned();
    let mut items = Vec::new();
    let mut names = Vec::new();
    for path in paths {
        if !path.is_dir() {
            names.push(shown(&path));
            items.push(OutgoingItem::File(OutgoingFile::new(path)));
            continue;
        }
        check_folder(&path)?;
        let folder = walk_folder(&path)
            .with_context(|| format!("cannot read the folder {}", shown(&path)))?;
        for skipped in &folder.skipped {
            say!(
                "{}: skipped (a symlink leading out of the folder, or not a regular file)",
                shown(&path.join(skipped))
            );
        }
        for (index, file) in &folder.files {
            let inside = usize::try_from(*index)
                .ok()
                .and_then(|i| folder.entries.get(i))
                .map(|entry| path.join(&entry.path));
            names.push(shown(inside.as_deref().unwrap_or(&file.path)));
        }
        items.push(OutgoingItem::Folder(folder));
    }
    Ok((items, names))
}

/// Runs a send on a thread named `name` while its events draw one progress bar per file
/// (until the thread drops its sink), then prints one result line per file (`shown`: the
/// files' names from [`read_items`]): exit 0 only if every file succeeded.
pub(super) fn run_send<E>(
    name: &str,
    events: &crossbeam_channel::Receiver<Event>,
    shown: &[String],
    send: impl FnOnce() -> Result<Vec<FileOutcome>, E> + Send + 'static,
) -> anyhow::Result<ExitCode>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let worker = thread::Builder::new()
        .name(name.into())
        .spawn(send)
        .context("cannot start the sending thread")?;
    let mut bars = Bars::new();
    // The channel closes when the worker drops its sink, i.e. when it is done.
    for event in events {
        bars.show(&event);
    }
    let outcomes = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the sending thread panicked"))??;
    let mut all_ok = true;
    for (name, outcome) in shown.iter().zip(&outcomes) {
        // The outcome may quote the receiver's words: never let them drive the terminal.
        say!("{name}: {}", escape_line(&outcome.to_string()));
        all_ok &= outcome.is_success();
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Why a file named on the command line cannot be sent, in a user's words; `None` when it
/// is a regular file that opens for reading. (It may still change before it is sent: the
/// engine checks again and reports that per file.)
fn local_file_problem(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some("no such file".into()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Some("permission denied (a folder on its path cannot be entered)".into());
        }
        Err(e) => return Some(e.to_string()),
    };
    if meta.is_dir() {
        // Walked (and checked file by file) when it is sent.
        return None;
    }
    if !meta.is_file() {
        return Some("not a regular file".into());
    }
    match File::open(path) {
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Some("permission denied (it cannot be read)".into())
        }
        Err(e) => Some(format!("cannot read it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::serve_name;

    #[test]
    fn serve_name_is_trimmed_and_cut_once_for_every_face_and_blank_is_refused() {
        assert_eq!(serve_name(None).unwrap(), None);
        assert_eq!(
            serve_name(Some("  客厅的电脑 \t".into()))
                .unwrap()
                .as_deref(),
            Some("客厅的电脑")
        );
        let long = "名".repeat(200);
        let cut = serve_name(Some(long.clone())).unwrap().unwrap();
        assert!(cut.len() < long.len() && long.starts_with(&cut), "{cut}");
        assert!(serve_name(Some(" \t ".into())).is_err());
        assert!(serve_name(Some(String::new())).is_err());
    }
}
