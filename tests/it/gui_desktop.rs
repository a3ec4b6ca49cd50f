//! The window as a desktop citizen (issue 15), driven headless by its labels with the real
//! engines on loopback: the in-app picker when the system has no file dialog, the sender's
//! message in the row, notifications (counted through the `Notifier` seam, no daemon), the
//! unseen-notes count, the theme, Copy path and the keyboard shortcuts.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, NotesStatus, Notifier, Picker, RowState, Settings, ThemeChoice};

use crate::gui::{listening_addr, run_until, settings};
use crate::util::*;

/// A system with neither an XDG portal nor zenity: the dialog never shows.
struct NoDialog;

impl Picker for NoDialog {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        panic!("the system dialog must not be called when none is available")
    }
    fn pick_folder(&self, _start: &Path) -> Option<PathBuf> {
        panic!("the system dialog must not be called when none is available")
    }
    fn system_dialog_available(&self) -> bool {
        false
    }
}

/// Counts notifications instead of showing them (with the file an "Open" action would open).
#[derive(Default)]
struct Counting(Mutex<Vec<(String, String)>>, Mutex<Vec<PathBuf>>);

impl Notifier for Counting {
    fn notify(&self, summary: &str, body: &str) {
        self.0
            .lock()
            .unwrap()
            .push((summary.to_owned(), body.to_owned()));
    }
    fn notify_file(&self, summary: &str, body: &str, file: &Path, open_label: &str) {
        assert_eq!(open_label, "Open");
        self.notify(summary, body);
        self.1.lock().unwrap().push(file.to_owned());
    }
}

impl Counting {
    fn shown(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
    fn openable(&self) -> Vec<PathBuf> {
        self.1.lock().unwrap().clone()
    }
}

fn app(settings: Settings, notifier: Arc<Counting>) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoDialog))
                .unwrap()
                .with_notifier(notifier)
        })
}

/// What the window system reports when the user is in another window.
fn set_focused(harness: &mut Harness<'_, FerryApp>, focused: bool) {
    harness.input_mut().focused = focused;
}

fn wait_listening(harness: &mut Harness<'_, FerryApp>) -> std::net::SocketAddr {
    harness.get_by_label("Start listening").click();
    run_until(harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    listening_addr(harness.state()).unwrap()
}

fn type_into(harness: &mut Harness<'_, FerryApp>, label: &str, text: &str) {
    harness.get_by_label(label).click();
    harness.run_steps(1);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label(label).type_text(text);
    harness.run_steps(1);
}

/// Runs frames until the in-app picker has read every folder asked for (it reads them in the
/// background) and `done` holds.
fn picker_settled(
    harness: &mut Harness<'_, FerryApp>,
    what: &str,
    mut done: impl FnMut(&FerryApp) -> bool,
) {
    run_until(harness, what, |app| !app.browser.is_reading() && done(app));
}

#[test]
fn without_a_system_dialog_the_in_app_picker_chooses_a_file_that_uploads_verified() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let bytes = data(200_000, 77);
    std::fs::write(src.path().join("report.txt"), &bytes).unwrap();
    std::fs::create_dir(src.path().join("more")).unwrap();
    let mut harness = app(settings(dst.path()), Arc::default());
    harness.run_steps(2);
    let addr = wait_listening(&mut harness);

    harness.get_by_label("Client").click();
    harness.run_steps(2);
    type_into(&mut harness, "Destination (host:port)", &addr.to_string());
    harness.get_by_label("Choose files…").click();
    picker_settled(&mut harness, "the picker's first listing", |app| {
        app.browser.is_open()
    });
    // It says why, and offers its own picker.
    harness.get_by_label_contains("No system file dialog was found");

    // Tab completes a typed path (once its folder is listed); Enter goes there.
    let src_text = src.path().display().to_string();
    type_into(&mut harness, "Path", &format!("{src_text}/mo"));
    harness.key_press(Key::Tab);
    picker_settled(&mut harness, "Tab to complete the path", |app| {
        app.browser.path_field == format!("{src_text}/more/")
    });
    harness.key_press(Key::Enter);
    picker_settled(&mut harness, "the typed folder to be shown", |app| {
        app.browser.dir == src.path().join("more")
    });
    harness.get_by_label("This folder is empty.");

    // Up, then pick the file from the listing.
    harness.get_by_label("Up").click();
    picker_settled(&mut harness, "the folder above to be shown", |app| {
        app.browser.dir == src.path()
    });
    harness.get_by_label("more/");
    // A file's size beside its name, as a file dialog shows it.
    harness.get_by_label("195.3 KiB");
    harness.get_by_label("report.txt").click();
    harness.run_steps(2);
    harness.get_by_label("1 selected");
    harness.get_by_label("Add selected").click();
    run_until(&mut harness, "the chosen file in the queue", |app| {
        app.client.rows.len() == 1
    });
    assert!(
        !harness.state().browser.is_open(),
        "closed after the choice"
    );

    // Ctrl+Enter uploads.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    run_until(&mut harness, "the upload to finish", |app| {
        app.client.rows[0].state.is_finished()
            && app
                .server
                .rows
                .first()
                .is_some_and(|r| r.state.is_finished())
    });
    assert_eq!(harness.state().client.rows[0].state, RowState::Verified);
    assert_eq!(harness.state().server.rows[0].state, RowState::Verified);
    assert_eq!(std::fs::read(dst.path().join("report.txt")).unwrap(), bytes);
}

