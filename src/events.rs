//! What the drivers (transfers, notes) report to the faces (the window and the CLI): typed
//! events on a bounded crossbeam channel, plus a waker so a sleeping UI repaints when
//! something happened. Nothing here runs a thread or touches a socket: this layer sits just
//! above [`crate::protocol`] so every driver can emit events without knowing who listens.
//!
//! Drivers never block on a slow consumer for progress: progress is throttled at the source
//! ([`ProgressThrottle`]) and dropped when the channel is full, because the next one
//! supersedes it. Lifecycle events (started, finished, failed) are never dropped while the
//! engine runs; a stopping engine gives up waiting on a consumer that does not read
//! ([`EventSink::stopped_by`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use crate::protocol::Mode;
use crate::protocol::escape_line;
pub use crate::protocol::session::Refusal;

mod channel;
mod devices;
mod doctor;
mod localsend;
pub use channel::{EVENT_CAPACITY, EventSink, PROGRESS_INTERVAL, ProgressThrottle, event_channel};
pub use devices::{DiscoveryEvent, SeenDevice, SeenState};
pub use doctor::{BeaconPath, Finding, IgnoredWhy};
pub use localsend::{LocalSendProtocol, LocalSendStatus, PinProblem, SeenLocalSend};

/// Identifies one file transfer for the lifetime of the process.
pub type TransferId = u64;

/// A fresh, process-unique transfer id.
pub fn next_transfer_id() -> TransferId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh, process-unique offer number ([`PendingOffer::offer_id`]), counted apart from the
/// transfers so the user sees offers 1, 2, 3 (not "offer 4" for the first one after a batch of
/// three files). Ferry's and LocalSend's servers share it, so an answer finds one offer only.
pub fn next_offer_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether what came from (or went to) a peer was protected, and who the peer proved to be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Security {
    /// The original protocol, or a plain UDP note: anyone on the LAN could read or forge it.
    #[default]
    Plain,
    /// Encrypted and authenticated by a Ferry device's key (see [`crate::secure`]).
    Encrypted {
        /// The device name the peer sent (hostile text: escape before showing), or the name
        /// it is trusted under.
        device: String,
        /// The peer key's fingerprint, as words two people can compare aloud.
        fingerprint: String,
        /// The peer's key is in the trusted devices.
        trusted: bool,
    },
    /// A LocalSend device (HTTPS with self-signed certificates, see [`crate::localsend`]):
    /// encrypted on the wire, but anyone can make a certificate, so the device is known by
    /// its certificate's fingerprint only and is never a trusted Ferry device. Sent to a
    /// device with encryption turned off (plain HTTP, the user agreed), it is not encrypted.
    LocalSend {
        /// The alias it sent (hostile text: escape before showing).
        alias: String,
        /// `mobile`, `desktop`, `web`, `headless` or `server`.
        device_type: String,
        /// SHA-256 of its client certificate, upper-case hex; empty when it sent none (for a
        /// device with encryption off: the id it claims).
        fingerprint: String,
        /// HTTPS; `false`: plain HTTP (anyone on the LAN could read it).
        encrypted: bool,
    },
}

impl Security {
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Security::Encrypted { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// Everything the engines report.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Transfer(TransferEvent),
    Server(ServerEvent),
    Note(NoteEvent),
    Discovery(DiscoveryEvent),
    /// This device and the devices it trusts (the window's Devices and trust section).
    Keyring(KeyringEvent),
    /// A speed test ended (`Command::TestSpeed`): its figures, or why there are none.
    Speed {
        to: String,
        outcome: Result<ProbeReport, String>,
    },
}

/// What limits a real transfer, by the speed test's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bottleneck {
    Network,
    ReceiverDisk,
    SenderCpu,
    ReceiverCpu,
}

impl std::fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bottleneck::Network => "the network",
            Bottleneck::ReceiverDisk => "the receiver's disk",
            Bottleneck::SenderCpu => "the sender's CPU",
            Bottleneck::ReceiverCpu => "the receiver's CPU",
        })
    }
}

/// A speed test's figures, in bytes per second (0: not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub security: Security,
    /// Throwaway bytes the receiver got, and over how long.
    pub bytes: u64,
    pub secs: f64,
    /// Through the network, encryption and the receiver's hashing included.
    pub network: u64,
    /// The receiver's disk, writing and syncing into its download folder.
    pub receiver_disk: u64,
    pub receiver_hash: u64,
    pub sender_hash: u64,
}

