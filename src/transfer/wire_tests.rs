//! Tests of [`super`] (wire.rs), kept apart so the module stays readable.
use super::*;

#[test]
fn the_senders_first_known_cipher_where_this_cpu_has_aes_else_chacha() {
    let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let aes_here = crate::secure::handshake::hardware_aes();
    let or_chacha = |cipher| if aes_here { cipher } else { Cipher::ChaChaPoly };
    assert_eq!(
        choose_cipher(&list(&["aegis256x4", "aesgcm", "chachapoly"])),
        or_chacha(Cipher::Aegis)
    );
    // A sender from before AEGIS.
    assert_eq!(
        choose_cipher(&list(&["aesgcm", "chachapoly"])),
        or_chacha(Cipher::AesGcm)
    );
    // A sender without AES instructions lists ChaCha20-Poly1305 first.
    assert_eq!(
        choose_cipher(&list(&["chachapoly", "aesgcm", "aegis256x4"])),
        Cipher::ChaChaPoly
    );
    // Names this side does not know are passed over.
    assert_eq!(
        choose_cipher(&list(&["rot13", "aesgcm"])),
        or_chacha(Cipher::AesGcm)
    );
    assert_eq!(choose_cipher(&[]), Cipher::ChaChaPoly);
    assert_eq!(choose_cipher(&list(&["rot13"])), Cipher::ChaChaPoly);
}

#[test]
fn every_cipher_carries_data_end_to_end() {
    use crate::secure::rng::SeededEntropy;
    use std::io::{Read, Write};
    for cipher in [Cipher::ChaChaPoly, Cipher::AesGcm, Cipher::Aegis] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let me = crate::secure::Identity::generate(&mut SeededEntropy::new(b"r"), "r").unwrap();
            let mut s = secure::accept_with(
                tcp,
                &me,
                secure::Mode::Open,
                cipher,
                secure::Transcript::default(),
                &mut SeededEntropy::new(b"r2"),
            )
            .unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let me = crate::secure::Identity::generate(&mut SeededEntropy::new(b"s"), "s").unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        let mut s = secure::connect_with(
            tcp,
            &me,
            secure::Mode::Open,
            cipher,
            secure::Transcript::default(),
            &mut SeededEntropy::new(b"s2"),
        )
        .unwrap();
        let data = vec![7u8; 300_000];
        s.write_all(&data).unwrap();
        s.close().unwrap();
        assert_eq!(receiver.join().unwrap(), data, "{cipher:?}");
    }
}

/// A connected pair on loopback: (what the test writes to, what `Paced` reads from).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (reader, _) = listener.accept().unwrap();
    (writer, reader)
}

fn record(body: &[u8]) -> Vec<u8> {
    let mut r = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    r.extend_from_slice(body);
    r
}

/// Paced keeps its record cut in force between records (no syscall per record): a pause
/// before the next record longer than the cut, but within the idle timeout, is no error.
#[test]
fn a_pause_between_records_may_last_the_idle_timeout_not_the_record_deadline() {
    use std::io::{Read, Write};
    let (mut writer, reader) = tcp_pair();
    let socket = reader.try_clone().unwrap();
    let mut paced = Paced::new(
        reader,
        socket,
        Some(Duration::from_millis(150)),
        Some(Duration::from_secs(5)),
    );
    let sender = std::thread::spawn(move || {
        // In two pieces, so the reader sets its cut inside the first record.
        let first = record(b"first");
        writer.write_all(&first[..4]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        writer.write_all(&first[4..]).unwrap();
        // The pause under test: past the record deadline, within the idle timeout.
        std::thread::sleep(Duration::from_millis(600));
        writer.write_all(&record(b"second")).unwrap();
        writer
    });
    let mut first = [0u8; 7];
    paced.read_exact(&mut first).unwrap();
    let mut second = [0u8; 8];
    paced
        .read_exact(&mut second)
        .expect("the pause is within the idle timeout");
    assert_eq!(&second[2..], b"second");
    drop(sender.join().unwrap());
}

/// A short cut left over from a record that came late must not end the next record before
/// its own deadline.
#[test]
fn a_short_cut_left_from_a_late_record_does_not_cut_the_next_one_early() {
    use std::io::{Read, Write};
    let (mut writer, reader) = tcp_pair();
    let socket = reader.try_clone().unwrap();
    let deadline = Duration::from_millis(800);
    let mut paced = Paced::new(reader, socket, Some(deadline), Some(Duration::from_secs(5)));
    let sender = std::thread::spawn(move || {
        let first = record(&[1u8; 30]);
        writer.write_all(&first[..10]).unwrap();
        // Late in the first record's time: the reader's next cut is short.
        std::thread::sleep(Duration::from_millis(650));
        writer.write_all(&first[10..20]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        writer.write_all(&first[20..]).unwrap();
        // The second record: well within its own deadline, but longer than that short cut.
        let second = record(&[2u8; 30]);
        writer.write_all(&second[..10]).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        writer.write_all(&second[10..]).unwrap();
        writer
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 64 {
        let n = paced
            .read(&mut buf)
            .expect("every record came within its deadline");
        assert!(n > 0, "early end");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[34..], &[2u8; 30]);
    drop(sender.join().unwrap());
}

/// A record whose bytes all came in time is not "too slow" because this side was late to
/// read them: the secure reader reads ahead, and the disk behind it may hold it past the
/// deadline of a record whose start it read. One whose bytes are not there still is.
#[test]
fn a_record_that_came_in_time_is_read_however_late_this_side_reads_it() {
    use std::io::{Read, Write};
    let (mut writer, reader) = tcp_pair();
    let socket = reader.try_clone().unwrap();
    // Long enough that the bound at the end (the late read fails well within one more
    // deadline, not after it) has room for a busy machine's scheduling delays.
    let deadline = Duration::from_millis(300);
    let mut paced = Paced::new(reader, socket, Some(deadline), Some(Duration::from_secs(5)));
    writer
        .write_all(&[record(b"first"), record(b"second")].concat())
        .unwrap();
    // The first record and the start of the second, where a read ahead may end.
    let mut head = [0u8; 7 + 3];
    paced.read_exact(&mut head).unwrap();
    // Busy elsewhere (the scenario itself, not a synchronisation) past the deadline.
    std::thread::sleep(3 * deadline);
    let mut rest = [0u8; 5];
    paced
        .read_exact(&mut rest)
        .expect("the record came in time");
    assert_eq!(&rest, b"econd");
    // The start of a third record only: late, and the rest is not there.
    writer.write_all(&record(b"third")[..3]).unwrap();
    let mut start = [0u8; 3];
    paced.read_exact(&mut start).unwrap();
    std::thread::sleep(3 * deadline);
    let started = std::time::Instant::now();
    let error = paced.read(&mut rest).expect_err("the peer is late");
    assert!(error.to_string().contains("took longer"), "{error}");
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    drop(writer);
}
