//! Folders (issue 13): a folder offered once, accepted or declined as a whole, its files
//! streamed back to back and each verified; structure, names from hostile senders, empty
//! folders, times, symlinks, collisions, declines, plain peers and encryption. Real sockets
//! on 127.0.0.1, real temp folders, the real binary for the CLI.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ferry::events::{Event, ServerEvent, TransferEvent};
use ferry::protocol::{
    FolderEntry, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg,
};
use ferry::transfer::{AcceptPolicy, FileOutcome, SendOptions, ServerConfig, walk_folder};

use crate::util::{
    LOOPBACK, data, device, ferry, offer_folder, plain_server, read_answer, send_folder,
    start_server, start_server_with, test_receiver_keyring, wait_for,
};

/// photos/{a.txt, 2024/b.bin, 2024/深圳/c.txt, empty/}
fn sample_folder(parent: &Path) -> std::path::PathBuf {
    let root = parent.join("photos");
    std::fs::create_dir_all(root.join("2024/深圳")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha").unwrap();
    std::fs::write(root.join("2024/b.bin"), data(300_000, 7)).unwrap();
    std::fs::write(root.join("2024/深圳/c.txt"), b"").unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(root.join("a.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    root
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_folder_arrives_whole_with_empty_folders_times_and_chinese_names() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let outcomes = send_folder(server.local_addr(), &root, None);
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
    let got = dl.path().join("photos");
    assert_eq!(std::fs::read(got.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(got.join("2024/b.bin")).unwrap(),
        data(300_000, 7)
    );
    assert_eq!(std::fs::read(got.join("2024/深圳/c.txt")).unwrap(), b"");
    assert!(got.join("empty").is_dir());
    assert_eq!(mtime(&got.join("a.txt")), mtime(&root.join("a.txt")));
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        secs(mtime(&got.join("2024"))),
        secs(mtime(&root.join("2024")))
    );
    // No partials left behind anywhere.
    let mut stack = vec![got.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert!(!path.to_string_lossy().ends_with(".ferry.part"), "{path:?}");
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
}

#[test]
fn a_taken_folder_name_gets_a_number() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    std::fs::create_dir(dl.path().join("photos")).unwrap();
    let (server, _events) = start_server(dl.path());
    let outcomes = send_folder(server.local_addr(), &root, None);
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
    match &outcomes[0] {
        FileOutcome::Verified { saved_as, .. } => assert!(saved_as.starts_with("photos (1)/")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(dl.path().join("photos (1)/a.txt")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        std::fs::read_dir(dl.path().join("photos")).unwrap().count(),
        0
    );
}

#[test]
fn symlinks_to_files_inside_are_sent_and_others_skipped() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    std::fs::write(src.path().join("secret.txt"), b"outside").unwrap();
    symlink(root.join("a.txt"), root.join("inside-link")).unwrap();
    symlink(src.path().join("secret.txt"), root.join("outside-link")).unwrap();
    symlink(root.join("2024"), root.join("dir-link")).unwrap();
    let folder = walk_folder(&root).unwrap();
    let mut skipped = folder.skipped.clone();
    skipped.sort();
    assert_eq!(skipped, ["dir-link", "outside-link"]);
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let outcomes = send_folder(server.local_addr(), &root, None);
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
    assert_eq!(
        std::fs::read(dl.path().join("photos/inside-link")).unwrap(),
        b"alpha"
    );
    assert!(!dl.path().join("photos/outside-link").exists());
    assert!(!dl.path().join("photos/dir-link").exists());
}

#[test]
fn a_declined_folder_creates_nothing() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let sender = std::thread::spawn(move || send_folder(addr, &root, None));
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    assert_eq!((offer.count, offer.bytes), (3, 300_005));
    assert!(
        offer.names.contains(&"photos/2024/深圳/c.txt".to_owned()),
        "{:?}",
        offer.names
    );
    server.decide(offer.offer_id, false);
    let outcomes = sender.join().unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, FileOutcome::Declined { .. })),
        "{outcomes:?}"
    );
    assert_eq!(std::fs::read_dir(dl.path()).unwrap().count(), 0);
}

