//! A randomized campaign against live servers: valid byte streams for every path the TCP
//! server takes (plain uploads, Ferry offers (eager ones too), batches, folders, cancels, resume keys, the
//! start of the encrypted handshake, speed probes), mutated (bit flips, cuts, inserted and
//! deleted runs, extreme length fields, hostile JSON values, duplicated and reordered frames,
//! stalls and trickles) and thrown at a real server on loopback from many source addresses
//! on a few threads at once; the same for UDP notes and discovery beacons, and for the
//! LocalSend HTTPS server. Then invariants: no server thread panicked, nothing outside the
//! download folder, no links, no final-name file that was not sent whole (and, in Ferry mode,
//! verified), every slot released, `stop()` returns, and the server still serves.
//!
//! Deterministic: the seed is printed to stderr and can be set with `FERRY_FUZZ_SEED`; the
//! number of cases with `FERRY_FUZZ_CASES`. The servers do not sync (speed); with
//! `FERRY_FUZZ_FSYNC=1` they do, which also takes the path where a syncing receiver holds a
//! pipelining sender's verified files to name them in batches (`transfer::server::held`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use ferry::events::{Event, NoteEvent, TransferEvent};
use ferry::protocol::{
    CancelCode, FolderEntry, Header, MAX_CHUNK_LEN, MAX_FRAME_LEN, PART_SUFFIX, SenderMsg,
    encode_sender_msg, folder_frames,
};
use ferry::transfer::{MinRate, OutgoingFile, ServerConfig};
use serde_json::{Value, json};

use crate::util::*;

// ---------------------------------------------------------------------------------------
// Determinism: the PRNG, the seed, the case count.

/// xorshift64*: small, fast, and the same on every machine.
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Fewer than `max` random bytes.
    pub(crate) fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The campaign's seed: `FERRY_FUZZ_SEED` or a fixed default, printed so a failure
/// reproduces.
pub(crate) fn seed(campaign: &str) -> u64 {
    let seed = std::env::var("FERRY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x00F3_2217);
    eprintln!("fuzz_live {campaign}: seed {seed} (set FERRY_FUZZ_SEED={seed} to replay)");
    seed
}

/// How many cases: `FERRY_FUZZ_CASES` or the default, which keeps this file well under 20 s.
pub(crate) fn cases(default: usize) -> usize {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Panics on the engine's threads.

static PANICS: AtomicUsize = AtomicUsize::new(0);
static PANIC_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Counts panics on the engine's own threads (all named `ferry-*`; LocalSend's disk work runs
/// on tokio's blocking threads), chained to the previous hook so messages still print.
/// Panics of test threads (assertions) are not counted: they fail their own test.
pub(crate) fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if name.starts_with("ferry") || name.starts_with("tokio-") {
                PANICS.fetch_add(1, Ordering::SeqCst);
                let mut log = PANIC_LOG.lock().unwrap_or_else(|e| e.into_inner());
                log.push(format!("{name}: {info}"));
            }
            previous(info);
        }));
    });
}

pub(crate) fn assert_no_panics() {
    let log = PANIC_LOG.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "engine threads panicked: {log:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Streams as segments, so mutations can act on frames as well as on bytes.

#[derive(Debug, Clone)]
pub(crate) enum Seg {
    /// A frame: `[i32 LE len][JSON]`.
    Frame(Value),
    /// A frame whose length field lies.
    LyingFrame(i32, Value),
    /// A Ferry data chunk: `[i32 LE n][n bytes]`.
    Chunk(Vec<u8>),
    /// Bytes as they are (a plain file's data, handshake messages, markers).
    Raw(Vec<u8>),
}

/// Strings that JSON can carry but a Rust `String` cannot (lone surrogates) or that serde
/// would never write (numbers beyond u64): substituted after serialisation.
const RAW_JSON: &[(&str, &str)] = &[
    ("@@SURROGATE@@", "\"a\\ud800b\\udfff\""),
    ("@@HUGE_INT@@", "184467440737095516160000"),
    ("@@HUGE_FLOAT@@", "1e999"),
    ("@@NEG_ZERO@@", "-0.0"),
];

fn json_bytes(value: &Value) -> Vec<u8> {
    let mut text = value.to_string();
    for (marker, raw) in RAW_JSON {
        text = text.replace(&format!("\"{marker}\""), raw);
    }
    text.into_bytes()
}

fn serialize(segs: &[Seg]) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            Seg::Frame(value) => {
                let body = json_bytes(value);
                out.extend_from_slice(&(body.len() as i32).to_le_bytes());
                out.extend_from_slice(&body);
            }
            Seg::LyingFrame(len, value) => {
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&json_bytes(value));
            }
            Seg::Chunk(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Seg::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

/// A frame made by the crate's own encoder, as a JSON value to mutate.
pub(crate) fn frame(msg: &SenderMsg) -> Seg {
    let bytes = encode_sender_msg(msg).expect("a valid message encodes");
    Seg::Frame(serde_json::from_slice(&bytes[4..]).expect("the encoder writes JSON"))
}

fn header(name: &str, size: usize, key: Option<String>) -> Header {
    Header {
        eager: false,
        file_name: name.into(),
        file_size: size as u64,
        msg: "fuzz".into(),
        resume_key: key,
    }
}

fn end(content: &[u8]) -> Seg {
    frame(&SenderMsg::End {
        blake3: *blake3::hash(content).as_bytes(),
    })
}

/// Names a sender might use, hostile ones included.
fn name(rng: &mut Rng) -> String {
    let names = [
        "a.txt",
        "报告.pdf",
        "../../escape.txt",
        "/etc/passwd",
        "C:\\x.bin",
        "\u{202E}gpj.exe",
        "nul\0inside",
        "CON",
        ".hidden",
        "x.ferry.part",
        "",
        "..",
    ];
    let mut name = rng.pick(&names).to_string();
    if rng.chance(10) {
        name = "长".repeat(rng.below(120) + 1);
    }
    name
}

fn content(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1 => rng.below(40_000),
        _ => rng.below(3_000),
    };
    rng.bytes(len)
}

