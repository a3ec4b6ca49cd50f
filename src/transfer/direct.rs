//! Direct writes (`O_DIRECT`) for a large received file that will be synced: its bytes go
//! from buffers of ours to the disk, not through the page cache. Through the page cache
//! every byte is copied once more, into a page the kernel must first find and allocate; on
//! a virtual machine whose free memory the host takes back (free page reporting), that
//! allocation cost a 1 GiB upload's receiver 1.0-1.9 s of CPU here, against 0.55-0.9 s
//! with direct writes. A synced file is waited for anyway, so its bytes gain nothing from the
//! cache, and a large upload no longer pushes the user's other files out of it.
//!
//! The bytes are gathered in aligned buffers of [`STAGE_LEN`]; a full one goes to a writer
//! thread of the file's own, [`DEPTH`] at most on their way, so the disk always has the
//! next one while the network fills another. The piece after the last whole block is
//! written through the page cache (a direct write is whole blocks) and the caller's final
//! sync covers it. Only local file systems known to take direct writes well are written
//! this way ([`takes_direct_writes`]): on a network file system (NFS, SMB), a FUSE one or
//! a stacked one (overlayfs) a direct write's cost is whatever lies beneath, so the file
//! goes through the page cache as before, as it does on one that refuses the flag and on
//! a resumed file whose offset is not on a block boundary. At most [`MAX_DIRECT_FILES`]
//! files are written this way at once (each holds `STAGE_LEN x (DEPTH + 1)` bytes of
//! buffers); the rest go through the page cache, whose memory is the kernel's to bound.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

/// Alignment of a direct write's memory, file offset and length: a disk's logical block
/// is 512 or 4096 bytes nearly always. On one with larger blocks the first write fails
/// (`EINVAL`) and the file goes on through the page cache.
pub const ALIGN: usize = 4096;

/// Bytes per buffer handed to the writer (1 MiB: this disk took 1 MiB direct writes 8 %
/// faster than 512 KiB ones, `fio`, one at a time).
pub const STAGE_LEN: usize = 1024 * 1024;

/// How many full buffers may be with the writer at once: with one the disk idled between
/// writes (a 1 GiB upload took 1.1 s here, against 0.7 s with two or three).
pub const DEPTH: usize = 2;

/// How many files may be written directly at once: one, so its 3 MiB of buffers (the pump
/// fills them in place, so it needs no buffer of its own for that file) keep 32 concurrent
/// uploads' server within 64 MiB (with two it measured 61-63 MiB, against 57-59 without
/// any). The common case, one large upload at a time, gets it.
pub const MAX_DIRECT_FILES: usize = 1;

/// The places for files written directly (see [`MAX_DIRECT_FILES`]).
static PLACES: Places = Places::new(MAX_DIRECT_FILES);

/// A count of places, of which at most `max` are taken at once.
struct Places {
    taken: AtomicUsize,
    max: usize,
}

impl Places {
    const fn new(max: usize) -> Self {
        Self {
            taken: AtomicUsize::new(0),
            max,
        }
    }

    /// A place, if one is free.
    fn take(&'static self) -> Option<Place> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(self))
    }
}

/// One taken place, given back when dropped.
struct Place(&'static Places);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A buffer of [`STAGE_LEN`] bytes whose start is aligned to [`ALIGN`]: a `Vec` a little
/// longer, used from its first aligned byte (moving the `Vec` keeps its heap block, so the
/// alignment holds wherever the buffer goes).
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Self {
        let bytes = vec![0u8; STAGE_LEN + ALIGN];
        let start = bytes.as_ptr().align_offset(ALIGN);
        Self { bytes, start }
    }

    fn get(&self, len: usize) -> &[u8] {
        &self.bytes[self.start..self.start + len]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + STAGE_LEN]
    }
}

/// One buffer for the writer: its first `len` bytes, to land at `at`.
struct Job {
    buf: Aligned,
    len: usize,
    at: u64,
}

/// A file being written directly (see the module's text). Call [`Direct::finish`] when
/// done: dropped without, whatever it still held is not written.
pub struct Direct {
    /// The buffer being filled, how much of it is, and where its first byte lands.
    stage: Aligned,
    filled: usize,
    at: u64,
    /// The buffers not with the writer, and how many are with it.
    spare: Vec<Aligned>,
    in_flight: usize,
    /// Whether a write failed: nothing is written after it, which would leave a hole in
    /// the file (its length says how much arrived, which resume relies on).
    failed: bool,
    jobs: Option<Sender<Job>>,
    done: Receiver<(Aligned, io::Result<()>)>,
    writer: Option<JoinHandle<()>>,
    _place: Place,
}

