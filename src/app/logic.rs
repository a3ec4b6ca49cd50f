//! The window's logic, apart from its drawing ([`super::ui`]): applying the engine's events
//! and the helper threads' results to the state, and carrying out the [`Action`]s the panels
//! return. Nothing here draws, so it reads as the app's state machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::batch::{EVENTS_PER_FRAME, frame_batch};
use super::file_browser::{BrowseFor, Chosen};
use super::folder_rows::{self, folder_root};
use super::i18n::{T, Tr};
use super::{Action, FerryApp, ServerStatus, Tab, TransferRow, display};
use crate::events::{
    Direction, DiscoveryEvent, Event, KeyringEvent, NoteEvent, ServerEvent, TransferEvent,
    TransferId,
};
use crate::localsend::LocalSendBatch;
use crate::protocol::escape_line;
use crate::transfer::{OutgoingFolder, OutgoingItem, walk_folder};
use crate::worker::{Command, LocalSendSetup};

/// How much of a note a notification shows.
pub(super) const NOTIFY_NOTE_CHARS: usize = 200;

/// Results of the helper threads (dialogs, file sizes).
pub(super) enum UiMsg {
    /// Picked or dropped files and folders, ready to queue.
    Added(Picked),
    FolderPicked(PathBuf),
    /// A dialog was closed without a choice.
    Nothing,
    /// A dialog returned nothing and the system turned out to have none: use the in-app one.
    NoDialog(BrowseFor),
    PickFailed,
}

impl FerryApp {
    /// Applies what the engine and helper threads reported since the last frame: at most one
    /// `frame_batch` of engine events, so a flood never holds a frame (the rest waits).
    pub fn process_events(&mut self) {
        self.process_events_up_to(EVENTS_PER_FRAME);
    }

    /// [`FerryApp::process_events`] with at most `max` of the engine's events.
    pub(super) fn process_events_up_to(&mut self, max: usize) {
        let now = Instant::now();
        let mut finished_folders = std::mem::take(&mut self.finished_folders);
        let (batch, more) = frame_batch(&self.events, max);
        for event in batch {
            self.on_event(display::display_safe(event), now, &mut finished_folders);
        }
        // Announced once the events waiting are applied: a received folder looks finished
        // between two of its files, and the next file's start is usually in the same batch,
        // or (when the batch ended with events still waiting) among those.
        if more {
            // As the engine's waker would: the next batch in a moment, not in a busy loop.
            self.ctx.request_repaint_after(super::REPAINT_BATCH);
            self.finished_folders = finished_folders;
        } else {
            finished_folders.sort_unstable();
            finished_folders.dedup();
            for id in finished_folders {
                let rows = self.server.rows.iter().chain(self.client.rows.iter());
                if let Some(row) = rows.into_iter().find(|r| r.id == id)
                    && row.state.is_finished()
                {
                    let row = row.clone();
                    self.notify_finished(&row);
                }
            }
        }
        self.server.forget_oldest_finished(&self.ctx);
        while let Ok(msg) = self.ui_rx.try_recv() {
            match msg {
                UiMsg::Added(picked) => self.queue_picked(picked),
                UiMsg::FolderPicked(dir) => self.server.dir = dir,
                UiMsg::Nothing => {}
                UiMsg::NoDialog(target) => self.open_browser(target),
                UiMsg::PickFailed => {
                    self.client.notice = Some(Tr(self.lang).get(T::DialogUnavailable).to_owned())
                }
            }
        }
    }

    /// Queues what a dialog or a drop gave, saying what was left out and why.
    fn queue_picked(&mut self, picked: Picked) {
        let tr = Tr(self.lang);
        self.client.add_files(picked.files);
        for (path, folder) in picked.folders {
            self.client.add_folder(path, folder);
        }
        let mut notices = Vec::new();
        if picked.left_out > 0 {
            notices.push(tr.fill(T::SkippedNotFiles, &[&picked.left_out]));
        }
        for name in picked.empty {
            notices.push(tr.fill(T::FolderEmpty, &[&escape_line(&name)]));
        }
        for (name, why) in picked.unreadable {
            let head = tr.fill(T::FolderUnreadable, &[&escape_line(&name)]);
            notices.push(format!("{head} ({})", escape_line(&why)));
        }
        if !notices.is_empty() {
            self.client.notice = Some(notices.join("\n"));
        }
    }

