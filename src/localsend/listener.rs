//! The LocalSend receiver's HTTPS listeners and connections: the listener on the configured
//! address and, when that is the IPv4 wildcard, an IPv6-only one beside it on the same port
//! (LocalSend's newer core announces and registers over IPv6 too), so a device that found us
//! over IPv6 can reach us there. Both share one connection limit in all and one per source
//! address (an IPv4-mapped IPv6 peer counts as its IPv4 address); each connection is TLS
//! within [`HANDSHAKE_TIMEOUT`], then HTTP/1 served by hyper until the server stops (plain
//! HTTP/1 without TLS for a server configured as a device with encryption off: tests).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::LocalSendError;
use super::discovery::{self, Sockets};
use super::identity::fingerprint_of;
use super::server::{LocalSendConfig, Shared, route, stopped};

/// A TLS handshake must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one address may hold at once.
const MAX_PER_ADDRESS: usize = 8;

/// The bound listeners: the configured one, and the IPv6 one beside it if any.
pub(super) struct Listeners {
    pub(super) main: std::net::TcpListener,
    pub(super) v6: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds `config.bind:config.port`; when `config.bind` is `0.0.0.0` (or loopback, and
    /// `config.bind_v6` is `::1`) and `config.bind_v6` is set, also `[bind_v6]:port` (the port
    /// the first got), IPv6 only. A host without IPv6, or an IPv6 port taken, leaves only the
    /// first (logged).
    pub(super) fn bind(config: &LocalSendConfig) -> Result<Self, LocalSendError> {
        let addr = SocketAddr::new(config.bind, config.port);
        let main = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => LocalSendError::PortInUse { port: config.port },
            _ => LocalSendError::Start(format!("cannot listen on {addr}: {e}")),
        })?;
        main.set_nonblocking(true)?;
        let port = main.local_addr()?.port();
        let v6 = v6_beside(config).and_then(|v6| {
            let addr = SocketAddr::new(IpAddr::V6(v6), port);
            bind_v6_only(addr)
                .map_err(|e| log::warn!("LocalSend: no IPv6 listener on {addr}: {e}"))
                .ok()
        });
        Ok(Self { main, v6 })
    }

    /// Where these listeners take connections (see [`OwnAddress`]): what they are bound to,
    /// not what was asked (an IPv6 listener that could not be bound is no address of ours).
    pub(super) fn own(&self) -> std::io::Result<OwnAddress> {
        let main = self.main.local_addr()?;
        let mut bound = vec![main.ip()];
        // An IPv6 socket that is not IPv6-only (`::` where the system makes it so, as Linux
        // does) takes IPv4 too: every IPv4 address, or the one it maps.
        if main.is_ipv6() && !SockRef::from(&self.main).only_v6()? {
            bound.push(if main.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                main.ip().to_canonical()
            });
        }
        if let Some(v6) = &self.v6 {
            bound.push(v6.local_addr()?.ip());
        }
        Ok(OwnAddress::new(main.port(), bound))
    }
}

/// The address of the IPv6 listener beside the configured one, if there is to be one: the
/// same reach in both families, every address or loopback (tests) only.
fn v6_beside(config: &LocalSendConfig) -> Option<std::net::Ipv6Addr> {
    match (config.bind, config.bind_v6) {
        (IpAddr::V4(ip), Some(v6))
            if ip == Ipv4Addr::UNSPECIFIED || (ip.is_loopback() && v6.is_loopback()) =>
        {
            Some(v6)
        }
        _ => None,
    }
}

/// Where our own receiver listens. No other device is listed there: a register or an
/// announcement naming one of these addresses is another program on this host claiming
/// our port (a Ferry whose register body names LocalSend's port, not its receiver's), or
/// forged, and a row there would send to us.
#[derive(Debug, Default)]
pub(super) struct OwnAddress {
    port: u16,
    /// The addresses the listeners are bound to (unspecified: every address of this host).
    bound: Vec<IpAddr>,
    /// This host's interface addresses, for a listener that takes every address: read when
    /// needed, again once [`HOST_FRESH`] old, so an address the host got or lost since it
    /// started (a laptop that moved to another network, where another device may have its
    /// old address) counts as it is now.
    host: std::sync::Mutex<HostAddrs>,
}

/// How long this host's interface addresses, once read, stand for [`OwnAddress`].
const HOST_FRESH: Duration = Duration::from_secs(3);

/// This host's interface addresses, and when they were read (`None`: not yet).
#[derive(Debug, Default)]
struct HostAddrs {
    read: Option<Instant>,
    ips: Vec<IpAddr>,
}

impl OwnAddress {
    /// Listeners bound to `bound` on `port` (see [`Listeners::own`]).
    fn new(port: u16, bound: Vec<IpAddr>) -> Self {
        Self {
            port,
            bound,
            host: std::sync::Mutex::default(),
        }
    }

