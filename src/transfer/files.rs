//! Receiving a file safely on disk: a `.ferry.part` file beside the final name, a final name that
//! never overwrites anything, an atomic and durable commit, partial files kept for resume, and
//! the server-wide bookkeeping every connection shares ([`Downloads`]).
//!
//! Invariants:
//! - Every file-system call goes through the one [`DownloadDir`] handle (no paths, no symlinks
//!   followed; see [`super::dir`]).
//! - While bytes arrive, only `NAME.ferry.part` exists; `NAME` appears (by a no-replace rename
//!   or a hard link, which fail rather than replace) only in [`PartFile::commit`], after the
//!   data was synced to disk (unless fsync is off, for benchmarks); the folder is synced
//!   after the new name (inside a received folder, once per batch of files instead, before
//!   they are reported verified).
//! - A kept partial is resumed only after its open file was checked (a regular file, one link,
//!   ours); anything else under that name is left alone and the upload takes a fresh name.
//! - Dropping an uncommitted `PartFile` deletes the `.part` (so every early return cleans up),
//!   unless [`PartFile::keep`] asked to keep it (synced) for a later resume.
//! - A `.part` in use by a live transfer is listed in [`Downloads`], so a second connection can
//!   neither resume nor reuse it, and expiry leaves it alone.
//! - Finding a free name is bounded: the name itself is tried first (a file the user moved
//!   away frees it), then the next number to try is remembered per name (so 10 000 files of
//!   one name cost linear time, not quadratic) and a search gives up after
//!   [`NAME_SEARCH_LIMIT`].
//! - Accepted offers reserve their remaining bytes ([`Downloads::reserve`]) until they end, so
//!   parallel offers see each other in the free-space check.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::dir::{DownloadDir, Expired};
use super::folder_keys::FolderKeys;
use crate::protocol::SafeName;

/// How many numbered alternatives (`name (n).ext`) are tried before giving up.
const MAX_ALTERNATIVES: u32 = 100_000;
/// The longest a search for a free name may take.
pub const NAME_SEARCH_LIMIT: Duration = Duration::from_secs(2);
/// How many names the next-free-number memory holds before it starts over.
const MAX_NAME_HINTS: usize = 4096;

/// What Ferry appends to a file being received. Distinct from a plain `.part` (browsers use
/// that), so a user's own `a.txt.part` is never mistaken for a partial to resume or reuse;
/// [`crate::protocol::sanitize_file_name`] keeps received names from ending in it.
pub const PART_SUFFIX: &str = crate::protocol::PART_SUFFIX;

/// How many hex digits of a sender's resume key go into a part file's name.
pub const RESUME_TAG_LEN: usize = 16;

/// The name of the resume state of the folder with resume key `key`:
/// `.TAG.ferry-folder.ferry.part` (see `server::folder_resume`).
pub fn folder_state_name(key: &str) -> String {
    format!(".{}.ferry-folder{PART_SUFFIX}", resume_tag(key))
}

/// The name an older resume state of the folder with resume key `key` is set aside under
/// when a resume no longer finds its root (renamed away): `.TAG.DEV-INO.ferry-folder.ferry.part`,
/// DEV and INO (hex) that root's, so that expiry still finds the partial it kept.
pub fn folder_state_aside_name(key: &str, (dev, ino): (u64, u64)) -> String {
    format!(
        ".{}.{dev:x}-{ino:x}.ferry-folder{PART_SUFFIX}",
        resume_tag(key)
    )
}

