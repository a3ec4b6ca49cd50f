//! Resuming a received folder: what a receiver keeps of an interrupted folder transfer, and
//! what it finds there when the same sender sends the same folder again.
//!
//! The state is one small file in the download folder, `.TAG.ferry-folder.ferry.part` (TAG:
//! the first 16 hex digits of the sender's folder resume key), holding the full key, the
//! root it created and the index of the file whose partial it kept. Its name ends in the
//! partial suffix, so no received name can ever collide with it and the same expiry as for
//! partials removes it; it is read only after the open file was checked (a regular file of
//! ours with one link, no symlink followed) and only up to [`MAX_STATE_BYTES`]. A new state
//! is written aside (`.new.TAG...`) and renamed over the old one, so there is always a whole
//! one.
//!
//! On a new offer with the same key whose root still exists, every listed file found whole
//! under its final name in its folder (opened beneath the folder's handle, never through a
//! symlink; a regular file of ours of the listed size) is hashed and listed in `folder_have`
//! frames, and the kept partial is offered with the hash of its bytes, as for single files.
//! The hashes are computed now, from what is on disk, so a file changed since is simply
//! sent again (under a numbered name: nothing is ever overwritten). The disk space held for
//! the resumed folder, checked before any hashing, is only what the root does not hold yet
//! by size ([`bytes_held`]), as for a single file's resume.
//!
//! The state also names where the kept partial is (its folders and `.part` name), so that
//! when the state expires the partial goes with it ([`expire_kept`]); a state whose folder
//! a connection is receiving now is never expired. A root renamed since (by the user, or by
//! a local process that can write in the download folder) is found by the device and inode
//! the state records, and a state a resume could not use for that reason is set aside
//! rather than replaced (`.TAG.DEV-INO.ferry-folder.ferry.part`), so its partial still
//! expires on time; nothing but a partial of ours, in a folder of ours, is ever removed.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::connection::{Connection, keep_waiting};
use super::folder_rx::FolderRx;
use crate::protocol::{PART_SUFFIX, SafeEntry, WaitFor, sanitize_file_name};
use crate::transfer::files::{
    folder_state_aside_name as aside_name, folder_state_name as state_name,
};
use crate::transfer::{DownloadDir, Downloads, Expired, PartFile};

/// The longest state file read.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What a receiver keeps of an interrupted folder transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FolderState {
    /// The sender's full resume key.
    pub key: String,
    /// The root folder's name in the download folder.
    pub root: String,
    /// The entry whose partial was kept, if any.
    #[serde(default)]
    pub partial: Option<u64>,
    /// Where that partial is below the root: its folders' names, then its own `.part` name
    /// (for expiry, which has no listing to find it by).
    #[serde(default)]
    pub partial_path: Option<Vec<String>>,
    /// The root's device and inode when it was made: the folder under the root's name is
    /// resumed into (or expired from) only while it is that very folder. A local process
    /// that can rename entries in the download folder could otherwise move the root away
    /// and give the user's own private folder its name, and the resume would write into it
    /// and open it to others when done. A state without it (older) is not resumed.
    #[serde(default)]
    pub root_id: Option<(u64, u64)>,
}

/// The state kept for `key`, with its root opened (never through a symlink), if both are
/// there and sound.
///
/// A state whose root is not under its name any more (renamed away, or another folder
/// given its name) is not resumed, and the state this receive saves next replaces it; so
/// it is set aside first ([`set_aside`]), for expiry to still find the partial it kept.
pub(super) fn load(downloads: &Downloads, key: &str) -> Option<(FolderState, DownloadDir)> {
    let dir = downloads.dir();
    let name = state_name(key);
    let state = read_state(dir, &name)?;
    if state.key != key {
        return None;
    }
    match open_root(dir, &state) {
        Ok(root) => Some((state, root)),
        Err(_) => {
            set_aside(dir, &name, &state);
            None
        }
    }
}

/// About how many of the offered folder's bytes a resumed root already holds, by size alone
/// (nothing hashed: it sizes the disk space to hold before anyone waits for hashing): each
/// listed file found whole under its final name, as [`Connection::find_held`] would look
/// for it, and the kept partial's length. A file found here that turns out changed is sent
/// again; the space it then needs was not held, as for any file that grows on disk while
/// received.
pub(super) fn bytes_held(root: &DownloadDir, state: &FolderState, entries: &[SafeEntry]) -> u64 {
    let mut held = 0u64;
    // Entries come folder by folder: one opened folder serves a run of them.
    let mut below: Option<(&[String], Option<DownloadDir>)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let (Some(size), Some((leaf, parent))) = (entry.size, entry.components.split_last()) else {
            continue;
        };
        let dir = if parent.is_empty() {
            Some(root)
        } else {
            if below.as_ref().is_none_or(|(at, _)| *at != parent) {
                below = Some((parent, open_below(root, parent)));
            }
            below.as_ref().and_then(|(_, dir)| dir.as_ref())
        };
        if let Some(dir) = dir {
            held = held.saturating_add(file_held(dir, state, index as u64, leaf, size));
        }
    }
    held
}

