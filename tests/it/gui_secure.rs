//! The window's side of devices and trust, driven headless by its labels between real
//! windows on loopback, each with its own identity folder (never the user's): pairing with a
//! code shown by one window and typed into the other, "Accept and trust" from a prompt,
//! forgetting a device, plain senders under the default policy, and the policy persisted.

use std::path::{Path, PathBuf};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, PolicyChoice, RowState, Settings};
use ferry::events::{FailureKind, Refusal, Security};

use crate::gui::{app, listening_addr, run_until, settings};
use crate::util::*;

/// A window that listens from the start, with its own identity folder and accept policy.
fn window_settings(download_dir: &Path, identity_dir: &Path, policy: PolicyChoice) -> Settings {
    Settings {
        accept_policy: Some(policy),
        server_listening: true,
        identity_dir: Some(identity_dir.to_owned()),
        ..settings(download_dir)
    }
}

struct Window {
    harness: Harness<'static, FerryApp>,
    _download: tempfile::TempDir,
    _identity: tempfile::TempDir,
}

fn window(policy: PolicyChoice, files: Vec<PathBuf>) -> Window {
    let download = tempfile::tempdir().unwrap();
    let identity = tempfile::tempdir().unwrap();
    let mut harness = app(
        window_settings(download.path(), identity.path(), policy),
        files,
    );
    run_until(&mut harness, "the server and the device identity", |app| {
        listening_addr(app).is_some() && !app.server.trust.fingerprint.is_empty()
    });
    Window {
        harness,
        _download: download,
        _identity: identity,
    }
}

/// Renames the window's device from the Server tab and waits until the engine says so (and
/// the server listens again, with the new name).
fn rename_device(harness: &mut Harness<'static, FerryApp>, name: &str) {
    harness.get_by_label("Server").click();
    harness.run_steps(2);
    harness.get_by_label("Rename").click();
    harness.run_steps(2);
    harness.get_by_label("New name").click();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.get_by_label("New name").type_text(name);
    harness.get_by_label("Save").click();
    run_until(harness, "the new device name", |app| {
        app.server.trust.name == name && listening_addr(app).is_some()
    });
}

/// Queues the picked files on the Client tab and uploads them to `dest` (with `code` typed
/// into the code field when given).
fn upload(harness: &mut Harness<'static, FerryApp>, dest: &str, code: Option<&str>) {
    harness.get_by_label("Client").click();
    harness.run_steps(2);
    if harness.state().client.dest != dest {
        harness.get_by_label("Destination (host:port)").click();
        harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
        harness
            .get_by_label("Destination (host:port)")
            .type_text(dest);
    }
    if let Some(code) = code {
        let field = "Pairing code (when the receiver shows one)";
        harness.get_by_label(field).click();
        harness.get_by_label(field).type_text(code);
    }
    let before = harness.state().client.rows.len();
    harness.get_by_label("Choose files…").click();
    run_until(harness, "the picked file in the queue", |app| {
        app.client.rows.len() == before + 1
    });
    harness.get_by_label("Upload").click();
    harness.run_steps(2);
}

fn last_finished(rows: &[ferry::app::TransferRow], count: usize) -> bool {
    rows.len() == count && rows[count - 1].state.is_finished()
}

fn src_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let bytes = data(len, seed);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Anyone on the network can spend a code's 3 tries: the window then says the code was
/// burnt and how to get a new one (it just vanished, as if withdrawn); a new code clears that.
#[test]
fn a_code_whose_tries_someone_spent_is_said_to_be_burnt() {
    let mut receiver = window(PolicyChoice::Everyone, vec![]);
    let addr = listening_addr(receiver.harness.state()).unwrap();
    receiver.harness.get_by_label("Pair with code").click();
    run_until(&mut receiver.harness, "the pairing code", |app| {
        app.server.trust.pairing.is_some()
    });
    for _ in 0..3 {
        crate::attacks_faces::spend_a_try(addr);
    }
    run_until(&mut receiver.harness, "the code to go", |app| {
        app.server.trust.pairing.is_none()
    });
    receiver
        .harness
        .get_by_label_contains("The last code was burnt");
    receiver.harness.get_by_label("Pair with code").click();
    run_until(&mut receiver.harness, "a new pairing code", |app| {
        app.server.trust.pairing.is_some()
    });
    assert!(
        receiver
            .harness
            .query_by_label_contains("The last code was burnt")
            .is_none()
    );
}

