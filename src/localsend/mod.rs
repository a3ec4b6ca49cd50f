//! Speaking LocalSend (protocol v2): phones and desktops running LocalSend can send files
//! and text messages to Ferry, and Ferry finds them on the LAN.
//!
//! LocalSend is a REST API over HTTPS with self-signed certificates (a device is known by
//! its certificate's SHA-256, the fingerprint) and discovery by UDP multicast on
//! 224.0.0.167:53317 and, as LocalSend's newer core does, `[ff12::fd3a:e420]:53317`:
//! - `POST /api/localsend/v2/register`: a device introduces itself; we answer with ours.
//! - `POST /api/localsend/v2/prepare-upload[?pin=]`: `{info, files{id: {id, fileName, size,
//!   fileType, sha256?, preview?}}}`, answered `{sessionId, files{id: token}}` once accepted,
//!   204 (nothing to upload: a text message), 401 (PIN), 403 (declined), 409 (another
//!   session is active: one at a time), 429 (too many wrong PINs).
//! - `POST /api/localsend/v2/upload?sessionId&fileId&token`: one file's raw bytes (LocalSend
//!   1.18 streams them chunked, without a length), from the address that prepared.
//! - `POST /api/localsend/v2/cancel?sessionId`.
//!
//! Everything that arrives goes through Ferry's receiving machinery: the accept policy and
//! its prompt ([`crate::events::ServerEvent::OfferPending`]), the one download folder handle
//! ([`crate::transfer::Downloads`]: sanitised names, no overwrite, `.ferry.part` until
//! complete, the free-space reservation) and the usual transfer events, with
//! [`crate::events::Security::LocalSend`] naming the device.
//!
//! The HTTP stack is hyper on a small tokio runtime on a thread of its own; TLS is rustls
//! (aws-lc, through `aws-lc-rs`, like the rest of Ferry's crypto). Files:
//! - [`wire`]: the JSON bodies and their validation (pure).
//! - [`identity`]: this install's certificate and the fingerprint rule.
//! - [`tls`]: the TLS configurations (any client certificate; pinned server certificates).
//! - `server`: starting and stopping the receiver, the routes, register.
//! - `listener`: the HTTPS listeners (IPv4, and IPv6 beside it), connection limits, TLS.
//! - `prepare`: prepare-upload: PIN, one session, validation, asking the user.
//! - `session`: the one session at a time: its slot, its files, how it ends.
//! - `upload`: one file's body onto the disk; cancel.
//! - `folder`: a folder sent as files named by relative paths (empty folders cannot be).
//! - `disk`: a session's folders, and the writer that keeps file I/O off the runtime.
//! - `discovery`: announcing, answering announcements (IPv4 and IPv6).
//! - `devices`: the table of devices heard, one per fingerprint.
//! - `probe`: `POST /register` to one address, over HTTPS or, if it speaks no TLS, plain HTTP.
//! - [`sweep`]: `POST /register` to every host of our private /24s (LocalSend's CLI never
//!   answers an announcement over UDP, so this is how a running one is found).
//! - `client`: HTTPS (or, to a device with encryption off, plain HTTP) requests to other
//!   devices (register, prepare-upload, upload, cancel).
//! - [`send`]: sending files and text messages to a LocalSend device; `body`: a file as
//!   a streamed upload body.

mod body;
mod budget;
mod client;
mod devices;
mod discovery;
mod disk;
mod folder;
mod groups;
pub mod identity;
mod listener;
mod prepare;
mod probe;
pub mod send;
mod send_error;
mod server;
mod session;
pub mod sweep;
pub mod tls;
mod upload;
pub mod wire;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use crate::events::LocalSendProtocol;
pub use devices::{LocalSendDevice, add_probed};
pub use discovery::{Hears, MulticastConfig, RELIST_EVERY, Relist};
pub use folder::LocalSendBatch;
pub use identity::CertIdentity;
pub use send::{LocalSendSendError, LocalSendSender, LocalSendTarget};
pub use server::{LocalSendConfig, LocalSendServer};
pub use sweep::{SweepReport, SweepSettings, subnet_hosts};

/// LocalSend's default port, TCP (HTTPS) and UDP (multicast).
pub const LOCALSEND_PORT: u16 = 53_317;
/// LocalSend's multicast group.
pub const LOCALSEND_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 167);
/// LocalSend's IPv6 multicast group (its newer core announces there too): transient,
/// link-local scope.
pub const LOCALSEND_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff12, 0, 0, 0, 0, 0, 0xfd3a, 0xe420);
/// Longest fingerprint (or, for a plain-HTTP device, id) a device may claim.
pub const MAX_FINGERPRINT_CHARS: usize = 128;

/// A fingerprint (or, for a plain-HTTP device, id) as a device claims it, upper-cased, or
/// `None` when it cannot be one: empty, longer than [`MAX_FINGERPRINT_CHARS`], or with
/// anything but printable ASCII. LocalSend's are hex (a certificate's SHA-256) or a random
/// id; a claim is shown in terminals and the window, and over plain HTTP nothing proves it.
pub(crate) fn claimed_fingerprint(claim: &str) -> Option<String> {
    let claim = claim.trim();
    let valid = !claim.is_empty()
        && claim.len() <= MAX_FINGERPRINT_CHARS
        && claim.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| claim.to_ascii_uppercase())
}
/// Wrong PINs one address may send before it gets 429 (for [`PIN_LOCKOUT_SECS`]).
pub const MAX_PIN_TRIES: u32 = 3;
/// How long an address that used up its PIN tries is refused.
pub const PIN_LOCKOUT_SECS: u64 = 300;

/// What can go wrong setting LocalSend up or talking to a device.
#[derive(Debug, thiserror::Error)]
pub enum LocalSendError {
    #[error("LocalSend certificate: {0}")]
    Identity(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The TLS hello was answered with something that is no TLS (a plain-HTTP server's text).
    #[error(
        "it does not speak HTTPS (it answered in plain text: perhaps its encryption was \
         turned off; look for it again): {0}"
    )]
    NotTls(String),
    /// No HTTP answer over plain HTTP: a TLS alert, or the connection closed (a TLS server
    /// does either; so does a device that stopped mid-request).
    #[error(
        "it does not answer plain HTTP (it sent no HTTP answer: perhaps its encryption was \
         turned back on; look for it again): {0}"
    )]
    NotPlainHttp(String),
    #[error("LocalSend port {port} is in use (another LocalSend or Ferry?)")]
    PortInUse { port: u16 },
    #[error("cannot start LocalSend receiving: {0}")]
    Start(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("timed out")]
    Timeout,
}
