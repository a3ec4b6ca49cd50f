//! What the window remembers across restarts (eframe persistence), and the seam through which
//! files and folders are picked (rfd in the app, a fake in tests), including whether a system
//! dialog exists at all (when none does, the window opens its own picker).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::i18n::Lang;
pub use crate::defaults::default_download_dir;
use crate::defaults::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_PORT};
use crate::transfer::AcceptPolicy;

/// How many recent destinations the client offers.
pub const MAX_RECENT: usize = 8;

/// Persisted settings. Missing fields (older versions) take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `None` until the first start picks one from the system locale.
    pub lang: Option<Lang>,
    pub server_bind: String,
    pub server_port: String,
    /// The server was listening when the window closed: listen again on start.
    pub server_listening: bool,
    pub download_dir: PathBuf,
    /// Whose uploads are taken without asking (`None`: not chosen yet, see
    /// [`Settings::policy`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_policy: Option<PolicyChoice>,
    /// The checkbox older versions had ("Accept uploads without asking"): only read, so an
    /// old `true` means Everyone and `false` Ask; never written again.
    #[serde(skip_serializing)]
    pub server_auto_accept: Option<bool>,
    /// The idle timeout field as typed (seconds); checked when the server starts.
    pub server_idle_timeout_secs: String,
    /// Large synced files written straight to the disk where it suits (`--no-direct-io`
    /// turns it off for `ferry serve`).
    pub server_direct_io: bool,
    pub notes_port: String,
    pub notes_open: bool,
    pub note_peer: String,
    pub client_dest: String,
    pub client_msg: String,
    pub plain: bool,
    pub recent_peers: Vec<String>,
    /// Desktop notifications when a file finishes or a note arrives while the window is not
    /// focused.
    pub notifications: bool,
    pub theme: ThemeChoice,
    /// Find devices on the LAN (announce and browse) while the server listens.
    pub discovery: bool,
    /// Devices added by address (`host:port`), listed with the discovered ones.
    pub favourites: Vec<String>,
    /// Where the device identity is kept; not persisted (`None`: the default config folder,
    /// shared with the CLI). Tests give each window its own.
    #[serde(skip)]
    pub identity_dir: Option<PathBuf>,
    /// The discovery port; not persisted (`None`: the standard one). Tests pick their own so
    /// parallel tests never hear each other.
    #[serde(skip)]
    pub discovery_port: Option<u16>,
    /// The interfaces discovery uses (`ferry --only-interface`, `FERRY_ONLY_INTERFACE`);
    /// not persisted (the default: every LAN interface).
    #[serde(skip)]
    pub interfaces: crate::discovery::Choice,
    /// "Only these interfaces" (the doctor's setting): names separated by commas; empty:
    /// every LAN interface. A run's own choice (`interfaces`) wins over it.
    pub only_interfaces: String,
    /// Receive from LocalSend devices while the server listens.
    pub localsend: bool,
    /// The LocalSend port as typed (LocalSend's 53317); checked when the server starts.
    pub localsend_port: String,
    /// The PIN LocalSend senders must type (empty: none).
    pub localsend_pin: String,
    /// Sweep the private /24s for LocalSend devices (`POST /register`) on start and Refresh.
    pub localsend_sweep: bool,
    /// Sweep these instead of the LAN; not persisted (tests give loopback addresses).
    #[serde(skip)]
    pub localsend_sweep_hosts: Vec<std::net::SocketAddr>,
}

/// Whose uploads the server takes without asking (the window's three choices; the engine's
/// [`AcceptPolicy`] has a fourth, "trusted only", for the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PolicyChoice {
    /// Ask about every upload; plain senders (who cannot be asked) are refused.
    Ask,
    /// Trusted devices without asking; other Ferry devices are asked, plain senders refused.
    #[default]
    Trusted,
    /// Everyone without asking, plain senders included (the original's behaviour).
    Everyone,
}

impl PolicyChoice {
    pub const ALL: [PolicyChoice; 3] = [
        PolicyChoice::Ask,
        PolicyChoice::Trusted,
        PolicyChoice::Everyone,
    ];

