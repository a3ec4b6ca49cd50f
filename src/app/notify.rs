//! Desktop notifications, behind a seam ([`Notifier`]) so tests can count them without a
//! notification daemon. The real one ([`DesktopNotifier`]) talks to the desktop's
//! notification service over D-Bus (`notify-rust`, pure Rust); when no service runs, the error
//! is logged at debug level and nothing else happens: notifications are a courtesy, never a
//! requirement. A received file's notification has an "Open" action where the notification
//! service supports actions.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::i18n::{T, Tr};
use super::{FerryApp, PendingOffer, RowState, TransferRow};
use crate::defaults::APP_ID;
use crate::events::FailureKind;

/// Notifications whose "Open" action is being waited for at once; each holds a thread until
/// the notification closes, so later ones go without the action.
const MAX_WAITING_FOR_ACTION: usize = 4;
static WAITING_FOR_ACTION: AtomicUsize = AtomicUsize::new(0);

/// Shows one notification. Must not block the caller (the UI thread).
pub trait Notifier: Send + Sync {
    fn notify(&self, summary: &str, body: &str);

    /// A notification about a received file, which the user may open from it (an action
    /// labelled `open_label`, in the window's language).
    fn notify_file(&self, summary: &str, body: &str, _file: &Path, _open_label: &str) {
        self.notify(summary, body);
    }
}

/// Notifications through the desktop's notification service.
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn notify(&self, summary: &str, body: &str) {
        let (summary, body) = (summary.to_owned(), body.to_owned());
        // D-Bus calls block; a notification is rare, so a short-lived thread is enough.
        let spawned = std::thread::Builder::new()
            .name("ferry-notify".into())
            .spawn(move || {
                let shown = notify_rust::Notification::new()
                    .appname("Ferry")
                    .summary(&summary)
                    .body(&body)
                    .icon(APP_ID)
                    .show();
                if let Err(e) = shown {
                    log::debug!("no desktop notification ({e})");
                }
            });
        if let Err(e) = spawned {
            log::debug!("no desktop notification (cannot start a thread: {e})");
        }
    }

    fn notify_file(&self, summary: &str, body: &str, file: &Path, open_label: &str) {
        let claimed = WAITING_FOR_ACTION
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_WAITING_FOR_ACTION).then_some(n + 1)
            })
            .is_ok();
        if !claimed {
            return self.notify(summary, body);
        }
        let (summary, body, file) = (summary.to_owned(), body.to_owned(), file.to_owned());
        let open_label = open_label.to_owned();
        let spawned = std::thread::Builder::new()
            .name("ferry-notify".into())
            .spawn(move || {
                show_with_open(&summary, &body, file, &open_label);
                WAITING_FOR_ACTION.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            WAITING_FOR_ACTION.fetch_sub(1, Ordering::SeqCst);
            log::debug!("no desktop notification (cannot start a thread: {e})");
        }
    }
}

/// Shows a notification with an "Open" action and waits (on its own thread) until it is
/// clicked or closed.
fn show_with_open(summary: &str, body: &str, file: PathBuf, open_label: &str) {
    let shown = notify_rust::Notification::new()
        .appname("Ferry")
        .summary(summary)
        .body(body)
        .icon(APP_ID)
        // "default" is a click on the notification itself.
        .action("default", open_label)
        .action("open", open_label)
        .show();
    match shown {
        Ok(handle) => handle.wait_for_action(|action| {
            if matches!(action, "default" | "open")
                && let Err(e) = opener::open(&file)
            {
                log::warn!("cannot open {}: {e}", file.display());
            }
        }),
        Err(e) => log::debug!("no desktop notification ({e})"),
    }
}

/// How many notifications of one kind ([`NotifyBudgets`]) may be shown within one
/// [`NOTIFY_WINDOW`]: anyone on the LAN may
/// send notes (and, when everyone is accepted, files) as fast as it likes, and each would be
/// a notification on the desktop (and a thread talking to its service). The rest are left
/// out; the window's counts and rows still show everything.
pub const NOTIFY_BURST: u32 = 3;
pub const NOTIFY_WINDOW: Duration = Duration::from_secs(10);

/// The notifications left in the current window (see [`NOTIFY_BURST`]).
#[derive(Debug, Default)]
pub struct NotifyBudget {
    /// When the current window began, and how many it has shown.
    window: Cell<Option<(Instant, u32)>>,
}

