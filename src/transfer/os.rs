//! Thin wrappers over OS calls std does not offer: sending file bytes without copying them
//! through user space (`sendfile(2)`, for plain uploads, which hash nothing), `MSG_MORE`
//! for a small chunk header in front of its data, so header and data share packets even
//! with `TCP_NODELAY` on, and seeing a peer's end of stream behind bytes not yet read
//! (`POLLRDHUP`), and waiting until a socket holds a given number of bytes (`SO_RCVLOWAT`,
//! for an encrypted record's rest). Other systems fall back to ordinary reads and writes.
//! (File-system calls on received data use `rustix`, safe code, through
//! [`super::dir::DownloadDir`].)
//!
//! This is the only module with `unsafe`: libc calls on file descriptors that the borrowed
//! `TcpStream` and `File` keep open for the duration of each call.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpStream;

/// Writes `bytes`, telling the kernel more data follows at once.
pub fn send_more(stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: the pointer and length describe `rest`, a live borrowed slice; the
            // descriptor belongs to `stream`, which outlives the call.
            let n = byte_count(io::ErrorKind::WriteZero, || unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            })?;
            rest = &rest[n..];
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::Write;
        (&*stream).write_all(bytes)
    }
}

/// Runs a syscall that returns a byte count until it is not interrupted: a positive count is
/// returned, 0 becomes an error of kind `zero`, -1 the OS error.
#[cfg(target_os = "linux")]
fn byte_count(zero: io::ErrorKind, mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        match call() {
            n if n > 0 => return Ok(n as usize),
            0 => return Err(zero.into()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Sends `len` bytes of `file` starting at `offset` (the file position is not used).
/// A file that ends early is an `UnexpectedEof` error.
pub fn send_file_range(
    stream: &TcpStream,
    file: &File,
    mut offset: u64,
    len: usize,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut left = len;
        while left > 0 {
            let mut off = libc::off_t::try_from(offset)
                .map_err(|_| io::Error::other("file offset too large"))?;
            // SAFETY: both descriptors belong to borrowed, open objects; `off` is a valid
            // pointer to a local the kernel updates.
            let n = byte_count(io::ErrorKind::UnexpectedEof, || unsafe {
                libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, left)
            })?;
            left -= n;
            offset += n as u64;
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::Write;
        let mut buf = vec![0u8; len.min(256 * 1024)];
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len());
            read_exact_at(file, &mut buf[..want], offset)?;
            (&*stream).write_all(&buf[..want])?;
            left -= want;
            offset += want as u64;
        }
        Ok(())
    }
}

/// Positional read that leaves the file position alone (the caller reads sequentially).
#[cfg(all(unix, not(target_os = "linux")))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
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

/// Starts writeback of a byte range, and with `wait` first waits until it is on disk.
fn sync_range(file: &File, offset: u64, len: u64, wait: bool) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: the descriptor belongs to `file`, borrowed and open for the whole call; the
        // other arguments are plain integers.
        let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len, wait);
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

/// Whether the peer of `socket` has finished sending (its end of the stream arrived, or the
/// connection broke), waiting up to `wait` for it. Unlike a peek, this sees the end behind
/// bytes still waiting to be read. `None` where the system cannot tell (`POLLRDHUP` is
/// Linux's) or the call failed.
pub fn peer_finished(socket: &TcpStream, wait: std::time::Duration) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::event::PollFlags;
        let ended = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR;
        poll_socket(socket, PollFlags::RDHUP, wait).map(|seen| seen.intersects(ended))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, wait);
        None
    }
}

/// Waits up to `wait` for `socket` to have something to read (bytes, its end of stream or
/// an error), without reading and whatever its read timeout: `Some(true)` something came,
/// `Some(false)` nothing within `wait` (or interrupted), `None` where the system cannot
/// tell or the call failed (then a blocking read is the way to wait).
pub fn wait_readable(socket: &TcpStream, wait: std::time::Duration) -> Option<bool> {
    #[cfg(unix)]
    {
        poll_socket(socket, rustix::event::PollFlags::IN, wait).map(|seen| !seen.is_empty())
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, wait);
        None
    }
}

/// Waits up to `wait` until `socket` holds at least `bytes` unread bytes (or its end of
/// stream, or an error, which a read reports at once), without reading: `Some(true)` they
/// are there, `Some(false)` not within `wait` (or interrupted), `None` where the system
/// cannot tell or a call failed. The wait sets the socket's low-water mark (`SO_RCVLOWAT`)
/// for its duration, so the kernel wakes it only once that much has arrived; the mark is
/// back at one byte when it returns (`None` in the unlikely case that it could not be put
/// back). Linux also calls the socket readable below the mark when no more may come before
/// a read (its receive window nearly shut, or its receive buffer nearly full): then this
/// says `Some(true)` early, and a read may wait for the rest.
pub fn wait_queued(socket: &TcpStream, bytes: usize, wait: std::time::Duration) -> Option<bool> {
    #[cfg(unix)]
    {
        let queued = rustix::io::ioctl_fionread(socket).ok()?;
        if queued >= bytes as u64 {
            return Some(true);
        }
        if wait.is_zero() {
            return Some(false);
        }
        set_recv_lowat(socket, bytes).ok()?;
        let seen = wait_readable(socket, wait);
        // Back to one byte whatever the wait saw: every other read and poll expects it.
        set_recv_lowat(socket, 1).ok()?;
        seen
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, bytes, wait);
        None
    }
}

