//! A folder as one row of a transfer table: the files of a folder upload (sent from the Client
//! tab, or arriving at the Server tab) keep their own rows and events, gathered under one
//! folder row that shows files done / total, bytes, speed, ETA and a final state, and expands
//! into the per-file rows on demand. The engine reports files only; the aggregate is computed
//! here from the children after every event, so nothing about folders is needed in the events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use super::model::{RowState, SpeedMeter, TransferRow};
use crate::events::{Failure, TransferEvent, TransferId, next_transfer_id};
use crate::protocol::Mode;
use crate::transfer::OutgoingFolder;

/// What a folder row holds besides the columns every row has.
#[derive(Debug, Clone)]
pub struct FolderGroup {
    /// One row per file, in the folder's order.
    pub children: Vec<TransferRow>,
    /// The per-file rows are shown under the folder row.
    pub expanded: bool,
    /// Sending: relative paths left out by the walk (symlinks leading out of the folder or
    /// to non-files, special files).
    pub skipped: Vec<String>,
    /// Sending: the walked folder, with the ids its children's events carry.
    pub outgoing: Option<OutgoingFolder>,
    /// Receiving: the folder's root as saved (`photos`, `photos (1)`).
    pub root: String,
}

impl FolderGroup {
    /// Files that arrived complete (verified or not).
    pub fn files_done(&self) -> usize {
        let done = |r: &&TransferRow| matches!(r.state, RowState::Verified | RowState::Unverified);
        self.children.iter().filter(done).count()
    }

    /// Files that ended without arriving (failed, declined, cancelled).
    pub fn files_failed(&self) -> usize {
        let failed =
            |r: &&TransferRow| matches!(r.state, RowState::Failed(_) | RowState::Cancelled { .. });
        self.children.iter().filter(failed).count()
    }
}

impl TransferRow {
    /// A walked folder queued in the Client tab: one row, its files as children.
    pub fn queued_folder(path: PathBuf, folder: OutgoingFolder) -> Self {
        let children: Vec<TransferRow> = folder
            .files
            .iter()
            .map(|(index, file)| {
                let entry = folder.entries.get(*index as usize);
                let size = entry.and_then(|e| e.size).unwrap_or(0);
                let mut row = TransferRow::queued(file.id, file.path.clone(), size);
                if let Some(entry) = entry {
                    row.name = entry.path.clone();
                }
                row
            })
            .collect();
        let mut row = TransferRow::queued(next_transfer_id(), path, 0);
        row.name = folder.name.clone();
        row.bytes_total = children.iter().map(|c| c.bytes_total).sum();
        row.folder = Some(Box::new(FolderGroup {
            children,
            expanded: false,
            skipped: folder.skipped.clone(),
            outgoing: Some(folder),
            root: String::new(),
        }));
        row
    }

    /// A folder arriving at the server, grouping the files saved under `root/`.
    pub fn incoming_folder(root: &str, peer: SocketAddr, mode: Mode) -> Self {
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::new(), 0);
        row.path = None;
        row.name = root.to_owned();
        row.peer = Some(peer);
        row.mode = mode;
        row.state = RowState::Active;
        row.folder = Some(Box::new(FolderGroup {
            children: Vec::new(),
            expanded: false,
            skipped: Vec::new(),
            outgoing: None,
            root: root.to_owned(),
        }));
        row
    }

    /// The child row with `id`, if this is a folder row holding it.
    pub fn child_mut(&mut self, id: TransferId) -> Option<&mut TransferRow> {
        let group = self.folder.as_mut()?;
        group.children.iter_mut().find(|c| c.id == id)
    }

    /// Recomputes a folder row's columns from its children (after any child's event).
    pub fn refresh_folder(&mut self, now: Instant) {
        let Some(group) = self.folder.as_ref() else {
            return;
        };
        let children = &group.children;
        self.bytes_total = children.iter().map(|c| c.bytes_total).sum();
        self.bytes_done = children
            .iter()
            .map(|c| match c.state {
                RowState::Verified | RowState::Unverified => c.bytes_total,
                _ => c.bytes_done,
            })
            .sum();
        self.awaiting = children.iter().find_map(|c| c.awaiting);
        if let Some(first) = children.iter().find(|c| c.peer.is_some()) {
            self.peer = first.peer;
            self.security.clone_from(&first.security);
        }
        let unfinished = children.iter().any(|c| !c.state.is_finished());
        let state = if children.iter().any(|c| c.state == RowState::Active) {
            RowState::Active
        } else if unfinished {
            // Queued children: queued until uploaded, on its way after.
            if self.state == RowState::Queued {
                RowState::Queued
            } else {
                RowState::Active
            }
        } else {
            final_state(children)
        };
        if state == RowState::Active {
            if self.state != RowState::Active {
                self.speed = SpeedMeter::default();
            }
            self.speed.record(self.bytes_done, now);
        }
        self.state = state;
    }
}

