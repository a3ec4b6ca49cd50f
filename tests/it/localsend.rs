//! LocalSend receiving (issue 16): an in-process LocalSend peer, written from LocalSend's
//! protocol documentation (an HTTPS client with a certificate of its own, requests written
//! by hand so hostile ones can be), against Ferry's LocalSend server on 127.0.0.1 port 0.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{Event, NoteEvent, Security, ServerEvent, TransferEvent, event_channel};
use ferry::localsend::{
    CertIdentity, LOCALSEND_GROUP, LocalSendConfig, LocalSendDevice, LocalSendProtocol,
    LocalSendServer, MulticastConfig,
};
use ferry::transfer::{AcceptPolicy, Decision};
use rustls::{ClientConnection, StreamOwned};
use serde_json::{Value, json};

use crate::util::{data, names_in, serve_localsend_with_pin, wait_files, wait_for, wait_line};

pub(crate) fn config(dir: &Path) -> LocalSendConfig {
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dir.to_path_buf(), "Ferry test", identity);
    config.bind = "127.0.0.1".parse().expect("ip");
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.idle_timeout = Duration::from_secs(5);
    config.fsync = false;
    config
}

/// Discovery that hears announcements on loopback only (nothing leaves this machine), on a
/// UDP port of its own (the server's `discovery_port()`).
pub(crate) fn loopback_multicast() -> MulticastConfig {
    MulticastConfig {
        group: LOCALSEND_GROUP,
        port: 0,
        interfaces: vec!["127.0.0.1".parse().expect("ip")],
        group_v6: None,
        interfaces_v6: vec![],
        hears: None,
        relist: None,
    }
}

/// `ferry peers --wait 1 --no-localsend-sweep --localsend-probe ADDR`, run to its end.
pub(crate) fn peers_probing(addr: SocketAddr) -> std::process::Output {
    crate::util::ferry()
        .args([
            "peers",
            "--wait",
            "1",
            "--no-localsend-sweep",
            "--localsend-probe",
        ])
        .arg(addr.to_string())
        .output()
        .expect("ferry peers runs")
}

pub(crate) fn start(config: LocalSendConfig) -> (LocalSendServer, Receiver<Event>) {
    let (sink, events) = event_channel(None);
    let server = LocalSendServer::start(config, sink).expect("LocalSend server starts");
    (server, events)
}

/// Ferry's own LocalSend sender sends `batch` to a fresh LocalSend server saving into `dir`.
pub(crate) fn send_batch_to_new_server(
    dir: &Path,
    batch: &ferry::localsend::LocalSendBatch,
) -> Result<Vec<ferry::transfer::FileOutcome>, ferry::localsend::LocalSendSendError> {
    use ferry::localsend::{LocalSendSender, LocalSendTarget};
    let (server, _events) = start(config(dir));
    let target = LocalSendTarget {
        addr: server.local_addr(),
        fingerprint: server.fingerprint().to_owned(),
        alias: "Ferry test".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    };
    let sender = LocalSendSender::new(
        CertIdentity::generate().expect("certificate"),
        "Ferry sender",
    );
    let (sink, events) = event_channel(None);
    std::thread::spawn(move || for _ in events {});
    sender.send_batch(&target, batch, &sink, &ferry::events::CancelToken::new())
}

