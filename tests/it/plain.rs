//! Plain peers (the original protocol) against Ferry, in both directions.

use ferry::events::{CancelToken, Event, TransferEvent, event_channel};
use ferry::protocol::Mode;
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};

use crate::util::*;

#[test]
fn plain_client_uploads_one_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let bytes = data(3_000_000, 1);
    plain_upload(server.local_addr(), &[("one.bin", &bytes, "")]);
    let (finished, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(finished, vec![(dir.path().join("one.bin"), false)]);
    assert_eq!(std::fs::read(dir.path().join("one.bin")).unwrap(), bytes);
    assert_eq!(names_in(dir.path()), ["one.bin"]);
}

#[test]
fn several_files_on_one_connection_including_empty_and_chinese_name_with_msg() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let a = data(100_000, 2);
    let c = "计算机由运算器、控制器、存储器、输入设备和输出设备五大部件组成"
        .as_bytes()
        .to_vec();
    plain_upload(
        server.local_addr(),
        &[
            ("a.bin", &a, "first"),
            ("empty.txt", b"", "nothing here"),
            ("计算机五大.txt", &c, "你好"),
        ],
    );
    let mut msgs = Vec::new();
    let mut done = Vec::new();
    wait_for(&events, |event| {
        match event {
            Event::Transfer(TransferEvent::Started { msg, mode, .. }) => {
                assert_eq!(*mode, Mode::Plain);
                msgs.push(msg.clone());
            }
            Event::Transfer(TransferEvent::Finished {
                path: Some(path), ..
            }) => done.push(path.clone()),
            Event::Transfer(TransferEvent::Failed { failure, .. }) => panic!("{failure}"),
            _ => {}
        }
        (done.len() == 3).then_some(())
    });
    assert_eq!(msgs, ["first", "nothing here", "你好"]);
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("empty.txt")).unwrap(), b"");
    assert_eq!(std::fs::read(dir.path().join("计算机五大.txt")).unwrap(), c);
}

#[test]
fn sixty_four_mib_plain_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let bytes = data(64 * 1024 * 1024, 3);
    plain_upload(server.local_addr(), &[("big.bin", &bytes, "")]);
    let (finished, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(finished.len(), 1);
    assert!(
        std::fs::read(dir.path().join("big.bin")).unwrap() == bytes,
        "64 MiB differ"
    );
}

#[test]
fn a_second_file_with_the_same_name_is_renamed_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    plain_upload(
        server.local_addr(),
        &[("a.txt", b"first", ""), ("a.txt", b"second", "")],
    );
    let mut renamed = None;
    let mut done = 0;
    wait_for(&events, |event| {
        match event {
            Event::Transfer(TransferEvent::Started {
                saved_as: Some(s), ..
            }) => renamed = Some(s.clone()),
            Event::Transfer(TransferEvent::Finished { .. }) => done += 1,
            _ => {}
        }
        (done == 2).then_some(())
    });
    assert_eq!(
        renamed.as_deref(),
        Some("a (1).txt"),
        "the rename is reported"
    );
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"first");
    assert_eq!(
        std::fs::read(dir.path().join("a (1).txt")).unwrap(),
        b"second"
    );
}

#[test]
fn ferry_send_plain_to_a_plain_server_is_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    let a = src.path().join("计算机五大.txt");
    let empty = src.path().join("empty");
    let b = src.path().join("b.bin");
    std::fs::write(&a, "五大部件").unwrap();
    std::fs::write(&empty, "").unwrap();
    std::fs::write(&b, data(2_500_000, 4)).unwrap();
    let (addr, received) = plain_server();
    let mut opts = SendOptions::new(addr.to_string());
    opts.mode = Mode::Plain;
    opts.msg = "from ferry".into();
    let (sink, _events) = event_channel(None);
    // An empty file in the middle must not stop the ones after it.
    let files = [
        OutgoingFile::new(&a),
        OutgoingFile::new(&empty),
        OutgoingFile::new(&b),
    ];
    let outcomes = send_files(&opts, &files, &sink, &CancelToken::new()).unwrap();
    assert_eq!(
        outcomes,
        [
            FileOutcome::SentUnverified,
            FileOutcome::SentUnverified,
            FileOutcome::SentUnverified
        ]
    );
    for path in [&a, &empty, &b] {
        let (header, bytes) = received.recv_timeout(DEADLINE).unwrap();
        assert_eq!(
            header["file_name"],
            path.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(header["msg"], "from ferry");
        assert!(
            header.get("ferry").is_none(),
            "plain mode must not mark the header"
        );
        assert_eq!(bytes, std::fs::read(path).unwrap());
    }
}

/// README: "nothing is overwritten (`a (1).txt`)": a number only when the name is taken. A
/// file the user moved out of the folder frees its name for the next upload of that name,
/// however many came before on this running server.
#[test]
fn a_name_freed_by_the_user_is_used_again_by_the_next_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let upload = |bytes: &[u8]| {
        plain_upload(server.local_addr(), &[("report.pdf", bytes, "")]);
        let (finished, failed) = wait_files(&events, 1);
        assert!(failed.is_empty(), "{failed:?}");
        finished[0].0.clone()
    };
    assert_eq!(upload(b"one"), dir.path().join("report.pdf"));
    assert_eq!(upload(b"two"), dir.path().join("report (1).pdf"));
    std::fs::remove_file(dir.path().join("report.pdf")).unwrap();
    assert_eq!(upload(b"three"), dir.path().join("report.pdf"));
    assert_eq!(
        std::fs::read(dir.path().join("report.pdf")).unwrap(),
        b"three"
    );
    assert_eq!(upload(b"four"), dir.path().join("report (2).pdf"));
    assert_eq!(
        names_in(dir.path()),
        ["report (1).pdf", "report (2).pdf", "report.pdf"]
    );
}
