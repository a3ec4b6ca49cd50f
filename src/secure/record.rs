//! Records after the handshake (format in the module doc of [`super`]): [`SecureStream`] is
//! `Read + Write` over one stream; [`SecureStream::split`] turns it into a [`SecureReader`]
//! and a [`SecureWriter`] that two threads (or a socket's two clones) can use at once, each
//! with its own direction's key and record counter.
//!
//! Bulk data is copied as little as can be: [`SecureWriter::write_in_place`] seals the
//! caller's buffer where it lies and sends its records in one vectored write; the reading side
//! reads the stream a quarter MiB at a time and opens each record from where it landed
//! straight into the caller's buffer (or, for a buffer too small for it, in place, handing its
//! plaintext out piecemeal). Small writes gather in one record's buffer.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use super::SecureError;
use super::handshake::PeerInfo;
use super::record_key::{RecordKey, TAG_LEN, TransportKeys};

/// The largest plaintext in one record: Noise's 65 535-byte message minus the 16-byte tag.
pub const MAX_RECORD_PLAINTEXT: usize = 65_535 - TAG_LEN;

/// The close record's length on the wire: its 2-byte length and a tag, no plaintext.
pub const CLOSE_RECORD_LEN: usize = 2 + TAG_LEN;

/// Whether `bytes`, everything a peer sent after its last whole record, can be at most its
/// close record (whole or begun): a length field saying "no plaintext", and nothing after.
/// Without the key a look at unread bytes cannot tell more; opening the record decides.
pub fn at_most_a_close_record(bytes: &[u8]) -> bool {
    let head = (TAG_LEN as u16).to_be_bytes();
    bytes.len() <= CLOSE_RECORD_LEN && bytes.iter().zip(head).all(|(byte, want)| *byte == want)
}

/// Records sealed in place go out at most this many to one vectored write (three slices
/// each: length, ciphertext, tag): enough for a whole chunk (17 for 1 MiB). With the
/// one-thread receiver, 16 records per write (and then 17) measured 3-6 % faster encrypted
/// than 4, a quarter MiB (four A/B sets of 6-8 rounds, both orders; before it, a quarter
/// MiB had measured a little faster).
const RECORDS_PER_WRITE: usize = crate::protocol::CHUNK_LEN.div_ceil(MAX_RECORD_PLAINTEXT);

/// Both directions' keys; the record counters live in the halves.
type Keys = Arc<TransportKeys>;

#[derive(Debug, Clone, Copy)]
enum Failure {
    Tampered,
    Truncated,
    Other,
}

impl Failure {
    fn of(error: &SecureError) -> Self {
        match error {
            SecureError::Tampered => Failure::Tampered,
            SecureError::Truncated => Failure::Truncated,
            _ => Failure::Other,
        }
    }

    /// Marks the direction failed with `error`'s kind; returns the error for the caller.
    fn record(slot: &mut Option<Failure>, error: SecureError) -> io::Error {
        *slot = Some(Failure::of(&error));
        error.into_io()
    }

    fn check(failed: Option<Failure>) -> io::Result<()> {
        match failed {
            None => Ok(()),
            Some(Failure::Tampered) => Err(SecureError::Tampered.into_io()),
            Some(Failure::Truncated) => Err(SecureError::Truncated.into_io()),
            Some(Failure::Other) => Err(SecureError::Failed.into_io()),
        }
    }
}

/// The sending direction's state: the next record's counter and plaintext waiting to fill it.
struct Outbound {
    nonce: u64,
    /// Plaintext waiting to fill a record.
    pending: Vec<u8>,
    /// One record sealed from borrowed bytes: the 2-byte length, the ciphertext, the tag.
    sealed: Vec<u8>,
    closed: bool,
    failed: Option<Failure>,
}

impl Outbound {
    fn new() -> Self {
        Outbound {
            nonce: 0,
            pending: Vec::with_capacity(MAX_RECORD_PLAINTEXT),
            sealed: vec![0u8; 2 + MAX_RECORD_PLAINTEXT + TAG_LEN],
            closed: false,
            failed: None,
        }
    }

