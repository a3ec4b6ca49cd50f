//! What a real LocalSend did that the tests written from its documentation did not: each
//! test here replays, with an in-process peer on 127.0.0.1, a request shape seen from
//! LocalSend 1.18.2's own code (its CLI and its core's v2 client, checked against `ferry`
//! in two network namespaces: README, "Interoperability with LocalSend: how it was
//! checked"), so CI never needs the real LocalSend.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::Receiver;
use ferry::events::{Event, event_channel};
use ferry::localsend::{CertIdentity, LocalSendConfig, LocalSendServer};
use ferry::transfer::AcceptPolicy;
use serde_json::{Value, json};

use crate::localsend::{Answer, Peer};
use crate::util::{data, names_in, serve_localsend_with_pin, wait_files, wait_line};

fn start(dir: &Path, pin: Option<&str>) -> (LocalSendServer, Receiver<Event>) {
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dir.to_path_buf(), "Ferry interop", identity);
    config.bind = "127.0.0.1".parse().expect("ip");
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.idle_timeout = Duration::from_secs(5);
    config.fsync = false;
    config.pin = pin.map(str::to_owned);
    let (sink, events) = event_channel(None);
    let server = LocalSendServer::start(config, sink).expect("LocalSend server starts");
    (server, events)
}

/// A sender like LocalSend's core client: its own certificate, the server's pinned, one
/// request per connection.
struct Sender {
    peer: Peer,
}

impl Sender {
    fn to(server: &LocalSendServer) -> Self {
        Self::at(server.local_addr(), server.fingerprint())
    }

    /// A sender to the receiver at `addr` whose certificate must have `fingerprint`.
    fn at(addr: SocketAddr, fingerprint: &str) -> Self {
        Self {
            peer: Peer::to(addr, fingerprint),
        }
    }

    /// `POST path` with `body`: `(status, body)`.
    fn post(&self, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let mut stream = self.peer.connect();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
            self.peer.addr
        );
        stream
            .write_all(&[head.as_bytes(), body].concat())
            .expect("request");
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => panic!("no answer: {e}"),
        }
        let answer = Answer::parse(&raw);
        (answer.status, answer.body)
    }

    /// `prepare-upload` with the `info` LocalSend 1.18.2's CLI sends (version 2.2,
    /// `headless`, no `download` problem) and `files`, after `?` the `query` as given.
    fn prepare(&self, query: &str, files: Value) -> (u16, String) {
        let info = json!({"alias": "LS-CLI", "version": "2.2", "deviceModel": "CLI",
            "deviceType": "headless", "fingerprint": self.peer.fingerprint(), "port": 53317,
            "protocol": "https", "download": false});
        let body = json!({"info": info, "files": files}).to_string();
        let headers = format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        self.post(
            &format!("/api/localsend/v2/prepare-upload{query}"),
            &headers,
            body.as_bytes(),
        )
    }

    /// An upload as LocalSend's client streams it: chunked, no `Content-Length`; the
    /// query is used as given (already encoded).
    fn upload(&self, query: &str, bytes: &[u8]) -> (u16, String) {
        let mut chunked = format!("{:x}\r\n", bytes.len()).into_bytes();
        chunked.extend_from_slice(bytes);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        self.post(
            &format!("/api/localsend/v2/upload?{query}"),
            "Transfer-Encoding: chunked\r\n",
            &chunked,
        )
    }
}

fn one_file(id: &str, name: &str, size: usize) -> Value {
    let file = json!({"id": id, "fileName": name, "size": size,
                      "fileType": "application/octet-stream"});
    Value::Object([(id.to_owned(), file)].into_iter().collect())
}

fn session_and_token(answer: &(u16, String), id: &str) -> (String, String) {
    assert_eq!(answer.0, 200, "prepare-upload: {}", answer.1);
    let json: Value = serde_json::from_str(&answer.1).expect("json");
    (
        json["sessionId"].as_str().expect("sessionId").to_owned(),
        json["files"][id].as_str().expect("token").to_owned(),
    )
}

