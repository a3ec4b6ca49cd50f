//! Fuzz target: a received UDP datagram decoded as a note, and the outgoing-note check.
//!
//! A datagram is never dropped: valid UTF-8 comes back unchanged, anything else still comes
//! back with U+FFFD in place of the invalid bytes. `check_note` agrees with the byte limits.

#![no_main]

use ferry_fuzz::protocol::{
    MAX_NOTE_BYTES, NoteError, NoteWarning, PLAIN_PEER_NOTE_BYTES, check_note, decode_note,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let text = decode_note(datagram);
    match std::str::from_utf8(datagram) {
        Ok(valid) => assert_eq!(text, valid),
        Err(_) => assert!(text.contains(char::REPLACEMENT_CHARACTER), "{text:?}"),
    }
    let bytes = text.len();
    match check_note(&text) {
        Ok(None) => assert!(bytes <= PLAIN_PEER_NOTE_BYTES),
        Ok(Some(NoteWarning::PlainPeersTruncate { bytes: b })) => {
            assert!(b == bytes && bytes > PLAIN_PEER_NOTE_BYTES && bytes <= MAX_NOTE_BYTES)
        }
        Err(NoteError::TooLong { bytes: b }) => assert!(b == bytes && bytes > MAX_NOTE_BYTES),
    }
});
