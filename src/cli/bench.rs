//! `ferry bench --to`: the speed test from the command line (issue 14).

use std::process::ExitCode;
use std::time::Duration;

use super::ask::security_words;
use super::destination::destination_or_device;
use super::transfer::keyring;
use crate::transfer::SendOptions;

/// `ferry bench --to`: the speed test, its figures as lines with bars, and the bottleneck.
pub fn bench(args: super::BenchArgs) -> anyhow::Result<ExitCode> {
    let (to, expect_key) = destination_or_device(&args.to, &args.interfaces.choice())?;
    let mut opts = SendOptions::new(to.clone());
    if !args.no_encryption {
        opts.keyring = keyring();
        opts.expect_key = expect_key;
    }
    let secs = args.secs;
    tell!("testing the speed to {to} for {secs} s (nothing is saved there)...");
    let report = crate::transfer::probe(&opts, Duration::from_secs_f64(secs))?;
    say!(
        "speed test with {to}: {} MB in {:.1} s, {}",
        report.bytes / 1_000_000,
        report.secs,
        security_words(&report.security)
    );
    let rows = [
        ("network", report.network),
        ("receiver's disk", report.receiver_disk),
        ("receiver's hashing", report.receiver_hash),
        ("sender's hashing", report.sender_hash),
    ];
    let top = rows.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1);
    for (label, speed) in rows {
        if speed == 0 {
            say!("{label:<19} not measured");
            continue;
        }
        let bar = "#".repeat(((speed as f64 / top as f64) * 30.0).round().max(1.0) as usize);
        say!("{label:<19} {:>7} MB/s  {bar}", speed / 1_000_000);
    }
    let (limit, speed) = report.bottleneck();
    say!(
        "limited by: {limit} (a transfer can go at about {} MB/s)",
        speed / 1_000_000
    );
    Ok(ExitCode::SUCCESS)
}