    /// Whether more may be written.
    fn usable(&self) -> io::Result<()> {
        Failure::check(self.failed)?;
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "secure stream already closed",
            ));
        }
        Ok(())
    }

    /// Seals `body` in place as the next record; returns its length bytes and its tag.
    fn seal(&mut self, key: &RecordKey, body: &mut [u8]) -> io::Result<([u8; 2], [u8; TAG_LEN])> {
        match key.seal(self.nonce, body) {
            Ok(tag) => {
                self.nonce += 1;
                // body.len() <= MAX_RECORD_PLAINTEXT, so the record fits its u16 length.
                let len = u16::try_from(body.len() + TAG_LEN).unwrap_or(u16::MAX);
                Ok((len.to_be_bytes(), tag))
            }
            Err(error) => Err(Failure::record(&mut self.failed, error)),
        }
    }

    /// Seals a copy of `plaintext` (at most one record's; empty: the close record) in
    /// `sealed`; returns the record's length on the wire.
    fn seal_copy(&mut self, key: &RecordKey, plaintext: &[u8]) -> io::Result<usize> {
        let n = plaintext.len();
        let mut sealed = std::mem::take(&mut self.sealed);
        sealed[2..2 + n].copy_from_slice(plaintext);
        let result = self.seal(key, &mut sealed[2..2 + n]);
        if let Ok((len, tag)) = &result {
            sealed[..2].copy_from_slice(len);
            sealed[2 + n..2 + n + TAG_LEN].copy_from_slice(tag);
        }
        self.sealed = sealed;
        result.map(|_| 2 + n + TAG_LEN)
    }

    /// The pending plaintext sealed (in `sealed`) as one record: its length on the wire, 0
    /// when nothing was pending.
    fn seal_pending(&mut self, key: &RecordKey) -> io::Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.seal_copy(key, &pending);
        self.pending = pending;
        self.pending.clear();
        result
    }

    /// Sends the first `len` bytes of `sealed`.
    fn send_sealed(&mut self, inner: &mut impl Write, len: usize) -> io::Result<()> {
        if let Err(e) = inner.write_all(&self.sealed[..len]) {
            self.failed = Some(Failure::Other);
            return Err(e);
        }
        Ok(())
    }

    fn flush_pending(&mut self, key: &RecordKey, inner: &mut impl Write) -> io::Result<()> {
        Failure::check(self.failed)?;
        match self.seal_pending(key)? {
            0 => Ok(()),
            len => self.send_sealed(inner, len),
        }
    }

    fn write(&mut self, key: &RecordKey, inner: &mut impl Write, buf: &[u8]) -> io::Result<usize> {
        self.usable()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() && buf.len() >= MAX_RECORD_PLAINTEXT {
            // A whole record from the caller's bytes: sealed in `sealed`, not staged first.
            let len = self.seal_copy(key, &buf[..MAX_RECORD_PLAINTEXT])?;
            self.send_sealed(inner, len)?;
            return Ok(MAX_RECORD_PLAINTEXT);
        }
        let n = buf.len().min(MAX_RECORD_PLAINTEXT - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == MAX_RECORD_PLAINTEXT {
            self.flush_pending(key, inner)?;
        }
        Ok(n)
    }

    /// What is pending (as a record of its own), then `data` sealed in place as records, sent
    /// together in vectored writes.
    fn write_in_place(
        &mut self,
        key: &RecordKey,
        inner: &mut impl Write,
        data: &mut [u8],
    ) -> io::Result<()> {
        self.usable()?;
        let mut first = self.seal_pending(key)?;
        let mut rest = data;
        while first > 0 || !rest.is_empty() {
            let take = rest.len().min(RECORDS_PER_WRITE * MAX_RECORD_PLAINTEXT);
            let (batch, after) = std::mem::take(&mut rest).split_at_mut(take);
            let mut heads = [[0u8; 2]; RECORDS_PER_WRITE];
            let mut tags = [[0u8; TAG_LEN]; RECORDS_PER_WRITE];
            for (i, body) in batch.chunks_mut(MAX_RECORD_PLAINTEXT).enumerate() {
                (heads[i], tags[i]) = self.seal(key, body)?;
            }
            let mut slices = [IoSlice::new(&[]); 1 + 3 * RECORDS_PER_WRITE];
            slices[0] = IoSlice::new(&self.sealed[..first]);
            let mut used = 1;
            for (i, body) in batch.chunks(MAX_RECORD_PLAINTEXT).enumerate() {
                slices[used] = IoSlice::new(&heads[i]);
                slices[used + 1] = IoSlice::new(body);
                slices[used + 2] = IoSlice::new(&tags[i]);
                used += 3;
            }
            if let Err(e) = write_all_vectored(inner, &mut slices[..used]) {
                self.failed = Some(Failure::Other);
                return Err(e);
            }
            first = 0;
            rest = after;
        }
        Ok(())
    }

    fn close(&mut self, key: &RecordKey, inner: &mut impl Write) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.flush_pending(key, inner)?;
        let len = self.seal_copy(key, &[])?;
        self.send_sealed(inner, len)?;
        self.closed = true;
        inner.flush()
    }
}