/// A hostile sender's folder, built by hand: every component is sanitised, nothing lands
/// outside the folder's root.
#[test]
fn hostile_paths_stay_inside_the_folder() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let paths = [
        "../evil.txt",
        ".hidden/x.txt",
        "CON/aux.txt",
        "a/../../b.txt",
        "文件/档案.txt",
    ];
    let entries: Vec<FolderEntry> = paths
        .iter()
        .map(|p| FolderEntry {
            path: (*p).into(),
            size: Some(3),
            mtime: 0,
            mode: 6,
        })
        .collect();
    let (mut stream, answer) = offer_folder(server.local_addr(), "..", entries, None);
    let root = match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => saved_as,
        other => panic!("{other:?}"),
    };
    assert!(!root.starts_with('.') && !root.contains('/'), "{root:?}");
    for index in 0..paths.len() as u64 {
        let mut bytes = encode_sender_msg(&SenderMsg::File { index, offset: 0 }).unwrap();
        bytes.extend_from_slice(&encode_chunk_header(3));
        bytes.extend_from_slice(b"abc");
        let end = SenderMsg::End {
            blake3: *blake3::hash(b"abc").as_bytes(),
        };
        bytes.extend_from_slice(&encode_sender_msg(&end).unwrap());
        stream.write_all(&bytes).unwrap();
    }
    stream
        .write_all(&encode_sender_msg(&SenderMsg::FolderEnd).unwrap())
        .unwrap();
    let mut verified = Vec::new();
    loop {
        match read_answer(&mut stream) {
            ReceiverMsg::Files {
                verified: v,
                failed,
            } => {
                assert!(failed.is_empty(), "{failed:?}");
                verified.extend(v);
            }
            ReceiverMsg::FolderDone {
                verified: n,
                failed,
            } => {
                assert_eq!((n, failed), (5, 0));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    verified.sort();
    assert_eq!(verified, [0, 1, 2, 3, 4]);
    // Only the root in the download folder; everything else below it.
    let top: Vec<_> = std::fs::read_dir(dl.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top, std::slice::from_ref(&root));
    assert!(!dl.path().parent().unwrap().join("evil.txt").exists());
    let mut files = Vec::new();
    let mut stack = vec![dl.path().join(&root)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with('.') && name != "..", "{path:?}");
            if path.is_dir() {
                stack.push(path);
            } else {
                assert_eq!(std::fs::read(&path).unwrap(), b"abc");
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(dl.path().join(&root).join("文件/档案.txt").exists());
}

#[test]
fn a_file_index_out_of_order_ends_the_connection() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let entry = |p: &str| FolderEntry {
        path: p.into(),
        size: Some(0),
        mtime: 0,
        mode: 6,
    };
    let entries = vec![entry("a"), entry("b")];
    let (mut stream, answer) = offer_folder(server.local_addr(), "f", entries, None);
    assert!(matches!(answer, ReceiverMsg::FolderAccept { .. }));
    stream
        .write_all(
            &encode_sender_msg(&SenderMsg::File {
                index: 7,
                offset: 0,
            })
            .unwrap(),
        )
        .unwrap();
    match read_answer(&mut stream) {
        ReceiverMsg::Failed { reason } => assert!(reason.contains("no such entry"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_encrypted_folder_send_works() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let _ = test_receiver_keyring();
    let id_dir = tempfile::tempdir().unwrap();
    let mut opts = SendOptions::new(server.local_addr().to_string());
    opts.keyring = Some(device(id_dir.path(), "laptop"));
    let outcomes = send_folder(server.local_addr(), &root, Some(opts));
    assert!(outcomes.iter().all(FileOutcome::is_success), "{outcomes:?}");
    assert_eq!(
        std::fs::read(dl.path().join("photos/2024/b.bin")).unwrap(),
        data(300_000, 7)
    );
    let security = wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Started { security, .. }) => Some(security.clone()),
        _ => None,
    });
    assert!(security.is_encrypted(), "{security:?}");
}

#[test]
fn cli_sends_a_folder_and_files_and_prints_a_line_per_file() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let loose = src.path().join("loose.txt");
    std::fs::write(&loose, b"loose").unwrap();
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let out = ferry()
        .args(["send", "--to", &server.local_addr().to_string()])
        .arg(&root)
        .arg(&loose)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("verified")).count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("photos/2024/b.bin"), "{stdout}");
    assert_eq!(
        std::fs::read(dl.path().join("loose.txt")).unwrap(),
        b"loose"
    );
    assert!(dl.path().join("photos/empty").is_dir());
}

/// A result line names a folder's file as the user typed the folder (not the absolute path
/// the walk read it from), and a local name with control characters (anyone who can write
/// into a folder being sent can choose one) reaches the terminal escaped, never raw.
#[test]
fn cli_result_lines_name_files_as_typed_and_carry_no_control_characters() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let hostile = "red\u{1b}[31m\u{7}.txt";
    std::fs::write(root.join(hostile), b"x").unwrap();
    std::fs::write(src.path().join(hostile), b"y").unwrap();
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let out = ferry()
        .current_dir(src.path())
        .args([
            "send",
            "--to",
            &server.local_addr().to_string(),
            "photos",
            hostile,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stdout
            .iter()
            .any(|b| b.is_ascii_control() && *b != b'\n'),
        "a control character reached the terminal: {stdout:?}"
    );
    let mut named: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": verified"))
        .filter_map(|l| l.split(": verified").next())
        .collect();
    named.sort_unstable();
    assert_eq!(
        named,
        [
            "photos/2024/b.bin",
            "photos/2024/深圳/c.txt",
            "photos/a.txt",
            "photos/red\\u{1b}[31m\\u{7}.txt",
            "red\\u{1b}[31m\\u{7}.txt",
        ],
        "{stdout}"
    );
}

#[test]
fn cli_plain_refuses_a_folder_unless_flattened() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let (addr, received) = plain_server();
    let out = ferry()
        .args(["send", "--plain", "--to", &addr.to_string()])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--flatten"), "{stderr}");
    let out = ferry()
        .args(["send", "--plain", "--flatten", "--to", &addr.to_string()])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names = Vec::new();
    for _ in 0..3 {
        let (header, _) = received.recv_timeout(Duration::from_secs(20)).unwrap();
        names.push(header["file_name"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "photos/2024/b.bin",
            "photos/2024/深圳/c.txt",
            "photos/a.txt"
        ]
    );
}

/// Enough files that the receiver's batched verdicts arrive while later files are still
/// going out (a verdict batch holds at most 512).
#[test]
fn verdicts_arriving_mid_stream_are_all_kept() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("many");
    for i in 0..1500 {
        let dir = root.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{i}.txt")), data(100 + i, i as u64)).unwrap();
    }
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    std::thread::spawn(move || for _ in events {});
    let outcomes = send_folder(server.local_addr(), &root, None);
    assert_eq!(outcomes.len(), 1500);
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.is_success()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed[0]
    );
    assert_eq!(
        std::fs::read(dl.path().join("many/d1/1499.txt")).unwrap(),
        data(1599, 1499)
    );
}
