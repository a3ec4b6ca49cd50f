//! The Ferry window (eframe/egui): a Server tab, a Client tab and a Notes panel beside both,
//! driving the engines through [`Worker`] commands and drawing from their events. When the
//! server asks before accepting, an accept-or-decline prompt ([`OfferPrompt`]) shows over
//! whichever tab is open.
//!
//! Threading: the UI thread only draws and sends commands. The engine thread (see
//! [`crate::events::Worker`]) owns sockets and files; it wakes the UI with
//! `request_repaint_after` when an event arrives, so an idle window does not repaint.
//! Dialogs and file-size lookups run on short-lived threads and report back on a channel.
//!
//! Structure (as in egui's demo app and rerun's viewer): `logic` (eframe's, calling
//! [`FerryApp::process_events`]) drains events; [`FerryApp::ui`] draws; each tab/panel is a struct with a `ui` method that returns the
//! [`Action`]s its clicks asked for, applied once per frame.

mod client_tab;
mod display;
pub mod i18n;
mod model;
mod notes_panel;
mod offers;
mod palette;
mod server_tab;
mod settings;
mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use egui::{RichText, Ui};

pub use client_tab::ClientTab;
pub use model::{RowState, TransferRow};
pub use notes_panel::{NotesPanel, NotesStatus};
pub use offers::{OfferPrompt, PendingOffer};
pub use server_tab::{ServerStatus, ServerTab};
pub use settings::{Picker, RfdPicker, Settings, default_download_dir};

use i18n::{Lang, T, Tr};
use model::format_bytes;

use crate::events::{Direction, Event, ServerEvent, TransferEvent, event_channel};
use crate::worker::{Command, Worker};

/// How long the engine's wake-up may be delayed so bursts of events share one repaint.
const REPAINT_BATCH: Duration = Duration::from_millis(30);

/// Which tab is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Server,
    Client,
}

/// What a click asked for; returned by the panels' `ui` and applied by the app.
#[derive(Debug)]
pub enum Action {
    Engine(Command),
    PickFiles,
    PickFolder,
}

/// Results of the helper threads (dialogs, file sizes).
enum UiMsg {
    /// Regular files with their sizes, and how many picked or dropped paths were not files.
    FilesAdded(Vec<(PathBuf, u64)>, usize),
    FolderPicked(PathBuf),
    /// A dialog was closed without a choice.
    Nothing,
    PickFailed,
}

pub struct FerryApp {
    pub lang: Lang,
    pub tab: Tab,
    pub notes_open: bool,
    pub server: ServerTab,
    pub client: ClientTab,
    pub notes: NotesPanel,
    // Declared (so dropped) before `worker`: once the receiver is gone, engine threads that
    // are still reporting get an error instead of waiting for room in a channel nobody
    // drains, so dropping the worker cannot hang.
    events: Receiver<Event>,
    worker: Worker,
    ui_tx: Sender<UiMsg>,
    ui_rx: Receiver<UiMsg>,
    picker: Arc<dyn Picker>,
    ctx: egui::Context,
}

impl FerryApp {
    /// Builds the app from settings, starts the engine thread and binds the notes socket.
    pub fn new(
        ctx: &egui::Context,
        settings: Settings,
        picker: Arc<dyn Picker>,
    ) -> std::io::Result<Self> {
        let waker_ctx = ctx.clone();
        let (sink, events) = event_channel(Some(Arc::new(move || {
            waker_ctx.request_repaint_after(REPAINT_BATCH)
        })));
        let worker = Worker::spawn(sink)?;
        let (ui_tx, ui_rx) = crossbeam_channel::unbounded();
        let mut app = Self {
            lang: settings.lang.unwrap_or_else(Lang::from_system),
            tab: Tab::Server,
            notes_open: settings.notes_open,
            server: ServerTab::new(
                settings.server_bind,
                settings.server_port,
                settings.download_dir,
                settings.server_auto_accept,
                settings.server_idle_timeout_secs,
            ),
            client: ClientTab::new(
                settings.client_dest,
                settings.recent_peers,
                settings.client_msg,
                settings.plain,
            ),
            notes: NotesPanel::new(settings.notes_port, settings.note_peer),
            events,
            worker,
            ui_tx,
            ui_rx,
            picker,
            ctx: ctx.clone(),
        };
        if let Some(action) = app.notes.listen() {
            app.apply(action);
        }
        // A server that was listening when the window closed listens again.
        if settings.server_listening
            && let Some(action) = app.server.start()
        {
            app.apply(action);
        }
        Ok(app)
    }

