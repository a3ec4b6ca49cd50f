//! Asking before accepting: the session's consent rule says whether an offer is taken, asked
//! about or refused ([`crate::protocol::session::consent`]); this driver asks the user
//! through an event and waits, in one `select!`, for the answer, the decision timeout, or
//! the sender leaving (seen by a watcher thread that peeks at the socket without consuming
//! anything: a plain sender leaves by closing, an encrypted one by closing after its close
//! record), whichever comes first.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::Decision;
use super::connection::Connection;
use super::lock;
use crate::events::{Event, OfferedFolder, PendingOffer, Security, ServerEvent, next_offer_id};
use crate::protocol::session::{Consent, Refusal};
use crate::protocol::{Header, ReceiverMsg, WaitFor, sanitize_file_name};
use crate::secure::record::{CLOSE_RECORD_LEN, at_most_a_close_record};
use crate::secure::trust::SeenAt;
use crate::transfer::{TransferError, os};

impl Connection<'_> {
    /// Whether to take this file: auto-accept, the connection's earlier answer, or the
    /// user's. `Err(refusal)` declines.
    pub(super) fn decide(&mut self, header: &Header) -> Result<Result<(), Refusal>, TransferError> {
        let policy = *lock(&self.shared.policy);
        if self.device.is_none() && self.shared.config.require_encryption {
            return Ok(Err(Refusal::NotEncrypted));
        }
        let Some(auto_accept) = policy.without_asking(self.trusted()) else {
            return Ok(Err(Refusal::NotTrusted));
        };
        let batch = match self.session.consent(header, auto_accept) {
            Consent::Accept { .. } => return Ok(Ok(())),
            Consent::Refuse(refusal) => return Ok(Err(refusal)),
            // An eager offer's data is on its way: asking would leave it unread while the
            // user decides, and the sender blocked in a write (bounded by its answer
            // timeout) once the bytes in flight outgrow the sockets' buffers. Declined
            // instead, saying so; sent again, it is asked about as ever.
            Consent::Ask { .. } if header.eager => return Ok(Err(Refusal::EagerUnasked)),
            Consent::Ask { batch } => batch,
        };
        let decision = self.ask_user(header, batch)?;
        if decision == Some(Decision::AcceptAndTrust) {
            self.trust_sender();
        }
        match decision.map(|d| d != Decision::Decline) {
            Some(accepted) => Ok(
                match self.session.answered(header.file_size, batch, accepted) {
                    Consent::Accept { .. } => Ok(()),
                    Consent::Refuse(refusal) => Err(refusal),
                    // `answered` never asks again; were it to, refusing is the safe answer.
                    Consent::Ask { .. } => Err(Refusal::DeclinedByUser),
                },
            ),
            None => Ok(Err(Refusal::no_answer(self.shared.config.decision_timeout))),
        }
    }

    /// Tells the sender to wait, shows the offer (the whole batch when `batch`), and waits
    /// for the user's answer (`Some`), the decision timeout (`None`), the sender leaving or
    /// the server stopping (errors).
    pub(super) fn ask_user(
        &mut self,
        header: &Header,
        batch: bool,
    ) -> Result<Option<Decision>, TransferError> {
        // The user may take minutes: the verdicts held so far go first.
        self.commit_held();
        let listed: Vec<(&str, Option<u64>)> = match (self.session.batch(), batch) {
            (Some(b), true) => b.files().iter().map(|(n, s)| (n.as_str(), *s)).collect(),
            _ => vec![(header.file_name.as_str(), Some(header.file_size))],
        };
        let (count, bytes) = match (self.session.batch(), batch) {
            (Some(b), true) => b.totals(),
            _ => (1, header.file_size),
        };
        // Names are shown to the user: as they would be saved, never raw control or bidi text.
        let names = listed
            .iter()
            .map(|(n, _)| sanitize_file_name(n).to_string())
            .collect();
        // Sizes only when every listed file has one, so they line up with the names.
        let sizes = listed.iter().map(|(_, s)| *s).collect::<Option<Vec<u64>>>();
        let offer = Listing {
            count,
            bytes,
            names,
            sizes: sizes.unwrap_or_default(),
            msg: header.msg.clone(),
            folder: None,
        };
        self.ask(offer)
    }

    /// Whether to take the offered folder as a whole: auto-accept or the user's answer.
    /// `Err(refusal)` declines. Plain senders cannot get here (they cannot announce one).
    /// The refusal a folder gets from the settings alone (encryption required, trusted
    /// devices only), before anyone is asked or anything is waited for.
    pub(super) fn refused_by_policy(&self) -> Option<Refusal> {
        if self.device.is_none() && self.shared.config.require_encryption {
            return Some(Refusal::NotEncrypted);
        }
        let policy = *lock(&self.shared.policy);
        policy
            .without_asking(self.trusted())
            .is_none()
            .then_some(Refusal::NotTrusted)
    }

    pub(super) fn decide_folder(&mut self) -> Result<Result<(), Refusal>, TransferError> {
        if let Some(refusal) = self.refused_by_policy() {
            return Ok(Err(refusal));
        }
        let policy = *lock(&self.shared.policy);
        let Some(auto_accept) = policy.without_asking(self.trusted()) else {
            return Ok(Err(Refusal::NotTrusted));
        };
        match self.session.folder_consent(auto_accept) {
            Consent::Accept { .. } => return Ok(Ok(())),
            Consent::Refuse(refusal) => return Ok(Err(refusal)),
            Consent::Ask { .. } => {}
        }
        let Some(folder) = self.session.folder() else {
            return Ok(Err(Refusal::NotOffered));
        };
        // As saved (each component sanitised), under the folder's own name.
        let root = sanitize_file_name(&folder.name).to_string();
        let files = folder.entries().iter().filter(|e| e.size.is_some());
        let offer = Listing {
            count: folder.file_count(),
            bytes: folder.totals().1,
            names: files
                .clone()
                .map(|e| format!("{root}/{}", e.components.join("/")))
                .collect(),
            sizes: files.filter_map(|e| e.size).collect(),
            msg: folder.msg.clone(),
            folder: Some(OfferedFolder {
                folders: count_folders(folder.entries()),
                name: root,
            }),
        };
        let decision = self.ask(offer)?;
        if decision == Some(Decision::AcceptAndTrust) {
            self.trust_sender();
        }
        Ok(match decision {
            Some(Decision::Decline) => Err(Refusal::DeclinedByUser),
            Some(_) => Ok(()),
            None => Err(Refusal::no_answer(self.shared.config.decision_timeout)),
        })
    }

    /// Tells the sender to wait, shows the offer, and waits for the user's answer.
    fn ask(&mut self, offer: Listing) -> Result<Option<Decision>, TransferError> {
        self.answer(&ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision,
        });
        let offer_id = next_offer_id();
        let (tx, answers) = crossbeam_channel::bounded(1);
        lock(&self.shared.pending).insert(offer_id, tx);
        let expected = offer.bytes;
        self.shared
            .sink
            .emit(Event::Server(ServerEvent::OfferPending(PendingOffer {
                offer_id,
                peer: self.peer,
                count: offer.count,
                bytes: offer.bytes,
                names: offer.names,
                sizes: offer.sizes,
                msg: offer.msg,
                security: self.security.clone(),
                folder: offer.folder,
            })));
        let answered = Arc::new(AtomicBool::new(false));
        let left = self.watch_for_leaving(&answered);
        let timeout = crossbeam_channel::after(self.shared.config.decision_timeout);
        let answer = crossbeam_channel::select! {
            recv(answers) -> accepted => Ok(accepted.ok()),
            recv(left) -> _ => Err(if self.shared.stopping.load(Ordering::SeqCst) {
                TransferError::Stopped
            } else {
                TransferError::ShortData {
                    received: 0,
                    expected,
                }
            }),
            recv(self.shared.stop_signal) -> _ => Err(TransferError::Stopped),
            recv(timeout) -> _ => Ok(None),
        };
        answered.store(true, Ordering::SeqCst);
        lock(&self.shared.pending).remove(&offer_id);
        self.shared
            .sink
            .emit(Event::Server(ServerEvent::OfferClosed { offer_id }));
        answer
    }

    /// "Accept and trust": pins the encrypted sender's key, so its later offers follow the
    /// trusted policy (a plain sender has no key to pin: a plain accept).
    fn trust_sender(&mut self) {
        let (Some(device), Some(keyring)) = (&self.device, &self.shared.config.keyring) else {
            return;
        };
        // Its IP, with the port it said its own server listens on (if it said one).
        let seen = SeenAt::sender(self.peer.ip(), self.serves_on);
        match keyring
            .trust
            .pin(&device.name, &device.public_key, Some(seen))
        {
            Ok(pinned) => {
                if let Security::Encrypted {
                    device, trusted, ..
                } = &mut self.security
                {
                    *device = pinned.name;
                    *trusted = true;
                }
            }
            Err(e) => log::warn!("{}: cannot trust the device: {e}", self.peer),
        }
    }

    /// Whether the sender has left, seen without waiting or consuming a byte (for a
    /// connection that waits without reading, such as one waiting for a folder's key).
    /// Bytes already sent, or nothing to tell yet, mean it is still there.
    pub(super) fn sender_has_left(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let incoming = self.reader.get_ref();
        sender_left(incoming.socket(), incoming.is_secure(), false) == Some(true)
    }

    /// A channel that fires when the sender closes its side while the user is being asked:
    /// a thread peeks at the socket (never consuming a byte) until the peer closes (fire),
    /// sends something (it is alive: the thread ends, the channel stays silent), or the
    /// question is `answered`. Where nothing can be watched (bytes already buffered: the
    /// peer is alive; no thread could start), it never fires.
    fn watch_for_leaving(&self, answered: &Arc<AtomicBool>) -> crossbeam_channel::Receiver<()> {
        if !self.reader.buffer().is_empty() {
            return crossbeam_channel::never();
        }
        let Ok(stream) = self.reader.get_ref().socket().try_clone() else {
            return crossbeam_channel::never();
        };
        let secure = self.reader.get_ref().is_secure();
        // The thread sends only when the peer closed; it never drops its sender before
        // `answered` is set or the peer closed, so a disconnect means nothing either: the
        // receiver is turned into a "fires only on a message" one by keeping the channel
        // open with a sender that lives as long as the question.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let answered = Arc::clone(answered);
        let spawned = thread::Builder::new()
            .name(format!("ferry-watch-{}", self.peer))
            .spawn(move || {
                if sender_closes(&stream, secure, &answered) {
                    let _ = tx.send(());
                } else {
                    // Alive (or answered): hold the channel open until the question ends.
                    while !answered.load(Ordering::SeqCst) {
                        thread::park_timeout(Duration::from_millis(250));
                    }
                }
            });
        match spawned {
            // Joined with the connection threads when the server stops (which shuts the
            // socket, so the peek returns).
            Ok(handle) => {
                lock(&self.shared.threads).push(handle);
                rx
            }
            Err(e) => {
                log::warn!("{}: cannot watch the sender while asking: {e}", self.peer);
                crossbeam_channel::never()
            }
        }
    }
}

