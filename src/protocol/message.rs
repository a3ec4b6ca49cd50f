//! The JSON messages carried in frames: what a sender says and what a Ferry receiver answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codes::{CancelCode, WaitFor};
use super::folder::FolderEntry;
use super::json_fields::{
    header, kind, optional_string, resume_key, size_list, string_field, string_list, u64_field,
};
use super::text::escape_line;
use super::{MAX_FILE_SIZE, MAX_FRAME_LEN, frame::encode_frame};

/// The extended-protocol version this build speaks (the value of the `ferry` field).
pub const FERRY_VERSION: u64 = 1;

/// Why a frame body was refused. Peer text quoted in a message is escaped (see
/// [`crate::protocol::escape_line`]), so the message is safe to log or print as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("header is not valid UTF-8")]
    NotUtf8,
    #[error("header is not valid JSON: {}", escape_line(.0))]
    NotJson(String),
    #[error("header is not a JSON object")]
    NotObject,
    #[error("header lacks the field \"{0}\"")]
    MissingField(&'static str),
    #[error("header field \"{field}\" must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("file_size {} is not an integer between 0 and 2^63-1", escape_line(.0))]
    BadSize(String),
    #[error("unsupported Ferry protocol version {} (this build speaks {FERRY_VERSION})", escape_line(.0))]
    UnsupportedVersion(String),
    #[error("unknown message kind \"{}\"", escape_line(.0))]
    UnknownKind(String),
    #[error("message is {0} bytes, over the frame limit")]
    TooLong(usize),
}

/// A file header: the original protocol's `{"file_name", "file_size", "msg"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as the sender wrote it: untrusted, see [`super::sanitize_file_name`].
    pub file_name: String,
    /// Exact number of bytes that follow; at most [`MAX_FILE_SIZE`].
    pub file_size: u64,
    /// Free text the sender attached; empty when absent or `null`.
    pub msg: String,
    /// Ferry offers only: identifies this sender's copy of the file (up to
    /// [`MAX_RESUME_KEY_LEN`] lowercase hex digits), so only the same sender, sending the
    /// same file, can resume a partial upload. Never sent in plain mode.
    pub resume_key: Option<String>,
    /// Ferry offers only: an eager offer, whose data follows at once, without waiting for
    /// the accept (see "Eager small files" in [`crate::protocol`]). Never resumes, so never
    /// with a `resume_key`.
    pub eager: bool,
}

/// Longest `resume_key` accepted, in hex digits.
pub const MAX_RESUME_KEY_LEN: usize = 64;

/// What a sender puts in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderMsg {
    /// A plain peer's header: the raw bytes follow directly, nothing is answered.
    Plain(Header),
    /// A Ferry peer's offer: the receiver answers accept or decline.
    Offer(Header),
    /// Optional, before a Ferry connection's first offer: what the whole upload holds, so a
    /// receiver that asks its user can show it. `names` may list only the first files;
    /// `sizes`, when not empty, gives each listed file's size.
    Batch {
        count: u64,
        bytes: u64,
        names: Vec<String>,
        sizes: Vec<u64>,
    },
    /// After an accept with `offset > 0`: where the data really starts, the accepted offset
    /// (resume) or 0 (the sender's file does not match the receiver's partial copy).
    Start { offset: u64 },
    /// After a Ferry file's data: the BLAKE3 hash of the whole file.
    End { blake3: [u8; 32] },
    /// The sender gives up on the current file: why, as a code, and in words for people.
    Cancel { code: CancelCode, reason: String },
    /// A Ferry connection's first frame when it will be encrypted: the secure handshake
    /// (with a pairing code when `pairing`) follows the receiver's [`ReceiverMsg::Secure`],
    /// and everything after it travels in records (see [`crate::secure`]). `ciphers`: the
    /// record ciphers the sender speaks, in its order of preference (none listed: ChaCha20-
    /// Poly1305 only). `serves_on`: the port the sending device's own Ferry server listens
    /// on, if it runs one, so a receiver that comes to trust it saves where it can reach it
    /// (its connection comes from a passing port); older receivers ignore it.
    Secure {
        pairing: bool,
        ciphers: Vec<String>,
        serves_on: Option<u16>,
    },
    /// A speed test instead of files: after the receiver's [`ReceiverMsg::ProbeReady`], data
    /// chunks of throwaway bytes (at most `max_bytes` in all), ended by the zero chunk header;
    /// the receiver hashes and discards them, measures its disk and hashing, and answers
    /// [`ReceiverMsg::ProbeResult`]. Nothing is written under any name.
    Probe { max_bytes: u64 },
    /// A folder batch: its name, how many entries (files and folders) and file bytes it
    /// holds, and (some of) its entries; repeated with the same name and totals until every
    /// entry was listed. The receiver then accepts or declines the whole folder once.
    Folder {
        name: String,
        count: u64,
        bytes: u64,
        entries: Vec<FolderEntry>,
        /// Names this sender's copy of the folder (as an offer's `resume_key`), so an
        /// interrupted transfer of it can resume; `None`: it cannot.
        resume_key: Option<String>,
        /// The sender's message for the whole folder (a file offer's `msg`), empty for none:
        /// sent in the first frame only, taken from it only. Older receivers ignore it.
        msg: String,
    },
    /// Inside an accepted folder: the data of entry `index` follows (chunks, then `end`),
    /// from byte `offset` on: 0, or the offset of the partial the receiver offered in its
    /// `folder_accept` for this very entry (the sender's prefix matched its hash).
    File { index: u64, offset: u64 },
    /// Inside an accepted folder: no more files; the receiver answers `folder_done`.
    FolderEnd,
}

