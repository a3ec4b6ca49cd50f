//! A fresh-eyes review of the speed changes (issues 13 and 14: the corked sender, chunks sent
//! from the hashing buffer, no-replace renames and the folder committer thread): each test
//! here failed before the fix it came with. Real sockets on 127.0.0.1, real temp folders,
//! hand-built senders where a test needs to break a connection at an exact point.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, Direction, Event, TransferEvent, event_channel};
use ferry::protocol::{
    FolderEntry, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg,
};

use ferry::transfer::{OutgoingItem, SendOptions, send_items, walk_folder};

use crate::util::{Proxy, data, offer_folder, start_server, wait_for};

/// The frames and bytes of one whole small folder file: `file`, its data, `end`.
pub(crate) fn whole_file(index: u64, data: &[u8]) -> Vec<u8> {
    let mut bytes = encode_sender_msg(&SenderMsg::File { index, offset: 0 }).unwrap();
    bytes.extend_from_slice(&encode_chunk_header(data.len()));
    bytes.extend_from_slice(data);
    let end = SenderMsg::End {
        blake3: *blake3::hash(data).as_bytes(),
    };
    bytes.extend_from_slice(&encode_sender_msg(&end).unwrap());
    bytes
}

/// A connection that breaks while verified files wait for their batch (a batch is due only
/// every 100 ms or 1 024 files): every file the receiver started ends, in an event, and the
/// verified ones are named with their data. Before, they were dropped with the folder's
/// state: their `.part` removed and their rows left "receiving" for good.
#[test]
fn verified_files_waiting_for_their_batch_end_named_when_the_connection_breaks() {
    const SMALL: u64 = 20;
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let mut entries: Vec<FolderEntry> = (0..SMALL)
        .map(|i| FolderEntry {
            path: format!("sub/f{i}.txt"),
            size: Some(3),
            mtime: 0,
            mode: 6,
        })
        .collect();
    entries.push(FolderEntry {
        path: "sub/z.bin".into(),
        size: Some(100_000),
        mtime: 0,
        mode: 6,
    });
    let (mut stream, answer) = offer_folder(server.local_addr(), "album", entries, None);
    match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => assert_eq!(saved_as, "album"),
        other => panic!("{other:?}"),
    }
    // Every small file whole, then half of the last one, in one write; then the sender is
    // gone.
    let mut bytes = Vec::new();
    for i in 0..SMALL {
        bytes.extend_from_slice(&whole_file(i, b"abc"));
    }
    bytes.extend_from_slice(
        &encode_sender_msg(&SenderMsg::File {
            index: SMALL,
            offset: 0,
        })
        .unwrap(),
    );
    bytes.extend_from_slice(&encode_chunk_header(100_000));
    bytes.extend_from_slice(&[9u8; 50_000]);
    stream.write_all(&bytes).unwrap();
    drop(stream);

    // Every started incoming file ends: named (verified) or failed.
    let mut open: HashMap<u64, String> = HashMap::new();
    let mut named = Vec::new();
    let mut failed = Vec::new();
    let mut started = 0;
    wait_for(&events, |event| {
        match event {
            Event::Transfer(TransferEvent::Started {
                id,
                direction: Direction::Incoming,
                name,
                ..
            }) => {
                open.insert(*id, name.clone());
                started += 1;
            }
            Event::Transfer(TransferEvent::Finished { id, path, .. }) => {
                open.remove(id);
                named.push(path.clone().unwrap());
            }
            Event::Transfer(TransferEvent::Failed { id, .. }) => {
                open.remove(id);
                failed.push(*id);
            }
            _ => {}
        }
        (started == SMALL + 1 && open.is_empty()).then_some(())
    });
    assert_eq!(
        (named.len(), failed.len()),
        (SMALL as usize, 1),
        "{named:?}"
    );
    for i in 0..SMALL {
        let path = dl.path().join(format!("album/sub/f{i}.txt"));
        assert_eq!(std::fs::read(&path).unwrap(), b"abc", "{path:?}");
    }
    let parts: Vec<_> = std::fs::read_dir(dl.path().join("album/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".ferry.part"))
        .collect();
    assert!(parts.is_empty(), "{parts:?}");
}

/// A sender cancelling in the middle of a folder of small files: the files that went out
/// whole before the cancel (many, with the cork gathering them) are verified and named on
/// the receiver, and the sender says so; a file it calls cancelled has no name there.
/// Before, the sender stopped waiting at once and called every file whose verdict had not
/// come back yet cancelled, while the receiver kept it.
#[test]
fn a_folder_cancelled_midway_reports_every_file_the_receiver_kept_as_verified() {
    // 24 MiB: more than the socket buffers between the sender and the slow link hold, so
    // the cancel comes while the sender is still sending.
    const FILES: usize = 3_000;
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("many");
    std::fs::create_dir(&root).unwrap();
    for i in 0..FILES {
        std::fs::write(root.join(format!("{i:04}.bin")), data(8192, i as u64)).unwrap();
    }
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    // Drained, so thousands of files' events never fill the channel (a full one would hold
    // the connection, and the server's shutdown with it).
    std::thread::spawn(move || for _ in events {});
    let slow = Proxy::to(server.local_addr())
        .throttle(64 * 1024, Duration::from_millis(5))
        .start();
    let cancel = CancelToken::new();
    let folder = walk_folder(&root).unwrap();
    let sender = {
        let cancel = cancel.clone();
        let opts = SendOptions::new(slow.addr.to_string());
        let folder = folder.clone();
        std::thread::spawn(move || {
            let (sink, sent_events) = event_channel(None);
            std::thread::spawn(move || for _ in sent_events {});
            send_items(&opts, &[OutgoingItem::Folder(folder)], &sink, &cancel).unwrap()
        })
    };
    // Cancel once the receiver named some of them.
    let got = dl.path().join("many");
    let named = || -> usize {
        std::fs::read_dir(&got).map_or(0, |dir| {
            dir.filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                !name.to_string_lossy().ends_with(".ferry.part")
            })
            .count()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while named() < 50 {
        assert!(Instant::now() < deadline, "no file arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
    cancel.cancel();
    let outcomes = sender.join().unwrap();
    drop(server); // every connection ended: the receiver named all it is going to
    assert_eq!(outcomes.len(), FILES);
    let mut verified = 0;
    for ((_, file), outcome) in folder.files.iter().zip(&outcomes) {
        let name = file.path.file_name().unwrap();
        let kept = got.join(name).is_file();
        assert_eq!(
            kept,
            outcome.is_success(),
            "{name:?}: kept {kept}, the sender says {outcome:?}"
        );
        verified += usize::from(kept);
    }
    assert!((50..FILES).contains(&verified), "{verified} verified");
}
