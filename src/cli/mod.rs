//! The headless face: `ferry serve`, `ferry send`, `ferry note`, `ferry listen`, `ferry chat`.
//! It drives the same engines and consumes the same events as the window.
//!
//! Exit codes: 0 success; 1 the operation failed (a file not verified, no reply, a bind
//! error, ...); 2 bad usage (clap's own code).

mod ask;
mod notes;
mod transfer;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::defaults::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_PORT};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "LAN file transfer and quick notes. With no command, opens the window."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Receive uploads (plain and Ferry peers) into a folder.
    Serve(ServeArgs),
    /// Upload files to a server over one connection.
    Send(SendArgs),
    /// Send one UDP note, optionally waiting for a reply.
    Note(NoteArgs),
    /// Print every UDP note received.
    Listen(ListenArgs),
    /// Interactive notes: each stdin line is sent; received notes are printed.
    Chat(ChatArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// TCP port (0 picks a free one and prints it).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Download folder (created if missing) [default: ~/Downloads/Ferry, the window's folder].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Connections served at once; more are refused with a message.
    #[arg(long, default_value_t = crate::defaults::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Drop a peer that stays silent this long.
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,
    /// Connections one address may hold at once (so a few peers cannot take every slot).
    #[arg(long, default_value_t = crate::defaults::DEFAULT_MAX_PER_PEER)]
    pub max_per_peer: usize,
    /// Files one connection may send; more end the connection.
    #[arg(long, default_value_t = crate::defaults::DEFAULT_MAX_FILES_PER_CONNECTION)]
    pub max_files_per_connection: u64,
    /// Ask on the terminal before accepting an upload: each prompt shows its sender and
    /// number N, answered with "y N" or "n N" ("more N" pages through a long list). Plain
    /// senders cannot be asked and are refused; without --ask every upload is accepted,
    /// like the original.
    #[arg(long)]
    pub ask: bool,
    /// Remove kept partial files (`*.ferry.part`) older than this many days, at start and
    /// hourly.
    #[arg(long, default_value_t = crate::defaults::DEFAULT_PARTIAL_MAX_AGE_DAYS)]
    pub partial_max_age_days: u64,
    /// Do not sync received files to disk before reporting them (for benchmarks only: a
    /// power cut may then lose files both sides were told are safe).
    #[arg(long)]
    pub no_fsync: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Receiver as HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// Message attached to every file (the header's `msg`).
    #[arg(long, default_value = "")]
    pub msg: String,
    /// Speak the original protocol to a plain (non-Ferry) server: nothing is verified.
    #[arg(long)]
    pub plain: bool,
    /// Files to send.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NoteArgs {
    /// Peer as HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// Wait up to SECS for a reply and print it; exit 1 if none came.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    /// The note's text.
    pub text: String,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// UDP port to listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Peer as HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// Local UDP port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
}

/// Runs a headless command. Errors are printed by `main`, which maps them to exit code 1.
pub fn run(command: CliCommand) -> anyhow::Result<ExitCode> {
    match command {
        CliCommand::Serve(args) => transfer::serve(args),
        CliCommand::Send(args) => transfer::send(args),
        CliCommand::Note(args) => notes::note(args),
        CliCommand::Listen(args) => notes::listen(args),
        CliCommand::Chat(args) => notes::chat(args),
    }
}
