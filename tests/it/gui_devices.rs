//! The window's Devices section (issue 12), driven headless with egui_kittest by its labels:
//! two windows in one process, both servers on 127.0.0.1 port 0, find each other by
//! discovery on loopback only (a server bound to 127.0.0.1 is announced on loopback alone, on
//! a discovery port picked for the test, with identities in temp folders of their own).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Instant;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{DiscoveryStatus, FerryApp, NotesStatus, Settings};
use ferry::discovery::{Choice, interfaces};
use ferry::events::SeenState;
use ferry::secure::Identity;

use crate::gui::{app, listening_addr, run_until, settings};
use crate::util::*;

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Loopback must be there for discovery on it (as in the driver's own tests).
fn has_lo() -> bool {
    interfaces::list(&Choice {
        loopback: true,
        ..Choice::default()
    })
    .map(|all| all.iter().any(|(i, _)| i.name == "lo"))
    .unwrap_or(false)
}

/// Settings for a window that listens at once on 127.0.0.1:0 with discovery on, under
/// `name`, with its identity in `identity_dir`.
fn discovering(download_dir: &Path, identity_dir: &Path, name: &str, port: u16) -> Settings {
    let mut identity = Identity::load_or_create(identity_dir).unwrap();
    identity.rename(identity_dir, name).unwrap();
    Settings {
        server_listening: true,
        discovery: true,
        identity_dir: Some(identity_dir.to_owned()),
        discovery_port: Some(port),
        ..settings(download_dir)
    }
}

/// Steps both windows until `done` holds for both (each engine runs on its own thread).
fn run_both_until(
    a: &mut Harness<'_, FerryApp>,
    b: &mut Harness<'_, FerryApp>,
    what: &str,
    mut done: impl FnMut(&FerryApp, &FerryApp) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        a.step();
        b.step();
        if done(a.state(), b.state()) {
            a.run_steps(2);
            b.run_steps(2);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: a sees {:?}, b sees {:?}",
            a.state().devices.devices,
            b.state().devices.devices
        );
        // Poll interval: give the engine and discovery threads the CPU between frames.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn sees_ready(app: &FerryApp, name: &str) -> bool {
    app.devices
        .devices
        .iter()
        .any(|d| d.name == name && d.state == SeenState::Ready)
}

struct Pair {
    a: Harness<'static, FerryApp>,
    b: Harness<'static, FerryApp>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Two windows ("alpha" and "beta") that both listen, with discovery on, on the Client tab.
fn pair() -> Pair {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let port = free_udp_port();
    let a_settings = discovering(dirs[0].path(), dirs[1].path(), "alpha", port);
    let b_settings = discovering(dirs[2].path(), dirs[3].path(), "beta", port);
    let mut a = app(a_settings, Vec::new());
    let mut b = app(b_settings, Vec::new());
    run_both_until(&mut a, &mut b, "both servers to listen", |a, b| {
        listening_addr(a).is_some() && listening_addr(b).is_some()
    });
    a.get_by_label("Client").click();
    b.get_by_label("Client").click();
    a.run_steps(2);
    b.run_steps(2);
    Pair { a, b, _dirs: dirs }
}

#[test]
fn two_windows_find_each_other_and_a_click_fills_the_destination() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let Pair {
        mut a,
        mut b,
        _dirs,
    } = pair();
    run_both_until(&mut a, &mut b, "each to see the other, ready", |a, b| {
        sees_ready(a, "beta") && sees_ready(b, "alpha")
    });
    let b_addr = listening_addr(b.state()).unwrap();
    let a_addr = listening_addr(a.state()).unwrap();
    // Announced under the identity's name, which the Server tab shows too.
    assert_eq!(
        a.state().devices.status,
        DiscoveryStatus::Running("alpha".into())
    );
    assert_eq!(a.state().server.device_name, "alpha");
    let beta = &a.state().devices.devices[0];
    assert_eq!(beta.addr, Some(b_addr));
    assert!(!beta.trusted);
    // The row shows the state and the address, by label.
    assert!(a.query_by_label(&b_addr.to_string()).is_some());
    assert!(a.query_all_by_label("ready").count() >= 1);
    // This device's link, for other machines.
    assert!(a.query_by_label(&format!("ferry://{a_addr}")).is_some());
    assert!(a.query_by_label("Copy link").is_some());

    // Notes go where beta hears them: its notes port, announced beside its server's (here
    // another port; notes went to the server's port, where nobody read them).
    let b_notes = match b.state().notes.status {
        NotesStatus::Listening(addr) => addr.port(),
        ref other => panic!("beta's notes do not listen: {other:?}"),
    };
    assert_ne!(b_notes, b_addr.port());
    run_both_until(&mut a, &mut b, "beta's notes port in its beacon", |a, _| {
        a.devices.devices.iter().any(|d| d.udp_port == b_notes)
    });
    a.get_by_label("beta").click();
    a.run_steps(2);
    assert_eq!(a.state().client.dest, b_addr.to_string());
    assert_eq!(a.state().notes.peer, format!("127.0.0.1:{b_notes}"));
    b.get_by_label("alpha").click();
    b.run_steps(2);
    assert_eq!(b.state().client.dest, a_addr.to_string());
}

#[test]
fn turning_the_setting_off_empties_the_list_and_is_remembered() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let Pair {
        mut a,
        mut b,
        _dirs,
    } = pair();
    run_both_until(&mut a, &mut b, "a to see beta", |a, _| {
        sees_ready(a, "beta")
    });
    assert!(a.query_by_label("beta").is_some());

    a.get_by_label("Find devices on the LAN").click();
    run_both_until(&mut a, &mut b, "a's list to empty", |a, _| {
        a.devices.devices.is_empty() && a.devices.status == DiscoveryStatus::Off(None)
    });
    assert!(a.query_by_label("beta").is_none());
    assert!(
        a.query_by_label_contains("Devices are looked for while the server listens")
            .is_some()
    );
    assert!(!a.state().settings().discovery);
    // Turned off, alpha said goodbye: beta's list empties too, at once.
    run_both_until(&mut a, &mut b, "b to drop alpha", |_, b| {
        !b.devices.devices.iter().any(|d| d.name == "alpha")
    });
}

