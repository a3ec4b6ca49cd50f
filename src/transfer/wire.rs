//! A connection's two directions as the drivers use them: plain TCP, or the halves of a
//! secure channel over the same socket ([`crate::secure`]). Either way the drivers read
//! frames and data from an [`Incoming`] and write to an [`Outgoing`], and still reach the
//! socket itself for what only a socket does: timeouts, shutdown, its addresses.
//!
//! The secure hello (see [`crate::protocol`]) and the handshake that follows it run here too,
//! for both sides: [`secure_sender`] and [`secure_receiver`].

pub use super::outgoing::{CORK_LEN, Outgoing};
use std::io::{self, BufReader, Chain, Cursor, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::events::Security;
use crate::protocol::{
    ReceiverMsg, SenderMsg, decode_receiver_msg, encode_receiver_msg, encode_sender_msg,
    split_frame,
};
use crate::secure::handshake::PeerInfo;
use crate::secure::pairing::PairingCode;
use crate::secure::rng::OsEntropy;
use crate::secure::trust::SeenAt;
use crate::secure::{self, Cipher, Keyring, SecureError, SecureReader, Transcript};

use super::{TransferError, os, read_frame};
use judge::judge;

#[path = "wire_judge.rs"]
mod judge;

/// What the secure reader reads from: bytes a buffered reader already held when the
/// handshake ended, then the socket, paced record by record. Not buffered: the secure reader
/// reads ahead itself and opens records where they land.
type CipherSource = Paced<Chain<Cursor<Vec<u8>>, TcpStream>>;

/// Holds encrypted records to the pace frames are held to: once a record's first byte came,
/// the whole record (at most 64 KiB) must arrive within `record_deadline`, so a peer that
/// trickles ciphertext a byte at a time cannot hold a connection slot inside one record
/// (the plaintext rules, header deadline and minimum rate, only see whole records). It
/// follows the record framing of the bytes it passes on, and cuts the socket's read timeout
/// to the time left, never above `idle`.
pub struct Paced<R> {
    inner: R,
    socket: TcpStream,
    record_deadline: Option<Duration>,
    idle: Option<Duration>,
    /// The current record's length bytes seen so far, and the body still to come.
    len: [u8; 2],
    len_seen: usize,
    body_left: usize,
    deadline: Option<Instant>,
    /// The socket's read timeout as this reader last set it, in nanoseconds plus one (0:
    /// not known, because someone else set it since; see [`Incoming::set_read_timeout`]).
    timeout: AtomicU64,
}

/// How long a read that begins after its record's deadline may wait for bytes.
const LATE_READ_GRACE: Duration = Duration::from_millis(1);

/// [`Paced::timeout`]'s value for "not known".
const TIMEOUT_UNKNOWN: u64 = 0;

fn encode_timeout(t: Option<Duration>) -> u64 {
    match t {
        // Read timeouts are seconds to minutes: far below u64 nanoseconds.
        Some(t) => u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1) + 1,
        None => u64::MAX,
    }
}

