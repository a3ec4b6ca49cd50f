//! The sending side: every file over one connection, streamed from disk in chunks (never the
//! whole file in memory), hashed with BLAKE3 on the same single read in Ferry mode. The order
//! of the exchange and the count of each file's bytes belong to a
//! [`SenderSession`](crate::protocol::session::SenderSession); this driver reads files,
//! hashes them and moves the bytes.
//!
//! - `mod.rs` (here): what a send is given and what becomes of each file; connecting.
//! - [`upload`]: one connection's files, one after another (plain and Ferry).
//! - [`answers`]: a Ferry receiver's answers, read on a thread of their own, and waiting
//!   for them.

mod answers;
mod eager;
mod folder;
mod probe;
mod upload;

pub use folder::{OutgoingFolder, OutgoingItem, walk_folder};
pub use probe::{Bottleneck, ProbeError, ProbeReport, probe};

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::upload::Upload;
use crate::events::Security;
use crate::events::{
    CancelToken, EventSink, Failure, FailureKind, TransferEvent, TransferId, next_transfer_id,
};
use crate::protocol::session::SenderSession;
use crate::protocol::{CHUNK_LEN, Mode, escape_line};
use crate::secure::pairing::PairingCode;
use crate::secure::{Keyring, SecureError};
use crate::transfer::TransferError;
use crate::transfer::wire::{Incoming, Outgoing, secure_sender};

/// How a send is made.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// `host:port` of the receiver.
    pub to: String,
    /// The header's `msg`, sent with every file.
    pub msg: String,
    /// Plain speaks the original protocol to a plain server (nothing is answered or verified).
    pub mode: Mode,
    pub connect_timeout: Duration,
    /// How long to wait for each answer of a Ferry receiver.
    pub answer_timeout: Duration,
    /// How long to wait once the receiver said it is asking its user.
    pub decision_timeout: Duration,
    /// This device's identity and trusted devices. With one, a Ferry send is encrypted
    /// (the receiver's key checked against the trusted devices); without, it is not.
    pub keyring: Option<Keyring>,
    /// A pairing code the receiver shows: the send pairs the two devices first.
    pub code: Option<PairingCode>,
    /// The key the receiver must present (sending to a trusted device by name): anything
    /// else at that address is refused before a byte of a file is sent.
    pub expect_key: Option<[u8; 32]>,
    /// Plain mode only: send a folder's files with their relative paths as names (a plain
    /// receiver has no folders). Without it a folder is refused in plain mode.
    pub flatten: bool,
    /// The port this device's own Ferry server listens on, if it runs one: told to an
    /// encrypted receiver, which saves this device there if it comes to trust it.
    pub serves_on: Option<u16>,
}

impl SendOptions {
    pub fn new(to: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            msg: String::new(),
            mode: Mode::Ferry,
            connect_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(30),
            decision_timeout: Duration::from_secs(330),
            keyring: None,
            code: None,
            expect_key: None,
            flatten: false,
            serves_on: None,
        }
    }
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// The receiver checked the hash and saved it under `saved_as`; `resumed_from` bytes
    /// were already there from an interrupted upload (0 when all were sent now).
    Verified {
        saved_as: String,
        resumed_from: u64,
    },
    /// Plain mode: every byte was handed to the network; nobody checked it.
    SentUnverified,
    Declined {
        reason: String,
    },
    Failed(Failure),
    /// Cancelled on this side.
    Cancelled,
    /// The receiver cancelled it.
    CancelledByPeer {
        reason: String,
    },
}

impl FileOutcome {
    /// True for the outcomes that count as success for the mode used.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            FileOutcome::Verified { .. } | FileOutcome::SentUnverified
        )
    }
}

impl std::fmt::Display for FileOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOutcome::Verified {
                saved_as,
                resumed_from: 0,
            } => {
                write!(f, "verified, saved as {saved_as:?}")
            }
            FileOutcome::Verified {
                saved_as,
                resumed_from,
            } => {
                write!(
                    f,
                    "verified, saved as {saved_as:?} (resumed at byte {resumed_from})"
                )
            }
            FileOutcome::SentUnverified => f.write_str("sent, unverified"),
            // Reasons may be the receiver's words: never raw control characters.
            FileOutcome::Declined { reason } => write!(f, "declined: {}", escape_line(reason)),
            FileOutcome::Failed(failure) => write!(f, "failed: {failure}"),
            FileOutcome::Cancelled => f.write_str("cancelled"),
            FileOutcome::CancelledByPeer { reason } => {
                write!(f, "cancelled by peer: {}", escape_line(reason))
            }
        }
    }
}

