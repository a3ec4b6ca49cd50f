//! The defaults both faces share (the window's first-start settings and the CLI's flags), kept
//! in one place so `ferry serve` and the window can never disagree about where files go,
//! which port is used, how a typed destination is read, or what Ferry calls itself on the
//! desktop (its app id and icon).

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// The application id: the window's Wayland app id / X11 `WM_CLASS`
/// (`ViewportBuilder::with_app_id`), the desktop entry's `StartupWMClass` and the icon's name
/// (`assets/ferry.desktop`, `Icon=ferry`). One name everywhere, so the taskbar groups the
/// window under the desktop entry and shows its icon.
pub const APP_ID: &str = "ferry";

/// The application icon, 256x256 PNG (`assets/icons/ferry.svg` rendered; the other sizes sit
/// beside it for the desktop's icon theme).
pub fn icon_png() -> &'static [u8] {
    include_bytes!("../assets/icons/256x256/ferry.png")
}

/// The port the original teaching example used, for TCP uploads and UDP notes alike.
pub const DEFAULT_PORT: u16 = 8080;

/// The UDP port discovery beacons travel on (independent of the transfer port, so devices
/// find each other whatever port they receive files on).
pub const DISCOVERY_PORT: u16 = 53_318;

/// The link-local multicast group beacons are sent to (224.0.0.0/24 is never routed).
pub const DISCOVERY_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 118);

/// The IPv6 group beacons are sent to on each interface with a link-local address: the
/// twin of [`DISCOVERY_GROUP`] in the link-local scope (ff02::/16, never routed), sent with
/// the interface index as IPV6_MULTICAST_IF and a hop limit of 1.
pub const DISCOVERY_GROUP_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x118);

/// The mDNS port (RFC 6762) DNS-SD announcements travel on.
pub const MDNS_PORT: u16 = 5_353;

/// A peer silent this long is dropped, unless the user chose otherwise.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30;

/// Connections a server serves at once; one more gets an explicit refusal.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Connections one address may hold at once, so a few peers cannot take every slot.
pub const DEFAULT_MAX_PER_PEER: usize = 8;

/// Files one connection may offer before it is ended.
pub const DEFAULT_MAX_FILES_PER_CONNECTION: u64 = 100_000;

/// How many days a kept partial (`*.ferry.part`) waits for its resume before it is removed.
pub const DEFAULT_PARTIAL_MAX_AGE_DAYS: u64 = 7;

/// Where received files go unless the user picks another folder: `~/Downloads/Ferry`, or
/// `Ferry` in the platform's downloads folder (XDG `user-dirs.dirs` on Linux). Never the
/// current directory: a peer must not be able to write into whatever folder `ferry serve`
/// happened to be started in (a home folder, a source tree). Only `.` if the system knows no
/// home folder at all.
pub fn default_download_dir() -> PathBuf {
    dirs::download_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join("Downloads")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("Ferry")
}

/// A destination as the user typed it, read but not resolved: `HOST:PORT`, `HOST` alone
/// (the default port), `[IPV6]:PORT`, `[IPV6]` or a bare IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// A host name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Destination {
    /// `host:port`, with an IPv6 address in brackets: a form `ToSocketAddrs` reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a typed destination cannot be read. Each message names what was typed and what is
/// expected, in the user's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("no destination given: expected HOST:PORT (or HOST alone for port {DEFAULT_PORT})")]
    Empty,
    #[error("{typed:?} has no host name: expected HOST:PORT")]
    NoHost { typed: String },
    #[error(
        "{port:?} in {typed:?} is not a port number: expected HOST:PORT, the port from 1 to 65535"
    )]
    BadPort { typed: String, port: String },
    #[error("{typed:?} is not a host name: expected HOST:PORT")]
    BadHost { typed: String },
    #[error(
        "{host:?} is not an IPv4 address: expected four numbers from 0 to 255 with dots \
         between (192.168.1.20) or a host name; the system would read it as another address"
    )]
    NumericShorthand { host: String },
    #[error(
        "{zone:?} in {typed:?} is no network interface of this machine: expected \
         [ADDRESS%INTERFACE]:PORT with an interface's name or number (`ip link` lists them)"
    )]
    NoSuchInterface { typed: String, zone: String },
}

