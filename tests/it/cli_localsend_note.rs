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
        stdout.contains("sent to LocalSend device Desk phone"),
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
