//! Folders through LocalSend (issue 16 with issue 13's folder rules): a LocalSend sender's
//! `fileName`s with `/`-separated paths become folders beneath the download folder (one
//! root per top-level folder, `(1)` when taken, every component sanitised, planted symlinks
//! never followed, depth bounded), Ferry's LocalSend sender sends a folder with its
//! structure, and a stalled upload does not hold up another one.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, event_channel};
use ferry::localsend::{LocalSendBatch, LocalSendSender, LocalSendTarget};
use ferry::transfer::{FileOutcome, OutgoingItem, walk_folder};

use crate::localsend::{Peer, config, file, files, session_of, start};
use crate::util::{data, names_in, wait_files};

/// Every file under `root` by its relative path, with its bytes (folders by `path/`).
fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.is_dir() {
                out.push((format!("{rel}/"), None));
                walk(root, &path, out);
            } else {
                out.push((rel, Some(std::fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn a_localsend_folder_is_recreated_safely_with_hostile_components_and_a_planted_symlink() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("in");
    let outside = root.path().join("outside");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::create_dir(&outside).expect("mkdir");
    // A folder of the user's already has the name, and a local symlink waits under the
    // name another root would get: neither is written into.
    std::fs::create_dir(dir.join("photos")).expect("mkdir");
    std::fs::write(dir.join("photos/mine.txt"), b"mine").expect("write");
    std::os::unix::fs::symlink(&outside, dir.join("docs")).expect("symlink");
    let (server, events) = start(config(&dir));
    let peer = Peer::new(&server);
    let names = [
        ("p1", "photos/2024/a.jpg"),
        ("p2", "photos/相册/照片.jpg"),
        ("p3", "photos/2024/raw/b.raw"),
        ("h1", "a/../../x"),
        ("h2", "/abs/x"),
        ("h3", ".hidden/x"),
        ("d1", "docs/secret.txt"),
        ("t1", "top.txt"),
    ];
    let contents: Vec<Vec<u8>> = (0..names.len())
        .map(|i| data(1000 + i * 7, i as u64))
        .collect();
    let list: Vec<_> = names
        .iter()
        .zip(&contents)
        .map(|((id, name), bytes)| file(id, name, bytes.len()))
        .collect();
    let (session, tokens) = session_of(&peer.prepare("", files(&list)));
    for ((id, _), bytes) in names.iter().zip(&contents) {
        let up = peer.upload(&session, id, tokens[*id].as_str().expect("token"), bytes);
        assert_eq!(up.status, 200, "{id}: {}", up.body);
    }
    let (finished, failed) = wait_files(&events, names.len());
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(finished.len(), names.len());
    assert_eq!(
        names_in(&dir),
        [
            "_hidden",
            "a",
            "abs",
            "docs",
            "docs (1)",
            "photos",
            "photos (1)",
            "top.txt"
        ]
    );
    let got = |rel: &str| std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(got("photos (1)/2024/a.jpg"), contents[0]);
    assert_eq!(got("photos (1)/相册/照片.jpg"), contents[1]);
    assert_eq!(got("photos (1)/2024/raw/b.raw"), contents[2]);
    assert_eq!(got("a/x"), contents[3]);
    assert_eq!(got("abs/x"), contents[4]);
    assert_eq!(got("_hidden/x"), contents[5]);
    assert_eq!(got("docs (1)/secret.txt"), contents[6]);
    assert_eq!(got("top.txt"), contents[7]);
    assert_eq!(
        names_in(&dir.join("photos")),
        ["mine.txt"],
        "the user's folder"
    );
    assert!(names_in(&outside).is_empty(), "written through the symlink");
    assert_eq!(names_in(root.path()), ["in", "outside"]);
    // Every file of the session went into its one root; rows show the relative path.
    assert!(
        finished
            .iter()
            .any(|(path, _)| path.ends_with("photos (1)/2024/raw/b.raw")),
        "{finished:?}"
    );
}

#[test]
fn a_depth_bomb_is_refused_with_a_clear_status_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let deep = format!("{}x", "d/".repeat(200));
    let answer = peer.prepare("", files(&[file("a", &deep, 1)]));
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("deeper than"), "{}", answer.body);
    let long = format!("{}/x", "n".repeat(5000));
    let answer = peer.prepare("", files(&[file("a", &long, 1)]));
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn ferrys_sender_sends_a_folder_that_arrives_byte_for_byte() {
    let src = tempfile::tempdir().expect("tempdir");
    let dst = tempfile::tempdir().expect("tempdir");
    let folder = src.path().join("项目");
    std::fs::create_dir_all(folder.join("src/deep/er")).expect("mkdir");
    std::fs::create_dir_all(folder.join("empty")).expect("mkdir");
    std::fs::write(folder.join("README.md"), data(5000, 1)).expect("write");
    std::fs::write(folder.join("src/main.rs"), data(70_000, 2)).expect("write");
    std::fs::write(folder.join("src/deep/er/z.bin"), data(300_000, 3)).expect("write");
    std::fs::write(folder.join("src/zero"), b"").expect("write");
    std::fs::write(src.path().join("secret"), b"outside").expect("write");
    std::os::unix::fs::symlink(src.path().join("secret"), folder.join("out")).expect("link");
    let (server, events) = start(config(dst.path()));
    let target = LocalSendTarget {
        addr: server.local_addr(),
        fingerprint: server.fingerprint().to_owned(),
        alias: "Ferry test".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    };
    let walked = walk_folder(&folder).expect("walk");
    assert_eq!(walked.skipped, ["out"], "the link out is not sent");
    let batch = LocalSendBatch::of(&[OutgoingItem::Folder(walked)]);
    assert_eq!(batch.empty_folders, ["项目/empty"]);
    let sender = LocalSendSender::new(
        ferry::localsend::CertIdentity::generate().expect("certificate"),
        "Ferry sender",
    );
    let (sink, _sent) = event_channel(None);
    let outcomes = sender
        .send_batch(&target, &batch, &sink, &CancelToken::new())
        .expect("sent");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, FileOutcome::SentUnverified)),
        "{outcomes:?}"
    );
    let (_, failed) = wait_files(&events, 4);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(names_in(dst.path()), ["项目"]);
    // The same tree but for what LocalSend cannot carry: the empty folder and the link out.
    let mut want = tree(&folder);
    want.retain(|(rel, _)| rel != "empty/" && rel != "out");
    assert_eq!(tree(&dst.path().join("项目")), want);
}

