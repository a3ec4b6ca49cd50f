//! The headless face: `ferry serve`, `ferry send`, `ferry note`, `ferry listen`, `ferry chat`,
//! `ferry peers`, `ferry doctor`, `ferry bench`, plus `ferry completions` and `ferry manpage`,
//! generated from these same clap definitions.
//! It drives the same drivers as the window (directly, without the window's
//! [`crate::worker`] thread) and consumes the same events.
//!
//! Exit codes: 0 success; 1 the operation failed (a file not verified, no reply, a bind
//! error, ...); 2 bad usage (clap's own code).

/// `println!` for the CLI's stdout lines, safe when the reader has gone (see [`out`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&format!($($arg)*))
    };
}

/// `eprintln!` for the CLI's stderr lines, safe when the reader has gone (see [`out`]).
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::cli::out::tell_line(&format!($($arg)*))
    };
}

mod ask;
mod bars;
mod bench;
mod destination;
mod discover;
mod docs;
mod localsend;
mod notes;
mod out;
mod pairing;
mod report;
mod transfer;

pub use report::{error_report, resolve_destination};

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::defaults::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_PORT};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "LAN file transfer and quick notes. With no command, opens the window.",
    long_about = "LAN file transfer and quick notes, wire-compatible with the classic Python \
                  upload/chat example.\n\n\
                  With no command, opens the window. The commands run headless: `serve` \
                  receives uploads into a folder, `send` uploads files and folders, `note`, \
                  `listen` and `chat` exchange UDP notes, `peers` lists trusted devices and \
                  the devices on the LAN, `doctor` says why a device is not found, and \
                  `bench` tests the speed to a receiver.\n\n\
                  Exit codes: 0 success; 1 the operation failed (a file not verified, no \
                  reply, a port in use, ...); 2 bad usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// The window's discovery interfaces (`ferry --only-interface eth0`); given before a
    /// command, that command's (see [`Cli::parse_args`]).
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
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
    /// Print a shell completion script.
    ///
    /// For example `ferry completions bash > ~/.local/share/bash-completion/completions/ferry`
    /// (the .deb installs them for bash, zsh and fish).
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    ///
    /// For example `ferry manpage > ferry.1 && man ./ferry.1` (the .deb installs it).
    Manpage,
    /// Trusted devices; with --wait, the devices found on the LAN.
    Peers(PeersArgs),
    /// Why a device is not found: interfaces, beacons heard, and a typed address checked.
    Doctor(DoctorArgs),
    /// Speed test with a Ferry receiver: the network, its disk and both sides' hashing, and
    /// which of them limits a real transfer. Nothing is saved on the receiver.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Receiver as HOST:PORT (HOST alone: port 8080), or a device's name.
    #[arg(long, value_name = "HOST:PORT|NAME")]
    pub to: String,
    /// How long to send throwaway bytes, from 0.5 to 60 seconds.
    #[arg(long, default_value_t = 3.0, value_parser = bench_secs)]
    pub secs: f64,
    /// Test without encryption.
    #[arg(long)]
    pub no_encryption: bool,
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
}

/// `bench --secs`: a number of seconds from 0.5 to 60 (shorter measures little, longer only
/// keeps the receiver busy).
fn bench_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.5..=60.0).contains(&secs) => Ok(secs),
        _ => Err("expected a number of seconds from 0.5 to 60".to_owned()),
    }
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Look for devices on the LAN for SECS seconds, then print one line per device: name,
    /// ADDRESS:PORT, trusted or not, how found, state.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
    /// With --wait: also ask this address for its Ferry beacon by unicast (repeatable), for a
    /// network that drops multicast and broadcast; asked, and its answer heard, even through
    /// an interface --only-interface leaves out, as a typed address would be.
    #[arg(long, value_name = "HOST", requires = "wait")]
    pub probe: Vec<String>,
    /// With --wait: also ask this address whether it is a LocalSend device (`POST
    /// /register`; repeatable; port 53317 unless given).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub localsend_probe: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[command(subcommand)]
    pub action: Option<PeersAction>,
}

