//! `serve --pair` on the terminal after the code is shown: what became of the code. Every
//! connection that asks to pair spends one of its 3 tries when its handshake starts (a try
//! that failed, or was abandoned half-way, may have been a guess); when such a connection
//! fails, the tries left are said, and once none are left that the code is burnt and how to
//! get a new one, so a user whose code someone on the network spent is not left waiting on
//! a code that no longer works. When its 10 minutes are up, that it expired is said then,
//! not at the next sender that tries it.

use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::secure::pairing::{MAX_TRIES, PairingEnd};
use crate::transfer::ServerHandle;

/// The tries the code had when last looked at (`None`: no code on offer any more), and
/// when it expires.
pub(super) struct PairingWatch {
    tries_left: Option<u32>,
    expires: Option<Instant>,
}

impl PairingWatch {
    /// Watches the code `server` offers now, if any.
    pub(super) fn new(server: &ServerHandle) -> Self {
        PairingWatch {
            tries_left: server.pairing().map(|(_, left)| left),
            expires: server.pairing_expires(),
        }
    }

    /// Fires when the code expires (never without a code): then call
    /// [`PairingWatch::after_failure`], which says so unless the code ended before.
    pub(super) fn expiry(&self) -> Receiver<Instant> {
        match self.expires {
            Some(at) => crossbeam_channel::at(at),
            None => crossbeam_channel::never(),
        }
    }

    /// The code was used: nothing more to say about it.
    pub(super) fn paired(&mut self) {
        self.tries_left = None;
    }

    /// After a connection failed, or the code's time is up: a line if a try of the code was
    /// spent, or the code ended.
    pub(super) fn after_failure(&mut self, server: &ServerHandle) -> Option<String> {
        let before = self.tries_left?;
        let now = server.pairing().map(|(_, left)| left);
        self.tries_left = now;
        match now {
            Some(left) if left < before => Some(format!(
                "pairing code: {left} of {MAX_TRIES} tries left (each sender that asks to pair spends one, right code or wrong)"
            )),
            Some(_) => None,
            None => match server.pairing_end() {
                Some(PairingEnd::Expired) => Some(
                    "pairing code expired (codes last 10 minutes); run ferry serve --pair again for a new one"
                        .to_owned(),
                ),
                Some(PairingEnd::Burnt) => Some(format!(
                    "pairing code burnt: its {MAX_TRIES} tries are spent (mistyped codes, or someone on the network trying it), so nobody can pair with it now; run ferry serve --pair again for a new one"
                )),
                Some(PairingEnd::Used) | None => None,
            },
        }
    }
}
