//! The sending side: every file over one connection, streamed from disk in chunks (never the
//! whole file in memory), hashed with BLAKE3 on the same single read in Ferry mode.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::os::{send_file_range, send_more};
use super::{CANCELLED_BY_SENDER, TransferError, read_frame, write_all};
use crate::events::{
    CancelToken, Direction, EventSink, ProgressThrottle, TransferEvent, TransferId,
    next_transfer_id,
};
use crate::protocol::Mode;
use crate::protocol::{
    self, CHUNK_LEN, Header, ReceiverMsg, SenderMsg, decode_receiver_msg, encode_chunk_header,
    encode_sender_msg, escape_line,
};

/// How many bytes of names one batch frame carries (keeps it below the frame limit, with
/// room for the JSON escaping of any name a file system allows).
const BATCH_FRAME_NAME_BYTES: usize = 32 * 1024;

/// How much of a chunk is read and hashed at a time (fits a core's L2 cache).
const HASH_SLICE_LEN: usize = 256 * 1024;

/// How a send is made.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// `host:port` of the receiver.
    pub to: String,
    /// The header's `msg`, sent with every file.
    pub msg: String,
    /// Plain speaks the original protocol to a plain server (nothing is answered or verified).
    pub mode: Mode,
    pub connect_timeout: Duration,
    /// How long to wait for each answer of a Ferry receiver.
    pub answer_timeout: Duration,
    /// How long to wait once the receiver said it is asking its user.
    pub decision_timeout: Duration,
}

impl SendOptions {
    pub fn new(to: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            msg: String::new(),
            mode: Mode::Ferry,
            connect_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(30),
            decision_timeout: Duration::from_secs(330),
        }
    }
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// The receiver checked the hash and saved it under `saved_as`; `resumed_from` bytes
    /// were already there from an interrupted upload (0 when all were sent now).
    Verified {
        saved_as: String,
        resumed_from: u64,
    },
    /// Plain mode: every byte was handed to the network; nobody checked it.
    SentUnverified,
    Declined {
        reason: String,
    },
    Failed {
        reason: String,
    },
    /// Cancelled on this side.
    Cancelled,
    /// The receiver cancelled it.
    CancelledByPeer {
        reason: String,
    },
}

impl FileOutcome {
    /// True for the outcomes that count as success for the mode used.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            FileOutcome::Verified { .. } | FileOutcome::SentUnverified
        )
    }
}

impl std::fmt::Display for FileOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOutcome::Verified {
                saved_as,
                resumed_from: 0,
            } => {
                write!(f, "verified, saved as {saved_as:?}")
            }
            FileOutcome::Verified {
                saved_as,
                resumed_from,
            } => {
                write!(
                    f,
                    "verified, saved as {saved_as:?} (resumed at byte {resumed_from})"
                )
            }
            FileOutcome::SentUnverified => f.write_str("sent, unverified"),
            // Reasons may be the receiver's words: never raw control characters.
            FileOutcome::Declined { reason } => write!(f, "declined: {}", escape_line(reason)),
            FileOutcome::Failed { reason } => write!(f, "failed: {}", escape_line(reason)),
            FileOutcome::Cancelled => f.write_str("cancelled"),
            FileOutcome::CancelledByPeer { reason } => {
                write!(f, "cancelled by peer: {}", escape_line(reason))
            }
        }
    }
}

/// Why nothing could be sent at all.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot resolve {0:?}: expected HOST:PORT")]
    Resolve(String),
    #[error("cannot connect to {to}: {source}")]
    Connect { to: String, source: std::io::Error },
}

/// One file to upload; the caller picks the id so it can match events to its own rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub id: TransferId,
    pub path: PathBuf,
}

impl OutgoingFile {
    /// A file with a fresh id.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            id: next_transfer_id(),
            path: path.into(),
        }
    }
}

