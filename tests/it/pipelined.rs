//! A Ferry sender offers its next file as soon as the last one is out, before that file's
//! verdict, and takes each verdict in order whenever it comes. Here a scripted receiver on a
//! real socket holds verdicts back, answers them late, out of turn with the next accept, or
//! never, and the sender must give every file the outcome the receiver said.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ferry::events::{CancelToken, Event, FailureKind, TransferEvent, event_channel};
use ferry::protocol::{ReceiverMsg, SenderMsg, encode_receiver_msg};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

use crate::scripted::{
    accept, answer, chunk_and_end, next_frame, offer_frame, offered, send_to_script_seen,
    take_file, take_offered, verified,
};
use crate::util::data;

const FILE_LEN: usize = 300_000;

/// Files `a.bin`, `b.bin`, ... of [`FILE_LEN`] bytes each.
fn files(dir: &std::path::Path, count: usize) -> Vec<OutgoingFile> {
    (0..count)
        .map(|i| {
            let path: PathBuf = dir.join(format!("{}.bin", (b'a' + i as u8) as char));
            std::fs::write(&path, data(FILE_LEN, i as u64)).unwrap();
            OutgoingFile::new(path)
        })
        .collect()
}

/// Sends `files` to a scripted receiver run by `script` on the accepted socket; returns
/// the outcomes and every terminal event, per file id.
fn send_to_script(
    files: &[OutgoingFile],
    script: impl FnOnce(TcpStream) + Send + 'static,
) -> (Vec<FileOutcome>, Vec<(u64, String)>) {
    let (outcomes, events) = send_to_script_seen(files, script);
    let ends = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::Finished { id, .. }) => Some((id, "finished".into())),
            Event::Transfer(TransferEvent::Failed { id, failure }) => {
                Some((id, format!("failed: {failure}")))
            }
            Event::Transfer(TransferEvent::Cancelled { id, .. }) => Some((id, "cancelled".into())),
            _ => None,
        })
        .collect();
    (outcomes, ends)
}

fn receiver_failed(outcome: &FileOutcome) -> Option<&str> {
    match outcome {
        FileOutcome::Failed(f) if f.kind == FailureKind::ReceiverFailed => f.detail.as_deref(),
        _ => None,
    }
}

#[test]
fn the_next_file_goes_out_before_the_last_ones_verdict_and_each_verdict_finds_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 4);
    let sent: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(&f.path).unwrap())
        .collect();
    let expected = sent.clone();
    let (outcomes, ends) = send_to_script(&files, move |mut s| {
        assert_eq!(take_offered(&mut s, "a.bin", FILE_LEN as u64), expected[0]);
        // No verdict yet: the sender offers b all the same.
        assert_eq!(offered(&mut s).file_name, "b.bin");
        // Then a's verdict (not kept) and b's accept, as a receiver reading in turn does.
        answer(
            &mut s,
            ReceiverMsg::Failed {
                reason: "disk on fire".into(),
            },
        );
        accept(&mut s, "b (1).bin", None);
        assert_eq!(take_file(&mut s, FILE_LEN as u64), expected[1]);
        assert_eq!(offered(&mut s).file_name, "c.bin");
        // c's accept before b's verdict (a receiver that holds verdicts to batch its syncs).
        accept(&mut s, "c.bin", None);
        verified(&mut s, "b (1).bin");
        assert_eq!(take_file(&mut s, FILE_LEN as u64), expected[2]);
        assert_eq!(offered(&mut s).file_name, "d.bin");
        verified(&mut s, "c.bin");
        // With no verdict owed, `failed` gives up on the file on offer and the connection.
        answer(
            &mut s,
            ReceiverMsg::Failed {
                reason: "receiver gave up".into(),
            },
        );
        let _ = s.shutdown(std::net::Shutdown::Write);
        while next_frame(&mut s).is_some() {}
    });
    assert_eq!(receiver_failed(&outcomes[0]), Some("disk on fire"));
    assert_eq!(
        outcomes[1],
        FileOutcome::Verified {
            saved_as: "b (1).bin".into(),
            resumed_from: 0
        }
    );
    assert_eq!(
        outcomes[2],
        FileOutcome::Verified {
            saved_as: "c.bin".into(),
            resumed_from: 0
        }
    );
    assert_eq!(receiver_failed(&outcomes[3]), Some("receiver gave up"));
    // One ending per file, as its outcome says.
    let mut ended: Vec<u64> = ends.iter().map(|(id, _)| *id).collect();
    ended.sort_unstable();
    let mut ids: Vec<u64> = files.iter().map(|f| f.id).collect();
    ids.sort_unstable();
    assert_eq!(ended, ids, "{ends:?}");
    for (file, outcome) in files.iter().zip(&outcomes) {
        let (_, said) = ends.iter().find(|(id, _)| *id == file.id).unwrap();
        assert_eq!(said.starts_with("finished"), outcome.is_success(), "{said}");
    }
}

