//! The engine the window drives: one thread that takes [`Command`]s from the UI and runs
//! them on the drivers ([`crate::transfer`], [`crate::notes`]), whose [`crate::events`] it
//! passes on, and runs LAN discovery while the server listens ([`DiscoverySetup`]) and LocalSend
//! receiving beside the server ([`LocalSendSetup`]). The CLI drives the same drivers directly.

mod command;
mod discovery;
mod engine;
mod keyring;
mod localsend;
mod probe_runs;
mod seams;
mod speed;
mod upload;
pub use discovery::{DiscoverySetup, config_for};
pub use engine::{Command, Worker};
pub use localsend::{LocalSendSetup, localsend_multicast};
pub(crate) use seams::Seams;

#[cfg(test)]
mod tests;
