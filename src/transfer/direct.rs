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
//! sync covers it. A file system that refuses direct writes (tmpfs before Linux 6.6, many
//! FUSE file systems) gets the page cache as before, and so does a resumed file whose
//! offset is not on a block boundary. At most [`MAX_DIRECT_FILES`] files are written this
//! way at once (each holds `STAGE_LEN x (DEPTH + 1)` bytes of buffers); the rest go through
//! the page cache, whose memory is the kernel's to bound.

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

/// Bytes per buffer handed to the writer (512 KiB).
pub const STAGE_LEN: usize = 512 * 1024;

/// How many full buffers may be with the writer at once: with one the disk idled between
/// writes (a 1 GiB upload took 1.1 s here, against 0.7 s with two or three).
pub const DEPTH: usize = 3;

/// How many files may be written directly at once: one, so its 2 MiB of buffers keep 32
/// concurrent uploads' server within 64 MiB (with two it measured 61-63 MiB, against 57-59
/// without any). The common case, one large upload at a time, gets it.
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
    /// system without them, every place taken, no thread to spare.
    pub fn start(file: &File, offset: u64) -> Option<Self> {
        Self::start_in(&PLACES, file, offset)
    }

    /// [`Direct::start`], with a place among `places`.
    fn start_in(places: &'static Places, file: &File, offset: u64) -> Option<Self> {
        if !offset.is_multiple_of(ALIGN as u64) {
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
            let n = buf.len().min(STAGE_LEN - self.filled);
            self.stage.get_mut()[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
            self.filled += n;
            buf = &buf[n..];
            if self.filled == STAGE_LEN {
                self.hand_over()?;
            }
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
pub(crate) mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn is_direct(file: &File) -> bool {
        super::is_direct(file).unwrap()
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    }

    /// Uneven writes from a block-aligned offset of a resumed file land in order, the
    /// last piece (not whole blocks) too; a flush between (the sender stalled) puts all
    /// taken so far on the file, and the writes after it go on directly; afterwards the
    /// file is a plain one positioned after its last byte, so what follows appends.
    #[test]
    fn every_byte_lands_in_order_and_the_file_is_plain_again() {
        let tmp = tempfile::tempdir().unwrap();
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp.path().join("part"))
            .unwrap();
        let head = pattern(2 * ALIGN, 7);
        file.write_all(&head).unwrap();
        let Some(mut direct) = start_when_free(&file, head.len() as u64) else {
            eprintln!("SKIPPED: no direct writes on this file system, or the place is taken");
            return;
        };
        assert!(is_direct(&file));
        // Several buffers' worth (more than DEPTH + 1 of them), in writes of odd sizes.
        let body = pattern(9 * STAGE_LEN + 12_345, 3);
        let mut rest = &body[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = rest.len().min(1 + (i * 104_729) % 700_000);
            direct.write(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
            if i % 5 == 0 {
                direct.flush(&file).unwrap();
                let taken = (head.len() + body.len() - rest.len()) as u64;
                assert_eq!(file.metadata().unwrap().len(), taken, "write {i}");
                assert!(is_direct(&file), "a flush ended direct writes");
            }
        }
        direct.finish(&mut file).unwrap();
        assert!(!is_direct(&file), "the file was left in direct mode");
        file.write_all(b"after").unwrap();
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        let expected = [&head[..], &body[..], b"after"].concat();
        assert_eq!(back.len(), expected.len());
        assert!(back == expected, "the bytes differ");
    }

    /// Whether a file could be written directly now.
    pub(crate) fn place_free() -> bool {
        PLACES.taken.load(Ordering::Acquire) < PLACES.max
    }

    /// Waits (30 s at most) until a file could be written directly.
    pub(crate) fn wait_for_place() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !place_free() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Direct writes for `file` once the place is free (another test may hold it for a
    /// moment); `None` when it never is, or the file system has no direct writes.
    pub(crate) fn start_when_free(file: &File, offset: u64) -> Option<Direct> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(direct) = Direct::start(file, offset) {
                return Some(direct);
            }
            if place_free() || std::time::Instant::now() > deadline {
                // A free place refused: this file system has no direct writes.
                return Direct::start(file, offset);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A write that fails (here every one: the handle is read-only) still leaves the file a
    /// plain one once finished. It stayed in direct mode when the writes it held failed.
    #[test]
    fn a_failed_write_still_leaves_the_file_plain() {
        static OWN: Places = Places::new(1);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("part");
        File::create(&path).unwrap();
        let mut file = File::open(&path).unwrap();
        let Some(mut direct) = Direct::start_in(&OWN, &file, 0) else {
            eprintln!("SKIPPED: no direct writes on this file system");
            return;
        };
        let body = pattern(STAGE_LEN + 5_000, 1);
        let _ = direct.write(&body);
        assert!(
            direct.finish(&mut file).is_err(),
            "a read-only file written"
        );
        assert!(!is_direct(&file), "the file was left in direct mode");
    }

    /// A small tmpfs on a temp folder (root only), unmounted on drop.
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn mount(size_mib: u32) -> Option<Self> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
                .arg(dir.path())
                .output()
                .is_ok_and(|out| out.status.success());
            mounted.then_some(Self(dir))
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    /// A buffer whose write failed (a full disk) is followed by nothing: the bytes taken
    /// after it are not written further on, even once there is room again, so the file's
    /// length still ends where its bytes do. They were, leaving a hole of zeros that a
    /// resume took as received.
    #[test]
    fn nothing_is_written_past_a_failed_write() {
        static OWN: Places = Places::new(1);
        let Some(disk) = SmallDisk::mount(2) else {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
            return;
        };
        let filler = disk.0.path().join("filler");
        let mut fill = File::create(&filler).unwrap();
        while fill.write_all(&[1u8; ALIGN]).is_ok() {}
        drop(fill);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(disk.0.path().join("part"))
            .unwrap();
        let Some(mut direct) = Direct::start_in(&OWN, &file, 0) else {
            eprintln!("SKIPPED: no direct writes on tmpfs here (Linux before 6.6)");
            return;
        };
        // The first buffer goes to the writer and fails; the rest stays taken.
        direct.write(&pattern(STAGE_LEN + 5_000, 2)).unwrap();
        assert!(direct.flush(&file).is_err(), "written on a full disk");
        std::fs::remove_file(&filler).unwrap();
        assert!(direct.finish(&mut file).is_err());
        assert_eq!(
            file.metadata().unwrap().len(),
            0,
            "written past the failure"
        );
        assert!(!is_direct(&file));
    }

    /// A direct write the file system refuses (`EINVAL`; here a length off the block size,
    /// as a disk with larger blocks than [`ALIGN`] would refuse ours) is done through the
    /// page cache, which keeps the file from then on. It failed the upload when a flush
    /// wrote it.
    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp.path().join("part"))
            .unwrap();
        if set_direct(&file, true).is_err() {
            eprintln!("SKIPPED: no direct writes on this file system");
            return;
        }
        let odd = pattern(ALIGN + 100, 9);
        write_at(&file, &odd, 0).unwrap();
        assert!(!is_direct(&file), "still direct after a refused write");
        assert_eq!(std::fs::read(tmp.path().join("part")).unwrap(), odd);
    }

    /// A resumed file whose offset is not on a block boundary goes through the page cache.
    #[test]
    fn an_offset_off_a_block_boundary_is_not_written_directly() {
        let tmp = tempfile::tempdir().unwrap();
        let file = File::create(tmp.path().join("part")).unwrap();
        assert!(Direct::start(&file, ALIGN as u64 + 1).is_none());
        assert!(!is_direct(&file));
    }

    #[test]
    fn no_more_places_are_taken_than_there_are_and_a_dropped_one_is_free_again() {
        static TWO: Places = Places::new(2);
        let first = TWO.take().expect("a first place");
        let second = TWO.take().expect("a second place");
        assert!(TWO.take().is_none(), "a third place of two");
        drop(first);
        let third = TWO.take().expect("the place given back");
        assert!(TWO.take().is_none());
        drop((second, third));
        assert_eq!(TWO.taken.load(Ordering::Acquire), 0);
    }
}
