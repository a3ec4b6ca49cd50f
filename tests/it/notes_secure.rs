//! Encrypted notes between trusted devices (issue 11): two "devices" are two config folders
//! that trust each other (keys pinned with `TrustBook`), with real UDP sockets on loopback.
//! A recording relay between them proves no plaintext crosses the wire and lets the tests
//! replay and tamper with the exact bytes that did; plain peers (a raw socket, like `nc -u`)
//! keep working; the CLI and the window show each note's mark.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crossbeam_channel::Receiver;
use egui_kittest::kittest::Queryable;
use ferry::events::{Event, NoteEvent, Security, event_channel};
use ferry::notes::{NotesConfig, NotesHandle, Seal};
use ferry::secure::Keyring;
use ferry::secure::trust::SeenAt;
use tempfile::TempDir;

use crate::util::*;

const CANARY: &str = "CANARY-7f3a9e-secret-note";

/// One device: a config folder (`<tmp>/ferry`, as `$XDG_CONFIG_HOME/ferry` for the binary)
/// with its identity and trust store.
struct Device {
    home: TempDir,
    keyring: Keyring,
}

impl Device {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(&home.path().join("ferry")).unwrap();
        Device { home, keyring }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("ferry")
    }

    fn key(&self) -> [u8; 32] {
        *self.keyring.identity.public_key()
    }

    /// Trusts `other` under `name`, last seen at `addr`.
    fn trust(&self, name: &str, other: &Device, addr: Option<SocketAddr>) {
        self.keyring
            .trust
            .pin(name, &other.key(), addr.map(SeenAt::Server))
            .unwrap();
    }

    /// A notes socket on loopback with this device's keyring.
    fn notes(&self) -> (NotesHandle, Receiver<Event>) {
        let (sink, events) = event_channel(None);
        let config = NotesConfig::new(LOOPBACK, 0).with_keyring(Some(self.keyring.clone()));
        (NotesHandle::start(config, sink).unwrap(), events)
    }
}

/// The next note or refusal.
fn next_note(events: &Receiver<Event>) -> NoteEvent {
    wait_for(events, |event| match event {
        Event::Note(e @ (NoteEvent::Received { .. } | NoteEvent::Refused { .. })) => {
            Some(e.clone())
        }
        _ => None,
    })
}

fn raw_socket() -> UdpSocket {
    let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
}

fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 64 * 1024];
    let (len, from) = socket.recv_from(&mut buf).expect("a datagram in time");
    buf.truncate(len);
    (buf, from)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_encrypted_from(event: &NoteEvent, device_name: &str, text: &str) {
    match event {
        NoteEvent::Received {
            text: got,
            security: Security::Encrypted {
                device, trusted, ..
            },
            ..
        } => {
            assert_eq!(got, text);
            assert_eq!(device, device_name);
            assert!(trusted);
        }
        other => panic!("expected an encrypted note from {device_name}, got {other:?}"),
    }
}