    fn on_event(&mut self, event: Event, now: Instant, finished_folders: &mut Vec<TransferId>) {
        match event {
            Event::Transfer(event) => self.on_transfer(event, now, finished_folders),
            Event::Server(ServerEvent::Listening { addr }) => {
                self.server.status = ServerStatus::Listening(addr)
            }
            Event::Server(ServerEvent::Reachable { addrs }) => self.server.reachable = addrs,
            Event::Server(ServerEvent::StartFailed { reason }) => {
                self.server.status = ServerStatus::Failed(reason)
            }
            Event::Server(ServerEvent::Stopped) => {
                if !matches!(self.server.status, ServerStatus::Starting) {
                    self.server.status = ServerStatus::Stopped;
                }
            }
            Event::Server(ServerEvent::OfferPending(offer)) => {
                self.notify_offer(&offer);
                self.server.offers.push(offer);
                // A sender is waiting: make the window noticeable if it is in the background.
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                        egui::UserAttentionType::Informational,
                    ));
            }
            Event::Server(ServerEvent::OfferClosed { offer_id }) => {
                // Closed by the engine while still shown: say so, or the prompt just
                // vanishes. (Stopping the server closes them all, which needs no word.)
                if let Some(offer) = self.server.offers.close(offer_id)
                    && self.server.is_listening()
                {
                    self.server.withdrawn = Some((offer.offer_id, offer.peer));
                }
            }
            Event::Server(ServerEvent::ConnectionError { peer, reason }) => {
                log::warn!("{peer}: {reason}");
            }
            Event::Server(ServerEvent::Paired {
                peer,
                device,
                fingerprint,
            }) => {
                log::info!("{peer}: paired with {device}");
                // The code is used up; the engine's `Pairing(None)` follows within a second.
                self.server.trust.paired(device, fingerprint);
            }
            Event::Server(ServerEvent::Pairing(offer)) => self.server.trust.set_pairing(offer),
            Event::Server(ServerEvent::PairingEnded(how)) => self.server.trust.ended = Some(how),
            Event::Server(ServerEvent::LocalSend(status)) => {
                self.server.localsend_status = Some(status)
            }
            Event::Speed { to, outcome } => {
                self.client.speed = match outcome {
                    Ok(report) => super::speed_panel::SpeedTest::Done { to, report },
                    Err(reason) => super::speed_panel::SpeedTest::Failed { to, reason },
                };
            }
            Event::Keyring(event) => {
                if let KeyringEvent::Trusted(trusted) = &event {
                    self.client.trusted = trusted.clone();
                }
                if let KeyringEvent::ThisDevice { name, .. } = &event {
                    self.server.device_name = name.clone();
                }
                self.server.trust.apply(event);
            }
            Event::Server(ServerEvent::PartialsExpired { names, bytes }) => {
                log::info!("removed old partial files: {names:?}");
                self.server.expired = Some((names.len(), bytes));
            }
            Event::Discovery(event) => {
                if let DiscoveryEvent::Announcing { name } = &event {
                    self.server.device_name = name.clone();
                }
                self.devices.apply(event)
            }
            Event::Note(event) => {
                if let NoteEvent::Received { from, text, .. } = &event {
                    if !self.notes_open {
                        self.unseen_notes = self.unseen_notes.saturating_add(1);
                    }
                    let tr = Tr(self.lang);
                    // A notification is a glimpse; the whole note is in the panel.
                    let glimpse: String = text.chars().take(NOTIFY_NOTE_CHARS).collect();
                    let budget = &self.notify_budgets.notes;
                    self.notify(budget, &tr.fill(T::NotifyNote, &[from]), &glimpse);
                }
                self.notes.apply(event)
            }
        }
    }

    /// One file's event: a new incoming row (a folder's file joins its folder row), or an
    /// update of a row or of a folder's file (and then of its folder row).
    fn on_transfer(
        &mut self,
        event: TransferEvent,
        now: Instant,
        finished_folders: &mut Vec<TransferId>,
    ) {
        let id = event.id();
        if let TransferEvent::Started {
            direction: Direction::Incoming,
            saved_as,
            peer,
            mode,
            ..
        } = &event
        {
            let Some(row) = TransferRow::from_started(&event) else {
                return;
            };
            match saved_as.as_deref().and_then(folder_root) {
                Some(root) => {
                    let rows = &mut self.server.rows;
                    folder_rows::add_incoming(rows, root, *peer, *mode, row, now)
                }
                None => self.server.rows.push(row),
            }
            return;
        }
        let rows = self
            .server
            .rows
            .iter_mut()
            .chain(self.client.rows.iter_mut());
        for row in rows {
            if row.id == id {
                let was_finished = row.state.is_finished();
                row.apply(&event, now);
                if !was_finished && row.state.is_finished() {
                    let row = row.clone();
                    self.notify_finished(&row);
                }
                return;
            }
            if row.folder.is_some() && row.child_mut(id).is_some() {
                let was_finished = row.state.is_finished();
                folder_rows::apply_to_child(row, id, &event, now);
                if !was_finished && row.state.is_finished() {
                    finished_folders.push(row.id);
                }
                return;
            }
        }
    }

    /// Opens the in-app picker (the system has no dialog).
    pub(super) fn open_browser(&mut self, target: BrowseFor) {
        let start = match target {
            BrowseFor::Files => None,
            BrowseFor::Folder => Some(self.server.dir.clone()),
            BrowseFor::SendFolder => None,
        };
        self.browser.open(&self.ctx, target, start);
    }

    /// What the in-app picker chose, applied like a system dialog's answer.
    pub(super) fn apply_chosen(&mut self, chosen: Chosen) {
        match chosen {
            Chosen::Files(paths) => self.in_background(move || regular_files(paths)),
            Chosen::Folder(dir) => self.server.dir = dir,
            Chosen::SendFolder(dir) => self.in_background(move || files_and_folders(vec![dir])),
        }
    }

    /// What the engine should run LocalSend with: the Server tab's setting and port, the
    /// Devices section's identity folder, LAN setting and favourites.
    pub(super) fn localsend_setup(&self) -> LocalSendSetup {
        LocalSendSetup {
            receive: self.server.localsend,
            port: self
                .server
                .localsend_port()
                .unwrap_or(crate::localsend::LOCALSEND_PORT),
            identity_dir: self.devices.identity_dir().cloned(),
            multicast: self.devices.enabled,
            probe: self.devices.localsend_probes(),
            pin: Some(self.server.localsend_pin.trim().to_owned()).filter(|p| !p.is_empty()),
            sweep: self.server.localsend_sweep,
            sweep_hosts: self.server.localsend_sweep_hosts.clone(),
            interfaces: self.devices.interfaces().clone(),
        }
    }

    /// Files or a note to a LocalSend device's address go through LocalSend; a new server
    /// start or devices setup tells LocalSend its setup first.
    pub(super) fn localsend_route(&self, command: Command) -> Vec<Command> {
        match command {
            Command::Send { opts, files } => match self.devices.localsend_target(&opts.to) {
                Some(to) => {
                    let items: Vec<OutgoingItem> =
                        files.into_iter().map(OutgoingItem::File).collect();
                    let batch = LocalSendBatch::of(&items);
                    vec![Command::SendLocalSend {
                        unencrypted: self.devices.unencrypted_agreed(&to),
                        to,
                        batch,
                        pin: None,
                    }]
                }
                None => vec![Command::Send { opts, files }],
            },
            // A folder's files go named by their relative paths (LocalSend's folders), each
            // under its own id, so the folder row still follows them.
            Command::SendItems { opts, items } => match self.devices.localsend_target(&opts.to) {
                Some(to) => {
                    let batch = LocalSendBatch::of(&items);
                    vec![Command::SendLocalSend {
                        unencrypted: self.devices.unencrypted_agreed(&to),
                        to,
                        batch,
                        pin: None,
                    }]
                }
                None => vec![Command::SendItems { opts, items }],
            },
            Command::SendNote { to, text, key } => match self.devices.localsend_target(&to) {
                Some(to) => vec![Command::SendLocalSendText {
                    unencrypted: self.devices.unencrypted_agreed(&to),
                    to,
                    text,
                    pin: None,
                }],
                None => vec![Command::SendNote { to, text, key }],
            },
            command @ (Command::StartServer(_) | Command::SetDiscovery(_)) => {
                vec![Command::SetLocalSend(self.localsend_setup()), command]
            }
            command => vec![command],
        }
    }

    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::Engine(command) => {
                // The notes socket listens where the server does (first, so the server's
                // discovery announces the notes port that is served).
                if let Command::StartServer(config) = &command
                    && let Some(action) = self.notes.follow(config.bind)
                {
                    self.apply(action);
                }
                let message = match &command {
                    Command::Send { opts, .. } | Command::SendItems { opts, .. } => {
                        !opts.msg.is_empty()
                    }
                    _ => false,
                };
                for command in self.localsend_route(command) {
                    if let Command::SendLocalSend { batch, .. } = &command {
                        let tr = Tr(self.lang);
                        if message {
                            // LocalSend carries no message with files: say so rather than
                            // list it on the rows as if it went.
                            self.client.message_not_sent(batch, tr);
                        }
                        if !batch.empty_folders.is_empty() {
                            // LocalSend v2 has no way to send a folder with no file in it.
                            let list = batch.empty_folders.join(", ");
                            let text = tr.get(T::LocalSendNoEmptyFolders);
                            self.client.notice = Some(text.replace("{}", &list));
                        }
                    }
                    self.worker.send(command);
                }
            }
            Action::SendWithPin { dest, files, pin } => {
                // A device no longer listed gets the files the Ferry way (and says why not).
                let command = match self.devices.localsend_target(&dest) {
                    // Retried files go by their own names (a folder's relative paths are
                    // not kept on the rows).
                    Some(to) => Command::SendLocalSend {
                        unencrypted: self.devices.unencrypted_agreed(&to),
                        to,
                        batch: LocalSendBatch::of(
                            &files
                                .into_iter()
                                .map(OutgoingItem::File)
                                .collect::<Vec<_>>(),
                        ),
                        pin: Some(pin),
                    },
                    None => Command::Send {
                        opts: Box::new(crate::transfer::SendOptions::new(dest)),
                        files,
                    },
                };
                self.worker.send(command);
            }
            Action::NoteWithPin { to, text, pin } => {
                match self.devices.localsend_target(&to.to_string()) {
                    Some(to) => self.worker.send(Command::SendLocalSendText {
                        unencrypted: self.devices.unencrypted_agreed(&to),
                        to,
                        text,
                        pin: Some(pin),
                    }),
                    // Never sent the Ferry way: it went to a LocalSend device.
                    None => {
                        let text = Tr(self.lang).fill(T::LocalSendDeviceGone, &[&to]);
                        self.notes.send_error = Some(text);
                    }
                }
            }
            Action::AgreeUnencrypted { addr, id, agreed } => {
                self.devices.unencrypted_agreed.set(addr, &id, agreed);
                self.client.notice = None;
                self.notes.send_error = None;
            }
            Action::ListenNotes => {
                if let Some(action) = self.notes.listen(&self.server.bind) {
                    self.apply(action);
                }
            }
            Action::LocalSendChanged => {
                let setup = self.localsend_setup();
                self.worker.send(Command::SetLocalSend(setup));
            }
            Action::SendTo(device) => {
                self.client.send_to_trusted(&device);
                self.tab = Tab::Client;
            }
            Action::PickFiles if !self.picker.system_dialog_available() => {
                self.open_browser(BrowseFor::Files)
            }
            Action::PickFolder if !self.picker.system_dialog_available() => {
                self.open_browser(BrowseFor::Folder)
            }
            Action::PickSendFolder if !self.picker.system_dialog_available() => {
                self.open_browser(BrowseFor::SendFolder)
            }
            Action::PickSendFolder => {
                let picker = Arc::clone(&self.picker);
                let start = dirs::home_dir().unwrap_or_else(|| self.server.dir.clone());
                self.in_background(move || match picker.pick_folder(&start) {
                    Some(dir) => files_and_folders(vec![dir]),
                    None => no_choice(&*picker, BrowseFor::SendFolder),
                });
            }
            Action::PickFiles => {
                let picker = Arc::clone(&self.picker);
                self.in_background(move || match picker.pick_files() {
                    Some(paths) => regular_files(paths),
                    None => no_choice(&*picker, BrowseFor::Files),
                });
            }
            Action::PickFolder => {
                let picker = Arc::clone(&self.picker);
                let start = self.server.dir.clone();
                self.in_background(move || match picker.pick_folder(&start) {
                    Some(dir) => UiMsg::FolderPicked(dir),
                    None => no_choice(&*picker, BrowseFor::Folder),
                });
            }
        }
    }

    /// Runs blocking work (dialogs, disk look-ups) off the UI thread and wakes the UI after.
    pub(super) fn in_background(&self, work: impl FnOnce() -> UiMsg + Send + 'static) {
        let (tx, ctx) = (self.ui_tx.clone(), self.ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("ferry-dialog".into())
            .spawn(move || {
                let _ = tx.send(work());
                ctx.request_repaint();
            });
        if spawned.is_err() {
            let _ = self.ui_tx.send(UiMsg::PickFailed);
        }
    }
}

