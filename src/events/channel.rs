//! The channel from the drivers to the faces: [`EventSink`] (the engines' end, with its
//! waker and, for engines that stop, a flag that ends waiting on a consumer that does not
//! read) and [`ProgressThrottle`], which keeps progress to a few events a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::{Event, TransferEvent, TransferId};

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The sending half that engines hold. Cloning is cheap.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<Event>,
    waker: Option<Waker>,
    /// Set when the engine holding this sink stops (see [`EventSink::stopped_by`]).
    stopping: Option<Arc<AtomicBool>>,
}

/// How often an engine that waits for room in a full channel checks whether it is stopping.
const STOPPING_POLL: Duration = Duration::from_millis(100);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

/// Capacity of an event channel: lifecycle events for thousands of files.
pub const EVENT_CAPACITY: usize = 4096;

/// A bounded event channel. `waker` is called after every event (the UI passes a
/// `request_repaint_after`).
pub fn event_channel(waker: Option<Waker>) -> (EventSink, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::bounded(EVENT_CAPACITY);
    let sink = EventSink {
        tx,
        waker,
        stopping: None,
    };
    (sink, rx)
}

impl EventSink {
    /// The same channel, for an engine that sets `stopping` when it stops: from then on a
    /// lifecycle event that finds the channel full is dropped after a moment instead of
    /// waiting for room, so a consumer that holds the channel but no longer reads it cannot
    /// keep the engine's threads (and whoever joins them) waiting for ever.
    pub fn stopped_by(&self, stopping: Arc<AtomicBool>) -> EventSink {
        EventSink {
            stopping: Some(stopping),
            ..self.clone()
        }
    }

    /// Sends a lifecycle event; waits if the consumer is behind (unless the engine is
    /// stopping, see [`EventSink::stopped_by`]). A consumer that went away is not an error
    /// for the engine: it just stops being told.
    pub fn emit(&self, mut event: Event) {
        // Waits in slices, so a stopping engine notices between two of them.
        loop {
            match self.tx.send_timeout(event, STOPPING_POLL) {
                Ok(()) => return self.wake(),
                Err(SendTimeoutError::Disconnected(_)) => return,
                Err(SendTimeoutError::Timeout(_)) if self.is_stopping() => return,
                Err(SendTimeoutError::Timeout(back)) => event = back,
            }
        }
    }

    /// Whether the engine holding this sink has stopped (never, without a flag).
    fn is_stopping(&self) -> bool {
        self.stopping
            .as_ref()
            .is_some_and(|stopping| stopping.load(Ordering::SeqCst))
    }

    /// Sends an event only if the channel has room; otherwise hands it back. For engines that
    /// keep their own bounded backlog (notes) instead of waiting.
    pub fn try_emit(&self, event: Event) -> Result<(), Box<Event>> {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) => {
                Err(Box::new(event))
            }
        }
    }

    /// How many events wait in the channel for the consumer: a measure of how far behind it is.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Sends an event that a later one supersedes (progress): dropped if the channel is full.
    pub fn emit_lossy(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => self.wake(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn transfer(&self, event: TransferEvent) {
        match event {
            TransferEvent::Progress { .. } => self.emit_lossy(Event::Transfer(event)),
            _ => self.emit(Event::Transfer(event)),
        }
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            waker();
        }
    }
}

/// Lets progress through at most every `interval` (and always the final value).
#[derive(Debug)]
pub struct ProgressThrottle {
    interval: Duration,
    last: Option<Instant>,
    /// The latest figure held back since the last event, if any.
    held_back: Option<u64>,
}

/// Default interval between progress events of one transfer (10 per second).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl Default for ProgressThrottle {
    fn default() -> Self {
        Self {
            interval: PROGRESS_INTERVAL,
            last: None,
            held_back: None,
        }
    }
}

impl ProgressThrottle {
    /// True when a progress event should go out now.
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// Reports `bytes_done` of transfer `id` to `sink` if a progress event is due; holds
    /// it back otherwise (see [`ProgressThrottle::catch_up`]).
    pub fn report(&mut self, sink: &EventSink, id: TransferId, bytes_done: u64) {
        if self.ready() {
            self.held_back = None;
            sink.transfer(TransferEvent::Progress { id, bytes_done });
        } else {
            self.held_back = Some(bytes_done);
        }
    }