/// What a prompt shows about an offer: files and bytes in all, the names as they would be
/// saved, their sizes (all or none), and the sender's message.
struct Listing {
    count: u64,
    bytes: u64,
    names: Vec<String>,
    sizes: Vec<u64>,
    msg: String,
    folder: Option<OfferedFolder>,
}

/// The folders inside a listing: those listed (empty ones too) and every parent of a listed
/// path, each counted once.
fn count_folders(entries: &[crate::protocol::SafeEntry]) -> u64 {
    let mut folders = std::collections::HashSet::new();
    for entry in entries {
        let parents = match entry.size {
            Some(_) => entry.components.len().saturating_sub(1),
            None => entry.components.len(),
        };
        for depth in 1..=parents {
            folders.insert(&entry.components[..depth]);
        }
    }
    folders.len() as u64
}

/// Blocks until the sender leaves (true), sends something (false), or `answered` is set
/// (false, noticed within a look, [`LOOK_FOR_THE_END`], or two after a lone close record).
fn sender_closes(stream: &TcpStream, secure: bool, answered: &AtomicBool) -> bool {
    loop {
        match sender_left(stream, secure, true) {
            Some(true) => return !answered.load(Ordering::SeqCst),
            Some(false) => return false,
            None if answered.load(Ordering::SeqCst) => return false,
            None => {}
        }
    }
}

