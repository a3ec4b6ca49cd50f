//! Attacks on the receiver's download folder (issue 8, parts 1 and 5): links planted where a
//! kept partial or a final name would be, a process swapping a partial for a symlink while
//! uploads resume, a flood of same-name files, parallel offers racing for the same free space,
//! and expiry of old partials. Each runs a real server on loopback against real files; the
//! file outside the folder that an attacker aims at must never change (bytes and mtime).

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use ferry::events::{CancelToken, Event, ServerEvent, event_channel};
use ferry::protocol::{Header, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg};
use ferry::transfer::{FileOutcome, OutgoingFile, SendOptions, ServerConfig, send_files};

use crate::util::*;

/// A file outside the download folder an attacker wants written, and how it looked before.
struct Victim {
    path: PathBuf,
    bytes: Vec<u8>,
    modified: SystemTime,
}

impl Victim {
    fn new(dir: &Path) -> Self {
        let path = dir.join("authorized_keys");
        let bytes = b"ssh-ed25519 AAAA precious key\n".to_vec();
        std::fs::write(&path, &bytes).unwrap();
        // In the past, so a write (even of the same bytes) shows as a new mtime.
        let modified = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        Self {
            path,
            bytes,
            modified,
        }
    }

    fn assert_untouched(&self) {
        let meta = std::fs::symlink_metadata(&self.path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            self.bytes,
            "bytes changed"
        );
        assert_eq!(meta.modified().unwrap(), self.modified, "mtime changed");
    }
}

/// The partial's name a Ferry sender of `file` (saved as `name`) would resume from.
fn kept_part_name(name: &str, file: &Path) -> String {
    let key = ferry::transfer::resume_key(file).unwrap();
    format!("{name}.{}.ferry.part", &key[..16])
}

