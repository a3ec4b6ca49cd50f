//! Review of the asking and waiting changes, from a hostile peer's side: a receiver that
//! alternates its `waiting` reasons cannot make `ferry send` print a line per message (the
//! honest receiver says each reason in one stretch, repeated every 5 s). A fake receiver on
//! 127.0.0.1 speaks the wire protocol; the real binary sends.

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

#[test]
fn a_receiver_alternating_its_waiting_reasons_gets_one_line_per_reason() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"alpha").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        while !matches!(read_msg(&mut stream), SenderMsg::Offer(_)) {}
        let mut answers = Vec::new();
        for i in 0..300 {
            let waiting_for = [WaitFor::Checking, WaitFor::Decision, WaitFor::EarlierCopy][i % 3];
            answers.extend(encode_receiver_msg(&ReceiverMsg::Waiting { waiting_for }).unwrap());
        }
        answers.extend(
            encode_receiver_msg(&ReceiverMsg::Decline {
                reason: "no thanks".into(),
            })
            .unwrap(),
        );
        stream.write_all(&answers).unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let out = ferry()
        .args(["send", "--no-encryption", "--to", &addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    receiver.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = stdout.lines().filter(|l| l.contains("waiting")).count();
    assert_eq!(said, 3, "{stdout}");
    assert!(stdout.contains("no thanks"), "{stdout}");
}
