//! The LocalSend register sweep (issue 16): `POST /register` to a list of hosts finds the
//! LocalSend device among them, ends in bounded time when nobody or a silent host is
//! there, runs one at a time, and hostile answers (huge, garbage, a fingerprint that is not
//! the certificate's, a flood of devices) add nothing or a bounded table. Only 127.0.0.0/8
//! is ever swept here: the target list is the test's.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::events::event_channel;
use ferry::localsend::{
    CertIdentity, LocalSendConfig, LocalSendSender, LocalSendServer, SweepReport, SweepSettings,
};
use ferry::transfer::AcceptPolicy;
use serde_json::json;

/// Far more than any sweep here needs (a silent host costs `host_timeout`).
const SWEEP_DEADLINE: Duration = Duration::from_secs(15);

fn server_on(ip: [u8; 4], dir: &Path, alias: &str) -> LocalSendServer {
    server_sweeping(ip, dir, alias, quick_sweep())
}

/// The sweep of [`server_on`]: a second per host, 8 at a time, 5 s for a recheck.
fn quick_sweep() -> SweepSettings {
    SweepSettings {
        connect_timeout: Duration::from_millis(500),
        host_timeout: Duration::from_millis(1000),
        concurrency: 8,
        recheck_timeout: Duration::from_secs(5),
    }
}

fn server_sweeping(ip: [u8; 4], dir: &Path, alias: &str, sweep: SweepSettings) -> LocalSendServer {
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dir.to_path_buf(), alias, identity);
    config.bind = IpAddr::from(ip);
    config.port = 0;
    config.policy = AcceptPolicy::TrustedOnly;
    config.fsync = false;
    config.sweep = sweep;
    LocalSendServer::start(config, event_channel(None).0).expect("LocalSend server starts")
}

fn hosts(from: u8, to: u8, port: u16) -> Vec<SocketAddr> {
    (from..=to)
        .map(|h| SocketAddr::from(([127, 0, 0, h], port)))
        .collect()
}

fn finish(report: crossbeam_channel::Receiver<SweepReport>) -> (SweepReport, Duration) {
    let started = Instant::now();
    let report = report
        .recv_timeout(SWEEP_DEADLINE)
        .expect("the sweep ends in bounded time");
    (report, started.elapsed())
}

/// A port no one listens on (bound, then let go).
fn free_port(ip: [u8; 4]) -> u16 {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_sweep_finds_exactly_the_localsend_device_among_dead_addresses() {
    let (mine, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let device = server_on([127, 0, 0, 17], theirs.path(), "Phone on 17");
    let port = device.local_addr().port();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");

    let (report, took) = finish(sweeper.sweep(hosts(2, 40, port)).expect("a sweep starts"));
    assert_eq!(report.probed, 39);
    assert_eq!(report.found.len(), 1, "{:?}", report.found);
    let found = &report.found[0];
    assert_eq!(found.fingerprint, device.fingerprint());
    assert_eq!(found.alias, "Phone on 17");
    assert_eq!(
        found.addr,
        device.local_addr(),
        "port taken from the address probed"
    );
    assert_eq!(found.protocol, ferry::localsend::LocalSendProtocol::Https);
    assert!(
        took < Duration::from_secs(10),
        "dead loopback addresses refuse at once: {took:?}"
    );

    let listed = sweeper.devices();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].fingerprint, device.fingerprint());
    assert!(listed[0].how.contains(&"sweep"), "{:?}", listed[0].how);
    // The device heard us too: the sweep is a register with our info.
    let heard_us = device.devices();
    assert!(
        heard_us
            .iter()
            .any(|d| d.fingerprint == sweeper.fingerprint()),
        "{heard_us:?}"
    );
}

#[test]
fn a_sweep_where_nobody_answers_ends_at_once_and_finds_nothing() {
    let mine = tempfile::tempdir().unwrap();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    let port = free_port([127, 0, 0, 1]);
    let (report, took) = finish(sweeper.sweep(hosts(2, 40, port)).expect("a sweep starts"));
    assert_eq!(report.probed, 39);
    assert!(report.found.is_empty());
    assert!(sweeper.devices().is_empty());
    assert!(
        took < Duration::from_secs(5),
        "refusals are immediate: {took:?}"
    );
}

