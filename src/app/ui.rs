//! The window's drawing, apart from its logic ([`super::logic`]): the tab bar, the panels
//! and the status bar, read from the state. Clicks become [`Action`]s, applied after the frame
//! is laid out.

use std::path::PathBuf;

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use super::i18n::{Lang, T, Tr};
use super::logic::files_and_folders;
use super::model::format_bytes;
use super::settings::ThemeChoice;
use super::{Action, FerryApp, ServerStatus, Tab, TransferRow};

/// Upload the queue (Client tab).
pub const UPLOAD_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
/// Put the cursor in the note box (opening the Notes panel).
pub const NOTE_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::L);

impl FerryApp {
    /// Files and folders dropped onto the window join the client queue (sizes are looked up and
    /// folders walked off-thread).
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
            self.in_background(move || files_and_folders(dropped));
        }
    }

    /// Draws the whole window into `ui` (also what the headless tests drive).
    pub fn ui(&mut self, ui: &mut Ui) {
        let tr = Tr(self.lang);
        // Before anything can upload or send a note: whether the destination is a LocalSend
        // device with encryption off, and whether the user agreed to send to it unencrypted.
        self.client.encryption_off = self.devices.encryption_off(&self.client.dest);
        self.notes.encryption_off = self.devices.encryption_off(&self.notes.peer);
        self.take_dropped_files(ui);
        self.window_focused = ui.input(|i| i.focused);
        let mut actions = self.shortcuts(ui, tr);
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(tr.get(T::AppTitle));
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Server, tr.get(T::ServerTab));
                ui.selectable_value(&mut self.tab, Tab::Client, tr.get(T::ClientTab));
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.top_bar_settings_ui(ui, tr);
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
            // A small window (or one with the Notes panel open) scrolls down to the transfers
            // instead of cutting off everything below the settings.
            egui::ScrollArea::vertical()
                .id_salt(("tab", self.tab == Tab::Server))
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let tab_actions = match self.tab {
                        Tab::Server => self.server.ui(ui, tr),
                        Tab::Client => {
                            let mut actions = self.devices_ui(ui, tr);
                            actions.extend(self.client.ui(ui, tr));
                            actions
                        }
                    };
                    actions.extend(tab_actions);
                });
        });
        // Over whichever tab is open: a sender is waiting for the answer.
        actions.extend(self.server.offers.show(ui.ctx(), tr));
        for action in actions {
            self.apply(action);
        }
        if let Some(chosen) = self.browser.show(ui.ctx(), tr) {
            self.apply_chosen(chosen);
        }
    }

    /// The Devices section; a clicked device becomes the destination and the notes peer.
    fn devices_ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let link = self
            .server
            .is_listening()
            .then(|| self.server.reachable.first())
            .flatten()
            .map(|addr| format!("ferry://{addr}"));
        let (actions, pick) = self.devices.ui(ui, tr, link);
        if let Some(pick) = pick {
            let key = pick.trusted.and_then(|fingerprint| {
                let trusted = self.client.trusted.iter();
                let mut same = trusted.filter(|t| t.fingerprint == fingerprint);
                same.next().map(|t| t.public_key)
            });
            self.client.pick_dest(pick.dest, key);
            self.notes.peer_key = key.map(|key| (pick.note_peer.clone(), key));
            self.notes.peer = pick.note_peer;
        }
        ui.separator();
        actions
    }

    /// Ctrl+Enter uploads (Client tab), Ctrl+L goes to the note box.
    fn shortcuts(&mut self, ui: &Ui, tr: Tr) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.tab == Tab::Client && ui.input_mut(|i| i.consume_shortcut(&UPLOAD_SHORTCUT)) {
            actions.extend(self.client.upload(tr));
        }
        if ui.input_mut(|i| i.consume_shortcut(&NOTE_SHORTCUT)) {
            self.set_notes_open(true);
            self.notes.focus_requested = true;
        }
        actions
    }

    fn set_notes_open(&mut self, open: bool) {
        self.notes_open = open;
        if open {
            self.unseen_notes = 0;
        }
    }

    /// Right side of the top bar (drawn right to left): Notes, language, theme, notifications.
    fn top_bar_settings_ui(&mut self, ui: &mut Ui, tr: Tr) {
        let notes_label = match self.unseen_notes {
            0 => tr.get(T::Notes).to_owned(),
            n => tr.fill(T::NotesUnseen, &[&n]),
        };
        let mut open = self.notes_open;
        if ui.toggle_value(&mut open, notes_label).changed() {
            self.set_notes_open(open);
        }
        // Separators keep each choice beside its own label; drawn right to left, so each
        // choice comes before its label in code and the label reads first on screen.
        ui.separator();
        let language = egui::ComboBox::from_id_salt("language")
            .selected_text(self.lang.native_name())
            .show_ui(ui, |ui| {
                for lang in [Lang::En, Lang::ZhCn] {
                    ui.selectable_value(&mut self.lang, lang, lang.native_name());
                }
            })
            .response;
        let label = ui.label(tr.get(T::Language));
        language.labelled_by(label.id);
        let theme_name = |theme: ThemeChoice| match theme {
            ThemeChoice::System => tr.get(T::ThemeSystem),
            ThemeChoice::Light => tr.get(T::ThemeLight),
            ThemeChoice::Dark => tr.get(T::ThemeDark),
        };
        ui.separator();
        let before = self.theme;
        let theme = egui::ComboBox::from_id_salt("theme")
            .selected_text(theme_name(self.theme))
            .show_ui(ui, |ui| {
                for theme in ThemeChoice::ALL {
                    ui.selectable_value(&mut self.theme, theme, theme_name(theme));
                }
            })
            .response;
        let label = ui.label(tr.get(T::Theme));
        theme.labelled_by(label.id);
        if self.theme != before {
            ui.ctx().set_theme(self.theme.preference());
        }
        ui.separator();
        ui.checkbox(&mut self.notifications, tr.get(T::NotifySetting))
            .on_hover_text(tr.get(T::NotifySettingHint));
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