impl ProbeReport {
    /// The slowest of the figures measured: what a real transfer can go at, at best.
    pub fn bottleneck(&self) -> (Bottleneck, u64) {
        let mut limits = vec![(Bottleneck::Network, self.network)];
        for (which, speed) in [
            (Bottleneck::ReceiverDisk, self.receiver_disk),
            (Bottleneck::SenderCpu, self.sender_hash),
            (Bottleneck::ReceiverCpu, self.receiver_hash),
        ] {
            if speed > 0 {
                limits.push((which, speed));
            }
        }
        limits
            .into_iter()
            .min_by_key(|(_, speed)| *speed)
            .unwrap_or((Bottleneck::Network, self.network))
    }
}

/// The life of one file, on either side.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferEvent {
    Started {
        id: TransferId,
        direction: Direction,
        peer: SocketAddr,
        /// The name as offered (outgoing: the local file's name).
        name: String,
        /// The name it is saved under on the receiver, when known and different.
        saved_as: Option<String>,
        bytes_total: u64,
        mode: Mode,
        /// The sender's `msg`.
        msg: String,
        /// Encrypted or not, and the device on the other end.
        security: Security,
    },
    Progress {
        id: TransferId,
        bytes_done: u64,
    },
    Finished {
        id: TransferId,
        /// True when the receiver checked the BLAKE3 hash (Ferry mode).
        verified: bool,
        /// Incoming: where the file now is. Outgoing: the name the receiver saved it under.
        saved_as: Option<String>,
        path: Option<PathBuf>,
    },
    Failed {
        id: TransferId,
        failure: Failure,
    },
    /// Outgoing: the receiver holds its answer: asking its user whether to accept, or
    /// (`waiting_for`) why else.
    AwaitingDecision {
        id: TransferId,
        waiting_for: crate::protocol::WaitFor,
    },
    /// Stopped on purpose: by the user on this side, or (`by_peer`) on the other.
    Cancelled {
        id: TransferId,
        by_peer: bool,
    },
}

impl TransferEvent {
    /// The transfer this event is about.
    pub fn id(&self) -> TransferId {
        match self {
            TransferEvent::Started { id, .. }
            | TransferEvent::Progress { id, .. }
            | TransferEvent::Finished { id, .. }
            | TransferEvent::Failed { id, .. }
            | TransferEvent::Cancelled { id, .. }
            | TransferEvent::AwaitingDecision { id, .. } => *id,
        }
    }
}

/// Server lifecycle and connection-level problems (not tied to one file).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Listening {
        addr: SocketAddr,
    },
    /// The addresses a LAN peer can use to reach the server.
    Reachable {
        addrs: Vec<SocketAddr>,
    },
    /// The server could not start (port in use, folder not writable, ...).
    StartFailed {
        reason: String,
    },
    /// A Ferry sender offers files and the server asks before accepting: answer with
    /// `ServerHandle::answer(offer_id, ..)` (the window: `Command::Answer`).
    OfferPending(PendingOffer),
    /// A sender typed this server's pairing code: both devices now trust each other.
    Paired {
        peer: SocketAddr,
        /// The device name it sent (hostile text: escape before showing).
        device: String,
        fingerprint: String,
    },
    /// The pairing code on offer changed: a new code, a try used, or (`None`) no code any
    /// more (used, expired, burnt or withdrawn).
    Pairing(Option<PairingOffer>),
    /// The code on offer ended unused (sent before the `Pairing(None)` that says it is gone).
    PairingEnded(PairingEnded),
    /// The offer was decided, or its sender left: the question is no longer open.
    OfferClosed {
        offer_id: u64,
    },
    Stopped,
    /// A connection was refused or ended with an error before or between files.
    ConnectionError {
        peer: SocketAddr,
        reason: String,
    },
    /// Kept partial files (`*.ferry.part`) older than the configured age were removed (at
    /// start or by the hourly check): their names, sorted, and their total size.
    PartialsExpired {
        names: Vec<String>,
        bytes: u64,
    },
    /// LocalSend receiving beside the Ferry server (the window): on, or off and why.
    LocalSend(LocalSendStatus),
}

