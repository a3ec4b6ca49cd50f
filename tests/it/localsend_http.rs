//! LocalSend devices with encryption turned off (plain HTTP), against Ferry's own LocalSend
//! receiver configured as one (`LocalSendProtocol::Http`), in-process on 127.0.0.1 port 0:
//! nothing goes to them unless the user agreed; with the agreement files (a Chinese name
//! too) and a text arrive whole; an HTTPS device never gets plaintext, agreement or not; a
//! device that speaks the other protocol than it announced fails fast with a clear error; a
//! probe and the sweep find such a device and list it as plain HTTP; hostile plain answers
//! stay bounded.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{CancelToken, Event, NoteEvent, Security, TransferEvent, event_channel};
use ferry::localsend::{
    CertIdentity, LocalSendBatch, LocalSendConfig, LocalSendProtocol, LocalSendSendError,
    LocalSendSender, LocalSendServer, LocalSendTarget,
};
use ferry::transfer::{AcceptPolicy, OutgoingFile, OutgoingItem, walk_folder};

use crate::util::{Proxy, data, names_in, wait_for};

/// A LocalSend device on `ip` (port 0) speaking `protocol`, taking every file.
pub fn device_on(
    ip: [u8; 4],
    dir: &Path,
    alias: &str,
    protocol: LocalSendProtocol,
) -> (LocalSendServer, Receiver<Event>) {
    let identity = CertIdentity::generate().expect("certificate");
    device_with(identity, ip, dir, alias, protocol)
}

/// [`device_on`] with `identity` (two devices may then claim one fingerprint).
pub fn device_with(
    identity: CertIdentity,
    ip: [u8; 4],
    dir: &Path,
    alias: &str,
    protocol: LocalSendProtocol,
) -> (LocalSendServer, Receiver<Event>) {
    let mut config = LocalSendConfig::new(dir.to_path_buf(), alias, identity);
    config.bind = IpAddr::from(ip);
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.idle_timeout = Duration::from_secs(5);
    config.fsync = false;
    config.protocol = protocol;
    let (sink, events) = event_channel(None);
    let server = LocalSendServer::start(config, sink).expect("LocalSend server starts");
    (server, events)
}

/// A device with encryption off on 127.0.0.1.
pub fn plain_device(dir: &Path, alias: &str) -> (LocalSendServer, Receiver<Event>) {
    device_on([127, 0, 0, 1], dir, alias, LocalSendProtocol::Http)
}

fn target_at(addr: SocketAddr, protocol: LocalSendProtocol) -> LocalSendTarget {
    LocalSendTarget {
        addr,
        fingerprint: "0123456789ABCDEF".into(),
        alias: "Old phone".into(),
        device_type: "mobile".into(),
        protocol,
    }
}

