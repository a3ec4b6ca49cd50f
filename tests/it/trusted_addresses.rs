//! Where a trusted device is: only a completed handshake with its pinned key moves it. A
//! device that only ever sent (`ferry send` runs no server, so it says no port) is kept with
//! the IP it sent from, listed and probed by discovery but never sent to; one proven at
//! another IP with no port known loses its old address (a laptop that moved networks), one at
//! the same IP keeps its port, and a stranger claiming its name moves nothing. The real
//! binary on loopback addresses (127.0.0.2 standing for another network's address).

use std::net::IpAddr;

use crate::secure_transfer::{cli_device, file_with, peers_of, send_as, serve_at};
use crate::util::wait_line;

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The laptop's server was at 127.0.0.1 and then at 127.0.0.2 ("another network"), and the
/// desk sent to it at both; each time the laptop then sends from 127.0.0.1 with the CLI.
/// At the same IP its port stays; from another IP its old address is stale and goes, so
/// `send --to laptop` cannot go there. A stranger calling itself "laptop" first moves
/// nothing.
#[test]
fn a_known_device_sending_from_a_new_ip_without_a_port_loses_its_stale_address() {
    let (rx_home, tx_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, desk_dl, laptop_dl) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let desk = cli_device(rx_home.path(), "desk");
    let laptop = cli_device(tx_home.path(), "laptop");
    let file = file_with(src.path(), "a.bin", 1000, 1);
    let address_of_laptop = || {
        let d = desk.trust.by_key(laptop.identity.public_key()).unwrap();
        (d.last_address, d.last_ip)
    };

    // The desk pairs with the laptop's server at 127.0.0.1.
    let (serve, at_home, lines) =
        serve_at(tx_home.path(), "127.0.0.1", laptop_dl.path(), &["--pair"]);
    let line = wait_line(&lines, "pairing code: ");
    let code = line.trim_start_matches("pairing code: ").trim().to_owned();
    let (ok, out) = send_as(rx_home.path(), at_home, &["--code", &code], &file);
    assert!(ok, "{out}");
    drop(serve);
    assert_eq!(
        address_of_laptop(),
        (Some(at_home.to_string()), Some(LOCALHOST))
    );
    // The laptop sends from the same IP, saying no port: its port stays.
    let (_desk_serve, desk_addr, _lines) =
        serve_at(rx_home.path(), "127.0.0.1", desk_dl.path(), &[]);
    let (ok, out) = send_as(tx_home.path(), desk_addr, &[], &file);
    assert!(ok && out.contains("(trusted)"), "{out}");
    assert_eq!(
        address_of_laptop(),
        (Some(at_home.to_string()), Some(LOCALHOST))
    );

    // It moved: its server is at 127.0.0.2 now, and the desk sent to it there.
    let (serve, away, _lines) = serve_at(tx_home.path(), "127.0.0.2", laptop_dl.path(), &[]);
    let (ok, out) = send_as(rx_home.path(), away, &[], &file);
    assert!(ok && out.contains("(trusted)"), "{out}");
    drop(serve);
    let moved = (Some(away.to_string()), Some("127.0.0.2".parse().unwrap()));
    assert_eq!(address_of_laptop(), moved);

    // A stranger calling itself "laptop" sends from 127.0.0.1: refused, and nothing moves.
    let stranger_home = tempfile::tempdir().unwrap();
    cli_device(stranger_home.path(), "laptop");
    let (ok, out) = send_as(stranger_home.path(), desk_addr, &[], &file);
    assert!(!ok, "{out}");
    assert_eq!(
        address_of_laptop(),
        moved,
        "an unproven key moved the device"
    );

    // The laptop itself sends from 127.0.0.1 with the CLI (no port): 127.0.0.2's address
    // is stale.
    let (ok, out) = send_as(tx_home.path(), desk_addr, &[], &file);
    assert!(ok && out.contains("(trusted)"), "{out}");
    assert_eq!(
        address_of_laptop(),
        (None, Some(LOCALHOST)),
        "the old address was kept"
    );
    let peers = peers_of(rx_home.path());
    assert!(!peers.contains("127.0.0.2"), "{peers}");
    assert!(
        peers.contains("laptop  -  trusted  ") && peers.contains("last seen at 127.0.0.1"),
        "{peers}"
    );
}
