//! The window speaking LocalSend (issue 16), driven headless with egui_kittest by its labels:
//! its LocalSend receiver (on port 0, loopback only, never announcing) takes files and a
//! text message from Ferry's own LocalSend sender, asking first when the policy says so; the
//! "Receive from LocalSend" setting off (or the port taken) means nothing listens, and the
//! status says why; a LocalSend receiver started in-process is found by probing a favourite,
//! listed with its badge, and gets an upload and a note from the Client tab. Each window
//! keeps its identities in a temp folder of its own.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, PolicyChoice, RowState, Settings};
use ferry::events::{CancelToken, Event, LocalSendStatus, NoteEvent, Security, event_channel};
use ferry::localsend::{
    CertIdentity, LocalSendConfig, LocalSendSendError, LocalSendSender, LocalSendServer,
    LocalSendTarget,
};
use ferry::transfer::{AcceptPolicy, OutgoingFile};

use crate::gui::{app, listening_addr, pick_and_upload, run_until, settings};
use crate::util::*;

/// A window that listens at once with LocalSend on port 0, identities in `identity_dir`.
pub(crate) fn localsend_window(
    download_dir: &Path,
    identity_dir: &Path,
    policy: PolicyChoice,
) -> Settings {
    Settings {
        server_listening: true,
        accept_policy: Some(policy),
        identity_dir: Some(identity_dir.to_owned()),
        localsend: true,
        localsend_port: "0".into(),
        ..settings(download_dir)
    }
}

/// The window's LocalSend address and fingerprint, once it says LocalSend is on.
pub(crate) fn wait_localsend_on(harness: &mut Harness<'_, FerryApp>) -> (SocketAddr, String) {
    run_until(harness, "LocalSend receiving to be on", |app| {
        matches!(
            app.server.localsend_status,
            Some(LocalSendStatus::On { .. }) | Some(LocalSendStatus::Off { reason: Some(_) })
        ) && listening_addr(app).is_some()
    });
    match &harness.state().server.localsend_status {
        Some(LocalSendStatus::On {
            addr, fingerprint, ..
        }) => (*addr, fingerprint.clone()),
        other => panic!("LocalSend is not on: {other:?}"),
    }
}

fn phone() -> LocalSendSender {
    LocalSendSender::new(CertIdentity::generate().unwrap(), "Pixel 8")
}

fn target(addr: SocketAddr, fingerprint: &str) -> LocalSendTarget {
    LocalSendTarget {
        addr,
        fingerprint: fingerprint.to_owned(),
        alias: "Ferry window".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    }
}

/// Runs `work` on a thread while the window keeps drawing, until it returns.
fn while_drawing<T: Send + 'static>(
    harness: &mut Harness<'_, FerryApp>,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let worker = std::thread::spawn(work);
    run_until(harness, what, |_| worker.is_finished());
    worker.join().unwrap()
}

#[test]
fn a_window_receives_files_and_a_text_from_localsend_with_marked_rows() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let mut harness = app(
        localsend_window(dst.path(), ids.path(), PolicyChoice::Everyone),
        vec![],
    );
    let (addr, fingerprint) = wait_localsend_on(&mut harness);
    assert!(addr.ip().is_loopback(), "bound like the server: {addr}");
    harness.get_by_label_contains(&format!(
        "LocalSend receiving is on: {addr} (fingerprint {fingerprint})"
    ));
    let photo = data(70_000, 1);
    std::fs::write(src.path().join("photo.jpg"), &photo).unwrap();
    let files = vec![OutgoingFile::new(src.path().join("photo.jpg"))];
    let to = target(addr, &fingerprint);
    let outcomes = while_drawing(&mut harness, "the send to end", move || {
        let (sink, _events) = event_channel(None);
        phone().send_files(&to, &files, &sink, &CancelToken::new())
    })
    .expect("the window takes the file");
    assert!(outcomes[0].is_success(), "{outcomes:?}");
    run_until(&mut harness, "the row to finish", |app| {
        app.server.rows.len() == 1 && app.server.rows[0].state.is_finished()
    });
    let row = &harness.state().server.rows[0];
    assert_eq!(row.state, RowState::Unverified);
    assert_eq!(row.name, "photo.jpg");
    match &row.security {
        Some(Security::LocalSend { alias, .. }) => assert_eq!(alias, "Pixel 8"),
        other => panic!("not marked LocalSend: {other:?}"),
    }
    harness.get_by_label("LocalSend · Pixel 8");
    assert_eq!(std::fs::read(dst.path().join("photo.jpg")).unwrap(), photo);

    // A text message is a note in the Notes panel.
    let to = target(addr, &fingerprint);
    while_drawing(&mut harness, "the text to be sent", move || {
        phone().send_text(&to, "hello from the phone", &CancelToken::new())
    })
    .expect("the text is taken");
    run_until(&mut harness, "the note", |app| app.notes.history.len() == 1);
    harness.get_by_label("hello from the phone");
    assert_eq!(names_in(dst.path()), vec!["photo.jpg"], "a text is no file");
}

