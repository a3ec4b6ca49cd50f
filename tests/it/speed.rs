//! The speed test (`ferry bench --to`, issue 14): real servers on loopback, the real binary;
//! it goes through the accept policy like an upload and never leaves a file.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use ferry::events::{Event, ServerEvent};
use ferry::protocol::{SenderMsg, encode_chunk_header, encode_sender_msg};
use ferry::transfer::{AcceptPolicy, Bottleneck, ProbeError, SendOptions, ServerConfig, probe};

use crate::util::{
    LOOPBACK, ferry, names_in, read_answer, spawn_serve, start_server_with, test_receiver_keyring,
    wait_connection_error, wait_for,
};

#[test]
fn ferry_bench_reports_every_figure_and_the_limit_and_saves_nothing() {
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, _lines) = spawn_serve(dst.path(), &["--no-discovery"]);
    let out = ferry()
        .args(["bench", "--secs", "0.5", "--to", &addr.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for label in [
        "network",
        "receiver's disk",
        "receiver's hashing",
        "sender's hashing",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"));
        assert!(line.contains(" MB/s") && line.contains('#'), "{line}");
    }
    assert!(stdout.contains("limited by: the "), "{stdout}");
    assert!(stdout.contains("encrypted"), "{stdout}");
    assert!(names_in(dst.path()).is_empty(), "nothing is saved");
}

/// A length the test cannot honour is bad usage, said before anything is sent (it was
/// silently clamped to 0.5..=60 s).
#[test]
fn ferry_bench_refuses_a_length_outside_half_a_second_to_a_minute() {
    for secs in ["0.1", "61", "NaN", "soon"] {
        let out = ferry()
            .args(["bench", "--secs", secs, "--to", "127.0.0.1:9"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{secs}: {stderr}");
        assert!(stderr.contains("from 0.5 to 60"), "{secs}: {stderr}");
    }
}

fn server(
    policy: AcceptPolicy,
) -> (
    ferry::transfer::ServerHandle,
    crossbeam_channel::Receiver<Event>,
    tempfile::TempDir,
) {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.keyring = Some(test_receiver_keyring());
    config.policy = policy;
    let (server, events) = start_server_with(config);
    (server, events, dst)
}

#[test]
fn a_speed_test_is_asked_about_like_an_upload_and_can_be_declined() {
    let (server, events, dst) = server(AcceptPolicy::Ask);
    let to = server.local_addr().to_string();
    let tester =
        std::thread::spawn(move || probe(&SendOptions::new(to), Duration::from_millis(300)));
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    assert!(offer.names[0].contains("speed test"), "{:?}", offer.names);
    server.decide(offer.offer_id, false);
    match tester.join().unwrap() {
        Err(ProbeError::Declined(reason)) => assert!(reason.contains("declined"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Accepted, it runs, and its figures add up.
    let to = server.local_addr().to_string();
    let tester =
        std::thread::spawn(move || probe(&SendOptions::new(to), Duration::from_millis(300)));
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    server.decide(offer.offer_id, true);
    let report = tester.join().unwrap().unwrap();
    assert!(report.bytes > 0 && report.network > 0, "{report:?}");
    assert!(
        report.receiver_hash > 0 && report.sender_hash > 0,
        "{report:?}"
    );
    let (limit, speed) = report.bottleneck();
    let slowest = [
        report.network,
        report.receiver_disk,
        report.receiver_hash,
        report.sender_hash,
    ]
    .into_iter()
    .filter(|s| *s > 0)
    .min()
    .unwrap();
    assert_eq!(speed, slowest, "{limit:?}");
    assert!(names_in(dst.path()).is_empty());
}

#[test]
fn trusted_only_refuses_an_untrusted_speed_test() {
    let (server, _events, _dst) = server(AcceptPolicy::TrustedOnly);
    let home = tempfile::tempdir().unwrap();
    let mut opts = SendOptions::new(server.local_addr().to_string());
    opts.keyring = Some(crate::util::device(home.path(), "stranger"));
    match probe(&opts, Duration::from_millis(200)) {
        Err(ProbeError::Declined(reason)) => assert!(reason.contains("trusted"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_speed_tests_end_with_a_reason_and_the_server_keeps_serving() {
    let (server, events, dst) = server(AcceptPolicy::Everyone);
    let frame = |msg: &SenderMsg| encode_sender_msg(msg).unwrap();
    // Too large a test.
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&frame(&SenderMsg::Probe {
        max_bytes: u64::MAX / 2,
    }))
    .unwrap();
    assert!(wait_connection_error(&events).contains("speed test of"));
    // More bytes than announced.
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&frame(&SenderMsg::Probe { max_bytes: 10 }))
        .unwrap();
    let _ready = read_answer(&mut s);
    let _ = s.write_all(&encode_chunk_header(11));
    let _ = s.write_all(&[0u8; 11]);
    assert!(wait_connection_error(&events).contains("more speed-test bytes"));
    // Still serving: a real test works.
    let report = probe(
        &SendOptions::new(server.local_addr().to_string()),
        Duration::from_millis(200),
    )
    .unwrap();
    assert!(report.bytes > 0);
    assert!(names_in(dst.path()).is_empty());
}

#[test]
fn the_bottleneck_is_the_slowest_figure_measured() {
    let report = ferry::transfer::ProbeReport {
        security: ferry::events::Security::Plain,
        bytes: 1,
        secs: 1.0,
        network: 900,
        receiver_disk: 0,
        receiver_hash: 4000,
        sender_hash: 500,
    };
    assert_eq!(report.bottleneck(), (Bottleneck::SenderCpu, 500));
    let report = ferry::transfer::ProbeReport {
        receiver_disk: 300,
        ..report
    };
    assert_eq!(report.bottleneck(), (Bottleneck::ReceiverDisk, 300));
}

#[test]
fn the_window_tests_the_speed_and_shows_bars_and_the_limit() {
    use crate::gui::{app, settings};
    use egui_kittest::kittest::Queryable;
    let (server, _events, dst) = server(AcceptPolicy::Everyone);
    let src = tempfile::tempdir().unwrap();
    let mut harness = app(settings(src.path()), vec![]);
    window_speed_test(&mut harness, &server.local_addr().to_string());
    harness.get_by_label_contains("Speed test with");
    harness.get_by_label_contains("Limited by the ");
    for label in [
        "network",
        "receiver's disk",
        "receiver's hashing",
        "sender's hashing",
    ] {
        harness.get_by_label(label);
    }
    // Four bars (one per figure) and the limit line give their speeds.
    assert!(harness.query_all_by_label_contains(" MB/s").count() >= 5);
    assert!(names_in(dst.path()).is_empty());
}

/// In a fresh window: the Client tab, `to` as the destination, "Test speed", and frames until
/// the test ended.
pub(crate) fn window_speed_test(
    harness: &mut egui_kittest::Harness<'_, ferry::app::FerryApp>,
    to: &str,
) {
    use egui_kittest::kittest::Queryable;
    harness.run_steps(2);
    crate::gui::type_destination(harness, to);
    harness.run_steps(1);
    harness.get_by_label("Test speed").click();
    crate::gui::run_until(harness, "the speed test's end", |app| {
        !app.client.speed.running()
    });
}

/// A receiver that ends a speed test for going on too long (its `speed_test_max`) says so
/// to the sender, and the sender says why: not a bare "connection lost" or "broken pipe".
#[test]
fn a_speed_test_ended_by_the_receivers_time_cap_says_so() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.keyring = Some(test_receiver_keyring());
    config.speed_test_max = Duration::from_millis(500);
    let (server, _events) = start_server_with(config);
    let opts = SendOptions::new(server.local_addr().to_string());
    match probe(&opts, Duration::from_secs(3)) {
        Err(ProbeError::Failed(reason)) => {
            assert!(
                reason.contains("a speed test longer than 0.5 s"),
                "{reason}"
            )
        }
        other => panic!("a test past the receiver's cap: {other:?}"),
    }
}
