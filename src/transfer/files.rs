//! Receiving a file safely on disk: a `.ferry.part` file beside the final name, a final name that
//! never overwrites anything, an atomic commit, and partial files kept for resume.
//!
//! Invariants:
//! - While bytes arrive, only `NAME.ferry.part` exists; `NAME` appears (by hard link, which fails
//!   rather than replaces) only in [`PartFile::commit`].
//! - Dropping an uncommitted `PartFile` deletes the `.part` (so every early return cleans up),
//!   unless [`PartFile::keep`] asked to keep it for a later resume.
//! - A `.part` in use by a live transfer is listed in the [`PartRegistry`], so a second
//!   connection can neither resume nor reuse it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::protocol::SafeName;

/// How many numbered alternatives (`name (n).ext`) are tried before giving up.
const MAX_ALTERNATIVES: u32 = 10_000;
/// How many numbered alternatives are searched for a partial file to resume.
const MAX_RESUME_CANDIDATES: u32 = 100;

/// The `.part` files live transfers are writing (shared by one server's connections).
#[derive(Debug, Clone, Default)]
pub struct PartRegistry(Arc<Mutex<HashSet<PathBuf>>>);

impl PartRegistry {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        // A panicking connection thread must not take the others down with it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A file being received.
#[derive(Debug)]
pub struct PartFile {
    dir: PathBuf,
    safe: SafeName,
    /// The `n` in `name (n).ext` currently reserved by the `.part` file.
    number: u32,
    /// Empty once committed (nothing left to clean up).
    part_path: PathBuf,
    file: Option<File>,
    registry: PartRegistry,
    keep: bool,
}

/// What Ferry appends to a file being received. Distinct from a plain `.part` (browsers use
/// that), so a user's own `a.txt.part` is never mistaken for a partial to resume or reuse;
/// [`crate::protocol::sanitize_file_name`] keeps received names from ending in it.
pub const PART_SUFFIX: &str = crate::protocol::PART_SUFFIX;

/// How many hex digits of a sender's resume key go into a part file's name.
pub const RESUME_TAG_LEN: usize = 16;

/// `NAME.ferry.part`, or `NAME.TAG.ferry.part` for a Ferry sender's resume key, so only the
/// same sender sending the same file ever finds (or disturbs) that partial.
fn part_name(final_name: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{final_name}.{tag}{PART_SUFFIX}"),
        None => format!("{final_name}{PART_SUFFIX}"),
    }
}

impl PartFile {
    /// Reserves the first free name (`a.txt`, `a (1).txt`, ...) for which neither the name nor
    /// its `.part` exists, by creating the `.part` exclusively.
    pub fn create(
        dir: &Path,
        safe: &SafeName,
        tag: Option<&str>,
        registry: &PartRegistry,
    ) -> io::Result<Self> {
        for number in 0..MAX_ALTERNATIVES {
            let final_name = safe.numbered(number);
            if dir.join(&final_name).symlink_metadata().is_ok() {
                continue;
            }
            let part_path = dir.join(part_name(&final_name, tag));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&part_path)
            {
                Ok(file) => {
                    registry.set().insert(part_path.clone());
                    return Ok(Self::open(dir, safe, number, part_path, file, registry));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!("no free name for {safe} in {}", dir.display()),
        ))
    }

    /// Finds a partial file an earlier, interrupted upload of this name left behind, holding
    /// between 1 and `size` bytes and not in use. Returns it positioned at its end, with its
    /// length. Whether its bytes really are the start of the offered file is for the caller
    /// to check (by hash) with the sender.
    pub fn resumable(
        dir: &Path,
        safe: &SafeName,
        size: u64,
        tag: Option<&str>,
        registry: &PartRegistry,
    ) -> io::Result<Option<(Self, u64)>> {
        for number in 0..MAX_RESUME_CANDIDATES {
            let part_path = dir.join(part_name(&safe.numbered(number), tag));
            let Ok(meta) = part_path.symlink_metadata() else {
                continue;
            };
            let len = meta.len();
            if !meta.is_file() || len == 0 || len > size {
                continue;
            }
            let mut in_use = registry.set();
            if in_use.contains(&part_path) {
                continue;
            }
            let mut file = OpenOptions::new().read(true).write(true).open(&part_path)?;
            file.seek(SeekFrom::End(0))?;
            in_use.insert(part_path.clone());
            drop(in_use);
            return Ok(Some((
                Self::open(dir, safe, number, part_path, file, registry),
                len,
            )));
        }
        Ok(None)
    }

