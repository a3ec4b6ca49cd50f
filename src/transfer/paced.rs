//! How a received file is written, whoever receives it (a Ferry upload, a folder's file,
//! a LocalSend upload, the speed test's disk measurement): in moderate pieces ([`Paced`]),
//! with its blocks reserved a little ahead of the writes ([`Preallocate`]), and, when it
//! will be synced, streamed to disk while it arrives, so the sync before it is named finds
//! little left to write: straight from our buffers when it is large (`O_DIRECT`, see
//! `direct.rs`), otherwise by starting the page cache's writeback early ([`WriteBehind`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, Write};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use super::direct::Direct;
use super::os::sync_range;

/// Direct writes are Linux's here (`O_DIRECT`; macOS has `F_NOCACHE`, not yet used).
#[cfg(not(target_os = "linux"))]
mod no_direct {
    use std::fs::File;
    use std::io;

    pub enum Direct {}

    impl Direct {
        pub fn start(_: &File, _: u64) -> Option<Self> {
            None
        }

        pub fn write(&mut self, _: &[u8]) -> io::Result<()> {
            match *self {}
        }

        pub fn flush(&mut self, _: &File) -> io::Result<()> {
            match *self {}
        }

        pub fn room(&mut self) -> &mut [u8] {
            match *self {}
        }

        pub fn took(&mut self, _: usize) -> io::Result<()> {
            match *self {}
        }

        pub fn finish(self, _: &mut File) -> io::Result<()> {
            match self {}
        }
    }
}
#[cfg(not(target_os = "linux"))]
use no_direct::Direct;

/// How a received file reaches the disk: the server's choice (`--no-fsync`,
/// `--no-direct-io`), the same for every file it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// Left to the page cache, never synced (`--no-fsync`: benchmarks only).
    Cached,
    /// Synced before it is named, streamed to disk through the page cache as it arrives
    /// ([`WriteBehind`]).
    Synced,
    /// Synced, and a large file written past the page cache where its file system is one
    /// known to take that well (see `direct.rs`); other files as [`Landing::Synced`].
    Direct,
}

impl Landing {
    /// From a server's two settings: whether it syncs, and whether it may write directly.
    pub fn new(fsync: bool, direct_io: bool) -> Self {
        match (fsync, direct_io) {
            (false, _) => Self::Cached,
            (true, false) => Self::Synced,
            (true, true) => Self::Direct,
        }
    }
}

/// A file written in moderate pieces (a large `write` makes the page cache allocate large
/// blocks, which costs far more on a machine whose memory was idle), streamed to disk as it
/// goes when it will be synced (see [`WriteBehind`]), with its blocks reserved ahead of
/// the writes when it is large (see [`Preallocate`]). A large file that will be synced is
/// written past the page cache where the system allows ([`Direct`]): call
/// [`Write::flush`] before syncing it, which writes what that still holds; the file is a
/// plain one again once this is dropped. A directly written file whose bytes come slowly
/// goes on through the page cache ([`Pace`], judged at a flush or a `write`), which frees
/// its place for a faster one.
pub struct Paced<'a> {
    file: &'a mut File,
    write_behind: Option<WriteBehind>,
    prealloc: Option<Preallocate>,
    direct: Option<Direct>,
    pace: Pace,
}

impl<'a> Paced<'a> {
    /// `file`, whose next write lands at `offset`, landing as `landing` says (synced ones
    /// streamed to disk as they go); with `reserve_to`, its blocks reserved ahead of the
    /// writes up to that end.
    pub fn new(file: &'a mut File, offset: u64, landing: Landing, reserve_to: Option<u64>) -> Self {
        // A large file that will be synced goes straight to the disk where it can.
        let large = reserve_to.is_some_and(|end| end.saturating_sub(offset) >= DIRECT_FROM);
        let direct = match landing == Landing::Direct && large {
            true => Direct::start(file, offset),
            false => None,
        };
        let fsync = landing != Landing::Cached;
        Self {
            write_behind: (fsync && direct.is_none()).then(|| WriteBehind::new(offset)),
            file,
            prealloc: reserve_to.map(|end| Preallocate::new(offset, end)),
            direct,
            pace: Pace::new(SLOW_WINDOW, SLOW_BELOW),
        }
    }

