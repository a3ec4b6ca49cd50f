//! The transfer table both tabs draw: name, state, progress (with the speed and time left
//! beneath the bar), actions, size, peer, the sender's message. What a user watches during a
//! transfer comes first and the name column gives way to it in a narrow window.

use egui::{ProgressBar, RichText, Ui};

use super::folder_rows::first_failure;
use super::i18n::{T, Tr};
use super::model::{RowState, TransferRow, format_bytes, format_eta};
use super::palette;
use super::row_text::{failure_text, file_state, folder_state};
use crate::events::{Direction, TransferId};
use crate::protocol::escape_line;

/// Room for the usual states on one line; longer ones (failure reasons) are cut at
/// [`STATE_COLUMN_MAX_WIDTH`], or narrower down to this where the window has less room (so
/// the buttons beside stay in view), and shown whole on hover.
const STATE_COLUMN_WIDTH: f32 = 120.0;
const STATE_COLUMN_MAX_WIDTH: f32 = 220.0;
/// The sender's message is cut to one line this wide; the whole text shows on hover.
const MESSAGE_COLUMN_WIDTH: f32 = 120.0;
/// A long name is cut to one line this wide (the whole name shows on hover), so that the
/// size, progress and state stay in view beside it at the window's default size...
const NAME_COLUMN_WIDTH: f32 = 240.0;
/// ...and narrower in a narrow window, down to this, so that the state, the progress, its
/// speed and time left, and the buttons stay in view.
const MIN_NAME_COLUMN_WIDTH: f32 = 80.0;
/// The width of the progress bar (the speed and time left go beneath it).
const PROGRESS_WIDTH: f32 = 110.0;
/// Room for the widest set of buttons (Cancel, or Open and Open folder, or Retry and Remove,
/// in English).
const BUTTONS_WIDTH: f32 = 130.0;
/// Room for a size ("123.4 MiB", "2 files, 1.2 GiB" is wider and may scroll).
const SIZE_WIDTH: f32 = 70.0;
/// Room for the peer: its address, and beneath it whether encrypted and with whom.
const PEER_WIDTH: f32 = 150.0;
/// Room the name leaves for the columns to its right that every row uses: the state,
/// progress, buttons, size and peer (the sender's message may scroll sideways).
const AFTER_NAME_WIDTH: f32 = STATE_COLUMN_WIDTH
    + PROGRESS_WIDTH
    + BUTTONS_WIDTH
    + SIZE_WIDTH
    + PEER_WIDTH
    + 5.0 * COLUMN_SPACING;

/// Room between two rows of the table.
const ROW_SPACING: f32 = 6.0;
/// Room between two columns of the table.
const COLUMN_SPACING: f32 = 12.0;

/// What a click in the table asks for; applied by the tab after drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAction {
    OpenFolder(TransferId),
    /// Open the received file itself with the desktop's default application.
    Open(TransferId),
    CopyPath(TransferId),
    Cancel(TransferId),
    Remove(TransferId),
    /// Send a failed or cancelled upload again (a Ferry receiver resumes it).
    Retry(TransferId),
    /// Show or hide a folder row's files.
    Toggle(TransferId),
}

