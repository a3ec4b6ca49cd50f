//! A hostile LAN peer against the speed test, the trusted-device names and pairing: a speed
//! test that trickles its bytes to hold a connection slot, one that goes on and on, one from
//! an unencrypted sender to a receiver that requires encryption, speed tests one after another
//! that each made the receiver write and sync its disk; device names that look like a trusted
//! one without being it (fullwidth letters, CJK compatibility ideographs, Kangxi radicals,
//! Cyrillic letters, katakana, an invisible Hangul filler, a capital I for an l); a pairing
//! code's tries spent by someone else; and a hostile receiver's words in the window's speed
//! test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ferry::protocol::{
    ReceiverMsg, SenderMsg, encode_chunk_header, encode_receiver_msg, encode_sender_msg,
};
use ferry::transfer::{AcceptPolicy, MinRate, ServerConfig};

use crate::util::*;

fn probe_request(stream: &mut TcpStream, max_bytes: u64) {
    stream
        .write_all(&encode_sender_msg(&SenderMsg::Probe { max_bytes }).unwrap())
        .unwrap();
}

/// Writes `bytes` every `gap` until the server hangs up (true) or the test's deadline passes
/// (false).
fn write_until_dropped(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if stream.write_all(bytes).is_err() {
            return true;
        }
        thread::sleep(gap); // the attack's own pace, not a synchronisation
    }
    false
}

/// A speed test's bytes are data like a file's: one trickled far below the data-rate floor
/// is dropped within the window, so such tests cannot hold every slot (they were read
/// forever, one byte per idle timeout).
#[test]
fn a_trickled_speed_test_is_dropped_like_a_trickled_upload() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.min_rate = MinRate {
        bytes_per_sec: 1024,
        window: Duration::from_secs(2),
    };
    let (server, events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    probe_request(&mut stream, 1 << 20);
    assert!(matches!(read_answer(&mut stream), ReceiverMsg::ProbeReady));
    stream.write_all(&encode_chunk_header(64 * 1024)).unwrap();
    let dropped = write_until_dropped(&mut stream, b"x", Duration::from_millis(200));
    assert!(
        dropped,
        "a speed test at 5 bytes/s kept its slot for {DEADLINE:?}"
    );
    let reason = wait_connection_error(&events);
    assert!(reason.contains("1024 bytes/s"), "{reason}");
}

/// How long a speed test goes on is the receiver's to bound: one that keeps sending (fast
/// enough for the rate floor, within the bytes it announced) is ended with the reason (it
/// went on for as long as its sender liked, up to 64 GiB).
#[test]
fn a_speed_test_that_goes_on_too_long_is_ended_by_the_receiver() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.speed_test_max = Duration::from_secs(1);
    let (server, events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    probe_request(&mut stream, 1 << 30);
    assert!(matches!(read_answer(&mut stream), ReceiverMsg::ProbeReady));
    let chunk = [encode_chunk_header(4096).as_slice(), &[7u8; 4096]].concat();
    // 400 KiB/s: well above the rate floor.
    let ended = write_until_dropped(&mut stream, &chunk, Duration::from_millis(10));
    assert!(ended, "a speed test went on for {DEADLINE:?}");
    let reason = wait_connection_error(&events);
    assert!(reason.contains("a speed test longer than 1 s"), "{reason}");
}

/// `--require-encryption` refuses plain senders' uploads, and their speed tests too (a plain
/// Ferry sender's test was run: hashed, and the disk written).
#[test]
fn a_receiver_that_requires_encryption_refuses_an_unencrypted_speed_test() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.keyring = Some(test_receiver_keyring());
    config.require_encryption = true;
    let (server, _events) = start_server_with(config);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    probe_request(&mut stream, 1 << 20);
    match read_answer(&mut stream) {
        ReceiverMsg::Decline { reason, .. } => {
            assert!(reason.contains("requires encryption"), "{reason}");
        }
        other => panic!("an unencrypted speed test was taken: {other:?}"),
    }
}

/// Bytes this process has written (`wchar` of `/proc/PID/io`: every thread's, dead or alive).
fn bytes_written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wchar in {io}"))
}

/// A speed test of no bytes: the receiver's disk and hashing figures.
fn empty_speed_test(addr: std::net::SocketAddr) -> (u64, u64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    probe_request(&mut stream, 0);
    assert!(matches!(read_answer(&mut stream), ReceiverMsg::ProbeReady));
    stream.write_all(&encode_chunk_header(0)).unwrap();
    match read_answer(&mut stream) {
        ReceiverMsg::ProbeResult {
            disk_bytes_per_sec,
            hash_bytes_per_sec,
            ..
        } => (disk_bytes_per_sec, hash_bytes_per_sec),
        other => panic!("{other:?}"),
    }
}

