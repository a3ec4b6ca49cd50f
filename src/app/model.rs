//! The window's view of one transfer (a table row), updated from engine events, and the
//! small formatting helpers the tables use. No egui here, so it is unit-tested directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::events::{Security, TransferEvent, TransferId};
use crate::protocol::Mode;

/// Where a row stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowState {
    /// Client queue only: picked, not yet uploading.
    Queued,
    /// Bytes are moving (or the offer is out).
    Active,
    /// The receiver checked the BLAKE3 hash.
    Verified,
    /// Complete but nobody checked it (plain peer).
    Unverified,
    Failed(crate::events::Failure),
    Cancelled {
        by_peer: bool,
    },
}

impl RowState {
    pub fn is_finished(&self) -> bool {
        !matches!(self, RowState::Queued | RowState::Active)
    }
}

/// One file in the server's table or the client's queue.
#[derive(Debug, Clone)]
pub struct TransferRow {
    pub id: TransferId,
    /// The name as offered (incoming) or the local file name (outgoing).
    pub name: String,
    /// The name it was saved under when different from `name`.
    pub saved_as: Option<String>,
    pub peer: Option<SocketAddr>,
    /// Incoming: the final file once saved. Outgoing: the local source file.
    pub path: Option<PathBuf>,
    pub mode: Mode,
    pub msg: String,
    /// Outgoing: the `host:port` it was last uploaded to, so Retry can send it there again.
    pub dest: Option<String>,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub state: RowState,
    /// Outgoing and active: the receiver holds its answer, and why (asking its user, or
    /// checking a kept partial, ...; no bytes move yet).
    pub awaiting: Option<crate::protocol::WaitFor>,
    /// Encrypted or not, and with which device (`None` until the transfer started).
    pub security: Option<Security>,
    /// A folder row: its files' rows and what the folder adds (see `folder_rows.rs`).
    pub folder: Option<Box<super::folder_rows::FolderGroup>>,
    pub(super) speed: SpeedMeter,
}

