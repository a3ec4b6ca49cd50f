//! The receiving side of one upload connection, with no I/O: it takes what the driver read
//! (decoded frames, chunk headers, byte counts) and the driver's decisions, enforces the
//! message order and the byte accounting of [`crate::protocol`], and says what to read next
//! and what to answer. The driver (`transfer::server`) moves bytes between socket, disk and
//! this machine, hashes, and asks its user; every rule about *what may come when* is here.
//!
//! One file's life, Ferry: `Idle` → (offer) `Offered` → [`ReceiverSession::accept`] →
//! (`AwaitStart` → start) → `Data` → [`ReceiverSession::data_complete`] → `AwaitEnd` → (end)
//! `Idle`. Plain: `Idle` → `Offered` → accept → `Data` → complete → `Idle`. A decline
//! returns a Ferry connection to `Idle`; a plain sender cannot be declined (its bytes would
//! follow regardless), so the connection ends. An eager offer (see
//! [`ReceiverSession::take_eager`]) is accepted into `Data` at once; declined, its data is
//! still read, into `Data` marked as dropped, and its `end` is [`FrameStep::Discarded`].
//! Any error leaves the machine `Broken`.

use super::super::{CancelCode, Chunk, FolderListing, Header, Mode, ReceiverMsg, SenderMsg};
use super::SessionError;
use super::batch::Batch;

mod consent;
mod folder;
mod names;

use names::{expected_in, msg_kind};

/// What the driver should read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A frame (a header, `start`, `end` or `cancel`); a clean end of stream is fine only
    /// while [`ReceiverSession::at_boundary`].
    Frame,
    /// A 4-byte chunk header (Ferry data).
    ChunkHeader,
    /// Up to this many raw data bytes (the rest of the chunk, or of a plain file).
    Data(u64),
    /// Every byte of the file arrived: call [`ReceiverSession::data_complete`].
    DataComplete,
    /// Waiting for the driver's decision on an offer ([`ReceiverSession::accept`] or
    /// [`ReceiverSession::decline`]).
    Decision,
    /// The connection can carry nothing more.
    Nothing,
}

/// A frame's meaning, once it fits the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameStep {
    /// A batch announcement was recorded; read on.
    Batch,
    /// A file is offered: decide with [`ReceiverSession::consent`], then accept or decline.
    Offer { header: Header, mode: Mode },
    /// The sender agreed to resume at this offset.
    Resume { offset: u64 },
    /// The sender's file does not match the kept prefix: empty the partial, data from 0.
    Restart,
    /// The sender's hash matches the data received: commit the file, then answer
    /// `verified` with its final name.
    Verified,
    /// The sender's hash does not match: the file must not be kept.
    HashMismatch,
    /// The end of a declined eager offer's data, which was dropped: nothing is answered.
    Discarded,
    /// The sender gave up on this file: why, as a code (a person, or a failure of its own),
    /// and its words (peer text); the connection goes on.
    Cancelled { code: CancelCode, reason: String },
    /// Part of a folder announcement was recorded; read on.
    FolderListed,
    /// A whole folder is offered ([`ReceiverSession::folder`]): decide, then
    /// [`ReceiverSession::accept_folder`] or [`ReceiverSession::decline`].
    FolderOffer,
    /// Inside an accepted folder, the data of entry `index` (`size` bytes) follows, from
    /// byte `offset` on (0, or the resumed partial's offset the sender agreed to).
    FolderFile { index: u64, size: u64, offset: u64 },
    /// The sender has no more files for the folder: answer `folder_done`.
    FolderEnd,
}

/// What a chunk header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStep {
    /// Data follows.
    Data,
    /// The sender cancels the file; its `cancel` frame follows.
    CancelFollows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Offered {
        mode: Mode,
        size: u64,
        /// Its data follows without waiting for the answer (see [`ReceiverSession::decline`]).
        eager: bool,
    },
    AwaitStart {
        size: u64,
        offset: u64,
    },
    Data {
        mode: Mode,
        size: u64,
        received: u64,
        left_in_chunk: u64,
    },
    AwaitCancel,
    AwaitEnd {
        ours: [u8; 32],
    },
    /// A folder announcement spans several frames: more follow.
    Listing,
    /// Every entry of a folder was listed: waiting for the driver's decision.
    FolderOffered,
    /// Inside an accepted folder, between its files.
    InFolder,
    Broken,
}

