//! How a file ended, told truthfully: the partial is committed, removed or kept first, and
//! only then is the sender answered and the event emitted, so what anyone is told is
//! already true on disk. Only an interruption of a Ferry upload keeps the partial (and says
//! exactly how many bytes it holds).

use std::path::PathBuf;

use super::connection::{ConnEnd, Connection};
use crate::events::{Direction, Failure, FailureKind, TransferEvent, TransferId};
use crate::protocol::{self, CancelCode, Header, Mode, ReceiverMsg};
use crate::transfer::{CANCELLED_BY_SENDER, PartFile, TransferError};

/// How a file's data ended while the stream stays in step (the next header can follow).
pub(super) enum FileEnd {
    Committed {
        path: PathBuf,
        verified: bool,
    },
    /// Every byte arrived and the hash matched; the file is still its `.part`, to be
    /// committed with its batch (folders).
    Verified,
    /// The stream is still in step, but the file was not kept.
    Rejected(TransferError),
    /// The sender gave up on the file: a person's cancel (`CancelCode::User`) or a failure
    /// of its own; the stream is still in step.
    SenderCancelled {
        code: CancelCode,
        reason: String,
    },
}

impl Connection<'_> {
    /// A file refused before any byte was written still gets a row that says why.
    pub(super) fn report_refusal(
        &self,
        id: TransferId,
        header: &Header,
        mode: Mode,
        failure: Failure,
    ) {
        let sink = &self.shared.sink;
        sink.transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: self.peer,
            name: header.file_name.clone(),
            saved_as: None,
            bytes_total: header.file_size,
            mode,
            msg: header.msg.clone(),
            security: self.security.clone(),
        });
        sink.transfer(TransferEvent::Failed { id, failure });
    }

    /// This side cancelled a file: the sender is told, the row says so, and the connection
    /// ends (its read side is already shut). The partial is the caller's to drop first.
    pub(super) fn cancelled_here(&mut self, id: TransferId) -> ConnEnd {
        self.answer(&ReceiverMsg::Cancel {
            code: CancelCode::User,
            reason: "cancelled by the receiver".into(),
        });
        self.shared
            .sink
            .transfer(TransferEvent::Cancelled { id, by_peer: false });
        ConnEnd {
            error: TransferError::CancelledHere,
            reported: true,
        }
    }

    /// Reports how a file ended, answers a Ferry sender, and decides whether the connection
    /// can carry the next file. The part file is dealt with (committed, removed or kept)
    /// before anyone is told, so what an event says is already true on disk.
    pub(super) fn finish_file(
        &mut self,
        mut part: PartFile,
        id: TransferId,
        header: &Header,
        mode: Mode,
        outcome: Result<FileEnd, TransferError>,
    ) -> Result<(), ConnEnd> {
        let outcome = match outcome {
            // Held to be named with the files after it (`held`), or named now on its own.
            Ok(FileEnd::Verified) => match self.hold(part, id, header.file_size) {
                None => return Ok(()),
                Some(own) => {
                    part = own;
                    let path = part.commit().map_err(TransferError::Disk);
                    path.map(|path| FileEnd::Committed {
                        path,
                        verified: true,
                    })
                }
            },
            other => other,
        };
        // Verdicts go in file order: those held are answered before this file's ending.
        self.commit_held();
        let sink = &self.shared.sink;
        match outcome {
            Ok(FileEnd::Committed { path, verified }) => {
                self.tell_committed(id, header.file_size, path, verified);
                Ok(())
            }
            Ok(FileEnd::SenderCancelled { code, reason }) => {
                drop(part);
                log::info!(
                    "{}: {:?} cancelled by the sender ({}): {}",
                    self.peer,
                    header.file_name,
                    protocol::escape_line(code.as_str()),
                    protocol::escape_line(&reason)
                );
                // Senders from before cancel codes said only their words.
                let older_user_cancel =
                    code == CancelCode::Other(String::new()) && reason == CANCELLED_BY_SENDER;
                report_sender_cancel(
                    sink,
                    id,
                    code == CancelCode::User || older_user_cancel,
                    reason,
                );
                Ok(())
            }
            // Held or named above.
            Ok(FileEnd::Verified) => {
                Err(TransferError::Unexpected("a verified file left unnamed".into()).into())
            }
            Ok(FileEnd::Rejected(error)) => {
                drop(part);
                log::warn!("{}: {:?}: {error}", self.peer, header.file_name);
                self.answer(&ReceiverMsg::Failed {
                    reason: error.to_string(),
                });
                let failure = error.failure();
                sink.transfer(TransferEvent::Failed { id, failure });
                Ok(())
            }
            Err(TransferError::CancelledHere) => {
                drop(part);
                Err(self.cancelled_here(id))
            }
            Err(error) => {
                let mut failure = error.failure();
                if mode == Mode::Ferry && error.is_interruption() {
                    keep_interrupted(&mut part, &mut failure);
                }
                drop(part);
                sink.transfer(TransferEvent::Failed { id, failure });
                Err(ConnEnd {
                    error,
                    reported: true,
                })
            }
        }
    }
}

impl Connection<'_> {
    /// A file is under its final name: says so to a Ferry sender (`verified`) and to the row.
    pub(super) fn tell_committed(
        &mut self,
        id: TransferId,
        size: u64,
        path: PathBuf,
        verified: bool,
    ) {
        let saved_as = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        log::info!(
            "{}: received {:?} ({size} bytes, {})",
            self.peer,
            path,
            if verified { "verified" } else { "unverified" }
        );
        if verified {
            self.answer(&ReceiverMsg::Verified {
                saved_as: saved_as.clone(),
            });
        }
        self.shared.sink.transfer(TransferEvent::Finished {
            id,
            verified,
            saved_as: Some(saved_as),
            path: Some(path),
        });
    }
}

/// Reports a file its sender cancelled: a person's cancel (`by_user`) as cancelled, any other
/// reason of the sender's own (its file shrank, ...) as a failure in its words.
pub(super) fn report_sender_cancel(
    sink: &crate::events::EventSink,
    id: TransferId,
    by_user: bool,
    reason: String,
) {
    if by_user {
        sink.transfer(TransferEvent::Cancelled { id, by_peer: true });
    } else {
        let failure = Failure::new(FailureKind::SenderGaveUp, reason);
        sink.transfer(TransferEvent::Failed { id, failure });
    }
}

/// Keeps an interrupted upload's partial for a resume, and says in `failure` exactly what is
/// on disk: every byte received was written before the error was handed up (see
/// `DataSource::fill`).
pub(super) fn keep_interrupted(part: &mut PartFile, failure: &mut Failure) {
    part.keep();
    let kept = part
        .file()
        .and_then(|f| f.metadata())
        .map_or(0, |m| m.len());
    failure.kind = FailureKind::Interrupted {
        kept_bytes: Some(kept),
    };
}
