//! A fresh-eyes review of the encrypted fill's whole-record wait and the progress catch-up
//! before a wait: each test here failed before the fix it came with. Real sockets on
//! 127.0.0.1, real temp folders.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::events::{Event, PROGRESS_INTERVAL, TransferEvent};

use crate::util::{data, plain_frame, plain_header, start_server, wait_for};

/// A sender whose bytes come in bursts of a fill (1 MiB, a large file's buffer) with a short
/// pause after each does not get an event per burst: the receiver shows what it holds back
/// before it waits for the sender, and it did so at once however recently it had shown a
/// figure, so every such fill ended in an event of its own (here about 30 in half a second,
/// where the throttle lets through one per 100 ms). The last figure still shows while the
/// sender stalls after its last burst.
#[test]
fn a_sender_pausing_after_every_fill_does_not_get_an_event_per_fill() {
    const BURST: usize = 1 << 20;
    const BURSTS: usize = 30;
    let dst = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dst.path());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .write_all(&plain_frame(&plain_header("脉冲.bin", 64 << 20, "")))
        .unwrap();
    let started = Instant::now();
    let burst = data(BURST, 9);
    for _ in 0..BURSTS {
        stream.write_all(&burst).unwrap();
        // The pace of the sender under test (each burst drained before the next), not a
        // synchronisation.
        std::thread::sleep(Duration::from_millis(15));
    }
    let mut shown = 0usize;
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) => {
            shown += 1;
            (*bytes_done == (BURSTS * BURST) as u64).then_some(())
        }
        _ => None,
    });
    let elapsed = started.elapsed();
    // One at the start (its offset), then at most one per interval, and the first at once.
    let allowed = 2 + (elapsed.as_millis() / PROGRESS_INTERVAL.as_millis()) as usize;
    assert!(
        shown <= allowed,
        "{shown} progress events in {elapsed:?} (at most {allowed})"
    );
    drop(stream);
}
