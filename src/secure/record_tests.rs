//! The record layer over in-memory streams: records sealed in place and copied read back
//! whole through every buffer size and every way the stream can split them, and tampering
//! and truncation caught wherever they fall.

use std::io::{self, IoSliceMut, Read, Write};

use super::*;
use crate::secure::handshake::Cipher;

/// The two ends' keys for a session (any 32 bytes make a valid pair).
fn keys() -> (TransportKeys, TransportKeys) {
    let split = || ([7u8; 32], [9u8; 32]);
    let (mut a1, mut a2) = split();
    let (mut b1, mut b2) = split();
    (
        TransportKeys::from_split(Cipher::AesGcm, true, (&mut a1, &mut a2)).unwrap(),
        TransportKeys::from_split(Cipher::AesGcm, false, (&mut b1, &mut b2)).unwrap(),
    )
}

fn peer() -> PeerInfo {
    PeerInfo {
        public_key: [0; 32],
        name: "test".into(),
        paired: false,
    }
}

/// Bytes handed out at most `max` per read, vectored reads included.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    max: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_vectored(&mut [IoSliceMut::new(buf)])
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for buf in bufs {
            let n = buf
                .len()
                .min(self.max - total)
                .min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            total += n;
        }
        Ok(total)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A session's wire bytes: small writes and in-place chunks mixed, then close. Returns the
/// wire and the plaintext it carries.
fn session() -> (Vec<u8>, Vec<u8>) {
    let (sender, _) = keys();
    let mut stream = SecureStream::new(Vec::new(), sender, peer());
    let mut plain = Vec::new();
    let mut small = |stream: &mut SecureStream<Vec<u8>>, bytes: &[u8]| {
        stream.write_all(bytes).unwrap();
        plain.extend_from_slice(bytes);
    };
    small(&mut stream, b"a frame");
    let mut chunks = Vec::new();
    for (len, seed) in [
        (200_000, 1),
        (MAX_RECORD_PLAINTEXT, 2),
        (10, 3),
        (1 << 20, 4),
    ] {
        chunks.push(pattern(len, seed));
    }
    let (mut writer, mut tail) = (Vec::new(), Vec::new());
    for (i, chunk) in chunks.iter().enumerate() {
        let mut data = chunk.clone();
        stream.write_in_place_for_test(&mut data);
        assert_ne!(data, *chunk, "sealed where it lies");
        writer.extend_from_slice(chunk);
        if i == 1 {
            writer.extend_from_slice(b"between");
            stream.write_all(b"between").unwrap();
        }
    }
    tail.extend_from_slice(b"the end");
    stream.write_all(&tail).unwrap();
    stream.close().unwrap();
    plain.extend_from_slice(&writer);
    plain.extend_from_slice(&tail);
    (stream.get_ref().clone(), plain)
}

impl SecureStream<Vec<u8>> {
    fn write_in_place_for_test(&mut self, data: &mut [u8]) {
        self.outbound
            .write_in_place(&self.keys.send, &mut self.inner, data)
            .unwrap();
    }
}

/// Reads `wire` to its close record with `buf_len`-byte reads, `max` bytes per inner read.
fn read_back(wire: &[u8], buf_len: usize, max: usize) -> (Vec<u8>, Option<io::Error>) {
    let (_, receiver) = keys();
    let inner = Trickle {
        data: wire.to_vec(),
        pos: 0,
        max,
    };
    let mut stream = SecureStream::new(inner, receiver, peer());
    let (mut got, mut buf) = (Vec::new(), vec![0u8; buf_len]);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                assert!(stream.peer_closed());
                return (got, None);
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                // Whatever follows in the stream, nothing more comes out of it.
                for _ in 0..3 {
                    assert!(
                        stream.read(&mut buf).is_err(),
                        "a failed stream stays failed"
                    );
                }
                return (got, Some(e));
            }
        }
    }
}

