//! A file's bytes from the socket to the disk. What to read next (a chunk header, how many
//! raw bytes) and whether a count fits comes from the connection's
//! [`ReceiverSession`]; this module only reads, hashes and writes. Every file is read,
//! hashed and written on the connection's thread, each buffer while it is still in that
//! core's cache: small files through the connection's buffer, large ones through a 1 MiB
//! buffer of their own with blocks reserved ahead ([`Preallocate`]). A second thread that
//! hashed and wrote while this one read (as before) cost the server a fifth more CPU per
//! GiB than it saved, measured on two cores with both ends busy: the buffers crossed cores
//! and the threads took turns. A peer slower than the server's [`MinRate`] is dropped.
//! While the connection holds verified files for a batch ([`super::held`]), a small file's
//! data that stops coming pauses the pump once the batch is due, so they are named
//! meanwhile.

use crate::transfer::wire::Incoming;
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::MinRate;
use super::connection::{Connection, LARGE_FILE_BYTES};
use super::fills::{Fills, InPlace, Through};
use crate::events::{EventSink, ProgressThrottle, TransferEvent, TransferId};
use crate::protocol::session::{ChunkStep, Expect, FrameStep, ReceiverSession};
use crate::protocol::{CancelCode, decode_chunk_header, decode_sender_msg};
use crate::transfer::PartFile;
use crate::transfer::paced::Paced;
use crate::transfer::{TransferError, read_error, read_frame, read_prefix};

/// The buffer a large file streams through: 1 MiB per read-hash-write round keeps the
/// calls per GiB few, and 32 uploads at once under 64 MiB of memory.
const LARGE_BUF_LEN: usize = 1024 * 1024;

/// How long a fill holds its first bytes at most before it hands them out, waiting for
/// more to fill its buffer. Waiting (a `poll` when the socket is drained) rather than
/// handing out whatever is there keeps buffers full while bytes flow: handing out each
/// drained read cost the server a sixth more CPU per GiB, and the sender more, measured on
/// loopback. Holding no longer than this keeps a slow or stalled sender's progress and disk
/// current (waiting for a 1 MiB buffer to fill, bytes coming at 100 KB/s showed every ten
/// seconds); a buffer that takes longer to fill holds bytes coming at under 10 MB/s, whose
/// fills cost nothing. An encrypted stream's fill waits the same way, for the rest of the
/// next record to be in the socket (a read waits for whole records): handing its buffer out
/// whenever the records read ahead ran out instead cut a 1 MiB chunk into fills of odd
/// sizes (a third more writes, none of them aligned after the first) and cost a sixth of
/// the encrypted throughput, measured on loopback.
const HAND_OUT_AFTER: Duration = Duration::from_millis(100);

/// How a file's bytes ended.
pub(super) enum DataEnd {
    /// Every byte arrived.
    Complete,
    /// The Ferry sender gave up on this file (the stream stays in step).
    Cancelled { code: CancelCode, reason: String },
}

/// What one [`DataSource::fill`] produced.
pub(super) enum Fill {
    Bytes(usize),
    Done,
    Cancelled {
        code: CancelCode,
        reason: String,
    },
    /// `pause_at` came with no byte waiting: the caller does its own work, then goes on.
    Paused,
}

/// The bytes of one file as they come off the socket: raw (plain) or chunked (Ferry).
pub(super) struct DataSource<'a> {
    pub reader: &'a mut BufReader<Incoming>,
    pub session: &'a mut ReceiverSession,
    pub size: u64,
    pub idle_secs: u64,
    /// How long a frame may take once its first byte came (the cancel frame, here).
    pub header_deadline: Duration,
    pub stopping: &'a AtomicBool,
    pub cancel: &'a AtomicBool,
    pub rate: RateFloor,
    /// An error that ended a fill which had already produced bytes: those bytes are handed
    /// out first (so they reach the disk), the error with the next fill.
    pub deferred: Option<TransferError>,
    /// When to stop waiting for data and hand back [`Fill::Paused`] (once), if none is
    /// waiting then: the connection has verified files to name before that time.
    pub pause_at: Option<Instant>,
}

