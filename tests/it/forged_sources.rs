//! Datagrams whose source address no host can have: a raw socket (root) can claim a
//! multicast or broadcast source for a UDP datagram on loopback (the kernel fills in a real
//! source for `0.0.0.0`; unit tests in `protocol::address`, `discovery::table` and
//! `localsend::devices` cover that and IPv6). Neither Ferry's discovery nor LocalSend's lists
//! a device there, answers it or checks it; a genuine device heard after them is listed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use ferry::protocol::beacon::Beacon;
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

use crate::localsend_v6::wait_until;
use crate::util::skip_or_fail;

/// The forged sources: a multicast group, the limited broadcast address.
const FORGED: [Ipv4Addr; 2] = [Ipv4Addr::new(224, 0, 0, 5), Ipv4Addr::BROADCAST];

/// A raw IPv4 socket that writes its own headers (root only; `None`, said, otherwise).
fn raw_socket() -> Option<Socket> {
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))) {
        Ok(socket) => Some(socket),
        Err(e) => {
            skip_or_fail(false, &format!("no raw socket (needs root): {e}"));
            None
        }
    }
}

/// Sends `payload` in one UDP datagram from `from` (any address) to `to`, headers by hand:
/// the kernel fills in the IP checksum; a UDP checksum of 0 means none (IPv4).
fn send_forged(raw: &Socket, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    let udp_len = u16::try_from(8 + payload.len()).expect("small datagram");
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&(20 + udp_len).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &SocketAddr::V4(to).into())
        .expect("raw send");
}

#[test]
fn ferry_discovery_lists_no_device_at_a_multicast_or_broadcast_source() {
    let Some(raw) = raw_socket() else { return };
    let (discovery, port) = crate::util::loopback_discovery(&"d".repeat(32), "hearer", 2);
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    // Beside those, the broadcast address of the interface discovery uses (lo's here).
    let lo_broadcast = Ipv4Addr::new(127, 255, 255, 255);
    for (i, source) in FORGED.into_iter().chain([lo_broadcast]).enumerate() {
        let id = format!("{i}").repeat(32);
        let beacon = Beacon::hello(&id, &format!("forged-{i}"), "", 9, 0);
        let bytes = beacon.encode().expect("beacon");
        send_forged(&raw, SocketAddrV4::new(source, 40_000), target, &bytes);
    }
    // Then a genuine one from loopback: once it is listed, the forged ones were handled.
    let genuine = Beacon::hello(&"e".repeat(32), "genuine", "", 9, 0);
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("udp")
        .send_to(&genuine.encode().expect("beacon"), target)
        .expect("send");
    let devices = wait_until("the genuine device", || {
        let devices = discovery.devices();
        devices
            .iter()
            .any(|d| d.name == "genuine")
            .then_some(devices)
    });
    assert!(
        devices.iter().all(|d| !d.name.starts_with("forged")),
        "{devices:#?}"
    );
}

#[test]
fn localsend_discovery_lists_no_device_at_a_multicast_or_broadcast_source() {
    let Some(raw) = raw_socket() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::localsend::config(dir.path());
    cfg.alias = "Hearer".into();
    cfg.multicast = Some(crate::localsend::loopback_multicast());
    let (hearer, _events) = crate::localsend::start(cfg);
    let target = SocketAddrV4::new(
        Ipv4Addr::LOCALHOST,
        hearer.discovery_port().expect("discovery port"),
    );
    let announcement = |fingerprint: &str| {
        json!({"alias": fingerprint, "version": "2.1", "deviceType": "desktop",
            "fingerprint": fingerprint, "port": 53317, "protocol": "https", "announce": true})
        .to_string()
    };
    for (i, source) in FORGED.into_iter().enumerate() {
        let text = announcement(&format!("FORGED{i}"));
        send_forged(
            &raw,
            SocketAddrV4::new(source, 53317),
            target,
            text.as_bytes(),
        );
    }
    UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 96), 0))
        .expect("udp")
        .send_to(announcement("GENUINE").as_bytes(), target)
        .expect("send");
    let devices = wait_until("the genuine device", || {
        let devices = hearer.devices();
        devices
            .iter()
            .any(|d| d.fingerprint == "GENUINE")
            .then_some(devices)
    });
    assert!(
        devices.iter().all(|d| !d.fingerprint.starts_with("FORGED")),
        "{devices:#?}"
    );
}
