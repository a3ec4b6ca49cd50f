//! The secure channel (`ferry::secure`) over real loopback TCP: pairing with right and wrong
//! codes, burnt and expired codes, a tampering proxy, reflected and replayed handshakes, no
//! plaintext on the wire, pinned keys and the identity files.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use ferry::secure::pairing::{CODE_LIFETIME, Pairing, PairingCode};
use ferry::secure::rng::OsEntropy;
use ferry::secure::trust::{TrustStore, Verdict};
use ferry::secure::{Identity, Mode, SecureError, SecureStream, accept, connect};

use crate::util::{DEADLINE, data};

/// What a receiving thread hands back: the bytes and the peer, or the error's name.
type Received = Result<(Vec<u8>, ferry::secure::PeerInfo), String>;
/// What the recording proxy hands back: the bytes the sender wrote, and the receiver's.
type Recorded = (Vec<u8>, Vec<u8>);

fn sender_id() -> Identity {
    Identity::from_private([0x11; 32], "sender box")
}

fn receiver_id() -> Identity {
    Identity::from_private([0x22; 32], "receiver box")
}

fn code(text: &str) -> PairingCode {
    PairingCode::parse(text).unwrap()
}

/// A listener on 127.0.0.1:0 whose one connection is handed to `serve` on a thread.
fn serve_one<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        serve(stream)
    });
    (addr, handle)
}

fn dial(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads to the end of a secure stream; the bytes read before an error are kept.
fn read_all(stream: &mut impl Read) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn secure_kind(e: &std::io::Error) -> String {
    match SecureError::from_io(e) {
        Some(inner) => format!("{inner:?}"),
        None => format!("io {e:?}"),
    }
}

/// A receiver that accepts in `mode` and reads everything, then answers "thanks".
fn receiving(mode_code: Option<PairingCode>) -> (SocketAddr, JoinHandle<Received>) {
    serve_one(move |tcp| {
        let mode = mode_code.as_ref().map_or(Mode::Open, Mode::Code);
        let mut s =
            accept(tcp, &receiver_id(), mode, &mut OsEntropy).map_err(|e| format!("{e:?}"))?;
        let (got, err) = read_all(&mut s);
        if let Some(e) = err {
            return Err(secure_kind(&e));
        }
        s.write_all(b"thanks").map_err(|e| e.to_string())?;
        s.close().map_err(|e| e.to_string())?;
        Ok((got, s.peer().clone()))
    })
}

fn send_all(
    addr: SocketAddr,
    mode: Mode<'_>,
    payload: &[u8],
) -> Result<(SecureStream<TcpStream>, Vec<u8>), SecureError> {
    let mut s = connect(dial(addr), &sender_id(), mode, &mut OsEntropy)?;
    // Odd-sized writes exercise the record gathering.
    for piece in payload.chunks(70_001) {
        s.write_all(piece)?;
    }
    s.close()?;
    let (reply, err) = read_all(&mut s);
    assert!(err.is_none(), "{err:?}");
    Ok((s, reply))
}

#[test]
fn pairing_with_the_right_code_moves_data_both_ways_and_proves_both_keys() {
    let payload = data(3_000_000, 7);
    let (addr, receiver) = receiving(Some(code("0427-otter-maple-drum")));
    let (s, reply) = send_all(addr, Mode::Code(&code("0427 OTTER maple drum")), &payload).unwrap();
    let (got, peer_seen_by_receiver) = receiver.join().unwrap().unwrap();
    assert!(
        got == payload,
        "received {} bytes, sent {}",
        got.len(),
        payload.len()
    );
    assert_eq!(reply, b"thanks");
    assert_eq!(peer_seen_by_receiver.public_key, *sender_id().public_key());
    assert_eq!(peer_seen_by_receiver.name, "sender box");
    assert!(peer_seen_by_receiver.paired);
    assert_eq!(s.peer().public_key, *receiver_id().public_key());
    assert_eq!(s.peer().name, "receiver box");
    assert_eq!(s.peer().fingerprint(), receiver_id().fingerprint());
}

#[test]
fn open_mode_round_trip_and_many_small_request_reply_turns() {
    let (addr, receiver) = serve_one(|tcp| {
        let mut s = accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy).unwrap();
        assert!(!s.peer().paired);
        let mut line = [0u8; 8];
        for i in 0..200u64 {
            s.read_exact(&mut line).unwrap();
            assert_eq!(u64::from_le_bytes(line), i);
            s.write_all(&(i * 3).to_le_bytes()).unwrap();
            s.flush().unwrap();
        }
        let (rest, err) = read_all(&mut s);
        assert!(rest.is_empty() && err.is_none(), "{rest:?} {err:?}");
        s.close().unwrap();
    });
    let mut s = connect(dial(addr), &sender_id(), Mode::Open, &mut OsEntropy).unwrap();
    let mut answer = [0u8; 8];
    for i in 0..200u64 {
        s.write_all(&i.to_le_bytes()).unwrap();
        s.flush().unwrap();
        s.read_exact(&mut answer).unwrap();
        assert_eq!(u64::from_le_bytes(answer), i * 3);
    }
    s.close().unwrap();
    let (rest, err) = read_all(&mut s);
    assert!(rest.is_empty() && err.is_none());
    assert!(s.peer_closed());
    receiver.join().unwrap();
}

