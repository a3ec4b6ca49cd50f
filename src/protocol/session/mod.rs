//! The upload protocol's rules as state machines with no I/O (sans-IO, like quinn-proto):
//! [`ReceiverSession`] for one receiving connection, with the consent rules in [`batch`],
//! and [`SenderSession`] for one sending connection.
//! They take decoded frames, chunk headers, byte counts and decisions, and return what to
//! read next, what to answer and how a file ended; the drivers in `transfer` only move bytes
//! between sockets, disks and these machines. Because they never touch a socket, every
//! out-of-order message and every count mismatch is tested directly (`tests.rs` beside this
//! file), one fuzz target drives a receiver with arbitrary sequences, and an encrypted
//! channel can carry the same sessions unchanged.

pub mod batch;
#[cfg(test)]
mod eager_tests;
mod receiver;
mod sender;
#[cfg(test)]
mod sender_tests;
#[cfg(test)]
mod tests;

pub use batch::{Batch, Consent, Refusal, consent};
pub use receiver::{ChunkStep, Expect, FrameStep, ReceiverSession};
pub use sender::{
    Answer, BATCH_FRAME_NAME_BYTES, EAGER_WINDOW_BYTES, EAGER_WINDOW_FILES, SenderSession,
    batch_frames,
};

/// A peer broke the protocol's order or accounting (or the driver asked something the state
/// does not allow). The connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("unexpected message: {got} where {expected} belongs")]
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    #[error("peer sent more data than it offered")]
    TooMuchData,
    #[error("too many files on one connection (the limit is {0})")]
    TooManyFiles(u64),
    #[error("batch announcement too long")]
    BatchTooLong,
    #[error("a batch continuation changed the announced totals")]
    BatchTotalsChanged,
    #[error("the sender answered start {agreed} to a resume at {offered}")]
    BadStart { offered: u64, agreed: u64 },
    #[error("a resume at {offset} does not fit a file of {size} bytes")]
    BadResume { offset: u64, size: u64 },
    #[error("no file is on offer")]
    NoOffer,
    #[error("plain senders cannot be refused: the connection ends")]
    PlainRefused,
    #[error("the file's data is not complete")]
    Incomplete,
    #[error("an eager offer before the receiver announced eager_max")]
    EagerNotAnnounced,
    #[error("an eager offer of {size} bytes, over the announced eager_max of {max}")]
    EagerTooLarge { size: u64, max: u64 },
    #[error("bad folder: {0}")]
    BadFolder(&'static str),
}