/// The folder at `path` below `root`, each step opened never through a symlink.
fn open_below(root: &DownloadDir, path: &[String]) -> Option<DownloadDir> {
    let (first, rest) = path.split_first()?;
    let mut dir = root.open_dir(first).ok()?;
    for name in rest {
        dir = dir.open_dir(name).ok()?;
    }
    Some(dir)
}

/// What of entry `index` (`leaf`, `size` bytes) is in `dir`: all of it under its final name,
/// the kept partial's length, or nothing.
fn file_held(dir: &DownloadDir, state: &FolderState, index: u64, leaf: &str, size: u64) -> u64 {
    if state.partial != Some(index) {
        let name = sanitize_file_name(leaf);
        return whole_file(dir, name.as_str(), size).map_or(0, |_| size);
    }
    let Some(part) = state.partial_path.as_ref().and_then(|p| p.last()) else {
        return 0;
    };
    match dir.open_existing(part) {
        Ok(file) if DownloadDir::is_ours(&file) => file.metadata().map_or(0, |m| m.len().min(size)),
        _ => 0,
    }
}

/// The listed file `name` in `dir` found whole: a regular file of ours (one link, opened
/// never through a symlink) of exactly `size` bytes.
fn whole_file(dir: &DownloadDir, name: &str, size: u64) -> Option<std::fs::File> {
    let file = dir.open_existing(name).ok()?;
    let whole = DownloadDir::is_ours(&file) && file.metadata().is_ok_and(|m| m.len() == size);
    whole.then_some(file)
}

/// Keeps the state in `name`, whose root a resume did not find, under its aside name
/// ([`aside_name`]: the key's tag and the root's device and inode), where no resume reads
/// it and expiry does. Only a state that kept a partial is worth keeping; its modification
/// time (when the partial was kept) goes with it, so it expires when it would have.
fn set_aside(dir: &DownloadDir, name: &str, state: &FolderState) {
    let (Some(id), Some(_)) = (state.root_id, &state.partial_path) else {
        return;
    };
    let aside = aside_name(&state.key, id);
    match dir.replace_own(name, &aside) {
        Ok(()) => log::info!(
            "the folder {:?} is not where its resume state says: its partial expires with {aside:?}",
            state.root
        ),
        Err(e) => log::warn!("cannot set the resume state {name:?} aside: {e}"),
    }
}

/// The state's root, opened by its name (never through a symlink, only a folder of ours),
/// if it is still the very folder the state was written for (see [`FolderState::root_id`]).
fn open_root(dir: &DownloadDir, state: &FolderState) -> io::Result<DownloadDir> {
    open_kept_for(dir, &state.root, state.root_id).inspect_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            log::warn!("leaving {:?} alone: {e}", state.root);
        }
    })
}

/// The folder `name` directly in `dir`, opened never through a symlink, if the handle is
/// the folder with device and inode `id` (a state without one names no folder).
fn open_kept_for(dir: &DownloadDir, name: &str, id: Option<(u64, u64)>) -> io::Result<DownloadDir> {
    let root = dir.open_dir(name)?;
    if id.is_none() || id != Some(root.identity()?) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not the folder the resume state was kept for",
        ));
    }
    Ok(root)
}

/// The state in the file `name`: read only from a regular file of ours, never through a
/// symlink, at most [`MAX_STATE_BYTES`]; its root must be one name Ferry could have made.
fn read_state(dir: &DownloadDir, name: &str) -> Option<FolderState> {
    let file = dir.open_existing(name).ok()?;
    if !DownloadDir::is_ours(&file) {
        log::warn!("leaving {name:?} alone: not a file of ours");
        return None;
    }
    let mut text = String::new();
    file.take(MAX_STATE_BYTES).read_to_string(&mut text).ok()?;
    let state: FolderState = serde_json::from_str(&text).ok()?;
    // The handles check the rest.
    (sanitize_file_name(&state.root).as_str() == state.root).then_some(state)
}

