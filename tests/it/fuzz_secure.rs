//! The live fuzz campaign inside the encrypted channel. `fuzz_live` mutates the secure hello
//! and the bytes after it, which never get past the handshake or the first record's tag; a
//! hostile device does not need to: the server takes a handshake from anyone (open mode), so
//! it can send records that authenticate and carry whatever plaintext, cut however, it likes.
//! This campaign does exactly that: a real handshake with the crate's own API, then the same
//! Ferry message streams `fuzz_live` mutates (offers, batches, chunks, ends, cancels, folders,
//! probes), sealed with the real key into records cut in hostile ways (one byte each, the
//! largest size, random sizes, in place), ended with a close record, without one, or with a
//! close record early and bytes after it, sometimes with records duplicated, reordered,
//! dropped or damaged, delivered whole, trickled byte by byte or stalled. Then the same
//! invariants as `fuzz_live`.
//!
//! What the crate's public API cannot produce, and so this campaign cannot send: an empty
//! (close) record in the middle of a stream *followed by records that still authenticate*.
//! `SecureWriter` refuses to write after its close record and never seals an empty record
//! otherwise; after an early close the campaign sends replays of earlier records and random
//! bytes instead (which the receiver, having seen the close, must not read as data either).
//!
//! Deterministic plans: the seed is printed and can be set with `FERRY_FUZZ_SEED`, the number
//! of cases with `FERRY_FUZZ_CASES` (the ciphertext differs each run: the handshake's keys are
//! fresh, but every plaintext, cut and delivery is the seed's).

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::protocol::{PART_SUFFIX, ReceiverMsg, SenderMsg, encode_sender_msg};
use ferry::secure::record::{CLOSE_RECORD_LEN, MAX_RECORD_PLAINTEXT};
use ferry::secure::{Cipher, Identity, SecureReader, SecureWriter};
use ferry::transfer::{FileOutcome, MinRate, SendOptions, ServerConfig};

use crate::fuzz_live::{
    CAMPAIGN_SLOTS, Finished, Rng, Seg, assert_no_panics, campaign, campaign_config, cases,
    connect_from, count_panics, frame, mutated_stream, seed, seed_stream, send_once_free,
    slots_come_back, stops_in_time, until_closed, walk,
};
use crate::util::*;

// ---------------------------------------------------------------------------------------
// The plan of one case: what plaintext, cut how, ended how, delivered how.

/// How the plaintext is cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// As `SecureWriter`'s `Write` cuts it: full records, then the rest.
    Natural,
    /// One byte per record for the first `ONE_BYTE_PREFIX` bytes, the rest as `Natural`.
    OneByte,
    /// Records of random sizes from 1 byte to the largest.
    Random,
    /// Records of the largest size only: the plaintext padded with random bytes to fill the
    /// last one.
    Max,
    /// Sealed in place (`write_in_place`), as the crate's sender seals bulk data.
    InPlace,
}

/// One-byte records cost a record each to seal and open: enough to cross every frame and
/// chunk boundary of most streams, not so many that the campaign crawls.
const ONE_BYTE_PREFIX: usize = 3_000;

/// How the records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The close record after the last one: a clean end.
    Close,
    /// No close record: the receiver must take it as truncation.
    NoClose,
    /// The close record after the first `n` records (of however many the cut made), then
    /// replays of earlier records and random bytes.
    CloseEarly(usize),
    /// The close record, then replays and random bytes.
    CloseThenMore,
}

/// Damage to the sealed records (rare: most cases must get past the tags to reach the
/// plaintext rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    None,
    Duplicate,
    Swap,
    Drop,
    FlipBit,
    /// A length field below the tag's 16 bytes.
    ShortLength,
    /// The last record cut inside.
    CutLast,
}

/// How the sealed bytes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// All at once, then the write side shut.
    Whole,
    /// A byte at a time with pauses: each record must arrive within the record deadline.
    Trickle,
    /// The handshake, then nothing, the connection open: the idle timeout must end it.
    StallAfterHandshake,
    /// Some of the bytes, then nothing, the connection open.
    Stall,
}

