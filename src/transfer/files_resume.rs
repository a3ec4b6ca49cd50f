//! Finding a partial file to resume (part of [`super`], files.rs): which numbered names an
//! interrupted upload's `.ferry.part` may be under, and which of them may be taken.

use std::io::{self, ErrorKind, Seek, SeekFrom};

use super::{DownloadDir, Downloads, PART_SUFFIX, PartFile, part_name};
use crate::protocol::SafeName;

/// How many numbered alternatives are searched for a partial file to resume.
const MAX_RESUME_CANDIDATES: u32 = 100;
/// Files up to this size search for a partial to resume only as far as the numbered names
/// are taken (see [`PartFile::resumable`]): sending them again costs less than looking
/// through every alternative, which for many small files one by one was most of the
/// receiver's work.
pub(super) const SHORT_RESUME_SEARCH_BYTES: u64 = 4 << 20;

impl PartFile {
    /// Finds a partial file an earlier, interrupted upload of this name left behind, holding
    /// between 1 and `size` bytes and not in use. Returns it positioned at its end, with its
    /// length. Whether its bytes really are the start of the offered file is for the caller
    /// to check (by hash) with the sender.
    ///
    /// Only a regular file with a single link owned by us is taken, checked on the open file
    /// before a byte is read: a symlink, a hard link to a file elsewhere, a FIFO or someone
    /// else's file under a partial's name is left alone (never read, written or hashed).
    ///
    /// A partial was made under the name itself if it was free, else under the first numbered
    /// name free at the time from where this server's free-name search for that name started
    /// (its remembered next number), so the search goes through the alternatives a partial
    /// may be under. For a file of at most
    /// 4 MiB (`SHORT_RESUME_SEARCH_BYTES`) it stops at the first number, from that remembered
    /// one on, whose name is taken by nothing (no file, no upload of this server's): a
    /// partial further on, made while that name was taken by a file since moved away (or by
    /// an earlier run of the server, whose remembered numbers are gone), is not worth the
    /// lookups; that upload just starts over, and its old partial expires.
    pub fn resumable(
        downloads: &Downloads,
        safe: &SafeName,
        size: u64,
        tag: Option<&str>,
    ) -> io::Result<Option<(Self, u64)>> {
        let dir = &downloads.0.dir;
        let short_search = size <= SHORT_RESUME_SEARCH_BYTES;
        // `create` skips the names below this one without looking, so a free name there says
        // nothing about where a partial was made.
        let search_started_at = downloads.name_hint(safe);
        for number in 0..MAX_RESUME_CANDIDATES {
            let final_name = safe.numbered(number);
            let part_name = part_name(&final_name, tag);
            let mut in_use = downloads.parts();
            if in_use.contains(&part_name) {
                continue;
            }
            let mut file = match dir.open_existing(&part_name) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if short_search
                        && number >= search_started_at
                        && !in_use.iter().any(|p| is_part_of(p, &final_name))
                        && !dir.exists(&final_name).unwrap_or(true)
                    {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    // A symlink (ELOOP), a folder, a file we may not open: not ours.
                    log::warn!("leaving {part_name:?} alone: {e}");
                    continue;
                }
            };
            if !DownloadDir::is_ours(&file) {
                log::warn!(
                    "leaving {part_name:?} alone: not a regular file of ours with a single link"
                );
                continue;
            }
            let len = file.metadata()?.len();
            if len == 0 || len > size {
                continue;
            }
            file.seek(SeekFrom::End(0))?;
            in_use.insert(part_name.clone());
            drop(in_use);
            return Ok(Some((
                Self::open(downloads, safe, number, part_name, file),
                len,
            )));
        }
        Ok(None)
    }
}

/// Whether `part` is a partial of the final name `final_name` (with any tag, or none).
pub(super) fn is_part_of(part: &str, final_name: &str) -> bool {
    part.strip_prefix(final_name)
        .and_then(|rest| rest.strip_suffix(PART_SUFFIX))
        .is_some_and(|tag| tag.is_empty() || (tag.starts_with('.') && !tag[1..].contains('.')))
}
