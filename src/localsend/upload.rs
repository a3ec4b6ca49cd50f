//! Uploads: each file of the session (see [`super::session`]) has its body streamed
//! (chunked or not) through a [`PartFile`] into the download folder (or the session's folder
//! it names: see [`super::disk`]), committed only when exactly the announced size arrived.
//! Every file-system call (making folders, creating the `.part`, writing, fsync, naming)
//! runs on tokio's blocking pool, never on the runtime's thread.
//!
//! Each upload runs as a task of its own, not inside its connection's future, and a guard
//! ([`Receiving`]) ends it however it ends: the file stops "receiving", the session ends
//! with its last file, and the row gets exactly one final event (finished; failed, with
//! `Stopped` when the server stops; or cancelled here or by the sender, as the session
//! says). A file whose row ended never becomes visible under its final name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::disk::{self, CHUNKS_IN_FLIGHT};
use super::server::{Reply, Shared, lock, query, reply, stopped};
use super::session::{Ended, FileState, Session, current_session, end_session};
use super::wire::ValidFile;
use crate::events::{
    Direction, Failure, FailureKind, ProgressThrottle, TransferEvent, TransferId, next_transfer_id,
};
use crate::protocol::Mode;
use crate::protocol::session::Refusal;
use crate::transfer::{Landing, PartFile, RateFloor};

