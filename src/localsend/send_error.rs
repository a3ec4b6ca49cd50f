//! Why a LocalSend send did not happen, in the words the user is shown, and the kind of
//! failure each is (for the rows and the exit status).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::LocalSendError;
use crate::events::{Failure, FailureKind, PinProblem};

/// Why a LocalSend send did not happen (each text is what the user is shown).
#[derive(Debug, thiserror::Error)]
pub enum LocalSendSendError {
    #[error(
        "the LocalSend device {} has encryption turned off (it speaks plain HTTP): anyone on \
         the network could read what is sent and it cannot prove who it is",
        crate::protocol::escape_line(.alias)
    )]
    EncryptionOff { alias: String },
    #[error(
        "the LocalSend device {} was announced with encryption turned off, but {addr} \
         answers in TLS: nothing was sent (the announcement may not have come from the \
         device there); look for the device again",
        crate::protocol::escape_line(.alias)
    )]
    AnswersTls { alias: String, addr: SocketAddr },
    #[error("the device wants none of these files (204)")]
    NothingWanted,
    #[error("the device asks for a PIN (401): send again with its PIN")]
    PinRequired,
    #[error("the device refused the PIN (401)")]
    WrongPin,
    #[error("declined by the device (403)")]
    Declined,
    #[error("the device is busy with another transfer (409): try again when it is done")]
    Busy,
    #[error("too many wrong PINs: the device refuses this address for a while (429)")]
    TooManyPinTries,
    #[error("the device answered {status}: {}", crate::protocol::escape_line(.message))]
    Status { status: u16, message: String },
    #[error("the device's answer is not LocalSend's: {0}")]
    BadAnswer(String),
    #[error("cannot reach the LocalSend device at {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: LocalSendError,
    },
    #[error("cannot read {}: {source}", .path.display())]
    LocalFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

impl LocalSendSendError {
    pub(super) fn failure(&self) -> Failure {
        let kind = match self {
            Self::NothingWanted | Self::Declined => FailureKind::Declined,
            Self::PinRequired => FailureKind::Pin(PinProblem::Required),
            Self::WrongPin => FailureKind::Pin(PinProblem::Wrong),
            Self::TooManyPinTries => FailureKind::Pin(PinProblem::TooManyTries),
            Self::Busy | Self::Status { .. } => FailureKind::ReceiverFailed,
            Self::BadAnswer(_) => FailureKind::Protocol,
            Self::Unreachable { .. } => FailureKind::Unreachable,
            Self::LocalFile { .. } => FailureKind::LocalFile,
            Self::Cancelled | Self::Runtime(_) => FailureKind::NotStarted,
            Self::EncryptionOff { .. } | Self::AnswersTls { .. } => FailureKind::Security,
        };
        Failure::new(kind, self.to_string())
    }
}