impl<'a> DataSource<'a> {
    /// A file's `size` bytes off `reader`, under `shared`'s limits, at `rate` so far.
    pub(super) fn new(
        reader: &'a mut BufReader<Incoming>,
        session: &'a mut ReceiverSession,
        shared: &'a super::Shared,
        size: u64,
        cancel: &'a AtomicBool,
        rate: RateFloor,
    ) -> Self {
        Self {
            reader,
            session,
            size,
            idle_secs: shared.config.idle_timeout.as_secs(),
            header_deadline: shared.config.header_deadline,
            stopping: &shared.stopping,
            cancel,
            rate,
            deferred: None,
            pause_at: None,
        }
    }
}

/// Whether the sender's next bytes can be read without waiting, now or within `wait`: read
/// ahead, or arriving (for an encrypted stream, a whole record: see
/// [`Incoming::input_within`]).
pub(super) fn input_within(reader: &BufReader<Incoming>, wait: Duration) -> bool {
    !reader.buffer().is_empty() || reader.get_ref().input_within(wait)
}

/// Drops an upload that stays below [`MinRate`]: every `window`, at least
/// `bytes_per_sec * window` bytes must have arrived since the last check.
pub(crate) struct RateFloor {
    min: MinRate,
    window_start: Instant,
    bytes_at_start: u64,
}

impl RateFloor {
    pub fn new(min: MinRate, received: u64) -> Self {
        Self {
            min,
            window_start: Instant::now(),
            bytes_at_start: received,
        }
    }

    /// `Err` when the window ended with too few bytes since the last check (called as
    /// data arrives: a trickle is caught by its next byte).
    pub(crate) fn check(&mut self, received: u64) -> Result<(), TransferError> {
        let elapsed = self.window_start.elapsed();
        if elapsed < self.min.window {
            return Ok(());
        }
        let floor = self
            .min
            .bytes_per_sec
            .saturating_mul(self.min.window.as_secs().max(1));
        if received - self.bytes_at_start < floor {
            return Err(TransferError::TooSlow {
                bytes_per_sec: self.min.bytes_per_sec,
                window_secs: self.min.window.as_secs(),
            });
        }
        self.window_start = Instant::now();
        self.bytes_at_start = received;
        Ok(())
    }
}

