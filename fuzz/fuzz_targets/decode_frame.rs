//! Fuzz target: the frame and header decoders on arbitrary bytes from a hostile peer.
//!
//! Three views of the same input:
//! 1. its first 4 bytes as a data-chunk header and as a frame length prefix;
//! 2. the whole input as one frame body, decoded as a sender's and as a receiver's message;
//! 3. the whole input as a TCP stream, read the way a receiver that accepts everything at
//!    offset 0 reads it: frames, each header's `file_size` raw bytes (plain) or chunks (Ferry),
//!    until the bytes run out or something is refused.
//!
//! Nothing may panic, and every decoded value must satisfy the spec's invariants: lengths
//! within their `MAX_*`, and `decode(encode(x)) == x` for every message that decoded.

#![no_main]

use ferry_fuzz::protocol::{
    Chunk, FrameError, MAX_CHUNK_LEN, MAX_FILE_SIZE, MAX_FRAME_LEN, MessageError, SenderMsg,
    decode_chunk_header, decode_frame_len, decode_receiver_msg, decode_sender_msg,
    encode_chunk_header, encode_frame, encode_receiver_msg, encode_sender_msg, split_frame,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<4>() {
        check_prefix(*prefix);
    }
    check_sender_body(data);
    check_receiver_body(data);
    read_stream(data);
});

/// A 4-byte prefix, read both as a frame length and as a chunk header.
fn check_prefix(prefix: [u8; 4]) {
    let raw = i32::from_le_bytes(prefix);
    match decode_frame_len(prefix) {
        Ok(len) => {
            assert!(
                (1..=MAX_FRAME_LEN).contains(&len),
                "frame length {len} accepted"
            );
            assert_eq!(len as i64, raw as i64);
        }
        Err(FrameError::NotPositive(n)) => assert!(n <= 0 && n == raw),
        Err(FrameError::TooLong { len, .. }) => {
            assert!(len == raw && len as i64 > MAX_FRAME_LEN as i64)
        }
        Err(other) => panic!("frame length refused with a chunk error: {other:?}"),
    }
    match decode_chunk_header(prefix) {
        Ok(Chunk::Data(n)) => {
            assert!(
                (1..=MAX_CHUNK_LEN).contains(&n),
                "chunk length {n} accepted"
            );
            assert_eq!(
                decode_chunk_header(encode_chunk_header(n)),
                Ok(Chunk::Data(n))
            );
        }
        Ok(Chunk::Cancel) => assert_eq!(raw, 0),
        Err(FrameError::NegativeChunk(n)) => assert!(n < 0 && n == raw),
        Err(FrameError::ChunkTooLong { len, .. }) => {
            assert!(len == raw && len as i64 > MAX_CHUNK_LEN as i64)
        }
        Err(other) => panic!("chunk header refused with a frame error: {other:?}"),
    }
}

/// A frame body as a sender's message: header bounds, then the round trip.
fn check_sender_body(body: &[u8]) {
    let Ok(msg) = decode_sender_msg(body) else {
        return;
    };
    if let SenderMsg::Plain(header) | SenderMsg::Offer(header) = &msg {
        assert!(header.file_size <= MAX_FILE_SIZE, "{header:?}");
    }
    match encode_sender_msg(&msg) {
        Ok(frame) => {
            let (again, rest) = split_frame(&frame)
                .expect("an encoded frame has a valid length")
                .expect("an encoded frame is whole");
            assert!(rest.is_empty());
            assert_eq!(
                decode_sender_msg(again).as_ref(),
                Ok(&msg),
                "round trip of {msg:?}"
            );
        }
        // Re-encoding may legitimately grow a body that was near the limit (an absent `msg`
        // becomes `"msg":""`, a raw U+2028 stays raw but `\/` becomes `/`...): it must then be
        // refused as too long, never truncated.
        Err(MessageError::TooLong(len)) => assert!(len > MAX_FRAME_LEN),
        Err(other) => panic!("decoded {msg:?} but cannot encode it: {other:?}"),
    }
}

/// A frame body as a Ferry receiver's answer: the round trip.
fn check_receiver_body(body: &[u8]) {
    let Ok(msg) = decode_receiver_msg(body) else {
        return;
    };
    match encode_receiver_msg(&msg) {
        Ok(frame) => {
            let (again, rest) = split_frame(&frame)
                .expect("an encoded frame has a valid length")
                .expect("an encoded frame is whole");
            assert!(rest.is_empty());
            assert_eq!(
                decode_receiver_msg(again).as_ref(),
                Ok(&msg),
                "round trip of {msg:?}"
            );
        }
        Err(MessageError::TooLong(len)) => assert!(len > MAX_FRAME_LEN),
        Err(other) => panic!("decoded {msg:?} but cannot encode it: {other:?}"),
    }
}

/// Splits one frame off `buf`, checking `split_frame`'s contract; `None` at the end of the
/// input or on a refused prefix.
fn next_frame(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    match split_frame(buf) {
        Ok(Some((body, rest))) => {
            assert!(!body.is_empty() && body.len() <= MAX_FRAME_LEN);
            assert_eq!(4 + body.len() + rest.len(), buf.len());
            assert_eq!(&buf[4..4 + body.len()], body);
            let again = encode_frame(body).expect("a body that was split can be framed");
            assert_eq!(&again[..], &buf[..4 + body.len()]);
            check_sender_body(body);
            check_receiver_body(body);
            Some((body, rest))
        }
        Ok(None) => {
            // Only a short input is "partial": a whole prefix announcing more than is there.
            if let Some(prefix) = buf.first_chunk::<4>() {
                let len = decode_frame_len(*prefix).expect("a partial frame has a valid length");
                assert!(len > buf.len() - 4);
            }
            None
        }
        Err(_) => {
            let prefix = buf
                .first_chunk::<4>()
                .expect("an error needs a whole prefix");
            assert!(decode_frame_len(*prefix).is_err());
            None
        }
    }
}

/// Skips `n` raw bytes; `None` when the input ends first (a truncated file).
fn skip(buf: &[u8], n: u64) -> Option<&[u8]> {
    let n = usize::try_from(n).ok()?;
    buf.get(n..)
}

/// Reads `buf` as a whole connection, the way a receiver that accepts every offer does.
fn read_stream(mut buf: &[u8]) {
    // Bounded by the input: every iteration consumes at least one 4-byte prefix.
    while let Some((body, rest)) = next_frame(buf) {
        buf = rest;
        match decode_sender_msg(body) {
            Ok(SenderMsg::Plain(header)) => match skip(buf, header.file_size) {
                Some(rest) => buf = rest,
                None => return,
            },
            Ok(SenderMsg::Offer(header)) => match read_chunks(buf, header.file_size) {
                Some(rest) => buf = rest,
                None => return,
            },
            // `end`, `cancel` and later control frames carry no data; the next frame follows.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Reads the chunks of one Ferry file of `file_size` bytes; returns what follows them.
fn read_chunks(mut buf: &[u8], file_size: u64) -> Option<&[u8]> {
    let mut left = file_size;
    while left > 0 {
        let (prefix, rest) = buf.split_first_chunk::<4>()?;
        buf = rest;
        match decode_chunk_header(*prefix).ok()? {
            Chunk::Data(n) => {
                // A chunk past the announced size is a protocol error.
                if n as u64 > left {
                    return None;
                }
                buf = skip(buf, n as u64)?;
                left -= n as u64;
            }
            // The zero header: the `cancel` frame is the next frame; `read_stream` reads it.
            Chunk::Cancel => return Some(buf),
        }
    }
    Some(buf)
}
