//! The fault suite: one test per fault a transfer meets in the wild (a killed sender, a
//! cancel from either side, a receiver that asks, a silent peer, a full disk, no room), each
//! with real processes or threads, real sockets and real files. Whatever happens, Ferry must
//! keep serving, tell both users the truth, and never lose or fake data.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, ServerEvent, TransferEvent, event_channel};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files};

use crate::util::*;

/// Uploads `file` on a thread through a slow link to `server`, with `cancel`; returns the
/// thread (its outcomes) and the sender's events.
fn send_slowly(
    server: SocketAddr,
    file: PathBuf,
    cancel: CancelToken,
) -> (
    thread::JoinHandle<Vec<FileOutcome>>,
    crossbeam_channel::Receiver<Event>,
) {
    let proxy = Proxy::to(server)
        .throttle(64 * 1024, Duration::from_millis(2))
        .only_one_connection()
        .start()
        .addr;
    let (sink, events) = event_channel(None);
    let sender = thread::spawn(move || {
        let files = [OutgoingFile::new(file)];
        send_files(&SendOptions::new(proxy.to_string()), &files, &sink, &cancel).unwrap()
    });
    (sender, events)
}

/// Waits until some bytes of a transfer have moved; returns its id.
fn wait_bytes_moving(events: &crossbeam_channel::Receiver<Event>) -> u64 {
    wait_for(events, |e| match e {
        Event::Transfer(TransferEvent::Progress {
            id,
            bytes_done: 1..,
        }) => Some(*id),
        _ => None,
    })
}

#[test]
fn killed_sender_then_send_again_resumes_with_only_the_rest() {
    const SIZE: usize = 512 * 1024 * 1024;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("video.bin");
    write_data_file(&file, SIZE, 51);
    let (_serve, serve_addr, lines) = spawn_serve(dst.path(), &[]);

    // First run, through a slow link, killed with SIGKILL about halfway.
    let slow = Proxy::to(serve_addr)
        .throttle(1024 * 1024, Duration::from_millis(4))
        .only_one_connection()
        .start()
        .addr;
    let mut first = ChildGuard(
        ferry()
            .args(["send", "--to", &slow.to_string()])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let part_len = || find_part(dst.path(), "video.bin").map_or(0, |p| file_len(&p));
    let deadline = Instant::now() + Duration::from_secs(120);
    while part_len() < SIZE as u64 / 2 {
        assert!(Instant::now() < deadline, "the first run never got halfway");
        thread::sleep(Duration::from_millis(20));
    }
    first.0.kill().unwrap(); // SIGKILL: no cleanup, no goodbye
    first.0.wait().unwrap();
    let failure = wait_line(&lines, "resumes");
    assert!(failure.contains("video.bin"), "{failure}");
    let part = find_part(dst.path(), "video.bin").expect("the partial is kept");
    let kept = file_len(&part);
    assert!(kept > 0 && kept < SIZE as u64, "kept {kept}");
    // Blocks the receiver reserved ahead of its writes went back when the upload stopped.
    let allocated =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&part).unwrap()) * 512;
    assert!(
        allocated <= kept + (1 << 20),
        "kept {kept} bytes, {allocated} allocated"
    );
    assert!(
        !dst.path().join("video.bin").exists(),
        "no final file after an interruption"
    );

    // Second run: only the rest crosses the wire.
    let RunningProxy {
        addr: counted_addr,
        counted,
        ..
    } = Proxy::to(serve_addr).start();
    let out = ferry()
        .args(["send", "--to", &counted_addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("resumed at byte {kept}")),
        "{stdout}"
    );
    let sent = counted.load(Ordering::SeqCst);
    let rest = SIZE as u64 - kept;
    let one_buffer = 1024 * 1024 + 64 * 1024; // a chunk, plus frames and chunk headers
    eprintln!("kept {kept} bytes; second run sent {sent} bytes for the remaining {rest}");
    assert!(
        sent <= rest + one_buffer,
        "sent {sent} for a rest of {rest}"
    );
    assert!(sent >= rest, "sent {sent}, less than the rest {rest}?");
    assert_eq!(hash_file(&dst.path().join("video.bin")), hash_file(&file));
    assert!(!part.exists());
}

