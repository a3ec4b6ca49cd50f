//! Sealed notes on the notes socket: which notes are encrypted, to whom, and what an
//! incoming sealed datagram turns into. The wire format and the cryptography live in
//! [`crate::secure::note`]; this file decides *when* to use them.
//!
//! - **Receiving.** A datagram that [`is_sealed`] is opened with one [`NoteOpener`] (kept by
//!   the receive thread for the socket's whole life, so its replay windows persist). Before
//!   each open, the keys of the trusted devices are read again from the [`TrustBook`](crate::secure::trust::TrustBook) (which
//!   reloads the file when another Ferry process changed it) and any new one is added. After
//!   a note opened, its sender must *still* be trusted: a forgotten device's notes are
//!   refused even though the opener still knows its key (keeping the key keeps its replay
//!   window, so re-trusting the device later cannot replay old notes). A sealed datagram that
//!   does not open is never shown as text: it becomes a refusal with a reason.
//! - **Sending.** [`Seal::Auto`] seals when the destination is a trusted device: an address a
//!   trusted device's sealed note came from (so a reply to a sealed note is sealed), or a
//!   trusted device's last known address. [`Seal::Plain`] never seals (for plain peers);
//!   [`Seal::Device`] seals to one trusted key. One [`NoteSealer`] per peer key for the
//!   socket's life, its first counter the clock in microseconds since the Unix epoch, so the
//!   counters a peer sees only grow.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::events::Security;
use crate::secure::identity::fingerprint;
use crate::secure::note::{MAX_SEALED_TEXT_BYTES, NoteOpener, NoteSealer, SEALED_MAGIC};
use crate::secure::{Keyring, SecureError};

use super::seen::SeenCounters;

/// True if `datagram` claims to be a sealed note: it starts with the sealed-note magic
/// `0xFF 'F' 'N'` (any version; an unknown version is refused, not shown). Stricter than
/// [`crate::secure::note::is_sealed`] (the first byte alone) on purpose: any other datagram,
/// invalid UTF-8 starting with 0xFF included, is a plain peer's note and is still shown
/// (lossily), as it always was.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.starts_with(&SEALED_MAGIC[..3])
}

/// How many "this address sent a sealed note as that device" pairs are remembered for
/// replies (the oldest are forgotten first).
const REPLY_BOOK_LEN: usize = 64;

/// Whether a note is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seal {
    /// Sealed if the destination is a trusted device (see the module doc), plain otherwise.
    #[default]
    Auto,
    /// Plain text, whoever the destination is.
    Plain,
    /// Sealed to this trusted device's public key.
    Device([u8; 32]),
}

/// Why a note could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "an encrypted note carries at most {max} bytes of text; this one has {bytes} (send it plain with --plain, or shorten it)"
    )]
    TooLong { bytes: usize, max: usize },
    #[error("no device identity here, so nothing can be encrypted")]
    NoKeyring,
    #[error("that device is not trusted (pair with it first)")]
    NotTrusted,
    #[error(transparent)]
    Secure(#[from] SecureError),
}

/// The sealing state a notes socket shares between its senders and its receive thread.
pub(super) struct Sealing {
    keyring: Keyring,
    sealers: Mutex<HashMap<[u8; 32], NoteSealer>>,
    /// Source addresses of recent sealed notes and the key that sealed them, newest last.
    reply_book: Mutex<VecDeque<(SocketAddr, [u8; 32])>>,
    /// The highest counter accepted from each device, kept across restarts.
    seen: Mutex<SeenCounters>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("device", &self.keyring.identity.name())
            .finish_non_exhaustive()
    }
}

/// The clock in microseconds since the Unix epoch: a sealer's first counter.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

impl Sealing {
    pub(super) fn new(keyring: Keyring) -> Self {
        let seen = SeenCounters::load(keyring.trust.dir());
        Sealing {
            keyring,
            sealers: Mutex::new(HashMap::new()),
            reply_book: Mutex::new(VecDeque::new()),
            seen: Mutex::new(seen),
        }
    }