    /// Whether `addr` is where one of our listeners takes connections.
    /// An IPv4-mapped IPv6 address is its IPv4 one.
    pub(super) fn is(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        addr.port() == self.port
            && self.bound.iter().any(|bound| {
                *bound == ip
                    || (bound.is_unspecified()
                        && bound.is_ipv4() == ip.is_ipv4()
                        && (ip.is_loopback() || self.host_has(ip)))
            })
    }

    /// Whether `ip` is one of this host's interface addresses (see [`OwnAddress::host`]).
    fn host_has(&self, ip: IpAddr) -> bool {
        let mut host = self
            .host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if host
            .read
            .is_none_or(|read| now.saturating_duration_since(read) >= HOST_FRESH)
        {
            host.ips = if_addrs::get_if_addrs()
                .unwrap_or_default()
                .iter()
                .map(if_addrs::Interface::ip)
                .collect();
            host.read = Some(now);
        }
        host.ips.contains(&ip)
    }
}

/// A TCP listener on an IPv6 address that takes IPv6 only (the IPv4 listener has the port).
fn bind_v6_only(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(true)?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts on `listener`, or waits forever when there is none.
async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The runtime's main task: discovery, then accepting on every listener until stopped;
/// connections get a grace period to report their end.
pub(super) async fn run(
    listeners: Listeners,
    udp: Option<Sockets>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
) {
    let main = match tokio::net::TcpListener::from_std(listeners.main) {
        Ok(listener) => listener,
        Err(e) => {
            log::warn!("LocalSend listener: {e}");
            return;
        }
    };
    let v6 = listeners
        .v6
        .and_then(|l| tokio::net::TcpListener::from_std(l).ok());
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(udp) = udp {
        tasks.spawn(discovery::run(udp, Arc::clone(&shared)));
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.config.max_connections.max(1),
    ));
    let mut stop = shared.stop.clone();
    let per_address: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = accept(Some(&main)) => accepted,
            accepted = accept(v6.as_ref()) => accepted,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, mut peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("LocalSend accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A dual-stack listener (bound to `::`) sees IPv4 peers as `::ffff:a.b.c.d`: the
        // same peer, so the same limits and the same address its uploads must come from.
        if let SocketAddr::V6(v6) = peer
            && let Some(v4) = v6.ip().to_ipv4_mapped()
        {
            peer = SocketAddr::new(IpAddr::V4(v4), v6.port());
        }
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
    drop(main);
    drop(v6);
    // Uploads see the stop and report it; whatever is still running after this is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

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

/// One connection: TLS (unless the server speaks plain HTTP), then its requests.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let Some(acceptor) = acceptor else {
        return serve_http(stream, peer, None, shared).await;
    };
    // A peer that stalls its handshake does not hold up a stop.
    let mut stop = shared.stop.clone();
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                log::debug!("LocalSend TLS from {peer}: {e}");
                return;
            }
            Err(_) => return,
        },
        () = stopped(&mut stop) => return,
    };
    let client_fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| fingerprint_of(cert));
    serve_http(tls, peer, client_fingerprint, shared).await;
}

/// HTTP/1 over `io` until the client is done or the server stops; `client_fingerprint`: the
/// certificate the client showed, if any.
async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    client_fingerprint: Option<String>,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&service_shared);
        let client = client_fingerprint.clone();
        async move { Ok::<_, std::convert::Infallible>(route(request, peer, client, shared).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Some(shared.config.idle_timeout))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(io), service);
    let mut stop = shared.stop.clone();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                log::debug!("LocalSend connection from {peer}: {e}");
            }
        }
        _ = stopped(&mut stop) => {
            // An idle connection closes at once; a running request (an upload notices the
            // stop and answers) gets a second to end, then is closed.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection.as_mut()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_addresses_are_the_hosts_as_they_are_now_not_as_they_were_at_start() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let own = OwnAddress::new(53317, vec![any]);
        // Read a while ago, when the host had an address it has since lost (TEST-NET-2:
        // no host has it now).
        let lost: IpAddr = "198.51.100.77".parse().expect("ip");
        let long_ago = Instant::now().checked_sub(HOST_FRESH * 2);
        *own.host.lock().expect("lock") = HostAddrs {
            read: long_ago,
            ips: vec![lost],
        };
        assert!(
            !own.is(SocketAddr::new(lost, 53317)),
            "another device at the address this host had is not us"
        );
        assert!(own.is(SocketAddr::from(([127, 0, 0, 1], 53317))));
        assert!(!own.is(SocketAddr::from(([127, 0, 0, 1], 53318))));
        // One it has now, read a while ago without it (the host got it since).
        let now = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .iter()
            .map(if_addrs::Interface::ip)
            .find(|ip| ip.is_ipv4() && !ip.is_loopback());
        if let Some(now) = now {
            *own.host.lock().expect("lock") = HostAddrs {
                read: long_ago,
                ips: vec![],
            };
            assert!(own.is(SocketAddr::new(now, 53317)), "{now} is ours");
        }
    }
}
