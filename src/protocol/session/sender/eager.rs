//! The sending session's eager small files (see "Eager small files" in
//! [`crate::protocol`]): a file of at most the receiver's `eager_max` bytes is offered and
//! sent at once, and its accept or decline comes later, in file order. Apart from
//! `sender.rs` only to keep each file short; the rules are the same machine's.

use super::super::super::{Header, Mode, ReceiverMsg, SenderMsg};
use super::super::SessionError;
use super::{Answer, SenderSession, State};

/// At most this many eager files may wait for their accept. With files of up to
/// `eager_max` (Ferry receivers say 256 KiB), 64 files keep a 1-5 ms LAN round trip busy at
/// 13-64 k files per second, while a receiver that stops answering (asking its user) holds
/// back only a bounded burst.
pub const EAGER_WINDOW_FILES: usize = 64;

/// At most this many bytes of eager files may wait for their accept: 4 MiB keeps a 10 ms
/// round trip busy at 400 MB/s; a declined eager file's bytes are read and thrown away,
/// which this bounds too. It does not always fit what the two ends' socket buffers hold
/// (on loopback about 4 MiB, on a LAN often far less), so a receiver that stops reading
/// to ask its user can leave the sender blocked in a write (after its `waiting`, the
/// sender sends no more, but what went out before stays): Ferry's receiver therefore
/// never asks about an eager offer (it declines one it would have to ask about).
pub const EAGER_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// What became of the eager file being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Its answer is still owed.
    Owed,
    Accepted,
    Declined,
}

impl SenderSession {
    /// The largest file the receiver takes eagerly, once any accept said so.
    pub fn eager_max(&self) -> Option<u64> {
        self.eager_max
    }

    /// How many eager files' answers (accept or decline) are still owed.
    pub fn accepts_owed(&self) -> usize {
        self.eager_owed.len() + usize::from(self.eager_now == Some(Fate::Owed))
    }

    /// Whether a file of `size` bytes may go eagerly now: the receiver takes it, and it fits
    /// the window on its own (a receiver announcing a huge `eager_max` does not make large
    /// files go unasked).
    pub fn may_send_eager(&self, size: u64) -> bool {
        self.mode == Mode::Ferry
            && self.state == State::Idle
            && self.folder.is_none()
            && self
                .eager_max
                .is_some_and(|max| size <= max.min(EAGER_WINDOW_BYTES))
    }

    /// Offers a file eagerly: the frame to send, after which its data follows at once (no
    /// answer awaited; see [`SenderSession::accepts_owed`]). An eager offer never resumes.
    pub fn offer_eager(&mut self, header: Header) -> Result<SenderMsg, SessionError> {
        if !self.may_send_eager(header.file_size) {
            return Err(self.broken("an eager offer"));
        }
        self.state = State::Data {
            size: header.file_size,
            sent: 0,
        };
        self.eager_now = Some(Fate::Owed);
        Ok(SenderMsg::Offer(Header {
            resume_key: None,
            eager: true,
            ..header
        }))
    }

    /// The file being sent is done with: its `end` went out (`whole`) or it was cancelled.
    /// A verdict is owed for it once it is accepted and whole.
    pub(super) fn ended_here(&mut self, whole: bool) {
        match self.eager_now.take() {
            None => self.owed += u64::from(whole),
            Some(Fate::Owed) => self.eager_owed.push_back(whole),
            Some(Fate::Accepted) => self.owed += u64::from(whole),
            Some(Fate::Declined) => {}
        }
    }

    /// An answer that belongs to the oldest eager file whose answer is owed (`Ok`), or the
    /// message back (`Err`) for the usual rules. While eager answers are owed, a `failed`
    /// with no verdict owed is the receiver giving up on the connection: every file whose
    /// answer or verdict is owed fails with it.
    pub(super) fn eager_answer(
        &mut self,
        msg: ReceiverMsg,
    ) -> Result<Result<Answer, ReceiverMsg>, SessionError> {
        if self.accepts_owed() == 0 || self.folder.is_some() || self.state == State::Broken {
            return Ok(Err(msg));
        }
        Ok(Ok(match msg {
            ReceiverMsg::Waiting { waiting_for } => Answer::Waiting(waiting_for),
            ReceiverMsg::Accept {
                offset: 0,
                saved_as,
                prefix_blake3: None,
                ..
            } => {
                self.answered(true);
                Answer::EagerAccepted { saved_as }
            }
            ReceiverMsg::Accept { .. } => {
                return Err(self.broken("an eager file's accept with an offset"));
            }
            ReceiverMsg::Decline {
                reason,
                offer_again,
            } => {
                self.answered(false);
                Answer::EagerDeclined {
                    reason,
                    offer_again,
                }
            }
            ReceiverMsg::Failed { reason } if self.owed == 0 => {
                self.state = State::Broken;
                Answer::Failed { reason }
            }
            other => return Ok(Err(other)),
        }))
    }

    /// The oldest owed eager answer came.
    fn answered(&mut self, accepted: bool) {
        match self.eager_owed.pop_front() {
            Some(whole) => self.owed += u64::from(accepted && whole),
            None => {
                self.eager_now = Some(if accepted {
                    Fate::Accepted
                } else {
                    Fate::Declined
                });
            }
        }
    }
}
