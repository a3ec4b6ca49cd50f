//! Fresh-eyes review of 2026-11-30's changes: what a user types as `--to` and where it goes.
//! The real binary, real sockets on 127.0.0.1.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use crate::util::ferry;

/// `0177.0.0.1` (meant as 177.0.0.1), `2130706433`, `127.1` and `0x7f000001` are all
/// 127.0.0.1 to the C resolver, which reads them without asking anyone: `ferry note` and
/// `ferry send` sent to this host where the user typed another. Each is refused, saying why,
/// and nothing reaches the sockets on 127.0.0.1.
#[test]
fn numbers_the_resolver_reads_as_another_address_are_refused() {
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    peer.set_nonblocking(true).unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let (udp, tcp) = (
        peer.local_addr().unwrap().port(),
        listener.local_addr().unwrap().port(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"for 177.0.0.1").unwrap();
    let file = file.to_str().unwrap();
    for host in ["0177.0.0.1", "2130706433", "127.1", "0x7f000001"] {
        let to = format!("{host}:{udp}");
        let out = ferry().args(["note", "--to", &to, "hi"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "note --to {to}: {stderr}");
        assert!(stderr.contains("not an IPv4 address"), "{to}: {stderr}");
        // Loopback delivers a datagram before send_to returns, so it would be here already.
        let mut buf = [0u8; 64];
        let got = peer.recv_from(&mut buf).map_err(|e| e.kind());
        assert_eq!(
            got.err(),
            Some(ErrorKind::WouldBlock),
            "note --to {to} arrived"
        );

        let to = format!("{host}:{tcp}");
        let out = ferry()
            .args(["send", "--plain", "--to", &to, file])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "send --to {to}: {stderr}");
        assert!(stderr.contains("not an IPv4 address"), "{to}: {stderr}");
        let got = listener.accept().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            got.err(),
            Some(ErrorKind::WouldBlock),
            "send --to {to} connected"
        );
    }
}