/// Uploads `files` in order over one connection and reports each file's outcome, in order.
/// Events go to `sink` (every file gets a `Finished` or `Failed`, even when the connection
/// could not be made); `cancel` stops at the next chunk.
pub fn send_files(
    opts: &SendOptions,
    files: &[OutgoingFile],
    sink: &EventSink,
    cancel: &CancelToken,
) -> Result<Vec<FileOutcome>, SendError> {
    let connected = connect(opts).and_then(|stream| {
        let peer = stream.peer_addr().map_err(|source| SendError::Connect {
            to: opts.to.clone(),
            source,
        })?;
        let answers = match opts.mode {
            Mode::Ferry => {
                Some(
                    spawn_answer_reader(&stream).map_err(|source| SendError::Connect {
                        to: opts.to.clone(),
                        source,
                    })?,
                )
            }
            Mode::Plain => None,
        };
        Ok((stream, peer, answers))
    });
    let (stream, peer, answers) = match connected {
        Ok(connected) => connected,
        Err(e) => {
            for file in files {
                sink.transfer(TransferEvent::Failed {
                    id: file.id,
                    reason: e.to_string(),
                });
            }
            return Err(e);
        }
    };
    let mut session = Session {
        stream,
        peer,
        opts,
        sink,
        cancel,
        answers,
        buf: vec![0u8; HASH_SLICE_LEN],
        broken: None,
        heard_from_peer: false,
    };
    if opts.mode == Mode::Ferry && !files.is_empty() {
        session.send_batch(files);
    }
    let outcomes = files.iter().map(|file| session.send_one(file)).collect();
    session.finish();
    Ok(outcomes)
}

fn connect(opts: &SendOptions) -> Result<TcpStream, SendError> {
    let addrs: Vec<SocketAddr> = opts
        .to
        .to_socket_addrs()
        .map_err(|_| SendError::Resolve(opts.to.clone()))?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.connect_timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(opts.answer_timeout));
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(source) => SendError::Connect {
            to: opts.to.clone(),
            source,
        },
        None => SendError::Resolve(opts.to.clone()),
    })
}

/// What the answer-reader thread passes on.
enum Answer {
    Msg(ReceiverMsg),
    Closed(String),
}

/// A Ferry receiver may speak at any time (a cancel mid-file), so its frames are read on a
/// thread of their own and handed over on a channel.
fn spawn_answer_reader(stream: &TcpStream) -> std::io::Result<Receiver<Answer>> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let (tx, rx) = crossbeam_channel::bounded(64);
    thread::Builder::new()
        .name("ferry-answers".into())
        .spawn(move || {
            loop {
                let answer = match read_frame(&mut reader) {
                    Ok(Some(body)) => match decode_receiver_msg(&body) {
                        Ok(msg) => Answer::Msg(msg),
                        Err(e) => Answer::Closed(format!("receiver sent a bad answer: {e}")),
                    },
                    Ok(None) => Answer::Closed("receiver closed the connection".into()),
                    Err(e) => Answer::Closed(format!("connection lost: {e}")),
                };
                let last = matches!(answer, Answer::Closed(_));
                // After a cancel, or once the receiver is gone, nothing more can be delivered:
                // shut the socket so a send blocked on a stalled path fails now, not at its
                // write timeout (the message is already on the channel to explain why).
                let hang_up = last || matches!(answer, Answer::Msg(ReceiverMsg::Cancel { .. }));
                let delivered = tx.send(answer).is_ok();
                if hang_up {
                    let _ = reader.get_ref().shutdown(Shutdown::Both);
                }
                if !delivered || last {
                    break;
                }
            }
        })?;
    Ok(rx)
}

struct Session<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    opts: &'a SendOptions,
    sink: &'a EventSink,
    cancel: &'a CancelToken,
    answers: Option<Receiver<Answer>>,
    /// What each chunk is read and hashed through.
    buf: Vec<u8>,
    /// Set once the connection can no longer carry files; every later file fails with it.
    broken: Option<String>,
    /// Whether the receiver has said anything yet (a plain server never does).
    heard_from_peer: bool,
}

/// How one file's attempt ended.
enum Stop {
    Outcome(FileOutcome),
    /// The connection is unusable from here on.
    Broken(String),
    /// The receiver cancelled and closed.
    PeerCancelled(String),
    /// Cancelled here at a point where the connection cannot go on.
    Cancelled,
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        Stop::Broken(e.to_string())
    }
}