/// A LocalSend sender: its own certificate, the server's pinned.
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    identity: CertIdentity,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Answer {
    /// A whole HTTP/1.1 answer: its status and body.
    pub(crate) fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        Answer {
            status,
            body: body.to_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Peer {
    pub(crate) fn new(server: &LocalSendServer) -> Self {
        Self::to(server.local_addr(), server.fingerprint())
    }

    /// A peer for the server at `addr` whose certificate must have `fingerprint`.
    pub(crate) fn to(addr: SocketAddr, fingerprint: &str) -> Self {
        let identity = CertIdentity::generate().expect("peer certificate");
        let seen = Arc::new(Mutex::new(None));
        let tls = ferry::localsend::tls::client_config(&identity, Some(fingerprint), seen)
            .expect("client config");
        Self {
            addr,
            tls,
            identity,
        }
    }

    /// The fingerprint of this peer's own certificate.
    pub(crate) fn fingerprint(&self) -> &str {
        self.identity.fingerprint()
    }

    fn info(&self) -> Value {
        json!({"alias": "Pixel", "version": "2.1", "deviceModel": "Google", "deviceType": "mobile",
               "fingerprint": self.identity.fingerprint(), "port": 53317, "protocol": "https",
               "download": false})
    }

    /// A TLS connection to the server, its certificate pinned.
    pub(crate) fn connect(&self) -> StreamOwned<ClientConnection, TcpStream> {
        self.over(TcpStream::connect(self.addr).expect("connect"))
    }

    /// TLS over `tcp`, a connection to the server (from whatever source address).
    pub(crate) fn over(&self, tcp: TcpStream) -> StreamOwned<ClientConnection, TcpStream> {
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let conn = ClientConnection::new(Arc::clone(&self.tls), name).expect("tls");
        StreamOwned::new(conn, tcp)
    }

    /// Sends the request head (`Connection: close`), then `body` pieces with `pause` between.
    pub(crate) fn send(
        &self,
        path: &str,
        headers: &str,
        pieces: &[&[u8]],
        pause: Duration,
    ) -> StreamOwned<ClientConnection, TcpStream> {
        let mut stream = self.connect();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
            self.addr
        );
        stream.write_all(head.as_bytes()).expect("head");
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            if stream
                .write_all(piece)
                .and_then(|()| stream.flush())
                .is_err()
            {
                break; // the server answered early and closed
            }
        }
        stream
    }

    pub(crate) fn read_answer(mut stream: StreamOwned<ClientConnection, TcpStream>) -> Answer {
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) if !raw.is_empty() => eprintln!("reading the answer: {e}"),
            Err(e) => panic!("no answer: {e}"),
        }
        Answer::parse(&raw)
    }

    fn post(&self, path: &str, body: &[u8]) -> Answer {
        let headers = format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        Self::read_answer(self.send(path, &headers, &[body], Duration::ZERO))
    }

    pub(crate) fn prepare(&self, query: &str, files: Value) -> Answer {
        let body = json!({"info": self.info(), "files": files}).to_string();
        self.post(
            &format!("/api/localsend/v2/prepare-upload{query}"),
            body.as_bytes(),
        )
    }

    /// Uploads `bytes` chunked (as LocalSend 1.18 does) in pieces of `chunk` bytes.
    fn upload_chunked(
        &self,
        session: &str,
        file: &str,
        token: &str,
        bytes: &[u8],
        chunk: usize,
    ) -> Answer {
        let mut framed: Vec<Vec<u8>> = bytes
            .chunks(chunk.max(1))
            .map(|c| {
                [
                    format!("{:x}\r\n", c.len()).into_bytes(),
                    c.to_vec(),
                    b"\r\n".to_vec(),
                ]
                .concat()
            })
            .collect();
        framed.push(b"0\r\n\r\n".to_vec());
        let pieces: Vec<&[u8]> = framed.iter().map(Vec::as_slice).collect();
        let path =
            format!("/api/localsend/v2/upload?sessionId={session}&fileId={file}&token={token}");
        Self::read_answer(self.send(
            &path,
            "Transfer-Encoding: chunked\r\n",
            &pieces,
            Duration::ZERO,
        ))
    }

    pub(crate) fn upload(&self, session: &str, file: &str, token: &str, bytes: &[u8]) -> Answer {
        self.post(
            &format!("/api/localsend/v2/upload?sessionId={session}&fileId={file}&token={token}"),
            bytes,
        )
    }
}

pub(crate) fn file(id: &str, name: &str, size: usize) -> (String, Value) {
    (
        id.to_owned(),
        json!({"id": id, "fileName": name, "size": size, "fileType": "application/octet-stream"}),
    )
}

pub(crate) fn files(list: &[(String, Value)]) -> Value {
    Value::Object(list.iter().cloned().collect())
}

pub(crate) fn session_of(answer: &Answer) -> (String, Value) {
    assert_eq!(answer.status, 200, "prepare-upload: {}", answer.body);
    let json = answer.json();
    (
        json["sessionId"].as_str().expect("sessionId").to_owned(),
        json["files"].clone(),
    )
}