fn send_one(addr: std::net::SocketAddr, file: &Path) -> FileOutcome {
    let (sink, _) = event_channel(None);
    let mut outcomes = send_files(
        &SendOptions::new(addr.to_string()),
        &[OutgoingFile::new(file)],
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

/// Offers `name` on a raw Ferry connection with `resume_key` and returns the first real
/// answer (after any `waiting`) and the connection.
fn raw_offer(
    addr: std::net::SocketAddr,
    name: &str,
    size: u64,
    resume_key: Option<String>,
) -> (ReceiverMsg, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let offer = SenderMsg::Offer(Header {
        eager: false,
        file_name: name.into(),
        file_size: size,
        msg: String::new(),
        resume_key,
    });
    stream
        .write_all(&encode_sender_msg(&offer).unwrap())
        .unwrap();
    loop {
        match read_answer(&mut stream) {
            ReceiverMsg::Waiting { .. } => continue,
            answer => return (answer, stream),
        }
    }
}

/// The attack of a planted partial (a hard link or a symlink to `victim`): the receiver
/// reveals nothing about it, leaves it and the victim alone, and saves the upload under a
/// fresh name.
fn planted_partial_is_left_alone(plant: impl Fn(&Path, &Path)) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = Victim::new(outside.path());
    let file = src.path().join("notes.txt");
    // The victim's bytes are even the start of the offered file: a resume would be agreed.
    let mut contents = victim.bytes.clone();
    contents.extend_from_slice(&data(100_000, 81));
    std::fs::write(&file, &contents).unwrap();
    let part_name = kept_part_name("notes.txt", &file);
    plant(&victim.path, &dst.path().join(&part_name));
    let (server, events) = start_server(dst.path());

    // What the receiver tells a peer offering exactly that file: no offset, no hash.
    let key = ferry::transfer::resume_key(&file).unwrap();
    let (answer, stream) = raw_offer(
        server.local_addr(),
        "notes.txt",
        contents.len() as u64,
        Some(key),
    );
    match answer {
        ReceiverMsg::Accept {
            offset,
            prefix_blake3,
            ..
        } => assert_eq!(
            (offset, prefix_blake3),
            (0, None),
            "nothing about the planted file is revealed"
        ),
        other => panic!("{other:?}"),
    }
    drop(stream);
    let (_, failed) = wait_files(&events, 1);
    assert_eq!(failed.len(), 1);

    // A real upload is verified under a fresh name, sent in full.
    match send_one(server.local_addr(), &file) {
        FileOutcome::Verified {
            saved_as,
            resumed_from: 0,
        } => {
            assert!(saved_as.starts_with("notes ("), "{saved_as}");
            assert_eq!(std::fs::read(dst.path().join(&saved_as)).unwrap(), contents);
        }
        other => panic!("{other:?}"),
    }
    victim.assert_untouched();
    assert!(
        std::fs::symlink_metadata(dst.path().join(&part_name)).is_ok(),
        "the planted entry is left where it was"
    );
}

#[test]
fn a_planted_hard_link_named_like_a_kept_partial_is_never_resumed() {
    planted_partial_is_left_alone(|victim, part| std::fs::hard_link(victim, part).unwrap());
}

#[test]
fn a_planted_symlink_named_like_a_kept_partial_is_never_followed() {
    planted_partial_is_left_alone(|victim, part| symlink(victim, part).unwrap());
}

#[test]
fn a_symlink_at_the_final_name_is_neither_followed_nor_replaced() {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = Victim::new(outside.path());
    // Planted before the upload: the file takes the next name.
    symlink(&victim.path, dst.path().join("early.txt")).unwrap();
    let (server, _events) = start_server(dst.path());
    let (answer, mut stream) = raw_offer(server.local_addr(), "early.txt", 5, None);
    assert!(
        matches!(&answer, ReceiverMsg::Accept { saved_as, .. } if saved_as == "early (1).txt"),
        "{answer:?}"
    );
    drop(stream);

    // Planted while the data is on its way: the commit must not follow or replace it.
    let (answer, s) = raw_offer(server.local_addr(), "late.txt", 5, None);
    stream = s;
    assert!(
        matches!(&answer, ReceiverMsg::Accept { saved_as, .. } if saved_as == "late.txt"),
        "{answer:?}"
    );
    symlink(&victim.path, dst.path().join("late.txt")).unwrap();
    stream.write_all(&encode_chunk_header(5)).unwrap();
    stream.write_all(b"hello").unwrap();
    stream
        .write_all(
            &encode_sender_msg(&SenderMsg::End {
                blake3: *blake3::hash(b"hello").as_bytes(),
            })
            .unwrap(),
        )
        .unwrap();
    assert_eq!(
        read_answer(&mut stream),
        ReceiverMsg::Verified {
            saved_as: "late (1).txt".into()
        }
    );
    assert_eq!(
        std::fs::read(dst.path().join("late (1).txt")).unwrap(),
        b"hello"
    );
    for link in ["early.txt", "late.txt"] {
        let meta = std::fs::symlink_metadata(dst.path().join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} was replaced");
    }
    victim.assert_untouched();
}

#[test]
fn a_partial_swapped_with_a_symlink_during_resumes_never_reaches_outside() {
    const RACE: Duration = Duration::from_secs(3);
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = Victim::new(outside.path());
    let file = src.path().join("race.bin");
    let contents = data(64 * 1024, 82);
    std::fs::write(&file, &contents).unwrap();
    let part = dst.path().join(kept_part_name("race.bin", &file));
    let (server, _events) = start_server(dst.path());

    // Swaps the partial's name between a genuine kept prefix and a symlink to the victim,
    // atomically (rename over it), as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, part, victim) = (Arc::clone(&stop), part.clone(), victim.path.clone());
        let prefix = contents[..32 * 1024].to_vec();
        // Staged beside the partial (a rename stays in one file system), under names Ferry
        // never uses.
        let (regular, link) = (
            dst.path().join(".staging-regular"),
            dst.path().join(".staging-link"),
        );
        thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::SeqCst) {
                std::fs::write(&regular, &prefix).unwrap();
                std::fs::rename(&regular, &part).unwrap();
                let _ = std::fs::remove_file(&link);
                symlink(&victim, &link).unwrap();
                std::fs::rename(&link, &part).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = Instant::now() + RACE;
    let (mut uploads, mut resumed, mut verified, mut failed) = (0u32, 0u32, 0u32, 0u32);
    let mut last_failure = String::new();
    while Instant::now() < deadline {
        uploads += 1;
        match send_one(server.local_addr(), &file) {
            FileOutcome::Verified {
                saved_as,
                resumed_from,
            } => {
                verified += 1;
                resumed += u32::from(resumed_from > 0);
                let saved = dst.path().join(&saved_as);
                let meta = std::fs::symlink_metadata(&saved).unwrap();
                assert!(meta.file_type().is_file(), "{saved_as} is not a plain file");
                assert_eq!(std::fs::read(&saved).unwrap(), contents, "{saved_as}");
            }
            // Losing the race may fail an upload; it must never write outside.
            FileOutcome::Failed(failure) => {
                failed += 1;
                last_failure = failure.to_string();
            }
            other => panic!("{other:?}"),
        }
        victim.assert_untouched();
    }
    stop.store(true, Ordering::SeqCst);
    let swaps = swapper.join().unwrap();
    eprintln!(
        "{uploads} uploads ({verified} verified, {resumed} resumed, {failed} failed, the last \
         with {last_failure:?}) over {swaps} swaps"
    );
    assert!(verified > 0, "no upload got through at all");
    victim.assert_untouched();
}

/// CPU seconds (user + system) a process used so far, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_sec: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    ticks as f64 / per_sec
}