impl<R> Paced<R> {
    /// `idle`: the socket's read timeout between records (set now, and again after each
    /// cut); `None` keeps the socket's current one.
    fn new(
        inner: R,
        socket: TcpStream,
        record_deadline: Option<Duration>,
        idle: Option<Duration>,
    ) -> Self {
        let idle = match idle {
            Some(idle) => {
                let _ = socket.set_read_timeout(Some(idle));
                Some(idle)
            }
            None => socket.read_timeout().ok().flatten(),
        };
        Paced {
            inner,
            socket,
            record_deadline,
            idle,
            len: [0; 2],
            len_seen: 0,
            body_left: 0,
            deadline: None,
            timeout: AtomicU64::new(encode_timeout(idle)),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Someone else set the socket's read timeout: set ours again before the next read.
    fn forget_timeout(&self) {
        self.timeout.store(TIMEOUT_UNKNOWN, Ordering::Relaxed);
    }

    /// Whether the socket's timeout is a record cut of ours (not the idle timeout, and not
    /// someone else's).
    fn cut_in_force(&mut self) -> bool {
        let ours = *self.timeout.get_mut();
        ours != TIMEOUT_UNKNOWN && ours != encode_timeout(self.idle)
    }

    fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(t)?;
        *self.timeout.get_mut() = encode_timeout(t);
        Ok(())
    }

    /// Follows the framing over `bytes`, just passed on.
    fn track(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.body_left > 0 {
                let k = self.body_left.min(bytes.len() - i);
                self.body_left -= k;
                i += k;
                if self.body_left == 0 {
                    self.deadline = None;
                }
                continue;
            }
            if self.len_seen == 0 {
                self.deadline = self.record_deadline.map(|d| Instant::now() + d);
            }
            self.len[self.len_seen] = bytes[i];
            self.len_seen += 1;
            i += 1;
            if self.len_seen == 2 {
                self.len_seen = 0;
                self.body_left = usize::from(u16::from_be_bytes(self.len));
                if self.body_left == 0 {
                    self.deadline = None;
                }
            }
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let too_slow = |deadline: Duration| {
            io::Error::other(format!(
                "an encrypted record took longer than {} s to arrive",
                deadline.as_secs()
            ))
        };
        // The timeout is set only when the one in force would let a read block too long: a
        // `setsockopt` before every read of every record had cost two syscalls per 64 KiB.
        if let Some(deadline) = self.deadline {
            let now = Instant::now();
            // Past the deadline before this read even began: this side came late (it reads
            // ahead, and in between waits for its disk), so the record's bytes may all be
            // here already. A short read decides: only one that would wait is the peer's delay.
            let left = deadline.saturating_duration_since(now).max(LATE_READ_GRACE);
            // A read may end a little after the deadline (at most an eighth of it), so
            // one setting serves a whole stream of records.
            let slack = self.record_deadline.unwrap_or_default() / 8;
            let loose = match *self.timeout.get_mut() {
                TIMEOUT_UNKNOWN | u64::MAX => true,
                nanos => now + Duration::from_nanos(nanos - 1) > deadline + slack,
            };
            if loose {
                let cut = self.idle.map_or(left, |idle| left.min(idle));
                self.set_timeout(Some(cut))?;
            }
        }
        // Between records a cut of ours may stay in force: it is put back to the idle timeout
        // only if the next record is in fact that slow to start (below), so a stream of records
        // costs no syscall per record.
        let started = Instant::now();
        let n = loop {
            let e = match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    e
                }
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return Err(too_slow(self.record_deadline.unwrap_or_default()));
            }
            if !self.cut_in_force() {
                // The idle timeout, or someone else's: theirs to report.
                return Err(e);
            }
            // A cut of ours ran out before what it stands for: a record's deadline not yet
            // reached (the cut was set for an earlier record), or, between records, the idle
            // timeout (of which this much has passed). Wait for the rest.
            let rest = match self.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(now);
                    Some(self.idle.map_or(left, |idle| left.min(idle)))
                }
                None => self.idle.map(|idle| idle.saturating_sub(now - started)),
            };
            if rest.is_some_and(|rest| rest.is_zero()) {
                return Err(e);
            }
            self.set_timeout(rest)?;
        };
        self.track(&buf[..n]);
        Ok(n)
    }
}

/// The direction a driver reads from.
pub enum Incoming {
    Plain(TcpStream),
    Secure(Box<SecureReader<CipherSource>>),
}

impl Incoming {
    /// The socket underneath (for timeouts and shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Incoming::Plain(s) => s,
            Incoming::Secure(r) => r.get_ref().get_ref().get_ref().1,
        }
    }

    /// Whether this direction is encrypted.
    pub fn is_secure(&self) -> bool {
        matches!(self, Incoming::Secure(_))
    }

    /// Whether a read hands out the peer's next bytes now or within `wait` without waiting
    /// longer (or reports the stream's end or an error). A plain read never waits while its
    /// socket is readable; a secure one waits for a whole record however readable its
    /// socket, so this waits until the rest of the next record is in the socket: part of a
    /// record stalled mid-way would otherwise hold a caller in its next read until the record
    /// deadline, with whatever it held undelivered.
    pub fn input_within(&self, wait: Duration) -> bool {
        let socket = self.socket();
        let Incoming::Secure(reader) = self else {
            return os::wait_readable(socket, wait) == Some(true);
        };
        let deadline = Instant::now() + wait;
        let mut queued = 0;
        // Twice at most: the next record's length may have to arrive before its rest is known.
        for _ in 0..2 {
            let short = reader.bytes_short(|next| os::peek(socket, next));
            // Nothing to wait for, or the socket holds what was waited for (or its end).
            if short <= queued {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if os::wait_queued(socket, short, left) != Some(true) {
                return false;
            }
            queued = short;
        }
        // The length came, and the rest with it; or the stream ended or failed before the
        // length did, which a read reports at once.
        true
    }

    /// Sets the socket's read timeout. Use this rather than the socket's own: a secure
    /// stream's record pacing keeps its own setting and must know it changed.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if let Incoming::Secure(r) = self {
            r.get_ref().forget_timeout();
        }
        self.socket().set_read_timeout(timeout)
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Incoming::Plain(s) => s.read(buf),
            Incoming::Secure(r) => r.read(buf),
        }
    }
}