#[test]
fn a_localsend_offer_waits_for_the_prompt_and_a_decline_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let mut harness = app(
        localsend_window(dst.path(), ids.path(), PolicyChoice::Ask),
        vec![],
    );
    let (addr, fingerprint) = wait_localsend_on(&mut harness);
    std::fs::write(src.path().join("a.txt"), b"first").unwrap();
    let send = |name: &str| {
        let files = vec![OutgoingFile::new(src.path().join(name))];
        let to = target(addr, &fingerprint);
        std::thread::spawn(move || {
            let (sink, _events) = event_channel(None);
            phone().send_files(&to, &files, &sink, &CancelToken::new())
        })
    };
    // Declined in the prompt: the phone hears 403, nothing is written.
    let declined = send("a.txt");
    run_until(&mut harness, "the LocalSend prompt", |app| {
        !app.server.offers.pending.is_empty()
    });
    harness.get_by_label_contains(&fingerprint);
    harness.get_by_label("Decline").click();
    run_until(&mut harness, "the send to end", |_| declined.is_finished());
    assert!(matches!(
        declined.join().unwrap(),
        Err(LocalSendSendError::Declined)
    ));
    assert!(names_in(dst.path()).is_empty());
    // Accepted: it arrives (the answer reached the LocalSend server, not the Ferry one).
    let accepted = send("a.txt");
    run_until(&mut harness, "the second prompt", |app| {
        !app.server.offers.pending.is_empty()
    });
    harness.get_by_label("Accept").click();
    run_until(&mut harness, "the send to end", |_| accepted.is_finished());
    accepted.join().unwrap().expect("accepted");
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"first");
}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
fn receive_from_localsend_off_or_a_taken_port_means_nothing_listens_and_says_why() {
    let dst = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let mut harness = app(
        localsend_window(dst.path(), ids.path(), PolicyChoice::Everyone),
        vec![],
    );
    let (addr, _) = wait_localsend_on(&mut harness);
    assert!(connects(addr));
    harness.get_by_label("Receive from LocalSend").click();
    run_until(&mut harness, "LocalSend to stop", |app| {
        app.server.localsend_status == Some(LocalSendStatus::Off { reason: None })
    });
    assert!(!connects(addr), "nothing listens on {addr} any more");
    harness.get_by_label("LocalSend receiving is off");
    assert!(
        listening_addr(harness.state()).is_some(),
        "Ferry still listens"
    );
    assert!(!harness.state().settings().localsend, "remembered");
    // On again: it listens again (on a new port: 0 picks one).
    harness.get_by_label("Receive from LocalSend").click();
    let (again, _) = wait_localsend_on(&mut harness);
    assert!(connects(again));
    // Stop listening stops both.
    harness.get_by_label("Stop listening").click();
    run_until(&mut harness, "LocalSend to stop with the server", |app| {
        app.server.localsend_status == Some(LocalSendStatus::Off { reason: None })
    });
    assert!(!connects(again));
    drop(harness);

    // A window started with the setting off never listens for LocalSend.
    let off = Settings {
        localsend: false,
        ..localsend_window(dst.path(), ids.path(), PolicyChoice::Everyone)
    };
    let mut harness = app(off, vec![]);
    run_until(&mut harness, "the server and LocalSend's status", |app| {
        listening_addr(app).is_some() && app.server.localsend_status.is_some()
    });
    assert_eq!(
        harness.state().server.localsend_status,
        Some(LocalSendStatus::Off { reason: None })
    );
    drop(harness);

    // The LocalSend port taken: Ferry listens, LocalSend says why it does not.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = Settings {
        localsend_port: port.to_string(),
        ..localsend_window(dst.path(), ids.path(), PolicyChoice::Everyone)
    };
    let mut harness = app(busy, vec![]);
    run_until(&mut harness, "LocalSend's failure", |app| {
        matches!(
            app.server.localsend_status,
            Some(LocalSendStatus::Off { reason: Some(_) })
        )
    });
    harness.get_by_label_contains(&format!(
        "LocalSend receiving is off: LocalSend port {port} is in use"
    ));
    assert!(listening_addr(harness.state()).is_some());
}

