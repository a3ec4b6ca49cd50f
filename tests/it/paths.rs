//! Paths users hit that no other test walks: the receiver (not the sender) killed or stopped
//! with Ctrl-C mid-upload and restarted, two uploads of one name at the same moment, a
//! sender path that is not UTF-8, a file that shrinks while it is sent, a file whose disk
//! fails to read it (EIO) mid-upload, and a file over 4 GiB resumed above 4 GiB; and a partial
//! orphaned by a changed file until it expires. Real `ferry serve` processes where one must
//! die; the failing disk is a btrfs image with a spoiled data block on a loop device (needs
//! root and btrfs-progs, which .ci/run installs).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, Failure, FailureKind, TransferEvent, event_channel};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

use crate::util::*;

/// `ferry send FILE` to `to`, started in the background.
fn spawn_cli_send(to: std::net::SocketAddr, file: &Path) -> ChildGuard {
    ChildGuard(
        ferry()
            .args(["send", "--to", &to.to_string()])
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Polls (with a deadline) until the kept partial of `name` in `dir` holds at least `bytes`.
fn wait_part_at_least(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(part) = find_part(dir, name).filter(|p| file_len(p) >= bytes) {
            return part;
        }
        assert!(
            Instant::now() < deadline,
            "the partial of {name} never reached {bytes} bytes"
        );
        // Poll interval: the partial grows on the server's side, with no event to wait on.
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child to exit, with a deadline.
fn wait_exit(child: &mut ChildGuard) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `file` with `ferry send` through a counting proxy to `to`; returns the output and
/// the client-to-server bytes that crossed the wire.
fn send_counted(to: std::net::SocketAddr, file: &Path) -> (Output, u64) {
    let RunningProxy {
        addr: counted_addr,
        counted,
        ..
    } = Proxy::to(to).start();
    let out = ferry()
        .args(["send", "--to", &counted_addr.to_string()])
        .arg(file)
        .output()
        .unwrap();
    (out, counted.load(Ordering::SeqCst))
}

/// Asserts a resumed second run: exit 0, the exact result line, only the rest on the wire.
fn assert_resumed(out: &Output, sent: u64, file: &Path, size: u64, kept: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = file.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        stdout,
        format!(
            "{}: verified, saved as {name:?} (resumed at byte {kept})\n",
            file.display()
        )
    );
    let rest = size - kept;
    // One 1 MiB data chunk of slack for frames, chunk headers and the offer.
    eprintln!("kept {kept} bytes; the resume sent {sent} bytes for the remaining {rest}");
    assert!(
        (rest..=rest + 64 * 1024).contains(&sent),
        "sent {sent} for a rest of {rest}"
    );
}

#[test]
fn the_receiver_killed_mid_upload_and_restarted_resumes_with_only_the_rest() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("movie.bin");
    write_data_file(&file, SIZE as usize, 71);
    let (mut serve, serve_addr, _lines) = spawn_serve(dst.path(), &[]);
    let slow = Proxy::to(serve_addr)
        .throttle(256 * 1024, Duration::from_millis(4))
        .only_one_connection()
        .start()
        .addr;
    let mut sender = spawn_cli_send(slow, &file);
    wait_part_at_least(dst.path(), "movie.bin", SIZE / 4);
    // The receiver dies: SIGKILL, no cleanup of any kind.
    serve.0.kill().unwrap();
    serve.0.wait().unwrap();
    assert_eq!(wait_exit(&mut sender).code(), Some(1), "the sender failed");
    let part = find_part(dst.path(), "movie.bin").expect("the partial survives its receiver");
    let kept = file_len(&part);
    assert!(kept > 0 && kept < SIZE, "kept {kept}");
    assert!(!dst.path().join("movie.bin").exists());

    // A new receiver on the same folder; the same sender sends again.
    let (_serve, serve_addr, lines) = spawn_serve(dst.path(), &[]);
    let (out, sent) = send_counted(serve_addr, &file);
    assert_resumed(&out, sent, &file, SIZE, kept);
    wait_line(&lines, "movie.bin");
    assert_eq!(hash_file(&dst.path().join("movie.bin")), hash_file(&file));
    assert_eq!(names_in(dst.path()), ["movie.bin"], "no partial left");
}

/// What `ferry serve` does on Ctrl-C mid-upload: an interrupted Ferry upload keeps its
/// partial (README), so sending again resumes.
#[test]
fn ctrl_c_on_serve_mid_upload_keeps_the_partial_and_sending_again_resumes() {
    const SIZE: u64 = 16 * 1024 * 1024;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("talk.bin");
    write_data_file(&file, SIZE as usize, 72);
    let (mut serve, serve_addr, lines) = spawn_serve(dst.path(), &[]);
    let slow = Proxy::to(serve_addr)
        .throttle(64 * 1024, Duration::from_millis(4))
        .only_one_connection()
        .start()
        .addr;
    let mut sender = spawn_cli_send(slow, &file);
    wait_part_at_least(dst.path(), "talk.bin", SIZE / 8);
    let pid = libc::pid_t::try_from(serve.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = wait_exit(&mut serve);
    assert_eq!(status.code(), Some(0), "Ctrl-C stops serve cleanly");
    wait_line(&lines, "stopping");
    assert_eq!(wait_exit(&mut sender).code(), Some(1));
    let part = find_part(dst.path(), "talk.bin").expect("Ctrl-C keeps a Ferry partial");
    let kept = file_len(&part);
    assert!((SIZE / 8..SIZE).contains(&kept), "kept {kept}");
    assert!(!dst.path().join("talk.bin").exists());

    let (_serve, serve_addr, _lines) = spawn_serve(dst.path(), &[]);
    let (out, sent) = send_counted(serve_addr, &file);
    assert_resumed(&out, sent, &file, SIZE, kept);
    assert_eq!(hash_file(&dst.path().join("talk.bin")), hash_file(&file));
}

#[test]
fn two_uploads_of_one_name_at_the_same_moment_get_distinct_names_and_all_bytes() {
    let dst = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dst.path());
    let addr = server.local_addr();
    let sources: Vec<_> = (0..2u64)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("report.pdf");
            std::fs::write(&path, data(3_000_000 + i as usize, 80 + i)).unwrap();
            (dir, path)
        })
        .collect();
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let senders: Vec<_> = sources
        .iter()
        .map(|(_, path)| {
            let (path, start) = (path.clone(), std::sync::Arc::clone(&start));
            thread::spawn(move || {
                let (sink, _events) = event_channel(None);
                start.wait();
                send_files(
                    &SendOptions::new(addr.to_string()),
                    &[OutgoingFile::new(path)],
                    &sink,
                    &CancelToken::new(),
                )
                .unwrap()
            })
        })
        .collect();
    let mut saved = Vec::new();
    for (sender, (_, path)) in senders.into_iter().zip(&sources) {
        match &sender.join().unwrap()[..] {
            [
                FileOutcome::Verified {
                    saved_as,
                    resumed_from: 0,
                },
            ] => {
                assert_eq!(
                    std::fs::read(dst.path().join(saved_as)).unwrap(),
                    std::fs::read(path).unwrap(),
                    "{saved_as} holds exactly its sender's bytes"
                );
                saved.push(saved_as.clone());
            }
            other => panic!("{other:?}"),
        }
    }
    saved.sort();
    assert_eq!(saved, ["report (1).pdf", "report.pdf"]);
    let (finished, failed) = wait_files(&events, 2);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(finished.iter().all(|(_, verified)| *verified));
    assert_eq!(names_in(dst.path()), ["report (1).pdf", "report.pdf"]);
}

