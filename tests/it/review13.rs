//! Review of "offer again" for eager files and of a stopping server (attacker and
//! maintainer): the cases it found wrong, each failing before its fix. A scripted receiver
//! meets the real sender, and a scripted sender the real server, on real sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Event, FailureKind, TransferEvent, event_channel};
use ferry::protocol::session::EAGER_WINDOW_BYTES;
use ferry::protocol::{
    Chunk, Header, PART_SUFFIX, ReceiverMsg, SenderMsg, decode_chunk_header, encode_sender_msg,
};
use ferry::transfer::{
    AcceptPolicy, FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files,
};

use crate::scripted::{accept, answer, next_frame, offered, take_file, verified};
use crate::util::{LOOPBACK, data, start_server_with};

/// An eager file whose own sending ended first (it shrank under the sender: cancel marker,
/// failed) and which the receiver then declines with `offer_again` keeps its outcome: it is
/// not offered a second time, and its row gets no second `Started` after it failed (before
/// the fix it was sent again, its row restarted and never ended, and the verdict of that
/// second try was dropped).
#[test]
fn an_eager_file_that_ended_its_own_way_is_not_offered_again() {
    const BIG: usize = EAGER_WINDOW_BYTES as usize;
    let dir = tempfile::tempdir().unwrap();
    let first = OutgoingFile::new(dir.path().join("a.bin"));
    std::fs::write(&first.path, data(1000, 1)).unwrap();
    // Fills the eager window by bytes: the next file waits, opened, for its answer.
    let big = OutgoingFile::new(dir.path().join("b.bin"));
    std::fs::write(&big.path, data(BIG, 2)).unwrap();
    let shrinking = OutgoingFile::new(dir.path().join("x.bin"));
    std::fs::write(&shrinking.path, data(1000, 3)).unwrap();
    let x_id = shrinking.id;
    let x_path = shrinking.path.clone();
    let files = vec![first, big, shrinking];

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (shrunk_tx, shrunk_rx) = crossbeam_channel::bounded::<()>(1);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        assert!(!offered(&mut s).eager);
        accept(&mut s, "a.bin", Some(EAGER_WINDOW_BYTES));
        take_file(&mut s, 1000);
        let b = offered(&mut s);
        assert!(b.eager && b.file_name == "b.bin", "{b:?}");
        take_file(&mut s, BIG as u64);
        // x.bin waits for room (opened, its size taken); it shrinks meanwhile.
        shrunk_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        verified(&mut s, "a.bin");
        accept(&mut s, "b.bin", None);
        let x = offered(&mut s);
        assert!(x.eager && x.file_name == "x.bin", "{x:?}");
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).unwrap();
        assert_eq!(decode_chunk_header(prefix).unwrap(), Chunk::Cancel);
        assert!(matches!(next_frame(&mut s), Some(SenderMsg::Cancel { .. })));
        verified(&mut s, "b.bin");
        answer(
            &mut s,
            ReceiverMsg::Decline {
                reason: "would have to ask".into(),
                offer_again: true,
            },
        );
        match next_frame(&mut s) {
            None => {}
            Some(SenderMsg::Offer(again)) => {
                // Let the sender end before failing.
                let reason = "no".into();
                let offer_again = false;
                answer(
                    &mut s,
                    ReceiverMsg::Decline {
                        reason,
                        offer_again,
                    },
                );
                panic!("the file whose eager try failed was offered again: {again:?}");
            }
            Some(other) => panic!("unexpected {other:?}"),
        }
    });
    let (sink, events) = event_channel(None);
    let sending = std::thread::spawn(move || {
        let mut opts = SendOptions::new(addr.to_string());
        opts.answer_timeout = Duration::from_secs(20);
        send_files(&opts, &files, &sink, &CancelToken::new()).unwrap()
    });
    // x.bin is started (opened, its size taken) before it waits for room in the window.
    let mut seen = Vec::new();
    loop {
        let event = events.recv_timeout(Duration::from_secs(20)).unwrap();
        let started =
            matches!(&event, Event::Transfer(TransferEvent::Started { id, .. }) if *id == x_id);
        seen.push(event);
        if started {
            break;
        }
    }
    std::fs::File::options()
        .write(true)
        .open(&x_path)
        .unwrap()
        .set_len(0)
        .unwrap();
    shrunk_tx.send(()).unwrap();
    let outcomes = sending.join().unwrap();
    receiver.join().unwrap();
    seen.extend(events.iter());
    assert!(
        matches!(&outcomes[2], FileOutcome::Failed(f) if f.kind == FailureKind::LocalFile),
        "{outcomes:?}"
    );
    let x_events: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(t) if t.id() == x_id => Some(t),
            _ => None,
        })
        .collect();
    let starts = x_events
        .iter()
        .filter(|t| matches!(t, TransferEvent::Started { .. }))
        .count();
    assert_eq!(starts, 1, "{x_events:?}");
    assert!(
        matches!(x_events.last(), Some(TransferEvent::Failed { .. })),
        "the row ends failed: {x_events:?}"
    );
}

/// The position of this process's open file `path` (`/proc/self/fdinfo`), if it is open.
pub(crate) fn open_file_position(path: &std::path::Path) -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if std::fs::read_link(entry.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .ok()?;
        let pos = info.lines().find_map(|l| l.strip_prefix("pos:"))?;
        return pos.trim().parse().ok();
    }
    None
}

/// A server that stops while it hashes a large kept partial (before it answers a resumed
/// offer) gives the hashing up: stop does not wait until gigabytes are hashed,
/// and the partial is kept for the next try. Before the fix stop waited out the grace and
/// then the whole hash.
#[test]
fn a_stop_while_a_kept_partial_is_hashed_does_not_wait_for_the_hash() {
    // Sparse: no disk used, still gigabytes to read and hash.
    const KEPT: u64 = 16 << 30;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join(format!("big.bin{PART_SUFFIX}"));
    std::fs::File::create(&part).unwrap().set_len(KEPT).unwrap();
    let part = part.canonicalize().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.path().to_owned());
    config.policy = AcceptPolicy::Everyone;
    let (server, _events) = start_server_with(config);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let offer = SenderMsg::Offer(Header {
        file_name: "big.bin".into(),
        file_size: KEPT + 1,
        msg: String::new(),
        resume_key: None,
        eager: false,
    });
    s.write_all(&encode_sender_msg(&offer).unwrap()).unwrap();
    // The server reads the partial: it is hashing (opening it for a resume leaves its
    // position at the end first, then the hash starts from the beginning).
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_file_position(&part).is_none_or(|pos| pos == 0 || pos == KEPT) {
        assert!(
            Instant::now() < deadline,
            "the server never hashed the partial"
        );
        std::thread::yield_now();
    }
    // Stopped on a thread, while this one watches how far the hash gets before the
    // partial is closed: given up at once, not carried on to its end (no timing asserted).
    let stopping = std::thread::spawn(move || server.stop());
    let mut last = 0;
    while let Some(pos) = open_file_position(&part) {
        last = pos;
        std::thread::yield_now();
    }
    stopping.join().unwrap();
    assert!(
        last < KEPT / 2,
        "the hash went on to byte {last} of {KEPT} after stop"
    );
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        KEPT,
        "partial kept"
    );
}
