//! Folders on the wire: the entries a Ferry sender announces for a folder batch (relative
//! paths, sizes, modification times, owner permission bits), their JSON form, how the
//! announcement is split into frames, and what a receiver keeps of it once every path
//! component was sanitised and every limit checked ([`FolderListing`]). Pure: no file system.

use serde_json::{Map, Value};

use super::message::MessageError;
use super::session::SessionError;
use super::{MAX_FILE_SIZE, sanitize_file_name};

/// Deepest path a folder entry may have, in components.
pub const MAX_FOLDER_DEPTH: usize = 64;
/// Longest relative path of one entry, in UTF-8 bytes.
pub const MAX_ENTRY_PATH_BYTES: usize = 4096;
/// Most bytes of paths one folder announcement may hold in all.
pub const MAX_FOLDER_PATH_BYTES: usize = 32 * 1024 * 1024;
/// What one path component is charged against [`MAX_FOLDER_PATH_BYTES`] on top of its bytes
/// (a string's header and allocation).
pub const COMPONENT_OVERHEAD_BYTES: usize = 32;
/// Bytes of encoded entries a sender puts in one `folder` frame (below the 64 KiB limit,
/// leaving room for the frame's other fields).
pub const FOLDER_FRAME_BUDGET: usize = 60 * 1024;

/// One entry of a folder: a file (`size` is `Some`) or a folder (`None`; empty folders are
/// listed so they are recreated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Relative path, components joined by `/` (peer text on the receiving side).
    pub path: String,
    /// The file's size, `None` for a folder.
    pub size: Option<u64>,
    /// Modification time, seconds since the Unix epoch (0: unknown, left as it is).
    pub mtime: u64,
    /// The owner's permission bits, `0..=7` (read 4, write 2, execute 1).
    pub mode: u32,
}

impl FolderEntry {
    pub(super) fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("path".into(), Value::String(self.path.clone()));
        match self.size {
            Some(size) => map.insert("size".into(), size.into()),
            None => map.insert("dir".into(), Value::Bool(true)),
        };
        map.insert("mtime".into(), self.mtime.into());
        map.insert("mode".into(), self.mode.into());
        Value::Object(map)
    }

    pub(super) fn from_json(value: &Value) -> Result<Self, MessageError> {
        let wrong = |field, expected| MessageError::WrongType { field, expected };
        let Value::Object(obj) = value else {
            return Err(wrong("entries", "a list of objects"));
        };
        let path = match obj.get("path") {
            Some(Value::String(path)) => path.clone(),
            Some(_) => return Err(wrong("path", "a string")),
            None => return Err(MessageError::MissingField("path")),
        };
        let dir = match obj.get("dir") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(dir)) => *dir,
            Some(_) => return Err(wrong("dir", "true or false")),
        };
        let size = match (dir, obj.get("size")) {
            (true, None | Some(Value::Null)) => None,
            (true, Some(_)) => return Err(wrong("size", "absent for a folder")),
            (false, Some(Value::Number(n))) => Some(
                n.as_u64()
                    .filter(|s| *s <= MAX_FILE_SIZE)
                    .ok_or_else(|| MessageError::BadSize(n.to_string()))?,
            ),
            (false, Some(_)) => return Err(wrong("size", "an integer")),
            (false, None) => return Err(MessageError::MissingField("size")),
        };
        let mtime = match obj.get("mtime") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_u64()
                .ok_or(wrong("mtime", "a non-negative integer"))?,
        };
        let mode = match obj.get("mode") {
            None | Some(Value::Null) => {
                if dir {
                    7
                } else {
                    6
                }
            }
            Some(value) => value
                .as_u64()
                .filter(|m| *m <= 7)
                .ok_or(wrong("mode", "an integer from 0 to 7"))? as u32,
        };
        Ok(Self {
            path,
            size,
            mtime,
            mode,
        })
    }

    /// What the entry costs in a frame, at most (JSON escaping counted).
    fn encoded_len(&self) -> usize {
        let path: usize = self
            .path
            .chars()
            .map(|c| match c {
                '"' | '\\' => 2,
                c if (c as u32) < 0x20 => 6,
                c => c.len_utf8(),
            })
            .sum();
        path + 96
    }
}