#[test]
fn a_changed_file_starts_over_instead_of_resuming() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("doc.txt");
    std::fs::write(&file, data(100_000, 52)).unwrap();
    // A partial under this sender's key whose bytes are not the start of the file (as if
    // the file was rewritten and its time set back): the prefix hash catches it.
    let key = ferry::transfer::resume_key(&file).unwrap();
    let partial = dst
        .path()
        .join(format!("doc.txt.{}.ferry.part", &key[..16]));
    std::fs::write(&partial, b"old contents that do not match").unwrap();
    let (server, _events) = start_server(dst.path());
    let outcomes = send_quietly(server.local_addr(), &[OutgoingFile::new(&file)]);
    assert_eq!(
        outcomes,
        [FileOutcome::Verified {
            saved_as: "doc.txt".into(),
            resumed_from: 0
        }]
    );
    assert_eq!(
        std::fs::read(dst.path().join("doc.txt")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert!(
        !partial.exists(),
        "the mismatching partial was restarted and became the file"
    );
}

#[test]
fn a_users_own_dot_part_file_is_never_taken_for_a_partial() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // A browser's unfinished download that happens to share the name.
    std::fs::write(dst.path().join("a.txt.part"), b"someone else's bytes").unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, data(100_000, 58)).unwrap();
    let (server, _events) = start_server(dst.path());
    let (sink, _) = event_channel(None);
    let files = [OutgoingFile::new(&file)];
    let outcomes = send_files(
        &SendOptions::new(server.local_addr().to_string()),
        &files,
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(
        outcomes,
        [FileOutcome::Verified {
            saved_as: "a.txt".into(),
            resumed_from: 0
        }]
    );
    assert_eq!(
        std::fs::read(dst.path().join("a.txt.part")).unwrap(),
        b"someone else's bytes"
    );
}

#[test]
fn a_kept_partial_survives_a_refusal_and_a_sender_that_leaves_before_starting() {
    use ferry::protocol::{Header, ReceiverMsg, SenderMsg, encode_sender_msg};
    let dst = tempfile::tempdir().unwrap();
    let part = dst.path().join("a.bin.ferry.part");
    let kept = data(50_000, 59);
    std::fs::write(&part, &kept).unwrap();
    let (server, events) = start_server(dst.path());
    let offer = |file_size: u64| {
        SenderMsg::Offer(Header {
            eager: false,
            file_name: "a.bin".into(),
            file_size,
            msg: String::new(),
            resume_key: None,
        })
    };
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // First a refusal: the same name, but larger than any disk (the partial was found and
    // opened for it before the free-space check said no).
    stream
        .write_all(&encode_sender_msg(&offer(1 << 60)).unwrap())
        .unwrap();
    match read_answer(&mut stream) {
        ReceiverMsg::Decline { reason, .. } => {
            assert!(reason.contains("not enough disk space"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (_, failed) = wait_files(&events, 1);
    assert!(
        failed[0].starts_with("refused: not enough disk space"),
        "{failed:?}"
    );
    assert_eq!(
        std::fs::read(&part).unwrap(),
        kept,
        "kept through the refusal"
    );
    // Then, on the same connection, accepted at the kept length, and the sender vanishes
    // before `start`.
    stream
        .write_all(&encode_sender_msg(&offer(100_000)).unwrap())
        .unwrap();
    match read_answer(&mut stream) {
        ReceiverMsg::Accept {
            offset,
            prefix_blake3: Some(hash),
            ..
        } => {
            assert_eq!(offset, 50_000);
            assert_eq!(hash, blake3::hash(&kept).to_hex().as_str());
        }
        other => panic!("{other:?}"),
    }
    drop(stream);
    let (_, failed) = wait_files(&events, 1);
    assert!(failed[0].contains("kept"), "{failed:?}");
    assert_eq!(
        std::fs::read(&part).unwrap(),
        kept,
        "the partial is still there"
    );
}

#[test]
fn sender_cancels_and_the_receiver_says_cancelled_by_peer() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    write_data_file(&file, 30 * 1024 * 1024, 53);
    let (server, events) = start_server(dst.path());
    let cancel = CancelToken::new();
    let (sender, sender_events) = send_slowly(server.local_addr(), file, cancel.clone());
    wait_bytes_moving(&sender_events);
    let cancelled_at = Instant::now();
    cancel.cancel();
    assert_eq!(sender.join().unwrap(), [FileOutcome::Cancelled]);
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Cancelled { by_peer: true, .. }) => Some(()),
        Event::Transfer(TransferEvent::Failed { failure, .. }) => panic!("{failure}"),
        _ => None,
    });
    let took = cancelled_at.elapsed();
    eprintln!("the receiver saw the cancel {took:?} after it was asked");
    // Issue 5 asks for "within a second"; a second more of slack for a loaded test machine
    // still fails a cancel that only lands with the idle timeout (30 s) or the next file.
    assert!(took < Duration::from_secs(2), "the cancel took {took:?}");
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
}

