//! Unit tests of the Devices panel (`devices.rs`): what a LocalSend device's row says, which
//! listed device a destination picks, and favourites.

use super::*;
use crate::app::i18n::Lang;

#[test]
fn a_device_with_encryption_off_has_its_claimed_id_called_no_fingerprint() {
    let mut device = SeenLocalSend {
        alias: "Phone".into(),
        device_type: "mobile".into(),
        fingerprint: "AB12".into(),
        addr: "10.0.0.7:53317".parse().unwrap(),
        addr_v6: None,
        protocol: LocalSendProtocol::Https,
        how: vec!["multicast"],
        proven: false,
        last_seen: std::time::Instant::now(),
    };
    let en = Tr(Lang::En);
    let https = localsend_hover(&device, en);
    assert_eq!(https, "Send to the LocalSend device Phone (AB12)");
    device.protocol = LocalSendProtocol::Http;
    assert_eq!(
        localsend_hover(&device, en),
        "Send to the LocalSend device Phone (encryption off: it claims the id AB12, which \
         no certificate proves)"
    );
    let zh = localsend_hover(&device, Tr(Lang::ZhCn));
    assert!(zh.contains("加密已关闭") && zh.contains("AB12"), "{zh}");
}

#[test]
fn a_plain_http_claim_at_an_https_devices_address_never_makes_it_the_target() {
    let addr: SocketAddr = "10.0.0.7:53317".parse().unwrap();
    let seen = |alias: &str, fingerprint: &str, protocol| SeenLocalSend {
        alias: alias.into(),
        device_type: "mobile".into(),
        fingerprint: fingerprint.into(),
        addr,
        addr_v6: None,
        protocol,
        how: vec!["multicast"],
        proven: false,
        last_seen: std::time::Instant::now(),
    };
    let mut panel = DevicesPanel::new(true, Vec::new(), None, None);
    // Newest first, as the worker sends them: the spoof came last.
    panel.localsend = vec![
        seen("Spoof", "FAKE", LocalSendProtocol::Http),
        seen("Phone", "AB12", LocalSendProtocol::Https),
        seen("Old phone", "CD34", LocalSendProtocol::Https),
    ];
    let dest = addr.to_string();
    let target = panel.localsend_target(&dest).unwrap();
    assert_eq!(
        (target.alias.as_str(), target.protocol),
        ("Phone", LocalSendProtocol::Https)
    );
    assert!(panel.encryption_off(&dest).is_none());
    // A fresh HTTPS claim there does not take the place of one that proved itself.
    panel.localsend[2].proven = true;
    panel
        .localsend
        .insert(0, seen("Fake phone", "EF56", LocalSendProtocol::Https));
    assert_eq!(panel.localsend_target(&dest).unwrap().alias, "Old phone");
    panel.localsend.remove(0);
    // Alone at its address, a plain device is the target (and says encryption is off).
    panel.localsend.truncate(1);
    assert_eq!(panel.localsend_target(&dest).unwrap().alias, "Spoof");
    assert!(panel.encryption_off(&dest).is_some());
}

#[test]
fn favourites_must_be_host_and_port_and_are_kept_once() {
    let mut panel = DevicesPanel::new(true, Vec::new(), None, None);
    for bad in ["", "desk", "desk:", ":8080", "desk:99999", "my desk:80"] {
        panel.add_addr = bad.into();
        assert!(!panel.add_favourite(), "{bad:?}");
        assert!(panel.add_error);
    }
    for good in [
        "10.0.0.2:8080",
        "desk.local:8080",
        "[::1]:8080",
        "10.0.0.2:8080",
    ] {
        panel.add_addr = good.into();
        assert!(panel.add_favourite(), "{good:?}");
    }
    assert_eq!(
        panel.favourites,
        vec!["10.0.0.2:8080", "desk.local:8080", "[::1]:8080"]
    );
    let probe = panel.setup().unwrap().probe;
    assert_eq!(
        probe,
        vec![
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        ]
    );
    panel.enabled = false;
    assert_eq!(panel.setup(), None);
}

#[test]
fn notes_go_to_the_announced_udp_port_when_there_is_one() {
    let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    assert_eq!(pick_device(addr, 0).note_peer, "10.0.0.2:8080");
    assert_eq!(pick_device(addr, 9090).note_peer, "10.0.0.2:9090");
    assert_eq!(pick_device(addr, 9090).dest, "10.0.0.2:8080");
}