#[test]
fn a_host_that_accepts_and_never_answers_ends_by_its_timeout_and_one_sweep_runs_at_a_time() {
    let mine = tempfile::tempdir().unwrap();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    // Accepts (the kernel does, into the backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.41:0").expect("bind");
    let target = silent.local_addr().expect("addr");

    let running = sweeper.sweep(vec![target]).expect("a sweep starts");
    assert!(sweeper.is_sweeping());
    assert!(
        sweeper.sweep(vec![target]).is_none(),
        "a second sweep while one runs starts nothing"
    );
    let (report, took) = finish(running);
    assert!(report.found.is_empty());
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "ended by the host timeout (1 s): {took:?}"
    );
    // Done: the next Refresh sweeps again.
    let deadline = Instant::now() + SWEEP_DEADLINE;
    while sweeper.is_sweeping() {
        assert!(Instant::now() < deadline, "the sweep flag is cleared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = sweeper.sweep(vec![target]).expect("a new sweep starts");
    finish(again);
    drop(silent);
}

#[test]
fn a_sweep_forgets_a_listed_device_that_no_longer_answers_and_keeps_the_others() {
    let (mine, a_dir, b_dir, c_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let stays = server_on([127, 0, 0, 51], a_dir.path(), "Stays");
    let leaves = server_on([127, 0, 0, 52], b_dir.path(), "Leaves");
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    let targets = vec![stays.local_addr(), leaves.local_addr()];
    let (report, _) = finish(sweeper.sweep(targets.clone()).expect("a sweep starts"));
    assert_eq!(report.found.len(), 2, "{:?}", report.found);
    // A device listed at an address no sweep asks stays whatever the sweeps find.
    let elsewhere = server_on([127, 0, 0, 53], c_dir.path(), "Other");
    let (report, _) = finish(sweeper.sweep(vec![elsewhere.local_addr()]).expect("sweep"));
    assert_eq!(report.found.len(), 1);
    drop(elsewhere);
    let names = |server: &LocalSendServer| {
        let mut names: Vec<String> = server.devices().into_iter().map(|d| d.alias).collect();
        names.sort();
        names
    };
    assert_eq!(names(&sweeper), ["Leaves", "Other", "Stays"]);

    drop(leaves);
    let (report, _) = finish(sweeper.sweep(targets).expect("a sweep starts"));
    assert_eq!(report.found.len(), 1, "{:?}", report.found);
    assert_eq!(
        names(&sweeper),
        ["Other", "Stays"],
        "the device that left is forgotten, the one at an address not asked is kept"
    );
}

#[test]
fn a_listed_device_too_slow_for_the_sweep_is_asked_again_and_kept() {
    let mine = tempfile::tempdir().unwrap();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    let slow = fake_host([127, 0, 0, 54], Reply::SlowAfterFirst);
    let (report, _) = finish(sweeper.sweep(vec![slow]).expect("a sweep starts"));
    assert_eq!(report.found.len(), 1, "its first answer is prompt");
    // From now on it answers after the sweep's time for a host, within the recheck's.
    let (report, took) = finish(sweeper.sweep(vec![slow]).expect("a sweep starts"));
    let listed: Vec<SocketAddr> = sweeper.devices().iter().map(|d| d.addr).collect();
    assert_eq!(listed, vec![slow], "a slow device is not forgotten");
    let found: Vec<SocketAddr> = report.found.iter().map(|d| d.addr).collect();
    assert_eq!(found, vec![slow], "the second ask found it");
    assert!(took >= SLOW_ANSWER, "it was asked again: {took:?}");
}

#[test]
fn a_sweep_asks_again_only_as_many_silent_devices_as_it_asks_at_once() {
    let mine = tempfile::tempdir().unwrap();
    let sweep = SweepSettings {
        host_timeout: Duration::from_millis(500),
        concurrency: 2,
        recheck_timeout: Duration::from_millis(1000),
        ..quick_sweep()
    };
    let sweeper = server_sweeping([127, 0, 0, 1], mine.path(), "Sweeper", sweep);
    // Six listed devices, all too slow for the sweep and its recheck from now on (as
    // many devices that left at once, or forged claims at many addresses, would be).
    let slow: Vec<_> = (90..=95)
        .map(|ip| fake_host_noting([127, 0, 0, ip], Reply::SlowAfterFirst))
        .collect();
    let targets: Vec<SocketAddr> = slow.iter().map(|(addr, _)| *addr).collect();
    let (report, _) = finish(sweeper.sweep(targets.clone()).expect("a sweep starts"));
    assert_eq!(
        report.found.len(),
        slow.len(),
        "their first answers are prompt"
    );

    let (report, _) = finish(sweeper.sweep(targets).expect("a sweep starts"));
    assert!(report.found.is_empty(), "{:?}", report.found);
    assert!(sweeper.devices().is_empty(), "silent devices are forgotten");
    // Each host is done with a connection once its slow answer is due (all were made
    // when the sweep ended): count the hosts asked a third time (the recheck).
    let all_done = Instant::now() + SLOW_ANSWER + Duration::from_millis(500);
    let asked_again = slow
        .iter()
        .filter(|(_, ended)| {
            let mut connections = 0;
            while ended.recv_deadline(all_done).is_ok() {
                connections += 1;
            }
            connections == 3
        })
        .count();
    assert_eq!(
        asked_again, 2,
        "one round of rechecks at most: a sweep takes one recheck time longer, however \
         many devices left"
    );
}

/// What a fake LocalSend host answers a register with.
#[derive(Clone, Copy)]
pub(crate) enum Reply {
    /// A proper answer: its own certificate's fingerprint.
    Honest,
    /// A valid body claiming another device's fingerprint.
    ForeignFingerprint,
    /// Not JSON.
    Garbage,
    /// 10 MB of JSON-looking bytes.
    Huge,
    /// A proper answer from a fresh certificate each connection: a flood of devices.
    NewDeviceEachTime,
    /// A proper answer, at once the first time, then only after [`SLOW_ANSWER`]: longer
    /// than a sweep gives a host here, well within its recheck.
    SlowAfterFirst,
    /// A proper answer at once the first time; later, the TLS handshake and the request
    /// are taken at once, but no answer comes until the client hangs up: a device that
    /// proves who it is, then is too busy to answer in time.
    LateAfterFirst,
    /// The TLS handshake and the request, then nothing until the client hangs up.
    Mute,
    /// 500 Internal Server Error (with its certificate).
    Refused,
    /// A proper answer the first time, then [`Reply::Refused`].
    RefusedAfterFirst,
    /// A proper answer the first time, then [`Reply::Garbage`].
    GarbageAfterFirst,
    /// A proper answer the first time, then [`Reply::Refused`] from a fresh certificate
    /// each time: another device holds the address now.
    StrangerRefusingAfterFirst,
}

/// How long [`Reply::SlowAfterFirst`] keeps its later answers.
const SLOW_ANSWER: Duration = Duration::from_millis(1600);

/// An HTTPS host on `ip` answering every register with `reply` (a thread per connection).
fn fake_host(ip: [u8; 4], reply: Reply) -> SocketAddr {
    fake_host_noting(ip, reply).0
}

/// [`fake_host`], and the index of each connection when the host is done with it.
pub(crate) fn fake_host_noting(
    ip: [u8; 4],
    reply: Reply,
) -> (SocketAddr, crossbeam_channel::Receiver<usize>) {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0))).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let identity = CertIdentity::generate().expect("certificate");
    let (done, ended) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for (nth, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let identity = match reply {
                Reply::NewDeviceEachTime => CertIdentity::generate().expect("certificate"),
                Reply::StrangerRefusingAfterFirst if nth > 0 => {
                    CertIdentity::generate().expect("certificate")
                }
                _ => identity.clone(),
            };
            let done = done.clone();
            std::thread::spawn(move || {
                let reply = match reply {
                    Reply::SlowAfterFirst if nth > 0 => {
                        // A busy device: its answer is late, not lost.
                        std::thread::sleep(SLOW_ANSWER);
                        reply
                    }
                    Reply::LateAfterFirst if nth > 0 => Reply::Mute,
                    Reply::RefusedAfterFirst | Reply::StrangerRefusingAfterFirst if nth > 0 => {
                        Reply::Refused
                    }
                    Reply::GarbageAfterFirst if nth > 0 => Reply::Garbage,
                    _ => reply,
                };
                answer_once(stream, &identity, reply);
                let _ = done.send(nth);
            });
        }
    });
    (addr, ended)
}

