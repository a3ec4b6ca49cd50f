//! The receiving side: a listener thread and one bounded thread per connection.
//!
//! Each connection speaks plain or Ferry, decided by its first header (see
//! [`crate::protocol`]). Files are written through [`PartFile`], so nothing appears under a
//! final name until every byte arrived (and, for Ferry peers, the hash matched) and was
//! synced. A bad connection is logged, reported as an event and closed; the server keeps
//! serving.
//!
//! The download folder is opened once at start ([`super::files::Downloads`], one directory
//! handle every connection writes through), which also holds what connections share about
//! it: the partials in use, the next free number per name and the bytes reserved by
//! accepted offers. Old partials are removed at start, then hourly by a housekeeping thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use std::time::Instant;

use super::files::{Downloads, NoRoom, RESUME_TAG_LEN};
use super::os::WriteBehind;
use super::{
    CANCELLED_BY_SENDER, PartFile, TransferError, read_error, read_frame, read_prefix, write_all,
};
use crate::events::{
    Direction, Event, EventSink, ProgressThrottle, ServerEvent, TransferEvent, TransferId,
    next_transfer_id,
};
use crate::protocol::Mode;
use crate::protocol::{
    self, Chunk, Header, ReceiverMsg, SenderMsg, decode_chunk_header, decode_sender_msg,
    encode_receiver_msg, sanitize_file_name,
};

/// The size of the buffer each connection streams small files through.
const RECV_BUF_LEN: usize = 256 * 1024;
/// Files at least this large are received with a separate disk-writer thread.
const PIPELINE_MIN_BYTES: u64 = 4 * 1024 * 1024;
/// Buffers in flight between the socket reader and the disk writer, and their size.
const PIPELINE_BUFFERS: usize = 8;
const PIPELINE_BUF_LEN: usize = 256 * 1024;
/// How many refusals (over the connection bound) may be in flight at once.
const MAX_REFUSALS: usize = 16;
/// How often a receiver busy hashing a kept partial tells the sender to keep waiting.
const WAITING_INTERVAL: Duration = Duration::from_secs(5);
/// The slowest disk a resuming sender is expected to hash its prefix on (bytes per second):
/// the receiver waits that long for the `start` frame, on top of the idle timeout.
const SLOWEST_HASH_RATE: u64 = 10 * 1024 * 1024;
/// How often a connection waiting for its user's decision looks at the stop flag.
const DECISION_POLL: Duration = Duration::from_millis(200);
/// The most names a sender's batch announcement may list in all (its frames are bounded
/// each; this bounds how many of them a connection keeps).
const MAX_BATCH_NAME_BYTES: usize = 16 * 1024 * 1024;
/// How often old partials are looked for while the server runs (also once at start).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

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
    /// Accept every offer without asking (the original's behaviour). When off, Ferry senders
    /// wait for a decision ([`ServerEvent::OfferPending`]) and plain senders, which cannot be
    /// asked, are refused. Can be changed while running: [`ServerHandle::set_auto_accept`].
    pub auto_accept: bool,
    /// How long an offer waits for the user's decision before it is declined.
    pub decision_timeout: Duration,
    /// Connections one IP address may hold at once, so a few peers cannot take every slot.
    pub max_per_peer: usize,
    /// Once a frame's first byte arrived, the whole frame must arrive within this time (a
    /// peer that trickles a header byte by byte is dropped).
    pub header_deadline: Duration,
    /// A file's data must arrive at least this fast, measured over each [`MinRate::window`].
    pub min_rate: MinRate,
    /// Files one connection may offer; more end the connection.
    pub max_files_per_connection: u64,
    /// Kept partials (`*.ferry.part`) older than this are removed, at start and hourly.
    pub partial_max_age: Duration,
    /// Sync each file's data before it is reported complete or verified (and a partial's
    /// before it is reported kept), and the folder after each new name. Off only for
    /// benchmarks: a power cut may then lose files both sides were told are safe.
    pub fsync: bool,
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
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            auto_accept: true,
            decision_timeout: Duration::from_secs(300),
            max_per_peer: 8,
            header_deadline: Duration::from_secs(10),
            min_rate: MinRate {
                bytes_per_sec: 1024,
                window: Duration::from_secs(30),
            },
            max_files_per_connection: 100_000,
            partial_max_age: Duration::from_secs(7 * 24 * 3600),
            fsync: true,
        }
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
    stream: Option<TcpStream>,
}

