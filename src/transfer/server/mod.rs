//! The receiving side: a listener thread and one bounded thread per connection.
//!
//! Each connection speaks plain or Ferry, decided by its first header (see
//! [`crate::protocol`]); the order of its messages and the count of its bytes are the
//! business of a [`ReceiverSession`](crate::protocol::session::ReceiverSession), which this
//! driver feeds. Files are written through [`PartFile`](super::PartFile), so nothing appears
//! under a final name until every byte arrived (and, for Ferry peers, the hash matched) and
//! was synced. A bad connection is logged, reported as an event and closed; the server keeps
//! serving.
//!
//! The download folder is opened once at start ([`Downloads`], one directory handle every
//! connection writes through), which also holds what connections share about it: the
//! partials in use, the next free number per name and the bytes reserved by accepted offers.
//! Old partials are removed at start, then hourly by a housekeeping thread.
//!
//! - `mod.rs` (here): configuration, the handle, state the threads share.
//! - [`listener`]: accepting, connection slots (total and per address), refusals.
//! - [`connection`]: one connection's driver: frames in, answers out, one file after another.
//! - [`consent`]: asking the user, with the decision, the sender leaving and a stop raced.
//! - [`outcome`]: how a file ended: the partial dealt with first, then the answer and event.
//! - [`held`]: verified small files named in batches, one sync for many.
//! - [`pump`]: a file's bytes from the socket to the disk, hashed on the way.

mod committer;
mod connection;
mod consent;
mod fills;
mod folder;
mod folder_resume;
mod folder_rx;
mod held;
mod listener;
mod outcome;
mod probe;
mod pump;
mod secure_upgrade;

pub use connection::EAGER_MAX_BYTES;

pub(crate) use folder_rx::{Dirs, create_root};
pub(crate) use pump::RateFloor;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::files::Downloads;
use super::paced::Landing;
use crate::defaults::{
    DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FILES_PER_CONNECTION,
    DEFAULT_MAX_PER_PEER, DEFAULT_PARTIAL_MAX_AGE_DAYS,
};
use crate::events::{Event, EventSink, ServerEvent, TransferId};
use crate::secure::pairing::{CODE_LIFETIME, Pairing, PairingCode, PairingEnd};
use crate::secure::rng::OsEntropy;
use crate::secure::{Keyring, SecureError};

/// How often old partials are looked for while the server runs (also once at start).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);
/// How long `stop` lets connections end on their own (naming what they hold, telling their
/// senders) before it cuts the ones still busy.
const LAST_WORDS_GRACE: Duration = Duration::from_secs(2);

/// What a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// The download folder; must exist.
    pub dir: PathBuf,
    /// Connections served at once; one more gets an explicit refusal.
    pub max_connections: usize,
    /// A peer silent for this long is dropped.
    pub idle_timeout: Duration,
    /// Whose offers are taken without asking; the others wait for a decision
    /// ([`ServerEvent::OfferPending`]) or are refused. Can be changed while running:
    /// [`ServerHandle::set_policy`].
    pub policy: AcceptPolicy,
    /// Refuse plain (original-protocol) senders, which cannot encrypt.
    pub require_encryption: bool,
    /// This device's identity and trusted devices: without one, Ferry senders that ask for
    /// encryption are refused with a reason (and plain ones work as ever).
    pub keyring: Option<Keyring>,
    /// How long an offer waits for the user's decision before it is declined.
    pub decision_timeout: Duration,
    /// Connections one IP address may hold at once, so a few peers cannot take every slot.
    pub max_per_peer: usize,
    /// Once a frame's first byte arrived, the whole frame must arrive within this time (a
    /// peer that trickles a header byte by byte is dropped).
    pub header_deadline: Duration,
    /// When every slot is taken, a newcomer takes the slot of the connection that has waited
    /// longest for its peer's next frame, if that wait is at least this long: whole frames
    /// sent just within the idle timeout cannot hold the slots for ever.
    pub evict_waiting_after: Duration,
    /// A file's data must arrive at least this fast, measured over each [`MinRate::window`].
    pub min_rate: MinRate,
    /// The longest a speed test may go on sending once it was accepted (a Ferry sender's
    /// sends for 60 s at most; on a slow link its buffered bytes still drain after that, so
    /// the cap leaves room): a longer one ends with that reason, whatever it announced.
    pub speed_test_max: Duration,
    /// Files one connection may offer; more end the connection.
    pub max_files_per_connection: u64,
    /// Kept partials (`*.ferry.part`) older than this are removed, at start and hourly.
    pub partial_max_age: Duration,
    /// Sync each file's data before it is reported complete or verified (and a partial's
    /// before it is reported kept), and the folder after each new name. Off only for
    /// benchmarks: a power cut may then lose files both sides were told are safe.
    pub fsync: bool,
    /// Write large synced files past the page cache (`O_DIRECT`) where the file system is
    /// one known to take that well (see `direct.rs`). Off: through the page cache, as
    /// `--no-direct-io` asks where direct writes turn out slow.
    pub direct_io: bool,
}

