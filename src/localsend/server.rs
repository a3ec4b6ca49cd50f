//! The LocalSend receiver: a TLS listener on a tokio runtime of its own thread, the routes,
//! and `prepare-upload`'s way through the PIN, the one-session rule, validation, the free
//! space check and the accept policy (asking the user like the Ferry server does).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{oneshot, watch};

use super::discovery::{self, DeviceTable, LocalSendDevice};
use super::identity::{CertIdentity, fingerprint_of};
use super::sweep::{SweepReport, SweepSettings, Sweeper};
use super::upload::{Session, Slot};
use super::wire::{DeviceInfo, PROTOCOL_VERSION};
use super::{LOCALSEND_GROUP, LOCALSEND_PORT, LocalSendError};
use crate::events::{EventSink, TransferId};
use crate::transfer::{AcceptPolicy, Decision, Downloads};

/// Largest JSON body read (prepare-upload with [`wire::MAX_FILES`] files and a text).
pub(super) const MAX_JSON_BYTES: usize = 8 * 1024 * 1024;
/// Largest register body.
const MAX_REGISTER_BYTES: usize = 64 * 1024;
/// A TLS handshake must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where discovery announces and listens.
#[derive(Debug, Clone)]
pub struct MulticastConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// The IPv4 addresses of the interfaces to announce on and join the group on (each
    /// send sets its outgoing interface explicitly).
    pub interfaces: Vec<Ipv4Addr>,
}

