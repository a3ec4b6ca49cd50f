//! Ferry to Ferry: verified uploads, a corrupting proxy, concurrency and the connection bound.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use ferry::events::{CancelToken, Event, TransferEvent, event_channel};
use ferry::protocol::Mode;
use ferry::protocol::{self, ReceiverMsg};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files};

use crate::util::*;

fn send(addr: SocketAddr, files: &[std::path::PathBuf]) -> Vec<FileOutcome> {
    let (sink, _events) = event_channel(None);
    let files: Vec<_> = files.iter().map(OutgoingFile::new).collect();
    send_files(
        &SendOptions::new(addr.to_string()),
        &files,
        &sink,
        &CancelToken::new(),
    )
    .unwrap()
}

#[test]
fn ferry_upload_is_verified_and_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files: Vec<_> = [("a.bin", 5_000_000), ("empty", 0), ("计算机五大.txt", 10)]
        .iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let path = src.path().join(name);
            std::fs::write(&path, data(*len, i as u64)).unwrap();
            path
        })
        .collect();
    let (server, events) = start_server(dst.path());
    let outcomes = send(server.local_addr(), &files);
    assert_eq!(
        outcomes,
        ["a.bin", "empty", "计算机五大.txt"].map(|n| FileOutcome::Verified {
            saved_as: n.into(),
            resumed_from: 0
        })
    );
    let (finished, failed) = wait_files(&events, 3);
    assert!(failed.is_empty());
    assert!(finished.iter().all(|(_, verified)| *verified));
    for path in &files {
        let name = path.file_name().unwrap();
        assert_eq!(
            std::fs::read(dst.path().join(name)).unwrap(),
            std::fs::read(path).unwrap()
        );
    }
    assert_eq!(names_in(dst.path()).len(), 3, "no .part left behind");
}

#[test]
fn a_flipped_byte_in_flight_fails_verification_and_keeps_no_file() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("precious.bin");
    std::fs::write(&path, data(1_000_000, 9)).unwrap();
    let (server, events) = start_server(dst.path());
    // Byte 50 000 of the stream is well inside the first data chunk.
    let proxy = Proxy::to(server.local_addr())
        .flip_byte(50_000)
        .only_one_connection()
        .start()
        .addr;
    let outcomes = send(proxy, &[path]);
    match &outcomes[..] {
        [FileOutcome::Failed(failure)] => {
            assert_eq!(failure.kind, ferry::events::FailureKind::ReceiverFailed);
            assert!(
                failure.to_string().contains("verification failed"),
                "{failure}"
            )
        }
        other => panic!("expected a verification failure, got {other:?}"),
    }
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty());
    assert!(failed[0].contains("verification failed"), "{failed:?}");
    assert!(
        names_in(dst.path()).is_empty(),
        "neither the file nor its .part remains"
    );
}

#[test]
fn sixteen_concurrent_uploads_are_all_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // All sixteen come from 127.0.0.1: allow that address every connection they need.
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_per_peer = 16;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let senders: Vec<_> = (0..16u64)
        .map(|i| {
            let path = src.path().join(format!("file-{i}.bin"));
            std::fs::write(&path, data(500_000 + i as usize * 1000, 100 + i)).unwrap();
            let plain = i % 2 == 0;
            thread::spawn(move || {
                if plain {
                    // Panics if the server answers a plain peer with a single byte.
                    let bytes = std::fs::read(&path).unwrap();
                    plain_upload(
                        addr,
                        &[(path.file_name().unwrap().to_str().unwrap(), &bytes, "")],
                    );
                    None
                } else {
                    Some(send(addr, &[path]))
                }
            })
        })
        .collect();
    for (i, sender) in senders.into_iter().enumerate() {
        let outcome = sender.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(outcome, None);
        } else {
            assert_eq!(
                outcome.unwrap(),
                [FileOutcome::Verified {
                    saved_as: format!("file-{i}.bin"),
                    resumed_from: 0,
                }]
            );
        }
    }
    let (finished, failed) = wait_files(&events, 16);
    assert!(failed.is_empty(), "{failed:?}");
    // The receiver saw each upload in its own mode: the plain half complete but unverified
    // (nobody could check them), the Ferry half verified, each under its own name.
    let mut seen: Vec<(String, bool)> = finished
        .iter()
        .map(|(path, verified)| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, *verified)
        })
        .collect();
    seen.sort_by_key(|(name, _)| name[5..name.len() - 4].parse::<u32>().unwrap());
    let expected: Vec<(String, bool)> = (0..16)
        .map(|i| (format!("file-{i}.bin"), i % 2 == 1))
        .collect();
    assert_eq!(seen, expected);
    for i in 0..16 {
        let name = format!("file-{i}.bin");
        assert_eq!(
            std::fs::read(dst.path().join(&name)).unwrap(),
            std::fs::read(src.path().join(&name)).unwrap()
        );
    }
}