impl Session<'_> {
    fn send_one(&mut self, file: &OutgoingFile) -> FileOutcome {
        let id = file.id;
        let outcome = self.try_send(file);
        match &outcome {
            FileOutcome::Verified { saved_as, .. } => self.sink.transfer(TransferEvent::Finished {
                id,
                verified: true,
                saved_as: saved_as.clone(),
                path: None,
            }),
            FileOutcome::SentUnverified => self.sink.transfer(TransferEvent::Finished {
                id,
                verified: false,
                saved_as: String::new(),
                path: None,
            }),
            FileOutcome::Cancelled => self
                .sink
                .transfer(TransferEvent::Cancelled { id, by_peer: false }),
            FileOutcome::CancelledByPeer { .. } => self
                .sink
                .transfer(TransferEvent::Cancelled { id, by_peer: true }),
            other => self.sink.transfer(TransferEvent::Failed {
                id,
                reason: other.to_string(),
            }),
        }
        outcome
    }

    fn try_send(&mut self, file: &OutgoingFile) -> FileOutcome {
        if self.cancel.is_cancelled() {
            return FileOutcome::Cancelled;
        }
        if let Some(reason) = &self.broken {
            return FileOutcome::Failed {
                reason: format!("not sent: {reason}"),
            };
        }
        let (id, path) = (file.id, file.path.as_path());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opened = File::open(path).and_then(|f| {
            let meta = f.metadata()?;
            if meta.is_file() {
                Ok((f, meta.len()))
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        });
        let (file, size) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                return FileOutcome::Failed {
                    reason: format!("cannot read {}: {e}", path.display()),
                };
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
        });
        let header = Header {
            file_name: name,
            file_size: size,
            msg: self.opts.msg.clone(),
            resume_key: match self.opts.mode {
                Mode::Ferry => resume_key(path).ok(),
                Mode::Plain => None,
            },
        };
        let result = match self.opts.mode {
            Mode::Plain => self.send_plain(id, header, file),
            Mode::Ferry => self.send_ferry(id, header, file),
        };
        match result {
            Ok(outcome) | Err(Stop::Outcome(outcome)) => outcome,
            Err(Stop::Broken(reason)) => {
                self.broken = Some(reason.clone());
                FileOutcome::Failed { reason }
            }
            Err(Stop::PeerCancelled(reason)) => {
                self.broken = Some(format!("cancelled by peer: {reason}"));
                FileOutcome::CancelledByPeer { reason }
            }
            // Mid-protocol, the connection cannot carry the next file: stop here.
            Err(Stop::Cancelled) => {
                self.broken = Some("cancelled".into());
                FileOutcome::Cancelled
            }
        }
    }

    fn send_plain(&mut self, id: u64, header: Header, file: File) -> Result<FileOutcome, Stop> {
        let size = header.file_size;
        let frame = encode_sender_msg(&SenderMsg::Plain(header)).map_err(TransferError::from)?;
        write_all(&mut self.stream, &frame)?;
        let mut sent = 0u64;
        let mut throttle = ProgressThrottle::default();
        while sent < size {
            if self.cancel.is_cancelled() {
                // A plain peer cannot be told; the only way to stop is to close.
                return Err(Stop::Cancelled);
            }
            let n = (size - sent).min(CHUNK_LEN as u64) as usize;
            // A plain peer cannot be told that a file went wrong: only closing stops it.
            send_file_range(&self.stream, &file, sent, n).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    Stop::Broken("the file shrank while it was being sent".into())
                }
                _ => Stop::Broken(format!("cannot send the file: {e}")),
            })?;
            sent += n as u64;
            throttle.report(self.sink, id, sent);
        }
        self.sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: sent,
        });
        Ok(FileOutcome::SentUnverified)
    }

    fn send_ferry(&mut self, id: u64, header: Header, mut file: File) -> Result<FileOutcome, Stop> {
        let size = header.file_size;
        let frame = encode_sender_msg(&SenderMsg::Offer(header)).map_err(TransferError::from)?;
        self.write_or_explain(&frame)?;
        let (offset, prefix) = match self.wait_answer(id)? {
            ReceiverMsg::Accept {
                offset,
                prefix_blake3,
                ..
            } => (offset, prefix_blake3),
            ReceiverMsg::Decline { reason } => return Ok(FileOutcome::Declined { reason }),
            ReceiverMsg::Cancel { reason } => return Err(Stop::PeerCancelled(reason)),
            other => {
                return Err(Stop::Broken(format!(
                    "unexpected answer to an offer: {other:?}"
                )));
            }
        };
        let mut hasher = blake3::Hasher::new();
        let mut sent = 0u64;
        if offset > 0 {
            sent = self.agree_start(&mut file, &mut hasher, offset, prefix.as_deref(), size)?;
            self.sink.transfer(TransferEvent::Progress {
                id,
                bytes_done: sent,
            });
        }
        let resumed_from = sent;
        let mut throttle = ProgressThrottle::default();
        while sent < size {
            if let Some(stop) = self.peer_stopped() {
                return Err(stop);
            }
            if self.cancel.is_cancelled() {
                self.send_cancel(CANCELLED_BY_SENDER)?;
                return Ok(FileOutcome::Cancelled);
            }
            let want = (size - sent).min(CHUNK_LEN as u64) as usize;
            // Read and hash in cache-sized slices: each slice is hashed while still in cache.
            let mut n = 0;
            let mut failure = None;
            while n < want {
                let slice = (want - n).min(self.buf.len());
                match read_some(&mut file, &mut self.buf[..slice]) {
                    Ok(0) => {
                        failure = Some("the file shrank while it was being sent".to_owned());
                        break;
                    }
                    Ok(got) => {
                        hasher.update(&self.buf[..got]);
                        n += got;
                    }
                    Err(e) => {
                        failure = Some(format!("cannot read the file: {e}"));
                        break;
                    }
                }
            }
            if let Some(reason) = failure {
                // Bytes hashed but not yet sent are simply dropped with the file.
                self.send_cancel(&reason)?;
                return Ok(FileOutcome::Failed { reason });
            }
            // The bytes just hashed go out again from the page cache, without a user-space
            // copy; if the file changed in between, the receiver's check fails, as it should.
            let header_sent = send_more(&self.stream, &encode_chunk_header(n));
            self.io_or_explain(header_sent)?;
            match send_file_range(&self.stream, &file, sent, n) {
                // sendfile found fewer bytes than were just read: the file was truncated
                // in between. The chunk's length is already promised, so the stream cannot
                // be kept in step: say so, and close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Stop::Broken(
                        "the file shrank while it was being sent".into(),
                    ));
                }
                other => self.io_or_explain(other)?,
            }
            sent += n as u64;
            throttle.report(self.sink, id, sent);
        }
        self.sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: sent,
        });
        let end = SenderMsg::End {
            blake3: *hasher.finalize().as_bytes(),
        };
        self.write_or_explain(&encode_sender_msg(&end).map_err(TransferError::from)?)?;
        match self.wait_answer(id)? {
            ReceiverMsg::Verified { saved_as } => Ok(FileOutcome::Verified {
                saved_as,
                resumed_from,
            }),
            ReceiverMsg::Failed { reason } => Ok(FileOutcome::Failed { reason }),
            ReceiverMsg::Cancel { reason } => Err(Stop::PeerCancelled(reason)),
            other => Err(Stop::Broken(format!(
                "unexpected answer after a file: {other:?}"
            ))),
        }
    }

    /// The receiver holds the first `offset` bytes of an interrupted upload: hash ours (this
    /// is the start of the one pass that hashes the whole file), and resume if they match or
    /// start over if not. Returns where the data now starts.
    fn agree_start(
        &mut self,
        file: &mut File,
        hasher: &mut blake3::Hasher,
        offset: u64,
        prefix: Option<&str>,
        size: u64,
    ) -> Result<u64, Stop> {
        let theirs = prefix.and_then(|hex| blake3::Hash::from_hex(hex).ok());
        let mut matches = false;
        if let (true, Some(theirs)) = (offset <= size, theirs) {
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
            matches = left == 0 && hasher.finalize() == theirs;
        }
        let start = if matches { offset } else { 0 };
        if !matches {
            *hasher = blake3::Hasher::new();
            file.seek(SeekFrom::Start(0))
                .map_err(|e| Stop::Broken(format!("cannot read the file: {e}")))?;
        }
        let frame =
            encode_sender_msg(&SenderMsg::Start { offset: start }).map_err(TransferError::from)?;
        self.write_or_explain(&frame)?;
        Ok(start)
    }

    /// Announces the whole upload, so a receiver that asks its user can show every file: as
    /// many `batch` frames as the names need, each repeating the totals. Best effort: a
    /// failure here shows up again, and is reported, with the first offer.
    fn send_batch(&mut self, files: &[OutgoingFile]) {
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
        let count = listed.len() as u64;
        let bytes = listed.iter().map(|(_, size)| size).sum();
        let mut rest = &listed[..];
        while !rest.is_empty() {
            let mut name_bytes = 0;
            let take = rest
                .iter()
                .take_while(|(name, _)| {
                    name_bytes += name.len();
                    name_bytes <= BATCH_FRAME_NAME_BYTES
                })
                .count()
                .max(1);
            let (frame_files, later) = rest.split_at(take);
            rest = later;
            let batch = SenderMsg::Batch {
                count,
                bytes,
                names: frame_files.iter().map(|(n, _)| n.clone()).collect(),
                sizes: frame_files.iter().map(|(_, s)| *s).collect(),
            };
            let Ok(frame) = encode_sender_msg(&batch) else {
                return;
            };
            if self.stream.write_all(&frame).is_err() {
                return;
            }
        }
    }

    /// The chunk header 0 and a cancel frame: the receiver drops the file, the connection
    /// stays usable for the next one.
    fn send_cancel(&mut self, reason: &str) -> Result<(), Stop> {
        self.write_or_explain(&encode_chunk_header(0))?;
        let frame = encode_sender_msg(&SenderMsg::Cancel {
            reason: reason.into(),
        })
        .map_err(TransferError::from)?;
        self.write_or_explain(&frame)
    }

    /// Writes; if the receiver hung up, reports what it said before it did.
    fn write_or_explain(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let written = self.stream.write_all(bytes);
        self.io_or_explain(written)
    }

    /// Passes a write's result on; on failure, with what the receiver said before it hung up.
    fn io_or_explain(&mut self, result: std::io::Result<()>) -> Result<(), Stop> {
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let said = self
                    .answers
                    .as_ref()
                    .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok());
                Err(match said {
                    Some(Answer::Msg(msg)) => stop_for_answer(msg),
                    _ if self.answers.is_some() && !self.heard_from_peer => Stop::Broken(format!(
                        "connection lost before the receiver answered: {e}; \
                         if it is a plain (non-Ferry) server, send in plain mode"
                    )),
                    _ => Stop::Broken(format!("connection lost: {e}")),
                })
            }
        }
    }

    /// A Ferry receiver's unsolicited message during data (cancel, failure), if any.
    fn peer_stopped(&mut self) -> Option<Stop> {
        let rx = self.answers.as_ref()?;
        match rx.try_recv().ok()? {
            Answer::Msg(msg) => Some(stop_for_answer(msg)),
            Answer::Closed(reason) => Some(Stop::Broken(reason)),
        }
    }

    /// Waits for the receiver's next answer, polling for cancellation.
    fn wait_answer(&mut self, id: TransferId) -> Result<ReceiverMsg, Stop> {
        let Some(rx) = &self.answers else {
            return Err(Stop::Broken("no answer channel".into()));
        };
        let mut deadline = Instant::now() + self.opts.answer_timeout;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::Broken(format!(
                    "no answer from {} within {} s; if it is a plain (non-Ferry) server, send in plain mode",
                    self.peer,
                    self.opts.answer_timeout.as_secs()
                )));
            }
            let received = rx.recv_timeout(left.min(Duration::from_millis(100)));
            if let Ok(Answer::Msg(_)) = &received {
                self.heard_from_peer = true;
            }
            match received {
                // The receiver is asking its user: wait as long as it lets them decide.
                Ok(Answer::Msg(ReceiverMsg::Waiting)) => {
                    self.sink.transfer(TransferEvent::AwaitingDecision { id });
                    deadline = Instant::now() + self.opts.decision_timeout
                }
                Ok(Answer::Msg(msg)) => return Ok(msg),
                Ok(Answer::Closed(reason)) if !self.heard_from_peer => {
                    return Err(Stop::Broken(format!(
                        "{reason} before answering; if it is a plain (non-Ferry) server, send in plain mode"
                    )));
                }
                Ok(Answer::Closed(reason)) => return Err(Stop::Broken(reason)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Stop::Broken("connection lost".into()));
                }
            }
        }
    }

    fn finish(mut self) {
        let _ = self.stream.flush();
        // Tell the receiver we are done, and let the answer reader see the end.
        let _ = self.stream.shutdown(Shutdown::Write);
        if let Some(rx) = self.answers.take() {
            // Wait briefly for the receiver to close, so a last answer is not lost.
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn stop_for_answer(msg: ReceiverMsg) -> Stop {
    match msg {
        // The receiver closes after a cancel, so later files cannot go either.
        ReceiverMsg::Cancel { reason } => Stop::PeerCancelled(reason),
        ReceiverMsg::Decline { reason } => Stop::Outcome(FileOutcome::Declined { reason }),
        ReceiverMsg::Failed { reason } => Stop::Broken(reason),
        other => Stop::Broken(format!("unexpected answer during data: {other:?}")),
    }
}

/// What identifies this copy of a file across runs of the sender: its absolute path, size
/// and modification time. Sent with each Ferry offer, so a receiver resumes a partial only
/// for the same sender sending the same, unchanged file (the prefix hash still decides).
pub fn resume_key(path: &Path) -> std::io::Result<String> {
    let path = path.canonicalize()?;
    let meta = std::fs::metadata(&path)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ferry resume key v1\0");
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(&meta.len().to_le_bytes());
    hasher.update(&modified.as_secs().to_le_bytes());
    hasher.update(&modified.subsec_nanos().to_le_bytes());
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

/// `read`, retrying on interruption.
fn read_some(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

// The send buffer holds one chunk plus its header.
const _: () = assert!(CHUNK_LEN <= protocol::MAX_CHUNK_LEN);