/// Draws `rows`; `direction` picks the verbs (receiving vs sending) and the buttons.
#[must_use]
pub fn transfer_table_ui(
    ui: &mut Ui,
    tr: Tr,
    rows: &[TransferRow],
    direction: Direction,
) -> Option<RowAction> {
    let mut action = None;
    // The name gives way first in a narrow window.
    let name_width =
        (ui.available_width() - AFTER_NAME_WIDTH).clamp(MIN_NAME_COLUMN_WIDTH, NAME_COLUMN_WIDTH);
    // Then a long state (a failure's reason) is cut to what is left beside the progress and
    // the buttons, so that it cannot push the buttons out of view.
    let widths = Widths {
        name: name_width,
        state: (ui.available_width() - name_width - AFTER_NAME_WIDTH + STATE_COLUMN_WIDTH)
            .clamp(STATE_COLUMN_WIDTH, STATE_COLUMN_MAX_WIDTH),
    };
    // Sideways only: a narrow window scrolls to the columns on the right. Up and down, the
    // tab itself scrolls (a table scrolling inside it could hide its own header).
    egui::ScrollArea::horizontal()
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new(("transfers", direction == Direction::Incoming))
                .striped(true)
                .num_columns(7)
                .spacing([COLUMN_SPACING, ROW_SPACING])
                .show(ui, |ui| {
                    // The state and the buttons come right after the name, so they stay in
                    // view in the window's default and smallest sizes (the rest scrolls).
                    let header = |ui: &mut Ui, col: Option<T>| {
                        let text = col.map_or("", |col| tr.get(col));
                        ui.label(RichText::new(text).strong());
                    };
                    for col in [
                        Some(T::ColFile),
                        Some(T::ColState),
                        Some(T::ColProgress),
                        None,
                        Some(T::ColSize),
                        Some(T::ColPeer),
                        Some(T::ColMessage),
                    ] {
                        header(ui, col);
                    }
                    ui.end_row();
                    for row in rows {
                        if let Some(a) = row_or_room(ui, tr, row, direction, false, widths) {
                            action = Some(a);
                        }
                        // An expanded folder's files, beneath it.
                        let group = row.folder.as_ref().filter(|g| g.expanded);
                        for child in group.iter().flat_map(|g| g.children.iter()) {
                            if let Some(a) = row_or_room(ui, tr, child, direction, true, widths) {
                                action = Some(a);
                            }
                        }
                    }
                });
            // Room for the floating sideways scroll bar below the last row, which it would
            // otherwise lie over (and take the clicks meant for that row's buttons).
            let bar = ui.spacing().scroll;
            ui.add_space(bar.bar_inner_margin + bar.bar_width + bar.bar_outer_margin);
        });
    action
}

/// How wide the name and the state may be in this window.
#[derive(Debug, Clone, Copy)]
struct Widths {
    name: f32,
    state: f32,
}

/// One row where it can be seen; elsewhere (scrolled out of view) only the room it takes,
/// so a long history or a large folder costs a frame only the rows on screen. Ends the row.
fn row_or_room(
    ui: &mut Ui,
    tr: Tr,
    row: &TransferRow,
    direction: Direction,
    child: bool,
    widths: Widths,
) -> Option<RowAction> {
    // Until a row is drawn, it is as tall as its buttons and progress bar and its name takes
    // no width; then it takes the room it was drawn in (a folder's skipped names make it
    // taller), so that out of view it keeps its room: the rows below it stay where they
    // were, and its name still widens the first column, which does not change with the
    // scroll.
    let memory = room_id(direction, row.id);
    let remembered = ui.data(|d| d.get_temp::<egui::Vec2>(memory));
    let room = remembered.unwrap_or(egui::vec2(0.0, ui.spacing().interact_size.y));
    // A window made narrower since: the name column is narrower too.
    let room = egui::vec2(room.x.min(widths.name), room.y);
    let top = ui.cursor().min.y;
    // Only the vertical extent counts: a narrow table scrolled sideways (its first column out
    // of view) still shows its rows, and so does the grid's first, invisible sizing pass.
    let clip = ui.clip_rect();
    if top <= clip.max.y && top + room.y >= clip.min.y {
        let (action, drawn_width) = row_ui(ui, tr, row, direction, child, widths);
        ui.end_row();
        let drawn = egui::vec2(drawn_width, ui.cursor().min.y - top - ROW_SPACING);
        if remembered.is_none_or(|r| (r - drawn).length() > 0.5) {
            ui.data_mut(|d| d.insert_temp(memory, drawn));
        }
        action
    } else {
        ui.allocate_space(room);
        ui.end_row();
        None
    }
}

/// Where the room a row took when drawn is kept (see [`row_or_room`]): one entry per row
/// drawn, until [`remove_rows`].
fn room_id(direction: Direction, id: TransferId) -> egui::Id {
    egui::Id::unique(("row room", direction == Direction::Incoming, id))
}

