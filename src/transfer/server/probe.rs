//! The speed test's receiving side (`ferry bench`, the window's "Test speed"): throwaway
//! bytes off the network, hashed as a file's would be and then dropped, followed by a
//! measurement of this machine's disk (an unnamed file in the download folder, written as an
//! upload's file is and synced where uploads are, gone when closed) and hashing, both measured once for all the tests of a minute. It
//! needs the same consent as an upload (`require_encryption` included), holds a connection
//! slot like one and is dropped like one when its bytes trickle; it lasts as long as this
//! side allows (`speed_test_max`), not as long as its sender likes; nothing is ever written
//! under a name.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::connection::{ConnEnd, Connection};
use super::pump::RateFloor;
use crate::events::Refusal;
use crate::protocol::{Chunk, Header, ReceiverMsg, decode_chunk_header, encode_receiver_msg};
use crate::transfer::paced::Paced;
use crate::transfer::{TransferError, read_error, read_prefix, write_all};

/// The most throwaway bytes a speed test may send.
pub const MAX_PROBE_BYTES: u64 = 64 << 30;
/// How much the disk test writes (and syncs), at most, and for how long at most.
const DISK_PROBE_BYTES: u64 = 256 << 20;
const DISK_PROBE_TIME: Duration = Duration::from_secs(3);
/// How long one measurement of the disk and the hashing stands for every speed test after it.
const FIGURES_REUSE: Duration = Duration::from_secs(60);

