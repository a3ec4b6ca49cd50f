//! Hostile input on the wire: dangerous names and malformed frames. The server must keep
//! everything inside the download folder, keep no partial file, say what was wrong, and
//! keep serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::util::*;

#[test]
fn hostile_names_land_as_safe_names_inside_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    let long = "长".repeat(100); // 300 bytes of UTF-8
    let cases: Vec<(&str, &str)> = vec![
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("C:\\x", "x (1)"),
        ("a\\..\\b", "b"),
        ("", "unnamed"),
        (".", "unnamed (1)"),
        ("..", "unnamed (2)"),
        ("nul\0inside", "nul_inside"),
        (&long, ""),
        ("CON", "_CON"),
        ("aux.txt", "_aux.txt"),
        ("trailing dot.", "trailing dot"),
        ("trailing space ", "trailing space"),
    ];
    let (server, events) = start_server(&dir);
    for (i, (name, expected)) in cases.iter().enumerate() {
        let content = format!("content {i}");
        plain_upload(server.local_addr(), &[(name, content.as_bytes(), "")]);
        let (finished, failed) = wait_files(&events, 1);
        assert!(failed.is_empty(), "{name:?}: {failed:?}");
        let path = &finished[0].0;
        assert_eq!(
            path.parent(),
            Some(dir.as_path()),
            "{name:?} landed at {path:?}"
        );
        let saved = path.file_name().unwrap().to_str().unwrap();
        if expected.is_empty() {
            assert!(saved.len() <= 200 && saved.starts_with("长长"), "{saved:?}");
        } else {
            assert_eq!(saved, *expected, "for {name:?}");
        }
        assert_eq!(std::fs::read(path).unwrap(), content.as_bytes());
    }
    assert_eq!(
        names_in(root.path()),
        ["downloads"],
        "nothing written beside the folder"
    );
    assert_eq!(names_in(&dir).len(), cases.len());
    assert!(!names_in(&dir).iter().any(|n| n.ends_with(".part")));
}

/// Sends `bytes`, then expects the server to close the connection (never hang) and report.
fn expect_rejected(
    addr: SocketAddr,
    events: &crossbeam_channel::Receiver<ferry::events::Event>,
    bytes: &[u8],
) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    // The server closes: EOF (or a reset if it closed with our bytes unread).
    let _ = stream.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "a plain-looking peer must not receive anything"
    );
    wait_connection_error(events)
}

#[test]
fn bad_frames_are_refused_with_a_clear_error_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let addr = server.local_addr();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("length 0", 0i32.to_le_bytes().to_vec(), "not positive"),
        (
            "negative length",
            (-7i32).to_le_bytes().to_vec(),
            "not positive",
        ),
        (
            "length 2^31-1",
            i32::MAX.to_le_bytes().to_vec(),
            "exceeds the limit",
        ),
        (
            "invalid UTF-8",
            plain_frame_bytes(b"{\"file_name\":\"\xff\"}"),
            "UTF-8",
        ),
        (
            "not JSON",
            plain_frame_bytes(b"hello there"),
            "not valid JSON",
        ),
        (
            "a JSON array",
            plain_frame_bytes(b"[1,2,3]"),
            "not a JSON object",
        ),
        (
            "missing file_size",
            plain_frame_bytes(br#"{"file_name":"a.txt"}"#),
            "file_size",
        ),
        (
            "missing file_name",
            plain_frame_bytes(br#"{"file_size":3}"#),
            "file_name",
        ),
        (
            "negative size",
            plain_frame_bytes(br#"{"file_name":"a.txt","file_size":-3}"#),
            "file_size -3",
        ),
        (
            "fractional size",
            plain_frame_bytes(br#"{"file_name":"a.txt","file_size":2.5}"#),
            "file_size 2.5",
        ),
        (
            "truncated header",
            {
                let mut f = plain_frame_bytes(br#"{"file_name":"a.txt","file_size":3}"#);
                f.truncate(10);
                f
            },
            "middle of a frame",
        ),
        (
            "stream shorter than file_size",
            {
                let mut f = plain_frame(&plain_header("short.txt", 100, ""));
                f.extend_from_slice(b"only 20 bytes here..");
                f
            },
            "after 20 of 100 bytes",
        ),
    ];
    for (what, bytes, expected) in cases {
        let reason = expect_rejected(addr, &events, &bytes);
        assert!(
            reason.contains(expected),
            "{what}: {reason:?} lacks {expected:?}"
        );
        // The next good upload still works.
        plain_upload(addr, &[("good.txt", what.as_bytes(), "")]);
        let (finished, failed) = wait_files(&events, 1);
        assert!(failed.is_empty(), "{what}: {failed:?}");
        assert_eq!(std::fs::read(&finished[0].0).unwrap(), what.as_bytes());
        std::fs::remove_file(&finished[0].0).unwrap();
    }
    assert!(
        names_in(dir.path()).is_empty(),
        "no partial or final file from bad input: {:?}",
        names_in(dir.path())
    );
}

fn plain_frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_ferry_peer_sending_more_than_it_offered_is_cut_off() {
    use ferry::protocol::{Header, SenderMsg, encode_chunk_header, encode_sender_msg};
    let dir = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dir.path());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    let offer = SenderMsg::Offer(Header {
        eager: false,
        file_name: "x".into(),
        file_size: 4,
        msg: String::new(),
        resume_key: None,
    });
    stream
        .write_all(&encode_sender_msg(&offer).unwrap())
        .unwrap();
    stream.write_all(&encode_chunk_header(8)).unwrap();
    stream.write_all(b"12345678").unwrap();
    let reason = wait_connection_error(&events);
    assert!(reason.contains("more data than it offered"), "{reason}");
    assert!(names_in(dir.path()).is_empty());
}