#[test]
fn a_sender_path_that_is_not_utf8_is_sent_under_a_readable_name() {
    use std::os::unix::ffi::OsStrExt;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // "café.txt" in Latin-1, as an old archive extracts it: not valid UTF-8.
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    let path = src.path().join(name);
    let bytes = data(200_000, 81);
    std::fs::write(&path, &bytes).unwrap();
    let (server, _events) = start_server(dst.path());
    let outcomes = send_quietly(server.local_addr(), &[OutgoingFile::new(&path)]);
    assert_eq!(
        outcomes,
        [FileOutcome::Verified {
            saved_as: "caf\u{FFFD}.txt".into(),
            resumed_from: 0
        }]
    );
    assert_eq!(
        std::fs::read(dst.path().join("caf\u{FFFD}.txt")).unwrap(),
        bytes
    );
    // The CLI names it too (lossily), and exits 0.
    let out = ferry()
        .args(["send", "--to", &server.local_addr().to_string()])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: verified, saved as \"caf\u{FFFD} (1).txt\"\n",
            path.display()
        )
    );
}

#[test]
fn a_file_that_shrinks_while_sent_fails_clearly_and_the_receiver_keeps_no_file() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("log.txt");
    write_data_file(&file, 32 * 1024 * 1024, 82);
    let (server, events) = start_server(dst.path());
    let proxy = Proxy::to(server.local_addr())
        .throttle(64 * 1024, Duration::from_millis(2))
        .only_one_connection()
        .start()
        .addr;
    let (sink, sender_events) = event_channel(None);
    let sender = {
        let file = file.clone();
        thread::spawn(move || {
            send_files(
                &SendOptions::new(proxy.to_string()),
                &[OutgoingFile::new(file)],
                &sink,
                &CancelToken::new(),
            )
            .unwrap()
        })
    };
    wait_for(&sender_events, |e| match e {
        Event::Transfer(TransferEvent::Progress {
            bytes_done: 1.., ..
        }) => Some(()),
        _ => None,
    });
    // Someone truncates the file (a log rotation) mid-transfer.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();
    match &sender.join().unwrap()[..] {
        [FileOutcome::Failed(failure)] => {
            assert_eq!(failure.kind, ferry::events::FailureKind::LocalFile);
            assert_eq!(
                failure.to_string(),
                "the file shrank while it was being sent",
                "the sender's own words"
            )
        }
        other => panic!("{other:?}"),
    }
    let reason = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        Event::Transfer(TransferEvent::Finished { .. }) => panic!("a shrunk file finished"),
        _ => None,
    });
    // Depending on where the truncation lands, the sender either tells the receiver why
    // (between chunks) or can only close (inside a promised chunk).
    assert!(
        reason.contains("shrank")
            || reason.ends_with(" bytes received are kept, sending again resumes"),
        "{reason}"
    );
    assert!(
        !dst.path().join("log.txt").exists(),
        "no final file: {:?}",
        names_in(dst.path())
    );
}

