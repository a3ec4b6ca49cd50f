//! A folder carries the sender's message like a file does: a user who types "weekend photos"
//! and sends a folder sees it arrive with the folder, in the window's folder row, in
//! `serve --ask`'s question and once in `serve`'s output (not once per file of a folder of
//! thousands). Before, the folder offer had no message and it was dropped without a word.
//! Real binaries and sockets on 127.0.0.1, real folders in temp dirs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ferry::events::{Event, ServerEvent, TransferEvent};
use ferry::transfer::{AcceptPolicy, SendOptions, ServerConfig};

use crate::util::*;

/// What the sender types: Chinese, and an escape sequence that must never reach a terminal raw.
const MESSAGE: &str = "周末的照片 \u{1b}[2J";
/// The same as `serve` prints it.
const ESCAPED: &str = "周末的照片 \\u{1b}[2J";

/// `photos/` with three files, one in a Chinese-named subfolder.
fn photos(src: &Path) -> PathBuf {
    let root = src.join("photos");
    std::fs::create_dir_all(root.join("深圳")).unwrap();
    for (path, len) in [("a.txt", 10), ("b.bin", 70_000), ("深圳/c.txt", 5)] {
        write_data_file(&root.join(path), len, len as u64);
    }
    root
}

#[test]
fn serve_asks_with_a_folders_message_and_prints_it_once() {
    let src = tempfile::tempdir().unwrap();
    let dl = tempfile::tempdir().unwrap();
    let root = photos(src.path());
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dl.path());
    let sender = ferry()
        .args(["send", "--to", &addr.to_string(), "--msg", MESSAGE])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let asked = wait_line(&lines, "message:");
    assert!(asked.ends_with(&format!("message: {ESCAPED}")), "{asked}");
    let question = wait_line(&lines, "Accept offer ");
    writeln!(stdin, "y {}", offer_number(&question)).unwrap();
    let out = sender.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    // Every file's "received" line, and what came between them.
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("received "))
        .count()
        < 3
    {
        seen.push(wait_line(&lines, ""));
    }
    let told: Vec<&String> = seen.iter().filter(|l| l.contains("周末的照片")).collect();
    assert_eq!(told, [ESCAPED], "{seen:#?}");
    assert!(!seen.iter().any(|l| l.contains('\u{1b}')), "{seen:#?}");
    assert_eq!(
        std::fs::read(dl.path().join("photos/深圳/c.txt"))
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn a_folders_message_comes_with_its_offer_and_its_first_file_only() {
    let src = tempfile::tempdir().unwrap();
    let dl = tempfile::tempdir().unwrap();
    let root = photos(src.path());
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let mut opts = SendOptions::new(addr.to_string());
    opts.msg = MESSAGE.into();
    let sending = std::thread::spawn(move || send_folder(addr, &root, Some(opts)));

    let (offer_id, msg) = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => {
            Some((offer.offer_id, offer.msg.clone()))
        }
        _ => None,
    });
    assert_eq!(msg, MESSAGE);
    server.decide(offer_id, true);
    let mut started = Vec::new();
    while started.len() < 3 {
        started.push(wait_for(&events, |e| match e {
            Event::Transfer(TransferEvent::Started { msg, .. }) => Some(msg.clone()),
            _ => None,
        }));
    }
    assert_eq!(started, [MESSAGE, "", ""], "one row carries it, the first");
    let outcomes = sending.join().unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ferry::transfer::FileOutcome::Verified { .. })),
        "{outcomes:?}"
    );
}
