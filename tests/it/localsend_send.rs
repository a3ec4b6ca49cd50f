//! Sending to LocalSend devices (issue 16, milestone 2): Ferry's LocalSend sender against
//! Ferry's own LocalSend receiver (written from LocalSend's protocol documentation and
//! tested against it in `localsend.rs`), both in-process on 127.0.0.1 port 0 with temp
//! folders: files whole on disk, declines, busy, PIN, cancel, text messages.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{
    CancelToken, Event, EventSink, FailureKind, NoteEvent, Security, ServerEvent, TransferEvent,
    event_channel,
};
use ferry::localsend::{
    CertIdentity, LocalSendConfig, LocalSendSendError, LocalSendSender, LocalSendServer,
    LocalSendTarget,
};
use ferry::transfer::{AcceptPolicy, Decision, FileOutcome, OutgoingFile};

use crate::util::{data, names_in, wait_for};

fn receiver(
    dir: &Path,
    policy: AcceptPolicy,
    pin: Option<&str>,
) -> (LocalSendServer, Receiver<Event>) {
    let identity = CertIdentity::generate().expect("certificate");
    let mut config = LocalSendConfig::new(dir.to_path_buf(), "Receiver", identity);
    config.bind = "127.0.0.1".parse().expect("ip");
    config.port = 0;
    config.policy = policy;
    config.pin = pin.map(str::to_owned);
    config.idle_timeout = Duration::from_secs(5);
    config.fsync = false;
    let (sink, events) = event_channel(None);
    let server = LocalSendServer::start(config, sink).expect("LocalSend server starts");
    (server, events)
}

fn target(server: &LocalSendServer) -> LocalSendTarget {
    LocalSendTarget {
        addr: server.local_addr(),
        fingerprint: server.fingerprint().to_owned(),
        alias: "Receiver".into(),
        device_type: "desktop".into(),
        protocol: ferry::localsend::LocalSendProtocol::Https,
    }
}

fn sender() -> LocalSendSender {
    LocalSendSender::new(
        CertIdentity::generate().expect("certificate"),
        "Ferry sender",
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> OutgoingFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    OutgoingFile::new(path)
}

fn send(sender: &LocalSendSender, target: &LocalSendTarget, files: &[OutgoingFile]) -> Sent {
    let (sink, events) = event_channel(None);
    let result = sender.send_files(target, files, &sink, &CancelToken::new());
    drop(sink);
    (result, events.try_iter().collect())
}

/// Waits until the folder holds exactly `want` (sorted), or panics at the deadline.
fn wait_folder(dir: &Path, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = names_in(dir);
        if names == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "folder holds {names:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn failures(events: &[Event]) -> Vec<FailureKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn files_with_chinese_names_arrive_whole_with_localsend_rows() {
    let out = tempfile::tempdir().expect("tempdir");
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, _events) = receiver(inbox.path(), AcceptPolicy::Everyone, None);
    let big = data(700 * 1024 + 3, 1);
    let small = b"hello".to_vec();
    let files = [
        write(out.path(), "照片 一.bin", &big),
        write(out.path(), "notes.txt", &small),
    ];
    let (result, events) = send(&sender(), &target(&server), &files);
    let outcomes = result.expect("sent");
    assert_eq!(
        outcomes,
        [FileOutcome::SentUnverified, FileOutcome::SentUnverified]
    );
    wait_folder(inbox.path(), &["notes.txt", "照片 一.bin"]);
    assert_eq!(
        std::fs::read(inbox.path().join("照片 一.bin")).expect("read"),
        big
    );
    assert_eq!(
        std::fs::read(inbox.path().join("notes.txt")).expect("read"),
        small
    );
    // Every file has a row naming the device (pinned fingerprint) and a finish.
    for file in &files {
        let started = events.iter().find_map(|e| match e {
            Event::Transfer(TransferEvent::Started {
                id,
                security,
                bytes_total,
                ..
            }) if *id == file.id => Some((security.clone(), *bytes_total)),
            _ => None,
        });
        let (security, total) = started.expect("started");
        assert_eq!(
            security,
            Security::LocalSend {
                alias: "Receiver".into(),
                device_type: "desktop".into(),
                fingerprint: server.fingerprint().into(),
                encrypted: true,
            }
        );
        assert_eq!(total, std::fs::metadata(&file.path).expect("stat").len());
        assert!(events.iter().any(|e| matches!(e,
            Event::Transfer(TransferEvent::Finished { id, .. }) if *id == file.id)));
    }
}

