//! Receiving a file safely on disk: a `.part` file beside the final name, a final name that
//! never overwrites anything, and an atomic commit.
//!
//! Invariant: while bytes arrive, only `NAME.part` exists; `NAME` appears (by hard link, which
//! fails rather than replaces) only in [`PartFile::commit`]. Dropping an uncommitted
//! `PartFile` deletes the `.part`, so every early return cleans up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::protocol::SafeName;

/// How many numbered alternatives (`name (n).ext`) are tried before giving up.
const MAX_ALTERNATIVES: u32 = 10_000;

/// A file being received.
#[derive(Debug)]
pub struct PartFile {
    dir: PathBuf,
    safe: SafeName,
    /// The `n` in `name (n).ext` currently reserved by the `.part` file.
    number: u32,
    part_path: PathBuf,
    file: Option<File>,
}

fn part_name(final_name: &str) -> String {
    format!("{final_name}.part")
}

impl PartFile {
    /// Reserves the first free name (`a.txt`, `a (1).txt`, ...) for which neither the name nor
    /// its `.part` exists, by creating the `.part` exclusively.
    pub fn create(dir: &Path, safe: &SafeName) -> io::Result<Self> {
        for number in 0..MAX_ALTERNATIVES {
            let final_name = safe.numbered(number);
            if dir.join(&final_name).symlink_metadata().is_ok() {
                continue;
            }
            let part_path = dir.join(part_name(&final_name));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&part_path)
            {
                Ok(file) => {
                    return Ok(Self {
                        dir: dir.to_owned(),
                        safe: safe.clone(),
                        number,
                        part_path,
                        file: Some(file),
                    });
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

    /// Moves the complete file to its final name without ever replacing an existing file.
    /// If the name was taken meanwhile (by something outside Ferry), the next free number is
    /// used. Returns the final path.
    pub fn commit(&mut self) -> io::Result<PathBuf> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        for number in self.number..MAX_ALTERNATIVES {
            let target = self.dir.join(self.safe.numbered(number));
            match fs::hard_link(&self.part_path, &target) {
                Ok(()) => {
                    // The data is safe under its final name; a leftover .part is only clutter.
                    let _ = fs::remove_file(&self.part_path);
                    self.number = number;
                    self.part_path = PathBuf::new();
                    return Ok(target);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                // File systems without hard links: fall back to a checked rename.
                Err(_) if target.symlink_metadata().is_err() => {
                    fs::rename(&self.part_path, &target)?;
                    self.number = number;
                    self.part_path = PathBuf::new();
                    return Ok(target);
                }
                Err(_) => continue,
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
        if !self.part_path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.part_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sanitize_file_name;

    #[test]
    fn never_overwrites_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let name = sanitize_file_name("a.txt");

        let mut first = PartFile::create(dir.path(), &name).unwrap();
        let mut second = PartFile::create(dir.path(), &name).unwrap();
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
        assert!(!dir.path().join("a (2).txt.part").exists());
        assert!(!dir.path().join("a (2).txt").exists());
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"old");
    }

    #[test]
    fn commit_skips_a_name_taken_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = PartFile::create(dir.path(), &sanitize_file_name("b.txt")).unwrap();
        part.file().unwrap().write_all(b"new").unwrap();
        fs::write(dir.path().join("b.txt"), b"someone else").unwrap();
        let path = part.commit().unwrap();
        assert_eq!(path, dir.path().join("b (1).txt"));
        assert_eq!(fs::read(dir.path().join("b.txt")).unwrap(), b"someone else");
        assert!(!dir.path().join("b.txt.part").exists());
    }
}
