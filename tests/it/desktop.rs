//! Ferry as a desktop citizen and a well-behaved command (issue 15), with the real binary:
//! `--version`, shell completions and the man page (and the copies of them in `assets/`
//! that the `.deb` installs, kept fresh by a golden-file test), the desktop entry and icons,
//! and CLI errors worded for a user: a missing file, a host that does not resolve, a port
//! that is not one, a refused connection said once, a folder that cannot be written.

use std::io::{ErrorKind, Read as _};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::*;

/// Runs `ferry ARGS` without engine logs, so stderr holds only what a user is told.
fn run(args: &[&str]) -> Output {
    ferry().env_remove("RUST_LOG").args(args).output().unwrap()
}

/// Runs a command that should exit on its own (a `serve` refused at start); one that is still
/// running at the deadline is killed and fails the test instead of hanging it.
fn output_within_deadline(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // Only our own child, by its id.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the command was still running after {DEADLINE:?}");
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn version_prints_the_package_version() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("ferry {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stdout(&out), "ferry 0.1.0\n");
}

const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "elvish", "powershell"];

#[test]
fn each_shell_gets_a_completion_script_that_knows_the_commands() {
    for shell in SHELLS {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["serve", "send", "listen", "idle-timeout-secs"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
}

#[test]
fn the_bash_completion_script_is_valid_bash() {
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), run(&["completions", "bash"]).stdout).unwrap();
    let Ok(check) = Command::new("bash").arg("-n").arg(script.path()).output() else {
        skip_or_fail(false, "bash is not installed");
        return;
    };
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_man_page_has_a_title_and_every_command() {
    let out = run(&["manpage"]);
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.contains(".TH ferry 1"), "{page}");
    for command in [
        "serve",
        "send",
        "note",
        "listen",
        "chat",
        "peers",
        "doctor",
        "completions",
        "manpage",
    ] {
        assert!(
            page.contains(&format!(".SS \"ferry {command}\"")),
            "{command}"
        );
    }
    // Rendered by man, when it is installed: no roff warnings.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &out.stdout).unwrap();
    match Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(file.path())
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
    {
        Ok(man) if man.status.success() => {
            let text = String::from_utf8_lossy(&man.stdout);
            assert!(text.contains("--idle-timeout-secs"), "{text}");
            assert_eq!(String::from_utf8_lossy(&man.stderr), "");
        }
        _ => skip_or_fail(false, "man is not installed: the man page is not rendered"),
    }
}

/// The generated files the `.deb` installs (Cargo.toml, `[package.metadata.deb]`) are
/// checked in; this fails when one is stale. `FERRY_BLESS=1 cargo test --test it generated`
/// rewrites them.
#[test]
fn generated_completions_and_man_page_in_assets_are_up_to_date() {
    let mut expected: Vec<(&str, Vec<u8>)> = vec![("assets/man/ferry.1", run(&["manpage"]).stdout)];
    for (shell, path) in [
        ("bash", "assets/completions/ferry.bash"),
        ("zsh", "assets/completions/_ferry"),
        ("fish", "assets/completions/ferry.fish"),
    ] {
        expected.push((path, run(&["completions", shell]).stdout));
    }
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    for (path, bytes) in expected {
        assert!(!bytes.is_empty(), "{path}");
        let file = repo(path);
        if bless {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &bytes).unwrap();
            continue;
        }
        let kept = std::fs::read(&file).unwrap_or_default();
        assert!(
            kept == bytes,
            "{path} is stale: run `FERRY_BLESS=1 cargo test --test it generated` and commit it"
        );
    }
}

#[test]
fn the_desktop_entry_names_the_app_id_and_icon_and_passes_the_validator() {
    let entry = std::fs::read_to_string(repo("assets/ferry.desktop")).unwrap();
    let lines: Vec<&str> = entry.lines().collect();
    for line in [
        "Exec=ferry",
        "Terminal=false",
        "Categories=Network;FileTransfer;",
        &format!("Icon={}", ferry::defaults::APP_ID),
        &format!("StartupWMClass={}", ferry::defaults::APP_ID),
    ] {
        assert!(
            lines.contains(&line),
            "{line} missing from the desktop entry"
        );
    }
    match Command::new("desktop-file-validate")
        .arg(repo("assets/ferry.desktop"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success() && out.stdout.is_empty(),
            "{}{}",
            stdout(&out),
            stderr(&out)
        ),
        Err(_) => skip_or_fail(
            true,
            "desktop-file-validate (desktop-file-utils) is missing",
        ),
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_icon_exists_in_every_size_the_package_installs() {
    let svg = std::fs::read_to_string(repo("assets/icons/ferry.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("viewBox=\"0 0 16 16\""));
    for size in [16, 32, 48, 64, 128, 256] {
        let path = format!("assets/icons/{size}x{size}/ferry.png");
        let png = std::fs::read(repo(&path)).unwrap();
        assert_eq!(png_size(&png), (size, size), "{path}");
        // And the package installs it (Cargo.toml, [package.metadata.deb] assets).
        let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!(
                "[\"{path}\", \"usr/share/icons/hicolor/{size}x{size}/apps/ferry.png\", \"644\"]"
            )),
            "{path} is not in the .deb"
        );
    }
    assert_eq!(png_size(ferry::defaults::icon_png()), (256, 256));
}