    pub fn policy(self) -> AcceptPolicy {
        match self {
            PolicyChoice::Ask => AcceptPolicy::Ask,
            PolicyChoice::Trusted => AcceptPolicy::Trusted,
            PolicyChoice::Everyone => AcceptPolicy::Everyone,
        }
    }
}

impl Settings {
    /// The accept policy: as chosen, else as an old settings file's checkbox said, else the
    /// default for new settings (trusted devices without asking).
    pub fn policy(&self) -> PolicyChoice {
        match (self.accept_policy, self.server_auto_accept) {
            (Some(choice), _) => choice,
            (None, Some(true)) => PolicyChoice::Everyone,
            (None, Some(false)) => PolicyChoice::Ask,
            (None, None) => PolicyChoice::default(),
        }
    }
}

/// The window's colours: the system's light/dark setting, or a fixed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ThemeChoice {
    #[default]
    System,
    Light,
    Dark,
}

impl ThemeChoice {
    pub const ALL: [ThemeChoice; 3] = [ThemeChoice::System, ThemeChoice::Light, ThemeChoice::Dark];

    pub fn preference(self) -> egui::ThemePreference {
        match self {
            ThemeChoice::System => egui::ThemePreference::System,
            ThemeChoice::Light => egui::ThemePreference::Light,
            ThemeChoice::Dark => egui::ThemePreference::Dark,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lang: None,
            server_bind: "0.0.0.0".into(),
            server_port: DEFAULT_PORT.to_string(),
            // Ferry receives from the first start, as LocalSend users expect; the Server tab
            // says so and has the Stop button first. Trusted devices send without asking,
            // others are asked: nobody on the LAN can drop files in unannounced. Plain
            // senders, which cannot be asked, are refused with a row saying how to allow them.
            server_listening: true,
            download_dir: default_download_dir(),
            accept_policy: None,
            server_auto_accept: None,
            server_idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS.to_string(),
            server_direct_io: true,
            notes_port: DEFAULT_PORT.to_string(),
            notes_open: true,
            note_peer: String::new(),
            client_dest: String::new(),
            client_msg: String::new(),
            plain: false,
            recent_peers: Vec::new(),
            notifications: true,
            theme: ThemeChoice::System,
            discovery: true,
            favourites: Vec::new(),
            identity_dir: None,
            discovery_port: None,
            interfaces: crate::discovery::Choice::default(),
            only_interfaces: String::new(),
            localsend: true,
            localsend_port: crate::localsend::LOCALSEND_PORT.to_string(),
            localsend_pin: String::new(),
            localsend_sweep: true,
            localsend_sweep_hosts: Vec::new(),
        }
    }
}

/// Puts `dest` first in the recent list, without duplicates, at most [`MAX_RECENT`].
pub fn remember(recent: &mut Vec<String>, dest: &str) {
    recent.retain(|r| r != dest);
    recent.insert(0, dest.to_owned());
    recent.truncate(MAX_RECENT);
}

/// Native dialogs. Implementations may block: the window calls them on a thread of their own.
pub trait Picker: Send + Sync {
    fn pick_files(&self) -> Option<Vec<PathBuf>>;
    fn pick_folder(&self, start: &Path) -> Option<PathBuf>;
    /// Whether a system dialog can be shown at all. When not, the window opens its own
    /// picker instead of calling `pick_*` (and after a `pick_*` that returned `None`, asks
    /// again: a missing dialog looks like a cancel).
    fn system_dialog_available(&self) -> bool {
        true
    }
}

/// Chooses nothing: a window without dialogs (benchmarks, tests that pick no files).
pub struct NoPicker;

impl Picker for NoPicker {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        None
    }
    fn pick_folder(&self, _start: &Path) -> Option<PathBuf> {
        None
    }
}

/// A dialog that returns `None` faster than this was never shown: nobody cancels that fast.
const NO_DIALOG_WITHIN: Duration = Duration::from_millis(300);

