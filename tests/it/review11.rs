//! Fixes from the eleventh review (pipelined verdicts, held files): a cancelled upload
//! waits for its owed verdicts the cancel's grace (5 s) at most, however often the receiver
//! says `waiting` meanwhile; a receiver names its held files before it waits for a resuming
//! sender's `start`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, TransferEvent, event_channel};
use ferry::protocol::{
    Chunk, Header, ReceiverMsg, SenderMsg, WaitFor, decode_chunk_header, decode_frame_len,
    decode_sender_msg, encode_chunk_header, encode_receiver_msg, encode_sender_msg,
};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files};

use crate::util::{LOOPBACK, read_answer, start_server_with};

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
            eager_max: None,
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

/// A syncing server holds a pipelining sender's verified file while it reads the next offer.
/// When that offer resumes a kept partial, the server then waits for the sender's `start`
/// (the sender first hashes its copy): a wait on the sender that the batch's age does not
/// bound. The held file is named and its verdict sent before that wait, so a sender that
/// stops there (a cancel passes over the resume and waits for owed verdicts) still hears it.
#[test]
fn held_files_are_named_before_a_resume_waits_for_the_senders_start() {
    let dst = tempfile::tempdir().unwrap();
    let key = "c".repeat(32);
    let b_bytes = crate::util::data(100, 11);
    let partial = dst.path().join(format!("b.txt.{}.ferry.part", &key[..16]));
    std::fs::write(&partial, &b_bytes[..50]).unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.fsync = true;
    config.idle_timeout = Duration::from_secs(120);
    let (server, _events) = start_server_with(config);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let offer = |name: &str, size: u64, resume_key: Option<String>| {
        encode_sender_msg(&SenderMsg::Offer(Header {
            eager: false,
            file_name: name.into(),
            file_size: size,
            msg: String::new(),
            resume_key,
        }))
        .unwrap()
    };
    s.write_all(&offer("a.txt", 3, None)).unwrap();
    assert!(matches!(
        read_answer(&mut s),
        ReceiverMsg::Accept { offset: 0, .. }
    ));
    // a's data and end with b's offer right behind, as a pipelining sender sends them.
    let mut burst = encode_chunk_header(3).to_vec();
    burst.extend_from_slice(b"aaa");
    let end = SenderMsg::End {
        blake3: *blake3::hash(b"aaa").as_bytes(),
    };
    burst.extend(encode_sender_msg(&end).unwrap());
    burst.extend(offer("b.txt", 100, Some(key)));
    s.write_all(&burst).unwrap();
    // b's resume offer, and a's verdict, without b's `start` ever being sent.
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut resume_offered = false;
    loop {
        match read_answer(&mut s) {
            ReceiverMsg::Accept { offset, .. } => {
                assert_eq!(offset, 50, "b resumes after its kept bytes");
                resume_offered = true;
            }
            ReceiverMsg::Verified { saved_as } => {
                assert_eq!(saved_as, "a.txt");
                break;
            }
            other => panic!("expected b's accept and a's verdict, got {other:?}"),
        }
    }
    assert!(std::fs::read(dst.path().join("a.txt")).unwrap() == b"aaa");
    // b's resume was offered (before or after a's verdict).
    if !resume_offered {
        assert!(matches!(
            read_answer(&mut s),
            ReceiverMsg::Accept { offset: 50, .. }
        ));
    }
}
