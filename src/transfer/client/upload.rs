//! One connection's files, one after another (a Ferry file is offered as soon as the one
//! before it is out, before that one's verdict: see [`super::answers`]). Each file's frames
//! come from the connection's
//! [`SenderSession`], which also counts its bytes; this module opens and reads the file,
//! hashes it (Ferry: one pass, cache-sized slices), moves the bytes (Ferry: sent from the very
//! buffer they were read and hashed in, which measured a third less sender CPU per GiB than
//! reading to hash and then `sendfile`; plain: `sendfile`, nothing to hash) and turns every
//! ending into a [`FileOutcome`] and events.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::answers::{Heard, Owed, not_awaited};
use super::{FileOutcome, OutgoingFile, SendOptions, read_some, resume_key};
use crate::events::{
    CancelToken, Direction, EventSink, Failure, FailureKind, ProgressThrottle, Security,
    TransferEvent,
};
use crate::protocol::session::{Answer, SenderSession, batch_frames};
use crate::protocol::{self, CHUNK_LEN, CancelCode, Header, Mode, encode_sender_msg};
use crate::transfer::os::send_file_range;
use crate::transfer::wire::Outgoing;
use crate::transfer::{CANCELLED_BY_SENDER, TransferError, write_all};

/// How much of a chunk is read and hashed at a time (fits a core's L2 cache).
pub(super) const HASH_SLICE_LEN: usize = 256 * 1024;

/// The sender's words when its file shrank under it.
const SHRANK: &str = "the file shrank while it was being sent";

pub(super) struct Upload<'a> {
    pub stream: Outgoing,
    /// Encrypted or not, and the receiving device.
    pub security: Security,
    pub peer: SocketAddr,
    pub opts: &'a SendOptions,
    pub sink: &'a EventSink,
    pub cancel: &'a CancelToken,
    pub answers: Option<Receiver<Heard>>,
    pub session: SenderSession,
    /// What each chunk is read and hashed through.
    pub buf: Vec<u8>,
    /// Set once the connection can no longer carry files; every later file fails with it.
    pub broken: Option<Failure>,
    /// Whether the receiver has said anything yet (a plain server never does).
    pub heard_from_peer: bool,
    /// A folder's verdicts that arrived while a later file's data was going out.
    pub verdicts: Vec<Answer>,
    /// Every file's outcome so far, in order; `None` while its verdict is owed.
    pub outcomes: Vec<Option<FileOutcome>>,
    /// The files whose end went out and whose verdict is owed, oldest first.
    pub owed: VecDeque<Owed>,
    /// Eager files whose answer (or sending) is not done with, oldest first.
    pub eager: VecDeque<super::eager::Eager>,
    /// The receiver said `waiting` (its user is asked) and has not answered that offer yet:
    /// no more eager files until it does, and every wait meanwhile gets the decision timeout.
    pub receiver_waiting: bool,
    /// Files the receiver declined only because they came eagerly (it would have asked its
    /// user about them): their slot, the file and the name it goes by, offered again the
    /// ordinary way once every eager answer came ([`Upload::settle_and_send_again`]).
    pub again: Vec<(usize, OutgoingFile, Option<String>)>,
    /// Set once the receiver asked for a file again: it is asking its user, so no more files
    /// go eagerly on this connection.
    pub eager_off: bool,
    /// When the grace after a cancel ends, once a wait noticed the cancel: one
    /// [`CANCEL_GRACE`](super::answers::CANCEL_GRACE) for the whole upload, however many
    /// waits it takes.
    pub grace_ends: Option<std::time::Instant>,
}

/// How one file's attempt ended.
pub(super) enum Stop {
    Outcome(FileOutcome),
    /// The connection is unusable from here on.
    Broken(Failure),
    /// The receiver cancelled and closed.
    PeerCancelled(String),
    /// Cancelled here at a point where the connection cannot go on.
    Cancelled,
}

impl Stop {
    pub fn broken(kind: FailureKind, detail: impl Into<String>) -> Self {
        Stop::Broken(Failure::new(kind, detail))
    }
}

/// The kind of a sender's interrupted file: whatever the receiver kept is its to say.
pub(super) fn interrupted() -> FailureKind {
    FailureKind::Interrupted { kept_bytes: None }
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        Stop::Broken(e.failure())
    }
}

impl From<protocol::session::SessionError> for Stop {
    fn from(e: protocol::session::SessionError) -> Self {
        Stop::broken(FailureKind::Protocol, e.to_string())
    }
}