fn resume_key(rng: &mut Rng) -> Option<String> {
    rng.chance(40)
        .then(|| format!("{:016x}{:016x}", rng.next(), rng.next()))
}

/// Ferry data for `content`: one chunk or several.
fn chunks(rng: &mut Rng, content: &[u8]) -> Vec<Seg> {
    if content.is_empty() {
        return Vec::new();
    }
    let pieces = 1 + rng.below(3);
    let size = content.len().div_ceil(pieces);
    content
        .chunks(size)
        .map(|c| Seg::Chunk(c.to_vec()))
        .collect()
}

/// A valid stream for one of the server's paths.
pub(crate) fn seed_stream(rng: &mut Rng) -> Vec<Seg> {
    let mut segs = Vec::new();
    match rng.below(7) {
        // The original plain upload, several files on one connection.
        0 | 1 => {
            for _ in 0..1 + rng.below(3) {
                let data = content(rng);
                segs.push(frame(&SenderMsg::Plain(header(
                    &name(rng),
                    data.len(),
                    None,
                ))));
                segs.push(Seg::Raw(data));
            }
        }
        // Ferry files, maybe after a batch summary, maybe one cancelled.
        2 | 3 => {
            let files: Vec<(String, Vec<u8>)> = (0..1 + rng.below(3))
                .map(|_| (name(rng), content(rng)))
                .collect();
            if rng.chance(50) {
                segs.push(frame(&SenderMsg::Batch {
                    count: files.len() as u64,
                    bytes: files.iter().map(|f| f.1.len() as u64).sum(),
                    names: files.iter().map(|f| f.0.clone()).collect(),
                    sizes: files.iter().map(|f| f.1.len() as u64).collect(),
                }));
            }
            for (i, (name, data)) in files.iter().enumerate() {
                let mut offer = header(name, data.len(), resume_key(rng));
                // After the first file, maybe eager (its data follows without an accept;
                // taken only once an accept announced `eager_max`, and only up to it):
                // small files and, now and then, one too large for it.
                if i > 0 && rng.chance(50) {
                    offer.eager = true;
                    offer.resume_key = None;
                    if rng.chance(5) {
                        offer.file_size = ferry::transfer::EAGER_MAX_BYTES + 1;
                    }
                }
                segs.push(frame(&SenderMsg::Offer(offer)));
                if rng.chance(20) && data.len() > 1 {
                    segs.push(Seg::Chunk(data[..data.len() / 2].to_vec()));
                    segs.push(Seg::Raw(0i32.to_le_bytes().to_vec()));
                    segs.push(frame(&SenderMsg::Cancel {
                        code: CancelCode::User,
                        reason: "fuzz".into(),
                    }));
                } else {
                    segs.extend(chunks(rng, data));
                    segs.push(end(data));
                }
            }
        }
        // A folder: entries (hostile paths too), its files back to back, its end.
        4 | 5 => {
            let files: Vec<(String, Vec<u8>)> = (0..1 + rng.below(3))
                .map(|i| {
                    let path = match rng.below(4) {
                        0 => format!("sub/{}", name(rng)),
                        1 => format!("../up/{i}.bin"),
                        _ => format!("sub/deeper/f{i}.txt"),
                    };
                    (path, content(rng))
                })
                .collect();
            let mut entries = vec![FolderEntry {
                path: "sub".into(),
                size: None,
                mtime: 0,
                mode: 7,
            }];
            for (path, data) in &files {
                entries.push(FolderEntry {
                    path: path.clone(),
                    size: Some(data.len() as u64),
                    mtime: 1_700_000_000,
                    mode: 6,
                });
            }
            let key = resume_key(rng);
            for msg in folder_frames(&name(rng), &entries, key.as_deref(), "") {
                segs.push(frame(&msg));
            }
            for (i, (_, data)) in files.iter().enumerate() {
                segs.push(frame(&SenderMsg::File {
                    index: i as u64 + 1,
                    offset: 0,
                }));
                segs.extend(chunks(rng, data));
                segs.push(end(data));
            }
            segs.push(frame(&SenderMsg::FolderEnd));
        }
        // The start of the encrypted handshake, or a speed probe.
        _ => {
            if rng.chance(60) {
                segs.push(frame(&SenderMsg::Secure {
                    pairing: rng.chance(30),
                    ciphers: vec!["chacha20-poly1305".into()],
                    serves_on: rng.chance(30).then(|| rng.below(70_000) as u16),
                }));
                for _ in 0..1 + rng.below(3) {
                    let len = rng.below(200);
                    let mut msg = (len as u16).to_be_bytes().to_vec();
                    msg.extend(rng.bytes(len));
                    segs.push(Seg::Raw(msg));
                }
            } else {
                segs.push(frame(&SenderMsg::Probe { max_bytes: 8192 }));
                let data = rng.some_bytes(4000);
                segs.push(Seg::Chunk(data));
                segs.push(Seg::Raw(0i32.to_le_bytes().to_vec()));
            }
        }
    }
    segs
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// A hostile JSON value: wrong types, extreme numbers, deep nesting, odd Unicode.
fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1.5),
        5 => json!("@@HUGE_INT@@"),
        6 => json!("@@HUGE_FLOAT@@"),
        7 => json!("@@SURROGATE@@"),
        8 => json!("@@NEG_ZERO@@"),
        9 => json!(["a", 1, null]),
        10 => json!({"nested": {"deeper": [1, 2, 3]}}),
        11 => json!(true),
        12 => json!("\u{202E}\u{200F}\u{FEFF}\0名前/../x"),
        13 => json!("长".repeat(rng.below(3000))),
        14 => {
            let depth = 1 + rng.below(300);
            let mut value = json!(0);
            for _ in 0..depth {
                value = json!([value]);
            }
            value
        }
        _ => json!(""),
    }
}

