//! The window, driven headless with egui_kittest by its visible labels, with the real engines
//! on loopback: only the file dialog is replaced (by [`FakePicker`]).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, NotesStatus, Picker, PolicyChoice, RowState, ServerStatus, Settings};

use ferry::events::{FailureKind, Refusal};

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

pub(crate) fn settings(download_dir: &Path) -> Settings {
    Settings {
        lang: Some(ferry::app::i18n::Lang::En),
        // The tests start the server themselves (a first start listens at once), and take
        // what arrives unless a test is about asking (a first start asks).
        server_listening: false,
        accept_policy: Some(PolicyChoice::Everyone),
        server_bind: "127.0.0.1".into(),
        server_port: "0".into(),
        download_dir: download_dir.to_owned(),
        notes_port: "0".into(),
        // Discovery has tests of its own (gui_devices.rs), each with its own identity folder
        // and discovery port; here it would use the user's config folder.
        discovery: false,
        // The engine keeps its device identity (for encrypted notes) in the test run's
        // config folder, never in the user's.
        identity_dir: Some(test_config_home().join("ferry")),
        // LocalSend has tests of its own (gui_localsend.rs), on port 0; here it would take
        // LocalSend's real port.
        localsend: false,
        ..Settings::default()
    }
}

/// A window listening at once, taking everything, LocalSend on port 0, its identities in
/// `identity_dir`.
pub(crate) fn localsend_settings(download_dir: &Path, identity_dir: &Path) -> Settings {
    Settings {
        server_listening: true,
        accept_policy: Some(PolicyChoice::Everyone),
        identity_dir: Some(identity_dir.to_owned()),
        localsend: true,
        localsend_port: "0".into(),
        ..settings(download_dir)
    }
}

/// On the Client tab, waits for the LocalSend device `alias` to be listed and chooses it.
pub(crate) fn choose_localsend_device(harness: &mut Harness<'_, FerryApp>, alias: &str) {
    harness.get_by_label("Client").click();
    run_until(harness, "the device to be listed", |app| {
        app.devices.localsend.iter().any(|d| d.alias == alias)
    });
    harness.get_by_label(alias).click();
    harness.run_steps(2);
}

pub(crate) fn app(settings: Settings, files: Vec<PathBuf>) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        // Chinese names: the headless harness has no CJK font (the real window finds one).
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            FerryApp::new(&cc.egui_ctx, settings, Arc::new(FakePicker { files })).unwrap()
        })
}