#[test]
fn the_in_app_picker_chooses_the_download_folder() {
    let dst = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("inbox")).unwrap();
    let mut harness = app(settings(dst.path()), Arc::default());
    harness.run_steps(2);
    harness.get_by_label("Choose folder…").click();
    picker_settled(&mut harness, "the picker's first listing", |app| {
        app.browser.is_open()
    });
    harness.get_by_label("Choose a folder");
    type_into(&mut harness, "Path", &other.path().display().to_string());
    harness.get_by_label("Go").click();
    picker_settled(&mut harness, "the typed folder to be shown", |app| {
        app.browser.dir == other.path()
    });
    harness.get_by_label("inbox/").click();
    picker_settled(&mut harness, "the clicked folder to be shown", |app| {
        app.browser.dir == other.path().join("inbox")
    });
    harness.get_by_label("Use this folder").click();
    harness.run_steps(2);
    assert_eq!(harness.state().server.dir, other.path().join("inbox"));
    assert_eq!(
        harness.state().settings().download_dir,
        other.path().join("inbox")
    );
}

#[test]
fn a_file_finished_in_the_background_is_notified_with_its_sender_and_message_in_the_row() {
    let dst = tempfile::tempdir().unwrap();
    let notifier = Arc::new(Counting::default());
    let mut harness = app(settings(dst.path()), Arc::clone(&notifier));
    harness.run_steps(2);
    let addr = wait_listening(&mut harness);
    set_focused(&mut harness, false);

    let msg = "for the review\u{1b}[2J\nsecond line";
    plain_upload(addr, &[("minutes.txt", b"hello", msg)]);
    run_until(&mut harness, "the upload to arrive", |app| {
        app.server
            .rows
            .first()
            .is_some_and(|r| r.state.is_finished())
    });
    // The message is in the row, on one line, with no control characters.
    let shown = harness.state().server.rows[0].msg.clone();
    assert!(
        shown.starts_with("for the review") && shown.contains("second line"),
        "{shown:?}"
    );
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    harness.get_by_label(&shown);

    let shown = notifier.shown();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].0, "Received minutes.txt");
    assert!(shown[0].1.starts_with("from 127.0.0.1:"), "{shown:?}");
    assert!(shown[0].1.contains("for the review"), "{shown:?}");
    assert_eq!(notifier.openable(), [dst.path().join("minutes.txt")]);

    // In the foreground: no notification.
    set_focused(&mut harness, true);
    harness.run_steps(2);
    plain_upload(addr, &[("second.txt", b"again", "")]);
    run_until(&mut harness, "the second upload", |app| {
        app.server.rows.len() == 2 && app.server.rows[1].state.is_finished()
    });
    assert_eq!(notifier.shown().len(), 1);

    // A received file can be opened, its folder opened, and its path copied (right-click on
    // its name).
    harness.get_by_label("minutes.txt").click_secondary();
    harness.run_steps(2);
    harness.get_by_label("Copy path").click();
    harness.step();
    let copied: Vec<String> = harness
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        copied,
        [dst.path().join("minutes.txt").display().to_string()]
    );
    assert_eq!(harness.query_all_by_label("Open").count(), 2);
}

/// A window with its Notes panel closed, listening for notes, in the background: it and the
/// address its notes go to.
fn notes_in_the_background(
    dir: &Path,
    notifier: &Arc<Counting>,
) -> (Harness<'static, FerryApp>, std::net::SocketAddr) {
    notes_in_the_background_with(settings(dir), notifier)
}

/// [`notes_in_the_background`] with other `settings`.
fn notes_in_the_background_with(
    settings: Settings,
    notifier: &Arc<Counting>,
) -> (Harness<'static, FerryApp>, std::net::SocketAddr) {
    let mut harness = app(
        Settings {
            notes_open: false,
            ..settings
        },
        Arc::clone(notifier),
    );
    run_until(&mut harness, "the notes socket", |app| {
        matches!(app.notes.status, NotesStatus::Listening(_))
    });
    let NotesStatus::Listening(notes_addr) = harness.state().notes.status else {
        unreachable!()
    };
    set_focused(&mut harness, false);
    (harness, notes_addr)
}

