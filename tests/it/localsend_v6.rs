//! LocalSend over IPv6 (issue 16): LocalSend's newer core announces on `ff12::fd3a:e420`
//! too and registers back to the announcer's IPv6 address. On loopback (`::1`, where
//! multicast cannot go) these tests check what can be checked there: the receiver's IPv6
//! listener beside its IPv4 one, an IPv6 announcement datagram answered with a pinned
//! `POST /register` to its IPv6 address, one device for both families, hostile datagrams.
//! Multicast itself runs between two network namespaces joined by a veth pair with IPv6
//! alone (the real `ferry` binary in each), skipped with `SKIPPED:` where namespaces or
//! IPv6 are not to be had.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, event_channel};
use ferry::localsend::{
    CertIdentity, LOCALSEND_GROUP, LOCALSEND_GROUP_V6, LocalSendConfig, LocalSendSender,
    LocalSendServer, LocalSendTarget, MulticastConfig,
};
use ferry::transfer::{AcceptPolicy, FileOutcome, OutgoingFile};
use serde_json::json;

use crate::util::{
    ChildGuard, have_ip_command, ip, ipv6_link_local_ready, line_channel, skip_or_fail, wait_line,
};

/// Whether `::1` works here; prints the skip line if not (a kernel without IPv6 is not
/// something CI installs).
pub(crate) fn have_ipv6_loopback() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(false, &format!("no IPv6 loopback (::1): {e}"));
            false
        }
    }
}

fn config(dir: &Path, alias: &str) -> LocalSendConfig {
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dir.to_path_buf(), alias, identity);
    config.bind = "127.0.0.1".parse().expect("ip");
    config.bind_v6 = Some("::1".parse().expect("ip"));
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.idle_timeout = Duration::from_secs(5);
    config.fsync = false;
    config
}

fn start(config: LocalSendConfig) -> LocalSendServer {
    LocalSendServer::start(config, event_channel(None).0).expect("LocalSend server starts")
}

/// Discovery on both families on loopback, on a port of its own (nothing joins a group:
/// loopback has no IPv6 multicast, so datagrams are sent straight to the port).
pub(crate) fn loopback_discovery() -> MulticastConfig {
    MulticastConfig {
        group: LOCALSEND_GROUP,
        port: 0,
        interfaces: vec![],
        group_v6: Some(LOCALSEND_GROUP_V6),
        interfaces_v6: vec![],
        hears: None,
        relist: None,
    }
}

fn sender() -> LocalSendSender {
    LocalSendSender::new(CertIdentity::generate().expect("certificate"), "V6 sender")
}

/// Polls `check` every 20 ms until it gives `Some`, or panics with `what` after 10 s.
pub(crate) fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_receiver_takes_register_and_files_over_ipv6_on_the_port_of_its_ipv4_listener() {
    if !have_ipv6_loopback() {
        return;
    }
    let inbox = tempfile::tempdir().expect("tempdir");
    let server = start(config(inbox.path(), "Dual"));
    let v4 = server.local_addr();
    let v6 = server
        .local_addr_v6()
        .expect("an IPv6 listener beside the IPv4 one");
    assert_eq!(
        v6,
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v4.port()))
    );

    // Register over IPv6: the device is recorded at its IPv6 address and answers as itself.
    let sender = sender();
    let answered = sender
        .probe(v6, Duration::from_secs(5))
        .expect("register over IPv6");
    assert_eq!(answered.fingerprint, server.fingerprint());
    assert_eq!(answered.addr, v6);
    let prober = wait_until("the prober in the table", || {
        server
            .devices()
            .into_iter()
            .find(|d| d.alias == "V6 sender")
    });
    assert!(prober.addr.is_ipv6(), "{prober:?}");
    assert_eq!(prober.addr_v6, Some(prober.addr));
    assert_eq!(prober.how, vec!["register"]);

    // A file over IPv6 lands like any other, and IPv4 still works beside it.
    let out = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for (name, addr) in [("over-v6.bin", v6), ("over-v4.bin", v4)] {
        let path = out.path().join(name);
        std::fs::write(&path, name.repeat(1000)).expect("write");
        let target = LocalSendTarget {
            addr,
            fingerprint: server.fingerprint().to_owned(),
            alias: "Dual".into(),
            device_type: "desktop".into(),
            protocol: ferry::localsend::LocalSendProtocol::Https,
        };
        let (sink, _events) = event_channel(None);
        let sent = sender
            .send_files(
                &target,
                &[OutgoingFile::new(path)],
                &sink,
                &CancelToken::new(),
            )
            .expect("sent");
        outcomes.extend(sent);
    }
    assert_eq!(
        outcomes,
        [FileOutcome::SentUnverified, FileOutcome::SentUnverified]
    );
    for name in ["over-v6.bin", "over-v4.bin"] {
        let got = std::fs::read(inbox.path().join(name)).expect("arrived");
        assert_eq!(got, name.repeat(1000).into_bytes());
    }
}