/// Steps frames until `done` holds (engines run on their own threads meanwhile).
pub(crate) fn run_until(
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

pub(crate) fn listening_addr(app: &FerryApp) -> Option<SocketAddr> {
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

    type_destination(&mut harness, &addr.to_string());
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
    // The receiver is a window too: what its user sees is checked, not a test's own words.
    let mut receiver = app(
        Settings {
            server_listening: true,
            ..settings(dst.path())
        },
        vec![],
    );
    let addr = wait_listening(&mut receiver);
    let proxy = Proxy::to(addr)
        .throttle(64 * 1024, Duration::from_millis(5))
        .only_one_connection()
        .start()
        .addr;
    let mut harness = app(settings(src.path()), vec![file]);
    type_destination(&mut harness, &proxy.to_string());
    pick_and_upload(&mut harness, 1);
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
    // The receiver hears it from the peer, says so in its row, and keeps nothing.
    run_until(&mut receiver, "the receiver's row to end", |app| {
        app.server
            .rows
            .first()
            .is_some_and(|r| r.state.is_finished())
    });
    assert_eq!(
        receiver.state().server.rows[0].state,
        RowState::Cancelled { by_peer: true }
    );
    receiver.get_by_label("cancelled by peer");
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

/// Settings for a receiver that asks before accepting and listens from the start.
fn asking_receiver(download_dir: &Path) -> Settings {
    Settings {
        accept_policy: Some(PolicyChoice::Ask),
        server_listening: true,
        ..settings(download_dir)
    }
}

/// Starts the harness's server (from settings or with a click) and returns its address.
fn wait_listening(harness: &mut Harness<'_, FerryApp>) -> SocketAddr {
    run_until(harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    listening_addr(harness.state()).unwrap()
}

/// In the Client tab: types the destination and message, picks the picker's files and
/// clicks Upload.
fn upload_from_client_tab(
    harness: &mut Harness<'_, FerryApp>,
    dest: SocketAddr,
    msg: &str,
    count: usize,
) {
    type_destination(harness, &dest.to_string());
    if !msg.is_empty() {
        harness.get_by_label("Message").click();
        harness.get_by_label("Message").type_text(msg);
    }
    pick_and_upload(harness, count);
    harness.run_steps(2);
}

/// In the Client tab: picks the picker's `count` files, waits for them in the queue and
/// On the Client tab, types `dest` into the destination field.
pub(crate) fn type_destination(harness: &mut Harness<'_, FerryApp>, dest: &str) {
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Destination (host:port)").click();
    harness
        .get_by_label("Destination (host:port)")
        .type_text(dest);
}

/// clicks Upload.
pub(crate) fn pick_and_upload(harness: &mut Harness<'_, FerryApp>, count: usize) {
    harness.get_by_label("Choose files…").click();
    run_until(harness, "the picked files in the queue", |app| {
        app.client.rows.len() == count
    });
    harness.get_by_label("Upload").click();
}

/// Replaces the text of the field labelled `label` with `text`, as a user would.
fn replace_text(harness: &mut Harness<'_, FerryApp>, label: &str, text: &str) {
    harness.get_by_label(label).click();
    harness.run_steps(1);
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.get_by_label(label).type_text(text);
    harness.run_steps(1);
    assert_eq!(harness.get_by_label(label).value().as_deref(), Some(text));
}

/// Waits until the engine has handled every command sent so far: the engine takes commands
/// in order, so once a later "Listen" (notes) is answered, the earlier ones are done.
fn engine_caught_up(harness: &mut Harness<'_, FerryApp>) {
    harness.get_by_label("Listen").click();
    harness.run_steps(1);
    run_until(harness, "the engine to answer a later command", |app| {
        matches!(app.notes.status, NotesStatus::Listening(_))
    });
}

/// Two windows: the receiver showing the prompt, and the sender on its Client tab.
struct Offered {
    receiver: Harness<'static, FerryApp>,
    sender: Harness<'static, FerryApp>,
    /// The offered files and their contents.
    files: Vec<(PathBuf, Vec<u8>)>,
}

/// Two files offered from window B to window A, which asks, up to the prompt in A.
fn offer_two_files(src: &Path, dst: &Path) -> Offered {
    let files: Vec<(PathBuf, Vec<u8>)> = [("report.txt", 120_000), ("photos.bin", 5_000_000)]
        .iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let path = src.join(name);
            let bytes = data(*len, 50 + i as u64);
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect();
    let mut receiver = app(asking_receiver(dst), vec![]);
    let addr = wait_listening(&mut receiver);
    let mut sender = app(
        settings(src),
        files.iter().map(|(path, _)| path.clone()).collect(),
    );
    upload_from_client_tab(&mut sender, addr, "for Friday", 2);
    run_until(&mut receiver, "the prompt", |app| {
        !app.server.offers.pending.is_empty()
    });
    receiver.get_by_label("Incoming files");
    receiver.get_by_label_contains(" from 127.0.0.1:");
    receiver.get_by_label("Files: 2");
    receiver.get_by_label("Total size: 4.9 MiB");
    receiver.get_by_label("Message: for Friday");
    receiver.get_by_label("report.txt");
    receiver.get_by_label("photos.bin");
    assert!(
        names_in(dst).is_empty(),
        "nothing is written before the answer"
    );
    // Meanwhile the sender's row says what it waits for.
    run_until(&mut sender, "the sender to hear it must wait", |app| {
        app.client
            .rows
            .first()
            .is_some_and(|r| r.awaiting.is_some())
    });
    sender.get_by_label("waiting for the receiver to accept");
    Offered {
        receiver,
        sender,
        files,
    }
}

#[test]
fn an_offer_waits_for_accept_in_the_prompt_then_arrives_verified() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let Offered {
        mut receiver,
        mut sender,
        files,
    } = offer_two_files(src.path(), dst.path());
    receiver.get_by_label("Accept").click();
    run_until(&mut receiver, "both files received", |app| {
        app.server.rows.len() == 2 && app.server.rows.iter().all(|r| r.state.is_finished())
    });
    assert!(
        receiver.query_by_label("Accept").is_none(),
        "the prompt is gone"
    );
    assert!(receiver.state().server.offers.pending.is_empty());
    run_until(&mut sender, "both uploads to end", |app| {
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    for app in [receiver.state(), sender.state()] {
        let rows = app.server.rows.iter().chain(&app.client.rows);
        assert!(rows.clone().count() == 2);
        assert!(
            rows.clone().all(|r| r.state == RowState::Verified),
            "{:?}",
            rows.collect::<Vec<_>>()
        );
    }
    assert_eq!(sender.query_all_by_label("verified").count(), 2);
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(dst.path().join(path.file_name().unwrap())).unwrap(),
            bytes
        );
    }
}

/// A sender that cancels while the receiver's prompt is up takes the prompt with it, and
/// the receiving window says so instead of letting the prompt vanish unexplained.
#[test]
fn a_cancelled_offer_leaves_the_prompt_with_a_word_why() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let Offered {
        mut receiver,
        mut sender,
        ..
    } = offer_two_files(src.path(), dst.path());
    // Each waiting row has its Cancel.
    loop {
        let Some(cancel) = sender.query_all_by_label("Cancel").next() else {
            break;
        };
        cancel.click();
        sender.run_steps(2);
    }
    run_until(&mut receiver, "the prompt to close", |app| {
        app.server.offers.pending.is_empty()
    });
    receiver.run_steps(2);
    assert!(
        receiver.query_by_label("Accept").is_none(),
        "the prompt is gone"
    );
    receiver.get_by_label_contains("closed before it was answered: the sender left");
    assert!(names_in(dst.path()).is_empty());
    // "Clear finished" clears the word too.
    receiver.get_by_label("Clear finished").click();
    receiver.run_steps(2);
    assert!(
        receiver
            .query_by_label_contains("closed before it was answered")
            .is_none()
    );
}

#[test]
fn a_declined_offer_tells_the_sender_and_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let Offered {
        mut receiver,
        mut sender,
        ..
    } = offer_two_files(src.path(), dst.path());
    receiver.get_by_label("Decline").click();
    receiver.run_steps(2);
    run_until(&mut sender, "both uploads to end", |app| {
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    assert_eq!(
        sender
            .query_all_by_label("declined: declined by the receiver")
            .count(),
        2
    );
    // A declined upload can be offered again.
    assert_eq!(sender.query_all_by_label("Retry").count(), 2);
    run_until(&mut receiver, "the refusals in the server tab", |app| {
        app.server.rows.len() == 2 && app.server.rows.iter().all(|r| r.state.is_finished())
    });
    assert!(
        receiver.query_by_label("Decline").is_none(),
        "the prompt is gone"
    );
    assert_eq!(
        receiver
            .query_all_by_label("failed: refused: declined here")
            .count(),
        2
    );
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );
}

/// A plain upload as the Python client does it, tolerating a server that hangs up early.
/// Returns whether the server sent anything back (a plain peer must never get a byte).
fn raw_plain_upload(addr: SocketAddr, name: &str, bytes: &[u8]) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let _ = stream.write_all(&plain_frame(&plain_header(name, bytes.len(), "")));
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    !rest.is_empty()
}

