//! Acceptance audit of the core issues (2: transfer engine and CLI; 3: UDP notes; 4: the
//! window; 10: layering) against today's code: the asks the earlier tests left unproven.
//! The plain peers here are real 20-line Python programs in the classic teaching example's
//! style, run with `python3` against the real `ferry` binary.

use std::process::{Command, Stdio};

use crate::util::*;

/// A plain upload client as the classic example writes it: for every file on one
/// connection, `struct.pack('i')` of the header's length, the JSON header, the raw bytes.
/// The last file carries no `msg` at all (the field is optional).
const PY_CLIENT: &str = r#"
import json, os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
files = sys.argv[3:]
sk = socket.socket()
sk.connect((host, port))
for i, path in enumerate(files):
    head = {"file_name": os.path.basename(path), "file_size": os.path.getsize(path)}
    if i < len(files) - 1:
        head["msg"] = "第%d个文件：%s" % (i + 1, os.path.basename(path))
    head = json.dumps(head).encode("utf-8")
    sk.send(struct.pack("i", len(head)))
    sk.send(head)
    with open(path, "rb") as f:
        while True:
            data = f.read(1024)
            if not data:
                break
            sk.sendall(data)
sk.close()
"#;

/// A plain upload server as the classic example writes it (`recv(4)`, `recv(len)`, then
/// `file_size` bytes), looping over files until the sender closes its one connection; it
/// prints each file's name, size and msg, and how many connections it served.
const PY_SERVER: &str = r#"
import json, os, socket, struct, sys
sk = socket.socket()
sk.bind(("127.0.0.1", 0)); sk.listen(5)
print(sk.getsockname()[1], flush=True)
conn, addr = sk.accept()
while True:
    raw = conn.recv(4)
    if not raw:
        break
    head = json.loads(conn.recv(struct.unpack("i", raw)[0]).decode("utf-8"))
    left = head["file_size"]
    with open(os.path.join(sys.argv[1], head["file_name"]), "wb") as f:
        while left > 0:
            data = conn.recv(min(1024, left))
            f.write(data); left -= len(data)
    print(head["file_name"], head["file_size"], head["msg"], flush=True)
conn.close()
print("connections: 1", flush=True)
"#;

fn python() -> Option<Command> {
    // .ci/run installs python3.
    have_command("python3", "--version", "no python3 on this machine")
        .then(|| Command::new("python3"))
}

/// [`PY_SERVER`] (its script written into `dir`) saving into `dst`, its output lines, and
/// the port it printed first.
fn python_server(
    mut py: Command,
    dir: &std::path::Path,
    dst: &std::path::Path,
) -> (ChildGuard, crossbeam_channel::Receiver<String>, String) {
    let script = dir.join("server.py");
    std::fs::write(&script, PY_SERVER).unwrap();
    let mut server = ChildGuard(
        py.arg(&script)
            .arg(dst)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(server.0.stdout.take().unwrap());
    let port = lines.recv_timeout(DEADLINE).unwrap();
    (server, lines, port)
}

/// Three files with Chinese names, the middle one empty, as a sender would pick them.
fn chinese_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let files = [
        (
            "计算机五大.txt",
            "运算器 控制器 存储器 输入设备 输出设备".as_bytes().to_vec(),
        ),
        ("空文件.txt", Vec::new()),
        ("报告 二〇二四.bin", data(1_300_000, 71)),
    ];
    files
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn a_python_client_uploads_chinese_named_files_on_one_connection_to_ferry_serve() {
    let Some(mut py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = chinese_files(src.path());
    let script = src.path().join("client.py");
    std::fs::write(&script, PY_CLIENT).unwrap();
    let (_serve, addr, lines) = spawn_serve(dst.path(), &[]);
    let status = py
        .arg(&script)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .args(files.iter().map(|(path, _)| path))
        .status()
        .unwrap();
    assert!(status.success());
    // One "received" line per file, in order, each followed by its msg as the original
    // server prints it; the last file had no msg, so nothing follows it.
    for (i, (path, bytes)) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let received = wait_line(&lines, "received ");
        assert!(
            received.contains(&format!("{name} ({} bytes, ", bytes.len())),
            "{received:?} is not about {name}"
        );
        if i < files.len() - 1 {
            assert_eq!(
                lines.recv_timeout(DEADLINE).unwrap(),
                format!("第{}个文件：{name}", i + 1)
            );
        }
        assert_eq!(&std::fs::read(dst.path().join(name)).unwrap(), bytes);
    }
    let mut expected: Vec<String> = files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        names_in(dst.path()),
        expected,
        "nothing else, no .part left"
    );
}

