//! The Server tab: listening or not, this device's addresses, where files go and whose uploads
//! are taken without asking (the accept policy); this device, pairing and the trusted devices
//! ([`TrustPanel`]); bind address, port and idle timeout under "Advanced"; and what arrives.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use egui::{RichText, Ui};

use super::Action;
use super::folder_rows;
use super::i18n::{T, Tr};
use super::model::{RowState, TransferRow};
use super::offers::OfferPrompt;
use super::palette;
use super::settings::PolicyChoice;
use super::table::{self, RowAction, transfer_table_ui};
use super::trust_panel::TrustPanel;
use crate::events::{Direction, LocalSendStatus};
use crate::transfer::ServerConfig;
use crate::worker::Command;

/// Whether the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatus {
    Stopped,
    Starting,
    Listening(SocketAddr),
    /// Could not start (port in use, bad folder, ...), shown inline.
    Failed(String),
}

pub struct ServerTab {
    pub bind: String,
    pub port: String,
    pub dir: PathBuf,
    /// Whose offers are taken without asking; the others wait in [`ServerTab::offers`] (or,
    /// from plain senders, are refused).
    pub policy: PolicyChoice,
    /// The idle timeout field as typed (seconds).
    pub idle_timeout_secs: String,
    /// "Write large files straight to the disk" (persisted; `ServerConfig::direct_io`).
    pub direct_io: bool,
    pub status: ServerStatus,
    pub reachable: Vec<SocketAddr>,
    pub rows: Vec<TransferRow>,
    /// Offers waiting for the user's Accept or Decline.
    pub offers: OfferPrompt,
    /// The last offer that closed before it was answered (its number and sender), shown
    /// until "Clear finished".
    pub withdrawn: Option<(u64, SocketAddr)>,
    /// A field the user must fix before starting.
    input_error: Option<T>,
    /// The last removal of old partials: how many files and bytes.
    pub expired: Option<(usize, u64)>,
    /// This device's name as others see it (the host name until the engine says).
    pub device_name: String,
    /// This device, pairing and the trusted devices.
    pub trust: TrustPanel,
    /// "Receive from LocalSend" (persisted).
    pub localsend: bool,
    /// The LocalSend port field as typed.
    pub localsend_port: String,
    /// What the engine last said about LocalSend receiving.
    pub localsend_status: Option<LocalSendStatus>,
    /// "LocalSend PIN" as typed (persisted; empty: none).
    pub localsend_pin: String,
    /// "Ask every LAN address for LocalSend devices" (persisted).
    pub localsend_sweep: bool,
    /// Addresses swept instead of the LAN (tests only; never shown).
    pub localsend_sweep_hosts: Vec<SocketAddr>,
}

/// Finished rows the Server tab keeps (the oldest are forgotten first), as the notes history
/// keeps the last 1 000 notes; rows still receiving are never dropped.
pub const MAX_FINISHED_ROWS: usize = 1_000;

/// Idle timeouts the field accepts, in seconds (zero would mean "no timeout" to a socket,
/// which is not what anyone typing 0 means).
const IDLE_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

impl ServerTab {
    /// Keeps at most [`MAX_FINISHED_ROWS`] finished rows, forgetting the oldest: any LAN peer
    /// the policy lets in can send up to 100 000 files per connection, each row keeping its
    /// sender's message (up to 64 KiB), and without a bound the rows would grow until the
    /// user clicks "Clear finished" (or the memory runs out).
    pub(super) fn forget_oldest_finished(&mut self, ctx: &egui::Context) {
        let finished = self.rows.iter().filter(|r| r.state.is_finished()).count();
        let excess = finished.saturating_sub(MAX_FINISHED_ROWS);
        if excess == 0 {
            return;
        }
        let oldest: std::collections::HashSet<_> = self
            .rows
            .iter()
            .filter(|r| r.state.is_finished())
            .take(excess)
            .map(|r| r.id)
            .collect();
        table::remove_rows(ctx, Direction::Incoming, &mut self.rows, |r| {
            oldest.contains(&r.id)
        });
    }