/// The first [`RESUME_TAG_LEN`] characters of a resume key (all of a shorter one).
fn resume_tag(key: &str) -> &str {
    key.get(..key.len().min(RESUME_TAG_LEN)).unwrap_or(key)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not take the others down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The download folder and what one server's connections share about it: the `.part` files
/// live transfers are writing, the next free number per name, and the disk space reserved by
/// accepted offers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Downloads(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: DownloadDir,
    fsync: bool,
    /// Whether each commit syncs the folder itself; off inside received folders, whose
    /// driver syncs each folder once per batch of verdicts instead ([`Downloads::sync_dir`]).
    sync_dir_on_commit: bool,
    /// Names of the `.part` files in use.
    parts: Mutex<HashSet<String>>,
    /// Resume keys of the folders being received now (see [`Downloads::claim_folder`]).
    folders: FolderKeys,
    /// Per sanitised name: the number to start the next free-name search at.
    hints: Mutex<HashMap<String, u32>>,
    /// Bytes promised to accepted offers that are still running.
    reserved: Mutex<u64>,
}

/// Not enough room for an offer, counting what other accepted offers reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom {
    pub needed: u64,
    /// Free bytes minus what other offers reserved.
    pub available: u64,
}

/// A folder resume key held by the connection receiving that folder; released when dropped.
#[derive(Debug)]
pub struct FolderClaim {
    downloads: Downloads,
    key: String,
}

impl Drop for FolderClaim {
    fn drop(&mut self) {
        self.downloads.0.folders.release(&self.key);
    }
}

/// Disk space held for one accepted offer; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    downloads: Downloads,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = lock(&self.downloads.0.reserved);
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

impl Downloads {
    /// Opens the folder at `path` once; `fsync` off skips the syncs (benchmarks only).
    pub fn open(path: &Path, fsync: bool) -> io::Result<Self> {
        Ok(Self(Arc::new(Inner {
            dir: DownloadDir::open(path)?,
            fsync,
            sync_dir_on_commit: true,
            parts: Mutex::new(HashSet::new()),
            folders: FolderKeys::default(),
            hints: Mutex::new(HashMap::new()),
            reserved: Mutex::new(0),
        })))
    }

    /// A received folder's subfolder, as a download folder of its own: its partials,
    /// names and syncs are kept apart (space is reserved for the whole folder up front).
    /// Its commits sync the files' data but not the folder: the caller syncs it with
    /// [`Downloads::sync_dir`] once for many files, before it reports them verified.
    pub fn within(&self, dir: DownloadDir) -> Self {
        Self(Arc::new(Inner {
            dir,
            fsync: self.0.fsync,
            sync_dir_on_commit: false,
            parts: Mutex::new(HashSet::new()),
            folders: FolderKeys::default(),
            hints: Mutex::new(HashMap::new()),
            reserved: Mutex::new(0),
        }))
    }

    /// Whether `other` is this very handle (a clone of it), not just the same folder.
    pub fn same_as(&self, other: &Downloads) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The open folder handle.
    pub fn dir(&self) -> &DownloadDir {
        &self.0.dir
    }

    /// Whether commits sync data and folders.
    pub fn fsync(&self) -> bool {
        self.0.fsync
    }

    /// Makes the folder's new names durable (when syncs are on).
    pub fn sync_dir(&self) -> io::Result<()> {
        match self.0.fsync {
            true => self.0.dir.sync(),
            false => Ok(()),
        }
    }

    /// The folder's path, for display.
    pub fn path(&self) -> &Path {
        self.0.dir.path()
    }

    /// Makes every file's written data durable at once (`syncfs` on the folder's file
    /// system): one journal commit for a whole batch of small files instead of one each.
    pub fn sync_all_data(&self) -> io::Result<()> {
        self.0.dir.sync_fs()
    }

    /// An unnamed file in the folder, gone when closed (see [`DownloadDir::anonymous_file`]).
    pub fn anonymous_file(&self) -> io::Result<File> {
        self.0.dir.anonymous_file()
    }