impl Upload<'_> {
    /// Sends one file under its own name, or `name` (a flattened folder's relative path).
    /// Its outcome goes to `outcomes` (and out as an event) when it is known: at once, or
    /// when its verdict comes while later files go out.
    pub fn send_one(&mut self, file: &OutgoingFile, name: Option<&str>) {
        let slot = self.outcomes.len();
        self.outcomes.push(None);
        if let Some(outcome) = self.try_send(file, name, slot) {
            self.settle(slot, file.id, outcome);
        }
    }

    /// Records file `id`'s outcome (in its `slot` of `outcomes`) and reports it. The first
    /// outcome stands: an eager file declined while it was still going out stays declined,
    /// however its sending ends.
    pub(super) fn settle(&mut self, slot: usize, id: u64, outcome: FileOutcome) {
        let Some(place) = self.outcomes.get_mut(slot).filter(|place| place.is_none()) else {
            return;
        };
        *place = Some(outcome.clone());
        self.report(id, &outcome);
    }

    /// The event that tells how a file ended.
    pub(super) fn report(&self, id: u64, outcome: &FileOutcome) {
        match outcome {
            FileOutcome::Verified { saved_as, .. } => self.sink.transfer(TransferEvent::Finished {
                id,
                verified: true,
                saved_as: Some(saved_as.clone()),
                path: None,
            }),
            // A plain receiver never says what it named the file.
            FileOutcome::SentUnverified => self.sink.transfer(TransferEvent::Finished {
                id,
                verified: false,
                saved_as: None,
                path: None,
            }),
            FileOutcome::Cancelled => self
                .sink
                .transfer(TransferEvent::Cancelled { id, by_peer: false }),
            FileOutcome::CancelledByPeer { .. } => self
                .sink
                .transfer(TransferEvent::Cancelled { id, by_peer: true }),
            FileOutcome::Declined { reason } => self.sink.transfer(TransferEvent::Failed {
                id,
                failure: Failure::new(FailureKind::Declined, reason.clone()),
            }),
            FileOutcome::Failed(failure) => self.sink.transfer(TransferEvent::Failed {
                id,
                failure: failure.clone(),
            }),
        }
    }

    /// One file's attempt: its outcome, or `None` once its end went out and its verdict is
    /// owed (see [`Owed`]).
    pub(super) fn try_send(
        &mut self,
        file: &OutgoingFile,
        name: Option<&str>,
        slot: usize,
    ) -> Option<FileOutcome> {
        if self.cancel.is_cancelled() {
            return Some(FileOutcome::Cancelled);
        }
        if let Some(failure) = &self.broken {
            let failure = Failure::new(FailureKind::NotSent, failure.to_string());
            return Some(FileOutcome::Failed(failure));
        }
        let source = (file.clone(), name.map(str::to_owned));
        let (id, path) = (file.id, file.path.as_path());
        let name = name.map(str::to_owned).unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let (file, size) = match file.open_sized() {
            Ok(opened) => opened,
            Err(e) => {
                return Some(FileOutcome::Failed(Failure::new(
                    FailureKind::LocalFile,
                    format!("cannot send {}: {e}", path.display()),
                )));
            }
        };
        self.sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Outgoing,
            peer: self.peer,
            name: name.clone(),
            saved_as: None,
            bytes_total: size,
            mode: self.opts.mode,
            msg: self.opts.msg.clone(),
            security: self.security.clone(),
        });
        let header = Header {
            eager: false,
            file_name: name,
            file_size: size,
            msg: self.opts.msg.clone(),
            resume_key: match self.opts.mode {
                Mode::Ferry => resume_key(path).ok(),
                Mode::Plain => None,
            },
        };
        let result = match self.opts.mode {
            Mode::Plain => self.send_plain(id, header, file).map(Some),
            Mode::Ferry => self.send_ferry(id, header, file, slot, source),
        };
        let stop = match result {
            // Its end went out: the verdict will come while the next file goes out.
            Ok(None) => return None,
            // A file that ended in step leaves the connection usable for the next one.
            Ok(Some(outcome)) | Err(Stop::Outcome(outcome)) if self.session.at_boundary() => {
                return Some(outcome);
            }
            Ok(Some(outcome)) => Stop::Outcome(outcome),
            Err(stop) => stop,
        };
        // Mid-protocol, the connection cannot carry the next file: stop here. After a cancel,
        // the files before it went out whole: their verdicts may still come.
        if matches!(stop, Stop::Cancelled) {
            self.settle_owed();
        }
        let outcome = self.stopped(stop);
        // The files whose verdicts were still to come share the connection's fate.
        self.fail_owed(&outcome);
        self.session.break_off();
        Some(outcome)
    }

    /// The connection cannot go on after `stop`: the outcome of the file it ended on, with
    /// why kept for every later file (`broken`).
    pub(super) fn stopped(&mut self, stop: Stop) -> FileOutcome {
        let (outcome, why) = match stop {
            Stop::Outcome(outcome) => {
                let why = Failure::new(FailureKind::Protocol, outcome.to_string());
                (outcome, why)
            }
            Stop::Broken(failure) => (FileOutcome::Failed(failure.clone()), failure),
            Stop::PeerCancelled(reason) => {
                let why = format!("cancelled by peer: {reason}");
                let why = Failure::new(FailureKind::Protocol, why);
                (FileOutcome::CancelledByPeer { reason }, why)
            }
            Stop::Cancelled => (
                FileOutcome::Cancelled,
                Failure::new(FailureKind::Protocol, "cancelled"),
            ),
        };
        self.broken = Some(why);
        outcome
    }

    fn send_plain(&mut self, id: u64, header: Header, file: File) -> Result<FileOutcome, Stop> {
        let frame = encode_sender_msg(&self.session.offer(header)?).map_err(TransferError::from)?;
        write_all(&mut self.stream, &frame)?;
        let mut sent = 0u64;
        let mut throttle = ProgressThrottle::default();
        while let Some(n) = self.session.next_chunk() {
            if self.cancel.is_cancelled() {
                // A plain peer cannot be told; the only way to stop is to close.
                return Err(Stop::Cancelled);
            }
            // A plain peer cannot be told that a file went wrong: only closing stops it.
            let socket = self.stream.data_socket();
            socket
                .and_then(|socket| send_file_range(socket, &file, sent, n))
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        Stop::broken(FailureKind::LocalFile, SHRANK)
                    }
                    _ => Stop::broken(interrupted(), format!("cannot send the file: {e}")),
                })?;
            self.session.sent(n as u64)?;
            sent += n as u64;
            throttle.report(self.sink, id, sent);
        }
        self.sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: sent,
        });
        Ok(FileOutcome::SentUnverified)
    }

    /// Offers a Ferry file and sends it; `None` once its end is out: its verdict is owed,
    /// to be taken while the next file goes out (or by [`Upload::settle_owed`]).
    /// `source`: the file and the name it goes by, to offer it again if the receiver asks.
    fn send_ferry(
        &mut self,
        id: u64,
        header: Header,
        mut file: File,
        slot: usize,
        source: (OutgoingFile, Option<String>),
    ) -> Result<Option<FileOutcome>, Stop> {
        if !self.eager_off && self.session.may_send_eager(header.file_size) {
            return self.send_eager(id, header, file, slot, source);
        }
        // Answers come in order: this offer's waits for the eager files' before it.
        self.wait_eager_answers()?;
        // Corked: the last file's end and this offer leave together (every wait for an
        // answer flushes), and a small file's chunk goes with its end.
        let corked = self.stream.set_corked(true);
        self.io_or_explain(corked)?;
        let frame = encode_sender_msg(&self.session.offer(header)?).map_err(TransferError::from)?;
        self.write_or_explain(&frame)?;
        let mut hasher = blake3::Hasher::new();
        let sent = match self.wait_answer(id)? {
            Answer::Accepted { .. } => 0,
            Answer::Resume { offset, prefix } => {
                let sent = self.agree_start(&mut file, &mut hasher, offset, prefix)?;
                self.sink.transfer(TransferEvent::Progress {
                    id,
                    bytes_done: sent,
                });
                sent
            }
            other => return Err(not_awaited(other, "to an offer")),
        };
        let resumed_from = sent;
        if let Some(outcome) = self.stream_data(id, &mut file, &mut hasher, sent)? {
            return Ok(Some(outcome));
        }
        let end = self.session.end(*hasher.finalize().as_bytes())?;
        self.write_or_explain(&encode_sender_msg(&end).map_err(TransferError::from)?)?;
        self.owed.push_back(Owed {
            slot,
            id,
            resumed_from,
        });
        Ok(None)
    }

    /// A Ferry file's chunks from byte `sent` on, hashed on the way (the caller sends the
    /// `end`). `Some` when the file ended early but the stream stayed in step (cancelled
    /// here, or the file could not be read: a cancel marker went out).
    pub(super) fn stream_data(
        &mut self,
        id: u64,
        file: &mut File,
        hasher: &mut blake3::Hasher,
        mut sent: u64,
    ) -> Result<Option<FileOutcome>, Stop> {
        let mut throttle = ProgressThrottle::default();
        while let Some(want) = self.session.next_chunk() {
            if let Some(stop) = self.peer_stopped() {
                return Err(stop);
            }
            if self.cancel.is_cancelled() {
                self.send_cancel(CancelCode::User, CANCELLED_BY_SENDER)?;
                return Ok(Some(FileOutcome::Cancelled));
            }
            // Read and hash in cache-sized slices: each slice is hashed while still in cache,
            // and the whole chunk is sent (sealed, if encrypted) from this buffer.
            let mut n = 0;
            let mut failure = None;
            while n < want {
                let slice = (want - n).min(HASH_SLICE_LEN).min(self.buf.len() - n);
                match read_some(file, &mut self.buf[n..n + slice]) {
                    Ok(0) => {
                        failure = Some((CancelCode::FileChanged, SHRANK.to_owned()));
                        break;
                    }
                    Ok(got) => {
                        hasher.update(&self.buf[n..n + got]);
                        n += got;
                    }
                    Err(e) => {
                        failure =
                            Some((CancelCode::ReadError, format!("cannot read the file: {e}")));
                        break;
                    }
                }
            }
            if let Some((code, reason)) = failure {
                // Bytes hashed but not yet sent are simply dropped with the file.
                self.send_cancel(code, &reason)?;
                return Ok(Some(FileOutcome::Failed(Failure::new(
                    FailureKind::LocalFile,
                    reason,
                ))));
            }
            let header = self.session.chunk_header(n);
            let sent_chunk = self
                .stream
                .send_chunk(header.as_ref().map(|h| &h[..]), &mut self.buf[..n]);
            self.io_or_explain(sent_chunk)?;
            self.session.sent(n as u64)?;
            sent += n as u64;
            throttle.report(self.sink, id, sent);
        }
        self.sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: sent,
        });
        Ok(None)
    }

    /// The receiver holds the first `offset` bytes of an interrupted upload: hash ours (this
    /// is the start of the one pass that hashes the whole file), and resume if they match or
    /// start over if not. Returns where the data now starts.
    fn agree_start(
        &mut self,
        file: &mut File,
        hasher: &mut blake3::Hasher,
        offset: u64,
        theirs: [u8; 32],
    ) -> Result<u64, Stop> {
        let mut left = offset;
        while left > 0 {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let want = left.min(self.buf.len() as u64) as usize;
            match read_some(file, &mut self.buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hasher.update(&self.buf[..n]);
                    left -= n as u64;
                }
            }
        }
        // `finalize` does not consume: the same hasher goes on over the rest.
        let matches = left == 0 && *hasher.finalize().as_bytes() == theirs;
        if !matches {
            *hasher = blake3::Hasher::new();
            file.seek(SeekFrom::Start(0)).map_err(|e| {
                Stop::broken(FailureKind::LocalFile, format!("cannot read the file: {e}"))
            })?;
        }
        let (frame, start) = self.session.start(matches)?;
        self.write_or_explain(&encode_sender_msg(&frame).map_err(TransferError::from)?)?;
        Ok(start)
    }

    /// Announces the whole upload, so a receiver that asks its user can show every file.
    /// Best effort: a failure here shows up again, and is reported, with the first offer.
    pub fn send_batch(&mut self, files: &[OutgoingFile]) {
        let listed: Vec<(String, u64)> = files
            .iter()
            .map(|f| {
                let name = f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, std::fs::metadata(&f.path).map_or(0, |m| m.len()))
            })
            .collect();
        for frame in batch_frames(&listed) {
            let Ok(frame) = encode_sender_msg(&frame) else {
                return;
            };
            if self.stream.write_all(&frame).is_err() {
                return;
            }
        }
    }

    /// The cancel marker and a cancel frame: the receiver drops the file, the connection
    /// stays usable for the next one.
    fn send_cancel(&mut self, code: CancelCode, reason: &str) -> Result<(), Stop> {
        let (marker, frame) = self.session.cancel(code, reason.into())?;
        self.write_or_explain(&marker)?;
        let frame = encode_sender_msg(&frame).map_err(TransferError::from)?;
        self.write_or_explain(&frame)
    }

    /// Writes; if the receiver hung up, reports what it said before it did.
    pub(super) fn write_or_explain(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let written = self.stream.write_all(bytes);
        self.io_or_explain(written)
    }

    pub fn finish(mut self) {
        let _ = self.stream.flush();
        // Tell the receiver we are done (an encrypted stream with its close record), and let
        // the answer reader see the end.
        self.stream.finish();
        if let Some(rx) = self.answers.take() {
            // Wait briefly for the receiver to close, so a last answer is not lost.
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
        let _ = self.stream.socket().shutdown(Shutdown::Both);
    }
}

// The send buffer holds one chunk plus its header.
const _: () = assert!(CHUNK_LEN <= protocol::MAX_CHUNK_LEN);