/// Free bytes on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: `path` is a NUL-terminated string and `stat` a zeroed struct the call fills.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut stat), 0);
        stat.f_bavail as u64 * stat.f_frsize as u64
    }
}

/// A 5 GiB file, mostly holes, uploaded from a kept partial just under 4 GiB (as an earlier
/// interruption would leave it, made sparse here to keep the test cheap), interrupted by a
/// SIGKILL of the sender once the partial passed 4 GiB, then resumed above 4 GiB: offsets,
/// the free-space check and progress past 2^32, and the final hash.
#[test]
fn a_5_gib_sparse_upload_interrupted_above_4_gib_resumes_there() {
    const GIB: u64 = 1024 * 1024 * 1024;
    const SIZE: u64 = 5 * GIB;
    const PREMADE: u64 = 4 * GIB - 64 * 1024 * 1024;
    const MARKERS: [u64; 4] = [0, 3 * GIB, 4 * GIB + 10 * 1024 * 1024, SIZE - 4096];
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // About 1 GiB is really written (the part after the sparse prefix); ask for 2.
    if free_bytes(dst.path()) < 2 * GIB {
        skip_or_fail(false, "less than 2 GiB free for the 5 GiB sparse upload");
        return;
    }
    let write_sparse = |path: &Path, len: u64| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(path).unwrap();
        file.set_len(len).unwrap();
        for (i, at) in MARKERS.iter().enumerate() {
            if at + 4096 <= len {
                file.write_all_at(&data(4096, 90 + i as u64), *at).unwrap();
            }
        }
    };
    let file = src.path().join("disk.img");
    write_sparse(&file, SIZE);
    let key = ferry::transfer::resume_key(&file).unwrap();
    let part = dst
        .path()
        .join(format!("disk.img.{}.ferry.part", &key[..16]));
    write_sparse(&part, PREMADE);
    let (_serve, serve_addr, lines) = spawn_serve(dst.path(), &[]);

    // First run: resumes at PREMADE, killed once the partial is past 4 GiB.
    let slow = Proxy::to(serve_addr)
        .throttle(1024 * 1024, Duration::from_millis(4))
        .only_one_connection()
        .start()
        .addr;
    let mut first = spawn_cli_send(slow, &file);
    wait_part_at_least(dst.path(), "disk.img", 4 * GIB + 64 * 1024 * 1024);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // The receiver notices the end, keeps what it holds, and says so.
    wait_line(&lines, "resumes");
    let kept = file_len(&part);
    assert!(kept > 4 * GIB && kept < SIZE, "kept {kept}");

    // Second run: only the rest, from above 4 GiB, with progress past 2^32.
    let RunningProxy {
        addr: counted_addr,
        counted,
        ..
    } = Proxy::to(serve_addr).start();
    let (sink, events) = event_channel(None);
    let outcomes = send_files(
        &SendOptions::new(counted_addr.to_string()),
        &[OutgoingFile::new(&file)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    let resumed_from = match &outcomes[..] {
        [
            FileOutcome::Verified {
                saved_as,
                resumed_from,
            },
        ] if saved_as == "disk.img" => *resumed_from,
        other => panic!("{other:?}"),
    };
    assert!(resumed_from >= kept.min(4 * GIB + 64 * 1024 * 1024) && resumed_from > 4 * GIB);
    let sent = counted.load(Ordering::SeqCst);
    let rest = SIZE - resumed_from;
    assert!(
        (rest..=rest + 1024 * 1024).contains(&sent),
        "sent {sent} for {rest}"
    );
    drop(sink);
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::Progress { bytes_done, .. }) => Some(bytes_done),
            _ => None,
        })
        .collect();
    assert_eq!(progress.first(), Some(&resumed_from), "{progress:?}");
    assert_eq!(progress.last(), Some(&SIZE));
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let saved = dst.path().join("disk.img");
    assert_eq!(file_len(&saved), SIZE);
    assert_eq!(hash_file(&saved), hash_file(&file));
    assert!(!part.exists());
}

