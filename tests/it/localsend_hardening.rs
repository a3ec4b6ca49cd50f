//! LocalSend hardening and polish (issue 16's leftovers): a sender listing thousands of
//! subfolders cannot make the receiver hold a descriptor per folder (the test counts this
//! process's open descriptors while they arrive); any `text/*` message with a `preview` is a
//! note, bounded in size, not a file; the window's LocalSend rows say LocalSend sends no
//! hash (English and Chinese); and a note to a LocalSend device that wants a PIN asks for it
//! in the Notes panel, goes with it, and says so when the device refuses for a while.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, RowState, Settings};
use ferry::events::{CancelToken, Event, LocalSendStatus, NoteEvent, PinProblem, TransferEvent};
use ferry::localsend::{
    CertIdentity, LocalSendConfig, LocalSendSender, LocalSendServer, LocalSendTarget,
};
use ferry::transfer::{AcceptPolicy, OutgoingFile};
use rustls::{ClientConnection, StreamOwned};
use serde_json::{Value, json};

use crate::gui::{app, choose_localsend_device, listening_addr, localsend_settings, run_until};
use crate::localsend::{Peer, config, file, files, session_of, start};
use crate::util::{names_in, wait_for};

/// How many descriptors this process has open now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// A LocalSend sender that keeps one HTTPS connection open for all its requests (as
/// LocalSend's HTTP client does), so thousands of uploads cost one handshake.
struct KeepAlive {
    addr: SocketAddr,
    identity: CertIdentity,
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl KeepAlive {
    fn new(server: &LocalSendServer) -> Self {
        let identity = CertIdentity::generate().expect("peer certificate");
        let seen = Arc::new(Mutex::new(None));
        let tls = ferry::localsend::tls::client_config(&identity, Some(server.fingerprint()), seen)
            .expect("client config");
        let addr = server.local_addr();
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let conn = ClientConnection::new(tls, name).expect("tls");
        Self {
            addr,
            identity,
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        }
    }

    /// `POST path` with `body`; the answer's status and body.
    fn post(&mut self, path: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        // One write: a head and a body in two small segments would wait on Nagle's
        // algorithm and the server's delayed ACK (40 ms a request).
        let stream = self.stream.get_mut();
        stream
            .write_all(&[head.as_bytes(), body].concat())
            .expect("request");
        stream.flush().expect("flush");
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).expect("status");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding"),
                "chunked answers are not expected: {line}"
            );
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("length");
            }
        }
        let mut answer = vec![0u8; length];
        self.stream.read_exact(&mut answer).expect("answer body");
        (status, String::from_utf8_lossy(&answer).into_owned())
    }

    fn prepare(&mut self, files: Value) -> (u16, String) {
        let info = json!({"alias": "Flood", "version": "2.1", "deviceModel": null,
            "deviceType": "desktop", "fingerprint": self.identity.fingerprint(),
            "port": 53317, "protocol": "https", "download": false});
        let body = json!({"info": info, "files": files}).to_string();
        self.post("/api/localsend/v2/prepare-upload", body.as_bytes())
    }
}

