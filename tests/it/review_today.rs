//! Findings of the review of one day's changes, each pinned by a test that failed before
//! its fix: a full server's eviction of connections that wait for their peer must never
//! take the slot of a folder resume whose sender is hashing what the receiver kept (an
//! honest wait of its disk, not a stall); a folder's file swapped for a link to a FIFO
//! after the walk is refused at once instead of hanging the sender in `open`. Real sockets
//! on 127.0.0.1, real temp folders.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry::protocol::{
    FolderEntry, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg,
};
use ferry::transfer::ServerConfig;

use crate::util::{LOOPBACK, offer_folder, read_answer, start_server_with};

/// The resume key of the folder `album` below.
const KEY: &str = "0123456789abcdef0123456789abcdef";

/// album/{a/one.txt (3 bytes), b/two.bin (100 000 bytes)}.
fn album() -> Vec<FolderEntry> {
    let file = |path: &str, size| FolderEntry {
        path: path.into(),
        size: Some(size),
        mtime: 0,
        mode: 6,
    };
    vec![file("a/one.txt", 3), file("b/two.bin", 100_000)]
}

/// The frames of folder file `index` sent from byte `offset` on: `rest` and the end frame
/// with the hash of `whole`.
fn file_frames(index: u64, offset: u64, rest: &[u8], whole: &[u8]) -> Vec<u8> {
    let mut bytes = encode_sender_msg(&SenderMsg::File { index, offset }).unwrap();
    bytes.extend_from_slice(&encode_chunk_header(rest.len()));
    bytes.extend_from_slice(rest);
    let end = SenderMsg::End {
        blake3: *blake3::hash(whole).as_bytes(),
    };
    bytes.extend_from_slice(&encode_sender_msg(&end).unwrap());
    bytes
}

/// Offers `album` again until the one slot is free (the cut connection before may still
/// hold it for a moment) and past any `Waiting`: the answer that decides.
fn offer_album_when_free(addr: SocketAddr) -> (TcpStream, ReceiverMsg) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (mut stream, mut answer) = offer_folder(addr, "album", album(), Some(KEY));
        while matches!(answer, ReceiverMsg::Waiting { .. }) {
            answer = read_answer(&mut stream);
        }
        match &answer {
            ReceiverMsg::Decline { reason, .. } if reason.contains("server busy") => {
                assert!(Instant::now() < deadline, "the slot never came free");
                std::thread::sleep(Duration::from_millis(20)); // a poll interval
            }
            _ => return (stream, answer),
        }
    }
}

/// The sender of a resumed folder hashes its copy of the receiver's kept partial before it
/// sends the rest (seconds, for a large file on a slow disk), saying nothing meanwhile. A
/// newcomer at a full server took that connection's slot as one that "sent nothing for a
/// while", so a resume of gigabytes could never finish while others kept connecting; the
/// newcomer is told the server is busy instead, and the resume completes.
#[test]
fn a_full_server_keeps_the_slot_of_a_folder_resume_hashing_its_partial() {
    let dl = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.path().to_owned());
    config.max_connections = 1;
    config.max_per_peer = 2;
    config.evict_waiting_after = Duration::from_millis(300);
    let (server, _events) = start_server_with(config);
    let addr = server.local_addr();
    let two = vec![9u8; 100_000];
    // A first connection sends half of b/two.bin and is cut: the receiver keeps it.
    {
        let (mut cut, answer) = offer_folder(addr, "album", album(), Some(KEY));
        assert!(
            matches!(answer, ReceiverMsg::FolderAccept { .. }),
            "{answer:?}"
        );
        let mut bytes = encode_sender_msg(&SenderMsg::File {
            index: 1,
            offset: 0,
        })
        .unwrap();
        bytes.extend_from_slice(&encode_chunk_header(100_000));
        bytes.extend_from_slice(&two[..50_000]);
        cut.write_all(&bytes).unwrap();
    }
    let (mut resume, answer) = offer_album_when_free(addr);
    match answer {
        ReceiverMsg::FolderAccept {
            partial: Some(partial),
            ..
        } => assert_eq!((partial.index, partial.offset), (1, 50_000)),
        other => panic!("not resumed: {other:?}"),
    }
    // The first file goes out whole; the sender then hashes the partial's prefix.
    resume
        .write_all(&file_frames(0, 0, b"abc", b"abc"))
        .unwrap();
    // Time passing is the condition under test: the hashing outlasts the eviction age.
    std::thread::sleep(Duration::from_millis(900));
    let mut newcomer = TcpStream::connect(addr).unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answer = read_answer(&mut newcomer);
    assert!(
        matches!(&answer, ReceiverMsg::Decline { reason, .. } if reason.contains("server busy")),
        "{answer:?}"
    );
    // The rest of the partial, and the folder's end: both files verified.
    let mut bytes = file_frames(1, 50_000, &two[50_000..], &two);
    bytes.extend_from_slice(&encode_sender_msg(&SenderMsg::FolderEnd).unwrap());
    resume.write_all(&bytes).unwrap();
    loop {
        match read_answer(&mut resume) {
            ReceiverMsg::Files { failed, .. } => assert!(failed.is_empty(), "{failed:?}"),
            ReceiverMsg::FolderDone { verified, failed } => {
                assert_eq!((verified, failed), (2, 0));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        std::fs::read(dl.path().join("album/b/two.bin")).unwrap(),
        two
    );
    assert_eq!(
        std::fs::read(dl.path().join("album/a/one.txt")).unwrap(),
        b"abc"
    );
}

/// A folder's file that another process swaps for a symlink to a FIFO after the folder was
/// walked (while the receiver is asked, say): opening it to check it is still the walked
/// file blocked until someone wrote to the FIFO, so the upload hung for ever (no cancel
/// reaches a blocked `open`). It is refused at once as replaced.
#[test]
fn a_file_swapped_for_a_fifo_after_the_walk_is_refused_without_hanging() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("box");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha").unwrap();
    let folder = ferry::transfer::walk_folder(&root).unwrap();
    let (_, file) = folder.files[0].clone();
    let fifo = src.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    std::fs::remove_file(root.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(&fifo, root.join("a.txt")).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(file.open().map(|_| ()).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Err(why)) => assert!(why.contains("replaced"), "{why}"),
        Ok(Ok(())) => panic!("the FIFO was opened as the walked file"),
        Err(_) => {
            // Unblock the hung open so the thread ends with the test.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("opening the swapped file hung");
        }
    }
}
