//! Window leftovers of the new-user review, each seen on the real window:
//! - "Why can't I see my device?" speaks the window's language (the doctor's findings were
//!   English lines in the Chinese window); `ferry doctor` keeps its English lines.

use std::net::{Ipv4Addr, TcpListener};

use egui_kittest::kittest::Queryable;
use ferry::app::Settings;
use ferry::app::i18n::Lang;
use ferry::events::{BeaconPath, Finding, IgnoredWhy};

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
    harness.state_mut().tab = ferry::app::Tab::Client;
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
