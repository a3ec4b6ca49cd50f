//! Desktop notifications, behind a seam ([`Notifier`]) so tests can count them without a
//! notification daemon. The real one ([`DesktopNotifier`]) talks to the desktop's
//! notification service over D-Bus (`notify-rust`, pure Rust); when no service runs, the error
//! is logged at debug level and nothing else happens: notifications are a courtesy, never a
//! requirement.

use crate::defaults::APP_ID;

/// Shows one notification. Must not block the caller (the UI thread).
pub trait Notifier: Send + Sync {
    fn notify(&self, summary: &str, body: &str);
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
}

/// Shows nothing: the window built without a desktop (headless tests that do not count).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _summary: &str, _body: &str) {}
}
