//! Window leftovers of the new-user review, each seen on the real window:
//! - "Why can't I see my device?" speaks the window's language (the doctor's findings were
//!   English lines in the Chinese window); `ferry doctor` keeps its English lines;
//! - a long failure in the State column no longer pushes the buttons behind the Notes panel
//!   at 800x600;
//! - offers are numbered 1, 2, 3 by their own counter (window and `ferry serve --ask`);
//! - a row that ended before it started (declined, refused) shows no "0%" progress bar;
//! - rows name a `ferry serve --name NAME` receiver NAME, not its host name;
//! - at 1180x720 with the Notes panel open the Peer column is in view, not behind a scroll.

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

/// The number in the prompt's "Offer N from ADDRESS" line.
fn prompt_number(harness: &Harness<'static, FerryApp>) -> u64 {
    let offer = &harness.state().server.offers.pending[0];
    let line = format!("from {}", offer.peer);
    let prompt = harness.get_by_label_contains(&line);
    let label = prompt.value().unwrap_or_default();
    label
        .strip_prefix("Offer ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {label:?}"))
}

/// A window that asks before accepting numbers its offers 1, 2, 3...: the files of an
/// accepted batch in between do not count (offers took the transfers' numbers, so a second
/// offer read "Offer 4" after a batch of two files).
#[test]
fn offers_are_numbered_by_their_own_counter() {
    use crate::gui::listening_addr;
    use ferry::app::PolicyChoice;

    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = two_files(src.path());
    let mut receiver = app(
        Settings {
            accept_policy: Some(PolicyChoice::Ask),
            server_listening: true,
            ..settings(dst.path())
        },
        Vec::new(),
    );
    run_until(&mut receiver, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let addr = listening_addr(receiver.state()).unwrap();
    let mut numbers = Vec::new();
    for round in 0..2 {
        let mut sender = upload_window(src.path(), files.clone(), addr);
        run_until(&mut receiver, "the prompt", |app| {
            !app.server.offers.pending.is_empty()
        });
        numbers.push(prompt_number(&receiver));
        receiver.get_by_label("Accept").click();
        receiver.run_steps(2);
        run_until(&mut sender, "the batch to arrive", |app| {
            app.client
                .rows
                .iter()
                .all(|r| r.state == RowState::Verified)
        });
        assert_eq!(names_in_round(dst.path()), 2 * (round + 1));
    }
    assert_eq!(
        numbers[1],
        numbers[0] + 1,
        "the second offer's number after a batch of two files"
    );
}

/// A window on its Client tab that picks `files` and uploads them to `addr`.
fn upload_window(
    src: &std::path::Path,
    files: Vec<PathBuf>,
    addr: std::net::SocketAddr,
) -> Harness<'static, FerryApp> {
    let count = files.len();
    let mut sender = app(settings(src), files);
    sender.state_mut().tab = Tab::Client;
    sender.run_steps(2);
    sender.get_by_label("Destination (host:port)").click();
    sender
        .get_by_label("Destination (host:port)")
        .type_text(&addr.to_string());
    crate::gui::pick_and_upload(&mut sender, count);
    sender.run_steps(2);
    sender
}

/// Two small files in `dir`.
fn two_files(dir: &std::path::Path) -> Vec<PathBuf> {
    ["a.txt", "b.txt"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, name.as_bytes()).unwrap();
            path
        })
        .collect()
}

