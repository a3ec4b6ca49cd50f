//! `ferry serve --ask`: offers waiting for an answer on the terminal.
//!
//! Several senders can be waiting at once, and one of them may be hostile, so an answer must
//! name the offer it is for: every prompt shows its sender and its number, and only
//! `y N` / `n N` decide offer N (a bare `y` decides nothing and says so). A batch lists every
//! file, a page at a time (`more N` shows the next page), never "and N more".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::events::{PendingOffer, Security};
use crate::protocol::escape_line;
use crate::transfer::Decision;

/// Files listed per page of a prompt.
pub(super) const PAGE_FILES: usize = 20;

/// One offer waiting for its answer.
#[derive(Debug)]
struct Waiting {
    peer: SocketAddr,
    /// One line per listed file.
    files: Vec<String>,
    /// How many of `files` were printed so far.
    shown: usize,
    /// The sender is an encrypted, untrusted device: "t N" may trust it.
    can_trust: bool,
}

/// What the user's line asked for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// Decide this offer.
    Decide { offer_id: u64, decision: Decision },
    /// Nothing to decide; print this.
    Say(String),
}

/// The offers waiting for an answer, by number.
#[derive(Debug, Default)]
pub(super) struct AskPrompts {
    waiting: BTreeMap<u64, Waiting>,
}

impl AskPrompts {
    /// Registers an offer and returns its prompt: sender, number, totals, the first page of
    /// files and how to answer. Its names are already sanitized; its sizes are parallel or
    /// empty.
    pub(super) fn offer(&mut self, offer: &PendingOffer) -> String {
        let PendingOffer {
            offer_id,
            peer,
            count,
            bytes,
            ref names,
            ref sizes,
            ref msg,
            ref security,
            ref folder,
        } = *offer;
        let files = names
            .iter()
            .enumerate()
            .map(|(i, name)| match sizes.get(i) {
                Some(size) => format!("{} ({size} bytes)", escape_line(name)),
                None => escape_line(name).into_owned(),
            })
            .collect();
        let mut text = match folder {
            // "photos: 120 files in 14 folders, 340.2 MiB (356725191 bytes)"
            Some(folder) => format!(
                "offer {offer_id} from {peer}: {}: {count} {} in {} {}, {} ({bytes} bytes)",
                escape_line(&folder.name),
                plural(count, "file", "files"),
                folder.folders,
                plural(folder.folders, "folder", "folders"),
                size_words(bytes),
            ),
            None => format!("offer {offer_id} from {peer}: {count} file(s), {bytes} bytes"),
        };
        let can_trust = matches!(security, Security::Encrypted { trusted: false, .. });
        let _ = write!(text, "\n  {}", security_words(security));
        if !msg.is_empty() {
            let _ = write!(text, "\n  message: {}", escape_line(msg));
        }
        let unlisted = count.saturating_sub(names.len() as u64);
        let mut waiting = Waiting {
            peer,
            files,
            shown: 0,
            can_trust,
        };
        text.push_str(&next_page(offer_id, &mut waiting));
        if unlisted > 0 {
            let _ = write!(
                text,
                "\n  {unlisted} more file(s) are not listed: each is asked about when it arrives"
            );
        }
        if can_trust {
            let _ = write!(
                text,
                "\nAccept offer {offer_id} from {peer}? Type \"y {offer_id}\", \"t {offer_id}\" (accept and trust this device) or \"n {offer_id}\"."
            );
        } else {
            let _ = write!(
                text,
                "\nAccept offer {offer_id} from {peer}? Type \"y {offer_id}\" or \"n {offer_id}\"."
            );
        }
        self.waiting.insert(offer_id, waiting);
        text
    }

    /// The engine no longer waits for this offer (decided, timed out, sender gone): its
    /// sender, if it was still waiting for an answer typed here.
    pub(super) fn close(&mut self, offer_id: u64) -> Option<SocketAddr> {
        self.waiting.remove(&offer_id).map(|waiting| waiting.peer)
    }

    /// Every offer still waiting, removed (stdin closed: nobody can answer them).
    pub(super) fn drain(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.waiting).into_keys().collect()
    }

    /// Interprets one typed line.
    pub(super) fn reply(&mut self, line: &str) -> Reply {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let (verb, number) = match words.as_slice() {
            [verb, number] if number.parse::<u64>().is_ok() => (verb.as_str(), number),
            [number, verb] if number.parse::<u64>().is_ok() => (verb.as_str(), number),
            [] => return Reply::Say(String::new()),
            _ => return Reply::Say(self.which()),
        };
        // Checked just above.
        let offer_id: u64 = number.parse().unwrap_or_default();
        let Some(waiting) = self.waiting.get_mut(&offer_id) else {
            return Reply::Say(format!("no offer {offer_id} is waiting; {}", self.which()));
        };
        match verb {
            "y" | "yes" => {
                self.waiting.remove(&offer_id);
                Reply::Decide {
                    offer_id,
                    decision: Decision::Accept,
                }
            }
            "t" | "trust" if waiting.can_trust => {
                self.waiting.remove(&offer_id);
                Reply::Decide {
                    offer_id,
                    decision: Decision::AcceptAndTrust,
                }
            }
            "n" | "no" => {
                self.waiting.remove(&offer_id);
                Reply::Decide {
                    offer_id,
                    decision: Decision::Decline,
                }
            }
            "more" => {
                let peer = waiting.peer;
                let page = next_page(offer_id, waiting);
                Reply::Say(format!("offer {offer_id} from {peer}:{page}"))
            }
            _ => Reply::Say(self.which()),
        }
    }

    /// How to answer, naming the offers that wait.
    fn which(&self) -> String {
        if self.waiting.is_empty() {
            return "no offer is waiting".into();
        }
        let ids: Vec<String> = self.waiting.keys().map(u64::to_string).collect();
        format!(
            "answer \"y N\" or \"n N\" with the offer's number (waiting: {})",
            ids.join(", ")
        )
    }
}

