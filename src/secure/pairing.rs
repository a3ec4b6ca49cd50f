//! Pairing codes: what the receiver shows and the sender types, e.g. `0427-otter-maple-drum`.
//!
//! A code is four digits and three words from the fixed 256-word list (10 000 * 256^3, about
//! 37 bits). It is only ever a SPAKE2 password (see the module doc of [`super`]), so an
//! eavesdropper learns nothing to guess offline, and an active attacker gets one guess per
//! try. A [`Pairing`] (the receiver's side) expires [`CODE_LIFETIME`] after it was made and
//! allows [`MAX_TRIES`] tries: every handshake started with it counts, and only a try that
//! completes the key confirmation ends the pairing (the code is then used up).

use std::time::{Duration, Instant};

use super::rng::Entropy;
use super::{SecureError, words};

/// How long a code stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How many handshakes may use one code; one more is refused as burnt.
pub const MAX_TRIES: u32 = 3;

/// A well-formed code in its normal form: `NNNN-word-word-word`, lowercase ASCII.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl std::fmt::Debug for PairingCode {
    // A code is a secret while it lives: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

impl PairingCode {
    /// A fresh random code.
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self, SecureError> {
        let number = loop {
            let mut two = [0u8; 2];
            entropy.fill(&mut two)?;
            let n = u16::from_be_bytes(two);
            // Rejection sampling keeps the 10 000 numbers equally likely.
            if n < 60_000 {
                break n % 10_000;
            }
        };
        let mut three = [0u8; 3];
        entropy.fill(&mut three)?;
        let [a, b, c] = three.map(|byte| words::WORDS[usize::from(byte)]);
        Ok(PairingCode(format!("{number:04}-{a}-{b}-{c}")))
    }

    /// Reads a typed code: any case, the parts separated by any run of spaces, dashes,
    /// underscores, dots or commas. A word not in the list is refused here, so a typo costs
    /// no try.
    pub fn parse(typed: &str) -> Result<Self, SecureError> {
        let lower = typed.to_lowercase();
        let parts: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '.' | ','))
            .filter(|p| !p.is_empty())
            .collect();
        let bad = |why: &str| SecureError::BadCode(why.to_owned());
        let [number, rest @ ..] = parts.as_slice() else {
            return Err(bad("it is empty"));
        };
        if number.len() != 4 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("it starts with 4 digits, like 0427-otter-maple-drum"));
        }
        if rest.len() != 3 {
            return Err(bad(
                "it has 4 digits and 3 words, like 0427-otter-maple-drum",
            ));
        }
        for word in rest {
            if words::index_of(word).is_none() {
                return Err(SecureError::BadCode(format!(
                    "\"{}\" is not one of the code words; check the spelling",
                    word.chars().take(20).collect::<String>()
                )));
            }
        }
        Ok(PairingCode(format!(
            "{number}-{}-{}-{}",
            rest[0], rest[1], rest[2]
        )))
    }

    /// The normal form, to show or type.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn password(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How a code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingEnd {
    /// A sender paired with it.
    Used,
    /// Its [`MAX_TRIES`] tries were spent (by anyone: each handshake that asks to pair).
    Burnt,
    /// [`CODE_LIFETIME`] passed.
    Expired,
}

/// The receiver's code and its state: tries left, expiry, used or not.
#[derive(Debug)]
pub struct Pairing {
    code: PairingCode,
    created: Instant,
    tries: u32,
    used: bool,
}

impl Pairing {
    pub fn new(code: PairingCode, now: Instant) -> Self {
        Pairing {
            code,
            created: now,
            tries: 0,
            used: false,
        }
    }

    pub fn code(&self) -> &PairingCode {
        &self.code
    }

    /// When the code stops working, unless used or burnt first.
    pub fn expires_at(&self) -> Instant {
        self.created + CODE_LIFETIME
    }

    /// Starts a try at `now`: the code to run the handshake with, or why there is none.
    /// The try counts against [`MAX_TRIES`] at once, so a peer that hangs up half-way has
    /// spent it too.
    pub fn begin_try(&mut self, now: Instant) -> Result<PairingCode, SecureError> {
        if self.used {
            return Err(SecureError::CodeUsed);
        }
        if now.saturating_duration_since(self.created) >= CODE_LIFETIME {
            return Err(SecureError::CodeExpired);
        }
        if self.tries >= MAX_TRIES {
            return Err(SecureError::CodeBurnt);
        }
        self.tries += 1;
        Ok(self.code.clone())
    }