/// One upload waiting for the user's decision (what a prompt shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffer {
    pub offer_id: u64,
    pub peer: SocketAddr,
    /// Files and bytes in the whole upload (the announced batch, or this one file).
    pub count: u64,
    pub bytes: u64,
    /// Every listed file's name, as it would be saved; `count` may be larger when the sender
    /// listed fewer files than it announced.
    pub names: Vec<String>,
    /// Each listed file's size, when the sender gave them all (else empty).
    pub sizes: Vec<u64>,
    pub msg: String,
    /// Encrypted or not, and from which device ("Accept and trust" is offered when encrypted
    /// and not yet trusted).
    pub security: Security,
    /// A folder offered as a whole: its name and how many folders it holds.
    pub folder: Option<OfferedFolder>,
}

/// A folder offered as a whole, for "photos: 120 files in 14 folders, 340 MB".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFolder {
    /// The folder's name as it would be saved.
    pub name: String,
    /// Folders inside it (every level, empty ones too; not the folder itself).
    pub folders: u64,
}

/// How a code ended without a pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingEnded {
    /// All its tries were spent (each connection that asks to pair spends one).
    Burnt,
    /// Its time was up.
    Expired,
}

/// A pairing code the server offers, as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingOffer {
    /// The code to read aloud (`NNNN-word-word-word`): a secret while it lives, never logged.
    pub code: String,
    /// Handshakes it still allows.
    pub tries_left: u32,
    /// When it stops working.
    pub expires_at: Instant,
}

/// This device and the devices it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringEvent {
    /// This device's name and key fingerprint (at start and after a rename).
    ThisDevice { name: String, fingerprint: String },
    /// The trusted devices now: at start and whenever the list changed (a pairing, an
    /// "Accept and trust", a rename, a forget, or another Ferry process).
    Trusted(Vec<TrustedPeer>),
    /// The identity could not be loaded, or a rename or forget failed.
    Error { reason: String },
}

/// A trusted device, as the window lists it (a copy of the trust store's row, so this layer
/// stays below [`crate::secure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeer {
    /// The name it is trusted under (first sent by the peer: hostile text, escape it).
    pub name: String,
    pub fingerprint: String,
    /// Its key: an upload to it by name must meet this key.
    pub public_key: [u8; 32],
    /// Where it was last seen, as `host:port`.
    pub last_address: Option<String>,
    /// The IP its key was last proven at, shown when no address (no port) is known: a
    /// device that only ever sent from `ferry send`. Never sent to.
    pub last_ip: Option<std::net::IpAddr>,
    /// When it was last seen (0: unknown).
    pub last_seen_unix_secs: u64,
}

/// Notes (UDP) activity.
#[derive(Debug, Clone, PartialEq)]
pub enum NoteEvent {
    Received {
        from: SocketAddr,
        text: String,
        at: SystemTime,
        /// Sealed by a trusted device, or plain text anyone could have sent.
        security: Security,
    },
    /// A sealed datagram that did not open (unknown or forgotten sender, tampered, replayed):
    /// its bytes are never shown as text.
    Refused {
        from: SocketAddr,
        reason: String,
        at: SystemTime,
    },
    /// The notes socket is bound (answer to `Command::StartNotes`).
    Listening { addr: SocketAddr },
    /// A note left this machine; UDP promises nothing more.
    Sent {
        to: SocketAddr,
        text: String,
        at: SystemTime,
        /// Sealed to a trusted device, or plain.
        security: Security,
    },
    /// Binding or sending failed.
    Error { reason: String },
    /// A text message to the LocalSend device at `to` was refused over its PIN (asked
    /// for, wrong, or too many tries): the face asks for the PIN and sends `text` again.
    PinNeeded {
        to: SocketAddr,
        text: String,
        problem: PinProblem,
    },
    /// `count` notes arrived faster than they were shown and the oldest of them were
    /// dropped (see [`crate::notes`]'s bounded queue); the notes after this event are the
    /// ones kept.
    Dropped { count: u64 },
}

/// A shared flag that asks a transfer to stop at the next chunk.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a file did not make it, typed, so each face says it in its own words and language;
/// what the peer or the operating system said stays apart, in `detail` (shown escaped and
/// untranslated). `Display` gives the English sentence the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: Option<String>,
}