#[test]
fn a_wrong_code_fails_on_both_sides_before_any_application_byte() {
    let (addr, receiver) = serve_one(|tcp| {
        accept(
            tcp,
            &receiver_id(),
            Mode::Code(&code("1111-fox-owl-plum")),
            &mut OsEntropy,
        )
        .map(|_| ())
    });
    let sender = connect(
        dial(addr),
        &sender_id(),
        Mode::Code(&code("1112-fox-owl-plum")),
        &mut OsEntropy,
    );
    assert!(
        matches!(sender, Err(SecureError::WrongCode)),
        "{:?}",
        sender.err()
    );
    let on_receiver = receiver.join().unwrap();
    assert!(
        matches!(on_receiver, Err(SecureError::WrongCode)),
        "{on_receiver:?}"
    );
    assert_eq!(SecureError::WrongCode.to_string(), "wrong pairing code");
}

/// The receiver's loop: one `Pairing`, a try per connection, with the clock given per try.
fn pairing_receiver(
    pairing: Pairing,
    clocks: Vec<Instant>,
) -> (SocketAddr, JoinHandle<Vec<Result<(), String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let mut pairing = pairing;
        let mut results = Vec::new();
        for now in clocks {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(DEADLINE)).unwrap();
            let outcome = pairing.begin_try(now).and_then(|c| {
                accept(tcp, &receiver_id(), Mode::Code(&c), &mut OsEntropy)
                    .map(|_| pairing.succeeded())
            });
            results.push(outcome.map_err(|e| format!("{e:?}")));
        }
        results
    });
    (addr, handle)
}

#[test]
fn three_wrong_tries_burn_the_code_and_the_right_one_is_refused_after() {
    let right = code("2024-raven-lemon-kettle");
    let t0 = Instant::now();
    let (addr, receiver) = pairing_receiver(Pairing::new(right.clone(), t0), vec![t0; 4]);
    for wrong in [
        "2024-raven-lemon-kitten",
        "2025-raven-lemon-kettle",
        "0000-acorn-acorn-acorn",
    ] {
        let r = connect(
            dial(addr),
            &sender_id(),
            Mode::Code(&code(wrong)),
            &mut OsEntropy,
        );
        assert!(matches!(r, Err(SecureError::WrongCode)), "{:?}", r.err());
    }
    let r = connect(dial(addr), &sender_id(), Mode::Code(&right), &mut OsEntropy);
    // The receiver hangs up: an end of stream, or a reset if our message was still unread.
    assert!(
        matches!(r, Err(SecureError::Handshake(_) | SecureError::Io(_))),
        "burnt code still paired: {:?}",
        r.err()
    );
    let results = receiver.join().unwrap();
    assert_eq!(results[..3], vec![Err("WrongCode".to_owned()); 3]);
    assert_eq!(results[3], Err("CodeBurnt".to_owned()));
}

#[test]
fn an_expired_code_is_refused_and_a_fresh_one_pairs() {
    let right = code("0427-otter-maple-drum");
    let t0 = Instant::now();
    let clocks = vec![
        t0 + CODE_LIFETIME - std::time::Duration::from_secs(1),
        t0 + CODE_LIFETIME,
    ];
    let (addr, receiver) = pairing_receiver(Pairing::new(right.clone(), t0), clocks.clone());
    // The first try just inside the lifetime pairs; build a second pairing to see expiry.
    connect(dial(addr), &sender_id(), Mode::Code(&right), &mut OsEntropy).unwrap();
    let r = connect(dial(addr), &sender_id(), Mode::Code(&right), &mut OsEntropy);
    assert!(r.is_err());
    let results = receiver.join().unwrap();
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Err("CodeUsed".to_owned()));

    let (addr, receiver) =
        pairing_receiver(Pairing::new(right.clone(), t0), vec![t0 + CODE_LIFETIME]);
    assert!(connect(dial(addr), &sender_id(), Mode::Code(&right), &mut OsEntropy).is_err());
    assert_eq!(
        receiver.join().unwrap(),
        vec![Err("CodeExpired".to_owned())]
    );
}

/// What a tampering proxy does to the sender's frames after the handshake.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Flip(usize),
    Duplicate(usize),
    Swap(usize),
    Drop(usize),
    /// Forward `n` records, then end the connection.
    CutAfter(usize),
}

