//! A third fresh-eyes look at the real window (review 21), in English and Chinese:
//! - a cell cut to its column (a failure's reason, the sender's message) says its whole text
//!   on hover once (egui's own "show the elided text" tooltip and Ferry's explicit one both
//!   showed, two identical boxes stacked under the pointer);
//! - the Devices table's kind of device and how it was found are in the window's language;
//! - a message typed for files to a LocalSend device (which carries none) is said not sent;
//! - a server setting greyed out while listening says why on hover;
//! - the window does not list its own LocalSend receiver (a favourite on this machine);
//! - a favourite the window probes lists the window where its LocalSend receiver listens.

use std::path::PathBuf;
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, NoPicker, RowState, Settings, Tab, ThemeChoice, TransferRow};
use ferry::events::{Failure, FailureKind, next_transfer_id};

use crate::gui::settings;

/// A reason long enough to be cut in the State column at any window size.
const LONG_REASON: &str = "cannot connect to 127.0.0.1:9999: Connection refused (os error 111), \
                           and then some more words so that the state cell has to cut it";

/// The window at its first size (1180x720) with `settings`, the Notes panel closed.
fn window(settings: Settings) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(egui::vec2(1180.0, 720.0))
        .allow_missing_glyphs()
        .build_eframe(move |cc| FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).unwrap())
}

/// A Client tab in `lang` with `row` in its table.
fn client_with(dst: &std::path::Path, lang: Lang, row: TransferRow) -> Harness<'static, FerryApp> {
    let mut harness = window(Settings {
        lang: Some(lang),
        theme: ThemeChoice::Light,
        ..settings(dst)
    });
    harness.state_mut().tab = Tab::Client;
    harness.state_mut().client.rows.push(row);
    harness.run_steps(4);
    harness
}

/// Hovers the widget labelled `text` (the cut cell: its accessible label is the whole text)
/// until the tooltip shows, and counts the nodes that say `text`: the cell and its tooltips.
fn nodes_saying_after_hover(harness: &mut Harness<'static, FerryApp>, text: &str) -> usize {
    let cells = harness.get_all_by_label(text).count();
    assert_eq!(
        cells, 1,
        "the cell saying {text:?} is not shown once before the hover"
    );
    harness.get_by_label(text).hover();
    // Tooltips show after egui's hover delay: step the frames (no sleep) until one is up.
    for _ in 0..100 {
        harness.step();
        if harness.get_all_by_label(text).count() > 1 {
            break;
        }
    }
    harness.run_steps(4);
    harness.get_all_by_label(text).count()
}

#[test]
fn a_cut_failure_reason_shows_one_tooltip_in_both_languages() {
    for (lang, kind) in [
        (Lang::En, "failed: cannot connect"),
        (Lang::ZhCn, "失败：无法连接"),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from("a.txt"), 6);
        row.state = RowState::Failed(Failure::new(FailureKind::Unreachable, LONG_REASON));
        let mut harness = client_with(dst.path(), lang, row);
        let state = format!("{kind} ({LONG_REASON})");
        let shown = nodes_saying_after_hover(&mut harness, &state);
        assert_eq!(
            shown,
            2,
            "{lang:?}: hovering the cut state shows {} tooltip(s), not one",
            shown - 1
        );
    }
}

#[test]
fn a_cut_message_shows_one_tooltip() {
    let dst = tempfile::tempdir().unwrap();
    let message =
        "这是一条很长的中文消息，用来测试表格里的文字是否会被截断或者重叠在一起，再多一些字";
    let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from("a.txt"), 6);
    row.state = RowState::Verified;
    row.bytes_done = 6;
    row.msg = message.into();
    let mut harness = client_with(dst.path(), Lang::ZhCn, row);
    let shown = nodes_saying_after_hover(&mut harness, message);
    assert_eq!(
        shown,
        2,
        "hovering the cut message shows {} tooltip(s), not one",
        shown - 1
    );
}

