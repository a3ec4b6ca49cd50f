//! The sending side of one upload connection, with no I/O: it produces the frames to send,
//! checks every answer of a Ferry receiver against what may come at that point, and counts
//! the bytes of each file. The driver (`transfer::client`) reads files, hashes and writes to
//! the socket; every rule about the order of the exchange is here.
//!
//! One file, Ferry: `Idle` → [`SenderSession::offer`] → `Offered` (answers: `waiting`,
//! then `accept`, `decline` or `cancel`) → with a resume offset, `Resuming` until
//! [`SenderSession::start`] → `Data` ([`SenderSession::sent`] per chunk, or
//! [`SenderSession::cancel`]) → [`SenderSession::end`] → `Idle`, owing the file's verdict
//! (`verified` or `failed`). Plain: `Idle` → offer → `Data` → all bytes sent → `Idle`; a
//! plain receiver never answers.
//!
//! Verdicts are pipelined: the next file may be offered (and sent) before the last one's
//! verdict came. A receiver answers each file's verdict after its end and in file order, so
//! while verdicts are owed a `verified` or `failed` is the oldest owed file's verdict
//! ([`Answer::Verified`], [`Answer::Rejected`]); with none owed a `failed` is the receiver
//! giving up on the connection ([`Answer::Failed`]). A receiver that reads one frame at a
//! time still answers file N before it reads offer N+1, which simply waits in the socket.
//!
//! Eager files (`eager.rs` beside this file): once an accept said `eager_max`, a small file
//! goes `Idle` → [`SenderSession::offer_eager`] → `Data` at once, and its accept or decline
//! comes later, in file order ([`Answer::EagerAccepted`], [`Answer::EagerDeclined`]).

use super::super::{
    CHUNK_LEN, CancelCode, FileFailed, FolderEntry, Header, Mode, ReceiverMsg, SenderMsg, WaitFor,
    encode_chunk_header, folder_frames,
};
use super::SessionError;

mod eager;
pub use eager::{EAGER_WINDOW_BYTES, EAGER_WINDOW_FILES};

/// What a receiver's answer means for the file on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The receiver holds its answer (asking its user, or why else): keep waiting
    /// (longer).
    Waiting(WaitFor),
    /// Send everything from byte 0; the receiver will save it as `saved_as`.
    Accepted { saved_as: String },
    /// The oldest eager file whose answer was owed is accepted (its data went out or is
    /// going out); its verdict follows its end.
    EagerAccepted { saved_as: String },
    /// The oldest eager file whose answer was owed is declined: the receiver drops its data.
    /// `offer_again`: only because it came eagerly (the receiver would have asked its user
    /// about it): the sender offers it again, the ordinary way.
    EagerDeclined { reason: String, offer_again: bool },
    /// The receiver holds the first `offset` bytes: compare `prefix` with the hash of ours,
    /// then call [`SenderSession::start`].
    Resume { offset: u64, prefix: [u8; 32] },
    /// The file is refused; the next one may be offered.
    Declined { reason: String },
    /// The verdict on the oldest file whose end went out: the hash matched, it is saved
    /// under `saved_as`.
    Verified { saved_as: String },
    /// The verdict on the oldest file whose end went out: the receiver did not keep it (its
    /// reason). Later files are not concerned.
    Rejected { reason: String },
    /// The receiver gave up: on a folder, or on the file on offer and the connection.
    Failed { reason: String },
    /// The receiver stopped the transfer (why, as a code, and its words) and closes the
    /// connection.
    PeerCancelled { code: CancelCode, reason: String },
    /// The whole folder is accepted, to be created as `saved_as`: send its files. When
    /// resuming, `partial` is the one file whose first bytes the receiver holds (index,
    /// offset, BLAKE3 of those bytes): compare, then [`SenderSession::file`] with that
    /// offset or 0.
    FolderAccepted {
        saved_as: String,
        partial: Option<(u64, u64, [u8; 32])>,
    },
    /// Resuming a folder (before its accept): files the receiver holds whole, by index, with
    /// the BLAKE3 of what it holds; a file whose own hash is that need not be sent.
    FolderHave { files: Vec<(u64, [u8; 32])> },
    /// Verdicts on files of the folder, by index.
    Files {
        verified: Vec<u64>,
        failed: Vec<FileFailed>,
    },
    /// Every verdict on the folder's files was sent: the connection is between files.
    FolderDone { verified: u64, failed: u64 },
}

