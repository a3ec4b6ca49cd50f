//! File uploads over TCP: the receiving server and the sending client, on blocking std
//! sockets driven by worker threads. The bytes on the wire are specified in
//! [`crate::protocol`]; this module moves them between sockets and files.
//!
//! Received data touches the disk only through one open handle on the download folder
//! ([`DownloadDir`], `openat`-style, never following a symlink), never through paths.

mod client;
mod dir;
#[cfg(target_os = "linux")]
mod direct;
mod files;
mod folder_keys;
mod os;
mod outgoing;
mod paced;
mod server;
pub mod wire;

use std::io::{self, ErrorKind, Read, Write};

pub use client::{
    Bottleneck, FileOutcome, OutgoingFile, OutgoingFolder, OutgoingItem, ProbeError, ProbeReport,
    SendError, SendOptions, probe, resume_key, send_files, send_items, walk_folder,
};
pub use dir::{DownloadDir, Expired};
pub use files::{Downloads, FolderClaim, NoRoom, PartFile, Reservation};
pub(crate) use paced::{Landing, Paced};
pub use server::{
    AcceptPolicy, Decision, EAGER_MAX_BYTES, MinRate, ServerConfig, ServerHandle, ServerStartError,
};
pub(crate) use server::{Dirs, RateFloor, create_root};

use crate::events::{Failure, FailureKind, Refusal};
use crate::protocol::session::SessionError;
use crate::protocol::{self, FrameError, MessageError};
use crate::secure::SecureError;

/// The reason a Ferry sender gives when its user cancels (other reasons mean it gave up).
pub(crate) const CANCELLED_BY_SENDER: &str = "cancelled by the sender";

/// Why a connection or a file failed. Each variant's text is what the user is shown.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad message: {0}")]
    Message(#[from] MessageError),
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("connection closed after {received} of {expected} bytes")]
    ShortData { received: u64, expected: u64 },
    /// The peer broke the protocol's order or byte accounting.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A file this side refused; a plain sender cannot be told, so its connection ends.
    #[error("refused: {}", protocol::escape_line(.0))]
    Refused(String),
    #[error("unexpected message: {}", protocol::escape_line(.0))]
    Unexpected(String),
    #[error("verification failed: the received data does not match the sender's BLAKE3 hash")]
    HashMismatch,
    #[error("peer went silent for {0} s")]
    Timeout(u64),
    #[error("a header took longer than {0} s to arrive")]
    SlowHeader(u64),
    #[error("upload too slow: under {bytes_per_sec} bytes/s for {window_secs} s")]
    TooSlow {
        bytes_per_sec: u64,
        window_secs: u64,
    },
    #[error("cancelled by peer: {}", protocol::escape_line(.0))]
    CancelledByPeer(String),
    /// The user on this side cancelled the transfer.
    #[error("cancelled")]
    CancelledHere,
    #[error("the server stopped")]
    Stopped,
    /// Every slot was taken and this connection, waiting on its peer, gave its own up.
    #[error(
        "dropped: it sent nothing for a while when every connection slot was taken and \
         another sender needed one"
    )]
    Evicted,
    #[error("{}", disk_message(.0))]
    Disk(io::Error),
    #[error("not enough disk space: the file needs {needed} bytes, {available} are free")]
    NoSpace { needed: u64, available: u64 },
    #[error("network error: {0}")]
    Io(io::Error),
    /// The secure channel failed: wrong pairing code, a changed key, tampered records, ...
    #[error(transparent)]
    Secure(SecureError),
}

impl TransferError {
    /// What a face shows for this error: its kind, with this error's words as the detail.
    pub fn failure(&self) -> Failure {
        let kind = match self {
            TransferError::NoSpace { needed, available } => {
                return Failure::bare(FailureKind::Refused(Refusal::NoSpace {
                    needed: *needed,
                    available: *available,
                }));
            }
            TransferError::HashMismatch => return Failure::bare(FailureKind::NotVerified),
            TransferError::Stopped => {
                return Failure::new(FailureKind::Stopped, "the server stopped");
            }
            error if error.is_interruption() => FailureKind::Interrupted { kept_bytes: None },
            TransferError::Frame(_)
            | TransferError::Message(_)
            | TransferError::Session(_)
            | TransferError::Unexpected(_) => FailureKind::Protocol,
            TransferError::Disk(_) => FailureKind::Disk,
            TransferError::Secure(e) => match refused_key(e) {
                Some(key) => return Failure::new(secure_failure_kind(e), key),
                None => FailureKind::Security,
            },
            TransferError::CancelledByPeer(_) => FailureKind::SenderGaveUp,
            TransferError::Refused(_) | TransferError::CancelledHere => FailureKind::Protocol,
            _ => FailureKind::Protocol,
        };
        Failure::new(kind, self.to_string())
    }