/// The `folder` frames announcing a folder: as many as the entries need, each repeating the
/// name and totals (files and bytes); the first also carries the sender's message (`msg`,
/// empty for none), so it holds fewer entries.
pub fn folder_frames(
    name: &str,
    entries: &[FolderEntry],
    resume_key: Option<&str>,
    msg: &str,
) -> Vec<super::SenderMsg> {
    let count = entries.len() as u64;
    let bytes = entries.iter().filter_map(|e| e.size).sum();
    // The message as JSON, escapes included (at most 6 bytes a byte, as the name is counted).
    let msg_len = serde_json::to_string(msg).map_or(msg.len() * 6, |json| json.len());
    let mut frames = Vec::new();
    let mut rest = entries;
    loop {
        let first = frames.is_empty();
        let mut used = name.len() * 6 + 96 + if first { msg_len } else { 0 };
        let take = rest
            .iter()
            .take_while(|e| {
                used += e.encoded_len();
                used <= FOLDER_FRAME_BUDGET
            })
            .count()
            .max(1)
            .min(rest.len());
        let (now, later) = rest.split_at(take);
        frames.push(super::SenderMsg::Folder {
            name: name.to_owned(),
            count,
            bytes,
            entries: now.to_vec(),
            resume_key: resume_key.map(str::to_owned),
            msg: if first { msg.to_owned() } else { String::new() },
        });
        rest = later;
        if rest.is_empty() {
            return frames;
        }
    }
}

/// Held files a receiver lists per `folder_have` frame (each entry costs at most about 100
/// bytes of JSON, so a frame stays well below the 64 KiB limit).
pub const HELD_PER_FRAME: usize = 512;

/// The `folder_have` frames listing the files a receiver already holds (index, BLAKE3 of
/// what it holds): as many as the list needs, none for an empty list.
pub fn held_frames(held: &[(u64, [u8; 32])]) -> Vec<super::ReceiverMsg> {
    held.chunks(HELD_PER_FRAME)
        .map(|chunk| super::ReceiverMsg::FolderHave {
            files: chunk
                .iter()
                .map(|(index, hash)| super::HeldFile {
                    index: *index,
                    blake3: blake3::Hash::from_bytes(*hash).to_hex().to_string(),
                })
                .collect(),
        })
        .collect()
}

/// A folder entry as a receiver keeps it: the sender's path (peer text, for display) and its
/// components each reduced to one safe file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeEntry {
    pub path: String,
    pub components: Vec<String>,
    pub size: Option<u64>,
    pub mtime: u64,
    pub mode: u32,
}

/// What a receiver holds of a folder announcement: checked against every limit as it
/// arrives, complete once every announced entry was listed.
#[derive(Debug, Clone)]
pub struct FolderListing {
    /// The folder's name as the sender wrote it (peer text).
    pub name: String,
    /// The sender's resume key for this folder (checked hex), if it gave one.
    pub resume_key: Option<String>,
    /// The sender's message for the folder (peer text; empty: none).
    pub msg: String,
    count: u64,
    bytes: u64,
    entries: Vec<SafeEntry>,
    path_bytes: usize,
    listed_bytes: u64,
    /// Files sent so far in the batch: the next `file` index must be above the last.
    next_index: u64,
}

impl FolderListing {
    pub fn new(name: String, count: u64, bytes: u64) -> Self {
        Self {
            name,
            resume_key: None,
            msg: String::new(),
            count,
            bytes,
            entries: Vec::new(),
            path_bytes: 0,
            listed_bytes: 0,
            next_index: 0,
        }
    }

    /// Entries (files and folders) and file bytes announced in all.
    pub fn totals(&self) -> (u64, u64) {
        (self.count, self.bytes)
    }

    /// Number of files (not folders) among the entries.
    pub fn file_count(&self) -> u64 {
        self.entries.iter().filter(|e| e.size.is_some()).count() as u64
    }

    pub fn entries(&self) -> &[SafeEntry] {
        &self.entries
    }

    /// True once every announced entry was listed.
    pub fn is_complete(&self) -> bool {
        self.entries.len() as u64 == self.count
    }

