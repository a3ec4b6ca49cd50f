//! Socket setup for beacons: one listening socket on the discovery port (shared with other
//! Ferry processes on the machine, joined to the multicast group on every used interface),
//! and one sending socket per interface (multicast leaves through that interface, TTL 1, loop
//! on so we hear our own beacon; broadcast allowed). Unicast replies to our queries come back
//! to the sending sockets.
//!
//! IPv6, where it works: for each used interface that has an IPv6 link-local address, a
//! sending socket with IPV6_MULTICAST_IF set to the interface index (hop limit 1, loop on) and
//! one IPv6 listening socket on the discovery port joined to [`DISCOVERY_GROUP_V6`] on each
//! of those interfaces. A kernel without IPv6 (or an interface without a link-local address)
//! leaves IPv6 out quietly; the reason is kept for the doctor when a socket fails.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use socket2::{Domain, Protocol, Socket, Type};

use super::interfaces::{self, Interface, Use};
use super::{Config, DiscoveryError, Shared, lock};
use crate::defaults::DISCOVERY_GROUP_V6;
use crate::protocol::beacon::MAX_BEACON_BYTES;

/// A used interface's IPv6 link: its name, index and link-local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Link {
    pub name: String,
    pub index: u32,
    pub addr: Ipv6Addr,
}

/// The IPv6 link-local addresses (fe80::/10) of the interfaces in `used`, one per interface.
pub fn v6_links(used: &[Interface]) -> Vec<V6Link> {
    let mut out: Vec<V6Link> = Vec::new();
    for iface in if_addrs::get_if_addrs().unwrap_or_default() {
        let (if_addrs::IfAddr::V6(v6), Some(index)) = (&iface.addr, iface.index) else {
            continue;
        };
        let link_local = v6.ip.segments()[0] & 0xffc0 == 0xfe80;
        if link_local
            && used.iter().any(|u| u.name == iface.name)
            && !out.iter().any(|l| l.name == iface.name)
        {
            out.push(V6Link {
                name: iface.name.clone(),
                index,
                addr: v6.ip,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The IPv6 listening socket on `port`, joined to the group on each link.
fn listener_v6(port: u16, links: &[V6Link]) -> io::Result<(UdpSocket, Vec<(String, String)>)> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0).into())?;
    let mut failed = Vec::new();
    for link in links {
        if let Err(e) = socket.join_multicast_v6(&DISCOVERY_GROUP_V6, link.index) {
            failed.push((link.name.clone(), format!("IPv6 multicast join: {e}")));
        }
    }
    socket.set_read_timeout(Some(READ_TICK))?;
    Ok((socket.into(), failed))
}

/// An IPv6 sending socket for one link: multicast out of its index, hop limit 1, loop on.
/// Bound to the unspecified address so a link-local address still in duplicate address
/// detection does not stop it (the kernel picks the source).
fn sender_v6(link: &V6Link) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_multicast_if_v6(link.index)?;
    socket.set_multicast_hops_v6(1)?;
    socket.set_multicast_loop_v6(true)?;
    socket.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0).into())?;
    socket.set_read_timeout(Some(READ_TICK))?;
    Ok(socket.into())
}

/// How long a reader blocks before it looks at the stop flag.
pub const READ_TICK: Duration = Duration::from_millis(200);

/// The listening socket on `port`, joined to `group` on each interface. Returns the socket
/// and, per interface, the error of a join that failed (for doctor).
pub fn listener(
    port: u16,
    group: Ipv4Addr,
    ifaces: &[Interface],
) -> io::Result<(UdpSocket, Vec<(String, String)>)> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    // Several Ferry processes on one machine (the window and `ferry serve`, or tests) all hear
    // multicast and broadcast beacons.
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    let mut failed = Vec::new();
    for iface in ifaces {
        if let Err(e) = socket.join_multicast_v4(&group, &iface.addr) {
            failed.push((iface.name.clone(), e.to_string()));
        }
    }
    socket.set_read_timeout(Some(READ_TICK))?;
    Ok((socket.into(), failed))
}

/// A sending socket for one interface: bound to its address, multicast out of it with TTL 1
/// and loop on, broadcast allowed.
pub fn sender(iface: &Interface) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_broadcast(true)?;
    socket.set_multicast_if_v4(&iface.addr)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket.bind(&SocketAddrV4::new(iface.addr, 0).into())?;
    socket.set_read_timeout(Some(READ_TICK))?;
    Ok(socket.into())
}

/// A socket for unicast probes to any address (the kernel picks the route).
pub fn prober() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    socket.set_read_timeout(Some(READ_TICK))?;
    Ok(socket)
}

/// The source address the kernel would give a datagram to `to`, which names the interface
/// the route leaves by; `None` without a route. Nothing is sent: connecting a UDP socket
/// only looks the route up.
pub fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(to).ok()?;
    socket.local_addr().ok().map(|local| local.ip())
}

/// Whether the route to `to` leaves by one of some interfaces: for IPv4, the source address
/// the kernel would use is one of `addrs`; for IPv6, `to`'s scope (the link it came in on)
/// is one of `indexes` (a global address, without a scope, is not). No route (or no socket
/// to ask with, such as when out of descriptors) is not.
pub fn routed_via(
    to: SocketAddr,
    addrs: impl IntoIterator<Item = Ipv4Addr>,
    indexes: impl IntoIterator<Item = u32>,
) -> bool {
    match to {
        SocketAddr::V6(v6) => indexes.into_iter().any(|index| index == v6.scope_id()),
        SocketAddr::V4(_) => match route_source(to) {
            Some(IpAddr::V4(source)) => addrs.into_iter().any(|addr| addr == source),
            _ => false,
        },
    }
}

