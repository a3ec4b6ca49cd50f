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
    // Without a port, a dotted one is still no address, and said so (`send` also looks for a
    // device of that name first); nothing goes to 127.0.0.1:8080.
    let quick = ["--localsend-wait", "1", "--no-localsend-sweep"];
    for command in ["note", "send"] {
        let last = if command == "note" { "hi" } else { file };
        let out = ferry()
            .args([command, "--to", "0177.0.0.1"])
            .args(quick)
            .arg(last)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} --to 0177.0.0.1: {stderr}");
        assert!(
            stderr.contains("\"0177.0.0.1\" is not an IPv4 address"),
            "{command}: {stderr}"
        );
    }
}

/// `客厅.lan` is a host name (an `/etc/hosts` line, an mDNS host with a UTF-8 name, an IDN
/// domain): a word with dots between labels of letters is given to the resolver first, as
/// `desk.lan` is, so a device that merely announces that name on the LAN does not get the
/// files meant for the host. It was read as a device's name only, and a stranger calling
/// itself `客厅.lan` won over the host the hosts file names. Needs root and `ip`.
#[test]
fn a_dotted_name_in_chinese_is_a_host_before_a_device_announcing_it() {
    use crate::netns::{Net, can_make_namespaces, stdout};
    if !can_make_namespaces() {
        return;
    }
    let mut net = Net::new().expect("network namespaces");
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let h3 = net.host("h3", 3).unwrap();
    net.etc_file(&h2, "hosts", "127.0.0.1 localhost\n10.77.0.1 客厅.lan\n");
    // A name server in h2's own namespace where nothing listens: refused at once.
    net.etc_file(
        &h2,
        "resolv.conf",
        "nameserver 10.77.0.2\noptions timeout:1 attempts:1\n",
    );
    let (host, stranger) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _host = net.serve(&h1, "desk", host.path());
    let _stranger = net.serve(&h3, "客厅.lan", stranger.path());
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("名单.txt");
    std::fs::write(&file, "到客厅去").unwrap();
    let out = net
        .ferry(&h2)
        .args(["send", "--to", "客厅.lan", "--no-localsend-sweep"])
        .arg(&file)
        .output()
        .unwrap();
    let words = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{words}");
    assert_eq!(
        crate::util::names_in(host.path()),
        ["名单.txt"],
        "the host 客厅.lan did not get the file: {words}"
    );
    assert!(
        crate::util::names_in(stranger.path()).is_empty(),
        "the device announcing 客厅.lan got the file: {words}"
    );
}

/// `ferry peers --probe HOST` without `--wait` printed the trusted devices and probed
/// nothing, saying nothing about it: it now says that --probe needs --wait.
#[test]
fn peers_probe_without_wait_says_it_needs_wait() {
    let out = ferry()
        .args(["peers", "--probe", "127.0.0.1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--wait"), "{stderr}");
    let out = ferry()
        .args(["peers", "--wait", "0", "--probe", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The handshake binds the hello's body as the receiver read it: a hello, a handshake and
/// records that reach the server five bytes at a time (every frame split across reads)
/// still bind the same bytes on both ends, and the file arrives verified.
#[test]
fn a_secure_send_cut_into_five_byte_pieces_still_authenticates() {
    let inbox = tempfile::tempdir().unwrap();
    let (_serve, addr, _lines) = crate::util::spawn_serve(inbox.path(), &[]);
    let proxy = crate::util::Proxy::to(addr)
        .throttle(5, std::time::Duration::from_millis(1))
        .start();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("碎片.txt");
    std::fs::write(&file, "五个字节一次").unwrap();
    let out = ferry()
        .args(["send", "--to", &proxy.addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": encrypted, device "), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(inbox.path().join("碎片.txt")).unwrap(),
        "五个字节一次",
        "{stderr}"
    );
}

/// `ferry peers` lists a device heard only over IPv6 link-local as `[fe80::...%INDEX]:PORT`,
/// but `--to` refused that very address ("is not a host name"): a link-local peer could
/// not be sent to or noted at all. Copied from `peers`, it now reaches the device. Needs
/// root and `ip`.
#[test]
fn a_link_local_address_as_peers_lists_it_is_a_destination() {
    use crate::netns::{Net, can_make_namespaces, stdout};
    if !can_make_namespaces() {
        return;
    }
    let mut net = Net::new().expect("network namespaces");
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    if !crate::util::ipv6_link_local_ready(&h1) || !crate::util::ipv6_link_local_ready(&h2) {
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let args = [
        "--bind",
        "::",
        "--port",
        "8080",
        "--no-localsend",
        "--name",
        "alpha",
    ];
    let _alpha = net.serve_with(&h1, inbox.path(), &args, &["discovery: announcing"]);
    // Where h2 hears alpha, as `ferry peers` prints it: its link-local address and h2's
    // interface number.
    let show = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addr = show(&[
        "-n", &h1, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
    ]);
    let ll = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address in {addr:?}"))
        .to_owned();
    let link = show(&["-n", &h2, "-o", "link", "show", "eth0"]);
    let index = link.split(':').next().unwrap().trim().to_owned();
    let to = format!("[{ll}%{index}]:8080");

    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("邻居.txt");
    std::fs::write(&file, "over fe80").unwrap();
    let out = net
        .ferry(&h2)
        .args(["send", "--to", &to, "--no-localsend-sweep"])
        .arg(&file)
        .output()
        .unwrap();
    let words = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "send --to {to}: {words}");
    assert_eq!(
        std::fs::read_to_string(inbox.path().join("邻居.txt")).unwrap(),
        "over fe80"
    );
}