/// The system's file dialogs (XDG portal, or zenity as a fallback).
#[derive(Default)]
pub struct RfdPicker {
    /// A pick came back empty at once: no portal answered and zenity is missing.
    failed_at_once: AtomicBool,
}

impl RfdPicker {
    fn note_result<T>(&self, picked: &Option<T>, started: Instant) {
        if picked.is_none() {
            // rfd returns None both for a cancel and for a missing dialog backend.
            log::info!("dialog closed without a choice (cancelled, or no dialog available)");
            if started.elapsed() < NO_DIALOG_WITHIN && !on_path("zenity") {
                self.failed_at_once.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Picker for RfdPicker {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        let started = Instant::now();
        let picked = rfd::FileDialog::new().pick_files();
        self.note_result(&picked, started);
        picked
    }

    fn pick_folder(&self, start: &Path) -> Option<PathBuf> {
        let started = Instant::now();
        let picked = rfd::FileDialog::new().set_directory(start).pick_folder();
        self.note_result(&picked, started);
        picked
    }

    fn system_dialog_available(&self) -> bool {
        if self.failed_at_once.load(Ordering::Relaxed) {
            return false;
        }
        // The portal is reached over the session bus (its address, or the standard socket
        // in the runtime folder); zenity is a program on PATH.
        let session_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS")
            .is_some_and(|a| !a.is_empty())
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|dir| Path::new(&dir).join("bus").exists());
        session_bus || on_path("zenity")
    }
}

/// Whether an executable `program` is in one of `PATH`'s folders.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_peers_are_most_recent_first_unique_and_bounded() {
        let mut recent = Vec::new();
        for i in 0..10 {
            remember(&mut recent, &format!("host{i}:8080"));
        }
        remember(&mut recent, "host5:8080");
        assert_eq!(recent.len(), MAX_RECENT);
        assert_eq!(recent[0], "host5:8080");
        assert_eq!(recent.iter().filter(|r| *r == "host5:8080").count(), 1);
    }

    #[test]
    fn programs_are_found_on_path_only_when_there() {
        assert!(on_path("sh"));
        assert!(!on_path("ferry-no-such-dialog-program"));
    }

    #[test]
    fn old_settings_without_new_fields_still_load() {
        let settings: Settings = serde_json::from_str(r#"{"server_port":"9000"}"#).unwrap();
        assert_eq!(settings.server_port, "9000");
        assert_eq!(settings.notes_port, DEFAULT_PORT.to_string());
        assert_eq!(
            settings.policy(),
            PolicyChoice::Trusted,
            "a window that listens from the first start asks all but trusted devices"
        );
        assert_eq!(settings.server_idle_timeout_secs, "30");
        assert!(settings.notifications, "notifications default on");
        assert_eq!(settings.theme, ThemeChoice::System);
        assert!(settings.discovery, "devices are found unless turned off");
        assert!(settings.favourites.is_empty());
        assert!(
            settings.localsend,
            "LocalSend receiving is on unless turned off"
        );
        assert_eq!(settings.localsend_port, "53317");
    }

    #[test]
    fn the_old_checkbox_still_reads_and_the_choice_is_written_instead() {
        let old = |json: &str| serde_json::from_str::<Settings>(json).unwrap().policy();
        assert_eq!(
            old(r#"{"server_auto_accept":true}"#),
            PolicyChoice::Everyone
        );
        assert_eq!(old(r#"{"server_auto_accept":false}"#), PolicyChoice::Ask);
        assert_eq!(
            old(r#"{"server_auto_accept":true,"accept_policy":"Trusted"}"#),
            PolicyChoice::Trusted
        );
        let saved = Settings {
            accept_policy: Some(PolicyChoice::Ask),
            server_auto_accept: Some(true),
            ..Settings::default()
        };
        let json = serde_json::to_string(&saved).unwrap();
        assert!(!json.contains("server_auto_accept"), "{json}");
        assert_eq!(old(&json), PolicyChoice::Ask);
    }
}
