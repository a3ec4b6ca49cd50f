//! The window's uploads (files and folders, `Command::Send`/`SendItems`): `send_items` on a
//! thread of its own, which also looks the receiver up and connects, kept as an [`Upload`] so
//! a Cancel with any of its files' ids stops it.

use super::Seams;
use super::engine::Upload;
use crate::events::{CancelToken, EventSink, Failure, FailureKind, TransferEvent, TransferId};
use crate::transfer::{OutgoingItem, SendOptions, send_items};

/// Starts uploading `items`; `None` (every file failed, with events) when no thread could be
/// made.
pub(super) fn start(
    seams: &Seams,
    sink: &EventSink,
    opts: SendOptions,
    items: Vec<OutgoingItem>,
) -> Option<Upload> {
    let cancel = CancelToken::new();
    let ids: Vec<TransferId> = items
        .iter()
        .flat_map(|item| item.files().into_iter().map(|f| f.id))
        .collect();
    let (thread_sink, token) = (sink.clone(), cancel.clone());
    let spawned = (seams.spawner)(
        "ferry-send",
        Box::new(move || {
            // Every outcome, including a failed connection, reaches the UI as events.
            let _ = send_items(&opts, &items, &thread_sink, &token);
        }),
    );
    match spawned {
        Ok(thread) => Some(Upload {
            ids,
            cancel,
            thread,
        }),
        Err(e) => {
            log::error!("cannot start an upload thread: {e}");
            let detail = format!("cannot start the upload: {e}");
            for id in ids {
                let failure = Failure::new(FailureKind::NotStarted, detail.clone());
                sink.transfer(TransferEvent::Failed { id, failure });
            }
            None
        }
    }
}
