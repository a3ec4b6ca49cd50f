//! What an interrupted folder leaves behind when its root does not stay where Ferry made it:
//! the user (or a local process that can write in the download folder) renames the root
//! away, perhaps gives another folder its name, and the sender resumes or never comes back.
//! The partial kept inside the real root still expires after the maximum age, found by the
//! root's device and inode; nothing in a folder that is not that root is touched, and a
//! symlink planted under the root's name is never followed. A root renamed during its
//! receive has its files reported where they are. Real sockets on 127.0.0.1, real temp
//! folders.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ferry::events::{Event, ServerEvent, TransferEvent};
use ferry::protocol::ReceiverMsg;
use ferry::transfer::ServerConfig;

use crate::audit_folders_ls::{file, send_all};
use crate::folders_hardening::{album, half_sent_album};
use crate::util::{LOOPBACK, offer_folder, read_answer, start_server, start_server_with, wait_for};

const KEY: &str = "a1b2c3d4e5f60718a1b2c3d4e5f60718";
const OTHER_KEY: &str = "0f1e2d3c4b5a69780f1e2d3c4b5a6978";

/// A server on `dl` whose sender sent `album` (resume key `key`) up to half of
/// `b/two.bin` and vanished: that partial is kept in `dl/album` for a resume.
fn interrupted_album(dl: &Path, key: &str) {
    let (server, events) = start_server(dl);
    drop(half_sent_album(server.local_addr(), key));
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Failed { .. }) => Some(()),
        _ => None,
    });
    assert!(
        dl.join("album/b/two.bin.ferry.part").is_file(),
        "no partial kept"
    );
}

/// Makes every partial-named file below `dir` (states and partials alike) two hours old.
fn age_partials(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        if kind.is_dir() {
            age_partials(&path);
        } else if kind.is_file() && path.to_string_lossy().ends_with(".ferry.part") {
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(old).unwrap();
        }
    }
}

/// Starts a server on `dl` that expires partials older than an hour (at start), and
/// returns what it said it removed (nothing when it said nothing).
fn expire(dl: &Path) -> Vec<String> {
    let mut config = ServerConfig::new(LOOPBACK, 0, dl.to_owned());
    config.partial_max_age = Duration::from_secs(3600);
    let (server, events) = start_server_with(config);
    // Expiry runs before the server takes connections; its event, if any, comes first.
    drop(server);
    events
        .try_iter()
        .find_map(|e| match e {
            Event::Server(ServerEvent::PartialsExpired { names, .. }) => Some(names),
            _ => None,
        })
        .unwrap_or_default()
}

