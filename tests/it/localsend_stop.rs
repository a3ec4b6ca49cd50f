//! Review of the LocalSend receiver's stop path and lifecycle (attacker and maintainer): a
//! server stopped mid-file, mid-question or with hostile connections open stops promptly,
//! frees its port, removes its `.part` files and ends every row (in-process, through the
//! window's Stop/Start, and with Ctrl-C on `ferry serve`); a sender that leaves mid-file, or
//! closes its side right after its last byte, ends its row and frees the one session; a
//! cancel (here, or the sender's) ends the row as cancelled by the right side, and another
//! address cannot cancel; a restarted server on the same port takes the next sender and
//! refuses an old run's session.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{Event, ServerEvent, TransferEvent};
use ferry::localsend::{LocalSendConfig, LocalSendServer};
use ferry::transfer::{AcceptPolicy, Decision};

use crate::localsend::{Peer, config, file, files, loopback_multicast, session_of, start};
use crate::util::{names_in, wait_files, wait_for};

/// As generous as "does not hang": stop is meant to take a couple of seconds at most.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// Stops `server` and says how long it took.
fn timed_stop(server: LocalSendServer) -> Duration {
    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    eprintln!("stop took {took:?}");
    took
}

/// The upload path for file `id` of a session.
fn upload_path(session: &str, id: &str, tokens: &serde_json::Value) -> String {
    format!(
        "/api/localsend/v2/upload?sessionId={session}&fileId={id}&token={}",
        tokens[id].as_str().expect("token")
    )
}

/// Offers one file of 100 bytes (id `a`) from `peer`, with `query` on the prepare-upload
/// (a PIN), and sends its first `sent` bytes (each 1): the session and the upload's
/// connection, left open.
fn send_part(
    peer: &Peer,
    query: &str,
    sent: usize,
) -> (
    String,
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    let (session, tokens) = session_of(&peer.prepare(query, files(&[file("a", "a.bin", 100)])));
    let upload = peer.send(
        &upload_path(&session, "a", &tokens),
        "Content-Length: 100\r\n",
        &[&vec![1; sent]],
        Duration::ZERO,
    );
    (session, upload)
}

/// Waits for the `Started` row of an incoming file.
fn wait_started(events: &Receiver<Event>) {
    wait_for(events, |event| {
        matches!(event, Event::Transfer(TransferEvent::Started { .. })).then_some(())
    });
}

/// The same server again on the port `old` had (its identity too, so pinned peers match).
fn restart(cfg: &LocalSendConfig, port: u16) -> (LocalSendServer, Receiver<Event>) {
    let mut again = cfg.clone();
    again.port = port;
    start(again)
}

fn assert_empty(dir: &Path) {
    assert_eq!(names_in(dir), Vec::<String>::new(), "nothing left behind");
}

#[test]
fn a_sender_that_leaves_mid_file_ends_its_row_and_frees_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let (_, stream) = send_part(&peer, "", 10);
    wait_started(&events);
    // Gone mid-body: the connection closes under the upload.
    stream
        .sock
        .shutdown(std::net::Shutdown::Both)
        .expect("shutdown");
    drop(stream);
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty());
    assert_eq!(failed.len(), 1, "{failed:?}");
    // 10 bytes had arrived (none is kept: LocalSend cannot resume).
    assert!(!failed[0].contains("nothing had arrived"), "{failed:?}");
    // The session's only file ended: another sender is not blocked with 409.
    let other = Peer::new(&server);
    let answer = other.prepare("", files(&[file("b", "b.bin", 3)]));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_empty(dir.path());
}

#[test]
fn a_stop_mid_file_ends_the_row_removes_the_part_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (server, events) = start(cfg.clone());
    let port = server.local_addr().port();
    let peer = Peer::new(&server);
    let (_, stream) = send_part(&peer, "", 10);
    wait_started(&events);
    let took = timed_stop(server);
    assert!(took < STOP_BOUND, "stop took {took:?}");
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty());
    assert!(failed[0].contains("stopped"), "{failed:?}");
    assert_empty(dir.path());
    drop(stream);
    // The port is free at once, and the next server takes a new sender.
    let (again, events) = restart(&cfg, port);
    let peer = Peer::new(&again);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    let token = tokens["a"].as_str().expect("token");
    assert_eq!(peer.upload(&session, "a", token, b"abc").status, 200);
    let (finished, _) = wait_files(&events, 1);
    assert_eq!(finished.len(), 1);
}

