//! The Client tab refuses a destination the engine would fail on, at once and in the
//! window's language, before anything is started: no host, a port out of range, a space
//! in a name, a number the system would read as another address, an IPv6 zone naming no
//! interface here. (It used to start the upload, which then failed with the engine's
//! English words in the row.)

use egui_kittest::kittest::Queryable;
use ferry::app::RowState;
use ferry::app::i18n::Lang;

use crate::gui::{app, run_until, settings};

/// Types `dest` in the destination field and clicks `button`, with one file queued.
fn try_destination(lang: Lang, dest: &str, button: &str) -> Option<String> {
    let (field, choose) = match lang {
        Lang::En => ("Destination (host:port)", "Choose files…"),
        Lang::ZhCn => ("目标（主机:端口）", "选择文件…"),
    };
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("报告.txt");
    std::fs::write(&file, "hello").unwrap();
    let mut settings = settings(src.path());
    settings.lang = Some(lang);
    let mut harness = app(settings, vec![file]);
    harness.state_mut().tab = ferry::app::Tab::Client;
    harness.run_steps(2);
    harness.get_by_label(field).click();
    harness.get_by_label(field).type_text(dest);
    harness.get_by_label(choose).click();
    run_until(&mut harness, "the picked file in the queue", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label(button).click();
    harness.run_steps(2);
    let state = &harness.state().client;
    assert!(
        matches!(state.rows[0].state, RowState::Queued),
        "{dest}: the upload started"
    );
    let notice = state.notice.clone();
    if let Some(notice) = &notice {
        // Shown, not only kept.
        harness.get_by_label_contains(notice);
    }
    notice
}

#[test]
fn a_destination_the_engine_would_refuse_is_refused_at_once_in_the_windows_language() {
    let cases = [
        (
            Lang::En,
            "010.0.0.5:8080",
            "Upload",
            "\"010.0.0.5\" is not an IPv4 address",
        ),
        (
            Lang::ZhCn,
            "010.0.0.5:8080",
            "上传",
            "“010.0.0.5”不是 IPv4 地址",
        ),
        (
            Lang::En,
            "10.1:8080",
            "Test speed",
            "\"10.1\" is not an IPv4 address",
        ),
        (
            Lang::En,
            "[fe80::1%nosuch9]:8080",
            "Upload",
            "\"nosuch9\" is no network interface of this machine",
        ),
        (
            Lang::ZhCn,
            "[fe80::1%nosuch9]:8080",
            "测速",
            "“nosuch9”不是本机的网络接口",
        ),
        (Lang::En, ":8080", "Upload", "\":8080\" has no host name"),
        (Lang::ZhCn, "host:99999", "上传", "“99999”不是端口号"),
        (
            Lang::En,
            "My Laptop:8080",
            "Test speed",
            "\"My Laptop:8080\" is not a host name",
        ),
    ];
    for (lang, dest, button, expected) in cases {
        let notice = try_destination(lang, dest, button);
        assert!(
            notice.as_deref().is_some_and(|n| n.starts_with(expected)),
            "{lang:?} {dest} {button}: {notice:?}"
        );
    }
}
