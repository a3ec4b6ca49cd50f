//! The Client tab: where to send (and, to pair, the receiver's code), which files, and how
//! each upload is doing. A destination picked as a trusted device (from the trusted list, the
//! Devices list or the recent menu) carries that device's key: the upload is refused if
//! another device answers at that address. Files a LocalSend device refused for want of a
//! PIN (401) get a PIN field and "Send with PIN", which sends them again with it; 429 says
//! there were too many PIN attempts. A LocalSend device with encryption off gets nothing
//! until "Send unencrypted to this device" is ticked ([`super::unencrypted`]).

use std::path::PathBuf;

use egui::{RichText, Ui};

use super::Action;
use super::folder_rows;
use super::i18n::{T, Tr};
use super::model::{RowState, TransferRow};
use super::palette;
use super::pin_prompt::pin_prompt;
use super::settings::remember;
use super::speed_panel::{SpeedTest, speed_ui};
use super::table::{self, RowAction, transfer_table_ui};
use super::unencrypted::EncryptionOff;
use crate::defaults::DestinationError;
use crate::events::{
    Direction, FailureKind, PinProblem, TransferId, TrustedPeer, next_transfer_id,
};
use crate::protocol::Mode;
use crate::secure::pairing::PairingCode;
use crate::transfer::{OutgoingFile, OutgoingFolder, SendOptions};
use crate::worker::Command;

pub struct ClientTab {
    pub dest: String,
    pub recent: Vec<String>,
    pub msg: String,
    pub plain: bool,
    pub rows: Vec<TransferRow>,
    /// Why the last Upload click did nothing, or why a pick failed.
    pub notice: Option<String>,
    /// The receiver's pairing code as typed (empty: no pairing).
    pub code: String,
    /// The trusted device picked as the destination: its address, name and key. Used while
    /// the destination field still says that address.
    pub expected: Option<(String, String, [u8; 32])>,
    /// The trusted devices, as the engine last said.
    pub trusted: Vec<TrustedPeer>,
    /// The last speed test.
    pub speed: SpeedTest,
    /// The PIN typed for a LocalSend device that asked for one (never kept).
    pub localsend_pin: String,
    /// The destination, when it is a LocalSend device with encryption off (set each frame).
    pub encryption_off: Option<EncryptionOff>,
}

/// A field never narrower than this, however small the window (it then scrolls sideways).
const MIN_FIELD_WIDTH: f32 = 120.0;

/// A field's width: `wanted`, or less in a narrow window, so that it and `beside` (what
/// follows it on its line) end at the tab's right edge rather than past it.
fn field_width(ui: &Ui, wanted: f32, beside: f32) -> f32 {
    // The field's own frame adds its padding on both sides to the width asked for.
    let padding = 2.0 * ui.spacing().button_padding.x;
    let room = ui.available_width() - beside - padding;
    room.min(wanted).max(MIN_FIELD_WIDTH)
}

impl ClientTab {
    pub fn new(dest: String, recent: Vec<String>, msg: String, plain: bool) -> Self {
        Self {
            dest,
            recent,
            msg,
            plain,
            rows: Vec::new(),
            notice: None,
            code: String::new(),
            expected: None,
            trusted: Vec::new(),
            speed: SpeedTest::None,
            localsend_pin: String::new(),
            encryption_off: None,
        }
    }

    /// Makes `dest` the destination; if a trusted device was last seen there (or `key` names
    /// one), the upload will insist on that device's key.
    pub fn pick_dest(&mut self, dest: String, key: Option<[u8; 32]>) {
        let device = self.trusted.iter().find(|t| match key {
            Some(key) => t.public_key == key,
            None => t.last_address.as_deref() == Some(dest.as_str()),
        });
        self.expected = device.map(|t| (dest.clone(), t.name.clone(), t.public_key));
        self.dest = dest;
    }

    /// The trusted list's "Send files": its last address, its key.
    pub fn send_to_trusted(&mut self, device: &TrustedPeer) {
        if let Some(addr) = &device.last_address {
            self.pick_dest(addr.clone(), Some(device.public_key));
        }
    }

    /// The key the upload to `dest` must meet, when a trusted device was picked there.
    fn expected_key(&self, dest: &str) -> Option<[u8; 32]> {
        let (addr, _, key) = self.expected.as_ref()?;
        (addr == dest).then_some(*key)
    }

    /// Adds picked or dropped files (already checked to be files, with their sizes).
    pub fn add_files(&mut self, files: Vec<(PathBuf, u64)>) {
        for (path, size) in files {
            self.rows
                .push(TransferRow::queued(next_transfer_id(), path, size));
        }
        self.notice = None;
    }

