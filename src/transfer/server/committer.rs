//! Naming a received folder's verified files off the connection's thread.
//!
//! A verified file inside a folder stays `.part` until its batch is committed: one sync of the
//! file system makes the whole batch's data durable, then each file gets its final name, then
//! one more sync makes the names durable, and only then are the files reported verified (see
//! [`super::folder_rx`]). Those syncs wait for the disk. Done on the connection's thread they
//! stop the network for the length of every sync; here a thread of the folder's own does them
//! while the connection goes on receiving the next batch, so the disk and the network work at
//! the same time.
//!
//! At most one batch is committed while one more waits; a third hand-off waits for the disk
//! (so a disk slower than the network slows the sender instead of piling up open files).
//! Dropping the committer commits what was handed to it, then joins the thread; a folder
//! that ends early hands over the verified files still waiting for their batch first
//! (`FolderRx`'s `Drop`), so every verified file is named and its row ends.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::folder_rx::Pending;
use crate::events::{EventSink, Failure, FailureKind, TransferEvent};
use crate::transfer::{Downloads, TransferError};

/// One file's verdict from a committed batch: `None` when named, else why not.
pub(super) struct Committed {
    pub index: u64,
    pub failure: Option<String>,
}

pub(super) struct Committer {
    batches: Option<Sender<Vec<Pending>>>,
    done: Receiver<Vec<Committed>>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// A committer for the folder whose root is `root` (the file system it syncs).
    pub(super) fn start(root: Downloads, sink: EventSink) -> std::io::Result<Self> {
        let (batches, todo) = bounded::<Vec<Pending>>(1);
        let (report, done) = bounded(2);
        let thread = std::thread::Builder::new()
            .name("ferry-commit".into())
            .spawn(move || {
                for batch in todo {
                    if report.send(commit(&root, &sink, batch)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            batches: Some(batches),
            done,
            in_flight: 0,
            thread: Some(thread),
        })
    }

    /// Hands a batch over; waits only while another batch is already waiting.
    pub(super) fn submit(&mut self, batch: Vec<Pending>) -> Vec<Committed> {
        let mut verdicts = Vec::new();
        let Some(batches) = &self.batches else {
            return verdicts;
        };
        // Both report slots may be full: take reports while waiting for room, so the
        // committer is never stuck behind us.
        let mut batch = Some(batch);
        while let Some(next) = batch.take() {
            crossbeam_channel::select! {
                send(batches, next) -> sent => {
                    if sent.is_ok() {
                        self.in_flight += 1;
                    }
                }
                recv(self.done) -> report => {
                    batch = Some(next);
                    match report {
                        Ok(report) => {
                            self.in_flight = self.in_flight.saturating_sub(1);
                            verdicts.extend(report);
                        }
                        // The thread is gone (it cannot panic short of a bug): nothing
                        // more will be named.
                        Err(_) => return verdicts,
                    }
                }
            }
        }
        verdicts
    }

    /// The verdicts of batches committed so far, without waiting.
    pub(super) fn ready(&mut self) -> Vec<Committed> {
        let mut verdicts = Vec::new();
        while let Ok(report) = self.done.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            verdicts.extend(report);
        }
        verdicts
    }

    /// Waits for every batch handed over, and returns their verdicts.
    pub(super) fn wait_all(&mut self) -> Vec<Committed> {
        let mut verdicts = Vec::new();
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(report) => verdicts.extend(report),
                Err(_) => break,
            }
            self.in_flight -= 1;
        }
        verdicts
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what it holds and end.
        self.batches = None;
        while self.done.recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Syncs the batch's data, names each file, syncs the names, then reports each file.
fn commit(root: &Downloads, sink: &EventSink, batch: Vec<Pending>) -> Vec<Committed> {
    let synced = match root.fsync() {
        true => root.sync_all_data().map_err(|e| e.to_string()),
        false => Ok(()),
    };
    let mut named: Vec<(Pending, Result<PathBuf, String>)> = Vec::with_capacity(batch.len());
    for mut pending in batch {
        let committed = synced.clone().and_then(|()| {
            pending
                .part
                .commit_synced()
                .map_err(|e| TransferError::Disk(e).to_string())
        });
        named.push((pending, committed));
    }
    if root.fsync()
        && named.iter().any(|(_, c)| c.is_ok())
        && let Err(e) = root.sync_all_data()
    {
        log::warn!("cannot sync {:?}: {e}", root.path());
    }
    let mut verdicts = Vec::with_capacity(named.len());
    for (pending, committed) in named {
        let Pending {
            id, index, shown, ..
        } = pending;
        match committed {
            Ok(path) => {
                sink.transfer(TransferEvent::Finished {
                    id,
                    verified: true,
                    saved_as: Some(shown),
                    path: Some(path),
                });
                verdicts.push(Committed {
                    index,
                    failure: None,
                });
            }
            Err(reason) => {
                let failure = Failure::new(FailureKind::Disk, reason.clone());
                sink.transfer(TransferEvent::Failed { id, failure });
                verdicts.push(Committed {
                    index,
                    failure: Some(reason),
                });
            }
        }
    }
    verdicts
}
