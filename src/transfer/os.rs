//! Thin wrappers over OS calls std does not offer: sending file bytes without copying them
//! through user space (`sendfile(2)`, for plain uploads, which hash nothing), and `MSG_MORE`
//! for a small chunk header in front of its data, so header and data share packets even
//! with `TCP_NODELAY` on. Other systems fall back to ordinary reads and writes. (File-system calls on received data use `rustix`, safe code,
//! through [`super::dir::DownloadDir`].)
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

/// Streams a file being received to disk while it arrives, so that the `fdatasync` before
/// "verified" finds little left to write: each [`WRITE_BEHIND_WINDOW`] written starts its
/// writeback at once (`sync_file_range(WRITE)`), and waits for the window before it, which
/// also bounds the dirty pages one upload holds. Best effort: errors are left to the final
/// sync, which reports them. Elsewhere than Linux it does nothing.
#[derive(Debug)]
pub struct WriteBehind {
    /// Where the window being filled starts, and how much of it is written.
    window_start: u64,
    filled: u64,
    /// The previous window, whose writeback was started.
    started: Option<(u64, u64)>,
}

/// Bytes per write-behind window (8 MiB).
pub const WRITE_BEHIND_WINDOW: u64 = 8 * 1024 * 1024;

impl WriteBehind {
    /// For a file whose next write lands at `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            window_start: offset,
            filled: 0,
            started: None,
        }
    }

    /// Call after `n` more bytes were written at the end of `file`.
    pub fn wrote(&mut self, file: &File, n: usize) {
        self.filled += n as u64;
        if self.filled < WRITE_BEHIND_WINDOW {
            return;
        }
        let window = (self.window_start, self.filled);
        if let Some((start, len)) = self.started.replace(window) {
            sync_range(file, start, len, true);
        }
        sync_range(file, window.0, window.1, false);
        self.window_start += self.filled;
        self.filled = 0;
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