/// `POST /cancel?sessionId`: only from the address that prepared it.
pub(super) fn cancel(request: &Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Reply {
    let params = query(request);
    let Some(session_id) = params.get("sessionId") else {
        return reply(StatusCode::BAD_REQUEST, "missing sessionId");
    };
    match current_session(shared, session_id) {
        Some(session) if session.peer == peer.ip() => {
            end_session(shared, &session, Ended::BySender);
            reply(StatusCode::OK, "")
        }
        _ => reply(StatusCode::FORBIDDEN, "no such session from this address"),
    }
}

/// `POST /upload?sessionId&fileId&token`: the file's bytes, taken by a task of its own so
/// the upload ends its own way (and says so) however its connection ends: hyper drops a
/// request whose sender closes its side right after the last byte (it takes that for a
/// broken connection), and a stopping server cuts connections after a grace period. The
/// bytes the body already holds are still taken.
pub(super) async fn upload(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Reply {
    match tokio::spawn(take_upload(request, peer, shared)).await {
        Ok(answer) => answer,
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the upload stopped: {e}"),
        ),
    }
}

async fn take_upload(request: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> Reply {
    let params = query(&request);
    let (Some(session_id), Some(file_id), Some(token)) = (
        params.get("sessionId"),
        params.get("fileId"),
        params.get("token"),
    ) else {
        return reply(StatusCode::BAD_REQUEST, "missing parameters");
    };
    let Some(session) = current_session(&shared, session_id) else {
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
    let receiving = Receiving::new(&shared, session, &file.id);
    let mut body = request.into_body();
    match receive(&mut body, peer, &receiving, &file).await {
        Ok(()) => {
            receiving.settle();
            reply(StatusCode::OK, "")
        }
        Err((status, unfinished)) => {
            let message = unfinished.message();
            // The row ends (and the session frees) first; the sender's answer after.
            receiving.fail(unfinished);
            drain(&mut body).await;
            reply(status, &message)
        }
    }
}

/// One file being received, from its `Receiving` mark on. However its upload ends (answered,
/// or its task dropped: the runtime shut down while it still ran) the file stops receiving,
/// the session ends when it was its last file, and its row gets one final event: the one
/// the upload reported, or `Stopped` / interrupted when it reported none (a row must never
/// stay active, nor a file "receiving": the session would never go stale, and every later
/// sender would get 409).
struct Receiving {
    shared: Arc<Shared>,
    session: Arc<Session>,
    file_id: String,
    id: TransferId,
    /// Whether the row's final event went out (a commit claims it before it starts).
    reported: Arc<AtomicBool>,
    settled: AtomicBool,
}

impl Receiving {
    fn new(shared: &Arc<Shared>, session: Arc<Session>, file_id: &str) -> Self {
        session.touch();
        let id = next_transfer_id();
        lock(&shared.live).insert(id, Arc::clone(&session));
        Self {
            shared: Arc::clone(shared),
            session,
            file_id: file_id.to_owned(),
            id,
            reported: Arc::new(AtomicBool::new(false)),
            settled: AtomicBool::new(false),
        }
    }

    /// The file is done with (once): not cancellable any more, not receiving; the session
    /// ends if this was its last file.
    fn settle(&self) {
        if self.settled.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.shared.live).remove(&self.id);
        if let Some(entry) = lock(&self.session.files).get_mut(&self.file_id) {
            entry.state = FileState::Done;
        }
        self.session.touch();
        if self.session.all_done() {
            end_session(&self.shared, &self.session, Ended::Complete);
        }
    }

    /// Settles the file, then ends its row as `unfinished` unless it ended already.
    fn fail(&self, unfinished: Unfinished) {
        self.settle();
        if !self.reported.swap(true, Ordering::SeqCst) {
            let id = self.id;
            self.shared.sink.transfer(match unfinished {
                Unfinished::Failed(failure) => TransferEvent::Failed { id, failure },
                Unfinished::Cancelled { by_peer } => TransferEvent::Cancelled { id, by_peer },
            });
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let failure = if *self.shared.stop.borrow() {
            Failure::new(FailureKind::Stopped, "the receiver stopped")
        } else {
            Failure::new(
                FailureKind::Interrupted { kept_bytes: None },
                "the upload ended before its file was saved",
            )
        };
        self.fail(Unfinished::Failed(failure));
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

/// How an upload whose file was not saved ends its row.
enum Unfinished {
    Failed(Failure),
    /// On purpose: by this side's user, or (`by_peer`) by the sender.
    Cancelled {
        by_peer: bool,
    },
}

impl Unfinished {
    /// What the sender is told.
    fn message(&self) -> String {
        match self {
            Unfinished::Failed(failure) => failure.to_string(),
            Unfinished::Cancelled { by_peer: false } => "cancelled by the receiver".to_owned(),
            Unfinished::Cancelled { by_peer: true } => "cancelled by the sender".to_owned(),
        }
    }
}

type Failed = (StatusCode, Unfinished);

fn failed(status: StatusCode, kind: FailureKind, detail: impl Into<String>) -> Failed {
    (status, Unfinished::Failed(Failure::new(kind, detail)))
}

/// How an upload of a session that ended for `why` ends (403 to its sender).
fn session_ended(why: Ended) -> Failed {
    let status = StatusCode::FORBIDDEN;
    match why {
        Ended::Here => (status, Unfinished::Cancelled { by_peer: false }),
        Ended::BySender => (status, Unfinished::Cancelled { by_peer: true }),
        // Neither ends a session while one of its files is receiving; but should it:
        Ended::Quiet | Ended::Complete => failed(
            status,
            FailureKind::Interrupted { kept_bytes: None },
            "the session ended",
        ),
    }
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
    receiving: &Receiving,
    file: &ValidFile,
) -> Result<(), Failed> {
    let (shared, session, id) = (&receiving.shared, &receiving.session, receiving.id);
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
    let (size, landing) = (
        file.size,
        Landing::new(dir.fsync(), shared.config.direct_io),
    );
    let writer =
        tokio::task::spawn_blocking(move || disk::write_chunks(part, to_write, size, landing));
    let streamed = stream_body(body, shared, session, file, id, chunks).await;
    // The channel is closed (dropped with `chunks`): the writer ends after what it holds.
    let (part, written) = writer.await.map_err(disk_error)?;
    let done = match (streamed, written) {
        (_, Err(e)) => Err(disk_error(e)),
        (Err(failure), Ok(())) => Err(failure),
        (Ok(done), Ok(())) if done != file.size => Err(failed(
            StatusCode::BAD_REQUEST,
            FailureKind::Interrupted { kept_bytes: None },
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
    // The commit and its row's end go together on the pool, so an upload dropped meanwhile
    // cannot leave a saved file with a failed row; one dropped before leaves the part there
    // to be removed.
    let in_folder = !file.folders.is_empty();
    let (reported, sink) = (Arc::clone(&receiving.reported), shared.sink.clone());
    blocking(move || {
        if reported.swap(true, Ordering::SeqCst) {
            return Err("the upload had ended".to_owned());
        }
        match disk::commit(part, &dir, in_folder) {
            Ok(path) => {
                sink.transfer(TransferEvent::Progress {
                    id,
                    bytes_done: done,
                });
                sink.transfer(TransferEvent::Finished {
                    id,
                    verified: false,
                    saved_as: Some(shown),
                    path: Some(path),
                });
                Ok(())
            }
            Err(e) => {
                let failure = Failure::new(FailureKind::Disk, e.to_string());
                sink.transfer(TransferEvent::Failed { id, failure });
                Err(e.to_string())
            }
        }
    })
    .await?
    .map_err(disk_error)
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
    let mut rate = RateFloor::new(shared.config.min_rate, 0);
    let mut stop = shared.stop.clone();
    let idle = shared.config.idle_timeout;
    // Enabled before the first check: a session ended in between is not missed.
    let ending = session.ending();
    tokio::pin!(ending);
    ending.as_mut().enable();
    loop {
        if let Some(why) = session.ended() {
            return Err(session_ended(why));
        }
        let held_back = throttle.held_back_until();
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame,
            () = &mut ending => continue, // the check above says why
            _ = stopped(&mut stop) => {
                return Err(failed(StatusCode::SERVICE_UNAVAILABLE, FailureKind::Stopped, "the receiver stopped"));
            }
            // The sender paused right after a figure the throttle held back: it shows once
            // it may (the idle wait starts again, once per pause).
            () = sleep_until(held_back), if held_back.is_some() => {
                throttle.catch_up(&shared.sink, id);
                continue;
            }
        };
        let frame = match frame {
            Err(_) => {
                return Err(failed(
                    StatusCode::REQUEST_TIMEOUT,
                    FailureKind::Interrupted { kept_bytes: None },
                    format!("no data for {} s", idle.as_secs()),
                ));
            }
            Ok(None) => return Ok(done),
            Ok(Some(Err(e))) => {
                return Err(failed(
                    StatusCode::BAD_REQUEST,
                    FailureKind::Interrupted { kept_bytes: None },
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
        // A stalled disk holds the body back, never the stop.
        let sent = tokio::select! {
            sent = chunks.send(data) => sent,
            _ = stopped(&mut stop) => {
                return Err(failed(StatusCode::SERVICE_UNAVAILABLE, FailureKind::Stopped, "the receiver stopped"));
            }
        };
        if sent.is_err() {
            // The writer stopped on an error: the caller reports it.
            return Ok(done);
        }
        done = new_total;
        if let Err(too_slow) = rate.check(done) {
            return Err(failed(
                StatusCode::REQUEST_TIMEOUT,
                FailureKind::Interrupted { kept_bytes: None },
                too_slow.to_string(),
            ));
        }
        session.touch();
        throttle.report(&shared.sink, id, done);
    }
}

/// Sleeps until `at` (at once when it is `None`, which the caller rules out).
async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, event_channel};
    use crate::localsend::identity::CertIdentity;
    use crate::localsend::server::LocalSendConfig;
    use crate::localsend::session::Slot;

    /// A receiver's shared state (no listener) holding a session of one file `a` that is
    /// receiving, as an upload leaves it before its guard is made.
    fn receiving_session(
        dir: &std::path::Path,
    ) -> (
        Arc<Shared>,
        tokio::sync::watch::Sender<bool>,
        crossbeam_channel::Receiver<Event>,
        Arc<Session>,
    ) {
        let identity = CertIdentity::generate().unwrap();
        let config = LocalSendConfig::new(dir.to_owned(), "test", identity);
        let downloads = crate::transfer::Downloads::open(dir, false).unwrap();
        let body = br#"{"info": {"alias": "p", "version": "2.1", "fingerprint": "f"},
            "files": {"a": {"id": "a", "fileName": "a.bin", "size": 3, "fileType": "x"}}}"#;
        let (info, offer) = super::super::wire::validate_prepare(body).unwrap();
        let super::super::wire::ValidOffer::Files { files, .. } = offer else {
            panic!("not files");
        };
        let (sink, events) = event_channel(None);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let own = super::super::listener::OwnAddress::default();
        let shared = Arc::new(Shared::new(
            config,
            sink,
            downloads.clone(),
            info,
            stop_rx,
            own,
        ));
        let security = crate::events::Security::Plain;
        let reservation = downloads.reserve(0).unwrap();
        let session = Arc::new(Session::new(
            "127.0.0.1".parse().unwrap(),
            security,
            files,
            reservation,
            downloads,
        ));
        *lock(&shared.slot) = Slot::Active(Arc::clone(&session));
        if let Some(entry) = lock(&session.files).get_mut("a") {
            entry.state = FileState::Receiving;
        }
        (shared, stop, events, session)
    }

    /// An upload dropped before it reported (its task dropped when the runtime shut down)
    /// still ends its row, with `Stopped` when the server stopped, and its file: the session
    /// of one file ends and frees the slot, nothing stays cancellable.
    #[test]
    fn an_upload_dropped_unreported_ends_its_row_and_frees_the_session() {
        for stopping in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let (shared, stop, events, session) = receiving_session(tmp.path());
            stop.send_replace(stopping);
            let guard = Receiving::new(&shared, Arc::clone(&session), "a");
            let id = guard.id;
            assert_eq!(lock(&shared.live).len(), 1);
            drop(guard);
            let kind = match events.try_recv() {
                Ok(Event::Transfer(TransferEvent::Failed { id: row, failure })) if row == id => {
                    failure.kind
                }
                other => panic!("no failed row: {other:?}"),
            };
            let expected = match stopping {
                true => FailureKind::Stopped,
                false => FailureKind::Interrupted { kept_bytes: None },
            };
            assert_eq!(kind, expected);
            assert!(events.try_recv().is_err(), "one final event");
            assert!(matches!(*lock(&shared.slot), Slot::Free));
            assert!(session.ended().is_some());
            assert!(lock(&shared.live).is_empty());
        }
    }
}
