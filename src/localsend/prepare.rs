//! `prepare-upload`: the PIN (with its try limit), the body read within a deadline and a
//! memory budget shared by all bodies being read, the one-session rule, validation, a
//! text message turned into a note, the free-space check, and the accept policy, asking
//! the user like the Ferry server does (answers come through
//! [`super::LocalSendServer::answer`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::server::{MAX_JSON_BYTES, Reply, Shared, json_reply, lock, query, reply, stopped};
use super::session::Session;
use super::wire::{self, DeviceInfo, PrepareResponse, ValidOffer};
use super::{MAX_PIN_TRIES, PIN_LOCKOUT_SECS};
use crate::events::{Event, NoteEvent, PendingOffer, Security, ServerEvent, next_offer_id};
use crate::transfer::Decision;

/// Addresses whose PIN tries are remembered; more and the memory starts over.
const MAX_PIN_ENTRIES: usize = 1024;

/// What the LocalSend sender is, for prompts and rows.
/// `encrypted`: this receiver speaks HTTPS (always, but in tests).
pub(super) fn security_of(info: &DeviceInfo, client: Option<&str>, encrypted: bool) -> Security {
    Security::LocalSend {
        alias: info.label(),
        device_type: info.kind().to_owned(),
        // Only a certificate proves a fingerprint; a body's claim is not shown as one.
        fingerprint: client.unwrap_or("").to_owned(),
        encrypted,
    }
}

/// How long a prepare-upload body may take to arrive at most (it is at most a few MiB of
/// JSON; the Ferry server holds a frame to the same 10 s).
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes of prepare-upload JSON all the bodies being read may hold at once beyond the first
/// [`FREE_JSON_BYTES`] of each: without it, every connection (64) could hold an 8 MiB body
/// and its parse at once, half a gigabyte and more that any LAN host could make the
/// receiver hold.
pub(super) const JSON_BUDGET_BYTES: usize = 24 * 1024 * 1024;
/// The first bytes of every body, outside the budget: a usual offer (hundreds of files) is
/// never refused because of others' large ones.
const FREE_JSON_BYTES: usize = 64 * 1024;
/// The budget's unit (its semaphore counts KiB).
const BUDGET_UNIT: usize = 1024;

/// A semaphore of [`JSON_BUDGET_BYTES`] (in [`BUDGET_UNIT`]s) for [`read_json`].
pub(super) fn json_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(JSON_BUDGET_BYTES / BUDGET_UNIT))
}

