//! Folders received from a hostile or unlucky sender (issue 13's leftovers): a listing of
//! thousands of subfolders holds a bounded number of descriptors, two connections never
//! resume one folder into the same root at once (a second one waits, and stops waiting when
//! its sender leaves), an expired folder state takes its kept partial with it (and nothing
//! else), and the prompt counts the folders. Real sockets on 127.0.0.1, real temp folders.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ferry::events::{Event, FailureKind, OfferedFolder, Refusal, ServerEvent, TransferEvent};
use ferry::protocol::{
    FolderEntry, ReceiverMsg, SenderMsg, WaitFor, encode_chunk_header, encode_sender_msg,
};
use ferry::transfer::{AcceptPolicy, FileOutcome, ServerConfig};

use crate::util::{
    LOOPBACK, offer_folder, read_answer, send_folder, start_server, start_server_with, wait_for,
};

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
    let outcomes = send_folder(server.local_addr(), &root, None);
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

/// Two connections offering the same folder (same resume key) at once: the second waits
/// for the first as long as the first could be a connection whose sender is gone (the idle
/// timeout and a margin), and is then refused with the reason while the first still holds
/// the key (here: while its user is being asked); only the first writes, into one root.
#[test]
fn a_second_connection_for_the_same_folder_is_refused_while_the_first_runs() {
    let src = tempfile::tempdir().unwrap();
    let root = sample_folder(src.path());
    let dl = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let idle = Duration::from_secs(1);
    config.idle_timeout = idle;
    let (server, events) = start_server_with(config);
    let addr = server.local_addr();
    let first = {
        let root = root.clone();
        std::thread::spawn(move || send_folder(addr, &root, None))
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
    // once the first outlived its idle timeout, without a second prompt.
    let asked = Instant::now();
    let second = send_folder(addr, &root, None);
    assert!(asked.elapsed() >= idle, "refused at once");
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
    let again = std::thread::spawn(move || send_folder(addr, &root, None));
    let offer = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    server.decide(offer.offer_id, true);
    let again = again.join().unwrap();
    assert!(again.iter().all(FileOutcome::is_success), "{again:?}");
}

/// A folder's state kept after an interruption expires like partials do, and takes the
/// partial it kept inside the folder with it; nothing else in the folder is touched.
#[test]
fn an_expired_folder_state_takes_its_kept_partial_and_nothing_else() {
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    // A hand-built sender: the folder, then half of its second file, then gone.
    drop(half_sent_album(server.local_addr(), KEY));
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { .. }) => Some(()),
        _ => None,
    });
    drop(server);
    let kept = dl.path().join("album/b/two.bin.ferry.part");
    let state = dl
        .path()
        .join(format!(".{}.ferry-folder.ferry.part", &KEY[..16]));
    assert!(kept.is_file() && state.is_file(), "nothing kept to expire");
    // Someone else's partial-like file in the same folder, as old: not ours to remove.
    let other = dl.path().join("album/b/other.ferry.part");
    std::fs::write(&other, b"other").unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    for path in [&state, &kept, &other] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(old).unwrap();
    }
    // A server with a one-hour limit expires at start.
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.partial_max_age = Duration::from_secs(3600);
    let (_server, events) = start_server_with(config);
    let (names, bytes) = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::PartialsExpired { names, bytes }) => {
            Some((names.clone(), *bytes))
        }
        _ => None,
    });
    assert!(
        !kept.exists(),
        "the kept partial outlived its folder's state"
    );
    assert!(!state.exists());
    assert!(
        names.contains(&"album/b/two.bin.ferry.part".to_owned()),
        "{names:?}"
    );
    assert!(bytes >= 50_000, "{bytes}");
    assert_eq!(std::fs::read(&other).unwrap(), b"other");
    assert!(dl.path().join("album/b").is_dir());
}

/// A sender whose network vanished mid-folder and that resumes at once finds the folder's
/// key still held by the connection it left (which cannot know before its idle timeout).
/// The new connection is told to wait, takes the key as soon as the old connection ends,
/// and resumes into the same root from the partial the old one kept, instead of being
/// refused. (Here the old connection ends when its socket closes, so nothing depends on
/// timing; that the wait lasts as long as the idle timeout is the test above.)
#[test]
fn a_resume_arriving_before_the_old_connection_ended_waits_and_resumes() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let gone = half_sent_album(server.local_addr(), KEY);
    // The network is gone: `gone` stays open and silent. The sender comes back at once,
    // and is told to wait while the old connection holds the folder (for the idle timeout,
    // 30 s, if it never hears another byte).
    let (mut again, answer) = offer_folder(server.local_addr(), "album", album(), Some(KEY));
    assert!(
        matches!(
            answer,
            ReceiverMsg::Waiting {
                waiting_for: WaitFor::EarlierCopy
            }
        ),
        "the resume was not told to wait for the earlier copy: {answer:?}"
    );
    // The old connection ends (here: its socket closes).
    drop(gone);
    resumes_half_sent_album(&mut again, answer);
    assert!(!dl.path().join("album (1)").exists());
}

/// The resume key of the folder `album` in the tests below.
const KEY: &str = "fedcba9876543210fedcba9876543210";

