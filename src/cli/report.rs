//! How the CLI reads what the user typed and words what went wrong: destinations resolved
//! before anything is sent (so a typo in a host name says "cannot resolve host", not "cannot
//! connect"), and an error chain printed once per cause.

use std::fmt::Write as _;
use std::net::ToSocketAddrs as _;

use crate::defaults::{Destination, DestinationError, parse_destination};

/// Why a `--to` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Parse(#[from] DestinationError),
    #[error("cannot resolve host {host:?}: {reason}")]
    Lookup { host: String, reason: String },
}

/// Reads `--to` (`HOST:PORT`, or `HOST` for the default port) and checks that the host
/// resolves. The destination's `Display` is the `host:port` form the engines take. May wait
/// on DNS, which is fine on the CLI's main thread.
pub fn resolve_destination(typed: &str) -> Result<Destination, ResolveError> {
    let destination = parse_destination(typed)?;
    let lookup = |reason: String| ResolveError::Lookup {
        host: destination.host.clone(),
        reason,
    };
    let found = (destination.host.as_str(), destination.port)
        .to_socket_addrs()
        .map_err(|e| lookup(e.to_string()))?
        .next();
    match found {
        Some(_) => Ok(destination),
        None => Err(lookup("no address found".to_owned())),
    }
}

/// An error and its causes on one line, `outer: cause: root`, each cause shown once: a
/// message that already ends with its cause's text (a thiserror variant that both prints
/// `{source}` and marks it as the source) does not get it again. Without this, anyhow's
/// `{:#}` printed "Connection refused (os error 111): Connection refused (os error 111)".
pub fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.ends_with(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        let _ = write!(report, "{text}");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// The pattern that doubled the OS error: the source both in the message and as source.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to {to}: {source}")]
    struct Both {
        to: String,
        source: io::Error,
    }

    /// The other pattern: the source only as source.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind")]
    struct SourceOnly(#[source] io::Error);

    #[test]
    fn each_cause_is_shown_once() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let both = anyhow::Error::new(Both {
            to: "127.0.0.1:9".into(),
            source: refused(),
        });
        let text = error_report(&both);
        assert_eq!(
            text,
            format!("cannot connect to 127.0.0.1:9: {}", refused())
        );
        let wrapped = both.context("sending failed");
        assert_eq!(
            error_report(&wrapped),
            format!(
                "sending failed: cannot connect to 127.0.0.1:9: {}",
                refused()
            )
        );
        let source_only = anyhow::Error::new(SourceOnly(refused()));
        assert_eq!(
            error_report(&source_only),
            format!("cannot bind: {}", refused())
        );
    }

    #[test]
    fn a_host_that_does_not_resolve_is_named() {
        let err = resolve_destination("nosuchhost.invalid:8080").unwrap_err();
        assert!(matches!(err, ResolveError::Lookup { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot resolve host \"nosuchhost.invalid\": "),
            "{err}"
        );
        let ok = resolve_destination("127.0.0.1").unwrap();
        assert_eq!(ok.to_string(), "127.0.0.1:8080");
        assert!(matches!(
            resolve_destination("127.0.0.1:x"),
            Err(ResolveError::Parse(DestinationError::BadPort { .. }))
        ));
    }
}