#[test]
fn a_window_with_discovery_off_lists_no_devices() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let port = free_udp_port();
    let off = Settings {
        discovery: false,
        ..discovering(dirs[0].path(), dirs[1].path(), "off", port)
    };
    let mut a = app(
        discovering(dirs[2].path(), dirs[3].path(), "alpha", port),
        Vec::new(),
    );
    let mut c = app(
        discovering(dirs[4].path(), dirs[5].path(), "gamma", port),
        Vec::new(),
    );
    let mut b = app(off, Vec::new());
    b.get_by_label("Client").click();
    // Alpha and gamma find each other on the same port, so beacons are flowing; the window
    // with the setting off lists none of them.
    run_both_until(&mut a, &mut c, "alpha and gamma to meet", |a, c| {
        sees_ready(a, "gamma") && sees_ready(c, "alpha")
    });
    b.run_steps(2);
    assert!(listening_addr(b.state()).is_some());
    assert_eq!(b.state().devices.status, DiscoveryStatus::Off(None));
    assert!(b.state().devices.devices.is_empty());
    assert!(b.query_by_label("alpha").is_none());
    assert!(
        b.query_by_label_contains("Devices are looked for")
            .is_some()
    );
    assert!(!b.state().settings().discovery);
    // Nor does anyone see it: it does not announce.
    assert!(!a.state().devices.devices.iter().any(|d| d.name == "off"));
}

#[test]
fn add_by_address_shows_the_favourite_and_remembers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), Vec::new());
    harness.get_by_label("Client").click();
    harness.run_steps(2);

    harness.get_by_label("Add by address").click();
    harness.get_by_label("Add by address").type_text("no port");
    harness.get_by_label("Add").click();
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label("Enter host:port, for example 192.168.1.20:8080")
            .is_some()
    );
    assert!(harness.state().devices.favourites.is_empty());

    // Start over with an empty field, then type a real address (a loopback one: a favourite
    // is probed at once, and tests reach no host but this one).
    harness.state_mut().devices.add_addr.clear();
    harness.run_steps(1);
    harness.get_by_label("Add by address").click();
    harness
        .get_by_label("Add by address")
        .type_text("127.0.9.7:8080");
    harness.get_by_label("Add").click();
    harness.run_steps(2);
    assert_eq!(harness.state().devices.favourites, vec!["127.0.9.7:8080"]);
    assert!(harness.query_by_label("favourite").is_some());
    assert_eq!(
        harness.state().settings().favourites,
        vec!["127.0.9.7:8080"]
    );

    // Clicking it fills the destination and the notes peer.
    harness
        .get_by_role_and_label(egui::accesskit::Role::Button, "127.0.9.7:8080")
        .click();
    harness.run_steps(2);
    assert_eq!(harness.state().client.dest, "127.0.9.7:8080");
    assert_eq!(harness.state().notes.peer, "127.0.9.7:8080");
}