/// A server stopped while it asks its user about an offer closes the question and tells the
/// sender it stopped (503, as its uploads do), not that it was declined: before the fix the
/// sender heard 403 "nobody answered", which LocalSend and Ferry's sender show as declined.
#[test]
fn a_stop_while_asking_closes_the_question_and_answers_the_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.policy = AcceptPolicy::Ask;
    let (server, events) = start(cfg.clone());
    let port = server.local_addr().port();
    let peer = Peer::new(&server);
    let asking = std::thread::spawn(move || peer.prepare("", files(&[file("a", "a.bin", 3)])));
    let offer_id = wait_for(&events, |event| match event {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.offer_id),
        _ => None,
    });
    let took = timed_stop(server);
    assert!(took < STOP_BOUND, "stop took {took:?}");
    wait_for(&events, |event| {
        matches!(event, Event::Server(ServerEvent::OfferClosed { offer_id: id }) if *id == offer_id)
            .then_some(())
    });
    let answer = asking.join().expect("prepare");
    assert_eq!(answer.status, 503, "{}", answer.body);
    // Started again: the question is gone, the next sender is asked afresh (no 409).
    let (again, events) = restart(&cfg, port);
    let peer = Peer::new(&again);
    let asking = std::thread::spawn(move || peer.prepare("", files(&[file("a", "a.bin", 3)])));
    let offer_id = wait_for(&events, |event| match event {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.offer_id),
        _ => None,
    });
    again.answer(offer_id, Decision::Accept);
    session_of(&asking.join().expect("prepare"));
}

#[test]
fn a_stop_with_hostile_connections_open_is_prompt_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (server, _events) = start(cfg.clone());
    let port = server.local_addr().port();
    let addr = server.local_addr();
    let peer = Peer::new(&server);
    // A TCP connection that never starts TLS, one idle after TLS, one trickling a
    // prepare-upload body, one trickling a register body.
    let silent = TcpStream::connect(addr).expect("connect");
    let idle = peer.connect();
    let mut trickling = peer.send(
        "/api/localsend/v2/prepare-upload",
        "Content-Length: 1000\r\n",
        &[b"{"],
        Duration::ZERO,
    );
    let mut registering = peer.send(
        "/api/localsend/v2/register",
        "Content-Length: 1000\r\n",
        &[b"{"],
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_millis(200));
    let _ = trickling.write_all(b" ");
    let _ = registering.write_all(b" ");
    let took = timed_stop(server);
    assert!(took < STOP_BOUND, "stop took {took:?}");
    let (again, _events) = restart(&cfg, port);
    let peer = Peer::new(&again);
    session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    drop((silent, idle, trickling, registering));
}

#[test]
fn a_session_of_a_stopped_server_is_refused_by_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (server, _events) = start(cfg.clone());
    let port = server.local_addr().port();
    let peer = Peer::new(&server);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    server.stop();
    let (again, events) = restart(&cfg, port);
    let token = tokens["a"].as_str().expect("token");
    assert_eq!(peer.upload(&session, "a", token, b"abc").status, 403);
    // Nor does it block the next session.
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    let token = tokens["a"].as_str().expect("token");
    assert_eq!(peer.upload(&session, "a", token, b"abc").status, 200);
    wait_files(&events, 1);
    drop(again);
}

/// A sender whose upload is under way sends its last byte and closes its side at once,
/// without waiting for the answer. hyper takes that close for a broken connection and drops
/// the request: before the fix that dropped the upload mid-way, with no row end, and its
/// file stayed "receiving" for good, so the session never went stale and every later sender
/// got 409 until the server was restarted (a hostile peer's way to shut LocalSend off).
/// Now the upload runs on: the bytes hyper had already read are saved.
#[test]
fn a_sender_that_closes_right_after_its_last_byte_ends_its_row_and_frees_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let (_, mut stream) = send_part(&peer, "", 99);
    wait_started(&events);
    // The last byte, then the sender's side closes (TLS close_notify and a TCP FIN).
    stream.write_all(&[1]).expect("last byte");
    stream.conn.send_close_notify();
    stream.flush().expect("flush");
    stream
        .sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let (finished, failed) = wait_files(&events, 1);
    assert_eq!(finished.len(), 1, "{failed:?}");
    assert_eq!(names_in(dir.path()), ["a.bin"]);
    // (No answer reaches it: hyper closes a connection half-closed mid-request.)
    drop(stream);
    // The session's only file arrived: the next sender is taken at once.
    let other = Peer::new(&server);
    let answer = other.prepare("", files(&[file("b", "b.bin", 3)]));
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// An upload started: the server, its events, the sender, the upload's connection (10 of its
/// 100 bytes sent) and its row's id.
struct Underway {
    server: LocalSendServer,
    events: Receiver<Event>,
    peer: Peer,
    session: String,
    upload: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    id: ferry::events::TransferId,
}