    /// An opener for the receive thread.
    pub(super) fn opener(&self) -> NoteOpener {
        NoteOpener::new(&self.keyring.identity)
    }

    /// The key a note to `to` is sealed with under `seal`, or `None` for plain.
    pub(super) fn key_for(&self, to: SocketAddr, seal: Seal) -> Option<[u8; 32]> {
        match seal {
            Seal::Plain => None,
            Seal::Device(key) => Some(key),
            Seal::Auto => {
                let replied = self
                    .reply_book
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .rev()
                    .find(|(from, _)| same_address(*from, to))
                    .map(|(_, key)| *key);
                // Only while the device is still trusted.
                if let Some(key) = replied
                    && self.keyring.trust.by_key(&key).is_some()
                {
                    return Some(key);
                }
                self.keyring.trust.devices().iter().find_map(|device| {
                    let last = device.last_socket_addr()?;
                    if same_address(last, to) {
                        device.key()
                    } else {
                        None
                    }
                })
            }
        }
    }

    /// One sealed datagram carrying `text` for the trusted device `key`, and what it was.
    pub(super) fn seal(
        &self,
        key: &[u8; 32],
        text: &str,
    ) -> Result<(Vec<u8>, Security), SealError> {
        if text.len() > MAX_SEALED_TEXT_BYTES {
            return Err(SealError::TooLong {
                bytes: text.len(),
                max: MAX_SEALED_TEXT_BYTES,
            });
        }
        let device = self
            .keyring
            .trust
            .by_key(key)
            .ok_or(SealError::NotTrusted)?;
        let mut sealers = self
            .sealers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sealer = match sealers.entry(*key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(NoteSealer::new(&self.keyring.identity, key, now_micros())?)
            }
        };
        let datagram = sealer.seal_at(text, now_micros())?;
        Ok((datagram, encrypted(device.name, key)))
    }

    /// Opens a sealed datagram from `from`: the text and who sealed it, or why it was refused.
    pub(super) fn open(
        &self,
        opener: &mut NoteOpener,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(String, Security), String> {
        let now = now_micros();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for device in self.keyring.trust.devices() {
            if let Some(key) = device.key()
                && let Err(e) = opener.add_peer_after(&key, seen.floor(&key, now))
            {
                log::warn!(
                    "notes: cannot accept sealed notes from {:?}: {e}",
                    device.name
                );
            }
        }
        let opened = opener.open_at(datagram, now).map_err(|e| match e {
            SecureError::Note(reason) => reason.to_owned(),
            other => other.to_string(),
        })?;
        if let Some(highest) = opener.highest(&opened.sender_public_key) {
            seen.record(&opened.sender_public_key, highest);
        }
        drop(seen);
        let device = self
            .keyring
            .trust
            .by_key(&opened.sender_public_key)
            .ok_or_else(|| "from a device that is no longer trusted".to_owned())?;
        let mut book = self
            .reply_book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        book.retain(|(addr, _)| *addr != from);
        book.push_back((from, opened.sender_public_key));
        while book.len() > REPLY_BOOK_LEN {
            book.pop_front();
        }
        Ok((
            opened.text,
            encrypted(device.name, &opened.sender_public_key),
        ))
    }
}

fn encrypted(device: String, key: &[u8; 32]) -> Security {
    Security::Encrypted {
        device,
        fingerprint: fingerprint(key),
        trusted: true,
    }
}

