//! The Ferry window (eframe/egui): a Server tab, a Client tab and a Notes panel beside both,
//! driving the engines through [`Worker`] commands and drawing from their events. When the
//! server asks before accepting, an accept-or-decline prompt ([`OfferPrompt`]) shows over
//! whichever tab is open.
//!
//! Threading: the UI thread only draws and sends commands. The engine thread (see
//! [`crate::worker::Worker`]) owns sockets and files; it wakes the UI with
//! `request_repaint_after` when an event arrives, so an idle window does not repaint.
//! Dialogs and file-size lookups run on short-lived threads and report back on a channel.
//!
//! Structure (as in egui's demo app and rerun's viewer): `logic.rs` applies events and
//! [`Action`]s to the state ([`FerryApp::process_events`], called from eframe's `logic`);
//! `ui.rs` draws ([`FerryApp::ui`]); each tab/panel is a struct with a `ui` method that
//! returns the [`Action`]s its clicks asked for, applied once per frame; `palette.rs` holds
//! every colour.
//!
//! On the desktop: the window carries Ferry's app id and icon (so the taskbar groups it under
//! `assets/ferry.desktop`), remembers its size and position (eframe persistence), follows the
//! system's light/dark setting unless the user picks one, notifies ([`Notifier`]) when a file
//! finishes or a note arrives while it is in the background, and opens its own picker
//! (`file_browser.rs`, which reads folders off the UI thread through `file_lister.rs`) when
//! the system has no file dialog.
//!
//! Devices (`devices.rs`, in the Client tab): the engine finds devices on the LAN while the
//! server listens; clicking one fills the destination and the notes peer.
//!
//! LocalSend (issue 16): the Server tab's "Receive from LocalSend" runs a LocalSend receiver
//! beside the server (its prompts, rows and text messages arrive like Ferry's); LocalSend
//! devices are listed with a badge, and files or a note to a LocalSend device's address go
//! through LocalSend (`FerryApp::localsend_route`).

mod batch;
mod client_tab;
mod devices;
mod devices_doctor;
mod display;
mod doctor_text;
mod file_browser;
mod file_lister;
mod folder_rows;
pub mod i18n;
mod logic;
mod model;
mod notes_panel;
mod notify;
mod offers;
mod palette;
mod pin_prompt;
mod row_text;
mod server_tab;
mod settings;
mod speed_panel;
mod table;
mod trust_panel;
mod ui;
mod unencrypted;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use egui::Ui;

pub use crate::events::PendingOffer;
pub use client_tab::ClientTab;
pub use devices::{DevicesPanel, DiscoveryStatus, Pick};
pub use file_browser::{BrowseFor, FileBrowser};
pub use folder_rows::FolderGroup;
pub use model::{RowState, TransferRow};
pub use notes_panel::{NotesPanel, NotesStatus};
pub use notify::{DesktopNotifier, NoNotifier, Notifier};
pub use offers::OfferPrompt;
pub use server_tab::{MAX_FINISHED_ROWS, ServerStatus, ServerTab};
pub use settings::{
    NoPicker, Picker, PolicyChoice, RfdPicker, Settings, ThemeChoice, default_download_dir,
};
pub use trust_panel::TrustPanel;

use i18n::Lang;
use logic::UiMsg;

use crate::events::{Event, EventSink, event_channel};
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
    /// The download folder (Server tab).
    PickFolder,
    /// A folder to send (Client tab).
    PickSendFolder,
    /// Send files to a trusted device (from the trusted list): its last address, its key.
    SendTo(crate::events::TrustedPeer),
    /// The Notes panel's "Listen": the notes socket on its port, at the server's bind address.
    ListenNotes,
    /// "Receive from LocalSend" changed: the engine gets the new LocalSend setup.
    LocalSendChanged,
    /// "Send with PIN": files a LocalSend device refused for want of a PIN, again with it.
    SendWithPin {
        dest: String,
        files: Vec<crate::transfer::OutgoingFile>,
        pin: String,
    },
    /// "Send note with PIN": a note a LocalSend device refused for want of a PIN, again
    /// with it, to the device at `to`.
    NoteWithPin {
        to: std::net::SocketAddr,
        text: String,
        pin: String,
    },
    /// "Send unencrypted to this device" ticked or unticked for the LocalSend device with
    /// encryption off at `addr` that claims the id `id`.
    AgreeUnencrypted {
        addr: std::net::SocketAddr,
        id: String,
        agreed: bool,
    },
}

