//! A third fresh-eyes look at the real window (review 21): what a hover on a cut cell shows.
//! A row's cells that are cut to their column (a failure's reason, the sender's message) say
//! their whole text on hover once: egui's own "show the elided text" tooltip and Ferry's
//! explicit one both showed, two identical boxes stacked under the pointer.

use std::path::PathBuf;
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, NoPicker, RowState, Settings, Tab, ThemeChoice, TransferRow};
use ferry::events::{Failure, FailureKind, next_transfer_id};

use crate::gui::settings;

/// A reason long enough to be cut in the State column at any window size.
const LONG_REASON: &str = "cannot connect to 127.0.0.1:9999: Connection refused (os error 111), \
                           and then some more words so that the state cell has to cut it";

/// A Client tab in `lang` with the Notes panel closed, `row` in its table, at 1180x720 (the
/// window's first size).
fn client_with(dst: &std::path::Path, lang: Lang, row: TransferRow) -> Harness<'static, FerryApp> {
    let settings = Settings {
        lang: Some(lang),
        theme: ThemeChoice::Light,
        ..settings(dst)
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1180.0, 720.0))
        .allow_missing_glyphs()
        .build_eframe(move |cc| FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).unwrap());
    harness.state_mut().tab = Tab::Client;
    harness.state_mut().client.rows.push(row);
    harness.run_steps(4);
    harness
}

/// Hovers the widget labelled `text` (the cut cell: its accessible label is the whole text)
/// until the tooltip shows, and counts the nodes that say `text`: the cell and its tooltips.
fn nodes_saying_after_hover(harness: &mut Harness<'static, FerryApp>, text: &str) -> usize {
    let cells = harness.get_all_by_label(text).count();
    assert_eq!(
        cells, 1,
        "the cell saying {text:?} is not shown once before the hover"
    );
    harness.get_by_label(text).hover();
    // Tooltips show after egui's hover delay: step the frames (no sleep) until one is up.
    for _ in 0..100 {
        harness.step();
        if harness.get_all_by_label(text).count() > 1 {
            break;
        }
    }
    harness.run_steps(4);
    harness.get_all_by_label(text).count()
}

#[test]
fn a_cut_failure_reason_shows_one_tooltip_in_both_languages() {
    for (lang, kind) in [
        (Lang::En, "failed: cannot connect"),
        (Lang::ZhCn, "失败：无法连接"),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from("a.txt"), 6);
        row.state = RowState::Failed(Failure::new(FailureKind::Unreachable, LONG_REASON));
        let mut harness = client_with(dst.path(), lang, row);
        let state = format!("{kind} ({LONG_REASON})");
        let shown = nodes_saying_after_hover(&mut harness, &state);
        assert_eq!(
            shown,
            2,
            "{lang:?}: hovering the cut state shows {} tooltip(s), not one",
            shown - 1
        );
    }
}

#[test]
fn a_cut_message_shows_one_tooltip() {
    let dst = tempfile::tempdir().unwrap();
    let message =
        "这是一条很长的中文消息，用来测试表格里的文字是否会被截断或者重叠在一起，再多一些字";
    let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from("a.txt"), 6);
    row.state = RowState::Verified;
    row.bytes_done = 6;
    row.msg = message.into();
    let mut harness = client_with(dst.path(), Lang::ZhCn, row);
    let shown = nodes_saying_after_hover(&mut harness, message);
    assert_eq!(
        shown,
        2,
        "hovering the cut message shows {} tooltip(s), not one",
        shown - 1
    );
}