    /// Where the next bytes go when the file is written directly: the writer's own buffer,
    /// to be filled in place (no copy) and then given with [`Paced::took`]; `None` when it
    /// is not.
    pub fn room(&mut self) -> Option<&mut [u8]> {
        self.direct.as_mut().map(Direct::room)
    }

    /// Takes the first `n` bytes of [`Paced::room`], filled by the caller, as a write of
    /// them would.
    pub fn took(&mut self, n: usize) -> io::Result<()> {
        let Some(direct) = self.direct.as_mut() else {
            return Err(io::Error::other(
                "no room was given: the file is not written directly",
            ));
        };
        if let Some(prealloc) = self.prealloc.as_mut() {
            prealloc.reserve(self.file, n)?;
        }
        self.pace.took(n);
        direct.took(n)
    }

    /// Goes on through the page cache if the file is written directly and its bytes came
    /// slowly since the last look ([`Pace`]). Looked at in `write` and `flush`: a writer
    /// that flushes only at its end (a LocalSend upload's) would otherwise hold the place
    /// however slow.
    fn keep_pace(&mut self) -> io::Result<()> {
        if self.direct.is_some() && self.pace.slow(Instant::now()) {
            self.leave_direct()?;
        }
        Ok(())
    }

    /// Goes on through the page cache, as a file not written directly would: what direct
    /// writes hold is written, the file is a plain one positioned after its last byte, and
    /// the place goes back (see [`Pace`]).
    fn leave_direct(&mut self) -> io::Result<()> {
        if let Some(direct) = self.direct.take() {
            direct.finish(self.file)?;
            // Written directly only when synced: streamed to disk from here on as such.
            self.write_behind = Some(WriteBehind::new(self.file.stream_position()?));
        }
        Ok(())
    }

    /// Ends direct writes, if any, whatever the end: what they hold is written as far as
    /// it can be (a failure is the caller's to have seen at its flush) and the file is a
    /// plain one again.
    fn end_direct(&mut self) {
        if let Some(direct) = self.direct.take() {
            let _ = direct.finish(self.file);
        }
    }

    /// Gives back the blocks reserved past what was written, whatever the end (a transfer
    /// that stopped early, a body shorter than announced): see [`Preallocate::release`].
    pub fn release(&mut self) {
        self.end_direct();
        if let Some(prealloc) = &self.prealloc {
            prealloc.release(self.file);
        }
    }
}

/// How long a directly written file's bytes are counted before [`Pace`] judges them.
const SLOW_WINDOW: Duration = Duration::from_secs(4);

/// Below this rate (bytes per second, over a [`SLOW_WINDOW`]) a file gives up direct
/// writes: the page cache costs little CPU at such a pace (the most direct writes saved
/// here was about 1.1 s per GiB, some 2 % of a core at 16 MiB/s), and the one place is
/// better held by a fast upload that starts later than by a slow one (a phone on a weak
/// link, or a peer trickling bytes to keep it).
const SLOW_BELOW: u64 = 16 * 1024 * 1024;

/// The pace of a directly written file's bytes, looked at when it is flushed (at least
/// every progress interval while bytes come, and whenever they pause).
#[derive(Debug)]
struct Pace {
    window: Duration,
    below: u64,
    /// When the window being counted began, and the bytes taken then and since.
    since: Instant,
    taken_then: u64,
    taken: u64,
}

impl Pace {
    fn new(window: Duration, below: u64) -> Self {
        Self {
            window,
            below,
            since: Instant::now(),
            taken_then: 0,
            taken: 0,
        }
    }

    fn took(&mut self, n: usize) {
        self.taken += n as u64;
    }

    /// Whether a window ended at `now` with its bytes below the rate; a window that ended
    /// starts the next one.
    fn slow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < self.window {
            return false;
        }
        let bytes = u128::from(self.taken - self.taken_then);
        let slow = bytes * 1000 < u128::from(self.below) * elapsed.as_millis();
        self.since = now;
        self.taken_then = self.taken;
        slow
    }
}