/// Equal addresses, counting an IPv4 address and its IPv4-mapped IPv6 form as one.
fn same_address(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::trust::SeenAt;
    use crate::secure::{Identity, TrustBook};
    use std::sync::Arc;

    fn keyring(dir: &std::path::Path, private: u8, name: &str) -> Keyring {
        Keyring {
            identity: Arc::new(Identity::from_private([private; 32], name)),
            trust: TrustBook::open(dir).unwrap(),
        }
    }

    #[test]
    fn auto_seals_to_last_addresses_and_reply_addresses_of_trusted_devices_only() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, bob) = (
            keyring(&dir.path().join("a"), 7, "alice"),
            keyring(&dir.path().join("b"), 9, "bob"),
        );
        alice
            .trust
            .pin(
                "bob",
                bob.identity.public_key(),
                Some(SeenAt::Server("10.0.0.2:8080".parse().unwrap())),
            )
            .unwrap();
        bob.trust
            .pin("alice", alice.identity.public_key(), None)
            .unwrap();
        let (a, b) = (Sealing::new(alice.clone()), Sealing::new(bob.clone()));
        let bob_key = *bob.identity.public_key();
        let last: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:8080".parse().unwrap();
        let other: SocketAddr = "10.0.0.2:9999".parse().unwrap();
        assert_eq!(a.key_for(last, Seal::Auto), Some(bob_key));
        assert_eq!(a.key_for(mapped, Seal::Auto), Some(bob_key));
        assert_eq!(a.key_for(other, Seal::Auto), None);
        assert_eq!(a.key_for(last, Seal::Plain), None);

        // Alice's sealed note opens at Bob's, from an ephemeral port: Bob's reply seals.
        let (datagram, security) = a.seal(&bob_key, "hi bob").unwrap();
        assert_eq!(
            security,
            encrypted("bob".into(), &bob_key),
            "the sent note says to whom"
        );
        let from: SocketAddr = "10.0.0.1:45000".parse().unwrap();
        let mut opener = b.opener();
        let (text, security) = b.open(&mut opener, from, &datagram).unwrap();
        assert_eq!(text, "hi bob");
        assert!(
            matches!(security, Security::Encrypted { ref device, trusted: true, .. } if device == "alice")
        );
        assert_eq!(
            b.key_for(from, Seal::Auto),
            Some(*alice.identity.public_key())
        );
        // The same datagram again is a replay.
        assert!(
            b.open(&mut opener, from, &datagram)
                .unwrap_err()
                .contains("replay")
        );
        // And after Bob restarts (a new socket, a new opener), within the 15 minutes.
        let restarted = Sealing::new(bob.clone());
        assert!(
            restarted
                .open(&mut restarted.opener(), from, &datagram)
                .unwrap_err()
                .contains("replay")
        );
        let (fresh, _) = a.seal(&bob_key, "after your restart").unwrap();
        let (text, _) = restarted
            .open(&mut restarted.opener(), from, &fresh)
            .unwrap();
        assert_eq!(text, "after your restart");

        // Forgotten: no more auto-sealing to it, its notes are refused, sealing to it fails.
        assert!(bob.trust.forget("alice").unwrap());
        assert_eq!(b.key_for(from, Seal::Auto), None);
        let (next, _) = a.seal(&bob_key, "still there?").unwrap();
        assert_eq!(
            b.open(&mut opener, from, &next).unwrap_err(),
            "from a device that is no longer trusted"
        );
        assert!(matches!(
            b.seal(alice.identity.public_key(), "x"),
            Err(SealError::NotTrusted)
        ));
    }

    #[test]
    fn only_the_magic_makes_a_datagram_sealed() {
        assert!(is_sealed(&[0xFF, b'F', b'N', 0x01, 0]));
        assert!(
            is_sealed(&[0xFF, b'F', b'N', 0x02]),
            "a later version is refused, not shown"
        );
        assert!(
            !is_sealed(&[0xFF; 100]),
            "invalid UTF-8 from a plain peer stays a note"
        );
        assert!(!is_sealed(b"FN hello"));
        assert!(!is_sealed(&[]));
    }

    #[test]
    fn too_long_for_a_sealed_note_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let alice = keyring(dir.path(), 7, "alice");
        let bob_key = crate::secure::identity::public_key_of(&[9; 32]);
        alice.trust.pin("bob", &bob_key, None).unwrap();
        let a = Sealing::new(alice);
        assert!(a.seal(&bob_key, &"x".repeat(MAX_SEALED_TEXT_BYTES)).is_ok());
        let err = a
            .seal(&bob_key, &"x".repeat(MAX_SEALED_TEXT_BYTES + 1))
            .unwrap_err();
        assert!(matches!(err, SealError::TooLong { .. }), "{err}");
        assert!(err.to_string().contains(&MAX_SEALED_TEXT_BYTES.to_string()));
    }
}
