//! The window's logic, apart from its drawing ([`super::ui`]): applying the engine's events
//! and the helper threads' results to the state, and carrying out the [`Action`]s the panels
//! return. Nothing here draws, so it reads as the app's state machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::i18n::{T, Tr};
use super::{Action, FerryApp, PendingOffer, ServerStatus, TransferRow, display};
use crate::events::{Direction, Event, ServerEvent, TransferEvent};

/// Results of the helper threads (dialogs, file sizes).
pub(super) enum UiMsg {
    /// Regular files with their sizes, and how many picked or dropped paths were not files.
    FilesAdded(Vec<(PathBuf, u64)>, usize),
    FolderPicked(PathBuf),
    /// A dialog was closed without a choice.
    Nothing,
    PickFailed,
}

impl FerryApp {
    /// Applies everything the engine and helper threads reported since the last frame.
    pub fn process_events(&mut self) {
        let now = Instant::now();
        while let Ok(event) = self.events.try_recv() {
            self.on_event(display::display_safe(event), now);
        }
        while let Ok(msg) = self.ui_rx.try_recv() {
            match msg {
                UiMsg::FilesAdded(files, skipped) => {
                    self.client.add_files(files);
                    if skipped > 0 {
                        let tr = Tr(self.lang);
                        self.client.notice = Some(tr.fill(T::SkippedNotFiles, &[&skipped]));
                    }
                }
                UiMsg::FolderPicked(dir) => self.server.dir = dir,
                UiMsg::Nothing => {}
                UiMsg::PickFailed => {
                    self.client.notice = Some(Tr(self.lang).get(T::DialogUnavailable).to_owned())
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Transfer(event) => {
                let id = transfer_id(&event);
                if let TransferEvent::Started {
                    direction: Direction::Incoming,
                    ..
                } = &event
                {
                    self.server.rows.extend(TransferRow::from_started(&event));
                    return;
                }
                let rows = self
                    .server
                    .rows
                    .iter_mut()
                    .chain(self.client.rows.iter_mut());
                if let Some(row) = rows.into_iter().find(|r| r.id == id) {
                    row.apply(&event, now);
                }
            }
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
            Event::Server(ServerEvent::OfferPending {
                offer_id,
                peer,
                count,
                bytes,
                names,
                sizes,
                msg,
            }) => {
                self.server.offers.push(PendingOffer {
                    offer_id,
                    peer,
                    count,
                    bytes,
                    names,
                    sizes,
                    msg,
                });
                // A sender is waiting: make the window noticeable if it is in the background.
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                        egui::UserAttentionType::Informational,
                    ));
            }
            Event::Server(ServerEvent::OfferClosed { offer_id }) => {
                self.server.offers.close(offer_id)
            }
            Event::Server(ServerEvent::ConnectionError { peer, reason }) => {
                log::warn!("{peer}: {reason}");
            }
            Event::Server(ServerEvent::PartialsExpired { names, bytes }) => {
                log::info!("removed old partial files: {names:?}");
                self.server.expired = Some((names.len(), bytes));
            }
            Event::Note(event) => self.notes.apply(event),
        }
    }

    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::Engine(command) => self.worker.send(command),
            Action::PickFiles => {
                let picker = Arc::clone(&self.picker);
                self.in_background(move || match picker.pick_files() {
                    Some(paths) => regular_files(paths),
                    None => UiMsg::Nothing,
                });
            }
            Action::PickFolder => {
                let picker = Arc::clone(&self.picker);
                let start = self.server.dir.clone();
                self.in_background(move || match picker.pick_folder(&start) {
                    Some(dir) => UiMsg::FolderPicked(dir),
                    None => UiMsg::Nothing,
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

fn transfer_id(event: &TransferEvent) -> u64 {
    match event {
        TransferEvent::Started { id, .. }
        | TransferEvent::Progress { id, .. }
        | TransferEvent::Finished { id, .. }
        | TransferEvent::Failed { id, .. }
        | TransferEvent::Cancelled { id, .. }
        | TransferEvent::AwaitingDecision { id } => *id,
    }
}

/// Keeps the regular files among `paths`, with their sizes, and counts the rest (folders,
/// vanished paths), so the user hears why they were left out. Runs off the UI thread.
pub(super) fn regular_files(paths: Vec<PathBuf>) -> UiMsg {
    let total = paths.len();
    let files: Vec<(PathBuf, u64)> = paths
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            meta.is_file().then_some((path, meta.len()))
        })
        .collect();
    let skipped = total - files.len();
    UiMsg::FilesAdded(files, skipped)
}
