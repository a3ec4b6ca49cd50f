//! Eager small files: once a receiver says `eager_max` in an accept, a Ferry sender offers a
//! small file and sends its data at once, without a round trip for the accept. Here the real
//! sender meets the real server (many small files, every combination of sync and
//! encryption), a scripted sender meets the real server (eager offers it never allowed, too
//! large, declined and discarded, cancelled mid-data), and a scripted receiver meets the real
//! sender (one that never announces, one that answers late and out of turn, declines, gives
//! up, or keeps the window full).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry::events::{CancelToken, Event, FailureKind, TransferEvent, event_channel};
use ferry::protocol::session::{EAGER_WINDOW_BYTES, EAGER_WINDOW_FILES};
use ferry::protocol::{CancelCode, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg};
use ferry::transfer::{
    AcceptPolicy, EAGER_MAX_BYTES, FileOutcome, OutgoingFile, SendOptions, ServerConfig,
    ServerHandle, send_files,
};

use crate::scripted::{
    accept, answer, chunk_and_end, next_frame, offer_frame, offered, send_to_script_seen,
    silent_for, take_file, verified,
};
use crate::util::{LOOPBACK, data, device, names_in, read_answer, start_server_with};

// ---- Real sender, real server ----

/// `count` files of 1-64 KiB with Chinese names in `dir`.
fn small_files(dir: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("小文件 {i:03}.bin"));
            std::fs::write(&path, data(1024 + (i * 7919) % (63 * 1024), i as u64)).unwrap();
            path
        })
        .collect()
}

fn server(dir: &Path, fsync: bool, policy: AcceptPolicy) -> ServerHandle {
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.to_owned());
    config.keyring = Some(crate::util::test_receiver_keyring());
    config.fsync = fsync;
    config.policy = policy;
    start_server_with(config).0
}

#[test]
fn two_hundred_small_files_one_by_one_arrive_verified_and_identical_synced_or_not_encrypted_or_not()
{
    let src = tempfile::tempdir().unwrap();
    let paths = small_files(src.path(), 200);
    let home = tempfile::tempdir().unwrap();
    let laptop = device(home.path(), "laptop");
    for fsync in [true, false] {
        for keyring in [None, Some(&laptop)] {
            let dst = tempfile::tempdir().unwrap();
            let server = server(dst.path(), fsync, AcceptPolicy::Everyone);
            // Unencrypted, the offers can be counted on their way: all but the first eager.
            let (to, tap) = match keyring {
                None => {
                    let (to, tap) = counting_tap(server.local_addr());
                    (to, Some(tap))
                }
                Some(_) => (server.local_addr(), None),
            };
            let mut opts = SendOptions::new(to.to_string());
            opts.keyring = keyring.cloned();
            let files: Vec<_> = paths.iter().map(OutgoingFile::new).collect();
            let (sink, _events) = event_channel(None);
            let outcomes = send_files(&opts, &files, &sink, &CancelToken::new()).unwrap();
            let case = format!("fsync {fsync}, encrypted {}", keyring.is_some());
            if let Some(tap) = tap {
                assert_eq!(tap.join().unwrap(), 199, "{case}: eager offers");
            }
            assert_eq!(outcomes.len(), 200, "{case}");
            for (path, outcome) in paths.iter().zip(&outcomes) {
                let name = path.file_name().unwrap().to_str().unwrap();
                assert_eq!(
                    *outcome,
                    FileOutcome::Verified {
                        saved_as: name.into(),
                        resumed_from: 0
                    },
                    "{case}"
                );
                let got = std::fs::read(dst.path().join(name)).unwrap();
                assert!(
                    got == std::fs::read(path).unwrap(),
                    "{case}: {name} differs"
                );
            }
            assert_eq!(names_in(dst.path()).len(), 200, "{case}: nothing else left");
            server.stop();
        }
    }
}