#[test]
fn every_buffer_size_and_every_split_of_the_stream_reads_back_the_same_bytes() {
    let (wire, plain) = session();
    for buf_len in [
        1,
        17,
        MAX_RECORD_PLAINTEXT - 1,
        MAX_RECORD_PLAINTEXT,
        100_000,
        1 << 20,
    ] {
        for max in [1, 7, 65_537, AHEAD_LEN - 1, usize::MAX] {
            let (got, error) = read_back(&wire, buf_len, max);
            assert!(error.is_none(), "{buf_len}/{max}: {error:?}");
            assert!(got == plain, "{buf_len}/{max}: different bytes");
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_tampered_and_the_stream_stays_failed() {
    let (wire, plain) = session();
    for at in [3, 40, 70_000, 200_050, wire.len() / 2, wire.len() - 5] {
        let mut bad = wire.clone();
        bad[at] ^= 0x10;
        let (got, error) = read_back(&bad, 100_000, usize::MAX);
        let error = error.unwrap_or_else(|| panic!("flip at {at} went unnoticed"));
        // A flipped length byte may also read as a cut stream; never as other bytes.
        let reason = SecureError::from_io(&error).map(|e| e.to_string());
        assert!(
            matches!(
                SecureError::from_io(&error),
                Some(SecureError::Tampered | SecureError::Truncated)
            ),
            "flip at {at}: {reason:?}"
        );
        assert!(
            plain.starts_with(&got),
            "flip at {at}: only authentic bytes"
        );
    }
}

/// A record opened straight into the caller's buffer leaves nothing of itself there when its
/// tag fails: neither its ciphertext nor the unauthenticated plaintext the cipher made.
#[test]
fn a_tampered_record_leaves_no_plaintext_in_a_buffer_it_was_opened_into() {
    let (sender, receiver) = keys();
    let mut stream = SecureStream::new(Vec::new(), sender, peer());
    let plain = pattern(50_000, 5);
    stream.write_in_place_for_test(&mut plain.clone());
    let mut wire = stream.get_ref().clone();
    let last = wire.len() - 1;
    wire[last] ^= 1; // the tag's last byte: the body still decrypts to `plain`
    let inner = Trickle {
        data: wire,
        pos: 0,
        max: usize::MAX,
    };
    let mut stream = SecureStream::new(inner, receiver, peer());
    let mut buf = vec![0xAAu8; 1 << 20];
    let error = stream.read(&mut buf).unwrap_err();
    assert!(matches!(
        SecureError::from_io(&error),
        Some(SecureError::Tampered)
    ));
    assert!(
        buf[..plain.len()].iter().all(|&b| b == 0),
        "the record's bytes are wiped from the caller's buffer"
    );
    assert!(
        buf[plain.len()..].iter().all(|&b| b == 0xAA),
        "and nothing past them touched"
    );
}

#[test]
fn a_stream_cut_anywhere_before_the_close_record_is_truncated() {
    let (wire, plain) = session();
    for cut in [
        0,
        1,
        2,
        10,
        30,
        65_600,
        200_100,
        wire.len() - 20,
        wire.len() - 1,
    ] {
        let (got, error) = read_back(&wire[..cut], 100_000, 7_000);
        let error = error.unwrap_or_else(|| panic!("cut at {cut} went unnoticed"));
        assert!(
            matches!(SecureError::from_io(&error), Some(SecureError::Truncated)),
            "cut at {cut}: {error}"
        );
        assert!(
            plain.starts_with(&got),
            "cut at {cut}: only authentic bytes"
        );
    }
}

/// One record as a hostile peer may frame it: `len` as its length, `body` after it.
fn framed(len: u16, body: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn hostile_lengths_are_tampered_or_truncated_never_a_panic_or_bytes() {
    let (wire, plain) = session();
    // The first record of the session, whole, then something no sender makes.
    let first = 2 + usize::from(u16::from_be_bytes([wire[0], wire[1]]));
    for (tail, expect_tampered) in [
        (framed(0, &[]), true),
        (framed(1, &[0]), true),
        (framed(15, &[0; 15]), true),
        // Too short to hold a tag: refused before the rest is waited for.
        (framed(15, &[]), true),
        (framed(u16::MAX, &vec![0xA5; 65_535]), true),
        (framed(u16::MAX, &vec![0xA5; 1_000]), false),
        (framed(u16::MAX, &[]), false),
        (vec![0x01], false),
    ] {
        let mut bad = wire[..first].to_vec();
        bad.extend_from_slice(&tail);
        for max in [1, 3, 65_536, usize::MAX] {
            let (got, error) = read_back(&bad, 70_000, max);
            let error = error.expect("a hostile record goes unnoticed");
            let expected = if expect_tampered {
                SecureError::Tampered
            } else {
                SecureError::Truncated
            };
            assert_eq!(
                SecureError::from_io(&error).map(ToString::to_string),
                Some(expected.to_string()),
                "{:?}.. read {max} at a time",
                &tail[..tail.len().min(4)]
            );
            assert_eq!(got, plain[..got.len()], "only the authentic first record");
            assert_eq!(got, b"a frame");
        }
    }
}

#[test]
fn split_keeps_the_ciphertext_read_ahead_and_refuses_held_plaintext() {
    let (wire, plain) = session();
    let open = |max| {
        let (_, receiver) = keys();
        let inner = Trickle {
            data: wire.clone(),
            pos: 0,
            max,
        };
        SecureStream::new(inner, receiver, peer())
    };
    // Plaintext still held: refused, nothing lost.
    let mut stream = open(usize::MAX);
    let mut three = [0u8; 3];
    stream.read_exact(&mut three).unwrap();
    assert!(matches!(
        stream.split(|s| Ok::<_, io::Error>((s, Vec::<u8>::new()))),
        Err(SplitError::Buffered)
    ));
    // The first record read whole, the rest of a quarter MiB read ahead with it: the reader
    // half goes on from there.
    for max in [7, usize::MAX] {
        let mut stream = open(max);
        let mut first = [0u8; 7];
        stream.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"a frame");
        let Ok((mut reader, _writer)) = stream.split(|s| Ok::<_, io::Error>((s, Vec::<u8>::new())))
        else {
            panic!("split refused");
        };
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(reader.peer_closed());
        assert!(
            rest == plain[7..],
            "{max}: the bytes after the split differ"
        );
    }
}

/// Two records as the wire carries them: `one`, then `two`.
fn one_two_wire() -> Vec<u8> {
    let (sender, _) = keys();
    let mut writer = SecureStream::new(Vec::new(), sender, peer());
    writer.write_all(b"one").unwrap();
    writer.flush().unwrap();
    writer.write_all(b"two").unwrap();
    writer.flush().unwrap();
    writer.get_ref().clone()
}

/// A receiver batching verified files asks how much more of the stream a read needs before
/// it hands out the sender's next bytes: none while plaintext or a whole record is read
/// ahead, the rest of the record while part of one is.
#[test]
fn the_reader_says_how_many_bytes_its_next_read_waits_for() {
    let wire = one_two_wire();
    let record = wire.len() / 2;
    let nothing = |_: &mut [u8]| 0;
    for max in [usize::MAX, 1] {
        let inner = Trickle {
            data: wire.clone(),
            pos: 0,
            max,
        };
        let (_, receiver) = keys();
        let stream = SecureStream::new(inner, receiver, peer());
        let Ok((mut reader, _writer)) = stream.split(|s| Ok::<_, io::Error>((s, Vec::<u8>::new())))
        else {
            panic!("split refused");
        };
        // Nothing read ahead: the length first, or the whole record once a peek shows it.
        assert_eq!(reader.bytes_short(nothing), 2, "nothing read yet");
        let first_length = |next: &mut [u8]| {
            next.copy_from_slice(&wire[..next.len()]);
            next.len()
        };
        assert_eq!(reader.bytes_short(first_length), record);
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).unwrap();
        assert_eq!(
            reader.bytes_short(nothing),
            0,
            "{max}: a byte of the first record's plaintext"
        );
        let mut one = [0u8; 1];
        reader.read_exact(&mut one).unwrap();
        // Read in one go, the second record came with the first; byte by byte, none of it
        // did (reads stop once a record is whole): its length comes first.
        let short = reader.bytes_short(nothing);
        assert_eq!(short, if max == usize::MAX { 0 } else { 2 }, "{max}");
        let mut three = [0u8; 3];
        reader.read_exact(&mut three).unwrap();
        assert_eq!(&three, b"two");
        assert_eq!(reader.bytes_short(nothing), 2, "{max}: all read");
    }
}

/// Part of a record read ahead is no byte a read could hand out without waiting: a receiver
/// that took it for one kept reading (and kept what it held from the disk and the progress)
/// until the rest came, however long the sender stalled.
#[test]
fn part_of_a_record_read_ahead_is_not_a_byte_waiting() {
    let wire = one_two_wire();
    let record = wire.len() / 2;
    for missing in [1, record - 1, record] {
        // The first read brings the first record and the second but its last `missing` bytes.
        let inner = Trickle {
            data: wire[..2 * record - missing].to_vec(),
            pos: 0,
            max: usize::MAX,
        };
        let (_, receiver) = keys();
        let mut reader = SecureStream::new(inner, receiver, peer());
        let mut three = [0u8; 3];
        reader.read_exact(&mut three).unwrap();
        assert_eq!(&three, b"one");
        let Ok((reader, _writer)) = reader.split(|s| Ok::<_, io::Error>((s, Vec::<u8>::new())))
        else {
            panic!("split refused");
        };
        // With its length read ahead (one byte of it here is no length), exactly its rest.
        let peeked = |next: &mut [u8]| {
            let at = 2 * record - missing;
            next.copy_from_slice(&wire[at..at + next.len()]);
            next.len()
        };
        assert_eq!(reader.bytes_short(peeked), missing, "{missing} missing");
    }
}

/// A tampered length, and a stream that ended or failed, make a read return at once.
#[test]
fn a_read_that_would_not_wait_is_short_of_nothing() {
    let empty = Trickle {
        data: Vec::new(),
        pos: 0,
        max: usize::MAX,
    };
    let Ok((mut reader, _)) = SecureStream::new(empty, keys().1, peer())
        .split(|s| Ok::<_, io::Error>((s, Vec::<u8>::new())))
    else {
        panic!("split refused");
    };
    // A length shorter than a tag, seen by a peek: refused as soon as it is read.
    let tampered = |next: &mut [u8]| {
        next.copy_from_slice(&[0, 3][..next.len()]);
        next.len()
    };
    assert_eq!(reader.bytes_short(tampered), 0);
    assert_eq!(reader.bytes_short(|_| 0), 2, "the length first");
    // The stream ended before a record: the read says so at once, and so would the next.
    assert!(reader.read(&mut [0u8; 4]).is_err());
    assert_eq!(reader.bytes_short(|_| 0), 0, "failed");
}

/// Accepts `room` bytes, then fails one write (a send timeout, say), then accepts again.
struct Breaks {
    room: usize,
    broke: bool,
    sent: Vec<u8>,
}

impl Write for Breaks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.broke {
            true => buf.len(),
            false => buf.len().min(self.room),
        };
        if n == 0 && !self.broke {
            self.broke = true;
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.room = self.room.saturating_sub(n);
        self.sent.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_send_leaves_the_writer_failed_so_no_record_follows_a_gap() {
    for room in [0, 1, 30, 70_000, 200_000] {
        let (sender, _) = keys();
        let stream = SecureStream::new(
            Breaks {
                room,
                broke: false,
                sent: Vec::new(),
            },
            sender,
            peer(),
        );
        let Ok((_reader, mut writer)) = stream.split(|s| Ok::<_, io::Error>((io::empty(), s)))
        else {
            panic!("split refused");
        };
        writer.write_all(b"a frame").unwrap();
        let mut data = pattern(300_000, 9);
        assert!(writer.write_in_place(&mut data).is_err(), "{room}");
        let sent = writer.get_ref().sent.len();
        assert!(writer.write_in_place(&mut pattern(100_000, 1)).is_err());
        assert!(writer.write_all(&pattern(100_000, 2)).is_err());
        assert!(writer.flush().is_err());
        assert!(writer.close().is_err());
        assert_eq!(
            writer.get_ref().sent.len(),
            sent,
            "{room}: nothing after the gap"
        );
    }
}
