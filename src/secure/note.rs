//! Sealed notes: one UDP datagram per note between trusted devices, encrypted and
//! authenticated under a key only the two devices can derive, with replay protection.
//!
//! ```text
//! 0xFF 'F' 'N' 0x01 | sender device id (16 bytes) | counter (u64 big-endian) | ciphertext+tag
//! ```
//!
//! - Key, per direction: `derive_key("ferry 2025 sealed note v1", X25519(sender, receiver)
//!   || sender public key || receiver public key)`; an all-zero (non-contributory) X25519
//!   result is refused.
//! - AEAD: ChaCha20-Poly1305, nonce = 4 zero bytes || counter (big-endian), associated data =
//!   the 28 header bytes, plaintext = the note's UTF-8 text.
//! - The counter must grow: a sender starts from its clock in microseconds since the Unix
//!   epoch (so a restarted sender keeps going up) and adds 1 per note. A receiver keeps, per
//!   peer, the highest counter seen and a 64-note window below it; a note outside the window
//!   or seen before is refused as a replay. The window is updated only after the note
//!   authenticated.
//! - Each note's counter is also at least the sender's clock in microseconds, and the first
//!   note a receiver sees from a peer (after it started) must be at most 15 minutes old by
//!   that counter: a note captured earlier cannot be replayed to a receiver that restarted,
//!   once those minutes have passed. Within them, a receiver that kept the highest counter
//!   it accepted from each peer ([`NoteOpener::add_peer_after`]; Ferry keeps them in its
//!   config folder) refuses every counter up to it after a restart too.
//! - 0xFF never starts UTF-8 text, so a plain note is never mistaken for a sealed one.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::SecureError;
use super::identity::{Identity, device_id_bytes};
use crate::protocol::MAX_NOTE_BYTES;

pub const SEALED_MAGIC: [u8; 4] = [0xFF, b'F', b'N', 0x01];
pub const SEALED_HEADER_LEN: usize = 4 + 16 + 8;
const TAG_LEN: usize = 16;
/// The longest text a sealed note can carry in one datagram.
pub const MAX_SEALED_TEXT_BYTES: usize = MAX_NOTE_BYTES - SEALED_HEADER_LEN - TAG_LEN;
const REPLAY_WINDOW: u64 = 64;
/// How old (by its counter, the sender's clock) the first note a receiver sees from a peer
/// may be: 15 minutes, room for clocks that disagree a little.
pub const FRESH_MICROS: u64 = 15 * 60 * 1_000_000;

/// True if `datagram` claims to be sealed (plain notes never start with 0xFF).
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.first() == Some(&SEALED_MAGIC[0])
}

fn direction_key(
    private: &[u8; 32],
    sender: &[u8; 32],
    receiver: &[u8; 32],
    peer: &[u8; 32],
) -> Result<[u8; 32], SecureError> {
    let secret = x25519_dalek::StaticSecret::from(*private);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(SecureError::Note("the peer's key is a low-order point"));
    }
    let material = [shared.as_bytes().as_slice(), sender, receiver].concat();
    Ok(blake3::derive_key("ferry 2025 sealed note v1", &material))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

/// Seals notes from this device to one peer.
pub struct NoteSealer {
    cipher: ChaCha20Poly1305,
    sender_id: [u8; 16],
    next_counter: u64,
}

impl NoteSealer {
    /// `first_counter`: the current time in microseconds since the Unix epoch (see the
    /// module doc); tests pass fixed values.
    pub fn new(
        me: &Identity,
        peer_public: &[u8; 32],
        first_counter: u64,
    ) -> Result<Self, SecureError> {
        let key = direction_key(me.private_key(), me.public_key(), peer_public, peer_public)?;
        Ok(NoteSealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            sender_id: device_id_bytes(me.public_key()),
            next_counter: first_counter.max(1),
        })
    }

    /// One datagram carrying `text`.
    pub fn seal(&mut self, text: &str) -> Result<Vec<u8>, SecureError> {
        self.seal_at(text, 0)
    }

    /// One datagram carrying `text`, its counter at least `now_micros` (the clock in
    /// microseconds since the Unix epoch), so a receiver that just started can tell a fresh
    /// note from an old one replayed (see [`NoteOpener::open_at`]).
    pub fn seal_at(&mut self, text: &str, now_micros: u64) -> Result<Vec<u8>, SecureError> {
        if text.len() > MAX_SEALED_TEXT_BYTES {
            return Err(SecureError::Note("the note is too long for one datagram"));
        }
        let counter = self.next_counter.max(now_micros);
        self.next_counter = counter
            .checked_add(1)
            .ok_or(SecureError::Note("counter exhausted"))?;
        let mut datagram = Vec::with_capacity(SEALED_HEADER_LEN + text.len() + TAG_LEN);
        datagram.extend_from_slice(&SEALED_MAGIC);
        datagram.extend_from_slice(&self.sender_id);
        datagram.extend_from_slice(&counter.to_be_bytes());
        let sealed = self
            .cipher
            .encrypt(
                &nonce(counter),
                Payload {
                    msg: text.as_bytes(),
                    aad: &datagram,
                },
            )
            .map_err(|_| SecureError::Note("encryption failed"))?;
        datagram.extend_from_slice(&sealed);
        Ok(datagram)
    }
}