#[test]
fn a_wrong_fingerprint_is_refused_before_anything_is_sent() {
    let out = tempfile::tempdir().expect("tempdir");
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, _events) = receiver(inbox.path(), AcceptPolicy::Everyone, None);
    let mut wrong = target(&server);
    wrong.fingerprint = "00".repeat(32);
    let files = [write(out.path(), "a.bin", b"abc")];
    let (result, events) = send(&sender(), &wrong, &files);
    let err = result.expect_err("must not send to an impostor");
    assert!(
        matches!(err, LocalSendSendError::Unreachable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fingerprint"), "{err}");
    assert_eq!(failures(&events), [FailureKind::Unreachable]);
    assert!(names_in(inbox.path()).is_empty());
}

/// What one send gave: its result and the events it reported.
type Sent = (Result<Vec<FileOutcome>, LocalSendSendError>, Vec<Event>);

/// Starts a send on a thread; returns its join handle once the receiver asks its user.
fn send_and_wait_offer(
    server_events: &Receiver<Event>,
    target: LocalSendTarget,
    file: OutgoingFile,
) -> (std::thread::JoinHandle<Sent>, u64) {
    let asking = std::thread::spawn(move || send(&sender(), &target, &[file]));
    let offer = wait_for(server_events, |e| match e {
        Event::Server(ServerEvent::OfferPending(offer)) => Some(offer.clone()),
        _ => None,
    });
    assert!(
        matches!(offer.security, Security::LocalSend { ref alias, .. } if alias == "Ferry sender")
    );
    (asking, offer.offer_id)
}

#[test]
fn declined_is_403_and_busy_is_409_with_clear_reasons() {
    let out = tempfile::tempdir().expect("tempdir");
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, server_events) = receiver(inbox.path(), AcceptPolicy::Ask, None);
    let first = write(out.path(), "a.bin", b"first");
    let (asking, offer_id) = send_and_wait_offer(&server_events, target(&server), first);

    // While the receiver asks about the first, a second sender is told the device is busy.
    let second = [write(out.path(), "b.bin", b"second")];
    let (busy, events) = send(&sender(), &target(&server), &second);
    let busy = busy.expect_err("busy");
    assert!(matches!(busy, LocalSendSendError::Busy), "{busy}");
    assert!(busy.to_string().contains("busy"), "{busy}");
    assert_eq!(failures(&events), [FailureKind::ReceiverFailed]);

    server.answer(offer_id, Decision::Decline);
    let (declined, events) = asking.join().expect("thread");
    let declined = declined.expect_err("declined");
    assert!(
        matches!(declined, LocalSendSendError::Declined),
        "{declined}"
    );
    assert!(declined.to_string().contains("declined"), "{declined}");
    assert_eq!(failures(&events), [FailureKind::Declined]);
    assert!(names_in(inbox.path()).is_empty());
}

#[test]
fn a_pin_is_asked_for_refused_when_wrong_and_accepted_when_right() {
    let out = tempfile::tempdir().expect("tempdir");
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, _events) = receiver(inbox.path(), AcceptPolicy::Everyone, Some("4711"));
    let files = [write(out.path(), "a.bin", b"pinned")];
    let mut sender = sender();
    let (result, _) = send(&sender, &target(&server), &files);
    assert!(
        matches!(result, Err(LocalSendSendError::PinRequired)),
        "{result:?}"
    );
    sender.pin = Some("0000".into());
    let (result, _) = send(&sender, &target(&server), &files);
    assert!(
        matches!(result, Err(LocalSendSendError::WrongPin)),
        "{result:?}"
    );
    sender.pin = Some("4711".into());
    let (result, _) = send(&sender, &target(&server), &files);
    assert_eq!(result.expect("sent"), [FileOutcome::SentUnverified]);
    wait_folder(inbox.path(), &["a.bin"]);
    // Wrong tries (counted afresh after a right one) use up the address's allowance: then
    // even the right PIN gets 429.
    sender.pin = Some("1234".into());
    for _ in 0..ferry::localsend::MAX_PIN_TRIES {
        let (result, _) = send(&sender, &target(&server), &files);
        assert!(
            matches!(result, Err(LocalSendSendError::WrongPin)),
            "{result:?}"
        );
    }
    sender.pin = Some("4711".into());
    let (result, _) = send(&sender, &target(&server), &files);
    assert!(
        matches!(result, Err(LocalSendSendError::TooManyPinTries)),
        "{result:?}"
    );
}

