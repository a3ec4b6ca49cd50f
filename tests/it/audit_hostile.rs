//! Acceptance audit of issues 5, 8 and 9 against the real `ferry serve` binary: what the
//! receiver does on disk, watched from outside with `strace`, must match what it tells its
//! peer and its user ("verified" and "kept" mean synced to disk, issue 9), whatever a hostile
//! peer or a local process does meanwhile (issue 8).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ferry::protocol::{Header, SenderMsg, encode_chunk_header, encode_sender_msg};

use crate::util::*;

/// `ferry serve` into `dir` running under `strace -f`, which logs the file-system and socket
/// calls the checks below read. Dropping it kills `ferry serve` itself (killing only strace
/// would leave it running, detached).
struct Traced {
    strace: ChildGuard,
    log: PathBuf,
    addr: SocketAddr,
    lines: crossbeam_channel::Receiver<String>,
}

impl Traced {
    /// `None` (having said why) where strace is missing or may not trace here.
    fn serve(dir: &Path, log_dir: &Path) -> Option<Self> {
        if !have_command("strace", "-V", "strace is not installed") {
            return None;
        }
        let probe = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "true"])
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|status| status.success()) {
            skip_or_fail(
                false,
                "strace may not trace processes here (ptrace refused)",
            );
            return None;
        }
        let log = log_dir.join("strace.log");
        let mut child = Command::new("strace")
            .args(["-f", "-qq", "-s", "512", "-o"])
            .arg(&log)
            .args([
                "-e",
                "trace=openat,openat2,fdatasync,fsync,syncfs,renameat,renameat2,linkat,\
                 sendto,write",
            ])
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--no-discovery",
            ])
            .args(["--no-localsend", "--dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .env("XDG_CONFIG_HOME", test_config_home())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = line_channel(child.stdout.take().unwrap());
        let strace = ChildGuard(child);
        let first = lines
            .recv_timeout(DEADLINE)
            .expect("serve prints its address");
        let addr = first
            .split_whitespace()
            .find_map(|word| word.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Some(Self {
            strace,
            log,
            addr,
            lines,
        })
    }

    /// Stops `ferry serve` and strace, and returns strace's log, one call per line.
    fn finish(mut self) -> Vec<String> {
        let pid = self.strace.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.strace.0.wait();
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The index of the first line at or after `from` for which `matches` holds.
fn find(log: &[String], from: usize, what: &str, matches: impl Fn(&str) -> bool) -> usize {
    log.iter()
        .skip(from)
        .position(|line| matches(line))
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("did not find {what} after:\n{}", log[from..].join("\n")))
}

/// The descriptor an `openat`/`openat2` line returned (`... = 9`).
fn returned_fd(line: &str) -> String {
    line.rsplit("= ").next().unwrap().trim().to_owned()
}

/// Whether `line` starts (perhaps unfinished) the call `call(fd` of any thread.
fn is_call_on(line: &str, call: &str, fd: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(_, rest)| rest.starts_with(&format!("{call}({fd}")))
}

/// Issue 9: "verified" is sent only after the file's data was synced, then named by a
/// no-replace rename, then the folder synced, in that order; the CLI's line comes after.
/// Read from outside the process (no test hook to trust).
#[test]
fn serve_says_verified_only_after_data_name_and_folder_are_synced() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let Some(serve) = Traced::serve(dst.path(), logs.path()) else {
        return;
    };
    let file = src.path().join("synced.bin");
    let contents = data(300_000, 91);
    std::fs::write(&file, &contents).unwrap();
    let out = ferry()
        .args(["send", "--no-encryption", "--to", &serve.addr.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: verified, saved as \"synced.bin\"\n", file.display())
    );
    wait_line(&serve.lines, "received");
    let log = serve.finish();

    let open = find(&log, 0, "the partial's creation", |l| {
        l.contains("\"synced.bin.") && l.contains(".ferry.part\"") && l.contains("O_CREAT")
    });
    let part_fd = returned_fd(&log[open]);
    let data_sync = find(&log, open, "a sync of the partial's data", |l| {
        is_call_on(l, "fdatasync", &part_fd) || is_call_on(l, "fsync", &part_fd)
    });
    let named = find(&log, open, "the final name", |l| {
        (l.contains(" renameat2(") || l.contains(" linkat("))
            && l.contains(".ferry.part\"")
            && l.contains(", \"synced.bin\"")
    });
    let dir_fd = log[named]
        .split_once('(')
        .and_then(|(_, args)| args.split(',').next())
        .unwrap()
        .to_owned();
    let dir_sync = find(&log, named, "a sync of the folder after the name", |l| {
        is_call_on(l, "fsync", &dir_fd) || is_call_on(l, "syncfs", &dir_fd)
    });
    let verdict = find(&log, open, "the verified answer", |l| {
        l.contains(" sendto(") && l.contains("\\\"kind\\\":\\\"verified\\\"")
    });
    let printed = find(&log, open, "the CLI's received line", |l| {
        l.contains(" write(1, \"received ") && l.contains("synced.bin")
    });
    assert!(
        open < data_sync && data_sync < named && named < dir_sync && dir_sync < verdict,
        "order: open {open}, data sync {data_sync}, name {named}, folder sync {dir_sync}, \
         verified {verdict}:\n{}",
        log[open..].join("\n")
    );
    assert!(
        dir_sync < printed,
        "printed {printed} before the folder sync {dir_sync}"
    );
    assert_eq!(
        std::fs::read(dst.path().join("synced.bin")).unwrap(),
        contents
    );
}