#[test]
fn send_a_missing_file_says_so_before_connecting() {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let src = tempfile::tempdir().unwrap();
    let present = src.path().join("present.txt");
    std::fs::write(&present, "x").unwrap();
    let present = present.to_str().unwrap();
    let folder = src.path().to_str().unwrap();
    let out = run(&["send", "--to", &addr, present, "/nonexistent", folder]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    // A folder can be sent (issue 13): only the missing file is a problem.
    assert_eq!(
        stderr(&out),
        "ferry: cannot send /nonexistent: no such file\n\
         ferry: nothing was sent\n"
    );
    // Nothing connected: the process has exited, so a connection would be waiting here.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn a_host_that_does_not_resolve_is_named_as_such() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    let out = run(&["send", "--to", "nosuchhost.invalid:8080", path]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("ferry: cannot resolve host \"nosuchhost.invalid\": "),
        "{err}"
    );
    assert!(!err.contains("HOST:PORT"), "{err}");
    let out = run(&["note", "--to", "nosuchhost.invalid:8080", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("ferry: cannot resolve host \"nosuchhost.invalid\": "));
}

#[test]
fn a_port_that_is_not_a_number_says_host_port_is_expected() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    for (command, last) in [("send", path), ("note", "hi")] {
        let out = run(&[command, "--to", "host:notaport", last]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert_eq!(
            stderr(&out),
            "ferry: \"notaport\" in \"host:notaport\" is not a port number: expected \
             HOST:PORT, the port from 1 to 65535\n",
            "{command}"
        );
    }
}

#[test]
fn a_destination_without_a_port_uses_the_default_port() {
    let port = ferry::defaults::DEFAULT_PORT;
    // UDP: a note to 127.0.0.1 arrives on the default port.
    match UdpSocket::bind((LOOPBACK, port)) {
        Ok(socket) => {
            socket.set_read_timeout(Some(DEADLINE)).unwrap();
            let out = run(&["note", "--to", "127.0.0.1", "to the default port"]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                stdout(&out),
                format!("sent to 127.0.0.1:{port} [not encrypted]\n")
            );
            let mut buf = [0u8; 64];
            let (len, _) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"to the default port");
        }
        Err(_) => skip_or_fail(false, &format!("UDP port {port} is in use here")),
    }
    // TCP: a plain upload to 127.0.0.1 reaches a listener on the default port.
    let Ok(listener) = TcpListener::bind((LOOPBACK, port)) else {
        skip_or_fail(false, &format!("TCP port {port} is in use here"));
        return;
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "default port").unwrap();
    let mut child = ferry()
        .args(["send", "--plain", "--to", "127.0.0.1"])
        .arg(file.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(received.ends_with(b"default port"), "{received:?}");
}

#[test]
fn a_refused_connection_says_the_os_error_once() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ferry()
        .env_remove("RUST_LOG")
        .args(["send", "--to", &format!("127.0.0.1:{port}")])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
    assert_eq!(
        stderr(&out),
        format!("ferry: cannot connect to 127.0.0.1:{port}: {refused}\n")
    );
}

/// A read-only folder: a read-only tmpfs as root (who may write anywhere else), else a
/// folder without write permission.
struct ReadOnlyDir {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl ReadOnlyDir {
    fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        if std::fs::write(dir.path().join("probe"), "").is_err() {
            return Some(Self {
                dir,
                mounted: false,
            });
        }
        let _ = std::fs::remove_file(dir.path().join("probe"));
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir, mounted })
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
        let mut perms = std::fs::metadata(self.dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        let _ = std::fs::set_permissions(self.dir.path(), perms);
    }
}

#[test]
fn serve_into_a_folder_it_cannot_write_says_so_before_listening() {
    let Some(dir) = ReadOnlyDir::new() else {
        skip_or_fail(false, "cannot make a read-only folder (root without mount)");
        return;
    };
    let out = output_within_deadline(
        ferry()
            .env_remove("RUST_LOG")
            .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--dir"])
            .arg(dir.dir.path()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "it must not say it is listening");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "ferry: cannot write to the download folder {}: ",
            dir.dir.path().canonicalize().unwrap().display()
        )) && err.ends_with("; --dir picks another\n"),
        "{err}"
    );

    // A file given as the folder.
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = output_within_deadline(
        ferry()
            .env_remove("RUST_LOG")
            .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--dir"])
            .arg(file.path()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ferry: the download folder {} is a file, not a folder; --dir picks another\n",
            file.path().display()
        )
    );
}

#[test]
fn a_port_in_use_says_what_to_do() {
    let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = output_within_deadline(
        ferry()
            .env_remove("RUST_LOG")
            .args(["serve", "--bind", "127.0.0.1", "--port", &port, "--dir"])
            .arg(dir.path()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ferry: port {port} is in use (another program, perhaps another Ferry, listens \
             there; --port picks another)\n"
        )
    );
    let taken = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = output_within_deadline(ferry().env_remove("RUST_LOG").args([
        "listen",
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ferry: UDP port {port} is in use (another program, perhaps another Ferry, \
             listens there; --port picks another)\n"
        )
    );
}

#[test]
fn ferry_raises_its_open_file_limit_for_large_folders_and_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _addr, _lines) = crate::util::spawn_serve(dir.path(), &["--no-discovery"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (numbers[0], numbers[1]);
    assert!(
        soft >= hard.min(ferry::defaults::WANTED_OPEN_FILES),
        "{line}"
    );
}
