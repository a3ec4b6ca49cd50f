//! Consent rules, pure: what a sender's batch announcement covers, and whether an offer is
//! taken without asking, asked about, or refused.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::super::Mode;
use super::SessionError;

/// The most bytes of names a batch announcement may list in all (its frames are bounded
/// each; this bounds how many of them a connection keeps).
pub const MAX_BATCH_NAME_BYTES: usize = 4 * 1024 * 1024;

/// What a Ferry sender announced about its whole upload (`batch` frames before the first
/// offer). A "yes" to it covers exactly the files it lists, by name and size, each once.
#[derive(Debug, Clone)]
pub struct Batch {
    count: u64,
    bytes: u64,
    /// Each listed file's name and, when the sender gave it, size.
    files: Vec<(String, Option<u64>)>,
    /// Bytes of names announced, bounded by [`MAX_BATCH_NAME_BYTES`].
    name_bytes: usize,
    /// Names announced so far (at most `count`).
    listed: u64,
    /// The listed files not yet offered: per name, their sizes.
    unclaimed: HashMap<u64, Vec<usize>>,
    /// Keys `unclaimed` by a hash of each name (random per batch, so a peer cannot pile its
    /// names into one bucket), so names are stored once, in `files`.
    hasher: RandomState,
}

impl Batch {
    pub fn new(count: u64, bytes: u64) -> Self {
        Self {
            count,
            bytes,
            files: Vec::new(),
            name_bytes: 0,
            listed: 0,
            unclaimed: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    /// Files and bytes the sender announced in all.
    pub fn totals(&self) -> (u64, u64) {
        (self.count, self.bytes)
    }

    /// Every listed file: name (peer text) and size when given.
    pub fn files(&self) -> &[(String, Option<u64>)] {
        &self.files
    }

    /// Adds one `batch` frame's names. Every frame must repeat the same totals, and the
    /// listing may not outgrow them or the connection's file limit.
    pub fn extend(
        &mut self,
        count: u64,
        bytes: u64,
        names: Vec<String>,
        sizes: Vec<u64>,
        max_files: u64,
    ) -> Result<(), SessionError> {
        if count != self.count || bytes != self.bytes {
            return Err(SessionError::BatchTotalsChanged);
        }
        // Sizes that do not match the names one to one say nothing.
        let sizes_match = sizes.len() == names.len();
        for (i, name) in names.into_iter().enumerate() {
            self.name_bytes += name.len();
            self.listed += 1;
            if self.listed > count || self.name_bytes > MAX_BATCH_NAME_BYTES {
                return Err(SessionError::BatchTooLong);
            }
            // Files past the connection's limit are never taken: no need to keep them (the
            // offer that exceeds the limit ends the connection, saying why).
            if self.files.len() as u64 >= max_files {
                continue;
            }
            let size = if sizes_match {
                sizes.get(i).copied()
            } else {
                None
            };
            let key = self.hasher.hash_one(&name);
            self.unclaimed
                .entry(key)
                .or_default()
                .push(self.files.len());
            self.files.push((name, size));
        }
        Ok(())
    }

    /// Whether one more file of `size` stays within the announced totals, given what was
    /// approved so far (files, bytes).
    pub fn covers(&self, approved: (u64, u64), size: u64) -> bool {
        approved.0 < self.count && approved.1.saturating_add(size) <= self.bytes
    }

    /// Whether the batch lists this file (by name, and by size when sizes were given) and
    /// it was not offered before; if so, it is claimed.
    pub fn claim(&mut self, name: &str, size: u64) -> bool {
        let Some(listed) = self.unclaimed.get_mut(&self.hasher.hash_one(name)) else {
            return false;
        };
        let files = &self.files;
        let Some(at) = listed.iter().position(|&i| {
            let (listed_name, listed_size) = &files[i];
            listed_name == name && listed_size.is_none_or(|s| s == size)
        }) else {
            return false;
        };
        listed.swap_remove(at);
        true
    }
}

/// Whether an offer is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Take it; `counted` when a user's answer covered it (it counts against the batch).
    Accept { counted: bool },
    /// Ask the user: about the whole announced batch (`batch`), or about this file alone.
    Ask { batch: bool },
    /// Refuse it.
    Refuse(Refusal),
}

/// Why an offer was refused before any byte was written: the consent rule's own reasons, and
/// those a receiving driver adds (no answer in time, no room, no file could be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the receiver asks before accepting, and plain senders cannot be asked (the receiver accepts them only when it accepts everyone without asking)"
    )]
    PlainCannotBeAsked,
    #[error(
        "the receiver requires encryption, and plain senders cannot encrypt (send from Ferry, with encryption on)"
    )]
    NotEncrypted,
    #[error("the receiver accepts only its trusted devices (pair with a code first)")]
    NotTrusted,
    #[error("declined by the receiver")]
    DeclinedByUser,
    #[error("nobody answered on the receiving side within {secs} s")]
    NoAnswer { secs: u64 },
    #[error("not enough disk space: the file needs {needed} bytes, {available} are free")]
    NoSpace { needed: u64, available: u64 },
    #[error("the file cannot be created")]
    CannotCreate,
    #[error("no file was offered")]
    NotOffered,
    /// An eager offer the receiver would have to ask its user about: never asked (its data
    /// is on its way, and would wait unread while the user decides), declined instead.
    #[error(
        "the file was sent without waiting for an answer, and the receiver must ask about it first (it was not in the batch it accepted, or it changed since): it is to be offered again"
    )]
    EagerUnasked,
    #[error(
        "the receiver is receiving this folder on another connection right now; send it again once that transfer ends"
    )]
    FolderBusy,
}

impl Refusal {
    /// Nobody answered within `timeout`, said in whole seconds rounded up (a timeout under a
    /// second is "within 1 s", not "within 0 s").
    pub fn no_answer(timeout: std::time::Duration) -> Self {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        Self::NoAnswer { secs }
    }
}

/// The consent rule. Auto-accept takes everything (the original's behaviour). Otherwise a
/// plain sender, which cannot be asked, is refused; a file the user's earlier answer about
/// the batch covers (`covered`: listed, not offered before, within the totals) gets that
/// answer; anything else is asked about: as the batch when it is covered but the batch was
/// not asked about yet, alone when it is outside the batch.
pub fn consent(auto_accept: bool, mode: Mode, covered: bool, decision: Option<bool>) -> Consent {
    match (auto_accept, mode, covered, decision) {
        (true, _, _, _) => Consent::Accept { counted: false },
        (false, Mode::Plain, _, _) => Consent::Refuse(Refusal::PlainCannotBeAsked),
        (false, Mode::Ferry, true, Some(true)) => Consent::Accept { counted: true },
        (false, Mode::Ferry, true, Some(false)) => Consent::Refuse(Refusal::DeclinedByUser),
        (false, Mode::Ferry, covered, _) => Consent::Ask { batch: covered },
    }
}