/// Length fields at their extremes and just past each documented bound.
fn extreme_len(rng: &mut Rng) -> i32 {
    let lens = [
        0,
        -1,
        i32::MIN,
        i32::MAX,
        1,
        MAX_FRAME_LEN as i32,
        MAX_FRAME_LEN as i32 + 1,
        MAX_CHUNK_LEN as i32,
        MAX_CHUNK_LEN as i32 + 1,
        -(MAX_FRAME_LEN as i32),
    ];
    *rng.pick(&lens)
}

const KINDS: &[&str] = &[
    "offer",
    "batch",
    "start",
    "end",
    "cancel",
    "secure",
    "probe",
    "folder",
    "file",
    "folder_end",
    "accept",
    "bogus",
];

fn mutate_value(rng: &mut Rng, value: &mut Value) {
    let Value::Object(map) = value else {
        *value = hostile_value(rng);
        return;
    };
    match rng.below(6) {
        0 => {
            map.insert("kind".into(), json!(*rng.pick(KINDS)));
        }
        1 => {
            let keys = ["ferry", "kind", "file_size", "file_name", "count", "index"];
            map.insert(rng.pick(&keys).to_string(), hostile_value(rng));
        }
        2 if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned();
            if let Some(key) = key {
                map.remove(&key);
            }
        }
        3 => {
            // Inside a folder's entries, or any array: one element made hostile.
            for (_, v) in map.iter_mut() {
                if let Value::Array(items) = v
                    && !items.is_empty()
                {
                    let i = rng.below(items.len());
                    mutate_value(rng, &mut items[i]);
                    return;
                }
            }
        }
        _ => {
            if !map.is_empty() {
                let key = map.keys().nth(rng.below(map.len())).cloned();
                if let Some(key) = key {
                    map.insert(key, hostile_value(rng));
                }
            }
        }
    }
}

fn mutate_segs(rng: &mut Rng, segs: &mut Vec<Seg>) {
    if segs.is_empty() {
        return;
    }
    let i = rng.below(segs.len());
    match rng.below(6) {
        0 | 1 => match &mut segs[i] {
            Seg::Frame(value) | Seg::LyingFrame(_, value) => mutate_value(rng, value),
            Seg::Chunk(bytes) | Seg::Raw(bytes) => {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
        },
        2 => {
            segs[i] = match segs[i].clone() {
                Seg::Frame(value) | Seg::LyingFrame(_, value) => {
                    Seg::LyingFrame(extreme_len(rng), value)
                }
                Seg::Chunk(bytes) => {
                    let mut raw = extreme_len(rng).to_le_bytes().to_vec();
                    raw.extend(bytes);
                    Seg::Raw(raw)
                }
                raw => raw,
            }
        }
        3 => {
            let copy = segs[i].clone();
            segs.insert(rng.below(segs.len() + 1), copy);
        }
        4 => {
            let j = rng.below(segs.len());
            segs.swap(i, j);
        }
        _ => {
            segs.remove(i);
        }
    }
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.extend(rng.some_bytes(64));
        return;
    }
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        2 => {
            let at = rng.below(bytes.len() + 1);
            let run = if rng.chance(50) {
                rng.some_bytes(100)
            } else {
                vec![0xFF; 1 + rng.below(8)]
            };
            bytes.splice(at..at, run);
        }
        _ => {
            let at = rng.below(bytes.len());
            let len = 1 + rng.below((bytes.len() - at).min(200));
            bytes.drain(at..at + len);
        }
    }
}

