//! Folders interrupted and sent again (issue 13): a cancel mid-folder keeps no final file of
//! the cancelled one and says so; a `ferry send` killed halfway through a folder, sent again,
//! sends only the missing files and the rest of the partial one (bytes counted through a
//! proxy), and the folder ends up complete and verified in the same root. A server stopped
//! while it hashes what a resumed folder holds gives the hashing up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, TransferEvent, event_channel};
use ferry::transfer::{FileOutcome, OutgoingItem, SendOptions, send_items, walk_folder};

use crate::util::{
    ChildGuard, Proxy, RunningProxy, data, ferry, file_len, files_under, find_part, hash_file,
    spawn_serve, start_server, wait_for, wait_line, write_data_file,
};

const BIG: usize = 24 * 1024 * 1024;

/// album/{a/01..08.bin (256 KiB each), b/big.bin (24 MiB), c/01..04.bin (128 KiB each)}:
/// files before, at and after the one a test interrupts.
fn album(parent: &Path) -> PathBuf {
    let root = parent.join("album");
    for dir in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 1..=8 {
        std::fs::write(root.join(format!("a/{i:02}.bin")), data(256 * 1024, i)).unwrap();
    }
    write_data_file(&root.join("b/big.bin"), BIG, 99);
    for i in 1..=4 {
        std::fs::write(root.join(format!("c/{i:02}.bin")), data(128 * 1024, 20 + i)).unwrap();
    }
    root
}

#[test]
fn cancel_mid_folder_keeps_no_final_file_of_the_cancelled_one() {
    let src = tempfile::tempdir().unwrap();
    let root = album(src.path());
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let slow = Proxy::to(server.local_addr())
        .throttle(64 * 1024, Duration::from_millis(4))
        .start();
    let cancel = CancelToken::new();
    let sender = {
        let cancel = cancel.clone();
        let opts = SendOptions::new(slow.addr.to_string());
        let folder = walk_folder(&root).unwrap();
        thread::spawn(move || {
            let (sink, sent_events) = event_channel(None);
            thread::spawn(move || for _ in sent_events {});
            send_items(&opts, &[OutgoingItem::Folder(folder)], &sink, &cancel).unwrap()
        })
    };
    // Cancel once the big file is partly across.
    let big_part = dl.path().join("album/b");
    let deadline = Instant::now() + Duration::from_secs(60);
    while find_part(&big_part, "big.bin").map_or(0, |p| file_len(&p)) < 1024 * 1024 {
        assert!(Instant::now() < deadline, "the big file never started");
        thread::sleep(Duration::from_millis(5));
    }
    cancel.cancel();
    let outcomes = sender.join().unwrap();
    // a/ went whole, big.bin was cancelled, c/ never started.
    assert_eq!(outcomes.len(), 13, "{outcomes:?}");
    assert!(
        outcomes[..8].iter().all(FileOutcome::is_success),
        "{outcomes:?}"
    );
    assert!(
        outcomes[8..]
            .iter()
            .all(|o| matches!(o, FileOutcome::Cancelled)),
        "{outcomes:?}"
    );
    // The receiver says the sender cancelled it, and keeps no file (final or partial) of it.
    wait_for(&events, |event| match event {
        Event::Transfer(TransferEvent::Cancelled { by_peer: true, .. }) => Some(()),
        _ => None,
    });
    let got = dl.path().join("album");
    let deadline = Instant::now() + Duration::from_secs(20);
    while find_part(&big_part, "big.bin").is_some() {
        assert!(Instant::now() < deadline, "the partial stays");
        thread::sleep(Duration::from_millis(5));
    }
    let expected: Vec<PathBuf> = (1..=8)
        .map(|i| PathBuf::from(format!("a/{i:02}.bin")))
        .collect();
    assert_eq!(files_under(&got), expected);
    for file in &expected {
        assert_eq!(hash_file(&got.join(file)), hash_file(&root.join(file)));
    }
}