/// Why nothing could be sent at all.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot resolve {0:?}: expected HOST:PORT")]
    Resolve(String),
    #[error(transparent)]
    Destination(crate::defaults::DestinationError),
    #[error("cannot connect to {to}: {source}")]
    Connect { to: String, source: std::io::Error },
    /// `key`: the fingerprint of a key refused as not the trusted one.
    #[error("no secure connection with {to}: {reason}")]
    Secure {
        to: String,
        reason: String,
        key: Option<String>,
    },
}

impl SendError {
    /// What each file's row says when nothing could be sent: this error's words, or for a
    /// key refused as not the trusted one its fingerprint alone (the face says the rest in
    /// its own language).
    fn row_failure(&self, kind: FailureKind) -> Failure {
        match self {
            SendError::Secure { key: Some(key), .. } => Failure::new(kind, key.clone()),
            _ => Failure::new(kind, self.to_string()),
        }
    }
}

/// One file to upload; the caller picks the id so it can match events to its own rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub id: TransferId,
    pub path: PathBuf,
    /// A folder's file: the device and inode it had when the folder was walked. Another
    /// process may swap it (or a folder above it) for a symlink leading out of the folder
    /// before it is read; [`OutgoingFile::open`] then refuses it rather than send that.
    pub identity: Option<(u64, u64)>,
}

impl OutgoingFile {
    /// A file with a fresh id.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            id: next_transfer_id(),
            path: path.into(),
            identity: None,
        }
    }

    /// Opens the file to read it; a folder's file only if it is still the file the walk
    /// found (so a symlink swapped in since is never followed out of the folder). Anything
    /// but a regular file is refused, and never waited on: a FIFO put where the file was
    /// must not block the open until someone writes to it.
    pub fn open(&self) -> std::io::Result<File> {
        self.open_checked().map(|(file, _)| file)
    }

    /// [`OutgoingFile::open`], and the size to announce for the file: its length, if that
    /// says what it holds.
    ///
    /// The files the kernel makes up as they are read (`/proc/cpuinfo`, `/sys/...`) say 0
    /// bytes, or 4096, whatever they hold: sent by that size they would arrive empty,
    /// "verified", or fail half-way as "shrank". They are refused before anything is
    /// offered, by the file system they live on, and any other file that says 0 bytes is
    /// read for one byte to be sure.
    pub fn open_sized(&self) -> std::io::Result<(File, u64)> {
        use std::os::unix::fs::FileExt;
        let (file, meta) = self.open_checked()?;
        let made_up = || {
            std::io::Error::other(
                "its size says nothing about its content (the system makes it up as it is \
                 read, like the files in /proc and /sys); copy it to a regular file and send \
                 that",
            )
        };
        // A file system that cannot say what it is (some FUSE ones) is not one of those; the
        // magic is 32 bits wide wherever `f_type` is (sign-extended where it is an `i32`).
        let fs_type = rustix::fs::fstatfs(&file).map(|fs| fs.f_type as u32 as u64);
        if fs_type.is_ok_and(|t| MADE_UP_FILE_SYSTEMS.contains(&t)) {
            return Err(made_up());
        }
        if meta.len() == 0 && file.read_at(&mut [0u8], 0)? > 0 {
            return Err(made_up());
        }
        Ok((file, meta.len()))
    }

    /// The open file and what `fstat` said of it (see [`OutgoingFile::open`]).
    fn open_checked(&self) -> std::io::Result<(File, std::fs::Metadata)> {
        use std::os::unix::fs::MetadataExt;
        let file = open_nonblocking(&self.path)?;
        let meta = file.metadata()?;
        if let Some(identity) = self.identity
            && (meta.dev(), meta.ino()) != identity
        {
            return Err(std::io::Error::other(
                "it was replaced since the folder was read (by another file, or a symlink)",
            ));
        }
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        // The regular file is read blocking again.
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
        Ok((file, meta))
    }
}

/// The longest [`OutgoingFile::open`] waits for another program's write lease on a file to
/// be let go: Linux takes it back by force after `/proc/sys/fs/lease-break-time` (45 s by
/// default), as long as a blocking open would have waited.
const LEASE_BREAK_WAIT: Duration = Duration::from_secs(60);

/// Opens `path` to read without blocking on it (a FIFO opens at once). A regular file under
/// another program's write lease (Samba's oplocks, an NFS server's delegations) cannot be
/// opened at once: a blocking open would wait for the holder to let go, this one fails
/// with `WouldBlock` (having asked the holder to let go), so it is tried again until then.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + LEASE_BREAK_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        match opened {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// `statfs` magic numbers of Linux's file systems whose files are made up as they are read:
/// proc, sysfs, debugfs, tracefs, securityfs, configfs, cgroup, cgroup2, bpf, efivarfs, pstore.
const MADE_UP_FILE_SYSTEMS: [u64; 11] = [
    0x9fa0,
    0x6265_6572,
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0x6265_6570,
    0x0027_e0eb,
    0x6367_7270,
    0xcafe_4a11,
    0xde5e_81e4,
    0x6165_676c,
];

