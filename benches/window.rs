//! Window frame-time benchmark (issue 14, "a window that stays smooth under load"): the real
//! [`FerryApp`] driven headless by egui_kittest, its real server listening on 127.0.0.1 port 0,
//! fed by concurrent plain uploads from loopback threads at full rate, so the engine's real
//! event stream (Started, Progress, Finished for every transfer) reaches the window. Prints
//! figures; asserts nothing.
//!
//! ```text
//! cargo bench --bench window
//! FERRY_BENCH_WINDOW_TRANSFERS=32 FERRY_BENCH_WINDOW_BYTES=67108864 \
//!     FERRY_BENCH_IDLE_SECS=3 FERRY_BENCH_SYNTHETIC_SECS=5 cargo bench --bench window
//! ```
//!
//! The loop imitates eframe's: a frame runs only when one was requested (by the frame
//! before, through `repaint_delay`, or by the engine's waker through the repaint callback).
//! Each frame (`Harness::step`: the app's logic and ui, plus the harness's AccessKit
//! update; no GPU rendering) is timed in wall time and in this thread's CPU time
//! (CLOCK_THREAD_CPUTIME_ID). Then, with nothing happening, it counts the frames requested
//! over a few seconds: the idle window should request none. Last, the same window is fed a
//! synthetic event stream at full rate for `FERRY_BENCH_SYNTHETIC_SECS` (default 5; 0
//! skips it): 32 transfers' progress as fast as the channel takes it, and a transfer
//! finished and another started every 10 ms, so the history grows by 100 rows a second.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use ferry::app::{FerryApp, NoPicker, ServerStatus, Settings};
use ferry::events::{Direction, EventSink, Security, TransferEvent, next_transfer_id};
use ferry::protocol::Mode;

/// When the next frame is due: the earliest repaint asked for through the context's
/// callback (the engine's waker calls it from its threads).
type Due = Arc<Mutex<Option<Instant>>>;

fn main() {
    let transfers: usize = env_or("FERRY_BENCH_WINDOW_TRANSFERS", 32);
    let bytes: u64 = env_or("FERRY_BENCH_WINDOW_BYTES", 64 << 20);
    let idle_secs: f64 = env_or("FERRY_BENCH_IDLE_SECS", 3.0);
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        lang: Some(ferry::app::i18n::Lang::En),
        server_listening: true,
        accept_policy: Some(ferry::app::PolicyChoice::Everyone),
        server_bind: "127.0.0.1".into(),
        server_port: "0".into(),
        download_dir: dir.path().to_owned(),
        notes_port: "0".into(),
        // Discovery would use the user's config folder and the LAN.
        discovery: false,
        ..Settings::default()
    };
    let mut harness = Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).expect("app")
        });
    let due: Due = Arc::new(Mutex::new(None));
    {
        let due = due.clone();
        harness.ctx.set_request_repaint_callback(move |info| {
            let at = Instant::now() + info.delay;
            let mut due = due.lock().expect("lock");
            *due = Some(due.map_or(at, |d| d.min(at)));
        });
    }
    let epoch = Instant::now();
    let mut frames = Frames::default();

    // Until the server listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        frame(&mut harness, &due, epoch, &mut Frames::default());
        if let ServerStatus::Listening(addr) = harness.state().server.status {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "the window's server never listened"
        );
        std::thread::sleep(Duration::from_millis(5));
    };

    eprintln!(
        "{transfers} plain uploads of {} MiB each into the window's server at {addr}",
        bytes >> 20
    );
    let start = Instant::now();
    let senders: Vec<_> = (0..transfers)
        .map(|i| std::thread::spawn(move || upload(addr, i, bytes)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // A sender that failed never gets a row: then done once every sender has returned
        // and a frame has taken in what the engine reported before.
        let senders_done = senders.iter().all(|s| s.is_finished());
        if senders_done && harness.state().server.rows.len() < transfers {
            frame(&mut harness, &due, epoch, &mut frames);
        }
        let rows = &harness.state().server.rows;
        let all_in = rows.len() >= transfers || senders_done;
        if all_in && rows.iter().all(|r| r.state.is_finished()) {
            break;
        }
        assert!(Instant::now() < deadline, "the uploads did not finish");
        run_if_due(&mut harness, &due, epoch, &mut frames);
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = senders
        .into_iter()
        .map(|s| s.join().map_or(true, |r| r.is_err()))
        .filter(|&f| f)
        .count();
    let rows = harness.state().server.rows.len();
    println!(
        "under load           {transfers} uploads x {} MiB, {:.1} s, {:.0} MB/s aggregate, \
         {rows} rows, {failed} senders failed",
        bytes >> 20,
        secs,
        (bytes * transfers as u64) as f64 / 1e6 / secs
    );
    frames.report(secs);

    // Let the last requested frames run, then count what the idle window asks for.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        run_if_due(&mut harness, &due, epoch, &mut Frames::default());
    }
    let mut idle = Frames::default();
    let idle_start = Instant::now();
    while idle_start.elapsed().as_secs_f64() < idle_secs {
        run_if_due(&mut harness, &due, epoch, &mut idle);
    }
    // `0.0 +`: an empty sum is -0.0.
    let idle_cpu_ms = 0.0 + idle.cpu_ms.iter().sum::<f64>();
    println!(
        "idle                 {} frames requested in {idle_secs:.1} s ({:.1} per s), \
         {idle_cpu_ms:.2} ms CPU in them ({:.3} % of one core)",
        idle.wall_ms.len(),
        idle.wall_ms.len() as f64 / idle_secs,
        idle_cpu_ms / (idle_secs * 1000.0) * 100.0
    );

    let synthetic_secs: f64 = env_or("FERRY_BENCH_SYNTHETIC_SECS", 5.0);
    if synthetic_secs > 0.0 {
        synthetic(&mut harness, &due, epoch, transfers, synthetic_secs);
    }
}