/// A dialog gave nothing: a cancel, or (if the picker now knows it has no dialog) a dialog
/// that never showed, and the in-app picker takes over.
fn no_choice(picker: &dyn super::Picker, target: BrowseFor) -> UiMsg {
    if picker.system_dialog_available() {
        UiMsg::Nothing
    } else {
        UiMsg::NoDialog(target)
    }
}

/// What a pick or a drop gave, sorted out off the UI thread.
#[derive(Default)]
pub(super) struct Picked {
    /// Regular files with their sizes.
    pub files: Vec<(PathBuf, u64)>,
    /// Folders, walked (the path chosen, and what is in it).
    pub folders: Vec<(PathBuf, OutgoingFolder)>,
    /// Paths that are neither (or folders where only files are asked for, or vanished).
    pub left_out: usize,
    /// Folders with no file in them, by name.
    pub empty: Vec<String>,
    /// Folders that could not be read: name, and why.
    pub unreadable: Vec<(String, String)>,
}

/// Keeps the regular files among `paths`, with their sizes, and counts the rest (folders,
/// vanished paths), so the user hears why they were left out. Runs off the UI thread.
pub(super) fn regular_files(paths: Vec<PathBuf>) -> UiMsg {
    sort_out(paths, false)
}

/// Files with their sizes and folders walked (symlinks leading out of a folder are skipped
/// and named in its row). Runs off the UI thread: a big folder takes a while to walk.
pub(super) fn files_and_folders(paths: Vec<PathBuf>) -> UiMsg {
    sort_out(paths, true)
}

fn sort_out(paths: Vec<PathBuf>, folders: bool) -> UiMsg {
    let mut picked = Picked::default();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => picked.files.push((path, meta.len())),
            Ok(meta) if meta.is_dir() && folders => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                );
                match walk_folder(&path) {
                    Ok(folder) if folder.files.is_empty() => picked.empty.push(name),
                    Ok(folder) => picked.folders.push((path, folder)),
                    Err(e) => picked.unreadable.push((name, e.to_string())),
                }
            }
            _ => picked.left_out += 1,
        }
    }
    UiMsg::Added(picked)
}

/// The items of an upload in queue order (a folder row's walked folder, a file row's file).
pub(super) fn item_of(row: &TransferRow) -> Option<OutgoingItem> {
    match &row.folder {
        Some(group) => group.outgoing.clone().map(OutgoingItem::Folder),
        None => Some(OutgoingItem::File(crate::transfer::OutgoingFile {
            id: row.id,
            path: row.path.clone()?,
            identity: None,
        })),
    }
}
