//! The handshake that turns a plain stream into a [`SecureStream`]: SPAKE2 over a pairing
//! code (when there is one), key confirmation, then Noise XXpsk3. The exact messages are in
//! the module doc of [`super`]; this file follows it step by step.

use std::io::{Read, Write};
use std::sync::Mutex;

use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher as NoiseCipher, Dh, Hash, Random};
use spake2::{Ed25519Group, Identity as SpakeId, Password, Spake2};
use subtle::ConstantTimeEq;

use super::SecureError;
use super::identity::{Identity, MAX_DEVICE_NAME_BYTES};
use super::pairing::PairingCode;
use super::record::SecureStream;
use super::record_key::TransportKeys;
use super::rng::{Entropy, Stream};

/// The Noise protocol name with ChaCha20-Poly1305, exactly (the golden vectors' cipher).
pub const NOISE_PARAMS: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// The Noise protocol name with AES-256-GCM, exactly.
pub const NOISE_PARAMS_AESGCM: &str = "Noise_XXpsk3_25519_AESGCM_BLAKE2s";

/// The AEAD of the records. All are strong; where both CPUs have AES instructions (most
/// desktops) AEGIS-256X4 is the fastest (2-3x AES-256-GCM on one core, itself about four times
/// ChaCha20-Poly1305 there), ChaCha20-Poly1305 where a CPU has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    ChaChaPoly,
    AesGcm,
    /// AEGIS-256X4 for the records; the Noise handshake itself runs with AES-256-GCM.
    Aegis,
}

impl Cipher {
    /// The name on the wire (the secure hello's `ciphers`, its go-ahead's `cipher`).
    pub fn wire_name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "chachapoly",
            Cipher::AesGcm => "aesgcm",
            Cipher::Aegis => "aegis256x4",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<Self> {
        match name {
            "chachapoly" => Some(Cipher::ChaChaPoly),
            "aesgcm" => Some(Cipher::AesGcm),
            "aegis256x4" => Some(Cipher::Aegis),
            _ => None,
        }
    }

    fn noise_params(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => NOISE_PARAMS,
            Cipher::AesGcm | Cipher::Aegis => NOISE_PARAMS_AESGCM,
        }
    }

    /// This machine's preference: AEGIS-256X4, then AES-256-GCM, when the CPU has AES
    /// instructions; ChaCha20-Poly1305 first otherwise.
    pub fn preferred() -> [Cipher; 3] {
        if hardware_aes() {
            [Cipher::Aegis, Cipher::AesGcm, Cipher::ChaChaPoly]
        } else {
            [Cipher::ChaChaPoly, Cipher::AesGcm, Cipher::Aegis]
        }
    }
}

/// Whether the CPU has AES (and carry-less multiply) instructions.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
/// The prologue's fixed part; the mode byte (in code mode both SPAKE2 messages) and the
/// [`Transcript`] follow.
pub const PROLOGUE: &[u8] = b"ferry-secure/1 initiator=sender responder=receiver mode=";
/// The largest handshake message either side sends or accepts.
pub const MAX_HANDSHAKE_MSG_LEN: usize = 1024;

const MODE_CODE: u8 = b'P';
const MODE_OPEN: u8 = b'O';
const PAKE_MSG_LEN: usize = 33;
const CONFIRM_LEN: usize = 32;
const WRONG_CODE: [u8; 1] = [0];
/// The answer to a Noise message that did not authenticate (no Noise message is 1 byte).
const NOT_AUTHENTIC: [u8; 1] = [0];
/// Why a Noise message fails to authenticate between two Ferry devices that got this far.
const DIFFERENT_VIEWS: &str = "the two ends saw different bytes before or during the handshake (changed on the way, or a Ferry that speaks another version)";
const CTX_PSK: &str = "ferry 2025 secure v1 pairing psk";
const CTX_CONFIRM_RECEIVER: &str = "ferry 2025 secure v1 confirm receiver";
const CTX_CONFIRM_SENDER: &str = "ferry 2025 secure v1 confirm sender";

/// What SPAKE2 leaves for Noise: the shared key `K`, then `pakeA` and `pakeB`.
type PakeOutcome = (Vec<u8>, Vec<u8>, Vec<u8>);

/// With or without a pairing code.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// No code: trusted devices (the caller checks the key afterwards) and first contact.
    Open,
    /// Pairing: both sides hold the same code or the handshake fails with `WrongCode`.
    Code(&'a PairingCode),
}

/// Who is on the other end, as the handshake proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's static X25519 public key (its identity).
    pub public_key: [u8; 32],
    /// The device name it sent (hostile text: escape before showing).
    pub name: String,
    /// True when the handshake ran over a pairing code that both sides held.
    pub paired: bool,
}