/// A Devices table in Chinese: its kind of device and how it was found are words of the
/// window's language, not the engine's English tags ("headless", "multicast+answer").
#[test]
fn the_devices_kind_and_how_found_are_in_chinese_in_the_chinese_window() {
    use std::net::SocketAddr;
    use std::time::Duration;

    use ferry::events::{LocalSendProtocol, SeenDevice, SeenLocalSend, SeenState};

    let dst = tempfile::tempdir().unwrap();
    let mut harness = window(Settings {
        lang: Some(Lang::ZhCn),
        ..settings(dst.path())
    });
    harness.state_mut().tab = Tab::Client;
    let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
    harness.state_mut().devices.devices = vec![SeenDevice {
        id: "d1".into(),
        name: "书房的电脑".into(),
        fingerprint: "apple banana cherry delta echo fox".into(),
        addr: Some(addr("10.0.0.5:8080")),
        udp_port: 8080,
        trusted: false,
        how: vec!["beacon", "mdns"],
        state: SeenState::Ready,
        last_seen_ago: Some(Duration::from_secs(2)),
    }];
    harness.state_mut().devices.localsend = vec![SeenLocalSend {
        alias: "手机".into(),
        device_type: "headless".into(),
        fingerprint: "AB12".into(),
        addr: addr("10.0.0.7:53317"),
        addr_v6: None,
        protocol: LocalSendProtocol::Https,
        how: vec!["multicast", "answer"],
        proven: true,
        last_seen: std::time::Instant::now(),
    }];
    harness.run_steps(4);
    for english in ["beacon+mdns", "headless", "multicast+answer"] {
        assert!(
            harness.query_by_label(english).is_none(),
            "the Chinese window says {english:?} in the Devices table"
        );
    }
    for chinese in ["信标+mDNS", "无界面", "组播+应答"] {
        harness.get_by_label(chinese);
    }
}