/// A forwarder for one connection to `to`; its thread returns how many eager offers
/// (`"eager":true`) passed from the sender to the receiver.
fn counting_tap(to: SocketAddr) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tap = std::thread::spawn(move || {
        let (mut from_sender, _) = listener.accept().unwrap();
        let mut to_receiver = TcpStream::connect(to).unwrap();
        let (mut answers, mut back) = (
            to_receiver.try_clone().unwrap(),
            from_sender.try_clone().unwrap(),
        );
        let answering = std::thread::spawn(move || {
            let _ = std::io::copy(&mut answers, &mut back);
            let _ = back.shutdown(std::net::Shutdown::Write);
        });
        let needle = br#""eager":true"#;
        let (mut seen, mut count, mut buf) = (Vec::new(), 0, vec![0u8; 64 * 1024]);
        loop {
            let n = from_sender.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            to_receiver.write_all(&buf[..n]).unwrap();
            // Whatever straddles two reads is kept for the next look.
            seen.extend_from_slice(&buf[..n]);
            count += seen.windows(needle.len()).filter(|w| w == needle).count();
            let keep = seen.len().saturating_sub(needle.len() - 1);
            seen.drain(..keep);
        }
        let _ = to_receiver.shutdown(std::net::Shutdown::Write);
        answering.join().unwrap();
        count
    });
    (addr, tap)
}

// ---- Scripted sender, real server ----

fn connect(server: &ServerHandle) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// A file's data in one chunk and its end frame.
fn data_and_end(bytes: &[u8]) -> Vec<u8> {
    chunk_and_end(bytes, blake3::hash(bytes))
}

/// An eager offer with its data and end right behind it, in one write.
fn eager_burst(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = offer_frame(name, bytes.len(), true);
    out.extend(data_and_end(bytes));
    out
}

fn expect_accept(stream: &mut TcpStream, name: &str) -> Option<u64> {
    match read_answer(stream) {
        ReceiverMsg::Accept {
            saved_as,
            offset: 0,
            eager_max,
            ..
        } => {
            assert_eq!(saved_as, name);
            eager_max
        }
        other => panic!("expected the accept of {name}, got {other:?}"),
    }
}

fn expect_verified(stream: &mut TcpStream, name: &str) {
    match read_answer(stream) {
        ReceiverMsg::Verified { saved_as } => assert_eq!(saved_as, name),
        other => panic!("expected {name} verified, got {other:?}"),
    }
}

/// The first file, offered the usual way: its accept announces `eager_max`.
fn first_file(stream: &mut TcpStream) {
    stream.write_all(&offer_frame("a.txt", 3, false)).unwrap();
    assert_eq!(expect_accept(stream, "a.txt"), Some(EAGER_MAX_BYTES));
    stream.write_all(&data_and_end(b"aaa")).unwrap();
    expect_verified(stream, "a.txt");
}

/// The server's last word before it closes: a failure naming why.
fn expect_refused(stream: &mut TcpStream, why: &str) {
    match read_answer(stream) {
        ReceiverMsg::Failed { reason } => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the refusal: {rest:?}");
}

#[test]
fn an_eager_offer_before_any_accept_announced_eager_max_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), false, AcceptPolicy::Everyone);
    let mut s = connect(&server);
    s.write_all(&eager_burst("x.txt", b"xxx")).unwrap();
    expect_refused(&mut s, "eager");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn an_eager_offer_over_the_announced_eager_max_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), false, AcceptPolicy::Everyone);
    let mut s = connect(&server);
    first_file(&mut s);
    let size = EAGER_MAX_BYTES as usize + 1;
    // Only the offer: the server must refuse before it reads (or allocates for) any data.
    s.write_all(&offer_frame("big.bin", size, true)).unwrap();
    expect_refused(&mut s, "eager_max");
    assert_eq!(names_in(dir.path()), ["a.txt"]);
}

