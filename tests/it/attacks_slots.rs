//! Hostile peers against the server's connection slots and prompts (issue 8): slowloris
//! headers, trickled data, one address taking every slot, endless files on one connection,
//! answers to `--ask` that could land on the wrong offer, and what an interrupted upload
//! says it kept.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, ServerEvent, TransferEvent, event_channel};
use ferry::protocol::{
    Header, ReceiverMsg, SenderMsg, WaitFor, encode_chunk_header, encode_sender_msg,
};
use ferry::transfer::{FileOutcome, MinRate, OutgoingFile, SendOptions, ServerConfig, send_files};

use crate::util::*;

/// A TCP connection from a chosen loopback source address (Linux routes all of 127/8 to lo).
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(source), 0).into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

fn offer(name: &str, size: u64, key: Option<&str>) -> SenderMsg {
    SenderMsg::Offer(Header {
        eager: false,
        file_name: name.into(),
        file_size: size,
        msg: String::new(),
        resume_key: key.map(str::to_owned),
    })
}

fn send_msg(stream: &mut TcpStream, msg: &SenderMsg) {
    stream.write_all(&encode_sender_msg(msg).unwrap()).unwrap();
}

/// Writes `bytes` one at a time, every `gap`, until the server hangs up (true) or the test's
/// deadline passes (false).
fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> bool {
    let deadline = Instant::now() + DEADLINE;
    for byte in bytes.iter().cycle() {
        if Instant::now() > deadline {
            return false;
        }
        if stream.write_all(&[*byte]).is_err() {
            return true;
        }
        thread::sleep(gap); // the attack itself is slow on purpose, not a synchronisation
    }
    false
}

#[test]
fn slowloris_and_trickling_peers_cannot_starve_a_legitimate_upload() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_connections = 8;
    config.max_per_peer = 4;
    config.header_deadline = Duration::from_secs(1);
    config.min_rate = MinRate {
        bytes_per_sec: 1024,
        window: Duration::from_secs(2),
    };
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let mut attackers = Vec::new();
    // Four slowloris connections from 127.0.0.2: a header, one byte every 200 ms.
    for _ in 0..4 {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
        attackers.push(thread::spawn(move || {
            let frame = plain_frame(&plain_header("slow.txt", 10, ""));
            trickle(&mut stream, &frame, Duration::from_millis(200))
        }));
    }
    // Four from 127.0.0.3 that announce 1 GB and trickle it.
    for i in 0..4 {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr);
        stream
            .write_all(&plain_frame(&plain_header(&format!("big{i}"), 1 << 30, "")))
            .unwrap();
        attackers.push(thread::spawn(move || {
            trickle(&mut stream, b"x", Duration::from_millis(200))
        }));
    }
    // A fifth from 127.0.0.2 is over that address's share, and is told so.
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
    fifth.set_read_timeout(Some(DEADLINE)).unwrap();
    match read_answer(&mut fifth) {
        ReceiverMsg::Decline { reason, .. } => assert!(
            reason.contains("your address already has 4 connections open"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }

    // The legitimate sender keeps trying; it must get through and be verified.
    let path = src.path().join("report.pdf");
    std::fs::write(&path, data(200_000, 8)).unwrap();
    let started = Instant::now();
    let mut busy_seen = Vec::new();
    let outcome = loop {
        assert!(
            started.elapsed() < DEADLINE,
            "the legitimate upload never got a slot: {busy_seen:?}"
        );
        let (sink, _events) = event_channel(None);
        let outcomes = send_files(
            &SendOptions::new(addr.to_string()),
            &[OutgoingFile::new(path.clone())],
            &sink,
            &CancelToken::new(),
        );
        match outcomes.as_deref() {
            Ok([FileOutcome::Verified { .. }]) => break outcomes.unwrap().remove(0),
            other => busy_seen.push(format!("{other:?}")),
        }
        thread::sleep(Duration::from_millis(100)); // a user's retry, not a synchronisation
    };
    assert!(
        matches!(outcome, FileOutcome::Verified { ref saved_as, .. } if saved_as == "report.pdf")
    );
    assert_eq!(
        std::fs::read(dst.path().join("report.pdf")).unwrap(),
        data(200_000, 8)
    );
    // Every attacker was dropped by the server, for the reason its attack deserves.
    let mut slow_headers = 0;
    let mut slow_data = 0;
    let deadline = Instant::now() + DEADLINE;
    while slow_headers < 4 || slow_data < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Server(ServerEvent::ConnectionError { reason, .. }))
                if reason == "a header took longer than 1 s to arrive" =>
            {
                slow_headers += 1
            }
            Ok(Event::Transfer(TransferEvent::Failed { failure, .. }))
                if failure
                    .to_string()
                    .starts_with("upload too slow: under 1024 bytes/s for 2 s") =>
            {
                slow_data += 1
            }
            Ok(_) => {}
            Err(_) => panic!("dropped: {slow_headers} slow headers, {slow_data} slow uploads"),
        }
    }
    for attacker in attackers {
        assert!(
            attacker.join().unwrap(),
            "the server hung up on every attacker"
        );
    }
    assert!(
        !busy_seen.is_empty(),
        "the attackers did hold every slot for a while"
    );
    assert!(
        busy_seen
            .iter()
            .any(|b| b.contains("server busy: all 8 connections are in use")),
        "{busy_seen:?}"
    );
}

