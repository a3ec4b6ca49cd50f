//! Ferry's secure channel: device identity, pairing codes, an authenticated and encrypted
//! stream over any `Read + Write`, the trusted-device store and sealed UDP notes.
//!
//! This module documentation is the wire specification of everything encrypted. Nothing here
//! opens sockets or reads clocks on its own: callers pass the stream, the time and the source
//! of randomness (so tests use fixed randomness and get fixed bytes: see the golden vectors in
//! `golden.rs`). It depends only on [`crate::protocol`] (pure), std and crates.
//!
//! # Building blocks
//!
//! - Noise protocol `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` or, where both CPUs have AES
//!   instructions, `Noise_XXpsk3_25519_AESGCM_BLAKE2s` (about four times faster there; the
//!   transfer's secure hello lists the sender's ciphers in its order of preference and the
//!   receiver's go-ahead names the one used: see [`crate::protocol`]), crate `snow`,
//!   **initiator = the
//!   sender** (the side that connects), responder = the receiver. Used in both modes below;
//!   without a pairing code the PSK is 32 zero bytes (the mode byte in the prologue keeps the
//!   two modes apart), so one code path serves both.
//! - SPAKE2 over Ed25519 (crate `spake2` 0.4), asymmetric: side A = sender with identity
//!   `"ferry sender"`, side B = receiver with identity `"ferry receiver"`; the password is the
//!   normalized pairing code (`NNNN-word-word-word`, ASCII, see [`pairing`]). The code itself is
//!   never a key: only the SPAKE2 output `K` (32 bytes) is, through BLAKE3 `derive_key`.
//! - Key derivations (BLAKE3 `derive_key(context, material)`), the contexts are exact:
//!   - PSK: `derive_key("ferry 2025 secure v1 pairing psk", K)`
//!   - receiver confirmation key: `derive_key("ferry 2025 secure v1 confirm receiver", K)`
//!   - sender confirmation key: `derive_key("ferry 2025 secure v1 confirm sender", K)`
//!   - a confirmation is `BLAKE3-keyed(confirmation key, pakeA || pakeB)`, 32 bytes, compared
//!     in constant time (crate `subtle`).
//!
//! # Handshake
//!
//! Every handshake message travels as `[u16 big-endian n][n bytes]` with
//! `1 <= n <= MAX_HANDSHAKE_MSG_LEN` (1 024), checked before anything is allocated.
//!
//! ```text
//! Pairing-code mode (mode byte 'P' = 0x50):
//!   1. S -> R  pakeA                        33 bytes (0x41 'A' || Ed25519 point)
//!   2. R -> S  pakeB || confirmR            33 + 32 bytes (0x42 'B' || point, then the MAC)
//!   3. S -> R  confirmS                     32 bytes
//!            | 0x00                         1 byte: "the receiver's confirmation was wrong"
//!   then the Noise handshake below with psk = the PSK derived from K and
//!   prologue = "ferry-secure/1 initiator=sender responder=receiver mode=" || 'P' || pakeA || pakeB
//!              || transcript
//!
//! Open mode, for trusted devices and first contact (mode byte 'O' = 0x4F):
//!   Noise straight away with psk = [0; 32] and
//!   prologue = "ferry-secure/1 initiator=sender responder=receiver mode=" || 'O' || transcript
//!
//! transcript = u32 BE len(hello) || hello || u32 BE len(go-ahead) || go-ahead
//!   hello:    the body of the sender's secure hello frame, exactly the bytes on the wire
//!             (without the frame's i32 length prefix), as the sender wrote it and the
//!             receiver read it
//!   go-ahead: the body of the receiver's go-ahead frame, likewise
//!   (both empty, so 8 zero bytes, on a stream that carried nothing before the handshake)
//!
//! Noise XXpsk3 (messages framed as above):
//!   4. S -> R  e                            payload: empty, still sealed (16-byte tag: in a psk
//!                                           handshake `e` already sets the key)
//!   5. R -> S  e, ee, s, es                 payload: the receiver's device name (UTF-8)
//!   6. S -> R  s, se, psk                   payload: the sender's device name (UTF-8)
//!   in place of 5 (R, when 4 did not authenticate) or of 6 (S, when 5 did not):
//!      0x00                                 1 byte: "your message did not authenticate"
//! ```
//!
//! The prologue is hashed into Noise's handshake hash, which every sealed handshake payload
//! is authenticated against (message 4's empty payload already): a secure hello or go-ahead
//! changed on the way (a port, a cipher dropped from the offer, any byte, even one that
//! decodes the same) fails the handshake on both ends, at message 4 already. The end whose
//! check failed sends the 1-byte `0x00` before closing, so both report
//! [`SecureError::Handshake`] (one "did not authenticate", the other "could not authenticate
//! this device's handshake message"); a message 6 that does not authenticate gets no answer
//! (the sender is past its handshake and sees the connection end).
//! The bodies are bound as read and written, never decoded and encoded again. Lengths come
//! first so that no byte can move from one body to the other unnoticed.
//!
//! A device name is at most [`identity::MAX_DEVICE_NAME_BYTES`] bytes of UTF-8 (hostile text:
//! callers escape it before showing it). A wrong code makes the sender's check of `confirmR`
//! fail: it sends the 1-byte `0x00`, both sides report [`SecureError::WrongCode`] and no
//! application byte was exchanged. Reflected messages fail: SPAKE2 messages carry their side
//! ('A' / 'B') and a reflected `pakeA` is refused as [`SecureError::Reflected`]; a reflected or
//! replayed Noise message fails to authenticate under the fresh ephemeral keys
//! ([`SecureError::Handshake`]). After the handshake each side knows the other's static X25519
//! public key; checking it against pinned keys is the caller's job ([`trust`]).
//!
//! # Records
//!
//! After the handshake the stream is a sequence of records:
//!
//! ```text
//! [u16 big-endian n][n bytes: AEAD ciphertext + 16-byte tag], 16 <= n <= 65 535
//! ```
//!
//! encrypted exactly as Noise's transport messages: the cipher the handshake named, the key of
//! the direction from Noise's split (the first for the sender's records), empty associated
//! data, nonce `0^32 || counter` (the record counter from 0, big-endian for AES-256-GCM,
//! little-endian for ChaCha20-Poly1305), so a duplicated, reordered or dropped record fails to
//! authenticate. Applied in place by `record_key.rs`, checked against snow's own transport
//! state by its tests. When the go-ahead names `aegis256x4` the handshake runs with AES-256-GCM
//! and the records use AEGIS-256X4 (CFRG draft) the same way: key
//! `derive_key("ferry 2026 secure records aegis-256x4", the direction's split key)`, nonce
//! `0^24 || counter` big-endian, 16-byte tag, empty associated data. Where record boundaries fall carries no meaning: the plaintext is a
//! stream (a Ferry sender puts a chunk's header in a record of its own and seals the chunk's
//! bytes where it read them, in full records after it; a receiver opens records wherever its
//! read-ahead buffer caught them). The plaintext of a data
//! record is 1 ..= [`record::MAX_RECORD_PLAINTEXT`] (65 519) bytes; a record with an empty
//! plaintext is **close**: the writer is done. End of stream without a close record (or inside
//! a record) is [`SecureError::Truncated`]; any record that fails to authenticate is
//! [`SecureError::Tampered`]; after an error the stream stays failed.
//!
//! # Sealed notes (UDP)
//!
//! See [`note`]: `0xFF 'F' 'N' 0x01 || sender device id (16) || counter (u64 BE) ||
//! ChaCha20-Poly1305(key, nonce = 0^4 || counter, aad = the 28 header bytes, text)`.
//! A sealed datagram starts with 0xFF, which no UTF-8 text does, so plain notes stay text.

