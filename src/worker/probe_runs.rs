//! The order of the window's LocalSend probe runs (see [`ProbeRuns`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Each probe tells the device where our receiver listens, and the device keeps what it was
/// told last. A run begun before our receiver was up (the window's favourites are set before
/// its server starts) tells another port than the run begun once it is; on threads of their
/// own the two could land in either order and leave the device listing us where nothing
/// listens. So a run asks an address only while it is the latest one, holding the turn
/// while it asks: a later run's register always lands after an earlier one's.
#[derive(Default, Clone)]
pub(super) struct ProbeRuns {
    /// The number of the latest run (taken without waiting, by the worker thread).
    latest: Arc<AtomicU64>,
    /// Held by a run while it asks one address.
    turn: Arc<Mutex<()>>,
}

impl ProbeRuns {
    /// Numbers a new run: every earlier one stops before its next address.
    pub(super) fn begin(&self) -> u64 {
        self.latest.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runs `ask` for run `run` if it is still the latest, holding the turn meanwhile.
    pub(super) fn ask<T>(&self, run: u64, ask: impl FnOnce() -> T) -> Option<T> {
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        (self.latest.load(Ordering::SeqCst) == run).then(ask)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_earlier_run_stops_once_a_later_one_begins() {
        let runs = ProbeRuns::default();
        let first = runs.begin();
        assert_eq!(runs.ask(first, || "asked"), Some("asked"));
        let second = runs.begin();
        assert_eq!(runs.ask(first, || "asked"), None);
        assert_eq!(runs.ask(second, || "asked"), Some("asked"));
    }

    /// A later run's question waits for the one an earlier run is asking, so it lands last.
    #[test]
    fn a_later_run_asks_only_after_the_earlier_question_ended() {
        let runs = ProbeRuns::default();
        let first = runs.begin();
        let (asking, go) = (
            crossbeam_channel::bounded::<()>(0),
            crossbeam_channel::bounded::<()>(0),
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let earlier = {
            let (runs, order) = (runs.clone(), Arc::clone(&order));
            std::thread::spawn(move || {
                runs.ask(first, || {
                    asking.0.send(()).unwrap();
                    go.1.recv().unwrap();
                    order.lock().unwrap().push("earlier");
                })
            })
        };
        asking.1.recv().unwrap();
        let second = runs.begin();
        let later = {
            let (runs, order) = (runs.clone(), Arc::clone(&order));
            std::thread::spawn(move || runs.ask(second, || order.lock().unwrap().push("later")))
        };
        // The later run cannot ask while the earlier question is out.
        assert!(later_is_waiting(&order));
        go.0.send(()).unwrap();
        assert_eq!(earlier.join().unwrap(), Some(()));
        assert_eq!(later.join().unwrap(), Some(()));
        assert_eq!(*order.lock().unwrap(), ["earlier", "later"]);
    }

    /// Nothing was recorded by the later run within a moment (it waits for the turn).
    fn later_is_waiting(order: &Mutex<Vec<&str>>) -> bool {
        std::thread::sleep(Duration::from_millis(50));
        order.lock().unwrap().is_empty()
    }
}