impl PeerInfo {
    pub fn device_id(&self) -> String {
        super::identity::device_id(&self.public_key)
    }
    pub fn fingerprint(&self) -> String {
        super::identity::fingerprint(&self.public_key)
    }
}

/// The plaintext a connection carried before its handshake, bound into the Noise prologue so
/// that a change to any of its bytes fails the handshake on both ends: the sender's secure
/// hello and the receiver's go-ahead, each the exact frame body as it was written or read
/// (without the frame's length prefix; never re-encoded). Empty for a stream that carried
/// nothing before the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The body of the sender's `{"kind":"secure",..}` frame.
    pub hello: &'a [u8],
    /// The body of the receiver's go-ahead frame.
    pub go_ahead: &'a [u8],
}

impl Transcript<'_> {
    /// What the prologue gets after its fixed parts: each body after its length
    /// (u32 big-endian), so no byte can move from one to the other unnoticed.
    fn prologue_tail(&self) -> Result<Vec<u8>, SecureError> {
        let mut tail = Vec::with_capacity(8 + self.hello.len() + self.go_ahead.len());
        for part in [self.hello, self.go_ahead] {
            let len =
                u32::try_from(part.len()).map_err(|_| SecureError::MessageSize(part.len()))?;
            tail.extend_from_slice(&len.to_be_bytes());
            tail.extend_from_slice(part);
        }
        Ok(tail)
    }
}

/// The side that connects (the sender) on a stream that carried nothing before: runs the
/// handshake as initiator, with ChaCha20-Poly1305 records and an empty [`Transcript`].
pub fn connect<S: Read + Write>(
    stream: S,
    identity: &Identity,
    mode: Mode<'_>,
    entropy: &mut dyn Entropy,
) -> Result<SecureStream<S>, SecureError> {
    let transcript = Transcript::default();
    Handshake::new(stream, identity, entropy)?.run(true, mode, Cipher::ChaChaPoly, transcript)
}

/// The side that listens (the receiver) on a stream that carried nothing before: runs the
/// handshake as responder, with ChaCha20-Poly1305 records and an empty [`Transcript`].
pub fn accept<S: Read + Write>(
    stream: S,
    identity: &Identity,
    mode: Mode<'_>,
    entropy: &mut dyn Entropy,
) -> Result<SecureStream<S>, SecureError> {
    let transcript = Transcript::default();
    Handshake::new(stream, identity, entropy)?.run(false, mode, Cipher::ChaChaPoly, transcript)
}

/// [`connect`] with the records' cipher chosen and the plaintext exchanged before the
/// handshake (both sides must use the same cipher and hold the same transcript).
pub fn connect_with<S: Read + Write>(
    stream: S,
    identity: &Identity,
    mode: Mode<'_>,
    cipher: Cipher,
    transcript: Transcript<'_>,
    entropy: &mut dyn Entropy,
) -> Result<SecureStream<S>, SecureError> {
    Handshake::new(stream, identity, entropy)?.run(true, mode, cipher, transcript)
}

/// [`accept`] with the records' cipher chosen and the plaintext exchanged before the
/// handshake (both sides must use the same cipher and hold the same transcript).
pub fn accept_with<S: Read + Write>(
    stream: S,
    identity: &Identity,
    mode: Mode<'_>,
    cipher: Cipher,
    transcript: Transcript<'_>,
    entropy: &mut dyn Entropy,
) -> Result<SecureStream<S>, SecureError> {
    Handshake::new(stream, identity, entropy)?.run(false, mode, cipher, transcript)
}

/// One handshake in progress: the stream, this device, the randomness and what was sent
/// (to recognise a reflected message).
pub struct Handshake<'a, S> {
    stream: S,
    identity: &'a Identity,
    rng: Stream,
    sent: Vec<Vec<u8>>,
}

impl<'a, S: Read + Write> Handshake<'a, S> {
    fn new(
        stream: S,
        identity: &'a Identity,
        entropy: &mut dyn Entropy,
    ) -> Result<Self, SecureError> {
        Ok(Handshake {
            stream,
            identity,
            rng: Stream::from_entropy(entropy)?,
            sent: Vec::new(),
        })
    }

    fn run(
        mut self,
        initiator: bool,
        mode: Mode<'_>,
        cipher: Cipher,
        transcript: Transcript<'_>,
    ) -> Result<SecureStream<S>, SecureError> {
        let tail = transcript.prologue_tail()?;
        let (psk, prologue) = match mode {
            Mode::Open => ([0u8; 32], [PROLOGUE, &[MODE_OPEN], &tail].concat()),
            Mode::Code(code) => {
                let (key, pake_a, pake_b) = if initiator {
                    self.pake_sender(code)?
                } else {
                    self.pake_receiver(code)?
                };
                let prologue = [PROLOGUE, &[MODE_CODE], &pake_a, &pake_b, &tail].concat();
                (blake3::derive_key(CTX_PSK, &key), prologue)
            }
        };
        self.noise(
            initiator,
            &psk,
            &prologue,
            matches!(mode, Mode::Code(_)),
            cipher,
        )
    }

