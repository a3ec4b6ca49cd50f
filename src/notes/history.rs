//! The recent notes, in and out, that the window shows: a bounded list in arrival order.
//!
//! Plain data with no clock and no socket: the owner (the notes panel) feeds it from
//! [`NoteEvent`]s and from its own sends, passing the time in, so it is tested directly.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::events::{Direction, NoteEvent, Security};

/// How many notes a [`NoteHistory`] keeps by default; older ones are forgotten first.
pub const HISTORY_CAPACITY: usize = 1_000;

/// How many bytes of note text a [`NoteHistory`] keeps at most (a thousand of the largest
/// notes would be 196 MiB); older notes are forgotten first, the newest is always kept.
pub const HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// One note, received or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteEntry {
    /// When it arrived, or when it was sent.
    pub at: SystemTime,
    pub direction: Direction,
    /// Incoming: the exact source address. Outgoing: where it was sent.
    pub peer: SocketAddr,
    pub text: String,
    /// Sealed by (or to) a trusted device, or plain: what the window marks the note with.
    pub security: Security,
}

impl NoteEntry {
    /// Where a reply to this note goes: the exact address it came from (a plain peer sends
    /// from an ephemeral port and waits for the answer there), or the peer it was sent to.
    pub fn reply_to(&self) -> SocketAddr {
        self.peer
    }
}

/// The last `capacity` notes, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteHistory {
    entries: VecDeque<NoteEntry>,
    capacity: usize,
    /// Bytes of text held, kept under [`HISTORY_BYTES`].
    bytes: usize,
}

impl Default for NoteHistory {
    fn default() -> Self {
        Self::with_capacity(HISTORY_CAPACITY)
    }
}

