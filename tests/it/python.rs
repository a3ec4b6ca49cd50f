//! The real plain peers: the classic Python teaching client, server and chat, run with the
//! machine's `python3` against the real `ferry` binary. (Skipped, saying so, where there is
//! no python3.)

use std::process::{Command, Stdio};

use crate::util::*;

/// The original upload client: `struct.pack('i')` length, a JSON header, the raw bytes.
const PY_CLIENT: &str = r#"
import json, os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect((host, port))
for path in sys.argv[3:]:
    header = json.dumps({"file_name": os.path.basename(path),
                         "file_size": os.path.getsize(path),
                         "msg": "来自 Python 的问候"}).encode("utf-8")
    s.send(struct.pack('i', len(header)))
    s.send(header)
    with open(path, "rb") as f:
        while True:
            data = f.read(1024)
            if not data:
                break
            s.sendall(data)
s.close()
"#;

/// The original upload server: reads frames until the client closes, prints each msg.
const PY_SERVER: &str = r#"
import json, os, socket, struct, sys
out = sys.argv[1]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0)); srv.listen(5)
print(srv.getsockname()[1], flush=True)
conn, addr = srv.accept()
while True:
    raw = conn.recv(4, socket.MSG_WAITALL)
    if len(raw) < 4:
        break
    header = json.loads(conn.recv(struct.unpack('i', raw)[0], socket.MSG_WAITALL).decode("utf-8"))
    left = header["file_size"]
    with open(os.path.join(out, header["file_name"]), "wb") as f:
        while left > 0:
            data = conn.recv(min(1024, left))
            f.write(data); left -= len(data)
    print(header["msg"], flush=True)
conn.close()
"#;

/// The original chat peer: sends one datagram, prints the reply.
const PY_CHAT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(20)
s.sendto(sys.argv[3].encode("utf-8"), (sys.argv[1], int(sys.argv[2])))
data, addr = s.recvfrom(1024)
print(data.decode("utf-8"), flush=True)
"#;

fn python() -> Option<Command> {
    // .ci/run installs python3.
    have_command("python3", "--version", "no python3 on this machine")
        .then(|| Command::new("python3"))
}

#[test]
fn the_python_client_uploads_to_ferry_serve() {
    let Some(mut py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("计算机五大.txt");
    let b = src.path().join("b.bin");
    std::fs::write(&a, "运算器 控制器 存储器 输入设备 输出设备").unwrap();
    std::fs::write(&b, data(2_000_000, 61)).unwrap();
    let script = src.path().join("client.py");
    std::fs::write(&script, PY_CLIENT).unwrap();
    let (_serve, addr, lines) = spawn_serve(dst.path(), &[]);
    let status = py
        .arg(&script)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(status.success());
    wait_line(&lines, "来自 Python 的问候");
    wait_line(&lines, "b.bin");
    assert_eq!(
        std::fs::read(dst.path().join("计算机五大.txt")).unwrap(),
        std::fs::read(&a).unwrap()
    );
    assert_eq!(
        std::fs::read(dst.path().join("b.bin")).unwrap(),
        std::fs::read(&b).unwrap()
    );
}

#[test]
fn ferry_send_plain_uploads_to_the_python_server() {
    let Some(mut py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let a = src.path().join("报告.pdf");
    std::fs::write(&a, data(1_500_000, 62)).unwrap();
    let script = src.path().join("server.py");
    std::fs::write(&script, PY_SERVER).unwrap();
    let mut server = ChildGuard(
        py.arg(&script)
            .arg(dst.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(server.0.stdout.take().unwrap());
    let port = lines.recv_timeout(DEADLINE).unwrap();
    let out = ferry()
        .args([
            "send",
            "--plain",
            "--msg",
            "你好",
            "--to",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent, unverified"));
    assert_eq!(
        lines.recv_timeout(DEADLINE).unwrap(),
        "你好",
        "the Python server prints the msg"
    );
    assert!(server.0.wait().unwrap().success());
    assert_eq!(
        std::fs::read(dst.path().join("报告.pdf")).unwrap(),
        std::fs::read(&a).unwrap()
    );
}

#[test]
fn the_python_chat_peer_is_seen_by_ferry_listen_and_answered_by_ferry_note() {
    let Some(mut py) = python() else { return };
    let src = tempfile::tempdir().unwrap();
    let script = src.path().join("chat.py");
    std::fs::write(&script, PY_CHAT).unwrap();
    // ferry listen shows the note; ferry note answers the exact source address it shows.
    let mut listen = ChildGuard(
        ferry()
            .args(["listen", "--bind", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(listen.0.stdout.take().unwrap());
    let first = wait_line(&lines, "listening on");
    let port = first.rsplit(':').next().unwrap().trim().to_owned();
    let mut chat = ChildGuard(
        py.arg(&script)
            .args(["127.0.0.1", &port, "在吗？"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let chat_lines = line_channel(chat.0.stdout.take().unwrap());
    let line = wait_line(&lines, "在吗？");
    // "[HH:MM:SS UTC] [not encrypted] 127.0.0.1:PORT: TEXT": reply to that exact address.
    let from = line
        .split("] ")
        .nth(2)
        .unwrap()
        .split(": ")
        .next()
        .unwrap()
        .to_owned();
    let out = ferry()
        .args(["note", "--to", &from, "在，请讲"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(chat_lines.recv_timeout(DEADLINE).unwrap(), "在，请讲");
}
