#!/usr/bin/env bash
# Optional, never run by .ci/run: checks Ferry against a REAL LocalSend (its own CLI and its
# own Rust core's v2 client), in two network namespaces joined by a veth pair, as README.md
# ("Interoperability with LocalSend: how it was checked") describes. Needs root (namespaces),
# iproute2, nftables, python3 with pexpect (the CLI is a terminal UI: it is driven through a
# pty), cargo, and a LocalSend checkout:
#   LOCALSEND_SRC=/path/to/localsend .ci/localsend-interop.sh
# (default: clones https://github.com/localsend/localsend at LOCALSEND_REV into a temp dir).
# Prints PASS/FAIL per check; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY_DIR=$PWD
LOCALSEND_REV=${LOCALSEND_REV:-af0416be50770a97760f7070684bc667b759a15c} # release 1.18.2+64

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
for tool in ip nft python3 cargo cmp; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
python3 -c 'import pexpect' 2>/dev/null || { echo "needs python3 pexpect (apt-get install python3-pexpect)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/ferry-localsend.XXXXXX)
if [ -z "${LOCALSEND_SRC:-}" ]; then
  git clone -q https://github.com/localsend/localsend "$WORK/localsend"
  git -C "$WORK/localsend" checkout -q "$LOCALSEND_REV"
  LOCALSEND_SRC=$WORK/localsend
fi
LS_TARGET=${LS_TARGET:-$WORK/ls-target}
echo "LocalSend: $LOCALSEND_SRC at $(git -C "$LOCALSEND_SRC" log -1 --format='%h %s')"

# A sender made of LocalSend's own core (its v2 client, identity and DTOs): it sends what
# the app sends for a folder and a text message, which the CLI cannot.
cat > "$LOCALSEND_SRC/packages/core/examples/ferry_peer.rs" <<'RUST'
//! ferry_peer send HOST PORT FINGERPRINT NAME=PATH... | text HOST PORT FINGERPRINT TEXT |
//! register HOST PORT. $PIN, if set, goes into prepare-upload's query.
use bytes::Bytes;
use futures_util::StreamExt;
use localsend::crypto::cert::generate_self_signed;
use localsend::http::client::LsHttpClientV2;
use localsend::http::dto_v2::{PrepareUploadRequestDtoV2, RegisterDtoV2};
use localsend::model::discovery::{DeviceType, ProtocolType, PROTOCOL_VERSION_V2};
use localsend::model::transfer::{FileContent, FileDto};
use std::collections::HashMap;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cert = generate_self_signed()?;
    let info = RegisterDtoV2 {
        alias: "LocalSend core peer".to_string(),
        version: PROTOCOL_VERSION_V2.to_string(),
        device_model: Some("CLI".to_string()),
        device_type: Some(DeviceType::Headless),
        fingerprint: cert.fingerprint.clone(),
        port: 53317,
        protocol: ProtocolType::Https,
        download: false,
    };
    let (mode, host) = (args[0].as_str(), args[1].clone());
    let port: u16 = args[2].parse()?;
    if mode == "register" {
        let client =
            LsHttpClientV2::try_new(&cert.private_key_pem, &cert.certificate_pem, None, None)?;
        let answer = client.register(ProtocolType::Https, &host, port, info).await?;
        println!("register answer: {} certificate {:?}",
            serde_json::to_string(&answer.body)?, answer.cert_fingerprint);
        return Ok(());
    }
    let client = LsHttpClientV2::try_new(
        &cert.private_key_pem, &cert.certificate_pem, Some(args[3].clone()), None)?;
    let pin = std::env::var("PIN").ok();
    let (mut files, mut paths) = (HashMap::new(), HashMap::new());
    let mut add = |name: String, size: u64, file_type: &str, preview: Option<String>| {
        let id = uuid::Uuid::new_v4().to_string();
        files.insert(id.clone(), FileDto { id: id.clone(), file_name: name, size,
            file_type: file_type.to_string(), sha256: None, preview, metadata: None });
        id
    };
    if mode == "text" {
        let text = args[4].clone();
        add(format!("{}.txt", uuid::Uuid::new_v4()), text.len() as u64, "text/plain", Some(text));
    } else {
        for spec in &args[4..] {
            let (name, path) = spec.split_once('=').expect("NAME=PATH");
            let id = add(name.to_string(), std::fs::metadata(path)?.len(),
                "application/octet-stream", None);
            paths.insert(id, std::path::PathBuf::from(path));
        }
    }
    let payload = PrepareUploadRequestDtoV2 { info, files: files.clone() };
    let prepared = match client.prepare_upload(ProtocolType::Https, &host, port, None, payload,
        pin.as_deref(), CancellationToken::new()).await {
        Ok(p) => p,
        Err(e) => { println!("prepare-upload failed: {e}"); std::process::exit(2) }
    };
    println!("prepare-upload: HTTP {}", prepared.status_code);
    let Some(response) = prepared.response else { return Ok(()) };
    for (file_id, token) in &response.files {
        let stream = ReceiverStream::new(FileContent::Path(paths[file_id].clone()).into_receiver())
            .map(Ok::<Bytes, anyhow::Error>);
        let body = localsend::reqwest::Body::wrap_stream(stream);
        if let Err(e) = client.upload(ProtocolType::Https, &host, port, None,
            &response.session_id, file_id, token, body, CancellationToken::new()).await {
            println!("upload {} failed: {e}", files[file_id].file_name);
            std::process::exit(3);
        }
        println!("uploaded {}", files[file_id].file_name);
    }
    Ok(())
}
RUST

