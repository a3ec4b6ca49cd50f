//! The Notes panel beside both tabs: my notes port, a peer, the history, and a text box where
//! Enter sends and Shift+Enter adds a line. Each note says whether it was encrypted and by (or
//! for) which trusted device, and a plain one says "not encrypted" in a colour that stands
//! out. Replying to an encrypted note is encrypted: the engine seals notes to the address a
//! trusted device's sealed note came from (see [`crate::notes::sealed`]). A note a LocalSend
//! device refused for want of a PIN shows a PIN field and "Send note with PIN" (or, after
//! too many tries, says the device refuses for a while), as the Client tab does for files;
//! one with encryption off gets a note only once "Send unencrypted to this device" is ticked.
//!
//! The notes socket binds the Server tab's bind address (as `ferry listen --bind` does), so a
//! window told to listen on 127.0.0.1 or one interface does not take notes on the others;
//! when the server starts on another address, the notes socket moves there too. A bind
//! address that is not an IP address leaves the notes socket off and says so, rather than
//! listening everywhere.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::palette;
use super::pin_prompt::pin_prompt;
use super::unencrypted::EncryptionOff;
use crate::events::{Direction, NoteEvent, PinProblem, Security};
use crate::notes::{NoteHistory, NotesConfig};
use crate::protocol::{MAX_NOTE_BYTES, NoteWarning, check_note};
use crate::worker::Command;

/// Whether the notes socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotesStatus {
    Off,
    Listening(SocketAddr),
    /// The port field holds no port (said in the window's language).
    InvalidPort,
    /// The Server tab's bind address is not an IP address: nothing is bound.
    InvalidBind,
    Failed(String),
}

pub struct NotesPanel {
    pub port: String,
    /// The address the notes socket was last asked to bind (the server's bind address).
    pub bind: Option<IpAddr>,
    pub peer: String,
    pub draft: String,
    pub status: NotesStatus,
    pub history: NoteHistory,
    /// The last send error (bad peer address, ...), shown under the text box.
    pub send_error: Option<String>,
    /// Notes dropped because they arrived faster than the window took them (a flood).
    pub dropped: u64,
    /// The last sealed note that did not open (from, reason), and how many did not.
    pub refused: Option<(SocketAddr, String, u64)>,
    /// Put the cursor in the note box on the next frame (Ctrl+L).
    pub focus_requested: bool,
    /// The last note a LocalSend device refused over its PIN, to send again with one.
    pub pin_needed: Option<NotePin>,
    /// The PIN typed for it.
    pub localsend_pin: String,
    /// A trusted device clicked in the Devices list: its notes peer and key. Notes to that
    /// peer (as long as the field still says it) are sealed to the key, wherever the device
    /// moved since its address was saved; typing another peer sends as usual.
    pub peer_key: Option<(String, [u8; 32])>,
    /// The peer, when it is a LocalSend device with encryption off (set each frame): a note
    /// goes to it only once the user agreed.
    pub encryption_off: Option<EncryptionOff>,
}

/// A note a LocalSend device refused over its PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotePin {
    pub to: SocketAddr,
    pub text: String,
    pub problem: PinProblem,
}

impl NotesPanel {
    pub fn new(port: String, peer: String) -> Self {
        Self {
            port,
            bind: None,
            peer,
            draft: String::new(),
            status: NotesStatus::Off,
            history: NoteHistory::new(),
            send_error: None,
            dropped: 0,
            peer_key: None,
            encryption_off: None,
            refused: None,
            focus_requested: false,
            pin_needed: None,
            localsend_pin: String::new(),
        }
    }

    /// The command that binds the notes socket on the configured port at `bind` (the Server
    /// tab's bind address, as typed).
    pub fn listen(&mut self, bind: &str) -> Option<Action> {
        let Ok(bind) = bind.trim().parse::<IpAddr>() else {
            self.bind = None;
            self.status = NotesStatus::InvalidBind;
            return None;
        };
        self.listen_on(bind)
    }

    /// When the server starts on `bind`: binds the notes socket there too, unless it was
    /// already asked to (so a notes port that failed is not tried again for nothing).
    pub fn follow(&mut self, bind: IpAddr) -> Option<Action> {
        if self.bind == Some(bind) {
            return None;
        }
        self.listen_on(bind)
    }

    fn listen_on(&mut self, bind: IpAddr) -> Option<Action> {
        match self.port.trim().parse::<u16>() {
            Ok(port) => {
                self.bind = Some(bind);
                self.status = NotesStatus::Off;
                Some(Action::Engine(Command::StartNotes(NotesConfig::new(
                    bind, port,
                ))))
            }
            Err(_) => {
                self.bind = None;
                self.status = NotesStatus::InvalidPort;
                None
            }
        }
    }