#[test]
fn pairing_with_a_code_between_two_windows_then_trusted_uploads_go_without_asking() {
    let src = tempfile::tempdir().unwrap();
    let (file, bytes) = src_file(src.path(), "paired.bin", 300_000, 91);
    let mut receiver = window(PolicyChoice::Trusted, vec![]);
    let mut sender = window(PolicyChoice::Trusted, vec![file]);
    rename_device(&mut receiver.harness, "receiver-desk");
    rename_device(&mut sender.harness, "sender-laptop");
    let addr = listening_addr(receiver.harness.state()).unwrap();
    let receiver_fp = receiver.harness.state().server.trust.fingerprint.clone();
    receiver.harness.get_by_label(&receiver_fp);

    // The receiver shows a code, large, with its time and tries left.
    receiver.harness.get_by_label("Pair with code").click();
    run_until(&mut receiver.harness, "the pairing code", |app| {
        app.server.trust.pairing.is_some()
    });
    let code = receiver
        .harness
        .state()
        .server
        .trust
        .pairing
        .clone()
        .unwrap()
        .code;
    receiver.harness.get_by_label(&code);
    receiver.harness.get_by_label_contains("3 tries left");

    // The sender types it next to the destination and sends.
    upload(&mut sender.harness, &addr.to_string(), Some(&code));
    run_until(&mut sender.harness, "the paired upload", |app| {
        last_finished(&app.client.rows, 1)
    });
    run_until(
        &mut receiver.harness,
        "the paired upload to arrive",
        |app| last_finished(&app.server.rows, 1),
    );
    assert_eq!(
        sender.harness.state().client.rows[0].state,
        RowState::Verified
    );
    assert_eq!(
        receiver.harness.state().server.rows[0].state,
        RowState::Verified
    );
    assert_eq!(
        std::fs::read(receiver._download.path().join("paired.bin")).unwrap(),
        bytes
    );
    assert_eq!(
        sender.harness.state().client.code,
        "",
        "a code is used once"
    );

    // Both sides now list each other; the receiver says whom it paired with.
    run_until(
        &mut receiver.harness,
        "the sender in the trusted list",
        |app| app.server.trust.trusted.len() == 1 && app.server.trust.pairing.is_none(),
    );
    let sender_fp = sender.harness.state().server.trust.fingerprint.clone();
    receiver
        .harness
        .get_by_label(&format!("Paired with sender-laptop ({sender_fp})"));
    assert_eq!(
        receiver.harness.state().server.trust.trusted[0].name,
        "sender-laptop"
    );
    assert_eq!(
        receiver.harness.state().server.trust.trusted[0].fingerprint,
        sender_fp
    );
    assert!(
        receiver.harness.query_by_label(&code).is_none(),
        "the code is gone"
    );
    receiver.harness.get_by_label("sender-laptop");
    run_until(
        &mut sender.harness,
        "the receiver in the trusted list",
        |app| app.server.trust.trusted.len() == 1,
    );
    assert_eq!(
        sender.harness.state().server.trust.trusted[0].name,
        "receiver-desk"
    );
    assert_eq!(
        sender.harness.state().server.trust.trusted[0].fingerprint,
        receiver_fp
    );

    // A second upload, no code: taken without asking under the default policy, encrypted.
    upload(&mut sender.harness, &addr.to_string(), None);
    run_until(&mut sender.harness, "the trusted upload", |app| {
        last_finished(&app.client.rows, 2)
    });
    run_until(
        &mut receiver.harness,
        "the trusted upload to arrive",
        |app| last_finished(&app.server.rows, 2),
    );
    assert!(
        receiver.harness.state().server.offers.pending.is_empty(),
        "not asked"
    );
    assert_eq!(
        sender.harness.state().client.rows[1].state,
        RowState::Verified
    );
    assert!(matches!(
        &sender.harness.state().client.rows[1].security,
        Some(Security::Encrypted { device, trusted: true, .. }) if device == "receiver-desk"
    ));
    assert_eq!(
        sender
            .harness
            .query_all_by_label("encrypted · receiver-desk")
            .count(),
        2,
        "both rows on the Client tab say so"
    );
    receiver.harness.get_by_label("Server").click();
    receiver.harness.run_steps(2);
    assert_eq!(
        receiver
            .harness
            .query_all_by_label("encrypted · sender-laptop")
            .count(),
        2
    );
}

