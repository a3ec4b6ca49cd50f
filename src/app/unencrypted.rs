//! Sending to a LocalSend device whose encryption is turned off (it speaks plain HTTP):
//! never silent. The Client tab and the Notes panel show, for such a destination, what that
//! means and a "Send unencrypted to this device" checkbox; Upload and Send refuse with the
//! explanation until it is ticked. The agreement is per device (its address and the id it
//! claims: another device showing up at that address is asked about afresh) and lasts
//! while the window runs (it is not saved).

use std::net::SocketAddr;

use egui::{RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::palette;
use crate::localsend::LocalSendTarget;

/// A destination that is a LocalSend device with encryption off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionOff {
    pub addr: SocketAddr,
    /// The id it claims (its "fingerprint": nothing proves it).
    pub id: String,
    /// Its alias (escaped for display already).
    pub alias: String,
    /// Whether the user ticked "Send unencrypted to this device".
    pub agreed: bool,
}

impl EncryptionOff {
    /// The warning and the checkbox; a changed tick becomes [`Action::AgreeUnencrypted`].
    #[must_use]
    pub fn ui(&self, ui: &mut Ui, tr: Tr) -> Option<Action> {
        ui.label(
            RichText::new(tr.fill(T::EncryptionOffWarning, &[&self.alias]))
                .color(palette::NOT_ENCRYPTED),
        );
        let mut agreed = self.agreed;
        ui.checkbox(&mut agreed, tr.get(T::SendUnencrypted))
            .on_hover_text(tr.get(T::EncryptionOffHint))
            .changed()
            .then(|| Action::AgreeUnencrypted {
                addr: self.addr,
                id: self.id.clone(),
                agreed,
            })
    }

    /// Why a send to it is refused, or `None` when the user agreed.
    pub fn refusal(&self, tr: Tr) -> Option<String> {
        (!self.agreed).then(|| tr.fill(T::EncryptionOffNotSent, &[&self.alias]))
    }
}

/// The devices with encryption off the user agreed to send unencrypted to: each by its
/// address and the id it claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agreements(Vec<(SocketAddr, String)>);

impl Agreements {
    /// Whether the user agreed to send unencrypted to `target` (that address, that id).
    pub fn agreed(&self, target: &LocalSendTarget) -> bool {
        self.0
            .iter()
            .any(|(addr, id)| *addr == target.addr && *id == target.fingerprint)
    }

    /// "Send unencrypted to this device" ticked (or not) for the device `id` at `addr`.
    pub fn set(&mut self, addr: SocketAddr, id: &str, agreed: bool) {
        self.0.retain(|(a, i)| !(*a == addr && i == id));
        if agreed {
            self.0.push((addr, id.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localsend::LocalSendProtocol;

    fn plain(addr: &str, id: &str) -> LocalSendTarget {
        LocalSendTarget {
            addr: addr.parse().expect("address"),
            fingerprint: id.to_owned(),
            alias: "Phone".to_owned(),
            device_type: "mobile".to_owned(),
            protocol: LocalSendProtocol::Http,
        }
    }

    #[test]
    fn an_agreement_is_for_one_device_not_for_whatever_answers_at_its_address() {
        let mut agreements = Agreements::default();
        let phone = plain("10.0.0.7:53317", "AB12");
        agreements.set(phone.addr, &phone.fingerprint, true);
        assert!(agreements.agreed(&phone));
        // Another device (or someone claiming to be one) at that address: asked afresh.
        assert!(!agreements.agreed(&plain("10.0.0.7:53317", "EE99")));
        // The same id elsewhere: asked afresh too.
        assert!(!agreements.agreed(&plain("10.0.0.8:53317", "AB12")));
        agreements.set(phone.addr, &phone.fingerprint, false);
        assert!(!agreements.agreed(&phone));
    }
}
