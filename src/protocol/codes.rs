//! The word-valued fields of Ferry's messages, read leniently: why a side cancels a file
//! (`cancel`'s `code`) and why a receiver says `waiting` (its `for`). A word a newer peer
//! sends that this build does not know never fails a message: it reads as the nearest
//! meaning this build has.

use serde::{Deserialize, Serialize};

/// Why a side cancels a file, on the wire as a short code (`"code": "user"`) beside the
/// free-text `reason`, so the other side can tell a person's cancel from a failure without
/// reading prose. An unknown code (a newer peer's) decodes as [`CancelCode::Other`]; an
/// absent one (an older peer's) as `Other("")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CancelCode {
    /// A person cancelled.
    User,
    /// The file changed or shrank while it was being sent.
    FileChanged,
    /// The file could not be read.
    ReadError,
    /// The program is stopping.
    Stopping,
    /// A code this version does not know.
    Other(String),
}

impl CancelCode {
    pub fn as_str(&self) -> &str {
        match self {
            CancelCode::User => "user",
            CancelCode::FileChanged => "file_changed",
            CancelCode::ReadError => "read_error",
            CancelCode::Stopping => "stopping",
            CancelCode::Other(code) => code,
        }
    }
}

impl Default for CancelCode {
    fn default() -> Self {
        CancelCode::Other(String::new())
    }
}

impl From<String> for CancelCode {
    fn from(code: String) -> Self {
        match code.as_str() {
            "user" => CancelCode::User,
            "file_changed" => CancelCode::FileChanged,
            "read_error" => CancelCode::ReadError,
            "stopping" => CancelCode::Stopping,
            _ => CancelCode::Other(code),
        }
    }
}

impl From<CancelCode> for String {
    fn from(code: CancelCode) -> Self {
        code.as_str().to_owned()
    }
}

/// Why a receiver says `waiting`, so the sender can tell its user something true.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// Its user's answer (and what any reason this build does not know reads as).
    #[default]
    Decision,
    /// Checking, by hash, what it kept of an interrupted upload before it answers.
    Checking,
    /// An earlier connection of the same sender to let go of this folder: a copy cut off
    /// that the receiver has not yet noticed is gone (at most its idle timeout).
    EarlierCopy,
}

impl WaitFor {
    pub fn is_decision(&self) -> bool {
        *self == WaitFor::Decision
    }
}

impl<'de> Deserialize<'de> for WaitFor {
    /// Lenient: a newer receiver's reason this build does not know is a decision.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(match text.as_ref() {
            "checking" => WaitFor::Checking,
            "earlier_copy" => WaitFor::EarlierCopy,
            _ => WaitFor::Decision,
        })
    }
}
