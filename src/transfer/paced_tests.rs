//! Tests of [`super`]: real files in temp folders.

use super::*;
use crate::transfer::direct::tests::{NOT_DIRECT_HERE, retry_for_place, skip_or_fail};
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
            offset + written - waited_to <= WRITE_BEHIND_WINDOW * (WRITE_BEHIND_DEPTH as u64 + 2)
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

/// A large file that will be synced is written directly where the file system allows;
/// dropped without a flush (an upload that failed), what it took is in the file anyway,
/// and the file is a plain one again. A file that will not be synced, one whose server
/// was told not to write directly (`--no-direct-io`), or a small one, goes through the
/// page cache.
#[test]
fn a_large_synced_file_goes_past_the_page_cache_and_keeps_what_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let sent: Vec<u8> = (0..5 * MIB as usize + 4_321)
        .map(|i| (i % 253) as u8)
        .collect();
    let cases = [
        (Landing::Direct, Some(8 * MIB)),
        (Landing::Synced, Some(8 * MIB)),
        (Landing::Cached, Some(8 * MIB)),
        (Landing::Direct, None),
    ];
    for (landing, reserve_to) in cases {
        let mut file = open_part(&dir.path().join("part"));
        // Shares the open file, and so its flags.
        let watch = file.try_clone().unwrap();
        // Dropped without a flush, as an upload that failed.
        let write_all = |paced: &mut Paced<'_>| {
            for chunk in sent.chunks(300_007) {
                paced.write_all(chunk).unwrap();
            }
        };
        if let (Landing::Direct, Some(end)) = (landing, reserve_to) {
            let ran = with_direct(&mut file, end, |paced| {
                assert!(is_direct(&watch));
                write_all(paced);
            });
            if !ran {
                continue;
            }
        } else {
            let mut paced = Paced::new(&mut file, 0, landing, reserve_to);
            assert!(!is_direct(&watch), "{landing:?}, {reserve_to:?}");
            write_all(&mut paced);
        }
        assert!(!is_direct(&watch), "left in direct mode");
        let back = contents(&mut file);
        assert_eq!(back.len(), sent.len(), "{landing:?}, {reserve_to:?}");
        assert!(
            back == sent,
            "{landing:?}, {reserve_to:?}: the bytes differ"
        );
    }
}

/// A small file whose end is given (every LocalSend upload's is) goes through the page
/// cache even when it will be synced: it took a place for direct writes, with a thread
/// and half a MiB of buffers, and a large upload meanwhile went without.
#[test]
fn a_small_file_whose_end_is_given_is_not_written_directly() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = File::create(dir.path().join("small")).unwrap();
    let watch = file.try_clone().unwrap();
    let mut paced = Paced::new(&mut file, 0, Landing::Direct, Some(100_000));
    assert!(!is_direct(&watch));
    paced.write_all(&[5u8; 100_000]).unwrap();
    paced.flush().unwrap();
    drop(paced);
    assert_eq!(len(&file), 100_000);
}

/// A window's bytes below the rate make it slow; a window not yet over is not judged, and
/// a judged one starts the next.
#[test]
fn pace_is_judged_per_window_against_the_rate() {
    let mut pace = Pace::new(Duration::from_secs(1), 1000);
    let start = pace.since;
    pace.took(500);
    assert!(
        !pace.slow(start + Duration::from_millis(900)),
        "judged early"
    );
    assert!(pace.slow(start + Duration::from_secs(1)), "500 B in 1 s");
    pace.took(2500);
    assert!(!pace.slow(start + Duration::from_secs(3)), "2500 B in 2 s");
    // Nothing since: slow, however long the window ran.
    assert!(pace.slow(start + Duration::from_secs(9)));
}