struct Case {
    plaintext: Vec<u8>,
    cut: Cut,
    /// Random record sizes for `Cut::Random`, used in turn.
    sizes: Vec<usize>,
    ending: Ending,
    damage: Damage,
    delivery: Delivery,
    /// Which cipher the hello puts first (see [`offered`]): AEGIS-256X4 (as a Ferry whose
    /// CPU has AES does), AES-256-GCM or ChaCha20-Poly1305.
    offer: usize,
    /// The rest of the case's random choices (what to replay, where to stall, padding).
    noise: u64,
    /// BLAKE3 values the plaintext's `end` frames announced.
    announced: Vec<[u8; 32]>,
}

/// A Ferry file large enough for the server's pipelined path (a second thread hashes and
/// writes), in chunks of the largest size.
fn large_file(rng: &mut Rng) -> Vec<Seg> {
    let len = 4 * 1024 * 1024 + rng.below(300_000);
    let data = rng.bytes(len);
    let mut segs = vec![frame(&SenderMsg::Offer(ferry::protocol::Header {
        eager: false,
        file_name: "large.bin".into(),
        file_size: data.len() as u64,
        msg: "fuzz".into(),
        resume_key: None,
    }))];
    segs.extend(
        data.chunks(ferry::protocol::MAX_CHUNK_LEN)
            .map(|c| Seg::Chunk(c.to_vec())),
    );
    segs.push(frame(&SenderMsg::End {
        blake3: *blake3::hash(&data).as_bytes(),
    }));
    segs
}

fn make_case(rng: &mut Rng) -> Case {
    let segs = if rng.chance(4) {
        large_file(rng)
    } else {
        seed_stream(rng)
    };
    let (plaintext, announced) = mutated_stream(rng, segs, 30);
    let cut = *rng.pick(&[
        Cut::Natural,
        Cut::OneByte,
        Cut::Random,
        Cut::Max,
        Cut::InPlace,
    ]);
    let sizes = (0..64)
        .map(|_| match rng.below(4) {
            0 => 1 + rng.below(8),
            1 => MAX_RECORD_PLAINTEXT - rng.below(3),
            _ => 1 + rng.below(MAX_RECORD_PLAINTEXT),
        })
        .collect();
    let ending = match rng.below(100) {
        0..=59 => Ending::Close,
        60..=74 => Ending::NoClose,
        75..=89 => Ending::CloseEarly(rng.below(12)),
        _ => Ending::CloseThenMore,
    };
    let damage = if rng.chance(12) {
        *rng.pick(&[
            Damage::Duplicate,
            Damage::Swap,
            Damage::Drop,
            Damage::FlipBit,
            Damage::ShortLength,
            Damage::CutLast,
        ])
    } else {
        Damage::None
    };
    let delivery = match rng.below(100) {
        0..=1 => Delivery::StallAfterHandshake,
        2..=3 => Delivery::Stall,
        4..=5 => Delivery::Trickle,
        _ => Delivery::Whole,
    };
    Case {
        plaintext,
        cut,
        sizes,
        ending,
        damage,
        delivery,
        offer: rng.below(3),
        noise: rng.next(),
        announced,
    }
}

// ---------------------------------------------------------------------------------------
// The hostile device: a real handshake, then records sealed with the real key.

