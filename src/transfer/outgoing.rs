//! The direction a connection's driver writes to: plain or the secure channel's writer, with
//! a cork that gathers many small frames into one send (see [`Outgoing`]).

use std::io::{self, Write};
use std::net::TcpStream;

use crate::secure::SecureWriter;
use crate::secure::record::MAX_RECORD_PLAINTEXT;

/// The direction a driver writes to.
///
/// Every frame goes out at once, unless the writer is *corked* ([`Outgoing::set_corked`]):
/// then frames and small chunks gather (a plain stream in a buffer of [`CORK_LEN`], a
/// secure one in its record buffer) and go out together when there is enough, when the
/// writer is flushed or uncorked, or before data leaves through [`Outgoing::data_socket`].
/// A folder of small files is sent corked: each file's frames and bytes would otherwise be
/// three or four sends (and segments) of their own.
pub struct Outgoing {
    inner: Inner,
    corked: bool,
    /// A corked plain stream's bytes not yet sent.
    pending: Vec<u8>,
}

enum Inner {
    Plain(TcpStream),
    Secure(Box<SecureWriter<TcpStream>>),
}

/// How many bytes a corked plain stream gathers before it sends them.
pub const CORK_LEN: usize = 256 * 1024;

impl Outgoing {
    pub fn plain(stream: TcpStream) -> Self {
        Self::new(Inner::Plain(stream))
    }

    pub fn secure(writer: SecureWriter<TcpStream>) -> Self {
        Self::new(Inner::Secure(Box::new(writer)))
    }

    fn new(inner: Inner) -> Self {
        Self {
            inner,
            corked: false,
            pending: Vec::new(),
        }
    }

    /// The plain stream itself, for the secure handshake that replaces it; `None` once
    /// secure (a second secure hello).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self.inner {
            Inner::Plain(s) => Some(s),
            Inner::Secure(_) => None,
        }
    }

    /// The socket underneath (for shutdown, timeouts and addresses).
    pub fn socket(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(s) => s,
            Inner::Secure(w) => w.get_ref(),
        }
    }

    /// The socket, for bytes that bypass this writer (`sendfile`), once everything written
    /// before them has gone out.
    pub fn data_socket(&mut self) -> io::Result<&TcpStream> {
        self.flush()?;
        Ok(self.socket())
    }

    /// Gathers frames until uncorked (see the type's docs). Uncorking flushes.
    pub fn set_corked(&mut self, corked: bool) -> io::Result<()> {
        self.corked = corked;
        if !corked {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes a data chunk (its header, if the protocol wants one, then its bytes) without
    /// flushing a secure writer's last partial record: the next write or frame fills it.
    /// `data` may be overwritten: a secure writer seals a chunk of a record or more where it
    /// lies, so it is never copied (the header goes in a record of its own before it).
    pub fn send_chunk(&mut self, header: Option<&[u8]>, data: &mut [u8]) -> io::Result<()> {
        if let Inner::Secure(w) = &mut self.inner
            && data.len() >= MAX_RECORD_PLAINTEXT
        {
            if let Some(header) = header {
                w.write_all(header)?;
            }
            return w.write_in_place(data);
        }
        match (&self.inner, header) {
            // Not gathered: the header goes with the data that follows (one segment).
            (Inner::Plain(s), Some(header)) if !self.corked => {
                super::os::send_more(s, header)?;
            }
            (_, Some(header)) => self.put(header)?,
            (_, None) => {}
        }
        self.put(data)
    }

    /// Writes without a flush of its own: a corked plain stream buffers, a secure writer
    /// fills its record.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) if self.corked => {
                let large = bytes.len() >= CORK_LEN;
                if self.pending.len() + bytes.len() > CORK_LEN && !self.pending.is_empty() {
                    // Before a large write, what is gathered (a chunk header) waits to go in
                    // its first segment rather than in a tiny one of its own.
                    match large {
                        true => super::os::send_more(s, &self.pending)?,
                        false => s.write_all(&self.pending)?,
                    }
                    self.pending.clear();
                }
                match large {
                    true => s.write_all(bytes),
                    false => {
                        self.pending.extend_from_slice(bytes);
                        Ok(())
                    }
                }
            }
            Inner::Plain(s) => s.write_all(bytes),
            Inner::Secure(w) => w.write_all(bytes),
        }
    }

    pub fn is_secure(&self) -> bool {
        matches!(self.inner, Inner::Secure(_))
    }

    /// Done writing: what is gathered goes out, a secure writer sends its close record
    /// (without it the peer sees a truncated stream), then the socket's write side is shut.
    pub fn finish(&mut self) {
        let _ = self.flush();
        if let Inner::Secure(w) = &mut self.inner {
            let _ = w.close();
        }
        let _ = self.socket().shutdown(std::net::Shutdown::Write);
    }
}

impl Write for Outgoing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.put(buf)?;
        match (&mut self.inner, self.corked) {
            // Frames are small and must not wait in the record buffer for more bytes.
            (Inner::Secure(w), false) => w.flush(),
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => {
                if !self.pending.is_empty() {
                    s.write_all(&self.pending)?;
                    self.pending.clear();
                }
                s.flush()
            }
            Inner::Secure(w) => w.flush(),
        }
    }
}