/// The expiry of old partials in the download folder: a folder's kept partial goes with its
/// folder's state ([`expire_kept`]), then the old partials and states themselves, except
/// the states whose partial must wait (else nothing would ever name it again).
pub(crate) fn expire(
    downloads: &Downloads,
    max_age: Duration,
    now: SystemTime,
) -> io::Result<Expired> {
    let (kept, waiting) = expire_kept(downloads, max_age, now);
    let mut expired = downloads.expire_partials(max_age, now, &waiting)?;
    for (path, size) in kept {
        expired.names.push(path);
        expired.bytes = expired.bytes.saturating_add(size);
    }
    expired.names.sort();
    Ok(expired)
}

/// Before expiry removes old folder states (they end in the partial suffix too): removes
/// the kept partial each old state names inside its folder, so an abandoned folder does not
/// hold its partial forever. Only that one name is touched, and only when it is a regular
/// file of ours with one link ending in the partial suffix, reached through folders of
/// ours one component at a time, never through a symlink. The root is found under its
/// recorded name or, renamed since, by its recorded device and inode ([`find_root`]), and
/// states set aside by [`load`] count too. Returns each removed partial's path below the
/// download folder (the root's name now) and its size, and the names of the states that
/// must stay for a later expiry: those whose folder is being received now (its key
/// claimed), and those whose partial was written since (see [`remove_kept`]).
fn expire_kept(
    downloads: &Downloads,
    max_age: Duration,
    now: SystemTime,
) -> (Vec<(String, u64)>, Vec<String>) {
    let dir = downloads.dir();
    let (mut removed, mut waiting) = (Vec::new(), Vec::new());
    let old = match dir.old_partials(max_age, now) {
        Ok(old) => old,
        Err(e) => {
            log::warn!("cannot look for old folder states: {e}");
            return (removed, waiting);
        }
    };
    for (name, _) in old {
        if !(name.starts_with('.') && name.ends_with(&format!(".ferry-folder{PART_SUFFIX}"))) {
            continue;
        }
        let Some(state) = read_state(dir, &name) else {
            continue;
        };
        // A state set aside names a root no receive uses any more, but the folder that has
        // its identity now may be a new root of the same key (a deleted root's inode
        // reused) that a receive is resuming: either kind waits while its key is held.
        let aside = state.root_id.map(|id| aside_name(&state.key, id)) == Some(name.clone());
        if !(aside || state_name(&state.key) == name) {
            continue;
        }
        if downloads.folder_in_use(&state.key) {
            waiting.push(name);
            continue;
        }
        let Some(path) = state.partial_path.as_ref().filter(|p| !p.is_empty()) else {
            continue;
        };
        match remove_kept(dir, &state, path, now.checked_sub(max_age)) {
            Ok(Some((root, size))) => removed.push((format!("{root}/{}", path.join("/")), size)),
            // Its state stays until the partial is as old, to take it then.
            Ok(None) => waiting.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("leaving the kept partial in {:?} alone: {e}", state.root),
        }
    }
    (removed, waiting)
}

/// The state's root wherever it is now, directly in the download folder: under the name
/// the state records, or, renamed since (by the user, or a local process), under the name
/// that now has its recorded device and inode. Opened never through a symlink, and only
/// when the handle itself has that identity (so nothing swapped in under either name is
/// ever used). Returns the handle and the root's name now.
fn find_root(dir: &DownloadDir, state: &FolderState) -> io::Result<(DownloadDir, String)> {
    let Some(id) = state.root_id else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a state that does not say which folder it was kept for",
        ));
    };
    if let Ok(root) = open_kept_for(dir, &state.root, Some(id)) {
        return Ok((root, state.root.clone()));
    }
    let name = dir.find_dir(id)?.ok_or(io::ErrorKind::NotFound)?;
    Ok((open_kept_for(dir, &name, Some(id))?, name))
}

/// Removes `root/path...` if it is a kept partial of ours last written before `cutoff`
/// (see [`expire_kept`]); returns the root's name now, and the partial's size, or nothing
/// when the partial was written since `cutoff` (left for a later expiry).
///
/// The partial's own age is checked too: a folder's device and inode can be those of a
/// folder made after the state's root was deleted (inode numbers are reused), and a receive
/// writing into that one now must not lose its partial of the same name.
fn remove_kept(
    dir: &DownloadDir,
    state: &FolderState,
    path: &[String],
    cutoff: Option<SystemTime>,
) -> io::Result<Option<(String, u64)>> {
    let not_ours = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let Some((leaf, parents)) = path.split_last() else {
        return Err(not_ours("no partial named"));
    };
    // Names Ferry could have made: sanitised folders, a partial's suffix.
    if parents.iter().any(|c| sanitize_file_name(c).as_str() != c) {
        return Err(not_ours("not a folder name Ferry makes"));
    }
    if !leaf.ends_with(PART_SUFFIX) {
        return Err(not_ours("not a partial's name"));
    }
    let (mut folder, root) = find_root(dir, state)?;
    for component in parents {
        folder = folder.open_dir(component)?;
    }
    let file = folder.open_existing(leaf)?;
    if !DownloadDir::is_ours(&file) {
        return Err(not_ours("not a regular file of ours with one link"));
    }
    let meta = file.metadata()?;
    if cutoff.is_none_or(|cutoff| meta.modified().is_ok_and(|written| written >= cutoff)) {
        return Ok(None);
    }
    let size = meta.len();
    if !folder.is_same_file(leaf, &file)? {
        return Err(not_ours("replaced meanwhile"));
    }
    folder.remove(leaf)?;
    Ok(Some((root, size)))
}