#[test]
fn a_declined_eager_files_data_is_dropped_and_the_next_eager_file_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), false, AcceptPolicy::Everyone);
    let mut s = connect(&server);
    first_file(&mut s);
    // Refused by policy: its data is already on the wire, 200 KiB in 4 chunks.
    server.set_policy(AcceptPolicy::TrustedOnly);
    let dropped = data(200 * 1024, 7);
    let mut burst = offer_frame("dropped.bin", dropped.len(), true);
    for chunk in dropped.chunks(50 * 1024) {
        burst.extend(encode_chunk_header(chunk.len()));
        burst.extend_from_slice(chunk);
    }
    burst.extend(
        encode_sender_msg(&SenderMsg::End {
            blake3: *blake3::hash(&dropped).as_bytes(),
        })
        .unwrap(),
    );
    s.write_all(&burst).unwrap();
    match read_answer(&mut s) {
        ReceiverMsg::Decline { reason, .. } => assert!(reason.contains("trusted"), "{reason}"),
        other => panic!("expected a decline, got {other:?}"),
    }
    server.set_policy(AcceptPolicy::Everyone);
    let kept = data(100 * 1024, 8);
    s.write_all(&eager_burst("kept.bin", &kept)).unwrap();
    expect_accept(&mut s, "kept.bin");
    expect_verified(&mut s, "kept.bin");
    assert_eq!(std::fs::read(dir.path().join("kept.bin")).unwrap(), kept);
    let mut names = names_in(dir.path());
    names.sort();
    assert_eq!(
        names,
        ["a.txt", "kept.bin"],
        "the declined file left nothing"
    );
}

/// Half a file's data, then the cancel marker and frame.
fn half_then_cancel(bytes: &[u8]) -> Vec<u8> {
    let half = &bytes[..bytes.len() / 2];
    let mut out = encode_chunk_header(half.len()).to_vec();
    out.extend_from_slice(half);
    out.extend(encode_chunk_header(0));
    let cancel = SenderMsg::Cancel {
        code: CancelCode::FileChanged,
        reason: "changed".into(),
    };
    out.extend(encode_sender_msg(&cancel).unwrap());
    out
}

#[test]
fn an_eager_file_cancelled_mid_data_accepted_or_declined_leaves_the_connection_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), false, AcceptPolicy::Everyone);
    let mut s = connect(&server);
    first_file(&mut s);
    let bytes = data(10_000, 3);
    // Accepted, then cancelled by its sender.
    let mut burst = offer_frame("c1.bin", bytes.len(), true);
    burst.extend(half_then_cancel(&bytes));
    s.write_all(&burst).unwrap();
    expect_accept(&mut s, "c1.bin");
    // Declined, then cancelled by its sender.
    server.set_policy(AcceptPolicy::TrustedOnly);
    let mut burst = offer_frame("c2.bin", bytes.len(), true);
    burst.extend(half_then_cancel(&bytes));
    s.write_all(&burst).unwrap();
    assert!(matches!(read_answer(&mut s), ReceiverMsg::Decline { .. }));
    server.set_policy(AcceptPolicy::Everyone);
    // The next eager file goes through.
    s.write_all(&eager_burst("d.bin", &bytes)).unwrap();
    expect_accept(&mut s, "d.bin");
    expect_verified(&mut s, "d.bin");
    let mut names = names_in(dir.path());
    names.sort();
    assert_eq!(
        names,
        ["a.txt", "d.bin"],
        "no partial of the cancelled files"
    );
}

// ---- Scripted receiver, real sender ----

/// `count` files `f00.bin`.. of 1000 bytes each.
fn tiny_files(dir: &Path, count: usize) -> Vec<OutgoingFile> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("f{i:02}.bin"));
            std::fs::write(&path, data(1000, i as u64)).unwrap();
            OutgoingFile::new(path)
        })
        .collect()
}

/// Sends `files` to `script` on a real socket; returns the outcomes.
fn send_to_script(
    files: &[OutgoingFile],
    script: impl FnOnce(TcpStream) + Send + 'static,
) -> Vec<FileOutcome> {
    send_to_script_seen(files, script).0
}

/// The upload's first file, offered the ordinary way: accepted with `eager_max` 4096 (so
/// the files after it may go eagerly) and taken whole (1000 bytes).
fn take_first_file(s: &mut TcpStream) {
    assert!(!offered(s).eager, "the first file waits for its accept");
    accept(s, "f00.bin", Some(4096));
    take_file(s, 1000);
}

/// `count` eager files of 1000 bytes, taken whole, none answered.
fn take_eager_files(s: &mut TcpStream, count: usize) {
    for _ in 0..count {
        assert!(offered(s).eager);
        take_file(s, 1000);
    }
}