/// How a case's bytes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// All at once, then the write side closed.
    Whole,
    /// A prefix, then silence with the connection open: the server must drop us.
    Stall(usize),
    /// A few bytes at a time with pauses, for a bounded time.
    Trickle,
}

struct Case {
    bytes: Vec<u8>,
    delivery: Delivery,
    /// BLAKE3 values the case's `end` frames announced (a verified file must have one).
    announced: Vec<[u8; 32]>,
}

/// `segs` mutated: up to three rounds of frame mutations (none: the valid stream as it is),
/// then, after any, byte mutations with a `bytes_percent` chance. Its bytes, and the BLAKE3
/// values its `end` frames announce (a verified file must have one).
pub(crate) fn mutated_stream(
    rng: &mut Rng,
    mut segs: Vec<Seg>,
    bytes_percent: u64,
) -> (Vec<u8>, Vec<[u8; 32]>) {
    let rounds = rng.below(4);
    for _ in 0..rounds {
        if rng.chance(70) {
            mutate_segs(rng, &mut segs);
        }
    }
    let announced = segs
        .iter()
        .filter_map(|seg| match seg {
            Seg::Frame(v) | Seg::LyingFrame(_, v) => v["blake3"].as_str(),
            _ => None,
        })
        .filter_map(|hex| blake3::Hash::from_hex(hex).ok())
        .map(|hash| *hash.as_bytes())
        .collect();
    let mut bytes = serialize(&segs);
    if rounds > 0 && rng.chance(bytes_percent) {
        mutate_bytes(rng, &mut bytes);
    }
    (bytes, announced)
}

fn make_case(rng: &mut Rng) -> Case {
    let segs = seed_stream(rng);
    let (bytes, announced) = mutated_stream(rng, segs, 40);
    let delivery = match rng.below(100) {
        0..=2 => Delivery::Stall(rng.below(bytes.len() + 1)),
        3..=4 => Delivery::Trickle,
        _ => Delivery::Whole,
    };
    Case {
        bytes,
        delivery,
        announced,
    }
}

// ---------------------------------------------------------------------------------------
// Driving cases against the live TCP server.

/// A TCP connection from a chosen loopback source address (Linux routes all of 127/8 to lo),
/// so the per-address limit does not throttle the campaign.
pub(crate) fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

pub(crate) fn source_addr(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        1 + rng.below(199) as u8,
        rng.next() as u8,
        1 + rng.below(250) as u8,
    )
}

/// Reads until the server closes; an error if it keeps the connection open past the
/// deadline (a stuck connection thread).
pub(crate) fn until_closed(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() > deadline {
                    return Err(format!("still open after {DEADLINE:?}"));
                }
            }
            Err(_) => return Ok(()), // reset: closed with our bytes unread
        }
    }
}