pub struct FerryApp {
    pub lang: Lang,
    pub tab: Tab,
    pub notes_open: bool,
    pub server: ServerTab,
    pub client: ClientTab,
    pub notes: NotesPanel,
    pub devices: DevicesPanel,
    /// The in-app picker, open when the system has no file dialog.
    pub browser: FileBrowser,
    /// Desktop notifications on (persisted).
    pub notifications: bool,
    pub theme: ThemeChoice,
    /// Notes that arrived while the Notes panel was closed; shown on its toggle.
    pub unseen_notes: usize,
    /// Whether the window had the keyboard focus in the last frame.
    pub window_focused: bool,
    notifier: Arc<dyn Notifier>,
    notify_budgets: notify::NotifyBudgets,
    /// Folder rows that looked finished in a frame whose batch left engine events waiting:
    /// announced once those are applied (the folder's next file may be among them).
    finished_folders: Vec<crate::events::TransferId>,
    // Declared (so dropped) before `worker`: once the receiver is gone, engine threads that
    // are still reporting get an error instead of waiting for room in a channel nobody
    // drains, so dropping the worker cannot hang.
    events: Receiver<Event>,
    /// The engine's end of `events`, for [`FerryApp::event_sink`].
    sink: EventSink,
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
        // The device identity and trusted devices: the settings' folder (tests give each window
        // its own) or the default one shared with the CLI.
        let config_dir = settings
            .identity_dir
            .clone()
            .or_else(crate::secure::identity::default_config_dir);
        let worker = Worker::spawn_in(sink.clone(), config_dir)?;
        let policy = settings.policy();
        let (ui_tx, ui_rx) = crossbeam_channel::unbounded();
        let mut app = Self {
            lang: settings.lang.unwrap_or_else(Lang::from_system),
            tab: Tab::Server,
            notes_open: settings.notes_open,
            server: ServerTab::new(
                settings.server_bind,
                settings.server_port,
                settings.download_dir,
                policy,
                settings.server_idle_timeout_secs,
            )
            .with_direct_io(settings.server_direct_io)
            .with_localsend(settings.localsend, settings.localsend_port)
            .with_localsend_extras(
                settings.localsend_pin,
                settings.localsend_sweep,
                settings.localsend_sweep_hosts,
            ),
            client: ClientTab::new(
                settings.client_dest,
                settings.recent_peers,
                settings.client_msg,
                settings.plain,
            ),
            notes: NotesPanel::new(settings.notes_port, settings.note_peer),
            devices: DevicesPanel::new(
                settings.discovery,
                settings.favourites,
                settings.identity_dir,
                settings.discovery_port,
            )
            .with_interfaces(settings.interfaces, settings.only_interfaces),
            browser: FileBrowser::default(),
            notifications: settings.notifications,
            theme: settings.theme,
            unseen_notes: 0,
            window_focused: true,
            notifier: Arc::new(NoNotifier),
            notify_budgets: notify::NotifyBudgets::default(),
            finished_folders: Vec::new(),
            events,
            sink,
            worker,
            ui_tx,
            ui_rx,
            picker,
            ctx: ctx.clone(),
        };
        app.apply(Action::Engine(Command::ShowKeyring));
        // Before the server starts, so a server that listens at once is announced.
        app.apply(Action::Engine(Command::SetDiscovery(app.devices.setup())));
        app.apply(Action::ListenNotes);
        // A server that was listening when the window closed listens again.
        if settings.server_listening
            && let Some(action) = app.server.start()
        {
            app.apply(action);
        }
        ctx.set_theme(app.theme.preference());
        Ok(app)
    }

    /// Where notifications go (none until this is called: tests stay quiet).
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// A sink into this window's event stream, the same the engine's threads report
    /// through: for benchmarks and tests that feed the window events of their own.
    pub fn event_sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// The app as eframe creates it: settings from storage, real dialogs, real notifications.
    pub fn from_creation_context(
        cc: &eframe::CreationContext<'_>,
        interfaces: crate::discovery::Choice,
    ) -> std::io::Result<Self> {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let settings = Settings {
            interfaces,
            ..settings
        };
        Ok(
            Self::new(&cc.egui_ctx, settings, Arc::new(RfdPicker::default()))?
                .with_notifier(Arc::new(DesktopNotifier)),
        )
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
            accept_policy: Some(self.server.policy),
            server_auto_accept: None,
            server_idle_timeout_secs: self.server.idle_timeout_secs.clone(),
            server_direct_io: self.server.direct_io,
            notes_port: self.notes.port.clone(),
            notes_open: self.notes_open,
            note_peer: self.notes.peer.clone(),
            client_dest: self.client.dest.clone(),
            client_msg: self.client.msg.clone(),
            plain: self.client.plain,
            recent_peers: self.client.recent.clone(),
            notifications: self.notifications,
            theme: self.theme,
            discovery: self.devices.enabled,
            favourites: self.devices.favourites.clone(),
            identity_dir: None,
            discovery_port: None,
            interfaces: self.devices.run_interfaces(),
            only_interfaces: self.devices.only_interfaces.clone(),
            localsend: self.server.localsend,
            localsend_port: self.server.localsend_port.clone(),
            localsend_pin: self.server.localsend_pin.clone(),
            localsend_sweep: self.server.localsend_sweep,
            localsend_sweep_hosts: Vec::new(),
        }
    }
}