    fn open(
        dir: &Path,
        safe: &SafeName,
        number: u32,
        part_path: PathBuf,
        file: File,
        registry: &PartRegistry,
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            safe: safe.clone(),
            number,
            part_path,
            file: Some(file),
            registry: registry.clone(),
            keep: false,
        }
    }

    /// The name the file will get, as far as known now.
    pub fn final_name(&self) -> String {
        self.safe.numbered(self.number)
    }

    /// The open `.part` file to write into.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("part file already closed"))
    }

    /// BLAKE3 of the first `len` bytes (a resumed partial's prefix); leaves the file
    /// positioned at `len`, ready to append.
    /// `tick` is called between buffers, so a long hash can keep its peer informed.
    pub fn hash_prefix(
        &mut self,
        len: u64,
        buf: &mut [u8],
        mut tick: impl FnMut(),
    ) -> io::Result<blake3::Hasher> {
        let file = self.file()?;
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = blake3::Hasher::new();
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..want])?;
            hasher.update(&buf[..want]);
            left -= want as u64;
            tick();
        }
        Ok(hasher)
    }

    /// Undoes [`PartFile::keep`]: the `.part` is removed when this is dropped.
    pub fn discard_on_drop(&mut self) {
        self.keep = false;
    }

    /// Empties the file to start over (a partial that did not match the sender's file).
    pub fn restart(&mut self) -> io::Result<()> {
        let file = self.file()?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    /// Keeps the `.part` on disk when this is dropped, for a later resume, if it holds
    /// anything (an empty one would only block the name).
    pub fn keep(&mut self) {
        self.keep = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() > 0);
    }

    /// Moves the complete file to its final name without ever replacing an existing file.
    /// If the name was taken meanwhile (by something outside Ferry), the next free number is
    /// used. Returns the final path.
    pub fn commit(&mut self) -> io::Result<PathBuf> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        for number in self.number..MAX_ALTERNATIVES {
            let target = self.dir.join(self.safe.numbered(number));
            let linked = match fs::hard_link(&self.part_path, &target) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                // File systems without hard links: fall back to a checked rename.
                Err(_) if target.symlink_metadata().is_err() => {
                    fs::rename(&self.part_path, &target)?;
                    true
                }
                Err(_) => false,
            };
            if linked {
                // The data is safe under its final name; a leftover .part is only clutter.
                // Hold the registry while the name is freed, so no other transfer can take
                // the name between the removal and the unregistration.
                let mut in_use = self.registry.set();
                let _ = fs::remove_file(&self.part_path);
                in_use.remove(&self.part_path);
                drop(in_use);
                self.number = number;
                self.part_path = PathBuf::new();
                return Ok(target);
            }
        }
        Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "no free final name",
        ))
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if self.part_path.as_os_str().is_empty() {
            return;
        }
        // As in `commit`: free the name and unregister it as one step.
        let mut in_use = self.registry.set();
        if !self.keep {
            let _ = fs::remove_file(&self.part_path);
        }
        in_use.remove(&self.part_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sanitize_file_name;

    #[test]
    fn never_overwrites_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartRegistry::default();
        fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let name = sanitize_file_name("a.txt");

        let mut first = PartFile::create(dir.path(), &name, None, &registry).unwrap();
        let mut second = PartFile::create(dir.path(), &name, None, &registry).unwrap();
        assert_eq!(first.final_name(), "a (1).txt");
        assert_eq!(second.final_name(), "a (2).txt");
        first.file().unwrap().write_all(b"one").unwrap();
        second.file().unwrap().write_all(b"two").unwrap();
        assert!(
            !dir.path().join("a (1).txt").exists(),
            "no final name before commit"
        );

        let path = first.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        drop(second);
        assert!(!dir.path().join("a (2).txt.ferry.part").exists());
        assert!(!dir.path().join("a (2).txt").exists());
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"old");
        assert!(registry.set().is_empty());
    }

    #[test]
    fn commit_skips_a_name_taken_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartRegistry::default();
        let mut part =
            PartFile::create(dir.path(), &sanitize_file_name("b.txt"), None, &registry).unwrap();
        part.file().unwrap().write_all(b"new").unwrap();
        fs::write(dir.path().join("b.txt"), b"someone else").unwrap();
        let path = part.commit().unwrap();
        assert_eq!(path, dir.path().join("b (1).txt"));
        assert_eq!(fs::read(dir.path().join("b.txt")).unwrap(), b"someone else");
        assert!(!dir.path().join("b.txt.ferry.part").exists());
    }

    #[test]
    fn a_kept_partial_is_found_for_resume_but_never_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartRegistry::default();
        let name = sanitize_file_name("c.bin");
        let mut part = PartFile::create(dir.path(), &name, None, &registry).unwrap();
        part.file().unwrap().write_all(b"hello").unwrap();
        assert!(
            PartFile::resumable(dir.path(), &name, 10, None, &registry)
                .unwrap()
                .is_none(),
            "a live part is not resumable"
        );
        part.keep();
        drop(part);
        assert!(dir.path().join("c.bin.ferry.part").exists());
        assert!(
            PartFile::resumable(dir.path(), &name, 4, None, &registry)
                .unwrap()
                .is_none(),
            "longer than offered"
        );
        let (mut resumed, len) = PartFile::resumable(dir.path(), &name, 10, None, &registry)
            .unwrap()
            .unwrap();
        assert_eq!(len, 5);
        let hasher = resumed.hash_prefix(len, &mut [0u8; 2], || {}).unwrap();
        assert_eq!(hasher.finalize(), blake3::hash(b"hello"));
        resumed.file().unwrap().write_all(b" world").unwrap();
        assert_eq!(resumed.commit().unwrap(), dir.path().join("c.bin"));
        assert_eq!(fs::read(dir.path().join("c.bin")).unwrap(), b"hello world");
    }
}
