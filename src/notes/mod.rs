//! UDP notes: quick text messages between machines, interoperable with plain UDP peers
//! (`nc -u`, a five-line Python `sendto` script).
//!
//! One datagram is one UTF-8 message with no header (the limits and the decoding live in
//! [`crate::protocol`]). A [`NotesHandle`] owns one UDP socket and one receive thread
//! (`ferry-notes-recv`) that turns every datagram into a [`NoteEvent::Received`](crate::events::NoteEvent::Received) on the
//! [`EventSink`]; sending goes out of the same socket, so a peer's reply comes back to it.
//!
//! - Sending never waits for the network: UDP `send_to` only queues the datagram (with a
//!   one-second send timeout in case the local queue is full), so success means "sent",
//!   never "delivered".
//! - Sending to an address where nothing listens is not an error. Where the OS reports the
//!   ICMP port-unreachable on a later receive (ECONNREFUSED on a connected socket on Linux,
//!   WSAECONNRESET on Windows), the receive loop ignores it and keeps going.
//! - The receive buffer is 64 KiB, so every datagram arrives whole; three datagrams are
//!   three notes, never merged; invalid UTF-8 is shown lossily, never dropped.
//! - A reply goes to the exact source address (`from`) of the note it answers.
//! - Memory stays bounded under a flood, even when nobody reads the events: received notes
//!   wait in a bounded [`NoteQueue`] (1 024 notes, 4 MiB) and are handed to the event channel
//!   only while it holds fewer than [`MAX_EVENTS_IN_FLIGHT`] events. When the queue is full
//!   the oldest notes are dropped and a [`NoteEvent::Dropped`](crate::events::NoteEvent::Dropped) with their number goes out
//!   before the notes that were kept, so the user is told.
//!
//!
//! # Encrypted notes
//!
//! With a [`Keyring`] in the [`NotesConfig`], notes between trusted devices are sealed: one
//! datagram per note, encrypted and authenticated, with replay protection (the format is in
//! [`crate::secure::note`]; when to seal is in [`sealed`]). Every received note carries its
//! [`Security`]: `Encrypted` with the trusted device's name, or `Plain` for a plain UDP peer
//! (`nc -u`, the Python chat), whose notes still arrive as before. A sealed datagram that
//! does not open (an unknown or forgotten device, a flipped byte, a replay), or any sealed
//! datagram when there is no keyring, is never shown as text: it is logged and reported as
//! [`NoteEvent::Refused`](crate::events::NoteEvent::Refused), and the listener keeps going. Sending seals under [`Seal::Auto`]
//! when the destination is a trusted device (its last address, or the address a sealed note
//! came from, so replies to sealed notes are sealed); [`Seal::Plain`] forces plain text.
//!
//! [`NoteHistory`] is the bounded, in-memory list of recent notes the window keeps.

mod history;
mod queue;
mod receive;
pub mod sealed;
mod seen;

pub use history::{HISTORY_CAPACITY, NoteEntry, NoteHistory};
pub use queue::{NoteQueue, QUEUE_BYTES, QUEUE_NOTES, QueuedNote};
pub use sealed::{Seal, SealError};

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::events::{EventSink, Security};
use crate::protocol::{NoteError, NoteWarning, check_note};
use crate::secure::Keyring;
use receive::receive_loop;
use sealed::Sealing;

/// The UDP port notes use unless told otherwise (the same number as the TCP uploads).
pub const DEFAULT_NOTES_PORT: u16 = crate::defaults::DEFAULT_PORT;

/// Size of the receive buffer: larger than any UDP payload, so no datagram is cut short.
pub const RECV_BUF_LEN: usize = 64 * 1024;

/// How often the receive thread looks at its stop flag when no datagram arrives.
pub const RECV_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Longest a send may wait for room in the local socket buffer before it fails.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// How often waiting notes are offered again to a consumer that was behind.
const FORWARD_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// Received notes are handed to the event channel only while it holds fewer events than
/// this; the rest wait in the bounded [`NoteQueue`]. Bounds the memory a flood can take even
/// when nobody reads the events (64 of the largest notes are 12 MiB).
pub const MAX_EVENTS_IN_FLIGHT: usize = 64;

