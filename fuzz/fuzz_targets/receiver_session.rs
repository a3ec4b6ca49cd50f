//! Fuzz target: a receiver session driven by an arbitrary sequence of what a peer can send
//! (frames decoded from the input's own bytes, chunk headers, data counts) and what the
//! driver can decide (accept, decline, consent, and for folders accept_folder and
//! folder_consent), in any order. Folder frames (`folder`, `file`, `folder_end`) come from
//! the decoded bodies like every other frame, and so do eager offers (the session takes
//! eager files of up to 64 bytes, so both the refusals and a declined file's dropped data
//! are reached).
//!
//! Invariants: nothing panics; data is only ever counted where the session said it may be
//! read, never beyond it; once a step fails the session expects nothing more; the bytes
//! received never exceed the file's size.

#![no_main]

use ferry_fuzz::protocol::session::{Expect, ReceiverSession};
use ferry_fuzz::protocol::{Header, decode_chunk_header, decode_sender_msg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = ReceiverSession::new(16);
    session.take_eager(64);
    let mut rest = data;
    let mut broken = false;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let ok = match op % 9 {
            0 => {
                // A frame body of up to 255 bytes taken from the input.
                let len = rest.first().copied().unwrap_or(0) as usize;
                let body = rest.get(1..1 + len.min(rest.len().saturating_sub(1))).unwrap_or(&[]);
                rest = &rest[(1 + body.len()).min(rest.len())..];
                match decode_sender_msg(body) {
                    Ok(msg) => session.on_frame(msg).is_ok(),
                    Err(_) => true,
                }
            }
            1 => {
                let Some(prefix) = rest.get(..4) else { break };
                let prefix: [u8; 4] = [prefix[0], prefix[1], prefix[2], prefix[3]];
                rest = &rest[4..];
                match decode_chunk_header(prefix) {
                    Ok(chunk) => session.on_chunk_header(chunk).is_ok(),
                    Err(_) => true,
                }
            }
            2 => {
                let n = u64::from(rest.first().copied().unwrap_or(0));
                rest = rest.get(1..).unwrap_or(&[]);
                let allowed = match session.expect() {
                    Expect::Data(max) => n <= max,
                    Expect::ChunkHeader | Expect::DataComplete => n == 0,
                    _ => false,
                };
                let ok = session.on_data(n).is_ok();
                assert_eq!(ok, allowed, "data counted where it may not be read");
                ok
            }
            3 => session.data_complete([op; 32]).is_ok(),
            4 => {
                let offset = u64::from(rest.first().copied().unwrap_or(0));
                rest = rest.get(1..).unwrap_or(&[]);
                let prefix = (offset > 0).then_some([1; 32]);
                session.accept(offset, "x".into(), prefix).is_ok()
            }
            5 => session.decline("no".into(), op % 2 == 0).is_ok(),
            // Folders: the decision on an announced folder.
            6 => session.accept_folder("f".into()).is_ok(),
            7 => {
                let _ = session.folder_consent(op % 2 == 0);
                true
            }
            _ => {
                let header = Header {
                    file_name: "x".into(),
                    file_size: u64::from(op),
                    msg: String::new(),
                    resume_key: None,
                    eager: false,
                };
                let _ = session.consent(&header, op % 2 == 0);
                true
            }
        };
        if !ok {
            broken = true;
        }
        if broken {
            assert_eq!(session.expect(), Expect::Nothing, "a failed session goes on");
        }
    }
});
