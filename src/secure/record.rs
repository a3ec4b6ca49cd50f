//! Records after the handshake (format in the module doc of [`super`]): [`SecureStream`] is
//! `Read + Write` over one stream; [`SecureStream::split`] turns it into a [`SecureReader`]
//! and a [`SecureWriter`] that two threads (or a socket's two clones) can use at once, each
//! with its own direction's key and record counter. Writes are gathered into full records;
//! reads decrypt straight into the caller's buffer when it has room for a whole record, so
//! bulk data is copied once each way.

use std::io::{self, Read, Write};
use std::sync::Arc;

use snow::StatelessTransportState;

use super::SecureError;
use super::handshake::PeerInfo;

/// The largest plaintext in one record: Noise's 65 535-byte message minus the 16-byte tag.
pub const MAX_RECORD_PLAINTEXT: usize = 65_535 - TAG_LEN;
const TAG_LEN: usize = 16;
const MAX_RECORD_LEN: usize = 65_535;

/// The transport keys, one per direction; the record counters live in the halves.
type Keys = Arc<StatelessTransportState>;

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
    /// Scratch for one sealed record: the 2-byte length, then the ciphertext.
    sealed: Vec<u8>,
    closed: bool,
    failed: Option<Failure>,
}

impl Outbound {
    fn new() -> Self {
        Outbound {
            nonce: 0,
            pending: Vec::with_capacity(MAX_RECORD_PLAINTEXT),
            sealed: vec![0u8; 2 + MAX_RECORD_LEN],
            closed: false,
            failed: None,
        }
    }

    /// Encrypts `plaintext` (empty: the close record) as one record and writes it.
    fn seal_and_send(
        &mut self,
        keys: &StatelessTransportState,
        inner: &mut impl Write,
        plaintext: &[u8],
    ) -> io::Result<()> {
        Failure::check(self.failed)?;
        let n = match keys.write_message(self.nonce, plaintext, &mut self.sealed[2..]) {
            Ok(n) => n,
            Err(e) => {
                let error = SecureError::Handshake(format!("cannot seal: {e}"));
                self.failed = Some(Failure::of(&error));
                return Err(error.into_io());
            }
        };
        self.nonce += 1;
        // n <= MAX_RECORD_LEN = u16::MAX, checked by snow.
        let len = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
        self.sealed[..2].copy_from_slice(&len);
        if let Err(e) = inner.write_all(&self.sealed[..2 + n]) {
            self.failed = Some(Failure::Other);
            return Err(e);
        }
        Ok(())
    }

    fn flush_pending(
        &mut self,
        keys: &StatelessTransportState,
        inner: &mut impl Write,
    ) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let result = self.seal_and_send(keys, inner, &pending);
            self.pending = pending;
            self.pending.clear();
            result?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        keys: &StatelessTransportState,
        inner: &mut impl Write,
        buf: &[u8],
    ) -> io::Result<usize> {
        Failure::check(self.failed)?;
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "secure stream already closed",
            ));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() && buf.len() >= MAX_RECORD_PLAINTEXT {
            // A whole record straight from the caller's buffer: no staging copy.
            self.seal_and_send(keys, inner, &buf[..MAX_RECORD_PLAINTEXT])?;
            return Ok(MAX_RECORD_PLAINTEXT);
        }
        let n = buf.len().min(MAX_RECORD_PLAINTEXT - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == MAX_RECORD_PLAINTEXT {
            self.flush_pending(keys, inner)?;
        }
        Ok(n)
    }

    fn close(&mut self, keys: &StatelessTransportState, inner: &mut impl Write) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.flush_pending(keys, inner)?;
        self.seal_and_send(keys, inner, &[])?;
        self.closed = true;
        inner.flush()
    }
}

/// The receiving direction's state: the next record's counter and plaintext not yet handed
/// out (`plain[plain_pos..plain_len]`).
struct Inbound {
    nonce: u64,
    /// Ciphertext of the record being read.
    incoming: Vec<u8>,
    plain: Vec<u8>,
    plain_pos: usize,
    plain_len: usize,
    closed: bool,
    failed: Option<Failure>,
}

impl Inbound {
    fn new() -> Self {
        Inbound {
            nonce: 0,
            incoming: vec![0u8; MAX_RECORD_LEN],
            plain: vec![0u8; MAX_RECORD_PLAINTEXT],
            plain_pos: 0,
            plain_len: 0,
            closed: false,
            failed: None,
        }
    }

    fn fail(&mut self, error: SecureError) -> io::Error {
        self.failed = Some(Failure::of(&error));
        error.into_io()
    }

    /// Reads the next record's ciphertext into `incoming`; returns its length.
    fn read_record(&mut self, inner: &mut impl Read) -> Result<usize, SecureError> {
        let mut len = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match inner.read(&mut len[got..]) {
                Ok(0) => return Err(SecureError::Truncated),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SecureError::Io(e)),
            }
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n < TAG_LEN {
            return Err(SecureError::Tampered);
        }
        match inner.read_exact(&mut self.incoming[..n]) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(SecureError::Truncated),
            Err(e) => Err(SecureError::Io(e)),
        }
    }

    fn read(
        &mut self,
        keys: &StatelessTransportState,
        inner: &mut impl Read,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if self.plain_pos < self.plain_len {
            let n = buf.len().min(self.plain_len - self.plain_pos);
            buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
            self.plain_pos += n;
            return Ok(n);
        }
        Failure::check(self.failed)?;
        if self.closed || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.read_record(inner) {
            Ok(n) => n,
            Err(SecureError::Io(e)) => {
                // A timeout or reset of the socket: not a verdict on the data, but the record
                // boundary is lost, so the stream cannot go on.
                self.failed = Some(Failure::Other);
                return Err(e);
            }
            Err(e) => return Err(self.fail(e)),
        };
        let plain_len = n - TAG_LEN;
        let direct = buf.len() >= plain_len;
        let target = if direct {
            &mut buf[..plain_len]
        } else {
            &mut self.plain[..plain_len]
        };
        if keys
            .read_message(self.nonce, &self.incoming[..n], target)
            .is_err()
        {
            return Err(self.fail(SecureError::Tampered));
        }
        self.nonce += 1;
        if plain_len == 0 {
            self.closed = true;
            return Ok(0);
        }
        if direct {
            return Ok(plain_len);
        }
        let k = buf.len();
        buf.copy_from_slice(&self.plain[..k]);
        self.plain_pos = k;
        self.plain_len = plain_len;
        Ok(k)
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
    pub(crate) fn new(inner: S, keys: StatelessTransportState, peer: PeerInfo) -> Self {
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
        if !self.outbound.pending.is_empty() || self.inbound.plain_pos < self.inbound.plain_len {
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
        self.outbound.close(&self.keys, &mut self.inner)
    }
}

impl<S: Write> Write for SecureStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Failure::check(self.inbound.failed)?;
        self.outbound.write(&self.keys, &mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound.flush_pending(&self.keys, &mut self.inner)?;
        self.inner.flush()
    }
}

impl<S: Read> Read for SecureStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Failure::check(self.outbound.failed)?;
        self.inbound.read(&self.keys, &mut self.inner, buf)
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
}

impl<R: Read> Read for SecureReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(&self.keys, &mut self.inner, buf)
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
        self.outbound.close(&self.keys, &mut self.inner)
    }
}

impl<W: Write> Write for SecureWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.write(&self.keys, &mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound.flush_pending(&self.keys, &mut self.inner)?;
        self.inner.flush()
    }
}