/// No `.part` left and nothing but `expected` in the folder.
fn assert_folder(dir: &Path, expected: &[&str]) {
    assert_eq!(names_in(dir), expected, "folder content");
}

#[test]
fn register_answers_with_our_info_and_remembers_the_certified_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let answer = peer.post(
        "/api/localsend/v2/register",
        peer.info().to_string().as_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ours = answer.json();
    assert_eq!(ours["alias"], "Ferry test");
    assert_eq!(ours["fingerprint"], server.fingerprint());
    let devices = server.devices();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].fingerprint, peer.identity.fingerprint());
    assert_eq!(devices[0].alias, "Pixel");
    // A body claiming another fingerprint than its certificate's is answered but ignored.
    let mut liar = peer.info();
    liar["fingerprint"] = json!("AAAA");
    liar["alias"] = json!("Liar");
    let answer = peer.post("/api/localsend/v2/register", liar.to_string().as_bytes());
    assert_eq!(answer.status, 200);
    assert!(server.devices().iter().all(|d| d.alias != "Liar"));
}

#[test]
fn files_and_a_folder_arrive_whole_chunked_or_not_with_localsend_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let a = data(200_000, 1);
    let b = data(1234, 2);
    let answer = peer.prepare(
        "",
        files(&[
            file("a", "photo.jpg", a.len()),
            file("b", "album/2024/b.bin", b.len()),
        ]),
    );
    let (session, tokens) = session_of(&answer);
    let up = peer.upload_chunked(
        &session,
        "a",
        tokens["a"].as_str().expect("token"),
        &a,
        16 * 1024,
    );
    assert_eq!(up.status, 200, "{}", up.body);
    let up = peer.upload(&session, "b", tokens["b"].as_str().expect("token"), &b);
    assert_eq!(up.status, 200, "{}", up.body);
    let (finished, failed) = wait_files(&events, 2);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(finished.len(), 2);
    assert_eq!(std::fs::read(dir.path().join("photo.jpg")).expect("a"), a);
    // A folder's files arrive in their folders.
    assert_eq!(
        std::fs::read(dir.path().join("album/2024/b.bin")).expect("b"),
        b
    );
    assert_folder(dir.path(), &["album", "photo.jpg"]);
    // The session ended with its last file: the same tokens no longer work.
    let again = peer.upload(&session, "b", tokens["b"].as_str().expect("token"), &b);
    assert_eq!(again.status, 403);
}

#[test]
fn rows_name_the_localsend_device_and_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let bytes = data(10, 3);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("x", "x.txt", 10)])));
    let up = peer.upload(&session, "x", tokens["x"].as_str().expect("token"), &bytes);
    assert_eq!(up.status, 200);
    let security = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Started { security, .. }) => Some(security.clone()),
        _ => None,
    });
    assert_eq!(
        security,
        Security::LocalSend {
            alias: "Pixel".into(),
            device_type: "mobile".into(),
            fingerprint: peer.identity.fingerprint().into(),
            encrypted: true,
        }
    );
}

#[test]
fn asking_declining_accepting_and_one_session_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.policy = AcceptPolicy::Ask;
    let (server, events) = start(cfg);
    let server = Arc::new(server);
    let peer = Arc::new(Peer::new(&server));
    let list = files(&[file("a", "a.bin", 5)]);

    // Declined: 403, nothing written.
    let asking = {
        let (peer, list) = (Arc::clone(&peer), list.clone());
        std::thread::spawn(move || peer.prepare("", list))
    };
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    assert_eq!(offer.names, ["a.bin"]);
    assert!(matches!(offer.security, Security::LocalSend { ref alias, .. } if alias == "Pixel"));
    // While one is asked about, another gets 409.
    let busy = peer.prepare("", list.clone());
    assert_eq!(busy.status, 409, "{}", busy.body);
    server.answer(offer.offer_id, Decision::Decline);
    assert_eq!(asking.join().expect("thread").status, 403);

    // Accepted: tokens.
    let asking = {
        let (peer, list) = (Arc::clone(&peer), list.clone());
        std::thread::spawn(move || peer.prepare("", list))
    };
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    server.answer(offer.offer_id, Decision::Accept);
    let (session, tokens) = session_of(&asking.join().expect("thread"));
    // The active session blocks others too, until it is cancelled.
    assert_eq!(peer.prepare("", list.clone()).status, 409);
    let cancel = peer.post(
        &format!("/api/localsend/v2/cancel?sessionId={session}"),
        b"",
    );
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let late = peer.upload(
        &session,
        "a",
        tokens["a"].as_str().expect("token"),
        b"12345",
    );
    assert_eq!(late.status, 403);
    assert_folder(dir.path(), &[]);
}