/// Pause after an unexpected receive error, so a persistent one does not spin a core.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Where the notes socket listens, and with which device identity.
#[derive(Debug, Clone)]
pub struct NotesConfig {
    pub bind: IpAddr,
    /// 0 picks a free port; [`NotesHandle::local_addr`] tells which.
    pub port: u16,
    /// This device and the devices it trusts: notes to and from them are sealed. `None`:
    /// plain notes only (sealed datagrams are refused).
    pub keyring: Option<Keyring>,
}

impl NotesConfig {
    /// Plain notes only; see [`with_keyring`](Self::with_keyring).
    pub fn new(bind: IpAddr, port: u16) -> Self {
        Self {
            bind,
            port,
            keyring: None,
        }
    }

    /// Seals notes to, and opens sealed notes from, the devices `keyring` trusts.
    pub fn with_keyring(mut self, keyring: Option<Keyring>) -> Self {
        self.keyring = keyring;
        self
    }
}

impl Default for NotesConfig {
    /// Every IPv4 interface, port [`DEFAULT_NOTES_PORT`].
    fn default() -> Self {
        Self::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_NOTES_PORT)
    }
}

/// What went wrong with notes. Each message already ends with its I/O error's text, so the
/// error is kept as a plain field, not a `source` (a chain printer would show it twice).
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error("UDP port {port} is in use")]
    PortInUse { port: u16 },
    #[error("cannot listen for notes on {addr}: {error}")]
    Bind { addr: SocketAddr, error: io::Error },
    #[error("cannot set up the notes socket: {0}")]
    Socket(io::Error),
    #[error("cannot start the notes receive thread: {0}")]
    Thread(io::Error),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("cannot resolve {to:?} (expected HOST:PORT): {error}")]
    Resolve { to: String, error: io::Error },
    #[error("{to:?} has no {family} address, and the notes socket on {local} speaks only {family}")]
    NoAddress {
        to: String,
        family: &'static str,
        local: SocketAddr,
    },
    #[error("cannot send to {to}: {error}")]
    Send { to: SocketAddr, error: io::Error },
    #[error("cannot encrypt the note: {0}")]
    Seal(#[from] SealError),
}

/// A note that left this machine. UDP promises nothing more: it was sent, not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Where it was sent.
    pub to: SocketAddr,
    /// How many bytes the datagram carried.
    pub bytes: usize,
    /// Set when the note is longer than plain peers read.
    pub warning: Option<NoteWarning>,
    /// Sealed to a trusted device, or plain.
    pub security: Security,
}

/// A bound notes socket and its receive thread. Dropping the handle stops the thread and
/// joins it (within [`RECV_POLL_INTERVAL`], usually at once).
///
/// The receive thread never waits for the consumer: a slow one sees
/// [`NoteEvent::Dropped`](crate::events::NoteEvent::Dropped) instead of every note.
#[derive(Debug)]
pub struct NotesHandle {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    sealing: Option<Arc<Sealing>>,
    stop: Arc<AtomicBool>,
    recv_thread: Option<JoinHandle<()>>,
}

