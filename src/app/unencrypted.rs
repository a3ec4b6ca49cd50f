//! Sending to a LocalSend device whose encryption is turned off (it speaks plain HTTP):
//! never silent. The Client tab and the Notes panel show, for such a destination, what that
//! means and a "Send unencrypted to this device" checkbox; Upload and Send refuse with the
//! explanation until it is ticked. The agreement is per device address and lasts while the
//! window runs (it is not saved).

use std::net::SocketAddr;

use egui::{RichText, Ui};

use super::Action;
use super::i18n::{T, Tr};
use super::palette;

/// A destination that is a LocalSend device with encryption off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionOff {
    pub addr: SocketAddr,
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
            .then_some(Action::AgreeUnencrypted {
                addr: self.addr,
                agreed,
            })
    }

    /// Why a send to it is refused, or `None` when the user agreed.
    pub fn refusal(&self, tr: Tr) -> Option<String> {
        (!self.agreed).then(|| tr.fill(T::EncryptionOffNotSent, &[&self.alias]))
    }
}
