//! The window's "Test speed": the speed test ([`crate::transfer::probe`]) on a thread of its
//! own, its figures (or why there are none) reported as [`Event::Speed`].

use std::time::Duration;

use super::Seams;
use crate::events::{Event, EventSink};
use crate::transfer::{SendOptions, probe};

/// How long the window's speed test sends.
const TEST_TIME: Duration = Duration::from_secs(3);

/// Starts a speed test to `opts.to`. The thread is not joined: it ends on its own within
/// the test's timeouts, and a window closed meanwhile simply drops its report.
pub(super) fn start(seams: &Seams, sink: &EventSink, opts: SendOptions) {
    let to = opts.to.clone();
    let thread_sink = sink.clone();
    let spawned = (seams.spawner)(
        "ferry-speed",
        Box::new(move || {
            let outcome = probe(&opts, TEST_TIME).map_err(|e| e.to_string());
            thread_sink.emit(Event::Speed {
                to: opts.to.clone(),
                outcome,
            });
        }),
    );
    if let Err(e) = spawned {
        sink.emit(Event::Speed {
            to,
            outcome: Err(format!("cannot start the speed test: {e}")),
        });
    }
}
