//! Acceptance audit of the device issues (identity and trust, discovery, desktop habits):
//! the gaps found on acceptance day, each pinned by a test that failed before its fix.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ferry::discovery::table::{Sighting, Table};
use ferry::discovery::{Ages, Path, State};
use ferry::secure::trust::SeenAt;

/// A beacon that claims a trusted device's id, as anyone on the LAN can send (the id, name
/// and fingerprint are in every beacon the real device broadcasts).
fn claimed(id: &str, name: &str, fingerprint: &str, last: u8) -> Sighting {
    Sighting {
        id: id.into(),
        name: name.into(),
        fingerprint: fingerprint.into(),
        os: "linux".into(),
        ip: IpAddr::V4(Ipv4Addr::new(10, 77, 0, last)),
        scope_id: 0,
        tcp_port: 8080,
        udp_port: 0,
        path: Path::Beacon,
    }
}

/// The window marks a row "trusted" by its device id and pins the upload's key by the row's
/// fingerprint: a beacon that reuses a trusted id with another fingerprint made the row say
/// "trusted" while a click on it pinned no key, so the files went to whoever answered
/// there. The trusted row now keeps the paired name and fingerprint; only the address moves.
#[test]
fn a_beacon_claiming_a_trusted_id_cannot_rename_it_or_change_its_fingerprint() {
    let t0 = Instant::now();
    let mut table = Table::new(Ages::default());
    table.add_trusted(
        "0123456789abcdef0123456789abcdef",
        "desk",
        "apple bread cider drum eagle fox",
        Some("10.77.0.2:8080".parse().unwrap()),
        None,
    );
    let check = table.observe(
        claimed(
            "0123456789abcdef0123456789abcdef",
            "bank laptop",
            "zebra yak xray wolf vine urn",
            66,
        ),
        t0,
    );
    // The address is a hint the handshake will test: it may move, and is checked.
    assert_eq!(check, Some("10.77.0.66:8080".parse().unwrap()));
    table.checked(
        "0123456789abcdef0123456789abcdef",
        "10.77.0.66:8080".parse().unwrap(),
        true,
    );
    let devices = table.devices(t0);
    assert_eq!(devices.len(), 1, "{devices:?}");
    let row = &devices[0];
    assert!(row.trusted);
    assert_eq!(row.state, State::Ready);
    assert_eq!(row.name, "desk", "a beacon renamed a trusted device");
    assert_eq!(
        row.fingerprint, "apple bread cider drum eagle fox",
        "a beacon changed the fingerprint a click pins the key by"
    );

    // A device heard first and trusted later shows the paired name and fingerprint too.
    let mut table = Table::new(Ages::default());
    table.observe(claimed("feed", "spoofed", "not the key", 9), t0);
    table.add_trusted("feed", "laptop", "owl plum fig kiwi lime pear", None, None);
    let row = &table.devices(t0)[0];
    assert_eq!(
        (row.name.as_str(), row.fingerprint.as_str()),
        ("laptop", "owl plum fig kiwi lime pear")
    );
    // Untrusted devices still take what they announce.
    table.observe(claimed("cafe", "printer", "a b c d e f", 10), t0);
    table.observe(claimed("cafe", "scanner", "g h i j k l", 10), t0);
    let names: Vec<_> = table.devices(t0).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["laptop", "scanner"]);
}

