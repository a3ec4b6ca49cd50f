//! Sessions and uploads: the one session a LocalSend receiver holds at a time, and each
//! file's body streamed (chunked or not) through a [`PartFile`] into the download folder
//! (or the session's folder it names: see [`super::disk`]), committed only when exactly the
//! announced size arrived. Every file-system call (making folders, creating the `.part`,
//! writing, fsync, naming) runs on tokio's blocking pool, never on the runtime's thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::Notify;

use super::disk::{self, CHUNKS_IN_FLIGHT, Tree};
use super::server::{Reply, Shared, lock, query, reply, stopped};
use super::wire::ValidFile;
use crate::events::{
    Direction, Failure, FailureKind, ProgressThrottle, Security, TransferEvent, TransferId,
    next_transfer_id,
};
use crate::protocol::Mode;
use crate::protocol::session::Refusal;
use crate::transfer::{Downloads, PartFile, Reservation};

/// The receiver's one session.
pub(super) enum Slot {
    Free,
    /// A prepare-upload is being read or asked about (`claim` number).
    Claimed(u64),
    Active(Arc<Session>),
}

/// A claimed slot: freed when dropped unless [`Claim::activate`]d.
pub(super) struct Claim<'a> {
    shared: &'a Shared,
    number: u64,
}

impl Claim<'_> {
    pub(super) fn activate(self, session: Arc<Session>) {
        let mut slot = lock(&self.shared.slot);
        if matches!(*slot, Slot::Claimed(n) if n == self.number) {
            *slot = Slot::Active(session);
        }
        drop(slot);
        std::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut slot = lock(&self.shared.slot);
        if matches!(*slot, Slot::Claimed(n) if n == self.number) {
            *slot = Slot::Free;
        }
    }
}

/// Takes the slot if it is free, or held by a session that went quiet (nothing uploading
/// and no request for the idle timeout); `None` when another session holds it.
pub(super) fn claim_slot(shared: &Shared) -> Option<Claim<'_>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut slot = lock(&shared.slot);
    let free = match &*slot {
        Slot::Free => true,
        Slot::Claimed(_) => false,
        Slot::Active(session) => session.is_stale(shared.config.idle_timeout),
    };
    if !free {
        return None;
    }
    if let Slot::Active(session) = &*slot {
        session.cancel();
    }
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    *slot = Slot::Claimed(number);
    Some(Claim { shared, number })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Waiting,
    Receiving,
    Done,
}

struct SessionFile {
    file: ValidFile,
    token: String,
    state: FileState,
}

/// An accepted prepare-upload.
pub(super) struct Session {
    pub(super) id: String,
    peer: IpAddr,
    security: Security,
    files: Mutex<HashMap<String, SessionFile>>,
    cancelled: AtomicBool,
    wake: Notify,
    last_activity: Mutex<Instant>,
    /// The free space promised to this session's files; released when it ends.
    reservation: Mutex<Option<Reservation>>,
    /// The folders its files named (locked on the blocking pool only).
    tree: Arc<Mutex<Tree>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The last upload is over: its folders are opened to others (a few fchmods).
        lock(&self.tree).finish();
    }
}

