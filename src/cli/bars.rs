//! The terminal face of transfers for `ferry serve` and `ferry send`: one progress bar per
//! active transfer on stderr (hidden when stderr is not a terminal), and the lines a person
//! or a script reads on stdout (what arrived or failed to, what a receiver waits for; a
//! sent file's failure goes to stderr, since `send` prints every file's result at the end).

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::ask::{check_words, security_words};
use crate::events::{Direction, Event, Security, ServerEvent, TransferEvent, TransferId};
use crate::protocol::{Mode, WaitFor, escape_line};

/// One progress bar per active transfer, on stderr (hidden when it is not a terminal).
pub(super) struct Bars {
    multi: MultiProgress,
    /// Each active transfer's bar, the sender's message, whether it is encrypted, the
    /// reasons "waiting" was said for (each once: the receiver repeats it every 5 s, and a
    /// hostile one could alternate reasons to print a line per message), and its direction.
    active: HashMap<TransferId, (ProgressBar, String, Security, Vec<WaitFor>, Direction)>,
    style: ProgressStyle,
    /// Receivers whose protection was already said.
    told: Vec<std::net::SocketAddr>,
}

impl Bars {
    pub(super) fn new() -> Self {
        let style = ProgressStyle::with_template(
            "{prefix:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Self {
            multi: MultiProgress::new(),
            active: HashMap::new(),
            style,
            told: Vec::new(),
        }
    }

    /// Prints a line above the bars (or plainly when there are no bars).
    pub fn line(&self, text: String) {
        self.multi.suspend(|| say!("{text}"));
    }

    /// How a transfer that did not complete ended. Received: the line on stdout. Sent: said
    /// at once on stderr, for a person watching, since `send` prints every file's result on
    /// stdout when it is done: one line per file there, for scripts.
    fn ended(&self, direction: Direction, text: String) {
        match direction {
            Direction::Incoming => self.line(text),
            Direction::Outgoing => self.multi.suspend(|| tell!("{text}")),
        }
    }

