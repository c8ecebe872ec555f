//! Header parsing: Ethernet (one VLAN tag), IPv4 (with options), IPv6 (with a few
//! extension headers), TCP. The result is a plain struct of offsets and keys;
//! later stages never re-read the headers.

mod eth;
mod ip;
mod tcp;

use aya_ebpf::programs::XdpContext;
use lb_common::{VipKey, maps::Family};

/// A TCP segment's facts that lookups need.
pub struct Tcp {
    pub family: Family,
    /// Destination address, IPv4 in the first four bytes.
    pub dst_be: [u8; 16],
    pub dst_port_be: u16,
    /// TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
}

impl Tcp {
    pub fn vip_key(&self) -> VipKey {
        VipKey { addr_be: self.dst_be, port_be: self.dst_port_be, family: self.family as u8, _pad: 0 }
    }

    /// A connection-opening SYN: SYN set, ACK clear.
    pub fn is_syn(&self) -> bool {
        self.flags & (tcp::SYN | tcp::ACK) == tcp::SYN
    }
}

/// Parses a frame down to its TCP header, or says (as a `reason`) why not.
#[inline(always)]
pub fn headers(ctx: &XdpContext) -> Result<Tcp, u32> {
    let l2 = eth::parse(ctx)?;
    let l3 = match l2.ether_type {
        eth::ETH_P_IPV4 => ip::parse_v4(ctx, l2.l3_off)?,
        eth::ETH_P_IPV6 => ip::parse_v6(ctx, l2.l3_off)?,
        _ => return Err(lb_common::reason::PASS_NOT_IP),
    };
    let l4 = tcp::parse(ctx, l3.l4_off)?;
    Ok(Tcp {
        family: l3.family,
        dst_be: l3.dst_be,
        dst_port_be: l4.dst_port_be,
        flags: l4.flags,
    })
}

/// A pointer to `len` bytes at `off`, if they lie inside the frame.
///
/// VERIFIER: the comparison against `data_end` has to be made on the very pointer
/// that is later dereferenced, so every header read goes through here.
#[inline(always)]
pub fn bytes_at<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return None;
    }
    // SAFETY: bounds checked against data_end just above; packet memory is
    // readable for the program's run and u8 has no alignment requirement.
    Some(unsafe { &*((start + off) as *const [u8; N]) })
}