    /// Adds a picked or dropped folder (already walked) as one row.
    pub fn add_folder(&mut self, path: PathBuf, folder: OutgoingFolder) {
        self.rows.push(TransferRow::queued_folder(path, folder));
        self.notice = None;
    }

    #[must_use]
    pub fn ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let mut actions = Vec::new();
        egui::Grid::new("client_settings")
            .num_columns(2)
            .spacing([10.0, 8.0])
            .show(ui, |ui| {
                let label = ui.label(tr.get(T::Destination));
                ui.horizontal(|ui| {
                    // Room for "Recent" beside it.
                    let recent_width = if self.recent.is_empty() { 0.0 } else { 80.0 };
                    ui.add(
                        egui::TextEdit::singleline(&mut self.dest)
                            .desired_width(field_width(ui, 220.0, recent_width))
                            .hint_text("192.168.1.20:8080"),
                    )
                    .labelled_by(label.id);
                    if !self.recent.is_empty() {
                        let mut picked = None;
                        ui.menu_button(tr.get(T::Recent), |ui| {
                            for recent in &self.recent {
                                if ui.button(recent).clicked() {
                                    picked = Some(recent.clone());
                                    ui.close();
                                }
                            }
                        });
                        if let Some(dest) = picked {
                            self.pick_dest(dest, None);
                        }
                    }
                });
                ui.end_row();
                let label = ui.label(tr.get(T::ClientCode));
                ui.add(
                    egui::TextEdit::singleline(&mut self.code)
                        .desired_width(field_width(ui, 220.0, 0.0))
                        .hint_text("0427-otter-maple-drum"),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label(tr.get(T::Message));
                let width = field_width(ui, 320.0, 0.0);
                ui.add(egui::TextEdit::singleline(&mut self.msg).desired_width(width))
                    .labelled_by(label.id);
                ui.end_row();
            });
        if let Some((_, name, _)) = self
            .expected
            .as_ref()
            .filter(|(addr, ..)| *addr == self.dest.trim())
        {
            ui.label(
                RichText::new(tr.fill(T::SendingToTrusted, &[name]))
                    .small()
                    .color(palette::OK),
            );
        }
        if let Some(off) = &self.encryption_off {
            actions.extend(off.ui(ui, tr));
        }
        ui.checkbox(&mut self.plain, tr.get(T::PlainPeer));
        ui.add_space(6.0);
        // Wrapped: in a narrow window the drop hint goes below the buttons, not off the edge.
        ui.horizontal_wrapped(|ui| {
            if ui.button(tr.get(T::ChooseFiles)).clicked() {
                actions.push(Action::PickFiles);
            }
            if ui.button(tr.get(T::ChooseFolder)).clicked() {
                actions.push(Action::PickSendFolder);
            }
            ui.label(RichText::new(tr.get(T::DropHint)).weak());
        });
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let queued = self.rows.iter().any(|r| r.state == RowState::Queued);
            if ui
                .add_enabled(
                    queued,
                    egui::Button::new(RichText::new(tr.get(T::Upload)).strong()),
                )
                .clicked()
                && let Some(action) = self.upload(tr)
            {
                actions.push(action);
            }
            if ui
                .add_enabled(
                    self.rows.iter().any(|r| r.state.is_finished()),
                    egui::Button::new(tr.get(T::ClearQueue)),
                )
                .clicked()
            {
                let finished = |r: &TransferRow| r.state.is_finished();
                table::remove_rows(ui.ctx(), Direction::Outgoing, &mut self.rows, finished);
            }
            if ui
                .add_enabled(
                    !self.speed.running() && !self.plain,
                    egui::Button::new(tr.get(T::TestSpeed)),
                )
                .clicked()
                && let Some(action) = self.test_speed(tr)
            {
                actions.push(action);
            }
        });
        speed_ui(ui, tr, &self.speed);
        if let Some(notice) = &self.notice {
            ui.label(RichText::new(notice).color(palette::ERROR));
        }
        actions.extend(self.pin_ui(ui, tr));
        ui.separator();
        if self.rows.is_empty() {
            ui.label(RichText::new(tr.get(T::EmptyQueue)).weak());
        } else {
            match transfer_table_ui(ui, tr, &self.rows, Direction::Outgoing) {
                Some(RowAction::Cancel(id)) => {
                    let id = folder_rows::cancel_target(&self.rows, id);
                    actions.push(Action::Engine(Command::Cancel(id)))
                }
                Some(RowAction::Toggle(id)) => folder_rows::toggle(&mut self.rows, id),
                Some(RowAction::Remove(id)) => {
                    let rows = &mut self.rows;
                    table::remove_rows(ui.ctx(), Direction::Outgoing, rows, |r| r.id == id);
                }
                Some(RowAction::Retry(id)) => actions.extend(self.retry(id)),
                Some(RowAction::OpenFolder(_) | RowAction::Open(_) | RowAction::CopyPath(_))
                | None => {}
            }
        }
        actions
    }

    /// Sends every queued file and folder over one connection.
    pub(super) fn upload(&mut self, tr: Tr) -> Option<Action> {
        let dest = self.destination(tr)?;
        // Nothing goes in the clear to a LocalSend device unless the user agreed.
        if let Some(refusal) = self.encryption_off.as_ref().and_then(|off| off.refusal(tr)) {
            self.notice = Some(refusal);
            return None;
        }
        let mode = if self.plain { Mode::Plain } else { Mode::Ferry };
        // A code that cannot be one is refused here, before anything is sent.
        let code = match self.code.trim() {
            "" => None,
            typed => match PairingCode::parse(typed) {
                Ok(code) => Some(code),
                Err(e) => {
                    self.notice = Some(tr.fill(T::BadCode, &[&e]));
                    return None;
                }
            },
        };
        let mut items = Vec::new();
        for row in self.rows.iter_mut().filter(|r| r.state == RowState::Queued) {
            let Some(item) = super::logic::item_of(row) else {
                continue;
            };
            let on_its_way = |row: &mut TransferRow| {
                row.state = RowState::Active;
                row.mode = mode;
                row.msg = self.msg.clone();
                row.dest = Some(dest.clone());
            };
            on_its_way(row);
            for child in row.folder.iter_mut().flat_map(|g| g.children.iter_mut()) {
                on_its_way(child);
            }
            items.push(item);
        }
        if items.is_empty() {
            self.notice = Some(tr.get(T::NothingToUpload).to_owned());
            return None;
        }
        self.notice = None;
        remember(&mut self.recent, &dest);
        let mut opts = SendOptions::new(dest.clone());
        opts.msg = self.msg.clone();
        opts.mode = mode;
        opts.expect_key = self.expected_key(&dest);
        // A code is good for one pairing: the next upload goes without it.
        if code.is_some() {
            self.code.clear();
        }
        opts.code = code;
        let opts = Box::new(opts);
        // Files only: the command LocalSend devices take as well.
        let files: Option<Vec<OutgoingFile>> = items
            .iter()
            .map(|item| match item {
                crate::transfer::OutgoingItem::File(file) => Some(file.clone()),
                crate::transfer::OutgoingItem::Folder(_) => None,
            })
            .collect();
        Some(Action::Engine(match files {
            Some(files) => Command::Send { opts, files },
            None => Command::SendItems { opts, items },
        }))
    }

    /// Files of `batch` went to a LocalSend device, which carries no message with files: their
    /// rows drop the message they were given, and the notice says it was not sent.
    pub(super) fn message_not_sent(&mut self, batch: &crate::localsend::LocalSendBatch, tr: Tr) {
        let sent = |id: TransferId| batch.files.iter().any(|(file, _)| file.id == id);
        for row in &mut self.rows {
            let children = row.folder.iter().flat_map(|g| g.children.iter());
            if sent(row.id) || children.map(|c| c.id).any(sent) {
                row.msg.clear();
                for child in row.folder.iter_mut().flat_map(|g| g.children.iter_mut()) {
                    child.msg.clear();
                }
            }
        }
        self.notice = Some(tr.get(T::LocalSendNoMessage).to_owned());
    }

    /// The destination as typed, or `None` with a notice in the window's language saying
    /// what is wrong with it: missing, without a port, or what `ferry send` refuses before
    /// any lookup (no host, a port out of range, spaces in a name, a number the system
    /// would read as another address, an interface that is not here). The engine would
    /// fail each of them anyway, in English, after the row had started.
    fn destination(&mut self, tr: Tr) -> Option<String> {
        let dest = self.dest.trim().to_owned();
        if dest.is_empty() || !dest.contains(':') {
            self.notice = Some(tr.get(T::NeedDestination).to_owned());
            return None;
        }
        match crate::defaults::parse_destination(&dest) {
            Ok(_) => Some(dest),
            Err(e) => {
                self.notice = Some(destination_problem(tr, &e));
                None
            }
        }
    }

    /// Starts a speed test to the destination (Ferry receivers only; nothing is saved there).
    pub(super) fn test_speed(&mut self, tr: Tr) -> Option<Action> {
        let dest = self.destination(tr)?;
        self.notice = None;
        let mut opts = SendOptions::new(dest.clone());
        opts.expect_key = self.expected_key(&dest);
        self.speed = SpeedTest::Running { to: dest };
        Some(Action::Engine(Command::TestSpeed(Box::new(opts))))
    }

    /// Sends a failed or cancelled row's file again, under a new id, to where it went
    /// before, in the same mode and with the same message (not the fields' current values).
    /// A Ferry receiver that kept the interrupted upload's part resumes it.
    fn retry(&mut self, id: TransferId) -> Option<Action> {
        let row = self.rows.iter_mut().find(|r| r.id == id && r.retryable())?;
        let (path, dest) = (row.path.clone()?, row.dest.clone()?);
        row.restart(next_transfer_id());
        let mut opts = SendOptions::new(dest.clone());
        opts.msg = row.msg.clone();
        opts.mode = row.mode;
        let (id, expect_key) = (row.id, self.expected_key(&dest));
        opts.expect_key = expect_key;
        self.notice = None;
        Some(Action::Engine(Command::Send {
            opts: Box::new(opts),
            files: vec![OutgoingFile {
                id,
                path,
                identity: None,
            }],
        }))
    }

    /// The worst PIN problem among the rows: a PIN asked for (or refused) before too many
    /// tries.
    fn pin_problem(&self) -> Option<PinProblem> {
        let problems = self.rows.iter().filter_map(|r| match &r.state {
            RowState::Failed(f) => match f.kind {
                FailureKind::Pin(problem) => Some(problem),
                _ => None,
            },
            _ => None,
        });
        problems.max_by_key(|p| match p {
            PinProblem::Required => 0,
            PinProblem::Wrong => 1,
            PinProblem::TooManyTries => 2,
        })
    }

    /// The PIN notice: what the device said, and (unless it refuses for a while) a PIN
    /// field with "Send with PIN".
    fn pin_ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let Some(problem) = self.pin_problem() else {
            return Vec::new();
        };
        let labels = (T::LocalSendPinField, T::SendWithPin);
        match pin_prompt(ui, tr, problem, &mut self.localsend_pin, labels) {
            true => self.send_with_pin(),
            false => Vec::new(),
        }
    }

    /// Sends the files refused for want of a PIN again, with the PIN typed, one send per
    /// destination.
    pub(super) fn send_with_pin(&mut self) -> Vec<Action> {
        let pin = self.localsend_pin.trim().to_owned();
        if pin.is_empty() {
            return Vec::new();
        }
        let mut sends: Vec<(String, Vec<OutgoingFile>)> = Vec::new();
        for row in self.rows.iter_mut() {
            let wants_pin = matches!(
                &row.state,
                RowState::Failed(f)
                    if matches!(f.kind, FailureKind::Pin(PinProblem::Required | PinProblem::Wrong))
            );
            if !wants_pin || !row.retryable() {
                continue;
            }
            let (Some(path), Some(dest)) = (row.path.clone(), row.dest.clone()) else {
                continue;
            };
            row.restart(next_transfer_id());
            let file = OutgoingFile {
                id: row.id,
                path,
                identity: None,
            };
            match sends.iter_mut().find(|(d, _)| *d == dest) {
                Some((_, files)) => files.push(file),
                None => sends.push((dest, vec![file])),
            }
        }
        self.notice = None;
        sends
            .into_iter()
            .map(|(dest, files)| Action::SendWithPin {
                dest,
                files,
                pin: pin.clone(),
            })
            .collect()
    }

    pub fn active(&self) -> impl Iterator<Item = &TransferRow> {
        self.rows.iter().filter(|r| r.state == RowState::Active)
    }
}

/// What is wrong with a typed destination, in the window's language.
fn destination_problem(tr: Tr, e: &DestinationError) -> String {
    match e {
        DestinationError::Empty => tr.get(T::NeedDestination).to_owned(),
        DestinationError::NoHost { typed } => tr.fill(T::DestNoHost, &[typed]),
        DestinationError::BadPort { port, .. } => tr.fill(T::DestBadPort, &[port]),
        DestinationError::BadHost { typed } => tr.fill(T::DestBadHost, &[typed]),
        DestinationError::NumericShorthand { host } => tr.fill(T::DestShorthand, &[host]),
        DestinationError::NoSuchInterface { zone, .. } => tr.fill(T::DestNoInterface, &[zone]),
    }
}