impl NotifyBudget {
    /// Takes one notification at `now`; false when the window's are used up.
    pub fn take(&self, now: Instant) -> bool {
        let (start, shown) = match self.window.get() {
            Some((start, shown)) if now.saturating_duration_since(start) < NOTIFY_WINDOW => {
                (start, shown)
            }
            _ => (now, 0),
        };
        let allowed = shown < NOTIFY_BURST;
        self.window.set(Some((start, shown + u32::from(allowed))));
        allowed
    }
}

/// One budget per kind: notes cost a stranger one datagram from any source address, a file
/// a whole TCP upload, so a flood of notes must not use up the notifications of the files
/// that arrive meanwhile (nor, on its own, tell the user of no file at all).
#[derive(Debug, Default)]
pub struct NotifyBudgets {
    /// Senders waiting for the user's answer: the one notification that must not be crowded
    /// out by the others.
    pub offers: NotifyBudget,
    pub notes: NotifyBudget,
    /// Files received, sent, declined or failed.
    pub files: NotifyBudget,
}

/// The window's notifications, each within its kind's budget.
impl FerryApp {
    /// Whether a notification is to be shown now: the user wants them, is looking elsewhere,
    /// and a flood has not used up the last seconds' share of its kind (see
    /// [`super::notify::NotifyBudgets`]).
    pub(super) fn notifying(&self, budget: &NotifyBudget) -> bool {
        self.notifications && !self.window_focused && budget.take(Instant::now())
    }

    pub(super) fn notify(&self, budget: &NotifyBudget, summary: &str, body: &str) {
        if self.notifying(budget) {
            self.notifier.notify(summary, body);
        }
    }

    /// A sender waits for the user's answer (its folder's or first file's name; the text is
    /// display-safe already, as every event the window takes).
    pub(super) fn notify_offer(&self, offer: &PendingOffer) {
        let tr = Tr(self.lang);
        let first = offer.names.first().map_or("", String::as_str);
        let mut what = match &offer.folder {
            Some(folder) => folder.name.clone(),
            None => first.to_owned(),
        };
        if offer.folder.is_none() && offer.count > 1 {
            what.push_str(&format!(" (+{})", offer.count - 1));
        }
        let mut body = tr.fill(T::NotifyFrom, &[&offer.peer]);
        if !offer.msg.is_empty() {
            body.push('\n');
            // A glimpse, as of a note: the whole message is in the window's prompt.
            body.extend(offer.msg.chars().take(super::logic::NOTIFY_NOTE_CHARS));
        }
        let budget = &self.notify_budgets.offers;
        self.notify(budget, &tr.fill(T::NotifyOffer, &[&what]), &body);
    }

    /// A file ended (verified, unverified, failed, declined; a cancel is the user's own doing
    /// or shown in the row, and is not announced).
    pub(super) fn notify_finished(&self, row: &TransferRow) {
        let tr = Tr(self.lang);
        let name = row.saved_as.as_deref().unwrap_or(&row.name);
        let summary = match &row.state {
            RowState::Verified | RowState::Unverified if row.dest.is_some() => {
                tr.fill(T::NotifySent, &[&name])
            }
            RowState::Verified | RowState::Unverified => tr.fill(T::NotifyReceived, &[&name]),
            RowState::Failed(f)
                if matches!(f.kind, FailureKind::Declined | FailureKind::Refused(_))
                    && row.dest.is_some() =>
            {
                tr.fill(T::NotifyDeclined, &[&name])
            }
            RowState::Failed(_) => tr.fill(T::NotifyFailed, &[&name]),
            _ => return,
        };
        let peer = row.peer.map(|p| p.to_string()).unwrap_or_default();
        // Only uploads from the Client tab have a destination.
        let mut body = if row.dest.is_some() {
            tr.fill(T::NotifyTo, &[&peer])
        } else {
            tr.fill(T::NotifyFrom, &[&peer])
        };
        if !row.msg.is_empty() {
            body.push('\n');
            body.push_str(&row.msg);
        }
        if !self.notifying(&self.notify_budgets.files) {
            return;
        }
        // A received file can be opened from its notification.
        match &row.path {
            Some(path) if row.dest.is_none() => {
                self.notifier
                    .notify_file(&summary, &body, path, tr.get(T::Open))
            }
            _ => self.notifier.notify(&summary, &body),
        }
    }
}

/// Shows nothing: the window built without a desktop (headless tests that do not count).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _summary: &str, _body: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_nothing_until_the_window_ends() {
        let budget = NotifyBudget::default();
        let t0 = Instant::now();
        for _ in 0..NOTIFY_BURST {
            assert!(budget.take(t0));
        }
        assert!(!budget.take(t0 + NOTIFY_WINDOW / 2));
        assert!(budget.take(t0 + NOTIFY_WINDOW));
    }
}