/// Ferry's own LocalSend receiver, in-process on loopback, taking everything.
pub(crate) fn localsend_receiver(dir: &Path) -> (LocalSendServer, Receiver<Event>) {
    let mut config = LocalSendConfig::new(
        dir.to_path_buf(),
        "Living room PC",
        CertIdentity::generate().unwrap(),
    );
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.fsync = false;
    let (sink, events) = event_channel(None);
    (LocalSendServer::start(config, sink).unwrap(), events)
}

#[test]
fn a_window_uploads_to_a_localsend_device_found_by_its_address_and_sends_it_a_note() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let (receiver, events) = localsend_receiver(dst.path());
    let files: Vec<(PathBuf, Vec<u8>)> = [("report.pdf", 200_000), ("照片.jpg", 3_000)]
        .into_iter()
        .map(|(name, len)| {
            let path = src.path().join(name);
            let bytes = data(len, len as u64);
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect();
    let window = Settings {
        favourites: vec![receiver.local_addr().to_string()],
        ..localsend_window(mine.path(), ids.path(), PolicyChoice::Everyone)
    };
    let mut harness = app(window, files.iter().map(|(p, _)| p.clone()).collect());
    harness.get_by_label("Client").click();
    run_until(&mut harness, "the LocalSend device to be listed", |app| {
        app.devices
            .localsend
            .iter()
            .any(|d| d.alias == "Living room PC")
    });
    // Found by its name: another LocalSend device on this machine may be listed too.
    let listed = harness
        .state()
        .devices
        .localsend
        .iter()
        .find(|d| d.alias == "Living room PC")
        .unwrap();
    assert_eq!(listed.fingerprint, receiver.fingerprint());
    assert_eq!(listed.device_type, "desktop");
    harness.get_by_label("LocalSend");
    harness.get_by_label("Living room PC").click();
    harness.run_steps(2);
    let dest = receiver.local_addr().to_string();
    assert_eq!(harness.state().client.dest, dest);
    pick_and_upload(&mut harness, 2);
    let deadline = Instant::now() + DEADLINE;
    run_until(&mut harness, "both uploads to end", |app| {
        assert!(Instant::now() < deadline);
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    for row in &harness.state().client.rows {
        assert_eq!(row.state, RowState::Unverified, "{row:?}");
        assert!(
            matches!(&row.security, Some(Security::LocalSend { alias, .. }) if alias == "Living room PC"),
            "{row:?}"
        );
    }
    assert_eq!(
        harness
            .query_all_by_label("LocalSend · Living room PC")
            .count(),
        2,
        "each row names the LocalSend device"
    );
    for (path, bytes) in &files {
        let name = path.file_name().unwrap();
        assert_eq!(&std::fs::read(dst.path().join(name)).unwrap(), bytes);
    }
    assert!(names_in(mine.path()).is_empty(), "nothing came back");

    // A note to the device is a LocalSend text message.
    assert_eq!(harness.state().notes.peer, dest);
    harness.get_by_label("Note").click();
    harness.get_by_label("Note").type_text("下午见 see you");
    harness.get_by_label("Send").click();
    harness.run_steps(2);
    let got = wait_for(&events, |event| match event {
        Event::Note(NoteEvent::Received { text, security, .. }) => {
            Some((text.clone(), security.clone()))
        }
        _ => None,
    });
    assert_eq!(got.0, "下午见 see you");
    assert!(matches!(got.1, Security::LocalSend { .. }));
    run_until(&mut harness, "the note in the history", |app| {
        app.notes.history.len() == 1
    });
}

/// A window listening on every interface has an IPv6 LocalSend listener too, and its
/// LocalSend line names both addresses, as `ferry serve` prints them (the status is fed
/// through the window's own event sink: the test cannot listen beyond loopback).
#[test]
fn the_localsend_line_names_the_ipv6_listener_too() {
    let dst = tempfile::tempdir().unwrap();
    let settings = Settings {
        server_listening: true,
        ..settings(dst.path())
    };
    let mut harness = app(settings, vec![]);
    run_until(&mut harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let sink = harness.state().event_sink();
    sink.emit(Event::Server(ferry::events::ServerEvent::LocalSend(
        LocalSendStatus::On {
            addr: "0.0.0.0:53317".parse().unwrap(),
            addr_v6: Some("[::]:53317".parse().unwrap()),
            fingerprint: "AB12".into(),
            discovery_port: Some(53317),
        },
    )));
    harness.run_steps(2);
    harness.get_by_label_contains(
        "LocalSend receiving is on: 0.0.0.0:53317, [::]:53317 (fingerprint AB12)",
    );
}

/// A LocalSend device heard over both IPv4 and IPv6 shows both addresses in the Client
/// tab's device list (the one Ferry sends to first, the other beneath it); one heard over
/// a single family shows that one. Fed through the window's event sink, as the engine's
/// LocalSend worker sends it (a test cannot be heard beyond loopback).
#[test]
fn a_localsend_device_heard_on_both_families_shows_both_addresses_and_when_it_was_heard() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dst.path()), vec![]);
    harness.run_steps(2);
    let device = |alias: &str, addr: &str, addr_v6: Option<&str>| ferry::events::SeenLocalSend {
        alias: alias.into(),
        device_type: "mobile".into(),
        fingerprint: "AB12".into(),
        addr: addr.parse().unwrap(),
        addr_v6: addr_v6.map(|a| a.parse().unwrap()),
        protocol: ferry::events::LocalSendProtocol::Https,
        how: vec!["multicast"],
        proven: false,
        last_seen: std::time::Instant::now(),
    };
    // The tablet was last heard 42 s ago: its row says so.
    let mut tablet = device("tablet", "192.168.7.21:53317", None);
    tablet.last_seen = std::time::Instant::now()
        .checked_sub(std::time::Duration::from_secs(42))
        .unwrap();
    let sink = harness.state().event_sink();
    sink.emit(Event::Discovery(
        ferry::events::DiscoveryEvent::LocalSendDevices(vec![
            device("phone", "192.168.7.20:53317", Some("[fd00::20]:53317")),
            tablet,
        ]),
    ));
    harness.get_by_label("Client").click();
    harness.run_steps(3);
    harness.get_by_label("phone");
    harness.get_by_label("192.168.7.20:53317");
    harness.get_by_label("[fd00::20]:53317");
    harness.get_by_label("192.168.7.21:53317");
    // (43 s should the machine stall a second between the event and the frame.)
    assert!(
        harness.query_by_label("42 s ago").is_some()
            || harness.query_by_label("43 s ago").is_some(),
        "the LocalSend device's row says when it was last heard"
    );
}
