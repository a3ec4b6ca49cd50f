//! The accept-or-decline prompt. Unless the accept policy takes it without asking, the server
//! holds each Ferry sender's upload until the user answers ([`ServerEvent::OfferPending`]); the
//! offers wait here, oldest first, and the prompt shows the oldest one: who sent it (an
//! encrypted offer shows the device's name and fingerprint and adds "Accept and trust"; a
//! plain one says "not encrypted"), what, and the buttons. An offer leaves the queue when the user
//! answers or when the engine closes it ([`ServerEvent::OfferClosed`]: timed out, the sender
//! left, the server stopped).
//!
//! [`ServerEvent::OfferPending`]: crate::events::ServerEvent::OfferPending
//! [`ServerEvent::OfferClosed`]: crate::events::ServerEvent::OfferClosed

use egui::{RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::model::format_bytes;
use crate::events::{PendingOffer, Security};
use crate::transfer::Decision;
use crate::worker::Command;

/// How tall the list of names may grow before it scrolls.
const NAMES_MAX_HEIGHT: f32 = 160.0;

/// The offers waiting for an answer, oldest first.
#[derive(Debug, Default)]
pub struct OfferPrompt {
    pub pending: Vec<PendingOffer>,
}

impl OfferPrompt {
    pub fn push(&mut self, offer: PendingOffer) {
        self.pending.push(offer);
    }

    /// The engine no longer waits for this offer (decided, timed out, or its sender left):
    /// the offer, if it was still waiting here (not answered in this window).
    pub fn close(&mut self, offer_id: u64) -> Option<PendingOffer> {
        let at = self.pending.iter().position(|o| o.offer_id == offer_id)?;
        Some(self.pending.remove(at))
    }

    /// Shows the oldest offer in a window of its own (over whichever tab is open) and
    /// returns the decision once the user clicks.
    #[must_use]
    pub fn show(&mut self, ctx: &egui::Context, tr: Tr) -> Option<Action> {
        let offer = self.pending.first()?;
        let waiting = self.pending.len() - 1;
        let mut decision = None;
        egui::Window::new(tr.get(T::OfferTitle))
            .id(egui::Id::unique("offer_prompt"))
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_TOP, [0.0, 96.0])
            .show(ctx, |ui| {
                decision = offer_ui(ui, tr, offer, waiting);
            });
        let decision = decision?;
        let offer_id = offer.offer_id;
        // Gone at once; the engine's `OfferClosed` that follows finds nothing to remove.
        let _answered = self.close(offer_id);
        Some(Action::Engine(Command::Answer { offer_id, decision }))
    }
}