/// The root is renamed away and the user's own folder given its name; the sender resumes,
/// is refused the impostor (a new root `album (1)` is made), and never finishes. The
/// partial kept in the renamed root still expires after the maximum age, although the
/// state that named it was replaced by the new root's; the impostor's own `.ferry.part`
/// is left alone.
#[test]
fn a_partial_in_a_root_renamed_before_a_refused_resume_still_expires() {
    let dl = tempfile::tempdir().unwrap();
    interrupted_album(dl.path(), KEY);
    std::fs::rename(dl.path().join("album"), dl.path().join("moved")).unwrap();
    std::fs::create_dir_all(dl.path().join("album/b")).unwrap();
    std::fs::write(dl.path().join("album/b/two.bin.ferry.part"), b"mine").unwrap();

    let (server, _events) = start_server(dl.path());
    let (mut again, mut answer) = offer_folder(server.local_addr(), "album", album(), Some(KEY));
    while matches!(answer, ReceiverMsg::Waiting { .. }) {
        answer = read_answer(&mut again);
    }
    match answer {
        ReceiverMsg::FolderAccept { saved_as, partial } => {
            assert_eq!(saved_as, "album (1)", "resumed into the impostor");
            assert_eq!(partial, None);
        }
        other => panic!("{other:?}"),
    }
    drop(again);
    drop(server);

    age_partials(dl.path());
    let names = expire(dl.path());
    assert!(
        !dl.path().join("moved/b/two.bin.ferry.part").exists(),
        "the partial in the renamed root outlived its state ({names:?})"
    );
    assert!(
        names.contains(&"moved/b/two.bin.ferry.part".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(dl.path().join("album/b/two.bin.ferry.part")).unwrap(),
        b"mine"
    );
    assert!(dl.path().join("moved/b").is_dir());
}

/// No resume at all: one root renamed inside the download folder has its partial expired
/// where it is now; another moved out of the download folder, with a symlink to it planted
/// under its name, is never reached.
#[test]
fn a_partial_in_a_renamed_root_expires_and_a_symlinked_one_is_never_reached() {
    let dl = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    interrupted_album(dl.path(), KEY);
    std::fs::rename(dl.path().join("album"), dl.path().join("renamed")).unwrap();
    interrupted_album(dl.path(), OTHER_KEY);
    std::fs::rename(dl.path().join("album"), outside.path().join("album")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("album"), dl.path().join("album")).unwrap();

    age_partials(dl.path());
    age_partials(outside.path());
    let names = expire(dl.path());
    assert!(
        !dl.path().join("renamed/b/two.bin.ferry.part").exists(),
        "the partial in the renamed root was never expired ({names:?})"
    );
    assert!(
        outside.path().join("album/b/two.bin.ferry.part").is_file(),
        "a symlink was followed out of the download folder"
    );
    // Never resumed: its folders stay as private as while it could be (see the README).
    use std::os::unix::fs::PermissionsExt;
    for folder in ["renamed", "renamed/b"] {
        let mode = std::fs::metadata(dl.path().join(folder))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{folder}");
    }
    // Besides the two states themselves.
    let partials: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    assert_eq!(partials, ["renamed/b/two.bin.ferry.part"]);
}

/// The root renamed while its files arrive: each file is reported at its path now (under
/// the new name), not at one that no longer leads to it (and that another folder given the
/// old name could answer to), and its name relative to the download folder follows too.
#[test]
fn files_of_a_root_renamed_during_its_receive_are_reported_where_they_are() {
    let dl = tempfile::tempdir().unwrap();
    let (server, events) = start_server(dl.path());
    let entries = vec![file("a.txt"), file("sub/b.txt")];
    let (mut stream, answer) = offer_folder(server.local_addr(), "album", entries.clone(), None);
    match answer {
        ReceiverMsg::FolderAccept { saved_as, .. } => assert_eq!(saved_as, "album"),
        other => panic!("{other:?}"),
    }
    std::fs::rename(dl.path().join("album"), dl.path().join("renamed")).unwrap();
    // Another folder takes the old name: it is not the root.
    std::fs::create_dir(dl.path().join("album")).unwrap();
    let (verified, failed, _) = send_all(&mut stream, &entries, b"abc");
    assert_eq!((verified.len(), failed.len()), (2, 0));
    let mut reported: Vec<PathBuf> = Vec::new();
    let mut saved_as: Vec<String> = Vec::new();
    while reported.len() < 2 {
        let (path, relative) = wait_for(&events, |e| match e {
            Event::Transfer(TransferEvent::Finished {
                path: Some(path),
                saved_as,
                ..
            }) => Some((path.clone(), saved_as.clone())),
            _ => None,
        });
        reported.push(path);
        saved_as.push(relative.unwrap_or_default());
    }
    reported.sort();
    saved_as.sort();
    assert_eq!(saved_as, ["renamed/a.txt", "renamed/sub/b.txt"]);
    let now = dl.path().canonicalize().unwrap().join("renamed");
    assert_eq!(reported, [now.join("a.txt"), now.join("sub/b.txt")]);
    for path in &reported {
        assert_eq!(std::fs::read(path).unwrap(), b"abc");
    }
}
