//! The LocalSend receiver's one session: the slot a prepare-upload claims (asking
//! included) and an accepted session holds until every file arrived or failed, its sender
//! cancels it, the user cancels one of its files, or it goes quiet and the next sender takes
//! its place; and what a session knows of each of its files (token, state).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::disk::Tree;
use super::server::{Shared, lock};
use super::wire::ValidFile;
use crate::events::Security;
use crate::transfer::{Downloads, Reservation};

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
        session.end(Ended::Quiet);
    }
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    *slot = Slot::Claimed(number);
    Some(Claim { shared, number })
}

/// Why a session ended; the first reason given is its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// This side's user cancelled one of its files ([`super::LocalSendServer::cancel`]).
    Here,
    /// Its sender said `POST /cancel`.
    BySender,
    /// It went quiet and the next sender took its place.
    Quiet,
    /// Every file arrived or failed.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    Waiting,
    Receiving,
    Done,
}

pub(super) struct SessionFile {
    pub(super) file: ValidFile,
    pub(super) token: String,
    pub(super) state: FileState,
}

/// An accepted prepare-upload.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) peer: IpAddr,
    pub(super) security: Security,
    pub(super) files: Mutex<HashMap<String, SessionFile>>,
    ended: OnceLock<Ended>,
    wake: Notify,
    last_activity: Mutex<Instant>,
    /// The free space promised to this session's files; released when it ends.
    reservation: Mutex<Option<Reservation>>,
    /// The folders its files named (locked on the blocking pool only).
    pub(super) tree: Arc<Mutex<Tree>>,
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
    crate::secure::hex(&bytes)
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
            ended: OnceLock::new(),
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
        self.ended().is_some()
            || (!lock(&self.files)
                .values()
                .any(|f| f.state == FileState::Receiving)
                && lock(&self.last_activity).elapsed() >= idle)
    }

    /// Ends the session (a session ended before keeps its first reason): uploads in flight
    /// are woken (see [`Session::ending`]), its free space is given back.
    fn end(&self, why: Ended) {
        let _ = self.ended.set(why);
        self.wake.notify_waiters();
        lock(&self.reservation).take();
    }

    /// Why the session ended, if it did.
    pub(super) fn ended(&self) -> Option<Ended> {
        self.ended.get().copied()
    }

    /// Resolves when the session ends after this call (enable it before checking
    /// [`Session::ended`], so an end in between is not missed).
    pub(super) fn ending(&self) -> Notified<'_> {
        self.wake.notified()
    }

    pub(super) fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Every file received or failed.
    pub(super) fn all_done(&self) -> bool {
        lock(&self.files)
            .values()
            .all(|f| f.state == FileState::Done)
    }
}

/// Ends `session` for `why`: uploads in flight stop, later requests get 403, the slot is free.
pub(super) fn end_session(shared: &Shared, session: &Arc<Session>, why: Ended) {
    session.end(why);
    let mut slot = lock(&shared.slot);
    if matches!(&*slot, Slot::Active(s) if Arc::ptr_eq(s, session)) {
        *slot = Slot::Free;
    }
}

pub(super) fn current_session(shared: &Shared, session_id: &str) -> Option<Arc<Session>> {
    match &*lock(&shared.slot) {
        Slot::Active(session) if session.id == session_id && session.ended().is_none() => {
            Some(Arc::clone(session))
        }
        _ => None,
    }
}