fn sender(agreed: bool) -> LocalSendSender {
    let mut sender = LocalSendSender::new(CertIdentity::generate().expect("cert"), "Ferry");
    sender.send_unencrypted = agreed;
    sender.decision_timeout = Some(Duration::from_secs(10));
    sender
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> OutgoingFile {
    std::fs::write(dir.join(name), bytes).expect("write");
    OutgoingFile::new(dir.join(name))
}

#[test]
fn files_and_a_text_go_over_plain_http_only_when_the_user_agreed() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let (device, events) = plain_device(inbox.path(), "Old phone");
    let to = target_at(device.local_addr(), LocalSendProtocol::Http);
    let report = data(150_000, 7);
    let photo = data(3_000, 8);
    let files = vec![
        write(src.path(), "report.pdf", &report),
        write(src.path(), "照片 一.jpg", &photo),
    ];

    // Not agreed: refused before anything is sent, with the reason.
    let (sink, mine) = event_channel(None);
    let refused = sender(false).send_files(&to, &files, &sink, &CancelToken::new());
    match refused {
        Err(e @ LocalSendSendError::EncryptionOff { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("Old phone has encryption turned off"),
                "{text}"
            );
            assert!(text.contains("anyone on the network could read"), "{text}");
        }
        other => panic!("sent without agreement: {other:?}"),
    }
    drop(sink);
    let failed = mine
        .try_iter()
        .filter(|e| matches!(e, Event::Transfer(TransferEvent::Failed { .. })))
        .count();
    assert_eq!(failed, 2, "each file says why it was not sent");
    let text = sender(false).send_text(&to, "hello", &CancelToken::new());
    assert!(matches!(
        text,
        Err(LocalSendSendError::EncryptionOff { .. })
    ));
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, Event::Note(_) | Event::Transfer(_))),
        "the device heard nothing at all"
    );

    // Agreed: whole, under their names, said to have gone unencrypted.
    let (sink, mine) = event_channel(None);
    let outcomes = sender(true)
        .send_files(&to, &files, &sink, &CancelToken::new())
        .expect("the device takes the files");
    assert!(outcomes.iter().all(|o| o.is_success()), "{outcomes:?}");
    drop(sink);
    let marks: Vec<Security> = mine
        .try_iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::Started { security, .. }) => Some(security),
            _ => None,
        })
        .collect();
    assert_eq!(marks.len(), 2);
    assert!(
        marks.iter().all(|m| matches!(
            m,
            Security::LocalSend {
                encrypted: false,
                ..
            }
        )),
        "{marks:?}"
    );
    let mut names = names_in(inbox.path());
    names.sort();
    assert_eq!(names, vec!["report.pdf", "照片 一.jpg"]);
    assert_eq!(
        std::fs::read(inbox.path().join("report.pdf")).unwrap(),
        report
    );
    assert_eq!(
        std::fs::read(inbox.path().join("照片 一.jpg")).unwrap(),
        photo
    );

    sender(true)
        .send_text(&to, "明天见 over HTTP", &CancelToken::new())
        .expect("the text is taken");
    let got = wait_for(&events, |e| match e {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    });
    assert_eq!(got, "明天见 over HTTP");
}

/// A folder and a PIN work over plain HTTP as over HTTPS.
#[test]
fn a_folder_and_a_pin_go_over_plain_http_too() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(inbox.path().to_path_buf(), "Kiosk", identity);
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.fsync = false;
    config.pin = Some("密码 7".into());
    config.protocol = LocalSendProtocol::Http;
    let (sink, _events) = event_channel(None);
    let device = LocalSendServer::start(config, sink).expect("starts");
    let folder = src.path().join("相册");
    std::fs::create_dir_all(folder.join("2024")).unwrap();
    let a = data(40_000, 1);
    std::fs::write(folder.join("2024/a.jpg"), &a).unwrap();
    std::fs::write(folder.join("b.txt"), b"bee").unwrap();
    let batch = LocalSendBatch::of(&[OutgoingItem::Folder(walk_folder(&folder).unwrap())]);
    let to = target_at(device.local_addr(), LocalSendProtocol::Http);

    let (sink, _mine) = event_channel(None);
    let no_pin = sender(true).send_batch(&to, &batch, &sink, &CancelToken::new());
    assert!(
        matches!(no_pin, Err(LocalSendSendError::PinRequired)),
        "{no_pin:?}"
    );
    let mut with_pin = sender(true);
    with_pin.pin = Some("密码 7".into());
    let outcomes = with_pin
        .send_batch(&to, &batch, &sink, &CancelToken::new())
        .expect("sent");
    assert!(outcomes.iter().all(|o| o.is_success()), "{outcomes:?}");
    assert_eq!(
        std::fs::read(inbox.path().join("相册/2024/a.jpg")).unwrap(),
        a
    );
    assert_eq!(
        std::fs::read(inbox.path().join("相册/b.txt")).unwrap(),
        b"bee"
    );
}

/// A server that reads what each connection first sends and reports it, answers a TLS
/// hello with `tls_answer` (nothing: a server that speaks no TLS and closes), and closes.
fn first_bytes_server(tls_answer: &'static [u8]) -> (SocketAddr, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut first = [0u8; 512];
            let n = stream.read(&mut first).unwrap_or(0);
            if n == 0 {
                continue;
            }
            let _ = tx.send(first[..n].to_vec());
            if first[0] == 0x16 {
                let _ = stream.write_all(tls_answer);
            }
        }
    });
    (addr, rx)
}

