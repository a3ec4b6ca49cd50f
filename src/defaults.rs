//! The defaults both faces share (the window's first-start settings and the CLI's flags), kept
//! in one place so `ferry serve` and the window can never disagree about where files go or
//! which port is used.

use std::path::PathBuf;

/// The port the original teaching example used, for TCP uploads and UDP notes alike.
pub const DEFAULT_PORT: u16 = 8080;

/// A peer silent this long is dropped, unless the user chose otherwise.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30;

/// Connections a server serves at once; one more gets an explicit refusal.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Connections one address may hold at once, so a few peers cannot take every slot.
pub const DEFAULT_MAX_PER_PEER: usize = 8;

/// Files one connection may offer before it is ended.
pub const DEFAULT_MAX_FILES_PER_CONNECTION: u64 = 100_000;

/// How many days a kept partial (`*.ferry.part`) waits for its resume before it is removed.
pub const DEFAULT_PARTIAL_MAX_AGE_DAYS: u64 = 7;

/// Where received files go unless the user picks another folder: `~/Downloads/Ferry`, or
/// `Ferry` in the platform's downloads folder (XDG `user-dirs.dirs` on Linux). Never the
/// current directory: a peer must not be able to write into whatever folder `ferry serve`
/// happened to be started in (a home folder, a source tree). Only `.` if the system knows no
/// home folder at all.
pub fn default_download_dir() -> PathBuf {
    dirs::download_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join("Downloads")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("Ferry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_folder_is_a_ferry_folder_under_downloads() {
        let dir = default_download_dir();
        assert_eq!(dir.file_name(), Some(std::ffi::OsStr::new("Ferry")));
        if let Some(home) = dirs::home_dir() {
            assert!(dir.starts_with(home), "{}", dir.display());
        }
    }
}
