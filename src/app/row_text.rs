//! What a transfer row says about where its file stands: the words (in the window's
//! language) and colour of each state, what a receiver waits for, and a failure's kind with
//! the peer's own words apart.

use super::i18n::{T, Tr};
use super::model::{RowState, TransferRow, format_bytes};
use super::palette;
use crate::events::{Direction, Failure, FailureKind, PinProblem, Refusal, Security};
use crate::protocol::Mode;

/// A folder row's state in files: how many went or arrived, all verified, how many failed.
pub(super) fn folder_state(
    tr: Tr,
    row: &TransferRow,
    direction: Direction,
) -> Option<(String, Option<egui::Color32>)> {
    let group = row.folder.as_ref()?;
    let (done, total) = (group.files_done(), group.children.len());
    Some(match &row.state {
        RowState::Active if let Some(why) = row.awaiting => {
            (tr.get(awaiting_text(why)).to_owned(), None)
        }
        RowState::Active if direction == Direction::Incoming => {
            (tr.fill(T::FolderReceiving, &[&done]), None)
        }
        RowState::Active => (tr.fill(T::FolderSending, &[&done, &total]), None),
        RowState::Verified => (tr.fill(T::FolderVerified, &[&total]), Some(palette::OK)),
        RowState::Failed(failure) if failure.kind != FailureKind::Declined => {
            let failed = group.files_failed();
            let text = tr.fill(T::FolderFailed, &[&failed, &total]);
            (text, Some(palette::ERROR))
        }
        _ => return None,
    })
}

pub(super) fn file_state(
    tr: Tr,
    row: &TransferRow,
    direction: Direction,
) -> (String, Option<egui::Color32>) {
    match &row.state {
        RowState::Queued => (tr.get(T::StateQueued).to_owned(), None),
        RowState::Active if direction == Direction::Incoming => {
            (tr.get(T::StateReceiving).to_owned(), None)
        }
        RowState::Active if let Some(why) = row.awaiting => {
            (tr.get(awaiting_text(why)).to_owned(), None)
        }
        RowState::Active => (tr.get(T::StateSending).to_owned(), None),
        RowState::Verified => (tr.get(T::StateVerified).to_owned(), Some(palette::OK)),
        // LocalSend sends no hash, either way: say why rather than blame a plain peer.
        RowState::Unverified if matches!(row.security, Some(Security::LocalSend { .. })) => (
            tr.get(T::StateUnverifiedLocalSend).to_owned(),
            Some(palette::WARN),
        ),
        RowState::Unverified if row.mode == Mode::Plain && direction == Direction::Outgoing => (
            tr.get(T::StateSentUnverified).to_owned(),
            Some(palette::WARN),
        ),
        RowState::Unverified => (tr.get(T::StateUnverified).to_owned(), Some(palette::WARN)),
        RowState::Failed(failure) if failure.kind == FailureKind::Declined => (
            tr.fill(T::StateDeclined, &[&failure.detail_text()]),
            Some(palette::WARN),
        ),
        RowState::Failed(failure) => (
            tr.fill(T::StateFailed, &[&failure_text(tr, failure)]),
            Some(palette::ERROR),
        ),
        RowState::Cancelled { by_peer: false } => {
            (tr.get(T::StateCancelled).to_owned(), Some(palette::MUTED))
        }
        RowState::Cancelled { by_peer: true } => (
            tr.get(T::StateCancelledByPeer).to_owned(),
            Some(palette::MUTED),
        ),
    }
}

/// What a row says while the receiver holds its answer.
fn awaiting_text(why: crate::protocol::WaitFor) -> T {
    use crate::protocol::WaitFor;
    match why {
        WaitFor::Decision => T::StateAwaiting,
        WaitFor::Checking => T::StateAwaitingCheck,
        WaitFor::EarlierCopy => T::StateAwaitingEarlier,
    }
}

