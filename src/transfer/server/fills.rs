//! Where a pump's fills go ([`Fills`]): a buffer of the pump's, written out after each
//! fill ([`Through`]), or the buffer of a file written directly, filled in place
//! ([`InPlace`]).

use std::io::Write;

use crate::transfer::paced::Paced;

/// Where a pump's fills go.
pub(crate) trait Fills {
    /// Room for the next fill (never empty); `None` when this target takes no more (a
    /// file written directly that went on through the page cache): pick another.
    fn room(&mut self) -> Option<&mut [u8]>;
    /// The first `n` bytes of the room were filled: pass them on.
    fn took(&mut self, n: usize) -> std::io::Result<()>;
    /// Puts everything passed on on the file (see [`Write::flush`]).
    fn flush(&mut self) -> std::io::Result<()>;
}

/// A buffer of the pump's, written to `out` after each fill.
pub(crate) struct Through<'a, W> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) out: &'a mut W,
}

impl<W: Write> Fills for Through<'_, W> {
    fn room(&mut self) -> Option<&mut [u8]> {
        Some(self.buf)
    }

    fn took(&mut self, n: usize) -> std::io::Result<()> {
        self.out.write_all(&self.buf[..n])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A file written directly, filled in its writer's own buffer (no copy: see
/// [`Paced::room`]).
pub(crate) struct InPlace<'p, 'f>(pub(crate) &'p mut Paced<'f>);

impl Fills for InPlace<'_, '_> {
    fn room(&mut self) -> Option<&mut [u8]> {
        self.0.room()
    }

    fn took(&mut self, n: usize) -> std::io::Result<()> {
        self.0.took(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