    fn pake_sender(&mut self, code: &PairingCode) -> Result<PakeOutcome, SecureError> {
        let (ids_a, ids_b) = spake_ids();
        let (state, pake_a) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(code.password()),
            &ids_a,
            &ids_b,
            &mut self.rng,
        );
        self.send(&pake_a)?;
        let reply = self.recv(PAKE_MSG_LEN + CONFIRM_LEN)?;
        if reply.len() != PAKE_MSG_LEN + CONFIRM_LEN {
            return Err(SecureError::Handshake(format!(
                "pairing reply of {} bytes",
                reply.len()
            )));
        }
        let (pake_b, confirm_r) = reply.split_at(PAKE_MSG_LEN);
        let key = state.finish(pake_b).map_err(pake_error)?;
        let transcript = [pake_a.as_slice(), pake_b].concat();
        let expected = confirmation(CTX_CONFIRM_RECEIVER, &key, &transcript);
        if !bool::from(expected.ct_eq(confirm_r)) {
            // Tell the receiver, so both sides say "wrong pairing code"; ignore a send error,
            // the answer to the user is the same.
            let _ = self.send(&WRONG_CODE);
            return Err(SecureError::WrongCode);
        }
        self.send(&confirmation(CTX_CONFIRM_SENDER, &key, &transcript))?;
        Ok((key, pake_a, pake_b.to_vec()))
    }

    fn pake_receiver(&mut self, code: &PairingCode) -> Result<PakeOutcome, SecureError> {
        let pake_a = self.recv(PAKE_MSG_LEN)?;
        let (ids_a, ids_b) = spake_ids();
        let (state, pake_b) = Spake2::<Ed25519Group>::start_b_with_rng(
            &Password::new(code.password()),
            &ids_a,
            &ids_b,
            &mut self.rng,
        );
        let key = state.finish(&pake_a).map_err(pake_error)?;
        let transcript = [pake_a.as_slice(), &pake_b].concat();
        let confirm_r = confirmation(CTX_CONFIRM_RECEIVER, &key, &transcript);
        self.send(&[pake_b.as_slice(), &confirm_r].concat())?;
        let answer = self.recv(CONFIRM_LEN)?;
        if answer == WRONG_CODE {
            return Err(SecureError::WrongCode);
        }
        let expected = confirmation(CTX_CONFIRM_SENDER, &key, &transcript);
        if answer.len() != CONFIRM_LEN || !bool::from(expected.ct_eq(&answer)) {
            return Err(SecureError::WrongCode);
        }
        Ok((key, pake_a, pake_b))
    }

    fn noise(
        mut self,
        initiator: bool,
        psk: &[u8; 32],
        prologue: &[u8],
        paired: bool,
        cipher: Cipher,
    ) -> Result<SecureStream<S>, SecureError> {
        let params: NoiseParams = cipher.noise_params().parse()?;
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut self.rng, &mut seed);
        let resolver = Box::new(Resolver::new(Stream::from_entropy(
            &mut super::rng::SeededEntropy::new(&seed),
        )?));
        let builder = snow::Builder::with_resolver(params, resolver)
            .local_private_key(self.identity.private_key())?
            .psk(3, psk)?
            .prologue(prologue)?;
        let mut state = if initiator {
            builder.build_initiator()?
        } else {
            builder.build_responder()?
        };
        let mut out = vec![0u8; MAX_HANDSHAKE_MSG_LEN];
        let mut payload = vec![0u8; MAX_HANDSHAKE_MSG_LEN];
        let name = self.identity.name().as_bytes();
        let peer_name_len = if initiator {
            let n = state.write_message(&[], &mut out)?;
            self.send(&out[..n])?;
            let got = self.read_noise(&mut state, &mut payload, Reading::AnswerThatWaits)?;
            let n = state.write_message(name, &mut out)?;
            self.send(&out[..n])?;
            got
        } else {
            self.read_noise(&mut state, &mut payload, Reading::First)?;
            let n = state.write_message(name, &mut out)?;
            self.send(&out[..n])?;
            // The last message: the sender reads records next, not an answer.
            self.read_noise(&mut state, &mut payload, Reading::LastAnswer)?
        };
        if peer_name_len > MAX_DEVICE_NAME_BYTES {
            return Err(SecureError::Handshake(format!(
                "device name of {peer_name_len} bytes"
            )));
        }
        let peer_name = std::str::from_utf8(&payload[..peer_name_len])
            .map_err(|_| SecureError::Handshake("device name is not UTF-8".to_owned()))?
            .to_owned();
        if !state.is_handshake_finished() {
            return Err(SecureError::Handshake(
                "the handshake did not finish".to_owned(),
            ));
        }
        let public_key: [u8; 32] = state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| SecureError::Handshake("no static key from the peer".to_owned()))?;
        // Noise's split, applied by our own records (record_key.rs) in the callers' buffers.
        let (mut first, mut second) = state.dangerously_get_raw_split();
        let keys = TransportKeys::from_split(cipher, initiator, (&mut first, &mut second))?;
        self.stream.flush()?;
        let peer = PeerInfo {
            public_key,
            name: peer_name,
            paired,
        };
        Ok(SecureStream::new(self.stream, keys, peer))
    }

    /// Reads the peer's next Noise message into `payload` and returns the payload's length.
    /// One that does not authenticate is answered with [`NOT_AUTHENTIC`] when the peer waits
    /// for a handshake message, so it can say why too (a send error is ignored: the answer to
    /// the user is the same), and that answer from the peer is recognised where it answers a
    /// message of ours (elsewhere it is just a message that does not authenticate).
    fn read_noise(
        &mut self,
        state: &mut snow::HandshakeState,
        payload: &mut [u8],
        read: Reading,
    ) -> Result<usize, SecureError> {
        let msg = self.recv(MAX_HANDSHAKE_MSG_LEN)?;
        if msg == NOT_AUTHENTIC && read != Reading::First {
            return Err(SecureError::Handshake(format!(
                "the peer could not authenticate this device's handshake message: {DIFFERENT_VIEWS}"
            )));
        }
        state.read_message(&msg, payload).map_err(|e| {
            if read != Reading::LastAnswer {
                let _ = self.send(&NOT_AUTHENTIC);
            }
            noise_error(e)
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), SecureError> {
        let len = u16::try_from(msg.len()).map_err(|_| SecureError::MessageSize(msg.len()))?;
        let mut framed = Vec::with_capacity(2 + msg.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(msg);
        self.stream.write_all(&framed)?;
        self.stream.flush()?;
        self.sent.push(msg.to_vec());
        Ok(())
    }

    /// Reads one framed message of at most `max` bytes (checked before allocating).
    fn recv(&mut self, max: usize) -> Result<Vec<u8>, SecureError> {
        let mut len = [0u8; 2];
        self.stream.read_exact(&mut len).map_err(eof_error)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 || len > max {
            return Err(SecureError::MessageSize(len));
        }
        let mut msg = vec![0u8; len];
        self.stream.read_exact(&mut msg).map_err(eof_error)?;
        if self.sent.contains(&msg) {
            return Err(SecureError::Reflected);
        }
        Ok(msg)
    }
}

fn spake_ids() -> (SpakeId, SpakeId) {
    (
        SpakeId::new(b"ferry sender"),
        SpakeId::new(b"ferry receiver"),
    )
}

fn confirmation(context: &str, key: &[u8], transcript: &[u8]) -> [u8; 32] {
    let confirm_key = blake3::derive_key(context, key);
    *blake3::keyed_hash(&confirm_key, transcript).as_bytes()
}

fn pake_error(e: spake2::Error) -> SecureError {
    match e {
        spake2::Error::BadSide => SecureError::Reflected,
        other => SecureError::Handshake(format!("pairing message refused: {other:?}")),
    }
}

/// Which of the peer's Noise messages [`Handshake::read_noise`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The responder's first: no Noise message of ours came before it, so the peer cannot be
    /// answering one; the peer waits for ours next.
    First,
    /// An answer to a message of ours, after which the peer waits for another of ours.
    AnswerThatWaits,
    /// The answer that ends the handshake: the peer reads records next, not an answer.
    LastAnswer,
}

fn noise_error(e: snow::Error) -> SecureError {
    SecureError::Handshake(format!(
        "the peer's handshake message did not authenticate: {DIFFERENT_VIEWS} ({e})"
    ))
}

fn eof_error(e: std::io::Error) -> SecureError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        SecureError::Handshake("the peer closed the connection during the handshake".to_owned())
    } else {
        SecureError::Io(e)
    }
}

/// snow's resolver with our randomness: snow's defaults (RustCrypto) for the primitives, and
/// the handshake's own stream as the RNG (so tests get fixed ephemeral keys). The cipher's
/// speed does not matter here: snow seals only the few handshake messages, the records go
/// through [`super::record_key`] (aws-lc).
struct Resolver {
    rng: Mutex<Option<Stream>>,
    inner: DefaultResolver,
}

impl Resolver {
    fn new(rng: Stream) -> Self {
        Resolver {
            rng: Mutex::new(Some(rng)),
            inner: DefaultResolver,
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let rng = self.rng.lock().ok()?.take()?;
        Some(Box::new(rng))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        self.inner.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn NoiseCipher>> {
        self.inner.resolve_cipher(choice)
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
