//! LocalSend discovery's sockets, one per family on one port, and the group memberships
//! they hold: joined on the interfaces chosen at start, then following them as they come,
//! go and change address ([`Live::follow`], every [`super::RELIST_EVERY`]). Apart from
//! `discovery`, which announces, hears and answers on them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::discovery::MulticastConfig;
use super::server::lock;

/// The discovery sockets: IPv4 (required) and IPv6 (where the host has it), on one port.
#[derive(Debug)]
pub(super) struct Sockets {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
}

impl Sockets {
    /// Binds the group's port (IPv6 on the port IPv4 got, so port 0 gives one port for
    /// both) and joins the groups on each interface. IPv6 failing is logged, not fatal.
    pub(super) fn bind(config: &MulticastConfig) -> std::io::Result<Self> {
        let v4 = bind_v4(config)?;
        let port = v4.local_addr()?.port();
        let v6 = match config.group_v6 {
            Some(group) => bind_v6(group, port, &config.interfaces_v6)
                .map_err(|e| log::info!("LocalSend: no IPv6 discovery: {e}"))
                .ok(),
            None => None,
        };
        Ok(Self { v4, v6 })
    }

    /// The UDP port both families listen on.
    pub(super) fn port(&self) -> std::io::Result<u16> {
        Ok(self.v4.local_addr()?.port())
    }
}

fn bind_v4(config: &MulticastConfig) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port).into())?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    // Only the groups joined here, on the interfaces joined: Linux otherwise hands this
    // socket the group's datagrams from every interface where any program joined it.
    #[cfg(target_os = "linux")]
    socket.set_multicast_all_v4(false)?;
    for iface in &config.interfaces {
        if let Err(e) = socket.join_multicast_v4(&config.group, iface) {
            log::warn!("LocalSend: cannot join {} on {iface}: {e}", config.group);
        }
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The IPv6 socket: IPv6 only (the IPv4 socket has the port's IPv4 side), hop limit 1, the
/// group joined on each interface index (one that refuses is logged and skipped).
fn bind_v6(group: Ipv6Addr, port: u16, interfaces: &[u32]) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    socket.set_multicast_loop_v6(true)?;
    socket.set_multicast_hops_v6(1)?;
    #[cfg(target_os = "linux")]
    socket.set_multicast_all_v6(false)?;
    for &index in interfaces {
        if let Err(e) = socket.join_multicast_v6(&group, index) {
            log::warn!("LocalSend: cannot join {group} on interface {index}: {e}");
        }
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The discovery sockets on the runtime, and the interfaces they use (IPv4 addresses, IPv6
/// indexes): each announced on, its group joined (a join that failed is warned of once
/// and tried again at each relist).
pub(super) struct Live {
    pub(super) v4: tokio::net::UdpSocket,
    pub(super) v6: Option<tokio::net::UdpSocket>,
    pub(super) joined: std::sync::Mutex<(Vec<Ipv4Addr>, Vec<u32>)>,
}

impl Live {
    /// The sockets on the runtime (which must be current), with the memberships joined at
    /// start.
    pub(super) fn new(sockets: Sockets, config: &MulticastConfig) -> std::io::Result<Live> {
        Ok(Live {
            v4: tokio::net::UdpSocket::from_std(sockets.v4)?,
            v6: sockets
                .v6
                .and_then(|v6| tokio::net::UdpSocket::from_std(v6).ok()),
            joined: std::sync::Mutex::new((
                config.interfaces.clone(),
                config.interfaces_v6.clone(),
            )),
        })
    }

    /// Leaves the groups on the interfaces no longer listed in `now`, and joins them on every
    /// one listed, not only those new: a leave may drop a membership that an address still
    /// listed shares (the kernel keeps one per interface, under the address that joined
    /// first, so an interface whose new address came before its old one left would go deaf),
    /// an interface may come back under the same address or index, and a join that failed is
    /// tried again. One that is a member already says so (`AddrInUse`). Whether an interface
    /// came, or got its membership back: it is announced on again.
    pub(super) fn follow(&self, config: &MulticastConfig, now: (Vec<Ipv4Addr>, Vec<u32>)) -> bool {
        let mut joined = lock(&self.joined);
        let mut added = false;
        let v4 = SockRef::from(&self.v4);
        for gone in joined.0.iter().filter(|addr| !now.0.contains(addr)) {
            // The address may be gone with its interface, and the membership with it.
            let _ = v4.leave_multicast_v4(&config.group, gone);
        }
        for addr in &now.0 {
            let new = !joined.0.contains(addr);
            let joining = v4.join_multicast_v4(&config.group, addr);
            added |= new || joining.is_ok();
            joined_or_said(joining, new, || format!("{} on {addr}", config.group));
        }
        if let (Some(socket), Some(group)) = (&self.v6, config.group_v6) {
            let v6 = SockRef::from(socket);
            for &gone in joined.1.iter().filter(|index| !now.1.contains(index)) {
                let _ = v6.leave_multicast_v6(&group, gone);
            }
            for &index in &now.1 {
                let new = !joined.1.contains(&index);
                let joining = v6.join_multicast_v6(&group, index);
                added |= new || joining.is_ok();
                joined_or_said(joining, new, || format!("{group} on interface {index}"));
            }
        }
        if *joined != now {
            log::info!(
                "LocalSend: discovery interfaces now {:?} and {:?}",
                now.0,
                now.1
            );
        }
        *joined = now;
        added
    }
}

/// Logs a join that failed (`AddrInUse`: a member already), as a warning the first time the
/// interface is listed and quietly when it is tried again every [`super::RELIST_EVERY`].
fn joined_or_said(joining: std::io::Result<()>, new: bool, what: impl Fn() -> String) {
    match joining {
        Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => match new {
            true => log::warn!("LocalSend: cannot join {}: {e}", what()),
            false => log::debug!("LocalSend: cannot join {} yet: {e}", what()),
        },
        _ => {}
    }
}
