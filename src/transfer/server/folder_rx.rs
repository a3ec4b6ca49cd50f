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
/// Subfolder handles a folder being received keeps open (see [`Dirs`]).
pub(super) const MAX_OPEN_DIRS: usize = 256;
/// A batch is due once its waiting files hold this many folders' handles open (each batch
/// the committer still holds keeps its own), so a listing of one file per folder cannot
/// hold thousands of handles between two batches.
pub(super) const MAX_PENDING_DIRS: usize = 128;
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
    /// The name the root was created under (what the sender was told, what a resume looks
    /// for, and what each file's start is reported under).
    pub(super) root_name: String,
    /// The root's name in the download folder as last seen, for reporting where a file
    /// was saved: the created one until a local process renames the root; `None` once it
    /// is no longer found there (moved out: the created name stands, as nothing better can).
    pub(super) root_now: Option<String>,
    /// The root's device and inode (kept in the resume state, see `folder_resume`).
    pub(super) root_id: Option<(u64, u64)>,
    pub entries: Vec<SafeEntry>,
    /// The sender's resume key: an interruption leaves a state to resume from.
    pub(super) resume_key: Option<String>,
    /// The sender's message for the folder, until the first of its files starts: that row
    /// carries it (the window's folder row shows it from there, `serve` prints it once).
    pub(super) msg: Option<String>,
    /// Resuming: the kept partial offered to the sender, until its file arrives.
    pub(super) partial: Option<KeptPartial>,
    /// The subfolders made (or that could not be), and the few kept open.
    pub(super) dirs: Dirs,
    pub(super) verified: Vec<u64>,
    pub(super) failed: Vec<FileFailed>,
    /// Files received and verified but still `.part`: their data is made durable for the
    /// whole batch at once, then they are named, then the verdicts go out.
    pub(super) pending: Vec<Pending>,
    /// Names the verified files batch by batch, on a thread of its own.
    pub(super) committer: Committer,
    pub(super) oldest: Option<Instant>,
    pub(super) totals: (u64, u64),
    /// How many times the folder changed between consecutive `pending` files (at least
    /// the number of distinct folders they hold open): a batch is due at
    /// [`MAX_PENDING_DIRS`].
    pub(super) pending_dirs: usize,
}

/// The subfolders of a folder being received, by their sanitised components: which were
/// made and which could not be (why), and open handles for at most [`MAX_OPEN_DIRS`] of
/// them, least recently used closed first. The sender chooses the listing, so holding one
/// descriptor per subfolder would let it exhaust the process's descriptors; a subfolder
/// whose handle was closed is opened again from its nearest open ancestor (the root at
/// worst), one component at a time, never through a symlink and only if it is ours
/// ([`crate::transfer::DownloadDir::open_dir`]), as when it was made, and still the very
/// folder made then (same device and inode: a local process may have renamed it away and
/// given another folder of this user its name). A LocalSend session's
/// folders are kept the same way (rooted at the download folder, see
/// [`crate::localsend`]'s `disk`), so a sender's listing bounds no descriptor either way.
pub(crate) struct Dirs {
    root: Downloads,
    /// Every subfolder tried: `Ok` made (or found ours), with its device and inode, `Err`
    /// why not. A folder opened again by its name must still be that one: a local process
    /// could have renamed it away and given another folder of this user its name.
    made: HashMap<Vec<String>, Result<(u64, u64), String>>,
    /// The open handles, each with when it was last used.
    open: HashMap<Vec<String>, (Downloads, u64)>,
    clock: u64,
}

impl Dirs {
    pub(crate) fn new(root: Downloads) -> Self {
        Self {
            root,
            made: HashMap::new(),
            open: HashMap::new(),
            clock: 0,
        }
    }

    /// The folder's root.
    pub(super) fn root(&self) -> &Downloads {
        &self.root
    }

    /// How many subfolder handles are open (at most [`MAX_OPEN_DIRS`]).
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The folder for `components`, made as needed (parents first).
    pub(crate) fn get_or_make(&mut self, components: &[String]) -> Result<Downloads, String> {
        self.get(components, true)
            .unwrap_or_else(|| Err("not made".to_owned()))
    }

    /// The folder for `components` if it was made earlier (`None`: never tried).
    pub(crate) fn made(&mut self, components: &[String]) -> Option<Result<Downloads, String>> {
        self.get(components, false)
    }

