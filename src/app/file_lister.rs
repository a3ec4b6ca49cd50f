//! The in-app picker's file-system work, done off the UI thread. A folder on a hung network
//! mount (NFS, SMB, sshfs), or a huge or slow folder, would otherwise freeze the whole window,
//! and with it every transfer row.
//!
//! Each request (list a folder, look at a typed path, list the typed path's folder for
//! completion) runs on its own short-lived named thread, which sends its answer through a
//! channel the picker owns and wakes the UI. Answers carry a sequence number per [`Kind`]: only
//! the newest request of a kind applies, so a slow listing of folder A that ends after the
//! user moved on to B is dropped. A new request never waits for an old one, so a request that
//! never returns stops nothing but itself; at most [`MAX_IN_FLIGHT`] may be stuck at once, so a
//! user clicking on a hung mount cannot pile up threads without end.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::protocol::escape_line;

/// Entries listed per folder; a larger folder is cut (and says so).
pub(super) const MAX_ENTRIES: usize = 5_000;
/// Requests whose thread has not answered yet, beyond which new ones are refused (each stuck
/// one holds a thread blocked in the kernel that nothing can end).
const MAX_IN_FLIGHT: usize = 32;

#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The name made safe to draw (a local name can hold control characters too).
    pub shown: String,
    pub path: PathBuf,
    pub is_dir: bool,
    /// A file's size (`None`: a folder, or a file whose size could not be read).
    pub size: Option<u64>,
}

/// A folder's entries, folders first, then by name.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    pub entries: Vec<Entry>,
    /// Cut at [`MAX_ENTRIES`].
    pub truncated: bool,
}

/// How a folder is listed: [`list`], or in tests one that can be held.
pub(super) type ListFn = Arc<dyn Fn(&Path) -> io::Result<Listing> + Send + Sync>;

/// The entries of `dir` (a local `read_dir`; a `stat` per file for its size, as a file
/// dialog shows it, and per symlink for what it leads to; no `stat` per folder), folders
/// first, then by name, cut at [`MAX_ENTRIES`].
pub(super) fn list(dir: &Path) -> io::Result<Listing> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let path = entry.path();
        // The listing's own type, without a `stat` each; only a symlink is followed (so a
        // link to a folder can be entered).
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => path.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => path.is_dir(),
        };
        // What a symlink leads to, for one.
        let size = (!is_dir)
            .then(|| std::fs::metadata(&path).ok())
            .flatten()
            .map(|meta| meta.len());
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push(Entry {
            shown: escape_line(&name).into_owned(),
            path,
            is_dir,
            size,
        });
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.shown.cmp(&b.shown)));
    Ok(Listing { entries, truncated })
}

/// Which answer a request is for: the newest request of each kind wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The folder shown (entering, going to a typed path, opening).
    Shown,
    /// The typed path's folder, for completion.
    Completion,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Shown => 0,
            Kind::Completion => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Request {
    /// List this folder.
    Enter(PathBuf),
    /// List `start` if it is a folder, else `fallback`.
    Open { start: PathBuf, fallback: PathBuf },
    /// A typed path: a folder is listed, a file is selected in its folder (listed unless it is
    /// `shown`, the folder shown when asked).
    Go { path: PathBuf, shown: PathBuf },
    /// List the typed path's folder, for completion.
    Complete(PathBuf),
}

impl Request {
    fn kind(&self) -> Kind {
        match self {
            Request::Complete(_) => Kind::Completion,
            _ => Kind::Shown,
        }
    }

    /// The work itself, on the request's thread.
    fn run(self, list: &ListFn) -> Answer {
        let listed = |dir: PathBuf, select: Option<PathBuf>| match list(&dir) {
            Ok(listing) => Answer::Listed {
                dir,
                listing,
                select,
            },
            Err(e) => Answer::Unreadable {
                dir,
                error: e.to_string(),
            },
        };
        match self {
            Request::Enter(dir) | Request::Complete(dir) => listed(dir, None),
            Request::Open { start, fallback } => {
                listed(if start.is_dir() { start } else { fallback }, None)
            }
            Request::Go { path, shown } => {
                if path.is_dir() {
                    listed(path, None)
                } else if path.is_file() {
                    match path.parent().filter(|p| *p != shown) {
                        Some(parent) => listed(parent.to_path_buf(), Some(path)),
                        None => Answer::Select(path),
                    }
                } else {
                    Answer::NoSuchPath(path)
                }
            }
        }
    }
}

