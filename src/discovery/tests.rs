//! Discovery on loopback: two instances in one process, multicast joined on 127.0.0.1 (with
//! IP_MULTICAST_IF) and broadcast to 127.255.255.255, each on a discovery port picked for the
//! test so parallel tests never hear each other.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn config(port: u16, id_byte: char, name: &str, tcp_port: u16) -> Config {
    let mut config = Config::new(Announce {
        id: id_byte.to_string().repeat(32),
        name: name.into(),
        fingerprint: "one two three four five six".into(),
        tcp_port,
        udp_port: 0,
    });
    config.port = port;
    // Loopback only: tests never send beacons to a real network.
    config.choice = Choice {
        loopback: true,
        chosen: vec!["lo".into()],
        only_chosen: true,
        only_addr: None,
    };
    // The beacon tests hear beacons only; mDNS has tests of its own (below).
    config.mdns = false;
    config
}

/// DNS-SD only: the beacon path off, mDNS on a port picked for the test.
fn mdns_config(mdns_port: u16, id_byte: char, name: &str, tcp_port: u16) -> Config {
    let mut config = config(free_udp_port(), id_byte, name, tcp_port);
    config.beacons = false;
    config.mdns = true;
    config.mdns_port = mdns_port;
    config
}

/// Polls `discovery` until `done` holds for its devices; panics with them at the deadline.
fn wait_devices(discovery: &Discovery, mut done: impl FnMut(&[Device]) -> bool) -> Vec<Device> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let devices = discovery.devices();
        if done(&devices) {
            return devices;
        }
        assert!(Instant::now() < deadline, "deadline passed: {devices:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_lo() -> bool {
    interfaces::list(&Choice {
        loopback: true,
        ..Choice::default()
    })
    .map(|all| all.iter().any(|(i, _)| i.name == "lo"))
    .unwrap_or(false)
}

