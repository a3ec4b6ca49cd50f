//! How `send`, `bench` (and, through [`could_name_a_host`], `note` and `chat`) read `--to`:
//! as an address, as a host name, or as a device's name, and in which order. A trusted
//! device's name comes first (it brings the key the receiver must prove); a word that could
//! name a host is then given to the system resolver, and only when that fails looked for as
//! a device's name; a word that cannot name a host (`客厅`, `My Laptop`) is looked for as a
//! device's name only. The resolver would send such a word to the DNS server all the same:
//! on a LAN without one (a travel router, two laptops on a switch) that costs its whole
//! timeout before the search starts, and it tells that server the names of the user's
//! devices.

use super::discover::NameTrust;
use super::resolve_destination;
use crate::defaults::could_name_a_host;
use crate::discovery::Choice;
use crate::protocol::escape_line;

/// What a typed `--to` is tried as, decided before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// A trusted device's name: that device only, by its key (no resolver).
    TrustedDevice,
    /// Only looks like a trusted device's name (another case, invisible characters):
    /// refused, lest a stranger announcing it get the files.
    LooksTrusted,
    /// A word that could be a host name: the resolver first, then a device of that name.
    HostThenDevice,
    /// A word that cannot be a host name: a device of that name only (no resolver).
    DeviceOnly,
    /// An address form (`HOST:PORT`, an IPv6 address): the resolver only.
    Address,
}

/// The [`Reading`] of `typed`, given how it stands to the trusted devices (`trust`, of no
/// account for an address form). Pure.
pub(super) fn reading(typed: &str, trust: NameTrust) -> Reading {
    if typed.contains(':') {
        return Reading::Address;
    }
    match trust {
        NameTrust::Trusted => Reading::TrustedDevice,
        NameTrust::LooksTrusted => Reading::LooksTrusted,
        NameTrust::Untrusted if could_name_a_host(typed) => Reading::HostThenDevice,
        NameTrust::Untrusted => Reading::DeviceOnly,
    }
}

/// `--to` as an address (`HOST[:PORT]`, checked to resolve), or else, when it names no host
/// and gives no port, the name of a device discovered on the LAN or trusted. Discovery runs
/// only for such a name, never for a typed address; the resolver is never asked about a
/// word that cannot be a host name (see [`reading`]).
pub(super) fn destination_or_device(
    typed: &str,
    choice: &Choice,
) -> anyhow::Result<(String, Option<[u8; 32]>)> {
    destination_or_device_then(typed, choice, |_| {})
}

/// [`destination_or_device`], calling `searching(trusted)` just before it looks for a device
/// by name (`trusted`: the name is a trusted device's), after saying so on stderr: the search
/// takes seconds, and a mistyped host reads as a name.
pub(super) fn destination_or_device_then(
    typed: &str,
    choice: &Choice,
    searching: impl FnOnce(bool),
) -> anyhow::Result<(String, Option<[u8; 32]>)> {
    let trust = match typed.contains(':') {
        true => NameTrust::Untrusted,
        false => super::discover::name_trust(typed),
    };
    let search = |trusted: bool| {
        tell!(
            "looking for a device named {:?} on the LAN...",
            escape_line(typed)
        );
        searching(trusted);
        super::discover::find_device(typed, choice)
    };
    match reading(typed, trust) {
        Reading::TrustedDevice => search(true),
        Reading::LooksTrusted => anyhow::bail!(
            "{:?} only looks like the name of a trusted device (another case, or invisible \
             characters); type the name exactly as `ferry peers` shows it, or --to ADDRESS:PORT",
            escape_line(typed)
        ),
        Reading::DeviceOnly => search(false),
        Reading::Address => Ok((resolve_destination(typed)?.to_string(), None)),
        Reading::HostThenDevice => match resolve_destination(typed) {
            Ok(destination) => Ok((destination.to_string(), None)),
            // A word with a dot was perhaps meant as a host: say why that reading failed too.
            Err(e) if typed.contains('.') => {
                search(false).map_err(|found| anyhow::anyhow!("{found:#}; as a host name: {e}"))
            }
            Err(_) => search(false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_that_cannot_be_a_host_name_is_only_a_device_name() {
        use NameTrust::{LooksTrusted, Trusted, Untrusted};
        for name in ["客厅", "My Laptop", "Desk (2)", "desk🚀", "café"] {
            assert_eq!(reading(name, Untrusted), Reading::DeviceOnly, "{name}");
            // A trusted device's name is that device, whatever its letters.
            assert_eq!(reading(name, Trusted), Reading::TrustedDevice, "{name}");
            assert_eq!(reading(name, LooksTrusted), Reading::LooksTrusted, "{name}");
        }
        // A word that could be a host keeps its order: trusted name, resolver, device.
        for host in ["desk", "desk-1.lan", "desk_1", "192.168.1.5", "desk.lan."] {
            assert_eq!(reading(host, Untrusted), Reading::HostThenDevice, "{host}");
            assert_eq!(reading(host, Trusted), Reading::TrustedDevice, "{host}");
        }
        // An address form is read as today, whatever the trust store says.
        for address in ["::1", "[::1]:8080", "desk:8080", "客厅:8080", "10.0.0.5:x"] {
            assert_eq!(reading(address, Untrusted), Reading::Address, "{address}");
            assert_eq!(reading(address, Trusted), Reading::Address, "{address}");
        }
    }
}
