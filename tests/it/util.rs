//! Helpers shared by the integration tests: servers on loopback port 0, plain peers written
//! the way a 20-line Python script would, deterministic test data and event waits with
//! deadlines (never sleeps).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ferry::events::{Event, ServerEvent, TransferEvent, event_channel};
use ferry::transfer::{ServerConfig, ServerHandle};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A server on 127.0.0.1:0 saving into `dir`, and its event stream.
pub fn start_server(dir: &Path) -> (ServerHandle, Receiver<Event>) {
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.to_owned());
    config.keyring = Some(test_receiver_keyring());
    start_server_with(config)
}

/// One device identity for the in-process servers of this test process (in a temp folder,
/// never the user's config), so Ferry senders with identities of their own can encrypt.
pub fn test_receiver_keyring() -> ferry::secure::Keyring {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temp folder"));
    ferry::secure::Keyring::load(dir.path()).expect("a test identity")
}

/// A fresh device named `name`: its identity and trust store in `dir`.
pub fn device(dir: &Path, name: &str) -> ferry::secure::Keyring {
    let mut identity = ferry::secure::Identity::load_or_create(dir).expect("an identity");
    identity.rename(dir, name).expect("a device name");
    ferry::secure::Keyring::load(dir).expect("a keyring")
}

pub fn start_server_with(config: ServerConfig) -> (ServerHandle, Receiver<Event>) {
    init_logging();
    let (sink, events) = event_channel(None);
    let server = ServerHandle::start(config, sink).expect("server starts");
    (server, events)
}

/// Every log line of the engine's `notes` module, at any level, for tests that must show an
/// error reached a loop whose only trace of it is a log line.
static NOTES_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The test binary's logger: env_logger as usual (shown for failing tests, `RUST_LOG=debug`
/// for more), and every record of `ferry::notes` also kept in [`NOTES_LOG`].
struct RecordingLogger {
    inner: env_logger::Logger,
}

impl log::Log for RecordingLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("ferry::notes") || self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if record.target().starts_with("ferry::notes") {
            let mut log = NOTES_LOG.lock().unwrap_or_else(|e| e.into_inner());
            log.push(record.args().to_string());
        }
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs [`RecordingLogger`] once per test binary.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let inner =
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .is_test(true)
                .build();
        let level = inner.filter().max(log::LevelFilter::Debug);
        if log::set_boxed_logger(Box::new(RecordingLogger { inner })).is_ok() {
            log::set_max_level(level);
        }
    });
}

/// Whether a log line of the notes engine containing `needle` was recorded.
pub fn notes_logged(needle: &str) -> bool {
    let log = NOTES_LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().any(|line| line.contains(needle))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One plain frame: `struct.pack('i', len(h)) + h`.
pub fn plain_frame(header_json: &str) -> Vec<u8> {
    let mut out = (header_json.len() as i32).to_le_bytes().to_vec();
    out.extend_from_slice(header_json.as_bytes());
    out
}

/// The JSON a Python client would send (ensure_ascii escapes included via serde's escaping
/// of control characters only; non-ASCII is sent raw, which Python also accepts).
pub fn plain_header(name: &str, size: usize, msg: &str) -> String {
    serde_json::json!({ "file_name": name, "file_size": size, "msg": msg }).to_string()
}

/// Uploads files as a plain peer over one connection, then closes; like the Python client.
pub fn plain_upload(addr: SocketAddr, files: &[(&str, &[u8], &str)]) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    for (name, bytes, msg) in files {
        stream
            .write_all(&plain_frame(&plain_header(name, bytes.len(), msg)))
            .unwrap();
        stream.write_all(bytes).unwrap();
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the server to close its side: it has then read everything.
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a plain peer must never receive anything");
}

/// Receives events until `done` says so; panics at the deadline with what was seen.
pub fn wait_for<T>(events: &Receiver<Event>, mut done: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => {
                if let Some(result) = done(&event) {
                    return result;
                }
                seen.push(event);
            }
            Err(_) => panic!("deadline passed; events seen: {seen:#?}"),
        }
    }
}

