//! A Ferry receiver may speak at any time (a cancel mid-file), so its frames are read on a
//! thread of their own and handed over on a channel; the upload checks each against its
//! [`SenderSession`](crate::protocol::session::SenderSession) when it takes it.

use std::io::BufReader;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::FileOutcome;
use super::upload::{Stop, Upload, interrupted};
use crate::events::{FailureKind, TransferEvent, TransferId};
use crate::protocol::session::Answer;
use crate::protocol::{ReceiverMsg, decode_receiver_msg};
use crate::transfer::read_frame;
use crate::transfer::wire::Incoming;

/// The advice for a sender whose peer never answered like a Ferry receiver.
pub(super) const PLAIN_HINT: &str = "if it is a plain (non-Ferry) server, send in plain mode";

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
    /// Passes a write's result on; on failure, with what the receiver said before it hung up.
    pub(super) fn io_or_explain(&mut self, result: std::io::Result<()>) -> Result<(), Stop> {
        let Err(e) = result else {
            return Ok(());
        };
        let said = self
            .answers
            .as_ref()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok());
        Err(match said {
            Some(Heard::Msg(msg)) => self.stop_for(msg),
            _ if self.answers.is_some() && !self.heard_from_peer => Stop::broken(
                FailureKind::NoFerryAnswer,
                format!("connection lost before the receiver answered: {e}; {PLAIN_HINT}"),
            ),
            _ => Stop::broken(interrupted(), format!("connection lost: {e}")),
        })
    }

    /// A Ferry receiver's unsolicited message during data (cancel, failure), if any.
    /// Verdicts on a folder's earlier files are not a stop: they are kept for the folder.
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
                    answer => self.stop_for_answer(answer),
                },
                Heard::Closed(reason) => Stop::broken(interrupted(), reason),
            });
        }
    }

    /// What a receiver's message in the middle of sending means.
    fn stop_for(&mut self, msg: ReceiverMsg) -> Stop {
        let answer = self.session.on_answer(msg);
        self.stop_for_answer(answer)
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

    /// Waits for the receiver's next answer (checked by the session), polling for
    /// cancellation; `waiting` extends the wait to the receiver's decision time.
    pub(super) fn wait_answer(&mut self, id: TransferId) -> Result<Answer, Stop> {
        self.wait_answer_within(id, None)
    }

    /// [`Upload::wait_answer`]; with `grace_after_cancel`, a cancel does not end the wait at
    /// once but within that time (answers about what already went out still count).
    pub(super) fn wait_answer_within(
        &mut self,
        id: TransferId,
        grace_after_cancel: Option<Duration>,
    ) -> Result<Answer, Stop> {
        // Whatever a corked writer gathered must reach the receiver before its answer can.
        let flushed = std::io::Write::flush(&mut self.stream);
        self.io_or_explain(flushed)?;
        let mut deadline = Instant::now() + self.opts.answer_timeout;
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
                    deadline = deadline.min(Instant::now() + grace);
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
                    self.sink
                        .transfer(TransferEvent::AwaitingDecision { id, waiting_for });
                    deadline = Instant::now() + self.opts.decision_timeout;
                }
                Ok(answer) => return Ok(answer),
                Err(e) => return Err(Stop::broken(FailureKind::Protocol, e.to_string())),
            }
        }
    }
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