#[test]
fn notes_arriving_while_the_panel_is_closed_are_counted_and_notified_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Arc::new(Counting::default());
    let (mut harness, notes_addr) = notes_in_the_background(dir.path(), &notifier);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", notes_addr.port());
    peer.send_to(b"lunch?", to).unwrap();
    peer.send_to(b"at noon", to).unwrap();
    run_until(&mut harness, "two notes", |app| {
        app.notes.history.len() == 2
    });
    harness.get_by_label("Notes (2)");
    let shown = notifier.shown();
    assert_eq!(shown.len(), 2);
    assert_eq!(
        shown[0],
        (
            format!("Note from {}", peer.local_addr().unwrap()),
            "lunch?".to_owned()
        )
    );

    // Opening the panel clears the count.
    harness.get_by_label("Notes (2)").click();
    harness.run_steps(2);
    assert_eq!(harness.state().unseen_notes, 0);
    assert!(harness.query_by_label("Notes (2)").is_none());
    harness.get_by_label("lunch?");

    // Turned off (and remembered): no more notifications.
    harness.get_by_label("Notify me").click();
    harness.run_steps(2);
    assert!(!harness.state().settings().notifications);
    peer.send_to(b"still there?", to).unwrap();
    run_until(&mut harness, "the third note", |app| {
        app.notes.history.len() == 3
    });
    assert_eq!(notifier.shown().len(), 2);
}

/// Anyone on the LAN may send notes as fast as it likes: a flood of them while the window is
/// in the background is a few notifications, not one each (each was a notification on the
/// desktop and a thread talking to its service); the notes themselves are all counted.
#[test]
fn a_flood_of_notes_is_a_few_notifications_not_one_each() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Arc::new(Counting::default());
    let (mut harness, notes_addr) = notes_in_the_background(dir.path(), &notifier);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..100 {
        peer.send_to(
            format!("spam {i}").as_bytes(),
            ("127.0.0.1", notes_addr.port()),
        )
        .unwrap();
        // Paced so that none is dropped on the way (the flood's own limit is tested elsewhere).
        if i % 10 == 9 {
            harness.run_steps(1);
        }
    }
    run_until(&mut harness, "a hundred notes", |app| {
        app.unseen_notes + app.notes.dropped as usize >= 100
    });
    let shown = notifier.shown().len();
    assert!((1..=3).contains(&shown), "{shown} notifications");
}

#[test]
fn ctrl_l_puts_the_cursor_in_the_note_box() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(
        Settings {
            notes_open: false,
            ..settings(dir.path())
        },
        Arc::default(),
    );
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::L);
    harness.run_steps(2);
    assert!(harness.state().notes_open);
    harness.event(egui::Event::Text("on my way".into()));
    harness.run_steps(2);
    assert_eq!(harness.state().notes.draft, "on my way");
}

#[test]
fn the_theme_can_be_chosen_and_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), Arc::default());
    harness.run_steps(2);
    harness.get_by_label("Theme").click();
    harness.run_steps(2);
    harness.get_by_label("Dark").click();
    harness.run_steps(2);
    assert_eq!(harness.state().settings().theme, ThemeChoice::Dark);
    assert_eq!(harness.ctx.theme(), egui::Theme::Dark);
    harness.get_by_label("Theme").click();
    harness.run_steps(2);
    harness.get_by_label("Light").click();
    harness.run_steps(2);
    assert_eq!(harness.ctx.theme(), egui::Theme::Light);
}

#[test]
fn the_server_tab_leads_with_everyday_controls_and_a_first_start_listens() {
    let dir = tempfile::tempdir().unwrap();
    let first_start = Settings {
        // Everything a first start has, but discovery: that would make a device identity in
        // the machine's real config folder (tests/it/gui_devices.rs covers discovery).
        discovery: false,
        server_bind: "127.0.0.1".into(),
        server_port: "0".into(),
        download_dir: dir.path().to_owned(),
        notes_port: "0".into(),
        lang: Some(ferry::app::i18n::Lang::En),
        // LocalSend would take its real port and keep a certificate in the real config
        // folder (tests/it/gui_localsend.rs covers it, on port 0).
        localsend: false,
        ..Settings::default()
    };
    let mut harness = app(first_start, Arc::default());
    run_until(&mut harness, "the server to listen by itself", |app| {
        listening_addr(app).is_some()
    });
    harness.get_by_label_contains("Ferry receives files while this window is open");
    harness.get_by_label("Stop listening");
    harness.get_by_label("This device");
    harness.get_by_label("Trusted devices without asking");
    assert_eq!(
        harness.state().server.policy,
        ferry::app::PolicyChoice::Trusted,
        "the default for new settings"
    );
    assert!(
        harness.query_by_label("Idle timeout (seconds)").is_none(),
        "under Advanced, folded"
    );
    harness.get_by_label("Advanced").click();
    harness.run_steps(2);
    harness.get_by_label("Idle timeout (seconds)");
    harness.get_by_label("Bind address");
}

