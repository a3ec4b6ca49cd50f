//! Folders received from a hostile or unlucky sender (issue 13's leftovers): a listing of
//! thousands of subfolders holds a bounded number of descriptors, two connections never
//! resume one folder into the same root at once, an expired folder state takes its kept
//! partial with it (and nothing else), and the prompt counts the folders. Real sockets on
//! 127.0.0.1, real temp folders.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry::events::{CancelToken, Event, OfferedFolder, ServerEvent, event_channel};
use ferry::transfer::{
    AcceptPolicy, FileOutcome, OutgoingItem, SendOptions, ServerConfig, send_items, walk_folder,
};

use crate::util::{LOOPBACK, start_server, start_server_with, wait_for};

/// photos/{a.txt, 2024/b.bin, 2024/深圳/c.txt, empty/}: 3 files in 3 folders.
fn sample_folder(parent: &Path) -> std::path::PathBuf {
    let root = parent.join("photos");
    std::fs::create_dir_all(root.join("2024/深圳")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha").unwrap();
    std::fs::write(root.join("2024/b.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(root.join("2024/深圳/c.txt"), b"").unwrap();
    root
}

/// Descriptors this process holds now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn send_folder(to: std::net::SocketAddr, path: &Path) -> Vec<FileOutcome> {
    let opts = SendOptions::new(to.to_string());
    let folder = walk_folder(path).unwrap();
    let (sink, events) = event_channel(None);
    // Drained, so thousands of files' events never fill the channel.
    std::thread::spawn(move || for _ in events {});
    send_items(
        &opts,
        &[OutgoingItem::Folder(folder)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap()
}

#[test]
fn thousands_of_subfolders_arrive_with_a_bounded_number_of_open_descriptors() {
    const SUBFOLDERS: usize = 5_000;
    if !Path::new("/proc/self/fd").is_dir() {
        eprintln!("SKIPPED: no /proc/self/fd to count descriptors");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("many");
    for i in 0..SUBFOLDERS {
        // Two levels, so subfolders are also reopened through parents that were closed.
        let dir = root.join(format!("g{:02}/d{i:05}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.txt"), format!("file {i}")).unwrap();
    }
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    // Drained, so thousands of files' events never fill the channel.
    std::thread::spawn(move || for _ in events {});
    let before = open_fds();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                most = most.max(open_fds());
                std::thread::sleep(Duration::from_millis(2)); // a sampling interval, not a wait
            }
            most
        })
    };
    let outcomes = send_folder(server.local_addr(), &root);
    done.store(true, Ordering::SeqCst);
    let most = watcher.join().unwrap();
    assert_eq!(outcomes.len(), SUBFOLDERS);
    assert!(
        outcomes.iter().all(FileOutcome::is_success),
        "{:?}",
        outcomes.iter().find(|o| !o.is_success())
    );
    for i in (0..SUBFOLDERS).step_by(97).chain([SUBFOLDERS - 1]) {
        let got = dl.path().join(format!("many/g{:02}/d{i:05}/f.txt", i % 50));
        assert_eq!(std::fs::read_to_string(&got).unwrap(), format!("file {i}"));
    }
    // 256 open subfolders, the batches' folders (128 each, up to three batches) and the
    // connection's own: well under one per subfolder. Other tests of this binary running
    // alongside open a few of their own.
    let grew = most.saturating_sub(before);
    eprintln!("descriptors: {before} before, {most} at most during the transfer");
    assert!(
        grew < 1_500,
        "{grew} more descriptors held during the transfer"
    );
}

/// Two connections offering the same folder (same resume key) at once: the second is
/// refused with the reason while the first holds the key (here: while its user is being
/// asked), and only the first writes, into one root.
#[test]
fn a_second_connection_for_the_same_folder_is_refused_while_the_first_runs() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let first = {
        let root = root.clone();
        std::thread::spawn(move || send_folder(addr, &root))
    };
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    // The prompt counts the folders: "photos: 3 files in 3 folders, 293.0 KiB".
    assert_eq!((offer.count, offer.bytes), (3, 300_005));
    assert_eq!(
        offer.folder,
        Some(OfferedFolder {
            name: "photos".into(),
            folders: 3
        })
    );
    // The first holds the folder's key while its user decides: the second is turned away
    // at once, without a second prompt.
    let second = send_folder(addr, &root);
    assert_eq!(second.len(), 3, "{second:?}");
    for outcome in &second {
        let FileOutcome::Declined { reason } = outcome else {
            panic!("the second connection was not refused: {second:?}");
        };
        assert!(reason.contains("another connection"), "{reason}");
    }
    server.decide(offer.offer_id, true);
    let first = first.join().unwrap();
    assert!(first.iter().all(FileOutcome::is_success), "{first:?}");
    let mut roots: Vec<String> = std::fs::read_dir(dl.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with('.'))
        .collect();
    roots.sort();
    assert_eq!(roots, ["photos"]);
    assert_eq!(
        std::fs::read(dl.path().join("photos/a.txt")).unwrap(),
        b"alpha"
    );
    // Once the first ended, its key is free again: the same folder is asked about and
    // taken.
    let again = std::thread::spawn(move || send_folder(addr, &root));
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    server.decide(offer.offer_id, true);
    let again = again.join().unwrap();
    assert!(again.iter().all(FileOutcome::is_success), "{again:?}");
}
