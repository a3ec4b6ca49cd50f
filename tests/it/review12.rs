//! Review of eager small files (attacker and maintainer): the cases it found wrong, each
//! failing before its fix. A scripted receiver meets the real sender on a real socket.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use ferry::events::{CancelToken, Event, ServerEvent, TransferEvent, event_channel};
use ferry::protocol::{ReceiverMsg, WaitFor, encode_chunk_header};
use ferry::transfer::{
    AcceptPolicy, FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files,
};

use crate::scripted::{
    accept, answer, chunk_and_end, next_frame, offer_frame, offered, silent_for, take_file,
};
use crate::util::{LOOPBACK, data, names_in, read_answer, start_server_with, wait_for};

/// `count` files `f00.bin`.. of `len` bytes each.
fn files(dir: &Path, count: usize, len: usize) -> Vec<OutgoingFile> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("f{i:02}.bin"));
            std::fs::write(&path, data(len, i as u64)).unwrap();
            OutgoingFile::new(path)
        })
        .collect()
}

/// A receiver that asks its user about an eager file says `waiting` once; the sender may
/// read it between its chunks, while its next eager files go out. From then on the sender
/// waits for the answer as long as the user may take (the decision timeout), not the answer
/// timeout: before the fix, a `waiting` read that way was forgotten, and the sender gave
/// every file up once the answer timeout passed while the user was still deciding.
#[test]
fn a_waiting_heard_while_eager_files_go_out_lets_the_user_take_longer_than_the_answer_timeout() {
    const COUNT: usize = 40;
    const LEN: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), COUNT, LEN);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        offered(&mut s);
        accept(&mut s, "f00.bin", Some(LEN as u64));
        take_file(&mut s, LEN as u64);
        answer(
            &mut s,
            ReceiverMsg::Verified {
                saved_as: "f00.bin".into(),
            },
        );
        // The first eager offer is asked about: `waiting` at once, while the sender is
        // still sending the next ones (it stops soon after, until the answer).
        assert!(offered(&mut s).eager);
        let waiting_for = WaitFor::Decision;
        answer(&mut s, ReceiverMsg::Waiting { waiting_for });
        take_file(&mut s, LEN as u64);
        let mut sent = 1;
        while !silent_for(&mut s, Duration::from_millis(500)) {
            assert!(offered(&mut s).eager);
            take_file(&mut s, LEN as u64);
            sent += 1;
        }
        // Usually the sender hears the `waiting` between its chunks and stops soon after
        // (the path the fix is about); on a loaded machine it may have sent every file
        // before it read it, and then hears it while it waits for answers: the user must
        // be allowed the time either way.
        if sent == COUNT - 1 {
            eprintln!("every file went out before the sender read the waiting");
        }
        // The user thinks for longer than the answer timeout (not a synchronisation: the
        // very delay under test), then says yes to it and to the files sent meanwhile.
        std::thread::sleep(Duration::from_millis(2500));
        for i in 1..=sent {
            accept(&mut s, &format!("f{i:02}.bin"), None);
            let saved_as = format!("f{i:02}.bin");
            answer(&mut s, ReceiverMsg::Verified { saved_as });
        }
        // The rest, answered as they come.
        for i in sent + 1..COUNT {
            assert!(offered(&mut s).eager);
            take_file(&mut s, LEN as u64);
            accept(&mut s, &format!("f{i:02}.bin"), None);
            let saved_as = format!("f{i:02}.bin");
            answer(&mut s, ReceiverMsg::Verified { saved_as });
        }
        assert!(next_frame(&mut s).is_none());
    });
    let (sink, _events) = event_channel(None);
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(1);
    opts.decision_timeout = Duration::from_secs(20);
    let outcomes = send_files(&opts, &files, &sink, &CancelToken::new()).unwrap();
    receiver.join().unwrap();
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
}

