//! The words the receiving session's errors use: what a sender's message is, and what each
//! state waits for. Apart from `receiver.rs` only to keep each file short.

use super::super::super::{Mode, SenderMsg};
use super::State;

/// A sender message's kind, for error messages.
pub(super) fn msg_kind(msg: &SenderMsg) -> &'static str {
    match msg {
        SenderMsg::Plain(_) => "a plain header",
        SenderMsg::Offer(_) => "an offer",
        SenderMsg::Batch { .. } => "a batch announcement",
        SenderMsg::Start { .. } => "a start",
        SenderMsg::End { .. } => "an end",
        SenderMsg::Cancel { .. } => "a cancel",
        SenderMsg::Secure { .. } => "a secure hello",
        SenderMsg::Probe { .. } => "a speed test",
        SenderMsg::Folder { .. } => "a folder announcement",
        SenderMsg::File { .. } => "a folder's file",
        SenderMsg::FolderEnd => "a folder end",
    }
}

/// What the state waits for, for error messages.
pub(super) fn expected_in(state: &State, mode: Option<Mode>) -> &'static str {
    match (state, mode) {
        (State::Idle, None) => "a file header",
        (State::Idle, Some(Mode::Plain)) => "the next plain header",
        (State::Idle, Some(Mode::Ferry)) => "the next offer",
        (State::Offered { .. }, _) => "nothing until the offer is answered",
        (State::AwaitStart { .. }, _) => "a start",
        (State::Data { .. }, _) => "the file's data",
        (State::AwaitCancel, _) => "the cancel after a cancel marker",
        (State::AwaitEnd { .. }, _) => "the end of the file",
        (State::Listing, _) => "the rest of the folder announcement",
        (State::FolderOffered, _) => "nothing until the folder is answered",
        (State::InFolder, _) => "the folder's next file or its end",
        (State::Broken, _) => "nothing (the connection failed)",
    }
}
