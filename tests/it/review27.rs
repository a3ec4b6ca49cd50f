//! Found in the review of direct writes (large synced uploads written with `O_DIRECT` from
//! buffers of a writer thread of their own): each test here failed before the fix it came
//! with. Real sockets on 127.0.0.1, real temp folders.

use std::io::Write;
use std::net::TcpStream;

use ferry::events::{Event, TransferEvent};

use crate::util::{data, file_len, find_part, plain_frame, plain_header, start_server, wait_for};

/// Waits for the progress event that shows `bytes`.
fn wait_progress(events: &crossbeam_channel::Receiver<Event>, bytes: u64) {
    wait_for(events, |e| match e {
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) if *bytes_done == bytes => {
            Some(())
        }
        _ => None,
    });
}

/// A large upload's sender that stops after a whole buffer's worth has every byte of it on
/// the file by the time the progress shows it. A full fill was handed to the direct writer
/// without a flush, so the progress showed bytes still in its buffers: after 100 000 bytes
/// and then 1 MiB, the last piece of a block stayed off the file until more came.
#[test]
fn a_large_uploads_progress_shows_only_bytes_on_the_file() {
    const FIRST: u64 = 100_000;
    const THEN: u64 = 1 << 20;
    let dst = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dst.path());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .write_all(&plain_frame(&plain_header("big.bin", 256 << 20, "")))
        .unwrap();
    let sent = data((FIRST + THEN) as usize, 9);
    stream.write_all(&sent[..FIRST as usize]).unwrap();
    wait_progress(&events, FIRST);
    // A whole 1 MiB buffer's worth, then nothing more.
    stream.write_all(&sent[FIRST as usize..]).unwrap();
    wait_progress(&events, FIRST + THEN);
    let part = find_part(dst.path(), "big.bin").expect("a part file");
    assert_eq!(
        file_len(&part),
        FIRST + THEN,
        "shown before it was on the file"
    );
    assert!(std::fs::read(&part).unwrap() == sent, "the bytes differ");
    drop(stream);
}