# LocalSend pins a toolchain it may not have here; any recent stable builds it.
echo "building LocalSend's CLI and core (into $LS_TARGET) and Ferry..."
(cd "$LOCALSEND_SRC" && export RUSTUP_TOOLCHAIN=${LS_TOOLCHAIN:-stable} CARGO_TARGET_DIR=$LS_TARGET &&
  cargo build --quiet --locked -p localsend-cli &&
  cargo build --quiet --locked -p localsend --features full --example ferry_peer)
cargo build --quiet --locked
LSCLI=$LS_TARGET/debug/localsend-cli
PEER=$LS_TARGET/debug/examples/ferry_peer
FERRY=$FERRY_DIR/target/debug/ferry

# The LocalSend CLI through a pty: each step is "REGEX=>KEYS" (wait, then type), "sleep:S"
# or "send:KEYS"; what it showed goes (ANSI stripped) to the log.
cat > "$WORK/drive.py" <<'PY'
import os, re, sys, time, pexpect
log, steps = open(sys.argv[1], "w"), sys.argv[2:]
class Strip:
    def write(self, s): log.write(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r", "", s)); log.flush()
    def flush(self): log.flush()
child = pexpect.spawn("ip", ["netns", "exec", "fls-l", os.environ["LSCLI"]] + os.environ["LSARGS"].split("|"),
                      encoding="utf-8", codec_errors="replace", dimensions=(50, 200))
child.logfile_read = Strip()
for step in steps:
    if step.startswith("sleep:"): time.sleep(float(step[6:])); continue
    if step.startswith("send:"): child.send(step[5:]); continue
    pattern, keys = step.split("=>", 1)
    try:
        child.expect(pattern, timeout=60)
    except (pexpect.TIMEOUT, pexpect.EOF):
        log.write(f"\n[drive.py] never saw {pattern!r}\n"); break
    time.sleep(0.3); child.send(keys)
time.sleep(float(os.environ.get("LINGER", "3")))
child.sendcontrol("c"); time.sleep(0.3); child.sendcontrol("c"); child.close(force=True)
PY

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del fls-f 2>/dev/null || true
  ip netns del fls-l 2>/dev/null || true
}
trap cleanup EXIT
ip netns add fls-f
ip netns add fls-l
ip link add fls-veth-f type veth peer name fls-veth-l
ip link set fls-veth-f netns fls-f
ip link set fls-veth-l netns fls-l
ip -n fls-f addr add 10.77.0.1/24 dev fls-veth-f
ip -n fls-l addr add 10.77.0.2/24 dev fls-veth-l
for ns in fls-f fls-l; do ip -n $ns link set lo up; done
ip -n fls-f link set fls-veth-f up
ip -n fls-l link set fls-veth-l up

failed=0
check() { # NAME, then a command that must succeed
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi
}
F() { ip netns exec fls-f env HOME="$WORK/ferry-home" XDG_CONFIG_HOME="$WORK/ferry-home/.config" "$FERRY" "$@"; }

cd "$WORK"
mkdir -p src/album/2024 ferry-in ls-in ls-home ferry-home
head -c 3000000 /dev/urandom > src/big.bin
echo "你好，LocalSend" > "src/中文文件名.txt"
head -c 5000 /dev/urandom > src/album/2024/a.jpg
echo hi > "src/album/说明.txt"
export LSCLI
LS_ENV=(env HOME="$WORK/ls-home" XDG_CONFIG_HOME="$WORK/ls-home/.config")

serve() { # extra ferry serve arguments
  # Not through F: `ip netns exec` and `env` exec, so $! is ferry itself (killed by PID).
  ip netns exec fls-f env HOME="$WORK/ferry-home" XDG_CONFIG_HOME="$WORK/ferry-home/.config" \
    "$FERRY" serve --dir "$WORK/ferry-in" --port 8080 --name FerryBox --interface fls-veth-f "$@" \
    > "$WORK/serve.log" 2>&1 &
  SERVE=$!; PIDS+=("$SERVE")
  for _ in $(seq 100); do grep -q "LocalSend receiving is on" serve.log 2>/dev/null && break; sleep 0.1; done
  FERRY_FP=$(grep -o 'fingerprint [0-9A-F]\{64\}' serve.log | tail -1 | cut -d' ' -f2)
}
serve
echo "ferry serve: LocalSend fingerprint $FERRY_FP"

