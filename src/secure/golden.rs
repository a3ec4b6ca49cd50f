//! Golden vectors: fixed keys and fixed randomness give fixed bytes on the wire. If one of
//! these changes, the wire format changed: every deployed Ferry would stop talking to the new
//! one. Update them only together with the specification in the module doc.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use super::handshake::{Cipher, Mode, NOISE_PARAMS, Transcript, accept_with, connect_with};
use super::hex;
use super::identity::Identity;
use super::note::{NoteOpener, NoteSealer};
use super::pairing::PairingCode;
use super::rng::SeededEntropy;

/// A stream that logs every byte written to it.
struct Tee {
    inner: UnixStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn alice() -> Identity {
    Identity::from_private(*blake3::hash(b"golden alice").as_bytes(), "alice")
}

fn bob() -> Identity {
    Identity::from_private(*blake3::hash(b"golden bob").as_bytes(), "bob")
}

/// The secure hellos and go-aheads the sessions below bind (fixed bytes, as a Ferry
/// sender and receiver write them).
const HELLO_OPEN: &[u8] =
    br#"{"ciphers":["chachapoly","aesgcm"],"ferry":1,"kind":"secure","pairing":false,"serves_on":47123}"#;
const HELLO_PAIRING: &[u8] =
    br#"{"ciphers":["chachapoly","aesgcm"],"ferry":1,"kind":"secure","pairing":true}"#;
const HELLO_AESGCM: &[u8] =
    br#"{"ciphers":["aesgcm","chachapoly"],"ferry":1,"kind":"secure","pairing":false}"#;
const GO_AHEAD: &[u8] = br#"{"cipher":"chachapoly","kind":"secure"}"#;
const GO_AHEAD_AESGCM: &[u8] = br#"{"cipher":"aesgcm","kind":"secure"}"#;
const HELLO_AEGIS: &[u8] =
    br#"{"ciphers":["aegis256x4","aesgcm","chachapoly"],"ferry":1,"kind":"secure","pairing":false}"#;
const GO_AHEAD_AEGIS: &[u8] = br#"{"cipher":"aegis256x4","kind":"secure"}"#;

/// Runs a whole session (handshake, "hello" from the sender, close both ways) with fixed
/// randomness over a socketpair; returns the hex of what each side wrote.
fn session(code: Option<&str>) -> (String, String) {
    let hello = if code.is_some() {
        HELLO_PAIRING
    } else {
        HELLO_OPEN
    };
    let transcript = Transcript {
        hello,
        go_ahead: GO_AHEAD,
    };
    let (sent, answered) = session_with(code, Cipher::ChaChaPoly, transcript, b"hello");
    (hex(&sent), hex(&answered))
}

/// A whole session with `cipher` after `transcript`, `payload` from the sender: the bytes
/// each side wrote.
fn session_with(
    code: Option<&str>,
    cipher: Cipher,
    transcript: Transcript<'static>,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = UnixStream::pair().unwrap();
    let (a_log, b_log) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let code = code.map(|c| PairingCode::parse(c).unwrap());
    let receiver = {
        let stream = Tee {
            inner: b,
            written: b_log.clone(),
        };
        let code = code.clone();
        std::thread::spawn(move || {
            let mode = code.as_ref().map_or(Mode::Open, Mode::Code);
            let mut entropy = SeededEntropy::new(b"bob");
            let mut s =
                accept_with(stream, &bob(), mode, cipher, transcript, &mut entropy).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.close().unwrap();
            got
        })
    };
    let mode = code.as_ref().map_or(Mode::Open, Mode::Code);
    let stream = Tee {
        inner: a,
        written: a_log.clone(),
    };
    let mut entropy = SeededEntropy::new(b"alice");
    let mut s = connect_with(stream, &alice(), mode, cipher, transcript, &mut entropy).unwrap();
    s.write_all(payload).unwrap();
    s.close().unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(receiver.join().unwrap(), payload);
    let sent = a_log.lock().unwrap().clone();
    let answered = b_log.lock().unwrap().clone();
    (sent, answered)
}

#[test]
fn golden_open_session() {
    let (sent, answered) = session(None);
    println!("open sent {sent}\nopen answered {answered}");
    assert_eq!(sent, OPEN_SENT);
    assert_eq!(answered, OPEN_ANSWERED);
}

#[test]
fn golden_paired_session() {
    let (sent, answered) = session(Some("0427-otter-maple-drum"));
    println!("paired sent {sent}\npaired answered {answered}");
    assert_eq!(sent, PAIRED_SENT);
    assert_eq!(answered, PAIRED_ANSWERED);
}

/// AES-256-GCM records, several of them (a full one, then the rest at close): the bytes are
/// too many to spell out, so their BLAKE3 hashes stand for them.
#[test]
fn golden_aesgcm_session() {
    let transcript = Transcript {
        hello: HELLO_AESGCM,
        go_ahead: GO_AHEAD_AESGCM,
    };
    let hashes = long_session_hashes(Cipher::AesGcm, transcript);
    assert_eq!(hashes, [AESGCM_SENT_BLAKE3, AESGCM_ANSWERED_BLAKE3]);
}

/// The same with AEGIS-256X4 records (the handshake in AES-256-GCM).
#[test]
fn golden_aegis_session() {
    let transcript = Transcript {
        hello: HELLO_AEGIS,
        go_ahead: GO_AHEAD_AEGIS,
    };
    let hashes = long_session_hashes(Cipher::Aegis, transcript);
    assert_eq!(hashes, [AEGIS_SENT_BLAKE3, AEGIS_ANSWERED_BLAKE3]);
}

/// A session carrying 70 000 bytes with `cipher`: the BLAKE3 of what each side wrote.
fn long_session_hashes(cipher: Cipher, transcript: Transcript<'static>) -> [String; 2] {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (sent, answered) = session_with(None, cipher, transcript, &payload);
    let hashes = [sent, answered].map(|bytes| blake3::hash(&bytes).to_hex().to_string());
    println!(
        "{cipher:?} sent {}\n{cipher:?} answered {}",
        hashes[0], hashes[1]
    );
    hashes
}

/// The prologue exactly as the specification (the module doc of [`super`]) spells it, built
/// here with nothing of the handshake's code: a bare snow responder holding it completes the
/// handshake with Ferry's sender, and one holding the prologue without the transcript
/// (Ferry before the transcript was bound) refuses it.
#[test]
fn the_prologue_is_the_specified_one() {
    let framed = |part: &[u8]| [&(part.len() as u32).to_be_bytes()[..], part].concat();
    let fixed = b"ferry-secure/1 initiator=sender responder=receiver mode=O".to_vec();
    let specified = [fixed.clone(), framed(HELLO_OPEN), framed(GO_AHEAD)].concat();
    let transcript = Transcript {
        hello: HELLO_OPEN,
        go_ahead: GO_AHEAD,
    };
    for (prologue, completes) in [(specified, true), (fixed, false)] {
        let (a, mut b) = UnixStream::pair().unwrap();
        let responder = std::thread::spawn(move || -> Result<Vec<u8>, snow::Error> {
            let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
                .local_private_key(bob().private_key())?
                .psk(3, &[0u8; 32])?
                .prologue(&prologue)?
                .build_responder()?;
            let recv = |b: &mut UnixStream| -> Vec<u8> {
                let mut len = [0u8; 2];
                b.read_exact(&mut len).unwrap();
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                b.read_exact(&mut msg).unwrap();
                msg
            };
            let (mut buf, mut payload) = (vec![0u8; 1024], vec![0u8; 1024]);
            state.read_message(&recv(&mut b), &mut payload)?;
            let n = state.write_message(b"bob", &mut buf)?;
            let framed = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
            b.write_all(&framed).unwrap();
            let n = state.read_message(&recv(&mut b), &mut payload)?;
            Ok(payload[..n].to_vec())
        });
        let mut entropy = SeededEntropy::new(b"alice");
        let sender = connect_with(
            a,
            &alice(),
            Mode::Open,
            Cipher::ChaChaPoly,
            transcript,
            &mut entropy,
        );
        if completes {
            assert_eq!(sender.unwrap().peer().name, "bob");
            assert_eq!(responder.join().unwrap().unwrap(), b"alice");
        } else {
            // Message 1's empty payload is sealed under the prologue already: the responder
            // refuses it, and the sender sees the connection end.
            assert!(responder.join().unwrap().is_err());
            assert!(sender.is_err());
        }
    }
}

#[test]
fn golden_sealed_note() {
    let mut sealer = NoteSealer::new(&alice(), bob().public_key(), 1_700_000_000_000_000).unwrap();
    let datagram = sealer.seal("hello").unwrap();
    println!("note {}", hex(&datagram));
    assert_eq!(hex(&datagram), SEALED_NOTE);
    let mut opener = NoteOpener::new(&bob());
    opener.add_peer(alice().public_key()).unwrap();
    assert_eq!(opener.open(&datagram).unwrap().text, "hello");
}

#[test]
fn golden_identity() {
    let a = alice();
    assert_eq!(hex(a.public_key()), ALICE_PUBLIC);
    assert_eq!(a.device_id(), ALICE_DEVICE_ID);
    assert_eq!(a.fingerprint(), ALICE_FINGERPRINT);
}

const OPEN_SENT: &str = "00301f251fc2990041e2bc3f48845fe5cf117882b8aaec1231b477e9e632f5a949675a751c9fe72b\
    3716303e9dd0cfb0a99500452f83825e51962612da309008359e14c0d9888f6fcc7f0bc4861b8334\
    09ba8ab560c32b7e64d925caef04cb718895dcff1334e4f78f397e96babd640b9f6dd9d72bfb02f4\
    700015b7789659843552b9ffee747a485116b7db071f78bd0010b02d36e217b78a31c7c19ccbe7ea\
    8a8f";
const OPEN_ANSWERED: &str = "0063a42935b9a005e2f7c046fe1ebf32a8e36688b486c00a1bb0d169f6f279b05f7d692c9f53dd4b\
    e29fede0f703d569bb6ad1a9b06df178d658fe9661d5d2b5521213d892269866a82495bb92509af8\
    993b89b132a47117fc6ec1f379fe665b335153c4ca0010c87b89a8491a71a8270c8309f6ce79e2";
const PAIRED_SENT: &str = "002141e5aa42c8abc6d6efecf1b1d7f78a78078de879788b7d4245153ddb9c06fe552e0020086400\
    9ef66f4f873c85082a51e2cb742de5e08a4669e1545a1c32b340850e050030317ecea1f6ed7c1dfb\
    6c3b3a69d145c2587facd1a4cbb37792f815e77d1ca55a667057cf7d86308b883c551efb8c57f400\
    45164247cadb484ffd3b167e472732dc63f883018065387ed6b381eb5b7a68e7d4b18f9a046ed2a2\
    c9ad0ae998a48e695aa23db929bac879aa2ba70365d7d8540b71a136ea8a00155fc3698cc6286c8c\
    48996a50df2486163636fc8a6c0010edccc395dce3f0d11cbdf34ae31225e2";
const PAIRED_ANSWERED: &str = "0041427cd2bc01c76d9b037a20c2b650c8e205a436257431b82c1c3e3007ccf1887c26060e3dcc50\
    74cec4209aa764e98a6b5f260544edaf889be65274c23a54b96026006356cd0c49cdfaaf265e7ab9\
    9140e249f352ac529b1378933e18a7943cc1d64725eaf6cd10bd8aadb8584baaf3a518c5c1ecdea5\
    fce4e907926163ff474835ef2ac668e0bab362940d2545c80dd40980de839d20aa439383f47ad8f8\
    130634c123768d6a001072a047b82746718a7f219f2262d3731d";
const AESGCM_SENT_BLAKE3: &str = "3d0b3812f272fd64634d4ecf78c22ddecdb7d5e8391286c0679409e33d56350d";
const AESGCM_ANSWERED_BLAKE3: &str =
    "ace00901f6d1369158e609b8bef42eead660f103fafdb209ad463eb88587cb24";
const AEGIS_SENT_BLAKE3: &str = "418cdfbf05629e3bbc974e1fe7afea5ca76c8aaa7f6dd7fa31c773a73493c8de";
const AEGIS_ANSWERED_BLAKE3: &str =
    "7a6bfa451dc9add4d9781a798490ed59a7d46af2d25b2843d757aef1f10ed231";
const SEALED_NOTE: &str = "ff464e011f5dd8e7f43978a1fd571738eb302fd500060a24181e400033e400b19089c03f57b2aa62\
    a6ee3a2cf38486987f";
const ALICE_PUBLIC: &str = "c9f94d2590f4901b242caed84898ed6e460d0ed610bfd8442767dcad359a237b";
const ALICE_DEVICE_ID: &str = "1f5dd8e7f43978a1fd571738eb302fd5";
const ALICE_FINGERPRINT: &str = "ferry basket lizard desert tablet radio";