#[test]
fn receiver_cancels_and_the_sender_says_cancelled_by_peer() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    write_data_file(&file, 30 * 1024 * 1024, 54);
    let (server, events) = start_server(dst.path());
    let (sender, _) = send_slowly(server.local_addr(), file, CancelToken::new());
    let id = wait_bytes_moving(&events);
    let cancelled_at = Instant::now();
    server.cancel(id);
    let outcome = sender.join().unwrap();
    let took = cancelled_at.elapsed();
    eprintln!("the sender learnt of the cancel {took:?} after it was asked");
    assert!(took < Duration::from_secs(2), "the cancel took {took:?}");
    match &outcome[..] {
        [FileOutcome::CancelledByPeer { reason }] => {
            assert!(reason.contains("receiver"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    wait_for(&events, |e| {
        matches!(
            e,
            Event::Transfer(TransferEvent::Cancelled { by_peer: false, .. })
        )
        .then_some(())
    });
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
}

fn spawn_send(addr: SocketAddr, files: &[PathBuf]) -> std::process::Child {
    crate::util::ferry()
        .args(["send", "--msg", "期末报告", "--to", &addr.to_string()])
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn serve_ask_accepts_on_yes_showing_names_and_sizes() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("计算机五大.txt");
    let b = src.path().join("b.bin");
    std::fs::write(&a, "五大部件").unwrap();
    std::fs::write(&b, data(300_000, 55)).unwrap();
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dst.path());
    let sender = spawn_send(addr, &[a.clone(), b.clone()]);
    let question = wait_line(&lines, ": 2 file(s), 300012 bytes");
    let offer = offer_number(&question);
    wait_line(&lines, "  message: 期末报告");
    wait_line(&lines, "  计算机五大.txt (12 bytes)");
    wait_line(&lines, "  b.bin (300000 bytes)");
    wait_line(&lines, &format!("Accept offer {offer} from 127.0.0.1:"));
    assert!(names_in(dst.path()).is_empty(), "nothing before the answer");
    writeln!(stdin, "y").unwrap();
    wait_line(&lines, "answer \"y N\" or \"n N\" with the offer's number");
    assert!(names_in(dst.path()).is_empty(), "a bare y decides nothing");
    writeln!(stdin, "y {offer}").unwrap();
    let out = sender.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // Exact result lines (a substring "verified" also matches "sent, unverified"), after
    // the lines saying the sender waited for the answer.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[lines.len().saturating_sub(2)..],
        [
            format!("{}: verified, saved as \"计算机五大.txt\"", a.display()),
            format!("{}: verified, saved as \"b.bin\"", b.display()),
        ],
        "{stdout}"
    );
    assert!(
        lines.contains(&"计算机五大.txt: waiting for the receiver to accept"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(dst.path().join("b.bin")).unwrap(),
        std::fs::read(&b).unwrap()
    );
}

#[test]
fn serve_ask_declines_on_no_and_the_sender_is_told() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("a.txt");
    std::fs::write(&a, "hello").unwrap();
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dst.path());
    let sender = spawn_send(addr, std::slice::from_ref(&a));
    let question = wait_line(&lines, "Accept offer");
    writeln!(stdin, "n {}", offer_number(&question)).unwrap();
    let out = sender.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("declined: declined by the receiver"),
        "{stdout}"
    );
    assert!(names_in(dst.path()).is_empty());
}

