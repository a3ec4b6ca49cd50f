//! Folders in the window (issue 13): a folder picked with "Choose folder…" or dropped onto
//! the window is one row in the Client tab, uploads over loopback to another window's server,
//! arrives with its structure on disk, ends "all N files verified" on both sides, and expands
//! into its files' rows. Real engines on 127.0.0.1, real files in temp folders; only the
//! system dialog is replaced (by [`FolderPicker`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, Picker, RowState, Settings};

use crate::gui::{listening_addr, run_until, settings};
use crate::util::*;

/// The dialog seam: "Choose folder…" answers with the test's folder.
struct FolderPicker {
    folder: Option<PathBuf>,
}

impl Picker for FolderPicker {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        None
    }
    fn pick_folder(&self, _start: &Path) -> Option<PathBuf> {
        self.folder.clone()
    }
}

/// A path dropped onto the window, as the desktop hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn window(settings: Settings, folder: Option<PathBuf>) -> Harness<'static, FerryApp> {
    Harness::builder()
        // Tall enough for the Server tab's table below its settings.
        .with_size(egui::Vec2::new(1280.0, 1200.0))
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            FerryApp::new(&cc.egui_ctx, settings, Arc::new(FolderPicker { folder })).unwrap()
        })
}

/// `photos/` with three files (one of 2 MB, one in a Chinese-named subfolder), an empty
/// folder, and a symlink leading out of it (skipped, named in the row).
fn make_folder(src: &Path) -> (PathBuf, Vec<(&'static str, Vec<u8>)>) {
    let root = src.join("photos");
    std::fs::create_dir_all(root.join("sub/深")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let files = vec![
        ("a.txt", b"first".to_vec()),
        ("sub/b.bin", data(2_000_000, 7)),
        ("sub/深/c.txt", data(10_000, 8)),
    ];
    for (path, bytes) in &files {
        std::fs::write(root.join(path), bytes).unwrap();
    }
    std::fs::write(src.join("outside.txt"), "not in the folder").unwrap();
    std::os::unix::fs::symlink(src.join("outside.txt"), root.join("link-out")).unwrap();
    (root, files)
}

/// A receiving window, listening; its address.
fn receiver(dst: &Path) -> (Harness<'static, FerryApp>, std::net::SocketAddr) {
    let mut receiver = window(settings(dst), None);
    receiver.get_by_label("Start listening").click();
    run_until(&mut receiver, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let addr = listening_addr(receiver.state()).unwrap();
    (receiver, addr)
}

/// Uploads the queued folder and waits until both windows say it is over.
fn upload_and_wait(
    sender: &mut Harness<'static, FerryApp>,
    receiver: &mut Harness<'static, FerryApp>,
    files: usize,
) {
    sender.get_by_label("Upload").click();
    run_until(sender, "the folder upload to finish", |app| {
        app.client.rows[0].state.is_finished()
    });
    run_until(receiver, "the folder to arrive", |app| {
        app.server.rows.first().is_some_and(|r| {
            r.state.is_finished() && r.folder.as_ref().is_some_and(|g| g.children.len() == files)
        })
    });
}

fn assert_on_disk(dst: &Path, files: &[(&str, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(
            &std::fs::read(dst.join("photos").join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
    assert!(dst.join("photos/empty").is_dir(), "empty folders are kept");
    assert!(
        !dst.join("photos/link-out").exists(),
        "the link out was not followed"
    );
}

#[test]
fn a_folder_chosen_in_the_client_tab_arrives_whole_and_both_rows_expand_into_its_files() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (root, files) = make_folder(src.path());
    let (mut receiver, addr) = receiver(dst.path());
    let mut sender = window(settings(src.path()), Some(root.clone()));
    crate::gui::type_destination(&mut sender, &addr.to_string());

    sender.get_by_label("Choose folder…").click();
    run_until(&mut sender, "the folder in the queue", |app| {
        !app.client.rows.is_empty()
    });
    // One row: the folder's name, its file count and size, what was skipped.
    assert_eq!(sender.state().client.rows.len(), 1);
    sender.get_by_label("photos/");
    sender.get_by_label("1.9 MiB · 3 files");
    sender.get_by_label("skipped: link-out");
    sender.get_by_label("queued");

    upload_and_wait(&mut sender, &mut receiver, files.len());
    let row = &sender.state().client.rows[0];
    assert_eq!(row.state, RowState::Verified);
    assert_eq!(row.bytes_done, row.bytes_total);
    sender.get_by_label("all 3 files verified");
    assert_on_disk(dst.path(), &files);

    // The sender's row expands into its files' rows, and folds back.
    assert!(sender.query_by_label("sub/深/c.txt").is_none());
    sender.get_by_label("Show files").click();
    sender.run_steps(2);
    for (path, _) in &files {
        sender.get_by_label(path);
    }
    assert_eq!(sender.query_all_by_label("verified").count(), 3);
    sender.get_by_label("Hide files").click();
    sender.run_steps(2);
    assert!(sender.query_by_label("sub/b.bin").is_none());

    // The receiver shows one folder row, not three file rows, and it expands the same way.
    let server_rows = &receiver.state().server.rows;
    assert_eq!(server_rows.len(), 1, "{server_rows:#?}");
    assert_eq!(server_rows[0].state, RowState::Verified);
    assert_eq!(
        server_rows[0].path.as_deref(),
        Some(dst.path().join("photos").as_path()),
        "the folder row knows where the folder is"
    );
    receiver.run_steps(2);
    receiver.get_by_label("photos/");
    receiver.get_by_label("all 3 files verified");
    // Through accessibility: a pointer click at this button's rect does not reach it in the
    // headless Server tab (the tree holds the table twice there; not yet understood).
    receiver.get_by_label("Show files").click_accesskit();
    receiver.run_steps(2);
    for (path, _) in &files {
        receiver.get_by_label(path);
    }
}

#[test]
fn a_folder_dropped_on_the_window_is_queued_beside_a_file_and_both_go_in_one_upload() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (root, files) = make_folder(src.path());
    let loose = src.path().join("loose.txt");
    std::fs::write(&loose, "a loose file").unwrap();
    let (mut receiver, addr) = receiver(dst.path());
    let mut sender = window(settings(src.path()), None);
    crate::gui::type_destination(&mut sender, &addr.to_string());

    for path in [&root, &loose] {
        let dropped: egui::DroppedFileHandle = Arc::new(Dropped(path.clone()));
        sender.input_mut().dropped_files.push(dropped);
    }
    run_until(&mut sender, "the drop in the queue", |app| {
        app.client.rows.len() == 2
    });
    assert_eq!(sender.state().client.notice, None, "nothing left out");
    sender.get_by_label("photos/");
    sender.get_by_label("loose.txt");

    sender.get_by_label("Upload").click();
    run_until(&mut sender, "both rows to finish", |app| {
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    run_until(&mut receiver, "the folder and the file to arrive", |app| {
        app.server.rows.len() == 2 && app.server.rows.iter().all(|r| r.state.is_finished())
    });
    let states: Vec<RowState> = sender
        .state()
        .client
        .rows
        .iter()
        .map(|r| r.state.clone())
        .collect();
    assert_eq!(states, [RowState::Verified, RowState::Verified]);
    assert_on_disk(dst.path(), &files);
    assert_eq!(
        std::fs::read(dst.path().join("loose.txt")).unwrap(),
        b"a loose file"
    );
    let folders = receiver
        .state()
        .server
        .rows
        .iter()
        .filter(|r| r.folder.is_some());
    assert_eq!(folders.count(), 1, "the file is a row of its own");
}

/// The message typed in the Client tab goes with a folder too: the receiving window's folder
/// row shows it (before, a folder offer had no message and it was dropped without a word).
#[test]
fn a_message_typed_for_a_folder_shows_on_the_receivers_folder_row() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (root, files) = make_folder(src.path());
    let (mut receiver, addr) = receiver(dst.path());
    let mut sender = window(settings(src.path()), Some(root));
    crate::gui::type_destination(&mut sender, &addr.to_string());
    sender.get_by_label("Message").click();
    sender.get_by_label("Message").type_text("周末的照片");
    sender.get_by_label("Choose folder…").click();
    run_until(&mut sender, "the folder in the queue", |app| {
        !app.client.rows.is_empty()
    });
    upload_and_wait(&mut sender, &mut receiver, files.len());
    let row = &receiver.state().server.rows[0];
    assert_eq!(row.msg, "周末的照片", "{row:#?}");
    receiver.run_steps(2);
    receiver.get_by_label("周末的照片");
}