    pub fn new(
        bind: String,
        port: String,
        dir: PathBuf,
        policy: PolicyChoice,
        idle_timeout_secs: String,
    ) -> Self {
        Self {
            bind,
            port,
            dir,
            policy,
            idle_timeout_secs,
            direct_io: true,
            status: ServerStatus::Stopped,
            reachable: Vec::new(),
            rows: Vec::new(),
            offers: OfferPrompt::default(),
            input_error: None,
            expired: None,
            withdrawn: None,
            device_name: crate::secure::identity::default_device_name(),
            trust: TrustPanel::default(),
            localsend: true,
            localsend_port: crate::localsend::LOCALSEND_PORT.to_string(),
            localsend_status: None,
            localsend_pin: String::new(),
            localsend_sweep: true,
            localsend_sweep_hosts: Vec::new(),
        }
    }

    /// The LocalSend PIN, sweep setting and (tests) sweep addresses, as remembered.
    pub fn with_localsend_extras(
        mut self,
        pin: String,
        sweep: bool,
        sweep_hosts: Vec<SocketAddr>,
    ) -> Self {
        self.localsend_pin = pin;
        self.localsend_sweep = sweep;
        self.localsend_sweep_hosts = sweep_hosts;
        self
    }

    /// Whether large files go straight to the disk, as remembered.
    pub fn with_direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// The LocalSend setting and port field, as remembered.
    pub fn with_localsend(mut self, on: bool, port: String) -> Self {
        self.localsend = on;
        self.localsend_port = port;
        self
    }

