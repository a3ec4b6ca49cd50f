//! Every colour the window uses, named for what it means, so a state looks the same in every
//! panel and a theme change happens in one place. The window uses egui's default visuals; the
//! state tones read on both its light and dark backgrounds, so there is one set of them. The
//! few tones that must stand out from the page itself (a progress bar's empty track, a
//! field's border) depend on the theme and are picked by [`Shade`].

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

/// The tones that must differ from the page (egui's panel fill: 248 grey light, 27 dark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shade {
    /// The part of a progress bar not yet done (egui's own is white on a 248 grey page).
    pub progress_track: Color32,
    /// The outline of a field that must be found at a glance (egui draws none in dark mode).
    pub field_border: Color32,
}

impl Shade {
    /// The tones for the theme `visuals` belong to.
    pub fn of(visuals: &egui::Visuals) -> Self {
        if visuals.dark_mode {
            Shade {
                progress_track: Color32::from_gray(10),
                field_border: Color32::from_gray(110),
            }
        } else {
            Shade {
                progress_track: Color32::from_gray(210),
                field_border: Color32::from_gray(150),
            }
        }
    }
}

/// Adds `bar` with its empty track in [`Shade::progress_track`] (egui paints the track in
/// `extreme_bg_color`, so only this bar's copy of the visuals changes).
pub fn progress_bar(ui: &mut egui::Ui, bar: egui::ProgressBar) -> egui::Response {
    ui.scope(|ui| {
        ui.visuals_mut().extreme_bg_color = Shade::of(ui.visuals()).progress_track;
        ui.add(bar)
    })
    .inner
}