/// The next page of an offer's files, each on its own indented line, and where the listing
/// stands.
fn next_page(offer_id: u64, waiting: &mut Waiting) -> String {
    let total = waiting.files.len();
    let from = waiting.shown.min(total);
    let to = (from + PAGE_FILES).min(total);
    let mut text = String::new();
    for file in &waiting.files[from..to] {
        let _ = write!(text, "\n  {file}");
    }
    waiting.shown = to;
    if to < total {
        let _ = write!(
            text,
            "\n  files {}-{to} of {total}: \"more {offer_id}\" lists the next {}",
            from + 1,
            PAGE_FILES.min(total - to)
        );
    } else if from > 0 {
        let _ = write!(text, "\n  files {}-{to} of {total}: that is all", from + 1);
    }
    text
}

/// How a "received" line says whether the file was checked: a plain peer sends no hash,
/// and neither does LocalSend (its CLI not even the optional `sha256`).
pub(super) fn check_words(verified: bool, security: &Security) -> &'static str {
    match (verified, security) {
        (true, _) => "verified",
        (false, Security::LocalSend { .. }) => "complete, unverified (LocalSend sends no hash)",
        (false, _) => "complete, unverified (plain peer)",
    }
}

/// How a prompt or a line names the sender's protection: the device and its fingerprint
/// when encrypted, a plain warning otherwise (peer text escaped).
pub(super) fn security_words(security: &Security) -> String {
    match security {
        Security::Plain => {
            "NOT ENCRYPTED (plain sender: anyone on the network can read or change it)".to_owned()
        }
        Security::Encrypted {
            device,
            fingerprint,
            trusted,
        } => format!(
            "encrypted, device \"{}\" ({}), fingerprint {fingerprint}",
            escape_line(device),
            if *trusted {
                "trusted"
            } else {
                "not trusted yet"
            }
        ),
        Security::LocalSend {
            alias,
            device_type,
            fingerprint,
            encrypted: true,
        } => format!(
            "LocalSend device \"{}\" ({}), certificate fingerprint {}",
            escape_line(alias),
            escape_line(device_type),
            if fingerprint.is_empty() {
                "none (no client certificate)".into()
            } else {
                escape_line(fingerprint)
            },
        ),
        // Plain HTTP: no certificate, so the "fingerprint" is only the id it claims.
        Security::LocalSend {
            alias,
            device_type,
            fingerprint,
            encrypted: false,
        } => format!(
            "LocalSend device \"{}\" ({}), id {} (claimed, no certificate), NOT ENCRYPTED \
             (plain HTTP)",
            escape_line(alias),
            escape_line(device_type),
            if fingerprint.is_empty() {
                "none".into()
            } else {
                escape_line(fingerprint)
            },
        ),
    }
}