    /// The app as eframe creates it: settings from storage, real dialogs.
    pub fn from_creation_context(cc: &eframe::CreationContext<'_>) -> std::io::Result<Self> {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        Self::new(&cc.egui_ctx, settings, Arc::new(RfdPicker))
    }

    /// What is saved on exit.
    pub fn settings(&self) -> Settings {
        Settings {
            lang: Some(self.lang),
            server_bind: self.server.bind.clone(),
            server_port: self.server.port.clone(),
            server_listening: matches!(
                self.server.status,
                ServerStatus::Listening(_) | ServerStatus::Starting
            ),
            download_dir: self.server.dir.clone(),
            server_auto_accept: self.server.auto_accept,
            server_idle_timeout_secs: self.server.idle_timeout_secs.clone(),
            notes_port: self.notes.port.clone(),
            notes_open: self.notes_open,
            note_peer: self.notes.peer.clone(),
            client_dest: self.client.dest.clone(),
            client_msg: self.client.msg.clone(),
            plain: self.client.plain,
            recent_peers: self.client.recent.clone(),
        }
    }

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

    fn apply(&mut self, action: Action) {
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
    fn in_background(&self, work: impl FnOnce() -> UiMsg + Send + 'static) {
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

    /// Files dropped onto the window join the client queue (sizes are looked up off-thread).
    fn take_dropped_files(&mut self, ui: &Ui) {
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if !dropped.is_empty() {
            self.tab = Tab::Client;
            self.in_background(move || regular_files(dropped));
        }
    }

    /// Draws the whole window into `ui` (also what the headless tests drive).
    pub fn ui(&mut self, ui: &mut Ui) {
        let tr = Tr(self.lang);
        self.take_dropped_files(ui);
        let mut actions = Vec::new();
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(tr.get(T::AppTitle));
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Server, tr.get(T::ServerTab));
                ui.selectable_value(&mut self.tab, Tab::Client, tr.get(T::ClientTab));
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.toggle_value(&mut self.notes_open, tr.get(T::Notes));
                    egui::ComboBox::from_label(tr.get(T::Language))
                        .selected_text(self.lang.native_name())
                        .show_ui(ui, |ui| {
                            for lang in [Lang::En, Lang::ZhCn] {
                                ui.selectable_value(&mut self.lang, lang, lang.native_name());
                            }
                        });
                });
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui, tr));
        if self.notes_open {
            egui::Panel::right("notes")
                .resizable(true)
                .default_size(320.0)
                .show(ui, |ui| {
                    actions.extend(self.notes.ui(ui, tr));
                });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            let tab_actions = match self.tab {
                Tab::Server => self.server.ui(ui, tr),
                Tab::Client => self.client.ui(ui, tr),
            };
            actions.extend(tab_actions);
        });
        // Over whichever tab is open: a sender is waiting for the answer.
        actions.extend(self.server.offers.show(ui.ctx(), tr));
        for action in actions {
            self.apply(action);
        }
    }

    fn status_bar_ui(&self, ui: &mut Ui, tr: Tr) {
        ui.horizontal(|ui| {
            match &self.server.status {
                ServerStatus::Listening(addr) => ui.label(tr.fill(T::ListeningOn, &[addr])),
                _ => ui.label(tr.get(T::NotListening)),
            };
            ui.separator();
            let active: Vec<&TransferRow> =
                self.server.active().chain(self.client.active()).collect();
            ui.label(tr.fill(T::StatusActive, &[&active.len()]));
            let speed: f64 = active.iter().filter_map(|r| r.speed()).sum();
            if speed > 0.0 {
                ui.separator();
                ui.label(
                    RichText::new(tr.fill(T::StatusSpeed, &[&format_bytes(speed)])).monospace(),
                );
            }
        });
    }
}

impl eframe::App for FerryApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.process_events();
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        FerryApp::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings());
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
fn regular_files(paths: Vec<PathBuf>) -> UiMsg {
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

/// Opens the window and runs until it is closed. Closing drops the app, whose [`Worker`]
/// cancels in-flight transfers (plain ones leave nothing; interrupted Ferry ones keep their
/// `.ferry.part` for a resume) and joins its threads.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Ferry")
            .with_inner_size([1180.0, 720.0])
            .with_min_inner_size([760.0, 420.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Ferry",
        options,
        Box::new(|cc| Ok(Box::new(FerryApp::from_creation_context(cc)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