/// What a Ferry receiver answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReceiverMsg {
    /// Send the data from `offset` on; the file will be saved under `saved_as`. With
    /// `offset > 0` (resume) `prefix_blake3` is the hash of the bytes the receiver already
    /// holds, and the sender answers with `start`.
    Accept {
        offset: u64,
        saved_as: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_blake3: Option<String>,
        /// The receiver takes eager offers of files up to this many bytes (absent: none).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "eager_max"
        )]
        eager_max: Option<u64>,
    },
    /// The receiver holds its answer: an accept or decline follows (maybe much later).
    /// `for` says why (absent from older receivers: asking its user).
    Waiting {
        #[serde(default, rename = "for", skip_serializing_if = "WaitFor::is_decision")]
        waiting_for: WaitFor,
    },
    /// The offered file is refused; the sender goes on with its next offer. `offer_again`
    /// (eager offers only): refused only because it came eagerly, when the receiver would
    /// have had to ask its user about it; offered again the ordinary way, it is asked about.
    Decline {
        reason: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        offer_again: bool,
    },
    /// The hash matched and the file is saved under its final name.
    Verified { saved_as: String },
    /// The file was not saved.
    Failed { reason: String },
    /// The answer to [`SenderMsg::Secure`]: the secure handshake may begin, with records in
    /// `cipher` (one the sender listed).
    Secure {
        #[serde(default = "default_cipher")]
        cipher: String,
    },
    /// The speed test may begin (the answer to [`SenderMsg::Probe`]).
    ProbeReady,
    /// The speed test's figures, measured on the receiver: the throwaway bytes it received
    /// and the time from its first to its last byte, then how fast it writes (and syncs) to
    /// its download folder's disk and hashes, in bytes per second (0: not measured).
    ProbeResult {
        received: u64,
        micros: u64,
        disk_bytes_per_sec: u64,
        hash_bytes_per_sec: u64,
    },
    /// The receiver stops the transfer and closes.
    Cancel {
        #[serde(default)]
        code: CancelCode,
        reason: String,
    },
    /// The whole folder is accepted and will be created as `saved_as` (`photos (1)` when
    /// `photos` was taken); its files may follow back to back.
    FolderAccept {
        saved_as: String,
        /// Resuming an interrupted transfer of this folder: the receiver holds the first
        /// bytes of one file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partial: Option<FolderPartial>,
    },
    /// Before `folder_accept`, resuming an interrupted transfer of the folder: files the
    /// receiver already holds under their paths, with the BLAKE3 it computed of each. The
    /// sender skips those whose hash is the hash of its own file (repeated while the list
    /// goes on; each frame below 64 KiB).
    FolderHave { files: Vec<HeldFile> },
    /// Inside a folder: the verdicts on files received since the last such answer, by
    /// index (several files per answer).
    Files {
        #[serde(default)]
        verified: Vec<u64>,
        #[serde(default)]
        failed: Vec<FileFailed>,
    },
    /// The answer to `folder_end`: every verdict was sent; how many files were verified
    /// and how many failed in all.
    FolderDone { verified: u64, failed: u64 },
}

/// A file of a folder the receiver already holds whole (resume), and its BLAKE3 (64 hex
/// digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFile {
    pub index: u64,
    pub blake3: String,
}

