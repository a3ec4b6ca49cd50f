//! An idle `ferry serve` sleeps. Its discovery thread once selected on the channel of an mDNS
//! daemon that was never started (loopback only, or mDNS failing to start): a closed channel
//! is always ready, so the thread spun at full CPU for as long as the server ran, and every
//! upload shared its two cores with it.

use std::time::{Duration, Instant};

use crate::util::spawn_serve;

/// The process's CPU time so far (user + system), from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("its /proc stat");
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th of them, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').expect("a command name").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn an_idle_server_with_discovery_on_loopback_uses_almost_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _addr, _lines) = spawn_serve(dir.path(), &[]);
    let pid = serve.0.id();
    let (start, before) = (Instant::now(), cpu_secs(pid));
    // A window to measure over, not a wait for something to happen.
    std::thread::sleep(Duration::from_secs(2));
    let (wall, used) = (start.elapsed().as_secs_f64(), cpu_secs(pid) - before);
    // Spinning, one thread takes a whole core (at least a third of one on a busy machine);
    // idle, a beacon every few seconds takes next to nothing.
    assert!(
        used < 0.1 * wall,
        "an idle server used {used:.2} s of CPU in {wall:.2} s"
    );
}
