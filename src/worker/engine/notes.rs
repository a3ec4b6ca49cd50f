//! The engine's side of notes: a note to a numeric address leaves at once; one to a host
//! name waits for its lookup on the lookup thread (so the engine never blocks on DNS), in
//! the order notes were written, sealed as the window asked.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::Sender;

use super::Engine;
use crate::events::{Event, NoteEvent};
use crate::notes::{NotesError, Seal};
use crate::protocol::check_note;

/// A note to a host name, waiting for its lookup.
pub(super) struct PendingNote {
    to: String,
    text: String,
    key: Option<[u8; 32]>,
}

/// A lookup's answer, which the engine turns into a sent note (or an error).
pub(super) struct Looked {
    to: String,
    text: String,
    key: Option<[u8; 32]>,
    addrs: io::Result<Vec<SocketAddr>>,
}

impl Engine {
    /// A numeric address is sent to at once; a host name is looked up on the lookup thread
    /// and sent when its answer comes back ([`finish_note`](Self::finish_note)).
    pub(super) fn send_note(&mut self, to: String, text: String, key: Option<[u8; 32]>) {
        if self.notes.is_none() {
            return self.note_error("notes are not listening; start them first".to_owned());
        }
        // A note no peer would take is refused before any lookup.
        if let Err(e) = check_note(&text) {
            return self.note_error(NotesError::from(e).to_string());
        }
        let to = match crate::defaults::engine_destination(&to) {
            Ok(to) => to,
            Err(e) => return self.note_error(e.to_string()),
        };
        if let Ok(addr) = to.parse::<SocketAddr>() {
            return self.finish_note(Looked {
                to,
                text,
                key,
                addrs: Ok(vec![addr]),
            });
        }
        let mut lookup = PendingNote { to, text, key };
        // A lookup thread that ended (it never does, short of a panic) is started again once.
        for _ in 0..2 {
            let lookups = match &self.lookups {
                Some(lookups) => lookups,
                None => match self.start_lookups() {
                    Ok(lookups) => self.lookups.insert(lookups),
                    Err(e) => return self.note_error(format!("cannot look {} up: {e}", lookup.to)),
                },
            };
            match lookups.send(lookup) {
                Ok(()) => return,
                Err(crossbeam_channel::SendError(back)) => {
                    self.lookups = None;
                    lookup = back;
                }
            }
        }
        self.note_error(format!(
            "cannot look {} up: the lookup thread stopped",
            lookup.to
        ));
    }

    fn start_lookups(&self) -> io::Result<Sender<PendingNote>> {
        let (tx, rx) = crossbeam_channel::unbounded::<PendingNote>();
        let (lookup_host, looked) = (Arc::clone(&self.seams.lookup_host), self.looked.clone());
        (self.seams.spawner)(
            "ferry-lookup",
            Box::new(move || {
                for PendingNote { to, text, key } in rx {
                    let addrs = lookup_host(&to);
                    if looked
                        .send(Looked {
                            to,
                            text,
                            key,
                            addrs,
                        })
                        .is_err()
                    {
                        return; // the engine has stopped
                    }
                }
            }),
        )?;
        Ok(tx)
    }

    pub(super) fn finish_note(
        &mut self,
        Looked {
            to,
            text,
            key,
            addrs,
        }: Looked,
    ) {
        let Some(notes) = &self.notes else {
            return self.note_error("notes are not listening; start them first".to_owned());
        };
        let sent = addrs
            .map_err(|error| NotesError::Resolve {
                to: to.clone(),
                error,
            })
            .and_then(|addrs| notes.pick(&to, &addrs))
            .and_then(|addr| notes.send_with(addr, &text, key.map_or(Seal::Auto, Seal::Device)));
        match sent {
            Ok(sent) => self.sink.emit(Event::Note(NoteEvent::Sent {
                to: sent.to,
                text,
                at: SystemTime::now(),
                security: sent.security,
            })),
            Err(e) => self.note_error(e.to_string()),
        }
    }

    pub(super) fn note_error(&self, reason: String) {
        self.sink.emit(Event::Note(NoteEvent::Error { reason }));
    }
}