#[test]
fn files_whose_verdicts_never_came_fail_with_the_connection_and_none_is_called_verified() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 3);
    let (outcomes, ends) = send_to_script(&files, |mut s| {
        take_offered(&mut s, "a.bin", FILE_LEN as u64);
        take_offered(&mut s, "b.bin", FILE_LEN as u64);
        assert_eq!(offered(&mut s).file_name, "c.bin");
        // Gone, with a's and b's verdicts owed and c on offer.
    });
    for outcome in &outcomes {
        match outcome {
            FileOutcome::Failed(f) => {
                assert!(matches!(f.kind, FailureKind::Interrupted { .. }), "{f:?}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    // a and b went out whole: their failure says no verdict came, not that they failed.
    for outcome in &outcomes[..2] {
        assert!(
            outcome
                .to_string()
                .contains("before the receiver's verdict"),
            "{outcome}"
        );
    }
    assert_eq!(ends.len(), 3, "{ends:?}");
    assert!(ends.iter().all(|(_, said)| said.starts_with("failed")));
}

#[test]
fn the_last_files_verdicts_are_waited_for_before_the_sender_closes() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 2);
    let (outcomes, _) = send_to_script(&files, |mut s| {
        take_offered(&mut s, "a.bin", FILE_LEN as u64);
        take_offered(&mut s, "b.bin", FILE_LEN as u64);
        // Both verdicts only after both files: the sender must wait for them before it
        // closes.
        verified(&mut s, "a.bin");
        verified(&mut s, "b.bin");
        assert!(next_frame(&mut s).is_none(), "the sender closes after them");
    });
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}

// ---- The receiver's side: a pipelining sender's small files named in batches ----

use ferry::protocol::{encode_chunk_header, encode_sender_msg};
use ferry::transfer::ServerConfig;

use crate::util::{LOOPBACK, read_answer, start_server_with, wait_for};

/// A server that syncs (the only case where files are held for a batch), with an idle
/// timeout far beyond what any test here waits.
fn syncing_server(
    dir: &std::path::Path,
) -> (
    ferry::transfer::ServerHandle,
    crossbeam_channel::Receiver<Event>,
) {
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.to_owned());
    config.fsync = true;
    config.idle_timeout = Duration::from_secs(120);
    start_server_with(config)
}

/// A file's data and end with `next`'s offer right behind them, in one write, as a
/// pipelining sender sends them (`hash`: the end's hash).
fn end_then_offer(stream: &mut TcpStream, bytes: &[u8], hash: blake3::Hash, next: &str) {
    let mut burst = chunk_and_end(bytes, hash);
    burst.extend(offer_frame(next, 3, false));
    stream.write_all(&burst).unwrap();
}

fn expect_accept(stream: &mut TcpStream, name: &str) {
    match read_answer(stream) {
        ReceiverMsg::Accept { saved_as, .. } => assert_eq!(saved_as, name),
        other => panic!("expected the accept of {name}, got {other:?}"),
    }
}

/// Offers a 3-byte file and reads its accept.
fn offer_accepted(stream: &mut TcpStream, name: &str) {
    stream.write_all(&offer_frame(name, 3, false)).unwrap();
    expect_accept(stream, name);
}

fn expect_verified(stream: &mut TcpStream, name: &str) {
    match read_answer(stream) {
        ReceiverMsg::Verified { saved_as } => assert_eq!(saved_as, name),
        other => panic!("expected {name} verified, got {other:?}"),
    }
}

fn connect(server: &ferry::transfer::ServerHandle) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

#[test]
fn a_pipelining_senders_small_files_are_named_together_and_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _events) = syncing_server(dir.path());
    let mut s = connect(&server);
    let (a, b) = (b"first file".to_vec(), "第二个文件".as_bytes().to_vec());
    s.write_all(&offer_frame("a.txt", a.len(), false)).unwrap();
    expect_accept(&mut s, "a.txt");
    // a's data and end, and b's offer behind them, as a pipelining sender sends them.
    let mut burst = chunk_and_end(&a, blake3::hash(&a));
    burst.extend(offer_frame("b.txt", b.len(), false));
    s.write_all(&burst).unwrap();
    // b is accepted before a's verdict: a is held, verified but not yet under its name.
    expect_accept(&mut s, "b.txt");
    assert!(
        !dir.path().join("a.txt").exists(),
        "named before its verdict"
    );
    s.write_all(&chunk_and_end(&b, blake3::hash(&b))).unwrap();
    // Nothing more from the sender: both are named, and answered in file order.
    expect_verified(&mut s, "a.txt");
    expect_verified(&mut s, "b.txt");
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b);
    let mut names = crate::util::names_in(dir.path());
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"], "no partial left");
}