/// Uploads `files` in order over one connection and reports each file's outcome, in order.
/// Events go to `sink` (every file gets a `Finished` or `Failed`, even when the connection
/// could not be made); `cancel` stops at the next chunk.
pub fn send_files(
    opts: &SendOptions,
    files: &[OutgoingFile],
    sink: &EventSink,
    cancel: &CancelToken,
) -> Result<Vec<FileOutcome>, SendError> {
    let items: Vec<OutgoingItem> = files.iter().cloned().map(OutgoingItem::File).collect();
    send_items(opts, &items, sink, cancel)
}

/// Uploads files and folders in order over one connection: one outcome per file (a
/// folder's files in its order), events for each. A folder is one offer the receiver
/// accepts or declines as a whole; its files then stream with no round trip each.
pub fn send_items(
    opts: &SendOptions,
    items: &[OutgoingItem],
    sink: &EventSink,
    cancel: &CancelToken,
) -> Result<Vec<FileOutcome>, SendError> {
    let files: Vec<OutgoingFile> = items
        .iter()
        .flat_map(|item| item.files().into_iter().cloned())
        .collect();
    let connected = connect(opts).and_then(|stream| establish(opts, stream));
    let (outgoing, incoming, peer, security) = match connected {
        Ok(connected) => connected,
        Err((e, kind)) => {
            for file in files {
                sink.transfer(TransferEvent::Failed {
                    id: file.id,
                    failure: e.row_failure(kind),
                });
            }
            return Err(e);
        }
    };
    let answers = match incoming.map(answers::spawn_reader).transpose() {
        Ok(answers) => answers,
        Err(source) => {
            let e = SendError::Connect {
                to: opts.to.clone(),
                source,
            };
            for file in files {
                sink.transfer(TransferEvent::Failed {
                    id: file.id,
                    failure: Failure::new(FailureKind::NotStarted, e.to_string()),
                });
            }
            return Err(e);
        }
    };
    // A Ferry chunk is read, hashed and sent from this one buffer.
    let buf_len = CHUNK_LEN;
    let mut session = Upload {
        stream: outgoing,
        security,
        peer,
        opts,
        sink,
        cancel,
        answers,
        session: SenderSession::new(opts.mode),
        buf: vec![0u8; buf_len],
        broken: None,
        heard_from_peer: false,
        verdicts: Vec::new(),
        outcomes: Vec::with_capacity(files.len()),
        owed: std::collections::VecDeque::new(),
        eager: std::collections::VecDeque::new(),
        receiver_waiting: false,
        again: Vec::new(),
        eager_off: false,
        grace_ends: None,
    };
    let loose: Vec<OutgoingFile> = items
        .iter()
        .filter_map(|item| match item {
            OutgoingItem::File(file) => Some(file.clone()),
            OutgoingItem::Folder(_) => None,
        })
        .collect();
    if opts.mode == Mode::Ferry && !loose.is_empty() {
        session.send_batch(&loose);
    }
    for item in items {
        match (item, opts.mode) {
            (OutgoingItem::File(file), _) => session.send_one(file, None),
            (OutgoingItem::Folder(folder), Mode::Plain) if opts.flatten => {
                for (index, file) in &folder.files {
                    let name = folder
                        .entries
                        .get(*index as usize)
                        .map(|e| format!("{}/{}", folder.name, e.path));
                    session.send_one(file, name.as_deref());
                }
            }
            (OutgoingItem::Folder(folder), _) => {
                // A folder's answers are its own: the files before it are settled first.
                session.settle_owed();
                let outcomes = session.send_folder(folder);
                session.outcomes.extend(outcomes.into_iter().map(Some));
            }
        }
    }
    session.settle_and_send_again();
    let outcomes = std::mem::take(&mut session.outcomes)
        .into_iter()
        .map(|outcome| {
            // Every owed verdict was settled above, one way or another.
            outcome.unwrap_or_else(|| {
                FileOutcome::Failed(Failure::new(
                    FailureKind::Protocol,
                    "the receiver gave no verdict on this file",
                ))
            })
        })
        .collect();
    session.finish();
    Ok(outcomes)
}

/// What a connection became: where to write, where the answers come from (Ferry only), the
/// receiver's address and whether the connection is encrypted.
type Established = (Outgoing, Option<Incoming>, SocketAddr, Security);

