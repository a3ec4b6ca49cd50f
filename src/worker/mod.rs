//! The engine the window drives: one thread that takes [`Command`]s from the UI and runs
//! them on the drivers ([`crate::transfer`], [`crate::notes`]), whose [`crate::events`] it
//! passes on, and runs LAN discovery while the server listens ([`DiscoverySetup`]). The CLI drives the same drivers directly.

mod discovery;
mod engine;
mod keyring;
mod seams;
mod speed;
pub use discovery::{DiscoverySetup, config_for};
pub use engine::{Command, Worker};
pub(crate) use seams::Seams;

#[cfg(test)]
mod tests;