/// State shared by the listener and the connection threads.
struct Shared {
    config: ServerConfig,
    sink: EventSink,
    stopping: AtomicBool,
    auto_accept: AtomicBool,
    active: AtomicUsize,
    /// Live connections per peer address (entries removed when they reach 0).
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    refusing: AtomicUsize,
    /// Clones of the live connections, so `stop` can shut them down mid-read.
    conns: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The download folder, opened once; every connection writes through it.
    downloads: Downloads,
    live: Mutex<HashMap<TransferId, Live>>,
    /// Offers waiting for the user: where to send the decision.
    pending: Mutex<HashMap<u64, crossbeam_channel::Sender<bool>>>,
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
        let shared = Arc::new(Shared {
            auto_accept: AtomicBool::new(config.auto_accept),
            config,
            sink,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            per_peer: Mutex::new(HashMap::new()),
            refusing: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            downloads,
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("ferry-accept".into())
            .spawn(move || accept_loop(listener, &accept_shared))
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
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Turns asking before accepting off (`true`) or on (`false`) for offers from now on.
    pub fn set_auto_accept(&self, auto_accept: bool) {
        self.shared.auto_accept.store(auto_accept, Ordering::SeqCst);
    }

    /// Answers a [`ServerEvent::OfferPending`]. An offer that is no longer open is ignored.
    pub fn decide(&self, offer_id: u64, accept: bool) {
        if let Some(tx) = lock(&self.shared.pending).remove(&offer_id) {
            let _ = tx.try_send(accept);
        }
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
        for stream in lock(&self.shared.conns).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
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
    match shared
        .downloads
        .expire_partials(max_age, std::time::SystemTime::now())
    {
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
fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    let mut next_conn = 0u64;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("accept failed: {e}");
                // Out of file descriptors and the like: do not spin.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let slot = match Slot::take(shared, peer.ip()) {
            Ok(slot) => slot,
            Err(busy) => {
                refuse(stream, peer, shared, busy);
                continue;
            }
        };
        next_conn += 1;
        let conn_id = next_conn;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(conn_id, clone);
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("ferry-conn-{peer}"))
            .spawn(move || {
                serve_connection(stream, peer, &conn_shared, slot);
                lock(&conn_shared.conns).remove(&conn_id);
            });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // The closure, and with it the slot, was dropped: the slot is free again.
                log::error!("cannot start a thread for {peer}: {e}");
                lock(&shared.conns).remove(&conn_id);
            }
        }
    }
}

/// Which connection limit a refused peer hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Every connection slot of the server is taken.
    Server { max_connections: usize },
    /// This address already holds its share of the slots.
    Peer { max_per_peer: usize },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Server { max_connections } => write!(
                f,
                "server busy: all {max_connections} connections are in use, try again later"
            ),
            Busy::Peer { max_per_peer } => write!(
                f,
                "server busy: your address already has {max_per_peer} connections open \
                 (the limit per address), try again when one has finished"
            ),
        }
    }
}

/// One connection's claim on the server's slots: counted in the total and against its
/// address; released when dropped, however the connection ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Slot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, Busy> {
        let config = &shared.config;
        // The per-peer map's lock also orders the two counts, so two accepts never both take
        // the last slot.
        // A peer over its own share is told that first: waiting for others will not help it.
        let mut per_peer = lock(&shared.per_peer);
        let mine = per_peer.get(&ip).copied().unwrap_or(0);
        if mine >= config.max_per_peer {
            return Err(Busy::Peer {
                max_per_peer: config.max_per_peer,
            });
        }
        if shared.active.load(Ordering::SeqCst) >= config.max_connections {
            return Err(Busy::Server {
                max_connections: config.max_connections,
            });
        }
        per_peer.insert(ip, mine + 1);
        shared.active.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_peer = lock(&self.shared.per_peer);
        if let Some(count) = per_peer.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_peer.remove(&self.ip);
            }
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Over a connection limit: say which (a Ferry peer reads it, a plain peer sees the close)
/// and close, on a short-lived thread so the listener never waits.
fn refuse(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, busy: Busy) {
    let reason = busy.to_string();
    log::warn!("refused {peer}: {reason}");
    shared
        .sink
        .emit(Event::Server(ServerEvent::ConnectionError {
            peer,
            reason: reason.clone(),
        }));
    if shared.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSALS {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
        return; // dropping closes it
    }
    let refuse_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("ferry-refuse".into())
        .spawn(move || {
            let mut stream = stream;
            if let Ok(frame) = encode_receiver_msg(&ReceiverMsg::Decline { reason }) {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(&frame);
            }
            let _ = stream.shutdown(Shutdown::Write);
            // Read what the peer already sent so the close is a FIN, not a reset that could
            // destroy our answer before the peer reads it.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut sink = [0u8; 16 * 1024];
            let mut drained = 0;
            while drained < 1024 * 1024 {
                match stream.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
            refuse_shared.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared, slot: Slot) {
    let idle = shared.config.idle_timeout;
    let setup = stream
        .set_read_timeout(Some(idle))
        .and_then(|()| stream.set_write_timeout(Some(idle)))
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.try_clone());
    let writer = match setup {
        Ok(writer) => writer,
        Err(e) => {
            log::warn!("{peer}: cannot set up the connection: {e}");
            return;
        }
    };
    let mut conn = Connection {
        reader: BufReader::with_capacity(64 * 1024, stream),
        writer,
        peer,
        shared,
        mode: None,
        batch: None,
        files: 0,
        decision: None,
        approved: (0, 0),
        buf: vec![0u8; RECV_BUF_LEN],
    };
    let end = conn.run();
    if let Err(ConnEnd { error, .. }) = &end {
        log::warn!("{peer}: {error}");
        if conn.mode == Some(Mode::Ferry) {
            conn.answer(&ReceiverMsg::Failed {
                reason: error.to_string(),
            });
        }
    }
    // Closed and its slot free before anyone is told it ended, so a peer reacting to the
    // report finds the slot available.
    drop(conn);
    drop(slot);
    match end {
        Ok(()) => log::info!("{peer}: connection closed"),
        Err(ConnEnd {
            error,
            reported: false,
        }) => shared
            .sink
            .emit(Event::Server(ServerEvent::ConnectionError {
                peer,
                reason: error.to_string(),
            })),
        Err(_) => {}
    }
}

/// A connection ended with an error; `reported` when a file's event already told.
struct ConnEnd {
    error: TransferError,
    reported: bool,
}

impl From<TransferError> for ConnEnd {
    fn from(error: TransferError) -> Self {
        Self {
            error,
            reported: false,
        }
    }
}

/// What the user (or the decision timeout) said about an offer.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Decided(bool),
    NoAnswer,
}

/// What a Ferry sender announced about its whole upload (`batch` frames before the first
/// offer). A "yes" to it covers exactly the files it lists, by name and size.
struct Batch {
    count: u64,
    bytes: u64,
    /// Each listed file's name and, when the sender gave it, size.
    files: Vec<(String, Option<u64>)>,
    /// Bytes of names kept, bounded by [`MAX_BATCH_NAME_BYTES`].
    name_bytes: usize,
    /// The listed files not yet offered: per name, their sizes (a "yes" covers each listed
    /// file once).
    unclaimed: HashMap<String, Vec<Option<u64>>>,
}

impl Batch {
    /// Adds one `batch` frame's names. Every frame must repeat the same totals, and the
    /// listing may not outgrow them or the connection's limits.
    fn extend(
        &mut self,
        count: u64,
        bytes: u64,
        names: Vec<String>,
        sizes: Vec<u64>,
        max_files: u64,
    ) -> Result<(), TransferError> {
        if count != self.count || bytes != self.bytes {
            return Err(TransferError::Unexpected(format!(
                "a batch continuation for {count} files and {bytes} bytes after one for {} and {}",
                self.count, self.bytes
            )));
        }
        // Sizes that do not match the names one to one say nothing.
        let sizes_match = sizes.len() == names.len();
        for (i, name) in names.into_iter().enumerate() {
            self.name_bytes += name.len();
            if self.files.len() as u64 >= count.min(max_files)
                || self.name_bytes > MAX_BATCH_NAME_BYTES
            {
                return Err(TransferError::BatchTooLong);
            }
            let size = sizes_match.then(|| sizes[i]);
            self.unclaimed.entry(name.clone()).or_default().push(size);
            self.files.push((name, size));
        }
        Ok(())
    }

    /// Whether the batch lists this file (by name, and by size when sizes were given) and
    /// it was not offered before; if so, it is claimed.
    fn claim(&mut self, name: &str, size: u64) -> bool {
        let Some(sizes) = self.unclaimed.get_mut(name) else {
            return false;
        };
        let Some(at) = sizes.iter().position(|s| s.is_none_or(|s| s == size)) else {
            return false;
        };
        sizes.swap_remove(at);
        true
    }
}

struct Connection<'a> {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    /// Decided by the first frame.
    mode: Option<Mode>,
    batch: Option<Batch>,
    /// Headers read so far (bounded by `max_files_per_connection`).
    files: u64,
    /// The user's answer about the announced batch, once asked.
    decision: Option<bool>,
    /// Files and bytes accepted so far on this connection (bounded by the batch).
    approved: (u64, u64),
    buf: Vec<u8>,
}

