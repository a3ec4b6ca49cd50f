//! Sending a folder: walking it (never following a symlink out of it: a link to a file
//! inside is sent as that file, anything else is skipped and named), announcing it once,
//! and, once the receiver accepted the whole folder, streaming every file back to back with
//! no round trip per file. The receiver's verdicts arrive in batches while later files are
//! still going out; each one becomes that file's outcome and event.
//!
//! Resume: the announcement carries a resume key derived from the folder's absolute path.
//! A receiver holding an interrupted transfer of it lists the files it holds whole, with
//! their BLAKE3; each of ours whose own hash is the same is not sent again (reported
//! verified, resumed from its full size). For the one partly received file it offers an
//! offset and a prefix hash: ours matching, only the rest is sent.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::answers::{CANCEL_GRACE, Heard, not_awaited};
use super::upload::{Stop, Upload, interrupted};
use super::{FileOutcome, OutgoingFile, read_some};
use crate::events::{Direction, Failure, FailureKind, TransferEvent, TransferId};
use crate::protocol::session::Answer;
use crate::protocol::{FolderEntry, MAX_FOLDER_DEPTH, Mode, encode_sender_msg};
use crate::transfer::TransferError;

/// A folder to send, as walked: its entries (what is announced), the files among them with
/// the ids their events carry, and what was skipped.
#[derive(Debug, Clone)]
pub struct OutgoingFolder {
    /// The folder's own name (the receiver's root).
    pub name: String,
    pub entries: Vec<FolderEntry>,
    /// Per file: its index among `entries`, and where it is read from.
    pub files: Vec<(u64, OutgoingFile)>,
    /// Relative paths not sent: symlinks leading out of the folder or to non-files, special
    /// files, paths deeper than the protocol allows.
    pub skipped: Vec<String>,
    /// Names this folder for a receiver's resume state (see `folder_resume_key`).
    pub resume_key: Option<String>,
}

/// The resume key of the folder at `root` (its canonical path): the same folder sent again
/// from this machine finds the receiver's state of an interrupted transfer; its files'
/// hashes decide what is sent again, so a changed folder only costs more bytes.
pub fn folder_resume_key(root: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ferry folder resume key v1\0");
    hasher.update(root.as_os_str().as_encoded_bytes());
    hasher.finalize().to_hex()[..32].to_owned()
}

/// One thing to send: a file, or a whole folder.
#[derive(Debug, Clone)]
pub enum OutgoingItem {
    File(OutgoingFile),
    Folder(OutgoingFolder),
}

impl OutgoingItem {
    /// The files this item sends, in order (each gets exactly one outcome).
    pub fn files(&self) -> Vec<&OutgoingFile> {
        match self {
            OutgoingItem::File(file) => vec![file],
            OutgoingItem::Folder(folder) => folder.files.iter().map(|(_, f)| f).collect(),
        }
    }
}

fn mtime_secs(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn owner_bits(meta: &std::fs::Metadata) -> u32 {
    (meta.permissions().mode() >> 6) & 7
}

/// Walks the folder at `path`: every file and subfolder (sorted by name, folders before
/// their contents), symlinks resolved only when they lead to a file inside the folder.
pub fn walk_folder(path: &Path) -> io::Result<OutgoingFolder> {
    let root = path.canonicalize()?;
    if !std::fs::metadata(&root)?.is_dir() {
        return Err(io::Error::other("not a folder"));
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".to_owned());
    let mut folder = OutgoingFolder {
        name,
        entries: Vec::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        resume_key: Some(folder_resume_key(&root)),
    };
    walk(&root, &root, "", 1, &mut folder)?;
    Ok(folder)
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    folder: &mut OutgoingFolder,
) -> io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        let leaf = child
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel = format!("{prefix}{leaf}");
        if depth > MAX_FOLDER_DEPTH {
            folder.skipped.push(rel);
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&child) else {
            folder.skipped.push(rel);
            continue;
        };
        let meta = if meta.file_type().is_symlink() {
            // Followed only to a file inside the chosen folder.
            match child.canonicalize() {
                Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                    Ok(target_meta) if target_meta.is_file() => target_meta,
                    _ => {
                        folder.skipped.push(rel);
                        continue;
                    }
                },
                _ => {
                    folder.skipped.push(rel);
                    continue;
                }
            }
        } else {
            meta
        };
        if meta.is_dir() {
            folder.entries.push(FolderEntry {
                path: rel.clone(),
                size: None,
                mtime: mtime_secs(&meta),
                mode: owner_bits(&meta),
            });
            walk(root, &child, &format!("{rel}/"), depth + 1, folder)?;
        } else if meta.is_file() {
            let file = OutgoingFile {
                identity: Some((meta.dev(), meta.ino())),
                ..OutgoingFile::new(child)
            };
            folder.files.push((folder.entries.len() as u64, file));
            folder.entries.push(FolderEntry {
                path: rel,
                size: Some(meta.len()),
                mtime: mtime_secs(&meta),
                mode: owner_bits(&meta),
            });
        } else {
            folder.skipped.push(rel);
        }
    }
    Ok(())
}

