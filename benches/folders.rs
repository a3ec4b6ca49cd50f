//! Folder benchmark (issue 13): many small files in nested folders, Ferry (in-process server
//! and sender on loopback; as a user gets it, encrypted with fsync on, and with each turned
//! off; and the same files sent one by one, as picking them sends them) against `tar c | nc`
//! into `nc | tar x`, in the same run, the order rotating each round; then many empty files
//! (files/s); then one large file inside a folder against the same file sent alone. Prints
//! figures and medians; asserts nothing.
//!
//! Every round's output stays until the end: on a file system without a journal (ext4 in
//! some VMs) creating files within about 30 s of deleting many costs several times more
//! (the inode allocator skips recently deleted inodes one by one), which would otherwise
//! charge one round's clean-up to whichever case runs next.
//!
//! The work folder is made in `TMPDIR`: point it at a folder whose file system is not
//! churned by other work (on a machine running test suites, /tmp is; `TMPDIR=/var/tmp`).
//!
//! ```text
//! TMPDIR=/var/tmp cargo bench --bench folders
//! FERRY_BENCH_FILES=2000 FERRY_BENCH_EMPTY=10000 FERRY_BENCH_BIG=268435456 cargo bench --bench folders
//! ```

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::events::{CancelToken, event_channel};
use ferry::secure::Keyring;
use ferry::transfer::{
    AcceptPolicy, OutgoingFile, OutgoingItem, SendOptions, ServerConfig, ServerHandle, send_items,
    walk_folder,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `count` files of 1..=64 KiB spread over 10 x 10 nested folders.
fn make_tree(root: &Path, count: usize, max_len: usize) -> u64 {
    let mut total = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let dir = root.join(format!("d{}/e{}", i % 10, (i / 10) % 10));
        std::fs::create_dir_all(&dir).expect("folder");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = if max_len == 0 {
            0
        } else {
            1024 + (seed as usize % (max_len - 1024 + 1))
        };
        let bytes: Vec<u8> = (0..len).map(|j| (j as u64 ^ seed) as u8).collect();
        std::fs::write(dir.join(format!("f{i}.bin")), &bytes).expect("file");
        total += len as u64;
    }
    total
}

/// How Ferry is run in a round.
#[derive(Clone, Copy)]
struct Setup {
    fsync: bool,
    encrypted: bool,
    /// The folder's files as separate files (as picking many files sends them), each with
    /// its own offer, answer, sync and verdict, instead of the folder.
    one_by_one: bool,
}

const DEFAULT: Setup = Setup {
    fsync: true,
    encrypted: true,
    one_by_one: false,
};

fn ferry_send(items: Vec<OutgoingItem>, out: &Path, setup: Setup) -> Duration {
    let mut config = ServerConfig::new([127, 0, 0, 1].into(), 0, out.to_owned());
    config.fsync = setup.fsync;
    config.max_files_per_connection = 1_000_000;
    config.policy = AcceptPolicy::Everyone;
    let keys = tempfile::tempdir().expect("keys");
    if setup.encrypted {
        config.keyring = Some(Keyring::load(&keys.path().join("receiver")).expect("keyring"));
    }
    let (sink, events) = event_channel(None);
    let server = ServerHandle::start(config, sink).expect("server");
    std::thread::spawn(move || for _ in events {});
    let mut opts = SendOptions::new(server.local_addr().to_string());
    if setup.encrypted {
        opts.keyring = Some(Keyring::load(&keys.path().join("sender")).expect("keyring"));
    }
    let (sink, events) = event_channel(None);
    std::thread::spawn(move || for _ in events {});
    let start = Instant::now();
    let outcomes = send_items(&opts, &items, &sink, &CancelToken::new()).expect("send");
    let took = start.elapsed();
    let failed = outcomes.iter().filter(|o| !o.is_success()).count();
    if let Some(first) = outcomes.iter().find(|o| !o.is_success()) {
        eprintln!("  {failed} files failed, the first: {first}");
    }
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n => v[n / 2],
    }
}

fn tar_nc(src: &Path, name: &str, out: &Path) -> Option<Duration> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let mut rx = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "nc -l 127.0.0.1 {port} | tar x -C '{}'",
            out.display()
        ))
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    // nc -l needs a moment to listen; the sender retries until it connects.
    loop {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar c -C '{}' '{name}' | nc -N 127.0.0.1 {port}",
                src.display()
            ))
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if status.success() || start.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rx.wait();
    Some(start.elapsed())
}

fn folder_item(path: &Path) -> OutgoingItem {
    OutgoingItem::Folder(walk_folder(path).expect("walk"))
}

