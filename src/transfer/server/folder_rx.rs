//! A folder being received: its listing, the handles of the subfolders made so far, the
//! verdicts and verified files waiting for their batch, and how a root and its subfolders
//! are made beneath the download handle (see [`super::folder`]).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant, SystemTime};

use super::committer::Committer;
use super::folder_resume::KeptPartial;
use crate::events::TransferId;
use crate::protocol::{FileFailed, ReceiverMsg, SafeEntry, SafeName, clip};
use crate::transfer::dir::DownloadDir;
use crate::transfer::{Downloads, PartFile};

/// Verdicts are sent once this many are waiting...
pub(super) const FLUSH_VERDICTS: usize = 1024;
/// ...or once the oldest waited this long. Each batch costs two syncs of the file system
/// (data, then names) when syncs are on: short enough for the sender's rows to move
/// smoothly, long enough that the syncs stay a small share of the time.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Files at least this large send the verdicts waiting before them first.
pub(super) const FLUSH_BEFORE_BYTES: u64 = 1024 * 1024;
/// How many numbered names (`photos (n)`) are tried for a folder's root.
pub(super) const MAX_ROOT_ALTERNATIVES: u32 = 10_000;
/// Longest failure reason sent back per file.
pub(super) const MAX_REASON_CHARS: usize = 200;

/// A verified file waiting for its batch's commit.
pub(super) struct Pending {
    pub(super) part: PartFile,
    pub(super) id: TransferId,
    pub(super) index: u64,
    pub(super) shown: String,
}

/// One folder being received.
pub(super) struct FolderRx {
    /// The name the root was created under.
    pub(super) root_name: String,
    pub entries: Vec<SafeEntry>,
    /// The sender's resume key: an interruption leaves a state to resume from.
    pub(super) resume_key: Option<String>,
    /// Resuming: the kept partial offered to the sender, until its file arrives.
    pub(super) partial: Option<KeptPartial>,
    /// Every subfolder by its sanitised components: its handle, or why it could not be made.
    pub(super) dirs: HashMap<Vec<String>, Result<Downloads, String>>,
    pub(super) verified: Vec<u64>,
    pub(super) failed: Vec<FileFailed>,
    /// Files received and verified but still `.part`: their data is made durable for the
    /// whole batch at once, then they are named, then the verdicts go out.
    pub(super) pending: Vec<Pending>,
    /// Names the verified files batch by batch, on a thread of its own.
    pub(super) committer: Committer,
    pub(super) oldest: Option<Instant>,
    pub(super) totals: (u64, u64),
}

impl FolderRx {
    /// The folder for `components` (made as needed, parents first).
    pub(super) fn dir(&mut self, components: &[String]) -> Result<Downloads, String> {
        if let Some(known) = self.dirs.get(components) {
            return known.clone();
        }
        let made = match components.split_last() {
            None => Err("the folder's root is missing".to_owned()),
            Some((name, parent)) => self
                .dir(parent)
                .and_then(|parent| make_dir(&parent, name).map_err(|e| e.to_string())),
        };
        self.dirs.insert(components.to_vec(), made.clone());
        made
    }

    pub(super) fn verdict(&mut self, index: u64, failure: Option<String>) {
        match failure {
            None => {
                self.verified.push(index);
                self.totals.0 += 1;
            }
            Some(reason) => {
                self.failed.push(FileFailed {
                    index,
                    reason: clip(&reason, MAX_REASON_CHARS),
                });
                self.totals.1 += 1;
            }
        }
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Whether a batch is due: anything waiting, and `force`, or enough files, or the
    /// oldest waiting long enough.
    pub(super) fn is_due(&self, force: bool) -> bool {
        let waiting = self.verified.len() + self.failed.len() + self.pending.len();
        let old = self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
        waiting > 0 && (force || old || waiting >= FLUSH_VERDICTS)
    }

    /// The `files` answer for a due batch (see [`FolderRx::is_due`]), once its files are
    /// named: each folder that got names is synced once for the batch.
    pub(super) fn answer(&mut self) -> ReceiverMsg {
        self.oldest = None;
        ReceiverMsg::Files {
            verified: std::mem::take(&mut self.verified),
            failed: std::mem::take(&mut self.failed),
        }
    }
}

/// Creates (or, when an earlier entry made it, reuses) the subfolder `name` and opens it
/// (also for LocalSend's folders).
pub(crate) fn make_dir(parent: &Downloads, name: &str) -> io::Result<Downloads> {
    match parent.dir().create_dir(name) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Opened without following a symlink: whatever has this name must be a real folder.
    Ok(parent.within(parent.dir().open_dir(name)?))
}

/// Creates the folder's root under the first free name: `photos`, `photos (1)`, ... (also
/// for LocalSend's folders).
pub(crate) fn create_root(
    downloads: &Downloads,
    safe: &SafeName,
) -> io::Result<(String, DownloadDir)> {
    for n in 0..MAX_ROOT_ALTERNATIVES {
        let name = match n {
            0 => safe.as_str().to_owned(),
            n => format!("{safe} ({n})"),
        };
        match downloads.dir().create_dir(&name) {
            Ok(()) => match downloads.dir().open_dir(&name) {
                Ok(root) => return Ok((name.clone(), root)),
                // Swapped for someone else's folder since we made it: leave it, take the next.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    log::warn!("{name:?}: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for the folder {safe}"),
    ))
}

pub(super) fn mtime(secs: u64) -> Option<SystemTime> {
    (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