/// LocalSend's core client put a PIN typed with a space and Chinese characters into the
/// query percent-encoded (`%E5%AF%86%E7%A0%81%201`); Ferry compared the raw text and said
/// "wrong PIN" to the right PIN (three times and the sender was locked out). LocalSend's
/// server decodes the query as a form (`+` is a space too, as its app encodes it).
#[test]
fn a_pin_with_a_space_and_chinese_is_accepted_percent_or_form_encoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _events) = start(dir.path(), Some("密码 1"));
    let sender = Sender::to(&server);
    let files = one_file("a", "a.bin", 1);
    for (query, want) in [
        ("?pin=%E5%AF%86%E7%A0%81%201", 200), // LocalSend's Rust client (reqwest)
        ("?pin=%E5%AF%86%E7%A0%81+1", 200),   // form encoding (LocalSend's app)
        ("?pin=%E5%AF%86%E7%A0%81", 401),     // a wrong PIN is still wrong
    ] {
        let answer = sender.prepare(query, files.clone());
        assert_eq!(answer.0, want, "{query}: {}", answer.1);
        if want == 200 {
            let (session, _) = session_and_token(&answer, "a");
            let cancel = sender.post(
                &format!("/api/localsend/v2/cancel?sessionId={session}"),
                "Content-Length: 0\r\n",
                b"",
            );
            assert_eq!(cancel.0, 200, "cancel: {}", cancel.1);
        }
    }
    assert!(names_in(dir.path()).is_empty(), "nothing was uploaded");
}

/// A file id is the sender's own string (LocalSend uses UUIDs; anything is allowed): one
/// with reserved characters comes back percent-encoded in `upload?fileId=`, and must still
/// name its file.
#[test]
fn a_file_id_with_reserved_characters_is_found_again_in_the_upload_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(dir.path(), None);
    let sender = Sender::to(&server);
    let id = "photo 1+2/ä&x=y";
    let bytes = data(3000, 7);
    let answer = sender.prepare("", one_file(id, "相册/photo.jpg", bytes.len()));
    let (session, token) = session_and_token(&answer, id);
    let encoded_id = "photo%201%2B2%2F%C3%A4%26x%3Dy";
    let uploaded = sender.upload(
        &format!("sessionId={session}&fileId={encoded_id}&token={token}"),
        &bytes,
    );
    assert_eq!(uploaded.0, 200, "upload: {}", uploaded.1);
    let (done, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        std::fs::read(&done[0].0).expect("received"),
        bytes,
        "{:?}",
        done[0].0
    );
    // A `/` in the name is LocalSend's folder: the file lands inside it.
    assert_eq!(names_in(dir.path()), ["相册"]);
    assert_eq!(
        std::fs::read(dir.path().join("相册").join("photo.jpg")).expect("in its folder"),
        bytes
    );
}

/// Through the real `ferry serve`, as LocalSend's CLI sent to it: the percent-encoded PIN
/// gets in, the chunked upload lands, and the line names the LocalSend device and says the
/// file is unchecked because LocalSend sends no hash (it said "plain peer").
#[test]
fn ferry_serve_takes_a_localsend_upload_with_an_encoded_pin_and_says_what_was_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = serve_localsend_with_pin(dir.path(), "密码 1");
    let lines = &serve.lines;
    let sender = Sender::at(serve.addr, &serve.fingerprint);
    let bytes = data(5000, 3);
    let answer = sender.prepare(
        "?pin=%E5%AF%86%E7%A0%81%201",
        one_file("f", "中文文件名.bin", bytes.len()),
    );
    let (session, token) = session_and_token(&answer, "f");
    let uploaded = sender.upload(
        &format!("sessionId={session}&fileId=f&token={token}"),
        &bytes,
    );
    assert_eq!(uploaded.0, 200, "upload: {}", uploaded.1);
    let received = wait_line(lines, "received ");
    assert!(
        received.contains("complete, unverified (LocalSend sends no hash)")
            && received.contains("LocalSend device \"LS-CLI\" (headless)"),
        "{received}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("中文文件名.bin")).expect("received"),
        bytes
    );
}