#[test]
fn the_doctor_checks_a_typed_address_off_the_ui_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), Vec::new());
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Why can't I see my device?").click();
    harness.run_steps(2);
    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    harness.get_by_label("Address to check (host:port)").click();
    harness
        .get_by_label("Address to check (host:port)")
        .type_text(&closed.to_string());
    harness.get_by_label("Check").click();
    run_until(&mut harness, "the check's answer", |app| {
        app.devices.checked.is_some()
    });
    assert!(
        harness
            .query_by_label_contains(&format!("TCP {closed}: connection refused"))
            .is_some()
    );
}

/// Whether the window's doctor says discovery uses loopback and no other interface of this
/// machine ("not among the chosen interfaces").
fn uses_loopback_alone(app: &FerryApp) -> bool {
    use ferry::events::{Finding, IgnoredWhy};
    let doctor = &app.devices.doctor;
    let others = interfaces::list(&Choice::default()).unwrap();
    doctor.iter().any(|f| matches!(f, Finding::Used { name, .. } if name == "lo"))
        && !doctor.iter().any(|f| matches!(f, Finding::Used { name, .. } if name != "lo"))
        && others.iter().filter(|(i, _)| !i.addr.is_loopback()).all(|(i, _)| {
            doctor.iter().any(|f| {
                matches!(f, Finding::Ignored { name, why: IgnoredWhy::NotChosen, .. } if *name == i.name)
            })
        })
}

/// Two windows on one discovery port, both listening: alpha on every address with the
/// settings `alpha` makes of its own, beta on 127.0.0.1; alpha's Client tab shown.
fn alpha_on_all_and_beta(alpha: impl FnOnce(Settings) -> Settings) -> Pair {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let port = free_udp_port();
    let a_settings = alpha(Settings {
        server_bind: "0.0.0.0".into(),
        ..discovering(dirs[0].path(), dirs[1].path(), "alpha", port)
    });
    let b_settings = discovering(dirs[2].path(), dirs[3].path(), "beta", port);
    let mut a = app(a_settings, Vec::new());
    let mut b = app(b_settings, Vec::new());
    run_both_until(&mut a, &mut b, "both servers to listen", |a, b| {
        listening_addr(a).is_some() && listening_addr(b).is_some()
    });
    a.get_by_label("Client").click();
    a.run_steps(2);
    Pair { a, b, _dirs: dirs }
}

/// `ferry --only-interface lo` (or `FERRY_ONLY_INTERFACE=lo ferry`): a window listening on
/// every address uses loopback alone for discovery, finds a window there, and its doctor says
/// why each other interface is not used.
#[test]
fn a_window_told_only_loopback_finds_there_and_says_why_not_elsewhere() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let Pair {
        mut a,
        mut b,
        _dirs,
    } = alpha_on_all_and_beta(|s| Settings {
        interfaces: Choice::named(&[], &["lo".into()]),
        ..s
    });
    run_both_until(
        &mut a,
        &mut b,
        "alpha to see beta on loopback alone",
        |a, _| sees_ready(a, "beta") && uses_loopback_alone(a),
    );
    // The setting is shown but cannot change what the run chose.
    a.get_by_label("Why can't I see my device?").click();
    a.run_steps(2);
    a.get_by_label_contains("set for this run by ferry --only-interface");
}

/// The doctor's "Only these interfaces" setting: typed and applied, discovery starts again on
/// loopback alone (a window there is found; every other interface is "not among the chosen
/// interfaces"), and the setting is kept with the others. (The window starts with a setting
/// naming no interface of this machine, so nothing of it goes out on the real network.)
#[test]
fn the_only_these_interfaces_setting_applies_at_once_and_is_kept() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let Pair {
        mut a,
        mut b,
        _dirs,
    } = alpha_on_all_and_beta(|s| Settings {
        only_interfaces: "no-such-interface".into(),
        ..s
    });
    a.get_by_label("Why can't I see my device?").click();
    a.run_steps(2);
    a.get_by_label("Only these interfaces:").click();
    a.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    a.get_by_label("Only these interfaces:").type_text(" lo ,");
    a.get_by_label("Apply").click();
    a.run_steps(2);
    assert_eq!(a.state().devices.only_interfaces, "lo");
    run_both_until(
        &mut a,
        &mut b,
        "discovery on loopback alone, beta found",
        |a, _| uses_loopback_alone(a) && sees_ready(a, "beta"),
    );
    let saved = a.state().settings();
    assert_eq!(saved.only_interfaces, "lo");
    drop(a);
    // Kept: a window started with the saved settings uses loopback alone from the start.
    let mut again = app(saved, Vec::new());
    run_until(
        &mut again,
        "discovery on loopback alone again",
        uses_loopback_alone,
    );
}