    fn get(&mut self, components: &[String], make: bool) -> Option<Result<Downloads, String>> {
        let Some((name, parent)) = components.split_last() else {
            return Some(Ok(self.root.clone()));
        };
        self.clock += 1;
        if let Some((dir, used)) = self.open.get_mut(components) {
            *used = self.clock;
            return Some(Ok(dir.clone()));
        }
        let opened = match self.made.get(components) {
            Some(Err(why)) => return Some(Err(why.clone())),
            // Made earlier, its handle since closed: opened again, as strictly as made, and
            // only if it is still the folder made then.
            Some(Ok(identity)) => {
                let identity = *identity;
                self.get(parent, false)?.and_then(|parent| {
                    let dir = parent.dir().open_dir(name).map_err(|e| e.to_string())?;
                    if dir.identity().map_err(|e| e.to_string())? != identity {
                        return Err(format!(
                            "the folder {name:?} was replaced meanwhile; not writing into it"
                        ));
                    }
                    Ok(parent.within(dir))
                })
            }
            None if make => {
                let made = self
                    .get(parent, true)
                    .unwrap_or_else(|| Err("not made".to_owned()))
                    .and_then(|parent| make_dir(&parent, name).map_err(|e| e.to_string()));
                let made = made.and_then(|dir| {
                    let identity = dir.dir().identity().map_err(|e| e.to_string())?;
                    Ok((dir, identity))
                });
                self.made.insert(
                    components.to_vec(),
                    made.as_ref()
                        .map(|(_, identity)| *identity)
                        .map_err(Clone::clone),
                );
                made.map(|(dir, _)| dir)
            }
            None => return None,
        };
        if let Ok(dir) = &opened {
            self.keep_open(components, dir.clone());
        }
        Some(opened)
    }

    /// Records a folder made elsewhere (a root made under a free name by [`create_root`])
    /// as made, with its handle open.
    pub(crate) fn adopt(&mut self, components: &[String], dir: Downloads) {
        self.clock += 1;
        let identity = dir.dir().identity().map_err(|e| e.to_string());
        self.made.insert(components.to_vec(), identity);
        self.keep_open(components, dir);
    }

    /// Every folder made, deepest first (to open them to others once done, children
    /// before their parents).
    pub(crate) fn made_folders(&self) -> Vec<Vec<String>> {
        let mut made: Vec<Vec<String>> = self
            .made
            .iter()
            .filter(|(_, made)| made.is_ok())
            .map(|(key, _)| key.clone())
            .collect();
        made.sort_by_key(|key| std::cmp::Reverse(key.len()));
        made
    }

    fn keep_open(&mut self, components: &[String], dir: Downloads) {
        if !self.open.contains_key(components) && self.open.len() >= MAX_OPEN_DIRS {
            self.close_least_used();
        }
        self.open.insert(components.to_vec(), (dir, self.clock));
    }

    fn close_least_used(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.open.remove(&key);
        }
    }
}

impl FolderRx {
    /// Entry `index`'s path as saved, relative to the download folder, with the root's
    /// name now: a root renamed in the download folder during its receive is followed
    /// (checked by the device and inode it was made with, never by a name alone; one
    /// `stat` while the name holds, one scan of the download folder after each rename).
    pub(super) fn saved_as_now(&mut self, index: u64, downloads: &DownloadDir) -> String {
        let root = match (self.root_now.take(), self.root_id) {
            (Some(name), Some(id)) if !downloads.is_same_inode(&name, id).unwrap_or(false) => {
                downloads.find_dir(id).ok().flatten()
            }
            (now, _) => now,
        };
        self.root_now = root;
        let root = self.root_now.as_deref().unwrap_or(&self.root_name);
        let path = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|e| e.components.join("/"))
            .unwrap_or_default();
        format!("{root}/{path}")
    }

    /// Where entry `index`'s partial named `part_name` is below the root: its folders'
    /// names, then its own (for the resume state, which expiry reads).
    pub(super) fn partial_path(&self, index: u64, part_name: &str) -> Option<Vec<String>> {
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))?;
        let (_, parents) = entry.components.split_last()?;
        let mut path = parents.to_vec();
        path.push(part_name.to_owned());
        Some(path)
    }

    /// The folder for `components` (made as needed, parents first).
    pub(super) fn dir(&mut self, components: &[String]) -> Result<Downloads, String> {
        self.dirs.get_or_make(components)
    }

    /// Holds a verified file until its batch is committed: its descriptor is closed now
    /// (thousands may wait), its folder's handle stays open with it until then.
    pub(super) fn hold(&mut self, mut pending: Pending) {
        if let Err(e) = pending.part.close_verified() {
            log::warn!("{}: {e}", pending.shown);
        }
        let same_dir = self
            .pending
            .last()
            .is_some_and(|last| last.part.downloads().same_as(pending.part.downloads()));
        if self.pending.is_empty() {
            self.pending_dirs = 0;
        }
        if !same_dir {
            self.pending_dirs += 1;
        }
        self.pending.push(pending);
        self.oldest.get_or_insert_with(Instant::now);
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
        let many_dirs = !self.pending.is_empty() && self.pending_dirs >= MAX_PENDING_DIRS;
        waiting > 0 && (force || old || waiting >= FLUSH_VERDICTS || many_dirs)
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

impl Drop for FolderRx {
    /// A folder that ends early (a broken connection, a cancel, the server stopping) still
    /// names the files it verified and holds for their batch, as it names the batches the
    /// committer already has: each was received whole and matched its sender's hash, so it
    /// is kept (a resume then finds it held) and its row ends. The verdicts have no one to
    /// go to. Dropping the committer (declared after `pending`, so dropped after this runs)
    /// waits for the naming.
    fn drop(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let _unsent = self.committer.submit(pending);
        }
    }
}

