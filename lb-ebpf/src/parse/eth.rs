//! Ethernet II with at most one 802.1Q / 802.1ad tag.

use aya_ebpf::programs::XdpContext;
use lb_common::reason;

use super::bytes_at;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

pub struct L2 {
    pub ether_type: u16,
    pub l3_off: usize,
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<L2, u32> {
    let eth = bytes_at::<ETH_HLEN>(ctx, 0).ok_or(reason::PASS_NOT_IP)?;
    let ether_type = u16::from_be_bytes([eth[12], eth[13]]);
    if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
        return Ok(L2 { ether_type, l3_off: ETH_HLEN });
    }
    // The tag's TCI, then the encapsulated type.
    let tag = bytes_at::<VLAN_HLEN>(ctx, ETH_HLEN).ok_or(reason::PASS_TRUNCATED)?;
    Ok(L2 { ether_type: u16::from_be_bytes([tag[2], tag[3]]), l3_off: ETH_HLEN + VLAN_HLEN })
}