    pub(super) fn show(&mut self, event: &Event) {
        match event {
            Event::Transfer(TransferEvent::Started {
                id,
                peer,
                name,
                saved_as,
                bytes_total,
                mode,
                msg,
                direction,
                security,
            }) => {
                // Started again (an eager file the receiver asked for again, offered the
                // ordinary way): its old bar goes, or it would stay drawn, never finished.
                if let Some((old, ..)) = self.active.remove(id) {
                    old.finish_and_clear();
                    self.multi.remove(&old);
                }
                let bar = self
                    .multi
                    .add(ProgressBar::new(*bytes_total).with_style(self.style.clone()));
                // Names, messages and reasons come from the peer: escaped before printing.
                bar.set_prefix(escape_line(name).into_owned());
                if let Some(saved_as) = saved_as {
                    self.line(format!(
                        "{peer}: \"{}\" will be saved as \"{}\"",
                        escape_line(name),
                        escape_line(saved_as)
                    ));
                }
                let kind = if *mode == Mode::Ferry {
                    "Ferry"
                } else {
                    "plain"
                };
                log::debug!("{direction:?} {kind} transfer {id} of {name:?} with {peer}");
                if *direction == Direction::Outgoing && !self.told.contains(peer) {
                    // Once per receiver: who it is and whether the bytes are protected.
                    self.told.push(*peer);
                    // On stderr: stdout holds one result line per file, for scripts.
                    let words = match security {
                        // Not "plain sender": this side is the sender (--plain,
                        // --no-encryption, or a receiver that speaks only plain).
                        Security::Plain => {
                            "NOT ENCRYPTED (anyone on the network can read or change it)".to_owned()
                        }
                        security => security_words(security),
                    };
                    self.multi.suspend(|| tell!("to {peer}: {words}"));
                }
                self.active.insert(
                    *id,
                    (bar, msg.clone(), security.clone(), Vec::new(), *direction),
                );
            }
            Event::Transfer(TransferEvent::AwaitingDecision { id, waiting_for }) => {
                let news = self
                    .active
                    .get_mut(id)
                    .filter(|(.., said, _)| !said.contains(waiting_for));
                let news = news.map(|(bar, .., said, _)| {
                    // At most one of each of WaitFor's three reasons.
                    said.push(*waiting_for);
                    bar.prefix()
                });
                if let Some(prefix) = news {
                    self.line(format!("{prefix}: {}", waiting_words(*waiting_for)));
                }
            }
            Event::Transfer(TransferEvent::Progress { id, bytes_done }) => {
                if let Some((bar, ..)) = self.active.get(id) {
                    bar.set_position(*bytes_done);
                }
            }
            Event::Transfer(TransferEvent::Finished {
                id,
                verified,
                saved_as,
                path,
            }) => {
                if let Some((bar, msg, security, ..)) = self.active.remove(id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                    if let Some(path) = path {
                        let check = check_words(*verified, &security);
                        self.line(format!(
                            "received {} ({} bytes, {check}, {})",
                            escape_line(&path.display().to_string()),
                            bar.length().unwrap_or(0),
                            security_words(&security)
                        ));
                        if !msg.is_empty() {
                            // The original server prints the sender's message as it is.
                            self.line(escape_line(&msg).into_owned());
                        }
                    } else {
                        log::debug!("sent {saved_as:?}");
                    }
                }
            }
            Event::Transfer(TransferEvent::Failed { id, failure }) => {
                if let Some((bar, .., direction)) = self.active.remove(id) {
                    bar.abandon();
                    self.multi.remove(&bar);
                    self.ended(direction, format!("{}: failed: {}", bar.prefix(), failure));
                }
            }
            Event::Transfer(TransferEvent::Cancelled { id, by_peer }) => {
                if let Some((bar, .., direction)) = self.active.remove(id) {
                    bar.abandon();
                    self.multi.remove(&bar);
                    let who = if *by_peer {
                        "cancelled by peer"
                    } else {
                        "cancelled"
                    };
                    self.ended(direction, format!("{}: {who}", bar.prefix()));
                }
            }
            Event::Server(ServerEvent::Paired {
                peer,
                device,
                fingerprint,
            }) => {
                self.line(format!(
                    "{peer}: paired with \"{}\" (fingerprint {fingerprint}): trusted from now on",
                    escape_line(device)
                ));
            }
            Event::Server(ServerEvent::ConnectionError { peer, reason }) => {
                self.line(format!("{peer}: {}", escape_line(reason)));
            }
            Event::Server(ServerEvent::PartialsExpired { names, bytes }) => {
                let names: Vec<String> =
                    names.iter().map(|n| escape_line(n).into_owned()).collect();
                self.line(format!(
                    "removed {} old partial file(s), {bytes} bytes: {}",
                    names.len(),
                    names.join(", ")
                ));
            }
            Event::Server(_)
            | Event::Note(_)
            | Event::Discovery(_)
            | Event::Keyring(_)
            | Event::Speed { .. } => {}
        }
    }
}

/// What a sender's line says while the receiver holds its answer.
fn waiting_words(waiting_for: WaitFor) -> &'static str {
    match waiting_for {
        WaitFor::Decision => "waiting for the receiver to accept",
        WaitFor::Checking => "waiting while the receiver checks what it kept of an earlier try",
        WaitFor::EarlierCopy => {
            "waiting for the receiver to let go of an interrupted copy of this folder \
             (at most its idle timeout)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: TransferId) -> Event {
        Event::Transfer(TransferEvent::Started {
            id,
            direction: Direction::Outgoing,
            peer: ([127, 0, 0, 1], 1).into(),
            name: "f.bin".into(),
            saved_as: None,
            bytes_total: 10,
            mode: Mode::Ferry,
            msg: String::new(),
            security: Security::Plain,
        })
    }

    /// A file started twice (offered again) leaves no bar of its first try behind: that one
    /// is finished and cleared, and only the new one is active.
    #[test]
    fn a_file_started_again_replaces_its_bar() {
        let mut bars = Bars::new();
        bars.show(&started(7));
        let first = bars.active.get(&7).map(|(bar, ..)| bar.clone()).unwrap();
        bars.show(&started(7));
        assert!(first.is_finished(), "the first try's bar is left drawn");
        assert_eq!(bars.active.len(), 1);
    }
}
