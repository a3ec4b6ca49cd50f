//! Golden vectors: fixed keys and fixed randomness give fixed bytes on the wire. If one of
//! these changes, the wire format changed: every deployed Ferry would stop talking to the new
//! one. Update them only together with the specification in the module doc.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use super::handshake::{Cipher, Mode, accept_with, connect_with};
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

/// Runs a whole session (handshake, "hello" from the sender, close both ways) with fixed
/// randomness over a socketpair; returns the hex of what each side wrote.
fn session(code: Option<&str>) -> (String, String) {
    let (sent, answered) = session_with(code, Cipher::ChaChaPoly, b"hello");
    (hex(&sent), hex(&answered))
}

/// A whole session with `cipher`, `payload` from the sender: the bytes each side wrote.
fn session_with(code: Option<&str>, cipher: Cipher, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
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
            let mut s = accept_with(stream, &bob(), mode, cipher, &mut entropy).unwrap();
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
    let mut s = connect_with(stream, &alice(), mode, cipher, &mut entropy).unwrap();
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
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (sent, answered) = session_with(None, Cipher::AesGcm, &payload);
    let (sent, answered) = (blake3::hash(&sent), blake3::hash(&answered));
    println!("aesgcm sent {sent}\naesgcm answered {answered}");
    assert_eq!(sent.to_hex().as_str(), AESGCM_SENT_BLAKE3);
    assert_eq!(answered.to_hex().as_str(), AESGCM_ANSWERED_BLAKE3);
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

const OPEN_SENT: &str = "00301f251fc2990041e2bc3f48845fe5cf117882b8aaec1231b477e9e632f5a94967dc864d245f43\
    2249c7a46d9796d84c4400452f83825e51962612da309008359e14c0d9888f6fcc7f0bc4861b8334\
    09ba8ab5612c1cfefdcb2b5cd2d218c2bdcd7d371334e4f78f9a5df59823473cc13623ec0e442366\
    e70015b7789659843552b9ffee747a485116b7db071f78bd0010b02d36e217b78a31c7c19ccbe7ea\
    8a8f";
const OPEN_ANSWERED: &str = "0063a42935b9a005e2f7c046fe1ebf32a8e36688b486c00a1bb0d169f6f279b05f7d692c9f53dd4b\
    e29fede0f703d569bb6ad1a9b06df178d658fe9661d5d2b55212cda002a0a4785de5fdda038fdd65\
    e5dc89b1327c2b7fe651ba69a7685f4a448322c8cd0010c87b89a8491a71a8270c8309f6ce79e2";
const PAIRED_SENT: &str = "002141e5aa42c8abc6d6efecf1b1d7f78a78078de879788b7d4245153ddb9c06fe552e0020086400\
    9ef66f4f873c85082a51e2cb742de5e08a4669e1545a1c32b340850e050030317ecea1f6ed7c1dfb\
    6c3b3a69d145c2587facd1a4cbb37792f815e77d1ca55a4f34b04ab165a8902506cf96c112078700\
    45164247cadb484ffd3b167e472732dc63f883018065387ed6b381eb5b7a68e7d4b413a0b0163bac\
    70263a5137944fc625a23db929ba1c92743d8c38a75b2664c48912e84f9600155fc3698cc6286c8c\
    48996a50df2486163636fc8a6c0010edccc395dce3f0d11cbdf34ae31225e2";
const PAIRED_ANSWERED: &str = "0041427cd2bc01c76d9b037a20c2b650c8e205a436257431b82c1c3e3007ccf1887c26060e3dcc50\
    74cec4209aa764e98a6b5f260544edaf889be65274c23a54b96026006356cd0c49cdfaaf265e7ab9\
    9140e249f352ac529b1378933e18a7943cc1d64725eaf6cd10bd8aadb8584baaf3a518c5c1ecdea5\
    fce4e907926163ff474835ef2aa7b9bac86060565a5b49174503358c7d839d20d320435f8b26425f\
    e90ac23819d9eecd001072a047b82746718a7f219f2262d3731d";
const AESGCM_SENT_BLAKE3: &str = "ddf8f9f86d36767854f2a36271d5b93ace95526f856990af5a00b285d2a38be9";
const AESGCM_ANSWERED_BLAKE3: &str =
    "ad2576345db6980628c3553db47ffc2cd8ff20324417ceaaad481d5d4d7d13f0";
const SEALED_NOTE: &str = "ff464e011f5dd8e7f43978a1fd571738eb302fd500060a24181e400033e400b19089c03f57b2aa62\
    a6ee3a2cf38486987f";
const ALICE_PUBLIC: &str = "c9f94d2590f4901b242caed84898ed6e460d0ed610bfd8442767dcad359a237b";
const ALICE_DEVICE_ID: &str = "1f5dd8e7f43978a1fd571738eb302fd5";
const ALICE_FINGERPRINT: &str = "ferry basket lizard desert tablet radio";
