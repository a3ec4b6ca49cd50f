//! Unit tests of the frame messages' encoding and decoding (apart from `message.rs` to keep it short).

use super::*;

/// The port a sender's own server listens on, when it says (1-65535 only); a hello
/// without it decodes as before (see `golden_secure_hello_and_go_ahead`).
#[test]
fn a_secure_hello_may_say_where_the_senders_server_listens() {
    let told = encode_sender_msg(&SenderMsg::Secure {
        pairing: false,
        ciphers: vec![],
        serves_on: Some(47_123),
    })
    .unwrap();
    assert!(matches!(
        decode_sender_msg(&told[4..]).unwrap(),
        SenderMsg::Secure {
            serves_on: Some(47_123),
            ..
        }
    ));
    for bad in ["0", "65536", "-1", "\"8080\"", "1.5"] {
        let body = format!(r#"{{"ferry":1,"kind":"secure","serves_on":{bad}}}"#);
        assert!(decode_sender_msg(body.as_bytes()).is_err(), "{bad}");
    }
}
