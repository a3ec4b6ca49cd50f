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
use std::io::{BufReader, Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use std::time::Instant;

use super::files::{Downloads, NoRoom, RESUME_TAG_LEN};
use super::{
    CANCELLED_BY_SENDER, PartFile, TransferError, read_error, read_frame, read_prefix, write_all,
};
use crate::protocol::{
    self, Chunk, Header, ReceiverMsg, SenderMsg, decode_chunk_header, decode_sender_msg,
    encode_receiver_msg, sanitize_file_name,
};
use crate::worker::{
    Direction, Event, EventSink, Mode, ProgressThrottle, ServerEvent, TransferEvent, TransferId,
    next_transfer_id,
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
/// How many file names a pending offer lists.
const OFFER_NAMES: usize = 50;
/// How often a receiver busy hashing a kept partial tells the sender to keep waiting.
const WAITING_INTERVAL: Duration = Duration::from_secs(5);
/// The slowest disk a resuming sender is expected to hash its prefix on (bytes per second):
/// the receiver waits that long for the `start` frame, on top of the idle timeout.
const SLOWEST_HASH_RATE: u64 = 10 * 1024 * 1024;
/// How often a connection waiting for its user's decision looks at the stop flag.
const DECISION_POLL: Duration = Duration::from_millis(200);
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
    /// Kept partials (`*.ferry.part`) older than this are removed, at start and hourly.
    pub partial_max_age: Duration,
    /// Sync each file's data before it is reported complete or verified (and a partial's
    /// before it is reported kept), and the folder after each new name. Off only for
    /// benchmarks: a power cut may then lose files both sides were told are safe.
    pub fsync: bool,
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
        if shared.active.load(Ordering::SeqCst) >= shared.config.max_connections {
            refuse(stream, peer, shared);
            continue;
        }
        next_conn += 1;
        let conn_id = next_conn;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(conn_id, clone);
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("ferry-conn-{peer}"))
            .spawn(move || {
                serve_connection(stream, peer, &conn_shared);
                lock(&conn_shared.conns).remove(&conn_id);
                conn_shared.active.fetch_sub(1, Ordering::SeqCst);
            });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                log::error!("cannot start a thread for {peer}: {e}");
                lock(&shared.conns).remove(&conn_id);
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Over the connection bound: say so (a Ferry peer reads it, a plain peer sees the close) and
/// close, on a short-lived thread so the listener never waits.
fn refuse(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let reason = format!(
        "server busy: {} connections already, try again later",
        shared.config.max_connections
    );
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

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
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
        decision: None,
        approved: (0, 0),
        buf: vec![0u8; RECV_BUF_LEN],
    };
    match conn.run() {
        Ok(()) => log::info!("{peer}: connection closed"),
        Err(ConnEnd { error, reported }) => {
            log::warn!("{peer}: {error}");
            if conn.mode == Some(Mode::Ferry) {
                conn.answer(&ReceiverMsg::Failed {
                    reason: error.to_string(),
                });
            }
            if !reported {
                shared
                    .sink
                    .emit(Event::Server(ServerEvent::ConnectionError {
                        peer,
                        reason: error.to_string(),
                    }));
            }
        }
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

/// What a Ferry sender announced about its whole upload (`batch`).
struct Batch {
    count: u64,
    bytes: u64,
    names: Vec<String>,
    /// Parallel to `names`, or empty.
    sizes: Vec<u64>,
}

impl Batch {
    /// Whether the batch lists this file (by name, and by size when sizes were given); a
    /// batch too long to list every name covers any name.
    fn lists(&self, name: &str, size: u64) -> bool {
        if self.count > self.names.len() as u64 {
            return true;
        }
        self.names.iter().enumerate().any(|(i, listed)| {
            listed == name
                && self
                    .sizes
                    .get(i)
                    .is_none_or(|listed_size| *listed_size == size)
        })
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
}

impl DataSource<'_> {
    /// Fills `buf` as far as the file goes (so disk writes are large): at least one byte
    /// unless the file is complete or cancelled.
    fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, TransferError> {
        match self.fill_inner(buf) {
            // A cancel shuts the socket's read side: whatever error that caused, say why.
            Err(_) if self.cancel.load(Ordering::SeqCst) => Err(TransferError::CancelledHere),
            Err(_) if self.stopping.load(Ordering::SeqCst) => Err(TransferError::Stopped),
            other => other,
        }
    }

    fn fill_inner(&mut self, buf: &mut [u8]) -> Result<Fill, TransferError> {
        let mut filled = 0;
        while filled < buf.len() && self.received < self.size {
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
            let mut want = (self.size - self.received).min((buf.len() - filled) as u64) as usize;
            if self.chunked {
                want = want.min(self.left_in_chunk);
            }
            let n = match self.reader.read(&mut buf[filled..filled + want]) {
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
            filled += n;
            self.received += n as u64;
            if self.chunked {
                self.left_in_chunk -= n;
            }
        }
        Ok(if filled > 0 {
            Fill::Bytes(filled)
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
    fn idle_secs(&self) -> u64 {
        self.shared.config.idle_timeout.as_secs()
    }

    fn read_msg(&mut self) -> Result<Option<SenderMsg>, TransferError> {
        match read_frame(&mut self.reader) {
            Ok(Some(body)) => Ok(Some(decode_sender_msg(&body)?)),
            Ok(None) => Ok(None),
            Err(TransferError::Io(e)) => Err(read_error(e, self.idle_secs())),
            Err(e) => Err(e),
        }
    }

    fn run(&mut self) -> Result<(), ConnEnd> {
        while let Some(msg) = self.read_msg()? {
            let (header, mode) = match (self.mode, msg) {
                (
                    None,
                    SenderMsg::Batch {
                        count,
                        bytes,
                        mut names,
                        mut sizes,
                    },
                ) => {
                    names.truncate(OFFER_NAMES);
                    sizes.truncate(names.len());
                    if sizes.len() != names.len() {
                        sizes.clear(); // sizes that do not match the names say nothing
                    }
                    self.batch = Some(Batch {
                        count,
                        bytes,
                        names,
                        sizes,
                    });
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
        let covered = self.batch.as_ref().is_some_and(|b| {
            b.lists(&header.file_name, header.file_size)
                && self.approved.0 < b.count
                && self.approved.1.saturating_add(header.file_size) <= b.bytes
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
        let (count, bytes, names, sizes) = match (&self.batch, use_batch) {
            (Some(b), true) => (b.count, b.bytes, b.names.clone(), b.sizes.clone()),
            _ => (
                1,
                header.file_size,
                vec![header.file_name.clone()],
                vec![header.file_size],
            ),
        };
        // Names are shown to the user: as they would be saved, never raw control or bidi text.
        let names = names
            .iter()
            .map(|n| sanitize_file_name(n).to_string())
            .collect();
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
                    "{}: {:?} cancelled by the sender: {reason}",
                    self.peer,
                    header.file_name
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
                    reason.push_str("; the received part is kept, sending again resumes");
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
            pipelined(&mut source, file, &mut hasher, |received| {
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

// The receive buffer never needs to be larger than the largest chunk.
const _: () = assert!(RECV_BUF_LEN <= protocol::MAX_CHUNK_LEN);