#[test]
fn a_killed_folder_send_sent_again_sends_only_what_is_missing() {
    let src = tempfile::tempdir().unwrap();
    let root = album(src.path());
    let dl = tempfile::tempdir().unwrap();
    let (_serve, serve_addr, lines) = spawn_serve(dl.path(), &[]);

    // First run, through a slow link, killed with SIGKILL in the middle of the big file.
    let slow = Proxy::to(serve_addr)
        .throttle(64 * 1024, Duration::from_millis(2))
        .only_one_connection()
        .start()
        .addr;
    let mut first = ChildGuard(
        ferry()
            .args(["send", "--to", &slow.to_string()])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let big_dir = dl.path().join("album/b");
    let part_len = || find_part(&big_dir, "big.bin").map_or(0, |p| file_len(&p));
    let deadline = Instant::now() + Duration::from_secs(120);
    while part_len() < BIG as u64 / 2 {
        assert!(Instant::now() < deadline, "the first run never got halfway");
        thread::sleep(Duration::from_millis(10));
    }
    first.0.kill().unwrap(); // SIGKILL: no cleanup, no goodbye
    first.0.wait().unwrap();
    let failure = wait_line(&lines, "resumes");
    assert!(failure.contains("big.bin"), "{failure}");
    let kept = part_len();
    assert!(kept > 0 && kept < BIG as u64, "kept {kept}");
    assert!(!big_dir.join("big.bin").exists(), "no final file yet");
    let got = dl.path().join("album");
    let held: u64 = files_under(&got)
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".ferry.part"))
        .map(|p| file_len(&got.join(p)))
        .sum();
    assert_eq!(held, 8 * 256 * 1024, "a/ arrived whole before the kill");

    // Second run: only c/ and the rest of big.bin cross the wire.
    let RunningProxy {
        addr: counted_addr,
        counted,
        ..
    } = Proxy::to(serve_addr).start();
    let out = ferry()
        .args(["send", "--to", &counted_addr.to_string()])
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = counted.load(Ordering::SeqCst);
    let missing = (BIG as u64 - kept) + 4 * 128 * 1024;
    // The announcement, frames and chunk headers: a few KiB.
    let overhead = 16 * 1024;
    eprintln!("kept {kept} bytes; second run sent {sent} bytes for the missing {missing}");
    assert!(
        sent >= missing,
        "sent {sent}, less than the missing {missing}?"
    );
    assert!(
        sent <= missing + overhead,
        "sent {sent} for a missing {missing}"
    );
    // The same root, complete, every file identical, nothing left over.
    assert!(!dl.path().join("album (1)").exists(), "resumed in place");
    assert_eq!(files_under(&got), files_under(&root));
    for file in files_under(&root) {
        assert_eq!(
            hash_file(&got.join(&file)),
            hash_file(&root.join(&file)),
            "{file:?}"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(dl.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ferry.part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A server taking anything into `downloads`, where a folder transfer with resume key `key`
/// was interrupted: its root `album` (already there) and, if `partial`, that entry's kept
/// partial, as the resume state says.
fn serve_with_resume_state(
    downloads: &Path,
    key: &str,
    partial: Option<u64>,
) -> (
    ferry::transfer::ServerHandle,
    crossbeam_channel::Receiver<Event>,
) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(downloads.join("album")).unwrap();
    let state = serde_json::json!({"key": key, "root": "album", "partial": partial,
                                   "root_id": (meta.dev(), meta.ino())});
    let state_name = format!(
        ".{}.ferry-folder{}",
        &key[..16],
        ferry::protocol::PART_SUFFIX
    );
    std::fs::write(downloads.join(state_name), state.to_string()).unwrap();
    let mut config =
        ferry::transfer::ServerConfig::new(crate::util::LOOPBACK, 0, downloads.to_owned());
    config.policy = ferry::transfer::AcceptPolicy::Everyone;
    crate::util::start_server_with(config)
}

/// A server that stops while it hashes what a resumed folder holds (before it answers the
/// offer) gives the hashing up, as it does for a single file's partial: stop does not wait
/// until gigabytes are hashed. `on_disk` is the file in the kept root (sparse: no disk used,
/// still gigabytes to read), `partial` the state's kept partial (its entry index).
fn stop_while_a_resumed_folder_is_hashed(on_disk: &str, partial: Option<u64>, listed: u64) {
    use ferry::protocol::{FolderEntry, SenderMsg, encode_sender_msg};
    use std::io::Write;
    const KEPT: u64 = 16 << 30;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("album");
    std::fs::create_dir(&root).unwrap();
    let big = root.join(on_disk);
    std::fs::File::create(&big).unwrap().set_len(KEPT).unwrap();
    let big = big.canonicalize().unwrap();
    // The state a folder transfer of this key left: its root, and the partial it kept.
    let key = "5e".repeat(16);
    let (server, _events) = serve_with_resume_state(dir.path(), &key, partial);
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    let offer = SenderMsg::Folder {
        name: "album".into(),
        count: 1,
        bytes: listed,
        entries: vec![FolderEntry {
            path: "big.bin".into(),
            size: Some(listed),
            mtime: 0,
            mode: 6,
        }],
        resume_key: Some(key.clone()),
        msg: String::new(),
    };
    s.write_all(&encode_sender_msg(&offer).unwrap()).unwrap();
    // The server reads the file from its start: it is hashing.
    let position = || crate::review13::open_file_position(&big);
    let deadline = Instant::now() + Duration::from_secs(20);
    while position().is_none_or(|pos| pos == 0 || pos == KEPT) {
        assert!(
            Instant::now() < deadline,
            "the server never hashed {on_disk}"
        );
        thread::yield_now();
    }
    // Stopped on a thread, while this one watches how far the hash gets before the file is
    // closed: given up at once, not carried on to its end (no timing asserted).
    let stopping = thread::spawn(move || server.stop());
    let mut last = 0;
    while let Some(pos) = position() {
        last = pos;
        thread::yield_now();
    }
    stopping.join().unwrap();
    assert!(
        last < KEPT / 2,
        "the hash of {on_disk} went on to byte {last} of {KEPT} after stop"
    );
    assert_eq!(std::fs::metadata(&big).unwrap().len(), KEPT, "kept");
}

/// A whole file in the resumed root (hashed to tell the sender it need not be sent again).
#[test]
fn a_stop_while_a_resumed_folders_files_are_hashed_does_not_wait_for_the_hash() {
    stop_while_a_resumed_folder_is_hashed("big.bin", None, 16 << 30);
}

/// The resumed folder's kept partial (hashed to offer the sender the rest of it).
#[test]
fn a_stop_while_a_resumed_folders_partial_is_hashed_does_not_wait_for_the_hash() {
    let part = format!("big.bin{}", ferry::protocol::PART_SUFFIX);
    stop_while_a_resumed_folder_is_hashed(&part, Some(0), (16 << 30) + 1);
}

/// Resuming a folder needs disk space only for what the root does not hold yet, as a single
/// file's resume does: on a small disk whose free space is less than the whole folder but
/// more than what is missing, the resume is accepted (and says what it holds), not refused
/// as "not enough disk space" for bytes already on it.
#[test]
fn a_resumed_folder_needs_space_only_for_what_is_missing() {
    use ferry::protocol::{FolderEntry, ReceiverMsg, SenderMsg, encode_sender_msg};
    use std::io::Write;
    const HELD: usize = 12 << 20;
    let disk = match crate::util::SmallDisk::mount(20) {
        Ok(disk) => disk,
        Err(reason) => return crate::util::skip_or_fail(false, &reason),
    };
    let root = disk.path().join("album");
    std::fs::create_dir(&root).unwrap();
    // Held whole from the interrupted transfer: 12 of the folder's 16 MiB; 8 MiB free.
    write_data_file(&root.join("held.bin"), HELD, 7);
    let key = "6f".repeat(16);
    let (server, _events) = serve_with_resume_state(disk.path(), &key, None);
    let entry = |path: &str, size: usize| FolderEntry {
        path: path.into(),
        size: Some(size as u64),
        mtime: 0,
        mode: 6,
    };
    let missing = 4 << 20;
    let offer = SenderMsg::Folder {
        name: "album".into(),
        count: 2,
        bytes: (HELD + missing) as u64,
        entries: vec![entry("held.bin", HELD), entry("missing.bin", missing)],
        resume_key: Some(key),
        msg: String::new(),
    };
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&encode_sender_msg(&offer).unwrap()).unwrap();
    let mut held = Vec::new();
    let answer = loop {
        match crate::util::read_answer(&mut s) {
            ReceiverMsg::FolderHave { files } => held.extend(files.into_iter().map(|f| f.index)),
            ReceiverMsg::Waiting { .. } => {}
            other => break other,
        }
    };
    assert!(
        matches!(&answer, ReceiverMsg::FolderAccept { saved_as, .. } if saved_as == "album"),
        "{answer:?}"
    );
    assert_eq!(held, [0], "the held file is said to be held");
    drop(s);
    server.stop();
}
