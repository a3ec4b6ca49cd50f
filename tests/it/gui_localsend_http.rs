//! The window towards a LocalSend device with encryption turned off (plain HTTP), found by
//! probing a favourite, driven headless by its labels: the device is listed with an
//! "encryption off" badge; Upload and Send (a note) to it do nothing but explain until
//! "Send unencrypted to this device" is ticked; then the files (a Chinese name too) arrive
//! whole, their rows marked "not encrypted", and the note arrives. The agreement is for that
//! device, not for whatever is listed at its address later; a favourite answering in plain
//! HTTP with another favourite's fingerprint does not make that HTTPS device a plain one.

use std::path::{Path, PathBuf};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::app::{FerryApp, RowState, Settings};
use ferry::events::{DiscoveryEvent, Event, LocalSendProtocol, NoteEvent, Security};
use ferry::localsend::{CertIdentity, LocalSendServer};

use crate::gui::{app, choose_localsend_device, localsend_settings, pick_and_upload, run_until};
use crate::localsend_http::{device_with, plain_device};
use crate::util::{data, names_in, wait_for};

const LOCAL: [u8; 4] = [127, 0, 0, 1];

/// The window (downloads in `mine`, identities in `ids`) with `devices` as its favourites,
/// probed in that order, and `files` for its picker.
fn window_probing(
    devices: &[&LocalSendServer],
    mine: &Path,
    ids: &Path,
    files: Vec<PathBuf>,
) -> Harness<'static, FerryApp> {
    let window = Settings {
        favourites: devices.iter().map(|d| d.local_addr().to_string()).collect(),
        ..localsend_settings(mine, ids)
    };
    app(window, files)
}
/// Ticks "Send unencrypted to this device" (beside the destination).
fn agree_unencrypted(harness: &mut Harness<'_, FerryApp>) {
    harness
        .query_all_by_label("Send unencrypted to this device")
        .next()
        .expect("the agreement box")
        .click();
    harness.run_steps(2);
}

const REFUSAL: &str = "Not sent: Plain phone has encryption turned off.";

#[test]
fn uploads_and_notes_to_a_device_with_encryption_off_wait_for_the_users_agreement() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let (device, events) = plain_device(dst.path(), "Plain phone");
    let files: Vec<(PathBuf, Vec<u8>)> = [("slides.pdf", 90_000), ("合同.txt", 2_000)]
        .into_iter()
        .map(|(name, len)| {
            let path = src.path().join(name);
            let bytes = data(len, len as u64 + 3);
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect();
    let picked = files.iter().map(|(p, _)| p.clone()).collect();
    let mut harness = window_probing(&[&device], mine.path(), ids.path(), picked);
    choose_localsend_device(&mut harness, "Plain phone");
    let listed = harness
        .state()
        .devices
        .localsend
        .iter()
        .find(|d| d.alias == "Plain phone")
        .cloned()
        .unwrap();
    assert_eq!(listed.protocol, LocalSendProtocol::Http);
    harness.get_by_label("encryption off");
    let dest = device.local_addr().to_string();
    assert_eq!(harness.state().client.dest, dest);

    // Upload without the agreement: the explanation, the files still queued, nothing sent.
    pick_and_upload(&mut harness, 2);
    harness.run_steps(3);
    harness.get_by_label_contains(REFUSAL);
    assert!(
        harness
            .state()
            .client
            .rows
            .iter()
            .all(|r| r.state == RowState::Queued),
        "nothing left the queue"
    );

    // A note without the agreement: the explanation, the draft kept, nothing sent.
    assert_eq!(harness.state().notes.peer, dest);
    harness.get_by_label("Note").click();
    harness.get_by_label("Note").type_text("会议改到三点");
    harness.get_by_label("Send").click();
    harness.run_steps(3);
    assert_eq!(
        harness
            .state()
            .notes
            .send_error
            .as_deref()
            .map(|e| e.starts_with(REFUSAL)),
        Some(true),
        "{:?}",
        harness.state().notes.send_error
    );
    assert_eq!(harness.state().notes.draft, "会议改到三点");
    assert!(names_in(dst.path()).is_empty());
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, Event::Note(_) | Event::Transfer(_))),
        "the device heard nothing"
    );

    // Agreed (the box beside the destination): the files and the note go.
    agree_unencrypted(&mut harness);
    let devices = &harness.state().devices;
    let target = devices.localsend_target(&dest).expect("the device");
    assert!(devices.unencrypted_agreed(&target));
    harness.get_by_label("Upload").click();
    run_until(&mut harness, "both uploads to end", |app| {
        app.client.rows.iter().all(|r| r.state.is_finished())
    });
    for row in &harness.state().client.rows {
        assert_eq!(row.state, RowState::Unverified, "{row:?}");
        assert!(
            matches!(
                row.security,
                Some(Security::LocalSend {
                    encrypted: false,
                    ..
                })
            ),
            "{row:?}"
        );
    }
    assert_eq!(
        harness
            .query_all_by_label("LocalSend · Plain phone · not encrypted")
            .count(),
        2,
        "each row says it went unencrypted"
    );
    for (path, bytes) in &files {
        let name = path.file_name().unwrap();
        assert_eq!(&std::fs::read(dst.path().join(name)).unwrap(), bytes);
    }
    harness.get_by_label("Send").click();
    harness.run_steps(2);
    let got = wait_for(&events, |event| match event {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    });
    assert_eq!(got, "会议改到三点");
}

