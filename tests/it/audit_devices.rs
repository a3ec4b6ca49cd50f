//! Acceptance audit of the device issues (identity and trust, discovery, desktop habits):
//! the gaps found on acceptance day, each pinned by a test that failed before its fix.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use ferry::discovery::table::{Sighting, Table};
use ferry::discovery::{Ages, Path, State};

/// A beacon that claims a trusted device's id, as anyone on the LAN can send (the id, name
/// and fingerprint are in every beacon the real device broadcasts).
fn claimed(id: &str, name: &str, fingerprint: &str, last: u8) -> Sighting {
    Sighting {
        id: id.into(),
        name: name.into(),
        fingerprint: fingerprint.into(),
        os: "linux".into(),
        ip: IpAddr::V4(Ipv4Addr::new(10, 77, 0, last)),
        scope_id: 0,
        tcp_port: 8080,
        udp_port: 0,
        path: Path::Beacon,
    }
}

/// The window marks a row "trusted" by its device id and pins the upload's key by the row's
/// fingerprint: a beacon that reuses a trusted id with another fingerprint made the row say
/// "trusted" while a click on it pinned no key, so the files went to whoever answered
/// there. The trusted row now keeps the paired name and fingerprint; only the address moves.
#[test]
fn a_beacon_claiming_a_trusted_id_cannot_rename_it_or_change_its_fingerprint() {
    let t0 = Instant::now();
    let mut table = Table::new(Ages::default());
    table.add_trusted(
        "0123456789abcdef0123456789abcdef",
        "desk",
        "apple bread cider drum eagle fox",
        Some("10.77.0.2:8080".parse().unwrap()),
    );
    let check = table.observe(
        claimed(
            "0123456789abcdef0123456789abcdef",
            "bank laptop",
            "zebra yak xray wolf vine urn",
            66,
        ),
        t0,
    );
    // The address is a hint the handshake will test: it may move, and is checked.
    assert_eq!(check, Some("10.77.0.66:8080".parse().unwrap()));
    table.checked(
        "0123456789abcdef0123456789abcdef",
        "10.77.0.66:8080".parse().unwrap(),
        true,
    );
    let devices = table.devices(t0);
    assert_eq!(devices.len(), 1, "{devices:?}");
    let row = &devices[0];
    assert!(row.trusted);
    assert_eq!(row.state, State::Ready);
    assert_eq!(row.name, "desk", "a beacon renamed a trusted device");
    assert_eq!(
        row.fingerprint, "apple bread cider drum eagle fox",
        "a beacon changed the fingerprint a click pins the key by"
    );

    // A device heard first and trusted later shows the paired name and fingerprint too.
    let mut table = Table::new(Ages::default());
    table.observe(claimed("feed", "spoofed", "not the key", 9), t0);
    table.add_trusted("feed", "laptop", "owl plum fig kiwi lime pear", None);
    let row = &table.devices(t0)[0];
    assert_eq!(
        (row.name.as_str(), row.fingerprint.as_str()),
        ("laptop", "owl plum fig kiwi lime pear")
    );
    // Untrusted devices still take what they announce.
    table.observe(claimed("cafe", "printer", "a b c d e f", 10), t0);
    table.observe(claimed("cafe", "scanner", "g h i j k l", 10), t0);
    let names: Vec<_> = table.devices(t0).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["laptop", "scanner"]);
}