/// Copies up to `buf.len()` of the bytes waiting in `socket` without taking them and
/// without waiting: how many (0 when none are there or the call failed).
pub fn peek(socket: &TcpStream, buf: &mut [u8]) -> usize {
    #[cfg(unix)]
    {
        use rustix::net::{RecvFlags, recv};
        recv(socket, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT).map_or(0, |(n, _)| n)
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, buf);
        0
    }
}

/// Sets how many bytes `socket` must hold before a poll calls it readable.
#[cfg(unix)]
fn set_recv_lowat(socket: &TcpStream, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor belongs to `socket`, borrowed and open for the whole call; the
    // option value points to a live `c_int` whose size is passed with it.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Polls `socket` for `events` up to `wait`: what it saw (nothing when the time ran out or
/// the wait was interrupted; the caller asks again), `None` when the call failed.
#[cfg(unix)]
fn poll_socket(
    socket: &TcpStream,
    events: rustix::event::PollFlags,
    wait: std::time::Duration,
) -> Option<rustix::event::PollFlags> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(socket, events)];
    let timeout = Timespec::try_from(wait).ok()?;
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) => Some(fds[0].revents()),
        Err(rustix::io::Errno::INTR) => Some(PollFlags::empty()),
        Err(_) => None,
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
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    #[test]
    fn write_behind_starts_every_byte_once_and_waits_for_all_but_its_last_windows() {
        // Writes of uneven sizes from a resumed offset, as a pump's fills arrive.
        let offset = 12_345;
        let mut behind = WriteBehind::new(offset);
        let (mut written, mut started, mut waited) = (0u64, Vec::new(), Vec::new());
        for i in 0..700u64 {
            let n = 65_536 + (i * 7_919) % 300_000;
            let step = behind.step(n as usize);
            written += n;
            started.extend(step.start);
            waited.extend(step.wait);
            // Never more than DEPTH windows under way plus the one filling: the dirty pages
            // one upload holds stay bounded.
            let waited_to = waited.last().map_or(offset, |&(s, l)| s + l);
            assert!(
                offset + written - waited_to
                    <= WRITE_BEHIND_WINDOW * (WRITE_BEHIND_DEPTH as u64 + 2)
            );
        }
        // The started windows tile the file from the offset on, each at least a window long.
        let mut at = offset;
        for &(start, len) in &started {
            assert_eq!(start, at);
            assert!((WRITE_BEHIND_WINDOW..WRITE_BEHIND_WINDOW + 300_000).contains(&len));
            at += len;
        }
        assert!(
            offset + written - at < WRITE_BEHIND_WINDOW,
            "only the window filling is left"
        );
        // Waited for in the order started, all but the last DEPTH.
        assert!(started.len() > 2 * WRITE_BEHIND_DEPTH);
        assert_eq!(waited, started[..started.len() - WRITE_BEHIND_DEPTH]);
    }

    const MIB: u64 = 1 << 20;

    fn allocated(file: &File) -> u64 {
        file.metadata().unwrap().blocks() * 512
    }

    fn len(file: &File) -> u64 {
        file.metadata().unwrap().len()
    }

    /// Whether this file system reserves blocks for `fallocate` (ext4 and tmpfs do).
    fn reserves_blocks(dir: &Path) -> bool {
        let file = File::create(dir.join("probe")).unwrap();
        fallocate_keep_size(&file, 0, MIB).is_ok() && allocated(&file) >= MIB
    }

    /// Writes `bytes` through `prealloc`, at most 1 MiB per write (as the pump writes).
    fn write(file: &mut File, prealloc: &mut Preallocate, bytes: u64) {
        let block = vec![7u8; MIB as usize];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(MIB) as usize;
            prealloc.reserve(file, n).unwrap();
            file.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
    }

    #[test]
    fn blocks_are_reserved_ahead_by_what_was_written_never_past_the_end_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        if !reserves_blocks(dir.path()) {
            eprintln!("SKIPPED: this file system does not reserve blocks (no fallocate)");
            return;
        }
        let mut file = File::create(dir.path().join("big")).unwrap();
        let mut prealloc = Preallocate::new(0, 10 * PREALLOC_AHEAD);
        // A peer that sent 1 MiB of a file it announced as 320 MiB makes this side hold no
        // more than as much again (it was 33 MiB).
        write(&mut file, &mut prealloc, MIB);
        assert!(allocated(&file) <= 2 * MIB, "{}", allocated(&file));
        // Further on, the window is a whole one, and the length is what arrived.
        write(&mut file, &mut prealloc, 39 * MIB);
        assert_eq!(len(&file), 40 * MIB, "the length is what arrived");
        let held = allocated(&file);
        assert!(
            (48 * MIB..=40 * MIB + PREALLOC_AHEAD + MIB).contains(&held),
            "{held}"
        );
        // Stopped early: what lies past the end is given back, the bytes stay.
        prealloc.release(&file);
        assert!(allocated(&file) <= 41 * MIB, "{}", allocated(&file));
        assert_eq!(len(&file), 40 * MIB);

        // Never past the announced end; a whole file has nothing to give back.
        let mut file = File::create(dir.path().join("small")).unwrap();
        let end = 3 * MIB / 2;
        let mut prealloc = Preallocate::new(0, end);
        write(&mut file, &mut prealloc, MIB);
        assert!(allocated(&file) >= end, "{}", allocated(&file));
        assert!(allocated(&file) <= 2 * MIB, "{}", allocated(&file));
        write(&mut file, &mut prealloc, end - MIB);
        prealloc.release(&file);
        assert_eq!(len(&file), end);
        assert!(allocated(&file) >= end, "{}", allocated(&file));
    }

    /// A reservation that failed part way may have reserved some blocks: a stopped upload
    /// gives those back too (the release used to skip a file whose first call failed).
    #[test]
    fn release_gives_back_what_a_failed_reservation_left() {
        let dir = tempfile::tempdir().unwrap();
        if !reserves_blocks(dir.path()) {
            eprintln!("SKIPPED: this file system does not reserve blocks (no fallocate)");
            return;
        }
        let file = File::create(dir.path().join("part")).unwrap();
        let mut prealloc = Preallocate::new(0, 100 * MIB);
        // As if the first call had failed after reserving 4 MiB.
        fallocate_keep_size(&file, 0, 4 * MIB).unwrap();
        prealloc.tried = true;
        prealloc.release(&file);
        assert_eq!(len(&file), 0);
        assert!(allocated(&file) < MIB, "{}", allocated(&file));
    }
}