#[test]
fn cancel_mid_upload_leaves_nothing_and_frees_the_device() {
    let out = tempfile::tempdir().expect("tempdir");
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, server_events) = receiver(inbox.path(), AcceptPolicy::Everyone, None);
    // Sparse: large enough that it cannot be done before the cancel lands, yet no disk.
    let path: PathBuf = out.path().join("huge.bin");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(2 << 30))
        .expect("sparse file");
    let file = OutgoingFile::new(path);
    let (sink, events): (EventSink, _) = event_channel(None);
    let cancel = CancelToken::new();
    let sending = {
        let (cancel, target, file) = (cancel.clone(), target(&server), file.clone());
        std::thread::spawn(move || sender().send_files(&target, &[file], &sink, &cancel))
    };
    wait_for(&events, |e| match e {
        // Well past what buffers hold: the receiver is writing the file by now.
        Event::Transfer(TransferEvent::Progress { bytes_done, .. }) if *bytes_done > 4 << 20 => {
            Some(())
        }
        _ => None,
    });
    cancel.cancel();
    let outcomes = sending.join().expect("thread").expect("prepared");
    assert_eq!(outcomes, [FileOutcome::Cancelled]);
    wait_for(&events, |e| match e {
        Event::Transfer(TransferEvent::Cancelled { id, by_peer: false }) if *id == file.id => {
            Some(())
        }
        _ => None,
    });
    // The receiver saw the file end without keeping it.
    wait_for(&server_events, |e| match e {
        Event::Transfer(TransferEvent::Failed { .. } | TransferEvent::Cancelled { .. }) => Some(()),
        _ => None,
    });
    wait_folder(inbox.path(), &[]);
    // `cancel?sessionId` freed the device: the next send is not told it is busy.
    let small = [write(out.path(), "after.bin", b"after")];
    let (result, _) = send(&sender(), &target(&server), &small);
    assert_eq!(result.expect("sent"), [FileOutcome::SentUnverified]);
    wait_folder(inbox.path(), &["after.bin"]);
}

#[test]
fn a_text_message_becomes_a_note_on_the_device() {
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, server_events) = receiver(inbox.path(), AcceptPolicy::Everyone, None);
    sender()
        .send_text(&target(&server), "你好 from Ferry", &CancelToken::new())
        .expect("text sent");
    let (text, security) = wait_for(&server_events, |e| match e {
        Event::Note(NoteEvent::Received { text, security, .. }) => {
            Some((text.clone(), security.clone()))
        }
        _ => None,
    });
    assert_eq!(text, "你好 from Ferry");
    assert!(matches!(security, Security::LocalSend { alias, .. } if alias == "Ferry sender"));
    assert!(names_in(inbox.path()).is_empty(), "a text is not a file");
}

#[test]
fn a_register_probe_finds_the_device_by_its_certificate() {
    let inbox = tempfile::tempdir().expect("tempdir");
    let (server, _events) = receiver(inbox.path(), AcceptPolicy::Everyone, None);
    let sender = sender();
    let device = sender
        .probe(server.local_addr(), Duration::from_secs(5))
        .expect("probe answered");
    assert_eq!(device.alias, "Receiver");
    assert_eq!(device.fingerprint, server.fingerprint());
    assert_eq!(device.addr, server.local_addr());
    assert_eq!(device.how, ["probe"]);
    // The receiver now knows the prober too (register goes both ways).
    assert!(
        server
            .devices()
            .iter()
            .any(|d| d.fingerprint == sender.identity.fingerprint()),
        "{:?}",
        server.devices()
    );
    // What the probe found is what a send pins.
    let out = tempfile::tempdir().expect("tempdir");
    let files = [write(out.path(), "probed.bin", b"probed")];
    let (result, _) = send(&sender, &LocalSendTarget::from(&device), &files);
    assert_eq!(result.expect("sent"), [FileOutcome::SentUnverified]);
    wait_folder(inbox.path(), &["probed.bin"]);
}
