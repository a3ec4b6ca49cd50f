//! Tests of [`super`] (files.rs), kept apart so the module stays readable.
use super::resume::{SHORT_RESUME_SEARCH_BYTES, is_part_of};
use super::*;
use crate::protocol::sanitize_file_name;
use std::fs;
use std::io::Write;

fn downloads(dir: &Path) -> Downloads {
    Downloads::open(dir, true).unwrap()
}

#[test]
fn never_overwrites_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    fs::write(dir.path().join("a.txt"), b"old").unwrap();
    let name = sanitize_file_name("a.txt");

    let mut first = PartFile::create(&downloads, &name, None).unwrap();
    let mut second = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(first.final_name(), "a (1).txt");
    assert_eq!(second.final_name(), "a (2).txt");
    first.file().unwrap().write_all(b"one").unwrap();
    second.file().unwrap().write_all(b"two").unwrap();
    assert!(
        !dir.path().join("a (1).txt").exists(),
        "no final name before commit"
    );

    let path = first.commit().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one");
    drop(second);
    assert!(!dir.path().join("a (2).txt.ferry.part").exists());
    assert!(!dir.path().join("a (2).txt").exists());
    assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"old");
    assert!(downloads.parts().is_empty());
}

#[test]
fn commit_skips_a_name_taken_meanwhile_even_by_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, b"victim").unwrap();
    let downloads = downloads(dir.path());
    let mut part = PartFile::create(&downloads, &sanitize_file_name("b.txt"), None).unwrap();
    part.file().unwrap().write_all(b"new").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("b.txt")).unwrap();
    fs::write(dir.path().join("b (1).txt"), b"someone else").unwrap();
    let path = part.commit().unwrap();
    assert_eq!(path, dir.path().join("b (2).txt"));
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(fs::read(&target).unwrap(), b"victim");
    assert!(
        fs::symlink_metadata(dir.path().join("b.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(dir.path().join("b (1).txt")).unwrap(),
        b"someone else"
    );
    assert!(!dir.path().join("b.txt.ferry.part").exists());
}

#[test]
fn a_kept_partial_is_found_for_resume_but_never_while_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("c.bin");
    let mut part = PartFile::create(&downloads, &name, None).unwrap();
    part.file().unwrap().write_all(b"hello").unwrap();
    assert!(
        PartFile::resumable(&downloads, &name, 10, None)
            .unwrap()
            .is_none(),
        "a live part is not resumable"
    );
    part.keep();
    drop(part);
    assert!(dir.path().join("c.bin.ferry.part").exists());
    assert!(
        PartFile::resumable(&downloads, &name, 4, None)
            .unwrap()
            .is_none(),
        "longer than offered"
    );
    let (mut resumed, len) = PartFile::resumable(&downloads, &name, 10, None)
        .unwrap()
        .unwrap();
    assert_eq!(len, 5);
    let hasher = resumed.hash_prefix(len, &mut [0u8; 2], || true).unwrap();
    assert_eq!(hasher.finalize(), blake3::hash(b"hello"));
    resumed.file().unwrap().write_all(b" world").unwrap();
    assert_eq!(resumed.commit().unwrap(), dir.path().join("c.bin"));
    assert_eq!(fs::read(dir.path().join("c.bin")).unwrap(), b"hello world");
}

#[test]
fn a_planted_link_under_a_partials_name_is_never_resumed_or_touched() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"secret").unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("d.bin");
    fs::hard_link(&victim, dir.path().join("d.bin.ferry.part")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("d (1).bin.ferry.part")).unwrap();
    assert!(
        PartFile::resumable(&downloads, &name, 100, None)
            .unwrap()
            .is_none()
    );
    let mut fresh = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(fresh.final_name(), "d (2).bin");
    fresh.file().unwrap().write_all(b"mine").unwrap();
    drop(fresh);
    assert_eq!(fs::read(&victim).unwrap(), b"secret");
    assert!(dir.path().join("d.bin.ferry.part").exists(), "left alone");
}

#[test]
fn the_free_name_search_resumes_where_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("z.txt");
    for expected in ["z.txt", "z (1).txt", "z (2).txt"] {
        let mut part = PartFile::create(&downloads, &name, None).unwrap();
        assert_eq!(part.final_name(), expected);
        part.commit().unwrap();
    }
    assert_eq!(downloads.name_hint(&name), 3);
    // The user deletes the first one: numbers below the hint are found by wrapping.
    fs::remove_file(dir.path().join("z (1).txt")).unwrap();
    set_hint_for_test(&downloads, &name, MAX_ALTERNATIVES - 1);
    let a = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(a.final_name(), format!("z ({}).txt", MAX_ALTERNATIVES - 1));
    let b = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(b.final_name(), "z (1).txt");
}

