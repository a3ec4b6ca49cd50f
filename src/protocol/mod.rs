//! The Ferry wire protocol: pure encoding and decoding, no sockets, no clocks, no threads.
//!
//! This module documentation is the specification. Everything here is a function from bytes to
//! typed values (or typed errors) and back, so it can be tested exhaustively and fuzzed.
//!
//! # TCP: file uploads
//!
//! ## Frames
//!
//! Every control message is a *frame*:
//!
//! ```text
//! +----------------------+---------------------------------------------+
//! | L: i32 little-endian | L bytes: one UTF-8 JSON object              |
//! +----------------------+---------------------------------------------+
//! ```
//!
//! This is exactly Python's `struct.pack('i', len(header))` followed by `json.dumps(header)`,
//! as in the classic teaching example Ferry descends from. A receiver rejects `L <= 0` and
//! `L > MAX_FRAME_LEN` (64 KiB) *before* allocating anything, and rejects bodies that are not
//! UTF-8, not JSON, or not a JSON object.
//!
//! ## Plain connections (the original protocol)
//!
//! ```text
//! sender -> receiver:  ( Frame(Header) , file_size raw bytes )*   then the sender closes
//! receiver -> sender:  nothing, ever
//! ```
//!
//! `Header` is `{"file_name": string, "file_size": integer, "msg": string}`. `msg` may be
//! absent or `null`. `file_size` must be an integer in `0 ..= 2^63-1` (no sign, no fraction).
//! Unknown fields are ignored. A clean end is the sender closing the connection at a frame
//! boundary; a connection that ends inside a frame or inside a file's bytes is an error and
//! the partial file is discarded.
//!
//! ## Ferry connections (the extended protocol)
//!
//! A Ferry sender marks its offers (and its optional batch summary) with `"ferry": 1` (the
//! protocol version); plain peers never send a `ferry` field, so the receiver knows from the
//! first frame which protocol the connection speaks. An offer is a superset of the plain
//! header, so the framing never changes. Per connection, then per file:
//!
//! ```text
//! S -> R  Frame {"ferry":1,"kind":"batch","count":N,"bytes":B,"names":[..],"sizes":[..]}  (optional,
//!         before the first offer, repeated with the same N and B while names remain: what a
//!         receiver that asks its user shows, every file listed; a "yes" to it covers each
//!         listed name and size once, up to N files and B bytes; anything else is asked
//!         about anew. A receiver keeps at most 16 MiB of names and its files-per-connection
//!         limit, and ends the connection on more)
//! S -> R  Frame {"ferry":1,"kind":"offer","file_name":..,"file_size":N,"msg":..,"resume_key":..}
//! R -> S  Frame {"kind":"waiting"}                      (optional: the receiver asks its user;
//!                                                          "for":"checking" while it hashes a
//!                                                          kept partial, see below)
//! R -> S  Frame {"kind":"accept","offset":K,"saved_as":"name (1).txt"[,"prefix_blake3":".."]
//!                [,"eager_max":M]}                       (M: see "Eager small files" below)
//!       | Frame {"kind":"decline","reason":".."}                 (then the next offer, or EOF)
//! S -> R  if K > 0 only: Frame {"kind":"start","offset":K or 0}
//! S -> R  data: chunks  [i32 LE n, 1 <= n <= MAX_CHUNK_LEN][n raw bytes]
//!         until N - start bytes were sent; or, to give up mid-file,
//!         the chunk header 0 followed by Frame {"kind":"cancel","code":C,"reason":".."}
//! S -> R  Frame {"kind":"end","blake3":"<64 hex digits of BLAKE3 over the whole file>"}
//! R -> S  Frame {"kind":"verified","saved_as":".."} | Frame {"kind":"failed","reason":".."}
//! ```
//!
//! **Resume.** An offer may carry `resume_key` (up to 64 lowercase hex digits; Ferry derives it
//! from the sender's path, size and modification time), which names the receiver's partial
//! file, so only the same sender sending the same file ever finds it; an offer without one
//! can only find partials of offers without one. A receiver that kept the first K bytes of
//! an interrupted upload with the same name, key and a size of at least K accepts with
//! `offset` K and `prefix_blake3`, the BLAKE3 of those K bytes (sending `waiting` every few
//! seconds while it hashes them). The sender hashes its own first K bytes (the same single
//! pass that hashes the whole file); if they match it answers `start` K and sends only the
//! rest, otherwise `start` 0 and everything. The final `end` hash always covers the whole
//! file, so a wrong prefix can never be verified.
//!
//! **Cancel.** At any time the receiver may send `{"kind":"cancel","code":C,"reason":..}` and
//! close; the sender reports it as cancelled by the peer. The sender cancels a file with the
//! zero chunk header and a `cancel` frame; the connection stays usable for the next offer.
//! The code `C` says why, for programs: `"user"` (a person cancelled), `"file_changed"`,
//! `"read_error"`, `"stopping"`; the `reason` says it for people. A code a receiver does not
//! know, or none at all (older peers), still decodes and counts as a failure, not a cancel
//! ([`CancelCode`]).
//!
//! The receiver renames the file to its final name only after the hash matched, and says
//! `verified` only once the file is there.
//!
//! **Pipelining.** A sender need not wait for a file's verdict before it offers the next:
//! Ferry offers file N+1 right after file N's `end` (in the same segment), so the receiver
//! never waits a round trip between files. Verdicts come in file order, each after its own
//! file's `end`; so while the sender is owed verdicts, a `verified` or `failed` answers the
//! oldest file it has not heard about, whatever file is on offer (a receiver that reads one
//! frame at a time answers file N before it even reads offer N+1; one that holds verdicts to
//! make several small files durable with one sync may accept N+1 first). With no verdict
//! owed, `failed` means the receiver gave up on the file on offer and the connection. A
//! receiver never sends `cancel` or gives up with verdicts still held: it answers them
//! first. A sender offers no folder while verdicts are owed.
//!
//! **Eager small files.** A receiver that takes *eager* offers says so in every `accept`:
//! `"eager_max": M`, the largest file (in bytes) it takes that way (Ferry's server: 256 KiB;
//! absent: none; older senders ignore the field, and a plain peer is never answered at all).
//! A sender that has seen `eager_max` in any accept on the connection may offer a file of
//! at most `M` bytes eagerly and send its data and `end` at once, without waiting for the
//! accept:
//!
//! ```text
//! S -> R  Frame {"ferry":1,"kind":"offer","eager":true,"file_name":..,"file_size":N,"msg":..}
//!         (never with a resume_key: an eager offer never resumes), then at once its data
//!         chunks and its end, exactly as after an accept at offset 0 (or the cancel marker
//!         and a cancel frame), then the next offer
//! R -> S  later, in order: optional waiting, then Frame {"kind":"accept","offset":0,..}
//!       | Frame {"kind":"decline","reason":..[,"offer_again":true]}; after an accept, the
//!         verdict follows the file's end
//! ```
//!
//! The receiver answers an eager offer as any offer (`waiting` while it asks its user, then
//! `accept` with offset 0, a kept partial of the name being left alone, or `decline`).
//! Ferry's receiver never asks its user about an eager offer, though: while a person decides
//! nothing is read, and the sender, whose bytes already fill the sockets' buffers, would be
//! left blocked in a write. One its user would have to be asked about (not covered by an
//! earlier "yes") is declined with `"offer_again": true`: the sender offers it again, the
//! ordinary way (not eager, its data waiting for the accept), after every other file and
//! once every eager answer came, and sends no more files eagerly on that connection; that
//! offer is asked about as usual, and its answer is the file's. (`offer_again` is said only
//! about eager offers; a sender that sees it elsewhere treats the decline as final.) After
//! `accept` it reads the data and `end` and gives the verdict as usual (held for a batch sync
//! like any small file). After `decline` (policy, its user, a name it cannot create, any
//! refusal) it reads the file's chunks and `end` (or the zero chunk and `cancel`), bounded by
//! the offered size, drops them, answers nothing more for that file, and reads the next
//! frame. An eager offer over the receiver's `eager_max`, or one before any accept announced
//! it, is a protocol error: the receiver answers `failed` and closes (before reading any of
//! its data).
//!
//! The sender keeps a window: at most 64 eager files, and 4 MiB of them, whose answer has
//! not come (a few round trips of a LAN at full speed, and a bounded burst for a receiver
//! that is asking its user or dropping them; Ferry sends eagerly only files of at most
//! `min(M, 4 MiB)`, and after a `waiting` none more until the next eager answer, and waits
//! for answers meanwhile as long as a person may take; what went out before the `waiting`
//! may still fill the sockets' buffers, which is why Ferry's receiver never asks about an
//! eager offer). It sends no other offer (a larger file) and
//! no folder while an eager answer is owed: those wait until every answer came. Answers stay
//! in order: `waiting`, `accept` and `decline` answer the oldest eager file whose answer is
//! owed; `verified` and `failed` the oldest file whose verdict is owed (an eager file owes a
//! verdict once it is accepted and its end went out; a declined or cancelled one never
//! does). While eager answers are owed, a `failed` with no verdict owed means the receiver
//! gave up on the connection: every file whose answer or verdict is owed fails with its
//! reason. An `accept` of an eager file with an offset other than 0 ends the connection.
//!
//! **Encryption.** A Ferry sender with a device identity starts the connection, before any
//! batch or offer, with
//!
//! ```text
//! S -> R  Frame {"ferry":1,"kind":"secure","pairing":false|true[,"serves_on":PORT]}
//!         (PORT, 1-65535: where the sender's own server listens, if it runs one; a receiver
//!         that comes to trust the sender saves it at its IP and that port, else its IP
//!         alone, with no port)
//!         and "ciphers":["aegis256x4","aesgcm","chachapoly"] (the record ciphers it speaks,
//!         its preference first: an AES-based one first only where its CPU has AES)
//! R -> S  Frame {"kind":"secure","cipher":"aegis256x4"|"aesgcm"|"chachapoly"}
//!         (go ahead, in that cipher: where the receiver's CPU has AES, the first one
//!         listed that it knows, else "chachapoly")
//!       | Frame {"kind":"failed","reason":".."}     (it cannot: no identity, not pairing; closes)
//! S <-> R the handshake of crate::secure (SPAKE2 over the pairing code when "pairing" is true,
//!         then Noise XXpsk3), messages framed [u16 BE n][n bytes]; its prologue holds the
//!         exact bodies of the two frames above (the hello and the go-ahead)
//! S <-> R records [u16 BE n][AEAD ciphertext] in the go-ahead's cipher, each way; their
//!         plaintext is the Ferry connection above, from its first frame (batch or offer) to
//!         its end, and a record with an empty plaintext closes each direction
//! ```
//!
//! The hello and the go-ahead travel in the clear, but every byte of both is bound into the
//! handshake (see the prologue in [`crate::secure`]): a relay that changes `serves_on`,
//! drops a cipher from the offer or changes the go-ahead makes the handshake fail on both
//! ends, before either side acts on what it read. Nothing else is sent before the handshake.
//!
//! The exact handshake, key derivations and record format are in the module doc of
//! [`crate::secure`]. Inside the records only Ferry frames are allowed (a plain header is an
//! error). After the handshake the receiver checks the sender's key against its trusted
//! devices (a trusted name with another key is refused inside the channel) and the sender
//! checks the receiver's. Unknown fields are ignored on both sides, an unknown `kind` is an
//! error, and a receiver that gets `"ferry"` with a version it does not speak declines with a
//! reason.
//!
//! ## Folders (Ferry only)
//!
//! A folder is one offer, accepted or declined as a whole, whose files then stream back to
//! back with no round trip per file (a plain sender cannot announce one):
//!
//! ```text
//! S -> R  Frame {"ferry":1,"kind":"folder","name":"photos","count":N,"bytes":B,"entries":[E..]}
//!         repeated with the same name, N and B until all N entries were listed (each frame
//!         below 64 KiB); E is {"path":"2024/a.jpg","size":S,"mtime":T,"mode":M} for a file,
//!         {"path":"2024","dir":true,"mtime":T,"mode":M} for a folder (empty ones too).
//!         path: components joined by "/", none empty, at most MAX_FOLDER_DEPTH (64) deep and
//!         MAX_ENTRY_PATH_BYTES (4096) long, 16 MiB of paths in all; the sizes add up to B;
//!         mtime: seconds since 1970 (0 = unknown); mode: the owner's rwx bits, 0..=7.
//!         N counts against the receiver's files-per-connection limit.
//!         The first frame may carry "resume_key" (as an offer's: up to 64 lowercase hex
//!         digits; Ferry derives it from the folder's absolute path).
//!         The first frame may carry "msg", the sender's message for the folder (as an
//!         offer's; only the first frame's counts; older receivers ignore it).
//! R -> S  Frame {"kind":"waiting"}                                   (optional, as for files;
//!                                        "for":"earlier_copy" while an earlier connection of
//!                                        the sender still holds this folder's resume)
//! R -> S  resuming only: Frame {"kind":"folder_have","files":[{"index":I,"blake3":".."}..]}
//!         repeated (at most HELD_PER_FRAME = 512 files per frame)
//! R -> S  Frame {"kind":"folder_accept","saved_as":"photos (1)"
//!                [,"partial":{"index":I,"offset":K,"prefix_blake3":".."}]}
//!       | Frame {"kind":"decline",..}
//! then, per file sent (any subset of the file entries, indices strictly increasing):
//! S -> R  Frame {"kind":"file","index":I[,"offset":K]}, data chunks exactly as for a file
//!         from byte K (0 when absent) on (or the cancel marker and a cancel frame),
//!         Frame {"kind":"end","blake3":"<BLAKE3 of the whole file>"}
//! S -> R  Frame {"kind":"folder_end"}                                (after the last file)
//! R -> S  whenever it likes, batched: Frame {"kind":"files","verified":[I..],
//!         "failed":[{"index":I,"reason":".."}..]}
//! R -> S  Frame {"kind":"folder_done","verified":V,"failed":F}  (after every verdict; the
//!         connection is then between files again)
//! ```
//!
//! The receiver reduces every path component to one safe name like a file name
//! ([`sanitize_file_name`]), creates the root under a free name (`photos`, `photos (1)`, ..)
//! and every subfolder beneath its parent's handle without following symlinks, writes each
//! file as a `.ferry.part` in its folder, and commits it under its final name only once its
//! own BLAKE3 matched (a name taken inside the folder gets a number, as for files). Files
//! get their mtime and `owner bits << 6 | 0o044`, folders theirs (`| 0o055`) at the end. A
//! file that cannot be created is read and dropped (the stream stays in step) and reported
//! failed. A `file` index that is not a file entry, or not above the last, ends the
//! connection; so does a connection that ends inside a folder.
//!
//! **Folder resume.** A receiver that accepted a folder with a `resume_key` keeps a small
//! state for it until the folder ends (`.TAG.ferry-folder.ferry.part` in the download
//! folder: the key, the root it created, and the index of the file whose partial it kept
//! when the connection broke), expired like partials. A later folder offer with the same key
//! whose root still exists is accepted *into that root* (no `photos (1)`): the receiver
//! hashes every listed file it finds whole under its final name (a regular file of its own
//! of the listed size, never through a symlink) and sends those hashes in `folder_have`
//! frames, and offers its kept partial with the BLAKE3 of its `K` bytes in `folder_accept`.
//! The receiver computes the hashes, so the sender need not hash anything before it knows
//! what to skip. The sender skips every held file whose BLAKE3 equals its own (it counts as
//! verified) and sends the others; for the partial it hashes its own first `K` bytes and
//! sends `file` with `offset` K only if they match (else offset 0: the receiver empties the
//! partial). A `file` offset other than 0 or the offered partial's, a held index that is not
//! a file entry, or a partial offset beyond its file's size ends the connection. A held file
//! sent again anyway (it changed) is committed under a numbered name, never over the old one.
//! `folder_done` counts only the files received on this connection. The key only finds the
//! state; each file's own hash still decides what is kept, so a wrong or reused key costs
//! bytes, never correctness. (Like a file's resume key, it is not a secret: a peer that
//! knows it learns the hashes of the files held under it.)
//!
//!
//! # UDP: notes
//!
//! One datagram is one UTF-8 text message, no header. See [`crate::notes`].
//!
//! - A sender refuses a note above [`MAX_NOTE_BYTES`] (65 507, the largest IPv4 UDP payload)
//!   and warns above [`PLAIN_PEER_NOTE_BYTES`] (1 024), because plain peers that read 1 024
//!   bytes per datagram silently lose the rest.
//! - A receiver reads with a 64 KiB buffer, so every datagram arrives whole, and decodes it
//!   lossily ([`decode_note`]): invalid UTF-8 becomes U+FFFD, it is never dropped.
//! - A reply goes to the exact source address (IP and port) of the note it answers.

