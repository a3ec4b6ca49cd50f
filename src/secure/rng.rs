//! Randomness, injectable: the operating system's in production, a fixed seed in tests, so the
//! handshake and sealed-note golden vectors are fixed bytes.
//!
//! Each handshake draws one 32-byte seed from an [`Entropy`] and expands it with BLAKE3 in XOF
//! mode keyed by `derive_key("ferry 2025 secure v1 rng", seed)`; that stream feeds both the
//! SPAKE2 scalar and the Noise ephemeral key. With an OS seed this is a 256-bit-keyed CSPRNG.

use super::SecureError;

/// A source of random bytes.
pub trait Entropy {
    /// Fills `dest` entirely.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), SecureError>;
}

/// The operating system's randomness (getrandom).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), SecureError> {
        getrandom::fill(dest).map_err(|e| SecureError::Entropy(e.to_string()))
    }
}

/// A deterministic stream from a seed: for tests and golden vectors only (never for real
/// keys, since anyone who knows the seed knows the keys).
pub struct SeededEntropy(blake3::OutputReader);

impl SeededEntropy {
    pub fn new(seed: &[u8]) -> Self {
        let key = blake3::derive_key("ferry 2025 secure v1 rng", seed);
        SeededEntropy(blake3::Hasher::new_keyed(&key).finalize_xof())
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), SecureError> {
        self.0.fill(dest);
        Ok(())
    }
}

/// The per-handshake stream, usable as a `rand_core` 0.6 RNG (for SPAKE2) and as snow's
/// `Random` (for the Noise ephemeral key).
pub(crate) struct Stream(blake3::OutputReader);

impl Stream {
    pub(crate) fn from_entropy(entropy: &mut dyn Entropy) -> Result<Self, SecureError> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed)?;
        Ok(Stream(SeededEntropy::new(&seed).0))
    }
}

impl rand_core::RngCore for Stream {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

// The stream is a BLAKE3 XOF keyed with 256 bits of OS randomness in production.
impl rand_core::CryptoRng for Stream {}

impl snow::types::Random for Stream {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}
