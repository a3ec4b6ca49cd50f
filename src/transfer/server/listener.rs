//! Accepting connections: each takes a slot, counted in the server's total and against its
//! address, so a few peers can never hold every slot; a peer over a limit is told which.
//! When every slot is taken, the connection that has waited longest for its peer's next
//! frame (at least [`ServerConfig::evict_waiting_after`](super::ServerConfig)) gives its
//! slot to the newcomer: a peer sending one small frame just within each idle timeout
//! cannot hold a slot for ever, while connections that move bytes are never touched.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::connection::serve_connection;
use super::{Shared, lock};
use crate::events::{Event, ServerEvent};
use crate::protocol::{ReceiverMsg, encode_receiver_msg};

/// How many refusals (over the connection bound) may be in flight at once.
const MAX_REFUSALS: usize = 16;

pub(super) fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
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
        next_conn += 1;
        let conn_id = next_conn;
        // Registered before the slot is taken, so an eviction can always shut its socket.
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(conn_id, clone);
        }
        let slot = match Slot::take(shared, peer.ip(), conn_id) {
            Ok(slot) => slot,
            Err(busy) => {
                forget_conn(shared, conn_id);
                refuse(stream, peer, shared, busy);
                continue;
            }
        };
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("ferry-conn-{peer}"))
            .spawn(move || {
                // Declared first, dropped last: the clone goes even if the thread panics,
                // else it would hold the socket open and the peer would wait for ever.
                let _forget = ForgetConn {
                    shared: &conn_shared,
                    conn_id,
                };
                serve_connection(stream, peer, &conn_shared, slot);
            });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // The closure, and with it the slot, was dropped: the slot is free again.
                log::error!("cannot start a thread for {peer}: {e}");
                forget_conn(shared, conn_id);
            }
        }
    }
}

/// Removes a connection's clone (kept so `stop` can shut it) from [`Shared::conns`] when
/// its thread ends, however it ends, and shuts the socket: a connection ends its socket
/// itself, but not when its thread panicked, and another clone (a prompt's watcher) would
/// then keep it open for the peer.
struct ForgetConn<'a> {
    shared: &'a Shared,
    conn_id: u64,
}

