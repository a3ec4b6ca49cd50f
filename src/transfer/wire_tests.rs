//! Tests of [`super`] (wire.rs), kept apart so the module stays readable.
use super::*;

#[test]
fn aes_gcm_only_when_the_sender_prefers_it_and_this_cpu_has_aes() {
    let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let aes_here = crate::secure::handshake::hardware_aes();
    let expected = if aes_here {
        Cipher::AesGcm
    } else {
        Cipher::ChaChaPoly
    };
    assert_eq!(choose_cipher(&list(&["aesgcm", "chachapoly"])), expected);
    assert_eq!(
        choose_cipher(&list(&["chachapoly", "aesgcm"])),
        Cipher::ChaChaPoly
    );
    assert_eq!(choose_cipher(&[]), Cipher::ChaChaPoly);
    assert_eq!(choose_cipher(&list(&["rot13"])), Cipher::ChaChaPoly);
}

#[test]
fn both_ciphers_carry_data_end_to_end() {
    use crate::secure::rng::SeededEntropy;
    use std::io::{Read, Write};
    for cipher in [Cipher::ChaChaPoly, Cipher::AesGcm] {
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
            &mut SeededEntropy::new(b"s2"),
        )
        .unwrap();
        let data = vec![7u8; 300_000];
        s.write_all(&data).unwrap();
        s.close().unwrap();
        assert_eq!(receiver.join().unwrap(), data, "{cipher:?}");
    }
}