/// How many files the download folder holds.
fn names_in_round(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// `ferry serve --ask` numbers its offers 1, 2: the two files of the first batch do not
/// count (the second offer read "offer 4").
#[test]
fn serve_ask_numbers_offers_from_one() {
    use std::io::Write;

    use crate::util::{ferry, offer_number, spawn_asking_serve, wait_line};

    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = two_files(src.path());
    let (_serve, addr, lines, mut stdin) = spawn_asking_serve(dst.path());
    for expected in [1, 2] {
        let sender = ferry()
            .args(["send", "--to", &addr.to_string()])
            .args(&files)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let question = wait_line(&lines, "Accept offer ");
        assert_eq!(offer_number(&question), expected, "{question}");
        writeln!(stdin, "y {expected}").unwrap();
        let out = sender.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// Rows that ended before a byte moved (declined, refused) show no progress bar: a "0%" bar
/// said something had begun. A row interrupted halfway keeps its bar, at 50%.
#[test]
fn rows_that_never_started_show_no_progress_bar() {
    use egui::accesskit::Role;
    use ferry::events::Refusal;

    let dst = tempfile::tempdir().unwrap();
    let failed = |name: &str, kind: FailureKind, done: u64| {
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from(name), 6);
        row.state = RowState::Failed(Failure::bare(kind));
        row.bytes_done = done;
        row
    };
    let rows = vec![
        failed("declined.txt", FailureKind::Declined, 0),
        failed("refused.txt", FailureKind::Refused(Refusal::NotTrusted), 0),
        failed(
            "halfway.txt",
            FailureKind::Interrupted { kept_bytes: None },
            3,
        ),
    ];
    let harness = client_window(dst.path(), Lang::En, egui::vec2(1180.0, 720.0), rows);
    harness.get_by_label("declined.txt");
    let bars: Vec<_> = harness.get_all_by_role(Role::ProgressIndicator).collect();
    assert_eq!(bars.len(), 1, "progress bars: {}", bars.len());
    let halfway = harness.get_by_label("halfway.txt").rect();
    let bar = bars[0].rect();
    assert!(
        bar.center().y > halfway.min.y && bar.center().y < halfway.max.y + 20.0,
        "the one bar at {bar:?} is not the halfway row's at {halfway:?}"
    );
}

/// A window uploading to `ferry serve --name NAME` names the receiver NAME on its rows, as its
/// device list does: the handshake gave the host name (the device name), not `--name`.
#[test]
fn rows_name_the_receiver_by_its_serve_name() {
    use crate::util::spawn_serve;
    use ferry::events::Security;

    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = two_files(src.path());
    let (_serve, addr, _lines) =
        spawn_serve(dst.path(), &["--name", "客厅的电脑", "--no-discovery"]);
    let mut sender = upload_window(src.path(), files.clone(), addr);
    run_until(&mut sender, "the batch to arrive", |app| {
        app.client
            .rows
            .iter()
            .all(|r| r.state == RowState::Verified)
    });
    for row in &sender.state().client.rows {
        assert!(
            matches!(&row.security, Some(Security::Encrypted { device, .. }) if device == "客厅的电脑"),
            "{:?}",
            row.security
        );
    }
    sender.run_steps(2);
    assert_eq!(
        sender.query_all_by_label("encrypted · 客厅的电脑").count(),
        2,
        "each row names the receiver"
    );
}

/// At the window's first size (1180x720) with the Notes panel open, a row shows its common
/// columns without scrolling sideways: the name (cut), state, progress, buttons, size and the
/// peer with its encryption, on both tabs and in both languages.
#[test]
fn the_peer_column_fits_at_1180_wide_with_notes_open() {
    use ferry::events::Security;

    for (lang, notes, mark) in [
        (Lang::En, "Notes", "encrypted · receiver-desk"),
        (Lang::ZhCn, "便签", "已加密 · receiver-desk"),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let mut row = TransferRow::queued(next_transfer_id(), PathBuf::from(LONG_NAME), 6);
        row.state = RowState::Verified;
        row.bytes_done = 6;
        row.peer = Some("192.168.100.200:8080".parse().unwrap());
        row.security = Some(Security::Encrypted {
            device: "receiver-desk".into(),
            fingerprint: "apple banana cherry delta echo fox".into(),
            trusted: true,
        });
        let mut harness = client_window(
            dst.path(),
            lang,
            egui::vec2(1180.0, 720.0),
            vec![row.clone()],
        );
        assert!(harness.state().notes_open);
        // The same row received, on the Server tab: its Open and Open folder are the widest
        // buttons.
        row.id = next_transfer_id();
        harness.state_mut().server.rows.push(row);
        for tab in [Tab::Client, Tab::Server] {
            harness.state_mut().tab = tab;
            harness.run_steps(4);
            let edge = notes_panel_left(&harness, notes);
            for text in ["192.168.100.200:8080", mark] {
                let rect = harness.get_by_label(text).rect();
                assert!(
                    rect.max.x < edge,
                    "{lang:?} {tab:?}: {text:?} ends at x = {} behind the Notes panel at {edge}",
                    rect.max.x
                );
            }
        }
    }
}
