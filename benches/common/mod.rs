//! What the benchmarks that run processes share: settings from the environment, medians,
//! random input files and children that are killed when dropped.

#![allow(dead_code)] // each benchmark uses its own part

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `socat`'s buffer size in the comparisons: 1 MiB reads and writes.
pub const SOCAT_BUFFER: &str = "-b1048576";

/// A plain copy tool: how to listen on `host` and `port` writing stdout to a file, how to
/// send stdin there.
pub struct Pipe {
    pub program: &'static str,
    pub listen: fn(&str, u16) -> Vec<String>,
    pub send: fn(&str, u16) -> Vec<String>,
}

pub const NC: Pipe = Pipe {
    program: "nc",
    listen: |host, port| vec!["-l".into(), host.into(), port.to_string()],
    send: |host, port| vec!["-N".into(), host.into(), port.to_string()],
};

pub const SOCAT: Pipe = Pipe {
    program: "socat",
    listen: |host, port| {
        vec![
            SOCAT_BUFFER.into(),
            "-u".into(),
            format!("TCP-LISTEN:{port},bind={host},reuseaddr"),
            "STDOUT".into(),
        ]
    },
    send: |host, port| {
        vec![
            SOCAT_BUFFER.into(),
            "-u".into(),
            "STDIN".into(),
            format!("TCP:{host}:{port}"),
        ]
    },
};

/// Runs `listener` with its stdout into `received`, then `sender()` with `input` as its
/// stdin until it connects (attempts for up to 10 s); timed from the successful attempt until
/// the listener has written everything (with `sync`, until the data is on disk too). `None`
/// when either fails or the copy came short (a short copy would be a fast one).
pub fn pipe_copy(
    mut listener: Command,
    mut sender: impl FnMut() -> Command,
    input: &Path,
    received: &Path,
    sync: bool,
) -> Option<f64> {
    let listener = listener
        .stdout(File::create(received).ok()?)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut listener = Killed(listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = loop {
        let start = Instant::now();
        let status = sender()
            .stdin(File::open(input).ok()?)
            .stderr(Stdio::null())
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
    if sync {
        File::open(received).ok()?.sync_data().ok()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let complete = std::fs::metadata(received).ok()?.len() == std::fs::metadata(input).ok()?.len();
    complete.then_some(secs)
}

/// The value of environment variable `name`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Megabytes (10^6) per second.
pub fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes `bytes` of pseudo-random data (incompressible, cheap to make) to `path`.
pub fn write_random(path: &Path, bytes: u64) {
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

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes every file in `dir`, and lets the file system finish with them before the next
/// case is timed.
pub fn clear(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    settle(dir);
}

/// Commits the file system holding `dir` (`syncfs`). Deleting a file whose blocks were
/// written leaves work for the next journal commit: freeing its extents and, on a file system
/// mounted with `discard` (this machine's), trimming them, 0.2 s for a GiB here. Without
/// this the next case that syncs (forcing that commit) paid for the previous case's file,
/// and with the cases in a fixed cycle it was always the same one: Ferry right after the
/// synced `dd` measured 0.9-1.1 GB/s, 1.7 GB/s when it ran first.
pub fn settle(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = rustix::fs::syncfs(&dir);
    }
}

/// A temp folder in `FERRY_BENCH_DIR` (or the system's) holding `bytes` of random input
/// (`input.bin`) and an empty `out` folder for what is received: (folder, input, out).
pub fn workspace(bytes: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(PathBuf::from)
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
    (work, input, out_dir)
}

/// `ferry serve` run by `command` (the `ferry` binary, wrapped and set up as the caller
/// needs) on `bind`, port 0, saving into `out_dir`, with `serve_args`; the server and the
/// address it printed. Its stdout is drained on a thread of its own after that first line,
/// so a chatty server never blocks on a full pipe. `None` when it did not start.
pub fn serve(
    mut command: Command,
    bind: &str,
    out_dir: &Path,
    serve_args: &[&str],
) -> Option<(Killed, SocketAddr)> {
    command
        .args([
            "serve",
            "--bind",
            bind,
            "--port",
            "0",
            "--no-localsend",
            "--dir",
        ])
        .arg(out_dir)
        .args(serve_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().ok()?;
    let stdout = child.stdout.take()?;
    let serve = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = lines
        .next()?
        .ok()?
        .split_whitespace()
        .find_map(|w| w.parse().ok())?;
    std::thread::spawn(move || lines.for_each(drop));
    Some((serve, addr))
}
