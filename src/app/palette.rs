//! Every colour the window uses, named for what it means, so a state looks the same in every
//! panel and a theme change happens in one place. The window uses egui's default visuals; these
//! tones read on both its light and dark backgrounds, so there is one set.

use egui::Color32;

/// Failures, refusals and input errors.
pub const ERROR: Color32 = Color32::from_rgb(0xd0, 0x40, 0x40);
/// Success: listening, sent, verified.
pub const OK: Color32 = Color32::from_rgb(0x2e, 0xa0, 0x43);
/// Needs attention but is not a failure: waiting, unverified, long notes.
pub const WARN: Color32 = Color32::from_rgb(0xc0, 0x90, 0x20);
/// Something that came in (an incoming note).
pub const INCOMING: Color32 = Color32::from_rgb(0x30, 0x80, 0xd0);
/// Quiet: outgoing notes, cancelled rows.
pub const MUTED: Color32 = Color32::GRAY;
/// "Not encrypted": a plain peer's note or row, which anyone on the LAN could read or forge.
pub const NOT_ENCRYPTED: Color32 = Color32::from_rgb(0xe0, 0x60, 0x00);
