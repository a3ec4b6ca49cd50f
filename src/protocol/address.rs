//! Which addresses a heard device may be listed at. A datagram's source address is whatever
//! its sender wrote (a raw socket can claim a multicast or broadcast source, and a forged
//! mDNS answer any address), so discovery lists a device, answers it or connects to it only
//! at an address that can be one host's: never an unspecified (`0.0.0.0`, `::`, or any
//! `0.x.x.x` "this network" address), multicast or broadcast one, in either family or
//! IPv4-mapped.

use std::net::IpAddr;

/// Whether `ip` can be one device's address (see the module doc).
pub fn is_device_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !(v4.octets()[0] == 0 || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_multicast_and_broadcast_addresses_are_no_devices() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.167",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "ff02::1",
            "ff12::fd3a:e420",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.251",
            "::ffff:255.255.255.255",
        ] {
            assert!(!is_device_address(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "192.168.1.20",
            "10.0.0.1",
            "127.0.0.1",
            "8.8.8.8",
            "fe80::1",
            "::1",
            "fd00::20",
            "::ffff:10.0.0.2",
        ] {
            assert!(is_device_address(good.parse().unwrap()), "{good}");
        }
    }
}