#[test]
fn ten_thousand_files_of_one_name_cost_linear_work() {
    const FILES: usize = 10_000;
    // Linear work takes 7-10 s of debug-build CPU (more on a loaded machine: every file is
    // synced); the quadratic search this guards against took 98 s and more.
    const CPU_BUDGET_SECS: f64 = 45.0;
    let dst = tempfile::tempdir().unwrap();
    // The real server in a process of its own, so its CPU time is measured alone.
    let (serve, addr, lines) = spawn_serve(dst.path(), &[]);
    let pid = serve.0.id();
    let before = cpu_secs(pid);
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    let frame = plain_frame(&plain_header("z.txt", 0, ""));
    let mut all = Vec::with_capacity(frame.len() * FILES);
    for _ in 0..FILES {
        all.extend_from_slice(&frame);
    }
    stream.write_all(&all).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // The last file received says every earlier one was saved (its "will be saved as" line,
    // printed when it starts, says nothing yet).
    let last = format!("z ({}).txt", FILES - 1);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the last file never arrived");
        if line.starts_with("received ") && line.contains(&last) {
            break;
        }
    }
    let used = cpu_secs(pid) - before;
    eprintln!(
        "{FILES} same-name files: {used:.2} s of server CPU, {:.1} s wall",
        started.elapsed().as_secs_f64()
    );
    assert!(
        used < CPU_BUDGET_SECS,
        "{used:.2} s of CPU for {FILES} files"
    );
    let names = names_in(dst.path());
    let odd: Vec<&String> = names
        .iter()
        .filter(|n| !(*n == "z.txt" || n.starts_with("z (") && n.ends_with(").txt")))
        .collect();
    assert!(
        names.len() == FILES && odd.is_empty(),
        "{} names, unexpected: {odd:?}",
        names.len()
    );
}

#[test]
fn parallel_offers_see_each_others_reserved_space() {
    const OFFERS: usize = 6;
    const SIZE: u64 = 40 * 1024 * 1024;
    let disk = match SmallDisk::mount(50) {
        Ok(disk) => disk,
        Err(reason) => return skip_or_fail(false, &reason),
    };
    let (server, _events) = start_server(disk.path());
    let addr = server.local_addr();
    // All offers at once; each answer is read while every connection stays open (an
    // accepted one holds its reservation until its upload ends).
    let racers: Vec<_> = (0..OFFERS)
        .map(|i| thread::spawn(move || raw_offer(addr, &format!("big-{i}.bin"), SIZE, None)))
        .collect();
    let answers: Vec<(ReceiverMsg, TcpStream)> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted = answers
        .iter()
        .filter(|(a, _)| matches!(a, ReceiverMsg::Accept { .. }))
        .count();
    let declined: Vec<&String> = answers
        .iter()
        .filter_map(|(a, _)| match a {
            ReceiverMsg::Decline { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        accepted,
        1,
        "{:?}",
        answers.iter().map(|a| &a.0).collect::<Vec<_>>()
    );
    assert_eq!(declined.len(), OFFERS - 1);
    for reason in declined {
        assert!(reason.starts_with("not enough disk space"), "{reason}");
    }
    drop(answers);
    drop(server);
}

#[test]
fn old_partials_expire_at_start_and_nothing_else_is_touched() {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = Victim::new(outside.path());
    let day = Duration::from_secs(24 * 3600);
    let old = SystemTime::now() - 8 * day;
    let set_old = |name: &str, len: u64| {
        let file = std::fs::File::create(dst.path().join(name)).unwrap();
        file.set_len(len).unwrap();
        file.set_modified(old).unwrap();
    };
    set_old("gone.bin.0123456789abcdef.ferry.part", 1000);
    set_old("also-gone.txt.ferry.part", 24);
    set_old("old-but-mine.txt", 10);
    std::fs::write(dst.path().join("fresh.bin.ferry.part"), b"fresh").unwrap();
    // A symlink with an old time of its own, pointing outside: left alone, never followed.
    let link = dst.path().join("x.ferry.part");
    symlink(&victim.path, &link).unwrap();
    rustix::fs::utimensat(
        rustix::fs::CWD,
        &link,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();

    let (_server, events) = start_server(dst.path());
    let (names, bytes) = wait_for(&events, |e| match e {
        Event::Server(ServerEvent::PartialsExpired { names, bytes }) => {
            Some((names.clone(), *bytes))
        }
        _ => None,
    });
    assert_eq!(
        names,
        [
            "also-gone.txt.ferry.part",
            "gone.bin.0123456789abcdef.ferry.part"
        ]
    );
    assert_eq!(bytes, 1024);
    assert_eq!(
        names_in(dst.path()),
        ["fresh.bin.ferry.part", "old-but-mine.txt", "x.ferry.part"]
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    victim.assert_untouched();
}

#[test]
fn expiry_age_is_configurable_and_the_cli_says_what_it_removed() {
    let dst = tempfile::tempdir().unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let file = std::fs::File::create(dst.path().join("a.bin.ferry.part")).unwrap();
    file.set_len(7).unwrap();
    file.set_modified(two_days_ago).unwrap();
    drop(file);
    // Under the default (7 days) it stays...
    let mut config = ServerConfig::new(LOOPBACK, 0, dst.path().to_owned());
    config.fsync = false;
    drop(start_server_with(config));
    assert_eq!(names_in(dst.path()), ["a.bin.ferry.part"]);
    // ...with a one-day limit it goes, and `ferry serve` says so.
    let (_serve, _addr, lines) =
        spawn_serve(dst.path(), &["--partial-max-age-days", "1", "--no-fsync"]);
    let line = wait_line(&lines, "removed");
    assert_eq!(
        line,
        "removed 1 old partial file(s), 7 bytes: a.bin.ferry.part"
    );
    assert!(names_in(dst.path()).is_empty());
}