/// How often the synthetic stream finishes one transfer and starts another (100 new rows a
/// second: a long session's history piles up while it runs).
const SYNTHETIC_CHURN: Duration = Duration::from_millis(10);

/// The window fed a synthetic event stream at full rate for `secs`: `live` incoming
/// transfers in flight all the time, each one's progress reported as fast as the channel
/// takes it (the engine's progress is lossy: a full channel drops it, as it would the
/// engine's), one finished and a new one started every [`SYNTHETIC_CHURN`].
fn synthetic(
    harness: &mut Harness<'_, FerryApp>,
    due: &Due,
    epoch: Instant,
    live: usize,
    secs: f64,
) {
    let sink = harness.state().event_sink();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || feed(&sink, live, &stop))
    };
    let rows_before = harness.state().server.rows.len();
    let mut frames = Frames::default();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        run_if_due(harness, due, epoch, &mut frames);
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    // A lifecycle event waits for room in the channel, as the engine's do: keep the window
    // draining it until the feeder has returned.
    while !feeder.is_finished() {
        run_if_due(harness, due, epoch, &mut Frames::default());
    }
    let fed = feeder.join().expect("feeder");
    println!(
        "synthetic stream     {live} transfers in flight, {} progress events offered in \
         {secs:.1} s ({:.0} per s), {} finished, {} rows at the end (from {rows_before})",
        fed.progress,
        fed.progress as f64 / secs,
        fed.finished,
        harness.state().server.rows.len()
    );
    frames.report(secs);
}

/// What [`feed`] sent.
struct Fed {
    progress: u64,
    finished: u64,
}