/// The receiver's buffered reader and its writer as one stream for the handshake, which
/// must be over by `deadline` however its bytes trickle in.
struct Duplex<W> {
    reader: BufReader<Incoming>,
    writer: W,
    deadline: Instant,
    /// The records' pace afterwards (see [`Paced`]), and the idle timeout between them.
    record_deadline: Duration,
    idle: Duration,
}

impl<W> Read for Duplex<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let too_long = || io::Error::other("the secure handshake took too long");
        if self.reader.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(too_long());
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
        }
        match self.reader.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && Instant::now() >= self.deadline =>
            {
                Err(too_long())
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Duplex<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Who the peer is, and what this side's trust store says about it.
pub struct Secured {
    pub incoming: Incoming,
    pub outgoing: Outgoing,
    pub peer: PeerInfo,
    pub trusted: bool,
}

impl Secured {
    /// How rows and prompts describe this connection: the trusted name if there is one.
    pub fn security(&self, keyring: &Keyring) -> Security {
        let device = keyring
            .trust
            .by_key(&self.peer.public_key)
            .map_or_else(|| self.peer.name.clone(), |d| d.name);
        Security::Encrypted {
            device,
            fingerprint: self.peer.fingerprint(),
            trusted: self.trusted,
        }
    }
}

/// The record cipher for a sender that listed `ciphers` (its preference first): where this
/// CPU has AES instructions, the first one listed that this side knows (a sender lists an
/// AES-based one first only where its CPU has them too); otherwise, or when none is known,
/// ChaCha20-Poly1305, which every Ferry speaks.
fn choose_cipher(ciphers: &[String]) -> Cipher {
    if !crate::secure::handshake::hardware_aes() {
        return Cipher::ChaChaPoly;
    }
    ciphers
        .iter()
        .find_map(|name| Cipher::from_wire_name(name))
        .unwrap_or(Cipher::ChaChaPoly)
}

/// The sender's side: hello, the receiver's go-ahead, the handshake (over the pairing code
/// when given), the receiver's key checked against the trust store. `stream` must not have
/// carried anything yet. `serves_on`: the port this device's own server listens on, if any.
pub fn secure_sender(
    stream: TcpStream,
    keyring: &Keyring,
    code: Option<&PairingCode>,
    serves_on: Option<u16>,
) -> Result<Secured, TransferError> {
    let hello = encode_sender_msg(&SenderMsg::Secure {
        serves_on,
        pairing: code.is_some(),
        ciphers: Cipher::preferred()
            .iter()
            .map(|c| c.wire_name().to_owned())
            .collect(),
    })?;
    let mut stream = stream;
    stream.write_all(&hello).map_err(TransferError::Io)?;
    // Read unbuffered: nothing may be consumed past the handshake's last message.
    let go_ahead = read_frame(&mut stream)?.ok_or(TransferError::TruncatedFrame)?;
    let cipher = match decode_receiver_msg(&go_ahead)? {
        ReceiverMsg::Secure { cipher } => Cipher::from_wire_name(&cipher)
            .ok_or_else(|| TransferError::Unexpected(format!("the cipher {cipher:?}")))?,
        ReceiverMsg::Failed { reason } | ReceiverMsg::Decline { reason, .. } => {
            return Err(TransferError::Refused(reason));
        }
        other => {
            return Err(TransferError::Unexpected(format!(
                "{other:?} where the secure go-ahead belongs"
            )));
        }
    };
    let address = stream.peer_addr().map_err(TransferError::Io)?;
    let mode = code.map_or(secure::Mode::Open, secure::Mode::Code);
    let transcript = Transcript {
        hello: body_of(&hello)?,
        go_ahead: &go_ahead,
    };
    let channel = secure::connect_with(
        stream,
        &keyring.identity,
        mode,
        cipher,
        transcript,
        &mut OsEntropy,
    )
    .map_err(TransferError::Secure)?;
    let peer = channel.peer().clone();
    let trusted = judge(keyring, &peer, SeenAt::Server(address)).map_err(TransferError::Secure)?;
    let (reader, writer) = channel
        .split(|stream| -> io::Result<_> {
            let socket = stream.try_clone()?;
            let source = Cursor::new(Vec::new()).chain(stream.try_clone()?);
            Ok((Paced::new(source, socket, None, None), stream))
        })
        .map_err(split_error)?;
    Ok(Secured {
        incoming: Incoming::Secure(Box::new(reader)),
        outgoing: Outgoing::secure(writer),
        peer,
        trusted,
    })
}

/// The body of a frame this side just encoded, exactly as it goes out (its length prefix
/// split off): what the [`Transcript`] binds.
fn body_of(frame: &[u8]) -> Result<&[u8], TransferError> {
    Ok(split_frame(frame)?.ok_or(TransferError::TruncatedFrame)?.0)
}

fn split_error(e: secure::record::SplitError<io::Error>) -> TransferError {
    match e {
        secure::record::SplitError::Halves(e) => TransferError::Io(e),
        secure::record::SplitError::Buffered => {
            TransferError::Unexpected("data inside the secure handshake".into())
        }
    }
}

/// What the sender's secure hello asked for, and its frame's body exactly as it was read
/// (bound into the handshake: see [`Transcript`]).
pub struct Hello<'a> {
    pub body: &'a [u8],
    pub pairing: bool,
    pub ciphers: &'a [String],
    /// The port the sender's own server listens on, as it said (see [`SenderMsg::Secure`]).
    pub serves_on: Option<u16>,
}