#[test]
fn accept_and_trust_from_the_prompt_then_forget_makes_the_next_upload_ask_again() {
    let src = tempfile::tempdir().unwrap();
    let (file, _) = src_file(src.path(), "hello.txt", 20_000, 92);
    let mut receiver = window(PolicyChoice::Trusted, vec![]);
    let mut sender = window(PolicyChoice::Trusted, vec![file]);
    let addr = listening_addr(receiver.harness.state())
        .unwrap()
        .to_string();
    let sender_fp = sender.harness.state().server.trust.fingerprint.clone();

    // First contact: encrypted, not trusted, so the prompt asks, with the fingerprint.
    upload(&mut sender.harness, &addr, None);
    run_until(&mut receiver.harness, "the prompt", |app| {
        !app.server.offers.pending.is_empty()
    });
    receiver
        .harness
        .get_by_label(&format!("Fingerprint: {sender_fp}"));
    receiver.harness.get_by_label("Accept and trust").click();
    receiver.harness.run_steps(2);
    run_until(
        &mut receiver.harness,
        "the upload and the trusted device",
        |app| last_finished(&app.server.rows, 1) && app.server.trust.trusted.len() == 1,
    );
    assert_eq!(
        receiver.harness.state().server.rows[0].state,
        RowState::Verified
    );
    assert_eq!(
        receiver.harness.state().server.trust.trusted[0].fingerprint,
        sender_fp
    );
    run_until(&mut sender.harness, "the sender's row", |app| {
        last_finished(&app.client.rows, 1)
    });

    // Trusted now: the next upload goes without asking.
    upload(&mut sender.harness, &addr, None);
    run_until(&mut receiver.harness, "the trusted upload", |app| {
        last_finished(&app.server.rows, 2)
    });
    assert!(receiver.harness.state().server.offers.pending.is_empty());
    assert_eq!(
        receiver.harness.state().server.rows[1].state,
        RowState::Verified
    );
    run_until(&mut sender.harness, "the sender's second row", |app| {
        last_finished(&app.client.rows, 2)
    });

    // Forgotten: the list empties and the next upload asks again.
    receiver.harness.get_by_label("Server").click();
    receiver.harness.run_steps(2);
    receiver.harness.get_by_label("Forget").click();
    run_until(&mut receiver.harness, "the device forgotten", |app| {
        app.server.trust.trusted.is_empty()
    });
    receiver
        .harness
        .get_by_label_contains("No trusted devices yet");
    upload(&mut sender.harness, &addr, None);
    run_until(&mut receiver.harness, "the prompt again", |app| {
        !app.server.offers.pending.is_empty()
    });
    receiver.harness.get_by_label("Accept and trust");
    receiver.harness.get_by_label("Decline").click();
    receiver.harness.run_steps(2);
    run_until(&mut sender.harness, "the declined upload", |app| {
        last_finished(&app.client.rows, 3)
    });
    assert!(matches!(
        &sender.harness.state().client.rows[2].state,
        RowState::Failed(f) if matches!(f.kind, FailureKind::Declined | FailureKind::Refused(_))
    ));
}