/// A finished folder's state: verified when every file was, cancelled when every file was,
/// unverified when all arrived and some unchecked, else the first failure (the table says
/// how many failed).
fn final_state(children: &[TransferRow]) -> RowState {
    if children.iter().all(|c| c.state == RowState::Verified) {
        return RowState::Verified;
    }
    let arrived = |c: &TransferRow| matches!(c.state, RowState::Verified | RowState::Unverified);
    if children.iter().all(arrived) {
        return RowState::Unverified;
    }
    let failure = children.iter().find_map(|c| match &c.state {
        RowState::Failed(failure) => Some(failure.clone()),
        _ => None,
    });
    match failure {
        Some(failure) => RowState::Failed(failure),
        None => {
            let by_peer = children
                .iter()
                .any(|c| c.state == RowState::Cancelled { by_peer: true });
            RowState::Cancelled { by_peer }
        }
    }
}

/// The folder root of a file saved inside a folder (`photos (1)` of `photos (1)/a/b.txt`);
/// `None` for a loose file (its saved name never holds a `/`).
pub fn folder_root(saved_as: &str) -> Option<&str> {
    saved_as.split_once('/').map(|(root, _)| root)
}

/// Where a folder's root is on disk, from one of its files' path and saved name.
pub fn root_path(file_path: &std::path::Path, saved_as: &str) -> Option<PathBuf> {
    let depth = saved_as.split('/').count().checked_sub(1)?;
    file_path.ancestors().nth(depth).map(PathBuf::from)
}

/// Puts an incoming folder's file under its folder row: the latest row of that root from that
/// peer (one connection: a sender's port is its own), or a new one.
pub fn add_incoming(
    rows: &mut Vec<TransferRow>,
    root: &str,
    peer: SocketAddr,
    mode: Mode,
    child: TransferRow,
    now: Instant,
) {
    let same =
        |r: &TransferRow| r.peer == Some(peer) && r.folder.as_ref().is_some_and(|g| g.root == root);
    let index = match rows.iter().rposition(same) {
        Some(index) => index,
        None => {
            rows.push(TransferRow::incoming_folder(root, peer, mode));
            rows.len() - 1
        }
    };
    let Some(row) = rows.get_mut(index) else {
        return; // just found or pushed
    };
    if row.msg.is_empty() {
        row.msg.clone_from(&child.msg);
    }
    if let Some(group) = row.folder.as_mut() {
        group.children.push(child);
    }
    row.refresh_folder(now);
}

/// Applies a file's event to the child `id` of folder row `row`, then the folder's sums; a
/// received file tells where the folder is on disk now, and under what name (each one: the
/// folder may be renamed while it arrives). The row keeps matching its files' starts by
/// the name it was created under (`FolderGroup::root`).
pub fn apply_to_child(row: &mut TransferRow, id: TransferId, event: &TransferEvent, now: Instant) {
    let Some(child) = row.child_mut(id) else {
        return;
    };
    child.apply(event, now);
    let arrived = match (&child.path, &child.saved_as) {
        (Some(path), Some(saved_as)) if child.dest.is_none() => {
            root_path(path, saved_as).zip(folder_root(saved_as).map(str::to_owned))
        }
        _ => None,
    };
    if let Some((path, name)) = arrived {
        row.path = Some(path);
        row.name = name;
    }
    row.refresh_folder(now);
}

/// A row or a folder's file, by id.
pub fn find_row(rows: &[TransferRow], id: TransferId) -> Option<&TransferRow> {
    rows.iter().find_map(|r| {
        if r.id == id {
            return Some(r);
        }
        r.folder.as_ref()?.children.iter().find(|c| c.id == id)
    })
}

/// What a Cancel on row `id` stops: a folder row stands for its files, and the engines know
/// those (the first one not yet finished stops the folder's upload or connection).
pub fn cancel_target(rows: &[TransferRow], id: TransferId) -> TransferId {
    let folder = rows
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| r.folder.as_ref());
    match folder {
        Some(group) => group
            .children
            .iter()
            .find(|c| !c.state.is_finished())
            .map_or(id, |c| c.id),
        None => id,
    }
}

/// Shows or hides a folder row's files.
pub fn toggle(rows: &mut [TransferRow], id: TransferId) {
    let group = rows
        .iter_mut()
        .find(|r| r.id == id)
        .and_then(|r| r.folder.as_mut());
    if let Some(group) = group {
        group.expanded = !group.expanded;
    }
}