fn upload_underway(dir: &Path) -> Underway {
    let (server, events) = start(config(dir));
    let peer = Peer::new(&server);
    let (session, upload) = send_part(&peer, "", 10);
    let id = wait_for(&events, |event| match event {
        Event::Transfer(TransferEvent::Started { id, .. }) => Some(*id),
        _ => None,
    });
    Underway {
        server,
        events,
        peer,
        session,
        upload,
        id,
    }
}

/// How the row `id` ended: `Cancelled { by_peer }` as `Ok(by_peer)`, a failure as its text.
fn row_end(events: &Receiver<Event>, id: ferry::events::TransferId) -> Result<bool, String> {
    wait_for(events, |event| match event {
        Event::Transfer(TransferEvent::Cancelled { id: row, by_peer }) if *row == id => {
            Some(Ok(*by_peer))
        }
        Event::Transfer(TransferEvent::Failed { id: row, failure }) if *row == id => {
            Some(Err(failure.to_string()))
        }
        Event::Transfer(TransferEvent::Finished { id: row, .. }) if *row == id => {
            Some(Err("finished".to_owned()))
        }
        _ => None,
    })
}

/// The user cancels an incoming LocalSend file (the window's Cancel): its row says it was
/// cancelled here, the sender is refused, nothing is kept. Before the fix the row said
/// "failed: the sender gave up" (and a desktop notice said a file failed).
#[test]
fn a_file_cancelled_here_ends_its_row_cancelled_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let underway = upload_underway(dir.path());
    underway.server.cancel(underway.id);
    assert_eq!(row_end(&underway.events, underway.id), Ok(false));
    let answer = Peer::read_answer(underway.upload);
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_empty(dir.path());
}

/// The sender cancels its session (`POST /cancel`) while a file is under way: the row says
/// the sender cancelled. Before the fix it said "failed: the sender gave up".
#[test]
fn a_session_cancelled_by_its_sender_ends_the_row_cancelled_by_the_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let underway = upload_underway(dir.path());
    let cancel = underway.peer.send(
        &format!("/api/localsend/v2/cancel?sessionId={}", underway.session),
        "Content-Length: 0\r\n",
        &[],
        Duration::ZERO,
    );
    assert_eq!(Peer::read_answer(cancel).status, 200);
    assert_eq!(row_end(&underway.events, underway.id), Ok(true));
    drop(underway.upload);
    assert_empty(dir.path());
    // The session is over: the next sender is taken at once.
    let other = Peer::new(&underway.server);
    session_of(&other.prepare("", files(&[file("b", "b.bin", 3)])));
}

/// Another address cannot cancel a session it did not prepare, even knowing its id: 403,
/// and the upload goes on to the end.
#[test]
fn another_address_cannot_cancel_a_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut underway = upload_underway(dir.path());
    let tcp = crate::fuzz_live::connect_from(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        underway.server.local_addr(),
    )
    .expect("connect from 127.0.0.2");
    let mut other = underway.peer.over(tcp);
    let request = format!(
        "POST /api/localsend/v2/cancel?sessionId={} HTTP/1.1\r\nHost: x\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n",
        underway.session
    );
    other.write_all(request.as_bytes()).expect("cancel");
    assert_eq!(Peer::read_answer(other).status, 403);
    underway.upload.write_all(&[1; 90]).expect("the rest");
    underway.upload.flush().expect("flush");
    assert_eq!(
        row_end(&underway.events, underway.id),
        Err("finished".into())
    );
    assert_eq!(Peer::read_answer(underway.upload).status, 200);
    assert_eq!(names_in(dir.path()), ["a.bin"]);
}

/// The window's Stop listening while a LocalSend file is under way, then Start listening on
/// the same LocalSend port (the window's Stop/Start): the row ends "the server stopped", no
/// `.part` is left, and the receiver started again takes the next sender (no 409 from a
/// session of the run before).
#[test]
fn the_windows_stop_and_start_mid_file_ends_the_row_and_takes_the_next_sender() {
    use crate::gui::{app, run_until, settings};
    use egui_kittest::kittest::Queryable;
    use ferry::app::{PolicyChoice, RowState, Settings};
    use ferry::events::FailureKind;

    let dst = tempfile::tempdir().expect("tempdir");
    let ids = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut harness = app(
        Settings {
            server_listening: true,
            accept_policy: Some(PolicyChoice::Everyone),
            identity_dir: Some(ids.path().to_owned()),
            localsend: true,
            localsend_port: port.to_string(),
            localsend_sweep: false,
            ..settings(dst.path())
        },
        vec![],
    );
    let (addr, fingerprint) = crate::gui_localsend::wait_localsend_on(&mut harness);
    assert_eq!(addr.port(), port);
    let peer = Peer::to(addr, &fingerprint);
    let (_, upload) = send_part(&peer, "", 10);
    run_until(&mut harness, "the row to start", |app| {
        app.server.rows.len() == 1 && app.server.rows[0].state == RowState::Active
    });
    harness.get_by_label("Stop listening").click();
    run_until(&mut harness, "the row to end", |app| {
        app.server.rows[0].state.is_finished()
    });
    match &harness.state().server.rows[0].state {
        RowState::Failed(failure) => assert_eq!(failure.kind, FailureKind::Stopped),
        other => panic!("the row ended {other:?}"),
    }
    assert_empty(dst.path());
    drop(upload);
    harness.get_by_label("Start listening").click();
    let (again, fingerprint) = crate::gui_localsend::wait_localsend_on(&mut harness);
    assert_eq!(again, addr, "the same port again");
    let peer = Peer::to(again, &fingerprint);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    let token = tokens["a"].as_str().expect("token");
    assert_eq!(peer.upload(&session, "a", token, b"abc").status, 200);
    assert_eq!(names_in(dst.path()), ["a.bin"]);
}

