//! What `ferry send` prints while its receiver says "wait" again and again (a receiver
//! waiting for a folder's key, or hashing a kept partial, repeats `waiting` every 5 s):
//! one line per reason, not one per repetition, on the stdout scripts read, each saying
//! what the receiver waits for; and a hostile receiver alternating its reasons cannot make
//! it print a line per message. A fake receiver on 127.0.0.1 speaks the wire protocol; the
//! real binary sends.

use std::io::{Read, Write};
use std::net::TcpListener;

use ferry::protocol::{ReceiverMsg, SenderMsg, WaitFor, decode_sender_msg, encode_receiver_msg};

use crate::util::{DEADLINE, ferry};

/// Reads one frame's message off `stream`.
fn read_msg(stream: &mut impl Read) -> SenderMsg {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; ferry::protocol::decode_frame_len(prefix).unwrap()];
    stream.read_exact(&mut body).unwrap();
    decode_sender_msg(&body).unwrap()
}

/// `ferry send` of one small file to a fake receiver that answers its offer with `waiting`
/// for each of `reasons`, then declines with "no thanks": what the sender printed on stdout.
fn send_through(reasons: impl IntoIterator<Item = WaitFor>) -> String {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"alpha").unwrap();
    let mut answers = Vec::new();
    for waiting_for in reasons {
        answers.extend(encode_receiver_msg(&ReceiverMsg::Waiting { waiting_for }).unwrap());
    }
    let decline = ReceiverMsg::Decline {
        reason: "no thanks".into(),
        offer_again: false,
    };
    answers.extend(encode_receiver_msg(&decline).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        // Whatever announces the file, then the offer itself.
        while !matches!(read_msg(&mut stream), SenderMsg::Offer(_)) {}
        stream.write_all(&answers).unwrap();
        // Until the sender closes.
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let out = ferry()
        .args(["send", "--no-encryption", "--to", &addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    receiver.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("no thanks"), "{stdout}");
    stdout
}

#[test]
fn a_receiver_repeating_waiting_is_announced_once() {
    use WaitFor::{Checking, Decision, EarlierCopy};
    let stdout = send_through([
        Checking,
        Checking,
        EarlierCopy,
        EarlierCopy,
        Decision,
        Decision,
        Decision,
    ]);
    // One line per reason, in the order the reasons came, each saying what it waits for.
    let said: Vec<&str> = stdout.lines().filter(|l| l.contains("waiting")).collect();
    assert_eq!(said.len(), 3, "{stdout}");
    for (line, words) in said.iter().zip([
        "the receiver checks what it kept of an earlier try",
        "an interrupted copy of this folder",
        "waiting for the receiver to accept",
    ]) {
        assert!(line.contains(words), "{line:?} lacks {words:?}: {stdout}");
    }
}

#[test]
fn a_receiver_alternating_its_waiting_reasons_gets_one_line_per_reason() {
    let reasons = [WaitFor::Checking, WaitFor::Decision, WaitFor::EarlierCopy];
    let stdout = send_through((0..300).map(|i| reasons[i % 3]));
    let said = stdout.lines().filter(|l| l.contains("waiting")).count();
    assert_eq!(said, 3, "{stdout}");
}
