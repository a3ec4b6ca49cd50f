//! The window and LocalSend PINs (issue 16), headless with egui_kittest by labels: the
//! Server tab's "LocalSend PIN" is asked of LocalSend senders (and remembered); an upload to
//! a LocalSend device that wants a PIN says so with a PIN field and "Send with PIN", a wrong
//! PIN says it was refused, the right one sends the files, and too many tries say so with no
//! button. Also the window's register sweep: at start and on Refresh, over loopback
//! addresses the test gives (never the LAN).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, RowState, Settings};
use ferry::events::{CancelToken, FailureKind, LocalSendStatus, PinProblem};
use ferry::localsend::{
    CertIdentity, LocalSendConfig, LocalSendSendError, LocalSendSender, LocalSendServer,
    LocalSendTarget,
};
use ferry::transfer::AcceptPolicy;

use crate::gui::{
    app, choose_localsend_device, listening_addr, localsend_settings, pick_and_upload, run_until,
};
use crate::util::*;

/// The window's LocalSend address and fingerprint once on, other than `not` (a restart).
fn localsend_on(
    harness: &mut Harness<'_, FerryApp>,
    not: Option<SocketAddr>,
) -> (SocketAddr, String) {
    run_until(harness, "LocalSend receiving to be on", |app| {
        listening_addr(app).is_some()
            && matches!(&app.server.localsend_status,
                Some(LocalSendStatus::On { addr, .. }) if Some(*addr) != not)
    });
    match &harness.state().server.localsend_status {
        Some(LocalSendStatus::On {
            addr, fingerprint, ..
        }) => (*addr, fingerprint.clone()),
        other => panic!("LocalSend is not on: {other:?}"),
    }
}

/// A phone offering one small file to the window, with `pin`.
fn offer(addr: SocketAddr, fingerprint: &str, pin: Option<&str>) -> Result<(), LocalSendSendError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, b"jpeg bytes").unwrap();
    let mut phone = LocalSendSender::new(CertIdentity::generate().unwrap(), "Pixel 8");
    phone.pin = pin.map(str::to_owned);
    let target = LocalSendTarget {
        addr,
        fingerprint: fingerprint.to_owned(),
        alias: "window".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    };
    let (sink, _events) = ferry::events::event_channel(None);
    phone
        .send_files(
            &target,
            &[ferry::transfer::OutgoingFile::new(path)],
            &sink,
            &CancelToken::new(),
        )
        .map(|_| ())
}

/// Runs `work` on a thread while the window keeps drawing.
fn while_drawing<T: Send + 'static>(
    harness: &mut Harness<'_, FerryApp>,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let worker = std::thread::spawn(work);
    run_until(harness, "the phone to finish", |_| worker.is_finished());
    worker.join().unwrap()
}

#[test]
fn the_localsend_pin_typed_in_the_server_tab_is_asked_of_senders_and_remembered() {
    let (dst, ids) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut harness = app(localsend_settings(dst.path(), ids.path()), Vec::new());
    let (addr, fingerprint) = localsend_on(&mut harness, None);
    let fp = fingerprint.clone();
    let open = while_drawing(&mut harness, move || offer(addr, &fp, None));
    assert!(open.is_ok(), "no PIN yet: {open:?}");

    harness.get_by_label("LocalSend PIN").click();
    harness.run_steps(2);
    harness.get_by_label("LocalSend PIN").type_text("4711");
    harness.run_steps(2);
    // Leaving the field (Enter) applies it: the receiver starts again with the PIN.
    harness.key_press(egui::Key::Enter);
    let (addr, fingerprint) = localsend_on(&mut harness, Some(addr));
    assert_eq!(
        harness.state().settings().localsend_pin,
        "4711",
        "remembered"
    );

    let fp = fingerprint.clone();
    let without = while_drawing(&mut harness, move || offer(addr, &fp, None));
    assert!(
        matches!(without, Err(LocalSendSendError::PinRequired)),
        "{without:?}"
    );
    let fp = fingerprint.clone();
    let wrong = while_drawing(&mut harness, move || offer(addr, &fp, Some("1234")));
    assert!(
        matches!(wrong, Err(LocalSendSendError::WrongPin)),
        "{wrong:?}"
    );
    let fp = fingerprint.clone();
    let right = while_drawing(&mut harness, move || offer(addr, &fp, Some("4711")));
    assert!(right.is_ok(), "{right:?}");
    // One file from before the PIN, one with it; none refused got in.
    run_until(&mut harness, "the files on disk", |_| {
        names_in(dst.path()) == ["photo (1).jpg", "photo.jpg"]
    });
}

/// An in-process LocalSend device on `ip`, wanting `pin`, taking everything.
fn device(dir: &Path, ip: [u8; 4], port: u16, pin: Option<&str>) -> LocalSendServer {
    try_device(dir, ip, port, pin).unwrap()
}

