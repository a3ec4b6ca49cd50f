//! Throughput benchmark: `ferry send` -> `ferry serve` on loopback, against `nc` and
//! `socat -b1048576` in the same alternating rounds, all writing the received file to disk
//! (socat also once more followed by `fdatasync`, durable as Ferry's "verified" file is),
//! and a local `dd bs=128k conv=fdatasync` of the same file (no network, no hashing: a
//! yardstick for what this disk gives a file that must be on disk before it counts); then 32 concurrent uploads into one server. Prints figures; asserts nothing (issue 14's
//! measuring instrument).
//!
//! ```text
//! cargo bench --bench transfer                          # 2 GiB, 3 rounds
//! FERRY_BENCH_BYTES=536870912 cargo bench --bench transfer
//! FERRY_BENCH_DIR=/some/disk FERRY_BENCH_RUNS=7 cargo bench --bench transfer
//! FERRY_BENCH_CONCURRENT=32 FERRY_BENCH_CONCURRENT_BYTES=67108864 cargo bench --bench transfer
//! FERRY_BENCH_STATE=cold cargo bench --bench transfer   # 6 s idle before each run
//! FERRY_BENCH_STATE=warm cargo bench --bench transfer   # 1.4 GiB written and deleted first
//! FERRY_BENCH_PIN=1 cargo bench --bench transfer        # receivers on CPU 1, senders on CPU 0
//! ```
//!
//! `FERRY_BENCH_PIN=1` gives each end a core of its own, as two one-core machines would have
//! (without it both ends, and both ends' ciphers, compete for every core of this one).
//!
//! Needs `nc` (Debian: netcat-openbsd) and `socat` for the comparisons; a missing one is
//! reported and skipped. The server's peak RSS is read from /proc (VmHWM) after the transfer,
//! the sender's from `wait4` (ru_maxrss). Each round runs every case once, each round in an
//! order of its own (so no case always runs first or after the same other one). Each round also runs Ferry with `serve --no-fsync`,
//! so the cost of syncing the file before "verified" is a figure of the same run, Ferry
//! with `send --no-encryption`, so encryption's cost is one too (each side has an identity of
//! its own in a temp config folder), and both together: what socat does (written, not synced,
//! not encrypted) with both ends' BLAKE3 on top, as the issue's probe measured; and plain
//! Ferry with `serve --no-direct-io`, synced through the page cache, so what direct writes
//! gain on this disk (or lose: a reason to turn them off) is a figure of the same run.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Killed, NC, Pipe, SOCAT, SOCAT_BUFFER, clear, env_or, mbps, median, pipe_copy, workspace,
    write_random,
};

mod common;

/// One measurement of a round.
#[derive(Clone, Copy)]
enum Case {
    Ferry,
    Plain,
    NoFsync,
    PlainNoFsync,
    PlainCached,
    Nc,
    Socat,
    SocatSynced,
    Dd,
}

/// Every round runs each case once, in an order of its own ([`round_order`]).
const CASES: [Case; 9] = [
    Case::Ferry,
    Case::Plain,
    Case::NoFsync,
    Case::PlainNoFsync,
    Case::PlainCached,
    Case::Nc,
    Case::Socat,
    Case::SocatSynced,
    Case::Dd,
];