    /// The handshake of a try succeeded: the code is used up.
    pub fn succeeded(&mut self) {
        self.used = true;
    }

    /// How the code ended by `now`, if it did: used, its tries spent, or its time up.
    pub fn ended(&self, now: Instant) -> Option<PairingEnd> {
        if self.used {
            Some(PairingEnd::Used)
        } else if now.saturating_duration_since(self.created) >= CODE_LIFETIME {
            Some(PairingEnd::Expired)
        } else {
            (self.tries >= MAX_TRIES).then_some(PairingEnd::Burnt)
        }
    }

    /// How many tries are left at `now` (0 once expired or used).
    pub fn tries_left(&self, now: Instant) -> u32 {
        if self.used || now.saturating_duration_since(self.created) >= CODE_LIFETIME {
            0
        } else {
            MAX_TRIES - self.tries
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::SeededEntropy;
    use super::*;

    #[test]
    fn generated_codes_parse_back_to_themselves_and_differ() {
        let mut entropy = SeededEntropy::new(b"codes");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let code = PairingCode::generate(&mut entropy).unwrap();
            assert_eq!(PairingCode::parse(code.as_str()).unwrap(), code);
            seen.insert(code.as_str().to_owned());
        }
        assert!(seen.len() >= 199, "codes repeat: {}", seen.len());
    }

    #[test]
    fn typed_codes_are_normalized() {
        let want = PairingCode::parse("0427-otter-maple-drum").unwrap();
        for typed in [
            "0427 Otter MAPLE drum",
            "  0427--otter - maple_drum ",
            "0427.otter.maple.drum",
        ] {
            assert_eq!(PairingCode::parse(typed).unwrap(), want, "{typed}");
        }
        assert_eq!(want.as_str(), "0427-otter-maple-drum");
    }

    #[test]
    fn malformed_codes_are_refused_with_a_reason() {
        for typed in [
            "",
            "427-otter-maple-drum",
            "0427-otter-maple",
            "0427-otter-maple-drum-fox",
            "0427-otter-mapel-drum",
            "04a7-otter-maple-drum",
            "٠٤٢٧-otter-maple-drum",
        ] {
            assert!(
                matches!(PairingCode::parse(typed), Err(SecureError::BadCode(_))),
                "{typed}"
            );
        }
    }

    #[test]
    fn three_tries_then_burnt() {
        let t0 = Instant::now();
        let mut p = Pairing::new(PairingCode::parse("0001-fox-owl-plum").unwrap(), t0);
        for left in [3, 2, 1] {
            assert_eq!(p.tries_left(t0), left);
            p.begin_try(t0).unwrap();
        }
        assert!(matches!(p.begin_try(t0), Err(SecureError::CodeBurnt)));
    }

    #[test]
    fn expires_after_ten_minutes() {
        let t0 = Instant::now();
        let mut p = Pairing::new(PairingCode::parse("0001-fox-owl-plum").unwrap(), t0);
        assert!(
            p.begin_try(t0 + CODE_LIFETIME - Duration::from_millis(1))
                .is_ok()
        );
        assert!(matches!(
            p.begin_try(t0 + CODE_LIFETIME),
            Err(SecureError::CodeExpired)
        ));
        assert_eq!(p.tries_left(t0 + CODE_LIFETIME), 0);
    }

    #[test]
    fn a_code_says_how_it_ended() {
        let t0 = Instant::now();
        let mut p = Pairing::new(PairingCode::parse("0001-fox-owl-plum").unwrap(), t0);
        assert_eq!(p.ended(t0), None);
        assert_eq!(p.ended(t0 + CODE_LIFETIME), Some(PairingEnd::Expired));
        for _ in 0..MAX_TRIES {
            p.begin_try(t0).unwrap();
        }
        assert_eq!(p.ended(t0), Some(PairingEnd::Burnt));
        p.succeeded();
        assert_eq!(p.ended(t0), Some(PairingEnd::Used));
    }

    #[test]
    fn a_used_code_cannot_be_used_again() {
        let t0 = Instant::now();
        let mut p = Pairing::new(PairingCode::parse("0001-fox-owl-plum").unwrap(), t0);
        p.begin_try(t0).unwrap();
        p.succeeded();
        assert!(matches!(p.begin_try(t0), Err(SecureError::CodeUsed)));
    }
}