fn feed(sink: &EventSink, live: usize, stop: &AtomicBool) -> Fed {
    const SIZE: u64 = 64 << 20;
    let peer = SocketAddr::from(([127, 0, 0, 2], 40_000));
    let started = |i: u64| {
        let id = next_transfer_id();
        sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer,
            name: format!("synthetic-{i}.bin"),
            saved_as: None,
            bytes_total: SIZE,
            mode: Mode::Ferry,
            msg: "synthetic".into(),
            security: Security::Plain,
        });
        (id, 0u64)
    };
    let mut count = 0;
    let mut transfers: Vec<(u64, u64)> = (0..live)
        .map(|_| {
            count += 1;
            started(count)
        })
        .collect();
    let mut fed = Fed {
        progress: 0,
        finished: 0,
    };
    let mut next_churn = Instant::now() + SYNTHETIC_CHURN;
    while !stop.load(Ordering::Relaxed) {
        for (id, done) in &mut transfers {
            *done = (*done + 4096) % SIZE;
            sink.transfer(TransferEvent::Progress {
                id: *id,
                bytes_done: *done,
            });
            fed.progress += 1;
        }
        if Instant::now() >= next_churn {
            next_churn += SYNTHETIC_CHURN;
            let slot = (fed.finished as usize) % transfers.len();
            sink.transfer(TransferEvent::Finished {
                id: transfers[slot].0,
                verified: true,
                saved_as: None,
                path: None,
            });
            fed.finished += 1;
            count += 1;
            transfers[slot] = started(count);
        }
    }
    fed
}

/// Runs one frame when one is due, else waits a little (the poll interval of this loop).
fn run_if_due(harness: &mut Harness<'_, FerryApp>, due: &Due, epoch: Instant, f: &mut Frames) {
    let now = Instant::now();
    let is_due = due.lock().expect("lock").is_some_and(|at| at <= now);
    if is_due {
        frame(harness, due, epoch, f);
    } else {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One timed frame; afterwards, the frame's own repaint request decides the next one.
fn frame(harness: &mut Harness<'_, FerryApp>, due: &Due, epoch: Instant, f: &mut Frames) {
    *due.lock().expect("lock") = None;
    harness.input_mut().time = Some(epoch.elapsed().as_secs_f64());
    let cpu = thread_cpu();
    let wall = Instant::now();
    harness.step();
    f.wall_ms.push(wall.elapsed().as_secs_f64() * 1000.0);
    f.cpu_ms.push((thread_cpu() - cpu).as_secs_f64() * 1000.0);
    let delay = harness
        .output()
        .viewport_output
        .get(&egui::ViewportId::ROOT)
        .map(|v| v.repaint_delay)
        .unwrap_or(Duration::MAX);
    if let Some(at) = Instant::now().checked_add(delay) {
        let mut due = due.lock().expect("lock");
        *due = Some(due.map_or(at, |d| d.min(at)));
    }
}

#[derive(Default)]
struct Frames {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
}

impl Frames {
    fn report(&mut self, secs: f64) {
        println!(
            "frames               {} ({:.1} per s)",
            self.wall_ms.len(),
            self.wall_ms.len() as f64 / secs
        );
        for (what, values) in [("wall", &mut self.wall_ms), ("CPU", &mut self.cpu_ms)] {
            if values.is_empty() {
                continue;
            }
            values.sort_by(f64::total_cmp);
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            println!(
                "frame {what:<4} ms        median {:.2}  p99 {:.2}  max {:.2}",
                at(0.5),
                at(0.99),
                at(1.0)
            );
        }
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One plain upload (`[i32 LE len][JSON header][bytes]`) from its own loopback address
/// 127.0.0.(2 + i), so the server's per-address limit does not refuse it.
fn upload(addr: SocketAddr, i: usize, bytes: u64) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from = SocketAddr::from(([127, 0, (i / 200) as u8, 2 + (i % 200) as u8], 0));
    socket.bind(&from.into())?;
    socket.connect(&addr.into())?;
    let mut stream: std::net::TcpStream = socket.into();
    let header = serde_json::json!({
        "file_name": format!("bench-{i}.bin"),
        "file_size": bytes,
        "msg": "window benchmark",
    })
    .to_string();
    stream.write_all(&(header.len() as i32).to_le_bytes())?;
    stream.write_all(header.as_bytes())?;
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    // Until the server closes, so nothing it sends is reset by an early close.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
