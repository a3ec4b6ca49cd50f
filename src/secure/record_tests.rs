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
            Err(e) => return (got, Some(e)),
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