#[test]
fn trusted_only_refuses_localsend_and_nothing_wanted_is_204_for_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let text = json!({"t": {"id": "t", "fileName": "note.txt", "size": 5, "fileType": "text/plain", "preview": "hi \u{1b}[2J there"}});
    let answer = peer.prepare("", text.clone());
    assert_eq!(answer.status, 204, "{}", answer.body);
    let (got, security) = wait_for(&events, |e| match e {
        Event::Note(NoteEvent::Received { text, security, .. }) => {
            Some((text.clone(), security.clone()))
        }
        _ => None,
    });
    assert_eq!(
        got, "hi \u{1b}[2J there",
        "the text as sent; faces escape it"
    );
    assert!(matches!(security, Security::LocalSend { .. }));
    server.set_policy(AcceptPolicy::TrustedOnly);
    assert_eq!(peer.prepare("", text).status, 403);
    assert_folder(dir.path(), &[]);
}

#[test]
fn a_pin_is_required_and_its_tries_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.pin = Some("4711".into());
    let (server, _events) = start(cfg);
    let peer = Peer::new(&server);
    let list = files(&[file("a", "a.bin", 1)]);
    assert_eq!(peer.prepare("", list.clone()).status, 401);
    let right = peer.prepare("?pin=4711", list.clone());
    let (session, _) = session_of(&right);
    let cancel = peer.post(
        &format!("/api/localsend/v2/cancel?sessionId={session}"),
        b"",
    );
    assert_eq!(cancel.status, 200);
    for _ in 0..ferry::localsend::MAX_PIN_TRIES {
        assert_eq!(peer.prepare("?pin=0000", list.clone()).status, 401);
    }
    assert_eq!(
        peer.prepare("?pin=4711", list).status,
        429,
        "locked out even with the right PIN"
    );
}

#[test]
fn hostile_names_stay_inside_the_folder_and_visible() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("in");
    std::fs::create_dir(&dir).expect("mkdir");
    let (server, events) = start(config(&dir));
    let peer = Peer::new(&server);
    let names = [
        "../x",
        "/etc/passwd",
        ".bashrc",
        "a/../../b/.c",
        "..\\..\\win.ini",
    ];
    let list: Vec<(String, Value)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| file(&format!("f{i}"), n, 3))
        .collect();
    let (session, tokens) = session_of(&peer.prepare("", files(&list)));
    for (id, _) in &list {
        let up = peer.upload(&session, id, tokens[id].as_str().expect("token"), b"abc");
        assert_eq!(up.status, 200, "{id}: {}", up.body);
    }
    let (finished, failed) = wait_files(&events, names.len());
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(finished.len(), names.len());
    assert_folder(&dir, &["_bashrc", "a", "etc", "win.ini", "x"]);
    assert_eq!(std::fs::read(dir.join("a/b/_c")).expect("a/b/_c"), b"abc");
    assert_eq!(std::fs::read(dir.join("etc/passwd")).expect("etc"), b"abc");
    assert_eq!(names_in(root.path()), ["in"], "nothing beside the folder");
}

