//! The window as a new user meets it, at the sizes it really opens at: its default size with
//! the Notes panel open, and the smallest size it allows. Each test pins one fix from a
//! fresh-eyes look at the real window (received files out of reach at the smallest size, a
//! long name pushing a row's state out of view, an English-only error in the Chinese UI).
//! Files arrive over real sockets from a plain peer on loopback.

use std::path::Path;
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, NoPicker, PolicyChoice, Settings};

use crate::gui::{listening_addr, run_until, settings};
use crate::util::*;

/// The window's default inner size (`app::run`).
const DEFAULT_SIZE: egui::Vec2 = egui::vec2(1180.0, 720.0);
/// The smallest inner size the window allows (`app::run`).
const SMALLEST_SIZE: egui::Vec2 = egui::vec2(760.0, 420.0);
/// The Notes panel's default width, open on the right of either tab.
const NOTES_PANEL_WIDTH: f32 = 320.0;

/// A window of `size`, listening at once, taking every upload, with the Notes panel open.
fn window(download_dir: &Path, size: egui::Vec2, lang: Lang) -> Harness<'static, FerryApp> {
    let settings = Settings {
        lang: Some(lang),
        server_listening: true,
        accept_policy: Some(PolicyChoice::Everyone),
        notes_open: true,
        ..settings(download_dir)
    };
    let mut harness = Harness::builder()
        .with_size(size)
        // Chinese names: the headless harness has no CJK font (the real window finds one).
        .allow_missing_glyphs()
        .build_eframe(move |cc| FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).unwrap());
    run_until(&mut harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    harness
}

/// Sends `name` as a plain peer and waits for its row to end.
fn receive(harness: &mut Harness<'static, FerryApp>, name: &str) {
    let addr = listening_addr(harness.state()).unwrap();
    plain_upload(addr, &[(name, &data(1000, 7), "")]);
    run_until(harness, "the file to arrive", |app| {
        app.server.rows.iter().any(|r| r.state.is_finished())
    });
}

#[test]
fn at_the_smallest_size_a_received_file_and_the_advanced_settings_are_in_reach() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), SMALLEST_SIZE, Lang::En);
    receive(&mut harness, "report.txt");

    // The row is below the settings, where the window used to cut the tab off: scrolled
    // down to, it is on screen, its Open button too.
    assert!(
        harness.query_by_label("report.txt").is_none(),
        "out of view"
    );
    harness.get_by_label("Clear finished").scroll_to_me();
    harness.run_steps(3);
    for label in ["report.txt", "Open"] {
        let rect = harness.get_by_label(label).rect();
        assert!(
            rect.min.y >= 0.0 && rect.max.y <= SMALLEST_SIZE.y,
            "{label} at {rect:?} is off a window {SMALLEST_SIZE:?}"
        );
    }

    // Advanced opens with a real click where it is drawn once scrolled to.
    assert!(harness.query_by_label("Bind address").is_none());
    harness.get_by_label("Advanced").scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label("Advanced").click();
    harness.run_steps(3);
    harness.get_by_label("Bind address");
}

#[test]
fn a_long_name_leaves_the_state_and_buttons_of_its_row_in_view() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), DEFAULT_SIZE, Lang::En);
    let name = format!("计算机网络实验报告_{}_最终版.docx", "long-part-".repeat(8));
    receive(&mut harness, &name);

    // Still found by its whole name (assistive technology reads all of it)...
    let shown = harness.get_by_label(&name).rect();
    // ...and beside it, within the tab (left of the Notes panel), what became of it.
    let tab_right = DEFAULT_SIZE.x - NOTES_PANEL_WIDTH;
    for label in ["complete (not verified: plain peer)", "Open", "Open folder"] {
        let rect = harness.get_by_label(label).rect();
        assert!(
            rect.min.x < tab_right,
            "{label} starts at x = {} (the name ends at {}), right of the tab's edge {tab_right}",
            rect.min.x,
            shown.max.x
        );
    }
}

#[test]
fn a_notes_port_that_is_no_port_is_said_in_chinese() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), DEFAULT_SIZE, Lang::ZhCn);
    let port = harness.get_by_label("我的便签端口");
    port.focus();
    harness.run_steps(1);
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.get_by_label("我的便签端口").type_text("端口");
    harness.run_steps(1);
    harness.get_by_label("监听").click();
    harness.run_steps(2);
    harness.get_by_label("便签端口必须是 0 到 65535 之间的数字");
}
