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
    // Read as --to is: no other address for a number, no resolver for a device's name.
    for (probe, says) in [
        ("0177.0.0.1", "is not an IPv4 address"),
        ("客厅", "not an address or a host name"),
    ] {
        let out = ferry()
            .args(["peers", "--wait", "0", "--probe", probe])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{probe}: {stderr}");
        assert!(stderr.contains(says), "{probe}: {stderr}");
    }
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
/// not be sent to or noted at all. Copied from `peers`, it now reaches the device; so does
/// the zone given by the interface's name, as `ping` takes it. Needs
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
    let (ll, index) = (link_local(&h1), interface_index(&h2, "eth0"));
    let to = format!("[{ll}%{index}]:8080");

    let src = tempfile::tempdir().unwrap();
    // `send --to TO` of a file NAME holding TEXT from h2 arrives in alpha's inbox.
    let arrives = |to: &str, name: &str, text: &str| {
        let file = src.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = net
            .ferry(&h2)
            .args(["send", "--to", to, "--no-localsend-sweep"])
            .arg(&file)
            .output()
            .unwrap();
        let words = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "send --to {to}: {words}");
        assert_eq!(
            std::fs::read_to_string(inbox.path().join(name)).unwrap(),
            text
        );
    };
    arrives(&to, "邻居.txt", "over fe80");
    // The same address with the interface's name for its zone, as `ping` takes it.
    arrives(&format!("[{ll}%eth0]:8080"), "邻居2.txt", "over eth0");
    let file = src.path().join("邻居2.txt");
    // An interface h2 does not have is said as such, before anything is sent.
    let out = net
        .ferry(&h2)
        .args([
            "send",
            "--to",
            &format!("[{ll}%eth9]:8080"),
            "--no-localsend-sweep",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"eth9\" in"), "{err}");
    assert!(
        err.contains("is no network interface of this machine"),
        "{err}"
    );
}

/// `ferry note --wait` to a link-local peer listens on every address (a link-local bind needs
/// a scope the notes cannot carry) and took any note from the peer's IP as its reply: a
/// device on another link of this host using the same `fe80::` address (anyone may) answered
/// in the peer's place. The reply must come from the peer's link too. Needs root, `ip` and
/// `python3`.
#[test]
fn note_wait_to_a_link_local_peer_takes_no_reply_from_another_link() {
    use std::io::{BufReader, Write};
    use std::process::{Command, Stdio};

    use crate::netns::{Net, can_make_namespaces};
    use crate::util::{ChildGuard, ip, ipv6_link_local_ready, line_channel, wait_line};
    if !can_make_namespaces() {
        return;
    }
    let mut net = Net::new().expect("network namespaces");
    let peer = net.host("h1", 1).unwrap();
    let me = net.host("h2", 2).unwrap();
    let other = net.host("h3", 3).unwrap();
    if !ipv6_link_local_ready(&peer) || !ipv6_link_local_ready(&me) {
        return;
    }
    // A second link, between this host and `other` alone.
    ip(&[
        "link", "add", "eth1", "netns", &me, "type", "veth", "peer", "name", "eth1", "netns",
        &other,
    ])
    .unwrap();
    let ll = link_local(&peer);
    // `other` takes the peer's own address on the second link.
    for (ns, address) in [(&me, "fe80::2:1"), (&other, ll.as_str())] {
        let cidr = format!("{address}/64");
        ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth1", "nodad"]).unwrap();
        ip(&["-n", ns, "link", "set", "eth1", "up"]).unwrap();
    }

    // The peer: prints the port the note came from, answers once told to.
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
        s.bind(('::',9999))\n\
        print('ready',flush=True)\n\
        d,a=s.recvfrom(2048)\n\
        print(a[1],flush=True)\n\
        sys.stdin.readline()\n\
        s.sendto(b'pong',a)\n";
    let mut responder = Command::new("ip")
        .args(["netns", "exec", &peer, "python3", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tell_peer = responder.stdin.take();
    let heard = line_channel(responder.stdout.take().unwrap());
    let _responder = ChildGuard(responder);
    wait_line(&heard, "ready");
    let to = format!("[{ll}%{}]:9999", interface_index(&me, "eth0"));
    let mut note = net
        .ferry(&me)
        .args(["note", "--to", &to, "--wait", "10", "ping"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let note_out = note.stdout.take().unwrap();
    let note_err = line_channel(note.stderr.take().unwrap());
    let note = ChildGuard(note);
    let Ok(line) = heard.recv_timeout(std::time::Duration::from_secs(10)) else {
        let said: Vec<String> = note_err.try_iter().collect();
        panic!("the peer heard no note to {to}: {said:#?}");
    };
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("port {line:?}"));

    // From the peer's address, on the other link.
    let forge = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.bind(('{ll}',0,0,{x}))\n\
         s.sendto(b'forged',('fe80::2:1',{port},0,{x}))\n",
        x = interface_index(&other, "eth1")
    );
    let status = Command::new("ip")
        .args(["netns", "exec", &other, "python3", "-c", &forge])
        .status()
        .unwrap();
    assert!(status.success());
    // Taken as the reply, it ends `note` at once; ignored, it is said on stderr.
    wait_line(&note_err, "ignored a note from [fe80::");
    writeln!(tell_peer.as_mut().unwrap(), "go").unwrap();
    drop(tell_peer.take());
    let mut note = note;
    let status = note.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(note_out), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains(": pong"), "{out}");
    assert!(!out.contains("forged"), "{out}");
}

/// What `ip ARGS` prints.
fn ip_shows(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv6 link-local address of `eth0` in `ns`, without its prefix length.
fn link_local(ns: &str) -> String {
    let addr = ip_shows(&[
        "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
    ]);
    addr.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address in {addr:?}"))
        .to_owned()
}

/// The number of interface `dev` in `ns` (what a link-local address's scope names).
fn interface_index(ns: &str, dev: &str) -> u32 {
    let link = ip_shows(&["-n", ns, "-o", "link", "show", dev]);
    let index = link.split(':').next().unwrap_or_default().trim();
    index
        .parse()
        .unwrap_or_else(|_| panic!("no index in {link:?}"))
}

/// Whatever typed the destination (the window's field, a program using the library), a
/// number the resolver would read as another address is refused before any connect: the
/// engine's own check, not only the CLI's. `0177.0.0.1` is 127.0.0.1 to the resolver, where a
/// real server listens here and would otherwise get the file.
#[test]
fn the_engine_refuses_a_number_the_resolver_reads_as_another_address() {
    use ferry::events::{CancelToken, event_channel};
    use ferry::transfer::{OutgoingFile, SendOptions, send_files};
    let inbox = tempfile::tempdir().unwrap();
    let (server, _events) = crate::util::start_server(inbox.path());
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), b"not for 0177").unwrap();
    let file = OutgoingFile::new(src.path().join("a.txt"));
    let to = format!("0177.0.0.1:{}", server.local_addr().port());
    let (sink, _sent) = event_channel(None);
    let result = send_files(&SendOptions::new(to), &[file], &sink, &CancelToken::new());
    let err = result.expect_err("sent to 0177.0.0.1");
    assert!(err.to_string().contains("is not an IPv4 address"), "{err}");
    server.stop();
    assert_eq!(std::fs::read_dir(inbox.path()).unwrap().count(), 0);
}