#[test]
fn bad_json_huge_sizes_and_many_files_are_400_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let bad = peer.post("/api/localsend/v2/prepare-upload", b"{\"info\": nope");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("invalid JSON"), "{}", bad.body);
    let huge = peer.prepare("", files(&[file("a", "a", 0)]).clone());
    assert_eq!(huge.status, 200, "an empty file is fine");
    let cancel = peer.post(
        &format!(
            "/api/localsend/v2/cancel?sessionId={}",
            huge.json()["sessionId"].as_str().expect("id")
        ),
        b"",
    );
    assert_eq!(cancel.status, 200);
    let too_big = json!({"a": {"id": "a", "fileName": "a", "size": 1u64 << 51, "fileType": "x"}});
    let answer = peer.prepare("", too_big);
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("larger"), "{}", answer.body);
    let no_room = json!({"a": {"id": "a", "fileName": "a", "size": 1u64 << 49, "fileType": "x"}});
    let answer = peer.prepare("", no_room);
    assert_eq!(answer.status, 507, "{}", answer.body);
    let many: Vec<(String, Value)> = (0..=ferry::localsend::wire::MAX_FILES)
        .map(|i| file(&format!("{i}"), "f", 1))
        .collect();
    let answer = peer.prepare("", files(&many));
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("too many files"), "{}", answer.body);
    assert_folder(dir.path(), &[]);
}

#[test]
fn wrong_tokens_sessions_and_lengths_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let (session, tokens) = session_of(&peer.prepare(
        "",
        files(&[
            file("a", "a.bin", 10),
            file("b", "b.bin", 10),
            file("c", "c.bin", 10),
        ]),
    ));
    let token = |id: &str| tokens[id].as_str().expect("token").to_owned();
    assert_eq!(
        peer.upload(&session, "a", "not-the-token", &[0; 10]).status,
        403
    );
    assert_eq!(
        peer.upload("other-session", "a", &token("a"), &[0; 10])
            .status,
        403
    );
    assert_eq!(
        peer.upload(&session, "zzz", &token("a"), &[0; 10]).status,
        403
    );
    assert_eq!(
        peer.post("/api/localsend/v2/upload?sessionId=x", b"")
            .status,
        400
    );
    // Longer than announced (chunked, so the server cannot know in advance).
    let long = peer.upload_chunked(&session, "a", &token("a"), &[7; 25], 5);
    assert_eq!(long.status, 400, "{}", long.body);
    assert!(long.body.contains("more data than"), "{}", long.body);
    // Shorter than announced.
    let short = peer.upload_chunked(&session, "b", &token("b"), &[7; 4], 2);
    assert_eq!(short.status, 400, "{}", short.body);
    let (finished, failed) = wait_files(&events, 2);
    assert!(finished.is_empty());
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_folder(dir.path(), &[]);
    // A file is sent once.
    assert_eq!(
        peer.upload(&session, "a", &token("a"), &[0; 10]).status,
        409
    );
}

#[test]
fn a_slow_body_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.idle_timeout = Duration::from_millis(500);
    let (server, events) = start(cfg);
    let peer = Peer::new(&server);
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "a.bin", 100)])));
    let path = format!(
        "/api/localsend/v2/upload?sessionId={session}&fileId=a&token={}",
        tokens["a"].as_str().expect("token")
    );
    let started = Instant::now();
    // 10 of the 100 bytes announced, then silence.
    let stream = peer.send(
        &path,
        "Content-Length: 100\r\n",
        &[&[1; 10]],
        Duration::ZERO,
    );
    let answer = Peer::read_answer(stream);
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after the idle timeout"
    );
    let (_, failed) = wait_files(&events, 1);
    assert!(failed[0].contains("no data"), "{failed:?}");
    assert_folder(dir.path(), &[]);
}

/// A LocalSend sender that pauses right after two quick megabytes has both shown in the row
/// while it pauses: the last figures came within the progress interval of the one shown and
/// were held back until more came.
#[test]
fn a_pause_right_after_fast_data_shows_that_data_in_the_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let size = 4 << 20;
    let (session, tokens) = session_of(&peer.prepare("", files(&[file("a", "暂停.bin", size)])));
    let path = format!(
        "/api/localsend/v2/upload?sessionId={session}&fileId=a&token={}",
        tokens["a"].as_str().expect("token")
    );
    let sent = data(2 << 20, 9);
    let stream = peer.send(
        &path,
        &format!("Content-Length: {size}\r\n"),
        &[&sent],
        Duration::ZERO,
    );
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) if *bytes_done == 2 << 20 => {
            Some(())
        }
        _ => None,
    });
    drop(stream);
}