impl Upload<'_> {
    /// Sends a whole folder; one outcome per file, in order (events for each as well).
    pub fn send_folder(&mut self, folder: &OutgoingFolder) -> Vec<FileOutcome> {
        let mut outcomes: HashMap<TransferId, FileOutcome> = HashMap::new();
        let result = self.try_send_folder(folder, &mut outcomes);
        let leftover = match result {
            Ok(()) => None,
            // Declined as a whole: the connection goes on.
            Err(Stop::Outcome(outcome)) => Some(outcome),
            Err(stop) => Some(self.stopped(stop)),
        };
        if !self.session.at_boundary() {
            self.session.break_off();
        }
        folder
            .files
            .iter()
            .map(|(_, file)| {
                let outcome = outcomes.remove(&file.id).unwrap_or_else(|| {
                    leftover.clone().unwrap_or_else(|| {
                        FileOutcome::Failed(Failure::new(
                            FailureKind::Protocol,
                            "the receiver gave no verdict on this file",
                        ))
                    })
                });
                self.report(file.id, &outcome);
                outcome
            })
            .collect()
    }

    fn try_send_folder(
        &mut self,
        folder: &OutgoingFolder,
        outcomes: &mut HashMap<TransferId, FileOutcome>,
    ) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Outcome(FileOutcome::Cancelled));
        }
        if let Some(failure) = &self.broken {
            let failure = Failure::new(FailureKind::NotSent, failure.to_string());
            return Err(Stop::Outcome(FileOutcome::Failed(failure)));
        }
        if self.opts.mode == Mode::Plain {
            return Err(Stop::Outcome(FileOutcome::Failed(Failure::new(
                FailureKind::NotSent,
                "plain receivers cannot take folders (send them flattened)",
            ))));
        }
        let first = folder.files.first().map_or(0, |(_, f)| f.id);
        let key = folder.resume_key.as_deref();
        for frame in self
            .session
            .folder(&folder.name, &folder.entries, key, &self.opts.msg)?
        {
            let frame = encode_sender_msg(&frame).map_err(TransferError::from)?;
            self.write_or_explain(&frame)?;
        }
        // Resuming: what the receiver already holds (index -> its hash).
        let mut held: HashMap<u64, [u8; 32]> = HashMap::new();
        let (root, partial) = loop {
            match self.wait_answer(first)? {
                Answer::FolderHave { files } => held.extend(files),
                Answer::FolderAccepted { saved_as, partial } => break (saved_as, partial),
                other => return Err(not_awaited(other, "to a folder")),
            }
        };
        // Index -> (id, relative path, resumed from) of every file sent and not yet judged.
        let mut waiting: HashMap<u64, (TransferId, String, u64)> = HashMap::new();
        // Small files' frames and bytes go out together (uncorked below, or flushed by a
        // wait for an answer).
        let corked = self.stream.set_corked(true);
        self.io_or_explain(corked)?;
        for (index, file) in &folder.files {
            if self.cancel.is_cancelled() {
                break;
            }
            let entry = &folder.entries[*index as usize];
            let saved_as = format!("{root}/{}", entry.path);
            if let Some(theirs) = held.get(index)
                && self.holds_same(file, entry, theirs)?
            {
                let size = entry.size.unwrap_or(0);
                self.started(file, entry);
                let outcome = FileOutcome::Verified {
                    saved_as,
                    resumed_from: size,
                };
                outcomes.insert(file.id, outcome);
                continue;
            }
            let resume = partial
                .filter(|(i, _, _)| i == index)
                .map(|(_, offset, prefix)| (offset, prefix));
            match self.send_folder_file(*index, file, entry, resume)? {
                Sent::Ended(outcome) => {
                    outcomes.insert(file.id, outcome);
                }
                Sent::Whole { resumed_from } => {
                    waiting.insert(*index, (file.id, saved_as, resumed_from));
                }
            }
            for verdicts in std::mem::take(&mut self.verdicts) {
                self.apply_verdicts(verdicts, &mut waiting, outcomes)?;
            }
            while let Some(heard) = self.answers.as_ref().and_then(|rx| rx.try_recv().ok()) {
                self.take_verdicts(heard, &mut waiting, outcomes)?;
            }
        }
        for verdicts in std::mem::take(&mut self.verdicts) {
            self.apply_verdicts(verdicts, &mut waiting, outcomes)?;
        }
        let end = self.session.folder_end()?;
        self.write_or_explain(&encode_sender_msg(&end).map_err(TransferError::from)?)?;
        let uncorked = self.stream.set_corked(false);
        self.io_or_explain(uncorked)?;
        // A cancel from here on (or before: the cork may have held many files) cannot undo
        // the files that went out whole: the receiver verifies and names them all the same,
        // so their verdicts are still awaited, for a short while, rather than calling them
        // cancelled.
        loop {
            match self.wait_answer_within(first, Some(CANCEL_GRACE))? {
                Answer::FolderDone { .. } => break,
                answer => self.apply_verdicts(answer, &mut waiting, outcomes)?,
            }
        }
        for (_, file) in &folder.files {
            if self.cancel.is_cancelled() && !outcomes.contains_key(&file.id) {
                outcomes.insert(file.id, FileOutcome::Cancelled);
            }
        }
        Ok(())
    }

    fn take_verdicts(
        &mut self,
        heard: Heard,
        waiting: &mut HashMap<u64, (TransferId, String, u64)>,
        outcomes: &mut HashMap<TransferId, FileOutcome>,
    ) -> Result<(), Stop> {
        self.heard_from_peer = true;
        match heard {
            Heard::Msg(msg) => {
                let answer = self.session.on_answer(msg)?;
                self.apply_verdicts(answer, waiting, outcomes)
            }
            Heard::Closed(reason) => Err(Stop::broken(interrupted(), reason)),
        }
    }

    fn apply_verdicts(
        &mut self,
        answer: Answer,
        waiting: &mut HashMap<u64, (TransferId, String, u64)>,
        outcomes: &mut HashMap<TransferId, FileOutcome>,
    ) -> Result<(), Stop> {
        match answer {
            Answer::Files { verified, failed } => {
                for index in verified {
                    if let Some((id, saved_as, resumed_from)) = waiting.remove(&index) {
                        let outcome = FileOutcome::Verified {
                            saved_as,
                            resumed_from,
                        };
                        outcomes.insert(id, outcome);
                    }
                }
                for failure in failed {
                    if let Some((id, _, _)) = waiting.remove(&failure.index) {
                        let failure = Failure::new(FailureKind::ReceiverFailed, failure.reason);
                        outcomes.insert(id, FileOutcome::Failed(failure));
                    }
                }
                Ok(())
            }
            Answer::PeerCancelled { reason, .. } => Err(Stop::PeerCancelled(reason)),
            Answer::Failed { reason } => Err(Stop::broken(FailureKind::ReceiverFailed, reason)),
            other => Err(Stop::broken(
                FailureKind::Protocol,
                format!("unexpected answer inside a folder: {other:?}"),
            )),
        }
    }

    /// Whether our file is exactly what the receiver holds (its hash is `theirs`): one read
    /// of the file. A file we cannot read is sent (and fails) the ordinary way.
    fn holds_same(
        &mut self,
        file: &OutgoingFile,
        entry: &FolderEntry,
        theirs: &[u8; 32],
    ) -> Result<bool, Stop> {
        let Ok(mut opened) = file.open() else {
            return Ok(false);
        };
        let mut hasher = blake3::Hasher::new();
        let whole = self.hash_prefix(&mut opened, &mut hasher, entry.size.unwrap_or(0))?;
        Ok(whole && hasher.finalize().as_bytes() == theirs)
    }

    /// Hashes the next `len` bytes of `file` into `hasher`; false if the file ended first or
    /// could not be read.
    fn hash_prefix(
        &mut self,
        file: &mut File,
        hasher: &mut blake3::Hasher,
        len: u64,
    ) -> Result<bool, Stop> {
        let mut left = len;
        while left > 0 {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let want = left.min(self.buf.len() as u64) as usize;
            match read_some(file, &mut self.buf[..want]) {
                Ok(0) | Err(_) => return Ok(false),
                Ok(n) => {
                    hasher.update(&self.buf[..n]);
                    left -= n as u64;
                }
            }
        }
        Ok(true)
    }

    fn started(&self, file: &OutgoingFile, entry: &FolderEntry) {
        self.sink.transfer(TransferEvent::Started {
            id: file.id,
            direction: Direction::Outgoing,
            peer: self.peer,
            name: entry.path.clone(),
            saved_as: None,
            bytes_total: entry.size.unwrap_or(0),
            mode: Mode::Ferry,
            msg: self.opts.msg.clone(),
            security: self.security.clone(),
        });
    }

    /// One file of an accepted folder: [`Sent::Ended`] when it ended here (not sent,
    /// cancelled, unreadable), [`Sent::Whole`] when it went out whole and waits for its
    /// verdict. `resume`: the receiver holds its first bytes (offset, their hash).
    fn send_folder_file(
        &mut self,
        index: u64,
        file: &OutgoingFile,
        entry: &FolderEntry,
        resume: Option<(u64, [u8; 32])>,
    ) -> Result<Sent, Stop> {
        let size = entry.size.unwrap_or(0);
        let opened = file.open_sized().and_then(|(f, now)| match now == size {
            true => Ok(f),
            false => Err(io::Error::other("it changed since the folder was read")),
        });
        let mut opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                return Ok(Sent::Ended(FileOutcome::Failed(Failure::new(
                    FailureKind::LocalFile,
                    format!("cannot send {}: {e}", file.path.display()),
                ))));
            }
        };
        self.started(file, entry);
        let mut hasher = blake3::Hasher::new();
        let mut start = 0;
        if let Some((offset, theirs)) = resume {
            // `finalize` does not consume: the same hasher goes on over the rest.
            let read = self.hash_prefix(&mut opened, &mut hasher, offset)?;
            if read && *hasher.finalize().as_bytes() == theirs {
                start = offset;
            } else {
                hasher = blake3::Hasher::new();
                opened.seek(SeekFrom::Start(0)).map_err(|e| {
                    Stop::broken(FailureKind::LocalFile, format!("cannot read the file: {e}"))
                })?;
            }
        }
        let frame = self.session.file(index, start)?;
        self.write_or_explain(&encode_sender_msg(&frame).map_err(TransferError::from)?)?;
        if let Some(outcome) = self.stream_data(file.id, &mut opened, &mut hasher, start)? {
            return Ok(Sent::Ended(outcome));
        }
        let end = self.session.end(*hasher.finalize().as_bytes())?;
        self.write_or_explain(&encode_sender_msg(&end).map_err(TransferError::from)?)?;
        Ok(Sent::Whole {
            resumed_from: start,
        })
    }
}

/// How sending one file of a folder ended on this side.
enum Sent {
    /// It ended here (with this outcome), no verdict will come.
    Ended(FileOutcome),
    /// Every byte from `resumed_from` on went out: its verdict will come.
    Whole { resumed_from: u64 },
}