/// How large a file must be (what is left of it) to be written directly: a smaller one
/// would hold one of the few places, a thread and its buffers for little.
const DIRECT_FROM: u64 = 4 * 1024 * 1024;

/// The most one `write` hands the page cache at a time.
const WRITE_PIECE: usize = 128 * 1024;

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Before taking any of `buf`.
        self.keep_pace()?;
        // Straight to the disk, the whole of `buf` at once; through the page cache, a piece.
        let piece = match self.direct {
            Some(_) => buf,
            None => &buf[..buf.len().min(WRITE_PIECE)],
        };
        if let Some(prealloc) = self.prealloc.as_mut() {
            // A short write (a disk filling up) leaves the reservation a little further
            // ahead than written, never past the announced end.
            prealloc.reserve(self.file, piece.len())?;
        }
        if let Some(direct) = self.direct.as_mut() {
            direct.write(piece)?;
            self.pace.took(piece.len());
            return Ok(piece.len());
        }
        let n = self.file.write(piece)?;
        if let Some(write_behind) = self.write_behind.as_mut() {
            write_behind.wrote(self.file, n);
        }
        Ok(n)
    }

    /// Writes what direct writes still hold (see [`Direct::flush`]). Call it before the
    /// file is synced, and when the bytes stop coming for a while: until then a direct
    /// write waits for a whole buffer. A file whose bytes came slowly since the last look
    /// ([`Pace`]) goes on through the page cache from here ([`Paced::room`] is then `None`).
    fn flush(&mut self) -> io::Result<()> {
        // Leaving direct writes writes what they hold; otherwise that is written here.
        self.keep_pace()?;
        if let Some(direct) = self.direct.as_mut() {
            direct.flush(self.file)?;
        }
        self.file.flush()
    }
}

impl Drop for Paced<'_> {
    /// Whatever the end, what arrived reaches the file (a resumed upload goes on from
    /// there) and the file does not stay in direct mode.
    fn drop(&mut self) {
        self.end_direct();
    }
}

/// Streams a file being received to disk while it arrives, so that the `fdatasync` before
/// "verified" finds little left to write: each [`WRITE_BEHIND_WINDOW`] written starts its
/// writeback at once (`sync_file_range(WRITE)`), and once [`WRITE_BEHIND_DEPTH`] windows are
/// on their way to the disk the oldest is waited for, which also bounds the dirty pages one
/// upload holds (`WINDOW x (DEPTH + 1)`, 36 MiB). Several windows in flight keep the disk's
/// queue busy while the next ones fill: with one (8 MiB windows) a synced 1 GiB upload took
/// 13-15 % longer here. Best effort: errors are left to the final sync, which reports them.
/// Elsewhere than Linux it does nothing.
#[derive(Debug)]
pub struct WriteBehind {
    /// Where the window being filled starts, and how much of it is written.
    window_start: u64,
    filled: u64,
    /// The windows whose writeback was started and not yet waited for, oldest first.
    started: VecDeque<(u64, u64)>,
}

/// Bytes per write-behind window (4 MiB).
pub const WRITE_BEHIND_WINDOW: u64 = 4 * 1024 * 1024;

/// How many windows may be on their way to the disk before the oldest is waited for.
pub const WRITE_BEHIND_DEPTH: usize = 8;

/// What a write asks of the disk: start writing one range back, and wait for another.
#[derive(Debug, Default, PartialEq, Eq)]
struct Writeback {
    start: Option<(u64, u64)>,
    wait: Option<(u64, u64)>,
}