/// How a file's bytes ended.
enum DataEnd {
    /// Every byte arrived; with the BLAKE3 of them in Ferry mode.
    Complete(Option<[u8; 32]>),
    /// The Ferry sender gave up on this file (the stream stays in step).
    Cancelled(String),
}

/// What one [`DataSource::fill`] produced.
enum Fill {
    Bytes(usize),
    Done,
    Cancelled(String),
}

/// The bytes of one file as they come off the socket: raw (plain) or chunked (Ferry).
struct DataSource<'a> {
    reader: &'a mut BufReader<TcpStream>,
    chunked: bool,
    left_in_chunk: usize,
    received: u64,
    size: u64,
    idle_secs: u64,
    stopping: &'a AtomicBool,
    cancel: &'a AtomicBool,
    rate: RateFloor,
    /// An error that ended a fill which had already produced bytes: those bytes are handed
    /// out first (so they reach the disk), the error with the next fill.
    deferred: Option<TransferError>,
}

/// Drops an upload that stays below [`MinRate`]: every `window`, at least
/// `bytes_per_sec * window` bytes must have arrived since the last check.
struct RateFloor {
    min: MinRate,
    window_start: Instant,
    bytes_at_start: u64,
}

impl RateFloor {
    fn new(min: MinRate, received: u64) -> Self {
        Self {
            min,
            window_start: Instant::now(),
            bytes_at_start: received,
        }
    }

    fn check(&mut self, received: u64) -> Result<(), TransferError> {
        let elapsed = self.window_start.elapsed();
        if elapsed < self.min.window {
            return Ok(());
        }
        let floor = self
            .min
            .bytes_per_sec
            .saturating_mul(self.min.window.as_secs().max(1));
        if received - self.bytes_at_start < floor {
            return Err(TransferError::TooSlow {
                bytes_per_sec: self.min.bytes_per_sec,
                window_secs: self.min.window.as_secs(),
            });
        }
        self.window_start = Instant::now();
        self.bytes_at_start = received;
        Ok(())
    }
}

