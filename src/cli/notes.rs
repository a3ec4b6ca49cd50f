//! `ferry note`, `ferry listen` and `ferry chat`.

use std::process::ExitCode;

use super::{ChatArgs, ListenArgs, NoteArgs};

pub fn note(_args: NoteArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("notes are not implemented yet")
}

pub fn listen(_args: ListenArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("notes are not implemented yet")
}

pub fn chat(_args: ChatArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("notes are not implemented yet")
}
