//! Map keys and values shared by the XDP program and the daemon.

use core::mem::size_of;

/// Map names, as the loader looks them up in the object file.
pub const VIPS_MAP: &str = "VIPS";
pub const STATS_MAP: &str = "STATS";
pub const FLOWS_MAP: &str = "FLOWS";
pub const BACKENDS_MAP: &str = "BACKENDS";
pub const MAGLEV_MAP: &str = "MAGLEV";
pub const SETTINGS_MAP: &str = "SETTINGS";
pub const OWNED_ADDRS_MAP: &str = "OWNED_ADDRS";
/// The XDP entry point in the object file.
pub const XDP_PROGRAM: &str = "tether_xdp";
/// In the test object (`lb_user::TEST_OBJECT`): an XDP program that passes
/// everything, attached to test peers so that frames redirected into a veth are
/// not dropped (DESIGN.md §5) and the baseline the benchmark compares against;
/// and one that drops a share of frames, for lossy-link tests.
pub const XDP_PASS_PROGRAM: &str = "tether_pass";
pub const XDP_LOSSY_PROGRAM: &str = "tether_lossy";
pub const LOSS_PERMILLE_MAP: &str = "LOSS_PERMILLE";

/// Most VIPs one instance serves.
pub const MAX_VIPS: u32 = 1024;
/// Most farms, and backends over all farms.
pub const MAX_FARMS: u32 = 64;
pub const MAX_BACKENDS: u32 = 4096;
/// Slots in one farm's Maglev lookup table: a prime well above the number of
/// backends, as the Maglev paper asks (Eisenbud et al., NSDI 2016, §3.4).
pub const MAGLEV_RING: u32 = 65_537;
/// Flow-table entries; each connection takes two (one per direction).
pub const MAX_FLOWS: u32 = 1 << 20;
/// A Maglev slot or backend reference that names no backend.
pub const NO_BACKEND: u32 = u32::MAX;

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

/// Key of the `OWNED_ADDRS` hash map: an address the data path answers for.
/// Written by the daemon (every VIP address and every SNAT address); read by XDP
/// first, so traffic to any other address leaves after one small lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr_be: [u8; 16],
    /// `Family as u8`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<AddrKey>() == 20);

/// `OWNED_ADDRS` value bits: what an address is to the data path.
pub mod owned {
    /// Clients connect to it.
    pub const VIP: u32 = 1;
    /// Backends answer to it.
    pub const SNAT: u32 = 2;
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

/// Key of the `FLOWS` LRU map: a TCP packet's addresses and ports as it arrives.
/// A connection has two entries: client -> VIP, and backend -> SNAT address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr_be: [u8; 16],
    pub daddr_be: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    /// `Family as u8`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Value of `FLOWS`: how to rewrite packets of one direction of a connection.
/// Created by XDP when it binds a connection to a backend; `last_seen_ns` is
/// refreshed by XDP; expired and removed by the daemon's sweeper.
///
/// The other direction's key is the reply tuple of the rewritten packet:
/// `(new_daddr, new_saddr, new_dport, new_sport)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub new_saddr_be: [u8; 16],
    pub new_daddr_be: [u8; 16],
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    /// Index into `BACKENDS`.
    pub backend_id: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of creation and of the last packet,
    /// the latter refreshed at most once a second.
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// `FlowDirection as u8`.
    pub direction: u8,
    /// `flow_flags` bits.
    pub flags: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<Flow>() == 64);

/// `Flow::direction`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowDirection {
    /// Client -> VIP, rewritten to SNAT -> backend.
    ToBackend = 1,
    /// Backend -> SNAT, rewritten to VIP -> client.
    ToClient = 2,
}

impl TryFrom<u8> for FlowDirection {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(FlowDirection::ToBackend),
            2 => Ok(FlowDirection::ToClient),
            other => Err(other),
        }
    }
}

/// `Flow::flags` bits.
pub mod flow_flags {
    /// This direction has sent a FIN.
    pub const FIN: u8 = 0x01;
}

impl FlowKey {
    /// The key of the other direction: the reply to a packet rewritten by `flow`.
    pub const fn reply(flow: &Flow, family: u8) -> FlowKey {
        FlowKey {
            saddr_be: flow.new_daddr_be,
            daddr_be: flow.new_saddr_be,
            sport_be: flow.new_dport_be,
            dport_be: flow.new_sport_be,
            family,
            _pad: [0; 3],
        }
    }
}

/// Value of the `BACKENDS` array, indexed by backend id (the daemon numbers the
/// backends of all farms in config order). Written by the daemon; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr_be: [u8; 16],
    pub port_be: u16,
    /// `Family as u8`; 0 for an unused slot.
    pub family: u8,
    /// `BackendState as u8`.
    pub state: u8,
    pub farm_id: u32,
}
const _: () = assert!(size_of::<BackendInfo>() == 24);

/// `BackendInfo::state`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    Active = 1,
    Draining = 2,
    Disabled = 3,
}

/// The single entry of the `SETTINGS` array: instance-wide data-path knobs.
/// Written by the daemon before it attaches; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Source ports towards backends: `snat_port_min .. snat_port_min + snat_port_count`.
    pub snat_port_min: u32,
    pub snat_port_count: u32,
}
const _: () = assert!(size_of::<Settings>() == 8);

// SAFETY: these types are repr(C), made of integers and byte arrays with explicit
// padding fields, so every bit pattern is valid and there is no uninitialised byte.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipInfo {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AddrKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Flow {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendInfo {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Settings {}

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