impl NotesHandle {
    /// Binds `config.bind:config.port` and starts receiving.
    pub fn start(config: NotesConfig, sink: EventSink) -> Result<Self, NotesError> {
        let addr = SocketAddr::new(config.bind, config.port);
        let socket = UdpSocket::bind(addr).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => NotesError::PortInUse { port: config.port },
            _ => NotesError::Bind {
                addr,
                error: source,
            },
        })?;
        Self::from_socket_with(socket, config.keyring, sink)
    }

    /// Starts receiving on a socket the caller bound (and configured) itself. The socket is
    /// put in blocking mode with Ferry's read and write timeouts.
    pub fn from_socket(socket: UdpSocket, sink: EventSink) -> Result<Self, NotesError> {
        Self::from_socket_with(socket, None, sink)
    }

    /// [`from_socket`](Self::from_socket), sealing notes for the devices `keyring` trusts.
    pub fn from_socket_with(
        socket: UdpSocket,
        keyring: Option<Keyring>,
        sink: EventSink,
    ) -> Result<Self, NotesError> {
        let sealing = keyring.map(|k| Arc::new(Sealing::new(k)));
        let local_addr = socket.local_addr().map_err(NotesError::Socket)?;
        socket.set_nonblocking(false).map_err(NotesError::Socket)?;
        socket
            .set_read_timeout(Some(RECV_POLL_INTERVAL))
            .map_err(NotesError::Socket)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(NotesError::Socket)?;
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let recv_thread = {
            let socket = Arc::clone(&socket);
            let stop = Arc::clone(&stop);
            let sealing = sealing.clone();
            thread::Builder::new()
                .name("ferry-notes-recv".into())
                .spawn(move || receive_loop(&socket, &stop, sealing.as_deref(), &sink))
                .map_err(NotesError::Thread)?
        };
        log::info!("notes: listening on {local_addr} (UDP)");
        Ok(Self {
            socket,
            local_addr,
            sealing,
            stop,
            recv_thread: Some(recv_thread),
        })
    }

    /// The address the socket is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `text` as one datagram to `to`, from the listening socket (so replies come back
    /// here), sealed if `to` is a trusted device ([`Seal::Auto`]). Refuses notes above
    /// [`crate::protocol::MAX_NOTE_BYTES`]; a note above
    /// [`crate::protocol::PLAIN_PEER_NOTE_BYTES`] is sent with [`Sent::warning`] set.
    pub fn send(&self, to: SocketAddr, text: &str) -> Result<Sent, NotesError> {
        self.send_with(to, text, Seal::Auto)
    }

    /// Like [`send`](Self::send), sealed or not as `seal` says. Sealing needs a keyring and
    /// a trusted device, and text of at most
    /// [`MAX_SEALED_TEXT_BYTES`](crate::secure::note::MAX_SEALED_TEXT_BYTES) bytes.
    pub fn send_with(&self, to: SocketAddr, text: &str, seal: Seal) -> Result<Sent, NotesError> {
        let warning = check_note(text)?;
        let key = match (&self.sealing, seal) {
            (None, Seal::Device(_)) => return Err(SealError::NoKeyring.into()),
            (None, _) => None,
            (Some(sealing), seal) => sealing.key_for(to, seal),
        };
        let (datagram, security) = match (&self.sealing, key) {
            (Some(sealing), Some(key)) => {
                let (datagram, security) = sealing.seal(&key, text)?;
                (std::borrow::Cow::Owned(datagram), security)
            }
            _ => (std::borrow::Cow::Borrowed(text.as_bytes()), Security::Plain),
        };
        let target = fit_family(to, self.local_addr);
        let bytes = self
            .socket
            .send_to(&datagram, target)
            .map_err(|error| NotesError::Send { to, error })?;
        log::debug!("notes: sent {bytes} bytes to {to} ({security:?})");
        Ok(Sent {
            to,
            bytes,
            // A sealed note reaches Ferry devices only, which read the whole datagram.
            warning: warning.filter(|_| !security.is_encrypted()),
            security,
        })
    }

    /// Like [`send`](Self::send), to a `"host:port"` resolved with [`resolve`](Self::resolve).
    /// Resolving a host name may wait on DNS; numeric addresses never do.
    pub fn send_to_host(&self, to: &str, text: &str) -> Result<Sent, NotesError> {
        check_note(text)?;
        let addr = self.resolve(to)?;
        self.send(addr, text)
    }

    /// Resolves `"host:port"` to an address this socket can send to: one of its own IP
    /// version, or (from an IPv6 socket) an IPv4 address, which is sent to as IPv4-mapped.
    /// Resolving a host name may wait on DNS; numeric addresses never do.
    pub fn resolve(&self, to: &str) -> Result<SocketAddr, NotesError> {
        self.pick(to, &lookup(to)?)
    }

    /// Of the addresses `to` resolved to (elsewhere, e.g. off the caller's thread), the one
    /// [`resolve`](Self::resolve) would choose.
    pub fn pick(&self, to: &str, addrs: &[SocketAddr]) -> Result<SocketAddr, NotesError> {
        let found = match self.local_addr {
            SocketAddr::V4(_) => addrs.iter().find(|a| a.is_ipv4()),
            SocketAddr::V6(_) => addrs.iter().find(|a| a.is_ipv6()).or_else(|| addrs.first()),
        };
        found.copied().ok_or_else(|| NotesError::NoAddress {
            to: to.to_owned(),
            family: if self.local_addr.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            },
            local: self.local_addr,
        })
    }

    /// Stops the receive thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(recv_thread) = self.recv_thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked recv at once with an empty datagram to ourselves; if that fails,
        // the read timeout wakes it within RECV_POLL_INTERVAL anyway.
        let _ = self.socket.send_to(&[], reachable(self.local_addr));
        if recv_thread.join().is_err() {
            log::error!("notes: the receive thread panicked");
        }
        log::info!("notes: stopped listening on {}", self.local_addr);
    }
}