impl TransferRow {
    /// A file the user picked for upload.
    pub fn queued(id: TransferId, path: PathBuf, bytes_total: u64) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            id,
            name,
            saved_as: None,
            peer: None,
            path: Some(path),
            mode: Mode::Ferry,
            msg: String::new(),
            dest: None,
            bytes_total,
            bytes_done: 0,
            state: RowState::Queued,
            awaiting: None,
            security: None,
            folder: None,
            speed: SpeedMeter::default(),
        }
    }

    /// A row for a transfer the engine just started (incoming uploads appear this way).
    pub fn from_started(event: &TransferEvent) -> Option<Self> {
        let TransferEvent::Started {
            id,
            peer,
            name,
            saved_as,
            bytes_total,
            mode,
            msg,
            security,
            ..
        } = event
        else {
            return None;
        };
        Some(Self {
            id: *id,
            name: name.clone(),
            saved_as: saved_as.clone(),
            peer: Some(*peer),
            path: None,
            mode: *mode,
            msg: msg.clone(),
            dest: None,
            bytes_total: *bytes_total,
            bytes_done: 0,
            state: RowState::Active,
            awaiting: None,
            security: Some(security.clone()),
            folder: None,
            speed: SpeedMeter::default(),
        })
    }

    /// Applies an event about this row; `now` drives the speed estimate.
    pub fn apply(&mut self, event: &TransferEvent, now: Instant) {
        match event {
            TransferEvent::Started {
                peer,
                saved_as,
                bytes_total,
                mode,
                security,
                ..
            } => {
                self.peer = Some(*peer);
                self.security = Some(security.clone());
                if saved_as.is_some() {
                    self.saved_as = saved_as.clone();
                }
                self.bytes_total = *bytes_total;
                // Started again (an eager file offered again the ordinary way): nothing of the
                // new try is done yet (a resume says its offset in the Progress that follows).
                self.bytes_done = 0;
                self.mode = *mode;
                self.state = RowState::Active;
                self.speed = SpeedMeter::default();
            }
            TransferEvent::AwaitingDecision { waiting_for, .. } => {
                self.awaiting = Some(*waiting_for);
            }
            TransferEvent::Progress { bytes_done, .. } => {
                self.awaiting = None;
                self.bytes_done = *bytes_done;
                self.speed.record(*bytes_done, now);
            }
            TransferEvent::Finished {
                verified,
                saved_as,
                path,
                ..
            } => {
                self.bytes_done = self.bytes_total;
                self.state = if *verified {
                    RowState::Verified
                } else {
                    RowState::Unverified
                };
                if let Some(saved_as) = saved_as.as_ref().filter(|s| **s != self.name) {
                    self.saved_as = Some(saved_as.clone());
                }
                if path.is_some() {
                    self.path = path.clone();
                }
            }
            TransferEvent::Failed { failure, .. } => {
                self.state = RowState::Failed(failure.clone());
            }
            TransferEvent::Cancelled { by_peer, .. } => {
                self.state = RowState::Cancelled { by_peer: *by_peer };
            }
        }
    }

    /// An outgoing upload that ended without success and can be sent again (Retry).
    pub fn retryable(&self) -> bool {
        matches!(self.state, RowState::Failed(_) | RowState::Cancelled { .. })
            && self.path.is_some()
            && self.dest.is_some()
            && self.folder.is_none()
    }

    /// Makes the row a new upload of the same file under a fresh `id` (the old id's events
    /// are over): nothing done yet, on its way.
    pub fn restart(&mut self, id: TransferId) {
        self.id = id;
        self.saved_as = None;
        self.bytes_done = 0;
        self.state = RowState::Active;
        self.security = None;
        self.speed = SpeedMeter::default();
    }

    /// Bytes per second while active.
    pub fn speed(&self) -> Option<f64> {
        (self.state == RowState::Active)
            .then(|| self.speed.bytes_per_sec())
            .flatten()
    }

    /// Time left at the current speed.
    pub fn eta(&self) -> Option<Duration> {
        let speed = self.speed()?;
        (speed > 0.0).then(|| {
            Duration::from_secs_f64(self.bytes_total.saturating_sub(self.bytes_done) as f64 / speed)
        })
    }

    /// Ended before a byte moved (declined, refused, unreachable, cancelled while waiting):
    /// a progress bar would say a misleading "0%" (or "100%" for an empty file).
    pub fn never_started(&self) -> bool {
        matches!(self.state, RowState::Failed(_) | RowState::Cancelled { .. })
            && self.bytes_done == 0
    }

    pub fn fraction(&self) -> f32 {
        if self.bytes_total == 0 {
            return if self.state.is_finished() || self.state == RowState::Active {
                1.0
            } else {
                0.0
            };
        }
        (self.bytes_done as f64 / self.bytes_total as f64) as f32
    }
}

/// A smoothed transfer speed from progress samples.
///
/// The first sample is only the baseline: data may start late (the receiver's user was
/// asked first) or at an offset (a resumed upload), and neither is speed.
#[derive(Debug, Clone, Default)]
pub(super) struct SpeedMeter {
    last: Option<(Instant, u64)>,
    bytes_per_sec: Option<f64>,
}

impl SpeedMeter {
    pub(super) fn record(&mut self, bytes: u64, now: Instant) {
        if let Some((then, before)) = self.last {
            let secs = now.duration_since(then).as_secs_f64();
            if secs < 0.05 {
                return; // too close together to say anything
            }
            let sample = bytes.saturating_sub(before) as f64 / secs;
            // Exponential smoothing: recent samples weigh most, jitter is damped.
            self.bytes_per_sec = Some(match self.bytes_per_sec {
                Some(old) => old * 0.7 + sample * 0.3,
                None => sample,
            });
        }
        self.last = Some((now, bytes));
    }

    fn bytes_per_sec(&self) -> Option<f64> {
        self.bytes_per_sec
    }
}