#[test]
fn one_connection_cannot_send_endless_files() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_files_per_connection = 5;
    let (server, events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    for i in 0..7 {
        let _ = stream.write_all(&plain_frame(&plain_header(&format!("f{i}"), 1, "")));
        let _ = stream.write_all(b"x");
    }
    let reason = wait_connection_error(&events);
    assert_eq!(reason, "too many files on one connection (the limit is 5)");
    assert_eq!(names_in(dst.path()), ["f0", "f1", "f2", "f3", "f4"]);
}

#[test]
fn a_ferry_sender_over_the_file_limit_is_told_why() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_files_per_connection = 2;
    let (server, _events) = start_server_with(config);
    let files: Vec<_> = (0..3)
        .map(|i| {
            let path = src.path().join(format!("f{i}"));
            std::fs::write(&path, "x").unwrap();
            OutgoingFile::new(path)
        })
        .collect();
    let outcomes = send_quietly(server.local_addr(), &files);
    assert!(matches!(outcomes[0], FileOutcome::Verified { .. }));
    assert!(matches!(outcomes[1], FileOutcome::Verified { .. }));
    match &outcomes[2] {
        FileOutcome::Failed(failure) => {
            assert_eq!(failure.kind, ferry::events::FailureKind::ReceiverFailed);
            assert_eq!(
                failure.detail.as_deref(),
                Some("too many files on one connection (the limit is 2)")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// An offer accepted, `sent` bytes of a `size`-byte file, then the sender vanishes: the
/// failure says exactly what is on disk, and that is every byte that arrived.
fn interrupted_after(size: u64, sent: usize) -> (String, Vec<String>, tempfile::TempDir) {
    let dst = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dst.path());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    send_msg(&mut stream, &offer("cut.bin", size, Some(&"ab".repeat(32))));
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Accept { offset: 0, .. }
    ));
    let bytes = data(sent, 3);
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = rest.len().min(1024 * 1024);
        if n > 0 {
            stream.write_all(&encode_chunk_header(n)).unwrap();
            stream.write_all(&rest[..n]).unwrap();
        }
        rest = &rest[n..];
    }
    if sent == 0 {
        // Half a chunk header: the data never starts.
        stream.write_all(&[1]).unwrap();
    } else {
        // A chunk announced in full, cut short.
        stream.write_all(&encode_chunk_header(1000)).unwrap();
        stream.write_all(&[7u8; 10]).unwrap();
    }
    stream.shutdown(Shutdown::Both).unwrap();
    let reason = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        _ => None,
    });
    drop(server);
    (reason, names_in(dst.path()), dst)
}