/// album/{a/one.txt (3 bytes), b/two.bin (100 000 bytes)}.
pub(crate) fn album() -> Vec<FolderEntry> {
    vec![
        FolderEntry {
            path: "a/one.txt".into(),
            size: Some(3),
            mtime: 0,
            mode: 6,
        },
        FolderEntry {
            path: "b/two.bin".into(),
            size: Some(100_000),
            mtime: 0,
            mode: 6,
        },
    ]
}

/// A connection that offered `album` (resume key `key`), was accepted, and sent half of
/// `b/two.bin`; it stays open and silent (its sender's network is gone) until dropped.
pub(crate) fn half_sent_album(addr: std::net::SocketAddr, key: &str) -> std::net::TcpStream {
    let (mut gone, answer) = offer_folder(addr, "album", album(), Some(key));
    match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => assert_eq!(saved_as, "album"),
        other => panic!("{other:?}"),
    }
    let mut bytes = encode_sender_msg(&SenderMsg::File {
        index: 1,
        offset: 0,
    })
    .unwrap();
    bytes.extend_from_slice(&encode_chunk_header(100_000));
    bytes.extend_from_slice(&[9u8; 50_000]);
    gone.write_all(&bytes).unwrap();
    gone
}

/// The answers after `answer` on `stream`, past any number of `Waiting`: `album` accepted
/// again in the same root, going on from every byte [`half_sent_album`] sent.
fn resumes_half_sent_album(stream: &mut std::net::TcpStream, mut answer: ReceiverMsg) {
    while matches!(answer, ReceiverMsg::Waiting { .. }) {
        answer = read_answer(stream);
    }
    match answer {
        ReceiverMsg::FolderAccept {
            saved_as,
            partial: Some(partial),
        } => {
            assert_eq!(saved_as, "album", "resumed in the same root");
            assert_eq!(partial.index, 1);
            assert_eq!(partial.offset, 50_000, "every byte the old one got is kept");
        }
        other => panic!("not resumed: {other:?}"),
    }
}

/// A connection told to wait for a folder's key whose own sender then leaves (it gave up,
/// or retried on yet another connection) stops waiting at once: it is refused and ends,
/// rather than holding its slot until the idle timeout and then taking the key (and the
/// kept partial) from under the connection that really resumes.
#[test]
fn a_waiting_connection_whose_sender_left_stops_waiting() {
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let addr = server.local_addr();
    let gone = half_sent_album(addr, KEY);
    let (waiter, answer) = offer_folder(addr, "album", album(), Some(KEY));
    assert!(
        matches!(
            answer,
            ReceiverMsg::Waiting {
                waiting_for: WaitFor::EarlierCopy
            }
        ),
        "{answer:?}"
    );
    drop(waiter);
    // Refused well before the idle timeout (30 s; the deadline here is 20 s) ran out,
    // while `gone` still holds the key.
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { failure, .. })
            if failure.kind == FailureKind::Refused(Refusal::FolderBusy) =>
        {
            Some(())
        }
        _ => None,
    });
    // The old connection ends; the sender's next connection takes the key and resumes
    // from every byte the old one got.
    drop(gone);
    let (mut again, answer) = offer_folder(addr, "album", album(), Some(KEY));
    resumes_half_sent_album(&mut again, answer);
}

/// A resume that is accepted and then dies before its kept partial's file comes (the
/// network drops again at once) leaves the partial to the next resume: the state written
/// when the second connection was accepted still names it.
#[test]
fn a_resume_that_dies_at_once_leaves_the_kept_partial_to_the_next() {
    let dl = tempfile::tempdir().unwrap();
    let (server, _events) = start_server(dl.path());
    let addr = server.local_addr();
    drop(half_sent_album(addr, KEY));
    let resumed = || {
        // The connection before may still be saving what it kept: its key is waited for.
        let (mut stream, answer) = offer_folder(addr, "album", album(), Some(KEY));
        resumes_half_sent_album(&mut stream, answer);
        stream
    };
    // Accepted with the partial, then gone before sending a byte of it.
    drop(resumed());
    // The next one still finds the partial (once the one before let the key go).
    drop(resumed());
}

/// A folder the settings refuse anyway (trusted devices only, from a device that is not)
/// is refused at once, even while another connection holds its key: it does not wait out
/// the idle timeout first and then hear "busy" instead of the real reason.
#[test]
fn a_folder_the_settings_refuse_is_refused_at_once_even_while_its_key_is_held() {
    let dl = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.policy = AcceptPolicy::Ask;
    let (server, _events) = start_server_with(config);
    let addr = server.local_addr();
    // The first offer holds the key while its user is asked.
    let (_asking, answer) = offer_folder(addr, "album", album(), Some(KEY));
    assert!(
        matches!(
            answer,
            ReceiverMsg::Waiting {
                waiting_for: WaitFor::Decision
            }
        ),
        "{answer:?}"
    );
    server.set_policy(AcceptPolicy::TrustedOnly);
    let (_second, answer) = offer_folder(addr, "album", album(), Some(KEY));
    match answer {
        ReceiverMsg::Decline { reason, .. } => assert!(reason.contains("trusted"), "{reason}"),
        other => panic!("not refused at once: {other:?}"),
    }
}