impl WriteBehind {
    /// For a file whose next write lands at `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            window_start: offset,
            filled: 0,
            started: VecDeque::with_capacity(WRITE_BEHIND_DEPTH + 1),
        }
    }

    /// Call after `n` more bytes were written at the end of `file`.
    pub fn wrote(&mut self, file: &File, n: usize) {
        // The new window joins the disk's queue before the oldest is waited for.
        let step = self.step(n);
        if let Some((start, len)) = step.start {
            sync_range(file, start, len, false);
        }
        if let Some((start, len)) = step.wait {
            sync_range(file, start, len, true);
        }
    }

    /// The bookkeeping of [`WriteBehind::wrote`], without the disk.
    fn step(&mut self, n: usize) -> Writeback {
        self.filled += n as u64;
        if self.filled < WRITE_BEHIND_WINDOW {
            return Writeback::default();
        }
        let window = (self.window_start, self.filled);
        self.window_start += self.filled;
        self.filled = 0;
        self.started.push_back(window);
        let wait = match self.started.len() > WRITE_BEHIND_DEPTH {
            true => self.started.pop_front(),
            false => None,
        };
        Writeback {
            start: Some(window),
            wait,
        }
    }
}

/// Reserves a file's blocks a little ahead of its writes (`fallocate` with `KEEP_SIZE`, so
/// the file's length still says how much arrived, which resume relies on). The file system
/// then finds each write's blocks already allocated instead of reserving them page by page,
/// which measured about a fifth of a receiver's CPU per GiB on ext4; and a full disk shows up
/// a window ahead. The window ahead of the writes is never larger than what was already
/// written (and at most [`PREALLOC_AHEAD`]), and never reaches past the announced end: a
/// peer that announces a huge file holds at most as many blocks again as it sent, not
/// 32 MiB for its first quarter MiB. [`Preallocate::release`] gives back what a stopped
/// upload did not use. A file system without `fallocate` is written as before.
#[derive(Debug)]
pub struct Preallocate {
    /// Where the next write lands, where the reservation ends, and where the file should.
    pos: u64,
    reserved: u64,
    end: u64,
    /// Where the reservation began.
    first: u64,
    enabled: bool,
    /// Whether `fallocate` was called at all (a failed one may still have reserved some).
    tried: bool,
}

/// How far ahead of the writes blocks are reserved (32 MiB).
pub const PREALLOC_AHEAD: u64 = 32 * 1024 * 1024;

impl Preallocate {
    /// For a file whose next write lands at `offset` and which should end at `end`.
    pub fn new(offset: u64, end: u64) -> Self {
        Self {
            pos: offset,
            reserved: offset,
            end,
            first: offset,
            enabled: cfg!(target_os = "linux"),
            tried: false,
        }
    }

    /// Call before `n` more bytes are written at the end of `file`. Fails only when the
    /// disk (or the user's disk quota) has no room for the file.
    pub fn reserve(&mut self, file: &File, n: usize) -> io::Result<()> {
        let next = self.pos.saturating_add(n as u64);
        if self.enabled && next > self.reserved {
            // Ahead by what was written (this write included), so what a peer makes this
            // side hold grows only with what it sent.
            let ahead = (next - self.first).min(PREALLOC_AHEAD);
            let to = next.saturating_add(ahead).min(self.end).max(next);
            self.tried = true;
            match fallocate_keep_size(file, self.reserved, to - self.reserved) {
                Ok(()) => self.reserved = to,
                // The reservation never reaches past the announced end, so a disk (or a
                // quota) without room for it has no room for the file either.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                    ) =>
                {
                    return Err(e);
                }
                // Not supported here (or refused for another reason): plain writes will do.
                Err(_) => self.enabled = false,
            }
        }
        self.pos = next;
        Ok(())
    }

    /// Gives back blocks reserved past the file's end (a transfer that stopped early, or
    /// whose last write failed): the file is cut to the length it has, which only drops what
    /// lies beyond it.
    pub fn release(&self, file: &File) {
        // Something may have been reserved (even by a call that failed) that the file's
        // length does not cover: a whole file covers all of it.
        if self.tried
            && let Ok(meta) = file.metadata()
            && meta.len() < self.end
        {
            let _ = file.set_len(meta.len());
        }
    }
}

fn fallocate_keep_size(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, offset, len)
            .map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux"))]
#[path = "paced_tests.rs"]
mod tests;