#[test]
fn a_plain_sender_under_trusted_devices_is_refused_with_how_to_allow_it() {
    let mut receiver = window(PolicyChoice::Trusted, vec![]);
    let addr = listening_addr(receiver.harness.state()).unwrap();
    receiver
        .harness
        .get_by_label_contains("Plain (non-Ferry) senders can be neither asked nor encrypted");
    // The classic client: one header, the bytes, close.
    {
        use std::io::{Read, Write};
        let bytes = data(10_000, 93);
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(&plain_frame(&plain_header("classic.txt", bytes.len(), "")));
        let _ = stream.write_all(&bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    }
    run_until(&mut receiver.harness, "the refused row", |app| {
        last_finished(&app.server.rows, 1)
    });
    let row = &receiver.harness.state().server.rows[0];
    assert!(
        matches!(&row.state, RowState::Failed(f) if f.kind == FailureKind::Refused(Refusal::PlainCannotBeAsked)),
        "{:?}",
        row.state
    );
    assert_eq!(row.security, Some(Security::Plain));
    receiver
        .harness
        .get_by_label_contains("set “When files arrive” to “Everyone without asking”");
    receiver.harness.get_by_label("not encrypted");
    assert!(names_in(receiver._download.path()).is_empty());
}

#[test]
fn the_accept_policy_applies_and_is_persisted_and_a_bad_code_is_refused_before_sending() {
    let src = tempfile::tempdir().unwrap();
    let (file, _) = src_file(src.path(), "never.txt", 1000, 94);
    let mut w = window(PolicyChoice::Trusted, vec![file]);
    w.harness.get_by_label("Ask me").click();
    w.harness.run_steps(2);
    assert_eq!(w.harness.state().server.policy, PolicyChoice::Ask);
    let saved = w.harness.state().settings();
    assert_eq!(saved.accept_policy, Some(PolicyChoice::Ask));
    let json = serde_json::to_string(&saved).unwrap();
    let again: Settings = serde_json::from_str(&json).unwrap();
    assert_eq!(
        again.policy(),
        PolicyChoice::Ask,
        "read back from what is saved"
    );

    // A code with a word not in the list: refused with its reason, nothing sent.
    let addr = listening_addr(w.harness.state()).unwrap().to_string();
    upload(&mut w.harness, &addr, Some("1234-notaword-otter-maple"));
    w.harness
        .get_by_label_contains("Pairing code: not a pairing code");
    assert_eq!(w.harness.state().client.rows[0].state, RowState::Queued);
    assert!(w.harness.state().server.rows.is_empty());
}

/// A device trusted after it sent from `ferry send` (which says no port) has no address: the
/// Server tab lists the IP it was last seen at, and offers nothing to send to it.
#[test]
fn a_trusted_device_known_by_its_ip_alone_is_listed_as_last_seen_there() {
    let download = tempfile::tempdir().unwrap();
    let identity = tempfile::tempdir().unwrap();
    let keyring = ferry::secure::Keyring::load(identity.path()).unwrap();
    let seen = ferry::secure::trust::SeenAt::Ip("10.0.0.9".parse().unwrap());
    keyring.trust.pin("laptop", &[9; 32], Some(seen)).unwrap();
    let mut harness = app(
        window_settings(download.path(), identity.path(), PolicyChoice::Trusted),
        vec![],
    );
    run_until(&mut harness, "the trusted device", |app| {
        app.server.trust.trusted.len() == 1
    });
    harness.get_by_label("Server").click();
    harness.run_steps(2);
    harness.get_by_label("last seen at 10.0.0.9 (no port known)");
    assert!(harness.query_by_label("Send files").is_none());
}

/// A receiver whose name only looks like a trusted device's (`ｌａｐｔｏｐ` beside the trusted
/// `laptop`) is refused by the window that sends to it, and the row says so in the window's
/// language with the refused key's fingerprint and what to do, not in English words.
#[test]
fn a_receiver_that_only_looks_like_a_trusted_device_is_refused_in_the_windows_language() {
    let (download, identity, src) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let me = device(identity.path(), "desk");
    let laptop_home = tempfile::tempdir().unwrap();
    let laptop = device(laptop_home.path(), "laptop");
    me.trust
        .pin("laptop", laptop.identity.public_key(), None)
        .unwrap();
    let impostor_home = tempfile::tempdir().unwrap();
    let impostor = device(impostor_home.path(), "ｌａｐｔｏｐ");
    let dst = tempfile::tempdir().unwrap();
    let (server, _events) = {
        let mut config = ferry::transfer::ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
        config.keyring = Some(impostor.clone());
        config.policy = ferry::transfer::AcceptPolicy::Everyone;
        start_server_with(config)
    };
    let (file, _) = src_file(src.path(), "报告.pdf", 1000, 7);
    let mut harness = app(
        Settings {
            lang: Some(ferry::app::i18n::Lang::ZhCn),
            identity_dir: Some(identity.path().to_owned()),
            ..settings(download.path())
        },
        vec![file],
    );
    let dest = server.local_addr().to_string();
    harness.state_mut().client.dest = dest;
    harness.state_mut().tab = ferry::app::Tab::Client;
    harness.run_steps(2);
    harness.get_by_label("选择文件…").click();
    run_until(&mut harness, "the picked file", |app| {
        app.client.rows.len() == 1
    });
    harness.get_by_label("上传").click();
    run_until(&mut harness, "the row to fail", |app| {
        last_finished(&app.client.rows, 1)
    });
    let row = &harness.state().client.rows[0];
    let RowState::Failed(failure) = &row.state else {
        panic!("{:?}", row.state);
    };
    assert_eq!(failure.kind, FailureKind::KeyChanged { looks_alike: true });
    let fingerprint = impostor.identity.fingerprint();
    assert_eq!(failure.detail.as_deref(), Some(fingerprint.as_str()));
    // What the row shows, as its label reads: all of it in Chinese, the fingerprint inside.
    harness.get_by_label_contains(&format!(
        "它的名称只是看起来像某台受信任设备的名称，且出示了另一把密钥（指纹 {fingerprint}）；"
    ));
    harness.get_by_label_contains("请给其中一台改个名字（“接收”页上的“重命名”）");
    assert!(harness.query_by_label_contains("presented").is_none());
    assert!(names_in(dst.path()).is_empty());
}
