//! Golden byte-level tests of whole exchanges, and property tests of the decoders.

use proptest::prelude::*;

use super::*;

/// Turns an annotated hex listing (`# comments`, whitespace) into bytes.
fn hex(listing: &str) -> Vec<u8> {
    let digits: String = listing
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// A plain upload exactly as Python's `struct.pack('i', len(h)) + json.dumps(h).encode()`
/// writes it (note json.dumps's spaces after `:` and `,`), followed by the raw bytes.
#[test]
fn golden_plain_exchange_from_python() {
    let wire = hex("
        33 00 00 00                                  # L = 51, i32 little-endian
        7b 22 66 69 6c 65 5f 6e 61 6d 65 22 3a 20    # {\"file_name\": 
        22 61 2e 74 78 74 22 2c 20                   # \"a.txt\", 
        22 66 69 6c 65 5f 73 69 7a 65 22 3a 20 35    # \"file_size\": 5
        2c 20 22 6d 73 67 22 3a 20 22 68 69 22 7d    # , \"msg\": \"hi\"}
        68 65 6c 6c 6f                               # the file: hello
    ");
    let (body, rest) = split_frame(&wire).unwrap().unwrap();
    let header = Header {
        eager: false,
        file_name: "a.txt".into(),
        file_size: 5,
        msg: "hi".into(),
        resume_key: None,
    };
    assert_eq!(
        decode_sender_msg(body).unwrap(),
        SenderMsg::Plain(header.clone())
    );
    assert_eq!(rest, b"hello");

    // Ferry's own plain encoding is compact JSON; a Python server reads it the same way.
    let ours = encode_sender_msg(&SenderMsg::Plain(header)).unwrap();
    assert_eq!(
        ours,
        hex("
        2e 00 00 00                                                    # L = 46
        7b 22 66 69 6c 65 5f 6e 61 6d 65 22 3a 22 61 2e 74 78 74 22 2c # {\"file_name\":\"a.txt\",
        22 66 69 6c 65 5f 73 69 7a 65 22 3a 35 2c                      # \"file_size\":5,
        22 6d 73 67 22 3a 22 68 69 22 7d                               # \"msg\":\"hi\"}
    ")
    );
}

/// A Python client writes Chinese names with `\\u` escapes (json.dumps's ensure_ascii).
#[test]
fn python_escaped_chinese_name_decodes() {
    let body = br#"{"file_name": "\u8ba1\u7b97\u673a\u4e94\u5927.txt", "file_size": 3, "msg": "\u4f60\u597d"}"#;
    let SenderMsg::Plain(header) = decode_sender_msg(body).unwrap() else {
        panic!("not plain")
    };
    assert_eq!(header.file_name, "计算机五大.txt");
    assert_eq!(header.msg, "你好");
}

/// One Ferry file, both directions, byte for byte.
#[test]
fn golden_ferry_exchange() {
    let header = Header {
        eager: false,
        file_name: "a.txt".into(),
        file_size: 5,
        msg: String::new(),
        resume_key: None,
    };
    // sender -> receiver: the offer
    assert_eq!(
        encode_sender_msg(&SenderMsg::Offer(header)).unwrap(),
        hex(r#"
        45 00 00 00                                         # L = 69 (keys in sorted order)
        7b 22 66 65 72 72 79 22 3a 31 2c                    # {"ferry":1,
        22 66 69 6c 65 5f 6e 61 6d 65 22 3a 22 61 2e 74 78 74 22 2c  # "file_name":"a.txt",
        22 66 69 6c 65 5f 73 69 7a 65 22 3a 35 2c           # "file_size":5,
        22 6b 69 6e 64 22 3a 22 6f 66 66 65 72 22 2c        # "kind":"offer",
        22 6d 73 67 22 3a 22 22 7d                          # "msg":""}
    "#)
    );
    // receiver -> sender: accepted, from byte 0
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::Accept {
            eager_max: None,
            prefix_blake3: None,
            offset: 0,
            saved_as: "a.txt".into()
        })
        .unwrap(),
        hex(r#"
        2f 00 00 00                                         # L = 47
        7b 22 6b 69 6e 64 22 3a 22 61 63 63 65 70 74 22 2c  # {"kind":"accept",
        22 6f 66 66 73 65 74 22 3a 30 2c                    # "offset":0,
        22 73 61 76 65 64 5f 61 73 22 3a 22 61 2e 74 78 74 22 7d  # "saved_as":"a.txt"}
    "#)
    );
    // sender -> receiver: one data chunk
    let mut chunk = encode_chunk_header(5).to_vec();
    chunk.extend_from_slice(b"hello");
    assert_eq!(chunk, hex("05 00 00 00  68 65 6c 6c 6f  # n = 5, hello"));
    // sender -> receiver: the trailer with BLAKE3("hello")
    let end = SenderMsg::End {
        blake3: *blake3::hash(b"hello").as_bytes(),
    };
    assert_eq!(
        encode_sender_msg(&end).unwrap(),
        hex(r#"
        5a 00 00 00                                         # L = 90
        7b 22 62 6c 61 6b 65 33 22 3a 22                    # {"blake3":"
        65 61 38 66 31 36 33 64 62 33 38 36 38 32 39 32     # ea8f163db3868292
        35 65 34 34 39 31 63 35 65 35 38 64 34 62 62 33     # 5e4491c5e58d4bb3
        35 30 36 65 66 38 63 31 34 65 62 37 38 61 38 36     # 506ef8c14eb78a86
        65 39 30 38 63 35 36 32 34 61 36 37 32 30 30 66 22 2c  # e908c5624a67200f",
        22 6b 69 6e 64 22 3a 22 65 6e 64 22 7d              # "kind":"end"}
    "#)
    );
    // receiver -> sender: verified
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::Verified {
            saved_as: "a.txt".into()
        })
        .unwrap(),
        hex(r#"
        26 00 00 00                                         # L = 38
        7b 22 6b 69 6e 64 22 3a 22 76 65 72 69 66 69 65 64 22 2c  # {"kind":"verified",
        22 73 61 76 65 64 5f 61 73 22 3a 22 61 2e 74 78 74 22 7d  # "saved_as":"a.txt"}
    "#)
    );
    // And each decodes back.
    let frame = encode_sender_msg(&end).unwrap();
    assert_eq!(decode_sender_msg(&frame[4..]).unwrap(), end);
}

/// A resumed file: the receiver holds "hel" and proves it; the sender agrees to start at 3.
#[test]
fn golden_resume_exchange() {
    let accept = ReceiverMsg::Accept {
        eager_max: None,
        offset: 3,
        saved_as: "a.txt".into(),
        prefix_blake3: Some(blake3::hash(b"hel").to_hex().to_string()),
    };
    let frame = encode_receiver_msg(&accept).unwrap();
    let body = std::str::from_utf8(&frame[4..]).unwrap();
    assert_eq!(frame[..4], (body.len() as i32).to_le_bytes());
    assert_eq!(
        body,
        format!(
            // Keys in sorted order (serde_json's map).
            r#"{{"kind":"accept","offset":3,"prefix_blake3":"{}","saved_as":"a.txt"}}"#,
            blake3::hash(b"hel").to_hex()
        )
    );
    assert_eq!(decode_receiver_msg(body.as_bytes()).unwrap(), accept);
    assert_eq!(
        encode_sender_msg(&SenderMsg::Start { offset: 3 }).unwrap(),
        hex(r#"
            1b 00 00 00                                         # L = 27
            7b 22 6b 69 6e 64 22 3a 22 73 74 61 72 74 22 2c     # {"kind":"start",
            22 6f 66 66 73 65 74 22 3a 33 7d                    # "offset":3}
        "#)
    );
    // Waiting for the user's answer carries nothing but its kind, as it always did; another
    // reason says itself in `for`, which older senders ignore.
    let waiting = |waiting_for| ReceiverMsg::Waiting { waiting_for };
    assert_eq!(
        encode_receiver_msg(&waiting(WaitFor::Decision)).unwrap()[4..],
        *br#"{"kind":"waiting"}"#
    );
    // (Keys in their sorted order, as every message's; a reader takes them in any order.)
    assert_eq!(
        encode_receiver_msg(&waiting(WaitFor::EarlierCopy)).unwrap()[4..],
        *br#"{"for":"earlier_copy","kind":"waiting"}"#
    );
    assert_eq!(
        encode_receiver_msg(&waiting(WaitFor::Checking)).unwrap()[4..],
        *br#"{"for":"checking","kind":"waiting"}"#
    );
    assert_eq!(
        decode_receiver_msg(br#"{"kind":"waiting","for":"checking"}"#).unwrap(),
        waiting(WaitFor::Checking)
    );
    // A reason this build does not know (a newer receiver's) reads as asking the user; a
    // reason of the wrong type is a bad message.
    assert_eq!(
        decode_receiver_msg(br#"{"kind":"waiting","for":"the moon"}"#).unwrap(),
        waiting(WaitFor::Decision)
    );
    assert!(decode_receiver_msg(br#"{"kind":"waiting","for":7}"#).is_err());
}

#[test]
fn header_validation_errors() {
    let cases: &[(&[u8], MessageError)] = &[
        (b"\xff\xfe", MessageError::NotUtf8),
        (b"[1,2]", MessageError::NotObject),
        (
            br#"{"file_size":1}"#,
            MessageError::MissingField("file_name"),
        ),
        (
            br#"{"file_name":"a"}"#,
            MessageError::MissingField("file_size"),
        ),
        (
            br#"{"file_name":1,"file_size":1}"#,
            MessageError::WrongType {
                field: "file_name",
                expected: "a string",
            },
        ),
        (
            br#"{"file_name":"a","file_size":"1"}"#,
            MessageError::WrongType {
                field: "file_size",
                expected: "an integer",
            },
        ),
        (
            br#"{"file_name":"a","file_size":-1}"#,
            MessageError::BadSize("-1".into()),
        ),
        (
            br#"{"file_name":"a","file_size":1.5}"#,
            MessageError::BadSize("1.5".into()),
        ),
        (
            br#"{"file_name":"a","file_size":9223372036854775808}"#,
            MessageError::BadSize("9223372036854775808".into()),
        ),
        (
            br#"{"file_name":"a","file_size":1,"msg":5}"#,
            MessageError::WrongType {
                field: "msg",
                expected: "a string or null",
            },
        ),
        (
            br#"{"ferry":2,"kind":"offer","file_name":"a","file_size":1}"#,
            MessageError::UnsupportedVersion("2".into()),
        ),
        (
            br#"{"kind":"bogus"}"#,
            MessageError::UnknownKind("bogus".into()),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            decode_sender_msg(body).as_ref(),
            Err(expected),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        decode_sender_msg(b"not json"),
        Err(MessageError::NotJson(_))
    ));
    let long_key = format!("\"{}\"", "a".repeat(65));
    for bad_key in [r#""XYZ""#, r#""""#, "7", long_key.as_str()] {
        let body = format!(
            r#"{{"ferry":1,"kind":"offer","file_name":"a","file_size":1,"resume_key":{bad_key}}}"#
        );
        let decoded = decode_sender_msg(body.as_bytes());
        assert!(
            matches!(
                decoded,
                Err(MessageError::WrongType {
                    field: "resume_key",
                    ..
                })
            ),
            "{body}: {decoded:?}"
        );
    }

    // The largest size allowed, and msg null or absent.
    let ok = br#"{"file_name":"a","file_size":9223372036854775807,"msg":null}"#;
    assert!(matches!(
        decode_sender_msg(ok),
        Ok(SenderMsg::Plain(Header {
            file_size: MAX_FILE_SIZE,
            ..
        }))
    ));
}

fn any_header() -> impl Strategy<Value = Header> {
    (any::<String>(), 0..=MAX_FILE_SIZE, any::<String>()).prop_map(|(file_name, file_size, msg)| {
        Header {
            eager: false,
            file_name,
            file_size,
            msg,
            resume_key: None,
        }
    })
}

/// An offer's header: a plain header, sometimes with a resume key.
fn any_offer_header() -> impl Strategy<Value = Header> {
    (any_header(), proptest::option::of("[0-9a-f]{1,64}")).prop_map(|(mut header, key)| {
        header.resume_key = key;
        header
    })
}

fn any_sender_msg() -> impl Strategy<Value = SenderMsg> {
    prop_oneof![
        any_header().prop_map(SenderMsg::Plain),
        any_offer_header().prop_map(SenderMsg::Offer),
        any::<[u8; 32]>().prop_map(|blake3| SenderMsg::End { blake3 }),
        (any_cancel_code(), any::<String>())
            .prop_map(|(code, reason)| SenderMsg::Cancel { code, reason }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<String>(), 0..4)
        )
            .prop_map(|(count, bytes, names)| {
                let sizes = names.iter().map(|n| n.len() as u64).collect();
                SenderMsg::Batch {
                    count,
                    bytes,
                    names,
                    sizes,
                }
            }),
        any::<u64>().prop_map(|offset| SenderMsg::Start { offset }),
    ]
}

fn any_receiver_msg() -> impl Strategy<Value = ReceiverMsg> {
    prop_oneof![
        (any::<u64>(), any::<String>()).prop_map(|(offset, saved_as)| ReceiverMsg::Accept {
            eager_max: None,
            offset,
            saved_as,
            prefix_blake3: None
        }),
        (any::<u64>(), any::<String>(), any::<String>()).prop_map(|(offset, saved_as, hash)| {
            ReceiverMsg::Accept {
                eager_max: None,
                offset,
                saved_as,
                prefix_blake3: Some(hash),
            }
        }),
        prop_oneof![
            Just(WaitFor::Decision),
            Just(WaitFor::Checking),
            Just(WaitFor::EarlierCopy)
        ]
        .prop_map(|waiting_for| ReceiverMsg::Waiting { waiting_for }),
        (any::<String>(), any::<bool>()).prop_map(|(reason, offer_again)| ReceiverMsg::Decline {
            reason,
            offer_again
        }),
        any::<String>().prop_map(|saved_as| ReceiverMsg::Verified { saved_as }),
        any::<String>().prop_map(|reason| ReceiverMsg::Failed { reason }),
        (any_cancel_code(), any::<String>())
            .prop_map(|(code, reason)| ReceiverMsg::Cancel { code, reason }),
    ]
}

proptest! {
    // Failing cases are kept beside this file, not in a folder at the top of the repository.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]
    #[test]
    fn sender_msg_round_trips(msg in any_sender_msg()) {
        let frame = encode_sender_msg(&msg).unwrap();
        let (body, rest) = split_frame(&frame).unwrap().unwrap();
        prop_assert!(rest.is_empty());
        prop_assert_eq!(decode_sender_msg(body).unwrap(), msg);
    }

    #[test]
    fn receiver_msg_round_trips(msg in any_receiver_msg()) {
        let frame = encode_receiver_msg(&msg).unwrap();
        let (body, _) = split_frame(&frame).unwrap().unwrap();
        prop_assert_eq!(decode_receiver_msg(body).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_sender_msg(&bytes);
        let _ = decode_receiver_msg(&bytes);
        if let Ok(Some((body, _))) = split_frame(&bytes) {
            let _ = decode_sender_msg(body);
        }
        if let Some(prefix) = bytes.first_chunk::<4>() {
            let _ = decode_chunk_header(*prefix);
        }
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        name in proptest::option::of(any::<String>()),
        size in proptest::option::of(any::<i128>()),
        ferry in proptest::option::of(0u64..3),
        kind in proptest::option::of(prop_oneof![Just("offer"), Just("end"), Just("cancel"), Just("x")]),
    ) {
        let mut obj = serde_json::Map::new();
        if let Some(name) = name { obj.insert("file_name".into(), name.into()); }
        if let Some(size) = size { obj.insert("file_size".into(), serde_json::from_str(&size.to_string()).unwrap()); }
        if let Some(ferry) = ferry { obj.insert("ferry".into(), ferry.into()); }
        if let Some(kind) = kind { obj.insert("kind".into(), kind.into()); }
        let body = serde_json::to_vec(&obj).unwrap();
        if let Ok(SenderMsg::Plain(h) | SenderMsg::Offer(h)) = decode_sender_msg(&body) {
            prop_assert!(h.file_size <= MAX_FILE_SIZE);
        }
    }

    #[test]
    fn sanitized_names_are_one_safe_component(raw in any::<String>()) {
        let safe = sanitize_file_name(&raw);
        let name = safe.as_str();
        prop_assert!(!name.is_empty() && name != "." && name != "..");
        prop_assert!(!name.starts_with('.'), "hidden name {:?} from {:?}", name, raw);
        prop_assert!(!name.contains(['/', '\\', '\0']));
        prop_assert!(!name.chars().any(char::is_control));
        prop_assert!(name.len() <= MAX_NAME_BYTES);
        prop_assert!(!name.ends_with(|c: char| c == '.' || c.is_whitespace()));
        let again = sanitize_file_name(name);
        prop_assert_eq!(again.as_str(), name, "sanitizing twice changes nothing");
        let joined = std::path::Path::new("/downloads").join(name);
        prop_assert_eq!(joined.parent(), Some(std::path::Path::new("/downloads")));
    }

    /// Names built from the pieces that used to expose a dot: leading dots and spaces, long
    /// runs that force truncation, extensions and separators.
    #[test]
    fn dotty_names_never_become_hidden(
        parts in proptest::collection::vec(prop_oneof![
            Just(".".to_owned()), Just(" ".to_owned()), Just("/".to_owned()),
            Just("x".to_owned()), Just(".txt".to_owned()), Just("CON".to_owned()),
            Just(".ferry.part".to_owned()), Just("计".to_owned()),
            "[. ]{1,300}", "[a-z]{1,250}",
        ], 0..8)
    ) {
        let raw = parts.concat();
        let name = sanitize_file_name(&raw);
        prop_assert!(!name.as_str().starts_with('.'), "{:?} -> {:?}", raw, name.as_str());
        prop_assert!(name.as_str().len() <= MAX_NAME_BYTES);
        let again = sanitize_file_name(name.as_str());
        prop_assert_eq!(again.as_str(), name.as_str());
    }
}

fn any_cancel_code() -> impl Strategy<Value = CancelCode> {
    prop_oneof![
        Just(CancelCode::User),
        Just(CancelCode::FileChanged),
        Just(CancelCode::ReadError),
        Just(CancelCode::Stopping),
        // A newer peer's code: kept as it is (a known code's spelling would decode as known).
        "[a-z_]{0,12}"
            .prop_filter("not a known code", |c| {
                !matches!(
                    c.as_str(),
                    "user" | "file_changed" | "read_error" | "stopping"
                )
            })
            .prop_map(CancelCode::Other),
    ]
}

#[test]
fn cancel_codes_decode_known_unknown_and_absent() {
    let sender = |json: &str| decode_sender_msg(json.as_bytes()).unwrap();
    assert_eq!(
        sender(r#"{"kind":"cancel","code":"user","reason":"r"}"#),
        SenderMsg::Cancel {
            code: CancelCode::User,
            reason: "r".into()
        }
    );
    assert_eq!(
        sender(r#"{"kind":"cancel","code":"solar_flare","reason":"r"}"#),
        SenderMsg::Cancel {
            code: CancelCode::Other("solar_flare".into()),
            reason: "r".into()
        }
    );
    assert_eq!(
        sender(r#"{"kind":"cancel","reason":"older peer"}"#),
        SenderMsg::Cancel {
            code: CancelCode::Other(String::new()),
            reason: "older peer".into()
        }
    );
    let receiver = |json: &str| decode_receiver_msg(json.as_bytes()).unwrap();
    assert_eq!(
        receiver(r#"{"kind":"cancel","reason":"older peer"}"#),
        ReceiverMsg::Cancel {
            code: CancelCode::Other(String::new()),
            reason: "older peer".into()
        }
    );
    assert_eq!(
        receiver(r#"{"kind":"cancel","code":"stopping","reason":"bye"}"#),
        ReceiverMsg::Cancel {
            code: CancelCode::Stopping,
            reason: "bye".into()
        }
    );
}

#[test]
fn golden_secure_hello_and_go_ahead() {
    let hello = encode_sender_msg(&SenderMsg::Secure {
        pairing: true,
        ciphers: vec!["aesgcm".into(), "chachapoly".into()],
        serves_on: None,
    })
    .unwrap();
    assert_eq!(
        hello,
        hex(r#"
        4c 00 00 00                                         # L = 76 (keys in sorted order)
        7b 22 63 69 70 68 65 72 73 22 3a 5b                 # {"ciphers":[
        22 61 65 73 67 63 6d 22 2c                          # "aesgcm",
        22 63 68 61 63 68 61 70 6f 6c 79 22 5d 2c           # "chachapoly"],
        22 66 65 72 72 79 22 3a 31 2c                       # "ferry":1,
        22 6b 69 6e 64 22 3a 22 73 65 63 75 72 65 22 2c     # "kind":"secure",
        22 70 61 69 72 69 6e 67 22 3a 74 72 75 65 7d        # "pairing":true}
    "#)
    );
    assert!(matches!(
        decode_sender_msg(&hello[4..]).unwrap(),
        SenderMsg::Secure { pairing: true, ciphers, serves_on: None } if ciphers == ["aesgcm", "chachapoly"]
    ));
    // Without "pairing" or "ciphers": open mode, ChaCha20-Poly1305; a non-boolean is refused.
    assert_eq!(
        decode_sender_msg(br#"{"ferry":1,"kind":"secure"}"#).unwrap(),
        SenderMsg::Secure {
            pairing: false,
            ciphers: vec![],
            serves_on: None
        }
    );
    assert!(decode_sender_msg(br#"{"ferry":1,"kind":"secure","pairing":"yes"}"#).is_err());
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::Secure {
            cipher: "aesgcm".into()
        })
        .unwrap(),
        hex(r#"
        23 00 00 00                                         # L = 35
        7b 22 63 69 70 68 65 72 22 3a 22 61 65 73 67 63 6d 22 2c  # {"cipher":"aesgcm",
        22 6b 69 6e 64 22 3a 22 73 65 63 75 72 65 22 7d     # "kind":"secure"}
    "#)
    );
    assert_eq!(
        decode_receiver_msg(br#"{"kind":"secure"}"#).unwrap(),
        ReceiverMsg::Secure {
            cipher: "chachapoly".into()
        }
    );
    // A hello never feeds a session.
    let mut session = crate::protocol::session::ReceiverSession::new(10);
    assert!(
        session
            .on_frame(SenderMsg::Secure {
                pairing: false,
                ciphers: vec![],
                serves_on: None
            })
            .is_err()
    );
}