/// Whose offers a server takes without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Ask about every offer. Plain senders, which cannot be asked, are refused.
    Ask,
    /// Trusted devices without asking; other Ferry devices are asked, plain senders refused.
    Trusted,
    /// Trusted devices only: every other offer is refused without asking.
    TrustedOnly,
    /// Everyone without asking, plain senders included (the original's behaviour).
    Everyone,
}

impl AcceptPolicy {
    /// Whether an offer from a sender that is (or is not) a trusted device is taken without
    /// asking (`Some(true)`), asked about (`Some(false)`) or refused (`None`).
    pub fn without_asking(self, trusted: bool) -> Option<bool> {
        match (self, trusted) {
            (AcceptPolicy::Everyone, _) => Some(true),
            (AcceptPolicy::Trusted | AcceptPolicy::TrustedOnly, true) => Some(true),
            (AcceptPolicy::TrustedOnly, false) => None,
            (AcceptPolicy::Ask, _) | (AcceptPolicy::Trusted, false) => Some(false),
        }
    }
}

/// A user's answer to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Accept, and trust the sending device from now on (its key is pinned).
    AcceptAndTrust,
    Decline,
}

/// The slowest upload a server keeps: fewer than `bytes_per_sec * window` bytes in any
/// `window` of a file's data drops the connection, so a trickling peer frees its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl ServerConfig {
    pub fn new(bind: IpAddr, port: u16, dir: PathBuf) -> Self {
        Self {
            bind,
            port,
            dir,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            policy: AcceptPolicy::Everyone,
            require_encryption: false,
            keyring: None,
            decision_timeout: Duration::from_secs(300),
            max_per_peer: DEFAULT_MAX_PER_PEER,
            header_deadline: Duration::from_secs(10),
            evict_waiting_after: Duration::from_secs(5),
            speed_test_max: Duration::from_secs(180),
            min_rate: MinRate {
                bytes_per_sec: 1024,
                window: Duration::from_secs(30),
            },
            max_files_per_connection: DEFAULT_MAX_FILES_PER_CONNECTION,
            partial_max_age: Duration::from_secs(DEFAULT_PARTIAL_MAX_AGE_DAYS * 24 * 3600),
            fsync: true,
            direct_io: true,
        }
    }

    /// How its received files reach the disk (from `fsync` and `direct_io`).
    pub(crate) fn landing(&self) -> Landing {
        Landing::new(self.fsync, self.direct_io)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerStartError {
    #[error("port {port} is in use")]
    PortInUse { port: u16 },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("download folder {0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("cannot open the download folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file being received, as `cancel` finds it.
struct Live {
    cancel: Arc<AtomicBool>,
    /// The connection's socket, shut for reading to wake a blocked read (one handle per
    /// connection, shared by its files).
    stream: Option<Arc<TcpStream>>,
}

/// State shared by the listener and the connection threads.
struct Shared {
    config: ServerConfig,
    /// Stopped by `stopping`: see [`EventSink::stopped_by`].
    sink: EventSink,
    stopping: Arc<AtomicBool>,
    policy: Mutex<AcceptPolicy>,
    /// The pairing code on offer, if any (`ServerHandle::start_pairing`).
    pairing: Mutex<Option<Pairing>>,
    /// Each connection's slot: its address, since when it waits for its peer's next frame,
    /// whether it was evicted (see [`listener::Slot`]). The limits count these.
    slots: Mutex<HashMap<u64, listener::SlotState>>,
    refusing: AtomicUsize,
    /// Clones of the live connections, so `stop` can shut them down mid-read.
    conns: Mutex<HashMap<u64, TcpStream>>,
    /// Told whenever a connection leaves `conns` (see [`listener::forget_conn`]).
    conn_gone: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The download folder, opened once; every connection writes through it.
    downloads: Downloads,
    live: Mutex<HashMap<TransferId, Live>>,
    /// Offers waiting for the user: where to send the decision.
    pending: Mutex<HashMap<u64, crossbeam_channel::Sender<Decision>>>,
    /// Disconnects when the server stops, waking every `select!` that includes it.
    stop_signal: crossbeam_channel::Receiver<()>,
    /// The speed test's last measurement of this machine: when, and the disk's and the
    /// hashing's bytes/s (see `probe.rs`).
    machine_figures: Mutex<Option<(Instant, (u64, u64))>>,
}

/// A running server. Dropping it stops the server, cancels in-flight uploads (plain ones
/// leave nothing; interrupted Ferry ones keep their `.part` for a resume) and joins every
/// thread.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// Expires old partials hourly; stops when the sender is dropped.
    housekeeping: Option<(crossbeam_channel::Sender<()>, JoinHandle<()>)>,
    /// Dropped at stop: disconnects `Shared::stop_signal`.
    stop_tx: Option<crossbeam_channel::Sender<()>>,
}

impl ServerHandle {
    /// Binds and starts accepting on a thread of its own.
    pub fn start(config: ServerConfig, sink: EventSink) -> Result<Self, ServerStartError> {
        if !config.dir.is_dir() {
            return Err(ServerStartError::NotAFolder(config.dir.clone()));
        }
        let downloads = Downloads::open(&config.dir, config.fsync).map_err(|source| {
            ServerStartError::Folder {
                path: config.dir.clone(),
                source,
            }
        })?;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr).map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServerStartError::PortInUse { port: config.port },
            _ => ServerStartError::Bind { addr, source },
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerStartError::Bind { addr, source })?;
        let (stopper, stop_signal) = crossbeam_channel::bounded::<()>(0);
        let stopping = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            policy: Mutex::new(config.policy),
            pairing: Mutex::new(None),
            config,
            sink: sink.stopped_by(Arc::clone(&stopping)),
            stopping,
            slots: Mutex::new(HashMap::new()),
            refusing: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            conn_gone: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            downloads,
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            stop_signal,
            machine_figures: Mutex::new(None),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("ferry-accept".into())
            .spawn(move || listener::accept_loop(listener, &accept_shared))
            .map_err(|source| ServerStartError::Bind { addr, source })?;
        shared
            .sink
            .emit(Event::Server(ServerEvent::Listening { addr: local_addr }));
        log::info!(
            "listening on {local_addr}, saving to {}",
            shared.config.dir.display()
        );
        // Old partials go at once (so a disk an abandoned upload filled is free again), then
        // hourly on a thread of its own.
        expire_partials(&shared);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let housekeeping_shared = Arc::clone(&shared);
        let housekeeping = thread::Builder::new()
            .name("ferry-housekeeping".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(HOUSEKEEPING_INTERVAL)
                {
                    expire_partials(&housekeeping_shared);
                }
            })
            .map_err(|e| log::warn!("cannot start the housekeeping thread: {e}"))
            .ok()
            .map(|handle| (stop_tx, handle));
        Ok(Self {
            local_addr,
            shared,
            accept_thread: Some(accept_thread),
            housekeeping,
            stop_tx: Some(stopper),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whose offers are taken without asking, for offers from now on.
    pub fn set_policy(&self, policy: AcceptPolicy) {
        *lock(&self.shared.policy) = policy;
    }

    /// Answers a [`ServerEvent::OfferPending`]. An offer that is no longer open is ignored.
    pub fn decide(&self, offer_id: u64, accept: bool) {
        self.answer(
            offer_id,
            if accept {
                Decision::Accept
            } else {
                Decision::Decline
            },
        );
    }

    /// Answers a [`ServerEvent::OfferPending`] with any [`Decision`] ("Accept and trust"
    /// pins the sender's key: only for encrypted offers, otherwise it is a plain accept).
    pub fn answer(&self, offer_id: u64, decision: Decision) {
        if let Some(tx) = lock(&self.shared.pending).remove(&offer_id) {
            let _ = tx.try_send(decision);
        }
    }

    /// Offers a fresh pairing code (replacing any earlier one) for 10 minutes and 3 tries:
    /// a sender that types it is trusted from then on, both ways.
    pub fn start_pairing(&self) -> Result<PairingCode, SecureError> {
        self.start_pairing_for(CODE_LIFETIME)
    }

    /// A new code that works for `lasts` (at most [`CODE_LIFETIME`]): tests see a code
    /// expire without waiting ten minutes.
    pub fn start_pairing_for(&self, lasts: Duration) -> Result<PairingCode, SecureError> {
        let code = PairingCode::generate(&mut OsEntropy)?;
        let now = Instant::now();
        let early = CODE_LIFETIME.saturating_sub(lasts);
        self.pair_with(code.clone(), now.checked_sub(early).unwrap_or(now));
        Ok(code)
    }

    /// Offers `code` as if it had been made at `created` (tests pass instants in the past to
    /// see it expire).
    pub fn pair_with(&self, code: PairingCode, created: Instant) {
        *lock(&self.shared.pairing) = Some(Pairing::new(code, created));
    }

    /// Withdraws the pairing code, if any.
    pub fn stop_pairing(&self) {
        *lock(&self.shared.pairing) = None;
    }

    /// The pairing code on offer and the tries it has left (`None` when there is none, or it
    /// expired, burnt or was used).
    pub fn pairing(&self) -> Option<(PairingCode, u32)> {
        let pairing = lock(&self.shared.pairing);
        let pairing = pairing.as_ref()?;
        let left = pairing.tries_left(Instant::now());
        (left > 0).then(|| (pairing.code().clone(), left))
    }

    /// How the last code offered ended, if it did (`None` also when none was offered, or it
    /// was withdrawn).
    pub fn pairing_end(&self) -> Option<PairingEnd> {
        lock(&self.shared.pairing).as_ref()?.ended(Instant::now())
    }

    /// When the code on offer stops working (`None`: none on offer).
    pub fn pairing_expires(&self) -> Option<Instant> {
        self.pairing()?;
        Some(lock(&self.shared.pairing).as_ref()?.expires_at())
    }

    /// Cancels an incoming file: a Ferry sender is told, a plain one sees the connection
    /// close; nothing is kept. Unknown or finished ids are ignored.
    pub fn cancel(&self, id: TransferId) {
        if let Some(live) = lock(&self.shared.live).get(&id) {
            live.cancel.store(true, Ordering::SeqCst);
            // Wake a read that is waiting for data; writing (the cancel frame) still works.
            if let Some(stream) = &live.stream {
                let _ = stream.shutdown(Shutdown::Read);
            }
        }
    }

    /// Stops accepting, cancels in-flight uploads and waits for every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.stop_tx.take());
        // Wake the blocking accept() with a connection of our own.
        let wake_ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(wake_ip, self.local_addr.port()),
            Duration::from_secs(1),
        );
        let _ = accept_thread.join();
        if let Some((stop_tx, handle)) = self.housekeeping.take() {
            drop(stop_tx);
            let _ = handle.join();
        }
        // Each connection gets a moment for its last words (naming the verified files it
        // holds, their verdicts, and telling a Ferry sender the server stopped); one still
        // busy after that, such as one blocked writing to a peer that does not read, is cut.
        for stream in lock(&self.shared.conns).values() {
            listener::shut_for_last_words(stream);
        }
        let conns = lock(&self.shared.conns);
        let (conns, _) = self
            .shared
            .conn_gone
            .wait_timeout_while(conns, LAST_WORDS_GRACE, |conns| !conns.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        for stream in conns.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        drop(conns);
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for handle in threads {
            let _ = handle.join();
        }
        self.shared.sink.emit(Event::Server(ServerEvent::Stopped));
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes kept partials older than the configured age, and says so.
fn expire_partials(shared: &Shared) {
    let max_age = shared.config.partial_max_age;
    let now = std::time::SystemTime::now();
    match folder_resume::expire(&shared.downloads, max_age, now) {
        Ok(expired) if expired.names.is_empty() => {}
        Ok(expired) => {
            log::info!(
                "removed {} partial file(s) older than {} days ({} bytes)",
                expired.names.len(),
                max_age.as_secs() / 86_400,
                expired.bytes
            );
            shared
                .sink
                .emit(Event::Server(ServerEvent::PartialsExpired {
                    names: expired.names,
                    bytes: expired.bytes,
                }));
        }
        Err(e) => log::warn!("cannot look for old partial files: {e}"),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in another connection thread must not take the server down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
