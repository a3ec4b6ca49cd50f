//! The engine thread behind the window: it owns the server, the notes socket and the upload
//! threads, and turns [`Command`]s into work. The UI only ever sends a command (never
//! blocking) and reads events; everything that touches the network or the disk is here.
//!
//! The engine itself only dispatches: anything that may wait (an upload, a host-name lookup,
//! opening a folder) runs on a thread of its own, so a Cancel is handled at once whatever
//! else is slow. Work that cannot be started is reported as failed, never left "active".

use std::io;
use std::path::PathBuf;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::Seams;
pub use super::command::Command;
use super::discovery::{self, DiscoverySetup, Running};
use super::keyring::{self, Watch};
use super::localsend::{LocalSendSide, Sending};
use crate::events::{CancelToken, Event, EventSink, NoteEvent, ServerEvent, TransferId};
use crate::notes::{NotesConfig, NotesHandle};
use crate::secure::Keyring;
use crate::transfer::{Decision, OutgoingItem, SendOptions, ServerConfig, ServerHandle};
use notes::{Looked, PendingNote};

mod notes;

/// How often the device list is looked at (and sent to the window when it changed).
const DEVICES_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Commands waiting for the engine; the UI never waits for room.
const COMMAND_CAPACITY: usize = 256;

/// The handle the window owns. Dropping it closes the command channel, which makes the engine
/// cancel uploads, stop the server and the notes socket, and join every thread.
pub struct Worker {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// An engine whose device identity and trusted devices are in the default config folder.
    pub fn spawn(sink: EventSink) -> io::Result<Self> {
        Self::spawn_in(sink, crate::secure::identity::default_config_dir())
    }

    /// An engine whose device identity and trusted devices are in `config_dir` (`None`: no
    /// identity, plain notes only).
    pub fn spawn_in(sink: EventSink, config_dir: Option<PathBuf>) -> io::Result<Self> {
        Self::spawn_full(sink, Seams::system(), config_dir)
    }

    #[cfg(test)]
    pub(crate) fn spawn_with(sink: EventSink, seams: Seams) -> io::Result<Self> {
        Self::spawn_full(sink, seams, None)
    }

