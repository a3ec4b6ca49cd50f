//! The transfer table both tabs draw: name, peer, size, progress, speed, ETA, state, actions.

use std::sync::OnceLock;

use egui::{ProgressBar, RichText, Ui};

use super::i18n::{T, Tr};
use super::model::{RowState, TransferRow, format_bytes, format_eta};
use super::palette;
use crate::events::{Direction, TransferId};
use crate::protocol::Mode;
use crate::transfer::FileOutcome;

/// Room for the usual states on one line; longer ones (failure reasons) are cut at the
/// panel's edge and shown whole on hover.
const STATE_COLUMN_WIDTH: f32 = 120.0;

/// What a click in the table asks for; applied by the tab after drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAction {
    OpenFolder(TransferId),
    Cancel(TransferId),
    Remove(TransferId),
    /// Send a failed or cancelled upload again (a Ferry receiver resumes it).
    Retry(TransferId),
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
    egui::ScrollArea::vertical()
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new(("transfers", direction == Direction::Incoming))
                .striped(true)
                .num_columns(8)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    // The buttons come before the state, whose text can be long, so they stay in view.
                    for col in [
                        T::ColFile,
                        T::ColPeer,
                        T::ColSize,
                        T::ColProgress,
                        T::ColSpeed,
                        T::ColEta,
                    ] {
                        ui.label(RichText::new(tr.get(col)).strong());
                    }
                    ui.label("");
                    ui.label(RichText::new(tr.get(T::ColState)).strong());
                    ui.end_row();
                    for row in rows {
                        if let Some(a) = row_ui(ui, tr, row, direction) {
                            action = Some(a);
                        }
                        ui.end_row();
                    }
                });
        });
    action
}

fn row_ui(ui: &mut Ui, tr: Tr, row: &TransferRow, direction: Direction) -> Option<RowAction> {
    let shown_name = row.saved_as.as_deref().unwrap_or(&row.name);
    let name = ui.label(shown_name);
    if row.saved_as.is_some() || !row.msg.is_empty() {
        let mut tip = String::new();
        if row.saved_as.is_some() {
            tip.push_str(&row.name);
            tip.push_str(" → ");
            tip.push_str(&tr.fill(T::SavedAs, &[&shown_name]));
        }
        if !row.msg.is_empty() {
            if !tip.is_empty() {
                tip.push('\n');
            }
            tip.push_str(&row.msg);
        }
        name.on_hover_text(tip);
    }
    ui.label(row.peer.map(|p| p.to_string()).unwrap_or_default());
    ui.label(format_bytes(row.bytes_total as f64));
    ui.add(
        ProgressBar::new(row.fraction())
            .desired_width(160.0)
            .show_percentage(),
    );
    ui.label(
        row.speed()
            .map(|s| format!("{}/s", format_bytes(s)))
            .unwrap_or_default(),
    );
    ui.label(row.eta().map(format_eta).unwrap_or_default());
    let mut action = None;
    ui.horizontal(|ui| {
        let mut button = |text: T, clicked: RowAction| {
            if ui.button(tr.get(text)).clicked() {
                action = Some(clicked);
            }
        };
        match (&row.state, direction) {
            // Either side can stop a transfer; the other side is told.
            (RowState::Active, _) => button(T::Cancel, RowAction::Cancel(row.id)),
            (RowState::Verified | RowState::Unverified, Direction::Incoming) => {
                button(T::OpenFolder, RowAction::OpenFolder(row.id))
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
    state_ui(ui, tr, row, direction);
    action
}

fn state_ui(ui: &mut Ui, tr: Tr, row: &TransferRow, direction: Direction) {
    let (text, color) = match &row.state {
        RowState::Queued => (tr.get(T::StateQueued).to_owned(), None),
        RowState::Active if direction == Direction::Incoming => {
            (tr.get(T::StateReceiving).to_owned(), None)
        }
        RowState::Active if row.awaiting_decision => (tr.get(T::StateAwaiting).to_owned(), None),
        RowState::Active => (tr.get(T::StateSending).to_owned(), None),
        RowState::Verified => (tr.get(T::StateVerified).to_owned(), Some(palette::OK)),
        RowState::Unverified if row.mode == Mode::Plain && direction == Direction::Outgoing => (
            tr.get(T::StateSentUnverified).to_owned(),
            Some(palette::WARN),
        ),
        RowState::Unverified => (tr.get(T::StateUnverified).to_owned(), Some(palette::WARN)),
        RowState::Failed(reason) => match outcome_reason(reason) {
            (Outcome::Declined, why) => (tr.fill(T::StateDeclined, &[&why]), Some(palette::WARN)),
            (Outcome::Failed, why) => (tr.fill(T::StateFailed, &[&why]), Some(palette::ERROR)),
        },
        RowState::Cancelled { by_peer: false } => {
            (tr.get(T::StateCancelled).to_owned(), Some(palette::MUTED))
        }
        RowState::Cancelled { by_peer: true } => (
            tr.get(T::StateCancelledByPeer).to_owned(),
            Some(palette::MUTED),
        ),
    };
    let rich = match color {
        Some(color) => RichText::new(&text).color(color),
        None => RichText::new(&text),
    };
    // States stay on one line; a long failure reason is cut, and shown whole on hover.
    ui.horizontal(|ui| {
        ui.set_min_width(STATE_COLUMN_WIDTH);
        let response = ui.add(egui::Label::new(rich).truncate());
        if matches!(row.state, RowState::Failed(_)) {
            response.on_hover_text(text);
        }
    });
}

/// How an upload that did not succeed ended, for its state text.
enum Outcome {
    Declined,
    Failed,
}

/// Splits a failure reason into how it ended and why. The sender reports a file's
/// [`FileOutcome`] as its text (`declined: REASON`, `failed: REASON`): such rows read
/// "declined: REASON" and "failed: REASON", not "failed: failed: REASON". The prefixes are
/// taken from the engine's own formatting so the two cannot drift apart; reasons without one
/// (the receiver's) are shown as they are.
fn outcome_reason(reason: &str) -> (Outcome, &str) {
    static PREFIXES: OnceLock<[String; 2]> = OnceLock::new();
    let [declined, failed] = PREFIXES.get_or_init(|| {
        let reason = String::new();
        [
            FileOutcome::Declined {
                reason: reason.clone(),
            }
            .to_string(),
            FileOutcome::Failed { reason }.to_string(),
        ]
    });
    if let Some(why) = reason.strip_prefix(declined.as_str()) {
        (Outcome::Declined, why)
    } else {
        (
            Outcome::Failed,
            reason.strip_prefix(failed.as_str()).unwrap_or(reason),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_texts_are_not_doubled() {
        assert!(matches!(
            outcome_reason("declined: declined by the receiver"),
            (Outcome::Declined, "declined by the receiver")
        ));
        assert!(matches!(
            outcome_reason("failed: connection lost"),
            (Outcome::Failed, "connection lost")
        ));
        assert!(matches!(
            outcome_reason("refused: the receiver asks first"),
            (Outcome::Failed, "refused: the receiver asks first")
        ));
    }
}