#[derive(Debug, Subcommand)]
pub enum PeersAction {
    /// Forget a trusted device: it needs a pairing code (or a prompt) again.
    Forget {
        /// The trusted device's name, as `ferry peers` lists it (or its fingerprint).
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A device's ADDRESS or ADDRESS:PORT to check (port 8080 unless given).
    pub address: Option<String>,
    /// Listen for beacons this many seconds first.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub wait: f64,
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
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
    /// Accept only trusted devices (paired with a code); every other offer is refused. With
    /// --ask, trusted devices are accepted without asking and the others are asked.
    #[arg(long)]
    pub trusted_only: bool,
    /// Refuse plain (original-protocol) senders: they cannot encrypt.
    #[arg(long)]
    pub require_encryption: bool,
    /// Show a pairing code (line "pairing code: CODE"): a sender that types it
    /// (`ferry send --code CODE`) and this device trust each other from then on. The code
    /// lasts 10 minutes and 3 tries.
    #[arg(long)]
    pub pair: bool,
    /// With --pair: the code lasts SECS instead of 10 minutes (for tests).
    #[arg(long, value_name = "SECS", requires = "pair", hide = true)]
    pub pair_secs: Option<u64>,
    /// Remove kept partial files (`*.ferry.part`) older than this many days, at start and
    /// hourly.
    #[arg(long, default_value_t = crate::defaults::DEFAULT_PARTIAL_MAX_AGE_DAYS)]
    pub partial_max_age_days: u64,
    /// Do not sync received files to disk before reporting them (for benchmarks only: a
    /// power cut may then lose files both sides were told are safe).
    #[arg(long)]
    pub no_fsync: bool,
    /// Write every received file through the page cache. By default a large file (4 MiB
    /// and up) that will be synced goes straight to the disk (O_DIRECT) where the file
    /// system is a local one known to take that well (ext4, XFS, Btrfs, F2FS, FAT, ...);
    /// use this where that turns out slower.
    #[arg(long)]
    pub no_direct_io: bool,
    /// This server's name: announced on the LAN, to LocalSend apps, and told to Ferry senders
    /// [default: the device name, normally the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Do not announce on the LAN (typed addresses keep working).
    #[arg(long)]
    pub no_discovery: bool,
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
    /// Do not receive from LocalSend apps (HTTPS on --localsend-port, announced on
    /// LocalSend's multicast group unless --no-discovery).
    #[arg(long)]
    pub no_localsend: bool,
    /// TCP port for LocalSend receiving (LocalSend's default; 0 picks a free one).
    #[arg(long, default_value_t = crate::localsend::LOCALSEND_PORT)]
    pub localsend_port: u16,
    /// A PIN LocalSend senders must type (3 wrong tries lock an address out for 5 minutes).
    #[arg(long, value_name = "PIN")]
    pub localsend_pin: Option<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// How `--to NAME` finds a LocalSend device of that name, and its PIN (`ferry send`, `ferry
/// note`).
#[derive(Debug, Args)]
pub struct LocalSendToArgs {
    /// The PIN a LocalSend device asks for (sending to a LocalSend device; a note goes as its
    /// text message).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    /// Also ask this address whether it is a LocalSend device (`POST /register`), for one
    /// that LocalSend's multicast does not reach (repeatable; port 53317 unless given).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub localsend_probe: Vec<String>,
    /// How long to look for a LocalSend device named by --to.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub localsend_wait: f64,
    /// The LocalSend device named by --to whose fingerprint (as `ferry peers` shows it; for
    /// one with encryption off, the id it claims) begins with this (at least 8 characters,
    /// any case): needed when several devices take that name.
    #[arg(long, value_name = "FINGERPRINT")]
    pub localsend_fingerprint: Option<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[command(flatten)]
    pub interfaces: InterfaceArgs,
}

/// Which network interfaces discovery uses: Ferry's beacons and mDNS, LocalSend's multicast
/// and its sweep (`ferry serve`, `peers`, `doctor`, `send --to NAME`, `note --to NAME`).
#[derive(Debug, Clone, Default, Args)]
pub struct InterfaceArgs {
    /// Also use this interface, even if it looks virtual (repeatable; "lo" for loopback).
    #[arg(long = "interface", value_name = "NAME", value_parser = interface_name)]
    pub interface: Vec<String>,
    /// Use only this interface to announce this device and look for others (repeatable, or
    /// names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE):
    /// nothing of discovery goes out on another, LocalSend's multicast and sweep included,
    /// and what is announced there is not heard. Typed addresses work everywhere.
    #[arg(
        long = "only-interface",
        value_name = "NAME",
        env = "FERRY_ONLY_INTERFACE",
        hide_env_values = true,
        value_delimiter = ',',
        value_parser = interface_name
    )]
    pub only_interface: Vec<String>,
}