#[test]
fn plain_senders_are_refused_while_asking_and_accepted_after_the_toggle() {
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = app(asking_receiver(dst.path()), vec![]);
    let addr = wait_listening(&mut receiver);
    receiver.get_by_label_contains("Plain (non-Ferry) senders can be neither asked nor encrypted");
    let bytes = data(200_000, 61);
    assert!(!raw_plain_upload(addr, "refused.txt", &bytes));
    run_until(&mut receiver, "the refusal", |app| {
        app.server
            .rows
            .first()
            .is_some_and(|r| r.state.is_finished())
    });
    let RowState::Failed(failure) = &receiver.state().server.rows[0].state else {
        panic!("{:?}", receiver.state().server.rows[0].state);
    };
    assert_eq!(
        failure.kind,
        FailureKind::Refused(Refusal::PlainCannotBeAsked),
        "{failure}"
    );
    receiver.get_by_label_contains("failed: refused: plain senders cannot be asked");
    assert!(
        names_in(dst.path()).is_empty(),
        "{:?}",
        names_in(dst.path())
    );

    // Turned on while listening: the running server accepts plain senders again.
    receiver.get_by_label("Everyone without asking").click();
    receiver.run_steps(1);
    assert_eq!(receiver.state().server.policy, PolicyChoice::Everyone);
    assert_eq!(
        receiver.state().settings().policy(),
        PolicyChoice::Everyone,
        "persisted"
    );
    engine_caught_up(&mut receiver);
    assert!(!raw_plain_upload(addr, "accepted.txt", &bytes));
    run_until(&mut receiver, "the plain upload", |app| {
        app.server.rows.len() == 2 && app.server.rows[1].state.is_finished()
    });
    assert_eq!(receiver.state().server.rows[1].state, RowState::Unverified);
    assert_eq!(
        std::fs::read(dst.path().join("accepted.txt")).unwrap(),
        bytes
    );
}

