//! The Devices section of the Client tab: devices found on the LAN and added by address, this
//! device's `ferry://` link, and the doctor ("Why can't I see my device?"). Clicking a device
//! makes it the destination for files and notes, so nobody has to type an address.
//!
//! The list comes from the engine ([`DiscoveryEvent`]), which runs discovery while the server
//! listens; this panel only draws it and turns clicks into [`Action`]s and picks.
//!
//! LocalSend devices (heard by the LocalSend receiver, or answering a probe of a favourite)
//! are listed too, with a "LocalSend" badge and their device type; picking one makes its
//! address the destination, and uploads and notes to that address go through LocalSend
//! ([`DevicesPanel::localsend_target`]). One with encryption turned off (plain HTTP) is
//! marked "encryption off"; sending to it waits for the user's agreement (see
//! [`super::unencrypted`]), kept here per address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use egui::{RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::palette;
use super::unencrypted::{Agreements, EncryptionOff};
use crate::discovery::Choice;
use crate::events::{
    DiscoveryEvent, Finding, LocalSendProtocol, SeenDevice, SeenLocalSend, SeenState,
};
use crate::localsend::{LOCALSEND_PORT, LocalSendTarget};
use crate::worker::{Command, DiscoverySetup};

/// A long device name is cut to this width, so the columns after it stay in view.
const DEVICE_NAME_MAX_WIDTH: f32 = 130.0;
/// Room between two columns of the devices table (narrow: it must fit the smallest window).
const DEVICE_COLUMN_SPACING: f32 = 8.0;

/// Whether discovery runs, as the engine last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryStatus {
    /// Announcing under this name.
    Running(String),
    /// Not running; `Some` says why it could not start.
    Off(Option<String>),
}

/// A device clicked: the destination for files and the peer for notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub dest: String,
    pub note_peer: String,
    /// A trusted device's fingerprint: the upload then insists on its key.
    pub trusted: Option<String>,
}

pub struct DevicesPanel {
    /// "Find devices on the LAN" (persisted).
    pub enabled: bool,
    /// Added by address (persisted).
    pub favourites: Vec<String>,
    pub devices: Vec<SeenDevice>,
    /// LocalSend devices known to the engine.
    pub localsend: Vec<SeenLocalSend>,
    /// The doctor's report on the interfaces.
    pub doctor: Vec<Finding>,
    pub status: DiscoveryStatus,
    pub add_addr: String,
    pub add_error: bool,
    pub check_addr: String,
    /// The last check: its target and the doctor's findings.
    pub checked: Option<(String, Vec<Finding>)>,
    pub checking: bool,
    /// LocalSend devices with encryption off the user agreed to send unencrypted to (for as
    /// long as the window runs).
    pub unencrypted_agreed: Agreements,
    identity_dir: Option<PathBuf>,
    port: Option<u16>,
    /// "Only these interfaces" as applied (persisted; empty: every LAN interface), and as
    /// being typed.
    pub only_interfaces: String,
    pub only_edit: String,
    /// The interfaces discovery uses: the setting's, or `from_run`, the run's own
    /// (`ferry --only-interface`, `FERRY_ONLY_INTERFACE`), which the setting cannot change.
    pub(super) interfaces: Choice,
    pub(super) from_run: bool,
}

impl DevicesPanel {
    pub fn new(
        enabled: bool,
        favourites: Vec<String>,
        identity_dir: Option<PathBuf>,
        port: Option<u16>,
    ) -> Self {
        Self {
            enabled,
            favourites,
            devices: Vec::new(),
            localsend: Vec::new(),
            doctor: Vec::new(),
            status: DiscoveryStatus::Off(None),
            add_addr: String::new(),
            add_error: false,
            check_addr: String::new(),
            checked: None,
            checking: false,
            unencrypted_agreed: Agreements::default(),
            identity_dir,
            port,
            only_interfaces: String::new(),
            only_edit: String::new(),
            interfaces: Choice::default(),
            from_run: false,
        }
    }