impl Direct {
    /// Switches `file` (whose next write lands at `offset`) to direct writes, or `None`
    /// where that cannot be: an offset not on a block boundary (a resumed upload), a file
    /// system not known to take them ([`takes_direct_writes`]) or refusing them, every
    /// place taken, no thread to spare.
    pub fn start(file: &File, offset: u64) -> Option<Self> {
        Self::start_in(&PLACES, file, offset)
    }

    /// [`Direct::start`], with a place among `places`.
    fn start_in(places: &'static Places, file: &File, offset: u64) -> Option<Self> {
        if !offset.is_multiple_of(ALIGN as u64) || !takes_direct_writes(file) {
            return None;
        }
        let place = places.take()?;
        let handle = file.try_clone().ok()?;
        // The flag belongs to the open file, which `handle` shares with `file`.
        set_direct(file, true).ok()?;
        let (jobs, queued) = bounded::<Job>(DEPTH);
        let (finished, done) = bounded(DEPTH);
        let spawned = std::thread::Builder::new()
            .name("ferry-disk".into())
            .spawn(move || write_jobs(&handle, &queued, &finished));
        let Ok(writer) = spawned else {
            let _ = set_direct(file, false);
            return None;
        };
        Some(Self {
            stage: Aligned::new(),
            filled: 0,
            at: offset,
            spare: Vec::with_capacity(DEPTH),
            in_flight: 0,
            failed: false,
            jobs: Some(jobs),
            done,
            writer: Some(writer),
            _place: place,
        })
    }

    /// Takes all of `buf`; each buffer filled goes to the writer. An error is the
    /// writer's, from an earlier buffer.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let room = self.room();
            let n = buf.len().min(room.len());
            room[..n].copy_from_slice(&buf[..n]);
            buf = &buf[n..];
            self.took(n)?;
        }
        Ok(())
    }

    /// The free part of the buffer being filled (never empty): a caller may fill it in
    /// place and then [`Direct::took`] what it filled, which saves the copy of
    /// [`Direct::write`].
    pub fn room(&mut self) -> &mut [u8] {
        let filled = self.filled;
        &mut self.stage.get_mut()[filled..]
    }

    /// Takes the first `n` bytes of [`Direct::room`], filled by the caller; a full buffer
    /// goes to the writer. An error is the writer's, from an earlier buffer.
    pub fn took(&mut self, n: usize) -> io::Result<()> {
        self.filled = (self.filled + n).min(STAGE_LEN);
        if self.filled == STAGE_LEN {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Gives the full buffer to the writer, first waiting for its oldest if it has
    /// [`DEPTH`]; the next buffer is a spare, or a new one while fewer than `DEPTH + 1` exist.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.in_flight == DEPTH {
            self.collect()?;
        }
        let next = self.spare.pop().unwrap_or_else(Aligned::new);
        let job = Job {
            buf: std::mem::replace(&mut self.stage, next),
            len: self.filled,
            at: self.at,
        };
        self.at += self.filled as u64;
        self.filled = 0;
        match self.jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => {
                self.in_flight += 1;
                Ok(())
            }
            _ => Err(writer_stopped()),
        }
    }

    /// Waits for the oldest buffer with the writer and takes it back, with how its write
    /// went.
    fn collect(&mut self) -> io::Result<()> {
        let (buf, written) = self.done.recv().map_err(|_| writer_stopped())?;
        self.in_flight -= 1;
        self.spare.push(buf);
        self.failed |= written.is_err();
        written
    }

    /// Waits until the writer has written every buffer it has; the first error, if any,
    /// once all are back.
    fn collect_all(&mut self) -> io::Result<()> {
        let mut written = Ok(());
        while self.in_flight > 0 {
            let next = self.collect();
            if written.is_ok() {
                written = next;
            }
        }
        written
    }

    /// Writes everything taken: whole blocks straight to the disk, the piece after the
    /// last whole block through the page cache. That piece stays at the start of the
    /// buffer being filled, so the next direct write, which must start on a block
    /// boundary, writes it again with what follows it.
    pub fn flush(&mut self, file: &File) -> io::Result<()> {
        self.collect_all()?;
        if self.failed {
            return Err(earlier_failed());
        }
        let written = self.write_held(file);
        self.failed |= written.is_err();
        written
    }

    /// [`Direct::flush`]'s writes, once the writer's are done.
    fn write_held(&mut self, file: &File) -> io::Result<()> {
        let whole = self.filled / ALIGN * ALIGN;
        if whole > 0 {
            write_at(file, self.stage.get(whole), self.at)?;
        }
        if self.filled > whole {
            let tail = &self.stage.get(self.filled)[whole..];
            // Still direct unless a write went back to the page cache for good.
            let direct = is_direct(file)?;
            if direct {
                set_direct(file, false)?;
            }
            let written = file.write_all_at(tail, self.at + whole as u64);
            if direct {
                set_direct(file, true)?;
            }
            written?;
        }
        self.stage.get_mut().copy_within(whole..self.filled, 0);
        self.at += whole as u64;
        self.filled -= whole;
        Ok(())
    }

    /// Writes everything taken (see [`Direct::flush`]) and leaves `file` a plain one,
    /// positioned after the last byte. A plain one whatever failed: its caller goes on with
    /// it (a part file kept, read or written again), which direct mode would refuse.
    pub fn finish(mut self, file: &mut File) -> io::Result<()> {
        let written = self.flush(file);
        self.stop();
        let plain = set_direct(file, false);
        written?;
        plain?;
        file.seek(SeekFrom::Start(self.at + self.filled as u64))?;
        Ok(())
    }

    /// Ends the writer thread, after the buffers it holds.
    fn stop(&mut self) {
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_stopped() -> io::Error {
    io::Error::other("the disk writer stopped")
}

fn earlier_failed() -> io::Error {
    io::Error::other("not written: an earlier write to the disk failed")
}

/// The writer thread: each buffer at its place, in order; the buffer and how its write
/// went back. After a failed write the buffers queued behind it are not written.
fn write_jobs(file: &File, jobs: &Receiver<Job>, done: &Sender<(Aligned, io::Result<()>)>) {
    let mut failed = false;
    while let Ok(job) = jobs.recv() {
        if failed {
            if done.send((job.buf, Err(earlier_failed()))).is_err() {
                return;
            }
            continue;
        }
        let written = write_at(file, job.buf.get(job.len), job.at);
        failed = written.is_err();
        if done.send((job.buf, written)).is_err() {
            return;
        }
    }
}

/// Writes `buf` at `at`. A direct write accepted by `fcntl` and refused by the write
/// (`EINVAL`: a file system that checks only there, or a disk with blocks larger than
/// [`ALIGN`]) is done again through the page cache, which then takes the rest of the file.
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    match file.write_all_at(buf, at) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && is_direct(file)? => {
            set_direct(file, false)?;
            file.write_all_at(buf, at)
        }
        other => other,
    }
}

