//! Which interfaces discovery goes out on, counted where the packets leave: each test builds
//! its own namespaces (see `netns`), counts with nftables what leaves a host's interfaces
//! while the real `ferry` runs there, and checks that `--only-interface` (and
//! `FERRY_ONLY_INTERFACE`) keep Ferry's beacons, mDNS, LocalSend's multicast and its sweep
//! on the chosen interfaces, and that LocalSend's multicast, like Ferry's beacons, leaves
//! virtual adapters (a VPN, a container bridge) alone unless chosen, and that what comes
//! from a network not chosen (a beacon, a LocalSend announcement, whatever it claims) is
//! neither listed nor answered, and that LocalSend's group follows an address that comes
//! or changes while serving. Needs root, `ip` and
//! `nft`; skips with a line where they are missing.

use crate::netns::{Net, can_make_namespaces, have_nft, stdout};
use crate::util::*;

/// Counts, in namespace `ns`, the UDP and TCP packets that leave by each of `devices`: what
/// Ferry sends. (The kernel's own IGMP and MLD reports are not counted: the mDNS crate
/// joins its group on every interface when it starts, before it is told which to use, and
/// leaves the others at once; no mDNS datagram goes there.)
struct Counters<'a> {
    net: &'a Net,
    ns: String,
    devices: Vec<&'static str>,
}