#[test]
fn a_held_verdict_goes_before_a_later_files_failure_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _events) = syncing_server(dir.path());
    let mut s = connect(&server);
    offer_accepted(&mut s, "a.txt");
    end_then_offer(&mut s, b"aaa", blake3::hash(b"aaa"), "b.txt");
    expect_accept(&mut s, "b.txt");
    // b's end carries a wrong hash, and c's offer follows at once.
    end_then_offer(&mut s, b"bbb", blake3::hash(b"not b"), "c.txt");
    expect_verified(&mut s, "a.txt");
    match read_answer(&mut s) {
        ReceiverMsg::Failed { reason } => assert!(reason.contains("hash"), "{reason}"),
        other => panic!("expected b's failure, got {other:?}"),
    }
    expect_accept(&mut s, "c.txt");
    s.write_all(&chunk_and_end(b"ccc", blake3::hash(b"ccc")))
        .unwrap();
    expect_verified(&mut s, "c.txt");
    let mut names = crate::util::names_in(dir.path());
    names.sort();
    assert_eq!(names, ["a.txt", "c.txt"]);
}

#[test]
fn a_sender_that_stalls_or_leaves_after_its_next_offer_does_not_keep_a_file_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = syncing_server(dir.path());
    // Stalls: b accepted, then nothing. a's verdict comes long before any timeout.
    let mut s = connect(&server);
    offer_accepted(&mut s, "a.txt");
    end_then_offer(&mut s, b"aaa", blake3::hash(b"aaa"), "b.txt");
    expect_accept(&mut s, "b.txt");
    expect_verified(&mut s, "a.txt");
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"aaa");
    drop(s);
    // Leaves: c is held (d's offer is behind it) when the sender hangs up.
    let mut s = connect(&server);
    offer_accepted(&mut s, "c.txt");
    end_then_offer(&mut s, b"ccc", blake3::hash(b"ccc"), "d.txt");
    drop(s);
    // c was verified: it is named all the same, and its row says so.
    let saved = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Finished {
            path: Some(path), ..
        }) if path.ends_with("c.txt") => Some(path.clone()),
        _ => None,
    });
    assert_eq!(std::fs::read(saved).unwrap(), b"ccc");
}

/// a.txt (3 bytes) sent whole, then in one burst b's offer (3 bytes) and `b_so_far` of b's
/// data, and b's accept read: a is held now (b's data is already here, its end is not).
fn hold_a_with_b_started(s: &mut TcpStream, b_so_far: &[u8]) {
    offer_accepted(s, "a.txt");
    let mut burst = chunk_and_end(b"aaa", blake3::hash(b"aaa"));
    burst.extend(offer_frame("b.txt", 3, false));
    burst.extend(encode_chunk_header(3));
    burst.extend_from_slice(b_so_far);
    s.write_all(&burst).unwrap();
    expect_accept(s, "b.txt");
}

/// Holds a.txt on a syncing server: a's data and end, b's offer (3 bytes) and `b_so_far` of
/// b's data in one burst, so b's data is already here when b is accepted and nothing else
/// names a meanwhile; then the sender stops. a's verdict must come well before the server's
/// 120 s idle timeout. Returns the connection, for b's rest.
fn hold_a_then_stop_in_b(
    dir: &std::path::Path,
    b_so_far: &[u8],
) -> (ferry::transfer::ServerHandle, TcpStream) {
    let (server, _events) = syncing_server(dir);
    let mut s = connect(&server);
    hold_a_with_b_started(&mut s, b_so_far);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    expect_verified(&mut s, "a.txt");
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"aaa");
    (server, s)
}

fn end_of_bbb() -> Vec<u8> {
    encode_sender_msg(&SenderMsg::End {
        blake3: *blake3::hash(b"bbb").as_bytes(),
    })
    .unwrap()
}

/// A sender whose next file's data starts and then stops (a stalled disk, or on purpose)
/// does not keep the files held before it unnamed: they are named once the batch is as old
/// as a batch may be, long before the connection times out, and the file goes on after.
#[test]
fn a_sender_that_stalls_in_the_middle_of_the_next_files_data_does_not_keep_a_file_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut s) = hold_a_then_stop_in_b(dir.path(), b"b");
    // b's other two bytes and its end: b is received whole all the same.
    let mut rest = b"bb".to_vec();
    rest.extend(end_of_bbb());
    s.write_all(&rest).unwrap();
    expect_verified(&mut s, "b.txt");
    assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b"bbb");
}