    /// What the engine runs discovery with (`None`: off).
    pub fn setup(&self) -> Option<DiscoverySetup> {
        self.enabled.then(|| DiscoverySetup {
            identity_dir: self.identity_dir.clone(),
            port: self.port,
            choice: self.interfaces.clone(),
            probe: self.favourites.iter().filter_map(|f| host_ip(f)).collect(),
        })
    }

    pub fn apply(&mut self, event: DiscoveryEvent) {
        match event {
            DiscoveryEvent::Announcing { name } => self.status = DiscoveryStatus::Running(name),
            DiscoveryEvent::Devices { devices, doctor } => {
                self.devices = devices;
                self.doctor = doctor;
            }
            DiscoveryEvent::Off { reason } => {
                self.status = DiscoveryStatus::Off(reason);
                self.devices.clear();
                self.doctor.clear();
            }
            DiscoveryEvent::Checked { target, lines } => {
                self.checking = false;
                self.checked = Some((target, lines));
            }
            DiscoveryEvent::LocalSendDevices(devices) => self.localsend = devices,
        }
    }

    /// Where the identities are kept (`None`: the default config folder).
    pub fn identity_dir(&self) -> Option<&PathBuf> {
        self.identity_dir.as_ref()
    }

    /// The favourites LocalSend probes with `POST /register`: each numeric address as typed
    /// and on LocalSend's port (host names are left to typed use).
    pub fn localsend_probes(&self) -> Vec<SocketAddr> {
        let mut probes = Vec::new();
        for favourite in &self.favourites {
            let Some(ip) = host_ip(favourite) else {
                continue;
            };
            if let Ok(addr) = favourite.parse::<SocketAddr>() {
                probes.push(addr);
            }
            let standard = SocketAddr::new(ip, LOCALSEND_PORT);
            if !probes.contains(&standard) {
                probes.push(standard);
            }
        }
        probes
    }

    /// The LocalSend device at `dest` (`host:port` as the destination field holds it). Of
    /// several listed there, the newest HTTPS one, and of those one that proved its
    /// fingerprint with its certificate: one port serves one protocol, and an announcement
    /// at another device's address (anyone on the LAN can send one, with a forged source)
    /// must neither turn its sends into plain ones nor take its place. Sending
    /// over TLS to a plain-HTTP device only fails; a Refresh whose sweep or favourite probe
    /// asks that address forgets the one that is gone (with the sweep off, one only heard
    /// announcing stays listed until the window restarts).
    pub fn localsend_target(&self, dest: &str) -> Option<LocalSendTarget> {
        let addr: SocketAddr = dest.trim().parse().ok()?;
        // `min_by_key` keeps the first of equals: the list is newest first.
        let device = self
            .localsend
            .iter()
            .filter(|d| d.addr == addr)
            .min_by_key(|d| (d.protocol != LocalSendProtocol::Https, !d.proven))?;
        Some(LocalSendTarget {
            addr,
            fingerprint: device.fingerprint.clone(),
            alias: device.alias.clone(),
            device_type: device.device_type.clone(),
            protocol: device.protocol,
        })
    }

    /// When `dest` is a LocalSend device with encryption off: it, and whether the user
    /// agreed to send to it unencrypted.
    pub fn encryption_off(&self, dest: &str) -> Option<EncryptionOff> {
        let target = self.localsend_target(dest)?;
        (target.protocol == LocalSendProtocol::Http).then(|| EncryptionOff {
            agreed: self.unencrypted_agreed(&target),
            addr: target.addr,
            id: target.fingerprint,
            alias: target.alias,
        })
    }

    /// Whether the user agreed to send unencrypted to `target` (that device at that address).
    pub fn unencrypted_agreed(&self, target: &LocalSendTarget) -> bool {
        self.unencrypted_agreed.agreed(target)
    }

