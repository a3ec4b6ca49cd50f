//! The commands the window sends the engine ([`super::Worker::send`]), apart from the engine
//! that carries them out so both stay short enough to read.

use std::path::PathBuf;

use super::DiscoverySetup;
use super::localsend::LocalSendSetup;
use crate::events::TransferId;
use crate::localsend::{LocalSendBatch, LocalSendTarget};
use crate::notes::NotesConfig;
use crate::transfer::{
    AcceptPolicy, Decision, OutgoingFile, OutgoingItem, SendOptions, ServerConfig,
};

/// What the window asks the engine to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Create the folder if needed and listen; answered by `Listening` or `StartFailed`.
    StartServer(Box<ServerConfig>),
    /// Stop listening; in-flight uploads are cancelled and leave no file.
    StopServer,
    /// Upload files over one connection; every file gets `Finished` or `Failed`.
    Send {
        opts: Box<SendOptions>,
        files: Vec<OutgoingFile>,
    },
    /// Upload files and folders over one connection (`transfer::send_items`): a folder is one
    /// offer, accepted or declined whole; every file of every item gets `Finished` or `Failed`
    /// under its own id, so the window gathers a folder's files under one row itself.
    SendItems {
        opts: Box<SendOptions>,
        items: Vec<OutgoingItem>,
    },
    /// Run a speed test to `opts.to`; answered by `Event::Speed`.
    TestSpeed(Box<SendOptions>),
    /// Cancel a transfer: an outgoing one (that file and those after it on the same
    /// connection) or an incoming one (the sender is told; nothing is kept).
    Cancel(TransferId),
    /// Answer a `ServerEvent::OfferPending`.
    Decide { offer_id: u64, accept: bool },
    /// Answer a `ServerEvent::OfferPending` with any decision ("Accept and trust").
    Answer { offer_id: u64, decision: Decision },
    /// Whose offers are taken without asking, from now on.
    SetPolicy(AcceptPolicy),
    /// (Re)bind the notes socket; answered by `NoteEvent::Listening` or `NoteEvent::Error`.
    StartNotes(NotesConfig),
    /// Send a note from the notes socket; answered by `NoteEvent::Sent` or `NoteEvent::Error`.
    /// `key`: seal to this trusted device's key whatever its address (a device clicked in the
    /// Devices list may have moved since its address was saved); `None` seals to a trusted
    /// device's saved or reply address and sends plain otherwise (`Seal::Auto`).
    SendNote {
        to: String,
        text: String,
        key: Option<[u8; 32]>,
    },
    /// Show a folder in the system's file manager.
    OpenFolder(PathBuf),
    /// Run discovery while the server listens (`Some`), or not (`None`); applies at once.
    SetDiscovery(Option<DiscoverySetup>),
    /// Announce and ask again now (the Refresh button).
    RefreshDevices,
    /// The doctor's reachability check of a typed `HOST:PORT`; answered by
    /// `DiscoveryEvent::Checked`.
    CheckAddress(String),
    /// Load this device's identity and trusted devices and show them (`KeyringEvent`s).
    ShowKeyring,
    /// Rename this device (kept in the config folder, announced from now on).
    RenameDevice(String),
    /// Rename a trusted device.
    RenameTrusted { old: String, new: String },
    /// Forget a trusted device: its next upload is first contact again.
    ForgetTrusted(String),
    /// Offer a fresh pairing code on the server; answered by `ServerEvent::Pairing`.
    StartPairing,
    /// Withdraw the pairing code.
    StopPairing,
    /// LocalSend receiving's setup (on or off, port, favourites to probe); a running
    /// receiver is started again with it. Sent before `StartServer`.
    SetLocalSend(LocalSendSetup),
    /// Upload files to a LocalSend device, each under its name in the batch (a folder's
    /// files by their relative paths); every file gets `Finished`, `Failed` or
    /// `Cancelled` (`Cancel` with any of their ids stops the send).
    SendLocalSend {
        to: LocalSendTarget,
        batch: LocalSendBatch,
        /// The PIN the device asked for (after a `FailureKind::Pin`), if any.
        pin: Option<String>,
        /// The user agreed to send unencrypted to a device with encryption off (plain
        /// HTTP); without it such a device gets nothing (`FailureKind::Security`).
        unencrypted: bool,
    },
    /// Send a text message to a LocalSend device, with the PIN it asked for (after a
    /// `NoteEvent::PinNeeded`) if any; answered by `NoteEvent::Sent`, `PinNeeded` or `Error`.
    SendLocalSendText {
        to: LocalSendTarget,
        text: String,
        pin: Option<String>,
        /// As for `SendLocalSend`.
        unencrypted: bool,
    },
}