impl Connection<'_> {
    /// Runs a speed test the sender asked for; the connection ends after it.
    pub(super) fn probe(&mut self, max_bytes: u64) -> Result<(), ConnEnd> {
        let result = self.run_probe(max_bytes);
        // Only a Ferry sender tests, but its session never saw a file (no mode), so the end
        // of the connection would not tell it why: it heard only a broken pipe.
        if let Err(error) = &result {
            let reason = error.to_string();
            self.answer(&ReceiverMsg::Failed { reason });
        }
        result.map_err(ConnEnd::from)
    }

    fn run_probe(&mut self, max_bytes: u64) -> Result<(), TransferError> {
        if max_bytes > MAX_PROBE_BYTES {
            return Err(TransferError::Unexpected(format!(
                "a speed test of {max_bytes} bytes (at most {MAX_PROBE_BYTES})"
            )));
        }
        let header = Header {
            eager: false,
            file_name: "speed test (nothing is saved)".into(),
            file_size: max_bytes,
            msg: String::new(),
            resume_key: None,
        };
        if let Err(refusal) = self.probe_consent(&header)? {
            self.answer(&ReceiverMsg::Decline {
                reason: refusal.to_string(),
                offer_again: false,
            });
            return Ok(());
        }
        write_all(
            &mut self.writer,
            &encode_receiver_msg(&ReceiverMsg::ProbeReady)?,
        )?;
        let idle = self.shared.config.idle_timeout.as_secs();
        let (mut received, mut hasher) = (0u64, blake3::Hasher::new());
        // The test's bytes are data like a file's: a trickle is dropped as an upload's is,
        // or a few such tests would hold every connection slot.
        let mut rate = RateFloor::new(self.shared.config.min_rate, 0);
        // How long the test goes on is this side's to bound, not the sender's to say.
        let max_time = self.shared.config.speed_test_max;
        let deadline = Instant::now() + max_time;
        let too_long = || {
            TransferError::Unexpected(format!(
                "a speed test longer than {} s",
                max_time.as_secs_f64()
            ))
        };
        let mut started = None;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let prefix = read_prefix(&mut self.reader)
                .map_err(|e| read_error(e, idle))?
                .ok_or(TransferError::TruncatedFrame)?;
            let n = match decode_chunk_header(prefix)? {
                Chunk::Cancel => break,
                Chunk::Data(n) => n as u64,
            };
            started.get_or_insert_with(Instant::now);
            if received + n > max_bytes {
                return Err(TransferError::Unexpected(format!(
                    "more speed-test bytes than the {max_bytes} announced"
                )));
            }
            let mut left = n;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let got = match self.reader.read(&mut buf[..want]) {
                    Ok(0) => return Err(TransferError::TruncatedFrame),
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_error(e, idle)),
                };
                hasher.update(&buf[..got]);
                left -= got as u64;
                rate.check(received + n - left)?;
                if Instant::now() > deadline {
                    return Err(too_long());
                }
            }
            received += n;
        }
        let micros = started.map_or(0, |t| t.elapsed().as_micros() as u64);
        let (disk, hash) = self.machine_figures(&buf);
        let result = ReceiverMsg::ProbeResult {
            received,
            micros,
            disk_bytes_per_sec: disk,
            hash_bytes_per_sec: hash,
        };
        log::info!("{}: speed test: {result:?}", self.peer);
        write_all(&mut self.writer, &encode_receiver_msg(&result)?)?;
        Ok(())
    }

    /// The accept policy applies as to an upload (a prompt names it a speed test), and so
    /// does `require_encryption`.
    fn probe_consent(&mut self, header: &Header) -> Result<Result<(), Refusal>, TransferError> {
        if let Some(refusal) = self.refused_by_policy() {
            return Ok(Err(refusal));
        }
        let policy = *super::lock(&self.shared.policy);
        match policy.without_asking(self.trusted()) {
            None => Ok(Err(Refusal::NotTrusted)),
            Some(true) => Ok(Ok(())),
            Some(false) => Ok(match self.ask_user(header, false)? {
                Some(super::Decision::Decline) => Err(Refusal::DeclinedByUser),
                Some(_) => Ok(()),
                None => Err(Refusal::no_answer(self.shared.config.decision_timeout)),
            }),
        }
    }

    /// This machine's disk speed (0: not measured) and hashing speed, in bytes/s, measured by
    /// one speed test at a time and at most once every [`FIGURES_REUSE`]: a test costs its
    /// sender nothing (no bytes at all, if it likes), and each measurement writes and syncs
    /// up to 256 MiB here and hashes 64 MiB held in memory, so the tests close together
    /// share one set of figures.
    fn machine_figures(&self, chunk: &[u8]) -> (u64, u64) {
        let mut last = super::lock(&self.shared.machine_figures);
        if let Some((at, figures)) = *last
            && at.elapsed() < FIGURES_REUSE
        {
            return figures;
        }
        let disk = self.disk_speed(chunk).unwrap_or_else(|e| {
            log::info!("{}: speed test: no disk figure: {e}", self.peer);
            0
        });
        let figures = (disk, crate::transfer::hash_speed());
        *last = Some((Instant::now(), figures));
        figures
    }

    /// Writes up to [`DISK_PROBE_BYTES`] to an unnamed file in the download folder, for at
    /// most [`DISK_PROBE_TIME`], if the disk has room for it, the way an upload's file is
    /// written (see [`Paced`]: moderate pieces, blocks reserved ahead, and where this server
    /// syncs, streamed to disk as it goes and synced at the end), so the figure is what an
    /// upload gets from this disk.
    fn disk_speed(&self, chunk: &[u8]) -> std::io::Result<u64> {
        let downloads = &self.shared.downloads;
        let _held = downloads
            .reserve(DISK_PROBE_BYTES * 2)
            .map_err(|e| std::io::Error::other(format!("no room: {e:?}")))?;
        let mut file = downloads.anonymous_file()?;
        let config = &self.shared.config;
        let mut paced = Paced::new(&mut file, 0, config.landing(), Some(DISK_PROBE_BYTES));
        let start = Instant::now();
        let mut written = 0u64;
        while written < DISK_PROBE_BYTES && start.elapsed() < DISK_PROBE_TIME {
            let n = chunk
                .len()
                .min(usize::try_from(DISK_PROBE_BYTES - written).unwrap_or(usize::MAX));
            paced.write_all(&chunk[..n])?;
            written += n as u64;
        }
        paced.flush()?;
        drop(paced);
        if config.fsync {
            file.sync_data()?;
        }
        let secs = start.elapsed().as_secs_f64().max(1e-6);
        Ok((written as f64 / secs) as u64)
    }
}