    /// Adds the typed `host:port` as a favourite; false (and nothing added) if it is not one.
    pub fn add_favourite(&mut self) -> bool {
        let addr = self.add_addr.trim().to_owned();
        if !is_host_port(&addr) {
            self.add_error = true;
            return false;
        }
        self.add_error = false;
        if !self.favourites.contains(&addr) {
            self.favourites.push(addr);
        }
        self.add_addr.clear();
        true
    }

    /// Draws the section; `link` is this device's `ferry://` link, when listening.
    #[must_use]
    pub fn ui(&mut self, ui: &mut Ui, tr: Tr, link: Option<String>) -> (Vec<Action>, Option<Pick>) {
        let mut actions = Vec::new();
        let mut pick = None;
        egui::CollapsingHeader::new(tr.get(T::Devices))
            .id_salt("devices")
            .default_open(true)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    if ui
                        .checkbox(&mut self.enabled, tr.get(T::FindDevices))
                        .changed()
                    {
                        actions.push(Action::Engine(Command::SetDiscovery(self.setup())));
                    }
                    let running = matches!(self.status, DiscoveryStatus::Running(_));
                    if ui
                        .add_enabled(running, egui::Button::new(tr.get(T::Refresh)))
                        .clicked()
                    {
                        actions.push(Action::Engine(Command::RefreshDevices));
                    }
                });
                self.status_ui(ui, tr);
                ui.horizontal(|ui| {
                    ui.label(tr.get(T::ThisDevice));
                    match &link {
                        Some(link) => {
                            ui.label(RichText::new(link).monospace());
                            if ui.button(tr.get(T::CopyLink)).clicked() {
                                ui.ctx().copy_text(link.clone());
                            }
                        }
                        None => {
                            ui.label(RichText::new(tr.get(T::NoLink)).weak());
                        }
                    }
                });
                pick = self.list_ui(ui, tr);
                ui.horizontal(|ui| {
                    let label = ui.label(tr.get(T::AddByAddress));
                    let edit = ui
                        .add(
                            egui::TextEdit::singleline(&mut self.add_addr)
                                .desired_width(200.0)
                                .hint_text("192.168.1.20:8080"),
                        )
                        .labelled_by(label.id);
                    let entered =
                        edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if (ui.button(tr.get(T::Add)).clicked() || entered) && self.add_favourite() {
                        // Probed by unicast from the next start on.
                        actions.push(Action::Engine(Command::SetDiscovery(self.setup())));
                    }
                });
                if self.add_error {
                    ui.label(RichText::new(tr.get(T::InvalidHostPort)).color(palette::ERROR));
                }
                egui::CollapsingHeader::new(tr.get(T::WhyNotSeen))
                    .id_salt("doctor")
                    .default_open(false)
                    .show(ui, |ui| actions.extend(self.doctor_ui(ui, tr)));
            });
        (actions, pick)
    }

    fn status_ui(&self, ui: &mut Ui, tr: Tr) {
        match &self.status {
            DiscoveryStatus::Off(Some(reason)) => {
                ui.label(
                    RichText::new(tr.fill(T::DiscoveryFailed, &[reason])).color(palette::ERROR),
                );
            }
            DiscoveryStatus::Off(None) => {
                ui.label(RichText::new(tr.get(T::DiscoveryOff)).weak());
            }
            DiscoveryStatus::Running(_) if self.devices.is_empty() => {
                ui.label(RichText::new(tr.get(T::NoDevices)).weak());
            }
            DiscoveryStatus::Running(_) => {}
        }
    }

    fn list_ui(&self, ui: &mut Ui, tr: Tr) -> Option<Pick> {
        if self.devices.is_empty() && self.favourites.is_empty() && self.localsend.is_empty() {
            return None;
        }
        let mut pick = None;
        // What tells devices apart and says whether one is there (name, address, state, last
        // seen) comes first, so it fits the smallest window; the rest scrolls sideways.
        egui::ScrollArea::horizontal()
            .id_salt("devices_scroll")
            .auto_shrink([false, true])
            .show(ui, |ui| {
                egui::Grid::new("devices_grid")
                    .num_columns(6)
                    .striped(true)
                    .spacing([DEVICE_COLUMN_SPACING, 4.0])
                    .show(ui, |ui| {
                        for col in [
                            T::ColName,
                            T::ColAddress,
                            T::ColState,
                            T::ColLastSeen,
                            T::ColTrusted,
                            T::ColHowFound,
                        ] {
                            ui.label(RichText::new(tr.get(col)).strong());
                        }
                        ui.end_row();
                        pick = self.rows_ui(ui, tr);
                    });
            });
        pick
    }

    /// The rows of [`Self::list_ui`]'s grid: discovered, LocalSend, then added devices.
    fn rows_ui(&self, ui: &mut Ui, tr: Tr) -> Option<Pick> {
        let mut pick = None;
        for device in &self.devices {
            let button = egui::Button::new(&device.name).truncate();
            let clicked = name_cell(ui, device.addr.is_some(), button)
                .on_hover_text(&device.fingerprint)
                .clicked();
            if let (true, Some(addr)) = (clicked, device.addr) {
                let mut picked = pick_device(addr, device.udp_port);
                picked.trusted = device.trusted.then(|| device.fingerprint.clone());
                pick = Some(picked);
            }
            ui.label(
                RichText::new(device.addr.map_or_else(|| "-".into(), |a| a.to_string()))
                    .monospace(),
            );
            let state = state_text(tr, device.state);
            match device.state {
                SeenState::Ready => ui.label(RichText::new(state).color(palette::OK)),
                SeenState::PortSilent(_) => ui.label(RichText::new(state).color(palette::ERROR)),
                _ => ui.label(RichText::new(state).weak()),
            };
            ui.label(match device.last_seen_ago {
                Some(ago) => tr.fill(T::SecondsAgo, &[&ago.as_secs()]),
                None => tr.get(T::Never).to_owned(),
            });
            ui.label(tr.get(if device.trusted {
                T::Trusted
            } else {
                T::NotTrusted
            }));
            ui.label(how_found(tr, &device.how));
            ui.end_row();
        }
        for device in &self.localsend {
            let addr = device.addr.to_string();
            let hover = localsend_hover(device, tr);
            let button = egui::Button::new(&device.alias).truncate();
            if name_cell(ui, true, button).on_hover_text(hover).clicked() {
                pick = Some(Pick {
                    dest: addr.clone(),
                    note_peer: addr.clone(),
                    trusted: None,
                });
            }
            // Heard over both families: the second address beneath the first.
            match device.addr_v6.filter(|v6| *v6 != device.addr) {
                Some(v6) => {
                    ui.vertical(|ui| {
                        ui.label(RichText::new(addr).monospace());
                        ui.label(RichText::new(v6.to_string()).monospace().weak());
                    });
                }
                None => {
                    ui.label(RichText::new(addr).monospace());
                }
            }
            ui.label(device_kind(tr, &device.device_type));
            // Drawn when the window is (it repaints nothing on its own while idle).
            ui.label(tr.fill(T::SecondsAgo, &[&device.last_seen.elapsed().as_secs()]));
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(tr.get(T::LocalSendBadge))
                        .strong()
                        .color(palette::OK),
                );
                if device.protocol == LocalSendProtocol::Http {
                    ui.label(
                        RichText::new(tr.get(T::EncryptionOffBadge))
                            .strong()
                            .color(palette::NOT_ENCRYPTED),
                    )
                    .on_hover_text(tr.get(T::EncryptionOffHint));
                }
            });
            ui.label(how_found(tr, &device.how));
            ui.end_row();
        }
        for favourite in &self.favourites {
            let button = egui::Button::new(favourite).truncate();
            if name_cell(ui, true, button).clicked() {
                pick = Some(Pick {
                    dest: favourite.clone(),
                    note_peer: favourite.clone(),
                    trusted: None,
                });
            }
            ui.label(RichText::new(favourite).monospace());
            ui.label(tr.get(T::Favourite));
            ui.label("-");
            ui.label("-");
            ui.label(tr.get(T::AddedByAddress));
            ui.end_row();
        }
        pick
    }
}