struct Peer {
    sender_id: [u8; 16],
    public_key: [u8; 32],
    cipher: ChaCha20Poly1305,
    /// Highest counter accepted, and bit i set = `highest - i` was accepted.
    highest: Option<u64>,
    seen: u64,
    /// No note of this peer opened since this opener was made: the first is held to
    /// [`FRESH_MICROS`].
    first: bool,
}

/// Opens sealed notes from the trusted peers added to it.
pub struct NoteOpener {
    me: Identity,
    peers: Vec<Peer>,
}

/// A note that opened: who sent it and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    pub sender_public_key: [u8; 32],
    pub text: String,
}

impl NoteOpener {
    pub fn new(me: &Identity) -> Self {
        NoteOpener {
            me: me.clone(),
            peers: Vec::new(),
        }
    }

    /// Accepts notes from this (trusted) key from now on.
    pub fn add_peer(&mut self, public_key: &[u8; 32]) -> Result<(), SecureError> {
        self.add_peer_after(public_key, None)
    }

    /// [`NoteOpener::add_peer`], refusing every counter up to `floor` (the highest counter an
    /// earlier opener of this receiver accepted from the key, kept across restarts): a note
    /// captured before a restart is refused then, not only once it is 15 minutes old.
    pub fn add_peer_after(
        &mut self,
        public_key: &[u8; 32],
        floor: Option<u64>,
    ) -> Result<(), SecureError> {
        if self.peers.iter().any(|p| &p.public_key == public_key) {
            return Ok(());
        }
        let key = direction_key(
            self.me.private_key(),
            public_key,
            self.me.public_key(),
            public_key,
        )?;
        self.peers.push(Peer {
            sender_id: device_id_bytes(public_key),
            public_key: *public_key,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            highest: floor,
            // Everything up to the floor counts as seen.
            seen: if floor.is_some() { u64::MAX } else { 0 },
            first: true,
        });
        Ok(())
    }

    /// The highest counter accepted from `public_key` (or given as its floor), to keep for
    /// the next opener.
    pub fn highest(&self, public_key: &[u8; 32]) -> Option<u64> {
        self.peers
            .iter()
            .find(|p| &p.public_key == public_key)
            .and_then(|p| p.highest)
    }

    /// Stops accepting notes from this key.
    pub fn remove_peer(&mut self, public_key: &[u8; 32]) {
        self.peers.retain(|p| &p.public_key != public_key);
    }

    /// Opens one sealed datagram, or says why not (never returns unauthenticated text).
    pub fn open(&mut self, datagram: &[u8]) -> Result<OpenedNote, SecureError> {
        self.open_at(datagram, 0)
    }

