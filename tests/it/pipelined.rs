//! A Ferry sender offers its next file as soon as the last one is out, before that file's
//! verdict, and takes each verdict in order whenever it comes. Here a scripted receiver on a
//! real socket holds verdicts back, answers them late, out of turn with the next accept, or
//! never, and the sender must give every file the outcome the receiver said.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ferry::events::{CancelToken, Event, FailureKind, TransferEvent, event_channel};
use ferry::protocol::{
    Chunk, ReceiverMsg, SenderMsg, decode_chunk_header, decode_frame_len, decode_sender_msg,
    encode_receiver_msg,
};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

use crate::util::data;

/// The next sender frame; batch announcements are skipped. A sender that waited for a
/// verdict before its next offer would leave this read to time out.
fn next_frame(stream: &mut TcpStream) -> Option<SenderMsg> {
    loop {
        let mut prefix = [0u8; 4];
        match stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => panic!("reading the sender's next frame: {e}"),
        }
        let mut body = vec![0u8; decode_frame_len(prefix).unwrap()];
        stream.read_exact(&mut body).unwrap();
        match decode_sender_msg(&body).unwrap() {
            SenderMsg::Batch { .. } => continue,
            msg => return Some(msg),
        }
    }
}

fn answer(stream: &mut TcpStream, msg: ReceiverMsg) {
    stream
        .write_all(&encode_receiver_msg(&msg).unwrap())
        .unwrap();
}

fn offered(stream: &mut TcpStream) -> String {
    match next_frame(stream) {
        Some(SenderMsg::Offer(header)) => header.file_name,
        other => panic!("expected an offer, got {other:?}"),
    }
}

fn accept(stream: &mut TcpStream, saved_as: &str) {
    answer(
        stream,
        ReceiverMsg::Accept {
            offset: 0,
            saved_as: saved_as.into(),
            prefix_blake3: None,
        },
    );
}

/// Reads a file's chunks and its end frame; returns its bytes.
fn take_file(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).unwrap();
        let Chunk::Data(n) = decode_chunk_header(prefix).unwrap() else {
            panic!("cancel marker")
        };
        let start = bytes.len();
        bytes.resize(start + n, 0);
        stream.read_exact(&mut bytes[start..]).unwrap();
        if bytes.len() == FILE_LEN {
            break;
        }
    }
    match next_frame(stream) {
        Some(SenderMsg::End { blake3 }) => assert_eq!(blake3, *blake3::hash(&bytes).as_bytes()),
        other => panic!("expected the end, got {other:?}"),
    }
    bytes
}

fn verified(stream: &mut TcpStream, saved_as: &str) {
    answer(
        stream,
        ReceiverMsg::Verified {
            saved_as: saved_as.into(),
        },
    );
}

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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // A read that waits this long means the sender is waiting for us: a test failure.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        script(stream);
    });
    let (sink, events) = event_channel(None);
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(20);
    let outcomes = send_files(&opts, files, &sink, &CancelToken::new()).unwrap();
    receiver.join().unwrap();
    drop(sink);
    let ends = events
        .try_iter()
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
        assert_eq!(offered(&mut s), "a.bin");
        accept(&mut s, "a.bin");
        assert_eq!(take_file(&mut s), expected[0]);
        // No verdict yet: the sender offers b all the same.
        assert_eq!(offered(&mut s), "b.bin");
        // Then a's verdict (not kept) and b's accept, as a receiver reading in turn does.
        answer(
            &mut s,
            ReceiverMsg::Failed {
                reason: "disk on fire".into(),
            },
        );
        accept(&mut s, "b (1).bin");
        assert_eq!(take_file(&mut s), expected[1]);
        assert_eq!(offered(&mut s), "c.bin");
        // c's accept before b's verdict (a receiver that holds verdicts to batch its syncs).
        accept(&mut s, "c.bin");
        verified(&mut s, "b (1).bin");
        assert_eq!(take_file(&mut s), expected[2]);
        assert_eq!(offered(&mut s), "d.bin");
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
        assert_eq!(offered(&mut s), "a.bin");
        accept(&mut s, "a.bin");
        take_file(&mut s);
        assert_eq!(offered(&mut s), "b.bin");
        accept(&mut s, "b.bin");
        take_file(&mut s);
        assert_eq!(offered(&mut s), "c.bin");
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
    assert_eq!(ends.len(), 3, "{ends:?}");
    assert!(ends.iter().all(|(_, said)| said.starts_with("failed")));
}

#[test]
fn the_last_files_verdicts_are_waited_for_before_the_sender_closes() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), 2);
    let (outcomes, _) = send_to_script(&files, |mut s| {
        assert_eq!(offered(&mut s), "a.bin");
        accept(&mut s, "a.bin");
        take_file(&mut s);
        assert_eq!(offered(&mut s), "b.bin");
        accept(&mut s, "b.bin");
        take_file(&mut s);
        // Both verdicts only after both files: the sender must wait for them before it
        // closes.
        verified(&mut s, "a.bin");
        verified(&mut s, "b.bin");
        assert!(next_frame(&mut s).is_none(), "the sender closes after them");
    });
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}
