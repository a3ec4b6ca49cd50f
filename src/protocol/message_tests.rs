//! Unit tests of the frame messages' encoding and decoding, apart from `message.rs` to keep
//! that file short.

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

/// An eager offer says `"eager":true` and never carries a resume key; an accept may say
/// `eager_max`, which older receivers leave out (and which decodes as none).
#[test]
fn eager_offers_and_eager_max_round_trip_and_bad_values_are_refused() {
    let header = Header {
        file_name: "a.txt".into(),
        file_size: 3,
        msg: String::new(),
        resume_key: None,
        eager: true,
    };
    let frame = encode_sender_msg(&SenderMsg::Offer(header.clone())).unwrap();
    let body = std::str::from_utf8(&frame[4..]).unwrap();
    assert!(body.contains(r#""eager":true"#), "{body}");
    assert_eq!(
        decode_sender_msg(&frame[4..]).unwrap(),
        SenderMsg::Offer(header.clone())
    );
    // Not eager: no field at all, so older receivers see exactly what they saw.
    let plain = Header {
        eager: false,
        ..header
    };
    let frame = encode_sender_msg(&SenderMsg::Offer(plain)).unwrap();
    assert!(!std::str::from_utf8(&frame[4..]).unwrap().contains("eager"));
    for bad in [
        r#""eager":1"#,
        r#""eager":"yes""#,
        r#""eager":true,"resume_key":"ab""#,
    ] {
        let body = format!(r#"{{"ferry":1,"kind":"offer","file_name":"a","file_size":1,{bad}}}"#);
        assert!(decode_sender_msg(body.as_bytes()).is_err(), "{bad}");
    }
    let ok = r#"{"ferry":1,"kind":"offer","file_name":"a","file_size":1,"eager":false}"#;
    assert!(matches!(
        decode_sender_msg(ok.as_bytes()),
        Ok(SenderMsg::Offer(Header { eager: false, .. }))
    ));

    let accept = ReceiverMsg::Accept {
        offset: 0,
        saved_as: "a.txt".into(),
        prefix_blake3: None,
        eager_max: Some(262_144),
    };
    let frame = encode_receiver_msg(&accept).unwrap();
    assert!(
        std::str::from_utf8(&frame[4..])
            .unwrap()
            .contains(r#""eager_max":262144"#)
    );
    assert_eq!(decode_receiver_msg(&frame[4..]).unwrap(), accept);
    let older = br#"{"kind":"accept","offset":0,"saved_as":"a"}"#;
    assert!(matches!(
        decode_receiver_msg(older),
        Ok(ReceiverMsg::Accept {
            eager_max: None,
            ..
        })
    ));
    let none = br#"{"kind":"accept","offset":0,"saved_as":"a","eager_max":null}"#;
    assert!(decode_receiver_msg(none).is_ok());
    for bad in ["-1", "1.5", "\"4096\"", "9223372036854775808", "true"] {
        let body = format!(r#"{{"kind":"accept","offset":0,"saved_as":"a","eager_max":{bad}}}"#);
        assert!(decode_receiver_msg(body.as_bytes()).is_err(), "{bad}");
    }
}

/// A decline may ask for the file again the ordinary way (`offer_again`, for an eager offer
/// the receiver would have had to ask about): said only when true, absent from every other
/// decline (and from older receivers), anything but a boolean refused.
#[test]
fn a_decline_may_ask_for_the_file_again() {
    let again = ReceiverMsg::Decline {
        reason: "ask first".into(),
        offer_again: true,
    };
    let frame = encode_receiver_msg(&again).unwrap();
    assert!(
        std::str::from_utf8(&frame[4..])
            .unwrap()
            .contains(r#""offer_again":true"#)
    );
    assert_eq!(decode_receiver_msg(&frame[4..]).unwrap(), again);
    let plain = ReceiverMsg::Decline {
        reason: "no".into(),
        offer_again: false,
    };
    let frame = encode_receiver_msg(&plain).unwrap();
    assert_eq!(&frame[4..], br#"{"kind":"decline","reason":"no"}"#);
    assert_eq!(
        decode_receiver_msg(br#"{"kind":"decline","reason":"no"}"#).unwrap(),
        plain
    );
    let bad = br#"{"kind":"decline","reason":"no","offer_again":"yes"}"#;
    assert!(decode_receiver_msg(bad).is_err());
}

/// `waiting` with a reason, as a build from before `for` decodes it: its `Waiting` was a
/// unit variant of the same internally tagged enum, which skips keys it does not know.
#[test]
fn an_older_sender_reads_a_waiting_with_a_reason_as_a_waiting() {
    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum OldReceiverMsg {
        Waiting,
        Decline { reason: String },
    }
    for why in [WaitFor::Checking, WaitFor::EarlierCopy] {
        let frame = encode_receiver_msg(&ReceiverMsg::Waiting { waiting_for: why }).unwrap();
        let old: OldReceiverMsg = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!(old, OldReceiverMsg::Waiting);
    }
}