impl<'a> Counters<'a> {
    fn new(net: &'a Net, ns: &str, devices: &[&'static str]) -> Self {
        let mut rules = String::from("table inet count { ");
        for dev in devices {
            rules.push_str(&format!("counter c_{dev} {{ }} "));
        }
        rules.push_str("chain out { type filter hook output priority 0; policy accept; ");
        for dev in devices {
            // (No set braces: `Net::nft` breaks lines after them.)
            for proto in ["udp", "tcp"] {
                rules.push_str(&format!(
                    "oifname \"{dev}\" meta l4proto {proto} counter name c_{dev}; "
                ));
            }
        }
        rules.push_str("} } ");
        net.nft(ns, &rules);
        Counters {
            net,
            ns: ns.to_owned(),
            devices: devices.to_vec(),
        }
    }

    /// The packets that left by `dev` so far.
    fn packets(&self, dev: &str) -> u64 {
        assert!(self.devices.contains(&dev));
        self.net.counted(&self.ns, "count", &format!("c_{dev}"))
    }

    /// Zeroes the counters.
    fn reset(&self) {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "nft", "reset", "counters", "table", "inet", "count",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// An interface `name` in `ns` whose packets go nowhere (a veth whose peer stays in `ns`).
fn veth(ns: &str, name: &str) {
    let peer = format!("{name}p");
    ip(&[
        "-n", ns, "link", "add", name, "type", "veth", "peer", "name", &peer,
    ])
    .unwrap();
    ip(&["-n", ns, "link", "set", &peer, "up"]).unwrap();
}

/// The net, or `None` after a skip line where namespaces or `nft` are missing.
fn net_with_nft() -> Option<Net> {
    (can_make_namespaces() && have_nft()).then(|| Net::new().expect("network namespaces"))
}

#[test]
fn a_lookup_told_only_loopback_sends_nothing_on_the_lan() {
    let Some(mut net) = net_with_nft() else {
        return;
    };
    let h1 = net.host("h1", 1).unwrap();
    let counters = Counters::new(&net, &h1, &["eth0"]);
    // Without a choice, a lookup goes out on eth0: Ferry's beacons and mDNS, LocalSend's
    // multicast, its sweep of the /24 (so the counter sees what the others must not send).
    let out = net.output(&h1, &["peers", "--wait", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        counters.packets("eth0") > 0,
        "the default lookup sent nothing on eth0"
    );

    // Each looks for real (its words say so), and nothing leaves by eth0. `bench` and
    // `send` look for a Ferry device of that name, `note` and `send` for a LocalSend one.
    let desk = "no device named \"desk\" found";
    let no_localsend = "no LocalSend device is called \"desk\"";
    for (args, said) in [
        (
            &["peers", "--wait", "2", "--only-interface", "lo"][..],
            &["no devices found"][..],
        ),
        (
            &[
                "peers",
                "--wait",
                "2",
                "--only-interface",
                "lo,nothing-here",
            ],
            &["no devices found"],
        ),
        (
            &[
                "send",
                "--to",
                "desk",
                "--only-interface",
                "lo",
                "--localsend-wait",
                "2",
                "Cargo.toml",
            ],
            &[desk, no_localsend],
        ),
        (
            &[
                "note",
                "--to",
                "desk",
                "--only-interface",
                "lo",
                "--localsend-wait",
                "2",
                "hi",
            ],
            &[no_localsend],
        ),
        (
            &["bench", "--to", "desk", "--only-interface", "lo"],
            &[desk],
        ),
        (
            &["doctor", "--wait", "2", "--only-interface", "lo"],
            &["devices found: 0"],
        ),
    ] {
        counters.reset();
        let out = net.output(&h1, args);
        let words = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        for said in said {
            assert!(words.contains(said), "{args:?}: {words}");
        }
        assert_eq!(
            counters.packets("eth0"),
            0,
            "{args:?} went out on eth0: {words}"
        );
    }
    // The same from the environment (how the test suite keeps every `ferry` it runs on
    // loopback), and the doctor says why eth0 is not used.
    counters.reset();
    let out = net
        .ferry(&h1)
        .env("FERRY_ONLY_INTERFACE", "lo")
        .args(["doctor", "--wait", "2"])
        .output()
        .unwrap();
    assert_eq!(counters.packets("eth0"), 0, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("interface eth0 10.77.0.1/24: ignored: not among the chosen interfaces"),
        "{text}"
    );
}

#[test]
fn a_server_told_one_interface_is_found_there_only() {
    let Some(mut net) = net_with_nft() else {
        return;
    };
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    // A second LAN card on h1 that h2 cannot see.
    veth(&h1, "eth1");
    ip(&["-n", &h1, "addr", "add", "10.78.0.1/24", "dev", "eth1"]).unwrap();
    ip(&["-n", &h1, "link", "set", "eth1", "up"]).unwrap();
    let counters = Counters::new(&net, &h1, &["eth0", "eth1"]);
    let dir = tempfile::tempdir().unwrap();
    let serve = |only: &str| {
        let args = [
            "--port",
            "8080",
            "--name",
            "alpha",
            "--only-interface",
            only,
        ];
        let ready = ["discovery: announcing", "LocalSend receiving is on"];
        net.serve_with(&h1, dir.path(), &args, &ready)
    };

    // Told eth1: announced there (Ferry and LocalSend), never on eth0, and not found from h2.
    let alpha = serve("eth1");
    // (Without its sweep: a host that connects to alpha's ports itself reaches them, as a
    // typed address does; `--bind` is what limits the ports.)
    let text = peers(&net, &h2, &[]);
    assert!(!text.contains("alpha"), "found on eth0: {text}");
    assert_eq!(counters.packets("eth0"), 0, "announced on eth0");
    assert!(counters.packets("eth1") > 0, "not announced on eth1");
    drop(alpha);

    // Told eth0: found from h2 by both discoveries.
    let _alpha = serve("eth0");
    let line = net.peers_until(&h2, |l| l.starts_with("alpha  10.77.0.1:8080  "));
    assert!(line.contains("beacon"), "{line}");
    net.peers_until(&h2, |l| l.starts_with("alpha  10.77.0.1:53317  localsend "));
}

#[test]
fn localsend_multicast_leaves_a_virtual_adapter_alone_unless_chosen() {
    let Some(mut net) = net_with_nft() else {
        return;
    };
    let h1 = net.host("h1", 1).unwrap();
    // What Docker or a VPN adds: an interface discovery does not use unless told to.
    veth(&h1, "docker0");
    ip(&["-n", &h1, "addr", "add", "172.17.0.1/16", "dev", "docker0"]).unwrap();
    ip(&["-n", &h1, "link", "set", "docker0", "up"]).unwrap();
    let counters = Counters::new(&net, &h1, &["eth0", "docker0"]);
    let out = net.output(&h1, &["peers", "--wait", "2", "--no-localsend-sweep"]);
    assert!(out.status.success(), "{out:?}");
    assert!(counters.packets("eth0") > 0);
    assert_eq!(counters.packets("docker0"), 0, "announced on docker0");
    counters.reset();
    let out = net.output(
        &h1,
        &[
            "peers",
            "--wait",
            "2",
            "--no-localsend-sweep",
            "--interface",
            "docker0",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        counters.packets("docker0") > 0,
        "not announced on the chosen docker0"
    );
}

/// Sends datagram `argv[1]` to port `argv[2]` of each address after `argv[3]` (the count of
/// rounds, 0.2 s apart), broadcast allowed: what a host on the LAN can send to this one.
const PY_SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(int(sys.argv[3])):
    for to in sys.argv[4:]:
        s.sendto(sys.argv[1].encode(), (to, int(sys.argv[2])))
    time.sleep(0.2)
"#;

/// A LocalSend announcement (`announce: true`, so hearers answer with `POST /register`).
const ANNOUNCEMENT: &str = r#"{"alias": "mallory", "version": "2.1", "deviceType": "desktop",
  "fingerprint": "abababababababababababababababababababababababababababababababab",
  "port": 53317, "protocol": "https", "download": false, "announce": true}"#;

/// A Ferry beacon without `sent_to` (so taken for a unicast one), asking for an answer.
const BEACON: &str = r#"{"ferry_beacon": 1, "id": "abababababababababababababababab",
  "name": "mallory", "fingerprint": "x", "os": "linux", "tcp_port": 8080, "udp_port": 0,
  "bye": false, "query": true}"#;

/// `script` run by `python3` in `ns` with `args`; stopped when dropped.
fn python_in(ns: &str, script: &str, args: &[&str]) -> ChildGuard {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .args(args)
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Hosts h1 and h2 on one LAN, or `None` after a skip line (no namespaces, `nft` or
/// `python3`).
fn two_hosts_and_python() -> Option<(Net, String, String)> {
    let mut net = net_with_nft()?;
    if !have_command("python3", "--version", "no python3 on this machine") {
        return None;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    Some((net, h1, h2))
}

/// `ferry peers --wait 3 --no-localsend-sweep EXTRA` in `ns` while `_sender` runs.
fn peers_while(net: &Net, ns: &str, _sender: ChildGuard, extra: &[&str]) -> String {
    peers(net, ns, extra)
}

/// `ferry peers --wait 3 --no-localsend-sweep EXTRA` in `ns`: what it lists.
fn peers(net: &Net, ns: &str, extra: &[&str]) -> String {
    let args = ["peers", "--wait", "3", "--no-localsend-sweep"];
    let out = net.output(ns, &[&args[..], extra].concat());
    assert!(out.status.success(), "{out:?}");
    stdout(&out)
}

/// Host h2 on h1's LAN sends `datagram` to `port` of h1 and of the LAN's broadcast address
/// while `ferry peers` runs on h1: without a choice, it is listed; told only loopback, h1
/// lists nothing of it and nothing (no answer, no check) leaves by eth0.
fn not_heard_from_an_unchosen_network(datagram: &str, port: u16) {
    let Some((net, h1, h2)) = two_hosts_and_python() else {
        return;
    };
    let counters = Counters::new(&net, &h1, &["eth0"]);
    // Sent to h1 and the LAN's broadcast address, 25 times.
    let port = port.to_string();
    let to = [datagram, &port, "25", "10.77.0.1", "10.77.0.255"];
    let lookup = |extra: &[&str]| peers_while(&net, &h1, python_in(&h2, PY_SEND, &to), extra);
    let text = lookup(&[]);
    assert!(text.contains("mallory"), "not heard on eth0: {text}");
    counters.reset();
    let text = lookup(&["--only-interface", "lo"]);
    assert!(!text.contains("mallory"), "heard from eth0: {text}");
    assert_eq!(counters.packets("eth0"), 0, "went out on eth0: {text}");
}

#[test]
fn localsend_announcements_from_an_unchosen_network_are_neither_listed_nor_answered() {
    // Sent to h1's address and a broadcast address rather than to the group: a socket bound
    // to LocalSend's port gets these from every network, whatever groups it joined.
    not_heard_from_an_unchosen_network(ANNOUNCEMENT, 53317);
}

#[test]
fn ferry_beacons_from_an_unchosen_network_are_neither_listed_nor_checked() {
    // The beacon says nothing of how it was sent, which reads as unicast: whatever a beacon
    // claims, the network it came from decides.
    not_heard_from_an_unchosen_network(BEACON, 53318);
}

/// Sends, 25 times 0.2 s apart, an unsolicited DNS-SD answer on the mDNS group: a Ferry
/// device "mallory" on port 8080 whose address is `argv[1]`, sent from the interface of
/// address `argv[2]`.
const PY_MDNS: &str = r#"
import socket, struct, sys, time
def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
def rr(n, kind, cls, data):
    return name(n) + struct.pack("!HHIH", kind, cls, 120, len(data)) + data
inst, host = "mallory._ferry._tcp.local", "mallory-host.local"
txt = b"".join(bytes([len(t)]) + t for t in
               [b"v=1", b"id=" + b"ab" * 16, b"name=mallory", b"fp=x", b"os=linux"])
answers = [rr("_ferry._tcp.local", 12, 1, name(inst)),
           rr(inst, 33, 0x8001, struct.pack("!HHH", 0, 0, 8080) + name(host)),
           rr(inst, 16, 0x8001, txt),
           rr(host, 1, 0x8001, socket.inet_aton(sys.argv[1]))]
packet = struct.pack("!HHHHHH", 0, 0x8400, 0, len(answers), 0, 0) + b"".join(answers)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[2]))
for _ in range(25):
    s.sendto(packet, ("224.0.0.251", 5353))
    time.sleep(0.2)
"#;

#[test]
fn a_dns_sd_record_naming_an_address_off_the_chosen_interfaces_is_not_checked() {
    let Some((net, h1, h2)) = two_hosts_and_python() else {
        return;
    };
    // h1 has a container bridge too; h2, on h1's LAN, names an address behind it.
    veth(&h1, "docker0");
    ip(&["-n", &h1, "addr", "add", "172.17.0.1/16", "dev", "docker0"]).unwrap();
    ip(&["-n", &h1, "link", "set", "docker0", "up"]).unwrap();
    let counters = Counters::new(&net, &h1, &["docker0"]);
    let lookup = |record_ip: &str| {
        let sender = python_in(&h2, PY_MDNS, &[record_ip, "10.77.0.2"]);
        peers_while(&net, &h1, sender, &["--only-interface", "eth0"])
    };
    // On the chosen eth0, the record is heard and listed.
    let text = lookup("10.77.0.2");
    assert!(
        text.contains("mallory  10.77.0.2:8080"),
        "not heard on eth0: {text}"
    );
    // Naming an address behind docker0: not listed, and no check goes there.
    counters.reset();
    let text = lookup("172.17.0.5");
    assert!(!text.contains("mallory"), "listed: {text}");
    assert_eq!(
        counters.packets("docker0"),
        0,
        "checked via docker0: {text}"
    );
}

/// Announces `argv[1]` (a LocalSend announcement) to `argv[2]`:53317 every 0.2 s (to a
/// multicast group: out of the interface with address `argv[3]`), listening on TCP 53317
/// for the answer (`POST /register`); prints `answered` once one connects, `not answered`
/// after 10 s.
const PY_ANNOUNCE_AND_WAIT: &str = r#"
import socket, sys
answers = socket.socket()
answers.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
answers.bind(("0.0.0.0", 53317))
answers.listen(5)
answers.settimeout(0.2)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
if len(sys.argv) > 3:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[3]))
for _ in range(50):
    s.sendto(sys.argv[1].encode(), (sys.argv[2], 53317))
    try:
        answers.accept()
        print("answered", flush=True)
        sys.exit(0)
    except socket.timeout:
        pass
