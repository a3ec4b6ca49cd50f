//! The window at its smallest size and in both themes, after a second fresh-eyes look at the
//! real window: the Client tab's fields and the Devices table fit the tab, what a user
//! watches during a transfer (progress, speed, time left, Cancel) stays in view, the table's
//! header is never scrolled away inside the tab, and the parts that must stand out from the
//! page (a progress bar's empty track, the LocalSend PIN field) do, in light and dark.
//! Colours are read from the shapes the frame painted (kittest renders no pixels here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::epaint::{RectShape, Shape};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, NoPicker, RowState, Settings, Tab, ThemeChoice, TransferRow};
use ferry::events::{Failure, FailureKind, PinProblem, next_transfer_id};

use crate::gui::settings;

/// The smallest inner size the window allows (`app::run`).
const SMALLEST_SIZE: egui::Vec2 = egui::vec2(760.0, 420.0);
/// The Notes panel's default width, open on the right of either tab.
const NOTES_PANEL_WIDTH: f32 = 320.0;
/// Where the tab ends with the Notes panel open, at the smallest size.
const TAB_RIGHT: f32 = SMALLEST_SIZE.x - NOTES_PANEL_WIDTH;

/// A window of the smallest size on `tab`, in `lang` and `theme`, with the Notes panel open
/// and two devices added by address (loopback ones: a favourite is probed when the window
/// starts, and tests reach no host but this one).
fn window(
    download_dir: &Path,
    tab: Tab,
    lang: Lang,
    theme: ThemeChoice,
) -> Harness<'static, FerryApp> {
    let settings = Settings {
        lang: Some(lang),
        theme,
        notes_open: true,
        favourites: vec!["127.0.9.20:8080".into(), "localhost:8080".into()],
        client_msg: "hello there".into(),
        ..settings(download_dir)
    };
    // The harness sets its own theme on the context after the app is built: the same one.
    let egui_theme = match theme {
        ThemeChoice::Dark => egui::Theme::Dark,
        _ => egui::Theme::Light,
    };
    let mut harness = Harness::builder()
        .with_size(SMALLEST_SIZE)
        .with_theme(egui_theme)
        .allow_missing_glyphs()
        .build_eframe(move |cc| FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).unwrap());
    harness.state_mut().tab = tab;
    harness.run_steps(4);
    harness
}

/// Turns the mouse wheel `dy` points over the tab (negative: towards the bottom), as a user
/// scrolls down to the transfers, and lets the scroll settle.
fn wheel(harness: &mut Harness<'static, FerryApp>, dy: f32) {
    harness.hover_at(egui::pos2(200.0, 250.0));
    harness.event(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, dy),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Unknown,
        modifiers: egui::Modifiers::NONE,
    });
    harness.run_steps(20);
}

/// A file being sent, `done` of 1000 bytes.
fn sending_row(name: &str, done: u64) -> TransferRow {
    let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from(name), 1000);
    row.state = RowState::Active;
    row.bytes_done = done;
    row
}

/// The rectangles the last frame painted whose outline is `rect` (within a point).
fn painted_at(harness: &Harness<'_, FerryApp>, rect: egui::Rect) -> Vec<RectShape> {
    let mut found = Vec::new();
    for clipped in &harness.output().shapes {
        let mut shapes = vec![&clipped.shape];
        while let Some(shape) = shapes.pop() {
            match shape {
                Shape::Vec(inner) => shapes.extend(inner.iter()),
                Shape::Rect(r)
                    if (r.rect.min - rect.min).length() <= 1.5
                        && (r.rect.max - rect.max).length() <= 1.5 =>
                {
                    found.push(r.clone())
                }
                _ => {}
            }
        }
    }
    found
}

/// How far apart two colours are, in grey levels (the largest channel difference).
fn contrast(a: egui::Color32, b: egui::Color32) -> u8 {
    let (a, b) = (a.to_array(), b.to_array());
    (0..3).map(|i| a[i].abs_diff(b[i])).max().unwrap_or(0)
}

#[test]
fn the_client_fields_end_within_the_tab_in_both_languages() {
    for (lang, labels) in [
        (Lang::En, ["Destination (host:port)", "Message"]),
        (Lang::ZhCn, ["目标（主机:端口）", "留言"]),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let harness = window(dst.path(), Tab::Client, lang, ThemeChoice::Light);
        for label in labels {
            let rect = harness.get_by_label(label).rect();
            assert!(
                rect.max.x <= TAB_RIGHT && rect.width() >= 100.0,
                "{lang:?}: {label} at {rect:?} runs past the tab's edge {TAB_RIGHT}"
            );
        }
    }
}

