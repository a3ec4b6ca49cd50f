//! The real `ferry` binary towards a LocalSend device with encryption turned off (plain HTTP,
//! found by a register probe that falls back from TLS): `ferry send --to ALIAS` refuses and
//! says how to proceed unless `--no-encryption`, then the files (a Chinese name too) arrive
//! byte for byte and the output says they went unencrypted; `ferry note --to ALIAS` likewise
//! with `--plain`; `--no-encryption` to a device with encryption on still goes over HTTPS.

use std::path::{Path, PathBuf};
use std::process::Output;

use ferry::events::{Event, NoteEvent};
use ferry::localsend::{LocalSendProtocol, LocalSendServer};

use crate::localsend_http::{device_on, plain_device};
use crate::util::{data, ferry, names_in, wait_for};

/// `ferry ARGS… --to ALIAS` with the device found by probing its address only.
fn ferry_to(device: &LocalSendServer, alias: &str, args: &[&str], tail: &[&str]) -> Output {
    ferry_probing(&[device], alias, args, tail)
}

/// `ferry ARGS… --to ALIAS TAIL…`, finding LocalSend devices only by probing `devices`.
fn ferry_probing<S: AsRef<std::ffi::OsStr>>(
    devices: &[&LocalSendServer],
    alias: &str,
    args: &[&str],
    tail: &[S],
) -> Output {
    let mut command = ferry();
    command.args(args).args([
        "--to",
        alias,
        "--no-localsend-sweep",
        "--localsend-wait",
        "0",
    ]);
    for device in devices {
        command.args(["--localsend-probe", &device.local_addr().to_string()]);
    }
    command.args(tail).output().expect("ferry runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    [("notes.txt", 5_000), ("照片 二.jpg", 120_000)]
        .into_iter()
        .map(|(name, len)| {
            let path = dir.join(name);
            let bytes = data(len, len as u64);
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn ferry_send_to_a_device_with_encryption_off_needs_no_encryption() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let (device, _events) = plain_device(inbox.path(), "Plain phone");
    let sent = files(src.path());
    let paths: Vec<&str> = sent.iter().map(|(p, _)| p.to_str().unwrap()).collect();

    let out = ferry_to(&device, "Plain phone", &["send"], &paths);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "the LocalSend device Plain phone has encryption turned off (it speaks plain HTTP): \
             anyone on the network could read the files and it cannot prove who it is; add \
             --no-encryption to send anyway, or turn Encryption back on in its settings"
        ),
        "{stderr}"
    );
    assert!(names_in(inbox.path()).is_empty(), "nothing was sent");

    let out = ferry_to(&device, "Plain phone", &["send", "--no-encryption"], &paths);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout
            .contains("sending the files unencrypted (plain HTTP) to LocalSend device Plain phone"),
        "{stdout}"
    );
    for (path, bytes) in &sent {
        let name = path.file_name().unwrap();
        assert_eq!(&std::fs::read(inbox.path().join(name)).unwrap(), bytes);
    }
}

