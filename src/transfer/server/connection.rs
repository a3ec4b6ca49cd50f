//! One connection's driver: reads frames and data off the socket, feeds them to the
//! connection's [`ReceiverSession`], and acts on what it says: asks for consent, finds or
//! creates the partial file, answers the sender, receives the bytes ([`super::pump`]),
//! commits or keeps the file, and reports each step as an event. Only an interruption keeps
//! a partial; every other ending removes it, before anyone is told.

use std::io::{BufRead, BufReader, Seek};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::held::{HOLD_MAX_FILE, Held};
use super::listener::{self, Slot};
use super::outcome::FileEnd;
use super::pump::{DataEnd, Within, is_timeout};
use super::{Live, Shared, lock};
use crate::events::{
    Direction, Event, Failure, FailureKind, Refusal, Security, ServerEvent, TransferEvent,
    TransferId, next_transfer_id,
};
use crate::protocol::session::{FrameStep, ReceiverSession};
use crate::protocol::{
    self, Header, Mode, ReceiverMsg, SenderMsg, WaitFor, decode_sender_msg, encode_receiver_msg,
    sanitize_file_name,
};
use crate::secure::handshake::PeerInfo;
use crate::transfer::files::{NoRoom, RESUME_TAG_LEN};
use crate::transfer::wire::{Incoming, Outgoing};
use crate::transfer::{PartFile, TransferError, read_error, read_frame, write_all};

/// The size of the buffer each connection streams small files through.
const RECV_BUF_LEN: usize = 256 * 1024;
/// Files at least this large are received through a larger buffer of their own, with
/// their blocks reserved ahead.
pub(super) const LARGE_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// How often a receiver busy hashing a kept partial (or waiting for a folder's key) tells
/// the sender to keep waiting ([`keep_waiting`]).
pub(super) const WAITING_INTERVAL: Duration = Duration::from_secs(5);
/// The slowest disk a resuming sender is expected to hash its prefix on (bytes per second):
/// the receiver waits that long for the `start` frame, on top of the idle timeout.
const SLOWEST_HASH_RATE: u64 = 10 * 1024 * 1024;
/// The largest file a Ferry sender may offer eagerly (data at once, no round trip for the
/// accept): small files, where the round trip costs more than the bytes; a declined one's
/// bytes are read and dropped, which costs little at this size.
pub const EAGER_MAX_BYTES: u64 = 256 * 1024;

pub(super) fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared, slot: Slot) {
    let idle = shared.config.idle_timeout;
    let setup = stream
        .set_read_timeout(Some(idle))
        .and_then(|()| stream.set_write_timeout(Some(idle)))
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.try_clone());
    let writer = match setup {
        Ok(writer) => writer,
        Err(e) => {
            log::warn!("{peer}: cannot set up the connection: {e}");
            return;
        }
    };
    let mut session = ReceiverSession::new(shared.config.max_files_per_connection);
    session.take_eager(EAGER_MAX_BYTES);
    let mut conn = Connection {
        reader: BufReader::with_capacity(64 * 1024, Incoming::Plain(stream)),
        writer: Outgoing::plain(writer),
        peer,
        shared,
        session,
        buf: vec![0u8; RECV_BUF_LEN],
        security: Security::Plain,
        device: None,
        waker: None,
        conn_id: slot.conn_id(),
        held: Held::default(),
        serves_on: None,
    };
    let end = conn.run();
    // An evicted connection's read side was shut under it (whatever it read then says
    // nothing); a Ferry sender is told why it was dropped instead.
    let evicted = listener::was_evicted(shared, slot.conn_id());
    if let Err(ConnEnd { error, .. }) = &end {
        // Said by the events that follow (a file's, or `ConnectionError`): the log is for
        // whoever runs with RUST_LOG=info.
        log::info!("{peer}: {error}");
    }
    if conn.session.mode() == Some(Mode::Ferry) {
        let reason = match &end {
            _ if evicted => Some(TransferError::Evicted.to_string()),
            Err(ConnEnd { error, .. }) => Some(error.to_string()),
            Ok(()) => None,
        };
        // An evicted connection's writes were made short by the listener.
        if let Some(reason) = reason {
            conn.answer(&ReceiverMsg::Failed { reason });
        }
    }
    // Closed (for every clone of the socket, such as a consent watcher's, so the peer sees
    // the end now) and its slot free before anyone is told it ended, so a peer reacting to
    // the report finds the slot available.
    if end.is_ok() {
        // A secure peer needs the close record to tell the end from a cut.
        conn.writer.finish();
    }
    let _ = conn.writer.socket().shutdown(std::net::Shutdown::Both);
    drop(conn);
    drop(slot);
    let report = |reason: String| {
        shared
            .sink
            .emit(Event::Server(ServerEvent::ConnectionError { peer, reason }));
    };
    match end {
        // Its socket shut under it reads as the end of the stream, or as an error.
        _ if evicted => report(TransferError::Evicted.to_string()),
        Ok(()) => log::info!("{peer}: connection closed"),
        Err(ConnEnd {
            error,
            reported: false,
        }) => report(error.to_string()),
        Err(_) => {}
    }
}

