//! Window leftovers of the new-user review, each seen on the real window:
//! - "Why can't I see my device?" speaks the window's language (the doctor's findings were
//!   English lines in the Chinese window); `ferry doctor` keeps its English lines;
//! - a long failure in the State column no longer pushes the buttons behind the Notes panel
//!   at 800x600.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::i18n::Lang;
use ferry::app::{FerryApp, NoPicker, RowState, Settings, Tab, TransferRow};
use ferry::events::{BeaconPath, Failure, FailureKind, Finding, IgnoredWhy, next_transfer_id};

use crate::gui::{app, run_until, settings};

/// The Chinese window's doctor: the interface report (as discovery sends it) and the check of
/// a typed address (a real connect to a closed port) are Chinese sentences, not the CLI's.
#[test]
fn the_doctor_speaks_chinese_in_the_chinese_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(
        Settings {
            lang: Some(Lang::ZhCn),
            ..settings(dir.path())
        },
        Vec::new(),
    );
    harness.state_mut().tab = Tab::Client;
    harness.run_steps(2);
    let report = vec![
        Finding::Used {
            name: "wlan0".into(),
            net: "10.0.0.5/24".into(),
            own: vec![BeaconPath::Broadcast, BeaconPath::Mdns],
        },
        Finding::Ignored {
            name: "docker0".into(),
            net: "172.17.0.1/16".into(),
            why: IgnoredWhy::Virtual,
        },
        Finding::NoOthersHeard,
        Finding::Isolated {
            name: "wlan0".into(),
        },
    ];
    harness.state_mut().devices.doctor = report.clone();
    harness.get_by_label("为什么看不到我的设备？").click();
    harness.run_steps(2);
    for english in &report {
        assert!(
            harness.query_by_label(&english.to_string()).is_none(),
            "the Chinese window says {english}"
        );
    }
    for chinese in [
        "接口 wlan0 10.0.0.5/24：已使用；本机自己的信标已经由广播和mDNS传回",
        "接口 docker0 172.17.0.1/16：未使用：虚拟网卡（容器、虚拟机或 VPN）；需明确选择才会使用",
        "最近一分钟内其他设备的信标：无（对方是否在运行 Ferry、在同一网络上并开启了发现？）",
    ] {
        harness.get_by_label(chinese);
    }

    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    harness.get_by_label("要检查的地址（主机:端口）").click();
    harness
        .get_by_label("要检查的地址（主机:端口）")
        .type_text(&closed.to_string());
    harness.get_by_label("检查").click();
    run_until(&mut harness, "the check's answer", |app| {
        app.devices.checked.is_some()
    });
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label_contains(&format!("TCP {closed}: connection refused"))
            .is_none(),
        "the Chinese window says the check's answer in English"
    );
    harness.get_by_label(&format!(
        "TCP {closed}：连接被拒绝：该机器在线，但端口 {} 上没有程序监听（Ferry 未运行，或使用了其他端口）",
        closed.port()
    ));
    harness.get_by_label("127.0.0.1：本机（回环）：只有本机上的程序能使用它");
}

/// A reason long enough to be cut in the State column at any window size.
const LONG_REASON: &str = "cannot connect to 127.0.0.1:9999: Connection refused (os error 111), \
                           and then some more words so that the state cell has to cut it";

/// A file name long enough to be cut in the File column.
const LONG_NAME: &str = "the quarterly report of the regional offices, final version 3.pdf";

/// The window at `size` in `lang` on its Client tab (the Notes panel closed), with `rows`.
fn client_window(
    dst: &std::path::Path,
    lang: Lang,
    size: egui::Vec2,
    rows: Vec<TransferRow>,
) -> Harness<'static, FerryApp> {
    let settings = Settings {
        lang: Some(lang),
        ..settings(dst)
    };
    let mut harness = Harness::builder()
        .with_size(size)
        .allow_missing_glyphs()
        .build_eframe(move |cc| FerryApp::new(&cc.egui_ctx, settings, Arc::new(NoPicker)).unwrap());
    harness.state_mut().tab = Tab::Client;
    harness.state_mut().client.rows.extend(rows);
    harness.run_steps(4);
    harness
}

/// Where the open Notes panel's heading starts: the table must end left of it.
fn notes_panel_left(harness: &Harness<'static, FerryApp>, heading: &str) -> f32 {
    harness
        .get_all_by_label(heading)
        .map(|node| node.rect())
        // The top bar's Notes button is not the panel.
        .filter(|rect| rect.min.y > 26.0)
        .map(|rect| rect.min.x)
        .fold(f32::INFINITY, f32::min)
}

/// At 800x600 (the Notes panel open, as on a first start) an upload that failed with a long
/// reason keeps its Retry and Remove buttons in view: the state is cut short enough (its
/// whole text on hover), in both languages.
#[test]
fn a_long_failure_keeps_the_buttons_in_view_at_800_wide() {
    for (lang, notes, retry, remove) in [
        (Lang::En, "Notes", "Retry", "Remove"),
        (Lang::ZhCn, "便签", "重试", "移除"),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from(LONG_NAME), 6);
        row.state = RowState::Failed(Failure::new(FailureKind::Unreachable, LONG_REASON));
        row.path = Some(dst.path().join(LONG_NAME));
        row.dest = Some("127.0.0.1:9999".into());
        let harness = client_window(dst.path(), lang, egui::vec2(800.0, 600.0), vec![row]);
        assert!(harness.state().notes_open);
        let edge = notes_panel_left(&harness, notes);
        assert!(edge < 800.0, "{lang:?}: no Notes panel found");
        for button in [retry, remove] {
            let rect = harness.get_by_label(button).rect();
            assert!(
                rect.max.x < edge,
                "{lang:?}: {button} ends at x = {} behind the Notes panel at {edge}",
                rect.max.x
            );
        }
    }
}
