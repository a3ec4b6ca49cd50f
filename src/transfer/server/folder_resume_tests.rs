//! Tests of [`super`] (folder_resume.rs), kept apart so the module stays readable.
use super::*;

/// The identity a state records for the folder at `path`.
fn id_of(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    Some((meta.dev(), meta.ino()))
}

/// A save that cannot be completed leaves the state before it whole (it is written
/// aside and put in place in one rename); one that can replaces it and leaves nothing
/// aside, also over a leftover of a save cut short.
#[test]
fn a_failed_save_keeps_the_state_before_and_a_good_one_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("album")).unwrap();
    let downloads = Downloads::open(tmp.path(), false).unwrap();
    let key = "d".repeat(32);
    let state = |partial: Option<u64>| FolderState {
        key: key.clone(),
        root: "album".into(),
        partial,
        partial_path: partial.map(|_| vec!["b".into(), "two.bin.ferry.part".into()]),
        root_id: id_of(&tmp.path().join("album")),
    };
    let loaded = || load(&downloads, &key).map(|(state, _)| state);
    save(&downloads, &state(Some(1))).unwrap();
    assert_eq!(loaded(), Some(state(Some(1))));
    // Something that cannot be removed where the new state is written aside.
    let aside = tmp.path().join(format!(".new{}", state_name(&key)));
    std::fs::create_dir(&aside).unwrap();
    std::fs::write(aside.join("x"), b"x").unwrap();
    assert!(save(&downloads, &state(None)).is_err());
    assert_eq!(loaded(), Some(state(Some(1))), "the state before is whole");
    std::fs::remove_dir_all(&aside).unwrap();
    save(&downloads, &state(None)).unwrap();
    assert_eq!(loaded(), Some(state(None)));
    assert!(!aside.exists());
    std::fs::write(&aside, b"a save cut short").unwrap();
    save(&downloads, &state(Some(1))).unwrap();
    assert_eq!(loaded(), Some(state(Some(1))));
    assert!(!aside.exists());
    // The root renamed away, another folder of ours under its name: not resumed into.
    std::fs::rename(tmp.path().join("album"), tmp.path().join("moved")).unwrap();
    std::fs::create_dir(tmp.path().join("album")).unwrap();
    assert_eq!(loaded(), None, "resumed into a folder that is not the root");
}

/// A kept partial written since its state was kept (a folder made with the inode of a
/// deleted root, receiving now; or a resumed receive cut short by a crash, after the
/// state it began with) is not expired, and its state stays to expire it later: once
/// the partial is as old, both go.
#[test]
fn expiry_leaves_a_kept_partial_written_since_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("album/b")).unwrap();
    let part = tmp.path().join("album/b/two.bin.ferry.part");
    std::fs::write(&part, b"live").unwrap();
    let downloads = Downloads::open(tmp.path(), false).unwrap();
    let state = FolderState {
        key: "e".repeat(32),
        root: "album".into(),
        partial: Some(1),
        partial_path: Some(vec!["b".into(), "two.bin.ferry.part".into()]),
        root_id: id_of(&tmp.path().join("album")),
    };
    save(&downloads, &state).unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    // The partial written after the state aged past the limit.
    let file = std::fs::File::options().write(true).open(&part).unwrap();
    file.set_modified(later - Duration::from_secs(30)).unwrap();
    let expired = expire(&downloads, Duration::from_secs(60), later).unwrap();
    assert!(expired.names.is_empty(), "{expired:?}");
    assert!(part.is_file());
    file.set_modified(later - Duration::from_secs(120)).unwrap();
    let expired = expire(&downloads, Duration::from_secs(60), later).unwrap();
    let both = [
        state_name(&state.key),
        "album/b/two.bin.ferry.part".to_owned(),
    ];
    assert_eq!(expired.names, both);
    assert!(!part.exists());
}

