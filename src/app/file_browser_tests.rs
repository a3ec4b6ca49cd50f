//! Unit tests of the in-app picker (`file_browser.rs`): completion, listing once per typed
//! folder, and that no listing ever holds up the UI thread (a held lister stands in for a hung
//! network mount).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::super::file_lister::list;
use super::*;

impl FileBrowser {
    /// Waits (at most 10 s) until no folder asked for is being read, applying the answers
    /// as `show` does each frame.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.poll();
        while self.is_reading() {
            let answers = self
                .lister
                .take_waiting(deadline)
                .expect("the picker's listing arrives within 10 s");
            self.apply(answers);
        }
    }

    fn names(&self) -> Vec<String> {
        self.listing
            .entries
            .iter()
            .map(|e| e.shown.clone())
            .collect()
    }
}

fn opened(browser: &mut FileBrowser, dir: &Path) {
    browser.open(
        &egui::Context::default(),
        BrowseFor::Files,
        Some(dir.into()),
    );
    browser.settle();
    assert_eq!(browser.dir, dir);
}

#[test]
fn typed_paths_split_and_complete_to_the_common_prefix() {
    assert_eq!(split_typed("/a/b/ho"), (PathBuf::from("/a/b"), "ho".into()));
    assert_eq!(split_typed("/ho"), (PathBuf::from("/"), "ho".into()));
    assert_eq!(split_typed("/a/"), (PathBuf::from("/a"), String::new()));
    assert_eq!(common_prefix(["holiday", "home", "hot"].into_iter()), "ho");
    assert_eq!(common_prefix(["日記1", "日記2"].into_iter()), "日記");
    assert_eq!(common_prefix(std::iter::empty()), "");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("holiday.jpg"), "x").unwrap();
    std::fs::write(dir.path().join("home.txt"), "x").unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("photos/xmas1.jpg"), "x").unwrap();
    std::fs::write(dir.path().join("photos/xmas2.jpg"), "x").unwrap();
    let mut browser = FileBrowser::default();
    opened(&mut browser, dir.path());
    assert_eq!(browser.names()[0], "photos", "folders first");
    assert_eq!(browser.path_field, format!("{}/", dir.path().display()));
    // The folder shown is listed already: Tab completes at once.
    browser.path_field = format!("{}/h", dir.path().display());
    browser.complete();
    assert_eq!(browser.path_field, format!("{}/ho", dir.path().display()));
    browser.path_field = format!("{}/p", dir.path().display());
    browser.complete();
    assert_eq!(
        browser.path_field,
        format!("{}/photos/", dir.path().display())
    );
    // Another folder is listed first: Tab waits for it, then completes.
    let typed = format!("{}/photos/x", dir.path().display());
    browser.path_field = typed.clone();
    browser.cursor_to_end = false;
    browser.complete();
    assert_eq!(browser.path_field, typed, "not listed yet");
    assert!(browser.is_reading());
    browser.settle();
    assert_eq!(browser.path_field, format!("{typed}mas"));
    assert!(browser.cursor_to_end, "the cursor follows the completion");
    // Typing on meanwhile cancels a waiting Tab.
    std::fs::create_dir(dir.path().join("photos/sub")).unwrap();
    std::fs::write(dir.path().join("photos/sub/one.txt"), "x").unwrap();
    let typed = format!("{}/photos/sub/o", dir.path().display());
    browser.path_field = typed.clone();
    browser.complete();
    browser.path_field = format!("{typed}x");
    browser.settle();
    assert_eq!(browser.path_field, format!("{typed}x"));
}