/// Reads a destination such as `192.168.1.20:8080`, `laptop.local`, `[fe80::1]:9000` or
/// `::1`. No host name is resolved here (that may wait on DNS, so the caller does it where
/// waiting is fine); the one lookup it makes is local: an interface's name as an IPv6
/// address's zone (`[fe80::1%eth0]:9000`, as `ping` takes it) becomes that interface's
/// number, the form every later reader (`SocketAddr`, the resolver) takes. Without a port,
/// [`DEFAULT_PORT`] is used.
pub fn parse_destination(typed: &str) -> Result<Destination, DestinationError> {
    parse_destination_or_port(typed, DEFAULT_PORT)
}

/// [`parse_destination`] with `default_port` where none is typed (LocalSend's, for a
/// LocalSend probe).
pub fn parse_destination_or_port(
    typed: &str,
    default_port: u16,
) -> Result<Destination, DestinationError> {
    let trimmed = typed.trim();
    if trimmed.is_empty() {
        return Err(DestinationError::Empty);
    }
    let bad_port = |port: &str| DestinationError::BadPort {
        typed: typed.to_owned(),
        port: port.to_owned(),
    };
    let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
        // [IPV6] or [IPV6]:PORT
        let Some((host, after)) = rest.split_once(']') else {
            return Err(DestinationError::BadHost {
                typed: typed.to_owned(),
            });
        };
        if !is_ipv6_literal(host) {
            return Err(DestinationError::BadHost {
                typed: typed.to_owned(),
            });
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad_port(after)),
            },
        }
    } else if is_ipv6_literal(trimmed) {
        // A bare IPv6 address: its colons are not a port separator.
        (trimmed, None)
    } else {
        match trimmed.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (trimmed, None),
        }
    };
    if host.is_empty() {
        return Err(DestinationError::NoHost {
            typed: typed.to_owned(),
        });
    }
    // A host name has no spaces, colons (outside brackets), control characters or `%` (an
    // interface's name or number follows one only in an IPv6 address: `laptop%eth0` and
    // `10.0.0.1%2` are no addresses, and no zone is read off them).
    if (host.contains(':') || host.contains('%')) && !is_ipv6_literal(host)
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DestinationError::BadHost {
            typed: typed.to_owned(),
        });
    }
    if is_numeric_shorthand(host) {
        return Err(DestinationError::NumericShorthand {
            host: host.to_owned(),
        });
    }
    let port = match port {
        None => default_port,
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad_port(port)),
            Ok(port) => port,
        },
    };
    let host = match host.split_once('%') {
        Some((address, zone)) if zone.parse::<u32>().is_err() => {
            let index = interface_index(zone).ok_or_else(|| DestinationError::NoSuchInterface {
                typed: typed.to_owned(),
                zone: zone.to_owned(),
            })?;
            format!("{address}%{index}")
        }
        _ => host.to_owned(),
    };
    Ok(Destination { host, port })
}

/// The number of this machine's network interface called `name`, if there is one.
fn interface_index(name: &str) -> Option<u32> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .find(|iface| iface.name == name)
        .and_then(|iface| iface.index)
}

/// `typed` (`HOST:PORT`) as the engines resolve it, for callers that take destinations in
/// other forms too (the window's fields, the library), which `SocketAddr` or the system
/// resolver read. Refused only where [`parse_destination`] would refuse it for a reason
/// the resolver would not see: a number it would read as another address
/// ([`DestinationError::NumericShorthand`]: `010.0.0.5` is 8.0.0.5), or an IPv6 zone that
/// names no interface here. An IPv6 address with a zone comes back as [`parse_destination`]
/// reads it, the interface's name (`[fe80::1%eth0]:8080`, which neither reader takes) as
/// its number; anything else as typed.
pub fn engine_destination(typed: &str) -> Result<String, DestinationError> {
    match parse_destination(typed) {
        Err(
            e @ (DestinationError::NumericShorthand { .. }
            | DestinationError::NoSuchInterface { .. }),
        ) => Err(e),
        Ok(read) if read.host.contains('%') => Ok(read.to_string()),
        _ => Ok(typed.to_owned()),
    }
}