#[test]
fn a_partial_orphaned_by_a_changed_file_lingers_until_it_expires() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("draft.bin");
    write_data_file(&file, 8 * 1024 * 1024, 91);
    // An upload interrupted by the receiver stopping keeps a partial under the file's key.
    let (server, _events) = start_server(dst.path());
    let proxy = Proxy::to(server.local_addr())
        .throttle(64 * 1024, Duration::from_millis(2))
        .only_one_connection()
        .start()
        .addr;
    let sender = {
        let file = file.clone();
        thread::spawn(move || send_quietly(proxy, &[OutgoingFile::new(file)]))
    };
    let orphan = wait_part_at_least(dst.path(), "draft.bin", 1024 * 1024);
    server.stop();
    assert!(matches!(
        &sender.join().unwrap()[..],
        [FileOutcome::Failed { .. }]
    ));
    // The user edits the file: its resume key changes, so the partial is someone else's now.
    write_data_file(&file, 8 * 1024 * 1024 + 1, 92);
    let (server, _events) = start_server(dst.path());
    assert_eq!(
        send_quietly(server.local_addr(), &[OutgoingFile::new(&file)]),
        [FileOutcome::Verified {
            saved_as: "draft.bin".into(),
            resumed_from: 0
        }]
    );
    drop(server);
    let orphan_name = orphan.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(names_in(dst.path()), ["draft.bin", orphan_name.as_str()]);
    // A week and a day later (its time set back, as the clock would have moved on), the next
    // start removes it and says so; the received file stays.
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600))
        .unwrap();
    let (_server, events) = start_server(dst.path());
    let expired = wait_for(&events, |e| match e {
        Event::Server(ferry::events::ServerEvent::PartialsExpired { names, .. }) => {
            Some(names.clone())
        }
        _ => None,
    });
    assert_eq!(expired, [orphan_name]);
    assert_eq!(names_in(dst.path()), ["draft.bin"]);
}

