//! An on-path relay that rewrites the plaintext before the secure handshake: the sender's
//! secure hello (its `serves_on`, its cipher list, a byte that decodes the same) or the
//! receiver's go-ahead. Every byte of both is bound into the handshake, so each change fails
//! it on both ends: the sender's upload fails with a security error, the server reports the
//! failure and keeps serving (a direct upload right after works), and a receiver that would
//! have come to trust the sender saved no forged port.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{CancelToken, Event, FailureKind, ServerEvent, TransferEvent, event_channel};
use ferry::secure::Keyring;
use ferry::secure::pairing::PairingCode;
use ferry::transfer::{
    AcceptPolicy, Decision, FileOutcome, OutgoingFile, SendOptions, ServerHandle, send_files,
};
use serde_json::{Value, json};

use crate::secure_transfer::{file_with, server};
use crate::util::{DEADLINE, LOOPBACK, device, names_in};

/// The port the sender's own server listens on, as it says in its hello.
const REAL_PORT: u16 = 47_123;
/// The port the relay puts in its place.
const FORGED_PORT: u16 = 47_999;

/// What the relay does to one frame body.
type Rewrite = fn(&[u8]) -> Vec<u8>;

fn unchanged(body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

/// Changes one field of a JSON body (serde_json writes its keys sorted, as Ferry does).
fn with_field(body: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(body).unwrap();
    json.as_object_mut().unwrap().insert(field.into(), value);
    serde_json::to_vec(&json).unwrap()
}

fn forge_port(hello: &[u8]) -> Vec<u8> {
    with_field(hello, "serves_on", json!(FORGED_PORT))
}

fn strip_aes(hello: &[u8]) -> Vec<u8> {
    with_field(hello, "ciphers", json!(["chachapoly"]))
}

/// A trailing space: the same message once decoded.
fn add_space(body: &[u8]) -> Vec<u8> {
    [body, b" "].concat()
}

fn other_cipher(go_ahead: &[u8]) -> Vec<u8> {
    let json: Value = serde_json::from_slice(go_ahead).unwrap();
    let other = match json["cipher"].as_str() {
        Some("aesgcm") => "chachapoly",
        _ => "aesgcm",
    };
    with_field(go_ahead, "cipher", json!(other))
}

/// An unknown field, which a receiver of it ignores.
fn extra_field(go_ahead: &[u8]) -> Vec<u8> {
    with_field(go_ahead, "note", json!("from the relay"))
}

/// Reads one frame's body (`None` at the end of the stream).
fn read_body(from: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    from.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; ferry::protocol::decode_frame_len(prefix).ok()?];
    from.read_exact(&mut body).ok()?;
    Some(body)
}

/// A relay on 127.0.0.1 for one connection to `upstream`: the first frame each way goes
/// through its rewrite (`hello` from the sender, `go_ahead` from the receiver) and is sent
/// on with its length prefix made to fit; every other byte passes as it is.
fn relay(upstream: SocketAddr, hello: Rewrite, go_ahead: Rewrite) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream, rewrite: Rewrite| {
            thread::spawn(move || {
                if let Some(body) = read_body(&mut from) {
                    let frame = ferry::protocol::encode_frame(&rewrite(&body)).unwrap();
                    if to.write_all(&frame).is_ok() {
                        let _ = std::io::copy(&mut from, &mut to);
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            })
        };
        let up = pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            hello,
        );
        let down = pump(server, client, go_ahead);
        up.join().unwrap();
        down.join().unwrap();
    });
    (addr, handle)
}

/// Sends `file` as `keyring` (saying its own server listens on [`REAL_PORT`], with `code`)
/// to `to`; an error before any file stands as every file's failure.
fn send(
    to: SocketAddr,
    keyring: &Keyring,
    code: Option<PairingCode>,
    file: &PathBuf,
) -> FileOutcome {
    let mut opts = SendOptions::new(to.to_string());
    opts.keyring = Some(keyring.clone());
    opts.code = code;
    opts.serves_on = Some(REAL_PORT);
    opts.answer_timeout = Duration::from_secs(10);
    let (sink, _events) = event_channel(None);
    let files = [OutgoingFile::new(file)];
    match send_files(&opts, &files, &sink, &CancelToken::new()) {
        Ok(mut outcomes) => outcomes.remove(0),
        Err(e) => FileOutcome::Failed(ferry::events::Failure::new(
            FailureKind::Security,
            e.to_string(),
        )),
    }
}

/// [`send`] to a server that asks about untrusted devices, answering "Accept and trust" to
/// any offer; the sender's outcome and the reason the server gave for ending the connection,
/// if it did.
fn send_trusting(
    to: SocketAddr,
    server: &ServerHandle,
    events: &Receiver<Event>,
    keyring: &Keyring,
    file: &PathBuf,
) -> (FileOutcome, Option<String>) {
    thread::scope(|scope| {
        let sending = scope.spawn(|| send(to, keyring, None, file));
        let deadline = Instant::now() + DEADLINE;
        let mut ended = None;
        // Until the sender is done and the server has said how the connection went.
        while !(sending.is_finished() && ended.is_some()) {
            assert!(Instant::now() < deadline, "no end within {DEADLINE:?}");
            match events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Server(ServerEvent::OfferPending(offer))) => {
                    server.answer(offer.offer_id, Decision::AcceptAndTrust);
                }
                Ok(Event::Server(ServerEvent::ConnectionError { reason, .. })) => {
                    ended = Some(Some(reason));
                }
                Ok(Event::Transfer(TransferEvent::Finished { .. })) => ended = Some(None),
                _ => {}
            }
        }
        (sending.join().unwrap(), ended.flatten())
    })
}