/// Whether `host` is an IPv6 address, perhaps with the interface it is on: its number
/// (`fe80::1%2`, as `ferry peers` lists a device heard over IPv6 link-local), which the
/// system resolver and `SocketAddr` read, or its name (`fe80::1%eth0`, in the syntax of a
/// Linux interface name: 1 to 15 bytes, no `/`, `:`, `%`, space or control character, any
/// script: `fe80::1%网卡`), which
/// [`parse_destination`] turns into the number. Pure.
fn is_ipv6_literal(host: &str) -> bool {
    let (address, zone) = match host.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (host, None),
    };
    let interface_name = |zone: &str| {
        (1..=15).contains(&zone.len())
            && zone
                .bytes()
                .all(|b| !b.is_ascii() || b.is_ascii_graphic() && !b"/:%[]".contains(&b))
            && !zone.bytes().all(|b| b.is_ascii_digit())
    };
    address.parse::<Ipv6Addr>().is_ok()
        && zone.is_none_or(|zone| {
            zone.parse::<u32>().is_ok_and(|index| index > 0) || interface_name(zone)
        })
}

/// Whether a typed `--to` could name a host, so that asking the system resolver about it
/// makes sense: an address form (anything with a colon or a bracket: `HOST:PORT`, an IPv6
/// address, read as [`parse_destination`] reads them), an IP address, or a word in host-name
/// syntax: labels of ASCII letters, digits, `-` and `_` (in a name of several labels, also
/// letters and digits of any script: `客厅.lan`, `bücher.example`, which the hosts file, mDNS
/// or IDN may know), each 1 to 63 bytes, joined by dots, 253 bytes at most, one trailing dot
/// allowed (an absolute name, `desk.lan.`), that is not a number the C resolver reads as an
/// address without a dot (`1234`: see [`is_numeric_shorthand`]; `010.0.0.5` goes on to
/// [`parse_destination`], which says why it is no address). Anything else (`客厅`,
/// `My Laptop`, `Desk (2)`, an emoji, `1234`) can only be a device's name: the resolver
/// would still send it to the DNS server, which costs its whole timeout on a LAN without one
/// and tells that server the names of the user's devices. Pure.
pub fn could_name_a_host(typed: &str) -> bool {
    let word = typed.trim();
    if word.contains([':', '[']) || word.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if is_numeric_shorthand(word) {
        // `010.0.0.5` was meant as an address: the resolver's reading says why it is none.
        // `1234` alone may be a device's name.
        return word.contains('.');
    }
    let name = word.strip_suffix('.').unwrap_or(word);
    // Letters of any script only in a name of several labels: `客厅.lan` reads as a host (an
    // IDN, an mDNS or hosts-file name), `客厅` or `café` alone as a device.
    let dotted = name.contains('.');
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || c == '_'
                    || dotted && !c.is_ascii() && c.is_alphanumeric()
            })
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Whether `host` is one of the numbers the C resolver (`inet_aton`) reads as an IPv4 address
/// although it is no dotted quad: one to four parts of decimal, octal (`0177`) or hex
/// (`0x7f`) digits, such as `1234` (0.0.4.210), `127.1`, `0177.0.0.1` (127.0.0.1, not
/// 177.0.0.1) or `2130706433`. `getaddrinfo` answers those itself, without asking the hosts
/// file or DNS, so no host can be named so: a typo like `010.0.0.5` would silently reach
/// 8.0.0.5. A strict dotted quad is not a shorthand. Pure.
fn is_numeric_shorthand(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    let number = |part: &str| match part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()),
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    (1..=4).contains(&name.split('.').count()) && name.split('.').all(number)
}

/// Open files this process asks for (at most the hard limit): a receiver holds one handle per
/// connection and per subfolder of a folder being received, and Linux starts processes at
/// 1 024, which a large folder or many connections would reach.
pub const WANTED_OPEN_FILES: u64 = 65_536;