#[test]
fn an_announcement_is_answered_with_a_pinned_register() {
    // The announcer is a second Ferry LocalSend server: its /register hears the answer.
    let dir = tempfile::tempdir().expect("tempdir");
    let (announcer, _a_events) = start(config(dir.path()));
    let mut cfg = config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    let (hearer, _events) = start(cfg);
    let announcement = json!({"alias": "Announcer", "version": "2.1", "deviceModel": null,
        "deviceType": "headless", "fingerprint": announcer.fingerprint(),
        "port": announcer.local_addr().port(), "protocol": "https", "download": false,
        "announce": true});
    let sender = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let target = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    sender.send_to(b"not json", target).expect("send");
    sender
        .send_to(announcement.to_string().as_bytes(), target)
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let registered = announcer.devices();
        if let Some(device) = registered.iter().find(|d| d.alias == "Hearer") {
            assert_eq!(device.fingerprint, hearer.fingerprint());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no register came: {registered:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let heard = hearer.devices();
    let device = heard
        .iter()
        .find(|d| d.fingerprint == announcer.fingerprint())
        .expect("the announcer is listed");
    // The register answer (over TLS, pinned) has the last word on the alias.
    assert_eq!(device.alias, "Ferry test");
    assert_eq!(device.addr, announcer.local_addr());
    assert!(device.how.contains(&"multicast"), "{:?}", device.how);
    assert!(device.how.contains(&"answer"), "{:?}", device.how);
}

#[test]
fn a_pinned_answer_lists_the_device_as_https_whatever_was_claimed_before() {
    // The announcer, on a loopback address of its own (answers are budgeted per address).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.bind = "127.0.0.75".parse().expect("ip");
    let (announcer, _a_events) = start(cfg);
    let mut cfg = config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    let (hearer, _events) = start(cfg);
    let target = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    let udp = UdpSocket::bind("127.0.0.75:0").expect("udp");
    let listed = |done: &dyn Fn(&LocalSendDevice) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let heard = hearer.devices();
            if let Some(d) = heard
                .iter()
                .find(|d| d.fingerprint == announcer.fingerprint() && done(d))
            {
                return d.clone();
            }
            assert!(Instant::now() < deadline, "never listed so: {heard:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // First claimed as plain HTTP (anyone can claim its fingerprint so).
    let claim = json!({"alias": "Announcer", "version": "2.1", "deviceType": "headless",
        "fingerprint": announcer.fingerprint(), "port": announcer.local_addr().port(),
        "protocol": "http", "announce": false});
    udp.send_to(claim.to_string().as_bytes(), target)
        .expect("send");
    listed(&|d| d.protocol == LocalSendProtocol::Http);
    // Then an announcement naming no protocol: answered over HTTPS, pinned, which proves it
    // speaks HTTPS there.
    let announcement = json!({"alias": "Announcer", "version": "2.1", "deviceType": "headless",
        "fingerprint": announcer.fingerprint(), "port": announcer.local_addr().port(),
        "announce": true});
    udp.send_to(announcement.to_string().as_bytes(), target)
        .expect("send");
    let device = listed(&|d| d.how.contains(&"answer"));
    assert_eq!(device.protocol, LocalSendProtocol::Https, "{device:?}");
    assert!(device.proven, "{device:?}");
    assert_eq!(device.addr, announcer.local_addr());
}

/// A socket in LocalSend's group on loopback (sending there too), on a port of its own that
/// a server may reuse, so it gets a copy of every announcement from the first on; reads
/// time out after 100 ms.
fn group_member() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let lo = "127.0.0.1".parse().expect("ip");
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("udp");
    socket.set_reuse_address(true).expect("reuse");
    socket.set_reuse_port(true).expect("reuse");
    socket
        .bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
        .expect("bind");
    socket
        .join_multicast_v4(&LOCALSEND_GROUP, &lo)
        .expect("join");
    socket.set_multicast_if_v4(&lo).expect("multicast if");
    socket.set_multicast_loop_v4(true).expect("loop");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    socket.into()
}

#[test]
fn announce_sends_the_start_announcements_again() {
    // On the port the server will announce to.
    let socket = group_member();
    let port = socket.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.multicast = Some(MulticastConfig {
        port,
        ..loopback_multicast()
    });
    let (server, _events) = start(cfg);
    assert_eq!(server.discovery_port(), Some(port));
    let mut heard = 0;
    let mut count_until = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 65536];
        while heard < want && Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let body: Value = serde_json::from_slice(&buf[..n]).expect("JSON");
                assert_eq!(body["fingerprint"], server.fingerprint());
                assert_eq!(body["announce"], true);
                heard += 1;
            }
        }
        heard
    };
    assert_eq!(count_until(3), 3, "three announcements at start");
    server.announce();
    assert_eq!(count_until(6), 6, "three more after announce()");
}