#[test]
fn over_the_connection_bound_a_peer_gets_an_explicit_refusal() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_connections = 2;
    let (server, events) = start_server_with(config);
    // Silent connections take the two slots; keep opening (and holding) connections until
    // one is refused, which must happen at the third once the server has counted the first two.
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut held = Vec::new();
    let answer = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal after {} connections",
            held.len()
        );
        let mut conn = TcpStream::connect(server.local_addr()).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut prefix = [0u8; 4];
        if conn.read_exact(&mut prefix).is_ok() {
            let len = protocol::decode_frame_len(prefix).unwrap();
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body).unwrap();
            break protocol::decode_receiver_msg(&body).unwrap();
        }
        held.push(conn);
    };
    assert_eq!(held.len(), 2, "the first two connections are served");
    match answer {
        ReceiverMsg::Decline { reason, .. } => assert!(reason.contains("busy"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let reason = wait_connection_error(&events);
    assert!(reason.contains("busy"), "{reason}");
    // A Ferry client is told why.
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("x");
    std::fs::write(&path, b"x").unwrap();
    match &send(server.local_addr(), &[path])[..] {
        [FileOutcome::Declined { reason }] => assert!(reason.contains("busy"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sending_to_a_closed_port_is_a_clear_error_reported_for_every_file() {
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (sink, events) = event_channel(None);
    let file = OutgoingFile::new("/nonexistent");
    let err = send_files(
        &SendOptions::new(format!("127.0.0.1:{port}")),
        std::slice::from_ref(&file),
        &sink,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    match events.try_recv() {
        Ok(Event::Transfer(TransferEvent::Failed { id, failure })) => {
            assert_eq!(id, file.id);
            assert_eq!(failure.kind, ferry::events::FailureKind::Unreachable);
            assert!(failure.to_string().contains("cannot connect"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ferry_mode_against_a_plain_server_times_out_with_advice() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("x");
    std::fs::write(&path, b"hello").unwrap();
    let (addr, _received) = plain_server();
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = std::time::Duration::from_millis(500);
    let (sink, _events) = event_channel(None);
    let outcomes = send_files(
        &opts,
        &[OutgoingFile::new(path)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    match &outcomes[0] {
        FileOutcome::Failed(failure) => {
            assert_eq!(failure.kind, ferry::events::FailureKind::NoFerryAnswer);
            assert!(failure.to_string().contains("plain"), "{failure}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outgoing_events_report_progress_and_the_saved_name() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(dst.path().join("x.bin"), b"taken").unwrap();
    let path = src.path().join("x.bin");
    std::fs::write(&path, data(3_000_000, 5)).unwrap();
    let (server, _server_events) = start_server(dst.path());
    let (sink, events) = event_channel(None);
    let file = OutgoingFile::new(path);
    let outcomes = send_files(
        &SendOptions::new(server.local_addr().to_string()),
        std::slice::from_ref(&file),
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(
        outcomes[0],
        FileOutcome::Verified {
            saved_as: "x (1).bin".into(),
            resumed_from: 0,
        }
    );
    drop(sink);
    let events: Vec<Event> = events.iter().collect();
    let last_progress = events.iter().rev().find_map(|e| match e {
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) => Some(*bytes_done),
        _ => None,
    });
    assert_eq!(last_progress, Some(3_000_000));
    assert!(events.iter().any(|e| matches!(e,
        Event::Transfer(TransferEvent::Finished { verified: true, saved_as, .. }) if saved_as.as_deref() == Some("x (1).bin"))));
    assert!(
        matches!(events[0], Event::Transfer(TransferEvent::Started { mode: Mode::Ferry, id, .. }) if id == file.id)
    );
}