/// Where the hostile writer's records land instead of the socket, so the case decides what
/// of them is sent, in what order and how fast.
#[derive(Clone, Default)]
pub(crate) struct Sealed(Rc<RefCell<Vec<u8>>>);

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sealed {
    /// What was sealed since the last take.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// The ciphers a case's hello lists, `offer` (0 to 2) saying which comes first; the server
/// takes the first one it knows where its CPU has AES, so every record cipher is fuzzed.
fn offered(offer: usize) -> [Cipher; 3] {
    let mut ciphers = [Cipher::Aegis, Cipher::AesGcm, Cipher::ChaChaPoly];
    ciphers.rotate_left(offer % 3);
    ciphers
}

/// The secure hello, the go-ahead, the Noise handshake as a device of its own: returns the
/// raw socket (to write records on and read the end from), the record writer over [`Sealed`]
/// and the reader half, kept so the server's records are not refused by a closed socket.
pub(crate) fn handshake(
    addr: SocketAddr,
    source: Ipv4Addr,
    identity: &Identity,
    offer: usize,
) -> Result<
    (
        TcpStream,
        SecureWriter<Sealed>,
        Sealed,
        SecureReader<TcpStream>,
    ),
    String,
> {
    let mut tcp = connect_from(source, addr).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_read_timeout(Some(DEADLINE));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.set_nodelay(true);
    let ciphers = offered(offer);
    let hello = encode_sender_msg(&SenderMsg::Secure {
        pairing: false,
        ciphers: ciphers.iter().map(|c| c.wire_name().to_owned()).collect(),
        serves_on: None,
    })
    .map_err(|e| e.to_string())?;
    tcp.write_all(&hello).map_err(|e| format!("hello: {e}"))?;
    let mut len = [0u8; 4];
    tcp.read_exact(&mut len)
        .map_err(|e| format!("go-ahead: {e}"))?;
    let len = ferry::protocol::decode_frame_len(len).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body)
        .map_err(|e| format!("go-ahead: {e}"))?;
    let cipher = match ferry::protocol::decode_receiver_msg(&body) {
        Ok(ReceiverMsg::Secure { cipher }) => {
            Cipher::from_wire_name(&cipher).ok_or(format!("cipher {cipher:?}"))?
        }
        other => return Err(format!("not a go-ahead: {other:?}")),
    };
    let raw = tcp.try_clone().map_err(|e| e.to_string())?;
    let transcript = ferry::secure::Transcript {
        hello: &hello[4..],
        go_ahead: &body,
    };
    let channel = ferry::secure::connect_with(
        tcp,
        identity,
        ferry::secure::Mode::Open,
        cipher,
        transcript,
        &mut ferry::secure::rng::OsEntropy,
    )
    .map_err(|e| format!("handshake: {e}"))?;
    let sealed = Sealed::default();
    let out = sealed.clone();
    let (reader, writer) = channel
        .split(|tcp| Ok::<_, std::io::Error>((tcp, out)))
        .map_err(|_| "split refused".to_owned())?;
    let _ = raw.set_read_timeout(None);
    Ok((raw, writer, sealed, reader))
}

/// Seals `case`'s plaintext into records as its cut and ending say: each record's bytes
/// apart, so the damage and the delivery can act on records.
fn seal(case: &Case, writer: &mut SecureWriter<Sealed>, sealed: &Sealed) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(case.noise);
    let mut records: Vec<Vec<u8>> = Vec::new();
    // Pieces of plaintext, each to be one record (the writer's own cut for `Natural`).
    let mut plaintext = case.plaintext.clone();
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    match case.cut {
        Cut::Natural | Cut::InPlace => pieces.push(plaintext),
        Cut::OneByte => {
            let split = plaintext.len().min(ONE_BYTE_PREFIX);
            let rest = plaintext.split_off(split);
            pieces.extend(plaintext.iter().map(|b| vec![*b]));
            pieces.push(rest);
        }
        Cut::Random => {
            let mut sizes = case.sizes.iter().cycle();
            let mut rest = plaintext.as_slice();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
                pieces.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
        }
        Cut::Max => {
            let padded =
                plaintext.len().div_ceil(MAX_RECORD_PLAINTEXT).max(1) * MAX_RECORD_PLAINTEXT;
            plaintext.extend(rng.bytes(padded - plaintext.len()));
            pieces.extend(plaintext.chunks(MAX_RECORD_PLAINTEXT).map(<[u8]>::to_vec));
        }
    }
    let early = match case.ending {
        Ending::CloseEarly(n) => Some(n),
        _ => None,
    };
    let mut closed = false;
    'pieces: for mut piece in pieces {
        if piece.is_empty() {
            continue;
        }
        if case.cut == Cut::InPlace {
            writer.write_in_place(&mut piece).expect("sealing in place");
        } else {
            let mut rest = piece.as_slice();
            while !rest.is_empty() {
                let n = writer.write(rest).expect("sealing");
                rest = &rest[n..];
            }
            writer.flush().expect("sealing");
        }
        // Records apart: each starts with its length.
        let mut bytes = sealed.take();
        while bytes.len() >= 2 {
            let n = 2 + usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            let rest = bytes.split_off(n.min(bytes.len()));
            records.push(bytes);
            bytes = rest;
            if early.is_some_and(|k| records.len() >= k) {
                // The close record now (the writer refuses anything after it).
                writer.close().expect("the close record");
                records.push(sealed.take());
                closed = true;
                break 'pieces;
            }
        }
    }
    if !closed && case.ending != Ending::NoClose {
        writer.close().expect("the close record");
        records.push(sealed.take());
    }
    if matches!(case.ending, Ending::CloseEarly(_) | Ending::CloseThenMore) {
        // After the close: earlier records again, and bytes that are no record at all.
        for _ in 0..1 + rng.below(3) {
            if rng.chance(60) && !records.is_empty() {
                let again = records[rng.below(records.len())].clone();
                records.push(again);
            } else {
                records.push(rng.some_bytes(300));
            }
        }
    }
    damage(&mut rng, case.damage, &mut records);
    records
}

