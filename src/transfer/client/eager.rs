//! Eager small files (see "Eager small files" in [`crate::protocol`]): once the receiver
//! said in an accept that it takes them, a file of at most its `eager_max` bytes is offered
//! and sent at once, without waiting for its accept, so a run of small files costs no round
//! trip per file. At most [`EAGER_WINDOW_FILES`] files and [`EAGER_WINDOW_BYTES`] bytes wait
//! for their answers at a time; any other offer (a larger file, a folder) waits until every
//! answer came. Answers come in file order: each eager file's accept or decline, then (once
//! accepted and sent whole) its verdict, taken like any other owed verdict
//! ([`super::answers`]).

use std::fs::File;

use super::answers::{Owed, not_awaited};
use super::upload::{Stop, Upload};
use super::{FileOutcome, OutgoingFile};
use crate::events::{TransferEvent, TransferId};
use crate::protocol::session::{Answer, EAGER_WINDOW_BYTES, EAGER_WINDOW_FILES};
use crate::protocol::{Header, WaitFor, encode_sender_msg};
use crate::transfer::TransferError;

/// An eager file whose answer, or whose sending, is not done with yet.
pub(super) struct Eager {
    /// Its place in the upload's outcomes.
    pub slot: usize,
    pub id: TransferId,
    pub size: u64,
    /// `None` while its data goes out; then whether it went out whole (`end`) or was given
    /// up (cancel marker).
    pub whole: Option<bool>,
    /// The receiver's answer, once it came: accepted or not.
    pub accepted: Option<bool>,
    /// The file and the name it goes by, should the receiver ask for it again.
    pub source: (OutgoingFile, Option<String>),
}