/// A LocalSend device's hover: whom picking it sends to, with its certificate fingerprint,
/// or, when its encryption is off, the id it claims, called so (nothing proves it).
fn localsend_hover(device: &SeenLocalSend, tr: Tr) -> String {
    let text = match device.protocol {
        LocalSendProtocol::Https => T::LocalSendSendTo,
        LocalSendProtocol::Http => T::LocalSendSendToPlain,
    };
    tr.fill(text, &[&device.alias, &device.fingerprint])
}

/// How a device was found (`beacon+mdns`), in the window's language. The engine's tags are
/// a fixed set; one this table does not know yet is shown as it is.
fn how_found(tr: Tr, how: &[&str]) -> String {
    let word = |tag: &str| {
        let text = match tag {
            "beacon" => T::HowBeacon,
            "mdns" => T::HowMdns,
            "probe" => T::HowProbe,
            "multicast" => T::HowMulticast,
            "answer" => T::HowAnswer,
            "register" => T::HowRegister,
            "sweep" => T::HowSweep,
            other => return other.to_owned(),
        };
        tr.get(text).to_owned()
    };
    how.iter()
        .map(|tag| word(tag))
        .collect::<Vec<_>>()
        .join("+")
}

/// A LocalSend device's kind (`mobile`, `desktop`, ...; the driver keeps it to LocalSend's
/// five) in the window's language.
fn device_kind(tr: Tr, kind: &str) -> &str {
    match kind {
        "mobile" => tr.get(T::KindMobile),
        "desktop" => tr.get(T::KindDesktop),
        "web" => tr.get(T::KindWeb),
        "headless" => tr.get(T::KindHeadless),
        "server" => tr.get(T::KindServer),
        other => other,
    }
}