/// Takes the rows for which `leaves` holds out of a table, forgetting what [`row_or_room`]
/// remembered of them and of their folders' files: a window that runs for weeks and clears
/// its history now and then keeps nothing of the rows it cleared.
pub fn remove_rows(
    ctx: &egui::Context,
    direction: Direction,
    rows: &mut Vec<TransferRow>,
    leaves: impl Fn(&TransferRow) -> bool,
) {
    ctx.data_mut(|d| {
        for row in rows.iter().filter(|r| leaves(r)) {
            let files = row.folder.iter().flat_map(|g| g.children.iter());
            for row in std::iter::once(row).chain(files) {
                d.remove_temp::<egui::Vec2>(room_id(direction, row.id));
            }
        }
    });
    rows.retain(|r| !leaves(r));
}

/// One row; `child` for a folder's file (indented, no Retry or Remove of its own). Returns
/// the click and the width of the row's first cell (its name).
fn row_ui(
    ui: &mut Ui,
    tr: Tr,
    row: &TransferRow,
    direction: Direction,
    child: bool,
    widths: Widths,
) -> (Option<RowAction>, f32) {
    let shown_name = match (&row.folder, child) {
        // A folder's file: its path inside the folder.
        (_, true) => &row.name,
        (Some(_), false) => &format!("{}/", row.name),
        (None, false) => row.saved_as.as_deref().unwrap_or(&row.name),
    };
    let mut action = None;
    // Renamed on arrival: the hover says both names (below) instead of only the cut one.
    let renamed = row.saved_as.is_some() && row.folder.is_none() && !child;
    let name_cell = ui.vertical(|ui| {
        ui.set_max_width(widths.name);
        let name = ui.horizontal(|ui| {
            if child {
                ui.add_space(18.0);
            }
            let label = egui::Label::new(shown_name)
                .sense(egui::Sense::click())
                .truncate()
                .show_tooltip_when_elided(!renamed);
            ui.add(label)
        });
        if let Some(group) = row.folder.as_ref().filter(|g| !g.skipped.is_empty()) {
            let skipped = escape_line(&group.skipped.join(", ")).into_owned();
            let text = tr.fill(T::FolderSkipped, &[&skipped]);
            ui.label(RichText::new(text).small().color(palette::WARN));
        }
        name.inner
    });
    let name_width = name_cell.response.rect.width();
    let mut name = name_cell.inner;
    if renamed {
        let mut tip = row.name.clone();
        tip.push_str(" → ");
        tip.push_str(&tr.fill(T::SavedAs, &[&shown_name]));
        name = name.on_hover_text(tip);
    }
    if direction == Direction::Incoming && row.path.is_some() {
        // Room in the row is short: Copy path is on the name's context menu (right-click).
        name.context_menu(|ui| {
            if ui.button(tr.get(T::CopyPath)).clicked() {
                action = Some(RowAction::CopyPath(row.id));
                ui.close();
            }
        });
    }
    // What became of it first, then how far (a long name or a narrow window cannot push
    // these out of view), the buttons, the figures, then the peer and its message.
    state_ui(ui, tr, row, direction, widths.state);
    progress_ui(ui, tr, row);
    ui.horizontal(|ui| {
        let mut button = |text: T, clicked: RowAction| {
            if ui.small_button(tr.get(text)).clicked() {
                action = Some(clicked);
            }
        };
        if let Some(group) = &row.folder {
            let text = if group.expanded {
                T::HideFiles
            } else {
                T::ShowFiles
            };
            button(text, RowAction::Toggle(row.id));
        }
        match (&row.state, direction) {
            // Either side can stop a transfer; the other side is told.
            (RowState::Active, _) => button(T::Cancel, RowAction::Cancel(row.id)),
            // A folder's file goes (and is sent again) with its folder.
            (_, Direction::Outgoing) if child => {}
            (RowState::Verified | RowState::Unverified, Direction::Incoming) => {
                button(T::Open, RowAction::Open(row.id));
                button(T::OpenFolder, RowAction::OpenFolder(row.id));
            }
            (_, Direction::Incoming) => {}
            (_, Direction::Outgoing) => {
                if row.retryable() {
                    button(T::Retry, RowAction::Retry(row.id));
                }
                button(T::Remove, RowAction::Remove(row.id));
            }
        }
    });
    match &row.folder {
        Some(group) => {
            let size = format_bytes(row.bytes_total as f64);
            ui.label(tr.fill(T::FolderSize, &[&size, &group.children.len()]))
        }
        None => ui.label(format_bytes(row.bytes_total as f64)),
    };
    // Who is on the other end: the address, and beneath it encrypted with which device or
    // not (one above the other, so the column stays narrow enough to be seen beside the
    // Notes panel).
    ui.vertical(|ui| {
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Extend);
        ui.label(row.peer.map(|p| p.to_string()).unwrap_or_default());
        if let Some(security) = &row.security {
            super::notes_panel::security_mark(ui, security, tr);
        }
    });
    // The message was escaped to one line as it arrived (display.rs); cut at the column.
    ui.horizontal(|ui| {
        ui.set_max_width(MESSAGE_COLUMN_WIDTH);
        // The hover below says it whole: egui's own tooltip for a cut label would be a second.
        let label = egui::Label::new(&row.msg)
            .truncate()
            .show_tooltip_when_elided(false);
        let message = ui.add(label);
        if !row.msg.is_empty() {
            message.on_hover_text(&row.msg);
        }
    });
    (action, name_width)
}

