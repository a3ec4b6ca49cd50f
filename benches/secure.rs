//! Throughput of the secure channel: the same bytes over loopback TCP, plain and through
//! `SecureStream` (handshake excluded), in the same run. Prints MB/s; asserts nothing.
//!
//! ```text
//! cargo bench --bench secure                        # 1 GiB each way
//! FERRY_BENCH_BYTES=268435456 cargo bench --bench secure
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use ferry::secure::rng::OsEntropy;
use ferry::secure::{Identity, Mode, accept, connect};

const CHUNK: usize = 1024 * 1024;

fn main() {
    let bytes: usize = std::env::var("FERRY_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    for round in 0..2 {
        let plain = run(bytes, false);
        let secure = run(bytes, true);
        eprintln!(
            "round {round}: plain {plain:.0} MB/s, encrypted {secure:.0} MB/s ({:.2}x)",
            secure / plain
        );
    }
}

/// Sends `bytes` from one thread to another over loopback; returns MB/s seen by the reader.
fn run(bytes: usize, encrypted: bool) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let writer = std::thread::spawn(move || {
        let tcp = TcpStream::connect(addr).expect("connect");
        let id = Identity::from_private([1; 32], "bench sender");
        let mut out: Box<dyn Write + Send> = if encrypted {
            Box::new(connect(tcp, &id, Mode::Open, &mut OsEntropy).expect("handshake"))
        } else {
            Box::new(tcp)
        };
        let chunk = vec![0x5a_u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            out.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
        out.flush().expect("flush");
        out
    });
    let (tcp, _) = listener.accept().expect("accept");
    let id = Identity::from_private([2; 32], "bench receiver");
    let mut input: Box<dyn Read> = if encrypted {
        Box::new(accept(tcp, &id, Mode::Open, &mut OsEntropy).expect("handshake"))
    } else {
        Box::new(tcp)
    };
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    let start = Instant::now();
    while got < bytes {
        let n = input.read(&mut buf).expect("read");
        assert!(n > 0, "early end");
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(writer.join().expect("writer"));
    got as f64 / secs / 1e6
}
