//! The defaults both faces share (the window's first-start settings and the CLI's flags), kept
//! in one place so `ferry serve` and the window can never disagree about where files go or
//! which port is used.

use std::path::PathBuf;

/// The port the original teaching example used, for TCP uploads and UDP notes alike.
pub const DEFAULT_PORT: u16 = 8080;

/// The UDP port discovery beacons travel on (independent of the transfer port, so devices
/// find each other whatever port they receive files on).
pub const DISCOVERY_PORT: u16 = 53_318;

/// The link-local multicast group beacons are sent to (224.0.0.0/24 is never routed).
pub const DISCOVERY_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 118);

/// A peer silent this long is dropped, unless the user chose otherwise.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30;

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