/// A speed test of no bytes costs its sender nothing, and each made the receiver write and
/// sync up to 256 MiB: a peer repeating it kept the disk busy for free. Tests close together
/// share one disk measurement.
#[test]
fn speed_tests_one_after_another_write_the_disk_once() {
    let dst = tempfile::tempdir().unwrap();
    let (serve, addr, _lines) = spawn_serve(dst.path(), &["--no-discovery"]);
    let pid = serve.0.id();
    let before = bytes_written(pid);
    let disks: Vec<u64> = (0..4).map(|_| empty_speed_test(addr).0).collect();
    let written = bytes_written(pid) - before;
    assert!(
        written < 300 << 20,
        "four speed tests wrote {written} bytes (disk figures {disks:?})"
    );
    assert!(disks.iter().all(|d| *d == disks[0]), "{disks:?}");
    assert!(names_in(dst.path()).is_empty());
}

/// The most memory this process has held (`VmHWM` of `/proc/PID/status`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// Each speed test also measured this machine's hashing on 64 MiB of its own: eight empty
/// tests at once (one address's share of the slots) took half a GiB. They share one
/// measurement now, as they share the disk's.
#[test]
fn speed_tests_at_once_take_the_memory_of_one() {
    let dst = tempfile::tempdir().unwrap();
    let (serve, addr, _lines) = spawn_serve(dst.path(), &["--no-discovery"]);
    let pid = serve.0.id();
    let before = peak_memory(pid);
    let testers: Vec<_> = (0..8)
        .map(|_| thread::spawn(move || empty_speed_test(addr).1))
        .collect();
    let hashes: Vec<u64> = testers.into_iter().map(|t| t.join().unwrap()).collect();
    let grown = peak_memory(pid).saturating_sub(before);
    assert!(
        grown < 200 << 20,
        "eight empty speed tests took {grown} bytes more (hashing figures {hashes:?})"
    );
    assert!(
        hashes.iter().all(|h| *h == hashes[0] && *h > 0),
        "{hashes:?}"
    );
}

/// A device whose name only looks like a trusted one (to a person reading the window or the
/// terminal) is that name under another key: refused, never shown or pinned beside it.
#[test]
fn names_that_look_like_a_trusted_name_are_refused() {
    let homes: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let desk = device(homes[0].path(), "desk");
    for (i, name) in ["laptop", "李明", "人事部", "王工"].into_iter().enumerate() {
        let real = device(homes[i + 1].path(), name);
        desk.trust
            .pin(name, real.identity.public_key(), None)
            .unwrap();
    }
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server, events) = {
        let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
        config.keyring = Some(desk.clone());
        config.policy = AcceptPolicy::Everyone;
        start_server_with(config)
    };
    let file = src.path().join("a.bin");
    std::fs::write(&file, data(1000, 3)).unwrap();
    for lookalike in [
        "ｌａｐｔｏｐ",   // fullwidth letters
        "l\u{0430}ptop",  // a Cyrillic а
        "Iaptop",         // a capital I for the l
        "lap\u{3164}top", // the Hangul filler, drawn as nothing
        "laptop\u{FE0F}", // a variation selector
        "\u{F9E1}明",     // the CJK compatibility ideograph of 李
        "\u{2F08}事部",   // the Kangxi radical 人
        "王エ",           // a katakana E for 工
    ] {
        let home = tempfile::tempdir().unwrap();
        let impostor = device(home.path(), lookalike);
        let (failure, reason) =
            crate::secure_transfer::refused(server.local_addr(), &impostor, &file, &events);
        assert!(reason.contains("different key"), "{lookalike:?}: {reason}");
        // An honest device refused so is not left looking for its own name among the
        // trusted ones: the reason says its name looks like one, and the way out (on both
        // sides; the sender is not told which trusted name).
        assert!(
            reason.contains("a name that looks the same") && reason.contains("Rename"),
            "{lookalike:?}: {reason}"
        );
        let told = failure.detail.as_deref().unwrap_or_default();
        assert!(told.contains("Rename"), "{lookalike:?}: {told}");
        assert!(!told.contains("\"laptop\""), "{lookalike:?}: {told}");
    }
    assert!(names_in(dst.path()).is_empty());
    assert_eq!(desk.trust.devices().len(), 4);
    // A name that merely resembles one in spelling is a device of its own.
    let home = tempfile::tempdir().unwrap();
    let other = device(home.path(), "laptops");
    let outcomes = crate::secure_transfer::send(server.local_addr(), Some(&other), None, &[file]);
    assert!(outcomes[0].is_success(), "{outcomes:?}");
}

/// Anyone on the LAN can spend a pairing code's 3 tries (a denial of service, never a wrong
/// pairing): `serve --pair` says each try spent and, when none is left, that the code is
/// burnt and how to get a new one (it said only "handshake failed" three times, and the code
/// it had printed looked good still); the honest sender is told the code is burnt.
#[test]
fn serve_says_when_someone_spent_the_pairing_codes_tries() {
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, lines) = spawn_serve(dst.path(), &["--no-discovery", "--pair"]);
    let code = shown_code(&lines);
    for left in [2, 1] {
        spend_a_try(addr);
        wait_line(&lines, &format!("pairing code: {left} of 3 tries left"));
    }
    spend_a_try(addr);
    let burnt = wait_line(&lines, "pairing code burnt");
    assert!(burnt.contains("ferry serve --pair again"), "{burnt}");
    let (sent, text) = send_with_code(addr, &code);
    assert!(!sent, "{text}");
    assert!(text.contains("burnt"), "{text}");
    assert!(names_in(dst.path()).is_empty());
}

