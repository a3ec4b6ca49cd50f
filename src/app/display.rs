//! What the window shows of a peer's words: every name, message, reason and note an event
//! carries is made display-safe once, as the event arrives, so no widget can ever draw a raw
//! control, bidirectional-control or line-separator character (egui would draw a missing-glyph
//! box, or nothing, and a bidi override would still mislead about a name's extension).
//!
//! Single-line fields use [`escape_line`]; a note keeps its line breaks ([`escape_note`]).

use crate::events::{
    DiscoveryEvent, Event, Failure, KeyringEvent, NoteEvent, OfferedFolder, PendingOffer, Security,
    SeenDevice, SeenLocalSend, ServerEvent, TransferEvent, TrustedPeer,
};
use crate::protocol::{escape_line, escape_note};
use crate::transfer::ProbeReport;

/// `event` with its peer-controlled text escaped for display.
pub fn display_safe(event: Event) -> Event {
    fn line(text: String) -> String {
        match escape_line(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(escaped) => escaped,
        }
    }
    match event {
        Event::Transfer(TransferEvent::Started {
            id,
            direction,
            peer,
            name,
            saved_as,
            bytes_total,
            mode,
            msg,
            security,
        }) => Event::Transfer(TransferEvent::Started {
            id,
            direction,
            peer,
            name: line(name),
            saved_as: saved_as.map(line),
            bytes_total,
            mode,
            msg: line(msg),
            security: safe_security(security),
        }),
        Event::Transfer(TransferEvent::Finished {
            id,
            verified,
            saved_as,
            path,
        }) => Event::Transfer(TransferEvent::Finished {
            id,
            verified,
            saved_as: saved_as.map(line),
            path,
        }),
        Event::Transfer(TransferEvent::Failed { id, failure }) => {
            Event::Transfer(TransferEvent::Failed {
                id,
                failure: Failure {
                    detail: failure.detail.map(line),
                    ..failure
                },
            })
        }
        Event::Server(ServerEvent::OfferPending(offer)) => {
            Event::Server(ServerEvent::OfferPending(PendingOffer {
                names: offer.names.into_iter().map(line).collect(),
                msg: line(offer.msg),
                security: safe_security(offer.security),
                folder: offer.folder.map(|folder| OfferedFolder {
                    name: line(folder.name),
                    ..folder
                }),
                ..offer
            }))
        }
        Event::Server(ServerEvent::Paired {
            peer,
            device,
            fingerprint,
        }) => Event::Server(ServerEvent::Paired {
            peer,
            device: line(device),
            fingerprint,
        }),
        Event::Server(ServerEvent::ConnectionError { peer, reason }) => {
            Event::Server(ServerEvent::ConnectionError {
                peer,
                reason: line(reason),
            })
        }
        Event::Note(NoteEvent::Received {
            from,
            text,
            at,
            security,
        }) => {
            let text = match escape_note(&text, "") {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(escaped) => escaped,
            };
            let security = match security {
                Security::Encrypted {
                    device,
                    fingerprint,
                    trusted,
                } => Security::Encrypted {
                    device: line(device),
                    fingerprint: line(fingerprint),
                    trusted,
                },
                Security::Plain => Security::Plain,
                Security::LocalSend {
                    alias,
                    device_type,
                    fingerprint,
                    encrypted,
                } => Security::LocalSend {
                    alias: line(alias),
                    device_type: line(device_type),
                    fingerprint: line(fingerprint),
                    encrypted,
                },
            };
            Event::Note(NoteEvent::Received {
                from,
                text,
                at,
                security,
            })
        }
        Event::Note(NoteEvent::Refused { from, reason, at }) => Event::Note(NoteEvent::Refused {
            from,
            reason: line(reason),
            at,
        }),
        Event::Note(NoteEvent::Error { reason }) => Event::Note(NoteEvent::Error {
            reason: line(reason),
        }),
        Event::Discovery(DiscoveryEvent::Devices { devices, doctor }) => {
            Event::Discovery(DiscoveryEvent::Devices {
                devices: devices
                    .into_iter()
                    .map(|d| SeenDevice {
                        name: line(d.name),
                        fingerprint: line(d.fingerprint),
                        ..d
                    })
                    .collect(),
                doctor: doctor.into_iter().map(|f| f.map_text(line)).collect(),
            })
        }
        Event::Discovery(DiscoveryEvent::LocalSendDevices(devices)) => {
            Event::Discovery(DiscoveryEvent::LocalSendDevices(
                devices
                    .into_iter()
                    .map(|d| SeenLocalSend {
                        alias: line(d.alias),
                        device_type: line(d.device_type),
                        ..d
                    })
                    .collect(),
            ))
        }
        Event::Discovery(DiscoveryEvent::Checked { target, lines }) => {
            Event::Discovery(DiscoveryEvent::Checked {
                target: line(target),
                lines: lines.into_iter().map(|f| f.map_text(line)).collect(),
            })
        }
        Event::Discovery(DiscoveryEvent::Announcing { name }) => {
            Event::Discovery(DiscoveryEvent::Announcing { name: line(name) })
        }
        // Names in the trust store were first sent by the peers; this device's name is in a
        // file anyone with access to the config folder may have edited.
        Event::Keyring(KeyringEvent::ThisDevice { name, fingerprint }) => {
            Event::Keyring(KeyringEvent::ThisDevice {
                name: line(name),
                fingerprint: line(fingerprint),
            })
        }
        Event::Keyring(KeyringEvent::Trusted(trusted)) => Event::Keyring(KeyringEvent::Trusted(
            trusted
                .into_iter()
                .map(|t| TrustedPeer {
                    name: line(t.name),
                    last_address: t.last_address.map(line),
                    ..t
                })
                .collect(),
        )),
        Event::Keyring(KeyringEvent::Error { reason }) => Event::Keyring(KeyringEvent::Error {
            reason: line(reason),
        }),
        // A speed test's failure may quote the receiver (its decline, its device name).
        Event::Speed { to, outcome } => Event::Speed {
            to: line(to),
            outcome: outcome
                .map(|report| ProbeReport {
                    security: safe_security(report.security),
                    ..report
                })
                .map_err(line),
        },
        other => other,
    }
}