#[test]
fn two_devices_find_each_other_and_become_ready_after_the_port_check() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let port = free_udp_port();
    let a_tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b_tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let a_port = a_tcp.local_addr().unwrap().port();
    let b_port = b_tcp.local_addr().unwrap().port();
    let a = Discovery::start(config(port, 'a', "alpha", a_port)).unwrap();
    let b = Discovery::start(config(port, 'b', "beta", b_port)).unwrap();

    // Found by beacon (A's own burst) and possibly first by A's unicast answer to B's query.
    let seen = wait_devices(&b, |d| {
        d.iter()
            .any(|d| d.state == State::Ready && d.paths.contains(&Path::Beacon))
    });
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].name, "alpha");
    assert_eq!(
        seen[0].addr,
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, a_port)))
    );
    assert!(seen[0].paths.contains(&Path::Beacon), "{seen:#?}");
    assert!(!seen[0].trusted);
    wait_devices(&a, |d| {
        d.iter()
            .any(|d| d.name == "beta" && d.state == State::Ready)
    });

    // Our own beacon comes back on lo by both multicast and broadcast.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let heard = a.heard();
        let lo_own: Vec<SentTo> = heard
            .own
            .iter()
            .filter(|(i, _)| i == "lo")
            .map(|(_, s)| *s)
            .collect();
        if lo_own.contains(&SentTo::Multicast) && lo_own.contains(&SentTo::Broadcast) {
            assert!(
                heard.others.iter().any(|(i, _, n)| i == "lo" && *n > 0),
                "{heard:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{heard:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_goodbye_removes_the_device_at_once() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let port = free_udp_port();
    let a = Discovery::start(config(port, 'a', "alpha", 1)).unwrap();
    let b = Discovery::start(config(port, 'b', "beta", 2)).unwrap();
    wait_devices(&b, |d| d.iter().any(|d| d.name == "alpha"));
    let stopped = Instant::now();
    a.stop();
    wait_devices(&b, |d| d.is_empty());
    // Far sooner than the 60 s a silent device takes to go.
    assert!(stopped.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_silent_port_is_reported_and_browsers_are_not_listed() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let port = free_udp_port();
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Discovery::start(config(port, 'a', "alpha", closed)).unwrap();
    let browser = Discovery::start(config(port, 'c', "browser", 0)).unwrap();
    let seen = wait_devices(&browser, |d| {
        d.iter().any(|d| d.state == State::PortSilent(closed))
    });
    assert_eq!(
        seen[0].state.to_string(),
        format!("seen, but port {closed} does not answer")
    );
    // The browser announced itself (queries) but has no port: it is not a device to list.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert!(a.devices().is_empty(), "{:#?}", a.devices());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hostile_datagrams_are_ignored_and_discovery_goes_on() {
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let port = free_udp_port();
    let b = Discovery::start(config(port, 'b', "beta", 2)).unwrap();
    let attacker = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let garbage: [&[u8]; 5] = [
        b"",
        b"\xff\xfe\x00",
        br#"{"ferry_beacon":1}"#,
        br#"{"ferry_beacon":1,"id":"zz","name":"x","fingerprint":"","os":"","tcp_port":1,"udp_port":0}"#,
        &[b'{'; 4000],
    ];
    for datagram in garbage {
        attacker.send_to(datagram, target).unwrap();
    }
    // A made-up device by unicast is listed as found by probe: the table takes all paths.
    let fake = Beacon::hello(&"f".repeat(32), "fake", "", 9, 0);
    attacker.send_to(&fake.encode().unwrap(), target).unwrap();
    let seen = wait_devices(&b, |d| d.iter().any(|d| d.name == "fake"));
    assert!(seen[0].paths.contains(&Path::Probe), "{seen:#?}");
}

/// A trusted device known only by the IP its key was proven at (it only ever sent, from
/// `ferry send`: no port): probed there by unicast, as on a network that drops multicast,
/// and listed with no address (nothing may be sent to a guessed port).
#[test]
fn a_trusted_device_known_by_its_ip_alone_is_probed_there_and_listed_with_no_address() {
    let port = free_udp_port();
    // Bound to that one address: multicast and broadcast beacons do not reach it, only a
    // unicast probe sent to it (reuse: discovery binds the port on every address).
    let laptop_ip = Ipv4Addr::new(127, 0, 0, 77);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from((laptop_ip, port)).into())
        .unwrap();
    let laptop: UdpSocket = socket.into();
    laptop.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut config = config(port, 'a', "alpha", 1);
    config.trusted = vec![Known {
        id: "l".repeat(32),
        name: "laptop".into(),
        fingerprint: "six words of its key here".into(),
        last_addr: None,
        last_ip: Some(laptop_ip.into()),
    }];
    let a = Discovery::start(config).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = laptop.recv_from(&mut buf).expect("no probe reached the IP");
    let probe = Beacon::decode(&buf[..len]).unwrap();
    assert_eq!(probe.id, "a".repeat(32));
    let listed = a.devices();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!((listed[0].name.as_str(), listed[0].addr), ("laptop", None));
    assert!(listed[0].trusted);
}

#[test]
fn mdns_alone_finds_a_device_and_its_goodbye_removes_it() {
    // The mDNS daemon joins its group on every interface before it is told which to use,
    // so this test runs in a network namespace of its own, where only loopback exists:
    // nothing of it ever reaches a real network.
    const INSIDE: &str = "FERRY_TEST_IN_OWN_NETNS";
    if std::env::var_os(INSIDE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let run = std::process::Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(exe)
            .args([
                "--exact",
                "discovery::tests::mdns_alone_finds_a_device_and_its_goodbye_removes_it",
                "--test-threads=1",
            ])
            .env(INSIDE, "1")
            .output();
        match run {
            Ok(out) if out.status.success() => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(stdout.contains("1 passed"), "{stdout}");
            }
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("unshare failed") => {
                // Not root (or no namespaces): nothing CI installs would help.
                eprintln!("SKIPPED: cannot make a network namespace for the mDNS test");
            }
            Ok(out) => panic!(
                "the mDNS test in its own namespace failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("SKIPPED: cannot run unshare: {e}"),
        }
        return;
    }
    if !has_lo() {
        eprintln!("SKIPPED: no loopback interface named lo");
        return;
    }
    let mdns_port = free_udp_port();
    let a_tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let a_port = a_tcp.local_addr().unwrap().port();
    let a = Discovery::start(mdns_config(mdns_port, 'a', "alpha.one", a_port)).unwrap();
    let b = Discovery::start(mdns_config(mdns_port, 'b', "beta", 0)).unwrap();

    let seen = wait_devices(&b, |d| d.iter().any(|d| d.state == State::Ready));
    assert_eq!(seen.len(), 1, "{seen:#?}");
    // The name comes back whole (a dot in it is escaped in the instance label).
    assert_eq!(seen[0].name, "alpha.one");
    assert_eq!(seen[0].id, "a".repeat(32));
    assert_eq!(
        seen[0].addr,
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, a_port)))
    );
    assert_eq!(
        seen[0].paths.iter().copied().collect::<Vec<_>>(),
        [Path::Mdns],
        "found by mDNS alone"
    );
    let heard = b.heard();
    assert_eq!(
        heard.others_mdns,
        [("lo".to_owned(), heard.others_mdns[0].1)]
    );
    assert!(heard.others.is_empty(), "no beacons: {heard:?}");

    // Unregistering sends the goodbye: gone long before the record's TTL.
    let stopped = Instant::now();
    a.stop();
    wait_devices(&b, |d| d.is_empty());
    assert!(stopped.elapsed() < Duration::from_secs(5));
}
