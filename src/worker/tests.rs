//! The engine's promises that need its seams: a hung host-name lookup does not hold up other
//! commands, and work that cannot be started fails its rows instead of leaving them active.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::Command;
use super::Seams;
use super::engine::Worker;
use crate::events::{Event, FailureKind, NoteEvent, TransferEvent, event_channel};
use crate::notes::NotesConfig;
use crate::transfer::{OutgoingFile, SendOptions};

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits for the first event `pick` accepts, skipping the others.
fn wait_for<T>(events: &Receiver<Event>, what: &str, pick: impl Fn(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

fn start_notes(worker: &Worker, events: &Receiver<Event>) {
    worker.send(Command::StartNotes(NotesConfig::new(
        Ipv4Addr::LOCALHOST.into(),
        0,
    )));
    wait_for(events, "notes listening", |e| match e {
        Event::Note(NoteEvent::Listening { addr }) => Some(addr),
        _ => None,
    });
}

fn file_in(dir: &tempfile::TempDir, name: &str) -> OutgoingFile {
    let path = dir.path().join(name);
    std::fs::write(&path, b"some bytes").unwrap();
    OutgoingFile::new(path)
}

#[test]
fn cancel_is_handled_while_a_host_name_lookup_hangs() {
    let (entered_tx, entered) = crossbeam_channel::bounded::<String>(1);
    let (release, gate) = crossbeam_channel::bounded::<Vec<SocketAddr>>(1);
    let mut seams = Seams::system();
    seams.lookup_host = Arc::new(move |to| {
        let _ = entered_tx.send(to.to_owned());
        // Bounded, so a failing test ends instead of leaving the engine stuck here.
        gate.recv_timeout(2 * DEADLINE).map_err(io::Error::other)
    });
    let (sink, events) = event_channel(None);
    let worker = Worker::spawn_with(sink, seams).unwrap();
    start_notes(&worker, &events);

    // A note to a name whose lookup hangs until the test says otherwise.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    worker.send(Command::SendNote {
        to: "slow.example:9".into(),
        text: "hello".into(),
        key: None,
    });
    let looked_up = entered.recv_timeout(DEADLINE).expect("the lookup starts");
    assert_eq!(looked_up, "slow.example:9");

    // An upload to a receiver that never answers, cancelled while the lookup still hangs.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(&dir, "a.txt");
    let id = file.id;
    let opts = SendOptions::new(receiver.local_addr().unwrap().to_string());
    worker.send(Command::Send {
        opts: Box::new(opts),
        files: vec![file],
    });
    // Accepted on a thread, so an engine stuck in the lookup fails the test at the deadline.
    let (accepted_tx, accepted) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || accepted_tx.send(receiver.accept()));
    let (mut conn, _) = accepted
        .recv_timeout(DEADLINE)
        .expect("the upload connects while the lookup hangs")
        .unwrap();
    worker.send(Command::Cancel(id));
    let ended = wait_for(&events, "the upload's end", |e| match e {
        Event::Transfer(e @ (TransferEvent::Cancelled { .. } | TransferEvent::Failed { .. })) => {
            Some(e)
        }
        _ => None,
    });
    assert_eq!(ended, TransferEvent::Cancelled { id, by_peer: false });
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest); // the sender closes its side after a cancel

    // Once the lookup answers, the note goes to the address it gave.
    let peer_addr = peer.local_addr().unwrap();
    release.send(vec![peer_addr]).unwrap();
    let sent_to = wait_for(&events, "the note sent", |e| match e {
        Event::Note(NoteEvent::Sent { to, .. }) => Some(to),
        Event::Note(NoteEvent::Error { reason }) => panic!("note failed: {reason}"),
        _ => None,
    });
    assert_eq!(sent_to, peer_addr);
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}

#[test]
fn work_that_cannot_start_fails_every_row_with_its_reason() {
    let mut seams = Seams::system();
    seams.spawner = Arc::new(|name, _work| Err(io::Error::other(format!("no room for {name}"))));
    let (sink, events) = event_channel(None);
    let worker = Worker::spawn_with(sink, seams).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let files = vec![file_in(&dir, "a.txt"), file_in(&dir, "b.txt")];
    let mut ids: Vec<_> = files.iter().map(|f| f.id).collect();
    worker.send(Command::Send {
        opts: Box::new(SendOptions::new("127.0.0.1:9")),
        files,
    });
    for _ in 0..2 {
        let (id, reason) = wait_for(&events, "a failed row", |e| match e {
            Event::Transfer(TransferEvent::Failed { id, failure }) => Some((id, failure)),
            Event::Transfer(other) => panic!("unexpected {other:?}"),
            _ => None,
        });
        assert_eq!(reason.kind, FailureKind::NotStarted);
        assert_eq!(
            reason.detail.as_deref(),
            Some("cannot start the upload: no room for ferry-send")
        );
        ids.retain(|&i| i != id);
    }
    assert!(ids.is_empty(), "rows never failed: {ids:?}");

    // A note to a host name needs the lookup thread, which cannot start either.
    start_notes(&worker, &events);
    worker.send(Command::SendNote {
        to: "somewhere.example:9".into(),
        text: "hi".into(),
        key: None,
    });
    let reason = wait_for(&events, "a note error", |e| match e {
        Event::Note(NoteEvent::Error { reason }) => Some(reason),
        _ => None,
    });
    assert_eq!(
        reason,
        "cannot look somewhere.example:9 up: no room for ferry-lookup"
    );
}

