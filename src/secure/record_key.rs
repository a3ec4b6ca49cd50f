//! The records' cipher: one direction's key of Noise's transport phase, applied in the
//! caller's buffer.
//!
//! Exactly Noise's `CipherState` for transport messages (Noise spec, sections 5.1 and 12):
//! AEAD with empty associated data and nonce `0^32 || n`, `n` the 64-bit record counter,
//! big-endian for AES-256-GCM and little-endian for ChaCha20-Poly1305; the counter 2^64 - 1
//! is never used. snow implements the same (the tests check records both ways); this one
//! keeps the tag apart and seals in place, and opens in place or from the bytes read ahead
//! straight into the caller's buffer, so a record's bytes are neither copied nor staged on
//! their way between the socket and the caller's buffer.
//!
//! AES-256-GCM and ChaCha20-Poly1305 are aws-lc's (through `aws-lc-rs`): on this project's
//! reference machine its AES-256-GCM (VAES with AVX-512) sealed about 22 GB/s on one core
//! against ring's 10 GB/s (10.7 GB/s on the host of 2026-11-30: the host's CPU sets it),
//! which is most of what encryption costs a transfer (issue 14). Its key schedule lives in
//! memory aws-lc wipes when it is freed, so a dropped `RecordKey` leaves no key behind.
//!
//! Between two CPUs with AES instructions the records use AEGIS-256X4 instead (the CFRG
//! draft's AEAD, crate `aegis`, libaegis): about 25 GB/s on the host of 2026-11-30, 2-3x
//! AES-256-GCM, so each end of a transfer spends about 0.07 s less per GiB. Not a Noise
//! cipher, so it is applied the same way with its own parameters: the key is
//! `BLAKE3 derive_key("ferry 2026 secure records aegis-256x4", the split key)` (the split
//! key is never used with another algorithm), the nonce is `0^24 || n` big-endian (32 bytes),
//! the tag 16 bytes, no associated data. The derived key is kept in memory wiped on drop
//! (as the split key is once it is derived). Less than aws-lc's: each record's call copies
//! it into the crate's `Aegis256X4` value (plain `Copy` data) and libaegis expands it on the
//! C stack, and neither is wiped; the next record's call overwrites that stack, but the
//! last one's copy may stay there until the thread's stack is reused.

use aegis::aegis256x4::Aegis256X4;
use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use super::SecureError;
use super::handshake::Cipher;

/// The AEAD tag at the end of every record.
pub const TAG_LEN: usize = 16;

/// What derives an AEGIS record key from Noise's split key.
const AEGIS_KEY_CONTEXT: &str = "ferry 2026 secure records aegis-256x4";

/// One direction's key.
pub(crate) enum RecordKey {
    /// AES-256-GCM (the nonce's counter big-endian) or ChaCha20-Poly1305 (little-endian).
    AwsLc {
        key: LessSafeKey,
        little_endian: bool,
    },
    /// AEGIS-256X4's key, derived from the split key.
    Aegis(Zeroizing<[u8; 32]>),
}

impl RecordKey {
    /// `raw` is wiped once the key schedule is made.
    pub(crate) fn new(cipher: Cipher, raw: &mut [u8; 32]) -> Result<Self, SecureError> {
        let algorithm = match cipher {
            Cipher::AesGcm => &AES_256_GCM,
            Cipher::ChaChaPoly => &CHACHA20_POLY1305,
            Cipher::Aegis => {
                let key = Zeroizing::new(blake3::derive_key(AEGIS_KEY_CONTEXT, raw.as_slice()));
                raw.zeroize();
                return Ok(RecordKey::Aegis(key));
            }
        };
        let key = UnboundKey::new(algorithm, raw.as_slice());
        raw.zeroize();
        let key = key.map_err(|_| SecureError::Handshake("cannot make the record key".into()))?;
        Ok(RecordKey::AwsLc {
            key: LessSafeKey::new(key),
            little_endian: cipher == Cipher::ChaChaPoly,
        })
    }

    /// The counter as Noise would use it: 2^64 - 1 is reserved (records of at least 16 bytes
    /// will never come near it).
    fn checked(counter: u64) -> Result<u64, SecureError> {
        match counter {
            u64::MAX => Err(SecureError::Failed),
            counter => Ok(counter),
        }
    }