/// Plain as it is, or encrypted: the secure hello and handshake, the receiver's key checked.
fn establish(
    opts: &SendOptions,
    stream: TcpStream,
) -> Result<Established, (SendError, FailureKind)> {
    let to = || opts.to.clone();
    let peer = stream.peer_addr().map_err(|source| {
        (
            SendError::Connect { to: to(), source },
            FailureKind::Unreachable,
        )
    })?;
    let clone = |stream: &TcpStream| {
        stream.try_clone().map_err(|source| {
            (
                SendError::Connect { to: to(), source },
                FailureKind::NotStarted,
            )
        })
    };
    if opts.expect_key.is_some() && (opts.keyring.is_none() || opts.mode == Mode::Plain) {
        // A trusted device is known by its key: without a secure channel nothing proves that
        // the machine at this address is it.
        let reason = "the destination is a trusted device, which only an encrypted connection can prove (no device identity here, or a plain send)".to_owned();
        let e = SendError::Secure {
            to: to(),
            reason,
            key: None,
        };
        return Err((e, FailureKind::Security));
    }
    let keyring = match (&opts.keyring, opts.mode) {
        (Some(keyring), Mode::Ferry) => keyring,
        (_, Mode::Ferry) => {
            let incoming = Incoming::Plain(clone(&stream)?);
            return Ok((
                Outgoing::plain(stream),
                Some(incoming),
                peer,
                Security::Plain,
            ));
        }
        (_, Mode::Plain) => return Ok((Outgoing::plain(stream), None, peer, Security::Plain)),
    };
    // The go-ahead and the handshake get the answer timeout; the answers thread then waits
    // as long as each answer may take.
    let _ = stream.set_read_timeout(Some(opts.answer_timeout));
    let socket = clone(&stream)?;
    let secured =
        secure_sender(stream, keyring, opts.code.as_ref(), opts.serves_on).map_err(|e| {
            let kind = match &e {
                TransferError::Secure(e) => super::secure_failure_kind(e),
                TransferError::Refused(_) => FailureKind::Declined,
                _ => FailureKind::NoFerryAnswer,
            };
            let reason = match &e {
                TransferError::Secure(_) | TransferError::Refused(_) => e.to_string(),
                _ => format!("{e} before answering; {}", answers::PLAIN_HINT),
            };
            let key = match &e {
                TransferError::Secure(e) => super::refused_key(e),
                _ => None,
            };
            (
                SendError::Secure {
                    to: to(),
                    reason,
                    key,
                },
                kind,
            )
        })?;
    let _ = socket.set_read_timeout(None);
    if let Some(expected) = opts.expect_key
        && secured.peer.public_key != expected
    {
        let changed = SecureError::KeyChanged {
            name: secured.peer.name.clone(),
            fingerprint: secured.peer.fingerprint(),
        };
        let kind = super::secure_failure_kind(&changed);
        let e = SendError::Secure {
            to: to(),
            reason: changed.to_string(),
            key: super::refused_key(&changed),
        };
        return Err((e, kind));
    }
    let security = secured.security(keyring);
    Ok((secured.outgoing, Some(secured.incoming), peer, security))
}

fn connect(opts: &SendOptions) -> Result<TcpStream, (SendError, FailureKind)> {
    let to = crate::defaults::engine_destination(&opts.to)
        .map_err(|e| (SendError::Destination(e), FailureKind::Unreachable))?;
    let addrs: Vec<SocketAddr> = to
        .to_socket_addrs()
        .map_err(|_| {
            (
                SendError::Resolve(opts.to.clone()),
                FailureKind::Unreachable,
            )
        })?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.connect_timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(opts.answer_timeout));
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err((
        match last_error {
            Some(source) => SendError::Connect {
                to: opts.to.clone(),
                source,
            },
            None => SendError::Resolve(opts.to.clone()),
        },
        FailureKind::Unreachable,
    ))
}

/// What identifies this copy of a file across runs of the sender: its absolute path, size
/// and modification time. Sent with each Ferry offer, so a receiver resumes a partial only
/// for the same sender sending the same, unchanged file (the prefix hash still decides).
pub fn resume_key(path: &Path) -> std::io::Result<String> {
    let path = path.canonicalize()?;
    let meta = std::fs::metadata(&path)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ferry resume key v1\0");
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(&meta.len().to_le_bytes());
    hasher.update(&modified.as_secs().to_le_bytes());
    hasher.update(&modified.subsec_nanos().to_le_bytes());
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

/// `read`, retrying on interruption.
pub(super) fn read_some(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}