/// Likewise when the next file's data came whole but its end does not come.
#[test]
fn a_sender_whose_next_files_end_does_not_come_does_not_keep_a_file_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut s) = hold_a_then_stop_in_b(dir.path(), b"bbb");
    s.write_all(&end_of_bbb()).unwrap();
    expect_verified(&mut s, "b.txt");
}

/// After a cancel, the verdicts still owed get [`CANCEL_GRACE`] (5 s) in all, not 5 s each:
/// a receiver that answers one every 3 s cannot keep a cancelled upload going for long.
#[test]
fn a_cancelled_upload_waits_for_owed_verdicts_once_not_once_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 3);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancelToken::new();
    let (cancelled_tx, cancelled_at) = crossbeam_channel::bounded(1);
    let script_cancel = cancel.clone();
    // Dropped once the upload returned: the receiver stops trickling then.
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for name in ["a.bin", "b.bin", "c.bin"] {
            take_offered(&mut s, name, FILE_LEN as u64);
        }
        // All three are owed when the user cancels; their verdicts then trickle in.
        script_cancel.cancel();
        cancelled_tx.send(std::time::Instant::now()).unwrap();
        for name in ["a.bin", "b.bin", "c.bin"] {
            // A slow receiver's pace; over at once when the upload returned.
            if done.recv_timeout(Duration::from_secs(3))
                != Err(crossbeam_channel::RecvTimeoutError::Timeout)
            {
                break;
            }
            let frame = encode_receiver_msg(&ReceiverMsg::Verified {
                saved_as: name.into(),
            })
            .unwrap();
            if s.write_all(&frame).is_err() {
                break;
            }
        }
    });
    let (sink, _events) = event_channel(None);
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(20);
    let outcomes = send_files(&opts, &files, &sink, &cancel).unwrap();
    let waited = cancelled_at.recv().unwrap().elapsed();
    drop(done_tx);
    assert!(
        waited < Duration::from_secs(7),
        "waited {waited:?} after the cancel"
    );
    assert!(
        matches!(outcomes[0], FileOutcome::Verified { .. }),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1..],
        [FileOutcome::Cancelled, FileOutcome::Cancelled]
    );
    receiver.join().unwrap();
}

#[test]
fn a_cancel_while_the_next_offer_waits_still_takes_the_verdict_on_the_file_before() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancelToken::new();
    let script_cancel = cancel.clone();
    // Dropped once the upload returned.
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        take_offered(&mut s, "a.bin", FILE_LEN as u64);
        assert_eq!(offered(&mut s).file_name, "b.bin");
        // a is owed and b waits for its accept when the user cancels.
        script_cancel.cancel();
        // A slow receiver's pace (the sender sees the cancel within a tenth of that): an
        // upload that gave a up at the cancel has returned by then.
        if done.recv_timeout(Duration::from_secs(1))
            == Err(crossbeam_channel::RecvTimeoutError::Timeout)
        {
            // b's accept first (passed over), then a's verdict.
            accept(&mut s, "b.bin", None);
            verified(&mut s, "a.bin");
        }
    });
    let (sink, _events) = event_channel(None);
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(20);
    let outcomes = send_files(&opts, &files, &sink, &cancel).unwrap();
    drop(done_tx);
    receiver.join().unwrap();
    assert_eq!(
        outcomes,
        [
            FileOutcome::Verified {
                saved_as: "a.bin".into(),
                resumed_from: 0
            },
            FileOutcome::Cancelled
        ]
    );
}

/// Stopping the server while it holds a verified file: the file is named, its verdict
/// still reaches the sender, and the sender is told why the connection ends (before, the
/// stop shut the socket both ways: the sender saw only a lost connection, and reported a
/// file the receiver kept as interrupted).
#[test]
fn a_server_stopped_while_it_holds_a_file_still_gives_its_verdict_and_says_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _events) = syncing_server(dir.path());
    let mut s = connect(&server);
    hold_a_with_b_started(&mut s, b"b");
    server.stop();
    expect_verified(&mut s, "a.txt");
    match read_answer(&mut s) {
        ReceiverMsg::Failed { reason } => {
            assert!(reason.contains("the server stopped"), "{reason}");
        }
        other => panic!("expected the reason the connection ends, got {other:?}"),
    }
    assert!(next_frame(&mut s).is_none(), "then the connection closes");
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"aaa");
    assert!(
        !dir.path().join("b.txt").exists(),
        "b never came whole: not under its name (its partial may stay, for a resume)"
    );
}