impl Answer {
    /// About a file that already went out (or is going out): a verdict on a file owed one,
    /// or an eager file's accept or decline. Wherever a sender reads answers it takes these
    /// as they come, whatever it waits for.
    pub fn is_about_a_sent_file(&self) -> bool {
        matches!(
            self,
            Answer::Verified { .. }
                | Answer::Rejected { .. }
                | Answer::EagerAccepted { .. }
                | Answer::EagerDeclined { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Offered {
        size: u64,
    },
    Resuming {
        size: u64,
        offset: u64,
    },
    Data {
        size: u64,
        sent: u64,
    },
    /// A folder was announced: waiting for its accept or decline.
    FolderOffered,
    /// Inside an accepted folder, between files; the next `file` index must be at least
    /// `next`.
    InFolder {
        next: u64,
    },
    /// `folder_end` sent: verdicts until `folder_done`.
    FolderEnding,
    Broken,
}

/// One connection's sending state (see the module docs).
#[derive(Debug, Clone)]
pub struct SenderSession {
    mode: Mode,
    state: State,
    /// Inside an accepted folder: the entries' sizes, and the next index allowed.
    folder: Option<(Vec<Option<u64>>, u64)>,
    /// Resuming a folder: the entry whose partial the receiver offered, and its offset.
    folder_partial: Option<(u64, u64)>,
    /// Files whose end went out and whose verdict has not come yet.
    owed: u64,
    /// The largest eager offer the receiver said it takes (in any accept), if it did.
    eager_max: Option<u64>,
    /// The file being sent is eager: whether its answer came, and which.
    eager_now: Option<eager::Fate>,
    /// Earlier eager files whose answer is owed, oldest first: whether each went out whole
    /// (its verdict will be owed once accepted) or was cancelled.
    eager_owed: std::collections::VecDeque<bool>,
}

impl SenderSession {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            state: State::Idle,
            folder: None,
            folder_partial: None,
            owed: 0,
            eager_max: None,
            eager_now: None,
            eager_owed: std::collections::VecDeque::new(),
        }
    }

    /// How many files' verdicts are still to come.
    pub fn verdicts_owed(&self) -> u64 {
        self.owed
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Offers the next file: the frame to send. A plain file's data follows at once.
    pub fn offer(&mut self, header: Header) -> Result<SenderMsg, SessionError> {
        // Answers are attributed in order: no other offer while an eager one's is owed.
        if self.state != State::Idle || self.accepts_owed() > 0 {
            return Err(self.broken("an offer"));
        }
        let size = header.file_size;
        Ok(match self.mode {
            Mode::Plain => {
                // An empty plain file is complete once its header is out.
                self.state = if size == 0 {
                    State::Idle
                } else {
                    State::Data { size, sent: 0 }
                };
                SenderMsg::Plain(Header {
                    resume_key: None,
                    ..header
                })
            }
            Mode::Ferry => {
                self.state = State::Offered { size };
                SenderMsg::Offer(Header {
                    eager: false,
                    ..header
                })
            }
        })
    }

    /// Announces a folder (Ferry only): the `folder` frames to send, after which the
    /// receiver accepts or declines it as a whole.
    pub fn folder(
        &mut self,
        name: &str,
        entries: &[FolderEntry],
        resume_key: Option<&str>,
        msg: &str,
    ) -> Result<Vec<SenderMsg>, SessionError> {
        // A folder's `failed` means the receiver gave up on it: no file verdict may be owed
        // then, or the two would read alike.
        if self.state != State::Idle
            || self.mode != Mode::Ferry
            || self.owed > 0
            || self.accepts_owed() > 0
        {
            return Err(self.broken("a folder"));
        }
        self.state = State::FolderOffered;
        self.folder = Some((entries.iter().map(|e| e.size).collect(), 0));
        self.folder_partial = None;
        Ok(folder_frames(name, entries, resume_key, msg))
    }

    /// The size of the announced folder's file entry `index`, if it is one.
    fn folder_file_size(&self, index: u64) -> Option<u64> {
        self.folder
            .as_ref()
            .and_then(|(sizes, _)| sizes.get(usize::try_from(index).ok()?).copied().flatten())
    }

    /// Inside an accepted folder: the `file` frame for entry `index`, whose data follows
    /// with no answer awaited, from byte `offset` on: 0, or the offset of the partial the
    /// receiver offered for this entry (when our prefix matched its hash).
    pub fn file(&mut self, index: u64, offset: u64) -> Result<SenderMsg, SessionError> {
        let State::InFolder { next } = self.state else {
            return Err(self.broken("a folder's file"));
        };
        let size = self.folder_file_size(index);
        if offset > 0 && self.folder_partial != Some((index, offset)) {
            return Err(self.broken("a resume the receiver did not offer"));
        }
        match size {
            Some(size) if index >= next => {
                self.state = State::Data { size, sent: offset };
                if let Some((_, sent)) = self.folder.as_mut() {
                    *sent = index + 1;
                }
                Ok(SenderMsg::File { index, offset })
            }
            _ => Err(self.broken("a file index out of order")),
        }
    }

    /// Inside an accepted folder, between files: no more files (`folder_end`).
    pub fn folder_end(&mut self) -> Result<SenderMsg, SessionError> {
        let State::InFolder { .. } = self.state else {
            return Err(self.broken("a folder end"));
        };
        self.state = State::FolderEnding;
        Ok(SenderMsg::FolderEnd)
    }

    /// Where a folder's file leaves the connection once its data and end are out.
    fn after_folder_file(&self) -> State {
        State::InFolder {
            next: self.folder.as_ref().map_or(0, |(_, next)| *next),
        }
    }

    /// Takes a Ferry receiver's message.
    pub fn on_answer(&mut self, msg: ReceiverMsg) -> Result<Answer, SessionError> {
        let in_folder = self.folder.is_some();
        // Any accept may say the receiver takes eager offers (the latest word counts).
        if let ReceiverMsg::Accept {
            eager_max: Some(max),
            ..
        } = &msg
        {
            self.eager_max = Some(*max);
        }
        let msg = match self.eager_answer(msg)? {
            Ok(answer) => return Ok(answer),
            Err(msg) => msg,
        };
        let answer = match (self.state, msg) {
            (_, ReceiverMsg::Cancel { code, reason }) if self.state != State::Broken => {
                self.state = State::Broken;
                return Ok(Answer::PeerCancelled { code, reason });
            }
            (State::FolderOffered, ReceiverMsg::Waiting { waiting_for }) => {
                Answer::Waiting(waiting_for)
            }
            (State::FolderOffered, ReceiverMsg::FolderHave { files }) => {
                let mut held = Vec::with_capacity(files.len());
                for file in files {
                    let hash = blake3::Hash::from_hex(&file.blake3)
                        .map_err(|_| self.broken("a held file with a malformed hash"))?;
                    if self.folder_file_size(file.index).is_none() {
                        return Err(self.broken("a held file that is not a file of the folder"));
                    }
                    held.push((file.index, *hash.as_bytes()));
                }
                Answer::FolderHave { files: held }
            }
            (State::FolderOffered, ReceiverMsg::FolderAccept { saved_as, partial }) => {
                let partial = match partial {
                    None => None,
                    Some(p) => {
                        let fits = self
                            .folder_file_size(p.index)
                            .is_some_and(|size| p.offset > 0 && p.offset <= size);
                        let hash = blake3::Hash::from_hex(&p.prefix_blake3).ok();
                        match (fits, hash) {
                            (true, Some(hash)) => Some((p.index, p.offset, *hash.as_bytes())),
                            _ => return Err(self.broken("a folder partial that does not fit")),
                        }
                    }
                };
                self.folder_partial = partial.map(|(i, offset, _)| (i, offset));
                self.state = State::InFolder { next: 0 };
                Answer::FolderAccepted { saved_as, partial }
            }
            (State::FolderOffered, ReceiverMsg::Decline { reason, .. }) => {
                self.state = State::Idle;
                self.folder = None;
                Answer::Declined { reason }
            }
            (
                State::InFolder { .. } | State::Data { .. } | State::FolderEnding,
                ReceiverMsg::Files { verified, failed },
            ) if in_folder => {
                let sent = self.folder.as_ref().map_or(0, |(_, next)| *next);
                if verified
                    .iter()
                    .chain(failed.iter().map(|f| &f.index))
                    .any(|i| *i >= sent)
                {
                    return Err(self.broken("a verdict on a file not sent"));
                }
                Answer::Files { verified, failed }
            }
            (State::FolderEnding, ReceiverMsg::FolderDone { verified, failed }) => {
                self.state = State::Idle;
                self.folder = None;
                Answer::FolderDone { verified, failed }
            }
            (
                State::FolderOffered | State::InFolder { .. } | State::FolderEnding,
                ReceiverMsg::Failed { reason },
            ) => {
                self.state = State::Broken;
                Answer::Failed { reason }
            }
            // Verdicts come in file order, each after its file's end: while any is owed, a
            // `verified` or `failed` is the oldest owed file's (whatever is on offer now).
            (
                State::Idle | State::Offered { .. } | State::Resuming { .. } | State::Data { .. },
                ReceiverMsg::Verified { saved_as },
            ) if self.owed > 0 && !in_folder => {
                self.owed -= 1;
                Answer::Verified { saved_as }
            }
            (
                State::Idle | State::Offered { .. } | State::Resuming { .. } | State::Data { .. },
                ReceiverMsg::Failed { reason },
            ) if self.owed > 0 && !in_folder => {
                self.owed -= 1;
                Answer::Rejected { reason }
            }
            (State::Offered { .. }, ReceiverMsg::Waiting { waiting_for }) => {
                Answer::Waiting(waiting_for)
            }
            (
                State::Offered { size },
                ReceiverMsg::Accept {
                    offset,
                    saved_as,
                    prefix_blake3,
                    ..
                },
            ) => match (offset, prefix_blake3) {
                (0, None) => {
                    self.state = State::Data { size, sent: 0 };
                    Answer::Accepted { saved_as }
                }
                (offset, Some(hex)) if offset > 0 && offset <= size => {
                    let prefix = blake3::Hash::from_hex(&hex)
                        .map_err(|_| self.broken("an accept with a malformed prefix hash"))?;
                    self.state = State::Resuming { size, offset };
                    Answer::Resume {
                        offset,
                        prefix: *prefix.as_bytes(),
                    }
                }
                _ => return Err(self.broken("an accept whose offset does not fit the file")),
            },
            (State::Offered { .. }, ReceiverMsg::Decline { reason, .. }) => {
                self.state = State::Idle;
                Answer::Declined { reason }
            }
            // The receiver refused the file after data started: the stream is out of step
            // (chunks are in flight), so the connection ends here.
            (State::Data { .. }, ReceiverMsg::Decline { reason, .. }) => {
                self.state = State::Broken;
                Answer::Declined { reason }
            }
            // The receiver gave up (on this file and the connection) at any point of a file:
            // its reason is the answer.
            (
                State::Offered { .. } | State::Resuming { .. } | State::Data { .. },
                ReceiverMsg::Failed { reason },
            ) => {
                self.state = State::Broken;
                Answer::Failed { reason }
            }
            (_, msg) => return Err(self.broken(receiver_kind(&msg))),
        };
        Ok(answer)
    }

    /// After [`Answer::Resume`]: resume at the offset when our prefix hash `matches`, else
    /// start over from byte 0. Returns the `start` frame and where the data starts.
    pub fn start(&mut self, matches: bool) -> Result<(SenderMsg, u64), SessionError> {
        let State::Resuming { size, offset } = self.state else {
            return Err(self.broken("a start"));
        };
        let sent = if matches { offset } else { 0 };
        self.state = State::Data { size, sent };
        Ok((SenderMsg::Start { offset: sent }, sent))
    }

    /// How many bytes the next chunk carries (`None` once every byte is sent).
    pub fn next_chunk(&self) -> Option<usize> {
        match self.state {
            State::Data { size, sent } if sent < size => {
                Some((size - sent).min(CHUNK_LEN as u64) as usize)
            }
            _ => None,
        }
    }

    /// The chunk header to send before `n` bytes (Ferry), or `None` (plain: raw bytes).
    pub fn chunk_header(&self, n: usize) -> Option<[u8; 4]> {
        (self.mode == Mode::Ferry).then(|| encode_chunk_header(n))
    }

    /// Counts `n` bytes sent; a plain file is done (back to `Idle`) once all are.
    pub fn sent(&mut self, n: u64) -> Result<(), SessionError> {
        match self.state {
            State::Data { size, sent } if n <= size - sent => {
                let sent = sent + n;
                self.state = if self.mode == Mode::Plain && sent == size {
                    State::Idle
                } else {
                    State::Data { size, sent }
                };
                Ok(())
            }
            _ => Err(self.broken("data")),
        }
    }

    /// Every byte is sent: the `end` frame with the hash of the whole file.
    pub fn end(&mut self, blake3: [u8; 32]) -> Result<SenderMsg, SessionError> {
        match self.state {
            State::Data { size, sent } if sent == size && self.mode == Mode::Ferry => {
                if self.folder.is_some() {
                    self.state = self.after_folder_file();
                } else {
                    self.state = State::Idle;
                    self.ended_here(true);
                }
                Ok(SenderMsg::End { blake3 })
            }
            _ => Err(self.broken("an end")),
        }
    }

    /// Gives up on the file mid-data: the cancel marker (a zero chunk header) and the
    /// `cancel` frame; the connection stays usable for the next file. Plain receivers cannot
    /// be told: `Err`, and the connection must close.
    pub fn cancel(
        &mut self,
        code: CancelCode,
        reason: String,
    ) -> Result<([u8; 4], SenderMsg), SessionError> {
        match (self.mode, self.state) {
            // Only while bytes are still owed: after the last one the receiver waits for the
            // `end` frame, where a cancel marker would read as a frame length.
            (Mode::Ferry, State::Data { size, sent }) if sent < size => {
                self.state = if self.folder.is_some() {
                    self.after_folder_file()
                } else {
                    self.ended_here(false);
                    State::Idle
                };
                Ok((encode_chunk_header(0), SenderMsg::Cancel { code, reason }))
            }
            _ => Err(self.broken("a cancel")),
        }
    }

    /// True between files (a new offer may go out, verdicts owed or not).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Idle
    }

    /// Marks the connection unusable (an I/O error, a cancel at a point where the stream
    /// cannot stay in step).
    pub fn break_off(&mut self) {
        self.state = State::Broken;
    }

    fn broken(&mut self, got: &'static str) -> SessionError {
        let expected = match self.state {
            State::Idle if self.owed > 0 => "the verdict on the file",
            State::Idle => "nothing between files",
            State::Offered { .. } => "an answer to the offer",
            State::Resuming { .. } => "our start",
            State::Data { .. } => "the file's data",
            State::FolderOffered => "an answer to the folder",
            State::InFolder { .. } => "nothing between a folder's files",
            State::FolderEnding => "the folder's last verdicts",
            State::Broken => "nothing (the connection failed)",
        };
        self.state = State::Broken;
        SessionError::Unexpected { got, expected }
    }
}

fn receiver_kind(msg: &ReceiverMsg) -> &'static str {
    match msg {
        ReceiverMsg::Accept { .. } => "an accept",
        ReceiverMsg::Waiting { .. } => "a waiting",
        ReceiverMsg::Decline { .. } => "a decline",
        ReceiverMsg::Verified { .. } => "a verified",
        ReceiverMsg::Failed { .. } => "a failed",
        ReceiverMsg::Cancel { .. } => "a cancel",
        ReceiverMsg::Secure { .. } => "a secure go-ahead",
        ReceiverMsg::ProbeReady => "a speed-test go-ahead",
        ReceiverMsg::ProbeResult { .. } => "a speed-test result",
        ReceiverMsg::FolderAccept { .. } => "a folder accept",
        ReceiverMsg::FolderHave { .. } => "a folder's held files",
        ReceiverMsg::Files { .. } => "file verdicts",
        ReceiverMsg::FolderDone { .. } => "a folder done",
    }
}

/// How many bytes of names one batch frame carries (keeps it below the frame limit, with
/// room for the JSON escaping of any name a file system allows).
pub const BATCH_FRAME_NAME_BYTES: usize = 32 * 1024;

/// The `batch` frames announcing a whole upload (each file's name and size): as many as the
/// names need, each repeating the totals.
pub fn batch_frames(files: &[(String, u64)]) -> Vec<SenderMsg> {
    let count = files.len() as u64;
    let bytes = files.iter().map(|(_, size)| size).sum();
    let mut frames = Vec::new();
    let mut rest = files;
    while !rest.is_empty() {
        let mut name_bytes = 0;
        let take = rest
            .iter()
            .take_while(|(name, _)| {
                name_bytes += name.len();
                name_bytes <= BATCH_FRAME_NAME_BYTES
            })
            .count()
            .max(1);
        let (frame_files, later) = rest.split_at(take);
        rest = later;
        frames.push(SenderMsg::Batch {
            count,
            bytes,
            names: frame_files.iter().map(|(n, _)| n.clone()).collect(),
            sizes: frame_files.iter().map(|(_, s)| *s).collect(),
        });
    }
    frames
}
