//! The LocalSend receiver: a TLS listener on a tokio runtime of its own thread, the routes,
//! and `prepare-upload`'s way through the PIN, the one-session rule, validation, the free
//! space check and the accept policy (asking the user like the Ferry server does).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{oneshot, watch};

use super::devices::{DeviceTable, LocalSendDevice, Proof};
use super::discovery::{MulticastConfig, Sockets, with_port};
use super::identity::CertIdentity;
use super::listener::{self, Listeners, OwnAddress};
use super::session::{Session, Slot};
use super::sweep::{SweepReport, SweepSettings, Sweeper};
use super::wire::{DeviceInfo, PROTOCOL_VERSION};
use super::{LOCALSEND_PORT, LocalSendError, LocalSendProtocol};
use crate::events::{EventSink, TransferId};
use crate::transfer::{AcceptPolicy, Decision, Downloads, MinRate};

/// Largest JSON body read (prepare-upload with [`wire::MAX_FILES`] files and a text).
pub(super) const MAX_JSON_BYTES: usize = 8 * 1024 * 1024;
/// Largest register body.
const MAX_REGISTER_BYTES: usize = 64 * 1024;
/// What the LocalSend receiver needs.
#[derive(Debug, Clone)]
pub struct LocalSendConfig {
    /// The address the HTTPS listener binds (`0.0.0.0`: every IPv4 address, and IPv6 too
    /// through [`LocalSendConfig::bind_v6`]).
    pub bind: IpAddr,
    /// When `bind` is `0.0.0.0`: a second, IPv6-only listener on this address and the same
    /// port (`::` by default; `None`: IPv4 only). Ignored when `bind` is any other address
    /// (a server bound to one address listens there only), except loopback with `::1`
    /// (tests). Where IPv6 is missing, the server runs on IPv4 alone.
    pub bind_v6: Option<Ipv6Addr>,
    /// TCP port for HTTPS (LocalSend's 53317; 0 picks one, for tests).
    pub port: u16,
    /// The port devices are told (announcements, register bodies and answers, sweeps) when
    /// it is not the one bound (`None`: the bound port). LocalSend keeps one entry per IP
    /// address, last told wins: a short-lived lookup that could not take LocalSend's port,
    /// because a receiver on this host holds it, tells devices that receiver's port rather
    /// than one nobody serves once the lookup ends.
    pub advertised_port: Option<u16>,
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
    /// A file's bytes must arrive at least this fast (as for Ferry uploads): a sender
    /// trickling its upload cannot hold the one session (everyone else's 409) for ever.
    pub min_rate: MinRate,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    pub fsync: bool,
    /// As a Ferry server's `direct_io`.
    pub direct_io: bool,
    pub identity: CertIdentity,
    /// Announce and listen for announcements (`None`: no discovery).
    pub multicast: Option<MulticastConfig>,
    /// How [`LocalSendServer::sweep`] asks each host.
    pub sweep: SweepSettings,
    /// HTTPS (always, in Ferry). [`LocalSendProtocol::Http`] serves and announces plain
    /// HTTP, as a LocalSend app with Encryption turned off does (no certificate: anyone on
    /// the network can read what is sent): neither face offers it; it stands in for such a
    /// device in tests.
    pub protocol: LocalSendProtocol,
}

impl LocalSendConfig {
    pub fn new(dir: PathBuf, alias: &str, identity: CertIdentity) -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            bind_v6: Some(Ipv6Addr::UNSPECIFIED),
            port: LOCALSEND_PORT,
            advertised_port: None,
            dir,
            alias: alias.to_owned(),
            device_type: "desktop".to_owned(),
            policy: AcceptPolicy::Ask,
            pin: None,
            decision_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(crate::defaults::DEFAULT_IDLE_TIMEOUT_SECS),
            min_rate: MinRate {
                bytes_per_sec: 1024,
                window: Duration::from_secs(30),
            },
            max_connections: crate::defaults::DEFAULT_MAX_CONNECTIONS,
            fsync: true,
            direct_io: true,
            identity,
            multicast: None,
            sweep: SweepSettings::default(),
            protocol: LocalSendProtocol::Https,
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
    /// What prepare-upload bodies being read may hold at once (see `prepare::read_json`).
    pub(super) json_budget: Arc<tokio::sync::Semaphore>,
    /// Wakes discovery to announce again ([`LocalSendServer::announce`]).
    pub(super) announce: tokio::sync::Notify,
    /// Where we listen: never another device's address.
    pub(super) own: OwnAddress,
}