/// Records `state` (replacing an older one); synced when the download folder syncs.
///
/// Written aside and put in place in one rename, so the state before stays whole until the
/// new one is: a crash or a failed write midway never leaves the folder without one.
pub(super) fn save(downloads: &Downloads, state: &FolderState) -> io::Result<()> {
    let dir = downloads.dir();
    let name = state_name(&state.key);
    let aside = format!(".new{name}");
    // A leftover of a save cut short (or anything planted there) is not ours to keep.
    match dir.remove(&aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = dir.create_new(&aside)?;
    let written = serde_json::to_vec(state)
        .map_err(io::Error::other)
        .and_then(|json| file.write_all(&json))
        .and_then(|()| match downloads.fsync() {
            true => file.sync_data(),
            false => Ok(()),
        })
        .and_then(|()| dir.replace_own(&aside, &name));
    if written.is_err() {
        let _ = dir.remove(&aside);
    }
    written
}

/// Forgets the state for `key` (the folder arrived whole).
pub(super) fn remove(downloads: &Downloads, key: &str) {
    match downloads.dir().remove(&state_name(key)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove the folder state {:?}: {e}", state_name(key)),
    }
}

/// The resumed partial of one entry: its file, and the hash of the bytes it holds.
pub(super) struct KeptPartial {
    pub index: u64,
    pub part: PartFile,
    pub offset: u64,
    pub hasher: blake3::Hasher,
}

impl Connection<'_> {
    /// What a resumed root holds of the offered folder: the files there whole (index, BLAKE3)
    /// and the kept partial of entry `partial`. Tells the sender to keep waiting
    /// ([`keep_waiting`]) every few seconds while it hashes, so the sender does not give up.
    pub(super) fn find_held(
        &mut self,
        rx: &mut FolderRx,
        partial: Option<u64>,
    ) -> (Vec<(u64, [u8; 32])>, Option<KeptPartial>) {
        let mut held = Vec::new();
        let mut kept = None;
        let mut last_word = Some(Instant::now());
        for i in 0..rx.entries.len() {
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let entry = rx.entries[i].clone();
            let (Some(size), Some((leaf, parent))) = (entry.size, entry.components.split_last())
            else {
                continue;
            };
            let Ok(dir) = rx.dir(parent) else {
                continue;
            };
            let safe = sanitize_file_name(leaf);
            let index = i as u64;
            if partial == Some(index) {
                if let Ok(Some((mut part, len))) = PartFile::resumable(&dir, &safe, size, None) {
                    part.keep();
                    let (writer, buf) = (&mut self.writer, &mut self.buf);
                    let stopping = &self.shared.stopping;
                    let tick = || {
                        let _ = keep_waiting(writer, &mut last_word, WaitFor::Checking);
                        !stopping.load(Ordering::SeqCst)
                    };
                    if let Ok(hasher) = part.hash_prefix(len, buf, tick) {
                        kept = Some(KeptPartial {
                            index,
                            part,
                            offset: len,
                            hasher,
                        });
                    }
                }
                continue;
            }
            let Some(mut file) = whole_file(dir.dir(), safe.as_str(), size) else {
                continue;
            };
            let mut hasher = blake3::Hasher::new();
            let mut hashed = true;
            loop {
                // A stopping server gives the hashing up: stop must not wait for it.
                if self.shared.stopping.load(Ordering::SeqCst) {
                    hashed = false;
                    break;
                }
                match file.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hasher.update(&self.buf[..n]);
                    }
                    Err(_) => {
                        hashed = false;
                        break;
                    }
                }
                let _ = keep_waiting(&mut self.writer, &mut last_word, WaitFor::Checking);
            }
            if hashed {
                held.push((index, *hasher.finalize().as_bytes()));
            }
        }
        (held, kept)
    }
}

#[cfg(test)]
#[path = "folder_resume_tests.rs"]
mod tests;
