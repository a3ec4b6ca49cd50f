//! One address, one device: when an announcement lists a LocalSend device at an address
//! where an HTTPS device was listed, Ferry asks that device there (its certificate pinned)
//! and forgets it if it is gone, so a LocalSend that restarted with encryption off (a new
//! plain-HTTP id) or a new certificate is not shadowed by its old entry, which the window
//! would pick as the destination; a forged claim at an honest device's address removes
//! nothing, since the device answers, and its pinned handshake counts as hearing it (a
//! sweep meanwhile keeps it); a device listed at both IP families loses only the address
//! another device took. Nothing is listed at our own receiver's address, and Ferry's own
//! registers (probes) are made.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ferry::localsend::{CertIdentity, LocalSendDevice, LocalSendProtocol, LocalSendServer};
use serde_json::json;

use crate::localsend::{config, loopback_multicast, peers_probing, start};
use crate::localsend_sweep::{Reply, answer_once, fake_host_noting};

/// A hearer with discovery on loopback, and a device announcing from `ip` (answered at
/// once, pinned: listed as proven).
fn hearer_and_device(
    ip: [u8; 4],
    dirs: &(tempfile::TempDir, tempfile::TempDir),
) -> (LocalSendServer, LocalSendServer, UdpSocket, SocketAddr) {
    let mut cfg = config(dirs.0.path());
    cfg.bind = SocketAddr::from((ip, 0)).ip();
    cfg.alias = "Device".into();
    let (device, _) = start(cfg);
    let mut cfg = config(dirs.1.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    cfg.sweep.recheck_timeout = Duration::from_secs(2);
    let (hearer, _) = start(cfg);
    let discovery = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    let udp = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("udp");
    announce(
        &udp,
        discovery,
        device.fingerprint(),
        device.local_addr().port(),
        "https",
    );
    let listed = wait_listed(&hearer, "the device answered", |list| {
        list.iter()
            .any(|d| d.fingerprint == device.fingerprint() && d.proven)
    });
    assert_eq!(listed.len(), 1, "{listed:?}");
    (hearer, device, udp, discovery)
}

fn announce(udp: &UdpSocket, to: SocketAddr, fingerprint: &str, port: u16, protocol: &str) {
    let announcement = json!({"alias": "Device", "version": "2.1", "deviceType": "desktop",
        "fingerprint": fingerprint, "port": port, "protocol": protocol, "announce": true});
    udp.send_to(announcement.to_string().as_bytes(), to)
        .expect("send");
}

/// The id LocalSend takes when it restarts with encryption off.
const NEW_PLAIN_ID: &str = "d0e5a1c2-new-plain-id";

/// LocalSend restarted with encryption off: same address and port, a fresh random id,
/// plain HTTP (nobody answers HTTPS there any more), announced. Its old id and address.
fn restart_with_encryption_off(
    device: LocalSendServer,
    udp: &UdpSocket,
    discovery: SocketAddr,
) -> (String, SocketAddr) {
    let (old, addr) = (device.fingerprint().to_owned(), device.local_addr());
    drop(device);
    announce(udp, discovery, NEW_PLAIN_ID, addr.port(), "http");
    (old, addr)
}

/// Sweeps `targets` from the hearer (listing those that answer): what it found.
fn sweep(hearer: &LocalSendServer, targets: Vec<SocketAddr>) -> Vec<LocalSendDevice> {
    hearer
        .sweep(targets)
        .expect("a sweep starts")
        .recv_timeout(Duration::from_secs(10))
        .expect("the sweep ends")
        .found
}

/// Polls the hearer's list until `done` holds (10 s at most).
fn wait_listed(
    hearer: &LocalSendServer,
    what: &str,
    done: impl Fn(&[LocalSendDevice]) -> bool,
) -> Vec<LocalSendDevice> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = hearer.devices();
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: never so: {list:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_device_that_restarts_with_encryption_off_is_not_shadowed_by_its_old_entry() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hearer, device, udp, discovery) = hearer_and_device([127, 0, 0, 81], &dirs);
    let (old, addr) = restart_with_encryption_off(device, &udp, discovery);
    let list = wait_listed(&hearer, "the old entry forgotten", |list| {
        !list.iter().any(|d| d.fingerprint == old)
    });
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].fingerprint.eq_ignore_ascii_case(NEW_PLAIN_ID));
    assert_eq!(list[0].protocol, LocalSendProtocol::Http);
    assert_eq!(list[0].addr, addr);
}

