//! [`SecureStream`]: `Read + Write` over AEAD records after the handshake (format in the module
//! doc of [`super`]). Writes are gathered into full records; reads decrypt straight into the
//! caller's buffer when it has room for a whole record, so bulk data is copied once each way.

use std::io::{self, Read, Write};

use snow::TransportState;

use super::SecureError;
use super::handshake::PeerInfo;

/// The largest plaintext in one record: Noise's 65 535-byte message minus the 16-byte tag.
pub const MAX_RECORD_PLAINTEXT: usize = 65_535 - TAG_LEN;
const TAG_LEN: usize = 16;
const MAX_RECORD_LEN: usize = 65_535;

/// An encrypted, authenticated stream. Call [`SecureStream::close`] when done writing: the
/// peer treats an end without the close record as truncation.
pub struct SecureStream<S> {
    inner: S,
    noise: TransportState,
    peer: PeerInfo,
    /// Plaintext waiting to fill a record.
    pending: Vec<u8>,
    /// Scratch for one sealed record: the 2-byte length, then the ciphertext.
    sealed: Vec<u8>,
    /// Ciphertext of the record being read.
    incoming: Vec<u8>,
    /// Decrypted plaintext not yet handed out: `plain[plain_pos..plain_len]`.
    plain: Vec<u8>,
    plain_pos: usize,
    plain_len: usize,
    read_closed: bool,
    write_closed: bool,
    failed: Option<Failure>,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Tampered,
    Truncated,
    Other,
}

impl<S> SecureStream<S> {
    pub(crate) fn new(inner: S, noise: TransportState, peer: PeerInfo) -> Self {
        SecureStream {
            inner,
            noise,
            peer,
            pending: Vec::with_capacity(MAX_RECORD_PLAINTEXT),
            sealed: vec![0u8; 2 + MAX_RECORD_LEN],
            incoming: vec![0u8; MAX_RECORD_LEN],
            plain: vec![0u8; MAX_RECORD_PLAINTEXT],
            plain_pos: 0,
            plain_len: 0,
            read_closed: false,
            write_closed: false,
            failed: None,
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
        self.read_closed
    }

    fn fail(&mut self, error: SecureError) -> io::Error {
        self.failed = Some(match error {
            SecureError::Tampered => Failure::Tampered,
            SecureError::Truncated => Failure::Truncated,
            _ => Failure::Other,
        });
        error.into_io()
    }

    fn check_failed(&self) -> io::Result<()> {
        match self.failed {
            None => Ok(()),
            Some(Failure::Tampered) => Err(SecureError::Tampered.into_io()),
            Some(Failure::Truncated) => Err(SecureError::Truncated.into_io()),
            Some(Failure::Other) => Err(SecureError::Failed.into_io()),
        }
    }
}

impl<S: Write> SecureStream<S> {
    /// Sends what is buffered, then the close record, and flushes. Reading stays possible.
    pub fn close(&mut self) -> io::Result<()> {
        if self.write_closed {
            return Ok(());
        }
        self.flush_pending()?;
        self.seal_and_send(None)?;
        self.write_closed = true;
        self.inner.flush()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let result = self.seal_and_send(Some(&pending));
            self.pending = pending;
            self.pending.clear();
            result?;
        }
        Ok(())
    }

    /// Encrypts `plaintext` (None: the close record) as one record and writes it.
    fn seal_and_send(&mut self, plaintext: Option<&[u8]>) -> io::Result<()> {
        self.check_failed()?;
        let plaintext = plaintext.unwrap_or(&[]);
        let n = match self.noise.write_message(plaintext, &mut self.sealed[2..]) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(SecureError::Handshake(format!("cannot seal: {e}")))),
        };
        // n <= MAX_RECORD_LEN = u16::MAX, checked by snow.
        let len = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
        self.sealed[..2].copy_from_slice(&len);
        if let Err(e) = self.inner.write_all(&self.sealed[..2 + n]) {
            self.failed = Some(Failure::Other);
            return Err(e);
        }
        Ok(())
    }
}

impl<S: Write> Write for SecureStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_failed()?;
        if self.write_closed {
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
            self.seal_and_send(Some(&buf[..MAX_RECORD_PLAINTEXT]))?;
            return Ok(MAX_RECORD_PLAINTEXT);
        }
        let n = buf.len().min(MAX_RECORD_PLAINTEXT - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == MAX_RECORD_PLAINTEXT {
            self.flush_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.inner.flush()
    }
}

impl<S: Read> SecureStream<S> {
    /// Reads and authenticates the next record into `incoming`; returns its ciphertext length,
    /// or 0 at a clean end of stream (which is itself an error unless a close record came).
    fn read_record(&mut self) -> Result<usize, SecureError> {
        let mut len = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match self.inner.read(&mut len[got..]) {
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
        match self.inner.read_exact(&mut self.incoming[..n]) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(SecureError::Truncated),
            Err(e) => Err(SecureError::Io(e)),
        }
    }
}

impl<S: Read> Read for SecureStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.plain_pos < self.plain_len {
            let n = buf.len().min(self.plain_len - self.plain_pos);
            buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
            self.plain_pos += n;
            return Ok(n);
        }
        self.check_failed()?;
        if self.read_closed || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.read_record() {
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
        if self
            .noise
            .read_message(&self.incoming[..n], target)
            .is_err()
        {
            return Err(self.fail(SecureError::Tampered));
        }
        if plain_len == 0 {
            self.read_closed = true;
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
