//! The LocalSend side's events (kept apart so `events.rs` stays readable): whether the
//! window's LocalSend receiver runs, the LocalSend devices it knows, as plain copies so
//! this layer stays below [`crate::localsend`], and why a device refused a send over its PIN.

use std::net::SocketAddr;

/// Whether the LocalSend receiver runs (see [`crate::localsend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSendStatus {
    /// Listening for LocalSend devices on `addr` (HTTPS) and, when it listens on every
    /// interface, on `addr_v6` too; known to them by `fingerprint`; `discovery_port` is the
    /// UDP port announcements are heard on, if any.
    On {
        addr: SocketAddr,
        addr_v6: Option<SocketAddr>,
        fingerprint: String,
        discovery_port: Option<u16>,
    },
    /// Not running: turned off or the server stopped (`None`), or it could not start.
    Off { reason: Option<String> },
}

/// How a LocalSend device speaks: HTTPS (LocalSend's default: its certificate proves its
/// fingerprint) or plain HTTP (its owner turned Encryption off: anyone on the network can
/// read what it is sent, and its "fingerprint" is only a random id it claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalSendProtocol {
    #[default]
    Https,
    Http,
}

impl LocalSendProtocol {
    /// The protocol a device announced (`"http"`; anything else, or nothing, is HTTPS).
    pub fn announced(protocol: Option<&str>) -> Self {
        match protocol {
            Some("http") => Self::Http,
            _ => Self::Https,
        }
    }

    /// Whether a device known to speak `self` may be taken to speak `claimed` on the word of
    /// whoever claims its fingerprint: anything but HTTPS turning into plain HTTP. Anyone can
    /// claim any fingerprint, and a LocalSend whose encryption is switched off has an id of
    /// its own; the other way is no risk (HTTPS pins the certificate).
    pub fn may_become(self, claimed: Self) -> bool {
        !(self == Self::Https && claimed == Self::Http)
    }

    /// Whether what goes to (or comes from) such a device is encrypted: over HTTPS only.
    pub fn is_encrypted(self) -> bool {
        self == Self::Https
    }

    /// The word LocalSend uses: `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
}

/// A LocalSend device, as the window lists it (a copy of the LocalSend driver's row, so
/// this layer stays below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenLocalSend {
    /// Its alias (hostile text: escape before showing).
    pub alias: String,
    /// `mobile`, `desktop`, `web`, `headless` or `server` (hostile text too).
    pub device_type: String,
    /// SHA-256 of its certificate, upper-case hex: pinned when we send to it (over plain
    /// HTTP only an id it claims).
    pub fingerprint: String,
    /// Its HTTPS (or HTTP) address (the IPv4 one where it has one).
    pub addr: SocketAddr,
    /// Its IPv6 address too, when it was heard over IPv6 as well.
    pub addr_v6: Option<SocketAddr>,
    /// HTTPS, or plain HTTP (encryption turned off on it).
    pub protocol: LocalSendProtocol,
    /// How it was found: `multicast`, `register`, `answer`, `probe`.
    pub how: Vec<&'static str>,
    /// Whether it showed a certificate with its fingerprint (not only claimed it).
    pub proven: bool,
    /// When it was last heard (announced, registered, answered, swept or probed).
    pub last_seen: std::time::Instant,
}

/// Why a LocalSend receiver refused a send over its PIN (sender side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinProblem {
    /// 401 without a PIN: send again with one.
    Required,
    /// 401 with a PIN: it was wrong.
    Wrong,
    /// 429: too many wrong PINs from this address.
    TooManyTries,
}
