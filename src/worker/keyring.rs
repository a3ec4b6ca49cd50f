//! The engine's keyring half: this device's name and fingerprint, the trusted devices, and
//! the pairing code the server offers, as the window sees them. The engine calls these on its
//! own thread; each says what changed as a [`KeyringEvent`] or [`ServerEvent::Pairing`], and the
//! engine's once-a-second tick ([`Watch::poll`]) notices changes made elsewhere (a pairing or an
//! "Accept and trust" on a connection thread, an upload that paired, another Ferry process).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::events::{
    Event, EventSink, KeyringEvent, PairingEnded, PairingOffer, ServerEvent, TrustedPeer,
};
use crate::secure::pairing::{CODE_LIFETIME, PairingEnd};
use crate::secure::{Identity, Keyring, identity};
use crate::transfer::ServerHandle;

/// What the window was last told, so the tick only sends changes.
#[derive(Default)]
pub(super) struct Watch {
    trusted: Option<Vec<TrustedPeer>>,
    pairing: Option<PairingOffer>,
}

/// The trusted devices as the window lists them.
pub(super) fn trusted(keyring: &Keyring) -> Vec<TrustedPeer> {
    keyring
        .trust
        .devices()
        .into_iter()
        .filter_map(|device| {
            // A row whose key does not parse cannot be sent to or checked: not listed.
            let public_key = device.key()?;
            Some(TrustedPeer {
                fingerprint: identity::fingerprint(&public_key),
                name: device.name,
                public_key,
                last_address: device.last_address,
                last_ip: device.last_ip,
                last_seen_unix_secs: device.last_seen_unix_secs,
            })
        })
        .collect()
}

fn emit(sink: &EventSink, event: KeyringEvent) {
    sink.emit(Event::Keyring(event));
}

pub(super) fn error(sink: &EventSink, reason: String) {
    emit(sink, KeyringEvent::Error { reason });
}

impl Watch {
    /// Tells the window this device and the trusted devices (at start, or when asked).
    pub(super) fn show_all(&mut self, keyring: &Keyring, sink: &EventSink) {
        emit(
            sink,
            KeyringEvent::ThisDevice {
                name: keyring.identity.name().to_owned(),
                fingerprint: keyring.identity.fingerprint(),
            },
        );
        let now = trusted(keyring);
        self.trusted = Some(now.clone());
        emit(sink, KeyringEvent::Trusted(now));
    }

    /// Sends the trusted devices and the pairing code if they changed since last told;
    /// true when the trusted devices did.
    pub(super) fn poll(
        &mut self,
        keyring: Option<&Keyring>,
        server: Option<&ServerHandle>,
        sink: &EventSink,
    ) -> bool {
        let mut changed = false;
        if let Some(keyring) = keyring
            && self.trusted.is_some()
        {
            let now = trusted(keyring);
            if self.trusted.as_ref() != Some(&now) {
                self.trusted = Some(now.clone());
                emit(sink, KeyringEvent::Trusted(now));
                changed = true;
            }
        }
        if let Some(shown) = &self.pairing {
            let now = server
                .and_then(ServerHandle::pairing)
                .map(|(code, tries_left)| PairingOffer {
                    code: code.as_str().to_owned(),
                    tries_left,
                    expires_at: shown.expires_at,
                });
            // A new code is always sent by `start_pairing`; here only tries and the end.
            let now = now.filter(|offer| offer.code == shown.code);
            if now.as_ref() != Some(shown) {
                // Ended unused: said first, so the window can say why the code is gone.
                let ended = match server.and_then(ServerHandle::pairing_end) {
                    _ if now.is_some() => None,
                    Some(PairingEnd::Burnt) => Some(PairingEnded::Burnt),
                    Some(PairingEnd::Expired) => Some(PairingEnded::Expired),
                    Some(PairingEnd::Used) | None => None,
                };
                if let Some(ended) = ended {
                    sink.emit(Event::Server(ServerEvent::PairingEnded(ended)));
                }
                self.set_pairing(now, sink);
            }
        }
        changed
    }

    /// Offers a fresh pairing code on `server` and shows it.
    pub(super) fn start_pairing(&mut self, server: Option<&ServerHandle>, sink: &EventSink) {
        let Some(server) = server else {
            error(
                sink,
                "start listening first: the code is for this device's server".to_owned(),
            );
            return;
        };
        match server.start_pairing() {
            Ok(code) => {
                let tries_left = server.pairing().map_or(0, |(_, left)| left);
                let offer = PairingOffer {
                    code: code.as_str().to_owned(),
                    tries_left,
                    expires_at: Instant::now() + CODE_LIFETIME,
                };
                self.set_pairing(Some(offer), sink);
            }
            Err(e) => error(sink, e.to_string()),
        }
    }

    /// The code is gone (withdrawn, or the server stopped).
    pub(super) fn stop_pairing(&mut self, server: Option<&ServerHandle>, sink: &EventSink) {
        if let Some(server) = server {
            server.stop_pairing();
        }
        if self.pairing.is_some() {
            self.set_pairing(None, sink);
        }
    }

    fn set_pairing(&mut self, offer: Option<PairingOffer>, sink: &EventSink) {
        self.pairing = offer.clone();
        sink.emit(Event::Server(ServerEvent::Pairing(offer)));
    }
}

/// Renames this device in `dir` and returns the keyring with the new identity.
pub(super) fn rename_self(keyring: &Keyring, dir: &Path, name: &str) -> Result<Keyring, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a device name cannot be empty".to_owned());
    }
    let mut identity: Identity = (*keyring.identity).clone();
    identity.rename(dir, name).map_err(|e| e.to_string())?;
    Ok(Keyring {
        identity: Arc::new(identity),
        trust: keyring.trust.clone(),
    })
}

/// Renames a trusted device; says why not when it cannot.
pub(super) fn rename_trusted(keyring: &Keyring, old: &str, new: &str) -> Result<(), String> {
    let new = new.trim();
    if new.is_empty() {
        return Err("a device name cannot be empty".to_owned());
    }
    match keyring.trust.rename(old, new) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "cannot rename {old:?} to {new:?}: no such device, or the name is taken"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Forgets a trusted device; says why not when it cannot.
pub(super) fn forget(keyring: &Keyring, name: &str) -> Result<(), String> {
    match keyring.trust.forget(name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("no trusted device named {name:?}")),
        Err(e) => Err(e.to_string()),
    }
}
