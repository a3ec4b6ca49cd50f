//! Throughput over a link of a LAN's speed: `ferry send` -> `ferry serve` between two network
//! namespaces joined by a veth pair, both directions shaped with `tbf` to each rate of
//! `FERRY_BENCH_LINK_RATES`, against `nc` and `socat -b1048576` over the same link in the
//! same alternating rounds, all writing the received file to disk. Prints the medians, what
//! the link carries at most and each tool's share of it; asserts nothing. Both ends still
//! share this machine's cores: a fast link measures the machine as much as the tools.
//!
//! ```text
//! sudo cargo bench --bench link                                     # 1 and 2.5 Gbit/s, 1 GiB, 3 rounds
//! FERRY_BENCH_LINK_RATES=100mbit,1gbit FERRY_BENCH_BYTES=268435456 cargo bench --bench link
//! ```
//!
//! Needs root, `ip` (iproute2) and `tc` with the `tbf` qdisc; without them it says why and
//! measures nothing. `nc` (netcat-openbsd) and `socat` are skipped when missing. The
//! namespaces are named after this process and deleted at the end, also after a failure.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{NC, Pipe, SOCAT, clear, env_or, mbps, median, pipe_copy, workspace};

mod common;

/// The sending and the receiving side's addresses on the veth pair.
const SENDER_IP: &str = "10.81.0.1";
const RECEIVER_IP: &str = "10.81.0.2";

fn main() {
    if let Err(why) = can_shape() {
        eprintln!("SKIPPED: the link benchmark needs {why}");
        return;
    }
    let bytes: u64 = env_or("FERRY_BENCH_BYTES", 1 << 30);
    let runs: u32 = env_or("FERRY_BENCH_RUNS", 3);
    let rates = std::env::var("FERRY_BENCH_LINK_RATES").unwrap_or_else(|_| "1gbit,2500mbit".into());
    let (work, input, out_dir) = workspace(bytes);
    let homes = (work.path().join("sender"), work.path().join("receiver"));
    for rate in rates.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let Some(line_mbps) = rate_mbps(rate) else {
            eprintln!("{rate}: not a rate tc knows (say 100mbit, 1gbit, 2500mbit)");
            continue;
        };
        let link = match Link::new(rate) {
            Ok(link) => link,
            Err(why) => {
                eprintln!("{rate}: cannot set up the link: {why}");
                continue;
            }
        };
        let mut results: Vec<(&str, Vec<f64>)> = vec![
            ("ferry (encrypted, verified, synced)", Vec::new()),
            ("ferry --no-encryption", Vec::new()),
            ("nc", Vec::new()),
            ("socat -b1048576", Vec::new()),
        ];
        for run in 1..=runs {
            let rounds = [
                ferry_run(&link, &input, &out_dir, &homes, &[]),
                ferry_run(&link, &input, &out_dir, &homes, &["--no-encryption"]),
                pipe_run(&link, &input, &out_dir, &NC),
                pipe_run(&link, &input, &out_dir, &SOCAT),
            ];
            for ((name, secs), round) in results.iter_mut().zip(rounds) {
                match round {
                    Some(s) => {
                        eprintln!("{rate} run {run}: {name} {:.0} MB/s", mbps(bytes, s));
                        secs.push(s);
                    }
                    None => eprintln!("{rate} run {run}: {name} did not complete"),
                }
            }
        }
        println!(
            "link {rate} ({line_mbps:.0} MB/s at most), {} MiB, {runs} alternating runs, medians",
            bytes >> 20
        );
        let speeds: Vec<Option<f64>> = results
            .iter_mut()
            .map(|(_, secs)| (!secs.is_empty()).then(|| mbps(bytes, median(secs))))
            .collect();
        let nc = speeds[2];
        for ((name, _), speed) in results.iter().zip(speeds) {
            let Some(speed) = speed else {
                println!("  {name:<36} not measured");
                continue;
            };
            let mut line = format!(
                "  {name:<36} {speed:>6.0} MB/s, {:.2}x the link",
                speed / line_mbps
            );
            if let Some(nc) = nc {
                line.push_str(&format!(", {:.2}x nc", speed / nc));
            }
            println!("{line}");
        }
    }
}

/// Why this machine cannot shape a link here, if it cannot.
fn can_shape() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("root (it creates network namespaces)".into());
    }
    for tool in ["ip", "tc"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(format!("`{tool}` (iproute2)"));
        }
    }
    Ok(())
}

