//! The real `ferry` binary end to end: `ferry serve` in the background, `ferry send` to it.

use std::net::TcpListener;
use std::path::PathBuf;

use crate::util::*;

#[test]
fn serve_and_send_verified_with_msg_and_exit_zero() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("计算机五大.txt");
    let b = src.path().join("b.bin");
    std::fs::write(&a, "运算器 控制器 存储器 输入设备 输出设备").unwrap();
    std::fs::write(&b, data(1_500_000, 11)).unwrap();
    let (_serve, addr, lines) = spawn_serve(dst.path(), &[]);

    let out = ferry()
        .args(["send", "--to", &addr.to_string(), "--msg", "你好, Ferry"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exact lines: a substring "verified" would also match "sent, unverified", i.e. a silent
    // fall-back to plain mode.
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("{}: verified, saved as \"计算机五大.txt\"", a.display()),
            format!("{}: verified, saved as \"b.bin\"", b.display()),
        ],
        "{stdout}"
    );

    // The server prints each file and, like the original, the sender's message.
    wait_line(&lines, "计算机五大.txt");
    wait_line(&lines, "你好, Ferry");
    wait_line(&lines, "b.bin");
    assert_eq!(
        std::fs::read(dst.path().join("b.bin")).unwrap(),
        std::fs::read(&b).unwrap()
    );
    assert_eq!(
        std::fs::read(dst.path().join("计算机五大.txt")).unwrap(),
        std::fs::read(&a).unwrap()
    );
}

#[test]
fn send_to_a_closed_port_exits_non_zero_with_a_clear_error() {
    let src = tempfile::tempdir().unwrap();
    let a = src.path().join("a.txt");
    std::fs::write(&a, "x").unwrap();
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ferry()
        .args(["send", "--to", &format!("127.0.0.1:{port}")])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn send_a_missing_file_names_it_and_sends_nothing() {
    let dst = tempfile::tempdir().unwrap();
    let (_serve, addr, _lines) = spawn_serve(dst.path(), &[]);
    let out = ferry()
        .env_remove("RUST_LOG")
        .args(["send", "--to", &addr.to_string(), "/nonexistent/file.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ferry: cannot send /nonexistent/file.txt: no such file\nferry: nothing was sent\n"
    );
}

#[test]
fn send_plain_to_a_plain_server_says_unverified_and_exits_zero() {
    let src = tempfile::tempdir().unwrap();
    let a = src.path().join("a.bin");
    std::fs::write(&a, data(700_000, 12)).unwrap();
    let (addr, received) = plain_server();
    let out = ferry()
        .args(["send", "--plain", "--to", &addr.to_string()])
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: sent, unverified\n", a.display())
    );
    let (_, bytes) = received.recv_timeout(DEADLINE).unwrap();
    assert_eq!(bytes, std::fs::read(&a).unwrap());
}

#[test]
fn serve_on_a_port_in_use_exits_one() {
    let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = ferry()
        .args(["serve", "--bind", "127.0.0.1", "--port", &port, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
}

/// A blank `--name` is refused before anything listens (it would be announced, told to
/// LocalSend apps and to senders as an empty name).
#[test]
fn serve_refuses_a_blank_name() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = ferry()
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--name",
            "  ",
        ])
        .args(["--no-discovery", "--no-localsend", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = line_channel(child.stderr.take().unwrap());
    // Killed if it serves (the test then fails below).
    let mut child = ChildGuard(child);
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ferry serve --name \"  \" kept serving"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let said: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(1), "{said:#?}");
    assert!(
        said.iter().any(|l| l.contains("--name needs a name")),
        "{said:#?}"
    );
}

/// `ferry send --no-encryption` to `ferry serve --require-encryption`: its stdout and exit
/// code, and the file it named.
fn send_unencrypted_to_a_receiver_requiring_encryption() -> (Option<i32>, String, PathBuf) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("a.txt");
    std::fs::write(&a, "x").unwrap();
    let (_serve, addr, _lines) = spawn_serve(dst.path(), &["--require-encryption"]);
    let out = ferry()
        .args(["send", "--no-encryption", "--to", &addr.to_string()])
        .arg(&a)
        .output()
        .unwrap();
    assert!(names_in(dst.path()).is_empty());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout, a)
}

/// README: `send` prints one line per file on stdout, for scripts. A refused file's reason
/// was printed twice there (its progress bar's "NAME: failed: ..." and then its result line).
#[test]
fn a_refused_file_gets_one_result_line_on_stdout() {
    let (code, stdout, a) = send_unencrypted_to_a_receiver_requiring_encryption();
    assert_eq!(code, Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: declined: the receiver requires encryption",
            a.display()
        )),
        "{stdout}"
    );
}

/// A Ferry sender that chose `--no-encryption` is refused by `serve --require-encryption`
/// with advice it can follow: "send from Ferry" alone told it to do what it already did.
#[test]
fn a_receiver_requiring_encryption_tells_an_unencrypted_ferry_sender_to_turn_it_on() {
    let (_, stdout, _) = send_unencrypted_to_a_receiver_requiring_encryption();
    assert!(
        stdout.contains("plain senders cannot encrypt (send from Ferry, with encryption on)"),
        "{stdout}"
    );
}

