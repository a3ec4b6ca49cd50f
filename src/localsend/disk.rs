//! Where a LocalSend upload's bytes go, kept off the runtime's one thread: the folders of a
//! session (a LocalSend folder arrives as files named `photos/2024/a.jpg`) made with the
//! Ferry folder receiver's machinery, and a writer on tokio's blocking pool that takes a
//! body's chunks through a bounded channel, so a slow disk or a long fsync stalls only its
//! own upload, never every other connection.
//!
//! Folders: each top-level folder of a session becomes one root under a free name beneath
//! the download handle (`photos`, or `photos (1)` when taken; every file of the session
//! under `photos` goes in that one root), each subfolder is made with `mkdirat` and opened
//! `O_DIRECTORY | O_NOFOLLOW` beneath its parent's handle ([`crate::transfer::make_dir`]),
//! and every component was sanitised like a file name ([`super::wire::safe_path`]).

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::sanitize_file_name;
use crate::transfer::{Downloads, PartFile, create_root, make_dir};

/// Chunks of one body waiting for its writer at most (hyper's chunks are at most a few
/// hundred KiB: a few MiB per upload in all).
pub(super) const CHUNKS_IN_FLIGHT: usize = 4;

/// The folders a session made, by the sender's sanitised components.
pub(super) struct Tree {
    downloads: Downloads,
    /// Per sanitised top-level name: the root's name as created, or why it could not be.
    roots: HashMap<String, Result<String, String>>,
    /// Per sanitised components (the sender's top-level name first): the folder's handle.
    dirs: HashMap<Vec<String>, Result<Downloads, String>>,
}

impl Tree {
    pub(super) fn new(downloads: Downloads) -> Self {
        Self {
            downloads,
            roots: HashMap::new(),
            dirs: HashMap::new(),
        }
    }

    /// The folder a file inside `folders` goes in (made as needed, parents first), and
    /// the path shown for it relative to the download folder (`photos (1)/2024/`).
    pub(super) fn folder_for(&mut self, folders: &[String]) -> Result<(Downloads, String), String> {
        let Some(top) = folders.first() else {
            return Ok((self.downloads.clone(), String::new()));
        };
        let root = self.root(top)?;
        let dir = self.dir(folders)?;
        let mut shown = root;
        for name in &folders[1..] {
            shown.push('/');
            shown.push_str(name);
        }
        shown.push('/');
        Ok((dir, shown))
    }

    fn root(&mut self, top: &str) -> Result<String, String> {
        if let Some(known) = self.roots.get(top) {
            return known.clone();
        }
        let made = create_root(&self.downloads, &sanitize_file_name(top))
            .map_err(|e| e.to_string())
            .map(|(name, handle)| {
                if let Err(e) = self.downloads.sync_dir() {
                    log::warn!("cannot sync the download folder: {e}");
                }
                self.dirs
                    .insert(vec![top.to_owned()], Ok(self.downloads.within(handle)));
                name
            });
        self.roots.insert(top.to_owned(), made.clone());
        made
    }

    fn dir(&mut self, components: &[String]) -> Result<Downloads, String> {
        if let Some(known) = self.dirs.get(components) {
            return known.clone();
        }
        let made = match components.split_last() {
            Some((name, parent)) if !parent.is_empty() => self
                .dir(parent)
                .and_then(|parent| make_dir(&parent, name).map_err(|e| e.to_string())),
            _ => Err("the folder's root is missing".to_owned()),
        };
        self.dirs.insert(components.to_vec(), made.clone());
        made
    }

    /// Opens the folders to others (they were made owner-only while filling), deepest
    /// first, as the Ferry folder receiver does when a folder is done.
    pub(super) fn finish(&self) {
        let mut dirs: Vec<(&Vec<String>, &Downloads)> = self
            .dirs
            .iter()
            .filter_map(|(key, dir)| dir.as_ref().ok().map(|dir| (key, dir)))
            .collect();
        dirs.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
        for (_, dir) in dirs {
            if let Err(e) = dir.dir().finish_as(None, 0o755) {
                log::warn!("{}: {e}", dir.path().display());
            }
        }
    }
}

/// Writes the chunks that arrive on `chunks` into `part` until the channel closes or a
/// write fails (it then stops taking chunks, so the sender side sees the channel closed).
/// Runs on the blocking pool; gives the file back with how it went.
pub(super) fn write_chunks(
    mut part: PartFile,
    mut chunks: mpsc::Receiver<Bytes>,
) -> (PartFile, std::io::Result<()>) {
    while let Some(chunk) = chunks.blocking_recv() {
        if let Err(e) = part.file().and_then(|f| f.write_all(&chunk)) {
            return (part, Err(e));
        }
    }
    (part, Ok(()))
}

/// Commits a complete file (its data synced, its final name made without replacing
/// anything) and makes the new name durable in a subfolder too (a root-level commit syncs
/// the download folder itself). On the blocking pool.
pub(super) fn commit(
    mut part: PartFile,
    dir: &Downloads,
    in_folder: bool,
) -> std::io::Result<std::path::PathBuf> {
    let path = part.commit()?;
    if in_folder {
        dir.sync_dir()?;
    }
    Ok(path)
}