#[cfg(all(test, unix))]
mod socket_tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Waits, with a deadline, until `socket` holds `bytes` (what arrives on loopback is
    /// queued a moment after the write returns).
    fn until_queued(socket: &TcpStream, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while rustix::io::ioctl_fionread(socket).unwrap() < bytes {
            assert!(Instant::now() < deadline, "never queued {bytes} bytes");
            std::thread::yield_now();
        }
    }

    /// An encrypted record's rest is waited for as a whole: part of it is not enough, its
    /// last byte wakes the wait, and the socket reads as usual afterwards.
    #[test]
    fn a_wait_for_queued_bytes_ends_when_they_are_all_there() {
        let (mut client, server) = pair();
        client.write_all(&[1; 10]).unwrap();
        until_queued(&server, 10);
        assert_eq!(wait_queued(&server, 20, Duration::ZERO), Some(false));
        assert_eq!(
            wait_queued(&server, 20, Duration::from_millis(50)),
            Some(false)
        );
        assert_eq!(wait_queued(&server, 10, Duration::ZERO), Some(true));
        let waiting = {
            let server = server.try_clone().unwrap();
            std::thread::spawn(move || {
                let started = Instant::now();
                (
                    wait_queued(&server, 20, Duration::from_secs(30)),
                    started.elapsed(),
                )
            })
        };
        // Nine bytes more are still one short; the tenth ends the wait.
        client.write_all(&[2; 9]).unwrap();
        until_queued(&server, 19);
        client.write_all(&[3]).unwrap();
        let (seen, waited) = waiting.join().unwrap();
        assert_eq!(seen, Some(true));
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        // The low-water mark is back at one byte: one byte makes the socket readable.
        let mut all = [0u8; 20];
        (&server).read_exact(&mut all).unwrap();
        client.write_all(&[4]).unwrap();
        assert_eq!(wait_readable(&server, Duration::from_secs(10)), Some(true));
        // The peer's end of stream ends a wait for more than will ever come.
        drop(client);
        assert_eq!(
            wait_queued(&server, 100, Duration::from_secs(10)),
            Some(true)
        );
    }

    #[test]
    fn a_peek_takes_nothing_and_never_waits() {
        let (mut client, server) = pair();
        let mut two = [0u8; 2];
        assert_eq!(peek(&server, &mut two), 0, "nothing there: no wait");
        client.write_all(&[5, 6, 7]).unwrap();
        until_queued(&server, 3);
        assert_eq!(peek(&server, &mut two), 2);
        assert_eq!(two, [5, 6]);
        let mut all = [0u8; 3];
        (&server).read_exact(&mut all).unwrap();
        assert_eq!(all, [5, 6, 7]);
    }
}