print("not answered", flush=True)
"#;

/// What [`PY_ANNOUNCE_AND_WAIT`] run in `ns` with `args` says of [`ANNOUNCEMENT`] under
/// `fingerprint`: `answered` or `not answered`.
fn announced_from(ns: &str, fingerprint: &str, args: &[&str]) -> String {
    let announcement = ANNOUNCEMENT.replace(&"ab".repeat(32), fingerprint);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", PY_ANNOUNCE_AND_WAIT])
        .arg(&announcement)
        .args(args)
        .output()
        .unwrap();
    stdout(&out).trim().to_owned()
}

#[test]
fn localsend_told_one_interface_still_answers_there_after_its_address_changes() {
    let Some((net, h1, h2)) = two_hosts_and_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "8080", "--only-interface", "eth0"];
    let _h1 = net.serve_with(&h1, dir.path(), &args, &["LocalSend receiving is on"]);
    let answered = |fingerprint: &str| announced_from(&h2, fingerprint, &["10.77.0.255"]);
    assert_eq!(answered(&"cd".repeat(32)), "answered");
    // h1's LAN card gets another address (a new DHCP lease) while it serves.
    ip(&["-n", &h1, "addr", "del", "10.77.0.1/24", "dev", "eth0"]).unwrap();
    ip(&["-n", &h1, "addr", "add", "10.77.0.5/24", "dev", "eth0"]).unwrap();
    assert_eq!(answered(&"ef".repeat(32)), "answered");
}

