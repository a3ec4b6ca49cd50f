//! Verified small files whose verdicts wait, so several are made durable by one sync.
//!
//! A Ferry sender offers its next file right after a file's end (see the pipelining rule in
//! [`crate::protocol`]). When a small file verifies and the next frame is already here, the
//! receiver does not sync and name it at once: it holds the file (still its `.part`, its
//! descriptor closed) and goes on with the next offer. Once nothing more is waiting, or
//! the batch is full or old, one sync of the file system makes every held file's data
//! durable, each gets its final name, one sync of the folder makes the names durable, and
//! only then are the verdicts sent, in file order, and the rows told. Each file synced on
//! its own cost a journal commit for its data and another for its name; on this project's
//! test disk a batch of 64 costs a sixth of that per file.
//!
//! The verdicts must stay in file order and ahead of any later verdict, cancel or failure
//! (an accept, `waiting` or decline of the next offer may pass them: the sender tells those
//! apart): every other ending of a file (its own verdict, a cancel either way, a failure)
//! and every wait that is not the
//! sender's (asking the user, a large file's data), or that is its disk's (a resuming sender
//! hashing its copy before its `start`), commits what is held first, and so does
//! the connection's end, whatever ended it. A file held when the connection breaks is still
//! named: it was verified. Waits on the sender are bounded too: a next file's data that does
//! not start within [`HOLD_DATA_WAIT`], or that stops (or whose end does not come) once the
//! batch is [`HOLD_MAX_AGE`] old, names the held files meanwhile.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::connection::Connection;
use super::pump::input_within;
use crate::events::{Failure, FailureKind, TransferEvent, TransferId};
use crate::protocol::ReceiverMsg;
use crate::transfer::{PartFile, TransferError};

/// Files up to this size may be held (a larger one's data takes long enough that a sync of
/// its own costs little in proportion).
pub(super) const HOLD_MAX_FILE: u64 = 1024 * 1024;
/// The most files held at once.
const HOLD_MAX_FILES: usize = 256;
/// The longest the oldest held file waits for its verdict before a batch is committed.
const HOLD_MAX_AGE: Duration = Duration::from_millis(200);
/// How long an accepted file's first data may be awaited before the held files are named
/// meanwhile (a pipelining sender sends it at once; one that stalls must not keep them).
const HOLD_DATA_WAIT: Duration = Duration::from_millis(20);

/// One connection's held files, oldest first.
#[derive(Default)]
pub(super) struct Held {
    files: Vec<HeldFile>,
    /// When the oldest of `files` was held (`None` exactly when none is).
    since: Option<Instant>,
}

struct HeldFile {
    part: PartFile,
    id: TransferId,
    size: u64,
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// When the oldest held file has waited as long as it may ([`HOLD_MAX_AGE`]); `None`
    /// when none is held. Waits on the sender (a file's data, its end) stop then to name them.
    pub(super) fn pause_at(&self) -> Option<Instant> {
        self.since.map(|since| since + HOLD_MAX_AGE)
    }
}

impl Connection<'_> {
    /// Whether a verified file of `size` bytes may wait for the files after it: only when
    /// syncing is on (unsynced, naming costs little), it is small, the batch has room and
    /// is young, and the next frame is already here (the sender pipelines and goes on).
    fn may_hold(&self, size: u64) -> bool {
        self.shared.downloads.fsync()
            && size <= HOLD_MAX_FILE
            && self.held.files.len() < HOLD_MAX_FILES
            && self.held.pause_at().is_none_or(|at| Instant::now() < at)
            && self.next_frame_waiting()
    }

    /// Whether the sender's next bytes already arrived (read ahead, or in the socket).
    pub(super) fn next_frame_waiting(&self) -> bool {
        input_within(&self.reader, Duration::ZERO)
    }

    /// Before an accepted file's data: names the held files unless its data is already
    /// arriving (within [`HOLD_DATA_WAIT`]), so a sender that stalls mid-stream does not keep
    /// them unnamed.
    pub(super) fn before_data(&mut self) {
        if !self.held.is_empty() && !input_within(&self.reader, HOLD_DATA_WAIT) {
            self.commit_held();
        }
    }

    /// After a file's data, before its end: names the held files unless the end is already
    /// here or comes before the batch is too old ([`Held::pause_at`]).
    pub(super) fn before_end(&mut self) {
        let Some(at) = self.held.pause_at() else {
            return;
        };
        let wait = at.saturating_duration_since(Instant::now());
        if !input_within(&self.reader, wait) {
            self.commit_held();
        }
    }

    /// A verified file's `.part`: held for a batch when it may be (`None`: its row and
    /// verdict come with the batch), else handed back, whatever was held before it named
    /// first, to be named on its own.
    pub(super) fn hold(
        &mut self,
        mut part: PartFile,
        id: TransferId,
        size: u64,
    ) -> Option<PartFile> {
        let hold = self.may_hold(size);
        if hold || !self.held.is_empty() {
            match part.close_verified() {
                Ok(()) => {
                    self.held.since.get_or_insert_with(Instant::now);
                    self.held.files.push(HeldFile { part, id, size });
                    if !hold {
                        self.commit_held();
                    }
                    return None;
                }
                // Its descriptor could not be read: named on its own, after those held.
                Err(e) => {
                    log::warn!("{}: cannot hold a verified file: {e}", self.peer);
                    self.commit_held();
                }
            }
        }
        Some(part)
    }

    /// Makes every held file durable and named, then sends their verdicts in order and
    /// tells their rows (see the module docs). Nothing to do when none is held.
    pub(super) fn commit_held(&mut self) {
        let files = std::mem::take(&mut self.held.files);
        self.held.since = None;
        if files.is_empty() {
            return;
        }
        let downloads = &self.shared.downloads;
        // Held only while syncing is on: one sync makes every held file's data durable.
        let synced = downloads.sync_all_data().map_err(|e| e.to_string());
        let mut named: Vec<(HeldFile, Result<PathBuf, String>)> = Vec::with_capacity(files.len());
        for mut held in files {
            let committed = synced.clone().and_then(|()| {
                held.part
                    .commit_batched()
                    .map_err(|e| TransferError::Disk(e).to_string())
            });
            named.push((held, committed));
        }
        let names_synced = match named.iter().any(|(_, c)| c.is_ok()) {
            true => downloads.sync_dir().map_err(|e| e.to_string()),
            false => Ok(()),
        };
        for (held, committed) in named {
            // A name that may not survive a power cut is not called verified.
            let committed = committed.and_then(|path| {
                names_synced
                    .clone()
                    .map(|()| path)
                    .map_err(|e| format!("cannot sync the download folder: {e}"))
            });
            self.tell_verdict(held.id, held.size, committed);
            // Dropping `held.part` now: a committed one has nothing left to remove; one that
            // failed has its `.part` removed.
        }
    }

    /// Answers a held file's verdict and tells its row: named (`Ok`) or not (why).
    fn tell_verdict(&mut self, id: TransferId, size: u64, committed: Result<PathBuf, String>) {
        let sink = &self.shared.sink;
        match committed {
            Ok(path) => self.tell_committed(id, size, path, true),
            Err(reason) => {
                log::warn!(
                    "{}: a verified file could not be saved: {reason}",
                    self.peer
                );
                self.answer(&ReceiverMsg::Failed {
                    reason: reason.clone(),
                });
                let failure = Failure::new(FailureKind::Disk, reason);
                sink.transfer(TransferEvent::Failed { id, failure });
            }
        }
    }
}