#[test]
fn a_forged_claim_at_a_devices_address_removes_nothing_and_the_device_is_asked_there() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hearer, device, udp, discovery) = hearer_and_device([127, 0, 0, 82], &dirs);
    let seen = |list: &[LocalSendDevice]| {
        list.iter()
            .find(|d| d.fingerprint == device.fingerprint())
            .map(|d| d.last_seen)
    };
    let before = seen(&hearer.devices()).expect("listed");
    // A forged claim from its address (a spoofed source), a plain id, not announcing (so
    // it asks for no answer of its own): the device is asked there and answers.
    let claim = json!({"alias": "Device", "version": "2.1", "deviceType": "desktop",
        "fingerprint": "forged-id", "port": device.local_addr().port(), "protocol": "http",
        "announce": false});
    udp.send_to(claim.to_string().as_bytes(), discovery)
        .expect("send");
    let list = wait_listed(&hearer, "the device asked again", |list| {
        seen(list).is_some_and(|at| at > before)
    });
    let kept = list
        .iter()
        .find(|d| d.fingerprint == device.fingerprint())
        .expect("still listed");
    assert!(kept.proven, "{kept:?}");
    assert_eq!(kept.protocol, LocalSendProtocol::Https);
    assert_eq!(kept.addr, device.local_addr());
}

#[test]
fn a_device_that_proves_itself_but_answers_late_is_not_forgotten_for_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    cfg.sweep.recheck_timeout = Duration::from_secs(1);
    let (hearer, _) = start(cfg);
    let discovery = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    // Its first answer (the sweep's) lists it, proven; later ones take the handshake, with
    // its certificate, and then the request, but the answer is late.
    let (busy, ended) = fake_host_noting([127, 0, 0, 89], Reply::LateAfterFirst);
    let found = sweep(&hearer, vec![busy]);
    assert_eq!(found.len(), 1, "{found:?}");
    let fingerprint = found[0].fingerprint.clone();
    assert_eq!(ended.recv_timeout(Duration::from_secs(10)), Ok(0));

    // A forged plain claim at its address: it is asked there, proves who it is, and is
    // only slow to answer. That is no sign it has gone.
    let udp = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 89], 0))).expect("udp");
    announce(&udp, discovery, "forged-id", busy.port(), "http");
    assert_eq!(
        ended.recv_timeout(Duration::from_secs(10)),
        Ok(1),
        "the check connected, and hung up when its time was up"
    );
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        let list = hearer.devices();
        assert!(
            list.iter()
                .any(|d| d.fingerprint == fingerprint && d.addr == busy && d.proven),
            "forgotten: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_claim_that_finds_every_check_slot_taken_leaves_its_check_to_the_next() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hearer, device, udp, discovery) = hearer_and_device([127, 0, 0, 84], &dirs);
    // Four listed devices that prove who they are when asked, then keep the answer until
    // the check gives up: claims at their addresses take every check slot for a while.
    let busy: Vec<_> = (85..=88)
        .map(|ip| fake_host_noting([127, 0, 0, ip], Reply::LateAfterFirst))
        .collect();
    let found = sweep(&hearer, busy.iter().map(|(addr, _)| *addr).collect());
    assert_eq!(found.len(), busy.len(), "{found:?}");
    for (addr, ended) in &busy {
        assert_eq!(ended.recv_timeout(Duration::from_secs(10)), Ok(0));
        let IpAddr::V4(ip) = addr.ip() else {
            unreachable!("bound on IPv4")
        };
        let from = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("udp");
        announce(&from, discovery, "forged-id", addr.port(), "http");
    }

    // LocalSend restarted with encryption off while they are being asked: its first
    // announcement finds no slot free.
    let (old, addr) = restart_with_encryption_off(device, &udp, discovery);
    for (_, ended) in &busy {
        assert_eq!(
            ended.recv_timeout(Duration::from_secs(10)),
            Ok(1),
            "asked, and given up on"
        );
    }
    assert!(
        hearer.devices().iter().any(|d| d.fingerprint == old),
        "not checked yet"
    );
    // Its next announcement (LocalSend makes a few at start) gets the check.
    announce(
        &udp,
        discovery,
        "d0e5a1c2-new-plain-id",
        addr.port(),
        "http",
    );
    wait_listed(&hearer, "the old entry forgotten", |list| {
        !list.iter().any(|d| d.fingerprint == old)
    });
}

