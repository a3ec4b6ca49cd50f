//! The window under more than the engine ever sends at once: a long history is drawn only
//! where it can be seen (and can still be scrolled to its end), and a flood of events is
//! taken a frame's share at a time. Fed through the window's own event sink.

use egui_kittest::kittest::Queryable;
use ferry::events::{Direction, Event, Security, TransferEvent, TransferId, next_transfer_id};
use ferry::protocol::Mode;

use crate::gui::{app, settings};

/// A window (its download folder in a temp folder, kept alive by the first) after its
/// first frames, and a sink into its event stream, as the engine's threads report.
fn fed_window() -> (
    tempfile::TempDir,
    egui_kittest::Harness<'static, ferry::app::FerryApp>,
    ferry::events::EventSink,
) {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dst.path()), Vec::new());
    harness.run_steps(2);
    let sink = harness.state().event_sink();
    (dst, harness, sink)
}

/// An incoming transfer's start, and its id.
pub(crate) fn started(name: &str) -> (TransferId, TransferEvent) {
    let id = next_transfer_id();
    let event = TransferEvent::Started {
        id,
        direction: Direction::Incoming,
        peer: ([127, 0, 0, 2], 40_000).into(),
        name: name.to_owned(),
        saved_as: None,
        bytes_total: 1 << 20,
        mode: Mode::Ferry,
        msg: String::new(),
        security: Security::Plain,
    };
    (id, event)
}

/// 2 000 rows: the first ones are drawn, the last ones are not until the table is scrolled
/// to them, and scrolling reaches them (each row not drawn still takes its room).
#[test]
fn a_long_history_draws_the_rows_in_view_and_scrolls_to_its_end() {
    let (_dst, mut harness, sink) = fed_window();
    const ROWS: usize = 2_000;
    for i in 0..ROWS {
        sink.emit(Event::Transfer(started(&format!("history-{i:04}.bin")).1));
        if i % 1_000 == 999 {
            harness.run_steps(1); // room in the channel
        }
    }
    harness.run_steps(3);
    assert_eq!(harness.state().server.rows.len(), ROWS);
    assert!(harness.query_by_label("history-0000.bin").is_some());
    assert!(
        harness.query_by_label("history-1999.bin").is_none(),
        "a row far below the view is not laid out"
    );
    // Scroll the table down, a wheel at a time, until its last row shows.
    let first = harness.get_by_label("history-0000.bin").rect().center();
    harness
        .input_mut()
        .events
        .push(egui::Event::PointerMoved(egui::pos2(first.x, first.y)));
    for _ in 0..400 {
        if harness.query_by_label("history-1999.bin").is_some() {
            break;
        }
        harness.input_mut().events.push(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -2_000.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
            modifiers: egui::Modifiers::NONE,
        });
        harness.run_steps(1);
    }
    assert!(
        harness.query_by_label("history-1999.bin").is_some(),
        "the table scrolls to its last row"
    );
    assert!(harness.query_by_label("history-0000.bin").is_none());
}

/// Frames go on while a producer floods the window with one transfer's progress, and the row
/// ends at the latest figure. (That one frame takes at most its share is `app::batch`'s unit
/// test: whether a consumer here ever finds the channel empty depends on the scheduler.)
#[test]
fn frames_go_on_through_a_flood_of_progress_and_the_row_shows_the_latest() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (_dst, mut harness, sink) = fed_window();
    let (id, event) = started("flooded.bin");
    sink.emit(Event::Transfer(event));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (sink, stop) = (sink.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                sink.transfer(TransferEvent::Progress {
                    id,
                    bytes_done: n % (1 << 20),
                });
            }
        })
    };
    // Frames go on while the producer floods: each one returns.
    harness.run_steps(20);
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    // Progress is lossy when the channel is full (a later figure supersedes it): let the
    // window take what the flood left before the last figure is sent.
    harness.run_steps(3);
    sink.transfer(TransferEvent::Progress {
        id,
        bytes_done: 777_777,
    });
    harness.run_steps(3);
    let row = harness
        .state()
        .server
        .rows
        .iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(
        row.bytes_done, 777_777,
        "the latest figure, after every other"
    );
}

/// "Clear finished" takes the finished rows out of the table and forgets the room each
/// took when drawn (one small entry per row, which a window running for weeks would
/// otherwise keep for every row it ever showed); a row still running stays, and keeps its.
#[test]
fn clearing_finished_rows_forgets_what_they_took() {
    let (_dst, mut harness, sink) = fed_window();
    let (running, event) = started("still-running.bin");
    sink.emit(Event::Transfer(event));
    for i in 0..5 {
        let (id, event) = started(&format!("done-{i:02}.bin"));
        sink.emit(Event::Transfer(event));
        sink.emit(Event::Transfer(TransferEvent::Finished {
            id,
            verified: true,
            saved_as: None,
            path: None,
        }));
    }
    harness.run_steps(3);
    assert!(
        harness.query_by_label("done-04.bin").is_some(),
        "every row in view"
    );
    let remembered = |h: &egui_kittest::Harness<'_, ferry::app::FerryApp>| {
        h.ctx.data(|d| d.count::<egui::Vec2>())
    };
    let before = remembered(&harness);
    harness.get_by_label("Clear finished").click();
    harness.run_steps(3);
    assert!(harness.query_by_label("done-00.bin").is_none());
    assert!(harness.query_by_label("still-running.bin").is_some());
    let rows = &harness.state().server.rows;
    assert_eq!((rows.len(), rows[0].id), (1, running));
    let after = remembered(&harness);
    assert!(
        before >= after + 5,
        "{before} remembered sizes before, {after} after"
    );
}