/// Sends SIGINT (Ctrl-C) to `serve` and waits for it to exit: it must, cleanly and without
/// hanging.
fn ctrl_c(serve: &mut crate::util::ChildGuard) {
    let pid = libc::pid_t::try_from(serve.0.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + STOP_BOUND;
    let status = loop {
        if let Some(status) = serve.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "Ctrl-C stops serve cleanly");
}

/// `ferry serve` stopped with Ctrl-C mid LocalSend file, and while `--ask` waits for an
/// answer about a LocalSend offer: it exits at once, the `.part` is removed, and the
/// waiting sender hears 503.
#[test]
fn ctrl_c_on_serve_mid_localsend_file_or_question_leaves_nothing() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = crate::util::serve_localsend_with_pin(dir.path(), "1234");
    let peer = Peer::to(serve.addr, &serve.fingerprint);
    let (_, upload) = send_part(&peer, "?pin=1234", 10);
    let deadline = Instant::now() + STOP_BOUND;
    while names_in(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "no .part appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    ctrl_c(&mut serve._serve);
    assert_empty(dir.path());
    drop(upload);

    // --ask: the offer waits for an answer on standard input (kept open, never given).
    let mut command = crate::util::ferry();
    command
        .args(["serve", "--ask", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--localsend-port", "0", "--no-discovery", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::piped());
    let (mut asking, _, lines) = crate::util::spawn_serving(command);
    let line = crate::util::wait_line(&lines, "LocalSend receiving is on");
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("address");
    let fingerprint = line
        .split("fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split(&[',', ')'][..]).next())
        .expect("fingerprint")
        .to_owned();
    let peer = Peer::to(addr, &fingerprint);
    let offer = std::thread::spawn(move || peer.prepare("", files(&[file("a", "a.bin", 3)])));
    crate::util::wait_line(&lines, "offer");
    ctrl_c(&mut asking);
    let answer = offer.join().expect("prepare");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_empty(dir.path());
}

/// A stop while the server answers an announcement with a register to a device that never
/// answers (it accepts the connection and stays silent): stop does not wait for it, and the
/// register's connection is closed with the server.
#[test]
fn a_stop_while_a_register_answer_is_in_flight_is_prompt_and_closes_it() {
    use std::io::Read;
    use std::net::{TcpListener, UdpSocket};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.multicast = Some(loopback_multicast());
    let (server, _events) = start(cfg);
    // The "device": its own loopback address (answers are budgeted per address), a port
    // that accepts and never speaks.
    let silent = TcpListener::bind("127.0.0.83:0").expect("listener");
    let announcement = serde_json::json!({"alias": "Mute", "version": "2.1",
        "deviceType": "desktop", "fingerprint": "AB".repeat(32),
        "port": silent.local_addr().expect("addr").port(), "protocol": "https",
        "download": false, "announce": true});
    let sender = UdpSocket::bind("127.0.0.83:0").expect("udp");
    let target =
        std::net::SocketAddr::from(([127, 0, 0, 1], server.discovery_port().expect("port")));
    sender
        .send_to(announcement.to_string().as_bytes(), target)
        .expect("announce");
    let (mut register, _) = silent.accept().expect("the register connects");
    let took = timed_stop(server);
    assert!(took < STOP_BOUND, "stop took {took:?}");
    // Closed with the server: the register would give up on its own only after 2 s, so a
    // connection still open after 1.5 s is a task that outlived stop.
    register
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match register.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue, // its TLS client hello
            Err(e) => {
                assert!(
                    !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    "the register's connection is still open after stop"
                );
                break;
            }
        }
    }
}
