//! Discovery across real (virtual) networks: each test builds its own network namespaces, a
//! bridge in a namespace of its own with veth pairs to hosts 10.77.0.x, and a router
//! namespace for a second subnet 10.77.1.x, then runs the real `ferry` binary inside with
//! `ip netns exec`. Names include the pid and a counter, and everything is deleted in Drop.
//! Needs root and `ip` (provided in CI by .ci/run); where the kernel refuses namespaces the
//! tests skip.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::util::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether namespaces can be made here; prints the skip line if not.
pub(crate) fn can_make_namespaces() -> bool {
    if !have_ip_command() {
        return false;
    }
    let probe = format!(
        "ferry-probe-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            true
        }
        Err(e) => {
            // Not root, or a kernel/sandbox that refuses namespaces: not something CI installs.
            skip_or_fail(false, &format!("cannot create network namespaces: {e}"));
            false
        }
    }
}

pub(crate) fn have_nft() -> bool {
    have_command(
        "nft",
        "--version",
        "the `nft` command (nftables) is missing",
    )
}

/// A small network: a bridge namespace, hosts on 10.77.0.0/24, optionally a router to
/// 10.77.1.0/24 with one host there.
pub(crate) struct Net {
    tag: String,
    namespaces: Vec<String>,
    config: tempfile::TempDir,
    /// `/etc/netns/NS` folders made by [`Net::etc_file`], removed in Drop.
    etc: Vec<PathBuf>,
}

impl Net {
    pub(crate) fn new() -> Result<Net, String> {
        let tag = format!(
            "f{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            tag: tag.clone(),
            namespaces: Vec::new(),
            config: tempfile::tempdir().map_err(|e| e.to_string())?,
            etc: Vec::new(),
        };
        let bridge = net.add_ns("br")?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        Ok(net)
    }