impl DataSource<'_> {
    /// Fills `buf` as far as the file goes (so disk writes are large): at least one byte
    /// unless the file is complete or cancelled. Bytes read before an error are returned
    /// first; the error comes with the next call.
    fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, TransferError> {
        let mut filled = 0;
        let result = match self.deferred.take() {
            Some(error) => Err(error),
            None => self.fill_inner(buf, &mut filled),
        };
        match result {
            Err(error) if filled > 0 => {
                self.deferred = Some(error);
                Ok(Fill::Bytes(filled))
            }
            // A cancel shuts the socket's read side: whatever error that caused, say why.
            Err(_) if self.cancel.load(Ordering::SeqCst) => Err(TransferError::CancelledHere),
            Err(_) if self.stopping.load(Ordering::SeqCst) => Err(TransferError::Stopped),
            other => other,
        }
    }

    fn fill_inner(&mut self, buf: &mut [u8], filled: &mut usize) -> Result<Fill, TransferError> {
        while *filled < buf.len() && self.received < self.size {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(TransferError::CancelledHere);
            }
            if self.stopping.load(Ordering::Relaxed) {
                return Err(TransferError::Stopped);
            }
            if self.chunked && self.left_in_chunk == 0 {
                let prefix = read_prefix(self.reader)
                    .map_err(|e| read_error(e, self.idle_secs))?
                    .ok_or(TransferError::ShortData {
                        received: self.received,
                        expected: self.size,
                    })?;
                match decode_chunk_header(prefix)? {
                    Chunk::Data(n) if self.received + n as u64 > self.size => {
                        return Err(TransferError::TooMuchData);
                    }
                    Chunk::Data(n) => self.left_in_chunk = n,
                    Chunk::Cancel => {
                        let body = read_frame(self.reader)?.ok_or(TransferError::TruncatedFrame)?;
                        return match decode_sender_msg(&body)? {
                            SenderMsg::Cancel { reason } => Ok(Fill::Cancelled(reason)),
                            other => Err(TransferError::Unexpected(format!(
                                "{other:?} after a cancel marker"
                            ))),
                        };
                    }
                }
            }
            let mut want = (self.size - self.received).min((buf.len() - *filled) as u64) as usize;
            if self.chunked {
                want = want.min(self.left_in_chunk);
            }
            let n = match self.reader.read(&mut buf[*filled..*filled + want]) {
                Ok(0) => {
                    return Err(TransferError::ShortData {
                        received: self.received,
                        expected: self.size,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e, self.idle_secs)),
            };
            *filled += n;
            self.received += n as u64;
            if self.chunked {
                self.left_in_chunk -= n;
            }
            self.rate.check(self.received)?;
        }
        Ok(if *filled > 0 {
            Fill::Bytes(*filled)
        } else {
            Fill::Done
        })
    }
}

/// Reads on this thread while a second one hashes and writes, through a small pool of
/// buffers. A disk error stops the reader at its next buffer. Whatever was read before an
/// error is written before this returns (so a kept partial holds every byte received).
fn pipelined(
    source: &mut DataSource<'_>,
    file: &mut std::fs::File,
    hasher: &mut Option<blake3::Hasher>,
    mut write_behind: Option<WriteBehind>,
    mut progress: impl FnMut(u64),
) -> Result<DataEnd, TransferError> {
    let (full_tx, full_rx) = crossbeam_channel::bounded::<(Vec<u8>, usize)>(PIPELINE_BUFFERS);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(PIPELINE_BUFFERS);
    for _ in 0..PIPELINE_BUFFERS {
        // Cannot fail: the channel has room for every buffer and its receiver is alive.
        let _ = free_tx.send(vec![0u8; PIPELINE_BUF_LEN]);
    }
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for (buf, n) in full_rx {
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&buf[..n]);
                }
                file.write_all(&buf[..n])?;
                if let Some(write_behind) = write_behind.as_mut() {
                    write_behind.wrote(file, n);
                }
                // The reader may have stopped already; then the buffer is simply freed.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let read = loop {
            // Err only when the writer stopped (a disk error), reported below.
            let Ok(mut buf) = free_rx.recv() else {
                break Ok(DataEnd::Complete(None));
            };
            match source.fill(&mut buf) {
                Ok(Fill::Bytes(n)) => {
                    if full_tx.send((buf, n)).is_err() {
                        break Ok(DataEnd::Complete(None));
                    }
                    progress(source.received);
                }
                Ok(Fill::Done) => break Ok(DataEnd::Complete(None)),
                Ok(Fill::Cancelled(reason)) => break Ok(DataEnd::Cancelled(reason)),
                Err(e) => break Err(e),
            }
        };
        drop(full_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("disk writer panicked")));
        match (read, written) {
            (_, Err(e)) => Err(TransferError::Disk(e)),
            (read, Ok(())) => read,
        }
    })
}

/// How a file's data ended while the stream stays in step (the next header can follow).
enum FileEnd {
    Committed {
        path: PathBuf,
        verified: bool,
    },
    /// The stream is still in step, but the file was not kept.
    Rejected(TransferError),
}

/// Where a file's data starts and the hash of what is already there.
struct Start {
    offset: u64,
    hasher: Option<blake3::Hasher>,
}