/// `word` for one, `words` otherwise.
fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `340.0 MiB`, `900 B`.
fn size_words(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{PendingOffer, Security};
    use crate::transfer::Decision;

    #[test]
    fn a_localsend_device_s_claimed_id_is_escaped_and_called_no_fingerprint() {
        let plain = Security::LocalSend {
            alias: "Phone".into(),
            device_type: "mobile".into(),
            fingerprint: "AB\u{1b}]0;OWNED\u{7}".into(),
            encrypted: false,
        };
        let words = security_words(&plain);
        assert!(!words.chars().any(char::is_control), "{words:?}");
        assert!(
            words.contains("id AB\\u{1b}]0;OWNED\\u{7} (claimed, no certificate), NOT ENCRYPTED"),
            "{words}"
        );
        assert!(!words.contains("certificate fingerprint"), "{words}");
        let https = Security::LocalSend {
            alias: "Phone".into(),
            device_type: "mobile".into(),
            fingerprint: "AB12".into(),
            encrypted: true,
        };
        assert_eq!(
            security_words(&https),
            "LocalSend device \"Phone\" (mobile), certificate fingerprint AB12"
        );
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn offer(
        offer_id: u64,
        peer: SocketAddr,
        count: u64,
        bytes: u64,
        names: &[&str],
        sizes: &[u64],
        msg: &str,
    ) -> PendingOffer {
        PendingOffer {
            offer_id,
            peer,
            count,
            bytes,
            names: names.iter().map(|n| n.to_string()).collect(),
            sizes: sizes.to_vec(),
            msg: msg.into(),
            security: Security::Plain,
            folder: None,
        }
    }

    #[test]
    fn a_folder_offer_counts_its_files_and_folders() {
        let mut prompts = AskPrompts::default();
        let mut folder = offer(5, peer(1), 120, 340 * 1024 * 1024, &[], &[], "");
        folder.folder = Some(crate::events::OfferedFolder {
            name: "photos".into(),
            folders: 14,
        });
        let text = prompts.offer(&folder);
        assert!(
            text.starts_with(
                "offer 5 from 127.0.0.1:1: photos: 120 files in 14 folders, 340.0 MiB (356515840 bytes)"
            ),
            "{text}"
        );
        folder.count = 1;
        folder.folder = Some(crate::events::OfferedFolder {
            name: "one".into(),
            folders: 1,
        });
        let text = prompts.offer(&folder);
        assert!(text.contains(": one: 1 file in 1 folder, "), "{text}");
    }

    #[test]
    fn an_answer_decides_only_the_offer_it_names() {
        let mut prompts = AskPrompts::default();
        let first = prompts.offer(&offer(3, peer(1), 1, 5, &["a.txt"], &[5], ""));
        assert!(first.contains("offer 3 from 127.0.0.1:1"), "{first}");
        assert!(first.contains("Type \"y 3\" or \"n 3\""), "{first}");
        prompts.offer(&offer(4, peer(2), 1, 5, &["evil.sh"], &[5], ""));
        // A bare "y" decides nothing, whichever offer came last.
        let Reply::Say(hint) = prompts.reply("y") else {
            panic!("a bare y must not decide");
        };
        assert!(hint.contains("waiting: 3, 4"), "{hint}");
        assert_eq!(
            prompts.reply("y 3"),
            Reply::Decide {
                offer_id: 3,
                decision: Decision::Accept
            }
        );
        assert_eq!(
            prompts.reply("4 N"),
            Reply::Decide {
                offer_id: 4,
                decision: Decision::Decline
            }
        );
        assert!(matches!(prompts.reply("y 3"), Reply::Say(s) if s.starts_with("no offer 3")));
    }

    #[test]
    fn only_an_encrypted_untrusted_sender_can_be_trusted_from_the_prompt() {
        let mut prompts = AskPrompts::default();
        let plain = prompts.offer(&offer(5, peer(1), 1, 5, &["a.txt"], &[5], ""));
        assert!(plain.contains("NOT ENCRYPTED"), "{plain}");
        assert!(!plain.contains("\"t 5\""), "{plain}");
        assert!(
            matches!(prompts.reply("t 5"), Reply::Say(_)),
            "plain: t decides nothing"
        );
        let mut device = offer(6, peer(2), 1, 5, &["b.txt"], &[5], "");
        device.security = Security::Encrypted {
            device: "laptop\u{1b}[31m".into(),
            fingerprint: "apple-bread-cider".into(),
            trusted: false,
        };
        let text = prompts.offer(&device);
        assert!(text.contains("encrypted, device \"laptop"), "{text}");
        assert!(
            text.contains("(not trusted yet)") && !text.contains('\u{1b}'),
            "{text}"
        );
        assert!(
            text.contains("apple-bread-cider") && text.contains("\"t 6\""),
            "{text}"
        );
        assert_eq!(
            prompts.reply("t 6"),
            Reply::Decide {
                offer_id: 6,
                decision: Decision::AcceptAndTrust
            }
        );
    }

    #[test]
    fn a_batch_lists_every_file_a_page_at_a_time() {
        let mut prompts = AskPrompts::default();
        let names: Vec<String> = (0..45).map(|i| format!("f{i}.txt")).collect();
        let sizes: Vec<u64> = (0..45).collect();
        let mut nine = offer(9, peer(1), 47, 990, &[], &sizes, "hi\u{1b}[2J");
        nine.names = names;
        let first = prompts.offer(&nine);
        assert!(first.contains("\n  f0.txt (0 bytes)"));
        assert!(first.contains("\n  f19.txt (19 bytes)"));
        assert!(!first.contains("f20.txt"));
        assert!(first.contains("files 1-20 of 45: \"more 9\" lists the next 20"));
        assert!(first.contains("2 more file(s) are not listed"));
        assert!(!first.contains('\u{1b}'), "the message is escaped");
        let Reply::Say(second) = prompts.reply("more 9") else {
            panic!()
        };
        assert!(second.contains("f20.txt") && second.contains("f39.txt"));
        assert!(second.contains("files 21-40 of 45: \"more 9\" lists the next 5"));
        let Reply::Say(third) = prompts.reply("more 9") else {
            panic!()
        };
        assert!(third.contains("f44.txt") && third.contains("files 41-45 of 45: that is all"));
        prompts.close(9);
        assert!(matches!(prompts.reply("y 9"), Reply::Say(s) if s.starts_with("no offer 9")));
    }
}