/// The cases in round `run`'s order: a shuffle (Fisher-Yates driven by a small LCG seeded
/// with the round number), so each case follows a different one from round to round.
fn round_order(run: u32) -> [Case; 9] {
    let mut order = CASES;
    let mut state = u64::from(run).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..order.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn main() {
    let bytes: u64 = env_or("FERRY_BENCH_BYTES", 2 << 30);
    let runs: u32 = env_or("FERRY_BENCH_RUNS", 3);
    let concurrent: usize = env_or("FERRY_BENCH_CONCURRENT", 32);
    let concurrent_bytes: u64 = env_or("FERRY_BENCH_CONCURRENT_BYTES", 64 << 20);
    let (work, input, out_dir) = workspace(bytes);

    let mut ferry_secs = Vec::new();
    let mut unencrypted_secs = Vec::new();
    let mut no_fsync_secs = Vec::new();
    let mut plain_no_fsync_secs = Vec::new();
    let mut cached_secs = Vec::new();
    let mut nc_secs = Vec::new();
    let mut socat_secs = Vec::new();
    let mut socat_synced_secs = Vec::new();
    let mut disk_secs = Vec::new();
    // CPU seconds per GiB, (sender, server), of each run: robust where wall time is not.
    let mut encrypted_cpu = Vec::new();
    let mut unencrypted_cpu = Vec::new();
    let mut cached_cpu = Vec::new();
    let mut server_rss_kib = 0;
    let mut sender_rss_kib = 0;
    let state = std::env::var("FERRY_BENCH_STATE").unwrap_or_default();
    let prepare = || match state.as_str() {
        // Memory the host may have taken back while the machine idled.
        "cold" => std::thread::sleep(Duration::from_secs(6)),
        // Memory just used: a 1.4 GiB file written and deleted.
        "warm" => {
            let scratch = work.path().join("warm.bin");
            write_random(&scratch, 1400 << 20);
            drop(std::fs::remove_file(&scratch));
            common::settle(work.path());
        }
        _ => {}
    };
    if !state.is_empty() {
        eprintln!("memory state before each run: {state}");
    }
    for run in 1..=runs {
        // Each round runs the cases in an order of its own (the same for a given round
        // number in every run), so no tool always runs first (right after the previous
        // round's last case, or the first after the input was written) or always right
        // after the same other one, and takes what that position costs on this host: with
        // the order only rotated, the encrypted default always followed the synced `dd`.
        for case in round_order(run) {
            prepare();
            match case {
                Case::Ferry => {
                    let ferry = ferry_run(&input, &out_dir, &[], &[]);
                    eprintln!(
                        "run {run}: ferry {:.0} MB/s (server peak RSS {} MiB, sender {} MiB; {})",
                        mbps(bytes, ferry.secs),
                        ferry.server_rss_kib >> 10,
                        ferry.sender_rss_kib >> 10,
                        ferry.cpu(bytes)
                    );
                    encrypted_cpu.push(ferry.cpu_per_gib(bytes));
                    ferry_secs.push(ferry.secs);
                    server_rss_kib = server_rss_kib.max(ferry.server_rss_kib);
                    sender_rss_kib = sender_rss_kib.max(ferry.sender_rss_kib);
                }
                Case::Plain => {
                    let plain = ferry_run(&input, &out_dir, &[], &["--no-encryption"]);
                    eprintln!(
                        "run {run}: ferry --no-encryption {:.0} MB/s ({})",
                        mbps(bytes, plain.secs),
                        plain.cpu(bytes)
                    );
                    unencrypted_cpu.push(plain.cpu_per_gib(bytes));
                    unencrypted_secs.push(plain.secs);
                }
                Case::NoFsync => {
                    let no_fsync = ferry_run(&input, &out_dir, &["--no-fsync"], &[]);
                    let mbps = mbps(bytes, no_fsync.secs);
                    eprintln!("run {run}: ferry --no-fsync {mbps:.0} MB/s");
                    no_fsync_secs.push(no_fsync.secs);
                }
                // The issue's own probe: verified on both ends, written like socat's (to
                // the page cache, not synced), no encryption.
                Case::PlainNoFsync => {
                    let args = (&["--no-fsync"][..], &["--no-encryption"][..]);
                    let both = ferry_run(&input, &out_dir, args.0, args.1);
                    let mbps = mbps(bytes, both.secs);
                    eprintln!("run {run}: ferry --no-encryption --no-fsync {mbps:.0} MB/s");
                    plain_no_fsync_secs.push(both.secs);
                }
                // Plain and synced like `Plain`, through the page cache (what a disk that
                // takes no direct writes gets): direct writes' gain, measured where it runs.
                Case::PlainCached => {
                    let args = (&["--no-direct-io"][..], &["--no-encryption"][..]);
                    let cached = ferry_run(&input, &out_dir, args.0, args.1);
                    eprintln!(
                        "run {run}: ferry --no-encryption, serve --no-direct-io {:.0} MB/s ({})",
                        mbps(bytes, cached.secs),
                        cached.cpu(bytes)
                    );
                    cached_cpu.push(cached.cpu_per_gib(bytes));
                    cached_secs.push(cached.secs);
                }
                Case::Nc => {
                    if let Some(secs) = pipe_run(&input, &out_dir, &NC, false) {
                        eprintln!("run {run}: nc    {:.0} MB/s", mbps(bytes, secs));
                        nc_secs.push(secs);
                    }
                }
                Case::Socat => {
                    if let Some(secs) = pipe_run(&input, &out_dir, &SOCAT, false) {
                        eprintln!("run {run}: socat {:.0} MB/s", mbps(bytes, secs));
                        socat_secs.push(secs);
                    }
                }
                Case::SocatSynced => {
                    if let Some(secs) = pipe_run(&input, &out_dir, &SOCAT, true) {
                        eprintln!("run {run}: socat, synced {:.0} MB/s", mbps(bytes, secs));
                        socat_synced_secs.push(secs);
                    }
                }
                Case::Dd => {
                    if let Some(secs) = disk_run(&input, &out_dir) {
                        eprintln!("run {run}: dd, synced {:.0} MB/s", mbps(bytes, secs));
                        disk_secs.push(secs);
                    }
                }
            }
        }
    }
    let ferry = median(&mut ferry_secs);
    println!(
        "file size            {} MiB, {runs} alternating runs, medians{}{}",
        bytes >> 20,
        if state.is_empty() {
            String::new()
        } else {
            format!(", memory {state}")
        },
        if pinned() { ", one core per end" } else { "" }
    );
    println!("ferry (encrypted)    {:>8.0} MB/s", mbps(bytes, ferry));
    let unencrypted = median(&mut unencrypted_secs);
    println!(
        "ferry --no-encryption{:>8.0} MB/s",
        mbps(bytes, unencrypted)
    );
    println!("encrypted / plain    {:>8.2}x", unencrypted / ferry);
    let (enc_sender, enc_server) = median_pair(&mut encrypted_cpu);
    let (plain_sender, plain_server) = median_pair(&mut unencrypted_cpu);
    println!(
        "CPU s per GiB        encrypted: sender {enc_sender:.2}, server {enc_server:.2}; \
         --no-encryption: sender {plain_sender:.2}, server {plain_server:.2}"
    );
    println!(
        "encryption's CPU     {:>8.2}x plain (both ends together)",
        (enc_sender + enc_server) / (plain_sender + plain_server)
    );
    let no_fsync = median(&mut no_fsync_secs);
    println!("ferry --no-fsync     {:>8.0} MB/s", mbps(bytes, no_fsync));
    println!(
        "fsync costs          {:>8.1} %",
        (ferry / no_fsync - 1.0) * 100.0
    );
    let plain_no_fsync = median(&mut plain_no_fsync_secs);
    println!(
        "ferry --no-encryption --no-fsync {:>5.0} MB/s",
        mbps(bytes, plain_no_fsync)
    );
    let cached = median(&mut cached_secs);
    let (_, cached_server) = median_pair(&mut cached_cpu);
    println!(
        "ferry --no-encryption, serve --no-direct-io {:>5.0} MB/s (synced through the page cache)",
        mbps(bytes, cached)
    );
    println!(
        "direct writes        {:>8.2}x the page cache (plain, synced; server CPU per GiB \
         {plain_server:.2} against {cached_server:.2})",
        cached / unencrypted
    );
    if nc_secs.is_empty() {
        println!("nc                   not found (apt-get install netcat-openbsd)");
    } else {
        let nc = median(&mut nc_secs);
        println!("nc                   {:>8.0} MB/s", mbps(bytes, nc));
        println!("ferry / nc           {:>8.2}x", nc / ferry);
        println!("ferry --no-encryption / nc {:>2.2}x", nc / unencrypted);
    }
    if socat_secs.is_empty() {
        println!("socat                not found (apt-get install socat)");
    } else {
        let socat = median(&mut socat_secs);
        println!("socat {SOCAT_BUFFER:<14} {:>8.0} MB/s", mbps(bytes, socat));
        println!("ferry / socat        {:>8.2}x", socat / ferry);
        println!("ferry --no-encryption / socat {:.2}x", socat / unencrypted);
        // Like for like: neither synced, or both.
        println!("ferry --no-fsync / socat {:>4.2}x", socat / no_fsync);
        println!(
            "ferry --no-encryption --no-fsync / socat {:.2}x",
            socat / plain_no_fsync
        );
        if !socat_synced_secs.is_empty() {
            let synced = median(&mut socat_synced_secs);
            println!("socat, then fdatasync{:>8.0} MB/s", mbps(bytes, synced));
            println!("ferry / synced socat {:>8.2}x", synced / ferry);
        }
        if !disk_secs.is_empty() {
            // No network, no hashing: what this disk gives a synced copy of this file (dd
            // copies, then syncs; Ferry syncs while it receives, so it can do better).
            let disk = median(&mut disk_secs);
            println!(
                "dd bs=128k conv=fdatasync {:>5.0} MB/s (a local copy, synced)",
                mbps(bytes, disk)
            );
            println!("ferry / synced dd    {:>8.2}x", disk / ferry);
            println!(
                "0.6x socat is        {:>8.2}x synced dd",
                disk / (socat / 0.6)
            );
        }
    }
    println!("server peak RSS      {:>8.1} MiB", mib(server_rss_kib));
    println!("sender peak RSS      {:>8.1} MiB", mib(sender_rss_kib));

    if concurrent > 0 {
        drop(std::fs::remove_file(&input));
        concurrent_run(work.path(), &out_dir, concurrent, concurrent_bytes);
    }
}

/// Whether `FERRY_BENCH_PIN=1`: each end on a core of its own.
fn pinned() -> bool {
    std::env::var("FERRY_BENCH_PIN").is_ok_and(|v| v == "1")
}

/// Which side of a transfer a process is, for `FERRY_BENCH_PIN`.
#[derive(Clone, Copy)]
enum Side {
    Receiver,
    Sender,
}

/// `command`, pinned to its side's CPU when `FERRY_BENCH_PIN=1` (receivers on CPU 1, senders
/// on CPU 0).
fn on_cpu(mut command: Command, side: Side) -> Command {
    use std::os::unix::process::CommandExt;
    if pinned() {
        let cpu = match side {
            Side::Receiver => 1,
            Side::Sender => 0,
        };
        // SAFETY: between fork and exec the closure only fills a cpu_set_t on the stack and
        // calls sched_setaffinity, both async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The medians of each half of `pairs`, separately.
fn median_pair(pairs: &mut [(f64, f64)]) -> (f64, f64) {
    let mut first: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let mut second: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    (median(&mut first), median(&mut second))
}

/// How a child process ended: exited with 0, its peak RSS (KiB), its CPU time (user + system).
struct Ended {
    ok: bool,
    rss_kib: u64,
    cpu_secs: f64,
}

/// Waits for `child` with `wait4`, which also returns its peak RSS and CPU time.
fn wait_with_rss(child: Child) -> Ended {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Ended {
                ok: false,
                rss_kib: 0,
                cpu_secs: 0.0,
            };
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ended {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

/// A running process's CPU time so far (user + system), from /proc/PID/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// A running `ferry serve` on 127.0.0.1 and the address it printed.
/// A config folder (device identity) of the benchmark's own for each side, never the user's.
fn config_home(side: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-bench-{side}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a config folder");
    dir
}

fn start_serve(out_dir: &Path, serve_args: &[&str]) -> (Killed, SocketAddr) {
    let mut command = on_cpu(Command::new(env!("CARGO_BIN_EXE_ferry")), Side::Receiver);
    command.env("XDG_CONFIG_HOME", config_home("receiver"));
    common::serve(command, "127.0.0.1", out_dir, serve_args).expect("start ferry serve")
}

fn spawn_send(addr: SocketAddr, file: &Path, send_args: &[&str]) -> Child {
    on_cpu(Command::new(env!("CARGO_BIN_EXE_ferry")), Side::Sender)
        .env("XDG_CONFIG_HOME", config_home("sender"))
        .args(["send", "--to", &addr.to_string()])
        .args(send_args)
        .arg(file)
        .stdout(Stdio::null())
        // Its "to ADDR: encrypted, ..." line, once per sender, would bury the figures (a
        // failed send is counted from its exit status).
        .stderr(Stdio::null())
        .spawn()
        .expect("run ferry send")
}

struct FerryRound {
    secs: f64,
    server_rss_kib: u64,
    sender_rss_kib: u64,
    server_cpu_secs: f64,
    sender_cpu_secs: f64,
}

impl FerryRound {
    /// CPU seconds per GiB moved: (sender, server).
    fn cpu_per_gib(&self, bytes: u64) -> (f64, f64) {
        let gib = bytes as f64 / (1u64 << 30) as f64;
        (self.sender_cpu_secs / gib, self.server_cpu_secs / gib)
    }

    fn cpu(&self, bytes: u64) -> String {
        let (sender, server) = self.cpu_per_gib(bytes);
        format!("CPU per GiB: sender {sender:.2} s, server {server:.2} s")
    }
}

/// One `ferry send` (with `send_args`) into a fresh `ferry serve` (with `serve_args`).
fn ferry_run(input: &Path, out_dir: &Path, serve_args: &[&str], send_args: &[&str]) -> FerryRound {
    let (serve, addr) = start_serve(out_dir, serve_args);
    let start = Instant::now();
    let sender = wait_with_rss(spawn_send(addr, input, send_args));
    let secs = start.elapsed().as_secs_f64();
    assert!(sender.ok, "ferry send failed");
    let server_rss_kib = peak_rss_kib(serve.0.id());
    let server_cpu_secs = cpu_secs(serve.0.id());
    drop(serve);
    clear(out_dir);
    FerryRound {
        secs,
        server_rss_kib,
        sender_rss_kib: sender.rss_kib,
        server_cpu_secs,
        sender_cpu_secs: sender.cpu_secs,
    }
}

/// `tool listen > file` fed by `tool send < input` on loopback (see [`common::pipe_copy`]):
/// with `sync`, until the file's data is also on disk, as Ferry's is before it says
/// "verified". None when the tool is missing or fails, or the file came short.
fn pipe_run(input: &Path, out_dir: &Path, pipe: &Pipe, sync: bool) -> Option<f64> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let received = out_dir.join(format!("{}.bin", pipe.program));
    let mut listener = on_cpu(Command::new(pipe.program), Side::Receiver);
    listener.args((pipe.listen)("127.0.0.1", port));
    let sender = || {
        let mut sender = on_cpu(Command::new(pipe.program), Side::Sender);
        sender.args((pipe.send)("127.0.0.1", port));
        sender
    };
    let secs = pipe_copy(listener, sender, input, &received, sync);
    clear(out_dir);
    if secs.is_none() {
        eprintln!("{}: no complete copy", pipe.program);
    }
    secs
}

/// A local copy of `input` with `dd`, synced (`conv=fdatasync`): no network and no hashing,
/// a yardstick for what this disk gives a file that must be on disk before it counts. `None`
/// when `dd` is missing or fails.
fn disk_run(input: &Path, out_dir: &Path) -> Option<f64> {
    let received = out_dir.join("dd.bin");
    let start = Instant::now();
    let status = on_cpu(Command::new("dd"), Side::Receiver)
        .arg(format!("if={}", input.display()))
        .arg(format!("of={}", received.display()))
        .args(["bs=128k", "conv=fdatasync"])
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let secs = start.elapsed().as_secs_f64();
    let complete = status.success()
        && std::fs::metadata(&received).ok()?.len() == std::fs::metadata(input).ok()?.len();
    clear(out_dir);
    complete.then_some(secs)
}

/// `count` concurrent `ferry send` processes (each its own file of `bytes`) into one
/// `ferry serve`: the aggregate throughput and both ends' peak RSS.
fn concurrent_run(work: &Path, out_dir: &Path, count: usize, bytes: u64) {
    let src = work.join("concurrent");
    std::fs::create_dir_all(&src).expect("concurrent dir");
    let first = src.join("upload-0.bin");
    eprintln!("writing {} MiB for {count} concurrent uploads", bytes >> 20);
    write_random(&first, bytes);
    let files: Vec<_> = (0..count)
        .map(|i| {
            let path = src.join(format!("upload-{i}.bin"));
            if i > 0 {
                // One file's bytes under many names: the page cache holds it once.
                std::fs::hard_link(&first, &path).expect("hard link");
            }
            path
        })
        .collect();
    let slots = (count + 1).to_string();
    let (serve, addr) = start_serve(
        out_dir,
        &["--max-connections", &slots, "--max-per-peer", &slots],
    );
    let start = Instant::now();
    let senders: Vec<Child> = files.iter().map(|f| spawn_send(addr, f, &[])).collect();
    let mut failed = 0;
    let mut sender_rss_kib = 0;
    for sender in senders {
        let ended = wait_with_rss(sender);
        failed += usize::from(!ended.ok);
        sender_rss_kib = sender_rss_kib.max(ended.rss_kib);
    }
    let secs = start.elapsed().as_secs_f64();
    let server_rss_kib = peak_rss_kib(serve.0.id());
    drop(serve);
    clear(out_dir);
    let total = bytes * count as u64;
    println!(
        "concurrent uploads   {count} x {} MiB into one server, {failed} failed",
        bytes >> 20
    );
    println!("  aggregate          {:>8.0} MB/s", mbps(total, secs));
    println!("  server peak RSS    {:>8.1} MiB", mib(server_rss_kib));
    println!(
        "  sender peak RSS    {:>8.1} MiB (largest of {count})",
        mib(sender_rss_kib)
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
