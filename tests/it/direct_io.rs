//! Direct writes (`O_DIRECT`) as the real `ferry serve` does them: on by default for a
//! large synced upload on a local disk, a Ferry one or a LocalSend one, off with
//! `--no-direct-io` (for a disk where they turn out slow). Seen from outside: the flags of
//! the server's open part file (`/proc/PID/fdinfo`).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::localsend::{Peer, file, files, session_of};
use crate::util::{
    data, file_len, find_part, plain_frame, plain_header, serve_localsend, skip_or_fail,
    spawn_serve,
};

/// The open-file flags of the descriptor through which process `pid` holds `path`.
fn open_flags(pid: u32, path: &Path) -> Option<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let fd = fds
        .flatten()
        .find(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))?;
    let info = std::fs::read_to_string(format!(
        "/proc/{pid}/fdinfo/{}",
        fd.file_name().to_string_lossy()
    ))
    .ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u64::from_str_radix(flags.trim(), 8).ok()
}

/// Why a test of direct writes cannot run here (CI's machine has an ext4 temp folder).
const NOT_DIRECT_HERE: &str = "the temp folder's file system is not one Ferry writes directly";

/// Whether `dir` is on a file system Ferry writes large files to directly (a few of its
/// list: the ones a test machine's temp folder is on).
fn written_directly_there(dir: &Path) -> bool {
    const SOME_LOCAL: [u32; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994];
    rustix::fs::statfs(dir).is_ok_and(|fs| SOME_LOCAL.contains(&(fs.f_type as u32)))
}

/// A large upload's part file is open with `O_DIRECT` while its bytes come in, and without
/// it when the server was started with `--no-direct-io`.
#[test]
fn serve_writes_large_uploads_directly_unless_told_not_to() {
    const SENT: usize = 100_000;
    for (extra, expected) in [(&[][..], true), (&["--no-direct-io"][..], false)] {
        let dst = tempfile::tempdir().unwrap();
        if expected && !written_directly_there(dst.path()) {
            skip_or_fail(true, NOT_DIRECT_HERE);
            continue;
        }
        let (serve, addr, _lines) = spawn_serve(dst.path(), extra);
        let mut stream = TcpStream::connect(addr).unwrap();
        let header = plain_header("大.bin", 64 << 20, "");
        stream.write_all(&plain_frame(&header)).unwrap();
        stream.write_all(&data(SENT, 9)).unwrap();
        let part = part_with(dst.path(), "大.bin", SENT as u64);
        assert_direct(serve.0.id(), &part, expected, extra);
        drop(stream);
    }
}

/// That process `pid` holds `part` open with `O_DIRECT` (`expected`) or without. Its bytes
/// are on the file, so the choice was made; a flush writing the piece after the last whole
/// block turns the flag off for that one write, so a direct file is given a moment to show
/// it again.
fn assert_direct(pid: u32, part: &Path, expected: bool, extra: &[&str]) {
    let direct = rustix::fs::OFlags::DIRECT.bits() as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flags = open_flags(pid, part).expect("the server holds the part open");
        if (flags & direct != 0) == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{extra:?}: flags {flags:o}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many direct writers (threads named `ferry-disk`) process `pid` runs.
fn disk_writers(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "ferry-disk")
        })
        .count()
}

