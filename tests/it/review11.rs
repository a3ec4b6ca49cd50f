//! Fixes from the eleventh review (pipelined verdicts, held files, eviction): a cancelled
//! upload waits for its owed verdicts [`CANCEL_GRACE`](5 s) at most, however often the
//! receiver says `waiting` meanwhile.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, TransferEvent, event_channel};
use ferry::protocol::{
    Chunk, ReceiverMsg, SenderMsg, WaitFor, decode_chunk_header, decode_frame_len,
    decode_sender_msg, encode_receiver_msg,
};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

/// The sender's next frame other than a batch announcement.
fn next_frame(stream: &mut TcpStream) -> SenderMsg {
    loop {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; decode_frame_len(prefix).unwrap()];
        stream.read_exact(&mut body).unwrap();
        match decode_sender_msg(&body).unwrap() {
            SenderMsg::Batch { .. } => continue,
            msg => return msg,
        }
    }
}

fn answer(stream: &mut TcpStream, msg: &ReceiverMsg) -> std::io::Result<()> {
    stream.write_all(&encode_receiver_msg(msg).unwrap())
}

/// A receiver that keeps saying `waiting` about the next offer after the user cancelled
/// (asking its user, hashing a partial: it may repeat it every few seconds) must not stretch
/// the cancel's grace to the decision timeout: the owed verdict's wait ends within the grace.
#[test]
fn a_receiver_saying_waiting_after_a_cancel_does_not_stretch_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<OutgoingFile> = ["a.bin", "b.bin"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"some bytes").unwrap();
            OutgoingFile::new(path)
        })
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancelToken::new();
    let script_cancel = cancel.clone();
    let (cancelled_tx, cancelled_at) = crossbeam_channel::bounded(1);
    // Dropped once the upload returned: the receiver stops talking then.
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let (sink, events) = event_channel(None);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(matches!(next_frame(&mut s), SenderMsg::Offer(h) if h.file_name == "a.bin"));
        let accept = ReceiverMsg::Accept {
            offset: 0,
            saved_as: "a.bin".into(),
            prefix_blake3: None,
        };
        answer(&mut s, &accept).unwrap();
        let mut got = 0;
        while got < 10 {
            let mut prefix = [0u8; 4];
            s.read_exact(&mut prefix).unwrap();
            let Chunk::Data(n) = decode_chunk_header(prefix).unwrap() else {
                panic!("cancel marker");
            };
            s.read_exact(&mut vec![0u8; n]).unwrap();
            got += n;
        }
        assert!(matches!(next_frame(&mut s), SenderMsg::End { .. }));
        assert!(matches!(next_frame(&mut s), SenderMsg::Offer(h) if h.file_name == "b.bin"));
        // a's verdict is owed and never comes; b waits for its user's answer.
        let waiting = ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision,
        };
        answer(&mut s, &waiting).unwrap();
        // The user cancels once the sender shows it waits for the receiver's user.
        let shown = Instant::now() + Duration::from_secs(10);
        loop {
            let left = shown.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(Event::Transfer(TransferEvent::AwaitingDecision { .. })) => break,
                Ok(_) => {}
                Err(e) => panic!("the sender never showed the wait: {e}"),
            }
        }
        // Every `waiting` shows again: keep the events flowing.
        std::thread::spawn(move || events.iter().count());
        script_cancel.cancel();
        cancelled_tx.send(Instant::now()).unwrap();
        // Says `waiting` again and again, for at most 20 s (the test's own bound).
        let give_up = Instant::now() + Duration::from_secs(20);
        while Instant::now() < give_up
            && done.recv_timeout(Duration::from_millis(200))
                == Err(crossbeam_channel::RecvTimeoutError::Timeout)
        {
            if answer(&mut s, &waiting).is_err() {
                break;
            }
        }
    });
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(20);
    opts.decision_timeout = Duration::from_secs(60);
    let outcomes = send_files(&opts, &files, &sink, &cancel).unwrap();
    let waited = cancelled_at.recv().unwrap().elapsed();
    drop(done_tx);
    receiver.join().unwrap();
    assert!(
        waited < Duration::from_secs(8),
        "the cancelled upload took {waited:?} to return"
    );
    assert_eq!(outcomes, [FileOutcome::Cancelled, FileOutcome::Cancelled]);
}