/// Issue 9: a partial is synced before the receiver says how many bytes it kept (the number
/// a later resume relies on).
#[test]
fn serve_says_bytes_are_kept_only_after_syncing_them() {
    let dst = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let Some(serve) = Traced::serve(dst.path(), logs.path()) else {
        return;
    };
    let mut stream = TcpStream::connect(serve.addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let offer = SenderMsg::Offer(Header {
        file_name: "cut.bin".into(),
        file_size: 1_000_000,
        msg: String::new(),
        resume_key: Some("ab".repeat(32)),
    });
    stream
        .write_all(&encode_sender_msg(&offer).unwrap())
        .unwrap();
    loop {
        match read_answer(&mut stream) {
            ferry::protocol::ReceiverMsg::Waiting { .. } => continue,
            ferry::protocol::ReceiverMsg::Accept { offset: 0, .. } => break,
            other => panic!("{other:?}"),
        }
    }
    stream.write_all(&encode_chunk_header(400_000)).unwrap();
    stream.write_all(&data(400_000, 92)).unwrap();
    // Cut off mid-chunk, as a killed sender would be.
    stream.write_all(&encode_chunk_header(100_000)).unwrap();
    stream.write_all(&data(50_000, 93)).unwrap();
    drop(stream);
    let line = wait_line(&serve.lines, "are kept");
    assert!(
        line.contains("the 450000 bytes received are kept"),
        "{line}"
    );
    let log = serve.finish();

    let open = find(&log, 0, "the partial's creation", |l| {
        l.contains("\"cut.bin.abababababababab.ferry.part\"") && l.contains("O_CREAT")
    });
    let part_fd = returned_fd(&log[open]);
    let data_sync = find(&log, open, "a sync of the kept partial", |l| {
        is_call_on(l, "fdatasync", &part_fd) || is_call_on(l, "fsync", &part_fd)
    });
    let said = find(&log, open, "the kept line", |l| {
        l.contains(" write(") && l.contains("are kept")
    });
    assert!(
        data_sync < said,
        "said kept at line {said} before syncing at {data_sync}:\n{}",
        log[open..].join("\n")
    );
    let part = find_part(dst.path(), "cut.bin").expect("the partial is kept");
    assert_eq!(std::fs::metadata(part).unwrap().len(), 450_000);
}

/// Issue 9 for a received folder: its files get their names only after one `syncfs` made
/// their data durable, and the batch's verdicts go out only after a second `syncfs` made
/// the names durable.
#[test]
fn serve_sends_folder_verdicts_only_after_data_and_names_are_synced() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let Some(serve) = Traced::serve(dst.path(), logs.path()) else {
        return;
    };
    let root = src.path().join("album");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("one.bin"), data(70_000, 94)).unwrap();
    std::fs::write(root.join("sub/two.bin"), data(90_000, 95)).unwrap();
    let out = ferry()
        .args(["send", "--no-encryption", "--to", &serve.addr.to_string()])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: verified, saved as \"album/one.bin\"\n{}: verified, saved as \"album/sub/two.bin\"\n",
            root.join("one.bin").display(),
            root.join("sub/two.bin").display()
        )
    );
    let log = serve.finish();

    let written = find(&log, 0, "the second file's partial", |l| {
        l.contains("\"two.bin.ferry.part\"") && l.contains("O_CREAT")
    });
    let named = |name: &'static str| {
        move |l: &str| l.contains(" renameat2(") && l.contains(&format!(", \"{name}\","))
    };
    let first_name = find(&log, written, "one.bin's name", named("one.bin"));
    let second_name = find(&log, written, "two.bin's name", named("two.bin"));
    let data_sync = find(&log, written, "a sync of the data", |l| {
        l.contains(" syncfs(") || l.contains(" fdatasync(") || l.contains(" fsync(")
    });
    let names_sync = find(
        &log,
        second_name.max(first_name),
        "a sync of the names",
        |l| l.contains(" syncfs(") || l.contains(" fsync("),
    );
    let verdicts = find(&log, written, "the verdicts", |l| {
        l.contains(" sendto(") && l.contains("\\\"kind\\\":\\\"files\\\"")
    });
    assert!(
        data_sync < first_name.min(second_name) && names_sync < verdicts,
        "data sync {data_sync}, names {first_name} and {second_name}, names sync \
         {names_sync}, verdicts {verdicts}:\n{}",
        log[written..].join("\n")
    );
    assert_eq!(
        std::fs::read(dst.path().join("album/sub/two.bin")).unwrap(),
        data(90_000, 95)
    );
}