/// The part file of `name` in `dir` once `len` bytes of it at least are on it (its writer
/// is set up by then).
fn part_with(dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match find_part(dir, name) {
            Some(part) if file_len(&part) >= len => return part,
            _ if Instant::now() > deadline => panic!("{name}: the bytes never arrived"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The same for a LocalSend upload: `--no-direct-io` reaches `serve`'s LocalSend receiver
/// too.
#[test]
fn serve_writes_large_localsend_uploads_directly_unless_told_not_to() {
    // More than one of the direct writer's buffers, which it writes once full.
    const SENT: usize = (1 << 20) + 8192;
    for (extra, expected) in [(&[][..], true), (&["--no-direct-io"][..], false)] {
        let dst = tempfile::tempdir().unwrap();
        if expected && !written_directly_there(dst.path()) {
            skip_or_fail(true, NOT_DIRECT_HERE);
            continue;
        }
        let serve = serve_localsend(dst.path(), extra);
        let peer = Peer::to(serve.addr, &serve.fingerprint);
        let (session, tokens) =
            session_of(&peer.prepare("", files(&[file("f", "大.bin", 64 << 20)])));
        let token = tokens["f"].as_str().expect("a token");
        let path = format!("/api/localsend/v2/upload?sessionId={session}&fileId=f&token={token}");
        let headers = format!("Content-Length: {}\r\n", 64 << 20);
        // The body goes on no further while the flags are read.
        let body = peer.send(&path, &headers, &[&data(SENT, 3)], Duration::ZERO);
        let part = part_with(dst.path(), "大.bin", 1 << 20);
        assert_direct(serve._serve.0.id(), &part, expected, extra);
        drop(body);
    }
}

/// The window's switch (under the Server tab's "Advanced") is remembered and reaches its
/// server: with it off, a large upload's part is not open with `O_DIRECT`. (The window's
/// server runs in this process.)
#[test]
fn the_windows_switch_turns_direct_writes_off_for_its_server() {
    use egui_kittest::kittest::Queryable;
    const LABEL: &str = "Write large files straight to the disk";
    const SENT: usize = 100_000;
    let dst = tempfile::tempdir().unwrap();
    let mut window = crate::gui::app(crate::gui::settings(dst.path()), vec![]);
    window.run_steps(2);
    window.get_by_label("Advanced").click();
    window.run_steps(2);
    assert!(window.state().server.direct_io, "on by default");
    window.get_by_label(LABEL).click();
    window.run_steps(2);
    assert!(!window.state().server.direct_io);
    assert!(
        !window.state().settings().server_direct_io,
        "not remembered"
    );
    window.get_by_label("Start listening").click();
    crate::gui::run_until(&mut window, "the server to listen", |app| {
        crate::gui::listening_addr(app).is_some()
    });
    let addr = crate::gui::listening_addr(window.state()).unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let header = plain_header("大.bin", 64 << 20, "");
    stream.write_all(&plain_frame(&header)).unwrap();
    stream.write_all(&data(SENT, 4)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let part = loop {
        window.step();
        match find_part(dst.path(), "大.bin") {
            Some(part) if file_len(&part) >= SENT as u64 => break part,
            _ => assert!(Instant::now() < deadline, "the bytes never arrived"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_direct(
        std::process::id(),
        &part,
        false,
        &["the window's switch off"],
    );
    drop(stream);
}

/// A large upload that trickles (here 2 KiB every 50 ms, about 40 KB/s, the way a peer
/// keeping the one place for direct writes would) goes on through the page cache within a
/// few seconds; the bytes sent fast afterwards complete the file, every one in place.
#[test]
fn a_trickling_upload_gives_up_direct_writes_and_still_arrives_whole() {
    const SIZE: usize = 8 << 20;
    let dst = tempfile::tempdir().unwrap();
    if !written_directly_there(dst.path()) {
        skip_or_fail(true, NOT_DIRECT_HERE);
        return;
    }
    let (serve, addr, _lines) = spawn_serve(dst.path(), &[]);
    let body = data(SIZE, 12);
    let mut stream = TcpStream::connect(addr).unwrap();
    let header = plain_header("慢.bin", SIZE, "");
    stream.write_all(&plain_frame(&header)).unwrap();
    let mut sent = 100_000;
    stream.write_all(&body[..sent]).unwrap();
    let part = part_with(dst.path(), "慢.bin", sent as u64);
    assert_direct(serve.0.id(), &part, true, &["at first"]);
    // Its writer thread ends when the file leaves direct writes (the flag alone also
    // drops for a moment at each flush, which a trickle makes frequent).
    assert_eq!(disk_writers(serve.0.id()), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while disk_writers(serve.0.id()) > 0 {
        assert!(Instant::now() < deadline, "still written directly");
        stream.write_all(&body[sent..sent + 2048]).unwrap();
        sent += 2048;
        // The trickle's pace, not a synchronisation.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_direct(serve.0.id(), &part, false, &["after the trickle"]);
    stream.write_all(&body[sent..]).unwrap();
    let done = dst.path().join("慢.bin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done.exists() {
        assert!(Instant::now() < deadline, "the upload never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(std::fs::read(&done).unwrap() == body, "the bytes differ");
}