/// A device name from a handshake is the peer's words: escaped like any other.
fn safe_security(security: Security) -> Security {
    match security {
        Security::Encrypted {
            device,
            fingerprint,
            trusted,
        } => Security::Encrypted {
            device: escape_line(&device).into_owned(),
            fingerprint,
            trusted,
        },
        Security::Plain => Security::Plain,
        Security::LocalSend {
            alias,
            device_type,
            fingerprint,
            encrypted,
        } => Security::LocalSend {
            alias: escape_line(&alias).into_owned(),
            device_type: escape_line(&device_type).into_owned(),
            fingerprint,
            encrypted,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use super::*;
    use crate::events::Direction;
    use crate::protocol::Mode;
    use crate::protocol::is_unsafe_char;

    const EVIL: &str = "a\u{1b}]52;c;SGVsbG8=\u{7}\u{202e}txt.exe\u{2028}\u{9b}2J\nz";

    fn clean(text: &str) -> bool {
        !text.chars().any(is_unsafe_char)
    }

    #[test]
    fn every_peer_string_is_escaped() {
        let peer: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let Event::Transfer(TransferEvent::Started {
            name,
            saved_as,
            msg,
            ..
        }) = display_safe(Event::Transfer(TransferEvent::Started {
            id: 1,
            direction: Direction::Incoming,
            peer,
            name: EVIL.into(),
            saved_as: Some(EVIL.into()),
            bytes_total: 1,
            mode: Mode::Ferry,
            msg: EVIL.into(),
            security: crate::events::Security::Plain,
        }))
        else {
            panic!("not a start")
        };
        assert!(
            clean(&name) && clean(&saved_as.unwrap()) && clean(&msg),
            "{name}"
        );
        let Event::Server(ServerEvent::OfferPending(offer)) =
            display_safe(Event::Server(ServerEvent::OfferPending(PendingOffer {
                offer_id: 1,
                peer,
                count: 1,
                bytes: 1,
                names: vec![EVIL.into()],
                sizes: vec![1],
                msg: EVIL.into(),
                security: Security::Encrypted {
                    device: EVIL.into(),
                    fingerprint: "a-b-c".into(),
                    trusted: false,
                },
                folder: Some(OfferedFolder {
                    name: EVIL.into(),
                    folders: 1,
                }),
            })))
        else {
            panic!("not an offer")
        };
        assert!(clean(&offer.names[0]) && clean(&offer.msg));
        assert!(clean(
            &offer.folder.unwrap_or_else(|| panic!("no folder")).name
        ));
        let Security::Encrypted { device, .. } = &offer.security else {
            panic!("the security was lost")
        };
        assert!(clean(device), "{device}");
        let Event::Transfer(TransferEvent::Failed { failure, .. }) =
            display_safe(Event::Transfer(TransferEvent::Failed {
                id: 1,
                failure: crate::events::Failure::new(crate::events::FailureKind::Protocol, EVIL),
            }))
        else {
            panic!("not a failure")
        };
        assert!(clean(failure.detail.as_deref().unwrap_or_default()));
    }

    #[test]
    fn notes_keep_line_breaks_only() {
        let Event::Note(NoteEvent::Received { text, .. }) =
            display_safe(Event::Note(NoteEvent::Received {
                from: "192.0.2.1:9".parse().unwrap(),
                text: EVIL.into(),
                at: SystemTime::UNIX_EPOCH,
                security: Security::Plain,
            }))
        else {
            panic!("not a note")
        };
        assert!(text.ends_with("\nz"), "{text:?}");
        assert!(
            !text.chars().any(|c| c != '\n' && is_unsafe_char(c)),
            "{text:?}"
        );
    }
}
