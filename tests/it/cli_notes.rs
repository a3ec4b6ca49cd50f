//! `ferry note`, `ferry listen` and `ferry chat` end to end: the real binary, real UDP
//! sockets on 127.0.0.1, raw `std::net::UdpSocket` peers standing in for plain peers.
//! Readiness comes from the "listening on ADDR" line; every wait has a deadline; every child
//! is killed when its test ends, pass or fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the child when dropped, so no test leaves a `ferry` process behind.
struct Running {
    child: Child,
    stdout: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `ferry ARGS` with stdout read line by line on a thread; stdin piped.
    fn start(args: &[&str]) -> Self {
        let mut child = crate::util::ferry()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stdout: rx }
    }

    /// The next stdout line, or a panic (with stderr) after [`TIMEOUT`].
    fn next_line(&mut self) -> String {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!(
                    "no line from ferry on stdout ({e}); stderr: {}",
                    self.stderr()
                );
            }
        }
    }

    /// The address from the "listening on ADDR" line the command starts with.
    fn listening_addr(&mut self) -> SocketAddr {
        let line = self.next_line();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        addr.parse().unwrap()
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().unwrap()
    }

    /// Waits for the exit (polling, with a deadline).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not exit within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything on stdout after the lines already read; call after the exit.
    fn rest_of_stdout(&self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.stdout.recv_timeout(TIMEOUT) {
                Ok(line) => lines.push(line),
                // The reader thread ends at EOF, closing the channel.
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("stdout still open {TIMEOUT:?} after the exit")
                }
            }
        }
    }

    /// Everything on stderr; call after the exit (or after a kill).
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

/// Runs a command that ends by itself: its exit status, stdout lines and stderr.
fn run(args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    let mut running = Running::start(args);
    drop(running.child.stdin.take());
    let status = running.wait();
    let stderr = running.stderr();
    let stdout = running.rest_of_stdout();
    (status, stdout, stderr)
}

fn raw_peer() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn raw_recv(socket: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 64 * 1024];
    let (len, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram from ferry within the timeout");
    (String::from_utf8(buf[..len].to_vec()).unwrap(), from)
}

/// True for `[HH:MM:SS UTC] [not encrypted] FROM: TEXT` with the given sender (when known)
/// and text.
fn is_note_line(line: &str, from: Option<SocketAddr>, text: &str) -> bool {
    let Some((time, rest)) = line.strip_prefix('[').and_then(|l| l.split_once(" UTC] ")) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("[not encrypted] ") else {
        return false;
    };
    let time_ok = time.len() == 8
        && time
            .split(':')
            .all(|n| n.len() == 2 && n.parse::<u8>().is_ok());
    let Some((sender, note)) = rest.split_once(": ") else {
        return false;
    };
    let sender_ok = match from {
        Some(from) => sender == from.to_string(),
        None => sender.parse::<SocketAddr>().is_ok(),
    };
    time_ok && sender_ok && note == text
}

#[test]
fn listen_prints_a_note_sent_by_note() {
    let mut listener = Running::start(&["listen", "--bind", "127.0.0.1", "--port", "0"]);
    let addr = listener.listening_addr();
    assert_ne!(addr.port(), 0);

    let to = addr.to_string();
    let (status, stdout, stderr) = run(&["note", "--to", &to, "hello from the CLI\nsecond line"]);
    assert!(status.success(), "ferry note failed: {stderr}");
    assert_eq!(stdout, [format!("sent to {addr} [not encrypted]")]);

    // A note's line break is kept, and its next line is indented under the header.
    let line = listener.next_line();
    assert!(is_note_line(&line, None, "hello from the CLI"), "{line:?}");
    assert_eq!(listener.next_line(), "    second line");
}

#[test]
fn listen_prints_every_note_of_a_plain_peer_on_its_own_line() {
    let mut listener = Running::start(&["listen", "--bind", "127.0.0.1", "--port", "0"]);
    let addr = listener.listening_addr();
    let (peer, peer_addr) = raw_peer();
    for datagram in [&b"one"[..], b"two\r\n", b"caf\xe9"] {
        peer.send_to(datagram, addr).unwrap();
    }
    // "\r" is escaped; the line break after it is kept, and its (empty) next line indented.
    for (text, continued) in [
        ("one", None),
        ("two\\r", Some("    ")),
        ("caf\u{FFFD}", None),
    ] {
        let line = listener.next_line();
        assert!(
            is_note_line(&line, Some(peer_addr), text),
            "{line:?} should show {text:?}"
        );
        if let Some(continued) = continued {
            assert_eq!(listener.next_line(), continued);
        }
    }
}

