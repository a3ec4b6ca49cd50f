//! Found in the review of the day's changes (write-behind depth, `--to` zones by name, the
//! handshake's first message, interfaces followed by LocalSend discovery, blank interface
//! names): what the window did not do that the CLI now does.

use std::net::{IpAddr, Ipv6Addr, UdpSocket};

use egui_kittest::kittest::Queryable;
use ferry::app::Settings;

use crate::gui::{app, run_until, settings};
use crate::localsend_v6::have_ipv6_loopback;
use crate::util::*;

/// `[ADDRESS%lo]:PORT`: an IPv6 destination whose zone is loopback's name. On `::1` the
/// kernel ignores the zone, so the destination is reachable, and only the reading of the
/// name is tested.
fn on_lo(port: u16) -> String {
    format!("[::1%lo]:{port}")
}

/// `ferry send --to '[fe80::1%eth0]:8080'` takes the interface's name, as `ping` does, but
/// the window's Destination field handed the text to `SocketAddr` and the resolver, which
/// read only a number there: the same address failed as "cannot resolve". The window now
/// reads it as the CLI does.
#[test]
fn the_windows_destination_takes_an_ipv6_zone_by_the_interfaces_name() {
    if !have_ipv6_loopback() {
        return;
    }
    let (src, download, dst) = (tempdir(), tempdir(), tempdir());
    let mut config = ferry::transfer::ServerConfig::new(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        0,
        dst.path().to_owned(),
    );
    config.keyring = Some(test_receiver_keyring());
    config.policy = ferry::transfer::AcceptPolicy::Everyone;
    let (server, _events) = start_server_with(config);
    let file = src.path().join("区域.txt");
    std::fs::write(&file, "by name").unwrap();
    let mut harness = app(settings(download.path()), vec![file]);
    harness.state_mut().client.dest = on_lo(server.local_addr().port());
    harness.state_mut().tab = ferry::app::Tab::Client;
    harness.run_steps(2);
    harness.get_by_label("Choose files…").click();
    run_until(&mut harness, "the picked file", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label("Upload").click();
    run_until(&mut harness, "the upload to end", |app| {
        app.client.rows[0].state.is_finished()
    });
    let row = &harness.state().client.rows[0];
    assert_eq!(
        std::fs::read_to_string(dst.path().join("区域.txt"))
            .ok()
            .as_deref(),
        Some("by name"),
        "{:?}",
        row.state
    );
}

/// The same for the window's notes: a note to `[::1%lo]:PORT` arrives.
#[test]
fn the_windows_note_takes_an_ipv6_zone_by_the_interfaces_name() {
    if !have_ipv6_loopback() {
        return;
    }
    let download = tempdir();
    let mut harness = app(
        Settings {
            server_bind: "::1".into(),
            ..settings(download.path())
        },
        vec![],
    );
    run_until(
        &mut harness,
        "the notes socket on ::1",
        |app| matches!(app.notes.status, ferry::app::NotesStatus::Listening(addr) if addr.is_ipv6()),
    );
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    harness.state_mut().notes.peer = on_lo(peer.local_addr().unwrap().port());
    harness.state_mut().notes.draft = "经由 lo".into();
    harness.run_steps(1);
    harness.get_by_label("Send").click();
    harness.run_steps(1);
    let mut buf = [0u8; 64];
    let got = peer.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec());
    let said = &harness.state().notes.history;
    assert_eq!(got.ok().as_deref(), Some("经由 lo".as_bytes()), "{said:?}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `ferry doctor ADDRESS` read its address with `SocketAddr` and the resolver alone: an
/// IPv6 zone by the interface's name, which `--to` takes, was "cannot resolve", and a
/// number the resolver reads as another address (`0177.0.0.1`, 127.0.0.1) was checked as
/// that other address. It reads the address as `--to` does.
#[test]
fn doctor_reads_its_address_as_to_does() {
    if !have_ipv6_loopback() {
        return;
    }
    let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = ferry()
        .args(["doctor", "--wait", "0", &on_lo(port)])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("answers (ready to receive)"), "{said}");

    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shorthand = format!("0177.0.0.1:{}", v4.local_addr().unwrap().port());
    let out = ferry()
        .args(["doctor", "--wait", "0", &shorthand])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("answers"), "{said}");
    assert!(said.contains("is not an IPv4 address"), "{said}");
}

/// A zone follows `%` only in an IPv6 address, but any host's `%NAME` was read as one:
/// `--to laptop%lo:8080` became `laptop%1` (and `laptop%eth9`, "no network interface"). A
/// `%` in a host name or an IPv4 address makes it no host at all, said before any lookup.
#[test]
fn a_zone_after_a_host_name_or_an_ipv4_address_is_no_destination() {
    let src = tempdir();
    let file = src.path().join("a.txt");
    std::fs::write(&file, "x").unwrap();
    for to in ["laptop%lo:8080", "127.0.0.1%lo:8080"] {
        let out = ferry()
            .args(["send", "--no-localsend-sweep", "--to", to])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{to}: {said}");
        assert!(said.contains("is not a host name"), "{to}: {said}");
    }
}

/// `--localsend-probe` read its address with the resolver alone: `0177.0.0.96`, which
/// `--to` refuses because the resolver reads it as 127.0.0.96, was probed there, and a zone
/// by the interface's name was no address. It reads the address as `--to` does.
#[test]
fn a_localsend_probe_is_read_as_to_is() {
    let dir = tempdir();
    let mut cfg = crate::localsend::config(dir.path());
    cfg.bind = "127.0.0.96".parse().unwrap();
    cfg.alias = "Probed phone".into();
    let (device, _) = crate::localsend::start(cfg);
    let port = device.local_addr().port();
    let peers = |probe: &str| {
        let out = ferry()
            .args(["peers", "--wait", "1", "--no-localsend-sweep"])
            .args(["--localsend-probe", probe])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let said = peers(&format!("0177.0.0.96:{port}"));
    assert!(said.contains("is not an IPv4 address"), "{said}");
    assert!(device.devices().is_empty(), "probed: {said}");
    // Typed as an address, it is probed (the lookup registers there).
    let said = peers(&format!("127.0.0.96:{port}"));
    assert!(!device.devices().is_empty(), "not probed: {said}");
}