/// The subnet broadcast address of an interface, computed from its address and netmask: the
/// kernel's own value is missing on loopback and is 0.0.0.0 on an address added without
/// `brd +` (sending there would reach only this machine). None for /31 and /32.
pub fn broadcast_of(iface: &Interface) -> Option<Ipv4Addr> {
    (iface.prefix_len() < 31)
        .then(|| Ipv4Addr::from(u32::from(iface.addr) | !u32::from(iface.netmask)))
}

/// A datagram from one of the sockets.
pub(super) struct Inbound {
    pub(super) bytes: Vec<u8>,
    pub(super) from: SocketAddr,
}

/// The sockets of one set of interfaces, with their reader threads.
pub(super) struct Sockets {
    pub(super) senders: Vec<(Interface, Arc<UdpSocket>)>,
    pub(super) senders_v6: Vec<(V6Link, Arc<UdpSocket>)>,
    /// The IPv6 links looked at when these sockets were opened (for change detection).
    pub(super) links_v6: Vec<V6Link>,
    pub(super) prober: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    pub(super) used: Vec<Interface>,
}

impl Sockets {
    pub(super) fn open(
        config: &Config,
        shared: &Shared,
        inbound: Sender<Inbound>,
    ) -> Result<Sockets, DiscoveryError> {
        let all = interfaces::list(&config.choice).map_err(DiscoveryError::Interfaces)?;
        let used: Vec<Interface> = all
            .iter()
            .filter(|(_, u)| *u == Use::Used)
            .map(|(i, _)| i.clone())
            .collect();
        let (listener, failures) =
            listener(config.port, config.group, &used).map_err(|source| DiscoveryError::Bind {
                port: config.port,
                source,
            })?;
        let mut senders = Vec::new();
        let mut failures = failures;
        for iface in &used {
            match sender(iface) {
                Ok(s) => senders.push((iface.clone(), Arc::new(s))),
                Err(e) => failures.push((iface.name.clone(), format!("cannot send: {e}"))),
            }
        }
        let links_v6 = if config.beacons {
            v6_links(&used)
        } else {
            Vec::new()
        };
        log::debug!("discovery: IPv6 links {links_v6:?}");
        let mut senders_v6 = Vec::new();
        let mut listener6 = None;
        if !links_v6.is_empty() {
            match listener_v6(config.port, &links_v6) {
                Ok((socket, failed)) => {
                    failures.extend(failed);
                    listener6 = Some(Arc::new(socket));
                    for link in &links_v6 {
                        match sender_v6(link) {
                            Ok(s) => senders_v6.push((link.clone(), Arc::new(s))),
                            Err(e) => failures
                                .push((link.name.clone(), format!("cannot send over IPv6: {e}"))),
                        }
                    }
                }
                Err(e) => failures.push(("IPv6".into(), format!("no IPv6 beacons: {e}"))),
            }
        }
        *lock(&shared.interfaces) = all;
        *lock(&shared.join_failures) = failures;
        let prober = Arc::new(prober().map_err(|source| DiscoveryError::Bind { port: 0, source })?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut all_sockets = vec![Arc::new(listener), Arc::clone(&prober)];
        all_sockets.extend(senders.iter().map(|(_, s)| Arc::clone(s)));
        all_sockets.extend(listener6);
        all_sockets.extend(senders_v6.iter().map(|(_, s)| Arc::clone(s)));
        for socket in all_sockets {
            let stop = Arc::clone(&stop);
            let inbound = inbound.clone();
            let reader = std::thread::Builder::new()
                .name("ferry-discovery-rx".into())
                .spawn(move || read_loop(&socket, &stop, &inbound))
                .map_err(DiscoveryError::Thread)?;
            readers.push(reader);
        }
        Ok(Sockets {
            senders,
            senders_v6,
            links_v6,
            prober,
            stop,
            readers,
            used,
        })
    }

    pub(super) fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers {
            let _ = reader.join();
        }
    }
}

fn read_loop(socket: &UdpSocket, stop: &AtomicBool, inbound: &Sender<Inbound>) {
    // One byte more than a beacon may be, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; MAX_BEACON_BYTES + 1];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                // A full queue drops the datagram: beacons repeat.
                let _ = inbound.try_send(Inbound {
                    bytes: buf[..n].to_vec(),
                    from,
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                log::debug!("discovery socket: {e}");
                std::thread::sleep(READ_TICK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_is_the_subnet_broadcast_whatever_the_kernel_says() {
        let iface = |addr: [u8; 4], mask: [u8; 4], kernel: Option<Ipv4Addr>| Interface {
            name: "eth0".into(),
            addr: addr.into(),
            netmask: mask.into(),
            broadcast: kernel,
        };
        assert_eq!(
            broadcast_of(&iface(
                [10, 77, 0, 1],
                [255, 255, 255, 0],
                Some(Ipv4Addr::UNSPECIFIED)
            )),
            Some(Ipv4Addr::new(10, 77, 0, 255))
        );
        assert_eq!(
            broadcast_of(&iface([127, 0, 0, 1], [255, 0, 0, 0], None)),
            Some(Ipv4Addr::new(127, 255, 255, 255))
        );
        assert_eq!(
            broadcast_of(&iface([10, 0, 0, 1], [255, 255, 255, 255], None)),
            None
        );
    }
}
