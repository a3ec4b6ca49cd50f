//! Where a LocalSend upload's bytes go, kept off the runtime's one thread: the folders of a
//! session (a LocalSend folder arrives as files named `photos/2024/a.jpg`) made with the
//! Ferry folder receiver's machinery, and a writer on tokio's blocking pool that takes a
//! body's chunks through a bounded channel, so a slow disk or a long fsync stalls only its
//! own upload, never every other connection.
//!
//! Folders: each top-level folder of a session becomes one root under a free name beneath
//! the download handle (`photos`, or `photos (1)` when taken; every file of the session
//! under `photos` goes in that one root), each subfolder is made with `mkdirat` and opened
//! `O_DIRECTORY | O_NOFOLLOW` beneath its parent's handle ([`crate::transfer::Dirs`]),
//! and every component was sanitised like a file name ([`super::wire::safe_path`]). At
//! most a few hundred of a session's folder handles are open at once (the Ferry folder
//! receiver's LRU, [`crate::transfer::Dirs`]), however many folders the sender lists.

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::sanitize_file_name;
use crate::transfer::{Dirs, Downloads, Landing, Paced, PartFile, create_root};

/// Chunks of one body waiting for its writer at most (hyper's chunks are at most a few
/// hundred KiB: a few MiB per upload in all).
pub(super) const CHUNKS_IN_FLIGHT: usize = 4;

/// The folders a session made, at most a few of them open at once: a sender chooses the
/// listing (tens of thousands of `a/b{n}/f`), so one open handle per folder would let it
/// exhaust the process's descriptors. The Ferry folder receiver's [`Dirs`] keeps them,
/// rooted at the download folder and keyed by the root's name as created followed by the
/// sender's sanitised subfolder names; a closed folder is opened again beneath its parent,
/// never through a symlink, only if it is ours and still the very folder made (a root
/// renamed away and replaced by another folder of the user's is never written into, nor
/// opened to others by [`Tree::finish`]).
pub(super) struct Tree {
    downloads: Downloads,
    /// Per sanitised top-level name: the root's name as created, or why it could not be.
    roots: HashMap<String, Result<String, String>>,
    dirs: Dirs,
}

impl Tree {
    pub(super) fn new(downloads: Downloads) -> Self {
        Self {
            dirs: Dirs::new(downloads.clone()),
            downloads,
            roots: HashMap::new(),
        }
    }

    /// The folder a file inside `folders` goes in (made as needed, parents first), and
    /// the path shown for it relative to the download folder (`photos (1)/2024/`).
    pub(super) fn folder_for(&mut self, folders: &[String]) -> Result<(Downloads, String), String> {
        let Some(top) = folders.first() else {
            return Ok((self.downloads.clone(), String::new()));
        };
        let mut key = Vec::with_capacity(folders.len());
        key.push(self.root(top)?);
        key.extend(folders[1..].iter().cloned());
        let dir = self.dirs.get_or_make(&key)?;
        let mut shown = key.join("/");
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
                    .adopt(std::slice::from_ref(&name), self.downloads.within(handle));
                name
            });
        self.roots.insert(top.to_owned(), made.clone());
        made
    }

    /// Opens the folders to others (they were made owner-only while filling), deepest
    /// first, as the Ferry folder receiver does when a folder is done; a folder whose
    /// handle was closed is opened again for it (as strictly as it was made).
    pub(super) fn finish(&mut self) {
        for key in self.dirs.made_folders() {
            match self.dirs.made(&key) {
                Some(Ok(dir)) => {
                    if let Err(e) = dir.dir().finish_as(None, 0o755) {
                        log::warn!("{}: {e}", dir.path().display());
                    }
                }
                Some(Err(e)) => log::warn!("{}: {e}", key.join("/")),
                None => {}
            }
        }
    }

    /// How many folder handles the session holds open.
    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.dirs.open_count()
    }
}