    fn parts(&self) -> MutexGuard<'_, HashSet<String>> {
        lock(&self.0.parts)
    }

    /// Claims the folder resume key `key` for one connection until the returned claim is
    /// dropped; `None` while another connection holds it. Two connections resuming one
    /// folder would otherwise both write into its root (and its kept partial) at once.
    pub fn claim_folder(&self, key: &str) -> Option<FolderClaim> {
        self.0
            .folders
            .try_claim(key)
            .then(|| self.folder_claim(key))
    }

    /// Claims `key` like [`Downloads::claim_folder`], but while another connection holds it,
    /// waits until `deadline` for it to be let go; `waiting` is called every fraction of a
    /// second meanwhile, and gives up by returning false.
    pub fn claim_folder_within(
        &self,
        key: &str,
        deadline: Instant,
        waiting: impl FnMut() -> bool,
    ) -> Option<FolderClaim> {
        let claimed = self.0.folders.claim_within(key, deadline, waiting);
        claimed.then(|| self.folder_claim(key))
    }

    fn folder_claim(&self, key: &str) -> FolderClaim {
        FolderClaim {
            downloads: self.clone(),
            key: key.to_owned(),
        }
    }

    /// Whether a connection is receiving the folder with resume key `key` now.
    pub fn folder_in_use(&self, key: &str) -> bool {
        self.0.folders.contains(key)
    }

    /// Reserves `needed` bytes if the disk has them, counting what other running offers
    /// reserved. Where free space cannot be known, always succeeds.
    pub fn reserve(&self, needed: u64) -> Result<Reservation, NoRoom> {
        let mut reserved = lock(&self.0.reserved);
        if let Some(free) = self.0.dir.available_space() {
            let available = free.saturating_sub(*reserved);
            if available < needed {
                return Err(NoRoom { needed, available });
            }
        }
        *reserved = reserved.saturating_add(needed);
        Ok(Reservation {
            downloads: self.clone(),
            bytes: needed,
        })
    }

    /// Removes kept partials older than `max_age` at `now` (never one in use, nor the
    /// state of a folder being received, nor those named in `keep`).
    pub fn expire_partials(
        &self,
        max_age: Duration,
        now: SystemTime,
        keep: &[String],
    ) -> io::Result<Expired> {
        self.0.dir.expire_partials(max_age, now, |name| {
            self.parts().contains(name)
                || self.0.folders.any(|key| folder_state_name(key) == name)
                || keep.iter().any(|kept| kept == name)
        })
    }

    fn name_hint(&self, safe: &SafeName) -> u32 {
        lock(&self.0.hints).get(safe.as_str()).copied().unwrap_or(0)
    }

    fn set_name_hint(&self, safe: &SafeName, next: u32) {
        let mut hints = lock(&self.0.hints);
        if hints.len() >= MAX_NAME_HINTS && !hints.contains_key(safe.as_str()) {
            // A hint only saves time: forgetting them all is always correct.
            hints.clear();
        }
        hints.insert(safe.as_str().to_owned(), next);
    }
}

/// A file being received.
#[derive(Debug)]
pub struct PartFile {
    downloads: Downloads,
    safe: SafeName,
    /// The `n` in `name (n).ext` currently reserved by the `.part` file.
    number: u32,
    /// The `.part` file's name; empty once committed (nothing left to clean up).
    part_name: String,
    file: Option<File>,
    /// Device and inode of the file once [`PartFile::close_verified`] closed it: what the
    /// commit checks the final name against.
    closed_as: Option<(u64, u64)>,
    keep: bool,
}

/// `NAME.ferry.part`, or `NAME.TAG.ferry.part` for a Ferry sender's resume key, so only the
/// same sender sending the same file ever finds (or disturbs) that partial.
fn part_name(final_name: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{final_name}.{tag}{PART_SUFFIX}"),
        None => format!("{final_name}{PART_SUFFIX}"),
    }
}