impl NoteHistory {
    /// An empty history keeping [`HISTORY_CAPACITY`] notes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history keeping the last `capacity` notes (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: VecDeque::with_capacity(capacity.min(HISTORY_CAPACITY)),
            capacity,
            bytes: 0,
        }
    }

    /// Appends a note, forgetting the oldest ones when full (by count or by bytes).
    pub fn push(&mut self, entry: NoteEntry) {
        while !self.entries.is_empty()
            && (self.entries.len() >= self.capacity
                || self.bytes + entry.text.len() > HISTORY_BYTES)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.text.len();
            }
        }
        self.bytes += entry.text.len();
        self.entries.push_back(entry);
    }

    /// Records a note the engine reported, received or sent. Events that are not notes
    /// (`Listening`, `Error`, `Dropped`) are left out.
    pub fn record_event(&mut self, event: NoteEvent) {
        match event {
            NoteEvent::Received {
                from,
                text,
                at,
                security,
            } => {
                self.push(NoteEntry {
                    at,
                    direction: Direction::Incoming,
                    peer: from,
                    text,
                    security,
                });
            }
            NoteEvent::Sent {
                to,
                text,
                at,
                security,
            } => self.push(NoteEntry {
                at,
                direction: Direction::Outgoing,
                peer: to,
                text,
                security,
            }),
            NoteEvent::Listening { .. }
            | NoteEvent::Error { .. }
            | NoteEvent::PinNeeded { .. }
            | NoteEvent::Dropped { .. }
            | NoteEvent::Refused { .. } => {}
        }
    }

    /// Records a plain note this side sent (see [`super::NotesHandle::send`]).
    pub fn record_sent(&mut self, to: SocketAddr, text: impl Into<String>, at: SystemTime) {
        self.push(NoteEntry {
            at,
            direction: Direction::Outgoing,
            peer: to,
            text: text.into(),
            security: Security::Plain,
        });
    }

    /// The notes, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &NoteEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The most recent incoming note: the one a "Reply" button answers.
    pub fn last_received(&self) -> Option<&NoteEntry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.direction == Direction::Incoming)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_arrival_order_direction_peer_and_time() {
        let mut history = NoteHistory::new();
        assert!(history.is_empty());
        history.record_event(NoteEvent::Received {
            from: addr(5000),
            text: "hi".into(),
            at: at(1),
            security: Security::Plain,
        });
        history.record_sent(addr(5000), "hello back", at(2));
        history.record_event(NoteEvent::Listening { addr: addr(8080) });
        history.record_event(NoteEvent::Error {
            reason: "not a note".into(),
        });
        history.record_event(NoteEvent::Received {
            from: addr(6000),
            text: "me too".into(),
            at: at(3),
            security: Security::Plain,
        });
        history.record_event(NoteEvent::Sent {
            to: addr(6000),
            text: "same".into(),
            at: at(4),
            security: Security::Plain,
        });

        let entries: Vec<_> = history.iter().cloned().collect();
        assert_eq!(
            entries,
            vec![
                NoteEntry {
                    at: at(1),
                    direction: Direction::Incoming,
                    peer: addr(5000),
                    text: "hi".into(),
                    security: Security::Plain
                },
                NoteEntry {
                    at: at(2),
                    direction: Direction::Outgoing,
                    peer: addr(5000),
                    text: "hello back".into(),
                    security: Security::Plain
                },
                NoteEntry {
                    at: at(3),
                    direction: Direction::Incoming,
                    peer: addr(6000),
                    text: "me too".into(),
                    security: Security::Plain
                },
                NoteEntry {
                    at: at(4),
                    direction: Direction::Outgoing,
                    peer: addr(6000),
                    text: "same".into(),
                    security: Security::Plain
                },
            ]
        );
        assert_eq!(history.len(), 4);
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut history = NoteHistory::new();
        assert_eq!(history.capacity(), HISTORY_CAPACITY);
        for i in 0..HISTORY_CAPACITY + 5 {
            history.record_sent(addr(1), i.to_string(), at(i as u64));
        }
        assert_eq!(history.len(), HISTORY_CAPACITY);
        assert_eq!(history.iter().next().map(|e| e.text.as_str()), Some("5"));
        let last = (HISTORY_CAPACITY + 4).to_string();
        assert_eq!(
            history.iter().next_back().map(|e| e.text.as_str()),
            Some(last.as_str())
        );
    }

    #[test]
    fn forgets_the_oldest_beyond_the_byte_budget() {
        let mut history = NoteHistory::new();
        let big = "\u{FFFD}".repeat(65_507); // the largest note, all invalid UTF-8
        for i in 0..200 {
            history.record_sent(addr(1), format!("{i}{big}"), at(i));
        }
        let held: usize = history.iter().map(|e| e.text.len()).sum();
        assert!(held <= HISTORY_BYTES, "{held} bytes held");
        assert_eq!(history.len(), HISTORY_BYTES / (big.len() + 3));
        assert!(history.iter().next_back().unwrap().text.starts_with("199"));
    }

    #[test]
    fn small_capacities() {
        let mut history = NoteHistory::with_capacity(0);
        assert_eq!(history.capacity(), 1);
        history.record_sent(addr(1), "a", at(1));
        history.record_sent(addr(1), "b", at(2));
        assert_eq!(
            history.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        history.clear();
        assert!(history.is_empty());
    }

    #[test]
    fn a_reply_goes_to_the_exact_source_of_the_last_received_note() {
        let mut history = NoteHistory::new();
        assert_eq!(history.last_received(), None);
        history.record_event(NoteEvent::Received {
            from: addr(40_001),
            text: "q1".into(),
            at: at(1),
            security: Security::Plain,
        });
        history.record_event(NoteEvent::Received {
            from: addr(40_002),
            text: "q2".into(),
            at: at(2),
            security: Security::Plain,
        });
        history.record_sent(addr(9), "unrelated", at(3));
        let last = history.last_received().expect("two notes were received");
        assert_eq!(last.text, "q2");
        assert_eq!(last.reply_to(), addr(40_002));
    }
}