fn is_verified(outcome: &FileOutcome, name: &str) -> bool {
    *outcome
        == FileOutcome::Verified {
            saved_as: name.into(),
            resumed_from: 0,
        }
}

#[test]
fn a_receiver_that_never_announces_eager_max_sees_the_old_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(dir.path(), 3);
    let outcomes = send_to_script(&files, |mut s| {
        for i in 0..3 {
            let header = offered(&mut s);
            assert!(
                !header.eager,
                "an eager offer to a receiver that never allowed it"
            );
            assert!(header.resume_key.is_some());
            // The sender waits for the accept before any data.
            assert!(
                silent_for(&mut s, Duration::from_millis(300)),
                "data before the accept"
            );
            accept(&mut s, &header.file_name, None);
            assert_eq!(take_file(&mut s, 1000), data(1000, i));
            verified(&mut s, &header.file_name);
        }
        assert!(next_frame(&mut s).is_none());
    });
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}

#[test]
fn eager_files_go_back_to_back_and_late_out_of_turn_answers_find_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(dir.path(), 5);
    let outcomes = send_to_script(&files, |mut s| {
        let first = offered(&mut s);
        assert!(!first.eager);
        accept(&mut s, "f00.bin", Some(4096));
        take_file(&mut s, 1000);
        // Every other file arrives eagerly, whole, with nothing answered yet.
        for i in 1..5 {
            let header = offered(&mut s);
            assert!(header.eager && header.resume_key.is_none(), "{header:?}");
            assert_eq!(header.file_name, format!("f{i:02}.bin"));
            assert_eq!(take_file(&mut s, 1000), data(1000, i));
        }
        // Late, and out of turn: accepts and verdicts interleaved as a batching receiver
        // answers; f03 declined.
        accept(&mut s, "f01.bin", None);
        verified(&mut s, "f00.bin");
        accept(&mut s, "f02 (1).bin", None);
        answer(
            &mut s,
            ReceiverMsg::Waiting {
                waiting_for: Default::default(),
            },
        );
        let reason = "no thanks".to_owned();
        answer(
            &mut s,
            ReceiverMsg::Decline {
                reason,
                offer_again: false,
            },
        );
        verified(&mut s, "f01.bin");
        accept(&mut s, "f04.bin", None);
        verified(&mut s, "f02 (1).bin");
        verified(&mut s, "f04.bin");
        assert!(
            next_frame(&mut s).is_none(),
            "the sender closes after its answers"
        );
    });
    assert!(is_verified(&outcomes[0], "f00.bin"), "{outcomes:?}");
    assert!(is_verified(&outcomes[1], "f01.bin"), "{outcomes:?}");
    assert!(is_verified(&outcomes[2], "f02 (1).bin"), "{outcomes:?}");
    assert_eq!(
        outcomes[3],
        FileOutcome::Declined {
            reason: "no thanks".into()
        }
    );
    assert!(is_verified(&outcomes[4], "f04.bin"), "{outcomes:?}");
}

#[test]
fn a_receiver_that_gives_up_with_eager_answers_owed_fails_every_owed_file_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(dir.path(), 4);
    let outcomes = send_to_script(&files, |mut s| {
        take_first_file(&mut s);
        take_eager_files(&mut s, 3);
        verified(&mut s, "f00.bin");
        accept(&mut s, "f01.bin", None);
        // f01's verdict is owed, f02's and f03's accepts: the first `failed` is f01's
        // verdict, the second gives up on the connection.
        let reason = "disk full".to_owned();
        answer(&mut s, ReceiverMsg::Failed { reason });
        let reason = "receiver stopping".to_owned();
        answer(&mut s, ReceiverMsg::Failed { reason });
        let _ = s.shutdown(std::net::Shutdown::Write);
        while next_frame(&mut s).is_some() {}
    });
    assert!(is_verified(&outcomes[0], "f00.bin"), "{outcomes:?}");
    let failed = |outcome: &FileOutcome, kind: FailureKind, why: &str| match outcome {
        FileOutcome::Failed(f) => f.kind == kind && f.to_string().contains(why),
        _ => false,
    };
    assert!(
        failed(&outcomes[1], FailureKind::ReceiverFailed, "disk full"),
        "{outcomes:?}"
    );
    // Never accepted: the receiver gave up on them, with its reason.
    for outcome in &outcomes[2..] {
        let gave_up = FailureKind::ReceiverFailed;
        assert!(failed(outcome, gave_up, "receiver stopping"), "{outcome:?}");
    }
}