/// The one file of a folder the receiver holds the first `offset` bytes of (resume), with
/// the BLAKE3 of those bytes (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderPartial {
    pub index: u64,
    pub offset: u64,
    pub prefix_blake3: String,
}

/// One file of a folder that was not saved, and why (receiver's words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailed {
    pub index: u64,
    pub reason: String,
}

/// An accept's `eager_max`: a byte count up to [`MAX_FILE_SIZE`] (`null`: none).
fn eager_max<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<u64>::deserialize(d)?;
    match value {
        Some(max) if max > MAX_FILE_SIZE => Err(serde::de::Error::custom(
            "eager_max must be a byte count up to 2^63-1",
        )),
        other => Ok(other),
    }
}

/// The record cipher of a go-ahead that names none.
fn default_cipher() -> String {
    "chachapoly".to_owned()
}

/// Decodes a frame body sent by a sender (plain or Ferry).
///
/// Rules: a body with a `ferry` field is a Ferry offer (version must be [`FERRY_VERSION`] and
/// `kind` must be `offer`); a body with a `kind` but no `ferry` is a Ferry control message
/// (`end`, `cancel`); anything else is a plain header.
pub fn decode_sender_msg(body: &[u8]) -> Result<SenderMsg, MessageError> {
    let text = std::str::from_utf8(body).map_err(|_| MessageError::NotUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(MessageError::NotObject);
    };
    if let Some(version) = obj.get("ferry") {
        if version.as_u64() != Some(FERRY_VERSION) {
            return Err(MessageError::UnsupportedVersion(version.to_string()));
        }
        return match kind(&obj)? {
            Some("offer") => {
                let mut header = header(&obj)?;
                header.eager = match obj.get("eager") {
                    None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                    // An eager offer never resumes: a key with it is a contradiction.
                    Some(Value::Bool(true)) if header.resume_key.is_none() => true,
                    Some(_) => {
                        return Err(MessageError::WrongType {
                            field: "eager",
                            expected: "true or false, and never with a resume_key",
                        });
                    }
                };
                Ok(SenderMsg::Offer(header))
            }
            Some("secure") => Ok(SenderMsg::Secure {
                ciphers: string_list(&obj, "ciphers")?,
                serves_on: match obj.get("serves_on") {
                    None | Some(Value::Null) => None,
                    Some(port) => Some(
                        port.as_u64()
                            .and_then(|p| u16::try_from(p).ok())
                            .filter(|p| *p != 0)
                            .ok_or(MessageError::WrongType {
                                field: "serves_on",
                                expected: "a port number (1-65535)",
                            })?,
                    ),
                },
                pairing: match obj.get("pairing") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(MessageError::WrongType {
                            field: "pairing",
                            expected: "true or false",
                        });
                    }
                },
            }),
            Some("probe") => Ok(SenderMsg::Probe {
                max_bytes: u64_field(&obj, "max_bytes")?,
            }),
            Some("folder") => Ok(SenderMsg::Folder {
                name: string_field(&obj, "name")?.to_owned(),
                count: u64_field(&obj, "count")?,
                bytes: u64_field(&obj, "bytes")?,
                resume_key: resume_key(&obj)?,
                msg: optional_string(&obj, "msg")?,
                entries: match obj.get("entries") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(FolderEntry::from_json)
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(MessageError::WrongType {
                            field: "entries",
                            expected: "a list of objects",
                        });
                    }
                },
            }),
            Some("batch") => Ok(SenderMsg::Batch {
                count: u64_field(&obj, "count")?,
                bytes: u64_field(&obj, "bytes")?,
                names: string_list(&obj, "names")?,
                sizes: size_list(&obj, "sizes")?,
            }),
            Some(other) => Err(MessageError::UnknownKind(other.to_owned())),
            None => Err(MessageError::MissingField("kind")),
        };
    }
    match kind(&obj)? {
        None => Ok(SenderMsg::Plain(header(&obj)?)),
        Some("end") => {
            let hex = string_field(&obj, "blake3")?;
            let hash = blake3::Hash::from_hex(hex).map_err(|_| MessageError::WrongType {
                field: "blake3",
                expected: "64 hex digits",
            })?;
            Ok(SenderMsg::End {
                blake3: *hash.as_bytes(),
            })
        }
        Some("file") => Ok(SenderMsg::File {
            index: u64_field(&obj, "index")?,
            offset: match obj.get("offset") {
                None | Some(Value::Null) => 0,
                Some(_) => u64_field(&obj, "offset")?,
            },
        }),
        Some("folder_end") => Ok(SenderMsg::FolderEnd),
        Some("start") => Ok(SenderMsg::Start {
            offset: u64_field(&obj, "offset")?,
        }),
        Some("cancel") => Ok(SenderMsg::Cancel {
            code: CancelCode::from(optional_string(&obj, "code")?),
            reason: optional_string(&obj, "reason")?,
        }),
        Some(other) => Err(MessageError::UnknownKind(other.to_owned())),
    }
}