/// The Message field typed before an upload to a LocalSend device: LocalSend carries no
/// message with files, so the receiver never sees it. The window says so instead of listing
/// the message on the rows as if it went with the files; the files still go.
#[test]
fn a_message_for_files_to_a_localsend_device_is_said_not_sent() {
    use std::time::Instant;

    use crate::gui::{app, choose_localsend_device, pick_and_upload, run_until};
    use crate::gui_localsend::{localsend_receiver, localsend_window};
    use ferry::app::PolicyChoice;

    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let (receiver, _events) = localsend_receiver(dst.path());
    let path = src.path().join("report.txt");
    std::fs::write(&path, b"quarterly numbers").unwrap();
    let window = Settings {
        favourites: vec![receiver.local_addr().to_string()],
        client_msg: "see you at five 五点见".into(),
        ..localsend_window(mine.path(), ids.path(), PolicyChoice::Everyone)
    };
    let mut harness = app(window, vec![path]);
    choose_localsend_device(&mut harness, "Living room PC");
    pick_and_upload(&mut harness, 1);
    let deadline = Instant::now() + crate::util::DEADLINE;
    run_until(&mut harness, "the upload to end", |app| {
        assert!(Instant::now() < deadline);
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    let row = &harness.state().client.rows[0];
    assert_eq!(row.state, RowState::Unverified, "{row:?}");
    assert_eq!(
        row.msg, "",
        "the row shows a message LocalSend never carried"
    );
    assert_eq!(
        std::fs::read(dst.path().join("report.txt")).unwrap(),
        b"quarterly numbers"
    );
    harness.get_by_label(
        "The message was not sent: LocalSend sends files without one. Send it as a note instead.",
    );
}

/// The window listens from its first start, so "Choose folder…" and the Advanced fields are
/// greyed out from the start: a hover on them says why (stop listening first), in both
/// languages, instead of a button that does nothing and says nothing.
#[test]
fn a_greyed_out_server_setting_says_why_on_hover() {
    use crate::gui::{listening_addr, run_until};

    for (lang, label, why) in [
        (
            Lang::En,
            "Choose folder…",
            "Stop listening to change this: the server keeps it while it listens.",
        ),
        (
            Lang::ZhCn,
            "选择文件夹…",
            "停止监听后才能修改：监听期间沿用当前设置。",
        ),
        (
            Lang::En,
            "Port",
            "Stop listening to change this: the server keeps it while it listens.",
        ),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let mut harness = window(Settings {
            lang: Some(lang),
            server_listening: true,
            ..settings(dst.path())
        });
        run_until(&mut harness, "the server to listen", |app| {
            listening_addr(app).is_some()
        });
        if label == "Port" {
            harness.get_by_label("Advanced").click();
            harness.run_steps(3);
        }
        harness.get_by_label(label).hover();
        for _ in 0..100 {
            harness.step();
            if harness.query_by_label(why).is_some() {
                break;
            }
        }
        assert!(
            harness.query_by_label(why).is_some(),
            "{lang:?}: hovering the greyed-out {label:?} does not say why"
        );
    }
}

/// A favourite on this machine (127.0.0.1, or the LAN address of the machine itself) is
/// probed on its port and on LocalSend's: the window's own LocalSend receiver answers there,
/// and the window listed itself as a LocalSend device to send to.
#[test]
fn the_window_does_not_list_its_own_localsend_receiver() {
    use crate::gui::{app, localsend_settings, run_until};
    use crate::gui_localsend::{localsend_receiver, wait_localsend_on};
    use crate::gui_localsend_pin::free_port;

    let (dst, other_dst, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (other, _events) = localsend_receiver(other_dst.path());
    // The window's LocalSend port, known before it starts so a favourite can name it.
    let own_port = free_port([127, 0, 0, 1]);
    let settings = Settings {
        localsend_port: own_port.to_string(),
        favourites: vec![
            format!("127.0.0.1:{own_port}"),
            other.local_addr().to_string(),
        ],
        ..localsend_settings(dst.path(), ids.path())
    };
    let mut harness = app(settings, Vec::new());
    let (_, own) = wait_localsend_on(&mut harness);
    // Each Refresh probes the favourites in order: ours first, then the other device, so
    // once the other is listed after a Refresh, ours was asked in that round too.
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Refresh").click();
    run_until(
        &mut harness,
        "the other LocalSend device to be listed",
        |app| {
            app.devices
                .localsend
                .iter()
                .any(|d| d.alias == "Living room PC")
        },
    );
    let listed: Vec<_> = harness
        .state()
        .devices
        .localsend
        .iter()
        .map(|d| d.fingerprint.clone())
        .collect();
    assert!(
        !listed.iter().any(|f| f.eq_ignore_ascii_case(&own)),
        "the window lists its own LocalSend receiver ({own}) among {listed:?}"
    );
}

/// A probe is a `POST /register` whose body says where the prober's receiver listens: the
/// window said LocalSend's port whatever its receiver's was, so the device listed it where
/// nothing of it listened (or another device did, or the device itself).
#[test]
fn a_favourite_probed_lists_the_window_where_its_localsend_receiver_is() {
    use crate::gui::{app, localsend_settings, run_until};
    use crate::gui_localsend::{localsend_receiver, wait_localsend_on};

    let (dst, other_dst, ids) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (other, _events) = localsend_receiver(other_dst.path());
    let settings = Settings {
        favourites: vec![other.local_addr().to_string()],
        ..localsend_settings(dst.path(), ids.path())
    };
    let mut harness = app(settings, Vec::new());
    let (own_addr, own) = wait_localsend_on(&mut harness);
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    harness.get_by_label("Refresh").click();
    run_until(&mut harness, "the favourite to be listed", |app| {
        app.devices
            .localsend
            .iter()
            .any(|d| d.alias == "Living room PC")
    });
    // The favourite may be listed from an earlier probe's answer while the Refresh's own
    // register is still on its way: the device must come to list the window at its port.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let heard = other.devices();
        let window = heard
            .iter()
            .find(|d| d.fingerprint.eq_ignore_ascii_case(&own));
        if window.is_some_and(|w| w.addr.port() == own_addr.port()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the device lists the window elsewhere than its receiver ({own_addr}): {heard:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