/// The sender's upload failed as a handshake that did not authenticate.
fn assert_refused_by_handshake(outcome: &FileOutcome, case: &str) {
    let FileOutcome::Failed(failure) = outcome else {
        panic!("{case}: the relayed upload went through: {outcome:?}");
    };
    let text = failure.to_string();
    assert_eq!(failure.kind, FailureKind::Security, "{case}: {text}");
    assert!(
        text.contains("handshake failed") && text.contains("authenticate"),
        "{case}: {text}"
    );
}

/// The server's reason for ending a relayed connection: its handshake failed.
fn assert_handshake_reason(reason: &str, case: &str) {
    assert!(
        reason.contains("handshake failed") && reason.contains("authenticate"),
        "{case}: {reason}"
    );
}

/// Two devices, "desk" and "laptop", their identities in temp folders (returned first: keep
/// them while the devices are used).
fn desk_and_laptop() -> ([tempfile::TempDir; 2], Keyring, Keyring) {
    let homes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let desk = device(homes[0].path(), "desk");
    let laptop = device(homes[1].path(), "laptop");
    (homes, desk, laptop)
}

/// Pairing through a relay that puts another port in the hello: the handshake fails on both
/// ends and the receiver pins nothing (without the binding it pinned the sender at the
/// relay's port); the code still pairs directly, at the port the sender said. Then, open
/// mode with "Accept and trust": the same relay again saves no port, and a direct upload is
/// accepted and trusted at the real one.
#[test]
fn a_relay_that_forges_serves_on_fails_the_handshake_and_saves_no_port() {
    let (_homes, desk, laptop) = desk_and_laptop();
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = file_with(src.path(), "a.bin", 1000, 21);
    let saved_address = |keyring: &Keyring| {
        keyring
            .trust
            .by_key(laptop.identity.public_key())
            .and_then(|d| d.last_address)
    };

    // Pairing.
    let (pairing, events) = server(dst.path(), &desk, AcceptPolicy::Trusted);
    let code = pairing.start_pairing().unwrap();
    let (via, relayed) = relay(pairing.local_addr(), forge_port, unchanged);
    let outcome = send(via, &laptop, Some(code.clone()), &file);
    assert_eq!(saved_address(&desk), None, "the relay's port was saved");
    assert_refused_by_handshake(&outcome, "pairing");
    assert_handshake_reason(&crate::util::wait_connection_error(&events), "pairing");
    relayed.join().unwrap();
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
    let outcome = send(pairing.local_addr(), &laptop, Some(code), &file);
    assert!(outcome.is_success(), "{outcome:?}");
    let real = format!("127.0.0.1:{REAL_PORT}");
    assert_eq!(saved_address(&desk).as_deref(), Some(real.as_str()));
    pairing.stop();

    // "Accept and trust", on a receiver that does not know the laptop yet.
    let (home, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let other = device(home.path(), "other desk");
    let (asking, events) = server(dst.path(), &other, AcceptPolicy::Trusted);
    let (via, relayed) = relay(asking.local_addr(), forge_port, unchanged);
    let (outcome, reason) = send_trusting(via, &asking, &events, &laptop, &file);
    assert_eq!(saved_address(&other), None, "the relay's port was saved");
    assert_refused_by_handshake(&outcome, "accept and trust");
    assert_handshake_reason(&reason.unwrap_or_default(), "accept and trust");
    relayed.join().unwrap();
    let (outcome, _) = send_trusting(asking.local_addr(), &asking, &events, &laptop, &file);
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(saved_address(&other).as_deref(), Some(real.as_str()));
}

/// A cipher stripped from the offer (a downgrade), a byte added to the hello that decodes
/// the same, the go-ahead's cipher changed, an unknown field added to the go-ahead: each
/// fails on both ends, nothing is saved, and the server keeps serving.
#[test]
fn a_relay_that_changes_the_hello_or_the_go_ahead_fails_the_handshake_on_both_ends() {
    let (_homes, desk, laptop) = desk_and_laptop();
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server, events) = server(dst.path(), &desk, AcceptPolicy::Everyone);
    let cases: [(&str, Rewrite, Rewrite); 4] = [
        ("aesgcm dropped from the offer", strip_aes, unchanged),
        ("a space after the hello", add_space, unchanged),
        ("the go-ahead's cipher changed", unchanged, other_cipher),
        ("a field added to the go-ahead", unchanged, extra_field),
    ];
    for (n, (case, hello, go_ahead)) in cases.into_iter().enumerate() {
        let file = file_with(src.path(), &format!("{n}.bin"), 1000, n as u64);
        let (via, relayed) = relay(server.local_addr(), hello, go_ahead);
        let outcome = send(via, &laptop, None, &file);
        assert_refused_by_handshake(&outcome, case);
        assert_handshake_reason(&crate::util::wait_connection_error(&events), case);
        relayed.join().unwrap();
        assert!(
            names_in(dst.path()).len() == n,
            "{case}: {:?}",
            names_in(dst.path())
        );
        let outcome = send(server.local_addr(), &laptop, None, &file);
        assert!(outcome.is_success(), "{case}: {outcome:?}");
    }
}