/// How long one waiting look waits for anything from a silent sender, and for the end of an
/// encrypted sender's stream behind its close record (the record and the end usually arrive
/// together; a sender that sends the record and stays is looked at this often).
const LOOK_FOR_THE_END: Duration = Duration::from_millis(250);

/// One look at a waiting sender's socket, consuming nothing: `Some(true)` it left (closed, the
/// connection broken, or, encrypted, it ended its stream with nothing but its close record
/// unread: a sender that gives up says goodbye), `Some(false)` it is alive (it sent anything
/// else), `None` nothing to tell yet. With `wait`, waits up to [`LOOK_FOR_THE_END`] for
/// something to arrive and, after a close record, as long again for the end.
fn sender_left(socket: &TcpStream, secure: bool, wait: bool) -> Option<bool> {
    use rustix::net::{RecvFlags, recv};
    let mut peeked = [0u8; CLOSE_RECORD_LEN + 1];
    // The wait is a poll of its own, not the socket's read timeout: that one is the
    // connection's, and an encrypted record trickled up to its deadline leaves it cut to
    // what was left (down to a millisecond), at which pace the watcher would spin.
    let flags = match wait.then(|| os::wait_readable(socket, LOOK_FOR_THE_END)) {
        Some(Some(false)) => return None,
        // The system cannot poll: a blocking peek (up to the read timeout) waits instead.
        Some(None) => RecvFlags::PEEK,
        Some(Some(true)) | None => RecvFlags::PEEK | RecvFlags::DONTWAIT,
    };
    let got = recv(socket, &mut peeked[..], flags)
        .map(|(n, _)| n)
        .map_err(std::io::Error::from);
    match got {
        Ok(n) if n > 0 && secure && at_most_a_close_record(&peeked[..n]) => {
            let look = if wait {
                LOOK_FOR_THE_END
            } else {
                Duration::ZERO
            };
            match os::peer_finished(socket, look) {
                Some(true) => Some(true),
                Some(false) => None,
                // The system cannot tell: bytes mean alive, as anywhere else.
                None => Some(false),
            }
        }
        got => peek_says_closed(got),
    }
}

