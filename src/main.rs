//! The `ferry` binary: the window when run without a command, the headless CLI otherwise.

use std::io::Write as _;
use std::process::ExitCode;

use ferry::cli::{self, Cli};
use ferry::protocol::escape_line;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        // Defence in depth: whatever a log call interpolates (a peer's name, reason or kind),
        // the record reaches the terminal with its control characters escaped, on one line.
        .format(|buf, record| {
            let style = buf.default_level_style(record.level());
            let message = record.args().to_string();
            writeln!(
                buf,
                "[{} {style}{:<5}{style:#} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                escape_line(&message)
            )
        })
        .init();
    ferry::defaults::raise_open_file_limit();
    let cli = Cli::parse_args();
    let result = match cli.command {
        Some(command) => cli::run(command),
        None => ferry::app::run(cli.interfaces.choice()).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // An error can quote a peer (a host name it gave, a reason it sent). A stderr
            // nobody reads any more is no reason to panic.
            let _ = writeln!(
                std::io::stderr().lock(),
                "ferry: {}",
                escape_line(&cli::error_report(&e))
            );
            ExitCode::FAILURE
        }
    }
}