/// Encodes a sender message as a complete frame.
pub fn encode_sender_msg(msg: &SenderMsg) -> Result<Vec<u8>, MessageError> {
    let value = match msg {
        SenderMsg::Plain(h) => serde_json::json!({
            "file_name": h.file_name, "file_size": h.file_size, "msg": h.msg,
        }),
        SenderMsg::Offer(h) => {
            let mut offer = serde_json::json!({
                "ferry": FERRY_VERSION, "kind": "offer",
                "file_name": h.file_name, "file_size": h.file_size, "msg": h.msg,
            });
            if let Value::Object(map) = &mut offer {
                if let Some(key) = &h.resume_key {
                    map.insert("resume_key".into(), Value::String(key.clone()));
                }
                if h.eager {
                    map.insert("eager".into(), Value::Bool(true));
                }
            }
            offer
        }
        SenderMsg::End { blake3 } => serde_json::json!({
            "kind": "end", "blake3": blake3::Hash::from_bytes(*blake3).to_hex().as_str(),
        }),
        SenderMsg::Cancel { code, reason } => {
            serde_json::json!({ "kind": "cancel", "code": code.as_str(), "reason": reason })
        }
        SenderMsg::Batch {
            count,
            bytes,
            names,
            sizes,
        } => serde_json::json!({
            "ferry": FERRY_VERSION, "kind": "batch", "count": count, "bytes": bytes, "names": names,
            "sizes": sizes,
        }),
        SenderMsg::Start { offset } => serde_json::json!({ "kind": "start", "offset": offset }),
        SenderMsg::Folder {
            name,
            count,
            bytes,
            entries,
            resume_key,
            msg,
        } => {
            let mut folder = serde_json::json!({
                "ferry": FERRY_VERSION, "kind": "folder", "name": name, "count": count,
                "bytes": bytes, "entries": entries.iter().map(FolderEntry::to_json).collect::<Vec<_>>(),
            });
            if let Value::Object(map) = &mut folder {
                if let Some(key) = resume_key {
                    map.insert("resume_key".into(), Value::String(key.clone()));
                }
                if !msg.is_empty() {
                    map.insert("msg".into(), Value::String(msg.clone()));
                }
            }
            folder
        }
        SenderMsg::File { index, offset: 0 } => {
            serde_json::json!({ "kind": "file", "index": index })
        }
        SenderMsg::File { index, offset } => {
            serde_json::json!({ "kind": "file", "index": index, "offset": offset })
        }
        SenderMsg::FolderEnd => serde_json::json!({ "kind": "folder_end" }),
        SenderMsg::Probe { max_bytes } => serde_json::json!({
            "ferry": FERRY_VERSION, "kind": "probe", "max_bytes": max_bytes,
        }),
        SenderMsg::Secure {
            pairing,
            ciphers,
            serves_on,
        } => {
            let mut hello = serde_json::json!({
                "ferry": FERRY_VERSION, "kind": "secure", "pairing": pairing, "ciphers": ciphers,
            });
            if let (Some(port), Some(obj)) = (serves_on, hello.as_object_mut()) {
                obj.insert("serves_on".into(), (*port).into());
            }
            hello
        }
    };
    frame_json(&value)
}

/// Decodes a frame body sent by a Ferry receiver.
pub fn decode_receiver_msg(body: &[u8]) -> Result<ReceiverMsg, MessageError> {
    let text = std::str::from_utf8(body).map_err(|_| MessageError::NotUtf8)?;
    serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))
}

/// Encodes a receiver message as a complete frame.
pub fn encode_receiver_msg(msg: &ReceiverMsg) -> Result<Vec<u8>, MessageError> {
    let value = serde_json::to_value(msg).map_err(|e| MessageError::NotJson(e.to_string()))?;
    frame_json(&value)
}

fn frame_json(value: &Value) -> Result<Vec<u8>, MessageError> {
    let body = serde_json::to_vec(value).map_err(|e| MessageError::NotJson(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(MessageError::TooLong(body.len()));
    }
    encode_frame(&body).map_err(|_| MessageError::TooLong(body.len()))
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