impl MulticastConfig {
    /// LocalSend's group and port on every up, non-loopback IPv4 interface.
    pub fn lan() -> Self {
        let interfaces = if_addrs::get_if_addrs()
            .map(|all| {
                all.into_iter()
                    .filter(|i| !i.is_loopback())
                    .filter_map(|i| match i.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            group: LOCALSEND_GROUP,
            port: LOCALSEND_PORT,
            interfaces,
        }
    }
}

/// What the LocalSend receiver needs.
#[derive(Debug, Clone)]
pub struct LocalSendConfig {
    pub bind: IpAddr,
    /// TCP port for HTTPS (LocalSend's 53317; 0 picks one, for tests).
    pub port: u16,
    /// The download folder; must exist.
    pub dir: PathBuf,
    /// The name other devices show.
    pub alias: String,
    /// `desktop` (the window) or `headless` (`ferry serve`).
    pub device_type: String,
    /// LocalSend devices are never trusted Ferry devices: `Everyone` takes their files,
    /// `Ask`/`Trusted` ask, `TrustedOnly` refuses.
    pub policy: AcceptPolicy,
    /// A PIN senders must give (`?pin=`), if any.
    pub pin: Option<String>,
    /// How long an offer waits for the user before it is declined.
    pub decision_timeout: Duration,
    /// A body silent this long fails; an accepted session unused this long ends.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    pub fsync: bool,
    pub identity: CertIdentity,
    /// Announce and listen for announcements (`None`: no discovery).
    pub multicast: Option<MulticastConfig>,
    /// How [`LocalSendServer::sweep`] asks each host.
    pub sweep: SweepSettings,
}

impl LocalSendConfig {
    pub fn new(dir: PathBuf, alias: &str, identity: CertIdentity) -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: LOCALSEND_PORT,
            dir,
            alias: alias.to_owned(),
            device_type: "desktop".to_owned(),
            policy: AcceptPolicy::Ask,
            pin: None,
            decision_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(crate::defaults::DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: crate::defaults::DEFAULT_MAX_CONNECTIONS,
            fsync: true,
            identity,
            multicast: None,
            sweep: SweepSettings::default(),
        }
    }
}

/// State the connection tasks share.
pub(super) struct Shared {
    pub(super) config: LocalSendConfig,
    pub(super) sink: EventSink,
    pub(super) downloads: Downloads,
    pub(super) info: DeviceInfo,
    pub(super) policy: Mutex<AcceptPolicy>,
    pub(super) pending: Mutex<HashMap<u64, oneshot::Sender<Decision>>>,
    pub(super) slot: Mutex<Slot>,
    pub(super) pin_tries: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    pub(super) devices: Mutex<DeviceTable>,
    pub(super) stop: watch::Receiver<bool>,
    /// Incoming files that [`LocalSendServer::cancel`] can stop.
    pub(super) live: Mutex<HashMap<TransferId, Arc<Session>>>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task must not take the others down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running LocalSend receiver. Dropping it stops it (uploads in flight fail, their
/// `.part` files are removed) and joins its thread.
pub struct LocalSendServer {
    local_addr: SocketAddr,
    udp_port: Option<u16>,
    fingerprint: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    sweeper: Sweeper,
}

impl LocalSendServer {
    /// Binds the port, opens the folder and starts serving on a thread of its own.
    pub fn start(config: LocalSendConfig, sink: EventSink) -> Result<Self, LocalSendError> {
        if !config.dir.is_dir() {
            return Err(LocalSendError::Start(format!(
                "download folder {} is not a folder",
                config.dir.display()
            )));
        }
        let downloads = Downloads::open(&config.dir, config.fsync)?;
        let tls = super::tls::server_config(&config.identity)?;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => LocalSendError::PortInUse { port: config.port },
            _ => LocalSendError::Start(format!("cannot listen on {addr}: {e}")),
        })?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let udp = match &config.multicast {
            Some(multicast) => Some(discovery::bind(multicast)?),
            None => None,
        };
        let udp_port = match &udp {
            Some(socket) => Some(socket.local_addr()?.port()),
            None => None,
        };
        let fingerprint = config.identity.fingerprint().to_owned();
        let info = DeviceInfo {
            alias: config.alias.clone(),
            version: PROTOCOL_VERSION.to_owned(),
            device_model: Some("Ferry".to_owned()),
            device_type: Some(config.device_type.clone()),
            fingerprint: fingerprint.clone(),
            port: Some(local_addr.port()),
            protocol: Some("https".to_owned()),
            download: false,
            announce: None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            policy: Mutex::new(config.policy),
            config,
            sink,
            downloads,
            info,
            pending: Mutex::new(HashMap::new()),
            slot: Mutex::new(Slot::Free),
            pin_tries: Mutex::new(HashMap::new()),
            devices: Mutex::new(DeviceTable::default()),
            stop: stop_rx,
            live: Mutex::new(HashMap::new()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sweeper = Sweeper::new(runtime.handle().clone());
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ferry-localsend".into())
            .spawn(move || runtime.block_on(run(listener, udp, tls, task_shared)))?;
        log::info!("LocalSend receiving on {local_addr}, fingerprint {fingerprint}");
        Ok(Self {
            local_addr,
            udp_port,
            fingerprint,
            shared,
            stop,
            thread: Some(thread),
            sweeper,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP port discovery listens on (`None`: no discovery).
    pub fn discovery_port(&self) -> Option<u16> {
        self.udp_port
    }

    /// This install's LocalSend fingerprint (what LocalSend shows for this device).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Answers an offer this server asked about; unknown or closed ids are ignored (so a
    /// face can send every answer to both servers).
    pub fn answer(&self, offer_id: u64, decision: Decision) {
        if let Some(tx) = lock(&self.shared.pending).remove(&offer_id) {
            let _ = tx.send(decision);
        }
    }

    pub fn set_policy(&self, policy: AcceptPolicy) {
        *lock(&self.shared.policy) = policy;
    }

    /// Cancels the session an incoming file belongs to (the sender's next upload gets 403).
    pub fn cancel(&self, id: TransferId) {
        if let Some(session) = lock(&self.shared.live).get(&id).cloned() {
            super::upload::end_session(&self.shared, &session);
        }
    }

    /// The LocalSend devices heard (announced, registered or answering), newest first.
    pub fn devices(&self) -> Vec<LocalSendDevice> {
        lock(&self.shared.devices).list()
    }

    /// Starts a register sweep of `targets` (see [`super::sweep`]; the faces pass
    /// [`super::sweep::subnet_hosts`] of their interfaces); what answers joins
    /// [`LocalSendServer::devices`]. `None` when a sweep is already running (it goes on;
    /// none is started). The receiver gets the report when the sweep ends.
    pub fn sweep(
        &self,
        targets: Vec<SocketAddr>,
    ) -> Option<crossbeam_channel::Receiver<SweepReport>> {
        self.sweeper
            .start(Arc::clone(&self.shared), targets, self.shared.config.sweep)
    }

    /// Whether a sweep is running.
    pub fn is_sweeping(&self) -> bool {
        self.sweeper.is_running()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        // No `ServerEvent::Stopped`: that is the Ferry server's; whoever stops this one
        // says so (the window's LocalSend status).
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LocalSendServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The runtime's main task: discovery, then accepting until stopped; connections get a
/// grace period to report their end.
async fn run(
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            log::warn!("LocalSend listener: {e}");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(udp) = udp {
        tasks.spawn(discovery::run(udp, Arc::clone(&shared)));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.config.max_connections.max(1),
    ));
    let mut stop = shared.stop.clone();
    let per_address: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        log::warn!("LocalSend accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    log::warn!("LocalSend: too many connections, closing one from {peer}");
                    continue;
                };
                // A few addresses cannot take every slot (as for Ferry's own server).
                let Some(per_peer) = PeerSlot::take(&per_address, peer.ip()) else {
                    log::warn!("LocalSend: {peer} already holds {MAX_PER_ADDRESS} connections");
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = Arc::clone(&shared);
                tasks.spawn(async move {
                    serve_connection(stream, peer, acceptor, shared).await;
                    drop(per_peer);
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    // Uploads see the stop and report it; whatever is still running after this is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Connections one address may hold at once.
const MAX_PER_ADDRESS: usize = 8;

/// One of an address's connections; gives its place back when dropped.
struct PeerSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<Self> {
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = map.entry(ip).or_insert(0);
        if *held >= MAX_PER_ADDRESS {
            return None;
        }
        *held += 1;
        Some(PeerSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = map.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::debug!("LocalSend TLS from {peer}: {e}");
            return;
        }
        Err(_) => return,
    };
    let client_fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| fingerprint_of(cert));
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&service_shared);
        let client = client_fingerprint.clone();
        async move { Ok::<_, std::convert::Infallible>(route(request, peer, client, shared).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Some(shared.config.idle_timeout))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(tls), service);
    let mut stop = shared.stop.clone();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                log::debug!("LocalSend connection from {peer}: {e}");
            }
        }
        _ = stopped(&mut stop) => {
            // Let a running upload notice the stop and answer; then close.
            let _ = tokio::time::timeout(Duration::from_secs(1), connection.as_mut()).await;
        }
    }
}

/// Resolves when the server stops (the watch's guard is not held across the await).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

pub(super) type Reply = Response<Full<Bytes>>;

/// A reply with a JSON `{"message": ...}` body, as LocalSend's own errors look.
pub(super) fn reply(status: StatusCode, message: &str) -> Reply {
    let body = if message.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::json!({ "message": message }).to_string())
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

pub(super) fn json_reply(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The query's parameters, decoded as LocalSend's own server decodes them
/// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte, bad UTF-8 replaced).
/// A sender percent-encodes what is not plain ASCII: a PIN typed with a space or in Chinese
/// arrives as `pin=%E5%AF%86%E7%A0%81%201` (LocalSend's Rust client) or `...+1` (its app),
/// and a sender's own file ids may be anything.
pub(super) fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(key, _)| !key.is_empty())
        .take(16)
        .map(|(key, value)| (form_decode(key), form_decode(value)))
        .collect()
}

/// One form-encoded query key or value, decoded (never longer than it came).
fn form_decode(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    client: Option<String>,
    shared: Arc<Shared>,
) -> Reply {
    const API: &str = "/api/localsend/v2/";
    let path = request.uri().path().to_owned();
    let Some(endpoint) = path.strip_prefix(API) else {
        return reply(StatusCode::NOT_FOUND, "not a LocalSend v2 path");
    };
    match (request.method(), endpoint) {
        (&Method::POST, "register") => register(request, peer, client, &shared).await,
        (&Method::GET, "info") => json_reply(&shared.info),
        (&Method::POST, "prepare-upload") => {
            super::prepare::prepare(request, peer, client, &shared).await
        }
        (&Method::POST, "upload") => super::upload::upload(request, peer, &shared).await,
        (&Method::POST, "cancel") => super::upload::cancel(&request, peer, &shared),
        _ => reply(StatusCode::NOT_FOUND, "unknown LocalSend route"),
    }
}

/// Reads a whole body of at most `max` bytes, within the idle timeout.
pub(super) async fn read_body(
    request: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Reply> {
    let collect = Limited::new(request.into_body(), max).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {max} bytes"),
        )),
        Ok(Err(e)) => Err(reply(StatusCode::BAD_REQUEST, &format!("body: {e}"))),
        Err(_) => Err(reply(StatusCode::REQUEST_TIMEOUT, "body too slow")),
    }
}

async fn register(
    request: Request<Incoming>,
    peer: SocketAddr,
    client: Option<String>,
    shared: &Shared,
) -> Reply {
    let body = match read_body(request, MAX_REGISTER_BYTES, shared.config.idle_timeout).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let info: DeviceInfo = match serde_json::from_slice(&body) {
        Ok(info) => info,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    // A body whose fingerprint is not its certificate's is ignored (as LocalSend does), but
    // answered all the same.
    let proven = match &client {
        Some(cert) => cert.eq_ignore_ascii_case(&info.fingerprint),
        None => true,
    };
    if proven
        && !info
            .fingerprint
            .eq_ignore_ascii_case(&shared.info.fingerprint)
    {
        let port = info.port.unwrap_or(LOCALSEND_PORT);
        lock(&shared.devices).heard(info, SocketAddr::new(peer.ip(), port), "register");
    }
    let mut ours = shared.info.clone();
    ours.port = None;
    ours.protocol = None;
    json_reply(&ours)
}