#[test]
fn ferry_note_to_a_device_with_encryption_off_needs_plain() {
    let inbox = tempfile::tempdir().unwrap();
    let (device, events) = plain_device(inbox.path(), "Plain laptop");
    let out = ferry_to(&device, "Plain laptop", &["note"], &["hi"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("anyone on the network could read the note")
            && stderr.contains("add --plain to send anyway"),
        "{stderr}"
    );
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, Event::Note(_) | Event::Transfer(_))),
        "the device heard nothing"
    );

    let out = ferry_to(
        &device,
        "Plain laptop",
        &["note", "--plain"],
        &["晚上好 in the clear"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sending the note unencrypted"), "{stdout}");
    // Its "fingerprint" is only an id it claims: the closing line says so, as `ferry peers`
    // and `ferry send` do, and never calls it a fingerprint.
    assert!(
        stdout.contains(&format!(
            "(id {} (claimed, no certificate); LocalSend has no replies)",
            device.fingerprint()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("(fingerprint "), "{stdout}");
    let got = wait_for(&events, |e| match e {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    });
    assert_eq!(got, "晚上好 in the clear");
}

/// `--no-encryption` and `--plain` are agreements for devices with encryption off: one with
/// encryption on (it speaks TLS only, so a plain request would fail) still gets HTTPS.
#[test]
fn no_encryption_and_plain_to_a_device_with_encryption_on_still_go_over_https() {
    let src = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let (device, events) = device_on(
        [127, 0, 0, 1],
        inbox.path(),
        "Locked phone",
        LocalSendProtocol::Https,
    );
    let sent = files(src.path());
    let paths: Vec<&str> = sent.iter().map(|(p, _)| p.to_str().unwrap()).collect();
    let out = ferry_to(
        &device,
        "Locked phone",
        &["send", "--no-encryption"],
        &paths,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("unencrypted"), "{stdout}");
    for (path, bytes) in &sent {
        let name = path.file_name().unwrap();
        assert_eq!(&std::fs::read(inbox.path().join(name)).unwrap(), bytes);
    }
    let out = ferry_to(
        &device,
        "Locked phone",
        &["note", "--plain"],
        &["still sealed"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("unencrypted"), "{stdout}");
    let got = wait_for(&events, |e| match e {
        Event::Note(NoteEvent::Received { text, .. }) => Some(text.clone()),
        _ => None,
    });
    assert_eq!(got, "still sealed");
}

/// `ferry send --to Twin EXTRA… FILES…`, finding the devices by probing `devices` only.
fn send_to_twin(
    devices: &[&LocalSendServer],
    extra: &[&str],
    files: &[(PathBuf, Vec<u8>)],
) -> Output {
    let tail: Vec<&std::ffi::OsStr> = extra
        .iter()
        .map(|a| a.as_ref())
        .chain(files.iter().map(|(p, _)| p.as_os_str()))
        .collect();
    ferry_probing(devices, "Twin", &["send"], &tail)
}

/// Anyone can announce a device under the name of another, with a certificate of its own or
/// with encryption off: two devices of one name are refused, each named by its address and
/// fingerprint (the plain one's called a claimed id), and nothing is sent to either, until
/// `--localsend-fingerprint` picks one (a beginning of at least 8 characters, any case).
#[test]
fn a_name_two_devices_take_is_refused_until_a_fingerprint_picks_one() {
    let src = tempfile::tempdir().unwrap();
    let inboxes = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let (impostor, _events) = plain_device(inboxes[0].path(), "Twin");
    let (real, _events) = device_on(
        [127, 0, 0, 1],
        inboxes[1].path(),
        "Twin",
        LocalSendProtocol::Https,
    );
    let (forger, _events) = device_on(
        [127, 0, 0, 1],
        inboxes[2].path(),
        "Twin",
        LocalSendProtocol::Https,
    );
    let sent = files(src.path());
    let empty = |i: usize| names_in(inboxes[i].path()).is_empty();

    // A plain-HTTP device beside one with a certificate, and two with certificates.
    for (devices, extra) in [
        (vec![&impostor, &real], vec!["--no-encryption"]),
        (vec![&real, &forger], vec![]),
    ] {
        let out = send_to_twin(&devices, &extra, &sent);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("several LocalSend devices are called \"Twin\""),
            "{stderr}"
        );
        assert!(stderr.contains("--localsend-fingerprint"), "{stderr}");
        for device in devices {
            assert!(
                stderr.contains(&device.local_addr().to_string()),
                "{stderr}"
            );
        }
        assert!(stderr.contains(real.fingerprint()), "{stderr}");
        assert!((0..3).all(empty), "nothing is sent to either");
    }
    let out = send_to_twin(&[&impostor, &real], &[], &sent);
    assert!(
        text(&out).1.contains("(claimed, no certificate)"),
        "{:?}",
        text(&out)
    );

    // Too short a beginning is refused before anything is looked for.
    let out = send_to_twin(
        &[&real, &forger],
        &["--localsend-fingerprint", "ab12"],
        &sent,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("at least its first 8 characters"),
        "{stderr}"
    );

    // The real one's fingerprint, its beginning in lower case: only it gets the files.
    let chosen = real.fingerprint()[..12].to_ascii_lowercase();
    let out = send_to_twin(
        &[&impostor, &real, &forger],
        &["--localsend-fingerprint", &chosen],
        &sent,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(empty(0) && empty(2));
    let mut got = names_in(inboxes[1].path());
    got.sort();
    let mut want: Vec<String> = sent
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(got, want);
    for (path, bytes) in &sent {
        let name = path.file_name().unwrap();
        assert_eq!(&std::fs::read(inboxes[1].path().join(name)).unwrap(), bytes);
    }

    // A fingerprint no device of that name has: none found, saying which was looked for.
    let out = send_to_twin(&[&real], &["--localsend-fingerprint", "00000000"], &sent);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("with a fingerprint beginning \"00000000\""),
        "{stderr}"
    );
}

/// A plain-HTTP device can call itself anything: its name reaches the terminal escaped,
/// refused or agreed.
#[test]
fn a_hostile_name_of_a_device_with_encryption_off_is_escaped() {
    let inbox = tempfile::tempdir().unwrap();
    let alias = "Evil\u{1b}]0;OWNED\u{7}\u{1b}[2J";
    let (device, _events) = plain_device(inbox.path(), alias);
    let out = ferry_to(&device, alias, &["note"], &["hi"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("has encryption turned off"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let out = ferry_to(&device, alias, &["note", "--plain"], &["hi"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sending the note unencrypted"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "{stdout:?}{stderr:?}"
    );
}
