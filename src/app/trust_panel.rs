//! This device and the devices it trusts, on the Server tab: the device's name (renamable)
//! and fingerprint words, "Pair with code" (the code shown large, with its time and tries
//! left, until it is used, expires or is withdrawn; one that burnt or expired is said so),
//! and the trusted devices (name, fingerprint, last address, last seen; send to, rename,
//! forget).
//!
//! Everything here comes from the engine ([`KeyringEvent`], [`ServerEvent::Pairing`],
//! [`ServerEvent::Paired`]); the panel only draws it and turns clicks into commands.
//!
//! [`ServerEvent::Pairing`]: crate::events::ServerEvent::Pairing
//! [`ServerEvent::Paired`]: crate::events::ServerEvent::Paired

use std::time::{Duration, Instant};

use egui::{RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::model::format_eta;
use super::palette;
use crate::events::{KeyringEvent, PairingEnded, PairingOffer, TrustedPeer};
use crate::worker::Command;

/// How large the pairing code is drawn, so it reads from across a desk.
const CODE_SIZE: f32 = 30.0;

/// The panel's state.
#[derive(Debug, Default)]
pub struct TrustPanel {
    /// This device's name and fingerprint, once the engine said.
    pub name: String,
    pub fingerprint: String,
    /// The name being typed, while renaming this device.
    pub name_edit: Option<String>,
    /// The code on offer, if any.
    pub pairing: Option<PairingOffer>,
    /// The last pairing that succeeded: device name and fingerprint.
    pub paired: Option<(String, String)>,
    /// How the last code ended when nobody paired with it (until a new one is made).
    pub ended: Option<PairingEnded>,
    pub trusted: Vec<TrustedPeer>,
    /// A trusted device being renamed: its name and the new one being typed.
    pub renaming: Option<(String, String)>,
    /// The engine's last complaint (cannot load the identity, rename, forget).
    pub error: Option<String>,
}

impl TrustPanel {
    /// The engine's code on offer, or none; a new one clears how the last one ended.
    pub fn set_pairing(&mut self, offer: Option<PairingOffer>) {
        if offer.is_some() {
            self.ended = None;
        }
        self.pairing = offer;
    }

    /// A sender paired with the code: it is used up, and that is what the panel says.
    pub fn paired(&mut self, device: String, fingerprint: String) {
        self.pairing = None;
        self.ended = None;
        self.paired = Some((device, fingerprint));
    }

    pub fn apply(&mut self, event: KeyringEvent) {
        match event {
            KeyringEvent::ThisDevice { name, fingerprint } => {
                self.name = name;
                self.fingerprint = fingerprint;
                self.error = None;
            }
            KeyringEvent::Trusted(trusted) => self.trusted = trusted,
            KeyringEvent::Error { reason } => self.error = Some(reason),
        }
    }

    /// Draws the section; returns the commands asked for and a trusted device to send to.
    #[must_use]
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        tr: Tr,
        listening: bool,
    ) -> (Vec<Action>, Option<TrustedPeer>) {
        let mut actions = Vec::new();
        self.this_device_ui(ui, tr, &mut actions);
        ui.add_space(4.0);
        self.pairing_ui(ui, tr, listening, &mut actions);
        if let Some(error) = &self.error {
            ui.label(RichText::new(tr.fill(T::KeyringError, &[error])).color(palette::ERROR));
        }
        let mut send_to = None;
        egui::CollapsingHeader::new(tr.get(T::TrustedDevices))
            .id_salt("trusted_devices")
            .default_open(true)
            .show(ui, |ui| send_to = self.trusted_ui(ui, tr, &mut actions));
        (actions, send_to)
    }

    fn this_device_ui(&mut self, ui: &mut Ui, tr: Tr, actions: &mut Vec<Action>) {
        egui::Grid::new("this_device")
            .num_columns(2)
            .spacing([10.0, 6.0])
            .show(ui, |ui| {
                let label = ui.label(tr.get(T::ThisDevice));
                ui.horizontal(|ui| match &mut self.name_edit {
                    Some(edit) => {
                        let label = ui.label(tr.get(T::NewName));
                        ui.add(egui::TextEdit::singleline(edit).desired_width(180.0))
                            .labelled_by(label.id);
                        if ui.button(tr.get(T::Save)).clicked() {
                            let name = edit.trim().to_owned();
                            actions.push(Action::Engine(Command::RenameDevice(name)));
                            self.name_edit = None;
                        } else if ui.button(tr.get(T::Cancel)).clicked() {
                            self.name_edit = None;
                        }
                    }
                    None => {
                        ui.label(RichText::new(&self.name).strong())
                            .labelled_by(label.id);
                        if ui.small_button(tr.get(T::RenameDevice)).clicked() {
                            self.name_edit = Some(self.name.clone());
                        }
                    }
                });
                ui.end_row();
                let label = ui.label(tr.get(T::Fingerprint));
                ui.label(RichText::new(&self.fingerprint).monospace())
                    .labelled_by(label.id);
                ui.end_row();
            });
    }

    fn pairing_ui(&mut self, ui: &mut Ui, tr: Tr, listening: bool, actions: &mut Vec<Action>) {
        match &self.pairing {
            Some(offer) => {
                let left = offer.expires_at.saturating_duration_since(Instant::now());
                ui.horizontal(|ui| {
                    let label = ui.label(tr.get(T::PairingCode));
                    ui.label(
                        RichText::new(&offer.code)
                            .monospace()
                            .size(CODE_SIZE)
                            .strong(),
                    )
                    .labelled_by(label.id);
                });
                ui.label(tr.fill(
                    T::PairingLeft,
                    &[
                        &format_eta(Duration::from_secs(left.as_secs())),
                        &offer.tries_left,
                    ],
                ));
                ui.label(RichText::new(tr.get(T::PairingHint)).small().weak());
                if ui.button(tr.get(T::WithdrawCode)).clicked() {
                    actions.push(Action::Engine(Command::StopPairing));
                }
                // The time left counts down while nothing else happens.
                ui.ctx().request_repaint_after(Duration::from_secs(1));
            }
            None => {
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(listening, egui::Button::new(tr.get(T::PairWithCode)))
                        .clicked()
                    {
                        self.paired = None;
                        self.ended = None;
                        actions.push(Action::Engine(Command::StartPairing));
                    }
                    if !listening {
                        ui.label(RichText::new(tr.get(T::PairListenFirst)).weak());
                    }
                });
                if let Some(ended) = self.ended {
                    let why = match ended {
                        PairingEnded::Burnt => T::PairingBurnt,
                        PairingEnded::Expired => T::PairingExpired,
                    };
                    ui.label(RichText::new(tr.get(why)).color(palette::WARN));
                }
            }
        }
        if let Some((device, fingerprint)) = &self.paired {
            ui.label(
                RichText::new(tr.fill(T::PairedWith, &[device, fingerprint])).color(palette::OK),
            );
        }
    }

    fn trusted_ui(
        &mut self,
        ui: &mut Ui,
        tr: Tr,
        actions: &mut Vec<Action>,
    ) -> Option<TrustedPeer> {
        if self.trusted.is_empty() {
            ui.label(RichText::new(tr.get(T::NoTrusted)).weak());
            return None;
        }
        let mut send_to = None;
        let now_secs = crate::secure::trust::now_unix_secs();
        egui::Grid::new("trusted_grid")
            .num_columns(5)
            .striped(true)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                for col in [
                    T::ColName,
                    T::Fingerprint,
                    T::ColLastAddress,
                    T::ColLastSeen,
                ] {
                    ui.label(RichText::new(tr.get(col)).strong());
                }
                ui.label("");
                ui.end_row();
                for device in &self.trusted {
                    match &mut self.renaming {
                        Some((old, new)) if *old == device.name => {
                            let label = ui.label(tr.get(T::NewName));
                            ui.add(egui::TextEdit::singleline(new).desired_width(140.0))
                                .labelled_by(label.id);
                        }
                        _ => {
                            ui.label(RichText::new(&device.name).strong());
                        }
                    }
                    ui.label(RichText::new(&device.fingerprint).monospace().small());
                    ui.label(match (&device.last_address, device.last_ip) {
                        (Some(address), _) => address.clone(),
                        (None, Some(ip)) => tr.fill(T::LastSeenAtIp, &[&ip]),
                        (None, None) => "-".to_owned(),
                    });
                    ui.label(ago(tr, now_secs.saturating_sub(device.last_seen_unix_secs)));
                    ui.horizontal(|ui| {
                        if let Some((old, new)) = &self.renaming
                            && *old == device.name
                        {
                            if ui.small_button(tr.get(T::Save)).clicked() {
                                actions.push(Action::Engine(Command::RenameTrusted {
                                    old: old.clone(),
                                    new: new.trim().to_owned(),
                                }));
                                self.renaming = None;
                            } else if ui.small_button(tr.get(T::Cancel)).clicked() {
                                self.renaming = None;
                            }
                            return;
                        }
                        if device.last_address.is_some()
                            && ui.small_button(tr.get(T::SendFiles)).clicked()
                        {
                            send_to = Some(device.clone());
                        }
                        if ui.small_button(tr.get(T::RenameDevice)).clicked() {
                            self.renaming = Some((device.name.clone(), device.name.clone()));
                        }
                        if ui.small_button(tr.get(T::Forget)).clicked() {
                            actions
                                .push(Action::Engine(Command::ForgetTrusted(device.name.clone())));
                        }
                    });
                    ui.end_row();
                }
            });
        send_to
    }
}

/// How long ago, in the largest unit that fits.
fn ago(tr: Tr, secs: u64) -> String {
    match secs {
        0..60 => tr.fill(T::SecondsAgo, &[&secs]),
        60..3600 => tr.fill(T::MinutesAgo, &[&(secs / 60)]),
        3600..86_400 => tr.fill(T::HoursAgo, &[&(secs / 3600)]),
        _ => tr.fill(T::DaysAgo, &[&(secs / 86_400)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::i18n::Lang;

    #[test]
    fn last_seen_reads_in_the_largest_unit() {
        let tr = Tr(Lang::En);
        assert_eq!(ago(tr, 5), "5 s ago");
        assert_eq!(ago(tr, 125), "2 min ago");
        assert_eq!(ago(tr, 7200), "2 h ago");
        assert_eq!(ago(tr, 3 * 86_400), "3 d ago");
    }
}