    pub fn apply(&mut self, event: NoteEvent) {
        match event {
            NoteEvent::Listening { addr } => self.status = NotesStatus::Listening(addr),
            NoteEvent::Error { reason } => {
                if matches!(self.status, NotesStatus::Listening(_)) {
                    self.send_error = Some(reason);
                } else {
                    self.status = NotesStatus::Failed(reason);
                }
            }
            NoteEvent::Sent { to, .. } => {
                self.send_error = None;
                if self.pin_needed.as_ref().is_some_and(|p| p.to == to) {
                    self.pin_needed = None;
                }
                self.history.record_event(event);
            }
            NoteEvent::PinNeeded { to, text, problem } => {
                self.send_error = None;
                self.pin_needed = Some(NotePin { to, text, problem });
            }
            NoteEvent::Received { .. } => self.history.record_event(event),
            NoteEvent::Dropped { count } => self.dropped = self.dropped.saturating_add(count),
            NoteEvent::Refused { from, reason, .. } => {
                let count = self.refused.as_ref().map_or(0, |r| r.2);
                self.refused = Some((from, reason, count.saturating_add(1)));
            }
        }
    }

    #[must_use]
    pub fn ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.heading(tr.get(T::Notes));
        ui.horizontal(|ui| {
            let label = ui.label(tr.get(T::MyNotesPort));
            ui.add(egui::TextEdit::singleline(&mut self.port).desired_width(60.0))
                .labelled_by(label.id);
            if ui.button(tr.get(T::NotesStart)).clicked() {
                actions.push(Action::ListenNotes);
            }
        });
        match &self.status {
            NotesStatus::Listening(addr) => {
                ui.label(RichText::new(tr.fill(T::NotesListening, &[addr])).color(palette::OK));
            }
            NotesStatus::Failed(reason) => {
                ui.label(RichText::new(reason).color(palette::ERROR));
            }
            NotesStatus::InvalidPort => {
                ui.label(RichText::new(tr.get(T::InvalidNotesPort)).color(palette::ERROR));
            }
            NotesStatus::InvalidBind => {
                ui.label(RichText::new(tr.get(T::InvalidBind)).color(palette::ERROR));
            }
            NotesStatus::Off => {
                ui.label(tr.get(T::NotesNotListening));
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label(tr.get(T::PeerAddress));
            ui.add(
                egui::TextEdit::singleline(&mut self.peer)
                    .desired_width(160.0)
                    .hint_text("192.168.1.20:8080"),
            )
            .labelled_by(label.id);
        });
        if self.dropped > 0 {
            ui.label(
                RichText::new(tr.fill(T::NotesDropped, &[&self.dropped])).color(palette::WARN),
            );
        }
        if let Some((from, reason, _)) = &self.refused {
            ui.label(RichText::new(tr.fill(T::NoteRefused, &[from, reason])).color(palette::ERROR));
        }
        // Under the peer it is about, above the history: always in view.
        actions.extend(self.pin_ui(ui, tr));
        if let Some(off) = &self.encryption_off {
            actions.extend(off.ui(ui, tr));
        }
        ui.separator();
        let composer_height = 120.0;
        egui::ScrollArea::vertical()
            .max_height((ui.available_height() - composer_height).max(80.0))
            .auto_shrink([false, false])
            .stick_to_bottom(true)
            .show(ui, |ui| {
                if self.history.is_empty() {
                    ui.label(RichText::new(tr.get(T::NoNotes)).weak());
                }
                for entry in self.history.iter() {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(clock(entry.at)).monospace().weak());
                        let (dir, color) = match entry.direction {
                            Direction::Incoming => (tr.get(T::DirIn), palette::INCOMING),
                            Direction::Outgoing => (tr.get(T::DirOut), palette::MUTED),
                        };
                        ui.label(RichText::new(dir).color(color));
                        security_mark(ui, &entry.security, tr);
                        // Clicking a sender fills it in as the peer: one-click reply.
                        if ui
                            .link(entry.peer.to_string())
                            .on_hover_text(tr.get(T::Reply))
                            .clicked()
                        {
                            self.peer = entry.reply_to().to_string();
                        }
                    });
                    ui.add(egui::Label::new(&entry.text).wrap());
                    ui.add_space(4.0);
                }
            });
        ui.separator();
        let label = ui.label(tr.get(T::NoteText));
        let response = ui.add(
            egui::TextEdit::multiline(&mut self.draft)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .hint_text(tr.get(T::NoteHint))
                // Shift+Enter inserts a newline; plain Enter is ours, to send.
                .return_key(KeyboardShortcut::new(Modifiers::SHIFT, Key::Enter)),
        );
        let response = response.labelled_by(label.id);
        if std::mem::take(&mut self.focus_requested) {
            response.request_focus();
        }
        let check = check_note(&self.draft);
        let enter =
            response.has_focus() && ui.input(|i| i.key_pressed(Key::Enter) && !i.modifiers.shift);
        let refusal = self.encryption_off.as_ref().and_then(|off| off.refusal(tr));
        ui.horizontal(|ui| {
            let sendable =
                check.is_ok() && !self.draft.trim().is_empty() && !self.peer.trim().is_empty();
            let clicked = ui
                .add_enabled(sendable, egui::Button::new(tr.get(T::Send)))
                .clicked();
            if sendable && (clicked || enter) {
                if let Some(refusal) = refusal {
                    // Nothing goes in the clear to a LocalSend device unless the user agreed.
                    self.send_error = Some(refusal);
                } else {
                    let to = self.peer.trim().to_owned();
                    actions.push(Action::Engine(Command::SendNote {
                        key: self
                            .peer_key
                            .as_ref()
                            .filter(|(peer, _)| *peer == to)
                            .map(|(_, key)| *key),
                        to,
                        text: std::mem::take(&mut self.draft),
                    }));
                    if enter {
                        response.request_focus();
                    }
                }
            }
            let bytes = self.draft.len();
            match check {
                Err(_) => ui.label(
                    RichText::new(tr.fill(T::NoteTooLong, &[&bytes, &MAX_NOTE_BYTES]))
                        .color(palette::ERROR),
                ),
                Ok(Some(NoteWarning::PlainPeersTruncate { .. })) => {
                    ui.label(RichText::new(tr.fill(T::NoteLong, &[&bytes])).color(palette::WARN))
                }
                Ok(None) => ui.label(RichText::new(tr.fill(T::NoteBytes, &[&bytes])).weak()),
            };
        });
        if let Some(error) = &self.send_error {
            ui.label(RichText::new(error).color(palette::ERROR));
        }
        actions
    }

    /// What the LocalSend device said about its PIN, and (unless it refuses for a while) a
    /// PIN field with "Send note with PIN".
    fn pin_ui(&mut self, ui: &mut Ui, tr: Tr) -> Option<Action> {
        let problem = self.pin_needed.as_ref()?.problem;
        let labels = (T::NotePinField, T::SendNoteWithPin);
        if !pin_prompt(ui, tr, problem, &mut self.localsend_pin, labels) {
            return None;
        }
        // Taken: the answer (sent, or refused again) decides what shows next.
        let note = self.pin_needed.take()?;
        Some(Action::NoteWithPin {
            to: note.to,
            text: note.text,
            pin: self.localsend_pin.trim().to_owned(),
        })
    }
}