impl Upload<'_> {
    /// Sends a small file eagerly (the caller checked the session allows it): `None` once
    /// its end is out (its answer and verdict are owed).
    pub(super) fn send_eager(
        &mut self,
        id: TransferId,
        header: Header,
        mut file: File,
        slot: usize,
        source: (OutgoingFile, Option<String>),
    ) -> Result<Option<FileOutcome>, Stop> {
        let size = header.file_size;
        // The window: wait for the oldest answers until this file fits. A receiver that
        // said `waiting` (asking its user) gets no more until it answered: the bytes would
        // only fill the socket and hold the sender's writes up.
        while self.unanswered() > 0
            && (self.unanswered() >= EAGER_WINDOW_FILES
                || self.unanswered_bytes() + size > EAGER_WINDOW_BYTES
                || self.receiver_waiting)
        {
            self.wait_one_eager()?;
        }
        // Cancelled while it waited for room: the file is not started.
        if self.cancel.is_cancelled() {
            return Ok(Some(FileOutcome::Cancelled));
        }
        let corked = self.stream.set_corked(true);
        self.io_or_explain(corked)?;
        let frame = self.session.offer_eager(header)?;
        let frame = encode_sender_msg(&frame).map_err(TransferError::from)?;
        self.write_or_explain(&frame)?;
        self.eager.push_back(Eager {
            slot,
            id,
            size,
            whole: None,
            accepted: None,
            source,
        });
        let mut hasher = blake3::Hasher::new();
        let early = self.stream_data(id, &mut file, &mut hasher, 0)?;
        if let Some(outcome) = early {
            self.sent_eager(false);
            return Ok(Some(outcome));
        }
        let end = self.session.end(*hasher.finalize().as_bytes())?;
        self.write_or_explain(&encode_sender_msg(&end).map_err(TransferError::from)?)?;
        self.sent_eager(true);
        Ok(None)
    }

    /// Eager files whose answer is owed, oldest first.
    fn awaiting_answers(&self) -> impl Iterator<Item = &Eager> {
        self.eager.iter().filter(|e| e.accepted.is_none())
    }

    /// The oldest eager file whose answer is owed: the one the next answer is about.
    pub(super) fn oldest_unanswered(&self) -> Option<TransferId> {
        self.awaiting_answers().next().map(|e| e.id)
    }

    fn unanswered(&self) -> usize {
        self.awaiting_answers().count()
    }

    fn unanswered_bytes(&self) -> u64 {
        self.awaiting_answers().map(|e| e.size).sum()
    }

    /// Before any other offer: waits until every eager file's answer came.
    pub(super) fn wait_eager_answers(&mut self) -> Result<(), Stop> {
        while self.unanswered() > 0 {
            self.wait_one_eager()?;
        }
        Ok(())
    }

    /// Waits for the next answer while eager answers are owed: a verdict, an accept or a
    /// decline is taken; anything else ends the connection.
    fn wait_one_eager(&mut self) -> Result<(), Stop> {
        let Some(id) = self.oldest_unanswered() else {
            return Ok(());
        };
        match self.wait_answer_within(id, None)? {
            answer if answer.is_about_a_sent_file() => {
                self.take_verdict(answer);
                Ok(())
            }
            other => Err(not_awaited(
                other,
                "while eager files wait for their answers",
            )),
        }
    }

    /// The eager file being sent is out: whole (its end went out) or given up.
    fn sent_eager(&mut self, whole: bool) {
        if let Some(last) = self.eager.back_mut() {
            last.whole = Some(whole);
        }
        self.retire_eager();
    }

    /// The oldest eager file whose answer was owed is accepted or declined. A declined file
    /// ends here (the receiver drops its bytes); an accepted one owes its verdict once it
    /// went out whole.
    pub(super) fn take_eager(&mut self, answer: Answer) {
        let accepted = matches!(answer, Answer::EagerAccepted { .. });
        self.receiver_waiting = false;
        let Some(entry) = self.eager.iter_mut().find(|e| e.accepted.is_none()) else {
            return;
        };
        entry.accepted = Some(accepted);
        let (slot, id) = (entry.slot, entry.id);
        match answer {
            // Refused only for coming eagerly: offered again, the ordinary way, at the end
            // (its data, given up or not, was dropped; its outcome is the new offer's).
            Answer::EagerDeclined {
                offer_again: true, ..
            } => {
                let (file, name) = entry.source.clone();
                self.eager_off = true;
                // A file whose eager try already ended its own way keeps that outcome (see
                // `settle_and_send_again`); any other waits to be offered again, and its row
                // says what for: the receiver's user (its bytes so far were dropped).
                if self.outcomes.get(slot).is_some_and(Option::is_none) {
                    self.again.push((slot, file, name));
                    let waiting_for = WaitFor::Decision;
                    self.sink
                        .transfer(TransferEvent::AwaitingDecision { id, waiting_for });
                }
            }
            Answer::EagerDeclined { reason, .. } => {
                self.settle(slot, id, FileOutcome::Declined { reason });
            }
            _ => {}
        }
        self.retire_eager();
    }

    /// After the last item: every answer and verdict still owed is taken (a cancel gets its
    /// grace, see [`Upload::settle_owed`]), and the files the receiver asked for again (see
    /// `offer_again` in [`Answer::EagerDeclined`]) are offered the ordinary way, so the
    /// receiver can ask its user about them, until none is left (an answer may ask for
    /// more). A connection that broke meanwhile fails them with the reason, a cancel cancels
    /// them.
    pub(super) fn settle_and_send_again(&mut self) {
        loop {
            self.settle_owed();
            let again = std::mem::take(&mut self.again);
            if again.is_empty() {
                return;
            }
            for (slot, file, name) in again {
                // Its eager try already ended its own way (given up: cancelled, shrank,
                // unreadable): that outcome stands, and the file is not sent a second time.
                if self.outcomes.get(slot).is_some_and(Option::is_some) {
                    continue;
                }
                if let Some(outcome) = self.try_send(&file, name.as_deref(), slot) {
                    self.settle(slot, file.id, outcome);
                }
            }
        }
    }

    /// Eager files done with, oldest first: an accepted file sent whole now owes its
    /// verdict (in file order, like any file whose end went out).
    fn retire_eager(&mut self) {
        while let Some(front) = self.eager.front() {
            let (Some(accepted), Some(whole)) = (front.accepted, front.whole) else {
                return;
            };
            if accepted && whole {
                self.owed.push_back(Owed {
                    slot: front.slot,
                    id: front.id,
                    resumed_from: 0,
                });
            }
            self.eager.pop_front();
        }
    }

    /// The connection ended (`lost` says why, for each file) with eager answers owed:
    /// every eager file sent whole or in part whose answer never came, or whose verdict is
    /// owed, ends with it. The file still being sent is the caller's to settle.
    pub(super) fn fail_eager(&mut self, lost: impl Fn() -> FileOutcome) {
        for entry in std::mem::take(&mut self.eager) {
            // Declined and given-up files were settled as such; an accepted one sent whole
            // moved on to `owed`.
            if entry.accepted.is_none() && entry.whole == Some(true) {
                self.settle(entry.slot, entry.id, lost());
            }
        }
    }

    /// Whether any eager file's answer is still owed.
    pub(super) fn eager_owed(&self) -> bool {
        self.unanswered() > 0
    }
}