/// A proxy on loopback in front of `upstream` that parses the `[u16 len][body]` frames the
/// sender writes (handshake messages and records share that framing), applies `fault` to the
/// records and records every byte both ways.
fn proxy(
    upstream: SocketAddr,
    handshake_frames: usize,
    fault: Fault,
) -> (SocketAddr, JoinHandle<Recorded>) {
    serve_one(move |client| {
        let server = dial(upstream);
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (mut s_read, mut c_write) = (server, client);
        let back = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 65_536];
            while let Ok(n) = s_read.read(&mut buf) {
                if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = c_write.shutdown(Shutdown::Write);
            seen
        });
        let mut frames = Vec::new();
        let mut forward = Vec::new();
        loop {
            let mut len = [0u8; 2];
            if c_read.read_exact(&mut len).is_err() {
                break;
            }
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            c_read.read_exact(&mut body).unwrap();
            let frame = [len.to_vec(), body].concat();
            frames.push(frame.clone());
            if frames.len() <= handshake_frames {
                s_write.write_all(&frame).unwrap();
            } else {
                forward.push(frame);
            }
        }
        let mut records = forward;
        match fault {
            Fault::None => {}
            Fault::Flip(i) => records[i][5] ^= 0x40,
            Fault::Duplicate(i) => records.insert(i, records[i].clone()),
            Fault::Swap(i) => records.swap(i, i + 1),
            Fault::Drop(i) => drop(records.remove(i)),
            Fault::CutAfter(n) => records.truncate(n),
        }
        // The receiver hangs up at the fault, so later writes may fail: that is expected.
        for r in &records {
            if s_write.write_all(r).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
        (frames.concat(), back.join().unwrap())
    })
}

/// Sends `payload` through a proxy with `fault` and returns what the receiver got and how it
/// ended. The sender writes everything before the proxy forwards a record, so the fault is
/// applied to a complete stream.
fn through_proxy(fault: Fault, payload: &[u8]) -> (Vec<u8>, Option<String>, Vec<u8>, Vec<u8>) {
    let (addr, receiver) = serve_one(|tcp| {
        let mut s = accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy).unwrap();
        let (got, err) = read_all(&mut s);
        (got, err.map(|e| secure_kind(&e)))
    });
    // Open mode: the sender writes 2 handshake frames (messages 4 and 6).
    let (paddr, recorder) = proxy(addr, 2, fault);
    let mut s = connect(dial(paddr), &sender_id(), Mode::Open, &mut OsEntropy).unwrap();
    s.write_all(payload).unwrap();
    s.close().unwrap();
    s.get_ref().shutdown(Shutdown::Write).unwrap();
    let (got, err) = receiver.join().unwrap();
    let (sender_bytes, receiver_bytes) = recorder.join().unwrap();
    (got, err, sender_bytes, receiver_bytes)
}

#[test]
fn a_tampering_proxy_gets_a_typed_error_and_never_garbage() {
    // 5 full records and a short one, then the close record (index 6).
    let payload = data(5 * 65_519 + 1_000, 3);
    let (got, err, _, _) = through_proxy(Fault::None, &payload);
    assert!(
        err.is_none() && got == payload,
        "the proxy itself is faithful: {err:?}"
    );
    // The fault, the error, and how many whole records still came out before it.
    for (fault, want, records_before) in [
        (Fault::Flip(2), "Tampered", 2),
        (Fault::Duplicate(2), "Tampered", 3),
        (Fault::Swap(2), "Tampered", 2),
        (Fault::Drop(2), "Tampered", 2),
        (Fault::CutAfter(3), "Truncated", 3),
        (Fault::Drop(6), "Truncated", 6),
        (Fault::Flip(6), "Tampered", 6),
    ] {
        let (got, err, _, _) = through_proxy(fault, &payload);
        assert_eq!(err.as_deref(), Some(want), "{fault:?}");
        let want_len = (records_before * 65_519).min(payload.len());
        assert_eq!(got.len(), want_len, "{fault:?}");
        assert!(
            payload.starts_with(&got),
            "{fault:?}: bytes that were not sent came out"
        );
    }
}

#[test]
fn no_plaintext_on_the_wire_and_each_session_encrypts_differently() {
    let canary = b"CANARY-7f3a-secret-file-name.txt and message";
    let payload: Vec<u8> = canary.iter().copied().cycle().take(200_000).collect();
    let (got1, err1, wire1, back1) = through_proxy(Fault::None, &payload);
    let (got2, err2, wire2, back2) = through_proxy(Fault::None, &payload);
    assert!(err1.is_none() && err2.is_none() && got1 == payload && got2 == payload);
    for wire in [&wire1, &wire2] {
        assert!(wire.len() > payload.len(), "the recorder saw the stream");
        assert!(
            !wire.windows(6).any(|w| w == b"CANARY"),
            "plaintext on the wire"
        );
        assert!(
            !wire.windows(10).any(|w| w == b"sender box"),
            "device name in the clear"
        );
    }
    for back in [&back1, &back2] {
        assert!(back.len() > 96, "the recorder saw the answers");
        assert!(
            !back.windows(12).any(|w| w == b"receiver box"),
            "device name in the clear"
        );
    }
    // Same keys, same plaintext, two sessions: different bytes from the first record on.
    let common = wire1.iter().zip(&wire2).take_while(|(a, b)| a == b).count();
    assert!(common < 8, "sessions share {common} leading bytes");
}