/// The files of the folder at `path` as separate items (their names are all different).
fn file_items(path: &Path) -> Vec<OutgoingItem> {
    let folder = walk_folder(path).expect("walk");
    folder
        .files
        .iter()
        .map(|(_, f)| OutgoingItem::File(OutgoingFile::new(&f.path)))
        .collect()
}

fn main() {
    let files: usize = env_or("FERRY_BENCH_FILES", 10_000);
    let empty: usize = env_or("FERRY_BENCH_EMPTY", 100_000);
    let big: u64 = env_or("FERRY_BENCH_BIG", 2 << 30);
    let runs: u32 = env_or("FERRY_BENCH_RUNS", 3);
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    let tree = src.join("tree");
    let bytes = make_tree(&tree, files, 64 * 1024);
    eprintln!("{files} files, {} MiB, {runs} rounds", bytes >> 20);
    // Every source first, and nothing deleted until the end (see the module docs).
    let empties = src.join("empties");
    make_tree(&empties, empty, 0);
    let single = src.join("single");
    std::fs::create_dir_all(&single).expect("folder");
    let big_path = single.join("big.bin");
    write_random_file(&big_path, big);
    // Outputs live until the end (see the module docs).
    let mut outputs = Vec::new();
    let cases: [(&str, Option<Setup>); 5] = [
        ("ferry", Some(DEFAULT)),
        (
            "ferry, the files one by one",
            Some(Setup {
                one_by_one: true,
                ..DEFAULT
            }),
        ),
        (
            "ferry --no-encryption",
            Some(Setup {
                encrypted: false,
                ..DEFAULT
            }),
        ),
        (
            "ferry --no-fsync",
            Some(Setup {
                fsync: false,
                ..DEFAULT
            }),
        ),
        ("tar|nc", None),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..runs {
        let mut line = format!("round {round}:");
        for k in 0..cases.len() {
            let i = (k + round as usize) % cases.len();
            let (name, setup) = cases[i];
            let out = tempfile::tempdir_in(work.path()).expect("out");
            let took = match setup {
                Some(setup) if setup.one_by_one => {
                    Some(ferry_send(file_items(&tree), out.path(), setup))
                }
                Some(setup) => Some(ferry_send(vec![folder_item(&tree)], out.path(), setup)),
                None => tar_nc(&src, "tree", out.path()),
            };
            outputs.push(out);
            match took {
                Some(took) => {
                    let rate = files as f64 / took.as_secs_f64();
                    rates[i].push(rate);
                    line += &format!(" {name} {rate:.0} files/s;");
                }
                None => line += &format!(" {name} unavailable;"),
            }
        }
        eprintln!("{line}");
    }
    let tar = median(rates[cases.len() - 1].clone());
    for (i, (name, _)) in cases.iter().enumerate() {
        let m = median(rates[i].clone());
        eprintln!("median {name}: {m:.0} files/s ({:.2}x tar|nc)", m / tar);
    }
    let out = tempfile::tempdir_in(work.path()).expect("out");
    let no_fsync = Setup {
        fsync: false,
        encrypted: false,
        one_by_one: false,
    };
    let e = ferry_send(vec![folder_item(&empties)], out.path(), no_fsync);
    outputs.push(out);
    eprintln!(
        "{empty} empty files (no fsync): {:.0} files/s",
        empty as f64 / e.as_secs_f64()
    );
    // Alternating, twice each, the better of each: the first run of a fresh file pays for
    // filling the page cache, whichever case it is.
    let (mut inside, mut alone) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let out = tempfile::tempdir_in(work.path()).expect("out");
        inside = inside.min(ferry_send(vec![folder_item(&single)], out.path(), no_fsync));
        outputs.push(out);
        let out = tempfile::tempdir_in(work.path()).expect("out");
        let file = vec![OutgoingItem::File(OutgoingFile::new(&big_path))];
        alone = alone.min(ferry_send(file, out.path(), no_fsync));
        outputs.push(out);
    }
    let mib_s = |d: Duration| (big >> 20) as f64 / d.as_secs_f64();
    eprintln!(
        "{} MiB file (no fsync): inside a folder {:.0} MiB/s, alone {:.0} MiB/s",
        big >> 20,
        mib_s(inside),
        mib_s(alone)
    );
}

/// `len` bytes that do not compress (and are really on disk, unlike a sparse file's).
fn write_random_file(path: &Path, len: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("big file"));
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    let mut seed = 0u64;
    while left > 0 {
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut block);
        seed += 1;
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    file.flush().expect("flush");
}