#[test]
fn a_server_bound_to_one_ipv4_address_opens_no_ipv6_listener() {
    let inbox = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(inbox.path(), "Only v4");
    // The default (`::`) is the IPv4 wildcard's partner, not 127.0.0.1's.
    cfg.bind_v6 = Some(std::net::Ipv6Addr::UNSPECIFIED);
    let server = start(cfg);
    assert_eq!(server.local_addr_v6(), None);
}

#[test]
fn an_ipv6_announcement_is_answered_with_a_pinned_register_to_its_ipv6_address() {
    if !have_ipv6_loopback() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The announcer listens on ::1 and on an IPv4 loopback address of its own (answers are
    // budgeted per address), not on 127.0.0.1: a register to a wrong address goes nowhere.
    let mut announcer_cfg = config(dir.path(), "Announcer");
    announcer_cfg.bind = "127.0.0.74".parse().expect("ip");
    let announcer = start(announcer_cfg);
    let announcer_v6 = announcer.local_addr_v6().expect("an IPv6 listener");
    let mut hearer_cfg = config(dir.path(), "Hearer");
    hearer_cfg.multicast = Some(loopback_discovery());
    let hearer = start(hearer_cfg);
    let port = hearer.discovery_port().expect("discovery port");

    let announcement = json!({"alias": "Announcer", "version": "2.2", "deviceModel": null,
        "deviceType": "headless", "fingerprint": announcer.fingerprint(),
        "port": announcer.local_addr().port(), "protocol": "https", "download": false,
        "announce": true});
    let udp = UdpSocket::bind("[::1]:0").expect("udp");
    udp.send_to(announcement.to_string().as_bytes(), ("::1", port))
        .expect("send");

    let registered = wait_until("the hearer's register at the announcer", || {
        announcer
            .devices()
            .into_iter()
            .find(|d| d.alias == "Hearer")
    });
    assert_eq!(registered.fingerprint, hearer.fingerprint());
    assert!(registered.addr.is_ipv6(), "{registered:?}");
    let heard = wait_until("the answer in the hearer's table", || {
        hearer
            .devices()
            .into_iter()
            .find(|d| d.fingerprint == announcer.fingerprint() && d.how.contains(&"answer"))
    });
    assert_eq!(heard.addr, announcer_v6);
    assert_eq!(heard.addr_v6, Some(announcer_v6));
    assert!(heard.how.contains(&"multicast"), "{:?}", heard.how);

    // Proven over IPv6, it announces over IPv4 too, at once (as a device on both families
    // does when it starts): that claim alone cannot add an address to a proven device, so
    // it is answered at its IPv4 address as well, and that answer lists it there.
    let udp4 = UdpSocket::bind("127.0.0.74:0").expect("udp");
    udp4.send_to(announcement.to_string().as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let heard = wait_until("the announcer listed at its IPv4 address", || {
        hearer
            .devices()
            .into_iter()
            .find(|d| d.fingerprint == announcer.fingerprint() && d.addr.is_ipv4())
    });
    assert_eq!(heard.addr, announcer.local_addr());
    assert_eq!(heard.addr_v6, Some(announcer_v6));
    assert!(heard.proven, "{heard:?}");
}

#[test]
fn a_device_announced_on_both_families_is_one_device_and_hostile_datagrams_are_dropped() {
    if !have_ipv6_loopback() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), "Hearer");
    cfg.multicast = Some(loopback_discovery());
    let hearer = start(cfg);
    let port = hearer.discovery_port().expect("discovery port");
    let udp6 = UdpSocket::bind("[::1]:0").expect("udp");
    let udp4 = UdpSocket::bind("127.0.0.1:0").expect("udp");

    // Hostile first, over IPv6: not JSON, a near-maximal datagram, a fingerprint too long
    // to be one, our own fingerprint (a loop), JSON of the wrong shape.
    let huge = vec![b'{'; 65_000];
    let too_long = json!({"alias": "Long", "fingerprint": "A".repeat(500), "port": 1,
        "announce": false});
    let ours = json!({"alias": "Me", "fingerprint": hearer.fingerprint(), "port": 1,
        "announce": true});
    for datagram in [
        b"not json".to_vec(),
        huge,
        too_long.to_string().into_bytes(),
        ours.to_string().into_bytes(),
        b"[1,2,3]".to_vec(),
    ] {
        udp6.send_to(&datagram, ("::1", port)).expect("send");
    }
    // The same phone on both families (`announce: false`: nothing to answer).
    let phone = json!({"alias": "Phone", "version": "2.2", "deviceType": "mobile",
        "fingerprint": "0123ABCD", "port": 53317, "protocol": "https", "download": false,
        "announce": false});
    udp6.send_to(phone.to_string().as_bytes(), ("::1", port))
        .expect("send");
    let devices = wait_until("the phone heard over IPv6", || {
        let devices = hearer.devices();
        devices
            .iter()
            .any(|d| d.alias == "Phone")
            .then_some(devices)
    });
    assert_eq!(devices.len(), 1, "only the phone: {devices:?}");
    assert_eq!(
        devices[0].addr,
        "[::1]:53317".parse::<SocketAddr>().expect("addr")
    );
    udp4.send_to(phone.to_string().as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let phone = wait_until("the phone heard over IPv4 too", || {
        hearer.devices().into_iter().find(|d| d.addr.is_ipv4())
    });
    let devices = hearer.devices();
    assert_eq!(
        devices.len(),
        1,
        "one device for both families: {devices:?}"
    );
    assert_eq!(phone.fingerprint, "0123ABCD");
    assert_eq!(
        phone.addr,
        "127.0.0.1:53317".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        phone.addr_v6,
        Some("[::1]:53317".parse::<SocketAddr>().expect("addr"))
    );
}

// --- Multicast between two network namespaces over IPv6 alone ---------------------------

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair (`eth0` in each) with no IPv4 address at all: only
/// IPv6 link-local addresses. Deleted in Drop.
struct Pair {
    namespaces: Vec<String>,
    config: tempfile::TempDir,
}

impl Pair {
    /// The pair, or `None` with a skip line where namespaces or IPv6 cannot be had.
    fn new() -> Option<Pair> {
        if !have_ip_command() {
            return None;
        }
        let tag = format!(
            "lsv6-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut pair = Pair {
            namespaces: Vec::new(),
            config: tempfile::tempdir().expect("tempdir"),
        };
        for side in ["a", "b"] {
            let ns = format!("{tag}-{side}");
            if let Err(e) = ip(&["netns", "add", &ns]) {
                // Not root, or a sandbox that refuses namespaces: nothing CI installs.
                skip_or_fail(false, &format!("cannot create network namespaces: {e}"));
                return None;
            }
            pair.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]).expect("lo up");
        }
        let (a, b) = (pair.namespaces[0].clone(), pair.namespaces[1].clone());
        ip(&[
            "link", "add", "eth0", "netns", &a, "type", "veth", "peer", "name", "eth0", "netns", &b,
        ])
        .expect("veth pair");
        for ns in [&a, &b] {
            ip(&["-n", ns, "link", "set", "eth0", "up"]).expect("eth0 up");
        }
        for ns in [&a, &b] {
            if !ipv6_link_local_ready(ns) {
                return None;
            }
        }
        Some(pair)
    }

    fn ferry(&self, ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ferry")])
            .env_remove("FERRY_ONLY_INTERFACE")
            .env("XDG_CONFIG_HOME", self.config.path().join(ns))
            .env("RUST_LOG", "info");
        cmd
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[test]
fn over_ipv6_alone_a_running_localsend_receiver_registers_with_one_that_announces() {
    let Some(pair) = Pair::new() else {
        return;
    };
    let (a, b) = (pair.namespaces[0].clone(), pair.namespaces[1].clone());
    let dir = tempfile::tempdir().expect("tempdir");
    // alpha: `ferry serve` with LocalSend on its default port; its own start-up
    // announcements go out before anyone listens.
    let mut child = pair
        .ferry(&a)
        .args(["serve", "--port", "8080", "--name", "alpha", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry serve");
    let lines = line_channel(child.stdout.take().expect("stdout"));
    let _alpha = ChildGuard(child);
    let on = wait_line(&lines, "LocalSend receiving is on");
    assert!(on.contains("and [::]:53317"), "an IPv6 listener too: {on}");

    // beta looks: it announces on the IPv6 group (there is no IPv4 here), alpha hears it
    // and registers over HTTPS at beta's link-local address with its scope.
    let out = pair
        .ferry(&b)
        .args(["peers", "--wait", "3"])
        .output()
        .expect("ferry peers");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("alpha  ") && l.contains("  localsend "))
        .unwrap_or_else(|| panic!("alpha's LocalSend side not found: {text}"));
    // Heard at its link-local address with the interface it came in on, on LocalSend's port.
    assert!(line.starts_with("alpha  [fe80::"), "{line}");
    assert!(line.contains("]:53317  localsend headless  "), "{line}");
    assert!(line.contains("register"), "{line}");
}