/// A failure in the window's language: the kind from the translation table, then what the
/// peer or the system said (untranslated, escaped), if anything.
pub(super) fn failure_text(tr: Tr, failure: &Failure) -> String {
    let kind = match failure.kind {
        FailureKind::Refused(refusal) => match refusal {
            Refusal::PlainCannotBeAsked => tr.get(T::FailRefusedPlain).to_owned(),
            Refusal::DeclinedByUser => tr.get(T::FailRefusedByUser).to_owned(),
            Refusal::NoAnswer { secs } => tr.fill(T::FailRefusedNoAnswer, &[&secs]),
            Refusal::NoSpace { needed, available } => tr.fill(
                T::FailRefusedNoSpace,
                &[
                    &format_bytes(needed as f64),
                    &format_bytes(available as f64),
                ],
            ),
            Refusal::CannotCreate => tr.get(T::FailRefusedCannotCreate).to_owned(),
            Refusal::NotOffered => tr.get(T::FailRefused).to_owned(),
            Refusal::FolderBusy => tr.get(T::FailRefusedFolderBusy).to_owned(),
            Refusal::EagerUnasked => tr.get(T::FailRefusedEagerUnasked).to_owned(),
            Refusal::NotEncrypted => tr.get(T::FailRefusedNotEncrypted).to_owned(),
            Refusal::NotTrusted => tr.get(T::FailRefusedNotTrusted).to_owned(),
        },
        FailureKind::Declined => tr
            .get(T::StateDeclined)
            .replace("{}", "")
            .trim_end()
            .to_owned(),
        FailureKind::Interrupted { kept_bytes: None } => tr.get(T::FailInterrupted).to_owned(),
        FailureKind::Interrupted {
            kept_bytes: Some(0),
        } => tr.get(T::FailInterruptedNothing).to_owned(),
        FailureKind::Interrupted {
            kept_bytes: Some(kept),
        } => tr.fill(T::FailInterruptedKept, &[&format_bytes(kept as f64)]),
        FailureKind::NotVerified => tr.get(T::FailNotVerified).to_owned(),
        FailureKind::SenderGaveUp => tr.get(T::FailSenderGaveUp).to_owned(),
        FailureKind::ReceiverFailed => tr.get(T::FailReceiverFailed).to_owned(),
        FailureKind::Protocol => tr.get(T::FailProtocol).to_owned(),
        FailureKind::LocalFile => tr.get(T::FailLocalFile).to_owned(),
        FailureKind::Disk => tr.get(T::FailDisk).to_owned(),
        FailureKind::Unreachable => tr.get(T::FailUnreachable).to_owned(),
        FailureKind::NoFerryAnswer => tr.get(T::FailNoFerryAnswer).to_owned(),
        FailureKind::NotSent => tr.get(T::FailNotSent).to_owned(),
        FailureKind::NotStarted => tr.get(T::FailNotStarted).to_owned(),
        FailureKind::Stopped => tr.get(T::FailStopped).to_owned(),
        FailureKind::Security => tr.get(T::FailSecurity).to_owned(),
        // The detail is the refused key's fingerprint, part of the sentence.
        FailureKind::KeyChanged { looks_alike } => {
            let text = match looks_alike {
                false => T::FailKeyChanged,
                true => T::FailKeyLooksAlike,
            };
            return tr.fill(text, &[&failure.detail_text()]);
        }
        FailureKind::Pin(PinProblem::Required) => tr.get(T::LocalSendPinRequired).to_owned(),
        FailureKind::Pin(PinProblem::Wrong) => tr.get(T::LocalSendWrongPin).to_owned(),
        FailureKind::Pin(PinProblem::TooManyTries) => tr.get(T::LocalSendTooManyPins).to_owned(),
    };
    match failure.detail_text() {
        detail if detail.is_empty() => kind,
        detail => format!("{kind} ({detail})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_in_both_languages_with_the_peer_words_apart() {
        use crate::app::i18n::Lang;
        let kept = Failure {
            kind: FailureKind::Interrupted {
                kept_bytes: Some(3 * 1024 * 1024),
            },
            detail: Some("connection closed after 3145728 of 9000000 bytes".into()),
        };
        assert_eq!(
            failure_text(Tr(Lang::En), &kept),
            "interrupted; 3.0 MiB kept, sending again resumes \
             (connection closed after 3145728 of 9000000 bytes)"
        );
        assert_eq!(
            failure_text(Tr(Lang::ZhCn), &kept),
            "传输中断；已保留 3.0 MiB，再次发送将续传 (connection closed after 3145728 of 9000000 bytes)"
        );
        let no_space = Failure::bare(FailureKind::Refused(Refusal::NoSpace {
            needed: 2048,
            available: 1024,
        }));
        assert_eq!(
            failure_text(Tr(Lang::ZhCn), &no_space),
            "已拒收：磁盘空间不足（需要 2.0 KiB，剩余 1.0 KiB）"
        );
        // A peer's words never carry control characters into the label.
        let evil = Failure::new(FailureKind::ReceiverFailed, "bad\u{1b}[2J");
        assert!(!failure_text(Tr(Lang::En), &evil).contains('\u{1b}'));
    }
}