/// `Write::write_all` for several slices (the standard one is not stable yet).
fn write_all_vectored(inner: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match inner.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How much ciphertext the receiving side holds: one read of the stream brings up to this
/// much (about four records), and each record is opened where it landed.
const AHEAD_LEN: usize = 256 * 1024;

/// The receiving direction's state: the next record's counter, bytes read ahead
/// (`ahead[start..end]`), and the plaintext of the last record opened, not yet handed out
/// (`ahead[plain_pos..plain_end]`).
struct Inbound {
    nonce: u64,
    ahead: Vec<u8>,
    start: usize,
    end: usize,
    plain_pos: usize,
    plain_end: usize,
    closed: bool,
    failed: Option<Failure>,
}

impl Inbound {
    fn new() -> Self {
        Inbound {
            nonce: 0,
            ahead: vec![0u8; AHEAD_LEN],
            start: 0,
            end: 0,
            plain_pos: 0,
            plain_end: 0,
            closed: false,
            failed: None,
        }
    }

    /// Whether plaintext is waiting to be read.
    fn holds_plaintext(&self) -> bool {
        self.plain_pos < self.plain_end
    }

    /// How many more bytes the stream must bring before a read hands something out without
    /// waiting on it (see [`SecureReader::bytes_short`]).
    fn bytes_short(&self, peek: impl FnOnce(&mut [u8]) -> usize) -> usize {
        // Plaintext waiting, or a read that ends at once (the stream closed or failed).
        if self.holds_plaintext() || self.closed || self.failed.is_some() {
            return 0;
        }
        let have = &self.ahead[self.start..self.end];
        let mut length = [0u8; 2];
        let known = have.len().min(2);
        length[..known].copy_from_slice(&have[..known]);
        if known < 2 && known + peek(&mut length[known..]) < 2 {
            return 2 - known;
        }
        let n = usize::from(u16::from_be_bytes(length));
        if n < TAG_LEN {
            // Refused as tampered as soon as it is read: no wait.
            return 0;
        }
        (2 + n).saturating_sub(have.len())
    }

    fn read(
        &mut self,
        key: &RecordKey,
        inner: &mut impl Read,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if !self.holds_plaintext() {
            Failure::check(self.failed)?;
            if self.closed || buf.is_empty() {
                return Ok(0);
            }
            match self.open_next(key, inner, buf) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(SecureError::Io(e)) => {
                    // A timeout or reset of the stream: not a verdict on the data, but the
                    // record boundary is lost, so the stream cannot go on.
                    self.failed = Some(Failure::Other);
                    return Err(e);
                }
                Err(error) => return Err(Failure::record(&mut self.failed, error)),
            }
        }
        let n = buf.len().min(self.plain_end - self.plain_pos);
        buf[..n].copy_from_slice(&self.ahead[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        Ok(n)
    }

    /// Reads until the next record is whole in `ahead`, then opens it: straight into `out`
    /// when its plaintext fits there (returns its length), otherwise where it lies, to be
    /// handed out piecemeal (the close record: `closed`, no plaintext).
    fn open_next(
        &mut self,
        key: &RecordKey,
        inner: &mut impl Read,
        out: &mut [u8],
    ) -> Result<Option<usize>, SecureError> {
        let n = loop {
            let have = &self.ahead[self.start..self.end];
            if let [hi, lo, ..] = *have {
                let n = usize::from(u16::from_be_bytes([hi, lo]));
                if n < TAG_LEN {
                    return Err(SecureError::Tampered);
                }
                if have.len() >= 2 + n {
                    break n;
                }
            }
            // Room for the longest record after its start; no plaintext is waiting (it is
            // handed out before the next record is read), so the bytes may move.
            if self.ahead.len() - self.start < 2 + MAX_RECORD_PLAINTEXT + TAG_LEN {
                self.ahead.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match inner.read(&mut self.ahead[self.end..]) {
                Ok(0) => return Err(SecureError::Truncated),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SecureError::Io(e)),
            }
        };
        let body = self.start + 2..self.start + 2 + n - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.ahead[body.end..body.end + TAG_LEN]);
        let direct = !body.is_empty() && body.len() <= out.len();
        if direct {
            key.open_into(
                self.nonce,
                &self.ahead[body.clone()],
                tag,
                &mut out[..body.len()],
            )?;
        } else {
            key.open(self.nonce, &mut self.ahead[body.clone()], tag)?;
            (self.plain_pos, self.plain_end) = (body.start, body.end);
        }
        self.nonce += 1;
        self.start = body.end + TAG_LEN;
        self.closed = body.is_empty();
        Ok(direct.then_some(body.len()))
    }
}

/// An encrypted, authenticated stream. Call [`SecureStream::close`] when done writing: the
/// peer treats an end without the close record as truncation.
pub struct SecureStream<S> {
    inner: S,
    keys: Keys,
    peer: PeerInfo,
    outbound: Outbound,
    inbound: Inbound,
}

impl<S> SecureStream<S> {
    pub(crate) fn new(inner: S, keys: TransportKeys, peer: PeerInfo) -> Self {
        SecureStream {
            inner,
            keys: Arc::new(keys),
            peer,
            outbound: Outbound::new(),
            inbound: Inbound::new(),
        }
    }

    /// The peer as the handshake proved it.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// True once the peer's close record arrived.
    pub fn peer_closed(&self) -> bool {
        self.inbound.closed
    }

    /// The two directions apart: `halves` turns the stream this was built on into a reader
    /// and a writer (for example a socket's two clones, with bytes a buffered reader already
    /// held chained in front). Plaintext written but not yet sealed, or decrypted but not yet
    /// read, would be lost, so that is refused: split right after the handshake (or after a
    /// flush), as the transfer drivers do.
    pub fn split<R, W, E>(
        self,
        halves: impl FnOnce(S) -> Result<(R, W), E>,
    ) -> Result<(SecureReader<R>, SecureWriter<W>), SplitError<E>> {
        if !self.outbound.pending.is_empty() || self.inbound.holds_plaintext() {
            return Err(SplitError::Buffered);
        }
        let (reader, writer) = halves(self.inner).map_err(SplitError::Halves)?;
        let peer = self.peer;
        Ok((
            SecureReader {
                inner: reader,
                keys: Arc::clone(&self.keys),
                inbound: self.inbound,
                peer: peer.clone(),
            },
            SecureWriter {
                inner: writer,
                keys: self.keys,
                outbound: self.outbound,
                peer,
            },
        ))
    }
}

/// Why [`SecureStream::split`] failed.
#[derive(Debug)]
pub enum SplitError<E> {
    /// The stream still held plaintext.
    Buffered,
    /// Making the halves failed.
    Halves(E),
}

impl<S: Write> SecureStream<S> {
    /// Sends what is buffered, then the close record, and flushes. Reading stays possible.
    pub fn close(&mut self) -> io::Result<()> {
        self.outbound.close(&self.keys.send, &mut self.inner)
    }
}

impl<S: Write> Write for SecureStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Failure::check(self.inbound.failed)?;
        self.outbound.write(&self.keys.send, &mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound
            .flush_pending(&self.keys.send, &mut self.inner)?;
        self.inner.flush()
    }
}

