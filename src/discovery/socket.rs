//! Socket setup for beacons: one listening socket on the discovery port (shared with other
//! Ferry processes on the machine, joined to the multicast group on every used interface),
//! and one sending socket per interface (multicast leaves through that interface, TTL 1, loop
//! on so we hear our own beacon; broadcast allowed). Unicast replies to our queries come back
//! to the sending sockets.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::interfaces::Interface;

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

/// The broadcast address of an interface; loopback has none in the kernel's view, but
/// 127.255.255.255 reaches every listener on it.
pub fn broadcast_of(iface: &Interface) -> Option<Ipv4Addr> {
    iface.broadcast.or_else(|| {
        iface
            .addr
            .is_loopback()
            .then(|| Ipv4Addr::from(u32::from(iface.addr) | !u32::from(iface.netmask)))
    })
}
