//! The window, driven headless with egui_kittest by its visible labels, with the real engines
//! on loopback: only the file dialog is replaced (by [`FakePicker`]).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, NotesStatus, Picker, RowState, ServerStatus, Settings};

use crate::util::*;

/// The file-picker seam: returns what the test chose, at once.
struct FakePicker {
    files: Vec<PathBuf>,
}

impl Picker for FakePicker {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        Some(self.files.clone())
    }
    fn pick_folder(&self, _start: &Path) -> Option<PathBuf> {
        None
    }
}

fn settings(download_dir: &Path) -> Settings {
    Settings {
        lang: Some(ferry::app::i18n::Lang::En),
        server_bind: "127.0.0.1".into(),
        server_port: "0".into(),
        download_dir: download_dir.to_owned(),
        notes_port: "0".into(),
        ..Settings::default()
    }
}

fn app(settings: Settings, files: Vec<PathBuf>) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        // Chinese names: the headless harness has no CJK font (the real window finds one).
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            FerryApp::new(&cc.egui_ctx, settings, Arc::new(FakePicker { files })).unwrap()
        })
}

/// Steps frames until `done` holds (engines run on their own threads meanwhile).
fn run_until(
    harness: &mut Harness<'_, FerryApp>,
    what: &str,
    mut done: impl FnMut(&FerryApp) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        harness.step();
        if done(harness.state()) {
            harness.run_steps(2);
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Poll interval: give the worker threads the CPU between frames.
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn listening_addr(app: &FerryApp) -> Option<SocketAddr> {
    match app.server.status {
        ServerStatus::Listening(addr) => Some(addr),
        _ => None,
    }
}

#[test]
fn upload_from_the_client_tab_to_the_server_tab_is_verified_on_both() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("计算机五大.txt");
    let bytes = data(3_000_000, 21);
    std::fs::write(&file, &bytes).unwrap();
    let mut harness = app(settings(dst.path()), vec![file.clone()]);
    harness.run_steps(2);

    harness.get_by_label("Start listening").click();
    run_until(&mut harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let addr = listening_addr(harness.state()).unwrap();
    // Shown in the tab and in the status bar.
    assert_eq!(
        harness
            .query_all_by_label_contains(&format!("Listening on {addr}"))
            .count(),
        2
    );

    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Destination (host:port)").click();
    harness
        .get_by_label("Destination (host:port)")
        .type_text(&addr.to_string());
    harness.get_by_label("Choose files…").click();
    run_until(&mut harness, "the picked file in the queue", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label("queued").hover();

    harness.get_by_label("Upload").click();
    run_until(&mut harness, "the upload to finish", |app| {
        app.client.rows[0].state.is_finished()
            && app
                .server
                .rows
                .first()
                .is_some_and(|r| r.state.is_finished())
    });
    assert_eq!(harness.state().client.rows[0].state, RowState::Verified);
    harness.get_by_label("verified");
    harness.get_by_label("Server").click();
    harness.run_steps(2);
    assert_eq!(harness.state().server.rows[0].state, RowState::Verified);
    harness.get_by_label("verified");
    harness.get_by_label("计算机五大.txt");
    assert_eq!(
        std::fs::read(dst.path().join("计算机五大.txt")).unwrap(),
        bytes
    );
    assert_eq!(
        harness.state().client.recent,
        [addr.to_string()],
        "the destination is remembered"
    );
}

#[test]
fn a_note_sent_from_one_window_appears_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = app(settings(dir.path()), vec![]);
    let mut bob = app(settings(dir.path()), vec![]);
    let notes_port = |app: &FerryApp| match app.notes.status {
        NotesStatus::Listening(addr) => Some(addr.port()),
        _ => None,
    };
    run_until(&mut alice, "alice's notes socket", |app| {
        notes_port(app).is_some()
    });
    run_until(&mut bob, "bob's notes socket", |app| {
        notes_port(app).is_some()
    });
    let alice_port = notes_port(alice.state()).unwrap();

    bob.get_by_label("Peer (host:port)").click();
    bob.get_by_label("Peer (host:port)")
        .type_text(&format!("127.0.0.1:{alice_port}"));
    bob.get_by_label("Note").click();
    bob.get_by_label("Note")
        .type_text("你好 Alice, the files are on their way");
    bob.get_by_label("Send").click();
    run_until(&mut bob, "bob's note to be sent", |app| {
        app.notes.history.len() == 1
    });
    run_until(&mut alice, "alice to receive the note", |app| {
        app.notes.history.len() == 1
    });
    alice.get_by_label("你好 Alice, the files are on their way");
    bob.get_by_label("你好 Alice, the files are on their way");
    assert_eq!(
        bob.state().notes.draft,
        "",
        "the box is emptied after sending"
    );

    // One-click reply: clicking the sender in alice's history fills in the peer.
    let bob_addr = alice.state().notes.history.iter().next().unwrap().peer;
    alice.get_by_label(&bob_addr.to_string()).click();
    alice.run_steps(2);
    assert_eq!(alice.state().notes.peer, bob_addr.to_string());
}

#[test]
fn switching_the_language_changes_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), vec![]);
    harness.run_steps(2);
    harness.get_by_label("Start listening");
    harness.get_by_label("Language").click();
    harness.run_steps(2);
    harness.get_by_label("简体中文").click();
    harness.run_steps(2);
    harness.get_by_label("开始监听");
    assert!(harness.query_by_label("Start listening").is_none());
    assert_eq!(
        harness.state().settings().lang,
        Some(ferry::app::i18n::Lang::ZhCn),
        "persisted"
    );
}

