//! The egui window.

/// Opens the window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("the window is not implemented yet; use a command, see --help")
}