    /// aws-lc's nonce for record `counter`: `0^32 || counter` in the cipher's byte order.
    fn nonce(little_endian: bool, counter: u64) -> Result<Nonce, SecureError> {
        let counter = Self::checked(counter)?;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&match little_endian {
            true => counter.to_le_bytes(),
            false => counter.to_be_bytes(),
        });
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// AEGIS-256X4 for record `counter` under `key`.
    fn aegis(key: &[u8; 32], counter: u64) -> Result<Aegis256X4<TAG_LEN>, SecureError> {
        let mut nonce = [0u8; 32];
        nonce[24..].copy_from_slice(&Self::checked(counter)?.to_be_bytes());
        Ok(Aegis256X4::new(key, &nonce))
    }

    /// Encrypts `in_out` in place as record number `counter`; returns its tag.
    pub(crate) fn seal(
        &self,
        counter: u64,
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SecureError> {
        let (key, little_endian) = match self {
            RecordKey::Aegis(key) => {
                return Ok(Self::aegis(key, counter)?.encrypt_in_place(in_out, &[]));
            }
            RecordKey::AwsLc { key, little_endian } => (key, *little_endian),
        };
        let tag = key
            .seal_in_place_separate_tag(Self::nonce(little_endian, counter)?, Aad::empty(), in_out)
            .map_err(|_| SecureError::Failed)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts record number `counter` in place, if `tag` proves it untouched; `in_out` is
    /// garbage otherwise.
    pub(crate) fn open(
        &self,
        counter: u64,
        in_out: &mut [u8],
        tag: [u8; TAG_LEN],
    ) -> Result<(), SecureError> {
        let opened = match self {
            RecordKey::Aegis(key) => Self::aegis(key, counter)?
                .decrypt_in_place(in_out, &tag, &[])
                .is_ok(),
            RecordKey::AwsLc { key, little_endian } => {
                let nonce = Self::nonce(*little_endian, counter)?;
                key.open_in_place_separate_tag(nonce, Aad::empty(), &tag, in_out)
                    .is_ok()
            }
        };
        opened.then_some(()).ok_or(SecureError::Tampered)
    }

    /// Decrypts record number `counter` from `ciphertext` into `out` (of the same length), if
    /// `tag` proves it untouched; `out` is zeroed otherwise, so no unauthenticated byte stays
    /// in the caller's buffer (aws-lc zeroes it as well; this side does not rely on that).
    pub(crate) fn open_into(
        &self,
        counter: u64,
        ciphertext: &[u8],
        tag: [u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), SecureError> {
        let (key, little_endian) = match self {
            RecordKey::Aegis(key) => {
                if out.len() != ciphertext.len() {
                    return Err(SecureError::Failed);
                }
                // One update of the whole record: the library erases `out` if the tag fails.
                let aegis = Self::aegis(key, counter)?;
                let opened = {
                    let mut opening = aegis.decryptor(&[], &mut *out);
                    opening.update(ciphertext).is_ok() && opening.finalize(&tag).is_ok()
                };
                if !opened {
                    out.fill(0);
                }
                return opened.then_some(()).ok_or(SecureError::Tampered);
            }
            RecordKey::AwsLc { key, little_endian } => (key, *little_endian),
        };
        let nonce = Self::nonce(little_endian, counter)?;
        let opened = key.open_separate_gather(nonce, Aad::empty(), ciphertext, &tag, out);
        opened.map_err(|_| {
            out.fill(0);
            SecureError::Tampered
        })
    }
}

/// Both directions' keys of one session.
pub(crate) struct TransportKeys {
    pub send: RecordKey,
    pub recv: RecordKey,
}

impl TransportKeys {
    /// From Noise's split: the first key is the initiator's (the sender's) sending key. Both
    /// are wiped.
    pub(crate) fn from_split(
        cipher: Cipher,
        initiator: bool,
        (first, second): (&mut [u8; 32], &mut [u8; 32]),
    ) -> Result<Self, SecureError> {
        let (send, recv) = if initiator {
            (first, second)
        } else {
            (second, first)
        };
        let send = RecordKey::new(cipher, send);
        let recv = RecordKey::new(cipher, recv);
        Ok(TransportKeys {
            send: send?,
            recv: recv?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snow::Builder;

    /// A finished Noise handshake between two snow states: each side's raw split and its
    /// transport state (snow's own record cipher, the reference).
    fn noise_pair(cipher: Cipher) -> [([u8; 32], [u8; 32], snow::StatelessTransportState); 2] {
        let params = match cipher {
            Cipher::AesGcm | Cipher::Aegis => "Noise_NN_25519_AESGCM_BLAKE2s",
            Cipher::ChaChaPoly => "Noise_NN_25519_ChaChaPoly_BLAKE2s",
        };
        let mut i = Builder::new(params.parse().unwrap())
            .build_initiator()
            .unwrap();
        let mut r = Builder::new(params.parse().unwrap())
            .build_responder()
            .unwrap();
        let (mut msg, mut payload) = ([0u8; 1024], [0u8; 1024]);
        let n = i.write_message(&[], &mut msg).unwrap();
        r.read_message(&msg[..n], &mut payload).unwrap();
        let n = r.write_message(&[], &mut msg).unwrap();
        i.read_message(&msg[..n], &mut payload).unwrap();
        [i, r].map(|mut state| {
            let (a, b) = state.dangerously_get_raw_split();
            (a, b, state.into_stateless_transport_mode().unwrap())
        })
    }

    /// Records sealed by snow open with ours and the other way round, both ciphers, both
    /// directions, at counters whose byte order matters.
    #[test]
    fn records_match_snow_both_ways() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            let [(mut a1, mut a2, snow_i), (mut b1, mut b2, snow_r)] = noise_pair(cipher);
            let ours_i = TransportKeys::from_split(cipher, true, (&mut a1, &mut a2)).unwrap();
            let ours_r = TransportKeys::from_split(cipher, false, (&mut b1, &mut b2)).unwrap();
            assert_eq!(a1, [0; 32], "the raw keys are wiped");
            for counter in [0u64, 1, 255, 256, 1 << 32, (1 << 40) + 7] {
                let text = format!("record {counter} of {cipher:?}");
                let mut wire = [0u8; 256];
                // snow's initiator -> our responder.
                let n = snow_i
                    .write_message(counter, text.as_bytes(), &mut wire)
                    .unwrap();
                let (body, tag) = wire[..n].split_at_mut(n - TAG_LEN);
                // Opened from where it lies into another buffer, then in place.
                let mut into = vec![0u8; body.len()];
                let tag: [u8; TAG_LEN] = (&*tag).try_into().unwrap();
                ours_r
                    .recv
                    .open_into(counter, body, tag, &mut into)
                    .unwrap();
                assert_eq!(into, text.as_bytes());
                ours_r.recv.open(counter, body, tag).unwrap();
                assert_eq!(body, text.as_bytes());
                // Our responder -> snow's initiator.
                let mut body = text.clone().into_bytes();
                let tag = ours_r.send.seal(counter, &mut body).unwrap();
                body.extend_from_slice(&tag);
                let mut out = [0u8; 256];
                let m = snow_i.read_message(counter, &body, &mut out).unwrap();
                assert_eq!(&out[..m], text.as_bytes());
                // Our initiator -> snow's responder.
                let mut body = text.clone().into_bytes();
                let tag = ours_i.send.seal(counter, &mut body).unwrap();
                body.extend_from_slice(&tag);
                let m = snow_r.read_message(counter, &body, &mut out).unwrap();
                assert_eq!(&out[..m], text.as_bytes());
            }
        }
    }

    /// AEGIS records are the CFRG draft's AEGIS-256X4 (the library checked against the draft's
    /// test vector 2), under `derive_key(context, split key)` with nonce `0^24 || n`
    /// big-endian, as the module documentation says: computed here from those words alone.
    #[test]
    fn aegis_records_are_the_drafts_aegis_256x4_under_the_derived_key() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: [u8; 32] = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .try_into()
            .unwrap();
        let nonce: [u8; 32] =
            hex("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f")
                .try_into()
                .unwrap();
        let mut text = hex(&"04050607".repeat(30));
        let tag = Aegis256X4::<16>::new(&key, &nonce)
            .encrypt_in_place(&mut text, &hex("0102030401020304"));
        assert_eq!(
            text,
            hex(concat!(
                "bfc2085b7e8017da99b0b6d646ae4d01f4ba8f2e7dfca1d759ae48a135139b9a",
                "aac6b4f5db810d426be1fdaff4e1454153a34b11da78ed7e418ee2ee9853042e",
                "95536aecbb694cea1b16a478eb0d4d1bf6509b1ce652a45af58e0e46ffccfa2d",
                "0426e702391d2ff5813808b81748a490dd656465fed61f09"
            ))
        );
        assert_eq!(tag.to_vec(), hex("b63b611b13975e2f3dc3cb6c2397bfcd"));

        let split = [0x5Au8; 32];
        let derived = blake3::derive_key("ferry 2026 secure records aegis-256x4", &split);
        for counter in [0u64, 1, 256, (1 << 40) + 7] {
            let mut ours = b"a record of the stream".to_vec();
            let tag = RecordKey::new(Cipher::Aegis, &mut split.clone())
                .unwrap()
                .seal(counter, &mut ours)
                .unwrap();
            let mut nonce = [0u8; 32];
            nonce[24..].copy_from_slice(&counter.to_be_bytes());
            let mut theirs = b"a record of the stream".to_vec();
            let expected =
                Aegis256X4::<16>::new(&derived, &nonce).encrypt_in_place(&mut theirs, &[]);
            assert_eq!((ours, tag), (theirs, expected), "counter {counter}");
        }
        let mut raw = split;
        let _ = RecordKey::new(Cipher::Aegis, &mut raw).unwrap();
        assert_eq!(raw, [0; 32], "the split key is wiped");
    }

    #[test]
    fn a_wrong_counter_a_flipped_bit_or_a_wrong_tag_is_tampered() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly, Cipher::Aegis] {
            tampering_fails(cipher);
        }
    }

    fn tampering_fails(cipher: Cipher) {
        let [(mut a1, mut a2, _), (mut b1, mut b2, _)] = noise_pair(cipher);
        let i = TransportKeys::from_split(cipher, true, (&mut a1, &mut a2)).unwrap();
        let r = TransportKeys::from_split(cipher, false, (&mut b1, &mut b2)).unwrap();
        let sealed = |counter| {
            let mut body = b"some record".to_vec();
            let tag = i.send.seal(counter, &mut body).unwrap();
            (body, tag)
        };
        let (mut body, tag) = sealed(5);
        assert!(matches!(
            r.recv.open(4, &mut body, tag),
            Err(SecureError::Tampered)
        ));
        let (mut body, tag) = sealed(5);
        body[3] ^= 1;
        assert!(matches!(
            r.recv.open(5, &mut body, tag),
            Err(SecureError::Tampered)
        ));
        let (mut body, mut tag) = sealed(5);
        tag[15] ^= 0x80;
        assert!(matches!(
            r.recv.open(5, &mut body, tag),
            Err(SecureError::Tampered)
        ));
        // A key of the wrong direction opens nothing.
        let (mut body, tag) = sealed(5);
        assert!(r.send.open(5, &mut body, tag).is_err());
        // Opened into another buffer: a wrong counter or a flipped bit leaves it zeroed.
        let (body, tag) = sealed(5);
        let mut out = [0xAAu8; 11];
        assert!(r.recv.open_into(4, &body, tag, &mut out).is_err());
        assert_eq!(out, [0; 11]);
        let mut flipped = body.clone();
        flipped[0] ^= 1;
        let mut out = [0xAAu8; 11];
        assert!(r.recv.open_into(5, &flipped, tag, &mut out).is_err());
        assert_eq!(out, [0; 11]);
        r.recv.open_into(5, &body, tag, &mut out).unwrap();
        assert_eq!(&out, b"some record");
        let (mut body, tag) = sealed(5);
        r.recv.open(5, &mut body, tag).unwrap();
        assert_eq!(body, b"some record");
        // Noise reserves the last counter.
        assert!(i.send.seal(u64::MAX, &mut [0u8; 4]).is_err());
    }
}
