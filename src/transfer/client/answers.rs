//! A Ferry receiver may speak at any time (a cancel mid-file), so its frames are read on a
//! thread of their own and handed over on a channel; the upload checks each against its
//! [`SenderSession`](crate::protocol::session::SenderSession) when it takes it.
//!
//! A Ferry file's verdict is not waited for before the next file is offered: the file is
//! [`Owed`], and its verdict is taken whenever answers are read (while the next offer waits
//! for its accept, between its chunks) or, after the last file, by
//! [`Upload::settle_owed`]. A receiver that reads one frame at a time gives the verdict before
//! it reads the next offer, so the sender's open, offer and first chunk of the next file
//! overlap the receiver's commit of the last one instead of waiting a round trip for it.

use std::io::BufReader;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::FileOutcome;
use super::upload::{Stop, Upload, interrupted};
use crate::events::{Failure, FailureKind, TransferEvent, TransferId};
use crate::protocol::session::Answer;
use crate::protocol::{ReceiverMsg, decode_receiver_msg};
use crate::transfer::read_frame;
use crate::transfer::wire::Incoming;

/// The advice for a sender whose peer never answered like a Ferry receiver.
pub(super) const PLAIN_HINT: &str = "if it is a plain (non-Ferry) server, send in plain mode";

/// How long a cancelled upload still waits for the verdicts on files it sent whole.
pub(super) const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A file whose end went out and whose verdict is still to come.
pub(super) struct Owed {
    /// Its place in the upload's outcomes.
    pub slot: usize,
    pub id: TransferId,
    /// Where its data started (a resume's offset).
    pub resumed_from: u64,
}

/// What the reader thread heard.
pub(super) enum Heard {
    Msg(ReceiverMsg),
    Closed(String),
}

/// Starts the reader thread for a Ferry connection.
pub(super) fn spawn_reader(incoming: Incoming) -> std::io::Result<Receiver<Heard>> {
    let mut reader = BufReader::new(incoming);
    let (tx, rx) = crossbeam_channel::bounded(64);
    thread::Builder::new()
        .name("ferry-answers".into())
        .spawn(move || {
            loop {
                let heard = match read_frame(&mut reader) {
                    Ok(Some(body)) => match decode_receiver_msg(&body) {
                        Ok(msg) => Heard::Msg(msg),
                        Err(e) => Heard::Closed(format!("receiver sent a bad answer: {e}")),
                    },
                    Ok(None) => Heard::Closed("receiver closed the connection".into()),
                    Err(e) => Heard::Closed(format!("connection lost: {e}")),
                };
                let last = matches!(heard, Heard::Closed(_));
                // After a cancel, or once the receiver is gone, nothing more can be delivered:
                // shut the socket so a send blocked on a stalled path fails now, not at its
                // write timeout (the message is already on the channel to explain why).
                let hang_up = last || matches!(heard, Heard::Msg(ReceiverMsg::Cancel { .. }));
                let delivered = tx.send(heard).is_ok();
                if hang_up {
                    let _ = reader.get_ref().socket().shutdown(Shutdown::Both);
                }
                if !delivered || last {
                    break;
                }
            }
        })?;
    Ok(rx)
}

