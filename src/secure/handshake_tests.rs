//! Tests of [`super`] (handshake.rs): the plaintext exchanged before the handshake is bound
//! into it, so two ends that saw different bytes fail, in both modes, and say why.

use std::net::{TcpListener, TcpStream};

use super::*;
use crate::secure::rng::SeededEntropy;

const HELLO: &[u8] = br#"{"ciphers":["aesgcm","chachapoly"],"ferry":1,"kind":"secure","pairing":false,"serves_on":47123}"#;
const GO_AHEAD: &[u8] = br#"{"cipher":"aesgcm","kind":"secure"}"#;

fn code() -> PairingCode {
    PairingCode::parse("0427-otter-maple-drum").unwrap()
}

/// One handshake over loopback TCP, the sender holding `sender` and the receiver `receiver`
/// as what came before it; what each side got.
fn run(
    paired: bool,
    sender: Transcript<'static>,
    receiver: Transcript<'static>,
) -> [Result<PeerInfo, SecureError>; 2] {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let code = code();
    let accepting = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let me = Identity::from_private([2; 32], "receiver");
        let mode = if paired {
            Mode::Code(&code)
        } else {
            Mode::Open
        };
        let mut entropy = SeededEntropy::new(b"receiver");
        accept_with(tcp, &me, mode, Cipher::AesGcm, receiver, &mut entropy)
            .map(|s| s.peer().clone())
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let me = Identity::from_private([1; 32], "sender");
    let code = self::code();
    let mode = if paired {
        Mode::Code(&code)
    } else {
        Mode::Open
    };
    let mut entropy = SeededEntropy::new(b"sender");
    let sent = connect_with(tcp, &me, mode, Cipher::AesGcm, sender, &mut entropy)
        .map(|s| s.peer().clone());
    [sent, accepting.join().unwrap()]
}

fn transcript(hello: &'static [u8], go_ahead: &'static [u8]) -> Transcript<'static> {
    Transcript { hello, go_ahead }
}

#[test]
fn the_same_transcript_on_both_ends_completes_in_both_modes() {
    for paired in [false, true] {
        let both = transcript(HELLO, GO_AHEAD);
        let [sent, accepted] = run(paired, both, both);
        let (sent, accepted) = (sent.unwrap(), accepted.unwrap());
        assert_eq!((sent.name.as_str(), sent.paired), ("receiver", paired));
        assert_eq!(
            (accepted.name.as_str(), accepted.paired),
            ("sender", paired)
        );
    }
}

/// A changed port, a cipher stripped from the offer, a changed go-ahead, a change that decodes
/// the same (a space), a byte moved across the boundary between the two bodies, and nothing
/// where the other end saw a hello: each fails on both ends, with the pairing code right.
#[test]
fn different_transcripts_fail_on_both_ends_in_both_modes() {
    let forged_port: &[u8] = br#"{"ciphers":["aesgcm","chachapoly"],"ferry":1,"kind":"secure","pairing":false,"serves_on":47124}"#;
    let stripped: &[u8] =
        br#"{"ciphers":["chachapoly"],"ferry":1,"kind":"secure","pairing":false,"serves_on":47123}"#;
    let spaced: &[u8] = br#"{"ciphers":["aesgcm","chachapoly"],"ferry":1,"kind":"secure","pairing":false,"serves_on":47123} "#;
    let other_cipher: &[u8] = br#"{"cipher":"chachapoly","kind":"secure"}"#;
    let (hello_short, go_ahead_long): (&[u8], &[u8]) = (
        &HELLO[..HELLO.len() - 1],
        br#"}{"cipher":"aesgcm","kind":"secure"}"#,
    );
    let honest = transcript(HELLO, GO_AHEAD);
    let seen_by_receiver = [
        transcript(forged_port, GO_AHEAD),
        transcript(stripped, GO_AHEAD),
        transcript(spaced, GO_AHEAD),
        transcript(HELLO, other_cipher),
        transcript(hello_short, go_ahead_long),
        Transcript::default(),
    ];
    for paired in [false, true] {
        for receiver in seen_by_receiver {
            let [sent, accepted] = run(paired, honest, receiver);
            let case = format!("paired {paired}, receiver saw {receiver:?}");
            for result in [sent, accepted] {
                match result {
                    Err(SecureError::Handshake(why)) => {
                        assert!(why.contains("authenticate"), "{case}: {why}");
                        assert!(why.contains("different bytes"), "{case}: {why}");
                    }
                    other => panic!("{case}: {other:?}"),
                }
            }
        }
    }
}

/// A first message of one 0x00 byte is the answer "your message did not authenticate" in
/// the wrong place: the receiver had sent no Noise message for it to answer, so it is a
/// message that does not authenticate, not a claim about this device's handshake.
#[test]
fn a_not_authentic_answer_before_any_message_of_ours_is_no_answer() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let me = Identity::from_private([2; 32], "receiver");
        let mut entropy = SeededEntropy::new(b"receiver");
        let honest = transcript(HELLO, GO_AHEAD);
        accept_with(tcp, &me, Mode::Open, Cipher::AesGcm, honest, &mut entropy).map(|_| ())
    });
    let mut hostile = TcpStream::connect(addr).unwrap();
    hostile.write_all(&[0, 1, 0]).unwrap();
    match accepting.join().unwrap() {
        Err(SecureError::Handshake(why)) => {
            assert!(
                why.contains("the peer's handshake message did not authenticate"),
                "{why}"
            );
            assert!(!why.contains("this device's"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // The receiver still answered as it does a message that does not authenticate.
    let mut answer = [0u8; 3];
    hostile.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [0, 1, 0]);
}