mod address;
pub mod beacon;
mod codes;
mod folder;
mod frame;
mod json_fields;
mod message;
mod name;
mod note;
pub mod session;
mod text;

pub use address::is_device_address;
pub use codes::{CancelCode, WaitFor};
pub use folder::{
    FOLDER_FRAME_BUDGET, FolderEntry, FolderListing, HELD_PER_FRAME, MAX_ENTRY_PATH_BYTES,
    MAX_FOLDER_DEPTH, MAX_FOLDER_PATH_BYTES, SafeEntry, folder_frames, held_frames,
};
pub use frame::{
    Chunk, FrameError, decode_chunk_header, decode_frame_len, encode_chunk_header, encode_frame,
    split_frame,
};
pub use message::{
    FERRY_VERSION, FileFailed, FolderPartial, Header, HeldFile, MAX_RESUME_KEY_LEN, MessageError,
    ReceiverMsg, SenderMsg, decode_receiver_msg, decode_sender_msg, encode_receiver_msg,
    encode_sender_msg,
};
pub use name::{SafeName, sanitize_file_name};
pub use note::{
    MAX_NOTE_BYTES, NoteError, NoteWarning, PLAIN_PEER_NOTE_BYTES, check_note, decode_note,
};
pub use text::{clip, escape_line, escape_note, is_unsafe_char};