#[test]
fn an_https_device_gets_tls_even_when_unencrypted_sending_is_agreed() {
    let (addr, first) = first_bytes_server(&[]);
    let to = target_at(addr, LocalSendProtocol::Https);
    // The listener closes after reading: the send fails, but only its first bytes matter.
    let _ = sender(true).send_text(&to, "secret", &CancelToken::new());
    let bytes = first
        .recv_timeout(Duration::from_secs(10))
        .expect("the sender connected");
    assert_eq!(
        bytes.first(),
        Some(&0x16),
        "a TLS handshake record, not {:?}",
        String::from_utf8_lossy(&bytes)
    );

    // And a device with encryption off is not even connected to without the agreement.
    let (addr, first) = first_bytes_server(&[]);
    let to = target_at(addr, LocalSendProtocol::Http);
    let refused = sender(false).send_text(&to, "secret", &CancelToken::new());
    assert!(matches!(
        refused,
        Err(LocalSendSendError::EncryptionOff { .. })
    ));
    assert!(first.try_recv().is_err(), "nothing connected");
}

#[test]
fn a_device_speaking_the_other_protocol_than_announced_fails_fast_and_says_so() {
    let inbox = tempfile::tempdir().unwrap();
    let (tls, _events) = device_on(
        [127, 0, 0, 1],
        inbox.path(),
        "Back on",
        LocalSendProtocol::Https,
    );
    let (plain, _events) = plain_device(inbox.path(), "Turned off");
    let cases = [
        (tls.local_addr(), LocalSendProtocol::Http, "answers in TLS"),
        (
            plain.local_addr(),
            LocalSendProtocol::Https,
            "does not speak HTTPS",
        ),
    ];
    for (addr, announced, said) in cases {
        let started = Instant::now();
        let result =
            sender(true).send_text(&target_at(addr, announced), "hello", &CancelToken::new());
        let text = match result {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{announced:?} to the other protocol went through"),
        };
        assert!(text.contains(said), "{announced:?}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{announced:?}: took {:?}",
            started.elapsed()
        );
    }
    assert!(names_in(inbox.path()).is_empty());
}

#[test]
fn a_probe_and_the_sweep_find_a_device_with_encryption_off_as_plain_http() {
    let theirs = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let (device, _events) = device_on(
        [127, 0, 0, 29],
        theirs.path(),
        "Plain tablet",
        LocalSendProtocol::Http,
    );
    let found = sender(false)
        .probe(device.local_addr(), Duration::from_secs(5))
        .expect("the probe finds it");
    assert_eq!(found.protocol, LocalSendProtocol::Http);
    assert_eq!(found.alias, "Plain tablet");
    assert_eq!(found.fingerprint, device.fingerprint());
    assert_eq!(found.addr, device.local_addr());

    let (sweeper, _events) = device_on(
        [127, 0, 0, 1],
        mine.path(),
        "Sweeper",
        LocalSendProtocol::Https,
    );
    let port = device.local_addr().port();
    let hosts = (27..=31)
        .map(|h| SocketAddr::from(([127, 0, 0, h], port)))
        .collect();
    let report = sweeper
        .sweep(hosts)
        .expect("a sweep starts")
        .recv_timeout(Duration::from_secs(20))
        .expect("the sweep ends");
    assert_eq!(report.found.len(), 1, "{:?}", report.found);
    assert_eq!(report.found[0].protocol, LocalSendProtocol::Http);
    assert_eq!(report.found[0].fingerprint, device.fingerprint());
    let listed = sweeper.devices();
    assert!(
        listed
            .iter()
            .any(|d| d.alias == "Plain tablet" && d.protocol == LocalSendProtocol::Http),
        "{listed:?}"
    );
}

/// A hostile plain-HTTP "device": answers every request with `answer` (status line, headers
/// and body as given), after reading the request head; a TLS hello gets it at once, as a
/// plain-HTTP server answers what it cannot parse.
pub fn scripted_http_device(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                    if head == [0x16] {
                        break;
                    }
                }
                let _ = stream.write_all(&answer);
            });
        }
    });
    addr
}