/// "encrypted · DEVICE", or "not encrypted" in a colour that stands out.
pub(super) fn security_mark(ui: &mut Ui, security: &Security, tr: Tr) {
    match security {
        Security::Encrypted {
            device,
            fingerprint,
            ..
        } => {
            ui.label(RichText::new(tr.fill(T::NoteEncrypted, &[device])).color(palette::OK))
                .on_hover_text(fingerprint);
        }
        Security::Plain => {
            ui.label(
                RichText::new(tr.get(T::NoteNotEncrypted))
                    .color(palette::NOT_ENCRYPTED)
                    .strong(),
            )
            .on_hover_text(tr.get(T::NoteNotEncryptedHint));
        }
        Security::LocalSend {
            alias,
            fingerprint,
            encrypted: true,
            ..
        } => {
            ui.label(RichText::new(tr.fill(T::LocalSendMark, &[alias])).color(palette::OK))
                .on_hover_text(fingerprint);
        }
        // Sent in plain HTTP to a device with encryption off: as visible as a plain note.
        Security::LocalSend {
            alias,
            encrypted: false,
            ..
        } => {
            ui.label(
                RichText::new(tr.fill(T::LocalSendMarkPlain, &[alias]))
                    .color(palette::NOT_ENCRYPTED)
                    .strong(),
            )
            .on_hover_text(tr.get(T::EncryptionOffHint));
        }
    }
}

/// `HH:MM:SS` of a timestamp in the system's time zone (UTC if it cannot be determined).
fn clock(at: SystemTime) -> String {
    match jiff::Timestamp::try_from(at) {
        Ok(ts) => ts
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%H:%M:%S")
            .to_string(),
        Err(_) => "--:--:--".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use egui_kittest::{Harness, kittest::Queryable};

    use super::*;
    use crate::app::i18n::Lang;

    #[test]
    fn dropped_notes_are_counted_and_shown() {
        let mut panel = NotesPanel::new("0".into(), String::new());
        panel.apply(NoteEvent::Dropped { count: 3 });
        panel.apply(NoteEvent::Dropped { count: 4 });
        assert_eq!(panel.dropped, 7);
        let mut harness = Harness::new_ui_state(
            |ui, panel: &mut NotesPanel| {
                let _ = panel.ui(ui, Tr(Lang::En));
            },
            panel,
        );
        harness.run();
        harness.get_by_label("7 notes were dropped: they arrived faster than they could be shown.");
    }
}
