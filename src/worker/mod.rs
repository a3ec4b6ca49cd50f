//! The engine the window drives: one thread that takes [`Command`]s from the UI and runs
//! them on the drivers ([`crate::transfer`], [`crate::notes`]), whose [`crate::events`] it
//! passes on. The CLI drives the same drivers directly.

mod engine;
pub use engine::{Command, Worker};

#[cfg(test)]
mod tests;