fn damage(rng: &mut Rng, damage: Damage, records: &mut Vec<Vec<u8>>) {
    if records.is_empty() {
        return;
    }
    let i = rng.below(records.len());
    match damage {
        Damage::None => {}
        Damage::Duplicate => {
            let copy = records[i].clone();
            records.insert(i, copy);
        }
        Damage::Swap => {
            let j = rng.below(records.len());
            records.swap(i, j);
        }
        Damage::Drop => {
            records.remove(i);
        }
        Damage::FlipBit => {
            let at = rng.below(records[i].len().max(1));
            if let Some(byte) = records[i].get_mut(at) {
                *byte ^= 1 << rng.below(8);
            }
        }
        Damage::ShortLength => {
            let len = rng.below(16) as u16;
            if records[i].len() >= 2 {
                records[i][..2].copy_from_slice(&len.to_be_bytes());
            }
        }
        Damage::CutLast => {
            if let Some(last) = records.last_mut() {
                last.truncate(rng.below(last.len().max(1)));
            }
        }
    }
}

/// One case: the handshake, the records, the delivery; an error when the handshake failed
/// or the server kept the connection open past the deadline.
fn run_case(
    addr: SocketAddr,
    source: Ipv4Addr,
    identity: &Identity,
    case: &Case,
) -> Result<(), String> {
    let (mut raw, mut writer, sealed, _reader) = handshake(addr, source, identity, case.offer)?;
    let records = seal(case, &mut writer, &sealed);
    let wire: Vec<u8> = records.concat();
    match case.delivery {
        Delivery::Whole => {
            let _ = raw.write_all(&wire);
            let _ = raw.shutdown(std::net::Shutdown::Write);
        }
        Delivery::StallAfterHandshake => {}
        Delivery::Stall => {
            let at = Rng::new(case.noise ^ 1).below(wire.len() + 1);
            let _ = raw.write_all(&wire[..at]);
        }
        Delivery::Trickle => {
            let until = Instant::now() + Duration::from_millis(2500);
            for byte in &wire {
                // Pacing, not synchronisation: a peer that is slow on purpose.
                std::thread::sleep(Duration::from_millis(20));
                if raw.write_all(&[*byte]).is_err() || Instant::now() > until {
                    break;
                }
            }
            let _ = raw.shutdown(std::net::Shutdown::Write);
        }
    }
    until_closed(&mut raw)
}

// ---------------------------------------------------------------------------------------
// The campaign and its invariants.