/// Creates (or, when an earlier entry made it, reuses) the subfolder `name` and opens it
/// (for [`Dirs`], so also for LocalSend's folders).
fn make_dir(parent: &Downloads, name: &str) -> io::Result<Downloads> {
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
            Ok(()) => match open_made(downloads.dir(), &name) {
                Ok(root) => return Ok((name.clone(), root)),
                // Swapped for another folder since we made it: leave it, take the next.
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

/// Opens the folder `name` just made in `dir` (`mkdirat` gives no handle), refusing
/// (`PermissionDenied`) what cannot be it: another user's folder, or one with anything in it.
/// Between the `mkdirat` and this open, a local process that can rename entries in the
/// download folder may have moved the new folder away and given one of this user's own
/// folders its name: the owner is then ours, but such a folder is not empty, and writing
/// into it (then opening it to others when done) must not happen.
fn open_made(dir: &DownloadDir, name: &str) -> io::Result<DownloadDir> {
    let made = dir.open_dir(name)?;
    if !made.is_empty()? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the folder {name:?} just made was replaced; not writing into it"),
        ));
    }
    Ok(made)
}

pub(super) fn mtime(secs: u64) -> Option<SystemTime> {
    // Peer text: a time past what the clock can hold is no time at all, not a panic.
    (secs > 0)
        .then(|| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_handles_stay_open_and_a_reopened_folder_is_never_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("root")).unwrap();
        let downloads = Downloads::open(&tmp.path().join("root"), false).unwrap();
        let mut dirs = Dirs::new(downloads);
        let name = |i: usize| vec!["top".to_owned(), format!("d{i}")];
        for i in 0..MAX_OPEN_DIRS + 50 {
            dirs.get_or_make(&name(i)).unwrap();
        }
        assert!(dirs.open_count() <= MAX_OPEN_DIRS, "{}", dirs.open_count());
        // d0 was closed long ago: reopened from its parent when asked for again.
        let again = dirs.made(&name(0)).unwrap().unwrap();
        again.dir().create_new("x").unwrap();
        assert!(tmp.path().join("root/top/d0/x").is_file());
        // d1, also closed, is swapped for a symlink to a folder outside: never followed.
        let d1 = tmp.path().join("root/top/d1");
        std::fs::remove_dir(&d1).unwrap();
        std::os::unix::fs::symlink(outside.path(), &d1).unwrap();
        assert!(dirs.made(&name(1)).unwrap().is_err());
        assert!(dirs.get_or_make(&name(1)).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Never tried: not made by `made`.
        assert!(dirs.made(&["other".to_owned()]).is_none());
        assert!(!tmp.path().join("root/other").exists());
        // d2, also closed, is renamed away and another folder of ours takes its name:
        // not the folder made, so never written into.
        let d2 = tmp.path().join("root/top/d2");
        std::fs::rename(&d2, tmp.path().join("root/top/d2.aside")).unwrap();
        std::fs::create_dir(&d2).unwrap();
        assert!(dirs.made(&name(2)).unwrap().is_err());
        assert!(dirs.get_or_make(&name(2)).is_err());
        assert_eq!(std::fs::read_dir(&d2).unwrap().count(), 0);
    }

    /// The folder under a name just made must be empty: one of the user's own folders
    /// renamed to that name between the `mkdirat` and the open is never taken for it.
    #[test]
    fn a_folder_just_made_is_taken_only_while_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DownloadDir::open(tmp.path()).unwrap();
        dir.create_dir("new").unwrap();
        assert!(open_made(&dir, "new").is_ok());
        std::fs::create_dir(tmp.path().join("private")).unwrap();
        std::fs::write(tmp.path().join("private/secret.txt"), b"secret").unwrap();
        std::fs::remove_dir(tmp.path().join("new")).unwrap();
        std::fs::rename(tmp.path().join("private"), tmp.path().join("new")).unwrap();
        let Err(refused) = open_made(&dir, "new") else {
            panic!("the user's folder was taken for the one just made")
        };
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
    }
}
