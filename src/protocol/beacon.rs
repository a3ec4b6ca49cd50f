//! The discovery beacon: the small JSON datagram a Ferry device sends on the discovery port to
//! say "I am here" (or "goodbye", or "who is there?"). Pure encoding and decoding with bounds,
//! kept apart from the sockets (`crate::discovery`) so that hostile input can be tested and
//! fuzzed without a network.
//!
//! # Format (one UDP datagram, at most [`MAX_BEACON_BYTES`])
//!
//! ```text
//! {"ferry_beacon":1,"id":"<32 hex>","name":"..","fingerprint":"six words ..","os":"linux",
//!  "tcp_port":8080,"udp_port":0,"bye":false,"query":false,"sent_to":"multicast"}
//! ```
//!
//! - `ferry_beacon`: the beacon version, [`BEACON_VERSION`]; a datagram with another version
//!   (or without the field) is not a beacon of ours and is ignored.
//! - `id`: the device id (32 lowercase hex digits, see `secure::identity::device_id`).
//! - `name` (at most [`MAX_BEACON_NAME_BYTES`] bytes), `fingerprint` and `os` are hostile text:
//!   callers escape them before showing them. They are hints only: identity is proven by the
//!   secure handshake, never by a beacon.
//! - `tcp_port`: where the device receives files; 0 means it only browses (`ferry peers`) and is
//!   not listed. `udp_port`: where it listens for notes, 0 if it does not.
//! - `bye`: the device is leaving; remove it at once. `query`: "please answer": a device that
//!   receives a query replies with a unicast beacon to the datagram's source.
//! - `sent_to`: how the sender addressed this copy (`multicast`, `broadcast` or `unicast`), so a
//!   receiver can tell which paths work (for `ferry doctor`). Absent means unicast.
//!
//! Unknown fields are ignored so later versions can add some.

use serde::{Deserialize, Serialize};

use super::clip;

/// The beacon version this build speaks.
pub const BEACON_VERSION: u32 = 1;

/// The largest datagram accepted as a beacon, and the largest one ever sent.
pub const MAX_BEACON_BYTES: usize = 1_024;

/// The longest name a beacon may carry, in UTF-8 bytes (the device name limit of the secure
/// layer).
pub const MAX_BEACON_NAME_BYTES: usize = 64;

/// Longest fingerprint and OS strings accepted.
const MAX_FINGERPRINT_BYTES: usize = 128;
const MAX_OS_BYTES: usize = 32;

/// How a copy of a beacon was addressed by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SentTo {
    Multicast,
    Broadcast,
    #[default]
    Unicast,
}

impl SentTo {
    pub fn as_str(self) -> &'static str {
        match self {
            SentTo::Multicast => "multicast",
            SentTo::Broadcast => "broadcast",
            SentTo::Unicast => "unicast",
        }
    }
}

/// One beacon, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub ferry_beacon: u32,
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub os: String,
    pub tcp_port: u16,
    pub udp_port: u16,
    #[serde(default)]
    pub bye: bool,
    #[serde(default)]
    pub query: bool,
    #[serde(default)]
    pub sent_to: SentTo,
}

/// Why a datagram is not a usable beacon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    #[error("beacon of {0} bytes is larger than {MAX_BEACON_BYTES}")]
    TooLarge(usize),
    #[error("not a beacon: {0}")]
    NotJson(String),
    #[error("beacon version {0} is not {BEACON_VERSION}")]
    Version(u32),
    #[error("beacon field {0} is out of bounds")]
    Field(&'static str),
}

impl Beacon {
    /// A hello beacon (not a goodbye, not a query), addressed by unicast.
    pub fn hello(id: &str, name: &str, fingerprint: &str, tcp_port: u16, udp_port: u16) -> Self {
        Beacon {
            ferry_beacon: BEACON_VERSION,
            id: id.to_owned(),
            name: clip(name, MAX_BEACON_NAME_BYTES),
            fingerprint: clip(fingerprint, MAX_FINGERPRINT_BYTES),
            os: std::env::consts::OS.to_owned(),
            tcp_port,
            udp_port,
            bye: false,
            query: false,
            sent_to: SentTo::Unicast,
        }
    }