impl Upload<'_> {
    /// Passes a write's result on; on failure, with what the receiver said before it hung up
    /// (verdicts on earlier files that came first are taken as verdicts).
    pub(super) fn io_or_explain(&mut self, result: std::io::Result<()>) -> Result<(), Stop> {
        let Err(e) = result else {
            return Ok(());
        };
        loop {
            let said = self
                .answers
                .as_ref()
                .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok());
            return Err(match said {
                Some(Heard::Msg(msg)) => match self.session.on_answer(msg) {
                    Ok(verdict) if verdict.is_about_a_sent_file() => {
                        self.take_verdict(verdict);
                        continue;
                    }
                    answer => self.stop_for_answer(answer),
                },
                _ if self.answers.is_some() && !self.heard_from_peer => Stop::broken(
                    FailureKind::NoFerryAnswer,
                    format!("connection lost before the receiver answered: {e}; {PLAIN_HINT}"),
                ),
                _ => Stop::broken(interrupted(), format!("connection lost: {e}")),
            });
        }
    }

    /// A Ferry receiver's unsolicited message during data (cancel, failure), if any.
    /// Verdicts on earlier files are not a stop: an owed file's is taken, a folder's are kept
    /// for the folder.
    pub(super) fn peer_stopped(&mut self) -> Option<Stop> {
        loop {
            let heard = self.answers.as_ref()?.try_recv().ok()?;
            self.heard_from_peer = true;
            return Some(match heard {
                Heard::Msg(msg) => match self.session.on_answer(msg) {
                    Ok(verdicts @ Answer::Files { .. }) => {
                        self.verdicts.push(verdicts);
                        continue;
                    }
                    Ok(verdict) if verdict.is_about_a_sent_file() => {
                        self.take_verdict(verdict);
                        continue;
                    }
                    // An eager file's receiver asks its user: its data waits in the socket.
                    Ok(Answer::Waiting(waiting_for)) if self.eager_owed() => {
                        self.receiver_waiting = true;
                        if let Some(id) = self.oldest_unanswered() {
                            self.sink
                                .transfer(TransferEvent::AwaitingDecision { id, waiting_for });
                        }
                        continue;
                    }
                    answer => self.stop_for_answer(answer),
                },
                Heard::Closed(reason) => Stop::broken(interrupted(), reason),
            });
        }
    }

    fn stop_for_answer(
        &mut self,
        answer: Result<Answer, crate::protocol::session::SessionError>,
    ) -> Stop {
        match answer {
            Ok(answer) => not_awaited(answer, "during data"),
            Err(e) => Stop::broken(FailureKind::Protocol, e.to_string()),
        }
    }

    /// Waits for the receiver's next answer about file `id` (checked by the session), polling
    /// for cancellation; `waiting` extends the wait to the receiver's decision time. Verdicts
    /// on owed files that come first are taken on the way.
    pub(super) fn wait_answer(&mut self, id: TransferId) -> Result<Answer, Stop> {
        loop {
            match self.wait_answer_within(id, None)? {
                verdict if verdict.is_about_a_sent_file() => self.take_verdict(verdict),
                answer => return Ok(answer),
            }
        }
    }

    /// An owed file's verdict (the oldest's: they come in order) becomes its outcome; an
    /// eager file's accept or decline goes to [`Upload::take_eager`].
    pub(super) fn take_verdict(&mut self, verdict: Answer) {
        if let Answer::EagerAccepted { .. } | Answer::EagerDeclined { .. } = verdict {
            self.take_eager(verdict);
            return;
        }
        // The session takes a verdict only while one is owed, so there is always one here.
        let Some(owed) = self.owed.pop_front() else {
            return;
        };
        let outcome = match verdict {
            Answer::Verified { saved_as } => FileOutcome::Verified {
                saved_as,
                resumed_from: owed.resumed_from,
            },
            Answer::Rejected { reason } => {
                FileOutcome::Failed(Failure::new(FailureKind::ReceiverFailed, reason))
            }
            other => FileOutcome::Failed(Failure::new(
                FailureKind::Protocol,
                format!("unexpected answer after a file: {other:?}"),
            )),
        };
        self.settle(owed.slot, owed.id, outcome);
    }

    /// Waits for every owed verdict (after the last file, before a folder, or after a cancel
    /// while the next file was on offer). A cancel still lets them come for
    /// [`CANCEL_GRACE`] (answers about the abandoned offer are passed over meanwhile);
    /// whatever ends the wait early ends the owed files alike and the connection.
    pub(super) fn settle_owed(&mut self) {
        loop {
            // Eager files' answers come before their verdicts, after the older verdicts.
            let next = self.owed.front().map(|owed| owed.id);
            let Some(oldest) = next.or_else(|| self.oldest_unanswered()) else {
                break;
            };
            let stop = match self.wait_answer_within(oldest, Some(CANCEL_GRACE)) {
                Ok(verdict) if verdict.is_about_a_sent_file() => {
                    self.take_verdict(verdict);
                    continue;
                }
                Ok(answer) if self.about_abandoned_offer(&answer) => continue,
                Ok(other) => not_awaited(other, "after a file"),
                Err(stop) => stop,
            };
            let outcome = self.stopped(stop);
            self.fail_owed(&outcome);
            self.session.break_off();
        }
    }

    /// The connection ended (as `outcome` says for the file it ended on) before the owed
    /// verdicts came. Verdicts already here still count (a cancel stops waiting before it
    /// reads them); the other owed files end as cancelled when either side cancelled, else
    /// as interrupted: all their bytes went out, but nothing says the receiver kept them.
    /// Eager files whose offer was never answered end alike, or, when the receiver gave up
    /// on the connection, with its reason. Call it before the session is broken off.
    pub(super) fn fail_owed(&mut self, outcome: &FileOutcome) {
        self.take_ready_verdicts();
        let why = match outcome {
            FileOutcome::Cancelled | FileOutcome::CancelledByPeer { .. } => outcome.clone(),
            FileOutcome::Failed(failure) => owed_lost(failure.to_string()),
            other => owed_lost(
                self.broken
                    .as_ref()
                    .map_or_else(|| other.to_string(), ToString::to_string),
            ),
        };
        // An eager file whose offer was never answered: the receiver's own reason when it
        // gave up on the connection (it gave up on that offer), else why the connection ended.
        let unanswered = match outcome {
            FileOutcome::Failed(failure) if failure.kind == FailureKind::ReceiverFailed => {
                outcome.clone()
            }
            FileOutcome::Failed(failure) => unanswered_lost(failure.to_string()),
            _ => why.clone(),
        };
        self.fail_eager(|| unanswered.clone());
        for owed in std::mem::take(&mut self.owed) {
            self.settle(owed.slot, owed.id, why.clone());
        }
    }

    /// An answer about the offer a cancel abandoned (the next file's accept, resume or
    /// decline), which may come before the verdicts still owed: passed over.
    fn about_abandoned_offer(&self, answer: &Answer) -> bool {
        self.cancel.is_cancelled()
            && matches!(
                answer,
                Answer::Accepted { .. } | Answer::Resume { .. } | Answer::Declined { .. }
            )
    }

    /// Takes the verdicts that already arrived, without waiting; stops at anything else
    /// (but passes over answers about an offer a cancel abandoned, as `settle_owed` does).
    fn take_ready_verdicts(&mut self) {
        while !self.owed.is_empty() || self.eager_owed() {
            let Some(Heard::Msg(msg)) = self.answers.as_ref().and_then(|rx| rx.try_recv().ok())
            else {
                return;
            };
            self.heard_from_peer = true;
            match self.session.on_answer(msg) {
                Ok(verdict) if verdict.is_about_a_sent_file() => {
                    self.take_verdict(verdict);
                }
                Ok(answer) if self.about_abandoned_offer(&answer) => {}
                _ => return,
            }
        }
    }

    /// [`Upload::wait_answer`] for any answer, verdicts included; with
    /// `grace_after_cancel`, a cancel does not end the wait at once but within that time of
    /// the first wait that noticed it (answers about what already went out still count).
    pub(super) fn wait_answer_within(
        &mut self,
        id: TransferId,
        grace_after_cancel: Option<Duration>,
    ) -> Result<Answer, Stop> {
        // Whatever a corked writer gathered must reach the receiver before its answer can.
        let flushed = std::io::Write::flush(&mut self.stream);
        self.io_or_explain(flushed)?;
        // A receiver that said `waiting` and has not answered since is still asking its user
        // (its `waiting` may have been read between chunks, by `peer_stopped`): it gets as
        // long as they may take.
        let timeout = match self.receiver_waiting {
            true => self.opts.decision_timeout,
            false => self.opts.answer_timeout,
        };
        let mut deadline = Instant::now() + timeout;
        let mut cancel_noticed = false;
        loop {
            let Some(rx) = &self.answers else {
                return Err(Stop::broken(FailureKind::Protocol, "no answer channel"));
            };
            if self.cancel.is_cancelled() {
                let Some(grace) = grace_after_cancel else {
                    return Err(Stop::Cancelled);
                };
                if !cancel_noticed {
                    cancel_noticed = true;
                    // One grace for the upload, not one per wait: a receiver answering
                    // slowly, one verdict at a time, cannot stretch a cancel.
                    let ends = *self
                        .grace_ends
                        .get_or_insert_with(|| Instant::now() + grace);
                    deadline = deadline.min(ends);
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Cancelled);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::broken(
                    FailureKind::NoFerryAnswer,
                    format!(
                        "no answer from {} within {} s; {PLAIN_HINT}",
                        self.peer,
                        self.opts.answer_timeout.as_secs()
                    ),
                ));
            }
            let msg = match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Heard::Msg(msg)) => msg,
                Ok(Heard::Closed(reason)) if !self.heard_from_peer => {
                    return Err(Stop::broken(
                        FailureKind::NoFerryAnswer,
                        format!("{reason} before answering; {PLAIN_HINT}"),
                    ));
                }
                Ok(Heard::Closed(reason)) => return Err(Stop::broken(interrupted(), reason)),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Stop::broken(interrupted(), "connection lost"));
                }
            };
            self.heard_from_peer = true;
            match self.session.on_answer(msg) {
                // The receiver is asking its user: wait as long as it lets them decide.
                Ok(Answer::Waiting(waiting_for)) => {
                    self.receiver_waiting = true;
                    self.sink
                        .transfer(TransferEvent::AwaitingDecision { id, waiting_for });
                    deadline = Instant::now() + self.opts.decision_timeout;
                    // After a cancel, its grace still bounds the wait: a receiver saying
                    // `waiting` again and again cannot stretch it to the decision timeout.
                    if let Some(ends) = self.grace_ends.filter(|_| cancel_noticed) {
                        deadline = deadline.min(ends);
                    }
                }
                Ok(answer) => {
                    // An offer's answer ends the question (a verdict on an older file does not).
                    if let Answer::Accepted { .. }
                    | Answer::Resume { .. }
                    | Answer::Declined { .. }
                    | Answer::FolderAccepted { .. }
                    | Answer::EagerAccepted { .. }
                    | Answer::EagerDeclined { .. } = answer
                    {
                        self.receiver_waiting = false;
                    }
                    return Ok(answer);
                }
                Err(e) => return Err(Stop::broken(FailureKind::Protocol, e.to_string())),
            }
        }
    }
}

