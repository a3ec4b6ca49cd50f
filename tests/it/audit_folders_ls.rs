//! Acceptance audit of issues 13 (folders) and 16 (LocalSend) against today's code: the
//! hostile and edge cases the issues imply that no earlier test pinned. Real sockets on
//! 127.0.0.1, real temp folders.

use std::io::Write;
use std::net::TcpStream;

use ferry::protocol::{
    FolderEntry, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg,
};

use crate::util::{files_under, offer_folder, read_answer, start_server};

/// Sends every file entry of an accepted folder with `body` as its bytes (all the same
/// length as announced), ends the folder and collects the receiver's verdicts:
/// (verified indices, failed indices, the final `folder_done` counts).
pub(crate) fn send_all(
    stream: &mut TcpStream,
    entries: &[FolderEntry],
    body: &[u8],
) -> (Vec<u64>, Vec<u64>, (u64, u64)) {
    let mut bytes = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.size.is_none() {
            continue;
        }
        let index = index as u64;
        bytes.extend(encode_sender_msg(&SenderMsg::File { index, offset: 0 }).unwrap());
        bytes.extend_from_slice(&encode_chunk_header(body.len()));
        bytes.extend_from_slice(body);
        let end = SenderMsg::End {
            blake3: *blake3::hash(body).as_bytes(),
        };
        bytes.extend(encode_sender_msg(&end).unwrap());
    }
    bytes.extend(encode_sender_msg(&SenderMsg::FolderEnd).unwrap());
    stream.write_all(&bytes).unwrap();
    let (mut verified, mut failed) = (Vec::new(), Vec::new());
    loop {
        match read_answer(stream) {
            ReceiverMsg::Files {
                verified: v,
                failed: f,
            } => {
                verified.extend(v);
                failed.extend(f.into_iter().map(|x| x.index));
            }
            ReceiverMsg::FolderDone {
                verified: n,
                failed: f,
            } => return (verified, failed, (n, f)),
            other => panic!("{other:?}"),
        }
    }
}

pub(crate) fn file(path: &str) -> FolderEntry {
    FolderEntry {
        path: path.into(),
        size: Some(3),
        mtime: 0,
        mode: 6,
    }
}

fn dir(path: &str) -> FolderEntry {
    FolderEntry {
        path: path.into(),
        size: None,
        mtime: 0,
        mode: 7,
    }
}

/// A hostile sender lists the same path twice, names that sanitise alike, a file and a
/// folder of one name, and a file beneath a file: the receiver neither hangs nor panics,
/// answers every file, overwrites nothing, and writes only inside the folder's root.
#[test]
fn duplicate_and_clashing_folder_entries_are_answered_and_overwrite_nothing() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let entries = vec![
        file("same.txt"),
        file("same.txt"),
        file("q?.txt"),
        file("q_.txt"),
        file("clash"),
        dir("clash"),
        file("clash/inner.txt"),
        dir("d"),
        file("d"),
    ];
    let (mut stream, answer) = offer_folder(server.local_addr(), "box", entries.clone(), None);
    let root = match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => saved_as,
        other => panic!("{other:?}"),
    };
    let (verified, failed, done) = send_all(&mut stream, &entries, b"abc");
    eprintln!("verified {verified:?} failed {failed:?} done {done:?}");
    let files = entries.iter().filter(|e| e.size.is_some()).count() as u64;
    assert_eq!(done.0 + done.1, files, "every file answered");
    let found = files_under(&dl.path().join(&root));
    eprintln!("{found:?}");
    assert_eq!(found.len() as u64, done.0, "{found:?}");
}

/// A hostile sender announces modification times far past what the system's clock can
/// hold (`u64::MAX` seconds, and just past `i64::MAX`): the folder still arrives, every
/// file verified and named, rather than the receiver's connection thread panicking on the
/// time's addition (it did: `UNIX_EPOCH + Duration::from_secs(mtime)` overflowed).
#[test]
fn absurd_modification_times_from_a_sender_are_ignored_not_a_panic() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let absurd = |path: &str, size: Option<u64>, mtime: u64| FolderEntry {
        path: path.into(),
        size,
        mtime,
        mode: if size.is_some() { 6 } else { 7 },
    };
    let entries = vec![
        absurd("sub", None, u64::MAX),
        absurd("sub/a.txt", Some(3), u64::MAX),
        absurd("b.txt", Some(3), i64::MAX as u64 + 1),
        absurd("c.txt", Some(3), 1_600_000_000),
        absurd("d.txt", Some(3), i64::MAX as u64),
    ];
    let (mut stream, answer) = offer_folder(server.local_addr(), "times", entries.clone(), None);
    let root = match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => saved_as,
        other => panic!("{other:?}"),
    };
    let (mut verified, failed, done) = send_all(&mut stream, &entries, b"abc");
    verified.sort();
    assert_eq!((verified, failed, done), (vec![1, 2, 3, 4], vec![], (4, 0)));
    let got = dl.path().join(&root);
    for name in ["sub/a.txt", "b.txt", "c.txt", "d.txt"] {
        assert_eq!(std::fs::read(got.join(name)).unwrap(), b"abc", "{name}");
    }
    let c = std::fs::metadata(got.join("c.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        c,
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000)
    );
}

