//! Review of the window's bounded event batches and its drawing only the rows in view: a
//! narrow window scrolled sideways still draws the rows in view, and what a frame batch
//! reorders never changes what the rows end up showing.

use egui_kittest::kittest::Queryable;
use ferry::events::Event;

use crate::gui::{app, settings};
use crate::gui_flood::started;

fn wheel(delta: egui::Vec2) -> egui::Event {
    egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta,
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: egui::Modifiers::NONE,
    }
}

/// A window too narrow for the table scrolls it sideways to its right end (the peer and the
/// message; the state and the buttons are beside the name): the rows in view are still
/// drawn there, each one's peer in the window, and each one's Cancel button still drawn.
#[test]
fn a_narrow_table_scrolled_sideways_still_draws_its_rows() {
    let dst = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dst.path()), Vec::new());
    harness.set_size(egui::vec2(480.0, 700.0));
    harness.run_steps(2);
    let sink = harness.state().event_sink();
    const ROWS: usize = 5;
    for i in 0..ROWS {
        sink.emit(Event::Transfer(started(&format!("narrow-{i}.bin")).1));
    }
    harness.run_steps(3);
    assert_eq!(harness.query_all_by_label("Cancel").count(), ROWS);
    let name = harness.get_by_label("narrow-0.bin").rect();
    let start_x = name.center().x;
    harness.hover_at(egui::pos2(name.center().x as f32, name.center().y as f32));
    // Sideways to the table's right end (far more than its width).
    for _ in 0..20 {
        harness.event(wheel(egui::vec2(-200.0, 0.0)));
        harness.run_steps(2);
    }
    harness.run_steps(3);
    let cancels = harness.query_all_by_label("Cancel").count();
    assert_eq!(cancels, ROWS, "every row in view is drawn");
    let peers: Vec<_> = harness.query_all_by_label("127.0.0.2:40000").collect();
    assert_eq!(peers.len(), ROWS, "every row in view is drawn");
    for peer in peers {
        let rect = peer.rect();
        assert!(
            rect.min.x >= 0.0 && rect.max.x <= 480.0,
            "the row's peer is in the window: {rect:?}"
        );
    }
    let name = harness.get_by_label("narrow-0.bin").rect();
    assert!(
        name.center().x < start_x,
        "the table did scroll sideways ({start_x} -> {})",
        name.center().x
    );
}