/// Raises the soft limit on open files towards [`WANTED_OPEN_FILES`] (never above the hard
/// limit, never lower than it is). Best effort: a failure leaves the limit as it was.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = match limit.maximum {
        Some(hard) => WANTED_OPEN_FILES.min(hard),
        None => WANTED_OPEN_FILES,
    };
    if limit.current.is_some_and(|soft| soft < wanted) {
        limit.current = Some(wanted);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            log::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(host: &str, port: u16) -> Destination {
        Destination {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn engine_destination_reads_a_zones_name_and_leaves_the_rest_as_typed() {
        for typed in [
            "laptop.local:9",
            "127.0.0.1:9",
            "[fe80::1%2]:9",
            "not a host:x",
        ] {
            assert_eq!(engine_destination(typed).as_deref(), Ok(typed), "{typed}");
        }
        if let Ok(lo) = std::fs::read_to_string("/sys/class/net/lo/ifindex") {
            let want = format!("[::1%{}]:9", lo.trim());
            assert_eq!(engine_destination("[::1%lo]:9"), Ok(want));
        }
        for refused in ["010.0.0.5:80", "[fe80::1%no-such-if]:80"] {
            assert!(engine_destination(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn destinations_are_read_with_the_default_port_filling_in() {
        assert_eq!(
            parse_destination("127.0.0.1:9000"),
            Ok(dest("127.0.0.1", 9000))
        );
        assert_eq!(
            parse_destination("127.0.0.1"),
            Ok(dest("127.0.0.1", DEFAULT_PORT))
        );
        assert_eq!(
            parse_destination(" laptop.local "),
            Ok(dest("laptop.local", 8080))
        );
        assert_eq!(parse_destination("[::1]:9000"), Ok(dest("::1", 9000)));
        assert_eq!(parse_destination("[::1]"), Ok(dest("::1", 8080)));
        assert_eq!(parse_destination("fe80::1"), Ok(dest("fe80::1", 8080)));
        // As `ferry peers` lists a device heard over IPv6 link-local.
        assert_eq!(
            parse_destination("[fe80::1%2]:9000"),
            Ok(dest("fe80::1%2", 9000))
        );
        assert_eq!(parse_destination("fe80::1%2"), Ok(dest("fe80::1%2", 8080)));
        assert_eq!(dest("fe80::1%2", 9).to_string(), "[fe80::1%2]:9");
        // As `ping` takes it: the interface's name becomes its number, which `SocketAddr`
        // (and so every later reader) takes.
        if let Ok(lo) = std::fs::read_to_string("/sys/class/net/lo/ifindex") {
            let lo = lo.trim();
            let read = parse_destination("[fe80::1%lo]:9000");
            assert_eq!(read, Ok(dest(&format!("fe80::1%{lo}"), 9000)));
            let addr: std::net::SocketAddr = read.unwrap().to_string().parse().unwrap();
            assert_eq!(addr.to_string(), format!("[fe80::1%{lo}]:9000"));
            assert_eq!(parse_destination("fe80::1%lo").map(|d| d.port), Ok(8080));
        }
        // A name in any script is read as a name (Linux takes one), not refused as no host.
        let err = parse_destination("[fe80::1%网卡]:80").unwrap_err();
        assert!(
            matches!(&err, DestinationError::NoSuchInterface { zone, .. } if zone == "网卡"),
            "{err:?}"
        );
        let err = parse_destination("[fe80::1%no-such-if]:80").unwrap_err();
        assert!(
            matches!(err, DestinationError::NoSuchInterface { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("\"no-such-if\" in \"[fe80::1%no-such-if]:80\" is no network interface"),
            "{err}"
        );
        assert_eq!(dest("::1", 9).to_string(), "[::1]:9");
        assert_eq!(dest("laptop", 9).to_string(), "laptop:9");
    }

    #[test]
    fn bad_destinations_say_what_is_expected() {
        assert_eq!(parse_destination("  "), Err(DestinationError::Empty));
        for typed in [
            "host:notaport",
            "host:0",
            "host:65536",
            "host:",
            "[::1]x",
            "[::1]:",
        ] {
            let err = parse_destination(typed).unwrap_err();
            assert!(
                matches!(err, DestinationError::BadPort { .. }),
                "{typed}: {err:?}"
            );
            assert!(err.to_string().contains("expected HOST:PORT"), "{err}");
        }
        assert!(matches!(
            parse_destination(":8080"),
            Err(DestinationError::NoHost { .. })
        ));
        // The C resolver would read these as 127.0.0.1, 8.0.0.5, 0.0.4.210, 127.0.0.1.
        for typed in [
            "0177.0.0.1:80",
            "010.0.0.5",
            "1234",
            "0x7f.1:9",
            "2130706433.",
        ] {
            let err = parse_destination(typed).unwrap_err();
            assert!(
                matches!(err, DestinationError::NumericShorthand { .. }),
                "{typed}: {err:?}"
            );
            assert!(err.to_string().contains("not an IPv4 address"), "{err}");
        }
        for typed in ["10.0.0.5", "desk.1234", "1234desk"] {
            assert!(parse_destination(typed).is_ok(), "{typed}");
        }
        for typed in [
            "a b:80",
            "[nothost]:80",
            "[::1",
            "a:b:c",
            "[fe80::1%]:80",
            "[fe80::1%0]:80",
            "[fe80::1%a/b]:80",
            "[fe80::1%sixteen-bytes-ab]:80",
            "[fe80::1%e th0]:80",
            "laptop%lo:80",
            "laptop%2",
            "10.0.0.1%lo:80",
            "10.0.0.1%1",
        ] {
            assert!(
                matches!(
                    parse_destination(typed),
                    Err(DestinationError::BadHost { .. })
                ),
                "{typed}"
            );
        }
    }

    #[test]
    fn only_words_in_host_name_syntax_could_name_a_host() {
        let label63 = "a".repeat(63);
        let long_ok = [label63.as_str(); 4].join("."); // 4 * 63 + 3 = 255 bytes
        for host in [
            "desk",
            "desk-1.lan",
            "desk_1",
            "DESK",
            "desk.lan.",
            " desk ",
            "192.168.1.5",
            "::1",
            "[::1]:8080",
            "[::1]",
            "fe80::1%eth0",
            "desk:8080",
            "客厅:8080",
            // Dotted, they were meant as addresses: parse_destination says why they are not.
            "127.1",
            "0177.0.0.1",
            "2130706433.",
            "1234desk",
            "desk.1234",
            "0xdesk",
            "客厅.lan",
            "bücher.example",
            "Müller-PC.local.",
            &label63,
            &long_ok[..253],
        ] {
            assert!(could_name_a_host(host), "{host:?} could name a host");
        }
        let label64 = "a".repeat(64);
        let too_long = format!("{}.b", &long_ok[..252]);
        for name in [
            "客厅",
            "客厅的电脑",
            "My Laptop",
            "my laptop",
            "Desk (2)",
            "desk🚀",
            "🚀",
            "café",
            "desk..lan",
            ".desk",
            "desk..",
            ".",
            "",
            "  ",
            "a/b",
            "desk\u{200b}",
            // A number getaddrinfo reads as an address without asking anyone: no host has it.
            "1234",
            "0x7f000001",
            "客厅.",
            "My Laptop.local",
            "desk🚀.lan",
            "客厅\u{200b}.lan",
            &label64,
            &format!("{label64}.lan"),
            &too_long,
        ] {
            assert!(
                !could_name_a_host(name),
                "{name:?} can only be a device's name"
            );
        }
    }

    #[test]
    fn the_download_folder_is_a_ferry_folder_under_downloads() {
        let dir = default_download_dir();
        assert_eq!(dir.file_name(), Some(std::ffi::OsStr::new("Ferry")));
        if let Some(home) = dirs::home_dir() {
            assert!(dir.starts_with(home), "{}", dir.display());
        }
    }
}
