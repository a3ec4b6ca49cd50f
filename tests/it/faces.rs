//! Network faces: which addresses the window's sockets listen on. The notes socket follows
//! the Server tab's bind address (as `ferry listen --bind` does), moves when the server
//! starts elsewhere, and an unparsable bind leaves it off rather than listening everywhere.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, NotesStatus};

use crate::gui::{app, listening_addr, run_until, settings};
use crate::localsend_v6::have_ipv6_loopback;

fn notes_addr(app: &FerryApp) -> Option<SocketAddr> {
    match app.notes.status {
        NotesStatus::Listening(addr) => Some(addr),
        _ => None,
    }
}

fn wait_notes_at(harness: &mut Harness<'_, FerryApp>, ip: IpAddr) -> SocketAddr {
    run_until(harness, &format!("the notes socket on {ip}"), |app| {
        notes_addr(app).is_some_and(|a| a.ip() == ip)
    });
    notes_addr(harness.state()).unwrap()
}

/// A note from `from` reaches the window, and the window's reply comes back to it.
fn note_and_reply(harness: &mut Harness<'_, FerryApp>, from: &UdpSocket, to: SocketAddr) {
    from.set_read_timeout(Some(crate::util::DEADLINE)).unwrap();
    from.send_to("你好 over here".as_bytes(), to).unwrap();
    run_until(harness, "the note to arrive", |app| {
        app.notes.history.iter().any(|e| e.text == "你好 over here")
    });
    let me = from.local_addr().unwrap();
    harness.state_mut().notes.peer = me.to_string();
    harness.state_mut().notes.draft = "got it".into();
    harness.run_steps(1);
    harness.get_by_label("Send").click();
    harness.run_steps(1);
    let mut buf = [0u8; 64];
    let (len, source) = from.recv_from(&mut buf).expect("the reply");
    assert_eq!(&buf[..len], b"got it");
    assert_eq!(source, to, "the reply comes from the notes socket");
}

#[test]
fn the_notes_socket_listens_on_the_servers_bind_address_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), vec![]);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = wait_notes_at(&mut harness, loopback);
    // The real socket holds 127.0.0.1 only: the same port on another address is free.
    let other = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), addr.port()))
        .expect("the notes port is free on 127.0.0.2: the window did not bind 0.0.0.0");
    note_and_reply(&mut harness, &UdpSocket::bind("127.0.0.1:0").unwrap(), addr);
    drop(other);

    if !have_ipv6_loopback() {
        return;
    }
    // The user moves the server to ::1 and starts it: the notes socket moves there too.
    harness.state_mut().server.bind = "::1".into();
    harness.get_by_label("Start listening").click();
    run_until(&mut harness, "the server on ::1", |app| {
        listening_addr(app).is_some_and(|a| a.is_ipv6())
    });
    let addr = wait_notes_at(&mut harness, "::1".parse().unwrap());
    note_and_reply(&mut harness, &UdpSocket::bind("[::1]:0").unwrap(), addr);
}

#[test]
fn an_unparsable_bind_address_leaves_the_notes_socket_off_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.server_bind = "localhost-ish".into();
    let mut harness = app(s, vec![]);
    harness.run_steps(2);
    assert_eq!(harness.state().notes.status, NotesStatus::InvalidBind);
    harness.get_by_label("Bind address must be an IP address such as 0.0.0.0");
    // Fixed, "Listen" binds where the field says.
    harness.state_mut().server.bind = "127.0.0.1".into();
    harness.get_by_label("Listen").click();
    harness.run_steps(1);
    wait_notes_at(&mut harness, IpAddr::V4(Ipv4Addr::LOCALHOST));
}

/// `ferry peers` (and `send --to`, `note --to`) look for LocalSend devices with a receiver of
/// their own. It never holds LocalSend's port: a receiver started while a lookup runs (for up
/// to `--localsend-wait`) takes it. LocalSend keeps one entry per address, so when a receiver
/// here holds that port, devices are told it (not the lookup's, which nobody serves once the
/// command ends), and the lookup still finds them.
#[test]
fn a_lookup_never_holds_localsends_port_and_tells_devices_the_receiver_that_does() {
    use ferry::localsend::LOCALSEND_PORT;
    use std::net::TcpListener;
    use std::process::Stdio;

    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, LOCALSEND_PORT)) {
        Ok(probe) => {
            drop(probe);
            // A device the lookup probes: once it lists the lookup, the lookup's receiver runs.
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = crate::localsend::config(dir.path());
            cfg.bind = "127.0.0.96".parse().expect("ip");
            cfg.alias = "Probed phone".into();
            let (device, _) = crate::localsend::start(cfg);
            let child = crate::util::ferry()
                .args(["peers", "--wait", "8", "--no-localsend-sweep"])
                .args(["--localsend-probe", &device.local_addr().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ferry peers runs");
            let mut child = crate::util::ChildGuard(child);
            let deadline = std::time::Instant::now() + crate::util::DEADLINE;
            while device.devices().is_empty() {
                assert!(
                    child.0.try_wait().expect("status").is_none()
                        && std::time::Instant::now() < deadline,
                    "the lookup never registered with the probed device"
                );
                // Poll interval while the lookup starts.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            // Nothing here served LocalSend's port: told the lookup's own, where answers reach it.
            assert_ne!(device.devices()[0].addr.port(), LOCALSEND_PORT);
            // The window (or `ferry serve`) starts LocalSend receiving now: it gets the port.
            let window_dir = tempfile::tempdir().unwrap();
            let mut window = crate::localsend::config(window_dir.path());
            window.port = LOCALSEND_PORT;
            window.bind_v6 = None;
            let started = ferry::localsend::LocalSendServer::start(
                window,
                ferry::events::event_channel(None).0,
            );
            assert!(
                started.is_ok(),
                "a lookup held LocalSend's port: {:?}",
                started.err()
            );
            assert!(
                child.0.try_wait().expect("status").is_none(),
                "the lookup was still running"
            );
        }
        Err(e) => crate::util::skip_or_fail(
            false,
            &format!("LocalSend's port {LOCALSEND_PORT} is held here ({e}): free case untested"),
        ),
    }

    // Held (by this test, or whatever held it already): devices are told that port, and the
    // probe still finds the device.
    let _held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, LOCALSEND_PORT));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::localsend::config(dir.path());
    cfg.bind = "127.0.0.97".parse().expect("ip");
    cfg.alias = "Told phone".into();
    let (device, _) = crate::localsend::start(cfg);
    let out = crate::localsend::peers_probing(device.local_addr());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Told phone"), "found by the probe: {text}");
    let listed = device.devices();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].addr.port(), LOCALSEND_PORT, "{listed:?}");
}