fn refusal(event: NoteEvent) -> (SocketAddr, String) {
    match event {
        NoteEvent::Refused { from, reason, .. } => (from, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Alice and Bob trust each other; Alice knows Bob at `bob_as_seen_by_alice`.
fn pair_through(relay: SocketAddr) -> (Device, Device) {
    let (alice, bob) = (Device::new(), Device::new());
    alice.trust("bob", &bob, Some(relay));
    bob.trust("alice", &alice, None);
    (alice, bob)
}

#[test]
fn a_note_through_a_recording_relay_is_sealed_opens_as_the_device_and_replays_are_refused() {
    let relay = raw_socket();
    let relay_addr = relay.local_addr().unwrap();
    let (alice, bob) = pair_through(relay_addr);
    let (alice_notes, alice_events) = alice.notes();
    let (bob_notes, bob_events) = bob.notes();
    let text = format!("meet at noon {CANARY}");

    // Bob's last address is the relay: the note is sealed without being asked to.
    let sent = alice_notes.send(relay_addr, &text).unwrap();
    assert!(
        matches!(&sent.security, Security::Encrypted { device, .. } if device == "bob"),
        "{sent:?}"
    );
    let (captured, from_alice) = recv(&relay);
    assert!(
        !contains(&captured, CANARY.as_bytes()),
        "the canary crossed the wire"
    );
    assert!(!contains(&captured, b"meet at noon"));
    relay.send_to(&captured, bob_notes.local_addr()).unwrap();
    let got = next_note(&bob_events);
    assert_encrypted_from(&got, "alice", &text);

    // The exact same bytes again: a replay.
    relay.send_to(&captured, bob_notes.local_addr()).unwrap();
    let (from, reason) = refusal(next_note(&bob_events));
    assert_eq!(from, relay_addr);
    assert!(reason.contains("replay"), "{reason}");

    // A fresh note with one flipped byte does not open; the untouched one still does.
    alice_notes.send(relay_addr, "second").unwrap();
    let (second, _) = recv(&relay);
    let mut flipped = second.clone();
    let last = flipped.len() - 1;
    flipped[last - 5] ^= 0x20;
    relay.send_to(&flipped, bob_notes.local_addr()).unwrap();
    let (_, reason) = refusal(next_note(&bob_events));
    assert!(reason.contains("authenticate"), "{reason}");
    relay.send_to(&second, bob_notes.local_addr()).unwrap();
    assert_encrypted_from(&next_note(&bob_events), "alice", "second");

    // Bob replies to where the sealed note came from: sealed to Alice, no canary in clear.
    let reply = format!("ok {CANARY}");
    let sent = bob_notes.send(relay_addr, &reply).unwrap();
    assert!(
        matches!(&sent.security, Security::Encrypted { device, .. } if device == "alice"),
        "{sent:?}"
    );
    let (captured, _) = recv(&relay);
    assert!(!contains(&captured, CANARY.as_bytes()));
    relay.send_to(&captured, from_alice).unwrap();
    assert_encrypted_from(&next_note(&alice_events), "bob", &reply);
}

#[test]
fn an_unknown_devices_sealed_note_and_one_without_a_keyring_are_refused_and_listening_goes_on() {
    let (bob, carol) = (Device::new(), Device::new());
    // Carol trusts Bob, Bob has never heard of Carol.
    carol.trust("bob", &bob, None);
    let (bob_notes, bob_events) = bob.notes();
    let (carol_notes, _carol_events) = carol.notes();
    carol_notes
        .send_with(bob_notes.local_addr(), CANARY, Seal::Device(bob.key()))
        .unwrap();
    let (from, reason) = refusal(next_note(&bob_events));
    assert_eq!(from, carol_notes.local_addr());
    assert!(reason.contains("not trusted"), "{reason}");

    // A Ferry with no keyring refuses sealed notes too, never shows them as text.
    let (sink, plain_events) = event_channel(None);
    let plain_only = NotesHandle::start(NotesConfig::new(LOOPBACK, 0), sink).unwrap();
    carol_notes
        .send_with(plain_only.local_addr(), CANARY, Seal::Device(bob.key()))
        .unwrap();
    let (_, reason) = refusal(next_note(&plain_events));
    assert!(reason.contains("no device identity"), "{reason}");

    // Both listeners keep going: a plain note still arrives, marked plain.
    let raw = raw_socket();
    raw.send_to(b"still here", bob_notes.local_addr()).unwrap();
    match next_note(&bob_events) {
        NoteEvent::Received { text, security, .. } => {
            assert_eq!((text.as_str(), security), ("still here", Security::Plain));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_peers_still_talk_plain_both_ways_and_plain_can_be_forced() {
    let raw = raw_socket();
    let raw_addr = raw.local_addr().unwrap();
    // Even a trusted device's last address gets plain text when asked (--plain).
    let (alice, bob) = pair_through(raw_addr);
    let (alice_notes, alice_events) = alice.notes();
    drop(bob);

    raw.send_to("你好 from nc -u".as_bytes(), alice_notes.local_addr())
        .unwrap();
    match next_note(&alice_events) {
        NoteEvent::Received {
            text,
            security,
            from,
            ..
        } => {
            assert_eq!(text, "你好 from nc -u");
            assert_eq!(security, Security::Plain);
            assert_eq!(from, raw_addr);
        }
        other => panic!("{other:?}"),
    }
    let sent = alice_notes
        .send_with(raw_addr, "plain reply", Seal::Plain)
        .unwrap();
    assert_eq!(sent.security, Security::Plain);
    assert_eq!(recv(&raw).0, b"plain reply");

    // An address no trusted device has: plain without asking.
    let other = raw_socket();
    let sent = alice_notes
        .send(other.local_addr().unwrap(), "to a stranger")
        .unwrap();
    assert_eq!(sent.security, Security::Plain);
    assert_eq!(recv(&other).0, b"to a stranger");
}

#[test]
fn a_sealed_note_longer_than_fits_is_a_clear_error_and_nothing_is_sent() {
    let raw = raw_socket();
    let (alice, _bob) = pair_through(raw.local_addr().unwrap());
    let (alice_notes, _events) = alice.notes();
    let long = "x".repeat(ferry::secure::note::MAX_SEALED_TEXT_BYTES + 1);
    let err = alice_notes
        .send(raw.local_addr().unwrap(), &long)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most"), "{err}");
    raw.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(raw.recv_from(&mut buf).is_err(), "nothing was sent");
}

/// `ferry ARGS` with `$XDG_CONFIG_HOME` set to `home`; output captured.
fn run_as(home: &Path, args: &[&str]) -> std::process::Output {
    ferry()
        .env("XDG_CONFIG_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_seals_to_a_trusted_name_prints_marks_and_refuses_after_peers_forget() {
    let (listener, sender) = (Device::new(), Device::new());
    let mut listen = ChildGuard(
        ferry()
            .env("XDG_CONFIG_HOME", listener.home.path())
            .args(["listen", "--bind", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(listen.0.stdout.take().unwrap());
    let first = wait_line(&lines, "listening on");
    let addr: SocketAddr = first.trim_start_matches("listening on ").parse().unwrap();
    sender.trust("desk", &listener, Some(addr));
    listener.trust("laptop", &sender, None);

    // By name: sealed to its last address.
    let text = format!("by name {CANARY}");
    let out = run_as(sender.home.path(), &["note", "--to", "desk", &text]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("sent to {addr} [encrypted: desk]\n")
    );
    let line = wait_line(&lines, "by name");
    assert!(
        line.contains("UTC] [encrypted: laptop] 127.0.0.1:") && line.ends_with(&text),
        "{line}"
    );

    // By address: the same device, so sealed too; --plain forces plain text.
    let out = run_as(
        sender.home.path(),
        &["note", "--to", &addr.to_string(), "by address"],
    );
    assert!(out.status.success());
    assert!(wait_line(&lines, "by address").contains("[encrypted: laptop]"));
    let out = run_as(
        sender.home.path(),
        &["note", "--plain", "--to", "desk", "forced plain"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("sent to {addr} [not encrypted]\n")
    );
    assert!(wait_line(&lines, "forced plain").contains("UTC] [not encrypted] 127.0.0.1:"));

    // The listener forgets the sender (the real binary, another process): its notes are
    // refused from then on, and the text never shows.
    let out = run_as(listener.home.path(), &["peers", "forget", "laptop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_as(sender.home.path(), &["note", "--to", "desk", CANARY]);
    assert!(out.status.success());
    let line = wait_line(&lines, "refused");
    assert!(
        line.starts_with("(refused an encrypted note from 127.0.0.1:")
            && line.contains("no longer trusted"),
        "{line}"
    );
    assert!(!line.contains(CANARY));

    // A name nobody trusts is not a host either: a clear error, nothing sent.
    let out = run_as(
        sender.home.path(),
        &["note", "--to", "nobody-by-that-name", "x"],
    );
    assert!(!out.status.success());
}

#[test]
fn an_unreadable_config_folder_means_plain_notes_with_a_warning() {
    let home = tempfile::tempdir().unwrap();
    // The config folder is a file: nothing can be read or created there.
    std::fs::write(home.path().join("ferry"), b"not a folder").unwrap();
    let raw = raw_socket();
    let to = raw.local_addr().unwrap().to_string();
    let out = run_as(home.path(), &["note", "--to", &to, "plain anyway"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notes are not encrypted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(recv(&raw).0, b"plain anyway");
}

#[test]
fn the_window_marks_an_encrypted_and_a_plain_note() {
    let (window_device, alice) = (Device::new(), Device::new());
    window_device.trust("alice", &alice, None);
    alice.trust("window", &window_device, None);
    let download = tempfile::tempdir().unwrap();
    let mut settings = crate::gui::settings(download.path());
    settings.identity_dir = Some(window_device.config_dir());
    let mut harness = crate::gui::app(settings, Vec::new());
    let notes_addr = |app: &ferry::app::FerryApp| match app.notes.status {
        ferry::app::NotesStatus::Listening(addr) => Some(addr.port()),
        _ => None,
    };
    crate::gui::run_until(&mut harness, "the notes socket", |app| {
        notes_addr(app).is_some()
    });
    let port = notes_addr(harness.state()).unwrap();
    let to = SocketAddr::from((LOOPBACK, port));

    let (alice_notes, _events) = alice.notes();
    alice_notes
        .send_with(to, "sealed hello", Seal::Device(window_device.key()))
        .unwrap();
    crate::gui::run_until(&mut harness, "the sealed note", |app| {
        app.notes.history.len() == 1
    });
    raw_socket().send_to(b"plain hello", to).unwrap();
    crate::gui::run_until(&mut harness, "both notes", |app| {
        app.notes.history.len() == 2
    });
    harness.get_by_label("encrypted · alice");
    harness.get_by_label("not encrypted");
    let securities: Vec<bool> = harness
        .state()
        .notes
        .history
        .iter()
        .map(|e| e.security.is_encrypted())
        .collect();
    assert_eq!(securities, [true, false]);
}