/// `1.5 MiB`, `900 B`.
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[0])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `42 s`, `3:07`, `1:02:03`.
pub fn format_eta(eta: Duration) -> String {
    let secs = eta.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{}:{:02}", secs / 60, secs % 60),
        _ => format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_bytes(900.0), "900 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert_eq!(format_eta(Duration::from_secs(42)), "42 s");
        assert_eq!(format_eta(Duration::from_secs(187)), "3:07");
        assert_eq!(format_eta(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn row_follows_events_with_speed_and_eta() {
        let t0 = Instant::now();
        let started = TransferEvent::Started {
            id: 7,
            direction: crate::events::Direction::Incoming,
            peer: "127.0.0.1:9".parse().unwrap(),
            name: "a.txt".into(),
            saved_as: Some("a (1).txt".into()),
            bytes_total: 1000,
            mode: Mode::Ferry,
            msg: "hi".into(),
            security: crate::events::Security::Plain,
        };
        let mut row = TransferRow::from_started(&started).unwrap();
        row.apply(&started, t0);
        assert_eq!(row.saved_as.as_deref(), Some("a (1).txt"));
        // The receiver reports where the data starts, then how it goes.
        row.apply(
            &TransferEvent::Progress {
                id: 7,
                bytes_done: 0,
            },
            t0,
        );
        assert_eq!(row.speed(), None, "one sample is no speed yet");
        row.apply(
            &TransferEvent::Progress {
                id: 7,
                bytes_done: 250,
            },
            t0 + Duration::from_secs(1),
        );
        assert_eq!(row.speed(), Some(250.0));
        assert_eq!(row.eta(), Some(Duration::from_secs(3)));
        assert!((row.fraction() - 0.25).abs() < 1e-6);
        row.apply(
            &TransferEvent::Finished {
                id: 7,
                verified: true,
                saved_as: Some("a (1).txt".into()),
                path: None,
            },
            t0,
        );
        assert_eq!(row.state, RowState::Verified);
        assert_eq!(row.speed(), None, "no speed once finished");
        row.apply(
            &TransferEvent::Cancelled {
                id: 7,
                by_peer: true,
            },
            t0,
        );
        assert_eq!(row.state, RowState::Cancelled { by_peer: true });
    }

    #[test]
    fn a_retried_row_is_a_fresh_upload_and_a_resume_offset_is_not_speed() {
        let t0 = Instant::now();
        let mut row = TransferRow::queued(1, PathBuf::from("/tmp/big.bin"), 1000);
        assert!(!row.retryable(), "queued, and never sent anywhere");
        row.dest = Some("127.0.0.1:9".into());
        row.state = RowState::Failed(crate::events::Failure::new(
            crate::events::FailureKind::Interrupted { kept_bytes: None },
            "connection lost",
        ));
        row.bytes_done = 400;
        assert!(row.retryable());
        row.restart(2);
        assert_eq!((row.id, row.bytes_done), (2, 0));
        assert_eq!(row.state, RowState::Active);
        assert!(!row.retryable(), "not while it is on its way");
        let started = TransferEvent::Started {
            id: 2,
            direction: crate::events::Direction::Outgoing,
            peer: "127.0.0.1:9".parse().unwrap(),
            name: "big.bin".into(),
            saved_as: None,
            bytes_total: 1000,
            mode: Mode::Ferry,
            msg: String::new(),
            security: crate::events::Security::Plain,
        };
        row.apply(&started, t0);
        // Resumed at byte 400, reported at once: a baseline, not 400 bytes in no time.
        let progress = |bytes_done| TransferEvent::Progress { id: 2, bytes_done };
        row.apply(&progress(400), t0 + Duration::from_millis(100));
        assert_eq!(row.speed(), None);
        row.apply(&progress(500), t0 + Duration::from_millis(1100));
        assert_eq!(row.speed(), Some(100.0));
        row.apply(
            &TransferEvent::Cancelled {
                id: 2,
                by_peer: true,
            },
            t0,
        );
        assert!(row.retryable(), "a cancelled upload can be sent again");
    }

    /// An eager file the receiver asked for again is started a second time: its row starts
    /// over at nothing done, not at the first try's 100 % while the new offer waits.
    #[test]
    fn a_file_started_again_starts_over_at_nothing_done() {
        let t0 = Instant::now();
        let started = TransferEvent::Started {
            id: 3,
            direction: crate::events::Direction::Outgoing,
            peer: "127.0.0.1:9".parse().unwrap(),
            name: "small.bin".into(),
            saved_as: None,
            bytes_total: 1000,
            mode: Mode::Ferry,
            msg: String::new(),
            security: crate::events::Security::Plain,
        };
        let mut row = TransferRow::from_started(&started).unwrap();
        let progress = TransferEvent::Progress {
            id: 3,
            bytes_done: 1000,
        };
        row.apply(&progress, t0);
        row.apply(&started, t0);
        assert_eq!((row.bytes_done, row.state.clone()), (0, RowState::Active));
    }
}