/// Counts incoming files finished and failed on a thread of its own (the event channel is
/// bounded: a test that stops reading would stall the server).
fn count_files(events: Receiver<Event>) -> Arc<(AtomicUsize, AtomicUsize)> {
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let shared = Arc::clone(&counts);
    std::thread::spawn(move || {
        while let Ok(event) = events.recv() {
            match event {
                Event::Transfer(TransferEvent::Finished { .. }) => {
                    shared.0.fetch_add(1, Ordering::SeqCst);
                }
                Event::Transfer(TransferEvent::Failed { failure, .. }) => {
                    eprintln!("failed: {failure}");
                    shared.1.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    });
    counts
}

#[test]
fn thousands_of_subfolders_hold_few_descriptors_and_every_file_arrives() {
    const FOLDERS: usize = 5_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let counts = count_files(events);
    let mut peer = KeepAlive::new(&server);
    let list: Vec<(String, Value)> = (0..FOLDERS)
        .map(|i| file(&format!("f{i}"), &format!("a/b{i}/f"), 3))
        .collect();
    let (status, body) = peer.prepare(files(&list));
    assert_eq!(status, 200, "prepare-upload: {body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let session = answer["sessionId"].as_str().expect("session").to_owned();
    let tokens = answer["files"].clone();

    // This process's descriptors, sampled while the files arrive.
    let before = open_fds();
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(open_fds(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for i in 0..FOLDERS {
        let id = format!("f{i}");
        let token = tokens[&id].as_str().expect("token");
        let path =
            format!("/api/localsend/v2/upload?sessionId={session}&fileId={id}&token={token}");
        let (status, body) = peer.post(&path, format!("{:03}", i % 1000).as_bytes());
        assert_eq!(status, 200, "{id}: {body}");
        if i % 500 == 0 {
            peak.fetch_max(open_fds(), Ordering::SeqCst);
        }
    }
    peak.fetch_max(open_fds(), Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let grew = peak.load(Ordering::SeqCst).saturating_sub(before);
    // The receiver keeps at most 256 folder handles (plus a few for files in flight and
    // whatever other tests in this process open meanwhile); one per folder would be 5 000.
    assert!(
        grew < 1_000,
        "{grew} more descriptors open during the upload ({before} before)"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.0.load(Ordering::SeqCst) + counts.1.load(Ordering::SeqCst) < FOLDERS {
        assert!(Instant::now() < deadline, "not every file ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counts.1.load(Ordering::SeqCst), 0, "failures");
    assert_eq!(names_in(dir.path()), ["a"]);
    assert_eq!(names_in(&dir.path().join("a")).len(), FOLDERS);
    for i in [0, 1, 255, 256, 2_500, FOLDERS - 1] {
        let got = std::fs::read(dir.path().join(format!("a/b{i}/f"))).expect("file");
        assert_eq!(got, format!("{:03}", i % 1000).as_bytes(), "a/b{i}/f");
    }
    drop(server);
}

/// The note `prepare` produced, or the answer's status when it was not one.
fn as_note(peer: &Peer, events: &Receiver<Event>, file_type: &str, preview: &str) -> String {
    let text = json!({"t": {"id": "t", "fileName": "m.md", "size": preview.len(),
        "fileType": file_type, "preview": preview}});
    let answer = peer.prepare("", text);
    assert_eq!(answer.status, 204, "{file_type}: {}", answer.body);
    wait_for(events, |e| match e {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    })
}

#[test]
fn any_text_type_with_a_preview_is_a_bounded_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    assert_eq!(as_note(&peer, &events, "text/plain", "plain"), "plain");
    assert_eq!(
        as_note(&peer, &events, "text/plain; charset=utf-8", "utf-8 ✓"),
        "utf-8 ✓"
    );
    assert_eq!(
        as_note(&peer, &events, "text/markdown", "# title"),
        "# title"
    );
    assert_eq!(as_note(&peer, &events, "TEXT/X-Log", "log"), "log");
    // Still bounded: a huge preview is cut on a character boundary.
    let huge = "é".repeat(ferry::localsend::wire::MAX_TEXT_BYTES);
    let note = as_note(&peer, &events, "text/markdown", &huge);
    assert!(note.len() <= ferry::localsend::wire::MAX_TEXT_BYTES);
    assert!(note.len() > ferry::localsend::wire::MAX_TEXT_BYTES - 4);
    assert!(note.chars().all(|c| c == 'é'));
    // Not a text type, or no preview: a file to upload, as before.
    let image = json!({"i": {"id": "i", "fileName": "a.png", "size": 3,
        "fileType": "image/png", "preview": "not a note"}});
    let (session, _) = session_of(&peer.prepare("", image));
    assert!(!session.is_empty());
    assert!(names_in(dir.path()).is_empty(), "no note became a file");
}

/// A window listening at once, LocalSend on port 0, identities in `identity_dir`.
fn window(download_dir: &Path, identity_dir: &Path, lang: Lang) -> Settings {
    Settings {
        lang: Some(lang),
        ..localsend_settings(download_dir, identity_dir)
    }
}

/// The window's LocalSend address and fingerprint once it is on.
fn localsend_on(harness: &mut Harness<'_, FerryApp>) -> (SocketAddr, String) {
    run_until(harness, "LocalSend receiving to be on", |app| {
        listening_addr(app).is_some()
            && matches!(
                app.server.localsend_status,
                Some(LocalSendStatus::On { .. })
            )
    });
    match &harness.state().server.localsend_status {
        Some(LocalSendStatus::On {
            addr, fingerprint, ..
        }) => (*addr, fingerprint.clone()),
        other => panic!("LocalSend is not on: {other:?}"),
    }
}

/// A phone sends `name` to the window while it keeps drawing.
fn phone_sends(harness: &mut Harness<'_, FerryApp>, name: &str) {
    let (addr, fingerprint) = localsend_on(harness);
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join(name);
    std::fs::write(&path, b"jpeg bytes").unwrap();
    let phone = LocalSendSender::new(CertIdentity::generate().unwrap(), "Pixel 8");
    let to = LocalSendTarget {
        addr,
        fingerprint,
        alias: "window".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    };
    let worker = std::thread::spawn(move || {
        let (sink, _events) = ferry::events::event_channel(None);
        phone.send_files(&to, &[OutgoingFile::new(path)], &sink, &CancelToken::new())
    });
    run_until(harness, "the phone to finish", |_| worker.is_finished());
    let outcomes = worker.join().unwrap().expect("the window takes the file");
    assert!(outcomes[0].is_success(), "{outcomes:?}");
    run_until(harness, "the row to finish", |app| {
        app.server.rows.len() == 1 && app.server.rows[0].state == RowState::Unverified
    });
}

#[test]
fn localsend_rows_say_localsend_sends_no_hash_in_both_languages() {
    let (dst, ids) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut harness = app(window(dst.path(), ids.path(), Lang::En), Vec::new());
    phone_sends(&mut harness, "photo.jpg");
    harness.get_by_label("complete, unverified (LocalSend sends no hash)");
    assert!(
        harness
            .query_by_label("complete (not verified: plain peer)")
            .is_none(),
        "a LocalSend phone is not a plain peer"
    );
    drop(harness);

    let (dst, ids) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut harness = app(window(dst.path(), ids.path(), Lang::ZhCn), Vec::new());
    phone_sends(&mut harness, "照片.jpg");
    harness.get_by_label("已完成，未校验（LocalSend 不发送哈希值）");
    assert!(
        harness
            .query_by_label("已完成（未校验：普通对方）")
            .is_none()
    );
}

/// An in-process LocalSend device on loopback wanting `pin`, taking everything; its events.
fn device(dir: &Path, pin: Option<&str>) -> (LocalSendServer, Receiver<Event>) {
    let mut config = LocalSendConfig::new(
        dir.to_path_buf(),
        "Locked tablet",
        CertIdentity::generate().unwrap(),
    );
    config.bind = [127, 0, 0, 1].into();
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.pin = pin.map(str::to_owned);
    config.fsync = false;
    start(config)
}

/// A window with `tablet` as a favourite, the tablet chosen (for files and notes).
fn window_choosing(
    tablet: &LocalSendServer,
    mine: &Path,
    ids: &Path,
    files: Vec<PathBuf>,
) -> Harness<'static, FerryApp> {
    let settings = Settings {
        favourites: vec![tablet.local_addr().to_string()],
        ..window(mine, ids, Lang::En)
    };
    let mut harness = app(settings, files);
    choose_localsend_device(&mut harness, "Locked tablet");
    assert_eq!(harness.state().notes.peer, tablet.local_addr().to_string());
    harness
}

#[test]
fn an_upload_to_a_localsend_device_says_localsend_sends_no_hash() {
    let (src, dst, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (tablet, _events) = device(dst.path(), None);
    let path = src.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let mut harness = window_choosing(&tablet, mine.path(), ids.path(), vec![path]);
    harness.get_by_label("Choose files…").click();
    run_until(&mut harness, "the file queued", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label("Upload").click();
    run_until(&mut harness, "the upload to end", |app| {
        app.client.rows[0].state == RowState::Unverified
    });
    harness.get_by_label("complete, unverified (LocalSend sends no hash)");
    assert!(harness.query_by_label("sent, unverified").is_none());
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"hello");
}

fn note_pin(app: &FerryApp) -> Option<PinProblem> {
    app.notes.pin_needed.as_ref().map(|p| p.problem)
}

/// A window whose Notes panel sent `text` to a LocalSend device that wants the PIN 2468 and
/// now asks for it: the folders and the device to keep alive, the device's events and the
/// window (last, so that it is dropped first).
fn note_asking_for_pin(
    text: &str,
) -> (
    [tempfile::TempDir; 3],
    LocalSendServer,
    Receiver<Event>,
    Harness<'static, FerryApp>,
) {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let [dst, mine, ids] = &dirs;
    let (tablet, events) = device(dst.path(), Some("2468"));
    let mut harness = window_choosing(&tablet, mine.path(), ids.path(), Vec::new());
    harness.get_by_label("Note").click();
    harness.get_by_label("Note").type_text(text);
    harness.get_by_label("Send").click();
    run_until(&mut harness, "the PIN to be asked for", |app| {
        note_pin(app) == Some(PinProblem::Required)
    });
    (dirs, tablet, events, harness)
}

/// Types `text` into the field labelled `label`, replacing what it held.
fn retype(harness: &mut Harness<'_, FerryApp>, label: &str, text: &str) {
    harness.get_by_label(label).click();
    harness.run_steps(2);
    for _ in 0..harness.state().notes.localsend_pin.chars().count() {
        harness.key_press(egui::Key::Backspace);
    }
    harness.get_by_label(label).type_text(text);
    harness.run_steps(2);
}

#[test]
fn a_note_to_a_localsend_device_with_a_pin_asks_for_it_and_goes_with_it() {
    let (_dirs, _tablet, events, mut harness) = note_asking_for_pin("see you at 5");
    harness.get_by_label("The LocalSend device asks for a PIN");

    // A wrong PIN: refused, asked again.
    retype(&mut harness, "PIN for the note's LocalSend device", "1111");
    harness.get_by_label("Send note with PIN").click();
    run_until(&mut harness, "the wrong PIN to be refused", |app| {
        note_pin(app) == Some(PinProblem::Wrong)
    });
    harness.get_by_label("The LocalSend device refused the PIN: try again");

    // The right one: the note arrives, and the PIN field goes away.
    retype(&mut harness, "PIN for the note's LocalSend device", "2468");
    assert_eq!(harness.state().notes.localsend_pin, "2468");
    harness.get_by_label("Send note with PIN").click();
    run_until(&mut harness, "the note in the history", |app| {
        app.notes.history.len() == 1 && note_pin(app).is_none()
    });
    let got = wait_for(&events, |event| match event {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    });
    assert_eq!(got, "see you at 5");
    assert!(harness.query_by_label("Send note with PIN").is_none());
    assert!(
        harness
            .query_by_label("The LocalSend device asks for a PIN")
            .is_none()
    );
}

#[test]
fn too_many_wrong_pins_for_a_note_say_so_with_no_button() {
    let (_dirs, _tablet, events, mut harness) = note_asking_for_pin("hello");
    retype(&mut harness, "PIN for the note's LocalSend device", "0");
    // Three wrong tries are refused as wrong; the fourth is 429.
    for _ in 0..3 {
        harness.get_by_label("Send note with PIN").click();
        run_until(&mut harness, "the wrong PIN to be refused", |app| {
            matches!(
                note_pin(app),
                Some(PinProblem::Wrong | PinProblem::TooManyTries)
            )
        });
    }
    harness.get_by_label("Send note with PIN").click();
    run_until(&mut harness, "too many tries", |app| {
        note_pin(app) == Some(PinProblem::TooManyTries)
    });
    harness.get_by_label("Too many PIN attempts: the LocalSend device refuses for a while");
    assert!(harness.query_by_label("Send note with PIN").is_none());
    assert!(harness.state().notes.history.is_empty());
    assert!(
        events
            .try_iter()
            .all(|e| !matches!(e, Event::Note(NoteEvent::Received { .. }))),
        "no note got through"
    );
}

/// Large prepare-upload bodies held open at once are bounded in all, not only each: the
/// receiver reads at most 24 MiB of them beyond the first 64 KiB of each, and refuses the
/// rest with 503 while a usual (small) offer still gets through. Before, every connection
/// could hold its 8 MiB body (64 connections: half a gigabyte and more with the parse), and
/// these four were all read until the body deadline (408).
#[test]
fn large_prepare_bodies_held_open_together_are_bounded_in_all() {
    const EIGHT_MIB: usize = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let head = format!("Content-Type: application/json\r\nContent-Length: {EIGHT_MIB}\r\n");
    // Four bodies of 7 MiB of their 8 (JSON's leading whitespace), held open: 28 MiB.
    let padding = vec![b' '; 7 * 1024 * 1024];
    let held: Vec<_> = (0..4)
        .map(|_| {
            peer.send(
                "/api/localsend/v2/prepare-upload",
                &head,
                &[&padding],
                Duration::ZERO,
            )
        })
        .collect();
    // Meanwhile a usual offer is taken.
    session_of(&peer.prepare("", files(&[file("a", "a.bin", 3)])));
    // A refused body is cut short: its sender may see the 503 or only the connection cut
    // (`None`); one read to the deadline is answered 408.
    let statuses: Vec<Option<u16>> = held.into_iter().map(answer_or_cut).collect();
    assert!(
        statuses.iter().any(|s| *s != Some(408)),
        "all read to the deadline: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| [None, Some(503), Some(408)].contains(s)),
        "{statuses:?}"
    );
}

/// The status of the answer on `stream`, or `None` when the connection was cut first.
fn answer_or_cut(mut stream: StreamOwned<ClientConnection, TcpStream>) -> Option<u16> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// An accepted sender that trickles its upload (a little, often enough never to be idle)
/// is dropped by the same rate floor as a Ferry upload, and the session it held is free for
/// the next sender at once. Before, it held the one session, and every other sender's 409,
/// for as long as it kept trickling.
#[test]
fn a_trickled_upload_is_dropped_by_the_rate_floor_and_frees_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.min_rate = ferry::transfer::MinRate {
        bytes_per_sec: 1024,
        window: Duration::from_secs(1),
    };
    let (server, events) = start(cfg);
    let peer = Peer::new(&server);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 100_000)])));
    let path = format!(
        "/api/localsend/v2/upload?sessionId={session}&fileId=a&token={}",
        tokens["a"].as_str().expect("token")
    );
    // 10 bytes every 300 ms (never silent for the 5 s idle timeout), for 9 s at most.
    let trickler = std::thread::spawn(move || {
        let pieces = vec![[7u8; 10]; 30];
        let pieces: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
        let stream = peer.send(
            &path,
            "Content-Length: 100000\r\n",
            &pieces,
            Duration::from_millis(300),
        );
        answer_or_cut(stream)
    });
    let failure = wait_for(&events, |event| match event {
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        _ => None,
    });
    assert!(failure.contains("too slow"), "{failure}");
    let other = Peer::new(&server);
    session_of(&other.prepare("", files(&[file("b", "b.bin", 3)])));
    // 408, unless the sender, still writing, only saw its connection closed.
    let answer = trickler.join().expect("trickler");
    assert!([Some(408), None].contains(&answer), "{answer:?}");
    assert!(names_in(dir.path()).is_empty());
}