/// An upload from the window tells an encrypted receiver where the window's own server
/// listens, so a receiver that comes to trust it ("Accept and trust") saves it there.
#[test]
fn an_upload_tells_the_receiver_where_this_windows_own_server_listens() {
    use crate::events::ServerEvent;
    use crate::secure::{Identity, Keyring};
    use crate::transfer::{AcceptPolicy, Decision, ServerConfig, ServerHandle};

    let (sink, events) = event_channel(None);
    let worker = Worker::spawn_with(sink, Seams::system()).unwrap();
    let (own_dir, their_dir, src) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = ServerConfig::new(Ipv4Addr::LOCALHOST.into(), 0, own_dir.path().to_owned());
    worker.send(Command::StartServer(Box::new(config)));
    let own = wait_for(&events, "the window's server listening", |e| match e {
        Event::Server(ServerEvent::Listening { addr }) => Some(addr),
        _ => None,
    });
    // Another device, which asks before it takes files from one it does not trust.
    let homes = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keyring = |dir: &std::path::Path| {
        Identity::load_or_create(dir).unwrap();
        Keyring::load(dir).unwrap()
    };
    let (theirs, ours) = (keyring(homes.0.path()), keyring(homes.1.path()));
    let mut config = ServerConfig::new(Ipv4Addr::LOCALHOST.into(), 0, their_dir.path().into());
    config.keyring = Some(theirs.clone());
    config.policy = AcceptPolicy::Trusted;
    let (their_sink, their_events) = event_channel(None);
    let receiver = ServerHandle::start(config, their_sink).unwrap();
    let mut opts = SendOptions::new(receiver.local_addr().to_string());
    opts.keyring = Some(ours.clone());
    let file = file_in(&src, "a.txt");
    let id = file.id;
    worker.send(Command::Send {
        opts: Box::new(opts),
        files: vec![file],
    });
    let offer = wait_for(&their_events, "the offer", |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer),
        _ => None,
    });
    receiver.answer(offer.offer_id, Decision::AcceptAndTrust);
    wait_for(&events, "the upload verified", |e| match e {
        Event::Transfer(TransferEvent::Finished { id: done, .. }) if done == id => Some(()),
        Event::Transfer(TransferEvent::Failed { id: done, failure }) if done == id => {
            panic!("the upload failed: {failure}")
        }
        _ => None,
    });
    let pinned = theirs.trust.by_key(ours.identity.public_key()).unwrap();
    let expected = format!("127.0.0.1:{}", own.port());
    assert_eq!(pinned.last_address.as_deref(), Some(expected.as_str()));
}

/// A note typed in the window to a number the resolver reads as another address
/// (`0177.0.0.1` is 127.0.0.1) is refused, never looked up nor sent.
#[test]
fn a_note_to_a_number_the_resolver_reads_as_another_address_is_refused() {
    let (looked_tx, looked) = crossbeam_channel::unbounded::<String>();
    let mut seams = Seams::system();
    seams.lookup_host = Arc::new(move |to| {
        let _ = looked_tx.send(to.to_owned());
        std::net::ToSocketAddrs::to_socket_addrs(to).map(Iterator::collect)
    });
    let (sink, events) = event_channel(None);
    let worker = Worker::spawn_with(sink, seams).unwrap();
    start_notes(&worker, &events);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    worker.send(Command::SendNote {
        to: format!("0177.0.0.1:{}", peer.local_addr().unwrap().port()),
        text: "hello".into(),
        key: None,
    });
    let reason = wait_for(&events, "the note refused", |e| match e {
        Event::Note(NoteEvent::Error { reason }) => Some(reason),
        Event::Note(NoteEvent::Sent { to, .. }) => panic!("sent to {to}"),
        _ => None,
    });
    assert!(reason.contains("is not an IPv4 address"), "{reason}");
    assert!(looked.try_recv().is_err(), "looked up");
}