/// The offer's details and its buttons; the decision once one is clicked.
fn offer_ui(ui: &mut Ui, tr: Tr, offer: &PendingOffer, waiting: usize) -> Option<Decision> {
    ui.label(RichText::new(tr.fill(T::OfferFrom, &[&offer.offer_id, &offer.peer])).strong());
    super::notes_panel::security_mark(ui, &offer.security, tr);
    let untrusted = match &offer.security {
        Security::Encrypted {
            fingerprint,
            trusted,
            ..
        } => {
            ui.label(RichText::new(tr.fill(T::OfferFingerprint, &[fingerprint])).monospace());
            if !trusted {
                ui.label(RichText::new(tr.get(T::OfferUntrusted)).small().weak());
            }
            !trusted
        }
        Security::LocalSend { fingerprint, .. } => {
            ui.label(RichText::new(tr.fill(T::OfferFingerprint, &[fingerprint])).monospace());
            false
        }
        Security::Plain => false,
    };
    match &offer.folder {
        // "photos: 120 files in 14 folders, 340.0 MiB"
        Some(folder) => {
            ui.label(RichText::new(tr.fill(
                T::OfferFolder,
                &[
                    &folder.name,
                    &offer.count,
                    &folder.folders,
                    &format_bytes(offer.bytes as f64),
                ],
            )));
        }
        None => {
            ui.label(tr.fill(T::OfferCount, &[&offer.count]));
            ui.label(tr.fill(T::OfferSize, &[&format_bytes(offer.bytes as f64)]));
        }
    }
    if !offer.msg.is_empty() {
        ui.label(tr.fill(T::OfferMessage, &[&offer.msg]));
    }
    ui.separator();
    // Every listed file, however many: only the visible rows are laid out.
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    egui::ScrollArea::vertical()
        .id_salt(("offer_files", offer.offer_id))
        .max_height(NAMES_MAX_HEIGHT)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, offer.names.len(), |ui, rows| {
            for i in rows {
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&offer.names[i]).monospace());
                    if let Some(size) = offer.sizes.get(i) {
                        ui.label(RichText::new(format_bytes(*size as f64)).weak());
                    }
                });
            }
        });
    let unlisted = offer.count.saturating_sub(offer.names.len() as u64);
    if unlisted > 0 {
        ui.label(RichText::new(tr.fill(T::OfferMore, &[&unlisted])).weak());
    }
    if waiting > 0 {
        ui.label(RichText::new(tr.fill(T::OfferQueue, &[&waiting])).weak());
    }
    ui.separator();
    let mut decision = None;
    ui.horizontal(|ui| {
        if ui
            .button(RichText::new(tr.get(T::Accept)).strong())
            .clicked()
        {
            decision = Some(Decision::Accept);
        }
        // Only an encrypted sender has a key to trust.
        if untrusted && ui.button(tr.get(T::AcceptAndTrust)).clicked() {
            decision = Some(Decision::AcceptAndTrust);
        }
        if ui.button(tr.get(T::Decline)).clicked() {
            decision = Some(Decision::Decline);
        }
    });
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(offer_id: u64) -> PendingOffer {
        PendingOffer {
            offer_id,
            peer: "127.0.0.1:9".parse().unwrap(),
            count: 1,
            bytes: 10,
            names: vec!["a.txt".into()],
            sizes: vec![10],
            msg: String::new(),
            security: crate::events::Security::Plain,
            folder: None,
        }
    }

    #[test]
    fn offers_leave_the_queue_when_closed_and_the_oldest_shows_first() {
        let mut prompt = OfferPrompt::default();
        prompt.push(offer(1));
        prompt.push(offer(2));
        prompt.push(offer(3));
        prompt.close(2);
        prompt.close(42); // unknown: nothing happens
        let ids: Vec<u64> = prompt.pending.iter().map(|o| o.offer_id).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn the_prompt_lists_the_offer_and_a_click_decides_it() {
        use egui_kittest::{Harness, kittest::Queryable};

        use crate::app::i18n::Lang;

        struct State {
            prompt: OfferPrompt,
            actions: Vec<Action>,
        }
        let mut big = offer(7);
        big.count = 60;
        big.bytes = 3 * 1024 * 1024;
        big.names = (0..50).map(|i| format!("photo{i}.jpg")).collect();
        big.msg = "holiday".into();
        let mut prompt = OfferPrompt::default();
        prompt.push(big);
        prompt.push(offer(8));
        let mut harness = Harness::new_ui_state(
            |ui, state: &mut State| {
                let action = state.prompt.show(ui.ctx(), Tr(Lang::En));
                state.actions.extend(action);
            },
            State {
                prompt,
                actions: Vec::new(),
            },
        );
        harness.run();
        harness.get_by_label("Offer 7 from 127.0.0.1:9");
        harness.get_by_label("Files: 60");
        harness.get_by_label("Total size: 3.0 MiB");
        harness.get_by_label("Message: holiday");
        harness.get_by_label("photo0.jpg");
        harness
            .get_by_label("10 more files are not listed: each will be asked about when it arrives");
        harness.get_by_label("1 more offers waiting");
        harness.get_by_label("Decline").click();
        harness.run();
        assert!(matches!(
            harness.state().actions[..],
            [Action::Engine(Command::Answer {
                offer_id: 7,
                decision: Decision::Decline
            })]
        ));
        // The next offer shows, and it lists all its names.
        harness.get_by_label("a.txt");
        assert!(
            harness
                .query_by_label(
                    "10 more files are not listed: each will be asked about when it arrives"
                )
                .is_none()
        );
        harness.get_by_label("Accept").click();
        harness.run();
        assert!(matches!(
            harness.state().actions[1..],
            [Action::Engine(Command::Answer {
                offer_id: 8,
                decision: Decision::Accept
            })]
        ));
        assert!(harness.query_by_label("Accept").is_none(), "no offer left");
    }
}
