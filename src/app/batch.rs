//! One frame's share of the engine's events: bounded, so a flood of them never holds a
//! frame, and with each transfer's progress reduced to its latest figure, so a frame finds
//! each row once rather than once per event (`cargo bench --bench window` feeds the window
//! such a flood).

use std::collections::HashMap;

use crossbeam_channel::Receiver;

use crate::events::{EVENT_CAPACITY, Event, TransferEvent, TransferId};

/// The most engine events one frame applies: a full channel's worth, twice over.
pub(crate) const EVENTS_PER_FRAME: usize = 2 * EVENT_CAPACITY;

/// Takes at most `max` events and returns them in order, with each transfer's progress
/// reduced to its latest figure, placed where it still comes before that transfer's next
/// other event; and whether more wait.
pub(crate) fn frame_batch(events: &Receiver<Event>, max: usize) -> (Vec<Event>, bool) {
    let mut batch = Vec::new();
    let mut progress: HashMap<TransferId, u64> = HashMap::new();
    let latest = |id, bytes_done| Event::Transfer(TransferEvent::Progress { id, bytes_done });
    let mut taken = 0;
    while taken < max {
        let Ok(event) = events.try_recv() else {
            break;
        };
        taken += 1;
        match event {
            Event::Transfer(TransferEvent::Progress { id, bytes_done }) => {
                progress.insert(id, bytes_done);
            }
            event => {
                if let Event::Transfer(transfer) = &event
                    && let Some(bytes_done) = progress.remove(&transfer.id())
                {
                    batch.push(latest(transfer.id(), bytes_done));
                }
                batch.push(event);
            }
        }
    }
    batch.extend(progress.into_iter().map(|(id, done)| latest(id, done)));
    (batch, taken == max && !events.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Direction, Security};
    use crate::protocol::Mode;

    fn progress(id: TransferId, bytes_done: u64) -> Event {
        Event::Transfer(TransferEvent::Progress { id, bytes_done })
    }

    fn started(id: TransferId) -> Event {
        Event::Transfer(TransferEvent::Started {
            id,
            direction: Direction::Incoming,
            peer: ([127, 0, 0, 1], 1).into(),
            name: format!("file-{id}"),
            saved_as: None,
            bytes_total: 100,
            mode: Mode::Ferry,
            msg: String::new(),
            security: Security::Plain,
        })
    }

    fn finished(id: TransferId) -> Event {
        Event::Transfer(TransferEvent::Finished {
            id,
            verified: true,
            saved_as: None,
            path: None,
        })
    }

    /// A frame takes its share and leaves the rest, in order, for the next one.
    #[test]
    fn a_batch_takes_at_most_its_share_and_says_more_wait() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for id in 0..25 {
            tx.send(started(id)).unwrap();
        }
        let (batch, more) = frame_batch(&rx, 10);
        assert_eq!(batch.len(), 10);
        assert!(more);
        assert!(matches!(&batch[0], Event::Transfer(e) if e.id() == 0));
        let (batch, more) = frame_batch(&rx, 10);
        assert!(matches!(&batch[0], Event::Transfer(e) if e.id() == 10));
        assert!(more);
        let (batch, more) = frame_batch(&rx, 10);
        assert_eq!(batch.len(), 5);
        assert!(!more, "the last five were all that waited");
        // Exactly a share's worth, nothing after it: no more.
        for id in 0..10 {
            tx.send(started(id)).unwrap();
        }
        assert!(!frame_batch(&rx, 10).1);
    }

    /// Progress counts as its latest figure, which still comes before that transfer's next
    /// other event; what comes after that event stays after it.
    #[test]
    fn progress_is_its_latest_figure_and_keeps_its_place_before_the_next_event() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for event in [
            started(1),
            progress(1, 10),
            progress(2, 5),
            progress(1, 20),
            finished(1),
            progress(1, 30),
            progress(2, 7),
        ] {
            tx.send(event).unwrap();
        }
        let (batch, more) = frame_batch(&rx, 100);
        assert!(!more);
        assert_eq!(batch.len(), 5, "{batch:?}");
        assert_eq!(batch[0], started(1));
        assert_eq!(batch[1], progress(1, 20), "the latest before the finish");
        assert_eq!(batch[2], finished(1));
        let mut rest = batch[3..].to_vec();
        rest.sort_by_key(|e| match e {
            Event::Transfer(e) => e.id(),
            _ => 0,
        });
        assert_eq!(rest, [progress(1, 30), progress(2, 7)]);
    }
}
