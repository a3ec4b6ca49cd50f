//! Discovery's events for the window's Devices list (kept apart so `events.rs` stays
//! readable): plain copies of the discovery table's rows, so this layer stays below
//! [`crate::discovery`].

use std::net::SocketAddr;
use std::time::Duration;

use super::{Finding, SeenLocalSend};

/// LAN discovery, for the window's Devices list (see [`crate::discovery`]).
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryEvent {
    /// Discovery started: this device is announced under `name`.
    Announcing { name: String },
    /// The devices known now and the doctor's report on the interfaces; sent when either
    /// changed.
    Devices {
        devices: Vec<SeenDevice>,
        doctor: Vec<Finding>,
    },
    /// Discovery is not running: turned off, the server stopped, or it could not start
    /// (`reason`).
    Off { reason: Option<String> },
    /// The reachability check of a typed address: the doctor's findings.
    Checked { target: String, lines: Vec<Finding> },
    /// The LocalSend devices known now (heard, registered or probed); sent when it changed.
    LocalSendDevices(Vec<SeenLocalSend>),
}

/// A device found on the LAN, as the window lists it: a copy of a row of the discovery
/// table, so this layer stays below discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDevice {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    /// Where it was last heard from (a trusted device never heard: its last known address).
    pub addr: Option<SocketAddr>,
    pub udp_port: u16,
    pub trusted: bool,
    /// How it was found: `beacon`, `mdns`, `probe`.
    pub how: Vec<&'static str>,
    pub state: SeenState,
    /// How long ago it was last heard (`None`: never, in this run).
    pub last_seen_ago: Option<Duration>,
}

/// Whether a [`SeenDevice`] can be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenState {
    /// Heard recently and its port answers.
    Ready,
    /// Heard recently; its port is being checked.
    Checking,
    /// Heard recently, but the announced port does not answer.
    PortSilent(u16),
    /// Not heard for a while.
    Stale,
    /// Trusted, but not heard (or it said goodbye).
    Offline,
}