#[test]
fn asking_server_refuses_plain_senders_which_cannot_be_asked() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.policy = ferry::transfer::AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .write_all(&plain_frame(&plain_header("a.txt", 5, "")))
        .unwrap();
    stream.write_all(b"hello").unwrap();
    let reason = wait_connection_error(&events);
    assert!(reason.contains("plain senders cannot be asked"), "{reason}");
    assert!(names_in(dst.path()).is_empty());
}

#[test]
fn a_yes_for_the_announced_batch_does_not_cover_an_offer_outside_it() {
    use ferry::protocol::{
        Header, ReceiverMsg, SenderMsg, WaitFor, encode_chunk_header, encode_sender_msg,
    };
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.policy = ferry::transfer::AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let send = |stream: &mut TcpStream, msg: SenderMsg| {
        stream.write_all(&encode_sender_msg(&msg).unwrap()).unwrap()
    };
    let offer = |name: &str, size: u64| {
        SenderMsg::Offer(Header {
            eager: false,
            file_name: name.into(),
            file_size: size,
            msg: String::new(),
            resume_key: None,
        })
    };
    let pending = |events: &crossbeam_channel::Receiver<Event>| {
        wait_for(events, |e| match e {
            Event::Server(ServerEvent::OfferPending(o)) => Some((o.offer_id, o.names.clone())),
            _ => None,
        })
    };
    send(
        &mut stream,
        SenderMsg::Batch {
            count: 1,
            bytes: 5,
            names: vec!["a.txt".into()],
            sizes: vec![5],
        },
    );
    send(&mut stream, offer("a.txt", 5));
    assert_eq!(
        read_answer(&mut stream),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    );
    let (offer_id, names) = pending(&events);
    assert_eq!(names, ["a.txt"]);
    server.decide(offer_id, true);
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Accept { offset: 0, .. }
    ));
    stream.write_all(&encode_chunk_header(5)).unwrap();
    stream.write_all(b"hello").unwrap();
    send(
        &mut stream,
        SenderMsg::End {
            blake3: *blake3::hash(b"hello").as_bytes(),
        },
    );
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Verified { .. }
    ));
    // Not announced: the receiver asks again instead of taking it under the first "yes".
    send(&mut stream, offer("evil.sh", 1000));
    assert_eq!(
        read_answer(&mut stream),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    );
    let (offer_id, names) = pending(&events);
    assert_eq!(names, ["evil.sh"]);
    server.decide(offer_id, false);
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Decline { .. }
    ));
    assert_eq!(names_in(dst.path()), ["a.txt"]);
}

#[test]
fn a_silent_peer_is_dropped_after_the_idle_timeout_and_its_slot_freed() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.idle_timeout = Duration::from_secs(1);
    config.max_connections = 1;
    let (server, events) = start_server_with(config);
    // Connects and says nothing, holding the only slot.
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    let reason = wait_connection_error(&events);
    assert!(reason.contains("silent for 1 s"), "{reason}");
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    assert!(
        matches!(silent.read(&mut [0u8; 1]), Ok(0) | Err(_)),
        "the server closed it"
    );
    // The slot is free again.
    plain_upload(server.local_addr(), &[("after.txt", b"still serving", "")]);
    let (finished, _) = wait_files(&events, 1);
    assert_eq!(std::fs::read(&finished[0].0).unwrap(), b"still serving");
}