# 1. LocalSend's CLI receiving: it must list FerryBox, then take two sends and refuse one.
LSARGS="--alias|LS-CLI|--destination|$WORK/ls-in" LINGER=5 "${LS_ENV[@]}" \
  python3 drive.py ls-recv.log "FerryBox=>" "Accept\?=>y" "Accept\?=>n" "Accept\?=>y" &
DRIVER=$!; PIDS+=("$DRIVER")
for _ in $(seq 100); do grep -q "FerryBox" ls-recv.log 2>/dev/null && break; sleep 0.1; done
check "LocalSend CLI discovers ferry serve (Ferry answers its announcement with /register)" grep -q "FerryBox (10.77.0.1)" ls-recv.log
F peers --wait 5 --interface fls-veth-f > peers.log 2>&1 || true
check "ferry peers --wait 5 lists the LocalSend CLI with the word localsend" grep -q "^LS-CLI  10.77.0.2:53317  localsend headless" peers.log
F send --to LS-CLI src/big.bin "src/中文文件名.txt" > send1.log 2>&1 || true
check "ferry send --to LS-CLI: a file and a Chinese file name arrive whole" \
  sh -c 'cmp ls-in/big.bin src/big.bin && cmp "ls-in/中文文件名.txt" "src/中文文件名.txt"'
F send --to LS-CLI src/album/2024/a.jpg > send2.log 2>&1 || true
check "LocalSend declining: ferry send says 403 declined and exits 1" grep -q "declined by the device (403)" send2.log
# No multicast for the LocalSend side from here: only a probe can find it.
NFT=(ip netns exec fls-l nft)
"${NFT[@]}" add table inet ferry_nomc
"${NFT[@]}" 'add chain inet ferry_nomc out { type filter hook output priority 0; }'
"${NFT[@]}" 'add chain inet ferry_nomc in { type filter hook input priority 0; }'
"${NFT[@]}" add rule inet ferry_nomc out ip daddr 224.0.0.0/4 drop
"${NFT[@]}" add rule inet ferry_nomc in ip daddr 224.0.0.0/4 drop
F peers --wait 3 --interface fls-veth-f --localsend-probe 10.77.0.2 > peers2.log 2>&1 || true
check "without multicast, --localsend-probe finds it (POST /register)" grep -q "^LS-CLI .*localsend headless  probe" peers2.log
F send --to LS-CLI --localsend-probe 10.77.0.2 "src/album/说明.txt" > send3.log 2>&1 || true
check "ferry send --to LS-CLI --localsend-probe delivers" cmp "ls-in/说明.txt" "src/album/说明.txt"
ip netns exec fls-l nft delete table inet ferry_nomc

# 2. LocalSend's CLI sending two files to ferry serve (the device list, Enter).
wait "$DRIVER" || true # the receiving CLI ends 5 s after its last answer (same port)
LSARGS="--alias|LS-CLI|--destination|$WORK/ls-in|-f|$WORK/src/big.bin|-f|$WORK/src/中文文件名.txt" LINGER=8 \
  "${LS_ENV[@]}" python3 drive.py ls-send.log "FerryBox=>" "sleep:0.5" $'send:\r' || true
check "LocalSend CLI -f: a file and a Chinese file name arrive in ferry serve's folder" \
  sh -c 'cmp ferry-in/big.bin src/big.bin && cmp "ferry-in/中文文件名.txt" "src/中文文件名.txt"'
check "ferry serve names the LocalSend device and its certificate" grep -q 'LocalSend device "LS-CLI" (headless), certificate fingerprint' serve.log

# 3. LocalSend's core client: a folder, a text message, register.
P() { ip netns exec fls-l "$PEER" "$@"; }
P send 10.77.0.1 53317 "$FERRY_FP" "album/2024/a.jpg=src/album/2024/a.jpg" "album/说明.txt=src/album/说明.txt" > peer1.log 2>&1 || true
check "a folder (fileName with /) arrives, flattened to safe names" \
  sh -c 'cmp ferry-in/album_2024_a.jpg src/album/2024/a.jpg && cmp "ferry-in/album_说明.txt" "src/album/说明.txt"'
P text 10.77.0.1 53317 "$FERRY_FP" "Hello 你好" > peer2.log 2>&1 || true
check "a text message is answered 204 and becomes a note" sh -c 'grep -q "HTTP 204" peer2.log && grep -q "): Hello 你好" serve.log'
P register 10.77.0.1 53317 > peer3.log 2>&1 || true
check "register is answered, the certificate is the announced fingerprint" grep -q "Some(\"$FERRY_FP\")" peer3.log
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
serve --localsend-pin "密码 1"
PIN="密码 1" P send 10.77.0.1 53317 "$FERRY_FP" "pin.dat=src/album/说明.txt" > peer4.log 2>&1 || true
check "a PIN with a space and Chinese (percent-encoded by LocalSend) is accepted" grep -q "uploaded pin.dat" peer4.log
PIN="wrong" P send 10.77.0.1 53317 "$FERRY_FP" "pin2.dat=src/album/说明.txt" > peer5.log 2>&1 || true
check "a wrong PIN is 401" grep -q "401" peer5.log

echo "logs in $WORK"
exit $failed
