//! The receiving session's folder decisions: consent for a whole folder, and its accept,
//! fresh or as the continuation of an interrupted transfer (held files, a kept partial).
//! Apart from `receiver.rs` only to keep each file short; the rules are the same machine's.

use super::super::super::{FolderListing, FolderPartial, ReceiverMsg, held_frames};
use super::super::SessionError;
use super::super::batch::{Consent, Refusal, consent};
use super::{Mode, ReceiverSession, State};

impl ReceiverSession {
    /// The folder on offer or being received (what a prompt shows, where files go).
    pub fn folder(&self) -> Option<&FolderListing> {
        self.folder.as_ref()
    }

    /// Whether the offered folder may be taken without asking, must be asked about, or is
    /// refused (a folder is always asked about as one batch).
    pub fn folder_consent(&self, auto_accept: bool) -> Consent {
        if self.state != State::FolderOffered {
            return Consent::Refuse(Refusal::NotOffered);
        }
        consent(auto_accept, Mode::Ferry, false, None)
    }

    /// Takes the offered folder, to be created as `saved_as`: its files may follow.
    pub fn accept_folder(&mut self, saved_as: String) -> Result<ReceiverMsg, SessionError> {
        let mut msgs = self.accept_folder_resumed(saved_as, &[], None)?;
        msgs.pop().ok_or(SessionError::NoOffer)
    }

    /// Takes the offered folder as the continuation of an interrupted transfer of it, into
    /// the existing root `saved_as`: `held` lists the files already there whole (index, the
    /// BLAKE3 of what is there), `partial` the one file whose first bytes are there (index,
    /// offset, BLAKE3 of those bytes). Returns the frames to send: `folder_have`s, then
    /// `folder_accept` (the last).
    pub fn accept_folder_resumed(
        &mut self,
        saved_as: String,
        held: &[(u64, [u8; 32])],
        partial: Option<(u64, u64, [u8; 32])>,
    ) -> Result<Vec<ReceiverMsg>, SessionError> {
        let Some(folder) = self
            .folder
            .as_ref()
            .filter(|_| self.state == State::FolderOffered)
        else {
            self.state = State::Broken;
            return Err(SessionError::NoOffer);
        };
        let fits = held.iter().all(|(i, _)| folder.file_size(*i).is_some())
            && partial.is_none_or(|(i, offset, _)| {
                offset > 0 && folder.file_size(i).is_some_and(|size| offset <= size)
            });
        if !fits {
            self.state = State::Broken;
            return Err(SessionError::BadFolder(
                "a resumed entry is not a file of it",
            ));
        }
        self.state = State::InFolder;
        self.folder_partial = partial.map(|(i, offset, _)| (i, offset));
        let mut msgs = held_frames(held);
        msgs.push(ReceiverMsg::FolderAccept {
            saved_as,
            partial: partial.map(|(index, offset, hash)| FolderPartial {
                index,
                offset,
                prefix_blake3: blake3::Hash::from_bytes(hash).to_hex().to_string(),
            }),
        });
        Ok(msgs)
    }
}