#[test]
fn an_interrupted_upload_keeps_every_byte_that_arrived_and_says_how_many() {
    // A small file (one buffer) and a large one (the two-thread pipeline), each cut inside a
    // buffer, so the last, unfilled buffer must still reach the disk.
    for (size, sent) in [(100_000u64, 700usize), (16 << 20, (5 << 20) + 123)] {
        let (reason, names, dst) = interrupted_after(size, sent);
        let kept = sent + 10;
        assert!(
            reason.ends_with(&format!(
                "; the {kept} bytes received are kept, sending again resumes"
            )),
            "{reason}"
        );
        assert_eq!(names.len(), 1, "{names:?}");
        let part = std::fs::read(dst.path().join(&names[0])).unwrap();
        assert!(names[0].ends_with(".ferry.part"), "{names:?}");
        let mut expected = data(sent, 3);
        expected.extend_from_slice(&[7u8; 10]);
        assert!(part == expected, "the part holds exactly what arrived");
    }
    let (reason, names, _dst) = interrupted_after(100_000, 0);
    assert!(
        reason.ends_with("; nothing had arrived, so nothing is kept"),
        "{reason}"
    );
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_yes_covers_each_listed_file_once_and_every_file_is_listed() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.policy = ferry::transfer::AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    // 300 files with long names need two batch frames: all are listed in the prompt.
    let long = "长".repeat(45);
    let paths: Vec<_> = (0..300)
        .map(|i| {
            let path = src.path().join(format!("{i:04}-{long}.txt"));
            std::fs::write(&path, i.to_string()).unwrap();
            OutgoingFile::new(path)
        })
        .collect();
    let addr = server.local_addr();
    let sender = thread::spawn(move || {
        // Nobody reads the sender's events here: dropping the receiver makes them no-ops.
        let (sink, _) = event_channel(None);
        send_files(
            &SendOptions::new(addr.to_string()),
            &paths,
            &sink,
            &CancelToken::new(),
        )
        .unwrap()
    });
    let (offer_id, count, names, sizes) = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(o)) => {
            Some((o.offer_id, o.count, o.names.clone(), o.sizes.clone()))
        }
        _ => None,
    });
    assert_eq!(count, 300);
    assert_eq!(names.len(), 300, "every file is listed");
    assert_eq!(sizes.len(), 300);
    assert_eq!(names[299], format!("0299-{long}.txt"));
    server.decide(offer_id, true);
    let outcomes = sender.join().unwrap();
    let unverified: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, FileOutcome::Verified { .. }))
        .collect();
    assert!(
        unverified.is_empty(),
        "one yes covers the batch: {unverified:?}"
    );

    // A raw sender that lists a.txt once and offers it twice: the second is asked anew.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    send_msg(
        &mut stream,
        &SenderMsg::Batch {
            count: 2,
            bytes: 10,
            names: vec!["a.txt".into()],
            sizes: vec![5],
        },
    );
    send_msg(&mut stream, &offer("a.txt", 5, None));
    let first = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(o)) => Some((o.offer_id, o.names.clone())),
        _ => None,
    });
    assert_eq!(first.1, ["a.txt"]);
    server.decide(first.0, true);
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    ));
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Accept { .. }
    ));
    stream.write_all(&encode_chunk_header(5)).unwrap();
    stream.write_all(b"hello").unwrap();
    send_msg(
        &mut stream,
        &SenderMsg::End {
            blake3: *blake3::hash(b"hello").as_bytes(),
        },
    );
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Verified { .. }
    ));
    send_msg(&mut stream, &offer("a.txt", 5, None));
    let second = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(o)) => Some(o.offer_id),
        _ => None,
    });
    assert_ne!(second, first.0, "the same name again is a new question");
    server.decide(second, false);
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    ));
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Decline { .. }
    ));
}

/// A sender that quits while `serve --ask` waits for an answer: the prompt above does not
/// seem to wait on, a line says the offer closed, and a late answer is told it is gone.
#[test]
fn serve_ask_says_when_an_offer_closes_before_it_is_answered() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dst.path());
    let path = src.path().join("notes.txt");
    std::fs::write(&path, "minutes").unwrap();
    let mut sender = ferry()
        .args(["send", "--to", &addr.to_string()])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = offer_number(&wait_line(&lines, "Accept offer"));
    // Quits as on Ctrl-C or a logout: cancels, says goodbye, closes.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &sender.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    sender.wait().unwrap();
    let closed = wait_line(&lines, "closed before it was answered");
    assert!(
        closed.starts_with(&format!("offer {id} from 127.0.0.1:")),
        "{closed}"
    );
    writeln!(stdin, "y {id}").unwrap();
    wait_line(&lines, &format!("no offer {id} is waiting"));
    assert!(names_in(dst.path()).is_empty());
}

#[test]
fn serve_ask_applies_an_answer_to_the_offer_it_names_only() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dst.path());
    // The attacker's batch arrives first and waits; then the colleague's file.
    let mut attacker = TcpStream::connect(addr).unwrap();
    attacker.set_read_timeout(Some(DEADLINE)).unwrap();
    send_msg(
        &mut attacker,
        &SenderMsg::Batch {
            count: 1,
            bytes: 4,
            names: vec![".bashrc".into()],
            sizes: vec![4],
        },
    );
    send_msg(&mut attacker, &offer(".bashrc", 4, None));
    let attack_prompt = wait_line(&lines, "Accept offer");
    let attack_id = offer_number(&attack_prompt);
    let path = src.path().join("notes.txt");
    std::fs::write(&path, "minutes").unwrap();
    let sender = ferry()
        .args(["send", "--to", &addr.to_string()])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prompt = wait_line(&lines, "Accept offer");
    let id = offer_number(&prompt);
    assert_ne!(id, attack_id);
    // "y" alone decides nothing; "y ID" decides the colleague's offer only.
    writeln!(stdin, "y").unwrap();
    wait_line(&lines, "with the offer's number");
    writeln!(stdin, "y {id}").unwrap();
    let out = sender.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dst.path().join("notes.txt")).unwrap(),
        "minutes"
    );
    assert!(
        names_in(dst.path()).iter().all(|n| !n.contains("bashrc")),
        "the attacker's offer is still undecided"
    );
    writeln!(stdin, "n {attack_id}").unwrap();
    assert!(matches!(
        read_answer(&mut attacker),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    ));
    assert!(matches!(
        read_answer(&mut attacker),
        ReceiverMsg::Decline { .. }
    ));
}