/// The progress bar and, beneath it while the row moves, its speed and time left: in one
/// column, so a narrow window shows them with the bar. A row that ended before it started
/// has none: its state says what happened.
fn progress_ui(ui: &mut Ui, tr: Tr, row: &TransferRow) {
    ui.vertical(|ui| {
        if row.never_started() {
            return;
        }
        let bar = ProgressBar::new(row.fraction())
            .desired_width(PROGRESS_WIDTH)
            .show_percentage();
        palette::progress_bar(ui, bar);
        let speed = row.speed().map(|s| format!("{}/s", format_bytes(s)));
        let eta = row.eta().map(format_eta);
        if speed.is_some() || eta.is_some() {
            ui.horizontal(|ui| {
                ui.spacing_mut().item_spacing.x = 8.0;
                if let Some(speed) = speed {
                    ui.label(RichText::new(speed).small());
                }
                if let Some(eta) = eta {
                    ui.label(RichText::new(tr.fill(T::EtaLeft, &[&eta])).small());
                }
            });
        }
    });
}

fn state_ui(ui: &mut Ui, tr: Tr, row: &TransferRow, direction: Direction, max_width: f32) {
    let (text, color) = match folder_state(tr, row, direction) {
        Some(folder) => folder,
        None => file_state(tr, row, direction),
    };
    let rich = match color {
        Some(color) => RichText::new(&text).color(color),
        None => RichText::new(&text),
    };
    // States stay on one line; a long failure reason is cut, and shown whole on hover.
    ui.horizontal(|ui| {
        ui.set_min_width(STATE_COLUMN_WIDTH);
        ui.set_max_width(max_width);
        let failed = matches!(row.state, RowState::Failed(_));
        let first = match (&row.folder, failed) {
            (Some(group), true) => first_failure(group),
            _ => None,
        };
        // A file's failure is said whole by the hover below: egui's own tooltip for a cut
        // label would show the same text a second time. A folder's hover says something else
        // (its first file's failure), so there the cut state keeps egui's tooltip too.
        let label = egui::Label::new(rich)
            .truncate()
            .show_tooltip_when_elided(!failed || first.is_some());
        let response = ui.add(label);
        if failed {
            match first {
                Some(first) => response.on_hover_text(failure_text(tr, first)),
                None => response.on_hover_text(text),
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    use egui_kittest::{Harness, kittest::Queryable};

    use crate::app::i18n::Lang;
    use crate::events::next_transfer_id;
    use crate::protocol::Mode;

    /// The table in a view scrolled `offset` points down.
    struct View {
        rows: Vec<TransferRow>,
        offset: f32,
    }

    fn view(rows: Vec<TransferRow>) -> Harness<'static, View> {
        let mut harness = Harness::builder()
            .with_size(egui::vec2(1400.0, 300.0))
            .build_ui_state(
                |ui, view: &mut View| {
                    egui::ScrollArea::vertical()
                        .max_height(200.0)
                        .vertical_scroll_offset(view.offset)
                        .show(ui, |ui| {
                            let rows = &view.rows;
                            let _ = transfer_table_ui(ui, Tr(Lang::En), rows, Direction::Incoming);
                        });
                },
                View { rows, offset: 0.0 },
            );
        harness.run_steps(4);
        harness
    }

    /// Rows named `row-{i}.bin`, from 127.0.0.1 port 1000 + i.
    fn rows(count: u16) -> Vec<TransferRow> {
        (0..count)
            .map(|i| {
                let path = PathBuf::from(format!("row-{i}.bin"));
                let mut row = TransferRow::queued(next_transfer_id(), path, 10);
                row.peer = Some(([127, 0, 0, 1], 1000 + i).into());
                row
            })
            .collect()
    }

    /// Scrolled a point at a time past a row taller than the others (a folder's skipped
    /// names), the rows below it move with the scroll and nothing else: out of view, a row
    /// keeps the room it took drawn, and it is drawn while any of it is in view.
    #[test]
    fn rows_below_a_tall_row_move_with_the_scroll_alone() {
        let peer = ([127, 0, 0, 1], 1).into();
        let mut tall = TransferRow::incoming_folder("photos", peer, Mode::Ferry);
        if let Some(group) = tall.folder.as_mut() {
            group.skipped = vec!["a link out of the folder".into()];
        }
        let mut table = vec![tall];
        table.extend(rows(40));
        let mut harness = view(table);
        let skipped = "skipped: a link out of the folder";
        assert!(harness.query_by_label_contains(skipped).is_some());
        let y = |h: &Harness<'_, View>| h.get_by_label("row-0.bin").rect().min.y;
        let base = y(&harness);
        for offset in 1..=60 {
            harness.state_mut().offset = offset as f32;
            harness.run_steps(2);
            let moved = base - y(&harness);
            assert!(
                (moved - offset as f32).abs() < 0.6,
                "scrolled {offset}, the row below moved {moved}"
            );
        }
    }

    /// A long name scrolled out of view still widens the first column: the columns stay
    /// where they were.
    #[test]
    fn the_columns_stay_put_when_a_long_name_leaves_the_view() {
        let mut table = rows(40);
        table[0].name = format!("a-long-name-{}.bin", "x".repeat(60));
        let mut harness = view(table);
        let x = |h: &Harness<'_, View>| h.get_by_label("127.0.0.1:1005").rect().min.x;
        let before = x(&harness);
        harness.state_mut().offset = 80.0;
        harness.run_steps(4);
        assert!(harness.query_by_label_contains("a-long-name").is_none());
        assert!(
            (x(&harness) - before).abs() < 0.5,
            "{before} -> {}",
            x(&harness)
        );
    }

    /// Drawn rows leave what they took behind until they leave the table; then it goes,
    /// for a folder's files as well, and the rows still shown keep theirs.
    #[test]
    fn rows_cleared_from_the_table_leave_nothing_behind() {
        let peer = ([127, 0, 0, 1], 1).into();
        let mut folder = TransferRow::incoming_folder("photos", peer, Mode::Ferry);
        let file = TransferRow::queued(next_transfer_id(), PathBuf::from("photos/a.jpg"), 1);
        if let Some(group) = folder.folder.as_mut() {
            group.children.push(file);
            group.expanded = true;
        }
        let mut table = vec![folder];
        table.extend(rows(3));
        let harness = view(table);
        let ids: Vec<TransferId> = harness.state().rows.iter().map(|r| r.id).collect();
        let file_id = harness.state().rows[0]
            .folder
            .as_ref()
            .map(|g| g.children[0].id)
            .unwrap();
        let remembered = |id| {
            harness
                .ctx
                .data(|d| d.get_temp::<egui::Vec2>(room_id(Direction::Incoming, id)))
                .is_some()
        };
        assert!(ids.iter().chain([&file_id]).all(|&id| remembered(id)));
        let mut table = harness.state().rows.clone();
        let leaving = |r: &TransferRow| r.id == ids[0] || r.id == ids[1];
        remove_rows(&harness.ctx, Direction::Incoming, &mut table, leaving);
        let left: Vec<TransferId> = table.iter().map(|r| r.id).collect();
        assert_eq!(left, ids[2..]);
        assert!(!remembered(ids[0]) && !remembered(file_id) && !remembered(ids[1]));
        assert!(remembered(ids[2]) && remembered(ids[3]));
    }
}