pub mod handshake;
pub mod identity;
mod lookalike;
pub mod note;
pub mod pairing;
pub mod record;
mod record_key;
pub mod rng;
pub mod trust;
mod words;

#[cfg(all(test, unix))]
mod golden;

use thiserror::Error;

pub use handshake::{
    Cipher, Handshake, Mode, PeerInfo, Transcript, accept, accept_with, connect, connect_with,
};
pub use identity::Identity;
pub use record::{SecureReader, SecureStream, SecureWriter};
pub use rng::Entropy;
pub use trust::TrustBook;

/// This device's identity and the devices it trusts: what every driver that encrypts
/// (transfers, notes) is given. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub identity: std::sync::Arc<Identity>,
    pub trust: TrustBook,
}

impl Keyring {
    /// Loads (creating on first use) the identity and the trust store kept in `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Self, SecureError> {
        Ok(Keyring {
            identity: std::sync::Arc::new(Identity::load_or_create(dir)?),
            trust: TrustBook::open(dir)?,
        })
    }
}

/// Everything that can go wrong in the secure layer. Each variant is a reason a user can be
/// told; I/O errors of the underlying stream are kept as they are.
#[derive(Debug, Error)]
pub enum SecureError {
    #[error("wrong pairing code")]
    WrongCode,
    #[error("the pairing code expired (codes last 10 minutes)")]
    CodeExpired,
    #[error("the pairing code was burnt after 3 wrong tries")]
    CodeBurnt,
    #[error("the pairing code was already used")]
    CodeUsed,
    #[error("not a pairing code: {0}")]
    BadCode(String),
    #[error(
        "device {name:?} presented a different key than the one trusted (fingerprint now {fingerprint}); refused"
    )]
    KeyChanged { name: String, fingerprint: String },
    #[error(
        "device {name:?} presented a different key than the one trusted for a name that looks the same (fingerprint now {fingerprint}); refused: if it is another device, give one of them a name of its own (Rename, on the window's Server tab)"
    )]
    LooksLikeTrusted { name: String, fingerprint: String },
    #[error("a handshake message was reflected back")]
    Reflected,
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("handshake message of {0} bytes is out of bounds")]
    MessageSize(usize),
    #[error("the connection was cut short (no close record): data may be missing")]
    Truncated,
    #[error(
        "a record failed to authenticate: the data was tampered with, replayed, reordered or dropped"
    )]
    Tampered,
    #[error("the stream already failed earlier")]
    Failed,
    #[error("sealed note refused: {0}")]
    Note(&'static str),
    #[error("identity file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("trust store {path}: {reason}")]
    TrustStore { path: String, reason: String },
    #[error("no randomness from the operating system: {0}")]
    Entropy(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SecureError {
    /// The secure-layer reason inside an `io::Error` returned by [`SecureStream`]'s `Read` or
    /// `Write`, if it is one (plain socket errors give `None`).
    pub fn from_io(error: &std::io::Error) -> Option<&SecureError> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<SecureError>())
    }

    /// Wraps this error for `Read`/`Write` (kind: `UnexpectedEof` for truncation,
    /// `InvalidData` otherwise; an `Io` error is returned unchanged).
    pub fn into_io(self) -> std::io::Error {
        match self {
            SecureError::Io(e) => e,
            SecureError::Truncated => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, self),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

impl From<snow::Error> for SecureError {
    fn from(e: snow::Error) -> Self {
        SecureError::Handshake(e.to_string())
    }
}

/// 32 bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses exactly `N` bytes of hex (either case); `None` on anything else.
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}