#[test]
fn ferry_send_plain_sends_chinese_named_files_on_one_connection_to_a_python_server() {
    let Some(py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = chinese_files(src.path());
    let (mut server, lines, port) = python_server(py, src.path(), dst.path());
    let out = ferry()
        .args(["send", "--plain", "--msg", "老师好", "--to"])
        .arg(format!("127.0.0.1:{port}"))
        .args(files.iter().map(|(path, _)| path))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    python_server_got(&lines, dst.path(), &files);
    for (path, _) in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            stdout
                .lines()
                .any(|line| line.contains(name) && line.contains("sent, unverified")),
            "no \"sent, unverified\" line for {name} in {stdout:?}"
        );
    }
    assert!(server.0.wait().unwrap().success());
}

/// Issue 4's notes box: Enter sends, Shift+Enter adds a line (the note goes out as one
/// datagram with its line break, to a plain UDP peer), and the size feedback: a warning
/// above the 1 024 bytes plain peers read, a refusal above one datagram that Enter obeys.
#[test]
fn the_note_box_sends_on_enter_keeps_shift_enter_lines_and_says_when_a_note_is_too_long() {
    use egui::{Key, Modifiers};
    use egui_kittest::kittest::Queryable;
    use ferry::app::NotesStatus;

    use crate::gui::{app, run_until, settings};

    let dir = tempfile::tempdir().unwrap();
    let mut harness = app(settings(dir.path()), vec![]);
    run_until(&mut harness, "the notes socket", |app| {
        matches!(app.notes.status, NotesStatus::Listening(_))
    });
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    harness.get_by_label("Peer (host:port)").click();
    harness
        .get_by_label("Peer (host:port)")
        .type_text(&peer.local_addr().unwrap().to_string());
    harness.get_by_label("Note").click();
    harness.run_steps(2);
    harness.get_by_label("Note").type_text("第一行");
    harness.run_steps(1);
    harness.key_press_modifiers(Modifiers::SHIFT, Key::Enter);
    harness.run_steps(1);
    harness.get_by_label("Note").type_text("second line");
    harness.run_steps(1);
    assert_eq!(harness.state().notes.draft, "第一行\nsecond line");
    harness.key_press(Key::Enter);
    harness.run_steps(2);
    let mut buf = [0u8; 2048];
    let (n, _) = peer.recv_from(&mut buf).expect("Enter sent the note");
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        "第一行\nsecond line"
    );
    assert_eq!(harness.state().notes.draft, "", "the box is emptied");
    run_until(&mut harness, "the sent note in the history", |app| {
        app.notes.history.len() == 1
    });

    // Over what plain peers read: a warning, and it can still be sent.
    harness.state_mut().notes.draft = "长".repeat(500);
    harness.run_steps(2);
    harness.get_by_label("1500 bytes: plain peers that read 1024 bytes will cut it");
    // Over one datagram: refused, and Enter does not send it.
    harness.state_mut().notes.draft = "a".repeat(65_508);
    harness.run_steps(2);
    harness.get_by_label("65508 bytes: too long for one UDP datagram (max 65507)");
    // Focus, not a click: the box has grown past the window, its centre is out of view.
    harness.get_by_label("Note").focus();
    harness.run_steps(1);
    harness.key_press(Key::Enter);
    harness.run_steps(2);
    assert_eq!(harness.state().notes.draft.len(), 65_508, "kept, not sent");
}

/// Issue 4: what the window saves on exit is what it was started with, for every setting
/// the user can change (ports, folder, recent peers, language, the notes box's peer and
/// more), and it survives the storage round trip: a field the window forgot to read back
/// or to write would come back as its default after a restart.
#[test]
fn every_setting_the_window_is_given_comes_back_when_it_is_saved() {
    use ferry::app::i18n::Lang;
    use ferry::app::{PolicyChoice, Settings, ThemeChoice};

    use crate::gui::{app, settings};

    let dir = tempfile::tempdir().unwrap();
    let given = Settings {
        lang: Some(Lang::ZhCn),
        server_bind: "127.0.0.1".into(),
        server_port: "18080".into(),
        server_listening: false,
        download_dir: dir.path().join("下载"),
        accept_policy: Some(PolicyChoice::Ask),
        server_auto_accept: None,
        server_idle_timeout_secs: "45".into(),
        server_direct_io: false,
        notes_port: "0".into(),
        notes_open: false,
        note_peer: "127.0.9.7:9000".into(),
        client_dest: "127.0.9.8:8081".into(),
        client_msg: "给老师".into(),
        plain: true,
        recent_peers: vec!["127.0.9.8:8081".into(), "127.0.9.9:8080".into()],
        notifications: false,
        theme: ThemeChoice::Dark,
        discovery: false,
        favourites: vec!["127.0.9.10:8080".into()],
        identity_dir: None,
        discovery_port: None,
        interfaces: Default::default(),
        only_interfaces: "lo, eth1".into(),
        localsend: false,
        localsend_port: "53318".into(),
        localsend_pin: "1234".into(),
        localsend_sweep: false,
        localsend_sweep_hosts: Vec::new(),
    };
    let started = Settings {
        identity_dir: settings(dir.path()).identity_dir,
        ..given.clone()
    };
    let mut harness = app(started, vec![]);
    harness.run_steps(3);
    let saved = harness.state().settings();
    assert_eq!(saved, given);
    let stored = serde_json::to_string(&saved).unwrap();
    let restored: Settings = serde_json::from_str(&stored).unwrap();
    assert_eq!(restored, given);
}