#[test]
fn the_devices_last_seen_column_is_in_view_at_the_smallest_size() {
    let dst = tempfile::tempdir().unwrap();
    let harness = window(dst.path(), Tab::Client, Lang::En, ThemeChoice::Light);
    for label in ["Name", "Address", "State", "Last seen"] {
        let rect = harness.get_by_label(label).rect();
        assert!(
            rect.max.x <= TAB_RIGHT,
            "{label} at {rect:?} is past the tab's edge {TAB_RIGHT}"
        );
    }
}

#[test]
fn a_sending_rows_progress_and_cancel_stay_in_view_at_the_smallest_size() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), Tab::Client, Lang::En, ThemeChoice::Light);
    let name = format!("{}.bin", "quarterly-report-final-version-".repeat(3));
    harness
        .state_mut()
        .client
        .rows
        .push(sending_row(&name, 420));
    harness.run_steps(3);
    wheel(&mut harness, -2000.0);
    let cancel = harness.get_by_label("Cancel").rect();
    let bar = harness
        .get_by_role(egui::accesskit::Role::ProgressIndicator)
        .rect();
    for (what, rect) in [("Cancel", cancel), ("the progress bar", bar)] {
        assert!(
            rect.min.x >= 0.0 && rect.max.x <= TAB_RIGHT,
            "{what} at {rect:?} is past the tab's edge {TAB_RIGHT}"
        );
    }
}

#[test]
fn the_tables_header_stays_above_its_rows_when_the_tab_scrolls() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), Tab::Client, Lang::En, ThemeChoice::Light);
    for i in 0..30 {
        let row = sending_row(&format!("row-{i}.bin"), 10);
        harness.state_mut().client.rows.push(row);
    }
    harness.run_steps(3);
    // The wheel down to the last row, then back up to the buttons above the table: the
    // header shows right below them (a table scrolling inside the tab took the wheel first
    // and kept its header scrolled away).
    for _ in 0..4 {
        wheel(&mut harness, -400.0);
    }
    harness.get_by_label("row-29.bin");
    harness.get_by_label("Upload").scroll_to_me();
    harness.run_steps(3);
    let upload = harness.get_by_label("Upload").rect();
    let header = harness.get_by_label("File").rect();
    let first = harness.get_by_label("row-0.bin").rect();
    assert!(
        header.min.y > upload.max.y
            && header.max.y <= SMALLEST_SIZE.y
            && header.max.y < first.min.y,
        "the header at {header:?} is not between Upload at {upload:?} and the first row at {first:?}"
    );
}

#[test]
fn a_progress_bars_empty_track_stands_out_from_the_page_in_both_themes() {
    for theme in [ThemeChoice::Light, ThemeChoice::Dark] {
        let dst = tempfile::tempdir().unwrap();
        let mut harness = window(dst.path(), Tab::Client, Lang::En, theme);
        harness
            .state_mut()
            .client
            .rows
            .push(sending_row("a.bin", 100));
        harness.run_steps(3);
        wheel(&mut harness, -2000.0);
        let bar = harness
            .get_by_role(egui::accesskit::Role::ProgressIndicator)
            .rect();
        let page = harness.ctx.global_style().visuals.panel_fill;
        let track = painted_at(&harness, bar);
        assert!(!track.is_empty(), "{theme:?}: no track painted at {bar:?}");
        assert!(
            track.iter().all(|t| contrast(t.fill, page) >= 16),
            "{theme:?}: the track {:?} is too close to the page {page:?}",
            track.iter().map(|t| t.fill).collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_localsend_pin_field_has_a_visible_border_in_the_dark_theme() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(dst.path(), Tab::Client, Lang::En, ThemeChoice::Dark);
    let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from("photo.jpg"), 10);
    row.state = RowState::Failed(Failure::bare(FailureKind::Pin(PinProblem::Required)));
    harness.state_mut().client.rows.push(row);
    harness.run_steps(3);
    harness
        .get_by_label("PIN for the LocalSend device")
        .scroll_to_me();
    harness.run_steps(3);
    let field = harness.get_by_label("PIN for the LocalSend device").rect();
    let page = harness.ctx.global_style().visuals.panel_fill;
    let frames = painted_at(&harness, field);
    assert!(
        frames
            .iter()
            .any(|f| f.stroke.width >= 1.0 && contrast(f.stroke.color, page) >= 40),
        "no visible border around the PIN field at {field:?}: {frames:?}"
    );
}
