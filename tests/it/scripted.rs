//! Scripted ends of the Ferry wire, for tests that drive the real sender or the real server
//! frame by frame (tests/it/eager.rs, review12.rs, review13.rs, pipelined.rs): as a
//! receiver, read the sender's frames and files and write answers; as a sender, build its
//! offers and data.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ferry::events::{CancelToken, Event, event_channel};
use ferry::protocol::{
    Chunk, Header, ReceiverMsg, SenderMsg, decode_chunk_header, decode_frame_len,
    decode_sender_msg, encode_chunk_header, encode_receiver_msg, encode_sender_msg,
};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

/// The next sender frame (batch announcements skipped); `None` at the end of the stream.
pub(crate) fn next_frame(stream: &mut TcpStream) -> Option<SenderMsg> {
    loop {
        let mut prefix = [0u8; 4];
        match stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return None,
            Err(e) => panic!("reading the sender's next frame: {e}"),
        }
        let mut body = vec![0u8; decode_frame_len(prefix).unwrap()];
        stream.read_exact(&mut body).unwrap();
        match decode_sender_msg(&body).unwrap() {
            SenderMsg::Batch { .. } => continue,
            msg => return Some(msg),
        }
    }
}

pub(crate) fn answer(stream: &mut TcpStream, msg: ReceiverMsg) {
    stream
        .write_all(&encode_receiver_msg(&msg).unwrap())
        .unwrap();
}

pub(crate) fn offered(stream: &mut TcpStream) -> Header {
    match next_frame(stream) {
        Some(SenderMsg::Offer(header)) => header,
        other => panic!("expected an offer, got {other:?}"),
    }
}

pub(crate) fn accept(stream: &mut TcpStream, saved_as: &str, eager_max: Option<u64>) {
    answer(
        stream,
        ReceiverMsg::Accept {
            offset: 0,
            saved_as: saved_as.into(),
            prefix_blake3: None,
            eager_max,
        },
    );
}

pub(crate) fn verified(stream: &mut TcpStream, saved_as: &str) {
    let saved_as = saved_as.into();
    answer(stream, ReceiverMsg::Verified { saved_as });
}

/// Reads a file's chunks (`size` bytes in all) and its end; returns its bytes.
pub(crate) fn take_file(stream: &mut TcpStream, size: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < size {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).unwrap();
        let Chunk::Data(n) = decode_chunk_header(prefix).unwrap() else {
            panic!("cancel marker")
        };
        let start = bytes.len();
        bytes.resize(start + n, 0);
        stream.read_exact(&mut bytes[start..]).unwrap();
    }
    match next_frame(stream) {
        Some(SenderMsg::End { blake3 }) => assert_eq!(blake3, *blake3::hash(&bytes).as_bytes()),
        other => panic!("expected the end, got {other:?}"),
    }
    bytes
}

/// The next offer is of `name`: accepted under that name (no `eager_max`), its `size` bytes
/// taken whole; returns them.
pub(crate) fn take_offered(stream: &mut TcpStream, name: &str, size: u64) -> Vec<u8> {
    assert_eq!(offered(stream).file_name, name);
    accept(stream, name, None);
    take_file(stream, size)
}

/// Nothing arrives within `wait`: the sender is waiting for us.
pub(crate) fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        stream.peek(&mut byte),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    silent
}

/// A Ferry offer frame of a file `name` of `size` bytes, eager or not.
pub(crate) fn offer_frame(name: &str, size: usize, eager: bool) -> Vec<u8> {
    encode_sender_msg(&SenderMsg::Offer(Header {
        file_name: name.into(),
        file_size: size as u64,
        msg: String::new(),
        resume_key: None,
        eager,
    }))
    .unwrap()
}

/// `bytes` as one chunk, then the end frame with `hash` as the sender's hash.
pub(crate) fn chunk_and_end(bytes: &[u8], hash: blake3::Hash) -> Vec<u8> {
    let mut out = encode_chunk_header(bytes.len()).to_vec();
    out.extend_from_slice(bytes);
    let blake3 = *hash.as_bytes();
    out.extend(encode_sender_msg(&SenderMsg::End { blake3 }).unwrap());
    out
}

/// Sends `files` with the real sender to a scripted receiver run by `script` on the
/// accepted socket (its reads wait at most 10 s: a longer wait means the sender is waiting
/// for it, a test failure); returns the outcomes and the events the upload emitted, in order.
pub(crate) fn send_to_script_seen(
    files: &[OutgoingFile],
    script: impl FnOnce(TcpStream) + Send + 'static,
) -> (Vec<FileOutcome>, Vec<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        script(stream);
    });
    let (sink, events) = event_channel(None);
    let mut opts = SendOptions::new(addr.to_string());
    opts.answer_timeout = Duration::from_secs(20);
    let outcomes = send_files(&opts, files, &sink, &CancelToken::new()).unwrap();
    receiver.join().unwrap();
    drop(sink);
    (outcomes, events.iter().collect())
}