/// One connection's receiving state (see the module docs).
#[derive(Debug, Clone)]
pub struct ReceiverSession {
    max_files: u64,
    mode: Option<Mode>,
    batch: Option<Batch>,
    /// Headers read so far.
    files: u64,
    /// The user's answer about the announced batch, once asked.
    decision: Option<bool>,
    /// Files and bytes the user accepted so far (bounded by the batch).
    approved: (u64, u64),
    /// The folder being announced or received, from its first frame to its end.
    folder: Option<FolderListing>,
    /// Resuming a folder: the entry whose partial was offered, and its offset.
    folder_partial: Option<(u64, u64)>,
    /// The largest eager offer this receiver takes, said in each accept (`None`: none).
    eager_max: Option<u64>,
    /// What an accept already announced: eager offers are allowed up to this size.
    eager_announced: Option<u64>,
    /// The file whose data is being read is a declined eager offer: it is read and dropped,
    /// and its `end` gets no verdict ([`FrameStep::Discarded`]).
    discarding: bool,
    state: State,
}

impl ReceiverSession {
    /// A new connection that may offer at most `max_files` files.
    pub fn new(max_files: u64) -> Self {
        Self {
            max_files,
            mode: None,
            batch: None,
            files: 0,
            decision: None,
            approved: (0, 0),
            folder: None,
            folder_partial: None,
            eager_max: None,
            eager_announced: None,
            discarding: false,
            state: State::Idle,
        }
    }

    /// Takes eager offers of files up to `max_bytes` from now on (Ferry only: announced in
    /// every accept; see "Eager small files" in [`crate::protocol`]).
    pub fn take_eager(&mut self, max_bytes: u64) {
        self.eager_max = Some(max_bytes);
    }

