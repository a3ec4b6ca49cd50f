//! The receiving session's consent for single files: whether an offer may be taken without
//! asking, is covered by the announced batch, or must be asked about, and the user's
//! answers. Apart from `receiver.rs` only to keep each file short; the rules are the same
//! machine's.

use super::super::super::Header;
use super::super::batch::{Batch, Consent, Refusal, consent};
use super::{Mode, ReceiverSession, State};

impl ReceiverSession {
    /// Whether the offered file may be taken without asking, must be asked about (alone, or
    /// as part of the announced batch), or is refused; see [`consent`]. Call once per offer.
    pub fn consent(&mut self, header: &Header, auto_accept: bool) -> Consent {
        let mode = match self.state {
            State::Offered { mode, .. } => mode,
            _ => return Consent::Refuse(Refusal::NotOffered),
        };
        let covered = !auto_accept
            && mode == Mode::Ferry
            && self.batch.as_mut().is_some_and(|batch| {
                batch.covers(self.approved, header.file_size)
                    && batch.claim(&header.file_name, header.file_size)
            });
        let consent = consent(auto_accept, mode, covered, self.decision);
        if let Consent::Accept { counted: true } = consent {
            self.count_approved(header.file_size);
        }
        consent
    }

    /// The user's answer after [`Consent::Ask`]: remembered for the batch when the question
    /// was about it. Returns the consent it amounts to.
    pub fn answered(&mut self, size: u64, batch: bool, accepted: bool) -> Consent {
        if batch {
            self.decision = Some(accepted);
        }
        if accepted {
            self.count_approved(size);
            Consent::Accept { counted: true }
        } else {
            Consent::Refuse(Refusal::DeclinedByUser)
        }
    }

    fn count_approved(&mut self, size: u64) {
        self.approved.0 += 1;
        self.approved.1 = self.approved.1.saturating_add(size);
    }

    /// The announced batch (what a prompt shows), if any.
    pub fn batch(&self) -> Option<&Batch> {
        self.batch.as_ref()
    }
}