/// `ferry peers --probe ADDRESS` asks that address for its beacon by unicast and hears the
/// answer even through an interface `--only-interface` leaves out: an address the user
/// names (a favourite in the window) goes wherever it leads, as a typed one does.
#[test]
fn a_probed_address_is_asked_and_heard_whatever_the_interfaces_chosen() {
    let Some(mut net) = net_with_nft() else {
        return;
    };
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    // h1 hears nothing multicast or broadcast: only an answer to its own probe reaches it.
    net.nft(
        &h1,
        "table inet quiet { chain in { type filter hook input priority 0; policy accept; \
         ip daddr 224.0.0.0/4 drop; ip daddr 10.77.0.255 drop; \
         ip daddr 255.255.255.255 drop; } } ",
    );
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "8080", "--no-localsend", "--name", "beta"];
    let _beta = net.serve_with(&h2, dir.path(), &args, &["discovery: announcing"]);
    let peers = |extra: &[&str]| peers(&net, &h1, extra);
    // Probed with every interface in use: found.
    let text = peers(&["--probe", "10.77.0.2"]);
    assert!(text.contains("beta  10.77.0.2:8080"), "not found: {text}");
    // Only loopback chosen, nothing probed: nothing reaches h1 (the control).
    let text = peers(&["--only-interface", "lo"]);
    assert!(!text.contains("beta"), "found unprobed: {text}");
    // Only loopback chosen, but the address named: asked and heard through eth0.
    let text = peers(&["--only-interface", "lo", "--probe", "10.77.0.2"]);
    assert!(text.contains("beta  10.77.0.2:8080"), "not found: {text}");
}