/// Delivers one case; an error when the server did not close the connection in time.
fn run_case(addr: SocketAddr, source: Ipv4Addr, case: &Case) -> Result<(), String> {
    let mut stream = connect_from(source, addr).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    match case.delivery {
        Delivery::Whole => {
            let _ = stream.write_all(&case.bytes);
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        Delivery::Stall(at) => {
            // Then silence, the connection open: only the server's timeouts end it.
            let _ = stream.write_all(&case.bytes[..at]);
        }
        Delivery::Trickle => {
            let until = Instant::now() + Duration::from_millis(2500);
            for piece in case.bytes.chunks(5) {
                // Pacing, not synchronisation: a peer that is slow on purpose.
                std::thread::sleep(Duration::from_millis(30));
                if stream.write_all(piece).is_err() || Instant::now() > until {
                    break;
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    }
    until_closed(&mut stream)
}

/// Every `Finished` event's path and whether it was verified, collected while the campaign
/// runs (the channel is bounded: someone must read it).
pub(crate) struct Finished {
    files: Arc<Mutex<Vec<(PathBuf, bool)>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Finished {
    pub(crate) fn collect(events: Receiver<Event>) -> Self {
        let files = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, d) = (Arc::clone(&files), Arc::clone(&done));
        let thread = std::thread::spawn(move || {
            loop {
                match events.recv_timeout(Duration::from_millis(50)) {
                    Ok(Event::Transfer(TransferEvent::Finished {
                        path: Some(path),
                        verified,
                        ..
                    })) => f.lock().unwrap().push((path, verified)),
                    Ok(_) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if d.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Finished {
            files,
            done,
            thread,
        }
    }

    /// Once the server stopped (every event already sent): all of them.
    pub(crate) fn all(self) -> Vec<(PathBuf, bool)> {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().expect("the event reader");
        Arc::try_unwrap(self.files)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }
}

/// Opens a full quota of connections (every slot, `per_peer` from each of a few fresh
/// addresses) at once and offers a file on each: all must be accepted, none refused as busy.
pub(crate) fn full_quota(
    addr: SocketAddr,
    max_connections: usize,
    per_peer: usize,
) -> Result<(), String> {
    let offer = encode_sender_msg(&SenderMsg::Offer(header("quota.bin", 1, None)))
        .map_err(|e| e.to_string())?;
    let mut streams = Vec::new();
    for i in 0..max_connections {
        let source = Ipv4Addr::new(127, 250, (i / per_peer) as u8, 1);
        let mut stream = connect_from(source, addr).map_err(|e| e.to_string())?;
        stream.write_all(&offer).map_err(|e| e.to_string())?;
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(DEADLINE))
            .map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .map_err(|e| format!("connection {i}: no answer: {e}"))?;
        let len = i32::from_le_bytes(len).clamp(0, MAX_FRAME_LEN as i32) as usize;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .map_err(|e| format!("connection {i}: {e}"))?;
        let answer: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if answer["kind"] != "accept" {
            return Err(format!("connection {i} of {max_connections}: {answer}"));
        }
    }
    // Leave, and wait until the server has closed each connection: its slot is given back
    // right after (what follows retries "busy" for that last moment).
    for stream in &mut streams {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    }
    Ok(())
}

/// Plays `total` cases on a few threads at once, each thread with its own deterministic
/// stream of cases (from `seed` and the campaign's `salt`) sent from random loopback
/// addresses: `make` draws a case, `play` sends it, `describe` names it in a failure. Fails
/// the test with every case that got stuck; else every case played, once all are done.
pub(crate) fn campaign<C: Send + 'static>(
    seed: u64,
    salt: u64,
    total: usize,
    make: fn(&mut Rng) -> C,
    play: impl Fn(Ipv4Addr, &C) -> Result<(), String> + Clone + Send + 'static,
    describe: fn(&C) -> String,
) -> Vec<C> {
    const THREADS: usize = 4;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let play = play.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(salt));
                let (mut played, mut stuck) = (Vec::new(), Vec::new());
                for n in 0..total.div_ceil(THREADS) {
                    let case = make(&mut rng);
                    let source = source_addr(&mut rng);
                    if let Err(e) = play(source, &case) {
                        stuck.push(format!("thread {t} case {n} ({}): {e}", describe(&case)));
                    }
                    played.push(case);
                }
                (played, stuck)
            })
        })
        .collect();
    let (mut played, mut stuck) = (Vec::new(), Vec::new());
    for worker in workers {
        let (cases, failures) = worker.join().expect("a campaign thread");
        played.extend(cases);
        stuck.extend(failures);
    }
    assert!(stuck.is_empty(), "seed {seed}: {stuck:#?}");
    played
}

/// Polls until a full quota of connections is accepted again (a campaign's slots are given
/// back just after the closes it saw), failing at the deadline with what refused.
pub(crate) fn slots_come_back(
    addr: SocketAddr,
    max_connections: usize,
    per_peer: usize,
    seed: u64,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match full_quota(addr, max_connections, per_peer) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("seed {seed}: slots leaked: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends `path` with `opts` right after [`slots_come_back`]: the quota's connections were
/// just dropped and the server gives their slots back as it sees them close, so "server
/// busy" is tried again until the deadline (any other error fails the test).
pub(crate) fn send_once_free(
    opts: &ferry::transfer::SendOptions,
    path: &Path,
    seed: u64,
) -> Vec<ferry::transfer::FileOutcome> {
    let (sink, _) = ferry::events::event_channel(None);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match ferry::transfer::send_files(
            opts,
            &[OutgoingFile::new(path)],
            &sink,
            &ferry::events::CancelToken::new(),
        ) {
            Ok(outcomes) => return outcomes,
            Err(e) if e.to_string().contains("server busy") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("seed {seed}: the legitimate upload: {e}"),
        }
    }
}

/// Runs `stop` (stopping or dropping the servers under test) on a thread of its own and
/// fails the test unless it returns within the deadline.
pub(crate) fn stops_in_time(seed: u64, stop: impl FnOnce() + Send + 'static) {
    let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        stop();
        let _ = stopped_tx.send(());
    });
    stopped
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("seed {seed}: stopping did not return"));
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// Everything under `root`: no symbolic links, no hard links, nothing but the canary outside
/// `downloads`; returns the regular files under `downloads`.
pub(crate) fn walk(root: &Path, downloads: &Path, canary: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("an entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            assert!(!meta.file_type().is_symlink(), "a symlink: {path:?}");
            assert!(
                path.starts_with(downloads) || path == canary || path == downloads,
                "written outside the download folder: {path:?}"
            );
            if meta.is_dir() {
                todo.push(path);
            } else {
                assert!(meta.is_file(), "not a regular file: {path:?}");
                assert_eq!(meta.nlink(), 1, "a hard link: {path:?}");
                if path != canary {
                    files.push(path);
                }
            }
        }
    }
    files
}

