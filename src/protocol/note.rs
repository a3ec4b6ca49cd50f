//! The pure part of UDP notes: the size limits, the check an outgoing note passes before it
//! is sent, and the decoding of a received datagram.
//!
//! A note is one datagram holding UTF-8 text and nothing else, so a plain peer (`nc -u`, a
//! five-line Python script) reads exactly what it was sent. Keeping the rules here, away from
//! sockets, lets the engine, the window and the CLI agree on them and lets them be tested
//! exhaustively.

/// Largest note Ferry sends, in bytes: the largest payload of one UDP datagram over IPv4
/// (65 535 minus an 8-byte UDP header and a 20-byte IP header).
pub const MAX_NOTE_BYTES: usize = 65_507;

/// Notes longer than this many bytes get a warning: plain peers typically read 1 024 bytes
/// per datagram (`recvfrom(1024)`) and silently lose the rest.
pub const PLAIN_PEER_NOTE_BYTES: usize = 1_024;

/// Why a note cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error(
        "the note is {bytes} bytes, more than the {MAX_NOTE_BYTES} bytes one UDP datagram can carry; shorten it or send it as a file"
    )]
    TooLong { bytes: usize },
}

/// Something the user should know about a note that can still be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteWarning {
    /// Longer than [`PLAIN_PEER_NOTE_BYTES`]: a plain peer may show only the beginning.
    PlainPeersTruncate { bytes: usize },
}

impl std::fmt::Display for NoteWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PlainPeersTruncate { bytes } => write!(
                f,
                "the note is {bytes} bytes; plain peers that read {PLAIN_PEER_NOTE_BYTES} bytes per datagram will show only the beginning"
            ),
        }
    }
}

/// Checks an outgoing note: `Err` when it cannot be sent at all, `Ok(Some(_))` when it can
/// but the user should be warned, `Ok(None)` when all is well. Sizes are UTF-8 bytes.
pub fn check_note(text: &str) -> Result<Option<NoteWarning>, NoteError> {
    let bytes = text.len();
    if bytes > MAX_NOTE_BYTES {
        Err(NoteError::TooLong { bytes })
    } else if bytes > PLAIN_PEER_NOTE_BYTES {
        Ok(Some(NoteWarning::PlainPeersTruncate { bytes }))
    } else {
        Ok(None)
    }
}

/// The text of a received datagram. Invalid UTF-8 is never dropped: each invalid sequence
/// becomes U+FFFD, so the user still sees that something arrived and most of what it said.
pub fn decode_note(datagram: &[u8]) -> String {
    String::from_utf8_lossy(datagram).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn limits_at_their_boundaries() {
        assert_eq!(check_note(""), Ok(None));
        assert_eq!(check_note(&"a".repeat(PLAIN_PEER_NOTE_BYTES)), Ok(None));
        assert_eq!(
            check_note(&"a".repeat(PLAIN_PEER_NOTE_BYTES + 1)),
            Ok(Some(NoteWarning::PlainPeersTruncate {
                bytes: PLAIN_PEER_NOTE_BYTES + 1
            }))
        );
        assert_eq!(
            check_note(&"a".repeat(MAX_NOTE_BYTES)),
            Ok(Some(NoteWarning::PlainPeersTruncate {
                bytes: MAX_NOTE_BYTES
            }))
        );
        assert_eq!(
            check_note(&"a".repeat(MAX_NOTE_BYTES + 1)),
            Err(NoteError::TooLong {
                bytes: MAX_NOTE_BYTES + 1
            })
        );
    }

    #[test]
    fn sizes_are_utf8_bytes_not_characters() {
        // 342 characters of 3 bytes each: 1 026 bytes.
        let text = "好".repeat(342);
        assert_eq!(
            check_note(&text),
            Ok(Some(NoteWarning::PlainPeersTruncate { bytes: 1_026 }))
        );
    }

    #[test]
    fn messages_name_the_numbers() {
        let err = check_note(&"a".repeat(70_000)).unwrap_err().to_string();
        assert!(
            err.contains("70000 bytes") && err.contains("65507"),
            "{err}"
        );
        let warning = NoteWarning::PlainPeersTruncate { bytes: 2_000 }.to_string();
        assert!(
            warning.contains("2000 bytes") && warning.contains("1024"),
            "{warning}"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(decode_note(b"caf\xe9 ok"), "caf\u{FFFD} ok");
        assert_eq!(decode_note(b"\xff\xfe"), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode_note(b""), "");
        assert_eq!(decode_note("你好".as_bytes()), "你好");
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
            ..ProptestConfig::default()
        })]
        #[test]
        fn valid_text_round_trips(text in ".*") {
            prop_assert_eq!(decode_note(text.as_bytes()), text);
        }

        #[test]
        fn any_datagram_decodes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let text = decode_note(&bytes);
            if let Ok(valid) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(text, valid);
            } else {
                prop_assert!(text.contains(char::REPLACEMENT_CHARACTER), "{:?} lost its invalid bytes", text);
            }
        }
    }
}
