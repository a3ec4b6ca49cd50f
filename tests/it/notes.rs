//! The notes engine on real UDP sockets on 127.0.0.1: Ferry to Ferry, Ferry to a plain peer
//! (a raw `std::net::UdpSocket`, as `nc -u` or a Python script would be), and the edges UDP
//! has (unreachable peers, big datagrams, bad UTF-8, bursts). Waits are deadlines on
//! channels or sockets, never sleeps.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ferry::events::{Direction, Event, NoteEvent, event_channel};
use ferry::notes::{NoteHistory, NotesConfig, NotesError, NotesHandle};
use ferry::protocol::{MAX_NOTE_BYTES, NoteError, NoteWarning, PLAIN_PEER_NOTE_BYTES};

/// Longest any single expected datagram may take to show up.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A Ferry notes socket on a free loopback port, with its event receiver.
fn ferry() -> (NotesHandle, Receiver<Event>) {
    let (sink, events) = event_channel(None);
    let notes = NotesHandle::start(NotesConfig::new(Ipv4Addr::LOCALHOST.into(), 0), sink).unwrap();
    (notes, events)
}

/// A plain peer: a bare UDP socket on an ephemeral loopback port.
fn raw_peer() -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

/// The address of a loopback port where nothing listens (it was free a moment ago).
fn closed_port() -> SocketAddr {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The next note, or a panic after [`TIMEOUT`].
fn next_note(events: &Receiver<Event>) -> (SocketAddr, String, SystemTime) {
    match events.recv_timeout(TIMEOUT) {
        Ok(Event::Note(NoteEvent::Received { from, text, at, .. })) => (from, text, at),
        other => panic!("expected a note within {TIMEOUT:?}, got {other:?}"),
    }
}

/// What a plain peer reads: the datagram's text and its source.
fn raw_recv(socket: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 64 * 1024];
    let (len, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the timeout");
    (String::from_utf8(buf[..len].to_vec()).unwrap(), from)
}

#[test]
fn ferry_to_ferry_and_back() {
    let (alice, alice_events) = ferry();
    let (bob, bob_events) = ferry();
    let mut history = NoteHistory::new();

    let before = SystemTime::now();
    let sent = alice.send(bob.local_addr(), "hello bob").unwrap();
    assert_eq!(sent.to, bob.local_addr());
    assert_eq!(sent.bytes, "hello bob".len());
    assert_eq!(sent.warning, None);
    history.record_sent(sent.to, "hello bob", SystemTime::now());

    let (from, text, at) = next_note(&bob_events);
    assert_eq!((from, text.as_str()), (alice.local_addr(), "hello bob"));
    assert!(before <= at && at <= SystemTime::now());

    // Bob answers the exact address the note came from.
    bob.send(from, "hello alice, 你好").unwrap();
    let event = alice_events.recv_timeout(TIMEOUT).unwrap();
    let Event::Note(note) = event else {
        panic!("expected a note, got {event:?}")
    };
    history.record_event(note);

    let entries: Vec<_> = history
        .iter()
        .map(|e| (e.direction, e.peer, e.text.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            (Direction::Outgoing, bob.local_addr(), "hello bob"),
            (Direction::Incoming, bob.local_addr(), "hello alice, 你好"),
        ]
    );
}

#[test]
fn three_datagrams_from_a_plain_peer_are_three_notes() {
    let (notes, events) = ferry();
    let peer = raw_peer();
    for text in ["one", "two", "three"] {
        peer.send_to(text.as_bytes(), notes.local_addr()).unwrap();
    }
    let received: Vec<_> = (0..3)
        .map(|_| next_note(&events))
        .map(|(from, text, _)| (from, text))
        .collect();
    let expected: Vec<_> = ["one", "two", "three"]
        .map(|t| (peer.local_addr().unwrap(), t.to_owned()))
        .into();
    assert_eq!(received, expected);
    // Never merged, never split: nothing else follows.
    assert!(events.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn a_reply_reaches_a_plain_peer_on_its_ephemeral_port() {
    let (notes, events) = ferry();
    let peer = raw_peer();
    peer.send_to(b"what time is it?", notes.local_addr())
        .unwrap();

    let mut history = NoteHistory::new();
    let Ok(Event::Note(note)) = events.recv_timeout(TIMEOUT) else {
        panic!("no note arrived")
    };
    history.record_event(note);
    let question = history.last_received().unwrap();
    assert_eq!(question.reply_to(), peer.local_addr().unwrap());

    notes.send(question.reply_to(), "tea time").unwrap();
    let (text, from) = raw_recv(&peer);
    assert_eq!(text, "tea time");
    assert_eq!(
        from,
        notes.local_addr(),
        "the reply comes from the socket the peer wrote to"
    );
}

#[test]
fn a_datagram_that_is_not_utf8_arrives_lossily() {
    let (notes, events) = ferry();
    let peer = raw_peer();
    peer.send_to(b"caf\xe9 \xff ok", notes.local_addr())
        .unwrap();
    let (_, text, _) = next_note(&events);
    assert_eq!(text, "caf\u{FFFD} \u{FFFD} ok");
}

#[test]
fn a_60_000_byte_note_arrives_whole() {
    let (alice, _alice_events) = ferry();
    let (bob, bob_events) = ferry();
    let text: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sent = alice.send(bob.local_addr(), &text).unwrap();
    assert_eq!(sent.bytes, 60_000);
    assert_eq!(
        sent.warning,
        Some(NoteWarning::PlainPeersTruncate { bytes: 60_000 })
    );
    let (_, received, _) = next_note(&bob_events);
    assert_eq!(received.len(), 60_000);
    assert!(received == text, "the note arrived altered");
}

#[test]
fn the_largest_note_arrives_whole_at_a_plain_peer() {
    let (notes, _events) = ferry();
    let peer = raw_peer();
    let text = "z".repeat(MAX_NOTE_BYTES);
    notes.send(peer.local_addr().unwrap(), &text).unwrap();
    let (received, _) = raw_recv(&peer);
    assert_eq!(received.len(), MAX_NOTE_BYTES);
}

#[test]
fn an_over_limit_note_is_refused_with_a_clear_error() {
    let (notes, _events) = ferry();
    let peer = raw_peer();
    let text = "x".repeat(MAX_NOTE_BYTES + 1);
    let err = notes.send(peer.local_addr().unwrap(), &text).unwrap_err();
    assert!(
        matches!(err, NotesError::Note(NoteError::TooLong { bytes: 65_508 })),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("65508 bytes") && message.contains("65507"),
        "{message}"
    );
    // Refused before any name lookup, so even an unresolvable host gives the same error.
    let err = notes
        .send_to_host("unresolvable.invalid:1", &text)
        .unwrap_err();
    assert!(
        matches!(err, NotesError::Note(NoteError::TooLong { .. })),
        "{err:?}"
    );
    // And nothing went out.
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(peer.recv_from(&mut [0u8; 16]).is_err());
}

#[test]
fn a_note_longer_than_plain_peers_read_is_sent_with_a_warning() {
    let (notes, _events) = ferry();
    let peer = raw_peer();
    let at_limit = notes
        .send(
            peer.local_addr().unwrap(),
            &"a".repeat(PLAIN_PEER_NOTE_BYTES),
        )
        .unwrap();
    assert_eq!(at_limit.warning, None);
    let over = notes
        .send(
            peer.local_addr().unwrap(),
            &"b".repeat(PLAIN_PEER_NOTE_BYTES + 1),
        )
        .unwrap();
    assert_eq!(
        over.warning,
        Some(NoteWarning::PlainPeersTruncate {
            bytes: PLAIN_PEER_NOTE_BYTES + 1
        })
    );
    // What the warning is about: a peer reading 1 024 bytes gets only the beginning.
    let mut small = [0u8; PLAIN_PEER_NOTE_BYTES];
    assert_eq!(peer.recv_from(&mut small).unwrap().0, PLAIN_PEER_NOTE_BYTES);
    let (len, _) = peer.recv_from(&mut small).unwrap();
    assert_eq!(
        len, PLAIN_PEER_NOTE_BYTES,
        "the second note was cut to the reader's buffer"
    );
}

#[test]
fn sending_to_a_closed_port_is_sent_and_receiving_goes_on() {
    let (notes, events) = ferry();
    let nobody = closed_port();
    for _ in 0..3 {
        let sent = notes.send(nobody, "anyone there?").unwrap();
        assert_eq!(sent.to, nobody);
    }
    let peer = raw_peer();
    peer.send_to(b"still here", notes.local_addr()).unwrap();
    let (from, text, _) = next_note(&events);
    assert_eq!(
        (from, text.as_str()),
        (peer.local_addr().unwrap(), "still here")
    );
    // And sending still works too.
    notes.send(peer.local_addr().unwrap(), "good").unwrap();
    assert_eq!(raw_recv(&peer).0, "good");
}

/// Linux reports the ICMP port-unreachable as ECONNREFUSED on the next receive only for a
/// connected UDP socket, so this test hands the engine one, makes it fail that way, waits
/// until the receive loop has logged that refusal (its only trace: no other socket in this
/// test binary is connected, so no other test can log it), then points it at a live peer:
/// the receive loop must have carried on.
#[test]
fn connection_refused_on_receive_does_not_stop_the_loop() {
    const REFUSAL: &str = "an earlier note found no listener";
    crate::util::init_logging();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let control = socket.try_clone().unwrap();
    let nobody = closed_port();
    socket.connect(nobody).unwrap();
    let (sink, events) = event_channel(None);
    let notes = NotesHandle::from_socket(socket, sink).unwrap();

    notes.send(nobody, "anyone there?").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !crate::util::notes_logged(REFUSAL) {
        assert!(
            Instant::now() < deadline,
            "the refusal never reached the receive loop"
        );
        // Poll interval for a log line, which has no channel to wait on.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        control.take_error().unwrap().is_none(),
        "the loop consumed the pending error"
    );
    let peer = raw_peer();
    control.connect(peer.local_addr().unwrap()).unwrap();
    peer.send_to(b"still listening?", notes.local_addr())
        .unwrap();
    let (from, text, _) = next_note(&events);
    assert_eq!(
        (from, text.as_str()),
        (peer.local_addr().unwrap(), "still listening?")
    );
}

#[test]
fn host_port_strings_are_resolved() {
    let (alice, _alice_events) = ferry();
    let (bob, bob_events) = ferry();
    let port = bob.local_addr().port();
    for to in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let sent = alice.send_to_host(&to, &to).unwrap();
        assert_eq!(sent.to, bob.local_addr());
        assert_eq!(next_note(&bob_events).1, to);
    }
    let err = alice.send_to_host("127.0.0.1", "no port").unwrap_err();
    assert!(matches!(err, NotesError::Resolve { .. }), "{err:?}");
    assert!(err.to_string().contains("HOST:PORT"), "{err}");
    // The socket is IPv4: an IPv6-only peer is explained, not attempted.
    let err = alice.resolve("[::1]:9").unwrap_err();
    assert!(matches!(err, NotesError::NoAddress { .. }), "{err:?}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let (sink, _events) = event_channel(None);
    let err =
        NotesHandle::start(NotesConfig::new(Ipv4Addr::LOCALHOST.into(), port), sink).unwrap_err();
    assert!(
        matches!(err, NotesError::PortInUse { port: p } if p == port),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("UDP port {port} is in use"));
}

#[test]
fn dropping_the_handle_stops_and_joins_the_receive_thread() {
    let (notes, events) = ferry();
    let addr = notes.local_addr();
    drop(notes);
    // The thread owned the only sink: the channel is closed once it has ended.
    assert!(matches!(
        events.recv_timeout(TIMEOUT),
        Err(RecvTimeoutError::Disconnected)
    ));
    // And the socket is closed: the port can be bound again.
    UdpSocket::bind(addr).unwrap();
}

/// Drains notes numbered below `count` until `wanted` distinct ones arrived or nothing came for
/// a second (UDP may drop), adding their numbers to `seen`.
fn drain_numbered(
    events: &Receiver<Event>,
    from: SocketAddr,
    count: usize,
    seen: &mut HashSet<usize>,
    wanted: usize,
) {
    while seen.len() < wanted {
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(Event::Note(NoteEvent::Received {
                from: sender, text, ..
            })) => {
                assert_eq!(sender, from);
                let i: usize = text
                    .strip_prefix("note ")
                    .and_then(|n| n.parse().ok())
                    .unwrap();
                assert!(
                    i < count && seen.insert(i),
                    "unexpected or duplicated {text:?}"
                );
            }
            // A burst the reader does not keep up with may overflow the bounded queue.
            Ok(Event::Note(NoteEvent::Dropped { count })) => {
                eprintln!("{count} notes dropped by the bounded queue")
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(_) => return,
        }
    }
}

/// Asks for a receive buffer of `bytes` (the kernel caps it at `net.core.rmem_max`) and
/// returns what the socket really got.
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) -> usize {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let wanted = libc::c_int::try_from(bytes).unwrap();
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket for the duration of the calls, and the option value
    // pointers refer to live `c_int`s of the length given.
    unsafe {
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const wanted).cast(),
            len,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let mut got: libc::c_int = 0;
        let mut got_len = len;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut got).cast(),
            &raw mut got_len,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        usize::try_from(got).unwrap()
    }
}

