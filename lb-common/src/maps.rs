//! Map keys and values shared by the XDP program and the daemon.

use core::mem::size_of;

/// Map names, as the loader looks them up in the object file.
pub const VIPS_MAP: &str = "VIPS";
pub const STATS_MAP: &str = "STATS";
/// The XDP entry point in the object file.
pub const XDP_PROGRAM: &str = "tether_xdp";
/// An XDP program that passes everything: attached to test peers so that frames
/// redirected into a veth are not dropped (DESIGN.md §5), and the baseline the
/// benchmark compares against.
pub const XDP_PASS_PROGRAM: &str = "tether_pass";

/// Most VIPs one instance serves.
pub const MAX_VIPS: u32 = 1024;

/// Address family, as stored in `VipKey::family`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4 = 4,
    Ipv6 = 6,
}

impl TryFrom<u8> for Family {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            4 => Ok(Family::Ipv4),
            6 => Ok(Family::Ipv6),
            other => Err(other),
        }
    }
}

/// What a VIP does with a connection, as stored in `VipInfo::protocol`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Delayed binding on the ClientHello, TLS session persistence.
    Tls = 1,
    /// Backend chosen at SYN, plain full NAT.
    Tcp = 2,
}

impl TryFrom<u8> for Protocol {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Protocol::Tls),
            2 => Ok(Protocol::Tcp),
            other => Err(other),
        }
    }
}

/// Key of the `VIPS` hash map: destination address and port of a packet.
/// Written by the daemon at start and reload; read by XDP on every TCP packet.
///
/// IPv4 addresses sit in the first four bytes of `addr_be`, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr_be: [u8; 16],
    pub port_be: u16,
    /// `Family as u8`.
    pub family: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<VipKey>() == 20);

impl VipKey {
    pub const fn v4(addr_be: [u8; 4], port_be: u16) -> Self {
        let mut addr = [0u8; 16];
        addr[0] = addr_be[0];
        addr[1] = addr_be[1];
        addr[2] = addr_be[2];
        addr[3] = addr_be[3];
        VipKey { addr_be: addr, port_be, family: Family::Ipv4 as u8, _pad: 0 }
    }

    pub const fn v6(addr_be: [u8; 16], port_be: u16) -> Self {
        VipKey { addr_be, port_be, family: Family::Ipv6 as u8, _pad: 0 }
    }
}

/// Value of the `VIPS` map. Written by the daemon; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipInfo {
    /// Index of the VIP in the daemon's configuration, for per-VIP counters.
    pub vip_id: u32,
    /// Index of the farm serving the VIP.
    pub farm_id: u32,
    /// Source address towards the backends (`snat`), same layout as `VipKey`.
    pub snat_be: [u8; 16],
    /// `Protocol as u8`.
    pub protocol: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<VipInfo>() == 28);

// SAFETY: both types are repr(C), made of integers and byte arrays with explicit
// padding fields, so every bit pattern is valid and there is no uninitialised byte.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipInfo {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_key_keeps_the_rest_of_the_address_zero() {
        let k = VipKey::v4([198, 18, 100, 100], 443u16.to_be());
        assert_eq!(&k.addr_be[..4], &[198, 18, 100, 100]);
        assert!(k.addr_be[4..].iter().all(|b| *b == 0));
        assert_eq!(Family::try_from(k.family), Ok(Family::Ipv4));
    }

    #[test]
    fn raw_values_round_trip_and_reject_unknowns() {
        assert_eq!(Protocol::try_from(Protocol::Tls as u8), Ok(Protocol::Tls));
        assert_eq!(Protocol::try_from(Protocol::Tcp as u8), Ok(Protocol::Tcp));
        assert_eq!(Protocol::try_from(0), Err(0));
        assert_eq!(Family::try_from(5), Err(5));
    }
}
