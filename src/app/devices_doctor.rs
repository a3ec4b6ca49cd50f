//! The Devices section's doctor ("Why can't I see my device?"): what discovery found about
//! each interface, the interfaces it may use (a setting, or `ferry --only-interface` for the
//! run), and a check of a typed address.

use egui::{RichText, Ui};

use super::devices::DevicesPanel;
use super::i18n::{T, Tr};
use super::{Action, doctor_text};
use crate::discovery::Choice;
use crate::worker::Command;

impl DevicesPanel {
    /// Discovery on the interfaces of the "Only these interfaces" setting (`saved`), unless
    /// this run chose its own (`run`: `ferry --only-interface`).
    pub fn with_interfaces(mut self, run: Choice, saved: String) -> Self {
        self.from_run = run != Choice::default();
        self.interfaces = match self.from_run {
            true => run,
            false => Choice::named(&[], &interface_names(&saved)),
        };
        self.only_edit = saved.clone();
        self.only_interfaces = saved;
        self
    }

    /// The interfaces discovery uses.
    pub fn interfaces(&self) -> &Choice {
        &self.interfaces
    }

    /// The run's own choice (`ferry --only-interface`), or the default when the setting
    /// applies.
    pub fn run_interfaces(&self) -> Choice {
        match self.from_run {
            true => self.interfaces.clone(),
            false => Choice::default(),
        }
    }

    /// Whether the run chose the interfaces (the setting is then shown but not used).
    pub fn interfaces_from_run(&self) -> bool {
        self.from_run
    }

    /// Applies what was typed into "Only these interfaces"; true when the interfaces used
    /// changed (discovery must start again with them).
    pub fn apply_only_interfaces(&mut self) -> bool {
        let names = interface_names(&self.only_edit);
        self.only_edit = names.join(", ");
        if self.from_run || self.only_edit == self.only_interfaces {
            return false;
        }
        self.only_interfaces = self.only_edit.clone();
        self.interfaces = Choice::named(&[], &names);
        true
    }

    pub(super) fn doctor_ui(&mut self, ui: &mut Ui, tr: Tr) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.horizontal(|ui| {
            let editable = !self.interfaces_from_run();
            let label = ui.label(tr.get(T::OnlyInterfaces));
            let edit = ui
                .add_enabled(
                    editable,
                    egui::TextEdit::singleline(&mut self.only_edit)
                        .desired_width(160.0)
                        .hint_text("eth0, wlan0"),
                )
                .labelled_by(label.id);
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let clicked = ui
                .add_enabled(editable, egui::Button::new(tr.get(T::ApplyInterfaces)))
                .clicked();
            if (clicked || entered) && self.apply_only_interfaces() {
                // Ferry's discovery and LocalSend's start again on the new interfaces.
                actions.push(Action::Engine(Command::SetDiscovery(self.setup())));
            }
        });
        let hint = match self.interfaces_from_run() {
            true => T::OnlyInterfacesFromRun,
            false => T::OnlyInterfacesHint,
        };
        ui.label(RichText::new(tr.get(hint)).weak().small());
        if self.doctor.is_empty() {
            ui.label(RichText::new(tr.get(T::DoctorIdle)).weak());
        }
        for found in &self.doctor {
            ui.label(
                RichText::new(doctor_text::finding(tr, found))
                    .monospace()
                    .small(),
            );
        }
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let label = ui.label(tr.get(T::CheckAddress));
            ui.add(egui::TextEdit::singleline(&mut self.check_addr).desired_width(200.0))
                .labelled_by(label.id);
            if ui
                .add_enabled(!self.checking, egui::Button::new(tr.get(T::Check)))
                .clicked()
            {
                self.checking = true;
                self.checked = None;
                let target = self.check_addr.trim().to_owned();
                actions.push(Action::Engine(Command::CheckAddress(target)));
            }
            if self.checking {
                ui.spinner();
                ui.label(tr.get(T::Checking));
            }
        });
        if let Some((_, lines)) = &self.checked {
            for found in lines {
                ui.label(
                    RichText::new(doctor_text::finding(tr, found))
                        .monospace()
                        .small(),
                );
            }
        }
        actions
    }
}

/// The interface names in `text`, separated by commas or spaces.
fn interface_names(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}