/// A small btrfs file system in an image file, mounted read-only through a loop device, holding
/// one file whose data has a bad block in the middle: btrfs checksums data, keeps one copy of
/// it on a single device, and so answers EIO for a read that reaches the block, as a failing
/// disk would. (Device-mapper's `error` target would do the same, but not every kernel has
/// device-mapper; this one only needs btrfs and loop devices.) Unmounted in Drop, which also
/// frees the loop device (`mount -o loop` sets it to clear itself); the image goes with the
/// temp folder.
struct BadBlockDisk {
    dir: tempfile::TempDir,
}

impl BadBlockDisk {
    const IMAGE_BYTES: u64 = 256 * 1024 * 1024;
    const BLOCK_BYTES: usize = 4096;

    /// A disk holding `name` with `bytes`, whose 4 KiB block at `bad_at` (4 KiB-aligned)
    /// cannot be read. `Err` says why it cannot be made here.
    fn make(name: &str, bytes: &[u8], bad_at: usize) -> Result<Self, (bool, String)> {
        use std::process::Command;
        assert_eq!(bad_at % Self::BLOCK_BYTES, 0);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err((false, "mounting a file system image needs root".into()));
        }
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        if Command::new("mkfs.btrfs")
            .arg("--version")
            .output()
            .is_err()
        {
            // .ci/run installs btrfs-progs.
            return Err((true, "mkfs.btrfs (btrfs-progs) is missing".into()));
        }
        let disk = Self {
            dir: tempfile::tempdir().map_err(|e| (false, e.to_string()))?,
        };
        let image = disk.dir.path().join("disk.img");
        std::fs::create_dir(disk.mount_point()).map_err(|e| (false, e.to_string()))?;
        // Sparse: only what btrfs writes takes space.
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(Self::IMAGE_BYTES))
            .map_err(|e| (false, e.to_string()))?;
        run(Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&image)).map_err(|e| (true, e))?;
        // A kernel without btrfs or loop devices cannot do this: nothing CI can install.
        let mount = |options: &str| {
            run(Command::new("mount")
                .args(["-t", "btrfs", "-o", options])
                .arg(&image)
                .arg(disk.mount_point()))
            .map_err(|e| (false, format!("cannot mount a btrfs image: {e}")))
        };
        mount("loop")?;
        std::fs::write(disk.mount_point().join(name), bytes).unwrap();
        // Unmounting writes everything out and forgets the cached pages, so the next mount
        // reads from the image.
        run(Command::new("umount").arg(disk.mount_point())).unwrap();

        // The file's data sits in the image as it is (no compression): find the block and
        // spoil it behind the file system's back.
        let block = &bytes[bad_at..bad_at + Self::BLOCK_BYTES];
        let mut raw = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&image)
            .unwrap();
        let mut found = Vec::new();
        let mut at = 0u64;
        let mut buf = vec![0u8; Self::BLOCK_BYTES];
        while at < Self::IMAGE_BYTES {
            raw.read_exact(&mut buf).unwrap();
            if buf == block {
                found.push(at);
            }
            at += Self::BLOCK_BYTES as u64;
        }
        assert_eq!(found.len(), 1, "the block is stored once: {found:?}");
        use std::os::unix::fs::FileExt;
        let spoiled: Vec<u8> = block.iter().map(|b| !b).collect();
        raw.write_all_at(&spoiled, found[0]).unwrap();
        raw.sync_all().unwrap();
        drop(raw);
        mount("loop,ro")?;
        Ok(disk)
    }

    /// Where the file system is mounted: its root.
    fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for BadBlockDisk {
    fn drop(&mut self) {
        let umounted = std::process::Command::new("umount")
            .arg(self.mount_point())
            .output()
            .is_ok_and(|o| o.status.success());
        if !umounted {
            // Not mounted (a failed make), or still busy: detach lazily so the temp folder
            // and the loop device go once nothing uses them.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.mount_point())
                .output();
        }
    }
}