/// What one small datagram costs in a loopback receive buffer, generously (the kernel
/// charges the socket buffer's true size, about 1 KiB on loopback; measured 427 of 1 000
/// arriving with the default 208 KiB buffer while the receive thread drained).
const DATAGRAM_TRUESIZE: usize = 2304;

/// 1 000 notes back to back on loopback. The receiver asks for a 4 MiB receive buffer; the
/// kernel grants up to `net.core.rmem_max` (4 MiB here: then all 1 000 must arrive). With a
/// smaller cap, at least as many as that buffer holds must arrive. Every send must return
/// Ok at once, i.e. the sender never waits on the receiver. A second round sends in waves
/// of 100 (each drained before the next): every one of those must arrive.
#[test]
fn a_burst_of_1000_notes() {
    const COUNT: usize = 1_000;
    const WAVE: usize = 100;
    let (alice, _alice_events) = ferry();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let granted = set_recv_buffer(&socket, 4 * 1024 * 1024);
    let (sink, bob_events) = event_channel(None);
    let bob = NotesHandle::from_socket(socket, sink).unwrap();
    let must_arrive = COUNT.min(granted / DATAGRAM_TRUESIZE);

    let started = Instant::now();
    for i in 0..COUNT {
        alice.send(bob.local_addr(), &format!("note {i}")).unwrap();
    }
    let sending_took = started.elapsed();
    let mut seen = HashSet::new();
    drain_numbered(&bob_events, alice.local_addr(), COUNT, &mut seen, COUNT);
    eprintln!(
        "burst: {} of {COUNT} notes arrived (receive buffer {granted} bytes, at least \
         {must_arrive} expected); all {COUNT} sends returned Ok within {sending_took:?}",
        seen.len()
    );
    assert!(
        seen.len() >= must_arrive,
        "only {} of {COUNT} notes arrived, a {granted}-byte buffer holds {must_arrive}",
        seen.len()
    );
    assert!(
        sending_took < Duration::from_secs(2),
        "sending took {sending_took:?}"
    );

    let mut seen = HashSet::new();
    let started = Instant::now();
    for wave in 0..COUNT / WAVE {
        for i in wave * WAVE..(wave + 1) * WAVE {
            alice.send(bob.local_addr(), &format!("note {i}")).unwrap();
        }
        drain_numbered(
            &bob_events,
            alice.local_addr(),
            COUNT,
            &mut seen,
            (wave + 1) * WAVE,
        );
        assert_eq!(
            seen.len(),
            (wave + 1) * WAVE,
            "a wave of {WAVE} fits any receive buffer: none may be lost"
        );
    }
    eprintln!(
        "burst in waves of {WAVE}: {} of {COUNT} notes arrived, in {:?}",
        seen.len(),
        started.elapsed()
    );
}