impl PartFile {
    /// Reserves a free name (`a.txt`, `a (1).txt`, ...) for which neither the name nor its
    /// `.part` exists, by creating the `.part` exclusively. The name itself comes first, so a
    /// file the user removed frees its name for the next upload; then the search starts where
    /// the last one for this name ended (wrapping round to 1) and gives up after
    /// `NAME_SEARCH_LIMIT` (2 s).
    pub fn create(downloads: &Downloads, safe: &SafeName, tag: Option<&str>) -> io::Result<Self> {
        let dir = &downloads.0.dir;
        let hint = downloads.name_hint(safe);
        let start = hint.clamp(1, MAX_ALTERNATIVES);
        let deadline = Instant::now() + NAME_SEARCH_LIMIT;
        for number in std::iter::once(0)
            .chain(start..MAX_ALTERNATIVES)
            .chain(1..start)
        {
            if Instant::now() >= deadline {
                break;
            }
            let final_name = safe.numbered(number);
            if dir.exists(&final_name)? {
                continue;
            }
            let part_name = part_name(&final_name, tag);
            match dir.create_new(&part_name) {
                Ok(file) => {
                    // The name itself is tried first anyway: the hint says where the numbered
                    // names go on, so a freed name taken again leaves it where it was (a
                    // resume search relies on it too, see `resumable`).
                    if number > 0 || hint == 0 {
                        downloads.set_name_hint(safe, number.saturating_add(1));
                    }
                    downloads.parts().insert(part_name.clone());
                    return Ok(Self::open(downloads, safe, number, part_name, file));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!("no free name for {safe} in {}", dir.path().display()),
        ))
    }

    fn open(
        downloads: &Downloads,
        safe: &SafeName,
        number: u32,
        part_name: String,
        file: File,
    ) -> Self {
        Self {
            downloads: downloads.clone(),
            safe: safe.clone(),
            number,
            part_name,
            file: Some(file),
            closed_as: None,
            keep: false,
        }
    }

    /// Closes the verified file's descriptor while it waits for its batch's commit (inside a
    /// received folder thousands may wait at once; each holding a descriptor could exhaust
    /// them). The commit then checks the final name by the remembered device and inode.
    pub fn close_verified(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            let meta = match file.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    self.file = Some(file);
                    return Err(e);
                }
            };
            use std::os::unix::fs::MetadataExt;
            self.closed_as = Some((meta.dev(), meta.ino()));
        }
        Ok(())
    }

    /// The folder this file is received in.
    pub fn downloads(&self) -> &Downloads {
        &self.downloads
    }

    /// The `.part` file's own name (empty once committed).
    pub fn part_name(&self) -> &str {
        &self.part_name
    }

    /// The name the file will get, as far as known now.
    pub fn final_name(&self) -> String {
        self.safe.numbered(self.number)
    }

    /// The open `.part` file to write into.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("part file already closed"))
    }

    /// BLAKE3 of the first `len` bytes (a resumed partial's prefix); leaves the file
    /// positioned at `len`, ready to append.
    /// `tick` is called between buffers, so a long hash can keep its peer informed; when it
    /// says `false` (the server is stopping) the hash is given up (`ErrorKind::Interrupted`).
    pub fn hash_prefix(
        &mut self,
        len: u64,
        buf: &mut [u8],
        mut tick: impl FnMut() -> bool,
    ) -> io::Result<blake3::Hasher> {
        let file = self.file()?;
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = blake3::Hasher::new();
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..want])?;
            hasher.update(&buf[..want]);
            left -= want as u64;
            if !tick() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "given up"));
            }
        }
        Ok(hasher)
    }

    /// Undoes [`PartFile::keep`]: the `.part` is removed when this is dropped.
    pub fn discard_on_drop(&mut self) {
        self.keep = false;
    }

    /// Empties the file to start over (a partial that did not match the sender's file).
    pub fn restart(&mut self) -> io::Result<()> {
        let file = self.file()?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    /// Keeps the `.part` on disk when this is dropped, for a later resume, if it holds
    /// anything (an empty one would only block the name). Its data is synced first, so the
    /// length a later resume finds is what really reached the disk.
    pub fn keep(&mut self) {
        let fsync = self.downloads.0.fsync;
        self.keep = self.file.as_ref().is_some_and(|file| {
            let len = file.metadata().map_or(0, |m| m.len());
            if len > 0
                && fsync
                && let Err(e) = file.sync_data()
            {
                log::warn!("cannot sync the kept partial {:?}: {e}", self.part_name);
            }
            len > 0
        });
    }

    /// Moves the complete file to its final name without ever replacing an existing file,
    /// after syncing its data; then syncs the folder, so the name survives a power cut too.
    /// If the name was taken meanwhile (by something outside Ferry), the next free number is
    /// used. Returns the final path.
    pub fn commit(&mut self) -> io::Result<PathBuf> {
        self.commit_with(self.downloads.0.fsync, self.downloads.0.sync_dir_on_commit)
    }

    /// [`PartFile::commit`] for a file whose data the caller already made durable (a whole
    /// batch at once: see [`Downloads::sync_all_data`]): no sync of its own.
    pub fn commit_synced(&mut self) -> io::Result<PathBuf> {
        self.commit_with(false, self.downloads.0.sync_dir_on_commit)
    }

    /// [`PartFile::commit_synced`] in a batch whose names the caller makes durable together
    /// afterwards ([`Downloads::sync_dir`]): no sync at all of its own.
    pub fn commit_batched(&mut self) -> io::Result<PathBuf> {
        self.commit_with(false, false)
    }

    fn commit_with(&mut self, sync_data: bool, sync_dir: bool) -> io::Result<PathBuf> {
        let file = self.file.take();
        let identity = match (&file, self.closed_as) {
            (Some(file), _) => {
                use std::os::unix::fs::MetadataExt;
                if sync_data {
                    file.sync_data()?;
                }
                let meta = file.metadata()?;
                (meta.dev(), meta.ino())
            }
            // Closed by `close_verified`: its data was made durable with its batch.
            (None, Some(identity)) => identity,
            (None, None) => return Err(io::Error::other("part file already closed")),
        };
        let fsync = self.downloads.0.fsync;
        let dir = &self.downloads.0.dir;
        let deadline = Instant::now() + NAME_SEARCH_LIMIT;
        for number in self.number..MAX_ALTERNATIVES {
            if Instant::now() >= deadline {
                break;
            }
            let target = self.safe.numbered(number);
            // Hold the registry from the moment the `.part` name is freed (a rename frees it
            // at once) until it is unregistered, so no other transfer can create and register
            // a `.part` of that name in between and then lose its registration to ours.
            let mut in_use = self.downloads.parts();
            let still_linked = match dir.name_without_replacing(&self.part_name, &target) {
                Ok(still_linked) => still_linked,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            if !dir.is_same_inode(&target, identity)? {
                // Someone replaced our `.part` name meanwhile: what got the final name is
                // not what we received. Take the name back; the received data is lost.
                let _ = dir.remove(&target);
                return Err(io::Error::other(
                    "the partial file was replaced while it was being received",
                ));
            }
            // The data is safe under its final name; a leftover .part is only clutter.
            if still_linked {
                let _ = dir.remove(&self.part_name);
            }
            in_use.remove(&self.part_name);
            drop(in_use);
            self.number = number;
            self.part_name.clear();
            if fsync && sync_dir {
                dir.sync()?;
            }
            // Where the folder is now: it may have been renamed during the receive.
            return Ok(dir.path_now().join(target));
        }
        self.file = file;
        Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "no free final name",
        ))
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if self.part_name.is_empty() {
            return;
        }
        // As in `commit`: free the name and unregister it as one step.
        let mut in_use = self.downloads.parts();
        if !self.keep {
            let _ = self.downloads.0.dir.remove(&self.part_name);
        }
        in_use.remove(&self.part_name);
    }
}

#[path = "files_resume.rs"]
mod resume;

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