/// A system dialog that seems present but returns nothing at once (rfd with no portal
/// answering and no zenity): afterwards it knows it has none.
#[derive(Default)]
struct VanishingDialog {
    tried: std::sync::atomic::AtomicBool,
}

impl Picker for VanishingDialog {
    fn pick_files(&self) -> Option<Vec<PathBuf>> {
        self.tried.store(true, std::sync::atomic::Ordering::SeqCst);
        None
    }
    fn pick_folder(&self, _start: &Path) -> Option<PathBuf> {
        None
    }
    fn system_dialog_available(&self) -> bool {
        !self.tried.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_dialog_that_returns_nothing_at_once_gives_way_to_the_in_app_picker() {
    let dir = tempfile::tempdir().unwrap();
    let picker = Arc::new(VanishingDialog::default());
    let settings = settings(dir.path());
    let mut harness = Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .build_eframe({
            let picker = Arc::clone(&picker);
            move |cc| FerryApp::new(&cc.egui_ctx, settings, picker).unwrap()
        });
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Choose files…").click();
    picker_settled(&mut harness, "the in-app picker", |app| {
        app.browser.is_open()
    });
    assert!(picker.tried.load(std::sync::atomic::Ordering::SeqCst));
    harness.get_by_label_contains("No system file dialog was found");
    harness.get_by_label("Close").click();
    harness.run_steps(2);
    assert!(!harness.state().browser.is_open());
}

/// Sends ten notes to the window's `notes_addr` (more than its notification budget) and
/// waits until it has counted them.
fn ten_notes(harness: &mut Harness<'_, FerryApp>, notes_addr: std::net::SocketAddr) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10 {
        let note = format!("spam {i}");
        peer.send_to(note.as_bytes(), ("127.0.0.1", notes_addr.port()))
            .unwrap();
    }
    run_until(harness, "ten notes", |app| {
        app.unseen_notes + app.notes.dropped as usize >= 10
    });
}

/// Notes cost a stranger nothing (one datagram, any source address), files a TCP upload: a
/// flood of notes must not use up the notifications of the files that arrive meanwhile, or
/// anyone on the LAN could keep every received file from being announced.
#[test]
fn a_flood_of_notes_does_not_silence_a_received_file() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Arc::new(Counting::default());
    let (mut harness, notes_addr) = notes_in_the_background(dir.path(), &notifier);
    let addr = wait_listening(&mut harness);
    set_focused(&mut harness, false);
    ten_notes(&mut harness, notes_addr);
    plain_upload(addr, &[("report.txt", b"hello", "")]);
    run_until(&mut harness, "the upload to arrive", |app| {
        app.server
            .rows
            .first()
            .is_some_and(|r| r.state.is_finished())
    });
    let shown = notifier.shown();
    assert!(
        shown
            .iter()
            .any(|(summary, _)| summary == "Received report.txt"),
        "{shown:?}"
    );
}

/// A sender waiting for the user's answer is the notification that matters most: with the
/// window in the background (and after a flood of notes), the offer is announced with the
/// file's name and its sender.
#[test]
fn an_offer_waiting_in_the_background_is_notified_even_after_a_flood_of_notes() {
    let (dl, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let notifier = Arc::new(Counting::default());
    let asking = Settings {
        accept_policy: Some(ferry::app::PolicyChoice::Ask),
        ..settings(dl.path())
    };
    let (mut harness, notes_addr) = notes_in_the_background_with(asking, &notifier);
    let addr = wait_listening(&mut harness);
    set_focused(&mut harness, false);
    ten_notes(&mut harness, notes_addr);
    let file = src.path().join("contract.pdf");
    std::fs::write(&file, b"terms").unwrap();
    let sender =
        std::thread::spawn(move || send_quietly(addr, &[ferry::transfer::OutgoingFile::new(file)]));
    run_until(&mut harness, "the offer", |app| {
        !app.server.offers.pending.is_empty()
    });
    let shown = notifier.shown();
    let offer = shown
        .iter()
        .find(|(summary, _)| summary.contains("contract.pdf"))
        .unwrap_or_else(|| panic!("no notification of the offer: {shown:?}"));
    assert!(offer.0.starts_with("Waiting for your answer"), "{offer:?}");
    assert!(offer.1.starts_with("from 127.0.0.1:"), "{offer:?}");
    // The sender is let go: the window (and its server) goes away.
    drop(harness);
    sender.join().unwrap();
}