    /// True for interruptions of the connection itself (as opposed to bad or rejected data):
    /// a Ferry upload that ends this way keeps its `.part` so the sender can resume.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            TransferError::TruncatedFrame
                | TransferError::ShortData { .. }
                | TransferError::Timeout(_)
                | TransferError::TooSlow { .. }
                | TransferError::SlowHeader(_)
                | TransferError::Io(_)
                | TransferError::Stopped
                | TransferError::Evicted
                | TransferError::Secure(SecureError::Truncated | SecureError::Io(_))
        )
    }
}

/// The kind of failure a secure-channel error is: a key that is not the trusted one (under
/// its name, or one that looks like it) is told apart, so each face can say what to do.
pub(crate) fn secure_failure_kind(e: &SecureError) -> FailureKind {
    match e {
        SecureError::KeyChanged { .. } => FailureKind::KeyChanged { looks_alike: false },
        SecureError::LooksLikeTrusted { .. } => FailureKind::KeyChanged { looks_alike: true },
        _ => FailureKind::Security,
    }
}

/// The fingerprint of a key refused as not the trusted one, if `e` is that refusal.
pub(crate) fn refused_key(e: &SecureError) -> Option<String> {
    match e {
        SecureError::KeyChanged { fingerprint, .. }
        | SecureError::LooksLikeTrusted { fingerprint, .. } => Some(fingerprint.clone()),
        _ => None,
    }
}

fn disk_message(e: &io::Error) -> String {
    match e.kind() {
        ErrorKind::StorageFull => "disk full".to_owned(),
        ErrorKind::QuotaExceeded => "disk quota exceeded".to_owned(),
        _ => format!("cannot write the file: {e}"),
    }
}

impl From<io::Error> for TransferError {
    fn from(e: io::Error) -> Self {
        // The secure layer's verdicts (tampered, truncated) travel inside io::Errors.
        if SecureError::from_io(&e).is_some() {
            return match e.into_inner().map(|inner| inner.downcast::<SecureError>()) {
                Some(Ok(secure)) => TransferError::Secure(*secure),
                Some(Err(other)) => TransferError::Io(io::Error::other(other)),
                None => TransferError::Io(io::Error::other("secure stream error")),
            };
        }
        match e.kind() {
            ErrorKind::UnexpectedEof => TransferError::TruncatedFrame,
            _ => TransferError::Io(e),
        }
    }
}

/// How fast this machine hashes with BLAKE3 on one thread, as a transfer does (bytes/s): 64
/// MiB hashed from memory.
pub(crate) fn hash_speed() -> u64 {
    const HASH_PROBE_BYTES: usize = 64 << 20;
    let data = vec![0x5au8; HASH_PROBE_BYTES];
    let start = std::time::Instant::now();
    std::hint::black_box(blake3::hash(std::hint::black_box(&data)));
    (HASH_PROBE_BYTES as f64 / start.elapsed().as_secs_f64().max(1e-6)) as u64
}

/// Reads a frame's 4-byte prefix; `None` on a clean end of stream before its first byte.
fn read_prefix(reader: &mut impl Read) -> io::Result<Option<[u8; 4]>> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(prefix))
}

/// Reads one JSON frame body, bounded by [`protocol::MAX_FRAME_LEN`] before allocating.
/// `None` on a clean end of stream at the frame boundary.
fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>, TransferError> {
    let Some(prefix) = read_prefix(reader)? else {
        return Ok(None);
    };
    let len = protocol::decode_frame_len(prefix)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Writes a frame produced by the protocol encoders.
fn write_all(writer: &mut impl Write, bytes: &[u8]) -> Result<(), TransferError> {
    writer.write_all(bytes).map_err(TransferError::Io)
}

/// Maps a socket read error, turning timeouts into [`TransferError::Timeout`].
fn read_error(e: io::Error, idle_secs: u64) -> TransferError {
    if SecureError::from_io(&e).is_some() {
        return TransferError::from(e);
    }
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => TransferError::Timeout(idle_secs),
        _ => TransferError::from(e),
    }
}