#[test]
fn the_idle_timeout_is_validated_persisted_and_drops_a_silent_peer() {
    use std::io::{Read, Write};
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = app(settings(dst.path()), vec![]);
    receiver.run_steps(2);
    // Rarely changed, so under "Advanced".
    receiver.get_by_label("Advanced").click();
    receiver.run_steps(2);
    replace_text(&mut receiver, "Idle timeout (seconds)", "0");
    receiver.run_steps(1);
    receiver.get_by_label("Start listening").click();
    receiver.run_steps(2);
    receiver.get_by_label("Idle timeout must be a whole number of seconds from 1 to 86400");
    assert_eq!(receiver.state().server.status, ServerStatus::Stopped);

    replace_text(&mut receiver, "Idle timeout (seconds)", "1");
    receiver.run_steps(1);
    assert_eq!(receiver.state().settings().server_idle_timeout_secs, "1");
    receiver.get_by_label("Start listening").click();
    let addr = wait_listening(&mut receiver);
    // A plain sender that announces a file, sends part of it and goes silent.
    let mut sender = std::net::TcpStream::connect(addr).unwrap();
    sender
        .write_all(&plain_frame(&plain_header("stalled.bin", 1_000_000, "")))
        .unwrap();
    sender.write_all(&data(1000, 62)).unwrap();
    let started = Instant::now();
    run_until(&mut receiver, "the silent peer to be dropped", |app| {
        app.server
            .rows
            .first()
            .is_some_and(|r| r.state.is_finished())
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    receiver.get_by_label("failed: interrupted (peer went silent for 1 s)");
    sender.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(sender.read(&mut byte), Ok(0) | Err(_)));
}

#[test]
fn cancel_on_a_server_row_stops_the_sender_and_keeps_nothing() {
    use ferry::events::{CancelToken, event_channel};
    use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, send_files};
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("slow.bin");
    std::fs::write(&file, data(40 * 1024 * 1024, 63)).unwrap();
    let mut s = settings(dst.path());
    s.server_listening = true;
    let mut receiver = app(s, vec![]);
    let addr = wait_listening(&mut receiver);
    let proxy = Proxy::to(addr)
        .throttle(64 * 1024, Duration::from_millis(5))
        .only_one_connection()
        .start()
        .addr;
    let (outcome_tx, outcome_rx) = crossbeam_channel::bounded(1);
    let sender = std::thread::spawn(move || {
        let (sink, _events) = event_channel(None);
        let outcomes = send_files(
            &SendOptions::new(proxy.to_string()),
            &[OutgoingFile::new(file)],
            &sink,
            &CancelToken::new(),
        );
        let _ = outcome_tx.send(outcomes.unwrap());
    });
    run_until(&mut receiver, "bytes arriving", |app| {
        app.server.rows.first().is_some_and(|r| r.bytes_done > 0)
    });
    receiver.get_by_label("receiving");
    receiver.get_by_label("Cancel").click();
    let clicked = Instant::now();
    run_until(&mut receiver, "the row to end", |app| {
        app.server.rows[0].state.is_finished()
    });
    assert_eq!(
        receiver.state().server.rows[0].state,
        RowState::Cancelled { by_peer: false }
    );
    receiver.get_by_label("cancelled");
    let outcomes = outcome_rx.recv_timeout(DEADLINE).expect("the sender ends");
    assert!(
        matches!(outcomes[..], [FileOutcome::CancelledByPeer { .. }]),
        "{outcomes:?}"
    );
    // Typically some 30 ms; the issue asks for under a second.
    assert!(
        clicked.elapsed() < Duration::from_secs(1),
        "the sender heard of the cancel after {:?}",
        clicked.elapsed()
    );
    sender.join().unwrap();
    // Not even a .part: the engine removes it just after reporting the cancel.
    let dir = dst.path().to_owned();
    run_until(&mut receiver, "an empty download folder", |_| {
        names_in(&dir).is_empty()
    });
}