impl Drop for NotesHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Resolves `"host:port"` to one address, preferring IPv4 (the default notes socket speaks
/// IPv4). Resolving a host name may wait on DNS; numeric addresses never do.
pub fn resolve_peer(to: &str) -> Result<SocketAddr, NotesError> {
    let addrs = lookup(to)?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| NotesError::Resolve {
            to: to.to_owned(),
            error: io::Error::other("no address found"),
        })
}

fn lookup(to: &str) -> Result<Vec<SocketAddr>, NotesError> {
    to.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|error| NotesError::Resolve {
            to: to.to_owned(),
            error,
        })
}

/// An IPv4 target seen from an IPv6 socket becomes IPv4-mapped (dual-stack sockets reach it
/// that way); an IPv4-mapped target seen from an IPv4 socket becomes plain IPv4.
fn fit_family(to: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (to, local) {
        (SocketAddr::V4(v4), SocketAddr::V6(_)) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        (SocketAddr::V6(v6), SocketAddr::V4(_)) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(IpAddr::V4(ip), v6.port()),
            None => to,
        },
        _ => to,
    }
}

/// An address at which a socket bound to `local` receives: the wildcard becomes loopback.
fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_fitted_to_the_socket() {
        let v4: SocketAddr = "192.0.2.7:9".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:9".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let local_v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local_v6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(fit_family(v4, local_v4), v4);
        assert_eq!(fit_family(v4, local_v6), mapped);
        assert_eq!(fit_family(mapped, local_v4), v4);
        assert_eq!(fit_family(v6, local_v4), v6);
        assert_eq!(fit_family(v6, local_v6), v6);
    }

    #[test]
    fn the_wildcard_is_woken_through_loopback() {
        assert_eq!(
            reachable("0.0.0.0:5".parse().unwrap()),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:5".parse().unwrap()),
            "10.1.2.3:5".parse().unwrap()
        );
    }

    #[test]
    fn default_config_is_every_ipv4_interface_on_8080() {
        let config = NotesConfig::default();
        assert_eq!(
            SocketAddr::new(config.bind, config.port),
            "0.0.0.0:8080".parse().unwrap()
        );
    }

    #[test]
    fn resolve_peer_prefers_ipv4_and_explains_bad_input() {
        assert_eq!(
            resolve_peer("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(resolve_peer("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        let err = resolve_peer("no-port-here").unwrap_err().to_string();
        assert!(
            err.contains("no-port-here") && err.contains("HOST:PORT"),
            "{err}"
        );
    }
}