#[test]
fn a_name_the_user_freed_is_taken_again_before_any_numbered_one() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("report.pdf");
    for expected in ["report.pdf", "report (1).pdf"] {
        let mut part = PartFile::create(&downloads, &name, None).unwrap();
        assert_eq!(part.final_name(), expected);
        part.commit().unwrap();
    }
    // The user moves the first one away: the next upload of that name gets it back.
    fs::remove_file(dir.path().join("report.pdf")).unwrap();
    let mut again = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(again.final_name(), "report.pdf");
    again.commit().unwrap();
    // Taken again: the numbered search goes on where it ended.
    let next = PartFile::create(&downloads, &name, None).unwrap();
    assert_eq!(next.final_name(), "report (2).pdf");
}

fn set_hint_for_test(downloads: &Downloads, name: &SafeName, next: u32) {
    downloads.set_name_hint(name, next);
}

#[test]
fn reservations_add_up_and_are_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let free = downloads.0.dir.available_space().unwrap();
    // Most of the disk, so other processes' writes meanwhile cannot change the outcome.
    let most = free / 10 * 9;
    let first = downloads.reserve(most).unwrap();
    let refused = downloads.reserve(most).unwrap_err();
    assert_eq!(refused.needed, most);
    assert!(refused.available < most / 2, "{refused:?}");
    drop(first);
    assert!(downloads.reserve(most).is_ok());
    assert_eq!(*lock(&downloads.0.reserved), 0);
}

#[test]
fn a_small_file_looks_for_its_partial_only_as_far_as_the_names_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("e.txt");
    let tag = Some("0123456789abcdef");
    // A partial of ours under "e (1).txt", made while "e.txt" was taken.
    fs::write(
        dir.path().join("e (1).txt.0123456789abcdef.ferry.part"),
        b"part",
    )
    .unwrap();
    let found = |size: u64| {
        PartFile::resumable(&downloads, &name, size, tag)
            .unwrap()
            .map(|(mut part, len)| {
                // Kept, so the next search finds it again (a dropped part is removed).
                part.keep();
                (part.final_name(), len)
            })
    };
    // "e.txt" taken by nothing: a small file stops there, a large one looks further.
    assert_eq!(found(100), None);
    assert_eq!(
        found(SHORT_RESUME_SEARCH_BYTES + 1),
        Some(("e (1).txt".into(), 4))
    );
    // Taken by a file: a small file looks further too.
    fs::write(dir.path().join("e.txt"), b"someone's").unwrap();
    assert_eq!(found(100), Some(("e (1).txt".into(), 4)));
    fs::remove_file(dir.path().join("e.txt")).unwrap();
    // Taken by another upload's live partial (another sender, another tag): likewise.
    let mut other = PartFile::create(&downloads, &name, Some("fedcba9876543210")).unwrap();
    assert_eq!(other.final_name(), "e.txt");
    other.file().unwrap().write_all(b"x").unwrap();
    assert_eq!(found(100), Some(("e (1).txt".into(), 4)));
    drop(other);
    // Its free-name search now starts past "e.txt" (the other upload took it), so a partial
    // of ours may be past it though it is free: the search goes on.
    assert_eq!(found(100), Some(("e (1).txt".into(), 4)));
    // A restarted server remembers no such number: with nothing taken, the upload starts
    // over, and the partial is left for expiry.
    let restarted = Downloads::open(dir.path(), true).unwrap();
    assert!(
        PartFile::resumable(&restarted, &name, 100, tag)
            .unwrap()
            .is_none()
    );
    assert!(
        dir.path()
            .join("e (1).txt.0123456789abcdef.ferry.part")
            .exists()
    );
}

#[test]
fn partial_names_are_told_apart_from_names_that_only_start_alike() {
    assert!(is_part_of("a.txt.ferry.part", "a.txt"));
    assert!(is_part_of("a.txt.0123abcd.ferry.part", "a.txt"));
    assert!(!is_part_of("a.txt.x.y.ferry.part", "a.txt"));
    assert!(!is_part_of("a.txt2.ferry.part", "a.txt"));
    assert!(!is_part_of("a.txt", "a.txt"));
}

#[test]
fn a_small_file_finds_its_partial_made_past_a_name_freed_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = downloads(dir.path());
    let name = sanitize_file_name("e.txt");
    // An earlier "e.txt" arrived whole, and the user moved it out of the folder.
    let mut first = PartFile::create(&downloads, &name, None).unwrap();
    first.file().unwrap().write_all(b"old").unwrap();
    first.commit().unwrap();
    fs::remove_file(dir.path().join("e.txt")).unwrap();
    // The next "e.txt" (the free-name search starts past the name it remembers taken) is
    // interrupted, and its partial kept.
    let tag = Some("0123456789abcdef");
    let mut part = PartFile::create(&downloads, &name, tag).unwrap();
    part.file().unwrap().write_all(b"part").unwrap();
    part.keep();
    let made_as = part.final_name();
    drop(part);
    // The sender comes back: the small file resumes there instead of starting over.
    let (mut resumed, len) = PartFile::resumable(&downloads, &name, 100, tag)
        .unwrap()
        .expect("the kept partial is found");
    resumed.keep();
    assert_eq!((resumed.final_name(), len), (made_as, 4));
}
