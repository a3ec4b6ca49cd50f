//! Golden bytes of a folder exchange, and the receiver's folder rules without a socket.

use super::session::{Expect, FrameStep, ReceiverSession, SenderSession, SessionError};
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
    let frames = tx.folder("f", &entries, None).unwrap();
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
        })
        .is_err()
    );
}