/// An interface that comes after the server started (the window opened before the Wi-Fi
/// connected) gets LocalSend's group joined, and announced on, at the next relist: the
/// groups used to be joined once at start, and such a network stayed deaf to LocalSend
/// devices, and they to Ferry, until a restart.
#[test]
fn an_interface_that_comes_later_is_joined_and_announced_on() {
    use ferry::localsend::{RELIST_EVERY, Relist};
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    let lo = "127.0.0.1".parse().expect("ip");
    // A LocalSend device in the group on loopback, on the port the server will use.
    let device = group_member();
    let port = device.local_addr().expect("addr").port();
    let group = SocketAddr::from((LOCALSEND_GROUP, port));
    let announcement = json!({"alias": "Later", "version": "2.1", "deviceType": "desktop",
        "fingerprint": "later-device", "port": 9, "protocol": "https", "announce": true});
    let announce = || {
        device
            .send_to(announcement.to_string().as_bytes(), group)
            .expect("send");
    };

    // No interface at start; loopback "comes up", the listing fails for a while, loopback
    // goes: as `state` says.
    const NONE: u8 = 0;
    const LOOPBACK: u8 = 1;
    const FAILING: u8 = 2;
    let state = Arc::new(AtomicU8::new(NONE));
    let listed = Arc::clone(&state);
    // How many listings the server has asked for (counted as each begins).
    let relists = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&relists);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.multicast = Some(MulticastConfig {
        port,
        interfaces: vec![],
        relist: Some(Relist::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            match listed.load(Ordering::SeqCst) {
                LOOPBACK => Some((vec![lo], vec![])),
                FAILING => None,
                _ => Some((vec![], vec![])),
            }
        })),
        ..loopback_multicast()
    });
    let (server, _events) = start(cfg);
    let from_server = |until: Instant| {
        let mut buf = [0u8; 65536];
        while Instant::now() < until {
            if let Ok(n) = device.recv(&mut buf)
                && let Ok(body) = serde_json::from_slice::<Value>(&buf[..n])
                && body["fingerprint"] == server.fingerprint()
            {
                return Some(body);
            }
        }
        None
    };

    // Without the interface: nothing announced there, and the device not heard.
    announce();
    let none = from_server(Instant::now() + RELIST_EVERY / 2);
    assert!(none.is_none(), "announced with no interface: {none:?}");
    assert!(server.devices().is_empty(), "{:?}", server.devices());

    // The interface comes: within a relist the server announces on it and hears the device.
    state.store(LOOPBACK, Ordering::SeqCst);
    let body = from_server(Instant::now() + RELIST_EVERY + Duration::from_secs(10))
        .expect("an announcement on the interface that came");
    assert_eq!(body["announce"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.devices().iter().any(|d| d.alias == "Later") {
        assert!(
            Instant::now() < deadline,
            "the device not heard on the interface that came"
        );
        announce();
        std::thread::sleep(Duration::from_millis(200));
    }

    // Waits until a listing that began after now has been acted on: the server asks for
    // them one after another, so once a second one began, the first was followed.
    let relisted = || {
        let now = relists.load(Ordering::SeqCst);
        let deadline = Instant::now() + 3 * RELIST_EVERY + Duration::from_secs(10);
        while relists.load(Ordering::SeqCst) < now + 2 {
            assert!(Instant::now() < deadline, "the server stopped listing");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Announces as `alias` five times over a second; whether the server then lists it.
    let heard_as = |alias: &str| {
        let body = json!({"alias": alias, "version": "2.1", "deviceType": "desktop",
            "fingerprint": format!("{alias}-device"), "port": 9, "protocol": "https",
            "announce": true});
        for _ in 0..5 {
            device
                .send_to(body.to_string().as_bytes(), group)
                .expect("send");
            std::thread::sleep(Duration::from_millis(200));
        }
        server.devices().iter().any(|d| d.alias == alias)
    };

    // The system cannot list its interfaces for a while: that is no interface gone, the
    // group stays joined and a device announcing meanwhile is heard.
    state.store(FAILING, Ordering::SeqCst);
    relisted();
    assert!(heard_as("During"), "{:?}", server.devices());

    // The interface goes: the group is left at the next relist, so a device announcing
    // there afterwards is not heard.
    state.store(NONE, Ordering::SeqCst);
    relisted();
    assert!(!heard_as("After"), "{:?}", server.devices());
}

/// An interface whose address changes with the new one added before the old one goes (as
/// DHCP and NetworkManager may renumber): the kernel keeps one membership per interface,
/// under the address that joined first, so leaving the group by the old address dropped it,
/// and the new address, already listed, was never joined again: that network went deaf
/// until a restart. Every address listed is joined again at each relist. Loopback stands
/// for the interface: 127.0.0.2 is on it as 127.0.0.1 is.
#[test]
fn an_interface_renumbered_new_address_first_stays_in_the_group() {
    use ferry::localsend::{RELIST_EVERY, Relist};
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (old, new) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    let device = group_member();
    let port = device.local_addr().expect("addr").port();
    let group = SocketAddr::from((LOCALSEND_GROUP, port));

    // What the relist says, and how many times it was asked.
    let listed = Arc::new(Mutex::new(vec![old]));
    let asked = Arc::new(AtomicUsize::new(0));
    let (list, count) = (Arc::clone(&listed), Arc::clone(&asked));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.multicast = Some(MulticastConfig {
        port,
        interfaces: vec![old],
        relist: Some(Relist::new(move || {
            let now = list.lock().expect("list").clone();
            count.fetch_add(1, Ordering::SeqCst);
            Some((now, vec![]))
        })),
        ..loopback_multicast()
    });
    let (server, _events) = start(cfg);
    // Sets what the relist says, and waits until it was asked twice since (so it followed).
    let relisted = |now: Vec<Ipv4Addr>| {
        *listed.lock().expect("list") = now;
        let since = asked.load(Ordering::SeqCst);
        let deadline = Instant::now() + 3 * RELIST_EVERY + Duration::from_secs(5);
        while asked.load(Ordering::SeqCst) < since + 2 {
            assert!(Instant::now() < deadline, "no relist");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    relisted(vec![old, new]);
    relisted(vec![new]);

    let announcement = json!({"alias": "Renumbered", "version": "2.1", "deviceType": "desktop",
        "fingerprint": "renumbered-device", "port": 9, "protocol": "https", "announce": true});
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.devices().iter().any(|d| d.alias == "Renumbered") {
        assert!(
            Instant::now() < deadline,
            "the device not heard on the interface renumbered"
        );
        device
            .send_to(announcement.to_string().as_bytes(), group)
            .expect("send");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ferry_serve_receives_from_localsend_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = serve_localsend_with_pin(dir.path(), "1234");
    let (line, lines) = (&serve.line, &serve.lines);
    assert!(line.contains("PIN required"), "{line}");
    // A peer pinning that fingerprint gets through TLS: the line told the truth.
    let peer = Peer::to(serve.addr, &serve.fingerprint);
    assert_eq!(
        peer.prepare("", files(&[file("a", "a.bin", 3)])).status,
        401
    );
    let (session, tokens) = session_of(&peer.prepare("?pin=1234", files(&[file("a", "a.bin", 3)])));
    let up = peer.upload(&session, "a", tokens["a"].as_str().expect("token"), b"xyz");
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(
        std::fs::read(dir.path().join("a.bin")).expect("received"),
        b"xyz"
    );
    let text = json!({"t": {"id": "t", "fileName": "m.txt", "size": 2, "fileType": "text/plain", "preview": "hi"}});
    assert_eq!(peer.prepare("?pin=1234", text).status, 204);
    let note = wait_line(lines, "note from");
    assert!(
        note.contains("LocalSend device \"Pixel\"") && note.ends_with(": hi"),
        "{note}"
    );
}