    fn spawn_full(sink: EventSink, seams: Seams, config_dir: Option<PathBuf>) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(COMMAND_CAPACITY);
        let thread = thread::Builder::new()
            .name("ferry-engine".into())
            .spawn(move || run(&rx, sink, seams, config_dir))?;
        Ok(Self {
            commands: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a command without blocking.
    pub fn send(&self, command: Command) {
        let Some(tx) = &self.commands else { return };
        match tx.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                log::error!("engine is not keeping up; dropped {command:?}")
            }
            Err(TrySendError::Disconnected(_)) => log::error!("engine thread has stopped"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An upload on its way (Ferry's or LocalSend's): Cancel finds it by its files' ids.
pub(super) struct Upload {
    pub(super) ids: Vec<TransferId>,
    pub(super) cancel: CancelToken,
    pub(super) thread: JoinHandle<()>,
}

struct Engine {
    sink: EventSink,
    seams: Seams,
    server: Option<ServerHandle>,
    notes: Option<NotesHandle>,
    uploads: Vec<Upload>,
    /// The lookup thread's queue, once started. One thread, so notes to host names leave in
    /// the order they were written; it is not joined (a hung lookup must not hold up a stop).
    lookups: Option<Sender<PendingNote>>,
    looked: Sender<Looked>,
    /// What discovery runs with, when on.
    discovery_setup: Option<DiscoverySetup>,
    discovery: Option<Running>,
    /// Where the device identity and trusted devices are kept, and (once loaded) them.
    config_dir: Option<PathBuf>,
    keyring: Option<Keyring>,
    /// Why the keyring could not be loaded.
    keyring_error: Option<String>,
    /// What the window was last told about the keyring and the pairing code.
    watch: Watch,
    /// What the running server was started with (a rename restarts it with the new name).
    server_config: Option<ServerConfig>,
    /// LocalSend receiving beside the server, LocalSend devices, sends to them.
    localsend: LocalSendSide,
}

fn run(commands: &Receiver<Command>, sink: EventSink, seams: Seams, config_dir: Option<PathBuf>) {
    let (looked, looked_rx) = crossbeam_channel::unbounded();
    let mut engine = Engine {
        sink,
        seams,
        server: None,
        notes: None,
        uploads: Vec::new(),
        lookups: None,
        looked,
        discovery_setup: None,
        discovery: None,
        config_dir,
        keyring: None,
        keyring_error: None,
        watch: Watch::default(),
        server_config: None,
        localsend: LocalSendSide::default(),
    };
    let poll = crossbeam_channel::tick(DEVICES_POLL);
    loop {
        crossbeam_channel::select! {
            recv(commands) -> command => match command {
                Ok(command) => engine.handle(command),
                Err(_) => break,
            },
            // Never disconnected: the engine holds a sender.
            recv(looked_rx) -> looked => {
                if let Ok(looked) = looked {
                    engine.finish_note(looked);
                }
            }
            recv(poll) -> _ => {
                if let Some(running) = &mut engine.discovery {
                    running.poll(&engine.sink);
                }
                engine.localsend.poll(&engine.sink);
                let keyring = engine.keyring.as_ref();
                let trust_changed = engine.watch.poll(keyring, engine.server.as_ref(), &engine.sink);
                if let (true, Some(running)) = (trust_changed, &engine.discovery) {
                    running.trust_changed();
                }
            }
        }
        engine.uploads.retain(|u| !u.thread.is_finished());
    }
    engine.shutdown();
}

impl Engine {
    fn handle(&mut self, command: Command) {
        match command {
            Command::StartServer(config) => self.start_server(*config),
            Command::StopServer => {
                self.watch.stop_pairing(self.server.as_ref(), &self.sink);
                self.stop_discovery();
                self.localsend.stop(&self.sink);
                if let Some(server) = self.server.take() {
                    server.stop();
                }
            }
            Command::SetLocalSend(setup) => {
                let alias = self.alias();
                let ferry = self.server.as_ref().and(self.server_config.as_ref());
                self.localsend
                    .set(setup, ferry, &alias, &self.sink, &self.seams);
            }
            Command::SendLocalSend {
                to,
                batch,
                pin,
                unencrypted,
            } => {
                let alias = self.alias();
                let how = Sending { pin, unencrypted };
                let started =
                    self.localsend
                        .send_files(to, batch, how, &alias, &self.sink, &self.seams);
                self.uploads.extend(started);
            }
            Command::SendLocalSendText {
                to,
                text,
                pin,
                unencrypted,
            } => {
                let alias = self.alias();
                let how = Sending { pin, unencrypted };
                self.localsend
                    .send_text(to, text, how, &alias, &self.sink, &self.seams);
            }
            Command::SetDiscovery(setup) => {
                self.stop_discovery();
                self.discovery_setup = setup;
                self.start_discovery();
            }
            Command::RefreshDevices => {
                if let Some(running) = &self.discovery {
                    running.refresh();
                }
                let alias = self.alias();
                self.localsend.announce();
                self.localsend.probe(&alias, &self.seams);
                self.localsend.sweep();
            }
            Command::CheckAddress(target) => self.check_address(target),
            Command::ShowKeyring => match self.keyring() {
                Some(keyring) => self.watch.show_all(&keyring, &self.sink),
                None => self.keyring_failed(),
            },
            Command::RenameDevice(name) => self.rename_device(&name),
            Command::RenameTrusted { old, new } => {
                self.change_trust(|keyring| keyring::rename_trusted(keyring, &old, &new))
            }
            Command::ForgetTrusted(name) => {
                self.change_trust(|keyring| keyring::forget(keyring, &name))
            }
            Command::StartPairing => self.watch.start_pairing(self.server.as_ref(), &self.sink),
            Command::StopPairing => self.watch.stop_pairing(self.server.as_ref(), &self.sink),
            Command::Send { opts, files } => {
                let items = files.into_iter().map(OutgoingItem::File).collect();
                self.start_upload(*opts, items)
            }
            Command::SendItems { opts, items } => self.start_upload(*opts, items),
            Command::TestSpeed(opts) => {
                let mut opts = *opts;
                if opts.keyring.is_none() && opts.mode == crate::protocol::Mode::Ferry {
                    opts.keyring = self.keyring();
                }
                super::speed::start(&self.seams, &self.sink, opts);
            }
            Command::Cancel(id) => {
                let mut outgoing = false;
                for upload in self.uploads.iter().filter(|u| u.ids.contains(&id)) {
                    upload.cancel.cancel();
                    outgoing = true;
                }
                if let (false, Some(server)) = (outgoing, &self.server) {
                    server.cancel(id);
                }
                if !outgoing {
                    self.localsend.cancel(id);
                }
            }
            Command::Decide { offer_id, accept } => {
                if let Some(server) = &self.server {
                    server.decide(offer_id, accept);
                }
                // Offer ids are process-unique: the server that did not ask ignores it.
                let decision = if accept {
                    Decision::Accept
                } else {
                    Decision::Decline
                };
                self.localsend.answer(offer_id, decision);
            }
            Command::Answer { offer_id, decision } => {
                if let Some(server) = &self.server {
                    server.answer(offer_id, decision);
                }
                self.localsend.answer(offer_id, decision);
            }
            Command::SetPolicy(policy) => {
                if let Some(config) = &mut self.server_config {
                    config.policy = policy;
                }
                if let Some(server) = &self.server {
                    server.set_policy(policy);
                }
                self.localsend.set_policy(policy);
            }
            Command::StartNotes(config) => self.start_notes(config),
            Command::SendNote { to, text, key } => self.send_note(to, text, key),
            Command::OpenFolder(dir) => {
                // xdg-open may take a while; never hold up the engine for it.
                let spawned = (self.seams.spawner)(
                    "ferry-open",
                    Box::new(move || {
                        if let Err(e) = opener::open(&dir) {
                            log::warn!("cannot open {}: {e}", dir.display());
                        }
                    }),
                );
                if let Err(e) = spawned {
                    log::warn!("cannot start a thread to open a folder: {e}");
                }
            }
        }
    }

    /// Starts discovery if it is on and the server listens (and is not running yet).
    fn start_discovery(&mut self) {
        if self.discovery.is_some() {
            return;
        }
        match (&self.discovery_setup, &self.server) {
            (Some(setup), Some(server)) => {
                let notes_port = self.notes.as_ref().map_or(0, |n| n.local_addr().port());
                self.discovery =
                    discovery::start(setup, server.local_addr(), notes_port, &self.sink);
            }
            _ => discovery::off(&self.sink, None),
        }
    }

    fn stop_discovery(&mut self) {
        if let Some(running) = self.discovery.take() {
            running.stop();
            discovery::off(&self.sink, None);
        }
    }

    /// The check connects with a timeout: on a thread of its own, never on the engine's.
    fn check_address(&self, target: String) {
        let choice = self.discovery.as_ref().map(Running::choice);
        discovery::spawn_check(&self.seams, &self.sink, choice.unwrap_or_default(), target);
    }

    fn start_server(&mut self, mut config: ServerConfig) {
        if config.keyring.is_none() {
            config.keyring = self.keyring();
        }
        self.watch.stop_pairing(self.server.as_ref(), &self.sink);
        self.stop_discovery();
        self.localsend.stop(&self.sink);
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Err(e) = std::fs::create_dir_all(&config.dir) {
            let reason = format!(
                "cannot create the download folder {}: {e}",
                config.dir.display()
            );
            self.sink
                .emit(Event::Server(ServerEvent::StartFailed { reason }));
            return;
        }
        let bind = config.bind;
        self.server_config = Some(config.clone());
        match ServerHandle::start(config.clone(), self.sink.clone()) {
            Ok(server) => {
                let port = server.local_addr().port();
                self.sink.emit(Event::Server(ServerEvent::Reachable {
                    addrs: discovery::reachable_addrs(bind, port),
                }));
                self.server = Some(server);
                self.start_discovery();
                let alias = self.alias();
                self.localsend
                    .start(&config, &alias, &self.sink, &self.seams);
            }
            Err(e) => self.sink.emit(Event::Server(ServerEvent::StartFailed {
                reason: e.to_string(),
            })),
        }
    }

    /// Uploads on a thread of their own, which also looks the receiver up and connects.
    fn start_upload(&mut self, mut opts: SendOptions, items: Vec<OutgoingItem>) {
        if opts.keyring.is_none() && opts.mode == crate::protocol::Mode::Ferry {
            opts.keyring = self.keyring();
        }
        // A receiver that comes to trust this device saves it where this window receives.
        if opts.serves_on.is_none() {
            opts.serves_on = self.server.as_ref().map(|s| s.local_addr().port());
        }
        if let Some(upload) = super::upload::start(&self.seams, &self.sink, opts, items) {
            self.uploads.push(upload);
        }
    }

    /// The device identity and trusted devices, loaded (created on first use) once; a folder
    /// that cannot be read means plain notes only, with a warning.
    fn keyring(&mut self) -> Option<Keyring> {
        if self.keyring.is_none()
            && let Some(dir) = self.config_dir.take()
        {
            match Keyring::load(&dir) {
                Ok(keyring) => self.keyring = Some(keyring),
                Err(e) => {
                    log::warn!("notes will not be encrypted: {e}");
                    self.keyring_error = Some(e.to_string());
                }
            }
        }
        self.keyring.clone()
    }

    /// The name LocalSend devices see: this device's name.
    fn alias(&mut self) -> String {
        self.keyring()
            .map(|k| k.identity.name().to_owned())
            .unwrap_or_else(crate::secure::identity::default_device_name)
    }

    fn keyring_failed(&self) {
        let reason = self
            .keyring_error
            .as_deref()
            .unwrap_or("no config folder for the identity");
        keyring::error(&self.sink, reason.to_owned());
    }

    /// Renames this device. Uploads use the new name at once; a listening server is started
    /// again on its port with it (transfers in progress are interrupted), and so is discovery,
    /// which announces it.
    fn rename_device(&mut self, name: &str) {
        let Some(current) = self.keyring() else {
            return self.keyring_failed();
        };
        match keyring::rename_self(&current, current.trust.dir(), name) {
            Ok(renamed) => {
                self.watch.show_all(&renamed, &self.sink);
                self.keyring = Some(renamed.clone());
                match (&self.server, self.server_config.clone()) {
                    (Some(server), Some(mut config)) => {
                        config.port = server.local_addr().port();
                        config.keyring = Some(renamed);
                        self.start_server(config);
                    }
                    _ => {
                        self.stop_discovery();
                        self.start_discovery();
                    }
                }
            }
            Err(reason) => keyring::error(&self.sink, reason),
        }
    }

    /// Changes the trusted devices; the window gets the new list at once (or why not).
    fn change_trust(&mut self, change: impl FnOnce(&Keyring) -> Result<(), String>) {
        let Some(keyring) = self.keyring() else {
            return self.keyring_failed();
        };
        if let Err(reason) = change(&keyring) {
            keyring::error(&self.sink, reason);
        }
        self.watch
            .poll(Some(&keyring), self.server.as_ref(), &self.sink);
    }

    fn start_notes(&mut self, mut config: NotesConfig) {
        // Release the old port first, so re-listening on the same port works.
        drop(self.notes.take());
        if config.keyring.is_none() {
            config.keyring = self.keyring();
        }
        match NotesHandle::start(config, self.sink.clone()) {
            Ok(notes) => {
                self.sink.emit(Event::Note(NoteEvent::Listening {
                    addr: notes.local_addr(),
                }));
                self.notes = Some(notes);
                // Announced with the new notes port from now on.
                if self.discovery.is_some() {
                    self.stop_discovery();
                    self.start_discovery();
                }
            }
            Err(e) => self.sink.emit(Event::Note(NoteEvent::Error {
                reason: e.to_string(),
            })),
        }
    }

    fn shutdown(&mut self) {
        if let Some(running) = self.discovery.take() {
            running.stop();
        }
        for upload in &self.uploads {
            upload.cancel.cancel();
        }
        for upload in self.uploads.drain(..) {
            let _ = upload.thread.join();
        }
        self.localsend.stop(&self.sink);
        if let Some(server) = self.server.take() {
            server.stop();
        }
        drop(self.notes.take());
    }
}