impl DataSource<'_> {
    /// Bytes of the file received so far.
    pub fn received(&self) -> u64 {
        self.session.received()
    }

    /// Fills `buf` as far as the file goes (so disk writes are large), or until its first
    /// bytes are [`HAND_OUT_AFTER`] old (so a slow or stalled sender's progress shows, and
    /// what it sent reaches the disk): at least one byte unless the file is complete or
    /// cancelled. Bytes read before an error are returned first; the error comes with the
    /// next call.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, TransferError> {
        let mut filled = 0;
        let result = match self.deferred.take() {
            Some(error) => Err(error),
            None => self.fill_inner(buf, &mut filled),
        };
        match result {
            Err(error) if filled > 0 => {
                self.deferred = Some(error);
                Ok(Fill::Bytes(filled))
            }
            // A cancel shuts the socket's read side: whatever error that caused, say why.
            Err(_) if self.cancel.load(Ordering::SeqCst) => Err(TransferError::CancelledHere),
            Err(_) if self.stopping.load(Ordering::SeqCst) => Err(TransferError::Stopped),
            other => other,
        }
    }

    fn short(&self) -> TransferError {
        TransferError::ShortData {
            received: self.session.received(),
            expected: self.size,
        }
    }

    /// The frame after a cancel marker, held to the same header deadline as every frame.
    fn read_frame_within(&mut self) -> Result<Vec<u8>, TransferError> {
        let idle = Duration::from_secs(self.idle_secs);
        let deadline = Instant::now() + self.header_deadline;
        let mut within = Within {
            reader: self.reader,
            deadline,
            idle,
            touched: false,
        };
        let read = read_frame(&mut within);
        if within.touched {
            let _ = self.reader.get_ref().set_read_timeout(Some(idle));
        }
        match read {
            Ok(Some(body)) => Ok(body),
            Ok(None) => Err(TransferError::TruncatedFrame),
            Err(TransferError::Io(e)) if is_timeout(&e) && Instant::now() >= deadline => {
                Err(TransferError::SlowHeader(self.header_deadline.as_secs()))
            }
            Err(TransferError::Io(e)) => Err(read_error(e, self.idle_secs)),
            Err(e) => Err(e),
        }
    }

    /// Whether the sender's next bytes can be read without waiting, now or by `until` (or
    /// by the pause, if that comes first: the fill pauses then). Without waiting once the
    /// file's data is all here: the fill has nothing more to wait for.
    fn input_until(&self, until: Instant) -> bool {
        if matches!(self.session.expect(), Expect::DataComplete) {
            return true;
        }
        let until = self.pause_at.map_or(until, |at| at.min(until));
        input_within(self.reader, until.saturating_duration_since(Instant::now()))
    }

    /// Whether to pause now (see `pause_at`): its time came, waiting for it, and nothing
    /// arrived meanwhile. Pauses once.
    fn pause_due(&mut self) -> bool {
        let Some(at) = self.pause_at else {
            return false;
        };
        let wait = at.saturating_duration_since(Instant::now());
        if input_within(self.reader, wait) {
            return false;
        }
        self.pause_at = None;
        true
    }

    fn fill_inner(&mut self, buf: &mut [u8], filled: &mut usize) -> Result<Fill, TransferError> {
        // When this fill's first bytes came.
        let mut first_at = None;
        while *filled < buf.len() {
            let complete = matches!(self.session.expect(), Expect::DataComplete);
            if !complete && self.pause_due() {
                // What was read goes to the disk first; the pause comes with the next fill.
                if *filled > 0 {
                    self.pause_at = Some(Instant::now());
                    break;
                }
                return Ok(Fill::Paused);
            }
            if self.cancel.load(Ordering::Relaxed) {
                return Err(TransferError::CancelledHere);
            }
            if self.stopping.load(Ordering::Relaxed) {
                return Err(TransferError::Stopped);
            }
            let want = match self.session.expect() {
                Expect::DataComplete => break,
                Expect::Data(left) => left.min((buf.len() - *filled) as u64) as usize,
                Expect::ChunkHeader => {
                    let prefix = read_prefix(self.reader)
                        .map_err(|e| read_error(e, self.idle_secs))?
                        .ok_or_else(|| self.short())?;
                    match self.session.on_chunk_header(decode_chunk_header(prefix)?)? {
                        ChunkStep::Data => continue,
                        ChunkStep::CancelFollows => {
                            let body = self.read_frame_within()?;
                            return match self.session.on_frame(decode_sender_msg(&body)?)? {
                                FrameStep::Cancelled { code, reason } => {
                                    Ok(Fill::Cancelled { code, reason })
                                }
                                other => Err(TransferError::Unexpected(format!(
                                    "{other:?} after a cancel marker"
                                ))),
                            };
                        }
                    }
                }
                other => {
                    return Err(TransferError::Unexpected(format!(
                        "reading data where the session expects {other:?}"
                    )));
                }
            };
            let n = match self.reader.read(&mut buf[*filled..*filled + want]) {
                Ok(0) => return Err(self.short()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e, self.idle_secs)),
            };
            self.session.on_data(n as u64)?;
            *filled += n;
            self.rate.check(self.session.received())?;
            // The file's last byte: nothing more of it to wait for.
            if *filled < buf.len() && !matches!(self.session.expect(), Expect::DataComplete) {
                let held = first_at.get_or_insert_with(Instant::now).elapsed();
                if held >= HAND_OUT_AFTER || !input_within(self.reader, HAND_OUT_AFTER - held) {
                    break;
                }
            }
        }
        Ok(if *filled > 0 {
            Fill::Bytes(*filled)
        } else {
            Fill::Done
        })
    }
}