/// Waits for `count` incoming files to finish or fail; returns (finished paths, failures).
pub fn wait_files(events: &Receiver<Event>, count: usize) -> (Vec<(PathBuf, bool)>, Vec<String>) {
    let mut finished = Vec::new();
    let mut failed = Vec::new();
    wait_for(events, |event| {
        match event {
            Event::Transfer(TransferEvent::Finished {
                path: Some(path),
                verified,
                ..
            }) => {
                finished.push((path.clone(), *verified));
            }
            Event::Transfer(TransferEvent::Failed { failure, .. }) => {
                failed.push(failure.to_string())
            }
            Event::Transfer(TransferEvent::Cancelled { by_peer, .. }) => {
                failed.push(
                    if *by_peer {
                        "cancelled by peer"
                    } else {
                        "cancelled"
                    }
                    .to_owned(),
                );
            }
            _ => {}
        }
        (finished.len() + failed.len() >= count).then_some(())
    });
    (finished, failed)
}

/// Waits for a connection-level error and returns its reason.
pub fn wait_connection_error(events: &Receiver<Event>) -> String {
    wait_for(events, |event| match event {
        Event::Server(ServerEvent::ConnectionError { reason, .. }) => Some(reason.clone()),
        Event::Transfer(TransferEvent::Failed { failure, .. }) => Some(failure.to_string()),
        _ => None,
    })
}

/// A test whose prerequisite is missing calls this and returns: it prints `SKIPPED: reason`
/// to stderr (uncaptured, so it shows in every `cargo test` run and CI log), and, when the
/// environment variable `CI` is set and `.ci/run` is supposed to provide the prerequisite
/// (`provided_by_ci`), it panics instead: in CI a silent skip would look like a pass.
pub fn skip_or_fail(provided_by_ci: bool, reason: &str) {
    if provided_by_ci && std::env::var_os("CI").is_some() {
        panic!("CI is set and .ci/run should have provided this: {reason}");
    }
    // Straight to the process's stderr, not `eprintln!`: libtest captures the macros' output
    // of passing tests, and a skip must show in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Sorted names of the entries in `dir`.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A plain server as the original Python one: reads frames and bytes, never answers.
/// Returns its address and a receiver of `(header JSON, bytes)` per file.
pub fn plain_server() -> (SocketAddr, Receiver<(serde_json::Value, Vec<u8>)>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        loop {
            let mut len = [0u8; 4];
            if stream.read_exact(&mut len).is_err() {
                break;
            }
            let mut header = vec![0u8; i32::from_le_bytes(len) as usize];
            stream.read_exact(&mut header).unwrap();
            let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
            // Like the Python original, give up on a header without a size (it would crash).
            let Some(size) = header["file_size"].as_u64() else {
                break;
            };
            let mut bytes = vec![0u8; size as usize];
            stream.read_exact(&mut bytes).unwrap();
            if tx.send((header, bytes)).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

/// The real `ferry` binary.
pub fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.env("RUST_LOG", "info");
    // The device identity and trusted devices go to a folder of the test run's own, never to
    // the machine's real config folder.
    cmd.env("XDG_CONFIG_HOME", test_config_home());
    // Discovery stays on loopback: nothing a test runs announces or sweeps on the machine's
    // real network (a test of other interfaces removes this, or builds a namespace).
    cmd.env("FERRY_ONLY_INTERFACE", "lo");
    cmd
}

/// One config folder for every `ferry` the test binary starts (removed with the process's
/// temp files by the OS, not by the tests).
pub fn test_config_home() -> &'static Path {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferry-test-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a config folder for the tests");
        dir
    })
}

/// A child process killed when the guard goes out of scope (also on panic).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ferry serve --port 0` into `dir` and returns it with its address (read from the
/// first stdout line) and the rest of its stdout as a line channel.
pub fn spawn_serve(dir: &Path, extra: &[&str]) -> (ChildGuard, SocketAddr, Receiver<String>) {
    let mut serve = ferry();
    serve
        .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(dir)
        // LocalSend's fixed port 53317 stays free unless a test asks for LocalSend.
        .args((!extra.contains(&"--localsend-port")).then_some("--no-localsend"))
        .args(extra);
    spawn_serving(serve)
}