/// Writes the chunks that arrive on `chunks` into `part` (announced as `size` bytes) until
/// the channel closes or a write fails (it then stops taking chunks, so the sender side sees
/// the channel closed), as a Ferry upload's file is written ([`Paced`]: moderate pieces,
/// blocks reserved ahead, and with `fsync` streamed to disk as it goes, so the sync before
/// the file is named, while the sender waits for its answer, finds little left). Runs on the
/// blocking pool; gives the file back with how it went.
pub(super) fn write_chunks(
    mut part: PartFile,
    mut chunks: mpsc::Receiver<Bytes>,
    size: u64,
    landing: Landing,
) -> (PartFile, std::io::Result<()>) {
    let written = (|| {
        let mut paced = Paced::new(part.file()?, 0, landing, Some(size));
        let mut written = Ok(());
        while let Some(chunk) = chunks.blocking_recv() {
            written = paced.write_all(&chunk);
            if written.is_err() {
                break;
            }
        }
        // What was taken reaches the file; blocks reserved past what arrived go back (a
        // body shorter than announced).
        if written.is_ok() {
            written = paced.flush();
        }
        paced.release();
        written
    })();
    (part, written)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// The writer takes every chunk, in order, into the part; a body that ends short of its
    /// announced size leaves no blocks reserved past what arrived (the reservation ahead
    /// is given back), synced or not.
    #[test]
    fn chunks_are_written_whole_and_a_short_body_keeps_no_reservation() {
        const MIB: usize = 1 << 20;
        for landing in [Landing::Direct, Landing::Synced, Landing::Cached] {
            let tmp = tempfile::tempdir().unwrap();
            let downloads = Downloads::open(tmp.path(), landing != Landing::Cached).unwrap();
            let part = PartFile::create(&downloads, &sanitize_file_name("大.bin"), None).unwrap();
            let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
            // 14 MiB of uneven chunks, announced as 64 MiB.
            let sent: Vec<u8> = (0..14 * MIB).map(|i| (i % 251) as u8).collect();
            let feeding = std::thread::spawn(move || {
                for chunk in sent.chunks(300_007) {
                    tx.blocking_send(Bytes::copy_from_slice(chunk)).unwrap();
                }
                sent
            });
            let (mut part, written) = write_chunks(part, rx, 64 * MIB as u64, landing);
            let sent = feeding.join().unwrap();
            written.unwrap();
            let file = part.file().unwrap();
            let meta = file.metadata().unwrap();
            assert_eq!(meta.len(), sent.len() as u64);
            // Not more than what arrived (and a block's rounding): the 64 MiB announced, or the
            // reservation ahead of the writes, would show here.
            assert!(
                meta.blocks() * 512 <= sent.len() as u64 + 64 * 1024,
                "{}",
                meta.blocks()
            );
            let mut back = Vec::new();
            use std::io::{Read, Seek};
            file.seek(std::io::SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut back).unwrap();
            assert!(back == sent, "{landing:?}: the bytes differ");
        }
    }

    #[test]
    fn a_session_of_many_folders_holds_few_handles_and_opens_every_folder_when_done() {
        let tmp = tempfile::tempdir().unwrap();
        let downloads = Downloads::open(tmp.path(), false).unwrap();
        let mut tree = Tree::new(downloads);
        let folders = |i: usize| vec!["a".to_owned(), format!("b{i}")];
        for i in 0..600 {
            let (dir, shown) = tree.folder_for(&folders(i)).unwrap();
            assert_eq!(shown, format!("a/b{i}/"));
            dir.dir().create_new("f").unwrap();
            // A second top-level folder now and then: its own root, counted the same way.
            if i % 100 == 0 {
                tree.folder_for(&[format!("top{i}")]).unwrap();
            }
        }
        assert!(tree.open_count() <= 256, "{} open", tree.open_count());
        // The first folders' handles were closed long ago: reopened, still the same folder.
        let (again, _) = tree.folder_for(&folders(0)).unwrap();
        again.dir().create_new("g").unwrap();
        assert!(tmp.path().join("a/b0/g").is_file());
        tree.finish();
        for i in [0, 1, 300, 599] {
            let mode = std::fs::metadata(tmp.path().join(format!("a/b{i}")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755, "a/b{i}");
        }
        let top = std::fs::metadata(tmp.path().join("a")).unwrap();
        assert_eq!(top.permissions().mode() & 0o777, 0o755);
    }
}