/// A Ferry receiver never asks its user about an eager offer: the sender's data is already
/// on its way, and a receiver that stops reading while its user decides leaves the sender
/// blocked in a write once the bytes in flight outgrow the two sockets' buffers (on a LAN,
/// far less than the 4 MiB window), until the write timeout fails the connection. An eager
/// file the batch "yes" does not cover (here: it grew after the batch was announced) is
/// declined with `offer_again` instead, its data dropped and no refused row shown; the
/// sender offers it again the ordinary way after the others, and only then is the user
/// asked about it (and here says yes: it arrives).
#[test]
fn an_eager_file_the_batch_yes_does_not_cover_is_asked_about_when_offered_again() {
    let src = tempfile::tempdir().unwrap();
    let files = files(src.path(), 4, 1000);
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let sending = {
        let files = files.clone();
        std::thread::spawn(move || {
            let (sink, _events) = event_channel(None);
            let opts = SendOptions::new(addr.to_string());
            send_files(&opts, &files, &sink, &CancelToken::new()).unwrap()
        })
    };
    let pending = |events: &crossbeam_channel::Receiver<Event>| {
        wait_for(events, |e| match e {
            Event::Server(ServerEvent::OfferPending(o)) => Some(o.offer_id),
            _ => None,
        })
    };
    // The batch question: meanwhile f02 grows, so its offer no longer matches the batch.
    let batch = pending(&events);
    std::fs::write(&files[2].path, data(2000, 2)).unwrap();
    server.decide(batch, true);
    // Any further question is answered yes (so the upload ends either way): which files
    // it was about, and whether any row said a file was refused.
    let mut asked_again = Vec::new();
    let mut refused_rows = 0;
    let outcomes = loop {
        if sending.is_finished() {
            break sending.join().unwrap();
        }
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Server(ServerEvent::OfferPending(o))) => {
                asked_again.push(o.names.clone());
                server.decide(o.offer_id, true);
            }
            Ok(Event::Transfer(TransferEvent::Failed { .. })) => refused_rows += 1,
            _ => {}
        }
    };
    assert_eq!(asked_again, [vec!["f02.bin".to_owned()]], "{outcomes:?}");
    assert_eq!(refused_rows, 0, "the eager try shows no refused row");
    for (i, outcome) in outcomes.iter().enumerate() {
        let name = format!("f{i:02}.bin");
        assert!(
            *outcome
                == FileOutcome::Verified {
                    saved_as: name,
                    resumed_from: 0
                },
            "{i}: {outcome:?}"
        );
    }
    let mut names = names_in(dst.path());
    names.sort();
    assert_eq!(names, ["f00.bin", "f01.bin", "f02.bin", "f03.bin"]);
    assert_eq!(
        std::fs::read(dst.path().join("f02.bin")).unwrap(),
        data(2000, 2)
    );
}

/// A verified file held for a batch sync is not kept waiting on a declined eager file whose
/// data stops coming: the discard pauses, like a file's data, to name it once the batch is
/// due. Before the fix its verdict waited for the declined file's last byte (or the idle
/// timeout).
#[test]
fn a_held_verdict_is_not_kept_waiting_on_a_declined_eager_files_stalled_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.path().to_owned());
    config.fsync = true;
    let (server, _events) = start_server_with(config);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(&offer_frame("a.txt", 3, false)).unwrap();
    assert!(matches!(
        read_answer(&mut s),
        ReceiverMsg::Accept {
            eager_max: Some(_),
            ..
        }
    ));
    // a.txt's end with the eager offer of b.bin behind it (so a.txt is held), b.bin
    // declined by policy, and only the first half of its data: then the sender stalls.
    server.set_policy(AcceptPolicy::TrustedOnly);
    let b = data(100 * 1024, 3);
    let mut burst = chunk_and_end(b"aaa", blake3::hash(b"aaa"));
    burst.extend(offer_frame("b.bin", b.len(), true));
    burst.extend(encode_chunk_header(50 * 1024));
    burst.extend_from_slice(&b[..50 * 1024]);
    s.write_all(&burst).unwrap();
    let mut answers = vec![read_answer(&mut s), read_answer(&mut s)];
    answers.sort_by_key(|a| matches!(a, ReceiverMsg::Verified { .. }));
    assert!(
        matches!(&answers[0], ReceiverMsg::Decline { .. }),
        "{answers:?}"
    );
    assert_eq!(
        answers[1],
        ReceiverMsg::Verified {
            saved_as: "a.txt".into()
        }
    );
    // The rest of b.bin comes; the connection goes on in step.
    server.set_policy(AcceptPolicy::Everyone);
    let mut rest = chunk_and_end(&b[50 * 1024..], blake3::hash(&b));
    rest.extend(offer_frame("c.txt", 3, true));
    rest.extend(chunk_and_end(b"ccc", blake3::hash(b"ccc")));
    s.write_all(&rest).unwrap();
    assert!(matches!(read_answer(&mut s), ReceiverMsg::Accept { .. }));
    assert_eq!(
        read_answer(&mut s),
        ReceiverMsg::Verified {
            saved_as: "c.txt".into()
        }
    );
    let mut names = names_in(dir.path());
    names.sort();
    assert_eq!(names, ["a.txt", "c.txt"]);
}