/// The sender's disk fails (EIO) under the file in the middle of an upload: the sender says it
/// cannot read the file, the receiver that the sender gave up and keeps nothing of it, and the
/// same connection carries the next file, verified.
#[test]
fn a_file_that_fails_to_read_mid_upload_fails_clearly_and_the_next_file_goes_through() {
    const SIZE: usize = 4 * 1024 * 1024;
    const BAD_AT: usize = 3 * 1024 * 1024;
    let bytes = data(SIZE, 93);
    let disk = match BadBlockDisk::make("failing.bin", &bytes, BAD_AT) {
        Ok(disk) => disk,
        Err((provided_by_ci, reason)) => return skip_or_fail(provided_by_ci, &reason),
    };
    let bad = disk.mount_point().join("failing.bin");
    // The bad block really is unreadable, and only from BAD_AT on.
    {
        let mut file = std::fs::File::open(&bad).unwrap();
        let mut head = vec![0u8; BAD_AT];
        file.read_exact(&mut head).unwrap();
        assert!(
            head == bytes[..BAD_AT],
            "the data before the bad block reads back"
        );
        let error = file.read(&mut [0u8; 4096]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    }
    let src = tempfile::tempdir().unwrap();
    let good = src.path().join("good.bin");
    let good_bytes = data(1_500_000, 94);
    std::fs::write(&good, &good_bytes).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dst.path());

    let (sink, sender_events) = event_channel(None);
    let outcomes = send_files(
        &SendOptions::new(server.local_addr().to_string()),
        &[OutgoingFile::new(&bad), OutgoingFile::new(&good)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    let eio = std::io::Error::from_raw_os_error(libc::EIO);
    let read_failure = Failure::new(
        FailureKind::LocalFile,
        format!("cannot read the file: {eio}"),
    );
    assert_eq!(
        outcomes,
        [
            FileOutcome::Failed(read_failure.clone()),
            FileOutcome::Verified {
                saved_as: "good.bin".into(),
                resumed_from: 0
            }
        ]
    );
    assert_eq!(
        read_failure.to_string(),
        "cannot read the file: Input/output error (os error 5)",
        "the words the sender's user sees"
    );
    // Mid-upload: whole chunks had gone out before the read failed.
    drop(sink);
    let mut sent_before_failure = 0;
    for event in sender_events.iter() {
        match event {
            Event::Transfer(TransferEvent::Progress { bytes_done, .. }) => {
                sent_before_failure = sent_before_failure.max(bytes_done)
            }
            Event::Transfer(TransferEvent::Failed { .. }) => break,
            _ => {}
        }
    }
    assert!(
        (1024 * 1024..=BAD_AT as u64).contains(&sent_before_failure),
        "sent {sent_before_failure} before the failure"
    );

    // The receiver: the first file failed because the sender gave up (its words), the
    // second finished verified.
    #[derive(Debug, PartialEq)]
    enum End {
        Failed(Failure),
        Finished {
            saved_as: Option<String>,
            verified: bool,
        },
        Cancelled {
            by_peer: bool,
        },
    }
    let mut ends = Vec::new();
    wait_for(&events, |e| {
        match e {
            Event::Transfer(TransferEvent::Failed { failure, .. }) => {
                ends.push(End::Failed(failure.clone()))
            }
            Event::Transfer(TransferEvent::Finished {
                saved_as, verified, ..
            }) => ends.push(End::Finished {
                saved_as: saved_as.clone(),
                verified: *verified,
            }),
            Event::Transfer(TransferEvent::Cancelled { by_peer, .. }) => {
                ends.push(End::Cancelled { by_peer: *by_peer })
            }
            _ => {}
        }
        (ends.len() == 2).then_some(())
    });
    let gave_up = Failure::new(
        FailureKind::SenderGaveUp,
        format!("cannot read the file: {eio}"),
    );
    assert_eq!(
        gave_up.to_string(),
        "the sender gave up: cannot read the file: Input/output error (os error 5)",
        "the words the receiver's user sees"
    );
    assert_eq!(
        ends,
        [
            End::Failed(gave_up),
            End::Finished {
                saved_as: Some("good.bin".to_owned()),
                verified: true
            }
        ]
    );
    assert_eq!(names_in(dst.path()), ["good.bin"], "no file, no partial");
    assert_eq!(
        std::fs::read(dst.path().join("good.bin")).unwrap(),
        good_bytes
    );
}
