//! Ferry's `protocol` module, compiled on its own for the fuzz targets.
//!
//! `#[path]` includes the library's own `src/protocol/` files, so the targets exercise exactly
//! the code `ferry::protocol` ships, through the same public API, without building the GUI
//! crates `ferry` depends on. `protocol` is pure (no sockets, clocks, threads, nor `crate::`
//! paths), which is what makes this possible; keep it that way.

#[path = "../../src/protocol/mod.rs"]
pub mod protocol;