/// A state set aside names a root no receive should use any more, but the folder with
/// its recorded identity may be a new one of the same folder's (a deleted root's inode
/// reused): while a receive of that key holds the folder, its partial and the state are
/// left alone, however long ago it was written; once the receive ends, both expire.
#[test]
fn expiry_leaves_a_set_aside_state_alone_while_its_key_is_received() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("album/b")).unwrap();
    let part = tmp.path().join("album/b/two.bin.ferry.part");
    std::fs::write(&part, b"kept").unwrap();
    let downloads = Downloads::open(tmp.path(), false).unwrap();
    let id = id_of(&tmp.path().join("album"));
    let state = FolderState {
        key: "f".repeat(32),
        root: "album".into(),
        partial: Some(1),
        partial_path: Some(vec!["b".into(), "two.bin.ferry.part".into()]),
        root_id: id,
    };
    save(&downloads, &state).unwrap();
    let aside = aside_name(&state.key, id.unwrap());
    std::fs::rename(
        tmp.path().join(state_name(&state.key)),
        tmp.path().join(&aside),
    )
    .unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    let claim = downloads.claim_folder(&state.key).unwrap();
    let expired = expire(&downloads, Duration::from_secs(60), later).unwrap();
    assert!(expired.names.is_empty(), "{expired:?}");
    assert!(part.is_file());
    drop(claim);
    let expired = expire(&downloads, Duration::from_secs(60), later).unwrap();
    assert_eq!(
        expired.names,
        [aside, "album/b/two.bin.ferry.part".to_owned()]
    );
    assert!(!part.exists());
}

/// A state whose partial path leads through a symlink (or names a non-partial) removes
/// nothing: expiry reaches the partial only through folders of ours.
#[test]
fn expiry_never_follows_a_symlink_to_a_kept_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.ferry.part"), b"theirs").unwrap();
    std::fs::create_dir_all(tmp.path().join("album/real")).unwrap();
    std::fs::write(tmp.path().join("album/real/keep.txt"), b"mine").unwrap();
    std::os::unix::fs::symlink(outside.path(), tmp.path().join("album/b")).unwrap();
    let downloads = Downloads::open(tmp.path(), false).unwrap();
    for (key, path) in [
        (
            "a".repeat(32),
            vec!["b".to_owned(), "x.ferry.part".to_owned()],
        ),
        (
            "b".repeat(32),
            vec!["real".to_owned(), "keep.txt".to_owned()],
        ),
        (
            "c".repeat(32),
            vec!["..".to_owned(), "x.ferry.part".to_owned()],
        ),
    ] {
        let state = FolderState {
            key,
            root: "album".into(),
            partial: Some(0),
            partial_path: Some(path),
            root_id: id_of(&tmp.path().join("album")),
        };
        save(&downloads, &state).unwrap();
    }
    let later = SystemTime::now() + Duration::from_secs(3600);
    let (removed, _) = expire_kept(&downloads, Duration::from_secs(60), later);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(
        std::fs::read(outside.path().join("x.ferry.part")).unwrap(),
        b"theirs"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("album/real/keep.txt")).unwrap(),
        b"mine"
    );
}

/// What a resumed root holds, for the space check: whole files of the listed size under
/// their names (in subfolders too), the kept partial's length; not a file of another size,
/// not one with a second link (a local process's hard link to something else), nothing
/// through a symlinked folder.
#[test]
fn bytes_held_counts_whole_files_and_the_kept_partial_by_size_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("album");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let write = |path: &std::path::Path, len: usize| std::fs::write(path, vec![1u8; len]).unwrap();
    write(&root.join("whole.bin"), 100);
    write(&root.join("short.bin"), 10);
    write(&root.join("sub/whole.bin"), 50);
    write(&root.join("sub/kept.bin.ferry.part"), 30);
    write(&tmp.path().join("elsewhere.bin"), 70);
    std::fs::hard_link(tmp.path().join("elsewhere.bin"), root.join("linked.bin")).unwrap();
    write(&tmp.path().join("outside.bin"), 40);
    std::os::unix::fs::symlink(tmp.path(), root.join("away")).unwrap();
    let entry = |path: &str, size: u64| SafeEntry {
        path: path.into(),
        components: path.split('/').map(str::to_owned).collect(),
        size: Some(size),
        mtime: 0,
        mode: 6,
    };
    let entries = [
        entry("whole.bin", 100),
        entry("short.bin", 20),
        entry("sub/whole.bin", 50),
        entry("sub/kept.bin", 80),
        entry("linked.bin", 70),
        entry("away/outside.bin", 40),
        entry("never.bin", 5),
    ];
    let state = FolderState {
        key: "e".repeat(32),
        root: "album".into(),
        partial: Some(3),
        partial_path: Some(vec!["sub".into(), "kept.bin.ferry.part".into()]),
        root_id: id_of(&root),
    };
    let dir = DownloadDir::open(&root).unwrap();
    assert_eq!(bytes_held(&dir, &state, &entries), 100 + 50 + 30);
}