#[test]
fn serve_stops_cleanly_when_the_reader_of_its_output_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("in");
    let serve = [
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--no-localsend",
        "--no-discovery",
        "--dir",
        downloads.to_str().unwrap(),
    ];
    ends_cleanly_without_a_reader(&serve, |addr| {
        // An upload, whose line meets the closed pipe (if no earlier line did).
        let file = dir.path().join("note.txt");
        std::fs::write(&file, "hello").unwrap();
        let _ = ferry()
            .args(["send", "--to", &addr.to_string()])
            .arg(&file)
            .output();
    });
}

#[test]
fn listen_stops_cleanly_when_the_reader_of_its_output_goes_away() {
    let listen = ["listen", "--bind", "127.0.0.1", "--port", "0"];
    ends_cleanly_without_a_reader(&listen, |addr| {
        // A note, whose line meets the closed pipe.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.send_to("hello".as_bytes(), addr).unwrap();
    });
}

/// Runs `ferry ARGS`, whose first stdout line names its address; the reader takes that
/// line and goes (as `| head -1` does); `poke` then makes it print. It must end by itself,
/// as on Ctrl-C: no panic, success.
///
/// `poke` is repeated until it ends: a child another test is spawning at that moment holds
/// a copy of the pipe's reading end between its fork and its exec, so one line can still be
/// taken by the pipe; the next meets the closed pipe.
fn ends_cleanly_without_a_reader(args: &[&str], poke: impl Fn(std::net::SocketAddr)) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = ferry()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = line_channel(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    // Killed if the test fails before it ends by itself.
    let mut child = ChildGuard(child);
    let mut stdout = std::io::BufReader::new(stdout);
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let addr = first
        .split_whitespace()
        .find_map(|word| word.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut next_poke = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        let now = std::time::Instant::now();
        assert!(
            now < deadline,
            "ferry {args:?} kept running with nobody reading it"
        );
        if now >= next_poke {
            poke(addr);
            next_poke = now + std::time::Duration::from_millis(500);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Everything it said, to the end of its stderr.
    let mut said = Vec::new();
    while let Ok(line) = stderr.recv_timeout(DEADLINE) {
        said.push(line);
    }
    assert!(!said.iter().any(|l| l.contains("panicked")), "{said:#?}");
    assert!(status.success(), "{status:?}: {said:#?}");
}

#[test]
fn send_succeeds_with_nobody_reading_its_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let (server, events) = start_server(&dir.path().join("in"));
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello").unwrap();
    // Both streams are pipes whose reading end is already closed: every write meets EPIPE.
    let dead_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let output = ferry()
        .args([
            "send",
            "--no-encryption",
            "--to",
            &server.local_addr().to_string(),
        ])
        .arg(&file)
        .stdout(dead_pipe())
        .stderr(dead_pipe())
        .status()
        .unwrap();
    assert!(output.success(), "{output:?}");
    let (finished, failed) = wait_files(&events, 1);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(finished[0].1, "verified: {finished:?}");
    assert_eq!(names_in(&dir.path().join("in")), ["hello.txt"]);
}

#[test]
fn interface_flags_before_a_command_are_the_commands() {
    // Typed before `doctor`, the flag is doctor's (and wins over the suite's
    // FERRY_ONLY_INTERFACE=lo, as a flag after the command does): no interface is used.
    let out = ferry()
        .args([
            "--only-interface",
            "nothing-here",
            "doctor",
            "--wait",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // A name the machine has not is said so (a typo would otherwise leave discovery
    // nowhere without a word).
    let missing = "interface nothing-here: chosen, but this machine has no interface of that name";
    assert!(text.contains(missing), "{text}");
    let interfaces: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("interface ") && !l.starts_with("interface nothing-here:"))
        .collect();
    assert!(
        !interfaces.is_empty()
            && interfaces
                .iter()
                .all(|l| l.ends_with("ignored: not among the chosen interfaces")),
        "{text}"
    );
    // Before a command that does no discovery: refused, not silently dropped.
    let out = ferry()
        .args(["--only-interface", "lo", "listen", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not with listen"), "{said}");
}

/// `--only-interface ""` (a script's unset variable, a stray comma) was read as no name, and
/// no name as every interface: the opposite of what the flag asks. A blank name is refused;
/// a blank FERRY_ONLY_INTERFACE is unset, as an empty variable usually is.
#[test]
fn a_blank_interface_name_is_refused_and_a_blank_variable_is_unset() {
    for args in [
        &["peers", "--wait", "0.2", "--only-interface", ""][..],
        &["peers", "--wait", "0.2", "--only-interface", "lo,"],
        &["--only-interface", " ", "doctor", "--wait", "0.2"],
        &["doctor", "--wait", "0.2", "--interface", ""],
    ] {
        let out = ferry().args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("expected an interface's name"),
            "{args:?}: {said}"
        );
    }
    // (A command that sends nothing: unset, the variable would let discovery use every
    // interface of this machine.)
    for blank in [" ", ",", " , "] {
        let out = ferry()
            .env("FERRY_ONLY_INTERFACE", blank)
            .args(["completions", "bash"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{blank:?}: {out:?}");
    }
}