impl Drop for ForgetConn<'_> {
    fn drop(&mut self) {
        if let Some(clone) = forget_conn(self.shared, self.conn_id) {
            let _ = clone.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Takes connection `conn_id` out of [`Shared::conns`] and tells a `stop` waiting for the
/// connections to end.
fn forget_conn(shared: &Shared, conn_id: u64) -> Option<TcpStream> {
    let clone = lock(&shared.conns).remove(&conn_id);
    shared.conn_gone.notify_all();
    clone
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
/// address; released when dropped, however the connection ends, or given to a newcomer
/// when it waited too long for its peer while the server was full.
pub(super) struct Slot {
    shared: Arc<Shared>,
    conn_id: u64,
}

/// What the listener knows of a connection's slot (in [`Shared::slots`]). The counts the
/// limits are checked against are those of the slots not evicted.
#[derive(Debug)]
pub(super) struct SlotState {
    ip: IpAddr,
    /// Since when the connection waits for its peer's next frame (`None`: it is busy, or
    /// its peer has good reason to be slow).
    waiting_since: Option<Instant>,
    /// Its slot went to a newcomer (and its socket was shut); it no longer counts.
    evicted: bool,
}

impl Slot {
    fn take(shared: &Arc<Shared>, ip: IpAddr, conn_id: u64) -> Result<Self, Busy> {
        let config = &shared.config;
        // One lock over every slot, so two accepts never both take the last one.
        let mut slots = lock(&shared.slots);
        let counted = |slots: &Slots| slots.values().filter(|state| !state.evicted).count();
        // A peer over its own share is told that first: waiting for others will not help it.
        let mine = slots
            .values()
            .filter(|state| !state.evicted && state.ip == ip)
            .count();
        if mine >= config.max_per_peer {
            return Err(Busy::Peer {
                max_per_peer: config.max_per_peer,
            });
        }
        if counted(&slots) >= config.max_connections && !evict_longest_waiting(shared, &mut slots) {
            return Err(Busy::Server {
                max_connections: config.max_connections,
            });
        }
        let state = SlotState {
            ip,
            waiting_since: None,
            evicted: false,
        };
        slots.insert(conn_id, state);
        Ok(Self {
            shared: Arc::clone(shared),
            conn_id,
        })
    }

    pub(super) fn conn_id(&self) -> u64 {
        self.conn_id
    }
}

/// Every connection's slot state, by connection number.
type Slots = std::collections::HashMap<u64, SlotState>;

/// Says whether connection `conn_id` now waits for its peer's next frame (`true`) or not:
/// only a wait may be cut short to make room.
pub(super) fn set_waiting(shared: &Shared, conn_id: u64, waiting: bool) -> bool {
    match lock(&shared.slots).get_mut(&conn_id) {
        Some(state) => {
            state.waiting_since = waiting.then(Instant::now);
            state.evicted
        }
        None => false,
    }
}

/// How long each write of a connection being ended from outside (evicted, or the server
/// stopping) may take: its last answers.
const LAST_WORDS_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends a connection from outside its thread, but leaves it its last words: only the read
/// side is shut (its thread wakes from the read it waits in, or from the pump, and sees why),
/// so it can still name its held files and send their verdicts and tell a Ferry sender why
/// it ends; every write from now on is short, so a peer that does not read cannot hold the
/// thread for long.
pub(super) fn shut_for_last_words(socket: &std::net::TcpStream) {
    let _ = socket.set_write_timeout(Some(LAST_WORDS_WRITE_TIMEOUT));
    let _ = socket.shutdown(Shutdown::Read);
}

/// Whether connection `conn_id` lost its slot to a newcomer (its socket was shut then).
pub(super) fn was_evicted(shared: &Shared, conn_id: u64) -> bool {
    lock(&shared.slots)
        .get(&conn_id)
        .is_some_and(|state| state.evicted)
}

/// Gives the slot of the connection that has waited longest for its peer, if it waited at
/// least [`ServerConfig::evict_waiting_after`](super::ServerConfig), to a newcomer: it no
/// longer counts, and its socket's read side is shut (its thread ends on the failed read,
/// telling a Ferry sender why). `slots` is
/// the caller's guard of [`Shared::slots`]. Whether one was evicted.
fn evict_longest_waiting(shared: &Shared, slots: &mut Slots) -> bool {
    let now = Instant::now();
    let longest = slots
        .iter_mut()
        .filter(|(_, state)| !state.evicted)
        .filter_map(|(id, state)| Some((*id, now.duration_since(state.waiting_since?), state)))
        .filter(|(_, waited, _)| *waited >= shared.config.evict_waiting_after)
        .max_by_key(|(_, waited, _)| *waited);
    let Some((conn_id, waited, state)) = longest else {
        return false;
    };
    state.evicted = true;
    log::warn!(
        "{}: connection dropped after {:.1} s waiting for its next frame: every slot was \
         taken and another sender needed one",
        state.ip,
        waited.as_secs_f64()
    );
    // Its thread ends at its next wait on the peer (see `Connection::awaiting_peer`).
    if let Some(socket) = lock(&shared.conns).get(&conn_id) {
        shut_for_last_words(socket);
    }
    true
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.shared.slots).remove(&self.conn_id);
    }
}

/// Over a connection limit: say which (a Ferry peer reads it, a plain peer sees the close)
/// and close, on a short-lived thread so the listener never waits.
fn refuse(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, busy: Busy) {
    let reason = busy.to_string();
    log::warn!("refused {peer}: {reason}");
    // Never blocks the accept loop on a slow consumer: under a flood of refusals some
    // reports may be dropped, never the listener's progress.
    shared
        .sink
        .emit_lossy(Event::Server(ServerEvent::ConnectionError {
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
            if let Ok(frame) = encode_receiver_msg(&ReceiverMsg::Decline {
                reason,
                offer_again: false,
            }) {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(&frame);
            }
            let _ = stream.shutdown(Shutdown::Write);
            // Read what the peer already sent so the close is a FIN, not a reset that could
            // destroy our answer before the peer reads it.
            // At most a second and a megabyte: a peer trickling bytes cannot keep this
            // thread (one of a few) alive.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
            let until = std::time::Instant::now() + Duration::from_secs(1);
            let mut sink = [0u8; 16 * 1024];
            let mut drained = 0;
            while drained < 1024 * 1024 && std::time::Instant::now() < until {
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