/// The slots of a campaign's server: (in all, per address).
pub(crate) const CAMPAIGN_SLOTS: (usize, usize) = (16, 4);

/// A campaign's server into `dir`: the slots of [`CAMPAIGN_SLOTS`], short timeouts so
/// stalled cases end within the campaign, no syncs unless `FERRY_FUZZ_FSYNC` asks (speed).
pub(crate) fn campaign_config(dir: &Path, keyring: ferry::secure::Keyring) -> ServerConfig {
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.to_owned());
    config.keyring = Some(keyring);
    (config.max_connections, config.max_per_peer) = CAMPAIGN_SLOTS;
    config.idle_timeout = Duration::from_millis(1500);
    config.header_deadline = Duration::from_secs(1);
    config.min_rate = MinRate {
        bytes_per_sec: 1024,
        window: Duration::from_secs(2),
    };
    config.fsync = std::env::var("FERRY_FUZZ_FSYNC").is_ok_and(|v| !v.is_empty() && v != "0");
    config
}

#[test]
fn a_mutated_stream_campaign_leaves_the_tcp_server_whole() {
    count_panics();
    let seed = seed("tcp");
    let total = cases(240);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    let canary = root.path().join("canary.txt");
    std::fs::write(&canary, b"left alone").unwrap();
    let (max_connections, max_per_peer) = CAMPAIGN_SLOTS;
    let config = campaign_config(&dir, test_receiver_keyring());
    let (server, events) = start_server_with(config);
    let finished = Finished::collect(events);
    let addr = server.local_addr();

    // The campaign: a few threads, each with its own deterministic stream of cases.
    let sent = campaign(
        seed,
        0xA076_1D64_78BD_642F,
        total,
        make_case,
        move |source, case| run_case(addr, source, case),
        |case| format!("{:?}, {} bytes", case.delivery, case.bytes.len()),
    );

    // Every slot is free again: a full quota is accepted.
    slots_come_back(addr, max_connections, max_per_peer, seed);

    // It still serves: a Ferry upload verified, a plain upload saved.
    let outside = tempfile::tempdir().unwrap();
    let legit = outside.path().join("legit.bin");
    let legit_bytes = data(300_000, seed);
    std::fs::write(&legit, &legit_bytes).unwrap();
    let outcomes = send_once_free(
        &ferry::transfer::SendOptions::new(addr.to_string()),
        &legit,
        seed,
    );
    assert!(
        matches!(
            outcomes[..],
            [ferry::transfer::FileOutcome::Verified { .. }]
        ),
        "seed {seed}: {outcomes:?}"
    );
    plain_upload(addr, &[("legit-plain.txt", b"plain and whole", "")]);

    // `stop()` returns, with every thread joined.
    stops_in_time(seed, move || server.stop());
    let finished = finished.all();
    assert_no_panics();

    // Files: inside the folder, no links, the canary untouched, and every final name one a
    // case sent whole (verified ones with a hash some `end` frame announced).
    assert_eq!(std::fs::read(&canary).unwrap(), b"left alone");
    let mut announced: HashSet<[u8; 32]> = sent
        .iter()
        .flat_map(|c| c.announced.iter().copied())
        .collect();
    announced.insert(*blake3::hash(&legit_bytes).as_bytes());
    let mut saw_verified = false;
    for path in walk(root.path(), &dir, &canary) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(PART_SUFFIX) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let verified = finished
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, verified)| *verified)
            .unwrap_or_else(|| panic!("seed {seed}: {path:?} appeared without a Finished event"));
        if verified {
            saw_verified = true;
            assert!(
                announced.contains(blake3::hash(&bytes).as_bytes()),
                "seed {seed}: {path:?} verified, but no case announced its hash"
            );
        } else {
            assert!(
                bytes == b"plain and whole" || sent.iter().any(|c| contains(&c.bytes, &bytes)),
                "seed {seed}: {path:?} holds bytes no case sent"
            );
        }
    }
    eprintln!(
        "fuzz_live tcp: {} cases, {} files finished ({} verified)",
        sent.len(),
        finished.len(),
        finished.iter().filter(|f| f.1).count()
    );
    assert!(saw_verified, "the legitimate upload is among the files");
}

// ---------------------------------------------------------------------------------------
// UDP: notes and discovery beacons.

/// A valid datagram for the notes socket or the discovery port.
fn seed_datagram(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => b"hello from a plain peer".to_vec(),
        1 => "长".repeat(rng.below(2000)).into_bytes(),
        2 => "\u{202E}\u{200F}\0\x1b[31mred\r\n".as_bytes().to_vec(),
        3 => {
            // A sealed note's magic, then what a forger would put after it.
            let mut sealed = vec![0xFF, b'F', b'N', 0x01];
            sealed.extend(rng.some_bytes(300));
            sealed
        }
        _ => {
            let id = format!("{:016x}{:016x}", rng.next(), rng.next());
            let beacon_name = rng
                .pick(&["beacon", "报告 \u{202E}", "长长长长"])
                .to_string();
            let beacon = ferry::protocol::beacon::Beacon::hello(
                &id,
                &beacon_name,
                "one two three four five six",
                rng.next() as u16,
                rng.next() as u16,
            );
            let mut value: Value =
                serde_json::from_slice(&beacon.encode().expect("a beacon encodes")).unwrap();
            if rng.chance(60) {
                mutate_value(rng, &mut value);
            }
            json_bytes(&value)
        }
    }
}

