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
        let mut strace = Command::new("strace");
        strace
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
            .env("XDG_CONFIG_HOME", test_config_home());
        let (strace, addr, lines) = spawn_serving(strace);
        Some(Self {
            strace,
            log,
            addr,
            lines,
        })
    }

    /// Stops `ferry serve` and strace once strace has logged a line for which `logged`
    /// holds (the process may have made the call, and the test seen its effect, before
    /// strace wrote its line: killed then, the line would be missing), and returns strace's
    /// log, one call per line.
    fn finish(mut self, logged: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + DEADLINE;
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(&logged)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "strace never logged the call looked for"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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

/// The descriptor the `openat`/`openat2` call at `log[at]` returned (`... = 9`). When
/// another thread's call came between (a busy machine), strace ends that line with
/// `<unfinished ...>` and gives the result on a later line of the same pid,
/// `<... openat resumed>) = 9`.
fn returned_fd(log: &[String], at: usize) -> String {
    let pid = |line: &str| line.split_whitespace().next().map(str::to_owned);
    let line = match log[at].contains("<unfinished ...>") {
        true => log[at + 1..]
            .iter()
            .find(|l| pid(l) == pid(&log[at]) && l.contains(" resumed>"))
            .unwrap_or_else(|| panic!("no result for {:?}", log[at])),
        false => &log[at],
    };
    line.rsplit("= ").next().unwrap().trim().to_owned()
}

/// Whether `line` starts (perhaps unfinished) the call `call(fd` of any thread. strace pads
/// the pid column (`8666  fdatasync(9)` for a four-digit pid, one space for five digits).
fn is_call_on(line: &str, call: &str, fd: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{call}({fd}")))
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
    let log = serve.finish(|l| l.contains(" write(") && l.contains("received"));

    let open = find(&log, 0, "the partial's creation", |l| {
        l.contains("\"synced.bin.") && l.contains(".ferry.part\"") && l.contains("O_CREAT")
    });
    let part_fd = returned_fd(&log, open);
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
        eager: false,
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
    let log = serve.finish(|l| l.contains(" write(") && l.contains("are kept"));

    let open = find(&log, 0, "the partial's creation", |l| {
        l.contains("\"cut.bin.abababababababab.ferry.part\"") && l.contains("O_CREAT")
    });
    let part_fd = returned_fd(&log, open);
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
    let log = serve.finish(|l| l.contains(" sendto(") && l.contains("\\\"kind\\\":\\\"files\\\""));

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

/// A server with every slot but the newcomer's held by `hogs` connections that each sent one
/// whole, valid frame (an empty file) and then nothing: frames just within the idle timeout
/// kept such slots for ever (issue 8's "a few slow peers can never block others").
fn full_of_waiting_peers(
    dir: &Path,
    hogs: usize,
) -> (
    ferry::transfer::ServerHandle,
    crossbeam_channel::Receiver<ferry::events::Event>,
    Vec<TcpStream>,
) {
    let mut config = ferry::transfer::ServerConfig::new(LOOPBACK, 0, dir.to_owned());
    config.max_connections = hogs;
    config.max_per_peer = hogs + 1;
    config.evict_waiting_after = std::time::Duration::from_millis(300);
    let (server, events) = start_server_with(config);
    let mut held = Vec::new();
    for i in 0..hogs {
        let mut hog = TcpStream::connect(server.local_addr()).unwrap();
        hog.write_all(&plain_frame(&plain_header(&format!("z{i}.txt"), 0, "")))
            .unwrap();
        held.push(hog);
    }
    // Each empty file arrives: every hog holds its slot, waiting at a frame boundary.
    let (finished, _) = wait_files(&events, hogs);
    assert_eq!(finished.len(), hogs);
    (server, events, held)
}

#[test]
fn a_full_server_gives_the_slot_of_a_peer_that_waits_too_long_to_a_newcomer() {
    let dst = tempfile::tempdir().unwrap();
    let (server, events, held) = full_of_waiting_peers(dst.path(), 2);
    // Time passing is the condition under test: the hogs wait past the eviction age.
    std::thread::sleep(std::time::Duration::from_millis(700));
    plain_upload(server.local_addr(), &[("real.txt", b"a real upload", "")]);
    // The upload arrives, and the server says why a hog lost its slot (in either order).
    use ferry::events::{Event, ServerEvent, TransferEvent};
    let (mut arrived, mut why) = (None, None);
    wait_for(&events, |event| {
        match event {
            Event::Transfer(TransferEvent::Finished { path, .. }) => arrived = path.clone(),
            Event::Server(ServerEvent::ConnectionError { reason, .. }) => {
                why = Some(reason.clone())
            }
            _ => {}
        }
        (arrived.is_some() && why.is_some()).then_some(())
    });
    assert_eq!(std::fs::read(arrived.unwrap()).unwrap(), b"a real upload");
    let why = why.unwrap();
    assert!(why.contains("every connection slot was taken"), "{why}");
    let closed = held
        .iter()
        .filter(|hog| {
            let mut hog = *hog;
            hog.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            matches!(std::io::Read::read(&mut hog, &mut [0u8; 1]), Ok(0))
        })
        .count();
    assert_eq!(closed, 1, "one slot was needed, one hog dropped");
}

#[test]
fn a_peer_that_keeps_its_frames_coming_keeps_its_slot() {
    let dst = tempfile::tempdir().unwrap();
    let (server, _events, mut held) = full_of_waiting_peers(dst.path(), 1);
    // The hog sends an empty file every 20 ms: never waiting as long as 300 ms.
    let mut hog = held.remove(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = std::sync::Arc::clone(&stop);
    let keeper = std::thread::spawn(move || {
        let mut i = 0u32;
        while !busy.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let frame = plain_frame(&plain_header(&format!("k{i}.txt"), 0, ""));
            if hog.write_all(&frame).is_err() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    });
    // Well past the eviction age: the newcomer is told the server is busy.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let mut newcomer = TcpStream::connect(server.local_addr()).unwrap();
    newcomer.set_read_timeout(Some(DEADLINE)).unwrap();
    let answer = read_answer(&mut newcomer);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(keeper.join().unwrap(), "the busy peer kept its connection");
    assert!(
        matches!(&answer, ferry::protocol::ReceiverMsg::Decline { reason, .. } if reason.contains("server busy")),
        "{answer:?}"
    );
}

#[test]
fn an_evicted_ferry_sender_is_told_why_it_lost_its_slot() {
    let dst = tempfile::tempdir().unwrap();
    let mut config = ferry::transfer::ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.max_connections = 1;
    config.max_per_peer = 2;
    config.evict_waiting_after = std::time::Duration::from_millis(300);
    let (server, _events) = start_server_with(config);
    // A Ferry sender sends one empty file, is told it is verified, then waits.
    let mut hog = TcpStream::connect(server.local_addr()).unwrap();
    hog.set_read_timeout(Some(DEADLINE)).unwrap();
    let offer = SenderMsg::Offer(Header {
        eager: false,
        file_name: "first.txt".into(),
        file_size: 0,
        msg: String::new(),
        resume_key: None,
    });
    hog.write_all(&encode_sender_msg(&offer).unwrap()).unwrap();
    assert!(matches!(
        read_answer(&mut hog),
        ferry::protocol::ReceiverMsg::Accept { .. }
    ));
    let end = SenderMsg::End {
        blake3: *blake3::hash(b"").as_bytes(),
    };
    hog.write_all(&encode_sender_msg(&end).unwrap()).unwrap();
    assert!(matches!(
        read_answer(&mut hog),
        ferry::protocol::ReceiverMsg::Verified { .. }
    ));
    // Time passing is the condition under test: the hog waits past the eviction age.
    std::thread::sleep(std::time::Duration::from_millis(700));
    plain_upload(server.local_addr(), &[("real.txt", b"a real upload", "")]);
    // The hog is told why, in words, before its connection closes.
    match read_answer(&mut hog) {
        ferry::protocol::ReceiverMsg::Failed { reason } => {
            assert!(
                reason.contains("every connection slot was taken"),
                "{reason}"
            )
        }
        other => panic!("expected the reason it was dropped, got {other:?}"),
    }
    assert!(matches!(
        std::io::Read::read(&mut hog, &mut [0u8; 1]),
        Ok(0)
    ));
}
