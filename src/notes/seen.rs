//! The highest sealed-note counter this device accepted from each trusted device, kept in
//! the config folder (`notes-seen.json`, 0600, written aside and renamed into place), so a
//! receiver that restarts refuses a note captured before, not only once it is 15 minutes
//! old (see [`crate::secure::note`]).
//!
//! The file is local and ours, but read as untrusted all the same: at most
//! [`MAX_FILE_BYTES`], entries that do not parse are left out, and a counter more than the
//! freshness window ahead of the clock is taken only up to that point (a peer whose clock ran
//! ahead once must not be refused until its clock catches up, across restarts). Another
//! Ferry process of the same user may keep its own (a window and `ferry listen`): each save
//! merges with what the file holds, highest wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::secure::hex;
use crate::secure::identity::write_private_file;
use crate::secure::note::FRESH_MICROS;

/// The file's name in the config folder.
pub const FILE_NAME: &str = "notes-seen.json";
/// The largest file read (a few thousand devices).
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// At most this many devices kept (more are not added).
const MAX_DEVICES: usize = 4096;

/// The counters, by the sender's public key (hex).
#[derive(Debug)]
pub(super) struct SeenCounters {
    path: PathBuf,
    counters: HashMap<String, u64>,
}

impl SeenCounters {
    /// What the file in `dir` holds (nothing if it is missing or unreadable).
    pub(super) fn load(dir: &Path) -> Self {
        let path = dir.join(FILE_NAME);
        let counters = read(&path);
        SeenCounters { path, counters }
    }

    /// The counter up to which notes of `key` are refused at `now_micros`.
    pub(super) fn floor(&self, key: &[u8; 32], now_micros: u64) -> Option<u64> {
        let kept = *self.counters.get(&hex(key))?;
        Some(kept.min(now_micros.saturating_add(FRESH_MICROS)))
    }

    /// Keeps `counter` for `key` if it is higher than what is kept (merged with the file).
    pub(super) fn record(&mut self, key: &[u8; 32], counter: u64) {
        let name = hex(key);
        if self
            .counters
            .get(&name)
            .is_some_and(|&kept| kept >= counter)
        {
            return;
        }
        // What another process kept meanwhile stays, highest wins.
        for (other, kept) in read(&self.path) {
            let mine = self.counters.entry(other).or_insert(kept);
            *mine = (*mine).max(kept);
        }
        if self.counters.len() >= MAX_DEVICES && !self.counters.contains_key(&name) {
            log::warn!("notes: {MAX_DEVICES} devices' note counters kept; not one more");
            return;
        }
        self.counters.insert(name, counter);
        let saved = serde_json::to_vec(&self.counters)
            .map_err(|e| e.to_string())
            .and_then(|json| write_private_file(&self.path, &json).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            log::warn!(
                "notes: cannot keep the last sealed note's counter in {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The file's counters; entries that are not a 64-digit key and a number are left out.
fn read(path: &Path) -> HashMap<String, u64> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes));
    match read {
        Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
            log::warn!("notes: {} is too large; not read", path.display());
            return HashMap::new();
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            log::warn!("notes: cannot read {}: {e}", path.display());
            return HashMap::new();
        }
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&bytes) else {
        log::warn!(
            "notes: {} is not a map of counters; not used",
            path.display()
        );
        return HashMap::new();
    };
    map.into_iter()
        .filter(|(key, _)| key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter_map(|(key, counter)| Some((key.to_ascii_lowercase(), counter.as_u64()?)))
        .take(MAX_DEVICES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_kept_merged_bounded_and_read_as_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let now = 1_800_000_000_000_000;
        let mut one = SeenCounters::load(dir.path());
        assert_eq!(one.floor(&a, now), None);
        one.record(&a, now - 5);
        // Another process keeps b meanwhile; one's next save keeps both.
        let mut other = SeenCounters::load(dir.path());
        other.record(&b, now - 7);
        one.record(&a, now - 3);
        one.record(&a, now - 9); // lower: nothing changes
        let again = SeenCounters::load(dir.path());
        assert_eq!(again.floor(&a, now), Some(now - 3));
        assert_eq!(again.floor(&b, now), Some(now - 7));
        // A counter far ahead of the clock counts only up to the freshness window.
        one.record(&b, now + 10 * FRESH_MICROS);
        let ahead = SeenCounters::load(dir.path());
        assert_eq!(ahead.floor(&b, now), Some(now + FRESH_MICROS));
        // Garbage is left out, not trusted.
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, br#"{"zz": 5, "aa": "x"}"#).unwrap();
        assert!(SeenCounters::load(dir.path()).counters.is_empty());
        std::fs::write(&path, b"[1, 2]").unwrap();
        assert!(SeenCounters::load(dir.path()).counters.is_empty());
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(SeenCounters::load(dir.path()).counters.is_empty());
    }
}