impl Shared {
    pub(super) fn new(
        config: LocalSendConfig,
        sink: EventSink,
        downloads: Downloads,
        info: DeviceInfo,
        stop: watch::Receiver<bool>,
        own: OwnAddress,
    ) -> Self {
        Self {
            own,
            policy: Mutex::new(config.policy),
            config,
            sink,
            downloads,
            info,
            pending: Mutex::new(HashMap::new()),
            slot: Mutex::new(Slot::Free),
            pin_tries: Mutex::new(HashMap::new()),
            devices: Mutex::new(DeviceTable::default()),
            stop,
            live: Mutex::new(HashMap::new()),
            json_budget: super::prepare::json_budget(),
            announce: tokio::sync::Notify::new(),
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task must not take the others down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running LocalSend receiver. Dropping it stops it (uploads in flight fail, their
/// `.part` files are removed) and joins its thread.
pub struct LocalSendServer {
    local_addr: SocketAddr,
    local_addr_v6: Option<SocketAddr>,
    udp_port: Option<u16>,
    fingerprint: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Set at stop: the sink then stops waiting for a consumer that does not read (see
    /// [`EventSink::stopped_by`]); the runtime's tasks could otherwise hold the join.
    stopping: Arc<AtomicBool>,
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
        let tls = match config.protocol {
            LocalSendProtocol::Https => Some(super::tls::server_config(&config.identity)?),
            LocalSendProtocol::Http => None,
        };
        let listeners = Listeners::bind(&config)?;
        let local_addr = listeners.main.local_addr()?;
        let local_addr_v6 = match &listeners.v6 {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let udp = match &config.multicast {
            Some(multicast) => Some(Sockets::bind(multicast)?),
            None => None,
        };
        let udp_port = match &udp {
            Some(sockets) => Some(sockets.port()?),
            None => None,
        };
        let fingerprint = config.identity.fingerprint().to_owned();
        let info = DeviceInfo {
            alias: config.alias.clone(),
            version: PROTOCOL_VERSION.to_owned(),
            device_model: Some("Ferry".to_owned()),
            device_type: Some(config.device_type.clone()),
            fingerprint: fingerprint.clone(),
            port: Some(config.advertised_port.unwrap_or(local_addr.port())),
            protocol: Some(config.protocol.as_str().to_owned()),
            download: false,
            announce: None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let stopping = Arc::new(AtomicBool::new(false));
        let sink = sink.stopped_by(Arc::clone(&stopping));
        let own = listeners.own()?;
        let shared = Arc::new(Shared::new(config, sink, downloads, info, stop_rx, own));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sweeper = Sweeper::new(runtime.handle().clone());
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ferry-localsend".into())
            .spawn(move || runtime.block_on(listener::run(listeners, udp, tls, task_shared)))?;
        log::info!("LocalSend receiving on {local_addr}, fingerprint {fingerprint}");
        Ok(Self {
            local_addr,
            local_addr_v6,
            udp_port,
            fingerprint,
            shared,
            stop,
            stopping,
            thread: Some(thread),
            sweeper,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The port devices are told ([`LocalSendConfig::advertised_port`], else the bound one).
    pub fn advertised_port(&self) -> u16 {
        self.shared.info.port.unwrap_or(self.local_addr.port())
    }

    /// The IPv6 listener beside [`LocalSendServer::local_addr`], if there is one (see
    /// [`LocalSendConfig::bind_v6`]).
    pub fn local_addr_v6(&self) -> Option<SocketAddr> {
        self.local_addr_v6
    }

    /// The UDP port discovery listens on (IPv4 and IPv6 alike) (`None`: no discovery).
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

    /// Cancels the session an incoming file belongs to: its row ends cancelled (here), the
    /// sender's uploads get 403.
    pub fn cancel(&self, id: TransferId) {
        if let Some(session) = lock(&self.shared.live).get(&id).cloned() {
            super::session::end_session(&self.shared, &session, super::session::Ended::Here);
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

    /// Announces this device again on the multicast groups, as at start (three times, a
    /// second apart; a round already under way starts over), so devices that answer
    /// announcements register again. Nothing without discovery.
    pub fn announce(&self) {
        self.shared.announce.notify_one();
    }

    /// Whether a sweep is running.
    pub fn is_sweeping(&self) -> bool {
        self.sweeper.is_running()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
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

pub(super) async fn route(
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
        (&Method::POST, "upload") => super::upload::upload(request, peer, shared).await,
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
        // The body says where its sender's receiver is (LocalSend v2); an older body
        // without a port means LocalSend's.
        let addr = with_port(peer, info.port.unwrap_or(LOCALSEND_PORT));
        let proof = match client {
            Some(_) => Proof::Certificate,
            None => Proof::Claimed,
        };
        if shared.own.is(addr) {
            log::debug!("LocalSend: a register naming our own address {addr}: not listed");
        } else {
            lock(&shared.devices).heard(info, addr, "register", proof);
        }
    }
    let mut ours = shared.info.clone();
    ours.port = None;
    ours.protocol = None;
    json_reply(&ours)
}