/// A failed child's failure, for the folder's hover text.
pub fn first_failure(group: &FolderGroup) -> Option<&Failure> {
    group.children.iter().find_map(|c| match &c.state {
        RowState::Failed(failure) => Some(failure),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Direction, FailureKind, Security};
    use crate::protocol::FolderEntry;
    use crate::transfer::OutgoingFile;

    fn folder() -> OutgoingFolder {
        let entry = |path: &str, size| FolderEntry {
            path: path.into(),
            size,
            mtime: 0,
            mode: 6,
        };
        OutgoingFolder {
            name: "photos".into(),
            entries: vec![entry("a.jpg", Some(100)), entry("sub", None), {
                entry("sub/b.jpg", Some(300))
            }],
            files: vec![
                (0, OutgoingFile::new("/src/photos/a.jpg")),
                (2, OutgoingFile::new("/src/photos/sub/b.jpg")),
            ],
            skipped: vec!["link-out".into()],
            resume_key: None,
        }
    }

    fn started(id: TransferId, size: u64) -> TransferEvent {
        TransferEvent::Started {
            id,
            direction: Direction::Outgoing,
            peer: "127.0.0.1:9".parse().unwrap(),
            name: "x".into(),
            saved_as: None,
            bytes_total: size,
            mode: Mode::Ferry,
            msg: String::new(),
            security: Security::Plain,
        }
    }

    fn finished(id: TransferId) -> TransferEvent {
        TransferEvent::Finished {
            id,
            verified: true,
            saved_as: None,
            path: None,
        }
    }

    #[test]
    fn a_folder_row_sums_its_files_and_ends_verified_or_with_the_failures_counted() {
        let t0 = Instant::now();
        let mut row = TransferRow::queued_folder("/src/photos".into(), folder());
        assert_eq!((row.name.as_str(), row.bytes_total), ("photos", 400));
        let ids: Vec<TransferId> = row
            .folder
            .as_ref()
            .unwrap()
            .children
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(row.folder.as_ref().unwrap().children[1].name, "sub/b.jpg");
        row.refresh_folder(t0);
        assert_eq!(row.state, RowState::Queued, "queued until uploaded");
        // Uploading: every child on its way.
        row.state = RowState::Active;
        for id in &ids {
            row.child_mut(*id).unwrap().state = RowState::Active;
        }
        row.child_mut(ids[0])
            .unwrap()
            .apply(&started(ids[0], 100), t0);
        row.child_mut(ids[0]).unwrap().apply(&finished(ids[0]), t0);
        row.refresh_folder(t0);
        assert_eq!((row.state.clone(), row.bytes_done), (RowState::Active, 100));
        assert_eq!(row.folder.as_ref().unwrap().files_done(), 1);
        row.refresh_folder(t0 + std::time::Duration::from_secs(1));
        let mut verified = row.clone();
        verified
            .child_mut(ids[1])
            .unwrap()
            .apply(&finished(ids[1]), t0);
        verified.refresh_folder(t0);
        assert_eq!(verified.state, RowState::Verified);
        assert_eq!(verified.bytes_done, 400);
        // One file failing makes the folder failed, with the count the table shows.
        let failure = Failure::new(FailureKind::ReceiverFailed, "disk full");
        row.child_mut(ids[1]).unwrap().apply(
            &TransferEvent::Failed {
                id: ids[1],
                failure: failure.clone(),
            },
            t0,
        );
        row.refresh_folder(t0);
        assert_eq!(row.state, RowState::Failed(failure));
        assert_eq!(row.folder.as_ref().unwrap().files_failed(), 1);
    }

    /// Files of a folder renamed while it arrives: the row opens, and is named, where the
    /// latest file says it is, and still takes the files that start under the old name.
    #[test]
    fn an_incoming_folder_row_follows_its_folder_renamed_during_the_receive() {
        let t0 = Instant::now();
        let peer = "127.0.0.1:9".parse().unwrap();
        let mut rows = Vec::new();
        let ids = [next_transfer_id(), next_transfer_id()];
        for (id, name) in ids.iter().zip(["a.txt", "b.txt"]) {
            let start = TransferEvent::Started {
                id: *id,
                direction: Direction::Incoming,
                peer,
                name: name.into(),
                saved_as: Some(format!("album/{name}")),
                bytes_total: 3,
                mode: Mode::Ferry,
                msg: String::new(),
                security: Security::Plain,
            };
            let child = TransferRow::from_started(&start).unwrap();
            add_incoming(&mut rows, "album", peer, Mode::Ferry, child, t0);
        }
        assert_eq!(rows.len(), 1);
        let end = |id, saved_as: &str| TransferEvent::Finished {
            id,
            verified: true,
            saved_as: Some(saved_as.into()),
            path: Some(PathBuf::from("/dl").join(saved_as)),
        };
        apply_to_child(&mut rows[0], ids[0], &end(ids[0], "album/a.txt"), t0);
        assert_eq!(rows[0].path, Some(PathBuf::from("/dl/album")));
        apply_to_child(&mut rows[0], ids[1], &end(ids[1], "renamed/b.txt"), t0);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].path.clone()),
            ("renamed", Some(PathBuf::from("/dl/renamed")))
        );
        assert_eq!(rows[0].folder.as_ref().unwrap().root, "album");
    }

    #[test]
    fn saved_names_tell_a_folder_file_from_a_loose_one() {
        assert_eq!(folder_root("photos (1)/sub/a.txt"), Some("photos (1)"));
        assert_eq!(folder_root("a (1).txt"), None);
        assert_eq!(
            root_path(
                std::path::Path::new("/dl/photos/sub/a.txt"),
                "photos/sub/a.txt"
            ),
            Some(PathBuf::from("/dl/photos"))
        );
    }
}
