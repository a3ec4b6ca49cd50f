//! Tests of [`super`] (dir.rs), kept apart so the module stays within its size.
use super::*;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;

/// A folder renamed to a name ending in " (deleted)" (what the system appends to the
/// path of a folder deleted since) while another folder took its old name: its path now
/// is where it went, not the other folder's.
#[cfg(target_os = "linux")]
#[test]
fn path_now_follows_a_folder_renamed_to_look_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let old = base.join("album");
    std::fs::create_dir(&old).unwrap();
    let dir = DownloadDir::open(&old).unwrap();
    assert_eq!(dir.path_now(), old);
    let renamed = base.join("album (deleted)");
    std::fs::rename(&old, &renamed).unwrap();
    std::fs::create_dir(&old).unwrap();
    assert_eq!(dir.path_now(), renamed);
}

#[test]
fn opens_never_follow_symlinks_or_leave_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir_path = root.path().join("dl");
    std::fs::create_dir(&dir_path).unwrap();
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, b"secret").unwrap();
    symlink(&outside, dir_path.join("link")).unwrap();
    let dir = DownloadDir::open(&dir_path).unwrap();

    assert!(dir.open_existing("link").is_err(), "symlink followed");
    assert_eq!(
        dir.create_new("link").unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    for bad in ["../outside.txt", "..", ".", "", "a/b"] {
        assert!(dir.create_new(bad).is_err(), "{bad:?}");
        assert!(dir.open_existing(bad).is_err(), "{bad:?}");
    }
    assert!(dir.exists("link").unwrap());
    assert!(!dir.exists("nothing").unwrap());
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
}

#[test]
fn a_folder_that_is_a_symlink_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("real")).unwrap();
    symlink(root.path().join("real"), root.path().join("alias")).unwrap();
    assert!(DownloadDir::open(&root.path().join("alias")).is_err());
    assert!(DownloadDir::open(&root.path().join("real")).is_ok());
}

#[test]
fn a_folder_of_another_user_is_never_opened_to_write_into() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DownloadDir::open(tmp.path()).unwrap();
    dir.create_dir("mine").unwrap();
    assert!(dir.open_dir("mine").is_ok());
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: changing a folder's owner needs root");
        return;
    }
    // A local user swaps the folder we just made for one of theirs.
    std::fs::remove_dir(tmp.path().join("mine")).unwrap();
    std::fs::create_dir(tmp.path().join("mine")).unwrap();
    std::os::unix::fs::chown(tmp.path().join("mine"), Some(65534), Some(65534)).unwrap();
    let Err(refused) = dir.open_dir("mine") else {
        panic!("another user's folder was opened")
    };
    assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
}

#[test]
fn only_a_single_link_regular_file_of_ours_is_trusted() {
    let root = tempfile::tempdir().unwrap();
    let dir = DownloadDir::open(root.path()).unwrap();
    let mut file = dir.create_new("mine").unwrap();
    file.write_all(b"x").unwrap();
    assert!(DownloadDir::is_ours(&file));
    std::fs::hard_link(root.path().join("mine"), root.path().join("alias")).unwrap();
    assert!(!DownloadDir::is_ours(&file), "two links");
    let fifo = root.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = dir.open_existing("fifo").unwrap();
    assert!(!DownloadDir::is_ours(&fifo), "a FIFO");
}

#[test]
fn naming_never_replaces_not_even_a_symlink() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, b"secret").unwrap();
    let dl = root.path().join("dl");
    std::fs::create_dir(&dl).unwrap();
    let dir = DownloadDir::open(&dl).unwrap();
    dir.create_new("a.part")
        .unwrap()
        .write_all(b"data")
        .unwrap();
    symlink(&outside, dl.join("a")).unwrap();
    assert_eq!(
        dir.name_without_replacing("a.part", "a")
            .unwrap_err()
            .kind(),
        io::ErrorKind::AlreadyExists
    );
    let still_linked = dir.name_without_replacing("a.part", "b").unwrap();
    assert_eq!(dl.join("a.part").exists(), still_linked);
    let mut read = String::new();
    File::open(dl.join("b"))
        .unwrap()
        .read_to_string(&mut read)
        .unwrap();
    assert_eq!(read, "data");
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    assert!(
        std::fs::symlink_metadata(dl.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn expiry_removes_only_old_regular_partials() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("target.ferry.part");
    std::fs::write(&outside, b"outside").unwrap();
    let dl = root.path().join("dl");
    std::fs::create_dir(&dl).unwrap();
    let now = SystemTime::now();
    let old = now - Duration::from_secs(8 * 24 * 3600);
    File::options()
        .write(true)
        .open(&outside)
        .unwrap()
        .set_modified(old)
        .unwrap();
    for name in ["old.ferry.part", "busy.ferry.part", "old.txt"] {
        let f = File::create(dl.join(name)).unwrap();
        f.set_len(10).unwrap();
        f.set_modified(old).unwrap();
    }
    std::fs::write(dl.join("fresh.ferry.part"), b"new").unwrap();
    symlink(&outside, dl.join("x.ferry.part")).unwrap();
    let dir = DownloadDir::open(&dl).unwrap();
    let week = Duration::from_secs(7 * 24 * 3600);
    let expired = dir
        .expire_partials(week, now, |name| name == "busy.ferry.part")
        .unwrap();
    assert_eq!(
        expired,
        Expired {
            names: vec!["old.ferry.part".into()],
            bytes: 10
        }
    );
    let mut left: Vec<_> = std::fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "busy.ferry.part",
            "fresh.ferry.part",
            "old.txt",
            "x.ferry.part"
        ]
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
    // The same partials are fresh for a clock a week earlier.
    let none = dir.expire_partials(week, old, |_| false).unwrap();
    assert!(none.names.is_empty());
}
