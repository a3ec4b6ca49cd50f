//! Ferry: LAN file transfer and quick notes, wire-compatible with the classic Python
//! upload/chat teaching example.
//!
//! The crate is layered; each layer uses only the layers below it (a test,
//! `tests/it/layers.rs`, fails on an upward `use`):
//!
//! ```text
//!   app (egui window)        cli (headless commands)      two sibling faces
//!          \                   /
//!           worker                                        the window's engine thread
//!              |
//!   transfer (TCP)    notes (UDP)    discovery (LAN)      drivers: sockets, files, threads
//!         |        \   /     |
//!         |        secure    |                            identity, pairing, encrypted
//!         |          |       |                            channel over any Read + Write
//!      events        |    events                          typed events and outcomes
//!          \         |     /
//!              protocol                                   pure: wire format, names, limits,
//!                                                         session state machines
//! ```
//!
//! - [`protocol`]: pure encoding and decoding; its module doc is the wire specification.
//! - [`events`]: what the drivers report (typed events, the channel they travel on).
//! - [`transfer`]: TCP uploads (server and client) on blocking sockets and worker threads.
//! - [`notes`]: UDP notes.
//! - [`discovery`]: finding devices on the LAN (beacons, probes, one device table) and the
//!   checks behind `ferry doctor`.
//! - [`worker`]: the engine thread the window drives with commands.
//! - [`app`]: the egui window; [`cli`]: the headless commands. `main.rs` picks one.
//! - [`defaults`]: the port, timeouts and download folder both faces start from (a leaf
//!   every layer may read).
//! - [`secure`]: device identity, pairing codes, the encrypted channel and sealed notes.
//! - [`localsend`]: receiving from, sending to and finding LocalSend devices: a driver
//!   beside `transfer`, used by `worker` and the faces.

#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod defaults;
pub mod discovery;
pub mod events;
pub mod localsend;
pub mod notes;
pub mod protocol;
pub mod secure;
pub mod transfer;
pub mod worker;