    /// Adds one `folder` frame's entries; every frame repeats the same name and totals.
    pub fn extend(
        &mut self,
        name: &str,
        count: u64,
        bytes: u64,
        entries: Vec<FolderEntry>,
    ) -> Result<(), SessionError> {
        if name != self.name || count != self.count || bytes != self.bytes {
            return Err(SessionError::BatchTotalsChanged);
        }
        for entry in entries {
            if self.entries.len() as u64 >= self.count {
                return Err(SessionError::BatchTooLong);
            }
            // Each component is kept as a string of its own: its overhead counts too, so a
            // listing of very deep paths cannot take far more memory than its bytes suggest.
            let parts = entry.path.bytes().filter(|b| *b == b'/').count() + 1;
            self.path_bytes += entry.path.len() + parts * COMPONENT_OVERHEAD_BYTES;
            if self.path_bytes > MAX_FOLDER_PATH_BYTES {
                return Err(SessionError::BatchTooLong);
            }
            if entry.path.len() > MAX_ENTRY_PATH_BYTES {
                return Err(SessionError::BadFolder("a path is too long"));
            }
            let raw: Vec<&str> = entry.path.split('/').collect();
            if raw.len() > MAX_FOLDER_DEPTH {
                return Err(SessionError::BadFolder("a path is too deep"));
            }
            if raw.iter().any(|c| c.is_empty()) {
                return Err(SessionError::BadFolder("a path has an empty component"));
            }
            if let Some(size) = entry.size {
                self.listed_bytes = self.listed_bytes.saturating_add(size);
                if self.listed_bytes > self.bytes {
                    return Err(SessionError::BadFolder("sizes exceed the announced bytes"));
                }
            }
            let components = raw
                .iter()
                .map(|c| sanitize_file_name(c).as_str().to_owned())
                .collect();
            self.entries.push(SafeEntry {
                path: entry.path,
                components,
                size: entry.size,
                mtime: entry.mtime,
                mode: entry.mode,
            });
        }
        if self.is_complete() && self.listed_bytes != self.bytes {
            return Err(SessionError::BadFolder(
                "sizes do not add up to the announced bytes",
            ));
        }
        Ok(())
    }

    /// The size of file entry `index` (`None`: no such entry, or a folder).
    pub fn file_size(&self, index: u64) -> Option<u64> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .and_then(|e| e.size)
    }

    /// Takes the `file` frame for entry `index`: it must name a file, after the last one
    /// sent. Returns the file's size.
    pub fn take_file(&mut self, index: u64) -> Result<u64, SessionError> {
        if index < self.next_index {
            return Err(SessionError::BadFolder("file indices must increase"));
        }
        let size = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .ok_or(SessionError::BadFolder("no such entry"))?
            .size
            .ok_or(SessionError::BadFolder("the entry is a folder"))?;
        self.next_index = index + 1;
        Ok(size)
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn deep_paths_are_charged_per_component_so_memory_stays_bounded() {
        let deep = vec!["a"; MAX_FOLDER_DEPTH].join("/");
        let cost = deep.len() + MAX_FOLDER_DEPTH * COMPONENT_OVERHEAD_BYTES;
        let fits = MAX_FOLDER_PATH_BYTES / cost;
        let count = (fits + 10) as u64;
        let mut listing = FolderListing::new("x".into(), count, 0);
        let entry = FolderEntry {
            path: deep,
            size: None,
            mtime: 0,
            mode: 7,
        };
        let mut refused = None;
        for i in 0..count {
            if let Err(e) = listing.extend("x", count, 0, vec![entry.clone()]) {
                refused = Some((i, e));
                break;
            }
        }
        let (at, error) = refused.expect("a listing of deep paths is refused");
        assert!(matches!(error, SessionError::BatchTooLong), "{error:?}");
        assert_eq!(at as usize, fits, "refused once the budget is spent");
        // Flat names stay cheap: 100 000 short entries fit.
        let mut flat = FolderListing::new("y".into(), 100_000, 0);
        for i in 0..100_000u64 {
            let entry = FolderEntry {
                path: format!("sub/{i}.txt"),
                size: Some(0),
                mtime: 0,
                mode: 6,
            };
            flat.extend("y", 100_000, 0, vec![entry]).unwrap();
        }
    }
}