/// Issue 4's "plain peer" toggle, end to end: the Client tab uploads three Chinese-named
/// files (an empty one between) with a message to the real Python server over one
/// connection; every row says "sent, unverified", the server saved the exact bytes.
#[test]
fn the_client_tabs_plain_toggle_uploads_to_the_python_server() {
    use egui_kittest::kittest::Queryable;
    use ferry::app::RowState;

    use crate::gui::{app, pick_and_upload, run_until, settings};

    let Some(py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = chinese_files(src.path());
    let (_server, lines, port) = python_server(py, src.path(), dst.path());
    let picked = files.iter().map(|(path, _)| path.clone()).collect();
    let mut harness = app(settings(dst.path()), picked);
    harness.run_steps(2);
    crate::gui::type_destination(&mut harness, &format!("127.0.0.1:{port}"));
    harness.get_by_label("Message").click();
    harness.get_by_label("Message").type_text("老师好");
    harness
        .get_by_label("Plain peer (original protocol, no verification)")
        .click();
    pick_and_upload(&mut harness, 3);
    run_until(&mut harness, "the upload to finish", |app| {
        app.client.rows.iter().all(|row| row.state.is_finished())
    });
    let states: Vec<RowState> = harness
        .state()
        .client
        .rows
        .iter()
        .map(|row| row.state.clone())
        .collect();
    assert_eq!(states, vec![RowState::Unverified; 3]);
    assert_eq!(
        harness.query_all_by_label("sent, unverified").count(),
        3,
        "each row says so"
    );
    python_server_got(&lines, dst.path(), &files);
}

/// The Python server saw `files`, in order, each with the message "老师好", on its one
/// connection, and saved their exact bytes into `dst`.
fn python_server_got(
    lines: &crossbeam_channel::Receiver<String>,
    dst: &std::path::Path,
    files: &[(std::path::PathBuf, Vec<u8>)],
) {
    for (path, bytes) in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            lines.recv_timeout(DEADLINE).unwrap(),
            format!("{name} {} 老师好", bytes.len())
        );
        assert_eq!(&std::fs::read(dst.join(name)).unwrap(), bytes);
    }
    assert_eq!(lines.recv_timeout(DEADLINE).unwrap(), "connections: 1");
}

/// A hostile plain peer against the window's Server tab (issues 2 and 4): one connection of
/// 1 200 empty files, each with a 4 KiB message, must not grow the table without bound
/// (100 000 files on each of 64 connections, with a 64 KiB message each, would otherwise
/// keep gigabytes in rows until the user clears them). The newest finished rows stay.
#[test]
fn a_flood_of_plain_files_keeps_only_the_newest_finished_rows_in_the_server_tab() {
    use std::io::Write;

    use ferry::app::{MAX_FINISHED_ROWS, Settings};

    use crate::gui::{app, listening_addr, run_until, settings};

    let dst = tempfile::tempdir().unwrap();
    let mut harness = app(
        Settings {
            server_listening: true,
            ..settings(dst.path())
        },
        vec![],
    );
    run_until(&mut harness, "the server to listen", |app| {
        listening_addr(app).is_some()
    });
    let addr = listening_addr(harness.state()).unwrap();
    let files = MAX_FINISHED_ROWS + 200;
    let msg = "长".repeat(4096 / 3);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut frames = Vec::new();
    for i in 0..files {
        frames.extend(plain_frame(&plain_header(&format!("{i}.txt"), 0, &msg)));
    }
    frames.extend(plain_frame(&plain_header("last.txt", 1, "")));
    frames.push(b'!');
    stream.write_all(&frames).unwrap();
    drop(stream);
    run_until(&mut harness, "the last file's row", |app| {
        app.server
            .rows
            .last()
            .is_some_and(|row| row.name == "last.txt" && row.state.is_finished())
    });
    let rows = &harness.state().server.rows;
    assert_eq!(rows.len(), MAX_FINISHED_ROWS);
    // The oldest went first: 0.txt ..= 200.txt are gone, 201.txt is the oldest left.
    assert_eq!(
        rows[0].name,
        format!("{}.txt", files + 1 - MAX_FINISHED_ROWS)
    );
    assert_eq!(std::fs::read(dst.path().join("last.txt")).unwrap(), b"!");
}