/// Reads a prepare-upload body of at most [`MAX_JSON_BYTES`] within `deadline`, its bytes
/// beyond [`FREE_JSON_BYTES`] counted against the receiver's budget as they arrive (held
/// until the permit returned is dropped); 503 when others' bodies have spent it. The same
/// answers as [`super::server::read_body`] otherwise.
async fn read_json(
    request: Request<Incoming>,
    budget: &Arc<Semaphore>,
    deadline: Duration,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Reply> {
    let mut body = request.into_body();
    let read = async {
        let mut bytes = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| reply(StatusCode::BAD_REQUEST, &format!("body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let total = bytes.len().saturating_add(data.len());
            if total > MAX_JSON_BYTES {
                return Err(reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("body larger than {MAX_JSON_BYTES} bytes"),
                ));
            }
            let counted = total.saturating_sub(FREE_JSON_BYTES).div_ceil(BUDGET_UNIT);
            let have = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
            if counted > have {
                let more = u32::try_from(counted - have).unwrap_or(u32::MAX);
                let Ok(permit) = Arc::clone(budget).try_acquire_many_owned(more) else {
                    return Err(reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many large offers at once, try again",
                    ));
                };
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            bytes.extend_from_slice(&data);
        }
        Ok((Bytes::from(bytes), held))
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(read) => read,
        Err(_) => Err(reply(StatusCode::REQUEST_TIMEOUT, "body too slow")),
    }
}

pub(super) async fn prepare(
    request: Request<Incoming>,
    peer: SocketAddr,
    client: Option<String>,
    shared: &Arc<Shared>,
) -> Reply {
    if let Some(refused) = check_pin(shared, peer.ip(), query(&request).get("pin")) {
        return refused;
    }
    // The body first, within the frame deadline: a sender trickling it must not hold the one
    // session slot (every other sender would get 409 meanwhile).
    let deadline = shared.config.idle_timeout.min(BODY_DEADLINE);
    let (body, budget) = match read_json(request, &shared.json_budget, deadline).await {
        Ok(read) => read,
        Err(reply) => return reply,
    };
    let validated = wire::validate_prepare(&body);
    // The raw body goes now, and its share of the budget with it (not held while asking).
    drop((body, budget));
    let (info, offer) = match validated {
        Ok(valid) => valid,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let encrypted = shared.config.protocol.is_encrypted();
    let security = security_of(&info, client.as_deref(), encrypted);
    let policy = *lock(&shared.policy);
    let Some(without_asking) = policy.without_asking(false) else {
        return reply(
            StatusCode::FORBIDDEN,
            "this device accepts trusted Ferry devices only",
        );
    };
    let (files, bytes) = match offer {
        ValidOffer::Text { text } => {
            // Never waits for a slow window: a flood of texts is dropped, not queued.
            let note = Event::Note(NoteEvent::Received {
                from: peer,
                text,
                at: SystemTime::now(),
                security,
            });
            if shared.sink.try_emit(note).is_err() {
                log::warn!("{peer}: LocalSend text dropped: the window is not keeping up");
                return reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many messages, try later",
                );
            }
            return reply(StatusCode::NO_CONTENT, "");
        }
        ValidOffer::Files { files, bytes } => (files, bytes),
    };
    // One session at a time: held from here (asking included) until it ends.
    let Some(claim) = super::session::claim_slot(shared) else {
        return reply(StatusCode::CONFLICT, "blocked by another session");
    };
    let reservation = match shared.downloads.reserve(bytes) {
        Ok(reservation) => reservation,
        Err(no_room) => {
            return reply(
                StatusCode::INSUFFICIENT_STORAGE,
                &format!(
                    "not enough free space: {} bytes needed, {} available",
                    no_room.needed, no_room.available
                ),
            );
        }
    };
    if !without_asking {
        let offer = PendingOffer {
            offer_id: next_offer_id(),
            peer,
            count: files.len() as u64,
            bytes,
            names: files.iter().map(|f| f.relative()).collect(),
            sizes: files.iter().map(|f| f.size).collect(),
            msg: String::new(),
            security: security.clone(),
            // LocalSend has no folder offers: its folders are paths in the names.
            folder: None,
        };
        match ask(shared, offer).await {
            Some(Decision::Accept | Decision::AcceptAndTrust) => {}
            Some(Decision::Decline) => return reply(StatusCode::FORBIDDEN, "declined"),
            // A stop is no decline: the sender is told the receiver went (as its uploads are).
            None if *shared.stop.borrow() => {
                return reply(StatusCode::SERVICE_UNAVAILABLE, "the receiver stopped");
            }
            None => return reply(StatusCode::FORBIDDEN, "nobody answered"),
        }
    }
    let session = Session::new(
        peer.ip(),
        security,
        files,
        reservation,
        shared.downloads.clone(),
    );
    let response = PrepareResponse {
        session_id: session.id.clone(),
        files: session.tokens(),
    };
    claim.activate(Arc::new(session));
    json_reply(&response)
}

/// Shows the offer and waits for the answer, the timeout or the stop (`None`: no answer).
async fn ask(shared: &Shared, offer: PendingOffer) -> Option<Decision> {
    let offer_id = offer.offer_id;
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(offer_id, tx);
    shared
        .sink
        .emit(Event::Server(ServerEvent::OfferPending(offer)));
    // The question closes however the wait ends, the sender leaving (this future dropped)
    // included.
    struct Close<'a>(&'a Shared, u64);
    impl Drop for Close<'_> {
        fn drop(&mut self) {
            lock(&self.0.pending).remove(&self.1);
            self.0
                .sink
                .emit(Event::Server(ServerEvent::OfferClosed { offer_id: self.1 }));
        }
    }
    let _close = Close(shared, offer_id);
    let mut stop = shared.stop.clone();
    tokio::select! {
        answer = rx => answer.ok(),
        _ = tokio::time::sleep(shared.config.decision_timeout) => None,
        _ = stopped(&mut stop) => None,
    }
}

/// `None` when the PIN is right (or none is set); else the 401 or 429 to answer.
/// Wrong PINs from all addresses together within a lockout period before everyone waits.
const MAX_PIN_TRIES_ALL: u32 = 20;

fn check_pin(shared: &Shared, ip: IpAddr, given: Option<&String>) -> Option<Reply> {
    let pin = shared.config.pin.as_deref()?;
    let mut tries = lock(&shared.pin_tries);
    let now = Instant::now();
    if let Some((wrong, last)) = tries.get(&ip)
        && *wrong >= MAX_PIN_TRIES
        && now.duration_since(*last) < Duration::from_secs(PIN_LOCKOUT_SECS)
    {
        return Some(reply(StatusCode::TOO_MANY_REQUESTS, "too many wrong PINs"));
    }
    // A budget for the whole network too: many addresses cannot guess in parallel.
    let lockout = Duration::from_secs(PIN_LOCKOUT_SECS);
    let recent: u32 = tries
        .values()
        .filter(|(_, last)| now.duration_since(*last) < lockout)
        .map(|(wrong, _)| *wrong)
        .sum();
    if recent >= MAX_PIN_TRIES_ALL
        && given.is_some_and(|g| !constant_time_eq(g.as_bytes(), pin.as_bytes()))
    {
        return Some(reply(StatusCode::TOO_MANY_REQUESTS, "too many wrong PINs"));
    }
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), pin.as_bytes()) => {
            tries.remove(&ip);
            None
        }
        None => Some(reply(StatusCode::UNAUTHORIZED, "PIN required")),
        Some(_) => {
            if tries.len() >= MAX_PIN_ENTRIES && !tries.contains_key(&ip) {
                // Forget only addresses whose lockout is over; never lift a running one.
                tries.retain(|_, (_, last)| now.duration_since(*last) < lockout);
                if tries.len() >= MAX_PIN_ENTRIES {
                    return Some(reply(StatusCode::TOO_MANY_REQUESTS, "too many wrong PINs"));
                }
            }
            let entry = tries.entry(ip).or_insert((0, now));
            if now.duration_since(entry.1) >= Duration::from_secs(PIN_LOCKOUT_SECS) {
                entry.0 = 0;
            }
            entry.0 += 1;
            entry.1 = now;
            Some(reply(StatusCode::UNAUTHORIZED, "wrong PIN"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