#[test]
fn hostile_plain_http_answers_stay_bounded() {
    // A prepare-upload answer far over the limit: refused, not read whole.
    let mut huge = b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'{', 3_000_000));
    let addr = scripted_http_device(huge);
    let started = Instant::now();
    let result = sender(true).send_text(
        &target_at(addr, LocalSendProtocol::Http),
        "hi",
        &CancelToken::new(),
    );
    assert!(
        matches!(result, Err(LocalSendSendError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A register answer with a fingerprint far too long: no device.
    let long_id = "A".repeat(4096);
    let body = format!(r#"{{"alias":"x","version":"2.1","fingerprint":"{long_id}"}}"#);
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{body}",
        body.len()
    );
    let addr = scripted_http_device(answer.into_bytes());
    // The probe tries TLS first: this "device" answers the hello in plain text.
    let probed = sender(false).probe(addr, Duration::from_secs(5));
    assert!(
        matches!(probed, Err(LocalSendSendError::BadAnswer(_))),
        "{probed:?}"
    );
}

/// Anyone can announce a device with encryption off from an HTTPS device's address (or
/// list one there): with "send unencrypted" agreed, Ferry first checks that the device
/// speaks no TLS, so an HTTPS device gets only TLS hellos, never the offer (file names, a
/// PIN, a text) in the clear, and the user is told why nothing was sent. Before the check
/// the plaintext offer went out first and the TLS server's refusal came after.
#[test]
fn a_device_announced_with_encryption_off_that_speaks_tls_gets_nothing_in_the_clear() {
    let inbox = tempfile::tempdir().unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let (device, _events) = device_on(
        [127, 0, 0, 1],
        inbox.path(),
        "Real phone",
        LocalSendProtocol::Https,
    );
    let proxy = Proxy::to(device.local_addr()).start();
    let (addr, first_bytes) = (proxy.addr, proxy.first_bytes);
    let to = target_at(addr, LocalSendProtocol::Http);
    let mut agreed = sender(true);
    agreed.pin = Some("密码 1".into());

    let text = agreed.send_text(&to, "the secret text", &CancelToken::new());
    let file = write(outbox.path(), "秘密.txt", b"secret bytes");
    let (sink, _events) = event_channel(None);
    let files = agreed.send_files(&to, &[file], &sink, &CancelToken::new());
    for result in [text.map(|_| ()), files.map(|_| ())] {
        match result {
            Err(e @ LocalSendSendError::AnswersTls { .. }) => {
                let said = e.to_string();
                assert!(said.contains("answers in TLS"), "{said}");
                assert!(said.contains(&addr.to_string()), "{said}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let opened: Vec<u8> = first_bytes.try_iter().collect();
    assert!(!opened.is_empty(), "the sender never connected");
    assert!(
        opened.iter().all(|&b| b == 0x16),
        "something other than a TLS hello went out: {opened:?}"
    );
    assert!(names_in(inbox.path()).is_empty());
}

/// A server that begins a TLS answer and drops the connection part way spoke TLS as far as
/// anyone can tell: the offer is not sent to it in the clear. (An end of stream counted as
/// "no TLS" whenever it came, so this one got the plaintext request next.)
#[test]
fn a_server_that_drops_part_way_through_a_tls_answer_gets_nothing_in_the_clear() {
    // A handshake record's type and version, then nothing more.
    let (addr, first_bytes) = first_bytes_server(&[0x16, 0x03, 0x03]);
    let to = target_at(addr, LocalSendProtocol::Http);
    let refused = sender(true).send_text(&to, "the secret text", &CancelToken::new());
    assert!(
        matches!(refused, Err(LocalSendSendError::AnswersTls { .. })),
        "{refused:?}"
    );
    let opened: Vec<u8> = first_bytes.try_iter().map(|bytes| bytes[0]).collect();
    assert_eq!(opened, [0x16], "only a TLS hello went out");
}