/// An interface's name as typed, trimmed. A blank one (`--only-interface ""`, a script's
/// unset variable, a stray comma) is refused: read as no name at all it would have meant
/// every interface, the opposite of what `--only-interface` asks.
fn interface_name(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err(
            "expected an interface's name (`ip link` lists them; \"lo\" for loopback)".to_owned(),
        ),
        name => Ok(name.to_owned()),
    }
}

/// `cmd`, with a blank FERRY_ONLY_INTERFACE (nothing but spaces and commas: `"$A,$B"` with
/// both unset) taken as unset, as an empty variable usually is, not as the blank name that
/// `--only-interface ""` is refused for (in words naming the flag, not the variable).
fn blank_env_unset(cmd: clap::Command) -> clap::Command {
    fn unset(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|arg| match arg.get_id() == "only_interface" {
            true => arg.env(None),
            false => arg,
        })
        .mut_subcommands(unset)
    }
    let blank = std::env::var_os("FERRY_ONLY_INTERFACE").is_some_and(|value| {
        value
            .to_string_lossy()
            .split(',')
            .all(|name| name.trim().is_empty())
    });
    match blank {
        true => unset(cmd),
        false => cmd,
    }
}

impl Cli {
    /// The command line as [`Parser::parse`] reads it, except that interface flags given
    /// before a command (`ferry --only-interface eth0 serve`) are that command's, as if given
    /// after it: added to its `--interface` names, and its `--only-interface` unless it has
    /// its own on the line (one from FERRY_ONLY_INTERFACE gives way, as a flag's value does
    /// everywhere). Before a command that does no discovery they are refused (exit 2).
    pub fn parse_args() -> Cli {
        use clap::parser::ValueSource;
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = blank_env_unset(Cli::command()).get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let typed =
            |m: &clap::ArgMatches, id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        let (typed_also, typed_only) = (
            typed(&matches, "interface"),
            typed(&matches, "only_interface"),
        );
        if !typed_also && !typed_only {
            return cli;
        }
        let top = cli.interfaces.clone();
        match (cli.command.as_mut(), matches.subcommand()) {
            (None, _) => {}
            (Some(command), Some((name, sub))) => {
                let Some(own) = command.interfaces_mut() else {
                    Cli::command()
                        .error(
                            clap::error::ErrorKind::ArgumentConflict,
                            format!(
                                "--interface and --only-interface go with the window, serve, \
                                 send, note, peers, doctor and bench, not with {name}"
                            ),
                        )
                        .exit()
                };
                own.interface.extend(top.interface);
                if typed_only && !typed(sub, "only_interface") {
                    own.only_interface = top.only_interface;
                }
            }
            // A command always has its matches; nothing to move otherwise.
            (Some(_), None) => {}
        }
        cli
    }
}

impl CliCommand {
    /// The command's interface flags, for the commands that do discovery.
    fn interfaces_mut(&mut self) -> Option<&mut InterfaceArgs> {
        match self {
            CliCommand::Serve(args) => Some(&mut args.interfaces),
            CliCommand::Send(args) => Some(&mut args.localsend.interfaces),
            CliCommand::Note(args) => Some(&mut args.localsend.interfaces),
            CliCommand::Peers(args) => Some(&mut args.interfaces),
            CliCommand::Doctor(args) => Some(&mut args.interfaces),
            CliCommand::Bench(args) => Some(&mut args.interfaces),
            CliCommand::Listen(_)
            | CliCommand::Chat(_)
            | CliCommand::Completions(_)
            | CliCommand::Manpage => None,
        }
    }
}