    /// The LocalSend port as typed (`None`: not a port).
    pub fn localsend_port(&self) -> Option<u16> {
        self.localsend_port.trim().parse().ok()
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.status, ServerStatus::Listening(_))
    }

    #[must_use]
    pub fn ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let mut actions = Vec::new();
        // What a person receiving files needs first: listening or not, and how to stop.
        ui.horizontal(|ui| {
            match &self.status {
                ServerStatus::Stopped | ServerStatus::Failed(_) => {
                    if ui.button(tr.get(T::StartListening)).clicked()
                        && let Some(action) = self.start()
                    {
                        actions.push(action);
                    }
                }
                ServerStatus::Starting => {
                    ui.add_enabled(false, egui::Button::new(tr.get(T::Starting)));
                }
                ServerStatus::Listening(_) => {
                    if ui.button(tr.get(T::StopListening)).clicked() {
                        self.status = ServerStatus::Stopped;
                        self.reachable.clear();
                        actions.push(Action::Engine(Command::StopServer));
                    }
                }
            }
            match &self.status {
                ServerStatus::Listening(addr) => {
                    ui.label(RichText::new(tr.fill(T::ListeningOn, &[addr])).color(palette::OK));
                }
                ServerStatus::Failed(reason) => {
                    ui.label(RichText::new(reason).color(palette::ERROR));
                }
                _ => {
                    ui.label(tr.get(T::NotListening));
                }
            }
        });
        if self.is_listening() {
            ui.label(RichText::new(tr.get(T::ListeningFromStart)).small().weak());
        }
        if let Some(error) = self.input_error {
            ui.label(RichText::new(tr.get(error)).color(palette::ERROR));
        }
        ui.add_space(4.0);
        let editable = matches!(self.status, ServerStatus::Stopped | ServerStatus::Failed(_));
        egui::Grid::new("server_everyday")
            .num_columns(2)
            .spacing([10.0, 8.0])
            .show(ui, |ui| {
                if self.is_listening() {
                    ui.label(tr.get(T::ReachableAt));
                    ui.horizontal_wrapped(|ui| {
                        if self.reachable.is_empty() {
                            ui.label(tr.get(T::NoLanAddress));
                        }
                        for addr in &self.reachable {
                            ui.label(RichText::new(addr.to_string()).monospace());
                        }
                    });
                    ui.end_row();
                }
                let label = ui.label(tr.get(T::DownloadFolder));
                ui.horizontal(|ui| {
                    ui.label(self.dir.display().to_string())
                        .labelled_by(label.id);
                    if ui
                        .add_enabled(editable, egui::Button::new(tr.get(T::ChooseFolder)))
                        .on_disabled_hover_text(tr.get(T::StopToChange))
                        .clicked()
                    {
                        actions.push(Action::PickFolder);
                    }
                });
                ui.end_row();
                ui.label(tr.get(T::AcceptPolicy));
                // Applies at once: a running server is told, a later start takes it along.
                ui.horizontal_wrapped(|ui| {
                    for (choice, text) in PolicyChoice::ALL.into_iter().zip([
                        T::PolicyAsk,
                        T::PolicyTrusted,
                        T::PolicyEveryone,
                    ]) {
                        if ui
                            .radio_value(&mut self.policy, choice, tr.get(text))
                            .changed()
                        {
                            actions.push(Action::Engine(Command::SetPolicy(choice.policy())));
                        }
                    }
                });
                ui.end_row();
                ui.label(tr.get(T::LocalSendBadge));
                ui.vertical(|ui| {
                    // Applies at once: a running receiver starts or stops.
                    if ui
                        .checkbox(&mut self.localsend, tr.get(T::ReceiveLocalSend))
                        .changed()
                    {
                        actions.push(Action::LocalSendChanged);
                    }
                    self.localsend_status_ui(ui, tr);
                    if ui
                        .checkbox(&mut self.localsend_sweep, tr.get(T::LocalSendSweep))
                        .changed()
                    {
                        actions.push(Action::LocalSendChanged);
                    }
                    ui.horizontal(|ui| {
                        let label = ui.label(tr.get(T::LocalSendPin));
                        let field = ui
                            .add(
                                egui::TextEdit::singleline(&mut self.localsend_pin)
                                    .desired_width(100.0),
                            )
                            .labelled_by(label.id)
                            .on_hover_text(tr.get(T::LocalSendPinHint));
                        // Applied when the field is left, not at every key (a new PIN
                        // starts the receiver again).
                        if field.lost_focus() {
                            actions.push(Action::LocalSendChanged);
                        }
                    });
                });
                ui.end_row();
            });
        ui.label(RichText::new(tr.get(T::PolicyHint)).small().weak());
        if let Some((count, bytes)) = self.expired {
            ui.label(
                RichText::new(tr.fill(T::PartialsExpired, &[&count, &bytes]))
                    .small()
                    .weak(),
            );
        }
        ui.separator();
        let (trust_actions, send_to) = self.trust.ui(ui, tr, self.is_listening());
        actions.extend(trust_actions);
        actions.extend(send_to.map(Action::SendTo));
        egui::CollapsingHeader::new(tr.get(T::Advanced))
            .id_salt("server_advanced")
            .default_open(false)
            .show(ui, |ui| self.advanced_ui(ui, tr, editable));
        ui.separator();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    self.withdrawn.is_some() || self.rows.iter().any(|r| r.state.is_finished()),
                    egui::Button::new(tr.get(T::ClearFinished)),
                )
                .clicked()
            {
                let finished = |r: &TransferRow| r.state.is_finished();
                table::remove_rows(ui.ctx(), Direction::Incoming, &mut self.rows, finished);
                self.withdrawn = None;
            }
        });
        if let Some((offer_id, peer)) = self.withdrawn {
            ui.label(
                RichText::new(tr.fill(T::OfferWithdrawn, &[&offer_id, &peer])).color(palette::WARN),
            );
        }
        if self.rows.is_empty() {
            ui.label(RichText::new(tr.get(T::NoIncoming)).weak());
        } else {
            match transfer_table_ui(ui, tr, &self.rows, Direction::Incoming) {
                Some(RowAction::OpenFolder(id)) => {
                    if let Some(dir) = folder_rows::find_row(&self.rows, id)
                        .and_then(|r| r.path.as_ref()?.parent().map(PathBuf::from))
                    {
                        actions.push(Action::Engine(Command::OpenFolder(dir)));
                    }
                }
                Some(RowAction::Open(id)) => {
                    // opener opens a file with its default application as well as a folder.
                    if let Some(path) = self.saved_path(id) {
                        actions.push(Action::Engine(Command::OpenFolder(path)));
                    }
                }
                Some(RowAction::CopyPath(id)) => {
                    if let Some(path) = self.saved_path(id) {
                        ui.ctx().copy_text(path.display().to_string());
                    }
                }
                Some(RowAction::Cancel(id)) => {
                    let id = folder_rows::cancel_target(&self.rows, id);
                    actions.push(Action::Engine(Command::Cancel(id)))
                }
                Some(RowAction::Toggle(id)) => folder_rows::toggle(&mut self.rows, id),
                Some(RowAction::Remove(_) | RowAction::Retry(_)) | None => {}
            }
        }
        actions
    }

    /// Whether LocalSend receiving is on (its port and fingerprint), or off and why.
    fn localsend_status_ui(&self, ui: &mut Ui, tr: Tr) {
        match (&self.localsend_status, self.is_listening()) {
            (
                Some(LocalSendStatus::On {
                    addr,
                    addr_v6,
                    fingerprint,
                    ..
                }),
                true,
            ) => {
                // Both listeners, as `ferry serve` prints them.
                let addrs = match addr_v6 {
                    Some(v6) => format!("{addr}, {v6}"),
                    None => addr.to_string(),
                };
                ui.label(
                    RichText::new(tr.fill(T::LocalSendOn, &[&addrs, fingerprint]))
                        .small()
                        .color(palette::OK),
                );
            }
            (
                Some(LocalSendStatus::Off {
                    reason: Some(reason),
                }),
                _,
            ) => {
                ui.label(
                    RichText::new(tr.fill(T::LocalSendFailed, &[reason]))
                        .small()
                        .color(palette::ERROR),
                );
            }
            _ if self.localsend => {
                ui.label(RichText::new(tr.get(T::LocalSendHint)).small().weak());
            }
            _ => {
                ui.label(RichText::new(tr.get(T::LocalSendOff)).small().weak());
            }
        }
    }

    /// Bind address, port, idle timeout, LocalSend's port and direct writes: rarely
    /// changed, so folded away.
    fn advanced_ui(&mut self, ui: &mut Ui, tr: Tr, editable: bool) {
        egui::Grid::new("server_advanced_grid")
            .num_columns(2)
            .spacing([10.0, 8.0])
            .show(ui, |ui| {
                let label = ui.label(tr.get(T::BindAddress));
                ui.add_enabled(
                    editable,
                    egui::TextEdit::singleline(&mut self.bind).desired_width(140.0),
                )
                .on_disabled_hover_text(tr.get(T::StopToChange))
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label(tr.get(T::Port));
                ui.add_enabled(
                    editable,
                    egui::TextEdit::singleline(&mut self.port).desired_width(80.0),
                )
                .on_disabled_hover_text(tr.get(T::StopToChange))
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label(tr.get(T::IdleTimeout));
                ui.add_enabled(
                    editable,
                    egui::TextEdit::singleline(&mut self.idle_timeout_secs).desired_width(80.0),
                )
                .on_disabled_hover_text(tr.get(T::StopToChange))
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label(tr.get(T::LocalSendPort));
                ui.add_enabled(
                    editable,
                    egui::TextEdit::singleline(&mut self.localsend_port).desired_width(80.0),
                )
                .on_disabled_hover_text(tr.get(T::StopToChange))
                .labelled_by(label.id);
                ui.end_row();
            });
        ui.add_enabled(
            editable,
            egui::Checkbox::new(&mut self.direct_io, tr.get(T::DirectIo)),
        )
        .on_hover_text(tr.get(T::DirectIoHint))
        .on_disabled_hover_text(tr.get(T::StopToChange));
    }

    /// Validates the fields and asks the engine to listen.
    pub fn start(&mut self) -> Option<Action> {
        let Ok(bind) = self.bind.trim().parse::<IpAddr>() else {
            self.input_error = Some(T::InvalidBind);
            return None;
        };
        let Ok(port) = self.port.trim().parse::<u16>() else {
            self.input_error = Some(T::InvalidPort);
            return None;
        };
        let idle_timeout_secs = match self.idle_timeout_secs.trim().parse::<u64>() {
            Ok(secs) if IDLE_TIMEOUT_SECS.contains(&secs) => secs,
            _ => {
                self.input_error = Some(T::InvalidIdleTimeout);
                return None;
            }
        };
        if self.localsend && self.localsend_port().is_none() {
            self.input_error = Some(T::InvalidLocalSendPort);
            return None;
        }
        self.input_error = None;
        self.status = ServerStatus::Starting;
        let mut config = ServerConfig::new(bind, port, self.dir.clone());
        config.idle_timeout = Duration::from_secs(idle_timeout_secs);
        config.policy = self.policy.policy();
        config.direct_io = self.direct_io;
        Some(Action::Engine(Command::StartServer(Box::new(config))))
    }

    /// Where a finished incoming file was saved.
    fn saved_path(&self, id: crate::events::TransferId) -> Option<PathBuf> {
        folder_rows::find_row(&self.rows, id)?.path.clone()
    }

    pub fn active(&self) -> impl Iterator<Item = &TransferRow> {
        self.rows.iter().filter(|r| r.state == RowState::Active)
    }
}