/// The kinds of [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The receiving side refused the file before any byte was written.
    Refused(Refusal),
    /// The receiver declined the offer (sender side; its words in `detail`).
    Declined,
    /// The connection broke mid-file (`detail` says how). A Ferry receiver keeps
    /// `kept_bytes` for a resume; `None` where nothing is kept or it is not this side's to say.
    Interrupted { kept_bytes: Option<u64> },
    /// The data received does not match the sender's BLAKE3 hash.
    NotVerified,
    /// The sender gave up on the file for a reason of its own (receiver side).
    SenderGaveUp,
    /// The receiver could not keep the file (sender side; its words in `detail`).
    ReceiverFailed,
    /// The peer broke the protocol.
    Protocol,
    /// The file to send cannot be read, or changed while it was sent (sender side).
    LocalFile,
    /// The file cannot be written (disk full, permissions).
    Disk,
    /// The receiver cannot be reached.
    Unreachable,
    /// The receiver never answered like a Ferry receiver: perhaps a plain server.
    NoFerryAnswer,
    /// An earlier file's failure ended the connection before this file was sent.
    NotSent,
    /// This side could not start the work (no thread could be made, ...).
    NotStarted,
    /// The server stopped.
    Stopped,
    /// The secure channel failed: a wrong pairing code, records that were tampered with
    /// (`detail` says which).
    Security,
    /// The device answered under a trusted device's name (or, `looks_alike`, a name that only
    /// looks like one) with another key, and was refused (`detail`: that key's fingerprint).
    KeyChanged { looks_alike: bool },
    /// A LocalSend receiver wants a PIN, refused the one given, or refuses for a while.
    Pin(PinProblem),
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            kind,
            detail: (!detail.is_empty()).then_some(detail),
        }
    }

    pub fn bare(kind: FailureKind) -> Self {
        Self { kind, detail: None }
    }

    /// The peer's or the system's words, escaped for display (empty when none).
    pub fn detail_text(&self) -> std::borrow::Cow<'_, str> {
        escape_line(self.detail.as_deref().unwrap_or(""))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = self.detail_text();
        let with_detail = |f: &mut std::fmt::Formatter<'_>, head: &str| {
            if detail.is_empty() {
                f.write_str(head)
            } else if head.is_empty() {
                f.write_str(&detail)
            } else {
                write!(f, "{head}: {detail}")
            }
        };
        match self.kind {
            FailureKind::Refused(refusal) => with_detail(f, &format!("refused: {refusal}")),
            FailureKind::Declined => with_detail(f, "declined"),
            FailureKind::Interrupted { kept_bytes } => {
                with_detail(f, if detail.is_empty() { "interrupted" } else { "" })?;
                match kept_bytes {
                    Some(0) => f.write_str("; nothing had arrived, so nothing is kept"),
                    Some(kept) => write!(
                        f,
                        "; the {kept} bytes received are kept, sending again resumes"
                    ),
                    None => Ok(()),
                }
            }
            FailureKind::NotVerified => with_detail(
                f,
                "verification failed: the received data does not match the sender's BLAKE3 hash",
            ),
            FailureKind::SenderGaveUp => with_detail(f, "the sender gave up"),
            FailureKind::ReceiverFailed => with_detail(f, "the receiver could not keep it"),
            FailureKind::Protocol
            | FailureKind::LocalFile
            | FailureKind::Disk
            | FailureKind::Unreachable
            | FailureKind::NoFerryAnswer => with_detail(f, ""),
            FailureKind::NotSent => with_detail(f, "not sent"),
            FailureKind::NotStarted => with_detail(f, "could not start"),
            FailureKind::Stopped => with_detail(f, ""),
            FailureKind::Security => with_detail(f, "security check failed"),
            FailureKind::KeyChanged { looks_alike } => {
                f.write_str(match looks_alike {
                    false => "refused: not the trusted device of that name, it answered with another key",
                    true => "refused: its name only looks like a trusted device's, and it answered with another key",
                })?;
                match detail.is_empty() {
                    true => Ok(()),
                    false => write!(f, " (fingerprint {detail})"),
                }
            }
            FailureKind::Pin(PinProblem::Required) => with_detail(f, "a PIN is required"),
            FailureKind::Pin(PinProblem::Wrong) => with_detail(f, "wrong PIN"),
            FailureKind::Pin(PinProblem::TooManyTries) => with_detail(f, "too many PIN attempts"),
        }
    }
}