/// [`device`], or why it did not start (its port not free yet).
fn try_device(
    dir: &Path,
    ip: [u8; 4],
    port: u16,
    pin: Option<&str>,
) -> Result<LocalSendServer, ferry::localsend::LocalSendError> {
    let mut config = LocalSendConfig::new(
        dir.to_path_buf(),
        "Locked tablet",
        CertIdentity::generate().unwrap(),
    );
    config.bind = ip.into();
    config.port = port;
    config.policy = AcceptPolicy::Everyone;
    config.pin = pin.map(str::to_owned);
    config.fsync = false;
    LocalSendServer::start(config, ferry::events::event_channel(None).0)
}

fn pin_state(app: &FerryApp) -> Vec<Option<PinProblem>> {
    app.client
        .rows
        .iter()
        .map(|r| match &r.state {
            RowState::Failed(f) => match f.kind {
                FailureKind::Pin(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn an_upload_a_device_wants_a_pin_for_is_sent_again_with_it_and_too_many_tries_say_so() {
    let (src, dst, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let tablet = device(dst.path(), [127, 0, 0, 1], 0, Some("2468"));
    let bytes = data(50_000, 7);
    let path = src.path().join("notes.pdf");
    std::fs::write(&path, &bytes).unwrap();
    let settings = Settings {
        favourites: vec![tablet.local_addr().to_string()],
        ..localsend_settings(mine.path(), ids.path())
    };
    let mut harness = app(settings, vec![path.clone()]);
    choose_localsend_device(&mut harness, "Locked tablet");
    pick_and_upload(&mut harness, 1);
    run_until(&mut harness, "the PIN to be asked for", |app| {
        pin_state(app) == [Some(PinProblem::Required)]
    });
    harness.get_by_label("The LocalSend device asks for a PIN");

    // A wrong PIN: refused, and asked again.
    harness.get_by_label("PIN for the LocalSend device").click();
    harness
        .get_by_label("PIN for the LocalSend device")
        .type_text("1111");
    harness.run_steps(2);
    harness.get_by_label("Send with PIN").click();
    run_until(&mut harness, "the wrong PIN to be refused", |app| {
        pin_state(app) == [Some(PinProblem::Wrong)]
    });
    harness.get_by_label("The LocalSend device refused the PIN: try again");

    // The right one: the file goes.
    harness.get_by_label("PIN for the LocalSend device").click();
    harness.run_steps(2);
    for _ in 0..4 {
        harness.key_press(egui::Key::Backspace);
    }
    harness
        .get_by_label("PIN for the LocalSend device")
        .type_text("2468");
    harness.run_steps(2);
    assert_eq!(harness.state().client.localsend_pin, "2468");
    harness.get_by_label("Send with PIN").click();
    run_until(&mut harness, "the upload to end", |app| {
        app.client
            .rows
            .iter()
            .all(|r| r.state.is_finished() && r.state != RowState::Active)
            && pin_state(app) == [None]
    });
    assert_eq!(harness.state().client.rows[0].state, RowState::Unverified);
    assert_eq!(std::fs::read(dst.path().join("notes.pdf")).unwrap(), bytes);
    assert!(
        harness.query_by_label("Send with PIN").is_none(),
        "no PIN asked any more"
    );
    drop(tablet);
}

#[test]
fn too_many_wrong_pins_say_so_with_no_button() {
    let (src, dst, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let tablet = device(dst.path(), [127, 0, 0, 1], 0, Some("2468"));
    let path = src.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let settings = Settings {
        favourites: vec![tablet.local_addr().to_string()],
        ..localsend_settings(mine.path(), ids.path())
    };
    let mut harness = app(settings, vec![path]);
    choose_localsend_device(&mut harness, "Locked tablet");
    pick_and_upload(&mut harness, 1);
    run_until(&mut harness, "the PIN to be asked for", |app| {
        pin_state(app) == [Some(PinProblem::Required)]
    });
    harness.get_by_label("PIN for the LocalSend device").click();
    harness
        .get_by_label("PIN for the LocalSend device")
        .type_text("0");
    harness.run_steps(2);
    // Three wrong tries are refused as wrong; the fourth is 429.
    for _ in 0..3 {
        harness.get_by_label("Send with PIN").click();
        run_until(&mut harness, "the wrong PIN to be refused", |app| {
            pin_state(app) == [Some(PinProblem::Wrong)]
                || pin_state(app) == [Some(PinProblem::TooManyTries)]
        });
    }
    harness.get_by_label("Send with PIN").click();
    run_until(&mut harness, "too many tries", |app| {
        pin_state(app) == [Some(PinProblem::TooManyTries)]
    });
    harness.get_by_label("Too many PIN attempts: the LocalSend device refuses for a while");
    assert!(harness.query_by_label("Send with PIN").is_none());
    assert!(names_in(dst.path()).is_empty());
}

/// A port free on `ip` now (bound, then let go), for a device started later.
pub(crate) fn free_port(ip: [u8; 4]) -> u16 {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_window_sweeps_at_start_and_on_refresh_and_forgets_a_device_that_left() {
    let (a_dir, b_dir, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let early = device(a_dir.path(), [127, 0, 0, 31], 0, None);
    let later_port = free_port([127, 0, 0, 32]);
    let later_addr = SocketAddr::from(([127, 0, 0, 32], later_port));
    let settings = Settings {
        // Discovery on (its own port) so Refresh is there; LocalSend on port 0 never
        // sweeps the LAN, only these addresses.
        discovery: true,
        discovery_port: Some(free_udp_port()),
        localsend_sweep_hosts: vec![early.local_addr(), later_addr],
        ..localsend_settings(mine.path(), ids.path())
    };
    let mut harness = app(settings, Vec::<PathBuf>::new());
    harness.get_by_label("Client").click();
    run_until(&mut harness, "the device swept at start", |app| {
        app.devices
            .localsend
            .iter()
            .any(|d| d.addr == early.local_addr())
    });
    let found = harness.state().devices.localsend.clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].how.contains(&"sweep"), "{:?}", found[0].how);

    // One device comes, the other leaves: Refresh shows both changes.
    let later = device(b_dir.path(), [127, 0, 0, 32], later_port, None);
    let early_addr = early.local_addr();
    drop(early);
    refresh(&mut harness);
    run_until(&mut harness, "the later device swept on Refresh", |app| {
        app.devices
            .localsend
            .iter()
            .any(|d| d.addr == later.local_addr())
    });
    run_until(&mut harness, "the device that left forgotten", |app| {
        app.devices.localsend.iter().all(|d| d.addr != early_addr)
    });
    let listed = harness.state().devices.localsend.clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// The window with `favourite` as its one favourite, once it was probed at start.
fn window_with_favourite(
    favourite: SocketAddr,
    mine: &Path,
    ids: &Path,
) -> Harness<'static, FerryApp> {
    let settings = Settings {
        discovery: true,
        discovery_port: Some(free_udp_port()),
        favourites: vec![favourite.to_string()],
        ..localsend_settings(mine, ids)
    };
    let mut harness = app(settings, Vec::<PathBuf>::new());
    harness.get_by_label("Client").click();
    run_until(&mut harness, "the favourite probed at start", |app| {
        app.devices.localsend.iter().any(|d| d.addr == favourite)
    });
    let how = harness.state().devices.localsend[0].how.clone();
    assert!(how.contains(&"probe"), "{how:?}");
    harness
}

/// Clicks Refresh once it is enabled.
fn refresh(harness: &mut Harness<'_, FerryApp>) {
    run_until(harness, "Refresh to be enabled", |app| {
        matches!(app.devices.status, ferry::app::DiscoveryStatus::Running(_))
    });
    harness.get_by_label("Refresh").click();
}

#[test]
fn a_favourite_that_stops_answering_leaves_the_list_on_refresh() {
    let (dev_dir, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let favourite = device(dev_dir.path(), [127, 0, 0, 34], 0, None);
    let mut harness = window_with_favourite(favourite.local_addr(), mine.path(), ids.path());

    drop(favourite);
    refresh(&mut harness);
    run_until(&mut harness, "the favourite that left forgotten", |app| {
        app.devices.localsend.is_empty()
    });
}

#[test]
fn a_favourite_that_answers_with_another_certificate_replaces_the_old_one_on_refresh() {
    let (old_dir, new_dir, mine, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ip = [127, 0, 0, 36];
    let old = device(old_dir.path(), ip, 0, None);
    let addr = old.local_addr();
    let old_fingerprint = old.fingerprint().to_ascii_uppercase();
    let mut harness = window_with_favourite(addr, mine.path(), ids.path());

    // LocalSend reinstalled (a new certificate) at the same address and port: the address
    // answers for the new one only, so the old one is gone.
    drop(old);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let new = loop {
        match try_device(new_dir.path(), ip, addr.port(), None) {
            Ok(server) => break server,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("port not free yet: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let new_fingerprint = new.fingerprint().to_ascii_uppercase();
    assert_ne!(new_fingerprint, old_fingerprint);
    refresh(&mut harness);
    run_until(&mut harness, "the new certificate listed", |app| {
        app.devices
            .localsend
            .iter()
            .any(|d| d.fingerprint == new_fingerprint)
    });
    let listed: Vec<String> = (harness.state().devices.localsend.iter())
        .map(|d| d.fingerprint.clone())
        .collect();
    assert_eq!(
        listed,
        [new_fingerprint],
        "the old certificate is forgotten"
    );
}

/// A UDP port free now, for the window's discovery.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