    /// Whether a figure reported now shows at once; once this says so, the next
    /// [`Self::report`] shows, however long until it (for a driver that must first make the
    /// figure true: the bytes it counts on the file).
    pub fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|last| last.elapsed() >= self.interval);
        if due {
            self.last = None;
        }
        due
    }

    /// When the figure held back since the last event may show (the interval since that
    /// event over); `None` when none is held back.
    pub fn held_back_until(&self) -> Option<Instant> {
        self.held_back?;
        self.last.and_then(|last| last.checked_add(self.interval))
    }

    /// Reports the figure held back, if any, once its time came ([`Self::held_back_until`]):
    /// for a driver about to wait for its peer, which may take long (a stalled sender), so
    /// what it got shows meanwhile. Never sooner: a driver that waits after every read would
    /// otherwise send an event per read.
    pub fn catch_up(&mut self, sink: &EventSink, id: TransferId) {
        if self.held_back.is_some()
            && self.ready()
            && let Some(bytes_done) = self.held_back.take()
        {
            sink.transfer(TransferEvent::Progress { id, bytes_done });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServerEvent;

    fn lifecycle() -> Event {
        Event::Server(ServerEvent::Stopped)
    }

    /// A full channel that nobody reads: a lifecycle event waits for room while its engine
    /// runs, and is dropped soon after the engine stops; the consumer still gets every event
    /// it did read.
    #[test]
    fn a_stopping_engine_stops_waiting_for_a_consumer_that_does_not_read() {
        let (sink, events) = event_channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        let sink = sink.stopped_by(Arc::clone(&stopping));
        for _ in 0..EVENT_CAPACITY {
            sink.emit(lifecycle());
        }
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let waiting = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                sink.emit(lifecycle());
                let _ = done_tx.send(());
            })
        };
        // Still running: it waits (several of its polls).
        assert!(
            done.recv_timeout(STOPPING_POLL * 4).is_err(),
            "a running engine's lifecycle event waits for room"
        );
        stopping.store(true, Ordering::SeqCst);
        assert!(
            done.recv_timeout(Duration::from_secs(10)).is_ok(),
            "a stopping engine gives up waiting"
        );
        waiting.join().unwrap();
        assert_eq!(
            events.len(),
            EVENT_CAPACITY,
            "the waiting event was dropped"
        );
        // With room, a stopping engine's events still arrive.
        events.recv().unwrap();
        sink.emit(lifecycle());
        assert_eq!(events.len(), EVENT_CAPACITY);
    }

    fn progress(events: &crossbeam_channel::Receiver<Event>) -> Vec<u64> {
        events
            .try_iter()
            .filter_map(|e| match e {
                Event::Transfer(TransferEvent::Progress { bytes_done, .. }) => Some(bytes_done),
                _ => None,
            })
            .collect()
    }

    /// Figures within an interval of the last event are held back; a catch-up reports the
    /// latest of them once the interval is over (once), and not before: a driver that
    /// catches up before every wait would otherwise send an event per read.
    #[test]
    fn a_held_back_figure_is_reported_by_a_catch_up_once_it_is_due() {
        let (sink, events) = event_channel(None);
        let mut throttle = ProgressThrottle {
            interval: Duration::from_secs(3600),
            ..ProgressThrottle::default()
        };
        let id: TransferId = 1;
        throttle.catch_up(&sink, id);
        assert!(progress(&events).is_empty(), "nothing held back yet");
        assert_eq!(throttle.held_back_until(), None);
        throttle.report(&sink, id, 10);
        assert_eq!(throttle.held_back_until(), None, "10 went out");
        let shown_at = throttle.last.unwrap();
        throttle.report(&sink, id, 20);
        throttle.report(&sink, id, 30);
        assert_eq!(progress(&events), [10]);
        let due = shown_at + throttle.interval;
        assert_eq!(throttle.held_back_until(), Some(due));
        throttle.catch_up(&sink, id);
        assert!(progress(&events).is_empty(), "within the interval of 10");
        // Once the interval passed, the catch-up shows the latest figure, once.
        throttle.interval = Duration::ZERO;
        throttle.catch_up(&sink, id);
        throttle.catch_up(&sink, id);
        assert_eq!(progress(&events), [30]);
        assert_eq!(throttle.held_back_until(), None);
        throttle.report(&sink, id, 40);
        assert_eq!(progress(&events), [40]);
        assert_eq!(throttle.held_back_until(), None);
    }

    /// A sink without the flag (the window's engines, the CLI) waits as it always did.
    #[test]
    fn a_plain_sink_waits_for_room() {
        let (sink, events) = event_channel(None);
        for _ in 0..EVENT_CAPACITY {
            sink.emit(lifecycle());
        }
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let waiting = std::thread::spawn(move || {
            sink.emit(lifecycle());
            let _ = done_tx.send(());
        });
        assert!(done.recv_timeout(STOPPING_POLL * 4).is_err());
        events.recv().unwrap();
        assert!(done.recv_timeout(Duration::from_secs(10)).is_ok());
        waiting.join().unwrap();
        assert_eq!(events.len(), EVENT_CAPACITY);
    }
}