/// Accepts the next connection on `listener` (non-blocking) within 10 s.
fn next_connection(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection came");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn a_sweep_running_while_a_check_proves_a_device_there_does_not_forget_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    cfg.sweep.host_timeout = Duration::from_millis(1000);
    cfg.sweep.recheck_timeout = Duration::from_millis(1500);
    let (hearer, _) = start(cfg);
    let discovery = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    // A device whose every connection the test takes in turn.
    let listener = TcpListener::bind("127.0.0.96:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let busy = listener.local_addr().expect("addr");
    let identity = CertIdentity::generate().expect("certificate");
    let report = hearer.sweep(vec![busy]).expect("a sweep starts");
    answer_once(next_connection(&listener), &identity, Reply::Honest);
    let found = report.recv_timeout(Duration::from_secs(10)).expect("ends");
    assert_eq!(found.found.len(), 1, "listed, proven, by a first sweep");

    // A sweep asks it; too busy, it does not even take the handshake.
    let report = hearer.sweep(vec![busy]).expect("a sweep starts");
    let stalled = next_connection(&listener);
    // Meanwhile a claim at its address makes a check there, which completes the handshake
    // with its certificate (the request is then kept unanswered).
    let udp = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 96], 0))).expect("udp");
    announce(&udp, discovery, "forged-id", busy.port(), "http");
    let check = next_connection(&listener);
    let checked = {
        let identity = identity.clone();
        std::thread::spawn(move || answer_once(check, &identity, Reply::Mute))
    };
    // A patient second ask by the sweep, if any, waits in the backlog: stalled too.
    let found = report
        .recv_timeout(Duration::from_secs(10))
        .expect("the sweep ends")
        .found;
    assert!(found.is_empty(), "{found:?}");
    checked.join().expect("the check was answered");
    drop(stalled);
    let list = hearer.devices();
    assert!(
        list.iter().any(|d| d.addr == busy && d.proven),
        "the device that proved itself to the check was forgotten: {list:?}"
    );
}

#[test]
fn a_device_listed_at_both_families_loses_only_the_address_another_device_took() {
    use crate::localsend_v6::{have_ipv6_loopback, loopback_discovery};
    if !have_ipv6_loopback() {
        return;
    }
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The device listens on IPv6 alone now; its IPv4 address went to another device.
    let mut cfg = config(dirs.0.path());
    cfg.bind = "::1".parse().expect("ip");
    cfg.bind_v6 = None;
    cfg.alias = "Device".into();
    let (device, _) = start(cfg);
    let port = device.local_addr().port();
    let mut cfg = config(dirs.1.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_discovery());
    cfg.sweep.recheck_timeout = Duration::from_secs(2);
    let (hearer, _) = start(cfg);
    let udp_port = hearer.discovery_port().expect("port");

    // It was heard over both families.
    let v4 = SocketAddr::from(([127, 0, 0, 97], port));
    let from_v4 = UdpSocket::bind("127.0.0.97:0").expect("udp");
    let to_v4 = SocketAddr::from(([127, 0, 0, 1], udp_port));
    announce(&from_v4, to_v4, device.fingerprint(), port, "https");
    let from_v6 = UdpSocket::bind("[::1]:0").expect("udp");
    let to_v6: SocketAddr = format!("[::1]:{udp_port}").parse().expect("addr");
    announce(&from_v6, to_v6, device.fingerprint(), port, "https");
    let both = wait_listed(&hearer, "listed at both families", |list| {
        list.iter()
            .any(|d| d.fingerprint == device.fingerprint() && d.addr == v4 && d.addr_v6.is_some())
    });
    let v6 = both[0].addr_v6.expect("an IPv6 address");
    assert_eq!(v6, device.local_addr());

    // Another device announces from its IPv4 address: asked there, it does not answer.
    announce(&from_v4, to_v4, NEW_PLAIN_ID, port, "http");
    let list = wait_listed(&hearer, "its IPv4 address forgotten", |list| {
        list.iter()
            .any(|d| d.fingerprint == device.fingerprint() && d.addr != v4)
    });
    let kept = list
        .iter()
        .find(|d| d.fingerprint == device.fingerprint())
        .expect("still listed");
    assert_eq!((kept.addr, kept.addr_v6), (v6, Some(v6)), "{list:?}");
    let plain = list
        .iter()
        .find(|d| d.fingerprint.eq_ignore_ascii_case(NEW_PLAIN_ID))
        .expect("the new device is listed");
    assert_eq!(plain.addr, v4);

    // It goes for good (LocalSend restarted with encryption off), and the new id is heard
    // on IPv6 too: asked at its last address, it is forgotten.
    let old = device.fingerprint().to_owned();
    drop(device);
    announce(&from_v6, to_v6, NEW_PLAIN_ID, port, "http");
    let list = wait_listed(&hearer, "the old entry forgotten", |list| {
        !list.iter().any(|d| d.fingerprint == old)
    });
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].addr_v6, Some(v6), "{list:?}");
}

