//! The trust store's say on the peer a secure handshake proved (see [`super`]).

use crate::secure::trust::{SeenAt, Verdict};
use crate::secure::{Keyring, SecureError, handshake::PeerInfo};

/// The trust store's verdict on a peer after the handshake: pinned (trusted), unknown, or
/// refused because its name is (or looks like) a trusted one under another key. A paired peer
/// is pinned now. `seen`: where the handshake just proved the peer's key: where its Ferry
/// listens, when this side knows it (the sender does: it connected there; the receiver knows
/// it when the sender said which port its own server listens on, at the IP it came from),
/// else the IP alone. A receiver never guesses a port: a sender that said none is kept with
/// its IP only (probed by discovery, never sent to), and keeps its known address only if
/// that is at the same IP.
pub(super) fn judge(keyring: &Keyring, peer: &PeerInfo, seen: SeenAt) -> Result<bool, SecureError> {
    if peer.paired {
        keyring
            .trust
            .pin(&peer.name, &peer.public_key, Some(seen))?;
        return Ok(true);
    }
    match keyring.trust.check(&peer.name, &peer.public_key)? {
        Verdict::Trusted(device) => {
            // Best effort: the store may be read-only, and a forget meanwhile stands.
            if let Err(e) = keyring.trust.touch(&peer.public_key, Some(seen)) {
                log::warn!("cannot update the trusted device {:?}: {e}", device.name);
            }
            Ok(true)
        }
        Verdict::Unknown => Ok(false),
    }
}