#[test]
fn a_datagram_campaign_leaves_notes_and_discovery_serving() {
    count_panics();
    let has_lo = ferry::discovery::interfaces::list(&ferry::discovery::Choice {
        loopback: true,
        ..Default::default()
    })
    .map(|all| all.iter().any(|(i, _)| i.name == "lo"))
    .unwrap_or(false);
    if !has_lo {
        eprintln!("SKIPPED: no loopback interface named lo for discovery");
        return;
    }
    let seed = seed("udp");
    let total = cases(400);
    let (sink, events) = ferry::events::event_channel(None);
    let notes = ferry::notes::NotesHandle::start(
        ferry::notes::NotesConfig::new(LOOPBACK, 0).with_keyring(Some(test_receiver_keyring())),
        sink,
    )
    .expect("notes start");
    let notes_addr = notes.local_addr();
    // Forward the texts of received notes (the event channel is bounded: keep reading it).
    let (texts_tx, texts) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for event in events {
            if let Event::Note(NoteEvent::Received { text, .. }) = event {
                let _ = texts_tx.send(text);
            }
        }
    });
    let (discovery, discovery_port) = crate::util::loopback_discovery(&"f".repeat(32), "fuzzed", 0);
    let discovery_addr = SocketAddr::new(LOOPBACK, discovery_port);

    let mut rng = Rng::new(seed);
    let sockets: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind((source_addr(&mut rng), 0)).expect("a UDP socket"))
        .collect();
    for _ in 0..total {
        let mut datagram = seed_datagram(&mut rng);
        if rng.chance(70) {
            mutate_bytes(&mut rng, &mut datagram);
        }
        if rng.chance(2) {
            datagram = rng.bytes(ferry::protocol::MAX_NOTE_BYTES);
        }
        let to = if rng.chance(50) {
            notes_addr
        } else {
            discovery_addr
        };
        // A full socket buffer may drop some: UDP promises nothing, and neither do we.
        let _ = rng.pick(&sockets).send_to(&datagram, to);
    }

    // A legitimate note still arrives whole. Sent again until it does: the campaign may
    // still fill the socket's buffer, and a full buffer drops datagrams (UDP, not a bug).
    let legit = format!("a legitimate note after seed {seed}");
    let plain = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let deadline = Instant::now() + DEADLINE;
    'heard: loop {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the legitimate note never arrived"
        );
        plain.send_to(legit.as_bytes(), notes_addr).unwrap();
        while let Ok(text) = texts.recv_timeout(Duration::from_millis(200)) {
            if text == legit {
                break 'heard;
            }
        }
    }
    // A legitimate beacon still finds its device.
    let beacon = ferry::protocol::beacon::Beacon::hello(
        &"b".repeat(32),
        "legit-beacon",
        "one two three four five six",
        9,
        9,
    );
    let deadline = Instant::now() + DEADLINE;
    while !discovery.devices().iter().any(|d| d.name == "legit-beacon") {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: a valid beacon was not heard: {:#?}",
            discovery.devices()
        );
        plain
            .send_to(&beacon.encode().unwrap(), discovery_addr)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }

    stops_in_time(seed, move || {
        notes.stop();
        discovery.stop();
    });
    assert_no_panics();
}

// ---------------------------------------------------------------------------------------
// LocalSend: HTTPS requests with mutated JSON, tokens, lengths and paths.

/// Sends one request on a fresh TLS connection and reads the answer to its end: the status
/// (0 when the server closed without one), or an error when it never closed.
fn localsend_request(
    peer: &crate::localsend::Peer,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Result<u16, String> {
    let mut stream = peer.send(path, headers, &[body], Duration::ZERO);
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(format!("{path}: no answer, connection still open"));
        }
        _ => {}
    }
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn localsend_info(peer: &crate::localsend::Peer) -> Value {
    json!({"alias": "Fuzz", "version": "2.1", "deviceModel": "x", "deviceType": "mobile",
           "fingerprint": peer.fingerprint(), "port": 53317, "protocol": "https",
           "download": false})
}

