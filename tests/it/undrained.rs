//! A caller that holds a server's event channel but stops reading it (a frozen consumer, or
//! one that forgot to) does not make stopping the server hang: a thread waiting for room in
//! the channel gives up once the server stops.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::events::EVENT_CAPACITY;

use crate::util::*;

#[test]
fn stopping_a_server_whose_events_nobody_reads_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let addr = server.local_addr();
    // Empty plain files on one connection: two lifecycle events each (started, finished),
    // more than the channel holds, and nobody reads them.
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut frames = Vec::new();
    for i in 0..EVENT_CAPACITY {
        frames.extend(plain_frame(&plain_header(&format!("empty-{i}.txt"), 0, "")));
    }
    // The server stops reading once it waits for room: the rest stays in the socket buffers.
    let writer = std::thread::spawn(move || {
        let _ = stream.write_all(&frames);
        stream
    });
    let deadline = Instant::now() + DEADLINE;
    while events.len() < EVENT_CAPACITY {
        assert!(Instant::now() < deadline, "the channel never filled");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        server.stop();
        let _ = stopped_tx.send(());
    });
    assert!(
        stopped.recv_timeout(DEADLINE).is_ok(),
        "stopping the server waited for a consumer that never reads"
    );
    drop(writer.join());
    drop(events);
}