#[test]
fn a_peer_that_stops_mid_file_is_dropped_and_the_row_says_why() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.idle_timeout = Duration::from_secs(1);
    let (server, events) = start_server_with(config);
    let mut stalled = TcpStream::connect(server.local_addr()).unwrap();
    stalled
        .write_all(&plain_frame(&plain_header("half.bin", 1000, "")))
        .unwrap();
    stalled.write_all(&[7u8; 400]).unwrap();
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty());
    assert!(failed[0].contains("silent for 1 s"), "{failed:?}");
    assert!(
        names_in(dst.path()).is_empty(),
        "a plain partial is not kept"
    );
}

#[test]
fn an_offer_larger_than_the_free_space_is_declined_before_any_byte_is_written() {
    let disk = match SmallDisk::mount(8) {
        Ok(disk) => disk,
        Err(reason) => return skip_or_fail(false, &reason),
    };
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("too-big.bin");
    write_data_file(&big, 20 * 1024 * 1024, 56);
    let small = src.path().join("fits.txt");
    std::fs::write(&small, b"fits").unwrap();
    // A partial kept from an earlier attempt must survive the refusal.
    let key = ferry::transfer::resume_key(&big).unwrap();
    let kept_name = format!("too-big.bin.{}.ferry.part", &key[..16]);
    let kept = disk.path().join(&kept_name);
    std::fs::write(&kept, &data(1024 * 1024, 56)[..100_000]).unwrap();
    let (server, _events) = start_server(disk.path());
    let outcomes = send_quietly(
        server.local_addr(),
        &[OutgoingFile::new(&big), OutgoingFile::new(&small)],
    );
    match &outcomes[0] {
        FileOutcome::Declined { reason } => {
            assert!(reason.contains("not enough disk space"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        outcomes[1],
        FileOutcome::Verified {
            saved_as: "fits.txt".into(),
            resumed_from: 0
        }
    );
    assert_eq!(
        names_in(disk.path()),
        ["fits.txt", kept_name.as_str()],
        "no byte of the big file was written"
    );
    assert_eq!(
        std::fs::metadata(&kept).unwrap().len(),
        100_000,
        "the kept partial is untouched"
    );
}

#[test]
fn a_disk_that_fills_mid_file_fails_that_file_and_the_server_keeps_serving() {
    // The receiver reserves its blocks 32 MiB ahead of its writes: the file is longer than
    // that, so the disk fills inside it.
    let disk = match SmallDisk::mount(64) {
        Ok(disk) => disk,
        Err(reason) => return skip_or_fail(false, &reason),
    };
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("grows.bin");
    write_data_file(&file, 48 * 1024 * 1024, 57);
    let (server, events) = start_server(disk.path());
    let (sender, _) = send_slowly(server.local_addr(), file, CancelToken::new());
    // Once the upload is accepted and running, something else fills the disk.
    wait_bytes_moving(&events);
    let filler = disk.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 1024 * 1024];
    while f.write_all(&block).is_ok() {}
    drop(f);
    let reason = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        Event::Transfer(TransferEvent::Finished { .. }) => panic!("finished on a full disk"),
        _ => None,
    });
    assert!(reason.contains("disk full"), "{reason}");
    match &sender.join().unwrap()[..] {
        [FileOutcome::Failed(failure)] => {
            assert_eq!(failure.kind, ferry::events::FailureKind::ReceiverFailed);
            assert!(
                failure.to_string().contains("disk full"),
                "sender told: {failure}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(names_in(disk.path()), ["filler"], "the .part is gone");
    // Room again: the next upload works.
    std::fs::remove_file(&filler).unwrap();
    plain_upload(server.local_addr(), &[("next.txt", b"next", "")]);
    let (finished, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(std::fs::read(&finished[0].0).unwrap(), b"next");
}

#[test]
fn the_server_keeps_serving_while_a_refused_peer_waits() {
    // The connection bound: covered in detail by ferry::over_the_connection_bound_*; here the
    // point is that a refusal never blocks the listener for the peers after it.
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_connections = 1;
    let (server, events) = start_server_with(config);
    let hog = TcpStream::connect(server.local_addr()).unwrap();
    let refused: Vec<_> = (0..5)
        .map(|_| TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    for _ in 0..5 {
        let reason = wait_for(&events, |e| match e {
            Event::Server(ServerEvent::ConnectionError { reason, .. }) => Some(reason.clone()),
            _ => None,
        });
        assert!(reason.contains("busy"), "{reason}");
    }
    drop(refused);
    drop(hog);
    // Once the hog leaves, its slot serves the next sender.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("late.txt");
        std::fs::write(&path, b"late").unwrap();
        let (sink, _) = event_channel(None);
        let outcomes = send_files(
            &SendOptions::new(server.local_addr().to_string()),
            &[OutgoingFile::new(&path)],
            &sink,
            &CancelToken::new(),
        )
        .unwrap();
        if matches!(outcomes[0], FileOutcome::Verified { .. }) {
            break;
        }
        // The hog's thread notices its peer left a moment later: poll with a deadline.
        assert!(Instant::now() < deadline, "{outcomes:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn another_senders_offer_of_the_same_name_never_touches_a_kept_partial() {
    use ferry::protocol::{Header, ReceiverMsg, SenderMsg, encode_sender_msg};
    let dst = tempfile::tempdir().unwrap();
    let theirs = dst
        .path()
        .join(format!("a.bin.{}.ferry.part", "a".repeat(16)));
    let their_bytes = data(50_000, 60);
    std::fs::write(&theirs, &their_bytes).unwrap();
    let their_mtime = std::fs::metadata(&theirs).unwrap().modified().unwrap();
    let (server, events) = start_server(dst.path());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let offer = SenderMsg::Offer(Header {
        eager: false,
        file_name: "a.bin".into(),
        file_size: 100_000,
        msg: String::new(),
        resume_key: Some("b".repeat(32)),
    });
    stream
        .write_all(&encode_sender_msg(&offer).unwrap())
        .unwrap();
    match read_answer(&mut stream) {
        ReceiverMsg::Accept {
            offset,
            prefix_blake3,
            ..
        } => {
            assert_eq!(
                (offset, prefix_blake3),
                (0, None),
                "no length or hash of someone else's partial"
            );
        }
        other => panic!("{other:?}"),
    }
    // Some data, then the sender leaves: checked only once the server has dealt with the
    // end of that upload (whatever it keeps, it is not their partial).
    stream
        .write_all(&ferry::protocol::encode_chunk_header(1000))
        .unwrap();
    stream.write_all(&[0xAB; 1000]).unwrap();
    drop(stream);
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty(), "{finished:?}");
    assert!(
        failed[0].ends_with("; the 1000 bytes received are kept, sending again resumes"),
        "{failed:?}"
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), their_bytes);
    assert_eq!(
        std::fs::metadata(&theirs).unwrap().modified().unwrap(),
        their_mtime
    );
    // The new sender's bytes went to a partial of its own and nowhere else.
    let ours = format!("a.bin.{}.ferry.part", "b".repeat(16));
    let theirs_name = theirs.file_name().unwrap().to_str().unwrap();
    let mut names = names_in(dst.path());
    names.sort();
    assert_eq!(names, [theirs_name, ours.as_str()]);
    assert_eq!(std::fs::read(dst.path().join(&ours)).unwrap(), [0xAB; 1000]);
}