#[test]
fn listening_on_a_port_in_use_shows_an_error_not_a_panic() {
    let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.server_port = port.to_string();
    let mut harness = app(s, vec![]);
    harness.run_steps(2);
    harness.get_by_label("Start listening").click();
    run_until(&mut harness, "the start to fail", |app| {
        matches!(app.server.status, ServerStatus::Failed(_))
    });
    harness.get_by_label(&format!("port {port} is in use"));
    // The user can fix the port and try again.
    harness.get_by_label("Start listening");
}

#[test]
fn cancel_in_the_client_tab_stops_the_upload_and_the_receiver_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    std::fs::write(&file, data(40 * 1024 * 1024, 31)).unwrap();
    let (server, events) = start_server(dst.path());
    let proxy = throttling_proxy(server.local_addr(), 64 * 1024, Duration::from_millis(5));
    let mut harness = app(settings(src.path()), vec![file]);
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Destination (host:port)").click();
    harness
        .get_by_label("Destination (host:port)")
        .type_text(&proxy.to_string());
    harness.get_by_label("Choose files…").click();
    run_until(&mut harness, "the queued file", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label("Upload").click();
    run_until(&mut harness, "bytes on the way", |app| {
        app.client.rows[0].bytes_done > 0
    });
    harness.get_by_label("Cancel").click();
    run_until(&mut harness, "the row to end", |app| {
        app.client.rows[0].state.is_finished()
    });
    assert_eq!(
        harness.state().client.rows[0].state,
        RowState::Cancelled { by_peer: false }
    );
    harness.get_by_label("cancelled");
    // The receiver hears it from the peer and keeps nothing.
    let (finished, failed) = wait_files(&events, 1);
    assert!(finished.is_empty());
    assert!(failed[0].contains("cancelled by peer"), "{failed:?}");
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
}

#[test]
fn closing_the_window_mid_upload_cancels_it_and_keeps_no_file() {
    use std::io::Write;
    let dst = tempfile::tempdir().unwrap();
    let mut s = settings(dst.path());
    s.server_listening = true; // listening at the last exit: starts listening by itself
    let mut harness = app(s, vec![]);
    run_until(&mut harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let addr = listening_addr(harness.state()).unwrap();
    // A plain sender that announces 50 MB and sends 1 MB, then stalls.
    let mut sender = std::net::TcpStream::connect(addr).unwrap();
    sender
        .write_all(&plain_frame(&plain_header(
            "unfinished.bin",
            50_000_000,
            "",
        )))
        .unwrap();
    sender.write_all(&data(1_000_000, 41)).unwrap();
    run_until(&mut harness, "the upload in progress", |app| {
        app.server.rows.first().is_some_and(|r| r.bytes_done > 0)
    });
    harness.get_by_label("receiving");
    drop(harness);
    assert!(
        names_in(dst.path()).is_empty(),
        "left behind: {:?}",
        names_in(dst.path())
    );
    // The sender sees the connection end.
    sender.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(
        std::io::Read::read(&mut sender, &mut byte),
        Ok(0) | Err(_)
    ));
}