/// `ferry serve` started before its LAN card got an address (the window opened before the
/// Wi-Fi connected) joins LocalSend's group there once the address comes, and a device
/// announcing to the group is heard and answered. Then the card is renumbered, the new
/// address added before the old one goes (as DHCP may): the kernel's one membership per
/// interface, held under the old address, went with it, and the card stayed deaf until a
/// restart; the new address is joined again.
#[test]
fn localsend_joins_its_group_on_an_address_that_comes_after_the_start_and_keeps_it() {
    let Some((net, h1, h2)) = two_hosts_and_python() else {
        return;
    };
    let addr = |verb: &str, cidr: &str| ip(&["-n", &h1, "addr", verb, cidr, "dev", "eth0"]);
    // A deleted primary address hands its subnet to the secondary, as desktops set it.
    let sysctl = std::process::Command::new("ip")
        .args(["netns", "exec", &h1, "sysctl", "-qw"])
        .arg("net.ipv4.conf.eth0.promote_secondaries=1")
        .output()
        .unwrap();
    assert!(sysctl.status.success(), "{sysctl:?}");
    addr("del", "10.77.0.1/24").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = net
        .ferry(&h1)
        .args(["serve", "--port", "8080", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = line_channel(child.stderr.take().unwrap());
    let _h1 = ChildGuard(child);
    wait_line(&log, "LocalSend receiving on");
    // To the group, not to an address: only a member of the group hears it.
    let answered =
        |fingerprint: &str| announced_from(&h2, fingerprint, &["224.0.0.167", "10.77.0.2"]);

    addr("add", "10.77.0.1/24").unwrap();
    wait_line(&log, "LocalSend: discovery interfaces now [10.77.0.1]");
    assert_eq!(
        answered(&"cd".repeat(32)),
        "answered",
        "on the address that came"
    );

    addr("add", "10.77.0.5/24").unwrap();
    wait_line(&log, "now [10.77.0.1, 10.77.0.5]");
    addr("del", "10.77.0.1/24").unwrap();
    wait_line(&log, "now [10.77.0.5]");
    assert_eq!(answered(&"ef".repeat(32)), "answered", "after renumbering");
}