/// An owed file whose verdict will never come, because the connection ended (`why`).
fn owed_lost(why: String) -> FileOutcome {
    FileOutcome::Failed(Failure::new(
        interrupted(),
        format!("sent whole, but the connection ended before the receiver's verdict: {why}"),
    ))
}

/// An eager file sent whole whose offer was never answered, because the connection ended.
fn unanswered_lost(why: String) -> FileOutcome {
    FileOutcome::Failed(Failure::new(
        interrupted(),
        format!(
            "sent whole, but the connection ended before the receiver answered its offer: {why}"
        ),
    ))
}

/// How an answer other than the one awaited ends the file: the receiver declined it,
/// cancelled, or gave up on the connection (its words), or it broke the protocol (`awaited`
/// says where, for that message).
pub(super) fn not_awaited(answer: Answer, awaited: &str) -> Stop {
    match answer {
        Answer::PeerCancelled { reason, .. } => Stop::PeerCancelled(reason),
        Answer::Declined { reason } => Stop::Outcome(FileOutcome::Declined { reason }),
        Answer::Failed { reason } => Stop::broken(FailureKind::ReceiverFailed, reason),
        other => Stop::broken(
            FailureKind::Protocol,
            format!("unexpected answer {awaited}: {other:?}"),
        ),
    }
}