#[test]
fn typing_a_name_lists_its_folder_once_and_moving_lists_it_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("holiday.jpg"), "x").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/apple"), "x").unwrap();
    let listings = Arc::new(AtomicUsize::new(0));
    let mut browser = FileBrowser {
        lister: Lister::with_list(Arc::new({
            let listings = Arc::clone(&listings);
            move |dir: &Path| {
                listings.fetch_add(1, Ordering::SeqCst);
                list(dir)
            }
        })),
        ..FileBrowser::default()
    };
    opened(&mut browser, dir.path());
    let names =
        |b: &FileBrowser| -> Vec<String> { b.matches.iter().map(|e| e.shown.clone()).collect() };
    // The folder shown serves its completions: no second listing.
    browser.path_field = format!("{}/h", dir.path().display());
    browser.settle();
    assert_eq!(names(&browser), ["holiday.jpg"]);
    assert_eq!(listings.load(Ordering::SeqCst), 1);
    // A file made while typing is not seen: the folder is not read again at each key.
    std::fs::write(dir.path().join("home.txt"), "x").unwrap();
    browser.path_field = format!("{}/ho", dir.path().display());
    browser.settle();
    assert_eq!(names(&browser), ["holiday.jpg"]);
    // Another typed folder is listed once, in the background.
    browser.path_field = format!("{}/sub/a", dir.path().display());
    browser.poll();
    assert!(browser.is_reading());
    browser.settle();
    assert_eq!(names(&browser), ["apple"]);
    std::fs::write(dir.path().join("sub/apricot"), "x").unwrap();
    browser.path_field = format!("{}/sub/ap", dir.path().display());
    browser.settle();
    assert_eq!(names(&browser), ["apple"]);
    assert_eq!(listings.load(Ordering::SeqCst), 2);
    // Entering a folder (here the same one again) reads it afresh.
    browser.enter(dir.path().to_path_buf());
    browser.settle();
    browser.path_field = format!("{}/ho", dir.path().display());
    browser.settle();
    assert_eq!(names(&browser), ["holiday.jpg", "home.txt"]);
    // A symlink to a folder is listed as a folder (it can be entered).
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
    browser.enter(dir.path().to_path_buf());
    browser.settle();
    assert!(
        browser
            .listing
            .entries
            .iter()
            .any(|e| e.shown == "link" && e.is_dir)
    );
}

/// A listing held like one on a hung network mount: the UI thread does not wait for it,
/// later requests work, and its late answer does not replace a newer one.
#[test]
fn a_listing_that_hangs_blocks_neither_the_ui_nor_later_requests() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["slow", "fast"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join(format!("{sub}.txt")), "x").unwrap();
    }
    std::fs::write(dir.path().join("fast/picked.txt"), "x").unwrap();
    // Listing a folder named `slow` waits until released (or the sender is dropped, or
    // 20 s passed), then counts itself as done: a UI call that waited for it would return
    // only after that count went up (no timing asserted).
    let (release, held) = crossbeam_channel::unbounded::<()>();
    let slow_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::clone(&slow_done);
    let slow_listings = move || done.load(std::sync::atomic::Ordering::SeqCst);
    let counted = Arc::clone(&slow_done);
    let mut browser = FileBrowser {
        lister: Lister::with_list(Arc::new(move |dir: &Path| {
            if dir.ends_with("slow") {
                let _ = held.recv_timeout(Duration::from_secs(20));
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            list(dir)
        })),
        ..FileBrowser::default()
    };
    opened(&mut browser, dir.path());
    let slow = dir.path().join("slow");
    let fast = dir.path().join("fast");

    browser.enter(slow.clone());
    browser.poll();
    assert_eq!(slow_listings(), 0, "entering waited for the listing");
    assert!(browser.is_reading(), "says it is reading");
    assert_eq!(browser.dir, dir.path(), "the previous folder stays shown");
    assert_eq!(browser.names(), ["fast", "slow"]);

    // Going to a typed folder while the first hangs: it is shown.
    browser.path_field = fast.display().to_string();
    browser.go();
    assert_eq!(slow_listings(), 0, "going waited for the hung listing");
    browser.settle();
    assert_eq!(browser.dir, fast);
    assert_eq!(browser.names(), ["fast.txt", "picked.txt"]);
    assert!(!browser.is_reading());

    // A typed file in the folder shown is selected without listing it again.
    browser.path_field = fast.join("picked.txt").display().to_string();
    browser.go();
    browser.settle();
    assert_eq!(browser.selected, [fast.join("picked.txt")]);
    assert_eq!(browser.path_field, format!("{}/", fast.display()));

    // The hung listing ends after all: its answer is dropped.
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answers = browser
        .lister
        .take_waiting(deadline)
        .expect("the released listing answers");
    assert!(answers.is_empty(), "a stale answer is not taken");
    browser.apply(answers);
    assert_eq!(browser.dir, fast, "the late listing replaced the newer one");
    assert_eq!(browser.names(), ["fast.txt", "picked.txt"]);

    // Completion in a hanging folder, and opening at it, return at once too.
    let released = slow_listings();
    browser.path_field = format!("{}/s", slow.display());
    browser.poll();
    browser.open(&egui::Context::default(), BrowseFor::Folder, Some(slow));
    browser.poll();
    assert_eq!(slow_listings(), released, "completion or opening waited");
    assert!(browser.is_reading());
    assert_eq!(browser.dir, fast);

    // Requests stuck by the dozen are refused, not piled up as threads without end.
    for _ in 0..40 {
        browser.enter(dir.path().join("slow"));
    }
    browser.path_field = fast.display().to_string();
    browser.go();
    browser.settle();
    assert_eq!(browser.dir, fast, "refused, nothing changed");
    assert_eq!(browser.error, Some(Problem::Busy));
    drop(release);
}
