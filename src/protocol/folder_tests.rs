//! Golden bytes of a folder exchange, and the receiver's folder rules without a socket.

use super::session::{Answer, Expect, FrameStep, ReceiverSession, SenderSession, SessionError};
use super::*;

/// `[i32 LE length][body]`, the body given as its exact text.
fn frame(len_le: [u8; 4], body: &str) -> Vec<u8> {
    assert_eq!(i32::from_le_bytes(len_le) as usize, body.len(), "{body}");
    let mut out = len_le.to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

fn entry(path: &str, size: Option<u64>) -> FolderEntry {
    FolderEntry {
        path: path.into(),
        size,
        mtime: 1_700_000_000,
        mode: if size.is_some() { 6 } else { 7 },
    }
}

#[test]
fn golden_folder_exchange() {
    let folder = SenderMsg::Folder {
        name: "photos".into(),
        count: 2,
        bytes: 5,
        entries: vec![entry("2024", None), entry("2024/a.txt", Some(5))],
        resume_key: None,
        msg: String::new(),
    };
    // S -> R: the announcement (keys in sorted order; a folder entry has "dir" and no size).
    assert_eq!(
        encode_sender_msg(&folder).unwrap(),
        frame(
            [0xbd, 0x00, 0x00, 0x00], // L = 189
            r#"{"bytes":5,"count":2,"entries":[{"dir":true,"mode":7,"mtime":1700000000,"path":"2024"},{"mode":6,"mtime":1700000000,"path":"2024/a.txt","size":5}],"ferry":1,"kind":"folder","name":"photos"}"#
        )
    );
    // R -> S: the whole folder accepted, under this root name.
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::FolderAccept {
            saved_as: "photos (1)".into(),
            partial: None,
        })
        .unwrap(),
        frame(
            [0x30, 0x00, 0x00, 0x00], // L = 48
            r#"{"kind":"folder_accept","saved_as":"photos (1)"}"#
        )
    );
    // S -> R: entry 1's data follows (chunks and end as for any Ferry file).
    assert_eq!(
        encode_sender_msg(&SenderMsg::File {
            index: 1,
            offset: 0
        })
        .unwrap(),
        frame([0x19, 0x00, 0x00, 0x00], r#"{"index":1,"kind":"file"}"#) // L = 25
    );
    assert_eq!(
        encode_sender_msg(&SenderMsg::FolderEnd).unwrap(),
        frame([0x15, 0x00, 0x00, 0x00], r#"{"kind":"folder_end"}"#) // L = 21
    );
    // R -> S: batched verdicts by index, then the end of the folder.
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::Files {
            verified: vec![1],
            failed: vec![FileFailed {
                index: 3,
                reason: "disk full".into()
            }],
        })
        .unwrap(),
        frame(
            [0x4b, 0x00, 0x00, 0x00], // L = 75
            r#"{"failed":[{"index":3,"reason":"disk full"}],"kind":"files","verified":[1]}"#
        )
    );
    assert_eq!(
        encode_receiver_msg(&ReceiverMsg::FolderDone {
            verified: 1,
            failed: 0
        })
        .unwrap(),
        frame(
            [0x2e, 0x00, 0x00, 0x00], // L = 46
            r#"{"failed":0,"kind":"folder_done","verified":1}"#
        )
    );
    // Round trips.
    let body = &encode_sender_msg(&folder).unwrap()[4..];
    assert_eq!(decode_sender_msg(body).unwrap(), folder);
}

#[test]
fn entries_are_checked_when_decoded() {
    let bad = [
        r#"{"ferry":1,"kind":"folder","name":"f","count":1,"bytes":0,"entries":[{"path":"a","dir":true,"size":3}]}"#,
        r#"{"ferry":1,"kind":"folder","name":"f","count":1,"bytes":0,"entries":[{"path":"a","size":1,"mode":8}]}"#,
        r#"{"ferry":1,"kind":"folder","name":"f","count":1,"bytes":0,"entries":[{"size":1}]}"#,
        r#"{"ferry":1,"kind":"folder","name":"f","count":1,"bytes":0,"entries":[{"path":"a"}]}"#,
        r#"{"ferry":1,"kind":"folder","name":"f","count":1,"bytes":0,"entries":"a"}"#,
    ];
    for body in bad {
        assert!(decode_sender_msg(body.as_bytes()).is_err(), "{body}");
    }
}

fn offered(entries: Vec<FolderEntry>, bytes: u64) -> Result<FrameStep, SessionError> {
    let mut rx = ReceiverSession::new(100);
    rx.on_frame(SenderMsg::Folder {
        name: "f".into(),
        count: entries.len() as u64,
        bytes,
        entries,
        resume_key: None,
        msg: String::new(),
    })
}

