//! Attacks on folder receives by a local process that can create, rename and delete entries
//! inside the download folder (not outside it) while Ferry receives: it renames a folder
//! Ferry made out of the way and gives the user's own private folder (mode 0700, a secret
//! inside) that name. Ferry must never then write into the user's folder, nor open it to
//! others (`chmod 0755` when a received folder is done): a folder is trusted by what it is
//! (the one Ferry made), not by its name. Real servers on loopback, real temp folders; the
//! swaps are made at the step they target (before the resume's offer, once a LocalSend
//! root's handle was closed), so nothing depends on winning a race.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry::events::{Event, TransferEvent};
use ferry::protocol::{ReceiverMsg, SenderMsg, encode_sender_msg};

use crate::folders_hardening::{album, half_sent_album};
use crate::localsend::{Peer, config, file, files, session_of, start};
use crate::review_speed::whole_file;
use crate::util::{names_in, offer_folder, read_answer, start_server, wait_files, wait_for};

/// The user's private folder: mode 0700 with a secret inside, at `dir/name`.
fn private_folder(dir: &Path, name: &str) {
    let private = dir.join(name);
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("secret.txt"), b"the user's secret").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// The attacker's swap: `name` (a folder Ferry made) moves aside, the user's private folder
/// `private` takes its name.
fn swap_in(dir: &Path, name: &str, private: &str) {
    std::fs::rename(dir.join(name), dir.join(format!("{name}.aside"))).unwrap();
    std::fs::rename(dir.join(private), dir.join(name)).unwrap();
}

/// The user's private folder (now under the name `name`) holds only its secret and is
/// still closed to others.
fn assert_private_untouched(dir: &Path, name: &str) {
    let private = dir.join(name);
    assert_eq!(
        names_in(&private),
        ["secret.txt"],
        "received files were written into the user's private folder"
    );
    assert_eq!(
        std::fs::read(private.join("secret.txt")).unwrap(),
        b"the user's secret"
    );
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "the user's private folder was opened to others"
    );
}

const KEY: &str = "a77ac4a77ac4a77ac4a77ac4a77ac4a7";

/// Sends `album` whole on `stream` (an accepted offer) and reads the answers to its end.
fn send_album(stream: &mut TcpStream) {
    let mut bytes = whole_file(0, b"one");
    bytes.extend(whole_file(1, &[9u8; 100_000]));
    bytes.extend(encode_sender_msg(&SenderMsg::FolderEnd).unwrap());
    stream.write_all(&bytes).unwrap();
    loop {
        match read_answer(stream) {
            ReceiverMsg::FolderDone { .. } => return,
            ReceiverMsg::Files { .. } | ReceiverMsg::FolderHave { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

/// The folder the offer of `album` on `addr` was accepted into (past any `Waiting`).
fn offer_album(addr: SocketAddr) -> (TcpStream, String) {
    let (mut stream, mut answer) = offer_folder(addr, "album", album(), Some(KEY));
    while matches!(
        answer,
        ReceiverMsg::Waiting { .. } | ReceiverMsg::FolderHave { .. }
    ) {
        answer = read_answer(&mut stream);
    }
    match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => (stream, saved_as),
        other => panic!("{other:?}"),
    }
}

/// An interrupted folder keeps its root's name in its resume state. Renaming the root away
/// and giving the user's private folder that name must not make the resume go into the
/// user's folder (and open it to others when done): the root is taken for the one Ferry
/// made only if it is that very folder.
#[test]
fn a_resume_never_goes_into_a_folder_swapped_in_under_the_roots_name() {
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let addr = server.local_addr();
    // The first connection: accepted into `album`, half of b/two.bin, then gone.
    drop(half_sent_album(addr, KEY));
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { .. }) => Some(()),
        _ => None,
    });
    private_folder(dl.path(), "private");
    swap_in(dl.path(), "album", "private");

    // The sender comes back with the same folder and key.
    let (mut again, saved_as) = offer_album(addr);
    send_album(&mut again);
    assert_private_untouched(dl.path(), "album");
    assert_ne!(saved_as, "album", "resumed into the user's folder");
    let got = dl.path().join(&saved_as);
    assert_eq!(std::fs::read(got.join("a/one.txt")).unwrap(), b"one");
    assert_eq!(
        std::fs::read(got.join("b/two.bin")).unwrap(),
        [9u8; 100_000]
    );
}

/// A LocalSend session keeps only a few hundred of its folders' handles open; a root whose
/// handle was closed is opened again by its name when another of its files comes. Renaming
/// that root away and giving the user's private folder its name must not make the session
/// write into the user's folder (nor open it to others when the session ends).
#[test]
fn a_localsend_root_reopened_by_name_is_never_a_folder_swapped_in() {
    const ROOTS: usize = 300; // more than the handles a session keeps open (256)
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start(config(dl.path()));
    let peer = Peer::new(&server);
    let mut list = vec![file("first", "a/first.txt", 5)];
    list.extend((0..ROOTS).map(|i| file(&format!("r{i}"), &format!("r{i}/f.txt"), 1)));
    list.push(file("second", "a/second.txt", 6));
    let (session, tokens) = session_of(&peer.prepare("", files(&list)));
    let upload = |id: &str, bytes: &[u8]| {
        peer.upload(&session, id, tokens[id].as_str().unwrap(), bytes)
            .status
    };
    assert_eq!(upload("first", b"first"), 200);
    // Every other root after `a`: its handle is the least recently used, closed.
    for i in 0..ROOTS {
        assert_eq!(upload(&format!("r{i}"), b"x"), 200, "r{i}");
    }
    private_folder(dl.path(), "private");
    swap_in(dl.path(), "a", "private");
    let status = upload("second", b"second");
    let (finished, failed) = wait_files(&events, ROOTS + 2);
    assert_private_untouched(dl.path(), "a");
    // The file that had nowhere safe to go failed, and said so.
    assert_ne!(status, 200, "second: {finished:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        std::fs::read(dl.path().join("a.aside/first.txt")).unwrap(),
        b"first"
    );
}
