//! Ferry: LAN file transfer and quick notes, wire-compatible with the classic Python
//! upload/chat teaching example.
//!
//! Layers, from the wire up (see README.md for the picture):
//! - [`protocol`]: pure encoding and decoding; its module doc is the wire specification.
//! - [`transfer`]: TCP uploads (server and client) on blocking sockets and worker threads.
//! - [`notes`]: UDP notes.
//! - [`worker`]: the events the engines emit, the channel they travel on, and the engine
//!   thread the window drives with commands.
//! - [`app`]: the egui window; [`cli`]: the headless commands. `main.rs` picks one.
//! - [`secure`]: device identity, pairing codes, the encrypted channel and sealed notes.
//! - [`defaults`]: the port, timeouts and download folder both faces start from.

#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod defaults;
pub mod notes;
pub mod protocol;
pub mod secure;
pub mod transfer;
pub mod worker;
