//! `ferry serve`'s LocalSend side: starting the LocalSend receiver beside the Ferry server
//! with the same folder, policy and name, and the line that says it is on (port and
//! fingerprint) or why it is not. Kept apart from `transfer.rs` so `serve` stays readable.

use std::net::IpAddr;
use std::path::Path;

use super::ServeArgs;
use crate::events::EventSink;
use crate::localsend::identity::default_cert_dir;
use crate::localsend::{CertIdentity, LocalSendConfig, LocalSendServer, MulticastConfig};
use crate::transfer::AcceptPolicy;

/// Starts LocalSend receiving unless `--no-localsend`; prints one line either way. A port in
/// use or a certificate that cannot be made turns LocalSend off with a reason, never `serve`.
pub(super) fn start(
    args: &ServeArgs,
    dir: &Path,
    policy: AcceptPolicy,
    sink: EventSink,
) -> Option<LocalSendServer> {
    if args.no_localsend {
        return None;
    }
    let identity = match default_cert_dir() {
        Some(config_dir) => CertIdentity::load_or_create(&config_dir),
        None => CertIdentity::generate(),
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(e) => {
            println!("LocalSend receiving is off: {e}");
            return None;
        }
    };
    let alias = args
        .name
        .clone()
        .unwrap_or_else(crate::secure::identity::default_device_name);
    let mut config = LocalSendConfig::new(dir.to_path_buf(), &alias, identity);
    config.bind = args.bind;
    config.port = args.localsend_port;
    config.device_type = "headless".to_owned();
    config.policy = policy;
    config.pin = args.localsend_pin.clone();
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout_secs.max(1));
    config.fsync = !args.no_fsync;
    config.multicast = (!args.no_discovery).then(|| {
        let mut multicast = MulticastConfig::lan();
        // A server bound to one address announces on that address's interface only (so
        // `--bind 127.0.0.1` stays on loopback).
        if let IpAddr::V4(ip) = args.bind
            && !ip.is_unspecified()
        {
            multicast.interfaces = vec![ip];
        }
        multicast
    });
    match LocalSendServer::start(config, sink) {
        Ok(server) => {
            println!(
                "LocalSend receiving is on: {} (HTTPS), fingerprint {}{}",
                server.local_addr(),
                server.fingerprint(),
                if args.localsend_pin.is_some() {
                    ", PIN required"
                } else {
                    ""
                }
            );
            Some(server)
        }
        Err(e) => {
            println!("LocalSend receiving is off: {e} (--localsend-port picks another)");
            None
        }
    }
}