/// What a `tc` rate carries at most, in MB/s (10^6 bytes).
fn rate_mbps(rate: &str) -> Option<f64> {
    let rate = rate.to_ascii_lowercase();
    let (number, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)]
        .iter()
        .find_map(|(unit, scale)| rate.strip_suffix(unit).map(|n| (n.to_owned(), *scale)))?;
    let bits: f64 = number.parse().ok()?;
    (bits > 0.0).then(|| bits * scale / 8.0 / 1e6)
}

/// Two namespaces joined by a shaped veth pair; deleted when dropped. Named after this
/// process, so one at a time.
struct Link {
    sender: String,
    receiver: String,
}

impl Link {
    fn new(rate: &str) -> Result<Link, String> {
        let id = std::process::id();
        let link = Link {
            sender: format!("ferry-bench-s{id}"),
            receiver: format!("ferry-bench-r{id}"),
        };
        let (veth_s, veth_r) = (format!("fbs{id}"), format!("fbr{id}"));
        let (s, r) = (link.sender.as_str(), link.receiver.as_str());
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", s],
            vec!["ip", "netns", "add", r],
            vec![
                "ip", "link", "add", &veth_s, "type", "veth", "peer", "name", &veth_r,
            ],
            vec!["ip", "link", "set", &veth_s, "netns", s],
            vec!["ip", "link", "set", &veth_r, "netns", r],
        ];
        let sender_addr = format!("{SENDER_IP}/24");
        let receiver_addr = format!("{RECEIVER_IP}/24");
        let mut inside: Vec<(&str, Vec<&str>)> = Vec::new();
        for (ns, dev, addr) in [(s, &veth_s, &sender_addr), (r, &veth_r, &receiver_addr)] {
            inside.push((ns, vec!["ip", "addr", "add", addr, "dev", dev]));
            inside.push((ns, vec!["ip", "link", "set", dev, "up"]));
            inside.push((ns, vec!["ip", "link", "set", "lo", "up"]));
            inside.push((
                ns,
                vec![
                    "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst",
                    "512kb", "latency", "20ms",
                ],
            ));
        }
        for step in &steps {
            run(step)?;
        }
        for (ns, step) in &inside {
            let mut full = vec!["ip", "netns", "exec", ns];
            full.extend(step);
            run(&full)?;
        }
        Ok(link)
    }

    /// `program args` inside namespace `ns`.
    fn exec(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.sender, &self.receiver] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs a set-up command; its error output when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `ferry send` in the sender's namespace to `ferry serve` in the receiver's, each with an
/// identity of its own; the seconds it took, `None` when it failed.
fn ferry_run(
    link: &Link,
    input: &Path,
    out_dir: &Path,
    homes: &(std::path::PathBuf, std::path::PathBuf),
    send_args: &[&str],
) -> Option<f64> {
    let exe = env!("CARGO_BIN_EXE_ferry");
    let mut command = Link::exec(&link.receiver, exe);
    command.env("XDG_CONFIG_HOME", &homes.1);
    let (serve, addr) = common::serve(command, RECEIVER_IP, out_dir, &[])?;
    let start = Instant::now();
    let sent = Link::exec(&link.sender, exe)
        .env("XDG_CONFIG_HOME", &homes.0)
        .args(["send", "--to", &addr.to_string()])
        .args(send_args)
        .arg(input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let secs = start.elapsed().as_secs_f64();
    drop(serve);
    clear(out_dir);
    sent.success().then_some(secs)
}

/// `nc` or `socat` across the link into a file (see [`common::pipe_copy`]).
fn pipe_run(link: &Link, input: &Path, out_dir: &Path, pipe: &Pipe) -> Option<f64> {
    const PORT: u16 = 9931;
    let received = out_dir.join(format!("{}.bin", pipe.program));
    let mut listener = Link::exec(&link.receiver, pipe.program);
    listener.args((pipe.listen)(RECEIVER_IP, PORT));
    let sender = || {
        let mut sender = Link::exec(&link.sender, pipe.program);
        sender.args((pipe.send)(RECEIVER_IP, PORT));
        sender
    };
    let secs = pipe_copy(listener, sender, input, &received, false);
    clear(out_dir);
    secs
}