#[test]
fn a_register_or_announcement_naming_our_own_address_lists_nothing() {
    use ferry::localsend::LocalSendSender;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(loopback_multicast());
    let (hearer, _) = start(cfg);
    let own = hearer.local_addr();
    let discovery = SocketAddr::from(([127, 0, 0, 1], hearer.discovery_port().expect("port")));
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let sender = |alias: &str, port: u16| {
        let mut sender = LocalSendSender::new(CertIdentity::generate().expect("c"), alias);
        sender.port = port;
        sender
    };
    // Another program on this host, with a certificate of its own, says it listens where
    // we do: by a register, and by an announcement.
    sender("Impostor", own.port())
        .probe(own, Duration::from_secs(5))
        .expect("the register is answered");
    let listed = hearer.devices();
    assert!(listed.is_empty(), "listed by its register: {listed:?}");
    announce(&udp, discovery, "impostor-id", own.port(), "https");
    // A device on this host at a port of its own is another device.
    let elsewhere = crate::gui_localsend_pin::free_port([127, 0, 0, 1]);
    let neighbour = sender("Neighbour", elsewhere);
    neighbour
        .probe(own, Duration::from_secs(5))
        .expect("the register is answered");
    let further = std::iter::repeat_with(|| crate::gui_localsend_pin::free_port([127, 0, 0, 1]))
        .find(|port| *port != elsewhere)
        .expect("another port");
    announce(&udp, discovery, "neighbour-id", further, "https");
    // Datagrams are heard in order: the impostor's was heard before this one.
    let list = wait_listed(&hearer, "the neighbour's announcement heard", |list| {
        list.iter()
            .any(|d| d.fingerprint.eq_ignore_ascii_case("neighbour-id"))
    });
    assert!(
        list.iter().all(|d| d.addr != own),
        "a row at our own address: {list:?}"
    );
    let there = SocketAddr::from(([127, 0, 0, 1], elsewhere));
    assert!(
        list.iter()
            .any(|d| d.fingerprint == neighbour.identity.fingerprint() && d.addr == there),
        "{list:?}"
    );
    assert_eq!(list.len(), 2, "{list:?}");
}

#[test]
fn ferrys_probe_registers_with_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.bind = "127.0.0.98".parse().expect("ip");
    cfg.alias = "Probed".into();
    let (device, _) = start(cfg);
    // `ferry peers` looks with a receiver of its own and probes the device: a register,
    // which lists it at the port it tells (LocalSend's when a receiver here holds it, else
    // the lookup's own: which one depends on this machine, see faces.rs for both).
    let out = peers_probing(device.local_addr());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = device.devices();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_ne!(listed[0].addr.port(), 0, "{listed:?}");
}

#[test]
fn a_receiver_on_an_ipv6_socket_that_takes_ipv4_knows_its_ipv4_address_as_its_own() {
    use ferry::localsend::LocalSendSender;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A dual-stack socket (as `--bind ::` makes where the system allows IPv4 on IPv6
    // sockets), here on loopback's IPv4 address only.
    cfg.bind = "::ffff:127.0.0.1".parse().expect("ip");
    cfg.alias = "Hearer".into();
    let (sink, _events) = ferry::events::event_channel(None);
    let Ok(hearer) = LocalSendServer::start(cfg, sink) else {
        return; // a system whose IPv6 sockets take no IPv4
    };
    let own = SocketAddr::from(([127, 0, 0, 1], hearer.local_addr().port()));
    let mut impostor = LocalSendSender::new(CertIdentity::generate().expect("c"), "Impostor");
    impostor.port = own.port();
    impostor
        .probe(own, Duration::from_secs(5))
        .expect("the register over IPv4 is answered");
    let listed = hearer.devices();
    assert!(listed.is_empty(), "listed at our own address: {listed:?}");
}
