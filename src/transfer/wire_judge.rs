//! The trust store's say on the peer a secure handshake proved (see [`super`]).

use crate::secure::trust::Verdict;
use crate::secure::{Keyring, SecureError, handshake::PeerInfo};

/// The trust store's verdict on a peer after the handshake: pinned (trusted), unknown, or
/// refused because its name is (or looks like) a trusted one under another key. A paired peer
/// is pinned now. `address`: where the peer's Ferry listens, when this side knows it (the
/// sender does: it connected there; the receiver knows it when the sender said which port
/// its own server listens on, at the IP it came from). A receiver never guesses a port: a
/// sender that said none is pinned with no address, and a known one keeps the one it has.
pub(super) fn judge(
    keyring: &Keyring,
    peer: &PeerInfo,
    address: Remote,
) -> Result<bool, SecureError> {
    let address = match address {
        Remote::Listening(addr) => Some(addr.to_string()),
        // It said where its server listens: that, at the address it came from.
        Remote::Sender(ip, port) => {
            port.map(|port| std::net::SocketAddr::new(ip, port).to_string())
        }
    };
    if peer.paired {
        keyring.trust.pin(&peer.name, &peer.public_key, address)?;
        return Ok(true);
    }
    match keyring.trust.check(&peer.name, &peer.public_key)? {
        Verdict::Trusted(device) => {
            // Best effort: the store may be read-only, and a forget meanwhile stands.
            if let Err(e) = keyring.trust.touch(&peer.public_key, address) {
                log::warn!("cannot update the trusted device {:?}: {e}", device.name);
            }
            Ok(true)
        }
        Verdict::Unknown => Ok(false),
    }
}

/// What this side knows of the peer's address.
pub(super) enum Remote {
    /// The address the peer's server listens on (this side connected to it).
    Listening(std::net::SocketAddr),
    /// The IP a sender connected from, and the port it said its own server listens on.
    Sender(std::net::IpAddr, Option<u16>),
}