/// A code nobody used says it expired when its time is up, not only when a sender then tries
/// it (the user may be waiting at the other machine), once; a sender trying it then is told
/// why. (`--pair-secs`, a test flag, shortens the 10 minutes.)
#[test]
fn serve_says_when_its_pairing_code_expires() {
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, lines) = spawn_serve(
        dst.path(),
        &["--no-discovery", "--pair", "--pair-secs", "1"],
    );
    let code = shown_code(&lines);
    let expired = wait_line(&lines, "pairing code expired");
    assert!(expired.contains("ferry serve --pair again"), "{expired}");
    let (sent, text) = send_with_code(addr, &code);
    assert!(!sent, "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(names_in(dst.path()).is_empty());
    // Said once: the failed try above adds no second line.
    while let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(300)) {
        assert!(
            !line.starts_with("pairing code expired"),
            "said twice: {line}"
        );
    }
}

/// The code `serve --pair` printed.
fn shown_code(lines: &crossbeam_channel::Receiver<String>) -> String {
    wait_line(lines, "pairing code: ")
        .trim_start_matches("pairing code: ")
        .trim()
        .to_owned()
}

/// `ferry send --code CODE` of a one-byte file to `addr`: whether it succeeded, and what it
/// said (stderr, then stdout).
fn send_with_code(addr: std::net::SocketAddr, code: &str) -> (bool, String) {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    std::fs::write(&file, b"x").unwrap();
    let out = ferry()
        .args(["send", "--code", code, "--to", &addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// A peer that asks to pair, is told to go ahead, and hangs up without a guess.
pub(crate) fn spend_a_try(addr: std::net::SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let hello = SenderMsg::Secure {
        pairing: true,
        ciphers: Vec::new(),
        serves_on: None,
    };
    stream
        .write_all(&encode_sender_msg(&hello).unwrap())
        .unwrap();
    assert!(matches!(
        read_answer(&mut stream),
        ReceiverMsg::Secure { .. }
    ));
}

/// One frame off any stream (a socket, or the secure channel over it).
fn read_sender_msg(stream: &mut impl Read) -> SenderMsg {
    ferry::protocol::decode_sender_msg(&read_body(stream)).unwrap()
}

/// One frame's body, as read.
fn read_body(stream: &mut impl Read) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; ferry::protocol::decode_frame_len(prefix).unwrap()];
    stream.read_exact(&mut body).unwrap();
    body
}

/// The window's "Test speed" against a hostile receiver that declines with a terminal
/// escape, a bidi override and a line break: the window shows them as visible escapes, as
/// it does every peer's words (the speed test's reason was drawn raw).
#[test]
fn the_windows_speed_test_shows_a_hostile_receivers_words_escaped() {
    use crate::gui::{app, settings};
    use egui_kittest::kittest::Queryable;
    use ferry::secure::{Cipher, Mode, Transcript, rng::OsEntropy};
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let home = tempfile::tempdir().unwrap();
    let keyring = device(home.path(), "receiver");
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let hello = read_body(&mut stream);
        assert!(matches!(
            ferry::protocol::decode_sender_msg(&hello),
            Ok(SenderMsg::Secure { .. })
        ));
        let go = ReceiverMsg::Secure {
            cipher: Cipher::ChaChaPoly.wire_name().into(),
        };
        let go = encode_receiver_msg(&go).unwrap();
        stream.write_all(&go).unwrap();
        let mut channel = ferry::secure::accept_with(
            stream,
            &keyring.identity,
            Mode::Open,
            Cipher::ChaChaPoly,
            Transcript {
                hello: &hello,
                go_ahead: &go[4..],
            },
            &mut OsEntropy,
        )
        .unwrap();
        assert!(matches!(
            read_sender_msg(&mut channel),
            SenderMsg::Probe { .. }
        ));
        let decline = ReceiverMsg::Decline {
            reason: "no\u{1b}[2J \u{202e}txt.exe\nforged line".into(),
            offer_again: false,
        };
        channel
            .write_all(&encode_receiver_msg(&decline).unwrap())
            .unwrap();
        let _ = channel.close();
        let _ = channel.read_to_end(&mut Vec::new());
    });
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), vec![]);
    crate::speed::window_speed_test(&mut harness, &addr.to_string());
    receiver.join().unwrap();
    harness.get_by_label_contains("no\\u{1b}[2J \\u{202e}txt.exe\\nforged line");
    for raw in ["\u{1b}", "\u{202e}", "\n"] {
        assert!(
            harness.query_by_label_contains(raw).is_none(),
            "{raw:?} drawn raw"
        );
    }
}