/// How long the receiver waits: for a whole record (and twice that for the handshake) once
/// it began, and between records.
pub struct Pace {
    pub record: Duration,
    pub idle: Duration,
}

/// The receiver's side, after the sender's hello: the go-ahead (or the reason there is none),
/// the handshake, the sender's key checked. `code` is the pairing code to use when the
/// hello asked for pairing (`Err` says why there is none, and the sender is told).
pub fn secure_receiver(
    reader: BufReader<Incoming>,
    mut writer: TcpStream,
    keyring: Option<&Keyring>,
    hello: Hello<'_>,
    pace: Pace,
    code: impl FnOnce() -> Result<PairingCode, SecureError>,
) -> Result<Secured, (TransferError, Option<PeerInfo>)> {
    let Hello {
        body,
        pairing,
        ciphers,
        serves_on,
    } = hello;
    let Pace { record: pace, idle } = pace;
    let refuse = |writer: &mut TcpStream, reason: String| {
        if let Ok(frame) = encode_receiver_msg(&ReceiverMsg::Failed {
            reason: reason.clone(),
        }) {
            let _ = writer.write_all(&frame);
        }
        (TransferError::Refused(reason), None)
    };
    let Some(keyring) = keyring else {
        return Err(refuse(
            &mut writer,
            "this receiver has no device identity, so it cannot encrypt".into(),
        ));
    };
    let code = if pairing {
        match code() {
            Ok(code) => Some(code),
            Err(e) => return Err(refuse(&mut writer, e.to_string())),
        }
    } else {
        None
    };
    let cipher = choose_cipher(ciphers);
    let ready = encode_receiver_msg(&ReceiverMsg::Secure {
        cipher: cipher.wire_name().to_owned(),
    })
    .map_err(|e| (e.into(), None))?;
    writer
        .write_all(&ready)
        .map_err(|e| (TransferError::Io(e), None))?;
    let address = writer
        .peer_addr()
        .map_err(|e| (TransferError::Io(e), None))?
        .ip();
    let mode = code.as_ref().map_or(secure::Mode::Open, secure::Mode::Code);
    let duplex = Duplex {
        reader,
        writer,
        // Every handshake message is a frame: the whole exchange gets two frames' time.
        deadline: Instant::now() + 2 * pace,
        record_deadline: pace,
        idle,
    };
    let transcript = Transcript {
        hello: body,
        go_ahead: body_of(&ready).map_err(|e| (e, None))?,
    };
    let mut channel = secure::accept_with(
        duplex,
        &keyring.identity,
        mode,
        cipher,
        transcript,
        &mut OsEntropy,
    )
    .map_err(|e| (TransferError::Secure(e), None))?;
    let peer = channel.peer().clone();
    let trusted = match judge(keyring, &peer, SeenAt::sender(address, serves_on)) {
        Ok(trusted) => trusted,
        Err(e) => {
            // Told inside the channel: only the device that holds the key can read why.
            if let Ok(frame) = encode_receiver_msg(&ReceiverMsg::Failed {
                reason: e.to_string(),
            }) {
                let _ = channel.write_all(&frame).and_then(|()| channel.close());
            }
            return Err((TransferError::Secure(e), Some(peer)));
        }
    };
    let (reader, writer) = channel
        .split(|duplex| -> io::Result<_> {
            // Whatever the sender sent right after its last handshake message may already be
            // in the buffer: it is the start of the first record.
            let leftover = duplex.reader.buffer().to_vec();
            let socket = match duplex.reader.into_inner() {
                Incoming::Plain(socket) => socket,
                Incoming::Secure(_) => {
                    return Err(io::Error::other("a second secure hello"));
                }
            };
            let paced = socket.try_clone()?;
            let source = Cursor::new(leftover).chain(socket);
            Ok((
                Paced::new(
                    source,
                    paced,
                    Some(duplex.record_deadline),
                    Some(duplex.idle),
                ),
                duplex.writer,
            ))
        })
        .map_err(|e| (split_error(e), Some(peer.clone())))?;
    Ok(Secured {
        incoming: Incoming::Secure(Box::new(reader)),
        outgoing: Outgoing::secure(writer),
        peer,
        trusted,
    })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