    /// True while the data being read belongs to a declined eager offer: drop it.
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    /// Which protocol the connection speaks, once its first frame said so.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// True between files: a clean end of stream here is the sender's normal goodbye.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Idle
    }

    /// What the driver should read (or do) next.
    pub fn expect(&self) -> Expect {
        match &self.state {
            State::Idle
            | State::AwaitStart { .. }
            | State::AwaitCancel
            | State::AwaitEnd { .. }
            | State::Listing
            | State::InFolder => Expect::Frame,
            State::Offered { .. } | State::FolderOffered => Expect::Decision,
            State::Data {
                mode,
                size,
                received,
                left_in_chunk,
            } => {
                if received == size {
                    Expect::DataComplete
                } else if *mode == Mode::Plain {
                    Expect::Data(size - received)
                } else if *left_in_chunk == 0 {
                    Expect::ChunkHeader
                } else {
                    Expect::Data(*left_in_chunk)
                }
            }
            State::Broken => Expect::Nothing,
        }
    }

    /// Bytes of the current file received so far (including a resumed prefix).
    pub fn received(&self) -> u64 {
        match self.state {
            State::Data { received, .. } => received,
            _ => 0,
        }
    }

    /// Takes a decoded frame.
    pub fn on_frame(&mut self, msg: SenderMsg) -> Result<FrameStep, SessionError> {
        let step = self.frame(msg);
        if step.is_err() {
            self.state = State::Broken;
        }
        step
    }

    fn frame(&mut self, msg: SenderMsg) -> Result<FrameStep, SessionError> {
        match (&self.state, msg) {
            // The batch announcement: one or more frames before the first offer.
            (
                State::Idle,
                SenderMsg::Batch {
                    count,
                    bytes,
                    names,
                    sizes,
                },
            ) if self.files == 0 && self.mode != Some(Mode::Plain) => {
                let batch = self.batch.get_or_insert_with(|| Batch::new(count, bytes));
                batch.extend(count, bytes, names, sizes, self.max_files)?;
                self.mode = Some(Mode::Ferry);
                Ok(FrameStep::Batch)
            }
            (
                State::Idle | State::Listing,
                SenderMsg::Folder {
                    name,
                    count,
                    bytes,
                    entries,
                    resume_key,
                    msg,
                },
            ) if self.mode != Some(Mode::Plain) => {
                if self.state == State::Idle {
                    // Every entry, folders too, counts against the connection's limit, and
                    // the folder itself once (so endless empty folders cannot be offered).
                    self.files = self.files.saturating_add(count).saturating_add(1);
                    if self.files > self.max_files {
                        return Err(SessionError::TooManyFiles(self.max_files));
                    }
                }
                let listing = self
                    .folder
                    .get_or_insert_with(|| FolderListing::new(name.clone(), count, bytes));
                if self.state == State::Idle {
                    listing.resume_key = resume_key;
                    listing.msg = msg;
                }
                listing.extend(&name, count, bytes, entries)?;
                self.mode = Some(Mode::Ferry);
                if listing.is_complete() {
                    self.state = State::FolderOffered;
                    Ok(FrameStep::FolderOffer)
                } else {
                    self.state = State::Listing;
                    Ok(FrameStep::FolderListed)
                }
            }
            (State::InFolder, SenderMsg::File { index, offset }) => {
                let size = match self.folder.as_mut() {
                    Some(folder) => folder.take_file(index)?,
                    None => return Err(SessionError::NoOffer),
                };
                // Only the offered partial may be resumed, only at its offset.
                if offset > 0 && self.folder_partial != Some((index, offset)) {
                    return Err(SessionError::BadStart {
                        offered: self.folder_partial.map_or(0, |(_, o)| o),
                        agreed: offset,
                    });
                }
                self.state = State::Data {
                    mode: Mode::Ferry,
                    size,
                    received: offset,
                    left_in_chunk: 0,
                };
                Ok(FrameStep::FolderFile {
                    index,
                    size,
                    offset,
                })
            }
            (State::InFolder, SenderMsg::FolderEnd) => {
                self.folder = None;
                self.folder_partial = None;
                self.state = State::Idle;
                Ok(FrameStep::FolderEnd)
            }
            (State::Idle, SenderMsg::Plain(header)) if self.mode != Some(Mode::Ferry) => {
                self.offered(header, Mode::Plain)
            }
            (State::Idle, SenderMsg::Offer(header)) if self.mode != Some(Mode::Plain) => {
                self.offered(header, Mode::Ferry)
            }
            (State::AwaitStart { offset, size }, SenderMsg::Start { offset: agreed }) => {
                let (offset, size) = (*offset, *size);
                let (received, step) = match agreed {
                    0 => (0, FrameStep::Restart),
                    agreed if agreed == offset => (offset, FrameStep::Resume { offset }),
                    agreed => {
                        return Err(SessionError::BadStart {
                            offered: offset,
                            agreed,
                        });
                    }
                };
                self.state = State::Data {
                    mode: Mode::Ferry,
                    size,
                    received,
                    left_in_chunk: 0,
                };
                Ok(step)
            }
            (State::AwaitCancel | State::AwaitEnd { .. }, SenderMsg::Cancel { code, reason }) => {
                self.discarding = false;
                self.state = self.between_files();
                Ok(FrameStep::Cancelled { code, reason })
            }
            (State::AwaitEnd { ours }, SenderMsg::End { blake3 }) => {
                let matches = *ours == blake3;
                self.state = self.between_files();
                if std::mem::take(&mut self.discarding) {
                    return Ok(FrameStep::Discarded);
                }
                Ok(if matches {
                    FrameStep::Verified
                } else {
                    FrameStep::HashMismatch
                })
            }
            (state, msg) => Err(SessionError::Unexpected {
                got: msg_kind(&msg),
                expected: expected_in(state, self.mode),
            }),
        }
    }

    /// Where a file's end leaves the connection: inside its folder, or between files.
    fn between_files(&self) -> State {
        if self.folder.is_some() {
            State::InFolder
        } else {
            State::Idle
        }
    }

    fn offered(&mut self, header: Header, mode: Mode) -> Result<FrameStep, SessionError> {
        // The frame said which protocol it speaks, refused or not (a Ferry sender is told why).
        self.mode = Some(mode);
        self.files += 1;
        if self.files > self.max_files {
            return Err(SessionError::TooManyFiles(self.max_files));
        }
        // Its data is on its way already: one this receiver never allowed cannot be taken.
        if header.eager {
            match self.eager_announced {
                None => return Err(SessionError::EagerNotAnnounced),
                Some(max) if header.file_size > max => {
                    return Err(SessionError::EagerTooLarge {
                        size: header.file_size,
                        max,
                    });
                }
                Some(_) => {}
            }
        }
        self.state = State::Offered {
            mode,
            size: header.file_size,
            eager: header.eager,
        };
        Ok(FrameStep::Offer { header, mode })
    }

    /// Takes the offered file. Data starts at `offset`: for a Ferry resume (`offset > 0`,
    /// with the kept prefix's hash) the sender answers `start` first. Returns the `accept`
    /// to send, or `None` for a plain sender (which is never answered).
    pub fn accept(
        &mut self,
        offset: u64,
        saved_as: String,
        prefix_blake3: Option<[u8; 32]>,
    ) -> Result<Option<ReceiverMsg>, SessionError> {
        let State::Offered { mode, size, eager } = self.state else {
            self.state = State::Broken;
            return Err(SessionError::NoOffer);
        };
        if offset > size
            || (offset > 0) != prefix_blake3.is_some()
            || (offset > 0 && (mode == Mode::Plain || eager))
        {
            self.state = State::Broken;
            return Err(SessionError::BadResume { offset, size });
        }
        self.state = if offset > 0 {
            State::AwaitStart { size, offset }
        } else {
            State::Data {
                mode,
                size,
                received: 0,
                left_in_chunk: 0,
            }
        };
        if mode == Mode::Ferry {
            self.eager_announced = self.eager_max;
        }
        Ok((mode == Mode::Ferry).then(|| ReceiverMsg::Accept {
            offset,
            saved_as,
            prefix_blake3: prefix_blake3.map(|h| blake3::Hash::from_bytes(h).to_hex().to_string()),
            eager_max: self.eager_max,
        }))
    }

    /// Refuses the offered file. A Ferry sender is told and may offer the next one; a plain
    /// sender cannot be told, and its bytes would follow anyway: the connection must end
    /// (`Err`). A declined eager offer's data is on its way: it is read and dropped
    /// ([`ReceiverSession::discarding`]) up to its `end` or cancel; `offer_again` asks the
    /// sender to offer it again the ordinary way (said for eager offers only).
    pub fn decline(
        &mut self,
        reason: String,
        offer_again: bool,
    ) -> Result<ReceiverMsg, SessionError> {
        let offer_again = match self.state {
            State::Offered {
                mode: Mode::Ferry,
                eager: true,
                size,
            } => {
                self.discarding = true;
                self.state = State::Data {
                    mode: Mode::Ferry,
                    size,
                    received: 0,
                    left_in_chunk: 0,
                };
                offer_again
            }
            State::Offered {
                mode: Mode::Ferry, ..
            } => {
                self.state = State::Idle;
                false
            }
            State::FolderOffered => {
                self.folder = None;
                self.state = State::Idle;
                false
            }
            State::Offered {
                mode: Mode::Plain, ..
            } => {
                self.state = State::Broken;
                return Err(SessionError::PlainRefused);
            }
            _ => {
                self.state = State::Broken;
                return Err(SessionError::NoOffer);
            }
        };
        Ok(ReceiverMsg::Decline {
            reason,
            offer_again,
        })
    }

    /// Takes a Ferry chunk header.
    pub fn on_chunk_header(&mut self, chunk: Chunk) -> Result<ChunkStep, SessionError> {
        let step = match (&mut self.state, chunk) {
            (
                State::Data {
                    mode: Mode::Ferry,
                    size,
                    received,
                    left_in_chunk: left @ 0,
                },
                Chunk::Data(n),
            ) if *received < *size => {
                if n as u64 > *size - *received {
                    Err(SessionError::TooMuchData)
                } else {
                    *left = n as u64;
                    Ok(ChunkStep::Data)
                }
            }
            (
                State::Data {
                    mode: Mode::Ferry,
                    left_in_chunk: 0,
                    ..
                },
                Chunk::Cancel,
            ) => {
                self.state = State::AwaitCancel;
                Ok(ChunkStep::CancelFollows)
            }
            _ => Err(SessionError::Unexpected {
                got: "a chunk header",
                expected: expected_in(&self.state, self.mode),
            }),
        };
        if step.is_err() {
            self.state = State::Broken;
        }
        step
    }

    /// Counts `n` data bytes read, which [`Expect::Data`] allowed.
    pub fn on_data(&mut self, n: u64) -> Result<(), SessionError> {
        match &mut self.state {
            State::Data {
                mode,
                size,
                received,
                left_in_chunk,
            } => {
                let allowed = match mode {
                    Mode::Plain => *size - *received,
                    Mode::Ferry => *left_in_chunk,
                };
                if n > allowed {
                    self.state = State::Broken;
                    return Err(SessionError::TooMuchData);
                }
                *received += n;
                if *mode == Mode::Ferry {
                    *left_in_chunk -= n;
                }
                Ok(())
            }
            _ => {
                let expected = expected_in(&self.state, self.mode);
                self.state = State::Broken;
                Err(SessionError::Unexpected {
                    got: "data",
                    expected,
                })
            }
        }
    }

    /// Every byte arrived. A plain file is complete (commit it, unverified) and the
    /// connection is between files again; a Ferry file waits for the sender's `end`, which
    /// is compared with `ours`, the hash of everything received.
    pub fn data_complete(&mut self, ours: [u8; 32]) -> Result<Mode, SessionError> {
        match self.state {
            State::Data {
                mode,
                size,
                received,
                ..
            } if size == received => {
                self.state = match mode {
                    Mode::Plain => State::Idle,
                    Mode::Ferry => State::AwaitEnd { ours },
                };
                Ok(mode)
            }
            _ => {
                self.state = State::Broken;
                Err(SessionError::Incomplete)
            }
        }
    }

    /// The connection failed (an I/O error, a cancel from this side): nothing more is read.
    pub fn break_off(&mut self) {
        self.state = State::Broken;
    }
}