pub(crate) fn answer_once(stream: TcpStream, identity: &CertIdentity, reply: Reply) {
    let config = ferry::localsend::tls::server_config(identity).expect("tls");
    let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut tls = rustls::StreamOwned::new(connection, stream);
    // The request: headers, then Content-Length bytes of body.
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if tls.read_exact(&mut body).is_err() {
        return;
    }
    if let Reply::Mute = reply {
        // Until the client hangs up (or the read timeout).
        while let Ok(1..) = tls.read(&mut byte) {}
        return;
    }
    let info = |fingerprint: &str| {
        json!({"alias": "Fake", "version": "2.2", "deviceModel": null,
               "deviceType": "headless", "fingerprint": fingerprint, "download": false})
        .to_string()
        .into_bytes()
    };
    let answer = match reply {
        Reply::Honest
        | Reply::NewDeviceEachTime
        | Reply::SlowAfterFirst
        | Reply::LateAfterFirst
        | Reply::Mute
        | Reply::RefusedAfterFirst
        | Reply::GarbageAfterFirst
        | Reply::StrangerRefusingAfterFirst => info(identity.fingerprint()),
        Reply::Refused => br#"{"message":"busy"}"#.to_vec(),
        Reply::ForeignFingerprint => info(CertIdentity::generate().expect("c").fingerprint()),
        Reply::Garbage => b"<html>not LocalSend</html>".to_vec(),
        Reply::Huge => {
            let mut huge = info(identity.fingerprint());
            huge.resize(10 * 1024 * 1024, b' ');
            huge
        }
    };
    let status = match reply {
        Reply::Refused => "500 Internal Server Error",
        _ => "200 OK",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&answer);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn hostile_answers_add_nothing_and_an_honest_one_beside_them_is_found() {
    let mine = tempfile::tempdir().unwrap();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    let honest = fake_host([127, 0, 0, 50], Reply::Honest);
    let targets = vec![
        fake_host([127, 0, 0, 51], Reply::ForeignFingerprint),
        fake_host([127, 0, 0, 52], Reply::Garbage),
        fake_host([127, 0, 0, 53], Reply::Huge),
        honest,
    ];
    let (report, took) = finish(sweeper.sweep(targets).expect("a sweep starts"));
    assert_eq!(report.probed, 4);
    let found: Vec<SocketAddr> = report.found.iter().map(|d| d.addr).collect();
    assert_eq!(
        found,
        vec![honest],
        "only the honest host: {:?}",
        report.found
    );
    let listed: Vec<SocketAddr> = sweeper.devices().iter().map(|d| d.addr).collect();
    assert_eq!(listed, vec![honest]);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_thousand_devices_answering_cannot_grow_the_table_without_bound() {
    let mine = tempfile::tempdir().unwrap();
    let sweeper = server_on([127, 0, 0, 1], mine.path(), "Sweeper");
    let flood = fake_host([127, 0, 0, 60], Reply::NewDeviceEachTime);
    // One address asked a thousand times: a new certificate (a new device) each time.
    let (report, _) = finish(sweeper.sweep(vec![flood; 1000]).expect("a sweep starts"));
    assert_eq!(report.probed, 1000);
    assert!(
        report.found.len() > 300,
        "the flood was heard: {}",
        report.found.len()
    );
    let listed = sweeper.devices().len();
    assert!(listed <= 256, "the device table is bounded: {listed}");
    assert!(listed >= 200, "and still holds the newest: {listed}");
}

#[test]
fn ferry_peers_wait_lists_a_device_found_by_the_sweep() {
    let theirs = tempfile::tempdir().unwrap();
    let device = server_on([127, 0, 0, 18], theirs.path(), "Swept phone");
    // (3 s: a sweep's TLS handshake in a debug build under a loaded test run took over 1.)
    let out = crate::util::ferry()
        .args(["peers", "--wait", "3", "--localsend-sweep-host"])
        .arg(device.local_addr().to_string())
        .args(["--localsend-sweep-host", "127.0.0.19:9"])
        .output()
        .expect("ferry peers runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("Swept phone  "))
        .unwrap_or_else(|| panic!("the swept device is listed: {text}"));
    assert!(line.contains(&device.local_addr().to_string()), "{line}");
    assert!(
        line.contains("localsend") && line.contains("sweep"),
        "{line}"
    );
    assert!(line.contains(device.fingerprint()), "{line}");

    // --no-localsend-sweep: not asked, not found.
    let out = crate::util::ferry()
        .args([
            "peers",
            "--wait",
            "1",
            "--no-localsend-sweep",
            "--localsend-sweep-host",
        ])
        .arg(device.local_addr().to_string())
        .output()
        .expect("ferry peers runs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Swept phone"));
}

/// Waits until `server` lists a device with `fingerprint` (upper case).
fn wait_listed(server: &LocalSendServer, fingerprint: &str, what: &str) {
    let deadline = Instant::now() + SWEEP_DEADLINE;
    while !server
        .devices()
        .iter()
        .any(|d| d.fingerprint.eq_ignore_ascii_case(fingerprint))
    {
        assert!(Instant::now() < deadline, "{what} was never listed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn devices_proven_by_a_sweep_a_register_or_an_answer_outlast_a_flood_of_claims() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dirs[0].path().to_path_buf(), "Hearer", identity);
    config.bind = IpAddr::from([127, 0, 0, 61]);
    config.port = 0;
    config.policy = AcceptPolicy::TrustedOnly;
    config.fsync = false;
    config.multicast = Some(crate::localsend::loopback_multicast());
    let hearer = LocalSendServer::start(config, event_channel(None).0).expect("starts");
    let udp_to_hearer = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));

    // Proven by the sweep: it answered over TLS with its certificate's fingerprint.
    let swept = server_on([127, 0, 0, 62], dirs[1].path(), "Swept");
    finish(
        hearer
            .sweep(vec![swept.local_addr()])
            .expect("a sweep starts"),
    );
    wait_listed(&hearer, swept.fingerprint(), "the swept device");
    // Proven by its register: a client certificate with the fingerprint it claims.
    let registering = CertIdentity::generate().expect("certificate");
    let registering_fingerprint = registering.fingerprint().to_owned();
    LocalSendSender::new(registering, "Registering")
        .probe(hearer.local_addr(), Duration::from_secs(5))
        .expect("the hearer answers");
    wait_listed(&hearer, &registering_fingerprint, "the registering device");
    // Proven by the answer to its announcement: a register pinned to its fingerprint.
    let announcer = server_on([127, 0, 0, 63], dirs[2].path(), "Announcer");
    let announcement = json!({"alias": "Announcer", "version": "2.1", "deviceType": "headless",
        "fingerprint": announcer.fingerprint(), "port": announcer.local_addr().port(),
        "protocol": "https", "announce": true});
    let from_announcer = UdpSocket::bind("127.0.0.63:0").expect("udp");
    from_announcer
        .send_to(announcement.to_string().as_bytes(), udp_to_hearer)
        .expect("send");
    let deadline = Instant::now() + SWEEP_DEADLINE;
    while !hearer
        .devices()
        .iter()
        .any(|d| d.fingerprint == announcer.fingerprint() && d.how.contains(&"answer"))
    {
        assert!(
            Instant::now() < deadline,
            "the announcement was never answered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // More fresh claims than the table holds, in batches so none is dropped unheard.
    let flooder = UdpSocket::bind("127.0.0.64:0").expect("udp");
    for batch in 0..10 {
        let mut last = String::new();
        for i in 0..32 {
            last = format!("FAKE-{batch}-{i}");
            let claim = json!({"alias": "Fake", "version": "2.1", "deviceType": "mobile",
                "fingerprint": last, "port": 53317, "protocol": "https", "announce": false});
            flooder
                .send_to(claim.to_string().as_bytes(), udp_to_hearer)
                .expect("send");
        }
        wait_listed(&hearer, &last, "a claim of the flood");
    }
    let listed = hearer.devices();
    assert_eq!(listed.len(), 256, "the table is full");
    for (fingerprint, what) in [
        (swept.fingerprint(), "swept"),
        (registering_fingerprint.as_str(), "registering"),
        (announcer.fingerprint(), "announcer"),
    ] {
        assert!(
            listed
                .iter()
                .any(|d| d.fingerprint.eq_ignore_ascii_case(fingerprint)),
            "the {what} device was pushed out by claims"
        );
    }
}

#[test]
fn a_listed_device_that_answers_the_sweep_with_an_error_a_bad_body_or_late_is_kept() {
    let mine = tempfile::tempdir().unwrap();
    let sweep = SweepSettings {
        host_timeout: Duration::from_millis(500),
        recheck_timeout: Duration::from_millis(1000),
        ..quick_sweep()
    };
    let sweeper = server_sweeping([127, 0, 0, 1], mine.path(), "Sweeper", sweep);
    // Each is found by a first sweep, then shows its certificate but gives no register
    // body, or none in time: it is there, only busy or odd.
    let kept = vec![
        fake_host([127, 0, 0, 70], Reply::RefusedAfterFirst),
        fake_host([127, 0, 0, 71], Reply::GarbageAfterFirst),
        fake_host([127, 0, 0, 73], Reply::LateAfterFirst),
    ];
    // Another device holds this address now: its error says nothing of the one listed.
    let taken = fake_host([127, 0, 0, 72], Reply::StrangerRefusingAfterFirst);
    let mut targets = kept.clone();
    targets.push(taken);
    let (report, _) = finish(sweeper.sweep(targets.clone()).expect("a sweep starts"));
    assert_eq!(report.found.len(), 4, "{:?}", report.found);

    let (report, _) = finish(sweeper.sweep(targets).expect("a sweep starts"));
    assert!(
        report.found.is_empty(),
        "no register body: {:?}",
        report.found
    );
    let mut listed: Vec<SocketAddr> = sweeper.devices().iter().map(|d| d.addr).collect();
    listed.sort();
    assert_eq!(
        listed, kept,
        "the devices that answered are kept, the one whose address another holds is not"
    );
}
