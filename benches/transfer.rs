//! Throughput benchmark: `ferry send` -> `ferry serve` on loopback, against `nc` in the same
//! run, both writing the received file to disk. Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench --bench transfer                          # 2 GiB
//! FERRY_BENCH_BYTES=536870912 cargo bench --bench transfer
//! FERRY_BENCH_DIR=/some/disk FERRY_BENCH_RUNS=3 cargo bench --bench transfer
//! ```
//!
//! Needs `nc` (Debian: netcat-openbsd) for the comparison; without it only Ferry is measured.
//! The server's peak RSS is read from /proc (VmHWM) after the transfer. Each round also runs
//! Ferry with `serve --no-fsync`, so the cost of syncing the file before "verified" is a
//! figure of the same run.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let bytes: u64 = env_or("FERRY_BENCH_BYTES", 2 << 30);
    let runs: u32 = env_or("FERRY_BENCH_RUNS", 3);
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(&base).expect("temp dir");
    let input = work.path().join("input.bin");
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    eprintln!(
        "writing {} MiB of random data to {}",
        bytes >> 20,
        input.display()
    );
    write_random(&input, bytes);

    let mut ferry_secs = Vec::new();
    let mut no_fsync_secs = Vec::new();
    let mut nc_secs = Vec::new();
    let mut peak_rss_kib = 0;
    for run in 1..=runs {
        let (secs, rss) = ferry_run(&input, &out_dir, &[]);
        eprintln!(
            "run {run}: ferry {:.0} MB/s (server peak RSS {} MiB)",
            mbps(bytes, secs),
            rss >> 10
        );
        ferry_secs.push(secs);
        peak_rss_kib = peak_rss_kib.max(rss);
        let (secs, _) = ferry_run(&input, &out_dir, &["--no-fsync"]);
        eprintln!("run {run}: ferry --no-fsync {:.0} MB/s", mbps(bytes, secs));
        no_fsync_secs.push(secs);
        if let Some(secs) = nc_run(&input, &out_dir) {
            eprintln!("run {run}: nc    {:.0} MB/s", mbps(bytes, secs));
            nc_secs.push(secs);
        }
    }
    let ferry = median(&mut ferry_secs);
    println!(
        "file size            {} MiB, {runs} runs, medians",
        bytes >> 20
    );
    println!("ferry (verified)     {:>8.0} MB/s", mbps(bytes, ferry));
    let no_fsync = median(&mut no_fsync_secs);
    println!("ferry --no-fsync     {:>8.0} MB/s", mbps(bytes, no_fsync));
    println!(
        "fsync costs          {:>8.1} %",
        (ferry / no_fsync - 1.0) * 100.0
    );
    if nc_secs.is_empty() {
        println!("nc                   not found (apt-get install netcat-openbsd)");
    } else {
        let nc = median(&mut nc_secs);
        println!("nc                   {:>8.0} MB/s", mbps(bytes, nc));
        println!("ferry / nc           {:>8.2}x", nc / ferry);
    }
    println!(
        "server peak RSS      {:>8.1} MiB",
        peak_rss_kib as f64 / 1024.0
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn write_random(path: &Path, bytes: u64) {
    let mut file =
        std::io::BufWriter::with_capacity(1 << 20, File::create(path).expect("create input"));
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write input");
        left -= n as u64;
    }
    file.flush().expect("flush input");
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `ferry send` into a fresh `ferry serve` (with `serve_args`); returns (seconds, server
/// peak RSS in KiB).
fn ferry_run(input: &Path, out_dir: &Path, serve_args: &[&str]) -> (f64, u64) {
    let exe = env!("CARGO_BIN_EXE_ferry");
    let mut serve = Command::new(exe)
        .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(out_dir)
        .args(serve_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry serve");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let serve = Killed(serve);
    let first = lines
        .next()
        .expect("serve prints its address")
        .expect("utf-8");
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("address");
    let start = Instant::now();
    let status = Command::new(exe)
        .args(["send", "--to", &addr.to_string()])
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .expect("run ferry send");
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "ferry send failed");
    let rss = peak_rss_kib(serve.0.id());
    drop(serve);
    clear(out_dir);
    (secs, rss)
}

/// `nc -l > file` fed by `nc -N < input`; timed until the listener has written everything.
fn nc_run(input: &Path, out_dir: &Path) -> Option<f64> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port()
        .to_string();
    let output = File::create(out_dir.join("nc.bin")).ok()?;
    let listener = Command::new("nc")
        .args(["-l", "127.0.0.1", &port])
        .stdout(output)
        .spawn()
        .ok()?;
    let mut listener = Killed(listener);
    // Wait until the listener is up: connect attempts with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = loop {
        let start = Instant::now();
        let status = Command::new("nc")
            .args(["-N", "127.0.0.1", &port])
            .stdin(File::open(input).ok()?)
            .status()
            .ok()?;
        if status.success() {
            break start;
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    listener.0.wait().ok()?;
    let secs = start.elapsed().as_secs_f64();
    clear(out_dir);
    Some(secs)
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

fn clear(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
}
