//! Thin wrappers over OS calls std does not offer: sending file bytes without copying them
//! through user space (`sendfile(2)`, for plain uploads, which hash nothing), `MSG_MORE`
//! for a small chunk header in front of its data, so header and data share packets even
//! with `TCP_NODELAY` on, and seeing a peer's end of stream behind bytes not yet read
//! (`POLLRDHUP`), waiting until a socket holds a given number of bytes (`SO_RCVLOWAT`,
//! for an encrypted record's rest), and starting a received file's write-back
//! (`sync_file_range`, for [`super::paced::WriteBehind`]). Other systems fall back to
//! ordinary reads and writes.
//! (File-system calls on received data use `rustix`, safe code, through
//! [`super::dir::DownloadDir`].)
//!
//! This is the only module with `unsafe`: libc calls on file descriptors that the borrowed
//! `TcpStream` and `File` keep open for the duration of each call.
#![allow(unsafe_code)]

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

/// Starts writeback of a byte range, and with `wait` first waits until it is on disk.
/// Best effort: an error is left to the file's final sync, which reports it.
pub(crate) fn sync_range(file: &File, offset: u64, len: u64, wait: bool) {
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