impl<S: Read> Read for SecureStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Failure::check(self.outbound.failed)?;
        self.inbound.read(&self.keys.recv, &mut self.inner, buf)
    }
}

/// The receiving half of a split [`SecureStream`].
pub struct SecureReader<R> {
    inner: R,
    keys: Keys,
    inbound: Inbound,
    peer: PeerInfo,
}

impl<R> SecureReader<R> {
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// True once the peer's close record arrived.
    pub fn peer_closed(&self) -> bool {
        self.inbound.closed
    }

    /// How many more bytes the stream underneath must bring before a read hands out the
    /// peer's bytes without waiting on it: 0 when plaintext or a whole record is read ahead
    /// (or the stream ended or failed, or the next length is below a tag's, so a read
    /// returns at once); otherwise the rest of the next record. Part of a record is no byte
    /// to hand out: a read waits for the whole record, and its rest may never come (a
    /// stalled link). While fewer than the next record's two length bytes are read ahead,
    /// `peek` is asked to copy the stream's next bytes without taking them (returning how
    /// many); if it cannot, the answer counts only the length bytes still missing.
    pub fn bytes_short(&self, peek: impl FnOnce(&mut [u8]) -> usize) -> usize {
        self.inbound.bytes_short(peek)
    }
}

impl<R: Read> Read for SecureReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(&self.keys.recv, &mut self.inner, buf)
    }
}

/// The sending half of a split [`SecureStream`]. Call [`SecureWriter::close`] when done.
pub struct SecureWriter<W> {
    inner: W,
    keys: Keys,
    outbound: Outbound,
    peer: PeerInfo,
}

impl<W> SecureWriter<W> {
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl<W: Write> SecureWriter<W> {
    /// Sends what is buffered, then the close record, and flushes.
    pub fn close(&mut self) -> io::Result<()> {
        self.outbound.close(&self.keys.send, &mut self.inner)
    }

    /// Sends what is buffered, then `data`, which is encrypted where it lies (it holds
    /// ciphertext afterwards): for bulk data, which is then never copied.
    pub fn write_in_place(&mut self, data: &mut [u8]) -> io::Result<()> {
        self.outbound
            .write_in_place(&self.keys.send, &mut self.inner, data)
    }
}

impl<W: Write> Write for SecureWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.write(&self.keys.send, &mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound
            .flush_pending(&self.keys.send, &mut self.inner)?;
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