/// A LocalSend sender names one path twice, a file and a folder alike (`x` and `x/y`) and
/// names that sanitise alike: every file is answered, each arrives under its own name,
/// nothing is overwritten and nothing lands outside the download folder.
#[test]
fn a_localsend_session_of_clashing_names_overwrites_nothing() {
    use crate::localsend::{Peer, config, file, files, session_of, start};
    use crate::util::{data, names_in, wait_files};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let (server, events) = start(config(&dir));
    let peer = Peer::new(&server);
    let names = [
        ("a", "x"),
        ("b", "x/y"),
        ("c", "dup.txt"),
        ("d", "dup.txt"),
        ("e", "q?.txt"),
        ("f", "q_.txt"),
        ("g", "x/y/z"),
    ];
    let contents: Vec<Vec<u8>> = (0..names.len()).map(|i| data(100 + i, i as u64)).collect();
    let list: Vec<_> = names
        .iter()
        .zip(&contents)
        .map(|((id, name), bytes)| file(id, name, bytes.len()))
        .collect();
    let (session, tokens) = session_of(&peer.prepare("", files(&list)));
    let mut statuses = Vec::new();
    for ((id, _), bytes) in names.iter().zip(&contents) {
        let token = tokens[*id].as_str().unwrap();
        statuses.push((id, peer.upload(&session, id, token, bytes).status));
    }
    let ok = statuses.iter().filter(|(_, s)| *s == 200).count();
    let (finished, failed) = wait_files(&events, names.len());
    eprintln!("{statuses:?} {finished:?} {failed:?}");
    assert_eq!(finished.len() + failed.len(), names.len());
    assert_eq!(finished.len(), ok);
    // Every finished file holds exactly one sender's bytes, each sender's once.
    let mut held: Vec<Vec<u8>> = files_under(&dir)
        .iter()
        .map(|file| std::fs::read(dir.join(file)).unwrap())
        .collect();
    assert_eq!(held.len(), ok, "{held:?}");
    for bytes in &held {
        assert_eq!(contents.iter().filter(|c| *c == bytes).count(), 1);
    }
    held.sort();
    held.dedup();
    assert_eq!(held.len(), ok, "one file's bytes twice");
    assert_eq!(names_in(root.path()), ["in"]);
}

/// Folder names a hostile sender may give its root (empty, a separator, a dot, a path, a
/// reserved name, a very long name): each is refused or becomes one new folder directly in
/// the download folder, never the download folder itself or anything outside it.
#[test]
fn hostile_folder_root_names_make_one_new_folder_inside_or_are_refused() {
    let long = "長".repeat(2000);
    for name in [
        "",
        "/",
        ".",
        "a/b",
        "../up",
        "CON",
        "nul.txt",
        " ",
        long.as_str(),
    ] {
        let parent = tempfile::tempdir().unwrap();
        let dl = parent.path().join("dl");
        std::fs::create_dir(&dl).unwrap();
        let (server, _events) = start_server(&dl);
        let entries = vec![file("f.txt")];
        let (mut stream, answer) = offer_folder(server.local_addr(), name, entries.clone(), None);
        match answer {
            ReceiverMsg::FolderAccept { saved_as, .. } => {
                let (verified, failed, _) = send_all(&mut stream, &entries, b"abc");
                assert_eq!((verified, failed), (vec![0], vec![]), "{name:?}");
                assert!(
                    !saved_as.is_empty() && !saved_as.contains('/') && !saved_as.starts_with('.'),
                    "{name:?} saved as {saved_as:?}"
                );
                assert!(saved_as.len() <= 255, "{name:?}: {} bytes", saved_as.len());
                assert_eq!(
                    crate::util::names_in(&dl),
                    std::slice::from_ref(&saved_as),
                    "{name:?}"
                );
                assert_eq!(
                    std::fs::read(dl.join(&saved_as).join("f.txt")).unwrap(),
                    b"abc",
                    "{name:?}"
                );
            }
            other => {
                eprintln!("{name:?}: {other:?}");
                assert!(crate::util::names_in(&dl).is_empty(), "{name:?}");
            }
        }
        assert_eq!(crate::util::names_in(parent.path()), ["dl"], "{name:?}");
    }
}

/// A LocalSend device on the LAN calls itself with terminal escapes and line breaks:
/// `ferry peers` lists it on one line, with no raw control character reaching the
/// terminal (a hostile alias must not clear the screen or forge a line of output).
#[test]
fn a_localsend_alias_with_control_characters_cannot_forge_peers_output() {
    use crate::localsend::{config, peers_probing, start};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.alias = "evil\u{1b}[2J\nforged  10.0.0.9:53317  localsend desktop\r".into();
    let (server, _events) = start(cfg);
    let out = peers_probing(server.local_addr());
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    // Other tests' LocalSend receivers on this machine may be listed too (they announce on
    // LocalSend's port): only the hostile one's line is looked at, and no line may begin
    // with the text it tried to forge.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("evil")).collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(lines[0].contains("localsend"), "{stdout:?}");
    assert!(
        !stdout.lines().any(|l| l.trim_start().starts_with("forged")),
        "a forged line: {stdout:?}"
    );
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character: {stdout:?}"
    );
}

