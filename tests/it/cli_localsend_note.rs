//! The CLI towards a LocalSend device: `ferry note --to ALIAS` sends LocalSend's text message
//! (found by a register probe, the device's certificate pinned; an alias no one answers to
//! is a clear error), and Ctrl-C during `ferry send --to ALIAS` cancels the session on the
//! device instead of killing the process mid-upload.

use std::time::{Duration, Instant};

use ferry::events::{Event, NoteEvent, Security, TransferEvent, event_channel};
use ferry::localsend::{CertIdentity, LocalSendConfig, LocalSendServer};
use ferry::transfer::AcceptPolicy;

use crate::util::{ChildGuard, DEADLINE, ferry, names_in, wait_for};

#[test]
fn ferry_note_to_a_localsend_alias_arrives_as_its_text_message() {
    let inbox = tempfile::tempdir().unwrap();
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(inbox.path().to_path_buf(), "Desk phone", identity);
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.idle_timeout = Duration::from_secs(5);
    let (sink, events) = event_channel(None);
    let device = LocalSendServer::start(config, sink).expect("LocalSend server starts");

    let out = ferry()
        .args(["note", "--to", "Desk phone", "--no-localsend-sweep"])
        .args(["--localsend-probe", &device.local_addr().to_string()])
        .arg("你好，LocalSend")
        .output()
        .expect("ferry note runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "sent to LocalSend device Desk phone at {} (fingerprint {}; LocalSend has no replies)",
            device.local_addr(),
            device.fingerprint()
        )),
        "{stdout}"
    );
    let (text, security) = wait_for(&events, |e| match e {
        Event::Note(NoteEvent::Received { text, security, .. }) => {
            Some((text.clone(), security.clone()))
        }
        _ => None,
    });
    assert_eq!(text, "你好，LocalSend");
    assert!(
        matches!(security, Security::LocalSend { .. }),
        "{security:?}"
    );
    assert!(names_in(inbox.path()).is_empty(), "a text is not a file");

    let out = ferry()
        .args(["note", "--to", "Nobody here", "--no-localsend-sweep"])
        .args(["--localsend-wait", "0.2", "hello"])
        .output()
        .expect("ferry note runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The Ferry search's answer first, then the LocalSend one's.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_default();
    assert!(
        !line.starts_with("ferry: no LocalSend")
            && line.ends_with("; no LocalSend device is called \"Nobody here\" either"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_during_a_send_to_a_localsend_alias_cancels_it_on_the_device() {
    let inbox = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(inbox.path().to_path_buf(), "Desk phone", identity);
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.policy = AcceptPolicy::Everyone;
    config.fsync = false;
    let (sink, events) = event_channel(None);
    let device = LocalSendServer::start(config, sink).expect("LocalSend server starts");
    // Sparse: far more than can arrive before the Ctrl-C lands, yet no disk.
    let huge = out.path().join("huge.bin");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(4 << 30))
        .expect("sparse file");
    let mut sender = ChildGuard(
        ferry()
            .args(["send", "--to", "Desk phone", "--no-localsend-sweep"])
            .args(["--localsend-probe", &device.local_addr().to_string()])
            .arg(&huge)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ferry send starts"),
    );
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) if *bytes_done > 4 << 20 => {
            Some(())
        }
        _ => None,
    });
    let pid = libc::pid_t::try_from(sender.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = sender.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ferry send did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut sender.0.stdout.take().unwrap(), &mut stdout).unwrap();
    // Exited on its own (not killed by the signal), saying what happened to the file.
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("huge.bin: cancelled"), "{stdout}");
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Cancelled { .. } | TransferEvent::Failed { .. }) => Some(()),
        _ => None,
    });
    assert!(
        names_in(inbox.path()).is_empty(),
        "nothing kept: {:?}",
        names_in(inbox.path())
    );
}

#[test]
fn a_name_that_is_neither_device_nor_host_says_it_is_looking_and_why_each_reading_failed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"x").unwrap();
    let out = ferry()
        .args(["send", "--to", "desk.invalid", "--no-localsend-sweep"])
        .args(["--localsend-wait", "0.2"])
        .arg(&file)
        .output()
        .expect("ferry send runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Said once, before the seconds of searching, so a typo does not look like a hang.
    let looking: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("looking for a device named \"desk.invalid\""))
        .collect();
    assert_eq!(looking.len(), 1, "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_default();
    // Each reading of the word, and why it failed: a Ferry device, a host, a LocalSend device.
    let device = error.find("no device named \"desk.invalid\"");
    let host = error.find("; as a host name: cannot resolve host \"desk.invalid\"");
    let localsend = error.find("; no LocalSend device is called \"desk.invalid\" either");
    assert!(
        device.is_some() && device < host && host < localsend,
        "{stderr}"
    );
}