#[test]
fn note_wait_prints_the_reply_of_a_plain_peer() {
    let (peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let mut note = Running::start(&["note", "--to", &to, "--wait", "5", "ping"]);

    // The plain peer answers the exact address the note came from.
    let (text, from) = raw_recv(&peer);
    assert_eq!(text, "ping");
    peer.send_to(b"pong", from).unwrap();

    let status = note.wait();
    let stderr = note.stderr();
    assert!(status.success(), "ferry note --wait failed: {stderr}");
    let stdout = note.rest_of_stdout();
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    assert_eq!(stdout[0], format!("sent to {peer_addr} [not encrypted]"));
    assert!(
        is_note_line(&stdout[1], Some(peer_addr), "pong"),
        "{stdout:?}"
    );
}

/// `--wait` listens where the route to the peer leaves from and takes only the peer's
/// answer: a note sent to another of this host's addresses never reaches it, and one from
/// another address is said and ignored, so nobody who guesses the port answers in its place.
#[test]
fn note_wait_takes_the_reply_only_from_the_peer_and_on_its_route() {
    let (peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let mut note = Running::start(&["note", "--to", &to, "--wait", "10", "ping"]);
    let (text, from) = raw_recv(&peer);
    assert_eq!(text, "ping");
    assert_eq!(
        from.ip(),
        peer_addr.ip(),
        "the note left by the route to the peer"
    );

    // From the peer's own address but to another address of this host: with the reply port
    // bound to every address this was taken as the reply.
    let elsewhere = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let other_address = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), from.port()));
    elsewhere
        .send_to(b"forged elsewhere", other_address)
        .unwrap();
    // To the right address from another one.
    let intruder = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
    intruder.send_to(b"forged", from).unwrap();
    // Sent after both: had either been taken, the reply would be theirs.
    peer.send_to(b"pong", from).unwrap();

    let status = note.wait();
    let stderr = note.stderr();
    assert!(status.success(), "ferry note --wait failed: {stderr}");
    let stdout = note.rest_of_stdout();
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    assert!(
        is_note_line(&stdout[1], Some(peer_addr), "pong"),
        "{stdout:?}"
    );
    let intruder_addr = intruder.local_addr().unwrap();
    assert!(
        stderr.contains(&format!("ignored a note from {intruder_addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("127.0.0.2"), "{stderr}");
}

#[test]
fn note_wait_without_a_reply_exits_1() {
    // A peer that reads nothing and answers nothing.
    let (_peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let (status, stdout, stderr) = run(&["note", "--to", &to, "--wait", "0.5", "anyone?"]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout {stdout:?}, stderr {stderr:?}"
    );
    assert_eq!(stdout, [format!("sent to {peer_addr} [not encrypted]")]);
    assert!(stderr.contains("no reply within 0.5 s"), "{stderr}");
}

#[test]
fn note_refuses_an_over_limit_note() {
    let (peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let text = "x".repeat(65_508);
    let (status, stdout, stderr) = run(&["note", "--to", &to, &text]);
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(
        stderr.contains("65508 bytes") && stderr.contains("65507"),
        "{stderr}"
    );
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        peer.recv_from(&mut [0u8; 16]).is_err(),
        "nothing may be sent"
    );
}

#[test]
fn note_warns_about_a_note_plain_peers_truncate() {
    let (peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let text = "y".repeat(2_000);
    let (status, _, stderr) = run(&["note", "--to", &to, &text]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("2000 bytes"),
        "{stderr}"
    );
    assert_eq!(raw_recv(&peer).0, text);
}

#[test]
fn listen_on_a_port_in_use_exits_1() {
    let (_taken, taken_addr) = raw_peer();
    let port = taken_addr.port().to_string();
    let (status, _, stderr) = run(&["listen", "--bind", "127.0.0.1", "--port", &port]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!("UDP port {port} is in use")),
        "{stderr}"
    );
}

#[test]
fn chat_sends_each_line_and_prints_notes_until_eof() {
    let (peer, peer_addr) = raw_peer();
    let to = peer_addr.to_string();
    let mut chat = Running::start(&["chat", "--to", &to, "--bind", "127.0.0.1", "--port", "0"]);
    let chat_addr = chat.listening_addr();

    writeln!(chat.stdin(), "hi there").unwrap();
    writeln!(chat.stdin(), "second line").unwrap();
    chat.stdin().flush().unwrap();
    assert_eq!(raw_recv(&peer), ("hi there".to_owned(), chat_addr));
    assert_eq!(raw_recv(&peer), ("second line".to_owned(), chat_addr));

    peer.send_to(b"hello\nback", chat_addr).unwrap();
    let line = chat.next_line();
    assert!(is_note_line(&line, Some(peer_addr), "hello"), "{line:?}");
    assert_eq!(chat.next_line(), "    back");

    // End of input ends the chat, successfully.
    drop(chat.child.stdin.take());
    let status = chat.wait();
    assert!(status.success(), "{}", chat.stderr());
}