impl eframe::App for FerryApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // This frame's focus (the raw input), so an event that arrives now is judged by it.
        self.window_focused = ctx.input(|i| i.raw.focused);
        self.process_events();
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        FerryApp::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings());
    }
}

/// Opens the window and runs until it is closed. Closing drops the app, whose [`Worker`]
/// cancels in-flight transfers (plain ones leave nothing; interrupted Ferry ones keep their
/// `.ferry.part` for a resume) and joins its threads.
pub fn run(interfaces: crate::discovery::Choice) -> anyhow::Result<()> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Ferry")
        .with_app_id(crate::defaults::APP_ID)
        .with_inner_size([1180.0, 720.0])
        .with_min_inner_size([760.0, 420.0])
        .with_drag_and_drop(true);
    match eframe::icon_data::from_png_bytes(crate::defaults::icon_png()) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => log::warn!("the built-in icon does not load: {e}"),
    }
    let options = eframe::NativeOptions {
        viewport,
        // Size and position come back on the next start (stored with the settings).
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "Ferry",
        options,
        Box::new(|cc| {
            let app = FerryApp::from_creation_context(cc, interfaces)?;
            Ok(Box::new(app) as Box<dyn eframe::App>)
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::events::{Direction, Security, TransferEvent, next_transfer_id};
    use crate::protocol::Mode;

    #[derive(Default)]
    struct Shown(Mutex<Vec<String>>);

    impl Notifier for Shown {
        fn notify(&self, summary: &str, _body: &str) {
            self.0.lock().unwrap().push(summary.to_owned());
        }
    }

    /// A received folder looks finished between two of its files; when a frame's batch ends
    /// there with the next file's events still waiting, the folder is announced once they
    /// are applied, and only if it is still finished then (once, not once per look).
    #[test]
    fn a_folder_is_announced_when_the_events_waiting_are_applied_not_between_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            lang: Some(Lang::En),
            server_listening: false,
            server_bind: "127.0.0.1".into(),
            server_port: "0".into(),
            download_dir: dir.path().join("in"),
            notes_port: "0".into(),
            discovery: false,
            identity_dir: Some(dir.path().join("identity")),
            localsend: false,
            ..Settings::default()
        };
        let shown = Arc::new(Shown::default());
        let ctx = egui::Context::default();
        let mut app = FerryApp::new(&ctx, settings, Arc::new(NoPicker))
            .unwrap()
            .with_notifier(shown.clone());
        app.window_focused = false;
        let sink = app.event_sink();
        let peer = ([127, 0, 0, 2], 40_000).into();
        for name in ["a.jpg", "b.jpg"] {
            let id = next_transfer_id();
            sink.emit(Event::Transfer(TransferEvent::Started {
                id,
                direction: Direction::Incoming,
                peer,
                name: name.into(),
                saved_as: Some(format!("pics/{name}")),
                bytes_total: 10,
                mode: Mode::Ferry,
                msg: String::new(),
                security: Security::Plain,
            }));
            sink.emit(Event::Transfer(TransferEvent::Finished {
                id,
                verified: true,
                saved_as: None,
                path: None,
            }));
        }
        // The first file's two events: the folder looks finished, the second file waits.
        app.process_events_up_to(2);
        assert!(app.server.rows[0].state.is_finished());
        assert_eq!(*shown.0.lock().unwrap(), Vec::<String>::new());
        app.process_events_up_to(2);
        assert_eq!(app.server.rows.len(), 1, "one folder row");
        assert_eq!(*shown.0.lock().unwrap(), ["Received pics"]);
    }

    #[test]
    fn the_window_icon_decodes() {
        let icon = eframe::icon_data::from_png_bytes(crate::defaults::icon_png()).unwrap();
        assert_eq!((icon.width, icon.height), (256, 256));
    }
}