/// Which protocol a connection speaks (see [`crate::protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The original protocol: no answers, no verification.
    Plain,
    /// The extended protocol: accept/decline and a BLAKE3 check.
    Ferry,
}

/// Largest JSON frame body accepted, in bytes (64 KiB).
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Largest data chunk a Ferry sender may announce, in bytes (4 MiB). Ferry senders use
/// [`CHUNK_LEN`].
pub const MAX_CHUNK_LEN: usize = 4 * 1024 * 1024;

/// The chunk size Ferry sends and the buffer size both sides stream with (1 MiB).
pub const CHUNK_LEN: usize = 1024 * 1024;

/// Largest file size a header may announce (`i64::MAX`, what a signed 64-bit offset holds).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// The ending of the files Ferry receives into (`report.pdf.ferry.part`); received names never
/// end in it, so a partial file and a received file can never be confused.
pub const PART_SUFFIX: &str = ".ferry.part";

/// Longest name, in UTF-8 bytes, that [`sanitize_file_name`] produces. Leaves room in a
/// 255-byte file system name for a ` (12345)` suffix and the [`PART_SUFFIX`].
pub const MAX_NAME_BYTES: usize = 200;

#[cfg(test)]
mod folder_tests;
#[cfg(test)]
mod fuzz_regressions;
#[cfg(test)]
mod tests;