#[derive(Debug)]
pub(super) enum Answer {
    /// `dir` was listed; `select` is a typed file in it.
    Listed {
        dir: PathBuf,
        listing: Listing,
        select: Option<PathBuf>,
    },
    /// A typed file in the folder shown.
    Select(PathBuf),
    Unreadable {
        dir: PathBuf,
        error: String,
    },
    NoSuchPath(PathBuf),
    /// Refused: [`MAX_IN_FLIGHT`] requests are still stuck (or no thread could be started).
    Busy,
}

#[derive(Debug)]
pub(super) struct Done {
    pub kind: Kind,
    seq: u64,
    pub answer: Answer,
}

/// Counts a request's thread as in flight until it ends (even by a panic).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts requests on their threads and hands back the answers still wanted.
pub(super) struct Lister {
    // Unbounded: a request's thread must never block on sending; there is at most one answer
    // per request made, and the UI takes them every frame.
    tx: Sender<Done>,
    rx: Receiver<Done>,
    /// The newest request of each [`Kind`], and whether its answer is still awaited.
    newest: [u64; 2],
    pending: [bool; 2],
    in_flight: Arc<AtomicUsize>,
    /// Woken when an answer is sent (unset until the picker is first opened).
    ctx: Option<egui::Context>,
    list: ListFn,
}

impl std::fmt::Debug for Lister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lister")
            .field("newest", &self.newest)
            .field("pending", &self.pending)
            .field("in_flight", &self.in_flight.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Default for Lister {
    fn default() -> Self {
        Self::with_list(Arc::new(list))
    }
}

impl Lister {
    pub fn with_list(list: ListFn) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Self {
            tx,
            rx,
            newest: [0; 2],
            pending: [false; 2],
            in_flight: Arc::default(),
            ctx: None,
            list,
        }
    }

    pub fn set_ctx(&mut self, ctx: &egui::Context) {
        self.ctx = Some(ctx.clone());
    }

    /// Starts `request` on its own thread; returns at once. Any older request of its kind is
    /// dropped (its thread runs on, its answer is ignored).
    pub fn request(&mut self, request: Request) {
        let kind = request.kind();
        let seq = self.newest[kind.index()] + 1;
        self.newest[kind.index()] = seq;
        self.pending[kind.index()] = true;
        let refuse = |tx: &Sender<Done>| {
            // The receiver is `self.rx`, alive as long as `self`: the send cannot fail.
            let _ = tx.send(Done {
                kind,
                seq,
                answer: Answer::Busy,
            });
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            refuse(&self.tx);
            return;
        }
        let guard = InFlight(Arc::clone(&self.in_flight));
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let list = Arc::clone(&self.list);
        let spawned = std::thread::Builder::new()
            .name("ferry-picker-list".into())
            .spawn(move || {
                let answer = request.run(&list);
                drop(guard);
                // The picker may be gone (window closed): then nobody wants the answer.
                let _ = tx.send(Done { kind, seq, answer });
                if let Some(ctx) = ctx {
                    ctx.request_repaint();
                }
            });
        // On failure the closure, and with it the guard, was dropped.
        if spawned.is_err() {
            refuse(&self.tx);
        }
    }

    /// Forgets the awaited answer of `kind` (its thread runs on, its answer is ignored).
    pub fn cancel(&mut self, kind: Kind) {
        self.newest[kind.index()] += 1;
        self.pending[kind.index()] = false;
    }

    pub fn is_pending(&self, kind: Kind) -> bool {
        self.pending[kind.index()]
    }

    /// The answers arrived since the last call that are still wanted.
    pub fn take(&mut self) -> Vec<Done> {
        let arrived: Vec<Done> = self.rx.try_iter().collect();
        self.wanted(arrived)
    }

    /// Like [`Lister::take`], but first waits for one answer (wanted or not) until
    /// `deadline`; `None` if none arrived.
    #[cfg(test)]
    pub fn take_waiting(&mut self, deadline: std::time::Instant) -> Option<Vec<Done>> {
        let first = self.rx.recv_deadline(deadline).ok()?;
        let arrived = std::iter::once(first).chain(self.rx.try_iter()).collect();
        Some(self.wanted(arrived))
    }

    fn wanted(&mut self, arrived: Vec<Done>) -> Vec<Done> {
        arrived
            .into_iter()
            .filter(|done| {
                let i = done.kind.index();
                let newest = done.seq == self.newest[i];
                if newest {
                    self.pending[i] = false;
                }
                newest
            })
            .collect()
    }
}