/// Starts `command`, a `ferry serve` (or a program that runs one with its stdout), and
/// returns it with the address `serve` prints first and the rest of its stdout.
pub fn spawn_serving(mut command: Command) -> (ChildGuard, SocketAddr, Receiver<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = line_channel(stdout);
    let guard = ChildGuard(child);
    let first = lines
        .recv_timeout(DEADLINE)
        .expect("serve prints its address");
    let addr = first
        .split_whitespace()
        .find_map(|word| word.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    (guard, addr, lines)
}

/// Streams lines of a child's output over a channel (so reads can have deadlines).
pub fn line_channel(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`.
pub fn wait_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {needle:?}; seen: {seen:#?}"),
        }
    }
}

/// The partial file Ferry keeps for `name` in `dir` (`NAME.ferry.part` or, for a Ferry
/// sender's resume key, `NAME.TAG.ferry.part`), if any.
pub fn find_part(dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}.");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let file = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            file.starts_with(&prefix) && file.ends_with(".ferry.part")
        })
}

/// `ferry serve --ask` with its stdin under the test's control.
pub fn spawn_asking_serve(
    dir: &Path,
) -> (
    ChildGuard,
    SocketAddr,
    crossbeam_channel::Receiver<String>,
    std::process::ChildStdin,
) {
    let mut child = ferry()
        .args([
            "serve",
            "--no-localsend",
            "--ask",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = line_channel(child.stdout.take().unwrap());
    let guard = ChildGuard(child);
    let first = lines.recv_timeout(DEADLINE).unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    (guard, addr, lines, stdin)
}

/// N in a `--ask` prompt line "offer N from ..." or "Accept offer N from ...".
pub fn offer_number(line: &str) -> u64 {
    let after = line.split("offer ").nth(1).expect("an offer line");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the offer's number")
}

/// A TCP proxy on 127.0.0.1:0 in front of `target`, for the network faults tests need: a
/// slow link, a flipped bit, a cut or stalled connection, and a count of what the client
/// sent. Hooks act on the client-to-server direction; answers pass freely.
pub struct Proxy {
    target: SocketAddr,
    throttle: Option<(usize, Duration)>,
    flip_at: Option<usize>,
    cut_first_after: Option<usize>,
    stall_first_after: Option<usize>,
    only_one: bool,
}

/// A started [`Proxy`].
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// Client-to-server bytes forwarded so far, over every connection.
    pub counted: Arc<AtomicU64>,
    /// Client bytes each connection carried, in the order the connections ended upstream.
    pub forwarded: Receiver<usize>,
    /// The first byte each connection's client sent, in the order they came.
    pub first_bytes: Receiver<u8>,
    /// The stalled connection's two streams (client, server), once it stalled: shut them
    /// down to end it.
    pub stalled: Receiver<[TcpStream; 2]>,
}

impl Proxy {
    pub fn to(target: SocketAddr) -> Self {
        Self {
            target,
            throttle: None,
            flip_at: None,
            cut_first_after: None,
            stall_first_after: None,
            only_one: false,
        }
    }

    /// At most `bytes_per_tick` every `tick`: a slow network, so a test can act mid-transfer.
    pub fn throttle(mut self, bytes_per_tick: usize, tick: Duration) -> Self {
        self.throttle = Some((bytes_per_tick, tick));
        self
    }

    /// Flips the lowest bit of the byte at `offset` of each connection's client stream.
    pub fn flip_byte(mut self, offset: usize) -> Self {
        self.flip_at = Some(offset);
        self
    }

    /// Cuts the first connection (both sides closed) after `bytes` from the client, like a
    /// dropped network; later ones pass whole.
    pub fn cut_first_after(mut self, bytes: usize) -> Self {
        self.cut_first_after = Some(bytes);
        self
    }

    /// Forwards only `bytes` of the first connection's client stream, then nothing more,
    /// both sides kept open (a link that stalls) until the test shuts down the streams it
    /// gets from [`RunningProxy::stalled`].
    pub fn stall_first_after(mut self, bytes: usize) -> Self {
        self.stall_first_after = Some(bytes);
        self
    }

    /// Takes one connection, then stops listening (later connects are refused).
    pub fn only_one_connection(mut self) -> Self {
        self.only_one = true;
        self
    }

    pub fn start(self) -> RunningProxy {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let counted = Arc::new(AtomicU64::new(0));
        let (tx, forwarded) = crossbeam_channel::unbounded();
        let (first_tx, first_bytes) = crossbeam_channel::unbounded();
        let (stalled_tx, stalled) = crossbeam_channel::bounded(1);
        let count = Arc::clone(&counted);
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { return };
                let (limit, stall) = match (self.cut_first_after, self.stall_first_after) {
                    (Some(cut), _) if n == 0 => (cut, None),
                    (_, Some(stall)) if n == 0 => (stall, Some(stalled_tx.clone())),
                    _ => (usize::MAX, None),
                };
                let server = TcpStream::connect(self.target).unwrap();
                let (client_r, server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_r, mut client_w) = (server, client);
                let (count, tx, first) = (Arc::clone(&count), tx.clone(), first_tx.clone());
                let (throttle, flip_at) = (self.throttle, self.flip_at);
                std::thread::spawn(move || {
                    let up = Upstream {
                        throttle,
                        flip_at,
                        limit,
                        stall,
                        first,
                    };
                    let _ = tx.send(up.pump(client_r, server_w, &count));
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client_w);
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                });
                if self.only_one {
                    return;
                }
            }
        });
        RunningProxy {
            addr,
            counted,
            forwarded,
            first_bytes,
            stalled,
        }
    }
}

/// One connection's client-to-server direction of a [`Proxy`].
struct Upstream {
    throttle: Option<(usize, Duration)>,
    flip_at: Option<usize>,
    limit: usize,
    /// Where to hand the streams when `limit` stalls the connection instead of cutting it.
    stall: Option<Sender<[TcpStream; 2]>>,
    first: Sender<u8>,
}

impl Upstream {
    /// Forwards until either side ends (or the cut, or the stall); returns the bytes
    /// forwarded.
    fn pump(self, mut client_r: TcpStream, mut server_w: TcpStream, count: &AtomicU64) -> usize {
        let chunk = self
            .throttle
            .map_or(64 * 1024, |(bytes_per_tick, _)| bytes_per_tick);
        let mut buf = vec![0u8; chunk];
        let mut forwarded = 0usize;
        loop {
            let want = buf.len().min(self.limit - forwarded);
            let n = match client_r.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if forwarded == 0 {
                let _ = self.first.send(buf[0]);
            }
            if let Some(at) = self
                .flip_at
                .filter(|at| (forwarded..forwarded + n).contains(at))
            {
                buf[at - forwarded] ^= 0x01;
            }
            count.fetch_add(n as u64, Ordering::SeqCst);
            if server_w.write_all(&buf[..n]).is_err() {
                break;
            }
            forwarded += n;
            if let (true, Some(stall)) = (forwarded == self.limit, &self.stall) {
                // Nothing more goes up, and neither end is told.
                let _ = stall.send([client_r, server_w]);
                return forwarded;
            }
            if forwarded == self.limit {
                // The network goes away under both ends.
                let _ = server_w.shutdown(std::net::Shutdown::Both);
                let _ = client_r.shutdown(std::net::Shutdown::Both);
                break;
            }
            if let Some((_, tick)) = self.throttle {
                // The throttle itself, not synchronisation.
                std::thread::sleep(tick);
            }
        }
        let _ = server_w.shutdown(std::net::Shutdown::Write);
        forwarded
    }
}

/// Writes `len` bytes of [`data`] (1 MiB blocks of it) to `path`.
pub fn write_data_file(path: &Path, len: usize, seed: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block = data(1024 * 1024, seed);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

/// BLAKE3 of a file, read in one stream.
pub fn hash_file(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hasher).unwrap();
    hasher.finalize()
}

/// The length of a file, 0 when it does not exist.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Reads one receiver answer off a raw Ferry connection (panics on a malformed one).
pub fn read_answer(stream: &mut TcpStream) -> ferry::protocol::ReceiverMsg {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; ferry::protocol::decode_frame_len(prefix).unwrap()];
    stream.read_exact(&mut body).unwrap();
    ferry::protocol::decode_receiver_msg(&body).unwrap()
}

/// A small tmpfs mounted on a temp folder, unmounted on drop. Mounting needs root (or
/// CAP_SYS_ADMIN), which no package install provides: callers skip (visibly) without it.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size_mib: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Sends `files` to `addr` in Ferry mode over one connection, nobody reading the sender's
/// events; returns each file's outcome.
pub fn send_quietly(
    addr: SocketAddr,
    files: &[ferry::transfer::OutgoingFile],
) -> Vec<ferry::transfer::FileOutcome> {
    // Dropping the receiver makes the sender's events no-ops instead of a full channel.
    let (sink, _) = event_channel(None);
    ferry::transfer::send_files(
        &ferry::transfer::SendOptions::new(addr.to_string()),
        files,
        &sink,
        &ferry::events::CancelToken::new(),
    )
    .unwrap()
}

/// Runs `ip ARGS` (iproute2), for tests that build network namespaces; the error says which
/// command failed and why.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether `program` runs (asked with `version_arg`); prints the skip line `missing` if not.
/// For tools `.ci/run` installs, so under CI a missing one fails.
pub fn have_command(program: &str, version_arg: &str, missing: &str) -> bool {
    let have = Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        skip_or_fail(true, missing);
    }
    have
}

/// Whether the `ip` command is here (see [`have_command`]).
pub fn have_ip_command() -> bool {
    have_command("ip", "-V", "the `ip` command (iproute2) is missing")
}

/// Sends the folder at `path` to `to` (with `opts`, else the defaults) over one connection,
/// its events drained; returns each file's outcome.
pub fn send_folder(
    to: std::net::SocketAddr,
    path: &Path,
    opts: Option<ferry::transfer::SendOptions>,
) -> Vec<ferry::transfer::FileOutcome> {
    let mut opts = opts.unwrap_or_else(|| ferry::transfer::SendOptions::new(to.to_string()));
    opts.to = to.to_string();
    let folder = ferry::transfer::walk_folder(path).unwrap();
    let (sink, events) = event_channel(None);
    // Drained, so thousands of files' events never fill the channel.
    std::thread::spawn(move || for _ in events {});
    ferry::transfer::send_items(
        &opts,
        &[ferry::transfer::OutgoingItem::Folder(folder)],
        &sink,
        &ferry::events::CancelToken::new(),
    )
    .unwrap()
}

/// A hand-built Ferry sender's folder offer: connects to `addr` (reads time out after 20 s),
/// offers the folder `name` with `entries` (its count and bytes summed from them) and
/// `resume_key`; returns the stream and the receiver's answer.
pub fn offer_folder(
    addr: SocketAddr,
    name: &str,
    entries: Vec<ferry::protocol::FolderEntry>,
    resume_key: Option<&str>,
) -> (TcpStream, ferry::protocol::ReceiverMsg) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let folder = ferry::protocol::SenderMsg::Folder {
        name: name.into(),
        count: entries.len() as u64,
        bytes: entries.iter().filter_map(|e| e.size).sum(),
        entries,
        resume_key: resume_key.map(str::to_owned),
        msg: String::new(),
    };
    stream
        .write_all(&ferry::protocol::encode_sender_msg(&folder).unwrap())
        .unwrap();
    let answer = read_answer(&mut stream);
    (stream, answer)
}

/// What `ferry serve` with LocalSend receiving on says it is: the process, its stdout lines,
/// and its "LocalSend receiving is on" line with the address and fingerprint it gives.
pub struct LocalSendServe {
    /// Runs for as long as this lives.
    pub _serve: ChildGuard,
    pub lines: Receiver<String>,
    pub line: String,
    pub addr: SocketAddr,
    pub fingerprint: String,
}

/// `ferry serve` into `dir` with LocalSend receiving on a free port and wanting `pin`,
/// discovery off.
pub fn serve_localsend_with_pin(dir: &Path, pin: &str) -> LocalSendServe {
    serve_localsend(dir, &["--localsend-pin", pin])
}

/// `ferry serve` into `dir` with LocalSend receiving on a free port, discovery off, and
/// `extra` arguments.
pub fn serve_localsend(dir: &Path, extra: &[&str]) -> LocalSendServe {
    let args = [&["--localsend-port", "0", "--no-discovery"][..], extra].concat();
    let (serve, _addr, lines) = spawn_serve(dir, &args);
    let line = wait_line(&lines, "LocalSend receiving is on");
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let fingerprint = line
        .split("fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no fingerprint in {line:?}"))
        .to_owned();
    LocalSendServe {
        _serve: serve,
        lines,
        line,
        addr,
        fingerprint,
    }
}

/// Waits until `ns` has a usable (no longer tentative) IPv6 link-local address on eth0;
/// false (with a skip line) where the kernel gives none.
pub fn ipv6_link_local_ready(ns: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args([
                "-n", ns, "-6", "addr", "show", "dev", "eth0", "scope", "link",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if out.contains("inet6 fe80") && !out.contains("tentative") {
            return true;
        }
        if Instant::now() >= deadline {
            // A kernel or namespace without IPv6: nothing CI could install.
            skip_or_fail(false, &format!("no IPv6 link-local address in {ns}: {out}"));
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Ferry discovery on loopback only (nothing leaves this machine), on a UDP port of its own,
/// beacons only; announcing `id` and `name` with `tcp_port`. With the port it listens on.
pub fn loopback_discovery(
    id: &str,
    name: &str,
    tcp_port: u16,
) -> (ferry::discovery::Discovery, u16) {
    let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port");
    let mut config = ferry::discovery::Config::new(ferry::discovery::Announce {
        id: id.into(),
        name: name.into(),
        fingerprint: "one two three four five six".into(),
        tcp_port,
        udp_port: 0,
    });
    config.port = port;
    config.choice = ferry::discovery::Choice {
        loopback: true,
        chosen: vec!["lo".into()],
        only_chosen: true,
        only_addr: None,
    };
    config.mdns = false;
    let discovery = ferry::discovery::Discovery::start(config).expect("discovery starts");
    (discovery, port)
}