/// A random hex string of 16 bytes (session ids and tokens: unguessable).
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy: a token that no sender can match (an empty query value never equals it).
        return "\u{0}unavailable".to_owned();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Session {
    pub(super) fn new(
        peer: IpAddr,
        security: Security,
        files: Vec<ValidFile>,
        reservation: Reservation,
        downloads: Downloads,
    ) -> Self {
        let files = files
            .into_iter()
            .map(|file| {
                (
                    file.id.clone(),
                    SessionFile {
                        file,
                        token: random_hex(),
                        state: FileState::Waiting,
                    },
                )
            })
            .collect();
        Self {
            id: random_hex(),
            peer,
            security,
            files: Mutex::new(files),
            cancelled: AtomicBool::new(false),
            wake: Notify::new(),
            last_activity: Mutex::new(Instant::now()),
            reservation: Mutex::new(Some(reservation)),
            tree: Arc::new(Mutex::new(Tree::new(downloads))),
        }
    }

    pub(super) fn tokens(&self) -> HashMap<String, String> {
        lock(&self.files)
            .iter()
            .map(|(id, f)| (id.clone(), f.token.clone()))
            .collect()
    }

    fn is_stale(&self, idle: std::time::Duration) -> bool {
        self.cancelled.load(Ordering::SeqCst)
            || (!lock(&self.files)
                .values()
                .any(|f| f.state == FileState::Receiving)
                && lock(&self.last_activity).elapsed() >= idle)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        lock(&self.reservation).take();
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Every file received or failed.
    fn all_done(&self) -> bool {
        lock(&self.files)
            .values()
            .all(|f| f.state == FileState::Done)
    }
}

/// Ends `session`: uploads in flight stop, later requests get 403, the slot is free.
pub(super) fn end_session(shared: &Shared, session: &Arc<Session>) {
    session.cancel();
    let mut slot = lock(&shared.slot);
    if matches!(&*slot, Slot::Active(s) if Arc::ptr_eq(s, session)) {
        *slot = Slot::Free;
    }
}

fn current_session(shared: &Shared, session_id: &str) -> Option<Arc<Session>> {
    match &*lock(&shared.slot) {
        Slot::Active(session)
            if session.id == session_id && !session.cancelled.load(Ordering::SeqCst) =>
        {
            Some(Arc::clone(session))
        }
        _ => None,
    }
}

/// `POST /cancel?sessionId`: only from the address that prepared it.
pub(super) fn cancel(request: &Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Reply {
    let params = query(request);
    let Some(session_id) = params.get("sessionId") else {
        return reply(StatusCode::BAD_REQUEST, "missing sessionId");
    };
    match current_session(shared, session_id) {
        Some(session) if session.peer == peer.ip() => {
            end_session(shared, &session);
            reply(StatusCode::OK, "")
        }
        _ => reply(StatusCode::FORBIDDEN, "no such session from this address"),
    }
}

/// `POST /upload?sessionId&fileId&token`: the file's bytes.
pub(super) async fn upload(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Reply {
    let params = query(&request);
    let (Some(session_id), Some(file_id), Some(token)) = (
        params.get("sessionId"),
        params.get("fileId"),
        params.get("token"),
    ) else {
        return reply(StatusCode::BAD_REQUEST, "missing parameters");
    };
    let Some(session) = current_session(shared, session_id) else {
        return reply(StatusCode::FORBIDDEN, "no such session");
    };
    if session.peer != peer.ip() {
        return reply(StatusCode::FORBIDDEN, "wrong address for this session");
    }
    let file = {
        let mut files = lock(&session.files);
        let Some(entry) = files.get_mut(file_id.as_str()) else {
            return reply(StatusCode::FORBIDDEN, "no such file in this session");
        };
        if !tokens_match(&entry.token, token) {
            return reply(StatusCode::FORBIDDEN, "wrong token");
        }
        if entry.state != FileState::Waiting {
            return reply(StatusCode::CONFLICT, "this file was already sent");
        }
        entry.state = FileState::Receiving;
        entry.file.clone()
    };
    session.touch();
    let id = next_transfer_id();
    lock(&shared.live).insert(id, Arc::clone(&session));
    let mut body = request.into_body();
    let result = receive(&mut body, peer, shared, &session, &file, id).await;
    if result.is_err() {
        drain(&mut body).await;
    }
    lock(&shared.live).remove(&id);
    if let Some(entry) = lock(&session.files).get_mut(&file.id) {
        entry.state = FileState::Done;
    }
    session.touch();
    if session.all_done() {
        end_session(shared, &session);
    }
    match result {
        Ok(()) => reply(StatusCode::OK, ""),
        Err((status, failure)) => {
            let message = failure.to_string();
            shared.sink.transfer(TransferEvent::Failed { id, failure });
            reply(status, &message)
        }
    }
}

/// Reads (and drops) what is left of a refused body, briefly and boundedly, so the sender
/// is not cut off mid-write and sees the answer rather than a reset connection.
async fn drain(body: &mut Incoming) {
    const MAX_DRAIN_BYTES: usize = 1024 * 1024;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > MAX_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn tokens_match(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

type Failed = (StatusCode, Failure);

fn failed(status: StatusCode, kind: FailureKind, detail: impl Into<String>) -> Failed {
    (status, Failure::new(kind, detail))
}

/// Runs `work` on the blocking pool (file-system calls never stall the runtime's thread).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failed> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            FailureKind::Disk,
            format!("the disk work stopped: {e}"),
        )
    })
}

fn disk_error(e: impl ToString) -> Failed {
    failed(
        StatusCode::INTERNAL_SERVER_ERROR,
        FailureKind::Disk,
        e.to_string(),
    )
}

/// Streams the body into a part file (in its folder, made as needed) and commits it when
/// exactly `file.size` arrived.
async fn receive(
    body: &mut Incoming,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    session: &Session,
    file: &ValidFile,
    id: TransferId,
) -> Result<(), Failed> {
    let tree = Arc::clone(&session.tree);
    let (folders, safe) = (file.folders.clone(), file.safe.clone());
    let created = blocking(move || {
        let (dir, shown) = lock(&tree).folder_for(&folders)?;
        let part = PartFile::create(&dir, &safe, None).map_err(|e| e.to_string())?;
        let shown = format!("{shown}{}", part.final_name());
        Ok::<_, String>((dir, part, shown))
    })
    .await?;
    let (dir, part, shown) = created.map_err(|e| {
        failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            FailureKind::Refused(Refusal::CannotCreate),
            e,
        )
    })?;
    shared.sink.transfer(TransferEvent::Started {
        id,
        direction: Direction::Incoming,
        peer,
        name: file.offered.clone(),
        saved_as: (shown != file.offered).then(|| shown.clone()),
        bytes_total: file.size,
        mode: Mode::Plain,
        msg: String::new(),
        security: session.security.clone(),
    });
    // The writer takes the chunks on the blocking pool; a full channel holds the body back.
    let (chunks, to_write) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || disk::write_chunks(part, to_write));
    let streamed = stream_body(body, shared, session, file, id, chunks).await;
    // The channel is closed (dropped with `chunks`): the writer ends after what it holds.
    let (part, written) = writer.await.map_err(disk_error)?;
    let done = match (streamed, written) {
        (_, Err(e)) => Err(disk_error(e)),
        (Err(failure), Ok(())) => Err(failure),
        (Ok(done), Ok(())) if done != file.size => Err(failed(
            StatusCode::BAD_REQUEST,
            FailureKind::Interrupted {
                kept_bytes: Some(0),
            },
            format!("{done} of {} bytes arrived", file.size),
        )),
        (Ok(done), Ok(())) => Ok(done),
    };
    let done = match done {
        Ok(done) => done,
        Err(failure) => {
            // Dropping the part removes the `.part`: on the pool too, and before answering.
            blocking(move || drop(part)).await?;
            return Err(failure);
        }
    };
    let in_folder = !file.folders.is_empty();
    let path = blocking(move || disk::commit(part, &dir, in_folder))
        .await?
        .map_err(disk_error)?;
    shared.sink.transfer(TransferEvent::Progress {
        id,
        bytes_done: done,
    });
    shared.sink.transfer(TransferEvent::Finished {
        id,
        verified: false,
        saved_as: Some(shown),
        path: Some(path),
    });
    Ok(())
}