impl Connection<'_> {
    /// Reads the next frame. Its first byte may take up to the idle timeout; once it came,
    /// the rest must arrive within the header deadline, so a peer trickling a header byte by
    /// byte cannot hold its slot.
    fn read_msg(&mut self) -> Result<Option<SenderMsg>, TransferError> {
        let idle = self.shared.config.idle_timeout;
        match self.reader.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(read_error(e, idle.as_secs())),
        }
        let deadline = Instant::now() + self.shared.config.header_deadline;
        let read = read_frame(&mut Within {
            reader: &mut self.reader,
            deadline,
            idle,
        });
        // Back to the idle timeout for whatever follows.
        let _ = self.reader.get_ref().set_read_timeout(Some(idle));
        match read {
            Ok(Some(body)) => Ok(Some(decode_sender_msg(&body)?)),
            Ok(None) => Ok(None),
            Err(TransferError::Io(e)) if Instant::now() >= deadline && is_timeout(&e) => Err(
                TransferError::SlowHeader(self.shared.config.header_deadline.as_secs()),
            ),
            Err(TransferError::Io(e)) => Err(read_error(e, idle.as_secs())),
            Err(e) => Err(e),
        }
    }

    fn run(&mut self) -> Result<(), ConnEnd> {
        let max_files = self.shared.config.max_files_per_connection;
        while let Some(msg) = self.read_msg()? {
            let (header, mode) = match (self.mode, msg) {
                // The batch announcement: one or more frames before the first offer.
                (
                    None | Some(Mode::Ferry),
                    SenderMsg::Batch {
                        count,
                        bytes,
                        names,
                        sizes,
                    },
                ) if self.files == 0 => {
                    let batch = self.batch.get_or_insert(Batch {
                        count,
                        bytes,
                        files: Vec::new(),
                        name_bytes: 0,
                        unclaimed: HashMap::new(),
                    });
                    batch.extend(count, bytes, names, sizes, max_files)?;
                    self.mode = Some(Mode::Ferry);
                    continue;
                }
                (None | Some(Mode::Plain), SenderMsg::Plain(h)) => (h, Mode::Plain),
                (None | Some(Mode::Ferry), SenderMsg::Offer(h)) => (h, Mode::Ferry),
                (_, other) => {
                    return Err(TransferError::Unexpected(format!(
                        "{other:?} where a file header belongs"
                    ))
                    .into());
                }
            };
            self.files += 1;
            if self.files > max_files {
                return Err(TransferError::TooManyFiles(max_files).into());
            }
            self.mode = Some(mode);
            self.receive_file(header, mode)?;
        }
        Ok(())
    }

    /// Best effort: a Ferry peer that already left cannot be told anything.
    fn answer(&mut self, msg: &ReceiverMsg) {
        if let Ok(frame) = encode_receiver_msg(msg) {
            let _ = self.writer.write_all(&frame);
        }
    }

    /// Whether to take this file: auto-accept, the connection's earlier answer, or the user's.
    /// `Err(reason)` declines.
    fn decide(&mut self, header: &Header, mode: Mode) -> Result<Result<(), String>, TransferError> {
        if self.shared.auto_accept.load(Ordering::SeqCst) {
            return Ok(Ok(()));
        }
        if mode == Mode::Plain {
            return Ok(Err(
                "the receiver asks before accepting, and plain senders cannot be asked".into(),
            ));
        }
        // An answer about the whole batch covers only what the batch announced: an offer
        // outside it (another name, more files or bytes than announced) is asked about anew.
        // Each listed file is covered once: a second offer of the same name is asked anew.
        let approved = self.approved;
        let covered = self.batch.as_mut().is_some_and(|b| {
            approved.0 < b.count
                && approved.1.saturating_add(header.file_size) <= b.bytes
                && b.claim(&header.file_name, header.file_size)
        });
        let answer = match self.decision {
            Some(accepted) if covered => Answer::Decided(accepted),
            _ => {
                // Covered but not yet asked: ask about the batch, and remember the answer.
                let use_batch = covered;
                let answer = self.ask_user(header, use_batch)?;
                if let (Answer::Decided(accepted), true) = (answer, use_batch) {
                    self.decision = Some(accepted);
                }
                answer
            }
        };
        Ok(match answer {
            Answer::Decided(true) => {
                self.approved.0 += 1;
                self.approved.1 = self.approved.1.saturating_add(header.file_size);
                Ok(())
            }
            Answer::Decided(false) => Err("declined by the receiver".into()),
            Answer::NoAnswer => Err(format!(
                "nobody answered on the receiving side within {} s",
                self.shared.config.decision_timeout.as_secs()
            )),
        })
    }

    /// Tells the sender to wait, shows the offer (the whole batch when `use_batch`), and
    /// waits for the user's answer, the decision timeout, or the sender leaving.
    fn ask_user(&mut self, header: &Header, use_batch: bool) -> Result<Answer, TransferError> {
        self.answer(&ReceiverMsg::Waiting);
        let offer_id = next_transfer_id();
        let (tx, rx) = crossbeam_channel::bounded(1);
        lock(&self.shared.pending).insert(offer_id, tx);
        let listed: Vec<(&str, Option<u64>)> = match (&self.batch, use_batch) {
            (Some(b), true) => b.files.iter().map(|(n, s)| (n.as_str(), *s)).collect(),
            _ => vec![(header.file_name.as_str(), Some(header.file_size))],
        };
        let (count, bytes) = match (&self.batch, use_batch) {
            (Some(b), true) => (b.count, b.bytes),
            _ => (1, header.file_size),
        };
        // Names are shown to the user: as they would be saved, never raw control or bidi text.
        let names = listed
            .iter()
            .map(|(n, _)| sanitize_file_name(n).to_string())
            .collect();
        // Sizes only when every listed file has one, so they line up with the names.
        let sizes = listed.iter().map(|(_, s)| *s).collect::<Option<Vec<u64>>>();
        let sizes = sizes.unwrap_or_default();
        self.shared
            .sink
            .emit(Event::Server(ServerEvent::OfferPending {
                offer_id,
                peer: self.peer,
                count,
                bytes,
                names,
                sizes,
                msg: header.msg.clone(),
            }));
        let deadline = Instant::now() + self.shared.config.decision_timeout;
        let answer = loop {
            match rx.recv_timeout(DECISION_POLL) {
                Ok(accept) => break Ok(Answer::Decided(accept)),
                Err(_) if self.shared.stopping.load(Ordering::SeqCst) => {
                    break Err(TransferError::Stopped);
                }
                Err(_) if Instant::now() >= deadline => break Ok(Answer::NoAnswer),
                Err(_) if self.sender_left() => {
                    break Err(TransferError::ShortData {
                        received: 0,
                        expected: header.file_size,
                    });
                }
                Err(_) => {}
            }
        };
        lock(&self.shared.pending).remove(&offer_id);
        self.shared
            .sink
            .emit(Event::Server(ServerEvent::OfferClosed { offer_id }));
        answer
    }

    /// True once the sender has closed its side (checked without blocking), so a question
    /// it no longer waits for can be withdrawn.
    fn sender_left(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let stream = self.reader.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let left = matches!(stream.peek(&mut [0u8; 1]), Ok(0));
        let _ = stream.set_nonblocking(false);
        left
    }

    fn receive_file(&mut self, header: Header, mode: Mode) -> Result<(), ConnEnd> {
        let safe = sanitize_file_name(&header.file_name);
        let id = next_transfer_id();
        let downloads = &self.shared.downloads;
        let refusal = self.decide(&header, mode)?.err();
        // A Ferry sender's resume key names its partial (plain senders cannot resume).
        let tag = match mode {
            Mode::Ferry => header
                .resume_key
                .as_deref()
                .map(|key| &key[..key.len().min(RESUME_TAG_LEN)]),
            Mode::Plain => None,
        };
        // A partial copy left by an interrupted upload of the same name (Ferry only: only a
        // Ferry sender can prove, by hash, that it is the start of the same file).
        let resumable = match (&refusal, mode) {
            (None, Mode::Ferry) => PartFile::resumable(downloads, &safe, header.file_size, tag)
                .map_err(TransferError::Disk)?,
            _ => None,
        };
        let mut resumable = resumable;
        if let Some((part, _)) = resumable.as_mut() {
            // Until the transfer really starts, whatever goes wrong (a refusal, a read
            // error) keeps the partial.
            part.keep();
        }
        let offset = resumable.as_ref().map_or(0, |(_, len)| *len);
        let needed = header.file_size - offset;
        // The space is held for this file until it ends (parallel offers see each other).
        let mut reservation = None;
        let refusal = refusal.or_else(|| match downloads.reserve(needed) {
            Ok(held) => {
                reservation = Some(held);
                None
            }
            Err(NoRoom { needed, available }) => {
                Some(TransferError::NoSpace { needed, available }.to_string())
            }
        });
        let _reservation = reservation;
        if let Some(reason) = refusal {
            log::warn!("{}: refused {:?}: {reason}", self.peer, header.file_name);
            self.report_refusal(id, &header, mode, &reason);
            return match mode {
                Mode::Ferry => {
                    self.answer(&ReceiverMsg::Decline { reason });
                    Ok(())
                }
                // A plain sender cannot be told; its bytes cannot be skipped cheaply either.
                Mode::Plain => Err(ConnEnd {
                    error: TransferError::Unexpected(reason),
                    reported: true,
                }),
            };
        }
        let (mut part, prefix) = match resumable {
            Some((mut part, len)) => {
                // Hashing a large partial takes a while: keep the sender from timing out.
                let (writer, mut last_word) = (&mut self.writer, Instant::now());
                let hasher = part
                    .hash_prefix(len, &mut self.buf, || {
                        if last_word.elapsed() >= WAITING_INTERVAL {
                            last_word = Instant::now();
                            if let Ok(frame) = encode_receiver_msg(&ReceiverMsg::Waiting) {
                                let _ = writer.write_all(&frame);
                            }
                        }
                    })
                    .map_err(TransferError::Disk)?;
                (part, Some(hasher))
            }
            None => match PartFile::create(downloads, &safe, tag) {
                Ok(part) => (part, None),
                Err(e) => {
                    let error = TransferError::Disk(e);
                    self.report_refusal(id, &header, mode, &error.to_string());
                    if mode == Mode::Ferry {
                        // The sender can go on with its next file.
                        self.answer(&ReceiverMsg::Decline {
                            reason: error.to_string(),
                        });
                        return Ok(());
                    }
                    return Err(ConnEnd {
                        error,
                        reported: true,
                    });
                }
            },
        };
        let final_name = part.final_name();
        self.shared.sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: self.peer,
            name: header.file_name.clone(),
            saved_as: (final_name != header.file_name).then(|| final_name.clone()),
            bytes_total: header.file_size,
            mode,
            msg: header.msg.clone(),
        });
        let cancel = Arc::new(AtomicBool::new(false));
        lock(&self.shared.live).insert(
            id,
            Live {
                cancel: Arc::clone(&cancel),
                stream: self.writer.try_clone().ok(),
            },
        );
        let outcome =
            self.receive_accepted(&mut part, id, &header, mode, prefix, final_name, &cancel);
        lock(&self.shared.live).remove(&id);
        self.finish_file(part, id, &header, mode, outcome)
    }

    /// A file refused before any byte was written still gets a row that says why.
    fn report_refusal(&self, id: TransferId, header: &Header, mode: Mode, reason: &str) {
        let sink = &self.shared.sink;
        sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: self.peer,
            name: header.file_name.clone(),
            saved_as: None,
            bytes_total: header.file_size,
            mode,
            msg: header.msg.clone(),
        });
        sink.transfer(TransferEvent::Failed {
            id,
            reason: format!("refused: {reason}"),
        });
    }

    /// Accepts (Ferry), agrees where the data starts, receives it and checks it.
    #[allow(clippy::too_many_arguments)]
    fn receive_accepted(
        &mut self,
        part: &mut PartFile,
        id: TransferId,
        header: &Header,
        mode: Mode,
        prefix: Option<blake3::Hasher>,
        final_name: String,
        cancel: &AtomicBool,
    ) -> Result<FileEnd, TransferError> {
        let mut start = Start {
            offset: 0,
            hasher: (mode == Mode::Ferry).then(blake3::Hasher::new),
        };
        if mode == Mode::Ferry {
            let offset = part
                .file()
                .and_then(|f| f.stream_position())
                .map_err(TransferError::Disk)?;
            let accept = ReceiverMsg::Accept {
                offset,
                saved_as: final_name,
                prefix_blake3: prefix.as_ref().map(|h| h.finalize().to_hex().to_string()),
            };
            write_all(&mut self.writer, &encode_receiver_msg(&accept)?)?;
            if let Some(prefix) = prefix {
                // The sender first hashes its own copy of the prefix: allow for a slow disk.
                let idle = self.shared.config.idle_timeout;
                let allowance = idle + Duration::from_secs(offset / SLOWEST_HASH_RATE);
                let _ = self.reader.get_ref().set_read_timeout(Some(allowance));
                let msg = self.read_msg();
                let _ = self.reader.get_ref().set_read_timeout(Some(idle));
                if cancel.load(Ordering::SeqCst) {
                    return Err(TransferError::CancelledHere);
                }
                match msg?.ok_or(TransferError::TruncatedFrame)? {
                    SenderMsg::Start { offset: 0 } => {
                        log::info!(
                            "{}: {:?} changed since the interrupted upload; starting over",
                            self.peer,
                            header.file_name
                        );
                        part.restart().map_err(TransferError::Disk)?;
                    }
                    SenderMsg::Start { offset: agreed } if agreed == offset => {
                        log::info!(
                            "{}: resuming {:?} at byte {offset}",
                            self.peer,
                            header.file_name
                        );
                        start = Start {
                            offset,
                            hasher: Some(prefix),
                        };
                    }
                    other => {
                        return Err(TransferError::Unexpected(format!(
                            "{other:?} where a start at {offset} or 0 belongs"
                        )));
                    }
                }
            }
        }
        // From here on only an interruption keeps the partial (see `finish_file`).
        part.discard_on_drop();
        let data = self.receive_data(part, id, header.file_size, mode, start, cancel)?;
        match data {
            DataEnd::Cancelled(reason) => {
                Ok(FileEnd::Rejected(TransferError::CancelledByPeer(reason)))
            }
            DataEnd::Complete(None) => {
                let path = part.commit().map_err(TransferError::Disk)?;
                Ok(FileEnd::Committed {
                    path,
                    verified: false,
                })
            }
            DataEnd::Complete(Some(hash)) => self.finish_ferry(part, hash, cancel),
        }
    }

    /// Reports how a file ended, answers a Ferry sender, and decides whether the connection
    /// can carry the next file. The part file is dealt with (committed, removed or kept)
    /// before anyone is told, so what an event says is already true on disk.
    fn finish_file(
        &mut self,
        mut part: PartFile,
        id: TransferId,
        header: &Header,
        mode: Mode,
        outcome: Result<FileEnd, TransferError>,
    ) -> Result<(), ConnEnd> {
        let sink = &self.shared.sink;
        match outcome {
            Ok(FileEnd::Committed { path, verified }) => {
                let saved_as = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                log::info!(
                    "{}: received {:?} ({} bytes, {})",
                    self.peer,
                    path,
                    header.file_size,
                    if verified { "verified" } else { "unverified" }
                );
                if verified {
                    self.answer(&ReceiverMsg::Verified {
                        saved_as: saved_as.clone(),
                    });
                }
                sink.transfer(TransferEvent::Finished {
                    id,
                    verified,
                    saved_as,
                    path: Some(path),
                });
                Ok(())
            }
            Ok(FileEnd::Rejected(TransferError::CancelledByPeer(reason))) => {
                drop(part);
                log::info!(
                    "{}: {:?} cancelled by the sender: {}",
                    self.peer,
                    header.file_name,
                    protocol::escape_line(&reason)
                );
                if reason == CANCELLED_BY_SENDER {
                    sink.transfer(TransferEvent::Cancelled { id, by_peer: true });
                } else {
                    // The sender gave up for a reason of its own (its file shrank, ...).
                    let reason = format!("the sender gave up: {reason}");
                    sink.transfer(TransferEvent::Failed { id, reason });
                }
                Ok(())
            }
            Ok(FileEnd::Rejected(error)) => {
                drop(part);
                log::warn!("{}: {:?}: {error}", self.peer, header.file_name);
                self.answer(&ReceiverMsg::Failed {
                    reason: error.to_string(),
                });
                sink.transfer(TransferEvent::Failed {
                    id,
                    reason: error.to_string(),
                });
                Ok(())
            }
            Err(TransferError::CancelledHere) => {
                drop(part);
                self.answer(&ReceiverMsg::Cancel {
                    reason: "cancelled by the receiver".into(),
                });
                sink.transfer(TransferEvent::Cancelled { id, by_peer: false });
                // The read side is shut: this connection is done.
                Err(ConnEnd {
                    error: TransferError::CancelledHere,
                    reported: true,
                })
            }
            Err(error) => {
                let mut reason = error.to_string();
                if mode == Mode::Ferry && error.is_interruption() {
                    part.keep();
                    // Say exactly what is on disk: every byte received was written before
                    // the error was handed up (see `DataSource::fill`).
                    let kept = part
                        .file()
                        .and_then(|f| f.metadata())
                        .map_or(0, |m| m.len());
                    if kept > 0 {
                        reason.push_str(&format!(
                            "; the {kept} bytes received are kept, sending again resumes"
                        ));
                    } else {
                        reason.push_str("; nothing had arrived, so nothing is kept");
                    }
                }
                drop(part);
                sink.transfer(TransferEvent::Failed { id, reason });
                Err(ConnEnd {
                    error,
                    reported: true,
                })
            }
        }
    }

    /// Receives a file's bytes into the part file: raw (plain) or in chunks (Ferry, hashed as
    /// they pass). Large files use a second thread for hashing and disk writes, so the socket
    /// is read while the previous buffer is written.
    fn receive_data(
        &mut self,
        part: &mut PartFile,
        id: TransferId,
        size: u64,
        mode: Mode,
        start: Start,
        cancel: &AtomicBool,
    ) -> Result<DataEnd, TransferError> {
        let mut source = DataSource {
            reader: &mut self.reader,
            chunked: mode == Mode::Ferry,
            left_in_chunk: 0,
            received: start.offset,
            size,
            idle_secs: self.shared.config.idle_timeout.as_secs(),
            stopping: &self.shared.stopping,
            cancel,
            rate: RateFloor::new(self.shared.config.min_rate, start.offset),
            deferred: None,
        };
        let mut hasher = start.hasher;
        let mut throttle = ProgressThrottle::default();
        let sink = &self.shared.sink;
        sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: start.offset,
        });
        let file = part.file().map_err(TransferError::Disk)?;
        let end = if size - start.offset < PIPELINE_MIN_BYTES {
            loop {
                match source.fill(&mut self.buf)? {
                    Fill::Done => break DataEnd::Complete(None),
                    Fill::Cancelled(reason) => break DataEnd::Cancelled(reason),
                    Fill::Bytes(n) => {
                        if let Some(hasher) = &mut hasher {
                            hasher.update(&self.buf[..n]);
                        }
                        file.write_all(&self.buf[..n])
                            .map_err(TransferError::Disk)?;
                    }
                }
                throttle.report(sink, id, source.received);
            }
        } else {
            // A file that will be synced streams to disk as it arrives (see `WriteBehind`).
            let write_behind = self
                .shared
                .config
                .fsync
                .then(|| WriteBehind::new(start.offset));
            pipelined(&mut source, file, &mut hasher, write_behind, |received| {
                throttle.report(sink, id, received);
            })?
        };
        sink.transfer(TransferEvent::Progress {
            id,
            bytes_done: source.received,
        });
        Ok(match (end, hasher) {
            (DataEnd::Complete(_), Some(hasher)) => {
                DataEnd::Complete(Some(*hasher.finalize().as_bytes()))
            }
            (end, _) => end,
        })
    }

    /// After a Ferry file's data: reads the sender's hash and commits only if it matches.
    fn finish_ferry(
        &mut self,
        part: &mut PartFile,
        hash: [u8; 32],
        cancel: &AtomicBool,
    ) -> Result<FileEnd, TransferError> {
        let msg = self.read_msg();
        // A cancel shuts the read side: report the cancel, not the end of stream it causes.
        if cancel.load(Ordering::SeqCst) {
            return Err(TransferError::CancelledHere);
        }
        match msg?.ok_or(TransferError::TruncatedFrame)? {
            SenderMsg::End { blake3 } if blake3 == hash => {
                let path = part.commit().map_err(TransferError::Disk)?;
                Ok(FileEnd::Committed {
                    path,
                    verified: true,
                })
            }
            SenderMsg::End { .. } => Ok(FileEnd::Rejected(TransferError::HashMismatch)),
            SenderMsg::Cancel { reason } => {
                Ok(FileEnd::Rejected(TransferError::CancelledByPeer(reason)))
            }
            other => Err(TransferError::Unexpected(format!(
                "{other:?} where the end of a file belongs"
            ))),
        }
    }
}

/// A reader that gives up at `deadline`: before each read that would wait on the socket,
/// the socket's timeout is cut to the time left (never above the idle timeout).
struct Within<'a> {
    reader: &'a mut BufReader<TcpStream>,
    deadline: Instant,
    idle: Duration,
}

impl Read for Within<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reader.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(self.idle)))?;
        }
        self.reader.read(buf)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// The receive buffer never needs to be larger than the largest chunk.
const _: () = assert!(RECV_BUF_LEN <= protocol::MAX_CHUNK_LEN);
