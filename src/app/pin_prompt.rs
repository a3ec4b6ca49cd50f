//! The LocalSend PIN prompt the Client tab and the Notes panel share: what the device said
//! about its PIN and, unless it refuses for a while, a PIN field with a send button.

use egui::{RichText, Ui};

use super::i18n::{T, Tr};
use super::palette;
use crate::events::PinProblem;

/// Draws the prompt; true when its button was clicked with a PIN typed into `pin`.
pub(super) fn pin_prompt(
    ui: &mut Ui,
    tr: Tr,
    problem: PinProblem,
    pin: &mut String,
    (field, button): (T, T),
) -> bool {
    let said = match problem {
        PinProblem::Required => T::LocalSendPinRequired,
        PinProblem::Wrong => T::LocalSendWrongPin,
        PinProblem::TooManyTries => T::LocalSendTooManyPins,
    };
    ui.label(RichText::new(tr.get(said)).color(palette::ERROR));
    if problem == PinProblem::TooManyTries {
        return false;
    }
    let mut clicked = false;
    ui.horizontal(|ui| {
        let label = ui.label(tr.get(field));
        // Outlined: in the dark theme egui draws a resting field with no border, and this
        // one is what the prompt is about. (Hovered and focused, egui's own outline shows.)
        ui.scope(|ui| {
            let border = palette::Shade::of(ui.visuals()).field_border;
            ui.visuals_mut().widgets.inactive.bg_stroke = egui::Stroke::new(1.0, border);
            ui.add(egui::TextEdit::singleline(pin).desired_width(100.0))
                .labelled_by(label.id);
        });
        clicked = ui
            .add_enabled(!pin.trim().is_empty(), egui::Button::new(tr.get(button)))
            .clicked();
    });
    clicked && !pin.trim().is_empty()
}