/// A directly written file whose bytes came slowly goes on through the page cache at its
/// next flush: written so far, a plain file again, its place given back, and every byte
/// after lands after it. One whose bytes came fast stays direct.
#[test]
fn a_slow_direct_file_goes_on_through_the_page_cache_and_keeps_every_byte() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let sent: Vec<u8> = (0..5 * MIB + 777).map(|i| (i % 241) as u8).collect();
    for slow in [true, false] {
        let path = dir.path().join(format!("part-{slow}"));
        let mut file = open_part(&path);
        let watch = file.try_clone().unwrap();
        let ran = with_direct(&mut file, 8 * MIB as u64, |paced| {
            // Judged at every look: fast while the first bytes are taken, then slow or not.
            paced.pace = judged(false);
            let (first, rest) = sent.split_at(MIB + MIB / 2 + 3);
            paced.write_all(first).unwrap();
            paced.pace = judged(slow);
            paced.flush().unwrap();
            assert_eq!(paced.direct.is_none(), slow, "slow {slow}");
            assert_eq!(is_direct(&watch), !slow, "slow {slow}");
            assert_eq!(paced.write_behind.is_some(), slow, "slow {slow}");
            assert_eq!(len(&watch), first.len() as u64);
            for chunk in rest.chunks(400_009) {
                paced.write_all(chunk).unwrap();
            }
            paced.flush().unwrap();
        });
        if !ran {
            return;
        }
        assert!(!is_direct(&watch));
        let back = contents(&mut file);
        assert_eq!(back.len(), sent.len(), "slow {slow}");
        assert!(back == sent, "slow {slow}: the bytes differ");
    }
}

/// A new (emptied) file at `path`, open for reading and writing.
fn open_part(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

/// Whether the open file `file` is a handle on is written directly.
fn is_direct(file: &File) -> bool {
    rustix::fs::fcntl_getfl(file)
        .unwrap()
        .contains(rustix::fs::OFlags::DIRECT)
}

/// All of `file`, read from its start.
fn contents(file: &mut File) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut back = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut back).unwrap();
    back
}

/// Runs `body` with `file` written directly (its end at `end`), once the one place for
/// direct writes is free (another test may hold it a moment); `false` when skipped (see
/// [`skip_or_fail`]) where the file system is not written directly. `Paced` is dropped
/// after `body`, as an upload's is.
fn with_direct(file: &mut File, end: u64, body: impl FnOnce(&mut Paced<'_>)) -> bool {
    if !crate::transfer::direct::takes_direct_writes(file) {
        skip_or_fail(NOT_DIRECT_HERE);
        return false;
    }
    let mut body = Some(body);
    retry_for_place(|| {
        let mut paced = Paced::new(file, 0, Landing::Direct, Some(end));
        if paced.direct.is_none() {
            return false;
        }
        if let Some(body) = body.take() {
            body(&mut paced);
        }
        true
    });
    true
}

/// A pace judged at every look: with `slow`, any bytes are too few (its window began a
/// second ago: one looked at within the same millisecond was judged fast), without, none.
fn judged(slow: bool) -> Pace {
    let mut pace = Pace::new(Duration::ZERO, if slow { u64::MAX } else { 0 });
    if slow {
        pace.since = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
    }
    pace
}

/// A writer that never flushes before its end (a LocalSend upload's) gives up direct
/// writes too once its bytes come slowly, at its next write: what the direct writer held
/// is written, and every byte after lands after it. (Judged only at flushes, a LocalSend
/// peer trickling a large upload held the one place to the end.)
#[test]
fn a_slow_direct_file_written_without_flushes_goes_on_through_the_page_cache() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let sent: Vec<u8> = (0..5 * MIB + 999).map(|i| (i % 239) as u8).collect();
    let mut file = open_part(&dir.path().join("part"));
    let watch = file.try_clone().unwrap();
    let ran = with_direct(&mut file, 8 * MIB as u64, |paced| {
        paced.pace = judged(false);
        // A whole buffer with the writer and a part one held, none of it flushed.
        let (first, rest) = sent.split_at(MIB + MIB / 2 + 5);
        paced.write_all(first).unwrap();
        paced.pace = judged(true);
        for chunk in rest.chunks(65_537) {
            paced.write_all(chunk).unwrap();
            assert!(paced.direct.is_none(), "still written directly");
        }
        assert!(!is_direct(&watch));
        paced.flush().unwrap();
    });
    if !ran {
        return;
    }
    let back = contents(&mut file);
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "the bytes differ");
}