#[test]
fn listings_that_break_a_limit_are_refused() {
    let deep = vec!["d"; MAX_FOLDER_DEPTH + 1].join("/");
    let long = "x".repeat(MAX_ENTRY_PATH_BYTES + 1);
    for (entries, bytes) in [
        (vec![entry(&deep, Some(0))], 0),
        (vec![entry(&long, Some(0))], 0),
        (vec![entry("a//b", Some(0))], 0),
        (vec![entry("a", Some(5))], 4),
        (vec![entry("a", Some(3))], 4),
    ] {
        assert!(offered(entries, bytes).is_err());
    }
    let many: Vec<_> = (0..101).map(|i| entry(&i.to_string(), Some(0))).collect();
    assert_eq!(offered(many, 0), Err(SessionError::TooManyFiles(100)));
    // Components are sanitised one by one.
    let mut rx = ReceiverSession::new(100);
    let step = rx.on_frame(SenderMsg::Folder {
        name: "f".into(),
        count: 1,
        bytes: 0,
        entries: vec![entry("../.x/CON", Some(0))],
        resume_key: None,
        msg: String::new(),
    });
    assert_eq!(step, Ok(FrameStep::FolderOffer));
    let safe = &rx.folder().unwrap().entries()[0].components;
    assert_eq!(safe.len(), 3);
    assert!(
        safe.iter().all(|c| !c.starts_with('.') && c != "CON"),
        "{safe:?}"
    );
}

#[test]
fn a_folder_runs_file_by_file_without_answers_until_its_end() {
    let entries = vec![entry("d", None), entry("d/a", Some(2)), entry("b", Some(0))];
    let mut tx = SenderSession::new(Mode::Ferry);
    let frames = tx.folder("f", &entries, None, "").unwrap();
    let mut rx = ReceiverSession::new(100);
    let mut last = None;
    for frame in frames {
        last = Some(rx.on_frame(frame).unwrap());
    }
    assert_eq!(last, Some(FrameStep::FolderOffer));
    assert_eq!(rx.expect(), Expect::Decision);
    let accept = rx.accept_folder("f".into()).unwrap();
    tx.on_answer(accept).unwrap();
    // A folder entry cannot be sent as a file; indices only go up.
    assert!(tx.clone().file(0, 0).is_err());
    let file = tx.file(1, 0).unwrap();
    assert_eq!(
        rx.on_frame(file),
        Ok(FrameStep::FolderFile {
            index: 1,
            size: 2,
            offset: 0
        })
    );
    rx.on_chunk_header(Chunk::Data(2)).unwrap();
    rx.on_data(2).unwrap();
    rx.data_complete([9; 32]).unwrap();
    assert_eq!(
        rx.on_frame(SenderMsg::End { blake3: [9; 32] }),
        Ok(FrameStep::Verified)
    );
    assert!(!rx.at_boundary(), "still inside the folder");
    assert!(
        rx.clone()
            .on_frame(SenderMsg::File {
                index: 1,
                offset: 0
            })
            .is_err(),
        "the same index twice"
    );
    assert_eq!(
        rx.on_frame(SenderMsg::File {
            index: 2,
            offset: 0
        }),
        Ok(FrameStep::FolderFile {
            index: 2,
            size: 0,
            offset: 0
        })
    );
    rx.data_complete([0; 32]).unwrap();
    rx.on_frame(SenderMsg::End { blake3: [0; 32] }).unwrap();
    assert_eq!(rx.on_frame(SenderMsg::FolderEnd), Ok(FrameStep::FolderEnd));
    assert!(rx.at_boundary());
    // The sender takes verdicts on files it sent, never on others.
    tx.sent(2).unwrap();
    tx.end([9; 32]).unwrap();
    assert!(
        tx.clone()
            .on_answer(ReceiverMsg::Files {
                verified: vec![5],
                failed: vec![]
            })
            .is_err()
    );
    tx.on_answer(ReceiverMsg::Files {
        verified: vec![1],
        failed: vec![],
    })
    .unwrap();
    tx.folder_end().unwrap();
    tx.on_answer(ReceiverMsg::FolderDone {
        verified: 1,
        failed: 0,
    })
    .unwrap();
    assert!(tx.at_boundary());
}

#[test]
fn a_plain_connection_cannot_announce_a_folder() {
    let mut rx = ReceiverSession::new(100);
    rx.on_frame(SenderMsg::Plain(Header {
        eager: false,
        file_name: "a".into(),
        file_size: 0,
        msg: String::new(),
        resume_key: None,
    }))
    .unwrap();
    rx.accept(0, "a".into(), None).unwrap();
    rx.data_complete([0; 32]).unwrap();
    assert!(offered(vec![], 0).is_ok());
    assert!(
        rx.on_frame(SenderMsg::Folder {
            name: "f".into(),
            count: 0,
            bytes: 0,
            entries: vec![],
            resume_key: None,
            msg: String::new(),
        })
        .is_err()
    );
}