    /// [`NoteOpener::open`] at `now_micros` (0: no clock): the first note from a peer since
    /// this opener was made must carry a counter no older than [`FRESH_MICROS`] before now,
    /// so a note captured earlier cannot be replayed to a receiver that restarted (and lost
    /// its replay window) once that time has passed.
    pub fn open_at(&mut self, datagram: &[u8], now_micros: u64) -> Result<OpenedNote, SecureError> {
        if datagram.len() < SEALED_HEADER_LEN + TAG_LEN || datagram.len() > MAX_NOTE_BYTES {
            return Err(SecureError::Note("wrong size for a sealed note"));
        }
        let (header, sealed) = datagram.split_at(SEALED_HEADER_LEN);
        if header[..4] != SEALED_MAGIC {
            return Err(SecureError::Note("not a sealed note of a known version"));
        }
        let peer = self
            .peers
            .iter_mut()
            .find(|p| p.sender_id[..] == header[4..20])
            .ok_or(SecureError::Note("from a device that is not trusted"))?;
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&header[20..28]);
        let counter = u64::from_be_bytes(counter_bytes);
        if peer.first && now_micros > 0 && counter.saturating_add(FRESH_MICROS) < now_micros {
            return Err(SecureError::Note(
                "too old (sent more than 15 minutes ago by its clock, or replayed)",
            ));
        }
        if let Some(highest) = peer.highest
            && counter <= highest
        {
            let age = highest - counter;
            if age >= REPLAY_WINDOW || peer.seen & (1 << age) != 0 {
                return Err(SecureError::Note("replayed or too old"));
            }
        }
        let plain = peer
            .cipher
            .decrypt(
                &nonce(counter),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| SecureError::Note("did not authenticate"))?;
        let text = String::from_utf8(plain).map_err(|_| SecureError::Note("not UTF-8"))?;
        peer.first = false;
        match peer.highest {
            Some(highest) if counter <= highest => peer.seen |= 1 << (highest - counter),
            Some(highest) => {
                let shift = counter - highest;
                peer.seen = if shift >= REPLAY_WINDOW {
                    1
                } else {
                    (peer.seen << shift) | 1
                };
                peer.highest = Some(counter);
            }
            None => {
                peer.highest = Some(counter);
                peer.seen = 1;
            }
        }
        Ok(OpenedNote {
            sender_public_key: peer.public_key,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_that_restarted_refuses_an_old_note_and_takes_a_fresh_one() {
        let (a, b) = pair();
        let minute = 60 * 1_000_000;
        let t0 = 1_800_000_000 * 1_000_000;
        let mut sealer = NoteSealer::new(&a, b.public_key(), 1).unwrap();
        let old = sealer.seal_at("captured", t0).unwrap();
        // A fresh opener (the receiver restarted) 20 minutes later: refused.
        let mut opener = NoteOpener::new(&b);
        opener.add_peer(a.public_key()).unwrap();
        let refused = opener.open_at(&old, t0 + 20 * minute).unwrap_err();
        assert!(refused.to_string().contains("too old"), "{refused}");
        // A note sealed now opens, and so does one a minute old.
        let mut opener = NoteOpener::new(&b);
        opener.add_peer(a.public_key()).unwrap();
        assert_eq!(opener.open_at(&old, t0 + minute).unwrap().text, "captured");
        let now = sealer.seal_at("fresh", t0 + 20 * minute).unwrap();
        assert_eq!(
            opener.open_at(&now, t0 + 20 * minute).unwrap().text,
            "fresh"
        );
    }

    fn pair() -> (Identity, Identity) {
        (
            Identity::from_private([7; 32], "alice"),
            Identity::from_private([9; 32], "bob"),
        )
    }

    #[test]
    fn round_trip_and_plain_text_is_never_sealed() {
        let (a, b) = pair();
        let mut sealer = NoteSealer::new(&a, b.public_key(), 1_000).unwrap();
        let mut opener = NoteOpener::new(&b);
        opener.add_peer(a.public_key()).unwrap();
        let d = sealer.seal("hello bob").unwrap();
        assert!(is_sealed(&d));
        assert!(
            std::str::from_utf8(&d).is_err(),
            "a sealed datagram is not text"
        );
        assert!(!is_sealed("ÿ is U+00FF but encodes as C3 BF".as_bytes()));
        let opened = opener.open(&d).unwrap();
        assert_eq!(
            opened,
            OpenedNote {
                sender_public_key: *a.public_key(),
                text: "hello bob".into()
            }
        );
    }

    #[test]
    fn replays_old_and_out_of_window_notes_are_refused_reordering_within_the_window_is_fine() {
        let (a, b) = pair();
        let mut sealer = NoteSealer::new(&a, b.public_key(), 1).unwrap();
        let mut opener = NoteOpener::new(&b);
        opener.add_peer(a.public_key()).unwrap();
        let notes: Vec<Vec<u8>> = (0..100)
            .map(|i| sealer.seal(&format!("n{i}")).unwrap())
            .collect();
        opener.open(&notes[10]).unwrap();
        assert!(opener.open(&notes[10]).is_err(), "replay");
        opener.open(&notes[5]).unwrap();
        assert!(opener.open(&notes[5]).is_err(), "replay of a late one");
        opener.open(&notes[90]).unwrap();
        assert!(
            opener.open(&notes[20]).is_err(),
            "70 behind: outside the window"
        );
        opener.open(&notes[40]).unwrap();
        opener.open(&notes[91]).unwrap();
    }

    #[test]
    fn tampered_untrusted_wrong_direction_and_short_datagrams_are_refused() {
        let (a, b) = pair();
        let mut sealer = NoteSealer::new(&a, b.public_key(), 1).unwrap();
        let d = sealer.seal("hi").unwrap();
        let mut opener = NoteOpener::new(&b);
        assert!(opener.open(&d).is_err(), "not trusted yet");
        opener.add_peer(a.public_key()).unwrap();
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x01;
            assert!(opener.open(&t).is_err(), "bit flip at {i} accepted");
        }
        assert!(opener.open(&d[..d.len() - 1]).is_err());
        assert!(opener.open(&d[..10]).is_err());
        // Alice's own opener (for notes from Bob) must not open Alice's note to Bob.
        let mut alice_side = NoteOpener::new(&a);
        alice_side.add_peer(b.public_key()).unwrap();
        assert!(alice_side.open(&d).is_err());
        // A failed attempt did not move the window: the real note still opens.
        assert_eq!(opener.open(&d).unwrap().text, "hi");
    }

    #[test]
    fn a_low_order_peer_key_is_refused() {
        let (a, _) = pair();
        assert!(NoteSealer::new(&a, &[0; 32], 1).is_err());
        assert!(NoteOpener::new(&a).add_peer(&[0; 32]).is_err());
    }
}
