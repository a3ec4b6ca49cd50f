//! The resume keys of the folders being received now: one connection per key at a time
//! ([`super::Downloads::claim_folder`]), and waiting for a key to be let go
//! ([`super::Downloads::claim_folder_within`]).

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often a connection waiting for a key wakes to say so (and to see whether to give up).
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(super) struct FolderKeys {
    held: Mutex<HashSet<String>>,
    /// Notified whenever a key is let go.
    released: Condvar,
}

impl FolderKeys {
    fn held(&self) -> MutexGuard<'_, HashSet<String>> {
        // A panicking connection thread must not take the others down with it.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `key` if nobody holds it.
    pub(super) fn try_claim(&self, key: &str) -> bool {
        self.held().insert(key.to_owned())
    }

    /// Takes `key`, waiting until `deadline` for whoever holds it to let go. While it waits,
    /// `waiting` is called about every [`TICK`]; returning false gives up.
    pub(super) fn claim_within(
        &self,
        key: &str,
        deadline: Instant,
        mut waiting: impl FnMut() -> bool,
    ) -> bool {
        loop {
            {
                let mut held = self.held();
                if held.insert(key.to_owned()) {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let woken = self.released.wait_timeout(held, left.min(TICK));
                drop(woken.unwrap_or_else(PoisonError::into_inner));
            }
            if !waiting() {
                return false;
            }
        }
    }

    /// Lets `key` go, waking whoever waits for a key.
    pub(super) fn release(&self, key: &str) {
        self.held().remove(key);
        self.released.notify_all();
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.held().contains(key)
    }

    /// Whether any key held now satisfies `f`.
    pub(super) fn any(&self, f: impl FnMut(&String) -> bool) -> bool {
        self.held().iter().any(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_held_key_is_refused_then_taken_once_let_go() {
        let keys = FolderKeys::default();
        assert!(keys.try_claim("k"));
        assert!(!keys.try_claim("k"));
        assert!(keys.try_claim("other"), "keys are independent");
        keys.release("k");
        assert!(keys.try_claim("k"));
    }

    /// A waiter is woken by the release itself (well before its deadline), and says it is
    /// waiting while it waits.
    #[test]
    fn a_waiter_takes_the_key_when_its_holder_lets_go() {
        let keys = Arc::new(FolderKeys::default());
        assert!(keys.try_claim("k"));
        let (said, waits) = crossbeam_channel::unbounded();
        let waiter = {
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                keys.claim_within("k", deadline, || said.send(()).is_ok())
            })
        };
        // Waiting, and saying so, while the key is held.
        waits.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!waiter.is_finished());
        keys.release("k");
        assert!(waiter.join().unwrap(), "the waiter took the key");
        assert!(keys.contains("k") && !keys.try_claim("k"));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_or_when_told_to() {
        let keys = FolderKeys::default();
        assert!(keys.try_claim("k"));
        let deadline = Instant::now() + Duration::from_millis(300);
        assert!(!keys.claim_within("k", deadline, || true));
        assert!(Instant::now() >= deadline);
        let far = Instant::now() + Duration::from_secs(60);
        let mut calls = 0;
        assert!(!keys.claim_within("k", far, || {
            calls += 1;
            calls < 2
        }));
        assert_eq!(calls, 2, "gave up when told to, long before its deadline");
        // The holder still has it.
        assert!(keys.contains("k"));
    }
}