#[test]
fn retry_on_a_failed_row_resumes_where_the_receiver_stopped() {
    use ferry::events::{Event, TransferEvent};
    const SIZE: usize = 40 * 1024 * 1024;
    const CUT: usize = 10 * 1024 * 1024;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    let bytes = data(SIZE, 64);
    std::fs::write(&file, &bytes).unwrap();
    let (server, events) = start_server(dst.path());
    let RunningProxy {
        addr: proxy,
        forwarded,
        ..
    } = Proxy::to(server.local_addr()).cut_first_after(CUT).start();
    let mut sender = app(settings(src.path()), vec![file]);
    upload_from_client_tab(&mut sender, proxy, "", 1);
    run_until(&mut sender, "the upload to fail", |app| {
        app.client.rows[0].state.is_finished()
    });
    let RowState::Failed(failure) = &sender.state().client.rows[0].state else {
        panic!("{:?}", sender.state().client.rows[0].state);
    };
    assert_eq!(
        failure.kind,
        FailureKind::Interrupted { kept_bytes: None },
        "{failure}"
    );
    let first_id = wait_for(&events, |event| match event {
        Event::Transfer(TransferEvent::Failed { id, failure }) => {
            assert!(
                matches!(
                    failure.kind,
                    FailureKind::Interrupted {
                        kept_bytes: Some(1..)
                    }
                ),
                "{failure}"
            );
            Some(*id)
        }
        _ => None,
    });
    assert_eq!(forwarded.recv_timeout(DEADLINE).unwrap(), CUT);
    let kept = std::fs::metadata(find_part(dst.path(), "big.bin").unwrap_or_default())
        .expect("the interrupted upload's part is kept")
        .len();
    assert!(kept > 0 && kept < SIZE as u64, "{kept}");

    sender.get_by_label_contains("failed: ");
    assert!(sender.query_by_label_contains("failed: failed").is_none());
    sender.get_by_label("Retry").click();
    run_until(&mut sender, "the retried upload to end", |app| {
        app.client.rows[0].state.is_finished()
    });
    assert_eq!(
        sender.state().client.rows.len(),
        1,
        "the same row, sent again"
    );
    assert_eq!(sender.state().client.rows[0].state, RowState::Verified);
    sender.get_by_label("verified");
    assert!(sender.query_by_label("Retry").is_none());
    // The receiver's second transfer started where the part ended.
    let first_progress = wait_for(&events, |event| match event {
        Event::Transfer(TransferEvent::Progress { id, bytes_done }) if *id != first_id => {
            Some(*bytes_done)
        }
        _ => None,
    });
    assert_eq!(first_progress, kept, "resumed at the kept length");
    let (finished, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(finished[0].1, "verified");
    assert_eq!(std::fs::read(dst.path().join("big.bin")).unwrap(), bytes);
    assert_eq!(names_in(dst.path()), ["big.bin"]);
    // On the wire: only the rest of the file (plus framing) went through the second time.
    let second = forwarded.recv_timeout(DEADLINE).unwrap();
    assert!(
        second < SIZE - kept as usize + 1024 * 1024,
        "second connection carried {second} bytes; {} were missing",
        SIZE - kept as usize
    );
}

#[test]
fn a_picked_folder_is_left_out_with_a_notice_and_the_files_are_queued() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    let folder = src.path().join("a folder");
    std::fs::create_dir(&folder).unwrap();
    let mut harness = app(settings(src.path()), vec![file.clone(), folder]);
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Choose files…").click();
    run_until(&mut harness, "the pick to be applied", |app| {
        app.client.notice.is_some()
    });
    assert_eq!(harness.state().client.rows.len(), 1);
    assert_eq!(
        harness.state().client.rows[0].path.as_deref(),
        Some(file.as_path())
    );
    harness.get_by_label_contains("1 item(s) left out");
}
