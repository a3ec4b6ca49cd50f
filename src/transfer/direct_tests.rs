//! Tests of direct writes ([`super`]): real files in temp folders (and a small tmpfs, as
//! root).

use std::io::{Read, Write};

use super::*;

fn is_direct(file: &File) -> bool {
    super::is_direct(file).unwrap()
}

/// A new file named `part` in `dir`, open for reading and writing.
fn new_part(dir: &std::path::Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join("part"))
        .unwrap()
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
    let mut file = new_part(tmp.path());
    let head = pattern(2 * ALIGN, 7);
    file.write_all(&head).unwrap();
    let Some(mut direct) = start_when_free(&file, head.len() as u64) else {
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

/// A test that cannot run here: `SKIPPED: reason` on stderr (uncaptured, so it shows),
/// or, with `CI` set, a failure: CI's machine runs the tests as root with an ext4 temp
/// folder on a kernel with direct writes to tmpfs, so a skip there would hide a break.
pub(crate) fn skip_or_fail(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and its machine should allow this: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Why a test of direct writes cannot run here.
pub(crate) const NOT_DIRECT_HERE: &str = "the temp folder's file system is not written directly";

/// Runs `attempt` until it gets the one place for direct writes (another test may hold it
/// a moment; 30 s at most, then a failure): `attempt` says whether it got it.
pub(crate) fn retry_for_place(mut attempt: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !attempt() {
        assert!(
            std::time::Instant::now() < deadline,
            "the place for direct writes stayed taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Direct writes for `file`, once the place is free; `None` (after [`skip_or_fail`]) where
/// its file system is not written directly.
fn start_when_free(file: &File, offset: u64) -> Option<Direct> {
    if !takes_direct_writes(file) {
        skip_or_fail(NOT_DIRECT_HERE);
        return None;
    }
    let mut started = None;
    retry_for_place(|| {
        started = Direct::start(file, offset);
        started.is_some()
    });
    started
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
        skip_or_fail(NOT_DIRECT_HERE);
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

/// A file system mounted on a temp folder (root only), unmounted on drop.
struct Mounted {
    dir: tempfile::TempDir,
    at: std::path::PathBuf,
}

impl Mounted {
    /// A small tmpfs.
    fn tmpfs(size_mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_owned();
        Self::mount(
            dir,
            at,
            &["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"],
        )
    }

    /// An overlay whose layers lie in the temp folder (`upper` is where its files land).
    fn overlay() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        for layer in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(layer)).unwrap();
        }
        let p = |layer: &str| dir.path().join(layer).display().to_string();
        let layers = format!(
            "lowerdir={},upperdir={},workdir={}",
            p("lower"),
            p("upper"),
            p("work")
        );
        let at = dir.path().join("merged");
        Self::mount(dir, at, &["-t", "overlay", "-o", &layers, "overlay"])
    }

    fn mount(dir: tempfile::TempDir, at: std::path::PathBuf, args: &[&str]) -> Option<Self> {
        let mounted = std::process::Command::new("mount")
            .args(args)
            .arg(&at)
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then_some(Self { dir, at })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.at).status();
    }
}

/// A file on a file system not known to take direct writes well (here an overlay, which
/// does take the flag, over a disk whose own files are written directly) goes through the
/// page cache: on a network, FUSE or stacked file system the cost of a direct write is
/// whatever lies beneath.
#[test]
fn a_file_system_not_known_to_suit_direct_writes_gets_the_page_cache() {
    static OWN: Places = Places::new(2);
    let Some(overlay) = Mounted::overlay() else {
        skip_or_fail("cannot mount an overlay (needs root)");
        return;
    };
    // A file beside the layers, on the file system beneath them (the layers themselves
    // are the overlay's while it is mounted).
    let beneath = new_part(overlay.dir.path());
    let Some(direct) = Direct::start_in(&OWN, &beneath, 0) else {
        skip_or_fail(NOT_DIRECT_HERE);
        return;
    };
    drop((direct, beneath));
    let file = new_part(&overlay.at);
    assert!(
        set_direct(&file, true).is_ok(),
        "the overlay refuses the flag itself, so this test shows nothing"
    );
    set_direct(&file, false).unwrap();
    assert!(Direct::start_in(&OWN, &file, 0).is_none());
    assert!(!is_direct(&file));
}

/// The list of local disk file systems holds the numbers their drivers report: libc's
/// copies of <linux/magic.h> (cast as `f_type` is, whatever their type here), and NTFS as
/// ntfs3, the driver that writes it, reports it (`sb->s_magic = 0x7366746e; // "ntfs"` in
/// fs/ntfs3/super.c: the list held only the classic driver's "NTFS", so an NTFS disk was
/// never written directly). Network, FUSE and stacked ones are not there.
#[test]
fn the_local_disk_list_holds_the_numbers_their_drivers_report() {
    for magic in [
        libc::EXT4_SUPER_MAGIC as u32,
        libc::XFS_SUPER_MAGIC as u32,
        libc::BTRFS_SUPER_MAGIC as u32,
        libc::F2FS_SUPER_MAGIC as u32,
        libc::BCACHEFS_SUPER_MAGIC as u32,
        libc::MSDOS_SUPER_MAGIC as u32,
        libc::TMPFS_MAGIC as u32,
    ] {
        assert!(LOCAL_DISK.contains(&magic), "{magic:#x} is missing");
    }
    assert!(LOCAL_DISK.contains(&u32::from_le_bytes(*b"ntfs")), "ntfs3");
    for magic in [
        libc::NFS_SUPER_MAGIC as u32,
        libc::SMB_SUPER_MAGIC as u32,
        0xFE53_4D42, // SMB2 (cifs)
        libc::FUSE_SUPER_MAGIC as u32,
        libc::OVERLAYFS_SUPER_MAGIC as u32,
        libc::ECRYPTFS_SUPER_MAGIC as u32,
    ] {
        assert!(!LOCAL_DISK.contains(&magic), "{magic:#x} is listed");
    }
}

/// A buffer whose write failed (a full disk) is followed by nothing: the bytes taken
/// after it are not written further on, even once there is room again, so the file's
/// length still ends where its bytes do. They were, leaving a hole of zeros that a
/// resume took as received.
#[test]
fn nothing_is_written_past_a_failed_write() {
    static OWN: Places = Places::new(1);
    let Some(disk) = Mounted::tmpfs(2) else {
        skip_or_fail("cannot mount a tmpfs (needs root)");
        return;
    };
    let filler = disk.at.join("filler");
    let mut fill = File::create(&filler).unwrap();
    while fill.write_all(&[1u8; ALIGN]).is_ok() {}
    drop(fill);
    let mut file = new_part(&disk.at);
    let Some(mut direct) = Direct::start_in(&OWN, &file, 0) else {
        skip_or_fail("no direct writes on tmpfs here (Linux before 6.6)");
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

/// Bytes filled in place ([`Direct::room`], [`Direct::took`]) land as written ones
/// do, across buffers handed to the writer and flushes between.
#[test]
fn bytes_filled_in_place_land_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut file = new_part(tmp.path());
    let Some(mut direct) = start_when_free(&file, 0) else {
        return;
    };
    let body = pattern(7 * STAGE_LEN + 999, 4);
    let (mut at, mut i) = (0, 0);
    while at < body.len() {
        let room = direct.room();
        assert!(!room.is_empty());
        let n = room
            .len()
            .min(body.len() - at)
            .min(1 + (i * 77_777) % 400_000);
        room[..n].copy_from_slice(&body[at..at + n]);
        direct.took(n).unwrap();
        at += n;
        i += 1;
        if i % 7 == 0 {
            direct.flush(&file).unwrap();
            assert_eq!(file.metadata().unwrap().len(), at as u64);
        }
    }
    direct.finish(&mut file).unwrap();
    assert!(std::fs::read(tmp.path().join("part")).unwrap() == body);
}

/// A direct write the file system refuses (`EINVAL`; here a length off the block size,
/// as a disk with larger blocks than [`ALIGN`] would refuse ours) is done through the
/// page cache, which keeps the file from then on. It failed the upload when a flush
/// wrote it.
#[test]
fn a_refused_direct_write_goes_through_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let file = new_part(tmp.path());
    if set_direct(&file, true).is_err() {
        skip_or_fail(NOT_DIRECT_HERE);
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