/// A trusted device clicked in the Devices list may have moved since its address was saved
/// (a new DHCP lease, or a beacon from someone else with its id): the Client tab pinned its
/// key, but a note to the clicked row went out as plain text, readable by whoever was at the
/// new address, because notes sealed only to a trusted device's saved address. A note to a
/// clicked trusted device is now sealed to its key, wherever it is.
#[test]
fn a_note_to_a_clicked_trusted_device_that_moved_is_sealed_to_its_key() {
    use std::net::SocketAddr;

    use egui_kittest::kittest::Queryable;
    use ferry::app::{NotesStatus, Settings};
    use ferry::events::{Event, NoteEvent, Security, SeenDevice, SeenState, event_channel};
    use ferry::notes::{NotesConfig, NotesHandle};
    use ferry::secure::Keyring;

    use crate::gui::{app, run_until, settings};
    use crate::util::{LOOPBACK, wait_for};

    let download = tempfile::tempdir().unwrap();
    let alice_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let alice = Keyring::load(alice_dir.path()).unwrap();
    let bob = Keyring::load(bob_dir.path()).unwrap();
    // Paired earlier, when Bob was somewhere else (nothing listens at the saved address).
    let saved: SocketAddr = "127.0.0.1:9".parse().unwrap();
    alice
        .trust
        .pin(
            "bob",
            bob.identity.public_key(),
            Some(SeenAt::Server(saved)),
        )
        .unwrap();
    bob.trust
        .pin("alice", alice.identity.public_key(), None)
        .unwrap();
    let (sink, bob_events) = event_channel(None);
    let bob_notes =
        NotesHandle::start(NotesConfig::new(LOOPBACK, 0).with_keyring(Some(bob)), sink).unwrap();
    let bob_at = bob_notes.local_addr();

    let mut window = app(
        Settings {
            identity_dir: Some(alice_dir.path().to_owned()),
            ..settings(download.path())
        },
        Vec::new(),
    );
    run_until(&mut window, "notes and the trusted devices", |app| {
        matches!(app.notes.status, NotesStatus::Listening(_)) && !app.client.trusted.is_empty()
    });
    // Bob, heard at his new address (what discovery would list).
    let fingerprint = window.state().client.trusted[0].fingerprint.clone();
    window.state_mut().devices.devices = vec![SeenDevice {
        id: "b0b".into(),
        name: "bob".into(),
        fingerprint,
        addr: Some(SocketAddr::new(bob_at.ip(), 1)),
        udp_port: bob_at.port(),
        trusted: true,
        how: vec!["beacon"],
        state: SeenState::Ready,
        last_seen_ago: Some(Duration::from_secs(1)),
    }];
    window.get_by_label("Client").click();
    window.run_steps(2);
    window.get_by_label("bob").click();
    window.run_steps(2);
    assert_eq!(window.state().notes.peer, bob_at.to_string());
    window.get_by_label("Note").click();
    window
        .get_by_label("Note")
        .type_text("the door code is 4711");
    window.get_by_label("Send").click();
    window.run_steps(2);

    let security = wait_for(&bob_events, |event| match event {
        Event::Note(NoteEvent::Received { text, security, .. }) => {
            Some((text.clone(), security.clone()))
        }
        _ => None,
    });
    assert_eq!(security.0, "the door code is 4711");
    assert!(
        matches!(&security.1, Security::Encrypted { trusted: true, .. }),
        "went out {:?}",
        security.1
    );
}

/// `ferry send --no-encryption` says the upload is not encrypted in words about the upload,
/// not "plain sender" (which is what the receiver says of it); encrypted, it names the
/// receiving device. Both on stderr (stdout holds one result line per file, for scripts).
#[test]
fn the_sender_says_whether_its_upload_is_encrypted_in_its_own_words() {
    use crate::util::{ferry, spawn_serve};
    let dl = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, "hi").unwrap();
    let (_serve, addr, _lines) = spawn_serve(dl.path(), &["--no-discovery"]);
    let to = addr.to_string();
    let said = |extra: &[&str]| {
        let out = ferry()
            .args(["send", "--to", &to])
            .args(extra)
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = said(&["--no-encryption"]);
    let line = format!("to {to}: NOT ENCRYPTED (anyone on the network can read or change it)");
    assert!(plain.lines().any(|l| l == line), "{plain}");
    assert!(!plain.contains("plain sender"), "{plain}");
    let encrypted = said(&[]);
    assert!(
        encrypted
            .lines()
            .any(|l| l.starts_with(&format!("to {to}: encrypted, device "))),
        "{encrypted}"
    );
}

/// `send --to Desk` for the trusted "desk" (or "de\u{200B}sk") was searched as a name anyone
/// may announce, and then as a LocalSend alias: a stranger calling itself so got the files.
/// Such a name is refused at once, before any search.
#[test]
fn a_name_that_only_looks_like_a_trusted_one_is_refused_before_any_search() {
    let home = tempfile::tempdir().unwrap();
    let mine = ferry::secure::Keyring::load(&home.path().join("ferry")).unwrap();
    let desk = tempfile::tempdir().unwrap();
    let desk = ferry::secure::Keyring::load(desk.path()).unwrap();
    mine.trust
        .pin(
            "desk",
            desk.identity.public_key(),
            Some(SeenAt::Server("127.0.0.1:9".parse().unwrap())),
        )
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, "for the desk").unwrap();
    for typed in ["Desk", "de\u{200B}sk"] {
        let out = crate::util::ferry()
            .env("XDG_CONFIG_HOME", home.path())
            .args(["send", "--to", typed, "--no-localsend-sweep"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{typed:?}: {stderr}");
        assert!(
            stderr.contains("only looks like the name of a trusted device"),
            "{typed:?}: {stderr}"
        );
        assert!(
            !stderr.contains("looking for") && !stderr.contains("LocalSend"),
            "{typed:?} was searched for: {stderr}"
        );
    }
}
