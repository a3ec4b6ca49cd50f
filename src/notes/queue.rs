//! The bounded queue between the notes socket and whoever shows the notes (a terminal, the
//! window). A peer can send notes far faster than a terminal prints them, or a `ferry listen`
//! whose output nobody reads prints nothing at all; without a bound every datagram would wait
//! in memory (a 65 507-byte datagram of invalid UTF-8 decodes to 196 KiB of U+FFFD).
//!
//! When the queue is full, the **oldest** note is dropped (the newest are the ones a reader
//! catching up wants) and counted; the count is handed on once, so the user is told how many
//! notes were lost instead of silently missing them. Plain data, no clock and no socket, so
//! it is tested directly.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::events::Security;

/// At most this many notes wait to be shown (bursts of short notes fit; the byte budget is
/// what bounds memory).
pub const QUEUE_NOTES: usize = 1024;

/// At most this many bytes of note text (plus 64 bytes of bookkeeping each) wait to be shown:
/// room for about twenty of the largest possible notes.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// What one queued note costs beyond its text, for the byte budget.
const NOTE_OVERHEAD_BYTES: usize = 64;

/// One received note waiting to be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNote {
    pub from: SocketAddr,
    pub text: String,
    pub at: SystemTime,
    pub security: Security,
}

impl QueuedNote {
    fn cost(&self) -> usize {
        self.text.len() + NOTE_OVERHEAD_BYTES
    }
}

/// Notes in arrival order, bounded by count and bytes; the oldest go first when full.
#[derive(Debug)]
pub struct NoteQueue {
    notes: VecDeque<QueuedNote>,
    max_notes: usize,
    max_bytes: usize,
    bytes: usize,
    /// Dropped since the last [`take_dropped`](Self::take_dropped).
    dropped: u64,
}

impl Default for NoteQueue {
    fn default() -> Self {
        Self::new(QUEUE_NOTES, QUEUE_BYTES)
    }
}

impl NoteQueue {
    /// A queue of at most `max_notes` notes (at least one) and `max_bytes` bytes. A single
    /// note larger than `max_bytes` is still kept, alone: the newest note is never dropped.
    pub fn new(max_notes: usize, max_bytes: usize) -> Self {
        Self {
            notes: VecDeque::new(),
            max_notes: max_notes.max(1),
            max_bytes,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Appends `note`, dropping (and counting) the oldest notes until it fits.
    pub fn push(&mut self, note: QueuedNote) {
        let cost = note.cost();
        while !self.notes.is_empty()
            && (self.notes.len() >= self.max_notes || self.bytes + cost > self.max_bytes)
        {
            if let Some(old) = self.notes.pop_front() {
                self.bytes -= old.cost();
                self.dropped += 1;
            }
        }
        self.bytes += cost;
        self.notes.push_back(note);
    }

    /// The oldest waiting note.
    pub fn pop(&mut self) -> Option<QueuedNote> {
        let note = self.notes.pop_front()?;
        self.bytes -= note.cost();
        Some(note)
    }

    /// Puts back a note just taken with [`pop`](Self::pop) that could not be handed on.
    pub fn unpop(&mut self, note: QueuedNote) {
        self.bytes += note.cost();
        self.notes.push_front(note);
    }

    /// How many notes were dropped since the last call; resets the count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Gives back a count taken with [`take_dropped`](Self::take_dropped) that could not be
    /// reported yet.
    pub fn restore_dropped(&mut self, count: u64) {
        self.dropped += count;
    }

    pub fn len(&self) -> usize {
        self.notes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    /// Bytes the waiting notes cost against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> QueuedNote {
        QueuedNote {
            from: SocketAddr::from(([192, 0, 2, 1], 9)),
            text: text.to_owned(),
            at: SystemTime::UNIX_EPOCH,
            security: Security::Plain,
        }
    }

    fn texts(queue: &mut NoteQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.pop()).map(|n| n.text).collect()
    }

    #[test]
    fn drops_the_oldest_beyond_the_count_and_counts_them() {
        let mut queue = NoteQueue::new(3, usize::MAX);
        for text in ["1", "2", "3", "4", "5"] {
            queue.push(note(text));
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.take_dropped(), 2);
        assert_eq!(queue.take_dropped(), 0, "the count is handed on once");
        assert_eq!(texts(&mut queue), ["3", "4", "5"]);
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn drops_the_oldest_beyond_the_byte_budget() {
        let big = "x".repeat(1_000);
        // Each note is 1 001 bytes of text: room for exactly three.
        let mut queue = NoteQueue::new(100, 3 * (1_001 + NOTE_OVERHEAD_BYTES));
        for i in 0..5 {
            queue.push(note(&format!("{i}{big}")));
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.bytes(), 3 * (1_001 + NOTE_OVERHEAD_BYTES));
        assert_eq!(queue.take_dropped(), 2);
        let first: Vec<char> = texts(&mut queue)
            .iter()
            .filter_map(|t| t.chars().next())
            .collect();
        assert_eq!(first, ['2', '3', '4']);
    }

    #[test]
    fn an_oversized_note_is_kept_alone() {
        let mut queue = NoteQueue::new(10, 100);
        queue.push(note("small"));
        queue.push(note(&"y".repeat(500)));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.take_dropped(), 1);
        assert_eq!(queue.pop().map(|n| n.text.len()), Some(500));
    }

    #[test]
    fn unpop_and_restore_put_things_back() {
        let mut queue = NoteQueue::new(2, usize::MAX);
        queue.push(note("a"));
        queue.push(note("b"));
        queue.push(note("c"));
        let dropped = queue.take_dropped();
        queue.restore_dropped(dropped);
        let first = queue.pop().unwrap();
        queue.unpop(first);
        assert_eq!(queue.take_dropped(), 1);
        assert_eq!(texts(&mut queue), ["b", "c"]);
    }
}