#[test]
fn the_sender_keeps_at_most_the_window_of_eager_files_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let count = EAGER_WINDOW_FILES + 3;
    let files = tiny_files(dir.path(), count);
    let outcomes = send_to_script(&files, move |mut s| {
        take_first_file(&mut s);
        verified(&mut s, "f00.bin");
        take_eager_files(&mut s, EAGER_WINDOW_FILES);
        // The window is full: nothing more until an answer comes.
        assert!(
            silent_for(&mut s, Duration::from_millis(500)),
            "sent past the window"
        );
        for i in 1..count {
            let name = format!("f{i:02}.bin");
            accept(&mut s, &name, None);
            verified(&mut s, &name);
            if i + EAGER_WINDOW_FILES < count {
                assert!(offered(&mut s).eager);
                take_file(&mut s, 1000);
            }
        }
        assert!(next_frame(&mut s).is_none());
    });
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}

/// The failure of a file that did not arrive for sure, with why.
fn interrupted_because(outcome: &FileOutcome, why: &str) -> bool {
    matches!(outcome, FileOutcome::Failed(f)
        if matches!(f.kind, FailureKind::Interrupted { .. }) && f.to_string().contains(why))
}

#[test]
fn a_connection_that_ends_with_eager_answers_owed_calls_none_of_those_files_verified() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(dir.path(), 4);
    let outcomes = send_to_script(&files, |mut s| {
        take_first_file(&mut s);
        take_eager_files(&mut s, 3);
        verified(&mut s, "f00.bin");
        accept(&mut s, "f01.bin", None);
        // Gone: f01's verdict owed, f02's and f03's answers owed.
    });
    assert!(is_verified(&outcomes[0], "f00.bin"), "{outcomes:?}");
    let verdict = "before the receiver's verdict";
    assert!(interrupted_because(&outcomes[1], verdict), "{outcomes:?}");
    for outcome in &outcomes[2..] {
        let answer = "before the receiver answered its offer";
        assert!(interrupted_because(outcome, answer), "{outcome:?}");
    }
}

#[test]
fn a_cancel_while_the_window_is_full_still_takes_the_answers_that_come_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let count = EAGER_WINDOW_FILES + 3;
    let files = tiny_files(dir.path(), count);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancelToken::new();
    let (full_tx, full_rx) = crossbeam_channel::bounded(1);
    let (cancelled_tx, cancelled_rx) = crossbeam_channel::bounded::<()>(1);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        take_first_file(&mut s);
        verified(&mut s, "f00.bin");
        take_eager_files(&mut s, EAGER_WINDOW_FILES);
        full_tx.send(()).unwrap();
        cancelled_rx.recv().unwrap();
        // Answers that come after the cancel, within its grace, still count.
        accept(&mut s, "f01.bin", None);
        verified(&mut s, "f01.bin");
        let _ = s.shutdown(std::net::Shutdown::Write);
        while next_frame(&mut s).is_some() {}
    });
    let sending = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            let (sink, _events) = event_channel(None);
            let opts = SendOptions::new(addr.to_string());
            send_files(&opts, &files, &sink, &cancel).unwrap()
        })
    };
    full_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    cancel.cancel();
    cancelled_tx.send(()).unwrap();
    let outcomes = sending.join().unwrap();
    receiver.join().unwrap();
    assert!(is_verified(&outcomes[0], "f00.bin"), "{outcomes:?}");
    assert!(is_verified(&outcomes[1], "f01.bin"), "{:?}", outcomes[1]);
    // Sent whole but never answered: not verified, and they say so.
    for outcome in &outcomes[2..=EAGER_WINDOW_FILES] {
        let answer = "before the receiver answered its offer";
        assert!(interrupted_because(outcome, answer), "{outcome:?}");
    }
    // Never sent: cancelled.
    for outcome in &outcomes[EAGER_WINDOW_FILES + 1..] {
        assert_eq!(*outcome, FileOutcome::Cancelled);
    }
}

