//! `ferry note --to ALIAS` for a LocalSend device: the note goes as LocalSend's text message
//! (found by a register probe, the device's certificate pinned), and an alias no one answers
//! to is a clear error.

use std::time::Duration;

use ferry::events::{Event, NoteEvent, Security, event_channel};
use ferry::localsend::{CertIdentity, LocalSendConfig, LocalSendServer};
use ferry::transfer::AcceptPolicy;

use crate::util::{ferry, names_in, wait_for};

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
    assert!(
        stderr.contains("no LocalSend device is called \"Nobody here\""),
        "{stderr}"
    );
}