/// BLAKE3 of the empty input, as the example hash in the resume frames.
const EMPTY_HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

#[test]
fn golden_folder_resume() {
    let hash = *blake3::hash(b"").as_bytes();
    // S -> R: the announcement names the sender's copy of the folder.
    let folder = SenderMsg::Folder {
        name: "photos".into(),
        count: 1,
        bytes: 5,
        entries: vec![entry("a.txt", Some(5))],
        resume_key: Some("0123456789abcdef".into()),
        msg: String::new(),
    };
    assert_eq!(
        encode_sender_msg(&folder).unwrap(),
        frame(
            [0xa1, 0x00, 0x00, 0x00], // L = 161
            r#"{"bytes":5,"count":1,"entries":[{"mode":6,"mtime":1700000000,"path":"a.txt","size":5}],"ferry":1,"kind":"folder","name":"photos","resume_key":"0123456789abcdef"}"#
        )
    );
    assert_eq!(
        decode_sender_msg(&encode_sender_msg(&folder).unwrap()[4..]).unwrap(),
        folder
    );
    // R -> S: the files it holds (index, BLAKE3 of what it holds), then the accept into the
    // same root with the partial it keeps.
    let have = held_frames(&[(1, hash)]);
    assert_eq!(have.len(), 1);
    assert_eq!(
        encode_receiver_msg(&have[0]).unwrap(),
        frame(
            [0x78, 0x00, 0x00, 0x00], // L = 120
            &format!(r#"{{"files":[{{"blake3":"{EMPTY_HASH}","index":1}}],"kind":"folder_have"}}"#)
        )
    );
    let accept = ReceiverMsg::FolderAccept {
        saved_as: "photos".into(),
        partial: Some(FolderPartial {
            index: 2,
            offset: 4096,
            prefix_blake3: EMPTY_HASH.into(),
        }),
    };
    assert_eq!(
        encode_receiver_msg(&accept).unwrap(),
        frame(
            [0xa3, 0x00, 0x00, 0x00], // L = 163
            &format!(
                r#"{{"kind":"folder_accept","partial":{{"index":2,"offset":4096,"prefix_blake3":"{EMPTY_HASH}"}},"saved_as":"photos"}}"#
            )
        )
    );
    assert_eq!(
        decode_receiver_msg(&encode_receiver_msg(&accept).unwrap()[4..]).unwrap(),
        accept
    );
    // S -> R: the partial's file from the agreed offset.
    let file = SenderMsg::File {
        index: 2,
        offset: 4096,
    };
    assert_eq!(
        encode_sender_msg(&file).unwrap(),
        frame(
            [0x27, 0x00, 0x00, 0x00], // L = 39
            r#"{"index":2,"kind":"file","offset":4096}"#
        )
    );
    assert_eq!(
        decode_sender_msg(&encode_sender_msg(&file).unwrap()[4..]).unwrap(),
        file
    );
    // Many held files take several frames, each below the frame limit.
    let many: Vec<(u64, [u8; 32])> = (0..1200).map(|i| (u64::MAX - i, [0xff; 32])).collect();
    let frames = held_frames(&many);
    assert_eq!(frames.len(), 3);
    for frame in &frames {
        assert!(encode_receiver_msg(frame).is_ok());
    }
}

/// A folder of three files (sizes 3, 0, 8192) offered with a key, to both sessions.
fn resumable_pair() -> (SenderSession, ReceiverSession) {
    let entries = vec![
        entry("a", Some(3)),
        entry("b", Some(0)),
        entry("c", Some(8192)),
    ];
    let mut tx = SenderSession::new(Mode::Ferry);
    let mut rx = ReceiverSession::new(100);
    for frame in tx.folder("f", &entries, Some("ab12"), "").unwrap() {
        rx.on_frame(frame).unwrap();
    }
    assert_eq!(rx.folder().unwrap().resume_key.as_deref(), Some("ab12"));
    (tx, rx)
}

#[test]
fn a_resumed_folder_sends_only_the_offered_partial_from_its_offset() {
    let (mut tx, mut rx) = resumable_pair();
    let hash = [7; 32];
    let answers = rx
        .accept_folder_resumed("f".into(), &[(0, hash)], Some((2, 4096, hash)))
        .unwrap();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(
        tx.on_answer(answers[0].clone()),
        Ok(Answer::FolderHave {
            files: vec![(0, hash)]
        })
    );
    assert_eq!(
        tx.on_answer(answers[1].clone()),
        Ok(Answer::FolderAccepted {
            saved_as: "f".into(),
            partial: Some((2, 4096, hash)),
        })
    );
    // The sender may not resume a file the receiver did not offer, nor at another offset.
    assert!(tx.clone().file(1, 1).is_err());
    assert!(tx.clone().file(2, 4095).is_err());
    let file = tx.file(2, 4096).unwrap();
    assert_eq!(
        rx.on_frame(file),
        Ok(FrameStep::FolderFile {
            index: 2,
            size: 8192,
            offset: 4096
        })
    );
    assert_eq!(rx.received(), 4096);
    assert_eq!(rx.expect(), Expect::ChunkHeader);
    assert_eq!(tx.next_chunk(), Some(4096));
}

#[test]
fn a_hostile_resume_ends_the_connection() {
    // A receiver holding a "file" that is a folder entry, or beyond the list.
    let (_, mut rx) = resumable_pair();
    assert!(
        rx.clone()
            .accept_folder_resumed("f".into(), &[(3, [0; 32])], None)
            .is_err()
    );
    assert!(
        rx.clone()
            .accept_folder_resumed("f".into(), &[], Some((2, 8193, [0; 32])))
            .is_err()
    );
    assert!(
        rx.clone()
            .accept_folder_resumed("f".into(), &[], Some((1, 0, [0; 32])))
            .is_err()
    );
    // A sender resuming where nothing was offered.
    rx.accept_folder_resumed("f".into(), &[], None).unwrap();
    assert!(
        rx.clone()
            .on_frame(SenderMsg::File {
                index: 2,
                offset: 1
            })
            .is_err()
    );
    // A receiver's accept whose partial does not fit, or whose held hash is malformed.
    let (mut tx, _) = resumable_pair();
    let bad_partial = ReceiverMsg::FolderAccept {
        saved_as: "f".into(),
        partial: Some(FolderPartial {
            index: 0,
            offset: 4,
            prefix_blake3: EMPTY_HASH.into(),
        }),
    };
    assert!(tx.clone().on_answer(bad_partial).is_err());
    let bad_hash = ReceiverMsg::FolderHave {
        files: vec![HeldFile {
            index: 0,
            blake3: "zz".into(),
        }],
    };
    assert!(tx.clone().on_answer(bad_hash).is_err());
    let not_a_file = ReceiverMsg::FolderHave {
        files: vec![HeldFile {
            index: 9,
            blake3: EMPTY_HASH.into(),
        }],
    };
    assert!(tx.on_answer(not_a_file).is_err());
}

/// A folder's message goes in its first frame only, whatever it holds (Chinese, control
/// characters that JSON escapes six times over), every frame stays below the frame limit,
/// and the receiver takes the message from the first frame: a later frame cannot change it.
#[test]
fn a_folders_message_rides_in_its_first_frame_only() {
    let msg = format!("周末的照片 {}", "\u{1}".repeat(2000));
    let entries: Vec<FolderEntry> = (0..2000)
        .map(|i| entry(&format!("{i:04}-{}", "y".repeat(40)), Some(i)))
        .collect();
    let mut tx = SenderSession::new(Mode::Ferry);
    let frames = tx.folder("相册", &entries, None, &msg).unwrap();
    assert!(frames.len() > 2, "{}", frames.len());
    let msgs: Vec<&str> = frames
        .iter()
        .map(|f| match f {
            SenderMsg::Folder { msg, .. } => msg.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(msgs[0], msg);
    assert!(msgs[1..].iter().all(|m| m.is_empty()), "{msgs:?}");
    let mut rx = ReceiverSession::new(100_000);
    let last = frames.len() - 1;
    for (i, frame) in frames.into_iter().enumerate() {
        let bytes = encode_sender_msg(&frame).unwrap();
        assert!(
            bytes.len() <= MAX_FRAME_LEN + 4,
            "frame {i}: {}",
            bytes.len()
        );
        // What the receiver decodes from the wire, with a later frame trying another message.
        let mut decoded = decode_sender_msg(&bytes[4..]).unwrap();
        if let (true, SenderMsg::Folder { msg, .. }) = (i > 0, &mut decoded) {
            *msg = "changed later".into();
        }
        let step = rx.on_frame(decoded).unwrap();
        assert_eq!(step == FrameStep::FolderOffer, i == last);
    }
    assert_eq!(rx.folder().unwrap().msg, msg);
}

/// A folder frame without `msg` (every Ferry before it) is a folder with no message; one
/// whose `msg` is not a string is refused like a file offer's.
#[test]
fn a_folder_frame_without_a_message_has_none_and_a_wrong_one_is_refused() {
    let body = r#"{"ferry":1,"kind":"folder","name":"f","count":0,"bytes":0,"entries":[]}"#;
    match decode_sender_msg(body.as_bytes()).unwrap() {
        SenderMsg::Folder { msg, .. } => assert_eq!(msg, ""),
        other => panic!("{other:?}"),
    }
    let bad = r#"{"ferry":1,"kind":"folder","name":"f","count":0,"bytes":0,"msg":7}"#;
    assert!(decode_sender_msg(bad.as_bytes()).is_err());
}