/// Asking, with a sender that is still talking: bytes that arrive while the user decides
/// neither withdraw the question (the peer is alive) nor keep a stopping server waiting.
#[test]
fn a_talking_sender_keeps_its_question_and_never_delays_a_stop() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.policy = ferry::transfer::AcceptPolicy::Ask;
    config.decision_timeout = Duration::from_secs(120);
    let (server, events) = start_server_with(config);
    let pending = |events: &crossbeam_channel::Receiver<Event>| {
        wait_for(events, |e| match e {
            Event::Server(ServerEvent::OfferPending(o)) => Some(o.offer_id),
            _ => None,
        })
    };

    // A byte after the question was asked: the question stays open and can be answered.
    let mut talker = TcpStream::connect(server.local_addr()).unwrap();
    talker.set_read_timeout(Some(DEADLINE)).unwrap();
    send_msg(&mut talker, &offer("a.txt", 5, None));
    assert!(matches!(
        read_answer(&mut talker),
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision
        }
    ));
    let first = pending(&events);
    talker.write_all(&encode_chunk_header(5)).unwrap();
    // Bounded look for a withdrawal, which must not come (it came at once before).
    let withdrawn = events.recv_timeout(Duration::from_secs(1));
    assert!(
        !matches!(
            withdrawn,
            Ok(Event::Server(ServerEvent::OfferClosed { .. }))
        ),
        "{withdrawn:?}"
    );
    server.decide(first, true);
    assert!(matches!(
        read_answer(&mut talker),
        ReceiverMsg::Accept { .. }
    ));

    // Offer and extra bytes in one write (nothing left to watch): a stop still ends the
    // question at once instead of waiting out the decision timeout.
    let mut eager = TcpStream::connect(server.local_addr()).unwrap();
    let mut bytes = encode_sender_msg(&offer("b.txt", 5, None)).unwrap();
    bytes.extend_from_slice(&encode_chunk_header(5));
    eager.write_all(&bytes).unwrap();
    pending(&events);
    let stopping = Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(60),
        "stop waited {:?} for an open question",
        stopping.elapsed()
    );
}

/// Frames that each arrive in time still cannot hold a slot forever: a batch announcement
/// as a whole, and the cancel frame after a cancel marker, keep to the header deadline.
#[test]
fn trickled_batches_and_cancel_frames_are_held_to_the_header_deadline() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.header_deadline = Duration::from_secs(1);
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();

    // Empty batch frames, each whole, one every 200 ms.
    let mut batcher = TcpStream::connect(addr).unwrap();
    let frame = encode_sender_msg(&SenderMsg::Batch {
        count: 1,
        bytes: 1,
        names: Vec::new(),
        sizes: Vec::new(),
    })
    .unwrap();
    let batching = thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if batcher.write_all(&frame).is_err() {
                return true;
            }
            thread::sleep(Duration::from_millis(200)); // the attack's own pace
        }
        false
    });
    let reason = wait_connection_error(&events);
    assert_eq!(reason, "a header took longer than 1 s to arrive");
    assert!(
        batching.join().unwrap(),
        "the server hung up on the batcher"
    );

    // A cancel marker, then its cancel frame a byte at a time.
    let mut canceller = TcpStream::connect(addr).unwrap();
    canceller.set_read_timeout(Some(DEADLINE)).unwrap();
    send_msg(&mut canceller, &offer("c.bin", 10, None));
    assert!(matches!(
        read_answer(&mut canceller),
        ReceiverMsg::Accept { .. }
    ));
    canceller.write_all(&encode_chunk_header(0)).unwrap();
    let cancel = encode_sender_msg(&SenderMsg::Cancel {
        code: ferry::protocol::CancelCode::User,
        reason: "x".repeat(200),
    })
    .unwrap();
    let trickling =
        thread::spawn(move || trickle(&mut canceller, &cancel, Duration::from_millis(100)));
    let failure = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        _ => None,
    });
    assert!(
        failure.starts_with("a header took longer than 1 s to arrive"),
        "{failure}"
    );
    assert!(
        trickling.join().unwrap(),
        "the server hung up on the trickler"
    );
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
}