impl InterfaceArgs {
    /// The interfaces chosen: `--only-interface` names (with `--interface` ones) and nothing
    /// else, or the default choice plus `--interface` names.
    pub fn choice(&self) -> crate::discovery::Choice {
        crate::discovery::Choice::named(&self.interface, &self.only_interface)
    }
}

/// The LocalSend register sweep (`ferry serve`, `ferry peers --wait`, `ferry send --to`).
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Do not ask every host of this machine's private /24s whether it is a LocalSend device
    /// (`POST /register` on port 53317: a running LocalSend CLI is found no other way).
    #[arg(long)]
    pub no_localsend_sweep: bool,
    /// Sweep these addresses instead of the LAN's /24s (repeatable; for tests).
    #[arg(long, value_name = "HOST:PORT", hide = true)]
    pub localsend_sweep_host: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Receiver as HOST:PORT (HOST alone: port 8080), or the name of a device found on the
    /// LAN or trusted; a name no Ferry device has is looked for among LocalSend devices.
    #[arg(long, value_name = "HOST:PORT|NAME")]
    pub to: String,
    /// Message attached to every file (the header's `msg`) and to every folder (its offer's
    /// `msg`: the receiver shows it once for the whole folder).
    #[arg(long, default_value = "")]
    pub msg: String,
    /// Speak the original protocol to a plain (non-Ferry) server: nothing is verified or
    /// encrypted.
    #[arg(long)]
    pub plain: bool,
    /// The pairing code the receiver shows (`ferry serve --pair`): pairs the two devices, so
    /// they trust each other from then on.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Send without encryption (still verified): for a receiver that cannot encrypt, and for
    /// benchmarks. Anyone on the network can then read the files. To a LocalSend device
    /// with encryption turned off (plain HTTP) it is the agreement to send unencrypted; a
    /// LocalSend device with encryption on still gets HTTPS.
    #[arg(long, conflicts_with = "code")]
    pub no_encryption: bool,
    #[command(flatten)]
    pub localsend: LocalSendToArgs,
    /// With --plain: send the files of each folder named, with their paths relative to the
    /// folder's parent (`photos/2024/a.jpg`) as names (plain receivers have no folders).
    #[arg(long, requires = "plain")]
    pub flatten: bool,
    /// Files and folders to send. A folder is offered as a whole (the receiver recreates it,
    /// as `NAME (1)` if `NAME` is taken) and prints one line per file.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NoteArgs {
    /// Peer as HOST:PORT (HOST alone: port 8080), or a trusted device's NAME (sent encrypted
    /// to its last address). A HOST:PORT that is a trusted device's last address is
    /// encrypted too. Another name is looked for among LocalSend devices (the note goes as
    /// its text message).
    #[arg(long, value_name = "HOST:PORT|NAME")]
    pub to: String,
    /// Send plain text even to a trusted device (for plain peers: nc -u, the Python chat).
    /// To a LocalSend device with encryption turned off (plain HTTP) it is the agreement to
    /// send the note unencrypted; a LocalSend device with encryption on still gets HTTPS.
    #[arg(long)]
    pub plain: bool,
    /// Wait up to SECS for a reply and print it; exit 1 if none came.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    #[command(flatten)]
    pub localsend: LocalSendToArgs,
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
    /// Peer as HOST:PORT (HOST alone: port 8080), or a trusted device's NAME (encrypted).
    #[arg(long, value_name = "HOST:PORT|NAME")]
    pub to: String,
    /// Send plain text even to a trusted device.
    #[arg(long)]
    pub plain: bool,
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
        CliCommand::Completions(args) => docs::completions(args.shell),
        CliCommand::Manpage => docs::manpage(),
        CliCommand::Peers(args) => discover::peers(args),
        CliCommand::Doctor(args) => discover::doctor(args),
        CliCommand::Bench(args) => bench::bench(args),
    }
}