/// A sender names its folder and paths with terminal escapes and line breaks: the
/// `ferry serve --ask` prompt shows the offer with no raw control character, so it cannot
/// clear the screen or forge a line (such as a prompt for another offer).
#[test]
fn a_folder_offer_with_control_characters_cannot_forge_the_ask_prompt() {
    use std::time::Duration;
    let dl = tempfile::tempdir().unwrap();
    let (_serve, addr, lines, mut stdin) = crate::util::spawn_asking_serve(dl.path());
    let offering = std::thread::spawn(move || {
        let entries = vec![file("in\u{1b}[2Jner\nAccept offer 99 from x.txt")];
        let (mut stream, mut answer) =
            offer_folder(addr, "evil\u{1b}]0;t\u{7}\nAccept offer 98", entries, None);
        while matches!(answer, ReceiverMsg::Waiting { .. }) {
            answer = read_answer(&mut stream);
        }
        answer
    });
    let mut prompt = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the prompt");
        let last = line.starts_with("Accept offer");
        prompt.push(line);
        if last {
            break;
        }
    }
    let offer = crate::util::offer_number(prompt.last().unwrap());
    writeln!(stdin, "n {offer}").unwrap();
    let answer = offering.join().unwrap();
    assert!(matches!(answer, ReceiverMsg::Decline { .. }), "{answer:?}");
    let text = prompt.join("\n");
    eprintln!("{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character: {text:?}"
    );
    assert_eq!(
        prompt
            .iter()
            .filter(|l| l.starts_with("Accept offer"))
            .count(),
        1,
        "{text}"
    );
}

/// `dir/shared` with `a.txt` ("abc"), walked; then `a.txt` swapped for a symlink to
/// `dir/secret` ("KEY"): same size, so only the file's identity can tell.
fn walked_then_swapped(dir: &std::path::Path) -> ferry::transfer::OutgoingFolder {
    let root = dir.join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"abc").unwrap();
    std::fs::write(dir.join("secret"), b"KEY").unwrap();
    let folder = ferry::transfer::walk_folder(&root).unwrap();
    std::fs::remove_file(root.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(dir.join("secret"), root.join("a.txt")).unwrap();
    folder
}

/// Between the moment a folder is chosen (walked) and the moment its files are read, a
/// local process that can write into it swaps a file for a symlink to a secret outside
/// it: the secret is not sent (the issue: symlinks are never followed out of the folder).
#[test]
fn a_file_swapped_for_a_symlink_after_the_walk_does_not_send_what_it_points_to() {
    use ferry::events::{CancelToken, event_channel};
    use ferry::transfer::{OutgoingItem, SendOptions, send_items};
    let src = tempfile::tempdir().unwrap();
    let folder = walked_then_swapped(src.path());
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let (sink, events) = event_channel(None);
    std::thread::spawn(move || for _ in events {});
    let outcomes = send_items(
        &SendOptions::new(server.local_addr().to_string()),
        &[OutgoingItem::Folder(folder)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    eprintln!("{outcomes:?}");
    let got = std::fs::read(dl.path().join("shared/a.txt")).ok();
    assert_ne!(got.as_deref(), Some(&b"KEY"[..]), "the secret was sent");
    assert!(!outcomes[0].is_success(), "{outcomes:?}");
}

/// The same swap when the folder goes to a LocalSend device: the secret is not uploaded.
#[test]
fn a_file_swapped_for_a_symlink_is_not_sent_to_a_localsend_device_either() {
    use ferry::localsend::LocalSendBatch;
    use ferry::transfer::OutgoingItem;
    let src = tempfile::tempdir().unwrap();
    let batch = LocalSendBatch::of(&[OutgoingItem::Folder(walked_then_swapped(src.path()))]);
    let dst = tempfile::tempdir().unwrap();
    let outcomes = crate::localsend::send_batch_to_new_server(dst.path(), &batch);
    eprintln!("{outcomes:?}");
    let got = std::fs::read(dst.path().join("shared/a.txt")).ok();
    assert_ne!(got.as_deref(), Some(&b"KEY"[..]), "the secret was sent");
    // Said as this side's file, not as a broken connection.
    let outcomes = outcomes.expect("the session itself went through");
    assert!(
        matches!(
            &outcomes[..],
            [ferry::transfer::FileOutcome::Failed(failure)]
                if failure.kind == ferry::events::FailureKind::LocalFile
                    && failure.detail.as_deref().is_some_and(|d| d.contains("replaced since the folder was read"))
        ),
        "{outcomes:?}"
    );
}