/// Hands the body's chunks to the writer until the body ends; the bytes that arrived.
async fn stream_body(
    body: &mut Incoming,
    shared: &Arc<Shared>,
    session: &Session,
    file: &ValidFile,
    id: TransferId,
    chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> Result<u64, Failed> {
    let mut done = 0u64;
    let mut throttle = ProgressThrottle::default();
    let mut stop = shared.stop.clone();
    let idle = shared.config.idle_timeout;
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame,
            _ = session.wake.notified() => {
                return Err(failed(StatusCode::FORBIDDEN, FailureKind::SenderGaveUp, "the session was cancelled"));
            }
            _ = stopped(&mut stop) => {
                return Err(failed(StatusCode::SERVICE_UNAVAILABLE, FailureKind::Stopped, "the receiver stopped"));
            }
        };
        if session.cancelled.load(Ordering::SeqCst) {
            return Err(failed(
                StatusCode::FORBIDDEN,
                FailureKind::SenderGaveUp,
                "the session was cancelled",
            ));
        }
        let frame = match frame {
            Err(_) => {
                return Err(failed(
                    StatusCode::REQUEST_TIMEOUT,
                    FailureKind::Interrupted {
                        kept_bytes: Some(0),
                    },
                    format!("no data for {} s", idle.as_secs()),
                ));
            }
            Ok(None) => return Ok(done),
            Ok(Some(Err(e))) => {
                return Err(failed(
                    StatusCode::BAD_REQUEST,
                    FailureKind::Interrupted {
                        kept_bytes: Some(0),
                    },
                    e.to_string(),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we keep
        };
        let new_total = done.saturating_add(data.len() as u64);
        if new_total > file.size {
            return Err(failed(
                StatusCode::BAD_REQUEST,
                FailureKind::Protocol,
                format!("more data than the {} bytes announced", file.size),
            ));
        }
        if chunks.send(data).await.is_err() {
            // The writer stopped on an error: the caller reports it.
            return Ok(done);
        }
        done = new_total;
        session.touch();
        throttle.report(&shared.sink, id, done);
    }
}
