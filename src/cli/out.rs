//! Lines on standard output, for people and scripts, and on standard error, for people. A
//! reader that goes away (`ferry serve | head -3`, `ferry send ... 2>&1 | head -1`) must not
//! crash Ferry: `println!` and `eprintln!` panic when their stream is a closed pipe (Rust
//! ignores `SIGPIPE`), and a panic whose own message cannot be written aborts the process.
//! Ferry must keep ignoring the signal: with its default action, a peer that closes a
//! socket during a vectored write would kill the process. Here a closed stdout is noted
//! ([`gone`]), later lines are dropped, and the long-running commands stop as on Ctrl-C;
//! another write error (a full disk under a redirect) is warned about once, and lines go on
//! being tried. A line for stderr that cannot be written is dropped ([`tell_line`]).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Stdout's reader went away.
static GONE: AtomicBool = AtomicBool::new(false);
/// Another write error was already warned about.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a line break to stdout, flushed (see the module's docs for errors).
pub fn line(text: &str) {
    if gone() {
        return;
    }
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => GONE.store(true, Ordering::SeqCst),
        Err(e) => {
            if !WARNED.swap(true, Ordering::SeqCst) {
                log::warn!("cannot write to standard output: {e}");
            }
        }
    }
}

/// Whether stdout's reader went away (a long-running command then stops).
pub fn gone() -> bool {
    GONE.load(Ordering::SeqCst)
}

/// Writes `text` and a line break to stderr; a failure is ignored (there is nobody left to
/// tell, and stderr's lines are for a person, never what a command is run for).
pub fn tell_line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