#[test]
fn a_localsend_request_campaign_leaves_the_https_server_whole() {
    count_panics();
    let seed = seed("localsend");
    let total = cases(40);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    let canary = root.path().join("canary.txt");
    std::fs::write(&canary, b"left alone").unwrap();
    let mut config = crate::localsend::config(&dir);
    config.idle_timeout = Duration::from_secs(1);
    let (server, events) = crate::localsend::start(config);
    let finished = Finished::collect(events);
    let peer = crate::localsend::Peer::new(&server);
    let mut rng = Rng::new(seed);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut stuck = Vec::new();
    const PREPARE: &str = "/api/localsend/v2/prepare-upload";
    for n in 0..total {
        // Plain TCP garbage at the TLS port now and then.
        if rng.chance(10)
            && let Ok(mut tcp) = TcpStream::connect(server.local_addr())
        {
            {
                let _ = tcp.write_all(&rng.some_bytes(600));
                let _ = tcp.shutdown(std::net::Shutdown::Write);
                if let Err(e) = until_closed(&mut tcp) {
                    stuck.push(format!("case {n}: garbage: {e}"));
                }
            }
        }
        let files: Vec<(String, Vec<u8>)> = (0..1 + rng.below(3))
            .map(|i| {
                let name = if rng.chance(30) {
                    format!("dir/{}/{i}", name(&mut rng))
                } else {
                    name(&mut rng)
                };
                (name, rng.some_bytes(3000))
            })
            .collect();
        let mut listing = serde_json::Map::new();
        for (i, (name, data)) in files.iter().enumerate() {
            listing.insert(
                format!("f{i}"),
                json!({"id": format!("f{i}"), "fileName": name, "size": data.len(),
                       "fileType": "application/octet-stream"}),
            );
        }
        let mut request = json!({"info": localsend_info(&peer), "files": listing});
        if rng.chance(50) {
            let target = match rng.below(3) {
                0 => &mut request,
                1 => &mut request["info"],
                _ => &mut request["files"]["f0"],
            };
            mutate_value(&mut rng, target);
        }
        let path = if rng.chance(10) {
            "/api/localsend/v2/register"
        } else {
            PREPARE
        };
        let mut body = json_bytes(&request);
        if rng.chance(20) {
            mutate_bytes(&mut rng, &mut body);
        }
        let headers = format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        let mut s = peer.send(path, &headers, &[&body], Duration::ZERO);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let answer = String::from_utf8_lossy(&raw).into_owned();
        let Some(json_start) = answer.find("\r\n\r\n") else {
            continue;
        };
        let Ok(session) = serde_json::from_str::<Value>(&answer[json_start + 4..]) else {
            continue;
        };
        let Some(id) = session["sessionId"].as_str() else {
            continue;
        };
        for (i, (_, data)) in files.iter().enumerate() {
            let token = session["files"][format!("f{i}")].as_str().unwrap_or("x");
            let token = if rng.chance(15) { "wrong" } else { token };
            let mut data = data.clone();
            if rng.chance(30) {
                mutate_bytes(&mut rng, &mut data);
            }
            let length = match rng.below(10) {
                0 => data.len() + 1 + rng.below(10),
                1 => data.len().saturating_sub(1),
                2 => u64::MAX as usize,
                _ => data.len(),
            };
            let query = format!("?sessionId={id}&fileId=f{i}&token={token}");
            let query = if rng.chance(10) {
                "?sessionId=%00&fileId=..%2F..&token=".to_owned()
            } else {
                query
            };
            bodies.push(data.clone());
            let headers = format!("Content-Length: {length}\r\n");
            if let Err(e) = localsend_request(
                &peer,
                &format!("/api/localsend/v2/upload{query}"),
                &headers,
                &data,
            ) {
                stuck.push(format!("case {n}: {e}"));
            }
        }
        if rng.chance(80) {
            let _ = localsend_request(
                &peer,
                &format!("/api/localsend/v2/cancel?sessionId={id}"),
                "Content-Length: 0\r\n",
                b"",
            );
        }
    }
    assert!(stuck.is_empty(), "seed {seed}: {stuck:#?}");

    // A legitimate upload still lands whole (once any session left open has timed out).
    let legit = b"a legitimate LocalSend upload".to_vec();
    let deadline = Instant::now() + DEADLINE;
    let (session, tokens) = loop {
        let answer = peer.prepare(
            "",
            crate::localsend::files(&[crate::localsend::file("l", "legit.txt", legit.len())]),
        );
        if answer.status == 200 {
            break crate::localsend::session_of(&answer);
        }
        assert!(
            answer.status == 409 && Instant::now() < deadline,
            "seed {seed}: {} {}",
            answer.status,
            answer.body
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let token = tokens["l"].as_str().expect("a token");
    assert_eq!(peer.upload(&session, "l", token, &legit).status, 200);

    stops_in_time(seed, move || drop(server));
    let _ = finished.all();
    assert_no_panics();

    assert_eq!(std::fs::read(&canary).unwrap(), b"left alone");
    let mut saw_legit = false;
    for path in walk(root.path(), &dir, &canary) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(PART_SUFFIX) || name.ends_with(".part") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        saw_legit |= bytes == legit;
        assert!(
            bytes == legit || bodies.iter().any(|b| contains(b, &bytes)),
            "seed {seed}: {path:?} holds bytes no upload sent"
        );
    }
    assert!(saw_legit, "seed {seed}: the legitimate upload is missing");
}