/// A connection ended with an error; `reported` when a file's event already told.
pub(super) struct ConnEnd {
    pub error: TransferError,
    pub reported: bool,
}

impl From<TransferError> for ConnEnd {
    fn from(error: TransferError) -> Self {
        Self {
            error,
            reported: false,
        }
    }
}

pub(super) struct Connection<'a> {
    pub reader: BufReader<Incoming>,
    pub writer: Outgoing,
    pub peer: SocketAddr,
    pub shared: &'a Shared,
    pub session: ReceiverSession,
    pub buf: Vec<u8>,
    /// Plain, or encrypted with a device (trusted or not).
    pub security: Security,
    /// The device on the other end of an encrypted connection, as its handshake proved it.
    pub device: Option<PeerInfo>,
    /// A second handle on the socket for [`Live`] (made once, on the first file).
    pub waker: Option<Arc<TcpStream>>,
    /// Its slot's number, to say when it waits for its peer (see [`listener::set_waiting`]).
    pub conn_id: u64,
    /// Verified small files waiting to be named in one batch ([`super::held`]).
    pub held: Held,
    /// The port an encrypted sender said its own server listens on (where to save it when
    /// it comes to be trusted).
    pub serves_on: Option<u16>,
}

impl Connection<'_> {
    /// Lists file `id` as live, so [`super::ServerHandle::cancel`] can stop it (its flag, and
    /// a handle on the socket to wake a blocked read, made once per connection); the caller
    /// removes it from `live` when the file ends.
    pub(super) fn go_live(&mut self, id: TransferId) -> Arc<AtomicBool> {
        if self.waker.is_none() {
            self.waker = self.writer.socket().try_clone().ok().map(Arc::new);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let live = Live {
            cancel: Arc::clone(&cancel),
            stream: self.waker.clone(),
        };
        lock(&self.shared.live).insert(id, live);
        cancel
    }

    /// Reads the next frame. Its first byte may take up to the idle timeout; once it came,
    /// the rest must arrive within the header deadline, so a peer trickling a header byte by
    /// byte cannot hold its slot.
    pub(super) fn read_msg(&mut self) -> Result<Option<SenderMsg>, TransferError> {
        self.awaiting_peer(Self::read_msg_now)
    }

    /// Runs `work`, which waits on the peer alone (an honest peer sends a frame whole at
    /// once, a handshake in milliseconds): meanwhile the connection may lose its slot to a
    /// newcomer when every slot is taken. Not for waits the peer has good reason to make.
    /// A connection that lost its slot meanwhile, or whose server is stopping, ends here,
    /// whatever `work` read (a read side shut under it still hands out bytes that were
    /// already queued).
    fn awaiting_peer<T, E: From<TransferError>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        listener::set_waiting(self.shared, self.conn_id, true);
        let done = work(self);
        if listener::set_waiting(self.shared, self.conn_id, false) {
            return Err(TransferError::Evicted.into());
        }
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(TransferError::Stopped.into());
        }
        done
    }

    /// [`read_msg`](Self::read_msg) when the sender first hashes `bytes` of its file: the
    /// wait is its disk's (allowed for at [`SLOWEST_HASH_RATE`]), never cut to make room.
    pub(super) fn read_msg_after_hashing(
        &mut self,
        bytes: u64,
    ) -> Result<Option<SenderMsg>, TransferError> {
        let idle = self.shared.config.idle_timeout;
        let allowance = idle + Duration::from_secs(bytes / SLOWEST_HASH_RATE);
        let _ = self.reader.get_ref().set_read_timeout(Some(allowance));
        let msg = self.read_msg_now();
        let _ = self.reader.get_ref().set_read_timeout(Some(idle));
        msg
    }

    fn read_msg_now(&mut self) -> Result<Option<SenderMsg>, TransferError> {
        let body = self.read_body_now()?;
        Ok(body.map(|body| decode_sender_msg(&body)).transpose()?)
    }

    /// [`read_msg`](Self::read_msg)'s frame body, as read (not decoded).
    fn read_body_now(&mut self) -> Result<Option<Vec<u8>>, TransferError> {
        let idle = self.shared.config.idle_timeout;
        match self.reader.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(read_error(e, idle.as_secs())),
        }
        let deadline = Instant::now() + self.shared.config.header_deadline;
        let mut within = Within {
            reader: &mut self.reader,
            deadline,
            idle,
            touched: false,
        };
        let read = read_frame(&mut within);
        if within.touched {
            // Back to the idle timeout for whatever follows.
            let _ = self.reader.get_ref().set_read_timeout(Some(idle));
        }
        match read {
            Ok(body) => Ok(body),
            Err(TransferError::Io(e)) if Instant::now() >= deadline && is_timeout(&e) => Err(
                TransferError::SlowHeader(self.shared.config.header_deadline.as_secs()),
            ),
            Err(TransferError::Io(e)) => Err(read_error(e, idle.as_secs())),
            Err(e) => Err(e),
        }
    }

    /// Files, one after another, until the sender closes at a file boundary; however the
    /// connection ends, the files held for a batch are named and answered first.
    fn run(&mut self) -> Result<(), ConnEnd> {
        let end = self.run_files();
        self.commit_held();
        end
    }

    fn run_files(&mut self) -> Result<(), ConnEnd> {
        // The whole batch announcement, however many frames, must arrive within the header
        // deadline: frames that each come just in time cannot hold the slot forever.
        let mut batch_started = None;
        let mut first = true;
        loop {
            // Held verdicts are not kept waiting on a sender that has nothing more to say.
            if !self.held.is_empty() && !self.next_frame_waiting() {
                self.commit_held();
            }
            // The raw body too: a secure hello's bytes are bound into the handshake.
            let Some(body) = self.awaiting_peer(Self::read_body_now)? else {
                break;
            };
            let msg = decode_sender_msg(&body).map_err(TransferError::from)?;
            if let SenderMsg::Secure {
                pairing,
                ciphers,
                serves_on,
            } = msg
            {
                if !first {
                    return Err(TransferError::Unexpected("a second secure hello".into()).into());
                }
                first = false;
                self.awaiting_peer(|conn| conn.go_secure(&body, pairing, &ciphers, serves_on))?;
                continue;
            }
            first = false;
            if let SenderMsg::Probe { max_bytes } = msg {
                if self.session.mode().is_some() || self.session.batch().is_some() {
                    return Err(TransferError::Unexpected("a speed test after files".into()).into());
                }
                return self.probe(max_bytes);
            }
            match self.session.on_frame(msg).map_err(TransferError::from)? {
                FrameStep::Offer {
                    mode: Mode::Plain, ..
                } if self.device.is_some() => {
                    return Err(TransferError::Unexpected(
                        "a plain header inside an encrypted connection".into(),
                    )
                    .into());
                }
                FrameStep::Batch => {
                    let deadline = self.shared.config.header_deadline;
                    if batch_started.get_or_insert_with(Instant::now).elapsed() > deadline {
                        return Err(TransferError::SlowHeader(deadline.as_secs()).into());
                    }
                }
                FrameStep::Offer { header, mode } => self.receive_file(header, mode)?,
                FrameStep::FolderListed => {
                    let deadline = self.shared.config.header_deadline;
                    if batch_started.get_or_insert_with(Instant::now).elapsed() > deadline {
                        return Err(TransferError::SlowHeader(deadline.as_secs()).into());
                    }
                }
                FrameStep::FolderOffer => {
                    batch_started = None;
                    self.commit_held();
                    self.receive_folder()?;
                }
                other => {
                    return Err(
                        TransferError::Unexpected(format!("{other:?} between files")).into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether the sender is a trusted device (pinned key).
    pub(super) fn trusted(&self) -> bool {
        matches!(self.security, Security::Encrypted { trusted: true, .. })
    }

    /// Best effort: a Ferry peer that already left cannot be told anything.
    pub(super) fn answer(&mut self, msg: &ReceiverMsg) {
        if let Ok(frame) = encode_receiver_msg(msg) {
            let _ = std::io::Write::write_all(&mut self.writer, &frame);
        }
    }

    fn receive_file(&mut self, header: Header, mode: Mode) -> Result<(), ConnEnd> {
        // A large file's data takes a while: the verdicts held before it go first.
        if header.file_size > HOLD_MAX_FILE {
            self.commit_held();
        }
        let safe = sanitize_file_name(&header.file_name);
        let id = next_transfer_id();
        let downloads = &self.shared.downloads;
        let refusal = self.decide(&header)?.err();
        // A Ferry sender's resume key names its partial (plain senders cannot resume).
        let tag = match mode {
            Mode::Ferry => header
                .resume_key
                .as_deref()
                .map(|key| &key[..key.len().min(RESUME_TAG_LEN)]),
            Mode::Plain => None,
        };
        // A partial copy left by an interrupted upload of the same name (Ferry only: only a
        // Ferry sender can prove, by hash, that it is the start of the same file).
        // An eager offer never resumes: a partial kept for the name is left alone.
        let resumable = match (&refusal, mode) {
            (None, Mode::Ferry) if !header.eager => {
                PartFile::resumable(downloads, &safe, header.file_size, tag)
                    .map_err(TransferError::Disk)?
            }
            _ => None,
        };
        let mut resumable = resumable;
        if let Some((part, _)) = resumable.as_mut() {
            // Until the transfer really starts, whatever goes wrong (a refusal, a read
            // error) keeps the partial.
            part.keep();
        }
        let offset = resumable.as_ref().map_or(0, |(_, len)| *len);
        let needed = header.file_size - offset;
        // The space is held for this file until it ends (parallel offers see each other).
        let mut reservation = None;
        let refusal = refusal.or_else(|| match downloads.reserve(needed) {
            Ok(held) => {
                reservation = Some(held);
                None
            }
            Err(NoRoom { needed, available }) => Some(Refusal::NoSpace { needed, available }),
        });
        let _reservation = reservation;
        if let Some(refusal) = refusal {
            // An eager offer that needs a question comes again as an ordinary offer (and is
            // asked about then): no refused row for it.
            let offer_again = matches!(refusal, Refusal::EagerUnasked);
            if offer_again {
                log::info!("{}: {:?}: to be offered again", self.peer, header.file_name);
            } else {
                let failure = Failure::bare(FailureKind::Refused(refusal));
                // Said by the refused row or line that follows.
                log::info!("{}: {:?}: {failure}", self.peer, header.file_name);
                self.report_refusal(id, &header, mode, failure);
            }
            return self.decline(refusal.to_string(), header.file_size, offer_again);
        }
        let (mut part, prefix) = match resumable {
            Some((mut part, len)) => {
                // Hashing a large partial takes a while: keep the sender from timing out. A
                // stopping server gives it up (the partial is kept), or stop would wait for it.
                let (writer, mut last_word) = (&mut self.writer, Some(Instant::now()));
                let stopping = &self.shared.stopping;
                let hasher = part
                    .hash_prefix(len, &mut self.buf, || {
                        let _ = keep_waiting(writer, &mut last_word, WaitFor::Checking);
                        !stopping.load(Ordering::SeqCst)
                    })
                    .map_err(|e| match stopping.load(Ordering::SeqCst) {
                        true => TransferError::Stopped,
                        false => TransferError::Disk(e),
                    })?;
                (part, Some(hasher))
            }
            None => match PartFile::create(downloads, &safe, tag) {
                Ok(part) => (part, None),
                Err(e) => {
                    let detail = TransferError::Disk(e).to_string();
                    let refusal = Refusal::CannotCreate;
                    let failure = Failure::new(FailureKind::Refused(refusal), detail.clone());
                    self.report_refusal(id, &header, mode, failure);
                    return self.decline(format!("{refusal}: {detail}"), header.file_size, false);
                }
            },
        };
        let final_name = part.final_name();
        self.shared.sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: self.peer,
            name: header.file_name.clone(),
            saved_as: (final_name != header.file_name).then(|| final_name.clone()),
            bytes_total: header.file_size,
            mode,
            msg: header.msg.clone(),
            security: self.security.clone(),
        });
        let cancel = self.go_live(id);
        let outcome =
            self.receive_accepted(&mut part, id, &header, mode, prefix, final_name, &cancel);
        lock(&self.shared.live).remove(&id);
        self.finish_file(part, id, &header, mode, outcome)
    }

    /// Refuses the offered file: a Ferry sender is told and may go on with its next file; a
    /// plain sender cannot be told, and its bytes cannot be skipped cheaply either, so the
    /// connection ends.
    ///
    /// A declined eager offer's data is already on its way: it is read and dropped
    /// (`offer_again`: the sender is asked to offer it again the ordinary way).
    fn decline(&mut self, reason: String, size: u64, offer_again: bool) -> Result<(), ConnEnd> {
        match self.session.decline(reason.clone(), offer_again) {
            Ok(msg) => {
                self.answer(&msg);
                if self.session.discarding() {
                    self.discard_declined(size)?;
                }
                Ok(())
            }
            Err(_) => Err(ConnEnd {
                error: TransferError::Refused(reason),
                reported: true,
            }),
        }
    }

    /// Accepts (Ferry), agrees where the data starts, receives it and checks it.
    #[allow(clippy::too_many_arguments)]
    fn receive_accepted(
        &mut self,
        part: &mut PartFile,
        id: TransferId,
        header: &Header,
        mode: Mode,
        prefix: Option<blake3::Hasher>,
        final_name: String,
        cancel: &AtomicBool,
    ) -> Result<FileEnd, TransferError> {
        let offset = part
            .file()
            .and_then(|f| f.stream_position())
            .map_err(TransferError::Disk)?;
        let prefix_hash = prefix.as_ref().map(|h| *h.finalize().as_bytes());
        if let Some(accept) = self.session.accept(offset, final_name, prefix_hash)? {
            write_all(&mut self.writer, &encode_receiver_msg(&accept)?)?;
        }
        let mut start = (0, (mode == Mode::Ferry).then(blake3::Hasher::new));
        if let Some(prefix) = prefix {
            // The sender first hashes its own copy of the prefix: a wait on its disk that
            // the batch's age does not bound, so the verdicts held so far go first.
            self.commit_held();
            let msg = self.read_msg_after_hashing(offset);
            if cancel.load(Ordering::SeqCst) {
                return Err(TransferError::CancelledHere);
            }
            match self
                .session
                .on_frame(msg?.ok_or(TransferError::TruncatedFrame)?)?
            {
                FrameStep::Restart => {
                    log::info!(
                        "{}: {:?} changed since the interrupted upload; starting over",
                        self.peer,
                        header.file_name
                    );
                    part.restart().map_err(TransferError::Disk)?;
                }
                FrameStep::Resume { offset } => {
                    log::info!(
                        "{}: resuming {:?} at byte {offset}",
                        self.peer,
                        header.file_name
                    );
                    start = (offset, Some(prefix));
                }
                other => {
                    return Err(TransferError::Unexpected(format!(
                        "{other:?} where a start belongs"
                    )));
                }
            }
        }
        // From here on only an interruption keeps the partial (see `finish_file`).
        part.discard_on_drop();
        let (offset, hasher) = start;
        self.before_data();
        let (data, hash) = self.receive_data(part, id, header.file_size, offset, hasher, cancel)?;
        match data {
            DataEnd::Cancelled { code, reason } => Ok(FileEnd::SenderCancelled { code, reason }),
            DataEnd::Complete => match self.session.data_complete(hash)? {
                Mode::Plain => {
                    let path = part.commit().map_err(TransferError::Disk)?;
                    Ok(FileEnd::Committed {
                        path,
                        verified: false,
                    })
                }
                // Verified comes back unnamed: `finish_file` names it, now or with a batch.
                Mode::Ferry => {
                    self.before_end();
                    self.finish_ferry(cancel)
                }
            },
        }
    }

    /// After a Ferry file's data: reads the sender's hash. A match is `FileEnd::Verified`,
    /// the file still its `.part`: the caller names it (now, or with its batch).
    pub(super) fn finish_ferry(&mut self, cancel: &AtomicBool) -> Result<FileEnd, TransferError> {
        let msg = self.read_msg();
        // A cancel shuts the read side: report the cancel, not the end of stream it causes.
        if cancel.load(Ordering::SeqCst) {
            return Err(TransferError::CancelledHere);
        }
        match self
            .session
            .on_frame(msg?.ok_or(TransferError::TruncatedFrame)?)?
        {
            FrameStep::Verified => Ok(FileEnd::Verified),
            FrameStep::HashMismatch => Ok(FileEnd::Rejected(TransferError::HashMismatch)),
            FrameStep::Cancelled { code, reason } => Ok(FileEnd::SenderCancelled { code, reason }),
            other => Err(TransferError::Unexpected(format!(
                "{other:?} where the end of a file belongs"
            ))),
        }
    }
}

// The receive buffer never needs to be larger than the largest chunk.
const _: () = assert!(RECV_BUF_LEN <= protocol::MAX_CHUNK_LEN);

/// Tells the sender to keep waiting for an answer (`Waiting`), at most every
/// [`WAITING_INTERVAL`] since `last_word` (at once when nothing was said yet): for work that
/// holds the answer up, such as hashing a kept partial or waiting for a folder's key. Err
/// when the sender could not be told.
pub(super) fn keep_waiting(
    writer: &mut impl std::io::Write,
    last_word: &mut Option<Instant>,
    waiting_for: WaitFor,
) -> std::io::Result<()> {
    if last_word.is_some_and(|at| at.elapsed() < WAITING_INTERVAL) {
        return Ok(());
    }
    *last_word = Some(Instant::now());
    let frame = encode_receiver_msg(&ReceiverMsg::Waiting { waiting_for })
        .map_err(std::io::Error::other)?;
    writer.write_all(&frame)
}