impl Connection<'_> {
    /// Reads a declined eager offer's data and drops it, up to its `end` (or the sender's
    /// cancel), under the same limits as any file's data (bounded by the offered size: the
    /// session refuses a byte more; read through the connection's buffer, never held).
    /// Files held for a batch are named meanwhile if that data stops coming, as for any
    /// file's data ([`DataSource::pause_at`]).
    pub(super) fn discard_declined(&mut self, size: u64) -> Result<(), TransferError> {
        let never = AtomicBool::new(false);
        let rate = RateFloor::new(self.shared.config.min_rate, 0);
        let dropped = &mut std::io::sink();
        let (end, _) = self.pump_holding(size, &never, rate, dropped, &mut None, &mut ())?;
        if let DataEnd::Cancelled { .. } = end {
            return Ok(());
        }
        self.session.data_complete([0; 32])?;
        // Its end, too, is not waited for with verdicts held past their time.
        self.before_end();
        let msg = self.read_msg()?.ok_or(TransferError::TruncatedFrame)?;
        match self.session.on_frame(msg)? {
            FrameStep::Discarded | FrameStep::Cancelled { .. } => Ok(()),
            other => Err(TransferError::Unexpected(format!(
                "{other:?} where a declined file's end belongs"
            ))),
        }
    }

    /// A file's data through [`simple`] into `out` (hashed as it passes when `hasher` is
    /// given): a small file's, or a declined one's into a sink. Files held for a batch are
    /// not kept waiting on data that stops coming: the pump pauses when the batch is as old
    /// as it may be ([`DataSource::pause_at`]), names them, and goes on. Returns how the
    /// data ended and how many bytes came.
    fn pump_holding(
        &mut self,
        size: u64,
        cancel: &AtomicBool,
        mut rate: RateFloor,
        out: &mut impl Write,
        hasher: &mut Option<blake3::Hasher>,
        progress: &mut impl Progress,
    ) -> Result<(DataEnd, u64), TransferError> {
        loop {
            let pause_at = self.held.pause_at();
            let (reader, session) = (&mut self.reader, &mut self.session);
            let mut source = DataSource::new(reader, session, self.shared, size, cancel, rate);
            source.pause_at = pause_at;
            let fills = &mut Through {
                buf: &mut self.buf,
                out,
            };
            let end = simple(&mut source, fills, hasher, progress)?;
            let received = source.received();
            rate = source.rate;
            match end {
                Some(end) => return Ok((end, received)),
                None => self.commit_held(),
            }
        }
    }

    /// Receives a file's bytes into the part file from `offset` on (hashed as they pass
    /// when `hasher` is given); returns how the data ended and the hash of the whole file
    /// (zeros when not hashed).
    pub(super) fn receive_data(
        &mut self,
        part: &mut PartFile,
        id: TransferId,
        size: u64,
        offset: u64,
        mut hasher: Option<blake3::Hasher>,
        cancel: &AtomicBool,
    ) -> Result<(DataEnd, [u8; 32]), TransferError> {
        let shared = self.shared;
        let config = &shared.config;
        let sink = &shared.sink;
        let mut shown = Shown {
            throttle: ProgressThrottle::default(),
            sink,
            id,
        };
        sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: offset,
        });
        let file = part.file().map_err(TransferError::Disk)?;
        let rate = RateFloor::new(config.min_rate, offset);
        // A file that will be synced streams to disk as it arrives; a large one has its
        // blocks reserved ahead (see `Paced`).
        let large = size - offset >= LARGE_FILE_BYTES;
        let mut paced = Paced::new(file, offset, config.landing(), large.then_some(size));
        let (end, received) = if !large {
            self.pump_holding(size, cancel, rate, &mut paced, &mut hasher, &mut shown)?
        } else {
            let (reader, session) = (&mut self.reader, &mut self.session);
            let mut source = DataSource::new(reader, session, shared, size, cancel, rate);
            // Filled in the direct writer's own buffers where the file is written directly,
            // otherwise in one of the pump's.
            let mut buf = Vec::new();
            // Large files are never paused for (no `pause_at`); were one, it goes on. A file
            // written directly that came slowly goes on through the page cache (`Paced`'s
            // `Pace`), filled in the pump's buffer from then on.
            let end = loop {
                let filled = if paced.room().is_some() {
                    simple(
                        &mut source,
                        &mut InPlace(&mut paced),
                        &mut hasher,
                        &mut shown,
                    )
                } else {
                    if buf.is_empty() {
                        buf = vec![0u8; LARGE_BUF_LEN];
                    }
                    let fills = &mut Through {
                        buf: &mut buf,
                        out: &mut paced,
                    };
                    simple(&mut source, fills, &mut hasher, &mut shown)
                };
                if let Some(end) = filled.transpose() {
                    break end;
                }
            };
            // What was taken reaches the file (an error then is the disk's); whatever the
            // end, the blocks reserved past what arrived go back.
            let end = end.and_then(|end| {
                paced.flush().map_err(TransferError::Disk)?;
                Ok(end)
            });
            paced.release();
            (end?, source.received())
        };
        sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: received,
        });
        let hash = hasher.map_or([0; 32], |h| *h.finalize().as_bytes());
        Ok((end, hash))
    }
}