    pub(crate) fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A host `name` on the bridge with address 10.77.0.`last`/24 on its `eth0`.
    pub(crate) fn host(&mut self, name: &str, last: u8) -> Result<String, String> {
        let ns = self.add_ns(name)?;
        let bridge = self.ns("br");
        let port = format!("p{last}");
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &bridge,
        ])?;
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.0.{last}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        if last != 254 {
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "10.77.1.0/24",
                "via",
                "10.77.0.254",
            ])?;
        }
        Ok(ns)
    }

    /// A router (10.77.0.254 on the bridge, 10.77.1.1 on the far side) and a host
    /// 10.77.1.2 behind it.
    fn far_host(&mut self, name: &str) -> Result<String, String> {
        let router = self.host("router", 254)?;
        let ns = self.add_ns(name)?;
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", "eth1", "netns",
            &router,
        ])?;
        ip(&["-n", &router, "addr", "add", "10.77.1.1/24", "dev", "eth1"])?;
        ip(&["-n", &router, "link", "set", "eth1", "up"])?;
        ip(&["-n", &ns, "addr", "add", "10.77.1.2/24", "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", "10.77.1.1"])?;
        let out = Command::new("ip")
            .args(["netns", "exec", &router, "sysctl", "-qw"])
            .arg("net.ipv4.ip_forward=1")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err("cannot turn on forwarding in the router".into());
        }
        Ok(ns)
    }

    /// Makes `text` the file `/etc/NAME` (`resolv.conf`, `hosts`) of every program run in
    /// `ns`: `ip netns exec` bind-mounts `/etc/netns/NS/NAME` over it.
    pub(crate) fn etc_file(&mut self, ns: &str, name: &str, text: &str) {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        if !self.etc.contains(&dir) {
            self.etc.push(dir.clone());
        }
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// The packets the nftables counter `name` of table `inet TABLE` in `ns` counted so far.
    pub(crate) fn counted(&self, ns: &str, table: &str, name: &str) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "nft", "list", "counter", "inet", table, name,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count for {name}: {text}"))
    }

    /// `nft -f` of `rules` inside namespace `ns`.
    pub(crate) fn nft(&self, ns: &str, rules: &str) {
        use std::io::Write as _;
        // nft wants each statement on a line of its own.
        let rules = rules
            .replace("; ", ";\n")
            .replace("{ ", "{\n")
            .replace("} ", "}\n");
        let rules = rules.as_str();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft rules: {rules}");
    }

    /// The `ferry` binary in `ns`, with a config folder of its own (so each host has its
    /// own device identity).
    pub(crate) fn ferry(&self, ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        let config: PathBuf = self.config.path().join(ns);
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ferry")])
            // The namespace's interfaces are the point: no choice from the environment.
            .env_remove("FERRY_ONLY_INTERFACE")
            .env("XDG_CONFIG_HOME", config)
            .env("RUST_LOG", "info");
        cmd
    }

    /// `ferry serve --name NAME` in `ns` on port 8080; returns once it announces.
    pub(crate) fn serve(&self, ns: &str, name: &str, dir: &std::path::Path) -> ChildGuard {
        let args = ["--port", "8080", "--no-localsend", "--name", name];
        self.serve_with(ns, dir, &args, &["discovery: announcing"])
    }

    /// `ferry serve ARGS --dir DIR` in `ns`; returns once it printed each of `ready`.
    pub(crate) fn serve_with(
        &self,
        ns: &str,
        dir: &std::path::Path,
        args: &[&str],
        ready: &[&str],
    ) -> ChildGuard {
        let mut child = self
            .ferry(ns)
            .arg("serve")
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = line_channel(child.stdout.take().unwrap());
        let guard = ChildGuard(child);
        for line in ready {
            wait_line(&lines, line);
        }
        guard
    }

    pub(crate) fn output(&self, ns: &str, args: &[&str]) -> Output {
        self.ferry(ns).args(args).output().unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends (and so their peers).
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        for dir in &self.etc {
            let _ = std::fs::remove_dir_all(dir);
        }
        // And /etc/netns itself once no test uses it (this fails while another one does).
        if !self.etc.is_empty() {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the net or returns from the test with a skip line.
macro_rules! net_or_skip {
    () => {{
        if !can_make_namespaces() {
            return;
        }
        Net::new().expect("network namespaces")
    }};
}

#[test]
fn two_hosts_find_each_other_within_3_seconds() {
    let mut net = net_or_skip!();
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let _beta = net.serve(&h2, "beta", dir.path());

    let out = net.output(&h2, &["peers", "--wait", "3"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("alpha  "))
        .unwrap_or_else(|| panic!("alpha not found: {text}"));
    assert!(
        line.starts_with("alpha  10.77.0.1:8080  not trusted  "),
        "{line}"
    );
    assert!(line.contains("beacon"), "{line}");
    assert!(line.ends_with("  ready"), "{line}");
    // Only the other host: not itself.
    assert_eq!(text.lines().count(), 1, "{text}");

    let out = net.output(&h1, &["peers", "--wait", "3"]);
    assert!(
        stdout(&out).starts_with("beta  10.77.0.2:8080  not trusted  "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_host_on_another_subnet_is_not_found_but_a_typed_address_works() {
    let mut net = net_or_skip!();
    let h1 = net.host("h1", 1).unwrap();
    let far = net.far_host("far").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _gamma = net.serve(&far, "gamma", dir.path());

    let out = net.output(&h1, &["peers", "--wait", "3"]);
    assert!(!stdout(&out).contains("gamma"), "{}", stdout(&out));

    let out = net.output(&h1, &["doctor", "--wait", "1", "10.77.1.2:8080"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("10.77.1.2: not in any of our subnets"),
        "{text}"
    );
    assert!(text.contains("TCP 10.77.1.2:8080: answers"), "{text}");
    assert!(
        text.contains("interface eth0 10.77.0.1/24: used; our own beacon heard"),
        "{text}"
    );
    assert!(text.contains("interface lo 127.0.0.1/8: ignored"), "{text}");

    // Sending by typed address works across the router.
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("far.txt");
    std::fs::write(&file, "over the router").unwrap();
    let out = net
        .ferry(&h1)
        .args(["send", "--to", "10.77.1.2:8080"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("far.txt")).unwrap(),
        "over the router"
    );
}

#[test]
fn with_mdns_dropped_the_beacon_still_finds_and_send_resolves_the_name() {
    let mut net = net_or_skip!();
    if !have_nft() {
        return;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    net.nft(
        &h2,
        "table inet t { chain i { type filter hook input priority 0; udp dport 5353 drop; } chain o { type filter hook output priority 0; udp dport 5353 drop; } }",
    );
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let out = net.output(&h2, &["peers", "--wait", "3"]);
    assert!(
        stdout(&out).starts_with("alpha  10.77.0.1:8080"),
        "{}",
        stdout(&out)
    );

    // `send --to NAME` finds the device by its name.
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("named.txt");
    std::fs::write(&file, "by name").unwrap();
    let out = net
        .ferry(&h2)
        .args(["send", "--to", "alpha"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("named.txt")).unwrap(),
        "by name"
    );
}

/// Two devices announce one name (anyone may announce any name): `send --to NAME` says so and
/// sends to neither, instead of picking whichever answered first.
#[test]
fn two_devices_of_one_name_are_named_not_picked() {
    let mut net = net_or_skip!();
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let h3 = net.host("h3", 3).unwrap();
    let (one, three) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _first = net.serve(&h1, "alpha", one.path());
    let _second = net.serve(&h3, "alpha", three.path());
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("which.txt");
    std::fs::write(&file, "for one of them").unwrap();
    let out = net
        .ferry(&h2)
        .args(["send", "--to", "alpha", "--no-localsend-sweep"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{stderr}", stdout(&out));
    assert!(
        stderr.contains("several devices are named \"alpha\" on the LAN: ")
            && stderr.contains("10.77.0.1:8080")
            && stderr.contains("10.77.0.3:8080"),
        "{stderr}"
    );
    assert!(names_in(one.path()).is_empty() && names_in(three.path()).is_empty());
}

#[test]
fn with_multicast_dropped_broadcast_still_finds() {
    let mut net = net_or_skip!();
    if !have_nft() {
        return;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    // h2 neither receives nor sends multicast (IPv4, and IPv6 so the IPv6 beacons are
    // silenced too).
    net.nft(
        &h2,
        "table ip t { chain i { type filter hook input priority 0; ip daddr 224.0.0.0/4 drop; } chain o { type filter hook output priority 0; ip daddr 224.0.0.0/4 drop; } } table ip6 t6 { chain i { type filter hook input priority 0; ip6 daddr ff00::/8 drop; } chain o { type filter hook output priority 0; ip6 daddr ff00::/8 drop; } }",
    );
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let out = net.output(&h2, &["doctor", "--wait", "3"]);
    let text = stdout(&out);
    assert!(text.contains("eth0: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with("eth0:") && l.ends_with("by broadcast")),
        "{text}"
    );
    assert!(!text.contains("by multicast"), "{text}");
    assert!(
        text.contains("alpha  10.77.0.1:8080  not trusted  beacon"),
        "{text}"
    );
    assert!(
        text.contains("used; our own beacon heard by broadcast\n"),
        "{text}"
    );
}

#[test]
fn doctor_tells_a_refused_port_from_one_that_times_out() {
    let mut net = net_or_skip!();
    if !have_nft() {
        return;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let out = net.output(&h2, &["doctor", "--wait", "0", "10.77.0.1:9999"]);
    let text = stdout(&out);
    assert!(text.contains("10.77.0.1: in the subnet of eth0"), "{text}");
    assert!(
        text.contains("TCP 10.77.0.1:9999: connection refused"),
        "{text}"
    );

    // A firewall on h1 that drops (not rejects) the port: a timeout, with firewall hints.
    net.nft(
        &h1,
        "table inet t { chain i { type filter hook input priority 0; tcp dport 9999 drop; } }",
    );
    let out = net.output(&h2, &["doctor", "--wait", "0", "10.77.0.1:9999"]);
    let text = stdout(&out);
    assert!(text.contains("TCP 10.77.0.1:9999: timed out"), "{text}");
    assert!(text.contains("ufw allow 9999/tcp"), "{text}");
    assert!(text.contains("firewall-cmd --add-port=9999/tcp"), "{text}");
}

impl Net {
    /// Runs `ferry peers --wait 2` in `ns` until a line satisfies `found` (a poll with a
    /// deadline: discovery rounds are timed, not signalled). Returns that line.
    pub(crate) fn peers_until(&self, ns: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = stdout(&self.output(ns, &["peers", "--wait", "2"]));
            if let Some(line) = text.lines().find(|l| found(l)) {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not found before the deadline; last listing:\n{text}"
            );
        }
    }
}

#[test]
fn with_the_beacon_port_dropped_mdns_still_finds() {
    let mut net = net_or_skip!();
    if !have_nft() {
        return;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    // h2 neither sends nor receives anything on the beacon port: only DNS-SD is left.
    net.nft(
        &h2,
        "table inet t { chain i { type filter hook input priority 0; udp dport 53318 drop; udp sport 53318 drop; } chain o { type filter hook output priority 0; udp dport 53318 drop; udp sport 53318 drop; } }",
    );
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let out = net.output(&h2, &["peers", "--wait", "3"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("alpha  10.77.0.1:8080  not trusted  mdns  ready\n"),
        "{text}"
    );
    // The doctor hears alpha by mDNS alone (asked again while a loaded machine makes DNS-SD
    // slower than its wait: a poll with a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = stdout(&net.output(&h2, &["doctor", "--wait", "3"]));
        if text.contains("  eth0: ") || std::time::Instant::now() >= deadline {
            break text;
        }
    };
    assert!(text.contains("  eth0: "), "{text}");
    assert!(
        text.lines()
            .all(|l| !l.starts_with("  eth0: ") || l.ends_with("by mDNS")),
        "{text}"
    );
}

#[test]
fn with_client_isolation_the_doctor_says_only_our_own_beacon_is_heard() {
    let mut net = net_or_skip!();
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let bridge = net.ns("br");
    // What an access point with client isolation does: ports on the bridge may not talk to
    // each other (only to non-isolated ports, of which there are none here).
    for port in ["p1", "p2"] {
        ip(&[
            "-n",
            &bridge,
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "isolated",
            "on",
        ])
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let out = net.output(&h2, &["doctor", "--wait", "3"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("interface eth0 10.77.0.2/24: used; our own beacon heard by "),
        "{text}"
    );
    assert!(
        text.contains(
            "no other device heard on eth0, though our own beacon is: the network may isolate clients (Wi-Fi client/AP isolation"
        ),
        "{text}"
    );
    assert!(text.contains("devices found: 0"), "{text}");
}

#[test]
fn a_new_address_while_serving_is_announced_and_found_there() {
    let mut net = net_or_skip!();
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    net.peers_until(&h2, |l| l.starts_with("alpha  10.77.0.1:8080  "));

    // The machine moves to another address (a new DHCP lease) while `ferry serve` runs. The
    // old sockets are bound to the address that is gone: only the interface check's reopen
    // (and its burst) makes alpha answer again.
    ip(&["-n", &h1, "addr", "del", "10.77.0.1/24", "dev", "eth0"]).unwrap();
    ip(&["-n", &h1, "addr", "add", "10.77.0.11/24", "dev", "eth0"]).unwrap();
    // Each listing is a new `ferry peers` that checks the port once: a check that lands
    // while the move is still settling says "does not answer", and the next listing checks
    // again. What must hold is that alpha is found at its new address, ready.
    let line = net.peers_until(&h2, |l| {
        l.starts_with("alpha  10.77.0.11:8080  ") && l.ends_with("  ready")
    });
    assert!(line.contains("beacon"), "{line}");
}

#[test]
fn ipv6_link_local_beacons_find_when_ipv4_discovery_is_dropped() {
    let mut net = net_or_skip!();
    if !have_nft() {
        return;
    }
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    if !ipv6_link_local_ready(&h1) || !ipv6_link_local_ready(&h2) {
        return;
    }
    // h2: no IPv4 beacons in or out, and no mDNS at all: only IPv6 beacons are left.
    net.nft(
        &h2,
        "table ip t { chain i { type filter hook input priority 0; udp dport 53318 drop; udp sport 53318 drop; } chain o { type filter hook output priority 0; udp dport 53318 drop; udp sport 53318 drop; } } table inet m { chain i { type filter hook input priority 0; udp dport 5353 drop; } chain o { type filter hook output priority 0; udp dport 5353 drop; } }",
    );
    let dir = tempfile::tempdir().unwrap();
    let _alpha = net.serve(&h1, "alpha", dir.path());
    let out = net.output(&h2, &["peers", "--wait", "3"]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("alpha  "))
        .unwrap_or_else(|| panic!("alpha not found: {text}"));
    // A link-local address with the interface index it was heard on.
    assert!(line.starts_with("alpha  [fe80::"), "{line}");
    assert!(line.contains("%2]:8080  not trusted  beacon"), "{line}");
    // (Its state says whether port 8080 answers over IPv6: `ferry serve` listens on IPv4
    // unless bound otherwise, so here it truthfully does not.)

    let out = net.output(&h2, &["doctor", "--wait", "3"]);
    let text = stdout(&out);
    // alpha's start-up burst is over by now: what answers is its reply to our IPv6 query.
    assert!(
        text.lines().any(|l| l.starts_with("  eth0 (IPv6): ")),
        "{text}"
    );
}
