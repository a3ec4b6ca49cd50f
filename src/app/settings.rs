//! What the window remembers across restarts (eframe persistence), and the seam through which
//! files and folders are picked (rfd in the app, a fake in tests).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::i18n::Lang;
pub use crate::defaults::default_download_dir;
use crate::defaults::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_PORT};

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
    /// Accept offers without asking (the original's behaviour); when off, Ferry senders
    /// wait for the user's answer and plain senders are refused.
    pub server_auto_accept: bool,
    /// The idle timeout field as typed (seconds); checked when the server starts.
    pub server_idle_timeout_secs: String,
    pub notes_port: String,
    pub notes_open: bool,
    pub note_peer: String,
    pub client_dest: String,
    pub client_msg: String,
    pub plain: bool,
    pub recent_peers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lang: None,
            server_bind: "0.0.0.0".into(),
            server_port: DEFAULT_PORT.to_string(),
            server_listening: false,
            download_dir: default_download_dir(),
            server_auto_accept: true,
            server_idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS.to_string(),
            notes_port: DEFAULT_PORT.to_string(),
            notes_open: true,
            note_peer: String::new(),
            client_dest: String::new(),
            client_msg: String::new(),
            plain: false,
            recent_peers: Vec::new(),
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
}

/// The system's file dialogs (XDG portal, or zenity as a fallback).
pub struct RfdPicker;

impl Picker for RfdPicker {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        let picked = rfd::FileDialog::new().pick_files();
        if picked.is_none() {
            // rfd returns None both for a cancel and for a missing dialog backend.
            log::info!("file dialog closed without files (cancelled, or no dialog available)");
        }
        picked
    }

    fn pick_folder(&self, start: &Path) -> Option<PathBuf> {
        let picked = rfd::FileDialog::new().set_directory(start).pick_folder();
        if picked.is_none() {
            log::info!("folder dialog closed without a folder (cancelled, or no dialog available)");
        }
        picked
    }
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
    fn old_settings_without_new_fields_still_load() {
        let settings: Settings = serde_json::from_str(r#"{"server_port":"9000"}"#).unwrap();
        assert_eq!(settings.server_port, "9000");
        assert_eq!(settings.notes_port, DEFAULT_PORT.to_string());
        assert!(
            settings.server_auto_accept,
            "auto-accept stays on, as before"
        );
        assert_eq!(settings.server_idle_timeout_secs, "30");
    }
}