#[test]
fn a_reflected_handshake_message_is_refused() {
    // A "receiver" that echoes whatever arrives.
    for with_code in [false, true] {
        let (addr, echo) = serve_one(|mut tcp| {
            let mut buf = [0u8; 4096];
            if let Ok(n) = tcp.read(&mut buf) {
                let _ = tcp.write_all(&buf[..n]);
            }
        });
        let c = code("0427-otter-maple-drum");
        let mode = if with_code {
            Mode::Code(&c)
        } else {
            Mode::Open
        };
        let r = connect(dial(addr), &sender_id(), mode, &mut OsEntropy);
        assert!(
            matches!(r, Err(SecureError::Reflected)),
            "code {with_code}: {:?}",
            r.err()
        );
        echo.join().unwrap();
    }
}

#[test]
fn a_replayed_handshake_and_data_are_refused_by_a_fresh_receiver() {
    let payload = b"replay me".repeat(1000);
    let (_, _, wire, _) = through_proxy(Fault::None, &payload);
    let (addr, receiver) = serve_one(|tcp| {
        let r = accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy);
        r.map(|_| ()).map_err(|e| format!("{e:?}"))
    });
    let mut attacker = dial(addr);
    attacker.write_all(&wire).unwrap();
    let outcome = receiver.join().unwrap();
    let err = outcome.expect_err("a replayed handshake was accepted");
    assert!(err.starts_with("Handshake("), "{err}");
}

#[test]
fn a_hostile_handshake_length_is_refused_before_allocating() {
    let (addr, receiver) =
        serve_one(|tcp| accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy).map(|_| ()));
    let mut attacker = dial(addr);
    attacker.write_all(&[0xFF, 0xFF, 1, 2, 3]).unwrap();
    assert!(matches!(
        receiver.join().unwrap(),
        Err(SecureError::MessageSize(65_535))
    ));
    let (addr, receiver) =
        serve_one(|tcp| accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy).map(|_| ()));
    dial(addr).write_all(&[0, 40, 1, 2]).unwrap();
    assert!(matches!(
        receiver.join().unwrap(),
        Err(SecureError::Handshake(_))
    ));
}

#[test]
fn a_trusted_name_with_a_different_key_is_key_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TrustStore::load(dir.path()).unwrap();
    store
        .pin("sender box", sender_id().public_key(), None, 1)
        .unwrap();
    store.save().unwrap();
    let impostor = Identity::from_private([0x33; 32], "sender box");
    for (who, want_trusted) in [(sender_id(), true), (impostor, false)] {
        let (addr, receiver) = serve_one(|tcp| {
            let s = accept(tcp, &receiver_id(), Mode::Open, &mut OsEntropy).unwrap();
            s.peer().clone()
        });
        connect(dial(addr), &who, Mode::Open, &mut OsEntropy).unwrap();
        let peer = receiver.join().unwrap();
        let store = TrustStore::load(dir.path()).unwrap();
        match store.check(&peer.name, &peer.public_key) {
            Ok(Verdict::Trusted(d)) => assert!(want_trusted && d.name == "sender box"),
            Err(SecureError::KeyChanged { name, fingerprint }) => {
                assert!(!want_trusted);
                assert_eq!(
                    (name.as_str(), fingerprint),
                    ("sender box", peer.fingerprint())
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(unix)]
#[test]
fn the_identity_is_created_private_reloaded_and_refused_when_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("config").join("ferry");
    let first = Identity::load_or_create(&conf).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&conf), 0o700);
    assert_eq!(mode(&conf.join("identity.key")), 0o600);
    assert!(!first.name().is_empty());
    let again = Identity::load_or_create(&conf).unwrap();
    assert_eq!(again.public_key(), first.public_key());

    let mut renamed = again.clone();
    renamed.rename(&conf, "kitchen laptop").unwrap();
    assert_eq!(
        Identity::load_or_create(&conf).unwrap().name(),
        "kitchen laptop"
    );

    let key = conf.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = Identity::load_or_create(&conf).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::remove_file(&key).unwrap();
    let elsewhere = dir.path().join("elsewhere.key");
    std::fs::write(&elsewhere, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
    let err = Identity::load_or_create(&conf).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}