    /// The datagram for this beacon. Fields are clipped on construction, so the result is
    /// always within [`MAX_BEACON_BYTES`] (checked again here: an oversized beacon is an error,
    /// never sent).
    pub fn encode(&self) -> Result<Vec<u8>, BeaconError> {
        self.check()?;
        let bytes = serde_json::to_vec(self).map_err(|e| BeaconError::NotJson(e.to_string()))?;
        if bytes.len() > MAX_BEACON_BYTES {
            return Err(BeaconError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes a received datagram: size first (before parsing), then JSON, version and field
    /// bounds. Never panics.
    pub fn decode(datagram: &[u8]) -> Result<Beacon, BeaconError> {
        if datagram.len() > MAX_BEACON_BYTES {
            return Err(BeaconError::TooLarge(datagram.len()));
        }
        // Look at the version before the rest, so a later format is "another version", not
        // "bad JSON".
        #[derive(Deserialize)]
        struct Version {
            ferry_beacon: u32,
        }
        let version: Version =
            serde_json::from_slice(datagram).map_err(|e| BeaconError::NotJson(e.to_string()))?;
        if version.ferry_beacon != BEACON_VERSION {
            return Err(BeaconError::Version(version.ferry_beacon));
        }
        let beacon: Beacon =
            serde_json::from_slice(datagram).map_err(|e| BeaconError::NotJson(e.to_string()))?;
        beacon.check()?;
        Ok(beacon)
    }

    fn check(&self) -> Result<(), BeaconError> {
        let id_ok = self.id.len() == 32
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok {
            return Err(BeaconError::Field("id"));
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_BEACON_NAME_BYTES {
            return Err(BeaconError::Field("name"));
        }
        if self.fingerprint.len() > MAX_FINGERPRINT_BYTES {
            return Err(BeaconError::Field("fingerprint"));
        }
        if self.os.len() > MAX_OS_BYTES {
            return Err(BeaconError::Field("os"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    fn sample() -> Beacon {
        let mut beacon = Beacon::hello(ID, "desk", "apple banana cherry delta echo fox", 8080, 0);
        beacon.os = "linux".into();
        beacon.sent_to = SentTo::Multicast;
        beacon
    }

    /// The exact bytes on the wire: other implementations can be written against this.
    #[test]
    fn golden_hello() {
        let bytes = sample().encode().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"ferry_beacon":1,"id":"00112233445566778899aabbccddeeff","name":"desk","fingerprint":"apple banana cherry delta echo fox","os":"linux","tcp_port":8080,"udp_port":0,"bye":false,"query":false,"sent_to":"multicast"}"#
        );
    }

    #[test]
    fn golden_decode_of_a_minimal_goodbye_without_optional_fields() {
        let text = r#"{"ferry_beacon":1,"id":"00112233445566778899aabbccddeeff","name":"desk","fingerprint":"","os":"linux","tcp_port":1,"udp_port":2,"bye":true,"extra":[1,2]}"#;
        let beacon = Beacon::decode(text.as_bytes()).unwrap();
        assert!(beacon.bye);
        assert!(!beacon.query);
        assert_eq!(beacon.sent_to, SentTo::Unicast);
        assert_eq!((beacon.tcp_port, beacon.udp_port), (1, 2));
    }

    #[test]
    fn round_trip() {
        let beacon = sample();
        assert_eq!(Beacon::decode(&beacon.encode().unwrap()).unwrap(), beacon);
    }

    #[test]
    fn another_version_is_refused_as_such() {
        let text = sample()
            .encode()
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap()
            .replace("\"ferry_beacon\":1", "\"ferry_beacon\":2");
        assert_eq!(
            Beacon::decode(text.as_bytes()),
            Err(BeaconError::Version(2))
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut upper = sample();
        upper.id = ID.to_uppercase();
        assert_eq!(upper.encode(), Err(BeaconError::Field("id")));
        let mut blank = sample();
        blank.name = "  ".into();
        assert_eq!(blank.encode(), Err(BeaconError::Field("name")));
        let mut long = sample();
        long.name = "x".repeat(MAX_BEACON_NAME_BYTES + 1);
        assert_eq!(long.encode(), Err(BeaconError::Field("name")));
        assert!(matches!(
            Beacon::decode(br#"{"ferry_beacon":1,"id":"00112233445566778899aabbccddeeff","name":"a","fingerprint":"","os":"linux","tcp_port":70000,"udp_port":0}"#),
            Err(BeaconError::NotJson(_))
        ));
    }

    #[test]
    fn oversized_datagrams_are_refused_before_parsing() {
        let big = vec![b' '; MAX_BEACON_BYTES + 1];
        assert_eq!(
            Beacon::decode(&big),
            Err(BeaconError::TooLarge(MAX_BEACON_BYTES + 1))
        );
    }

    #[test]
    fn hello_clips_long_names_at_a_character_boundary() {
        let beacon = Beacon::hello(ID, &"界".repeat(40), "f", 1, 0);
        assert!(beacon.name.len() <= MAX_BEACON_NAME_BYTES);
        assert!(beacon.encode().is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Beacon::decode(&bytes);
        }

        #[test]
        fn decoded_beacons_are_bounded(name in ".{0,100}", fp in ".{0,200}", os in ".{0,50}", port in any::<u16>()) {
            let json = serde_json::json!({
                "ferry_beacon": 1, "id": ID, "name": name, "fingerprint": fp, "os": os,
                "tcp_port": port, "udp_port": port,
            });
            if let Ok(beacon) = Beacon::decode(json.to_string().as_bytes()) {
                prop_assert!(beacon.name.len() <= MAX_BEACON_NAME_BYTES);
                prop_assert!(!beacon.name.trim().is_empty());
                prop_assert!(beacon.fingerprint.len() <= MAX_FINGERPRINT_BYTES);
                prop_assert!(beacon.os.len() <= MAX_OS_BYTES);
                // Encoding again never yields an oversized datagram.
                if let Ok(bytes) = beacon.encode() {
                    prop_assert!(bytes.len() <= MAX_BEACON_BYTES);
                }
            }
        }
    }
}
