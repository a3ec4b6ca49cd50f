//! The speed test's sending side (`ferry bench --to`, the window's "Test speed"): a Ferry
//! connection like an upload's (encrypted when it would be, through the receiver's accept
//! policy and limits), throwaway bytes for a few seconds, then the receiver's figures and
//! this machine's own, and which of them limits a real transfer.

use std::time::{Duration, Instant};

use super::answers::{self, Heard};
use super::{SendError, SendOptions, connect, establish};
pub use crate::events::{Bottleneck, ProbeReport};
use crate::protocol::{CHUNK_LEN, ReceiverMsg, SenderMsg, encode_chunk_header, encode_sender_msg};

/// The most bytes a speed test announces (the receiver's bound is larger).
const MAX_BYTES: u64 = 32 << 30;
/// How long to wait for the receiver's figures after the data (its disk test takes a few
/// seconds).
const RESULT_WAIT: Duration = Duration::from_secs(30);
/// How long a write's failure waits for the receiver's reason, which it sends as it ends.
const LAST_WORD_WAIT: Duration = Duration::from_secs(1);

/// Why a speed test could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Connect(#[from] SendError),
    #[error("the receiver declined the speed test: {0}")]
    Declined(String),
    #[error("speed test failed: {0}")]
    Failed(String),
}

/// Runs a speed test against `opts.to` for about `duration`.
pub fn probe(opts: &SendOptions, duration: Duration) -> Result<ProbeReport, ProbeError> {
    let stream = connect(opts).map_err(|(e, _)| e)?;
    let (mut out, incoming, _peer, security) = establish(opts, stream).map_err(|(e, _)| e)?;
    let failed = |what: String| ProbeError::Failed(what);
    let incoming = incoming.ok_or_else(|| failed("a plain connection cannot test".into()))?;
    let answers = answers::spawn_reader(incoming).map_err(|e| failed(e.to_string()))?;
    let frame = encode_sender_msg(&SenderMsg::Probe {
        max_bytes: MAX_BYTES,
    })
    .map_err(|e| failed(e.to_string()))?;
    std::io::Write::write_all(&mut out, &frame).map_err(|e| failed(e.to_string()))?;
    // The go-ahead (a receiver that asks its user says `waiting` first).
    let mut deadline = Instant::now() + opts.answer_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match answers.recv_timeout(left) {
            Ok(Heard::Msg(ReceiverMsg::ProbeReady)) => break,
            Ok(Heard::Msg(ReceiverMsg::Waiting { .. })) => {
                deadline = Instant::now() + opts.decision_timeout;
            }
            Ok(Heard::Msg(ReceiverMsg::Decline { reason, .. })) => {
                return Err(ProbeError::Declined(reason));
            }
            Ok(Heard::Msg(other)) => return Err(failed(format!("unexpected {other:?}"))),
            Ok(Heard::Closed(reason)) => return Err(failed(reason)),
            Err(_) => return Err(failed("no answer from the receiver".into())),
        }
    }
    // Incompressible bytes, made once (an encrypted stream seals them in place, so each
    // chunk sends the last one's ciphertext: incompressible too).
    let mut data = vec![0u8; CHUNK_LEN];
    blake3::Hasher::new()
        .update(b"ferry speed test")
        .finalize_xof()
        .fill(&mut data);
    let header = encode_chunk_header(data.len());
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed() < duration && sent + data.len() as u64 <= MAX_BYTES {
        match answers.try_recv() {
            Ok(Heard::Msg(msg)) => return Err(stopped(msg)),
            Ok(Heard::Closed(reason)) => return Err(failed(reason)),
            Err(_) => {}
        }
        out.send_chunk(Some(&header), &mut data)
            .map_err(|e| lost(&answers, e))?;
        sent += data.len() as u64;
    }
    out.send_chunk(Some(&encode_chunk_header(0)), &mut [])
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| lost(&answers, e))?;
    let sender_hash = crate::transfer::hash_speed();
    let result = match answers.recv_timeout(opts.answer_timeout + RESULT_WAIT) {
        Ok(Heard::Msg(ReceiverMsg::ProbeResult {
            received,
            micros,
            disk_bytes_per_sec,
            hash_bytes_per_sec,
        })) => (received, micros, disk_bytes_per_sec, hash_bytes_per_sec),
        Ok(Heard::Msg(other)) => return Err(failed(format!("unexpected {other:?}"))),
        Ok(Heard::Closed(reason)) => return Err(failed(reason)),
        Err(_) => return Err(failed("no figures from the receiver".into())),
    };
    out.finish();
    let (received, micros, receiver_disk, receiver_hash) = result;
    if received != sent {
        return Err(failed(format!(
            "the receiver counted {received} bytes of the {sent} sent"
        )));
    }
    let secs = micros as f64 / 1e6;
    Ok(ProbeReport {
        security,
        bytes: received,
        secs,
        network: (received as f64 / secs.max(1e-6)) as u64,
        receiver_disk,
        receiver_hash,
        sender_hash,
    })
}

/// The receiver ended the test while data went out: what it said.
fn stopped(msg: ReceiverMsg) -> ProbeError {
    match msg {
        ReceiverMsg::Failed { reason } => {
            ProbeError::Failed(format!("the receiver stopped: {reason}"))
        }
        msg => ProbeError::Failed(format!("the receiver stopped: {msg:?}")),
    }
}

/// A write failed: the receiver usually said why it ended the test (it ran longer than the
/// receiver allows, its bytes came too slowly, ...) just before it closed, which says more
/// than the write's own "broken pipe"; that is waited for a little.
fn lost(answers: &crossbeam_channel::Receiver<Heard>, e: std::io::Error) -> ProbeError {
    match answers.recv_timeout(LAST_WORD_WAIT) {
        Ok(Heard::Msg(msg)) => stopped(msg),
        _ => ProbeError::Failed(format!("connection lost: {e}")),
    }
}