/// A device's name as a button, cut at [`DEVICE_NAME_MAX_WIDTH`] (its hover says it whole).
fn name_cell(ui: &mut Ui, enabled: bool, button: egui::Button<'_>) -> egui::Response {
    ui.scope(|ui| {
        ui.set_max_width(DEVICE_NAME_MAX_WIDTH);
        ui.add_enabled(enabled, button)
    })
    .inner
}

/// Files go to the announced TCP port; notes to the announced UDP port when there is one,
/// else to the same port (as the original does).
fn pick_device(addr: SocketAddr, udp_port: u16) -> Pick {
    let note = if udp_port == 0 {
        addr
    } else {
        SocketAddr::new(addr.ip(), udp_port)
    };
    Pick {
        dest: addr.to_string(),
        note_peer: note.to_string(),
        trusted: None,
    }
}

fn state_text(tr: Tr, state: SeenState) -> String {
    match state {
        SeenState::Ready => tr.get(T::DevReady).to_owned(),
        SeenState::Checking => tr.get(T::DevChecking).to_owned(),
        SeenState::PortSilent(port) => tr.fill(T::DevPortSilent, &[&port]),
        SeenState::Stale => tr.get(T::DevStale).to_owned(),
        SeenState::Offline => tr.get(T::DevOffline).to_owned(),
    }
}

/// `host:port` with a non-empty host and a numeric port (or a bracketed IPv6 address).
fn is_host_port(text: &str) -> bool {
    text.parse::<SocketAddr>().is_ok()
        || text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && !host.contains(':')
                && port.parse::<u16>().is_ok()
        })
}

/// The IP address of a `host:port`, if the host is one (names are not probed).
fn host_ip(text: &str) -> Option<IpAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
