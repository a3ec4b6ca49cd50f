//! Receiving a folder batch: the whole folder is accepted or declined once, its root is
//! created under a free name (`photos`, `photos (1)`, ...) with `mkdirat` beneath the download
//! folder's handle, and its files then arrive back to back with no round trip each. Every
//! file is written as a `.ferry.part` in its (sanitised) subfolder, verified with its own
//! BLAKE3, given its modification time and owner bits, and committed under its final name;
//! the verdicts go back in batches (`files` answers) carrying each file's index.
//!
//! Nothing escapes the folder: every subfolder is created with `mkdirat` and opened
//! `O_DIRECTORY | O_NOFOLLOW` beneath its parent's handle, one sanitised component at a
//! time, and every file is created relative to its folder's handle. Only a few subfolder
//! handles stay open ([`super::folder_rx::Dirs`]), and a verified file waiting for its batch
//! holds no descriptor, so the sender's listing cannot exhaust descriptors.
//!
//! A folder with a resume key is received by one connection at a time
//! ([`crate::transfer::Downloads::claim_folder`]): a second connection offering it while the
//! first runs waits as long as the first could be a connection whose sender is gone
//! (`Connection::claim_folder`), then is refused with the reason before anyone is asked.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::connection::{ConnEnd, Connection, keep_waiting};
use super::fills::Through;
use super::folder_resume::{self, FolderState};
use super::lock;
use super::outcome::{FileEnd, keep_interrupted, report_sender_cancel};
use super::pump::{DataEnd, DataSource, RateFloor, simple};
use crate::events::{
    Direction, Failure, FailureKind, Refusal, TransferEvent, TransferId, next_transfer_id,
};
use crate::protocol::session::FrameStep;
use crate::protocol::{
    CancelCode, Header, Mode, ReceiverMsg, SafeEntry, WaitFor, encode_receiver_msg,
    sanitize_file_name,
};
use crate::transfer::files::NoRoom;
use crate::transfer::{FolderClaim, PartFile, TransferError, write_all};

use super::committer::{Committed, Committer};
use super::folder_rx::{Dirs, FLUSH_BEFORE_BYTES, FolderRx, Pending, create_root, mtime};

/// How much longer than the idle timeout a connection waits for a folder's key (see
/// `Connection::claim_folder`): time for the holder to notice and end.
const CLAIM_MARGIN: Duration = Duration::from_secs(2);

