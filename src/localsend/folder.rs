//! Sending folders to a LocalSend device: LocalSend v2 has no folder entries, only files
//! whose `fileName` is a `/`-separated relative path (`photos/2024/a.jpg`), which LocalSend
//! (and Ferry) recreate as folders. A folder is walked like a Ferry folder
//! ([`crate::transfer::walk_folder`]: symlinks followed only to files inside it, anything
//! else skipped and named) and each file is named `FOLDER/sub/file`. An empty folder has
//! no file to carry its name, so it cannot be sent: [`LocalSendBatch::empty_folders`] lists
//! them for the faces to say so.

use crate::transfer::{OutgoingFile, OutgoingItem};

/// What a LocalSend send carries: each file with the `fileName` it is offered under.
#[derive(Debug, Clone, Default)]
pub struct LocalSendBatch {
    pub files: Vec<(OutgoingFile, String)>,
    /// Folders (relative paths, the chosen folder's name first) with no file inside:
    /// LocalSend v2 cannot express them, so they are not sent.
    pub empty_folders: Vec<String>,
}

impl LocalSendBatch {
    /// Files by their own name, folders' files by `FOLDER/relative/path`, in order.
    pub fn of(items: &[OutgoingItem]) -> Self {
        let mut batch = Self::default();
        for item in items {
            match item {
                OutgoingItem::File(file) => {
                    let name = file
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "file".to_owned());
                    batch.files.push((file.clone(), name));
                }
                OutgoingItem::Folder(folder) => {
                    let path_of = |index: u64| {
                        usize::try_from(index)
                            .ok()
                            .and_then(|i| folder.entries.get(i))
                            .map(|e| e.path.clone())
                    };
                    // Every folder that holds a file, however deep: the others are empty.
                    // (One pass over the paths: a folder of 100 000 files in 10 000 folders
                    // was 10^9 prefix comparisons.)
                    let mut holding = std::collections::HashSet::new();
                    for (index, file) in &folder.files {
                        let rel = path_of(*index).unwrap_or_else(|| {
                            file.path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        });
                        for (at, _) in rel.match_indices('/') {
                            holding.insert(rel[..at].to_owned());
                        }
                        batch
                            .files
                            .push((file.clone(), format!("{}/{rel}", folder.name)));
                    }
                    let empty = folder
                        .entries
                        .iter()
                        .filter(|e| e.size.is_none())
                        .filter(|dir| !holding.contains(&dir.path))
                        .map(|dir| format!("{}/{}", folder.name, dir.path));
                    batch.empty_folders.extend(empty);
                    if folder.files.is_empty() {
                        batch.empty_folders.push(folder.name.clone());
                    }
                }
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_its_files_under_relative_names_and_empty_folders_are_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("photos");
        std::fs::create_dir_all(root.join("2024/raw")).unwrap();
        std::fs::create_dir_all(root.join("empty/deeper")).unwrap();
        std::fs::write(root.join("2024/raw/a.jpg"), b"a").unwrap();
        std::fs::write(root.join("b.txt"), b"b").unwrap();
        std::fs::write(tmp.path().join("c.txt"), b"c").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("out")).unwrap();
        let folder = crate::transfer::walk_folder(&root).unwrap();
        assert_eq!(folder.skipped, ["out"]);
        let items = [
            OutgoingItem::Folder(folder),
            OutgoingItem::File(OutgoingFile::new(tmp.path().join("c.txt"))),
        ];
        let batch = LocalSendBatch::of(&items);
        let names: Vec<&str> = batch.files.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["photos/2024/raw/a.jpg", "photos/b.txt", "c.txt"]);
        assert_eq!(batch.empty_folders, ["photos/empty", "photos/empty/deeper"]);
    }
}