/// A file's data, fill after fill into `fills`, on this thread. `None` when the source
/// paused (see [`DataSource::pause_at`]) or `fills` takes no more (see [`Fills::room`]):
/// call again to go on.
pub(super) fn simple(
    source: &mut DataSource<'_>,
    fills: &mut impl Fills,
    hasher: &mut Option<blake3::Hasher>,
    progress: &mut impl Progress,
) -> Result<Option<DataEnd>, TransferError> {
    loop {
        // About to wait for the sender: what it sent so far shows meanwhile, once it may
        // (the throttle's interval over; sooner, a sender that pauses after every fill would
        // get an event per fill). Its bytes coming by then, the fill goes on at once.
        if let Some(due) = progress.held_back_until()
            && !source.input_until(due)
        {
            // What shows is on the file first, whatever the writer held back.
            fills.flush().map_err(TransferError::Disk)?;
            progress.catch_up();
        }
        // A file written directly may have gone on through the page cache (it came
        // slowly): its caller picks the fills again.
        let Some(room) = fills.room() else {
            return Ok(None);
        };
        let room_len = room.len();
        match source.fill(room)? {
            Fill::Done => return Ok(Some(DataEnd::Complete)),
            Fill::Paused => return Ok(None),
            Fill::Cancelled { code, reason } => {
                return Ok(Some(DataEnd::Cancelled { code, reason }));
            }
            Fill::Bytes(n) => {
                if let Some(hasher) = hasher {
                    hasher.update(&room[..n]);
                }
                fills.took(n).map_err(TransferError::Disk)?;
                // A fill handed out short (the sender slowed or stopped, or the file ended),
                // or one whose figure shows now: what came is on the file before it shows,
                // whatever the writer holds back.
                if n < room_len || progress.due() {
                    fills.flush().map_err(TransferError::Disk)?;
                }
            }
        }
        progress.report(source.received());
    }
}

/// Where a pump shows how far a file got.
pub(super) trait Progress {
    /// The bytes received so far (throttled: see [`ProgressThrottle`]).
    fn report(&mut self, received: u64);

    /// Whether the next [`Progress::report`] shows at once (what it counts must then be on
    /// the file).
    fn due(&mut self) -> bool {
        false
    }

    /// When the figure held back since the last shown may show; `None` when none is.
    fn held_back_until(&self) -> Option<Instant> {
        None
    }

    /// Shows the figure held back, if its time came, before a wait for the sender.
    fn catch_up(&mut self) {}
}

/// Nowhere: a file whose data is dropped.
impl Progress for () {
    fn report(&mut self, _: u64) {}
}

/// A transfer's row: its progress events, at most every [`crate::events::PROGRESS_INTERVAL`],
/// and the latest figure once that interval is over when the sender's next bytes are not
/// here by then (a stall right after a fast fill would otherwise keep that fill's bytes out
/// of the row).
pub(super) struct Shown<'a> {
    pub throttle: ProgressThrottle,
    pub sink: &'a EventSink,
    pub id: TransferId,
}

impl Progress for Shown<'_> {
    fn report(&mut self, received: u64) {
        self.throttle.report(self.sink, self.id, received);
    }

    fn due(&mut self) -> bool {
        self.throttle.due()
    }

    fn held_back_until(&self) -> Option<Instant> {
        self.throttle.held_back_until()
    }

    fn catch_up(&mut self) {
        self.throttle.catch_up(self.sink, self.id);
    }
}

/// A reader that gives up at `deadline`: before each read that would wait on the socket,
/// the socket's timeout is cut to the time left (never above the idle timeout).
pub(super) struct Within<'a> {
    pub reader: &'a mut BufReader<Incoming>,
    pub deadline: Instant,
    pub idle: Duration,
    /// Whether a read set the socket's timeout (the caller puts the idle timeout back only
    /// then: two `setsockopt`s per frame add up over thousands of small files).
    pub touched: bool,
}

impl Read for Within<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reader.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(self.idle)))?;
            self.touched = true;
        }
        self.reader.read(buf)
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