#[test]
fn an_authenticated_record_campaign_leaves_the_server_whole() {
    count_panics();
    let seed = seed("secure");
    let total = cases(160);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    let canary = root.path().join("canary.txt");
    std::fs::write(&canary, b"left alone").unwrap();
    let homes = tempfile::tempdir().unwrap();
    let receiver = device(&homes.path().join("receiver"), "fuzz-receiver");
    let hostile = device(&homes.path().join("hostile"), "hostile");
    let legit = device(&homes.path().join("legit"), "legit");
    let (max_connections, max_per_peer) = CAMPAIGN_SLOTS;
    let (server, events) = start_server_with(campaign_config(&dir, receiver));
    let finished = Finished::collect(events);
    let addr = server.local_addr();

    // Every handshake succeeds (or the campaign never reaches the records) and every
    // connection is closed by the server in time.
    let identity = Arc::clone(&hostile.identity);
    let sent = campaign(
        seed,
        0x9FB2_1C65_1E98_DF25,
        total,
        make_case,
        move |source, case| run_case(addr, source, &identity, case),
        |case| {
            format!(
                "{:?} first, {:?}, {:?}, {:?}, {:?}, {} bytes",
                offered(case.offer)[0],
                case.cut,
                case.ending,
                case.damage,
                case.delivery,
                case.plaintext.len()
            )
        },
    );

    // Every slot is free again.
    slots_come_back(addr, max_connections, max_per_peer, seed);

    // It still takes a legitimate encrypted upload.
    let outside = tempfile::tempdir().unwrap();
    let legit_path = outside.path().join("legit.bin");
    let legit_bytes = data(300_000, seed);
    std::fs::write(&legit_path, &legit_bytes).unwrap();
    let mut opts = SendOptions::new(addr.to_string());
    opts.keyring = Some(legit);
    let outcomes = send_once_free(&opts, &legit_path, seed);
    assert!(
        matches!(outcomes[..], [FileOutcome::Verified { .. }]),
        "seed {seed}: {outcomes:?}"
    );

    stops_in_time(seed, move || server.stop());
    let finished = finished.all();
    assert_no_panics();

    // Files: inside the folder, no links, the canary untouched; inside an encrypted
    // connection only Ferry files, so every final name is verified, with a hash some `end`
    // frame announced.
    assert_eq!(std::fs::read(&canary).unwrap(), b"left alone");
    let mut announced: HashSet<[u8; 32]> = sent
        .iter()
        .flat_map(|c| c.announced.iter().copied())
        .collect();
    announced.insert(*blake3::hash(&legit_bytes).as_bytes());
    let mut from_cases = 0;
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
        assert!(verified, "seed {seed}: {path:?} final but not verified");
        assert!(
            announced.contains(blake3::hash(&bytes).as_bytes()),
            "seed {seed}: {path:?} verified, but no case announced its hash"
        );
        // (An announced hash is the check on the bytes: a verified file's data came in
        // chunks, with chunk headers between its pieces in the plaintext.)
        if bytes != legit_bytes {
            from_cases += 1;
        }
    }
    eprintln!(
        "fuzz_secure: {} cases, {} files finished, {from_cases} of the cases' on disk",
        sent.len(),
        finished.len()
    );
    // The campaign reached the plaintext rules: some hostile device's files went all the way.
    assert!(
        from_cases > 0,
        "seed {seed}: no case's file was saved: the records never got through"
    );
}

/// `stop()` ends hostile encrypted connections wherever they are: silent after the
/// handshake, inside a record, between a frame's records, inside a file's data. The
/// timeouts are far longer than the test, so only `stop()` can end them.
#[test]
fn stop_ends_stalled_encrypted_peers_wherever_they_stall() {
    count_panics();
    let seed = seed("secure stop");
    let dir = tempfile::tempdir().unwrap();
    let homes = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(LOOPBACK, 0, dir.path().to_owned());
    config.keyring = Some(device(&homes.path().join("receiver"), "fuzz-receiver"));
    config.idle_timeout = Duration::from_secs(120);
    config.header_deadline = Duration::from_secs(120);
    config.min_rate = MinRate {
        bytes_per_sec: 1,
        window: Duration::from_secs(120),
    };
    config.fsync = false;
    let (server, events) = start_server_with(config);
    let finished = Finished::collect(events);
    let addr = server.local_addr();
    let hostile = device(&homes.path().join("hostile"), "hostile");
    let mut rng = Rng::new(seed);
    let mut open = Vec::new();
    for n in 0..12 {
        let case = make_case(&mut rng);
        let (mut raw, mut writer, sealed, reader) = handshake(
            addr,
            Ipv4Addr::new(127, 3, 0, n + 1),
            &hostile.identity,
            case.offer,
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let wire = seal(&case, &mut writer, &sealed).concat();
        // A prefix, the connection left open: nothing after the handshake, part of a record,
        // or whole records with the stream neither closed nor ended.
        let at = match n % 3 {
            0 => 0,
            1 => Rng::new(case.noise).below(wire.len() + 1),
            _ => wire.len().saturating_sub(CLOSE_RECORD_LEN),
        };
        raw.write_all(&wire[..at]).unwrap();
        open.push((raw, reader));
    }
    stops_in_time(seed, move || server.stop());
    for (i, (raw, _)) in open.iter_mut().enumerate() {
        // Stopped: every connection is closed already, so this returns at once.
        until_closed(raw).unwrap_or_else(|e| panic!("seed {seed}: connection {i}: {e}"));
    }
    let _ = finished.all();
    assert_no_panics();
}