impl Connection<'_> {
    /// The folder resume key `key` for this connection, `None` while another one keeps it.
    ///
    /// A sender whose network dropped and that resumes at once finds the key still held:
    /// the connection it left has not noticed yet, and will not before its idle timeout.
    /// So the key is waited for until then (and [`CLAIM_MARGIN`] more), telling this sender
    /// to keep waiting meanwhile, instead of refusing a resume that would work a few
    /// seconds later. A holder that is alive (its user deciding, its files arriving) keeps
    /// the key past that, and this connection is refused; so is it at once when its own
    /// sender leaves meanwhile, or the server stops.
    fn claim_folder(&mut self, key: &str) -> Option<FolderClaim> {
        let downloads = self.shared.downloads.clone();
        if let Some(claim) = downloads.claim_folder(key) {
            return Some(claim);
        }
        log::info!(
            "{}: waiting for another connection to let the folder go",
            self.peer
        );
        let deadline = Instant::now() + self.shared.config.idle_timeout + CLAIM_MARGIN;
        let mut last_word: Option<Instant> = None;
        downloads.claim_folder_within(key, deadline, || {
            // A sender that left (gave up, cancelled, retried on another connection) stops
            // the wait: this connection must not hold its slot, nor take the key from the
            // connection that is really resuming.
            if self.shared.stopping.load(Ordering::Relaxed) || self.sender_has_left() {
                return false;
            }
            keep_waiting(&mut self.writer, &mut last_word, WaitFor::EarlierCopy).is_ok()
        })
    }

    /// The offered folder (the session holds its listing): decide, create its root, answer,
    /// then receive its files until the sender's `folder_end`.
    pub(super) fn receive_folder(&mut self) -> Result<(), ConnEnd> {
        let Some(folder) = self.session.folder() else {
            return Err(TransferError::Unexpected("a folder with no listing".into()).into());
        };
        let (name, bytes) = (folder.name.clone(), folder.totals().1);
        let (resume_key, msg) = (folder.resume_key.clone(), folder.msg.clone());
        let safe = sanitize_file_name(&name);
        let header = Header {
            eager: false,
            file_name: name.clone(),
            file_size: bytes,
            msg: msg.clone(),
            resume_key: None,
        };
        let downloads = self.shared.downloads.clone();
        // The settings' own refusals come first: nobody waits for a folder that would be
        // refused anyway. Then one connection at a time per folder key: a second one
        // resuming the same folder would write into the same root and partial. It waits for
        // the first to end, as long as that one could be a connection whose sender is gone
        // (see `claim_folder`), and is refused with the reason after that, before anyone is
        // asked.
        let mut refusal = self.refused_by_policy();
        let mut claim = None;
        if let (None, Some(key)) = (&refusal, resume_key.as_deref()) {
            claim = self.claim_folder(key);
            if claim.is_none() {
                refusal = Some(Refusal::FolderBusy);
            }
        }
        if refusal.is_none() {
            refusal = self.decide_folder()?.err();
        }
        let _claim = claim;
        // An interrupted transfer of this very folder (same sender, same key) goes on in
        // the root it created, and what that holds already needs no space again.
        let resumed = match (&refusal, &resume_key) {
            (None, Some(key)) => folder_resume::load(&downloads, key),
            _ => None,
        };
        let on_disk = match (&resumed, self.session.folder()) {
            (Some((state, root)), Some(folder)) => {
                folder_resume::bytes_held(root, state, folder.entries())
            }
            _ => 0,
        };
        let mut reservation = None;
        if refusal.is_none() {
            match downloads.reserve(bytes.saturating_sub(on_disk)) {
                Ok(held) => reservation = Some(held),
                Err(NoRoom { needed, available }) => {
                    refusal = Some(Refusal::NoSpace { needed, available })
                }
            }
        }
        let _reservation = reservation;
        let kept_index = resumed.as_ref().and_then(|(state, _)| state.partial);
        let is_resumed = resumed.is_some();
        let created = match (refusal, resumed) {
            (Some(refusal), _) => Err((refusal, String::new())),
            (None, Some((state, root))) => Ok((state.root, root)),
            (None, None) => create_root(&downloads, &safe)
                .map_err(|e| (Refusal::CannotCreate, TransferError::Disk(e).to_string())),
        };
        if created.is_ok()
            && !is_resumed
            && let Err(e) = downloads.sync_dir()
        {
            log::warn!("{}: cannot sync the download folder: {e}", self.peer);
        }
        let (root_name, root) = match created {
            Ok(created) => created,
            Err((refusal, detail)) => {
                let failure = Failure::new(FailureKind::Refused(refusal), detail.clone());
                log::warn!("{}: folder {:?}: {failure}", self.peer, name);
                self.report_refusal(next_transfer_id(), &header, Mode::Ferry, failure);
                let reason = match detail.is_empty() {
                    true => refusal.to_string(),
                    false => format!("{refusal}: {detail}"),
                };
                let msg = self
                    .session
                    .decline(reason, false)
                    .map_err(TransferError::from)?;
                self.answer(&msg);
                return Ok(());
            }
        };
        log::info!(
            "{}: receiving the folder {:?} as {root_name:?}{}",
            self.peer,
            name,
            if is_resumed { " (resumed)" } else { "" }
        );
        let entries = self
            .session
            .folder()
            .map(|f| f.entries().to_vec())
            .unwrap_or_default();
        // What tells a later resume that the folder under `root_name` is still this one.
        let root_id = root.identity().ok();
        let root = downloads.within(root);
        let committer =
            Committer::start(root.clone(), self.shared.sink.clone()).map_err(TransferError::Io)?;
        let mut rx = FolderRx {
            root_name: root_name.clone(),
            root_now: Some(root_name.clone()),
            root_id,
            entries,
            resume_key,
            msg: Some(msg).filter(|m| !m.is_empty()),
            partial: None,
            dirs: Dirs::new(root),
            verified: Vec::new(),
            pending: Vec::new(),
            failed: Vec::new(),
            committer,
            oldest: None,
            totals: (0, 0),
            pending_dirs: 0,
        };
        let (held, kept) = match is_resumed {
            true => self.find_held(&mut rx, kept_index),
            false => (Vec::new(), None),
        };
        let offered = kept
            .as_ref()
            .map(|k| (k.index, k.offset, *k.hasher.finalize().as_bytes()));
        rx.partial = kept;
        let answers = self
            .session
            .accept_folder_resumed(root_name.clone(), &held, offered)
            .map_err(TransferError::from)?;
        for answer in &answers {
            write_all(
                &mut self.writer,
                &encode_receiver_msg(answer).map_err(TransferError::from)?,
            )?;
        }
        if let Some(key) = &rx.resume_key {
            // A kept partial stays the state's until its file arrives: should this
            // connection die before that, the next one still resumes it.
            let kept = rx.partial.as_ref().map(|k| (k.index, k.part.part_name()));
            let state = FolderState {
                key: key.clone(),
                root: root_name,
                partial: kept.map(|(index, _)| index),
                partial_path: kept.and_then(|(index, name)| rx.partial_path(index, name)),
                root_id: rx.root_id,
            };
            if let Err(e) = folder_resume::save(&downloads, &state) {
                log::warn!("{}: cannot keep the folder's resume state: {e}", self.peer);
            }
        }
        // Folders first, so empty ones exist too.
        for i in 0..rx.entries.len() {
            if rx.entries[i].size.is_none() {
                let components = rx.entries[i].components.clone();
                if let Err(e) = rx.dir(&components) {
                    log::warn!("{}: cannot create {components:?}: {e}", self.peer);
                }
            }
        }
        // Resuming, the sender hashes each file we hold, and the kept partial's prefix,
        // before it sends anything for them (in index order): the wait for its next frame is
        // then its disk's, not a stall (see `read_msg_after_hashing`). Its progress through
        // them is one cursor over the bytes still to hash, so a long list costs one pass.
        let mut to_hash: Vec<(u64, u64)> = held
            .iter()
            .map(|(index, _)| {
                let size = rx.entries.get(*index as usize).and_then(|e| e.size);
                (*index, size.unwrap_or(0))
            })
            .chain(offered.map(|(index, offset, _)| (index, offset)))
            .collect();
        to_hash.sort_unstable();
        let mut left: u64 = to_hash.iter().map(|(_, bytes)| bytes).sum();
        let mut passed = 0;
        loop {
            let msg = match passed == to_hash.len() {
                true => self.read_msg()?,
                false => self.read_msg_after_hashing(left)?,
            };
            let msg = msg.ok_or(TransferError::TruncatedFrame)?;
            match self.session.on_frame(msg).map_err(TransferError::from)? {
                FrameStep::FolderFile {
                    index,
                    size,
                    offset,
                } => {
                    // Indices only grow: the sender is past these.
                    while let Some((_, bytes)) = to_hash.get(passed).filter(|(i, _)| *i <= index) {
                        left = left.saturating_sub(*bytes);
                        passed += 1;
                    }
                    if size >= FLUSH_BEFORE_BYTES {
                        self.flush_verdicts(&mut rx, true);
                    }
                    self.receive_folder_file(&mut rx, index, size, offset)?;
                    self.flush_verdicts(&mut rx, false);
                }
                FrameStep::FolderEnd => break,
                other => {
                    return Err(
                        TransferError::Unexpected(format!("{other:?} inside a folder")).into(),
                    );
                }
            }
        }
        self.flush_verdicts(&mut rx, true);
        if let Some(mut unused) = rx.partial.take() {
            // The sender did not send that file again (it is gone or changed on its side).
            unused.part.discard_on_drop();
        }
        if let Some(key) = &rx.resume_key {
            folder_resume::remove(&downloads, key);
        }
        self.finish_dirs(&mut rx);
        let (verified, failed) = rx.totals;
        log::info!(
            "{}: folder {:?}: {verified} files verified, {failed} failed",
            self.peer,
            rx.root_name
        );
        self.answer(&ReceiverMsg::FolderDone { verified, failed });
        Ok(())
    }

    /// Sends the verdicts that are ready when a batch is due (`force`: everything, waiting
    /// for the files handed to the committer). A due batch of verified files goes to the
    /// committer first; their verdicts come back once they are named (see
    /// [`super::committer`]).
    fn flush_verdicts(&mut self, rx: &mut FolderRx, force: bool) {
        let due = rx.is_due(force);
        let mut named = Vec::new();
        if due && !rx.pending.is_empty() {
            named = rx.committer.submit(std::mem::take(&mut rx.pending));
            if rx.verified.is_empty() && rx.failed.is_empty() {
                // What waited is with the committer now; its verdicts restart the clock.
                rx.oldest = None;
            }
        }
        named.extend(match force {
            true => rx.committer.wait_all(),
            false => rx.committer.ready(),
        });
        let got = !named.is_empty();
        for Committed { index, failure } in named {
            rx.verdict(index, failure);
        }
        if (due || got) && !(rx.verified.is_empty() && rx.failed.is_empty()) {
            let msg = rx.answer();
            self.answer(&msg);
        }
    }

    /// Gives every listed folder its modification time and owner bits, deepest first (a
    /// file committed inside a folder changes the folder's time).
    ///
    /// Only at the folder's end: an interrupted folder stays owner-only (0700) while it can
    /// be resumed, and also once its state expired. Widening permissions then, days later,
    /// on folders no receive controls (which the user may have filled or moved since, and
    /// whose listing with its modes is no longer known) is the wrong way to fail.
    fn finish_dirs(&self, rx: &mut FolderRx) {
        let mut dirs: Vec<&SafeEntry> = rx.entries.iter().filter(|e| e.size.is_none()).collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(e.components.len()));
        for entry in dirs {
            // Opened again where its handle was closed meanwhile.
            if let Some(Ok(dir)) = rx.dirs.made(&entry.components) {
                let mode = (entry.mode << 6) | 0o055;
                if let Err(e) = dir.dir().finish_as(mtime(entry.mtime), mode) {
                    log::warn!("{}: {:?}: {e}", self.peer, entry.path);
                }
            }
        }
        if let Err(e) = rx.dirs.root().dir().finish_as(None, 0o755) {
            log::warn!("{}: {:?}: {e}", self.peer, rx.root_name);
        }
    }

    /// One file of the folder: its data is read whatever happens (the stream must stay in
    /// step); it is kept only when verified.
    fn receive_folder_file(
        &mut self,
        rx: &mut FolderRx,
        index: u64,
        size: u64,
        offset: u64,
    ) -> Result<(), ConnEnd> {
        let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| rx.entries.get(i))
            .cloned()
        else {
            return Err(TransferError::Unexpected("no such entry".into()).into());
        };
        let id = next_transfer_id();
        // Its start names the root as created: that name is the folder's identity for
        // whoever groups its files (the window's folder row) and what the sender was told;
        // where the file was saved, with the root as named then, comes with its end.
        let shown = format!("{}/{}", rx.root_name, entry.components.join("/"));
        let header = Header {
            eager: false,
            file_name: entry.path.clone(),
            file_size: size,
            msg: String::new(),
            resume_key: None,
        };
        let (parent, leaf) = match entry.components.split_last() {
            Some((leaf, parent)) => (parent.to_vec(), leaf.clone()),
            None => (Vec::new(), String::new()),
        };
        let kept = rx.partial.take_if(|k| k.index == index);
        let part = match kept {
            // The sender's prefix matched: the rest follows.
            Some(kept) if offset > 0 => Ok((kept.part, Some(kept.hasher))),
            // It did not: the kept bytes are dropped, everything follows.
            Some(mut kept) => kept
                .part
                .restart()
                .map(|()| (kept.part, None))
                .map_err(|e| TransferError::Disk(e).to_string()),
            None => rx.dir(&parent).and_then(|dir| {
                PartFile::create(&dir, &sanitize_file_name(&leaf), None)
                    .map(|part| (part, None))
                    .map_err(|e| TransferError::Disk(e).to_string())
            }),
        };
        let (mut part, prefix) = match part {
            Ok(part) => part,
            Err(reason) => {
                let failure = Failure::new(FailureKind::Disk, reason.clone());
                self.report_refusal(id, &header, Mode::Ferry, failure);
                self.skip_file(size)?;
                rx.verdict(index, Some(reason));
                return Ok(());
            }
        };
        self.shared.sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: self.peer,
            name: entry.path.clone(),
            saved_as: Some(shown.clone()),
            bytes_total: size,
            mode: Mode::Ferry,
            msg: rx.msg.take().unwrap_or_default(),
            security: self.security.clone(),
        });
        let cancel = self.go_live(id);
        let outcome = self.receive_entry(&mut part, id, &entry, size, (offset, prefix), &cancel);
        lock(&self.shared.live).remove(&id);
        self.finish_entry(rx, part, id, index, outcome)
    }

    fn receive_entry(
        &mut self,
        part: &mut PartFile,
        id: TransferId,
        entry: &SafeEntry,
        size: u64,
        (offset, prefix): (u64, Option<blake3::Hasher>),
        cancel: &AtomicBool,
    ) -> Result<FileEnd, TransferError> {
        part.discard_on_drop();
        let hasher = Some(prefix.unwrap_or_default());
        let (data, hash) = self.receive_data(part, id, size, offset, hasher, cancel)?;
        match data {
            DataEnd::Cancelled { code, reason } => Ok(FileEnd::SenderCancelled { code, reason }),
            DataEnd::Complete => {
                self.session.data_complete(hash)?;
                // Set before the commit (the final name is a link to this very file).
                let file = part.file().map_err(TransferError::Disk)?;
                if let Some(modified) = mtime(entry.mtime) {
                    file.set_modified(modified).map_err(TransferError::Disk)?;
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = (entry.mode << 6) | 0o044;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(TransferError::Disk)?;
                self.finish_ferry(cancel)
            }
        }
    }

    /// Records a folder file's verdict (sent later, batched) and reports it; only a broken
    /// connection ends the folder.
    fn finish_entry(
        &mut self,
        rx: &mut FolderRx,
        part: PartFile,
        id: TransferId,
        index: u64,
        outcome: Result<FileEnd, TransferError>,
    ) -> Result<(), ConnEnd> {
        let sink = &self.shared.sink;
        match outcome {
            Ok(FileEnd::Verified) => {
                // Where it is saved, as the root is named now (it may have been renamed).
                let shown = rx.saved_as_now(index, self.shared.downloads.dir());
                rx.hold(Pending {
                    part,
                    id,
                    index,
                    shown,
                });
                Ok(())
            }
            Ok(FileEnd::Committed { path, .. }) => {
                drop(part);
                rx.verdict(index, None);
                let shown = rx.saved_as_now(index, self.shared.downloads.dir());
                sink.transfer(TransferEvent::Finished {
                    id,
                    verified: true,
                    saved_as: Some(shown),
                    path: Some(path),
                });
                Ok(())
            }
            Ok(FileEnd::Rejected(error)) => {
                drop(part);
                rx.verdict(index, Some(error.to_string()));
                sink.transfer(TransferEvent::Failed {
                    id,
                    failure: error.failure(),
                });
                Ok(())
            }
            Ok(FileEnd::SenderCancelled { code, reason }) => {
                drop(part);
                rx.verdict(index, Some(format!("cancelled by the sender: {reason}")));
                report_sender_cancel(sink, id, code == CancelCode::User, reason);
                Ok(())
            }
            Err(TransferError::CancelledHere) => {
                drop(part);
                Err(self.cancelled_here(id))
            }
            Err(error) => {
                let mut part = part;
                let mut failure = error.failure();
                if let Some(key) = rx.resume_key.clone().filter(|_| error.is_interruption()) {
                    // The same sender sending the folder again resumes here: keep this
                    // file's bytes (one partial per folder: an older kept one goes).
                    if let Some(mut older) = rx.partial.take() {
                        older.part.discard_on_drop();
                    }
                    keep_interrupted(&mut part, &mut failure);
                    let partial_path = rx.partial_path(index, part.part_name());
                    let state = FolderState {
                        key,
                        root: rx.root_name.clone(),
                        partial: Some(index),
                        partial_path,
                        root_id: rx.root_id,
                    };
                    if let Err(e) = folder_resume::save(&self.shared.downloads, &state) {
                        log::warn!("{}: cannot keep the folder's resume state: {e}", self.peer);
                    }
                }
                drop(part);
                self.shared
                    .sink
                    .transfer(TransferEvent::Failed { id, failure });
                Err(ConnEnd {
                    error,
                    reported: true,
                })
            }
        }
    }

    /// Reads and drops a file's data and end (a file that has nowhere to go), keeping the
    /// stream in step.
    fn skip_file(&mut self, size: u64) -> Result<(), TransferError> {
        let shared = self.shared;
        let never = AtomicBool::new(false);
        let rate = RateFloor::new(shared.config.min_rate, 0);
        let (reader, session) = (&mut self.reader, &mut self.session);
        let mut source = DataSource::new(reader, session, shared, size, &never, rate);
        // Never paused: no `pause_at`.
        let fills = &mut Through {
            buf: &mut self.buf,
            out: &mut io::sink(),
        };
        let end = simple(&mut source, fills, &mut None, &mut ())?;
        if let Some(DataEnd::Complete) = end {
            self.session.data_complete([0; 32])?;
            let msg = self.read_msg()?.ok_or(TransferError::TruncatedFrame)?;
            match self.session.on_frame(msg)? {
                FrameStep::Verified | FrameStep::HashMismatch | FrameStep::Cancelled { .. } => {}
                other => {
                    return Err(TransferError::Unexpected(format!(
                        "{other:?} where the end of a file belongs"
                    )));
                }
            }
        }
        Ok(())
    }
}