/// What a peek at the sender's socket tells: `Some(true)` it closed (its end of the stream,
/// or a broken connection), `Some(false)` it is alive (it sent something), `None` nothing yet
/// (the read timed out or was interrupted).
fn peek_says_closed(peeked: std::io::Result<usize>) -> Option<bool> {
    match peeked {
        Ok(0) => Some(true),
        Ok(_) => Some(false),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Err(_) => Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};
    use std::time::Instant;

    const TAG_LEN: usize = CLOSE_RECORD_LEN - 2;

    /// A connected pair on loopback: (the sender's end, the receiver's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (sender, listener.accept().unwrap().0)
    }

    /// Looks without waiting until `done` accepts what a look says, or 5 s pass.
    fn look_until(
        socket: &TcpStream,
        secure: bool,
        done: impl Fn(Option<bool>) -> bool,
    ) -> Option<bool> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = sender_left(socket, secure, false);
            if done(seen) || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A record of `plaintext` bytes as it looks on the wire (its contents do not matter to
    /// a look that cannot open it).
    fn record(plaintext: usize) -> Vec<u8> {
        let len = u16::try_from(plaintext + TAG_LEN).unwrap();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.resize(2 + plaintext + TAG_LEN, 0xA5);
        bytes
    }

    #[test]
    fn a_look_at_a_waiting_sender_tells_a_goodbye_from_talk() {
        assert!(at_most_a_close_record(&record(0)));
        assert!(!at_most_a_close_record(&record(1)));

        // Silent and still there: nothing to tell, plain or encrypted.
        let (mut sender, receiver) = pair();
        assert_eq!(sender_left(&receiver, false, false), None);
        assert_eq!(sender_left(&receiver, true, false), None);
        // Its close record, its end not yet: still nothing to tell for an encrypted sender
        // (bytes are talk from a plain one).
        sender.write_all(&record(0)).unwrap();
        assert_eq!(look_until(&receiver, false, |s| s.is_some()), Some(false));
        assert_eq!(sender_left(&receiver, true, false), None);
        // Then its end: an encrypted sender's goodbye.
        sender.shutdown(Shutdown::Write).unwrap();
        assert_eq!(look_until(&receiver, true, |s| s.is_some()), Some(true));
        assert_eq!(sender_left(&receiver, false, false), Some(false));

        // Anything but a lone close record before the end is talk: a record with plaintext,
        // a close record with a byte after it.
        for talk in [record(1), [record(0), vec![0]].concat()] {
            let (mut sender, receiver) = pair();
            sender.write_all(&talk).unwrap();
            sender.shutdown(Shutdown::Write).unwrap();
            // Wait until the end has arrived, then look.
            assert_eq!(
                os::peer_finished(&receiver, Duration::from_secs(5)),
                Some(true)
            );
            assert_eq!(sender_left(&receiver, true, false), Some(false), "{talk:?}");
        }

        // A stream that ends within a close record's first bytes cannot go on: gone.
        let (mut sender, receiver) = pair();
        sender.write_all(&record(0)[..1]).unwrap();
        sender.shutdown(Shutdown::Write).unwrap();
        assert_eq!(look_until(&receiver, true, |s| s.is_some()), Some(true));

        // Closed with nothing sent: gone, plain or encrypted.
        for secure in [false, true] {
            let (sender, receiver) = pair();
            drop(sender);
            assert_eq!(look_until(&receiver, secure, |s| s.is_some()), Some(true));
        }
    }

    #[test]
    fn a_waiting_look_returns_within_its_bound_after_a_close_record_alone() {
        let (mut sender, receiver) = pair();
        sender.write_all(&record(0)).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Blocks until the record is there, then looks for the end a moment: none yet.
        assert_eq!(sender_left(&receiver, true, true), None);
        sender.shutdown(Shutdown::Write).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = sender_left(&receiver, true, true);
        while seen.is_none() && Instant::now() < deadline {
            seen = sender_left(&receiver, true, true);
        }
        assert_eq!(seen, Some(true));
    }

    /// How often the calling thread has slept and been woken so far (Linux's count).
    fn wakeups() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
        let line = status
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    fn a_watcher_sleeps_through_a_short_read_timeout_left_on_the_socket() {
        if wakeups().is_none() {
            eprintln!("SKIPPED: no per-thread wake-up count on this system");
            return;
        }
        // An encrypted record trickled up to its deadline leaves the socket's read timeout
        // cut to what was left of it, down to a millisecond; the watcher shares the socket.
        for secure in [false, true] {
            let (_sender, receiver) = pair();
            receiver
                .set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            let answered = Arc::new(AtomicBool::new(false));
            let watcher = {
                let answered = Arc::clone(&answered);
                thread::spawn(move || {
                    let before = wakeups().unwrap_or_default();
                    let left = sender_closes(&receiver, secure, &answered);
                    (left, wakeups().unwrap_or_default() - before)
                })
            };
            // Not a synchronisation: the stretch of a silent sender the watcher sits through.
            thread::sleep(Duration::from_millis(600));
            answered.store(true, Ordering::SeqCst);
            let (left, woken) = watcher.join().unwrap();
            assert!(!left);
            // At the socket's 1 ms it wakes hundreds of times; a look every 250 ms, a few.
            assert!(woken < 30, "secure {secure}: woken {woken} times in 600 ms");
        }
    }
}