#[test]
fn the_agreement_is_for_the_device_not_for_whatever_is_listed_at_its_address_later() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let (device, _events) = plain_device(dst.path(), "Plain phone");
    let path = src.path().join("secret.txt");
    std::fs::write(&path, b"not for everyone").unwrap();
    let mut harness = window_probing(&[&device], mine.path(), ids.path(), vec![path]);
    choose_localsend_device(&mut harness, "Plain phone");
    agree_unencrypted(&mut harness);
    // Another device (or someone announcing one) is now what is listed at that address.
    let mut other = harness.state().devices.localsend[0].clone();
    other.alias = "Other phone".into();
    other.fingerprint = "EE99".into();
    harness
        .state_mut()
        .devices
        .apply(DiscoveryEvent::LocalSendDevices(vec![other]));
    harness.run_steps(2);
    pick_and_upload(&mut harness, 1);
    harness.run_steps(3);
    harness.get_by_label_contains("Not sent: Other phone has encryption turned off.");
    assert_eq!(harness.state().client.rows[0].state, RowState::Queued);
    assert!(names_in(dst.path()).is_empty(), "nothing went in the clear");
}

#[test]
fn a_favourite_answering_plain_http_with_an_https_favourites_fingerprint_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let ids = tempfile::tempdir().unwrap();
    let laptop = CertIdentity::generate().unwrap();
    let https = LocalSendProtocol::Https;
    let (real, _events) = device_with(laptop.clone(), LOCAL, dir.path(), "Laptop", https);
    // Someone else claiming the laptop's fingerprint, in plain HTTP.
    let http = LocalSendProtocol::Http;
    let (fake, _events) = device_with(laptop, LOCAL, dir.path(), "Laptop", http);
    // Probed after both: once it is listed, both were asked.
    let (marker, _events) = plain_device(dir.path(), "Marker");
    let devices = [&real, &fake, &marker];
    let mut harness = window_probing(&devices, mine.path(), ids.path(), Vec::new());
    run_until(&mut harness, "all three favourites probed", |app| {
        app.devices.localsend.iter().any(|d| d.alias == "Marker")
    });
    let listed: Vec<_> = harness
        .state()
        .devices
        .localsend
        .iter()
        .filter(|d| d.alias == "Laptop")
        .cloned()
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].protocol, LocalSendProtocol::Https, "{listed:?}");
    assert_eq!(listed[0].addr, real.local_addr());
}