/// The file systems whose files are written directly (see [`takes_direct_writes`]), by
/// the magic number `statfs` reports (`f_type`; <linux/magic.h> unless said).
const LOCAL_DISK: [u32; 11] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
    0xCA45_1A4E, // bcachefs
    0x3153_464A, // JFS (fs/jfs/jfs_superblock.h)
    0x4D44,      // FAT (vfat, msdos)
    0x2011_BAB0, // exFAT
    0x7366_746E, // NTFS as ntfs3 reports it ("ntfs", fs/ntfs3/super.c)
    0x5346_544E, // NTFS_SB_MAGIC ("NTFS"), the classic driver's (it refuses the flag)
    0x0102_1994, // tmpfs
];

/// Whether `file` lies on a file system where direct writes are known to go straight to a
/// local disk and to cost less than the page cache: the common local disk file systems
/// (ext2/3/4, XFS, Btrfs, F2FS, bcachefs, JFS, and FAT, exFAT and NTFS for USB disks), and
/// tmpfs (memory: no gain, no harm, and tests' small full disks are tmpfs). Not network
/// (NFS, SMB), FUSE or stacked (overlayfs) ones, where a direct write's cost depends on
/// what lies beneath, and not those unlisted: the page cache is the known way there.
pub(super) fn takes_direct_writes(file: &File) -> bool {
    match rustix::fs::fstatfs(file) {
        // `f_type`'s width and sign differ between architectures; the magic is 32 bits.
        Ok(fs) => LOCAL_DISK.contains(&(fs.f_type as u32)),
        Err(_) => false,
    }
}

/// Whether the open file `file` is a handle on writes directly.
fn is_direct(file: &File) -> io::Result<bool> {
    Ok(rustix::fs::fcntl_getfl(file)?.contains(rustix::fs::OFlags::DIRECT))
}

/// Turns direct writes on or off for the open file `file` is a handle on.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = match on {
        true => flags | OFlags::DIRECT,
        false => flags - OFlags::DIRECT,
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(test)]
#[path = "direct_tests.rs"]
pub(crate) mod tests;