#[test]
fn the_sender_keeps_at_most_the_windows_bytes_unanswered() {
    const LEN: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let fit = (EAGER_WINDOW_BYTES / LEN as u64) as usize;
    let files: Vec<_> = (0..fit + 2)
        .map(|i| {
            let path = dir.path().join(format!("m{i}.bin"));
            std::fs::write(&path, data(LEN, i as u64)).unwrap();
            OutgoingFile::new(path)
        })
        .collect();
    let outcomes = send_to_script(&files, move |mut s| {
        offered(&mut s);
        accept(&mut s, "m0.bin", Some(LEN as u64));
        take_file(&mut s, LEN as u64);
        verified(&mut s, "m0.bin");
        for _ in 0..fit {
            assert!(offered(&mut s).eager);
            take_file(&mut s, LEN as u64);
        }
        assert!(
            silent_for(&mut s, Duration::from_millis(500)),
            "sent past the window"
        );
        accept(&mut s, "m1.bin", None);
        // One answer makes room for one more file.
        assert_eq!(offered(&mut s).file_name, format!("m{}.bin", fit + 1));
        take_file(&mut s, LEN as u64);
        for i in 2..=fit + 1 {
            accept(&mut s, &format!("m{i}.bin"), None);
        }
        for i in 1..=fit + 1 {
            verified(&mut s, &format!("m{i}.bin"));
        }
        assert!(next_frame(&mut s).is_none());
    });
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}

/// A receiver that declines an eager file with `offer_again` (it would have had to ask its
/// user) gets it again after the other files, as an ordinary offer whose data waits for
/// the accept; the file's outcome is that second offer's. Meanwhile its row says it waits
/// for the receiver's decision.
#[test]
fn a_file_declined_with_offer_again_is_offered_again_the_ordinary_way_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(dir.path(), 4);
    let again_id = files[2].id;
    let (outcomes, events) = send_to_script_seen(&files, |mut s| {
        take_first_file(&mut s);
        take_eager_files(&mut s, 3);
        accept(&mut s, "f01.bin", None);
        answer(
            &mut s,
            ReceiverMsg::Decline {
                reason: "would have to ask".into(),
                offer_again: true,
            },
        );
        accept(&mut s, "f03.bin", None);
        for name in ["f00.bin", "f01.bin", "f03.bin"] {
            verified(&mut s, name);
        }
        // f02 again, ordinary: its data waits for the accept.
        let again = offered(&mut s);
        assert_eq!(again.file_name, "f02.bin");
        assert!(!again.eager, "{again:?}");
        assert!(silent_for(&mut s, Duration::from_millis(300)));
        accept(&mut s, "f02 (asked).bin", None);
        assert_eq!(take_file(&mut s, 1000), data(1000, 2));
        verified(&mut s, "f02 (asked).bin");
        assert!(next_frame(&mut s).is_none(), "then the sender closes");
    });
    for (i, name) in ["f00.bin", "f01.bin", "f02 (asked).bin", "f03.bin"]
        .iter()
        .enumerate()
    {
        assert!(is_verified(&outcomes[i], name), "{outcomes:?}");
    }
    // f02's row: started, waiting for the decision once declined, started again, verified.
    let row: Vec<&'static str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(t) if t.id() == again_id => Some(t),
            _ => None,
        })
        .filter_map(|t| match t {
            TransferEvent::Started { .. } => Some("started"),
            TransferEvent::AwaitingDecision { .. } => Some("awaiting"),
            TransferEvent::Finished { verified: true, .. } => Some("verified"),
            TransferEvent::Failed { .. } | TransferEvent::Cancelled { .. } => Some("ended"),
            _ => None,
        })
        .collect();
    assert_eq!(row, ["started", "awaiting", "started", "verified"]);
}