#[test]
fn a_stalled_upload_does_not_hold_up_another_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, events) = start(config(dir.path()));
    let peer = Peer::new(&server);
    let slow = data(100_000, 1);
    let quick = data(2_000_000, 2);
    let (session, tokens) = session_of(&peer.prepare(
        "",
        files(&[
            file("slow", "album/slow.bin", slow.len()),
            file("quick", "album/quick.bin", quick.len()),
        ]),
    ));
    // The first body: its head and a third of it, then nothing until the second is done.
    let head = format!("Content-Length: {}\r\n", slow.len());
    let path = format!(
        "/api/localsend/v2/upload?sessionId={session}&fileId=slow&token={}",
        tokens["slow"].as_str().expect("token")
    );
    let mut stalled = peer.send(&path, &head, &[&slow[..30_000]], Duration::ZERO);
    let started = Instant::now();
    let up = peer.upload(
        &session,
        "quick",
        tokens["quick"].as_str().expect("token"),
        &quick,
    );
    assert_eq!(up.status, 200, "{}", up.body);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the second upload waited for the first ({:?})",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(dir.path().join("album/quick.bin")).expect("quick"),
        quick
    );
    assert_eq!(
        names_in(&dir.path().join("album")),
        ["quick.bin", "slow.bin.ferry.part"],
        "the first is still a .part"
    );
    stalled.write_all(&slow[30_000..]).expect("rest");
    stalled.flush().expect("flush");
    let answer = Peer::read_answer(stalled);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, failed) = wait_files(&events, 2);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        std::fs::read(dir.path().join("album/slow.bin")).expect("slow"),
        slow
    );
    assert_eq!(
        names_in(&dir.path().join("album")),
        ["quick.bin", "slow.bin"]
    );
}
