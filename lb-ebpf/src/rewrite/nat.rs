//! Full NAT: replace both addresses and both ports, updating the IPv4 header
//! checksum and the TCP checksum (whose pseudo-header covers the addresses)
//! incrementally (RFC 1624).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Flow,
    csum::{Delta, update32},
    maps::Family,
};

use crate::parse::{Tcp, bytes_at_mut, word};

/// Offset of the checksum in the TCP header.
const TCP_CSUM: usize = 16;

/// Rewrites `pkt` as `flow` says. None if the headers moved out of reach, which
/// the parser already ruled out.
// VERIFIER: not inlined: the entry functions' frames have no room for its
// own (see `rewrite_v6_addrs`).
#[inline(never)]
pub fn apply(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<()> {
    let change = rewrite(ctx, pkt, flow)?;
    write_tcp_checksum(ctx, pkt, change)
}

/// `apply` for an IPv4 segment, inlined: the established path of a `tcp`
/// VIP saves a call per packet.
#[inline(always)]
pub fn apply_v4(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<()> {
    let change = rewrite_v4(ctx, pkt, flow)?;
    write_tcp_checksum(ctx, pkt, change)
}

#[inline(always)]
fn write_tcp_checksum(ctx: &XdpContext, pkt: &Tcp, change: Delta) -> Option<()> {
    let tcp = bytes_at_mut::<20>(ctx, pkt.l4_off)?.as_mut_ptr();
    // SAFETY: the checksum (16..18) of the 20 bytes bounded.
    unsafe { word::store16(tcp.add(TCP_CSUM), change.apply(word::load16(tcp.add(TCP_CSUM)))) };
    Some(())
}

/// Rewrites the addresses (with the IPv4 header checksum) and the ports, and
/// returns the change to the TCP checksum, for the caller to apply.
#[inline(always)]
fn rewrite(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<Delta> {
    let addrs = match pkt.family {
        Family::Ipv4 => rewrite_v4_addrs(ctx, pkt, flow)?,
        Family::Ipv6 => rewrite_v6_addrs(ctx, pkt, flow)?,
    };
    rewrite_ports(ctx, pkt, flow, addrs)
}

/// `rewrite` for an IPv4 segment, whose caller applies the change with its
/// own: the splice rewrite writes the checksum once for NAT and splice
/// together. (Spliced connections are IPv4: `tls` VIPs are, so the IPv6
/// rewrite is left out of their code.)
#[inline(always)]
pub fn rewrite_v4(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<Delta> {
    if pkt.family != Family::Ipv4 {
        return None;
    }
    let addrs = rewrite_v4_addrs(ctx, pkt, flow)?;
    rewrite_ports(ctx, pkt, flow, addrs)
}

/// Writes the ports and adds their change to `addrs`, the addresses'.
#[inline(always)]
fn rewrite_ports(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, addrs: Delta) -> Option<Delta> {
    let tcp = bytes_at_mut::<20>(ctx, pkt.l4_off)?.as_mut_ptr();
    // SAFETY: ports (0..4) of the 20 bytes bounded.
    unsafe {
        word::store16(tcp, flow.new_sport_be);
        word::store16(tcp.add(2), flow.new_dport_be);
    }
    Some(addrs.add16(pkt.key.sport_be, flow.new_sport_be).add16(pkt.key.dport_be, flow.new_dport_be))
}

/// Rewrites the addresses (and the IPv4 header checksum) and returns their
/// part of the TCP checksum's change (the pseudo-header covers them), which
/// `rewrite_ports` adds to the ports'.
#[inline(always)]
fn rewrite_v4_addrs(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<Delta> {
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?.as_mut_ptr();
    let (new_src, new_dst) = new_v4_addrs(flow);
    // SAFETY: checksum (10..12) and addresses (12..20) of the 20 bytes bounded.
    unsafe {
        let (old_src, old_dst) = (word::load32(ip.add(12)), word::load32(ip.add(16)));
        let ip_csum = update32(update32(word::load16(ip.add(10)), old_src, new_src), old_dst, new_dst);
        word::store16(ip.add(10), ip_csum);
        word::store32(ip.add(12), new_src);
        word::store32(ip.add(16), new_dst);
        Some(Delta::NONE.add32(old_src, new_src).add32(old_dst, new_dst))
    }
}

/// The new IPv4 addresses of `flow`, as `u32::from_ne_bytes` of their four
/// bytes, a load each: LLVM cannot tell that a `[u8; 16]` field is aligned,
/// and assembled each from three loads.
#[inline(always)]
fn new_v4_addrs(flow: &Flow) -> (u32, u32) {
    // SAFETY: both fields hold at least 4 bytes, at 4-aligned offsets of the
    // 8-aligned `Flow` (asserted below).
    unsafe {
        let src = (flow.new_saddr_be.as_ptr() as *const u32).read();
        let dst = (flow.new_daddr_be.as_ptr() as *const u32).read();
        (src, dst)
    }
}
const _: () = assert!(
    core::mem::offset_of!(Flow, new_saddr_be) % 4 == 0
        && core::mem::offset_of!(Flow, new_daddr_be) % 4 == 0
        && align_of::<Flow>() >= 4
);

/// VERIFIER: a word at a time, in place. With copies of the old addresses
/// on the stack `apply`'s frame was 232 bytes, and `tether_xdp_learn` (280
/// bytes with the splice rewrite inlined) calls it: a call chain has 512
/// bytes in all.
#[inline(always)]
fn rewrite_v6_addrs(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<Delta> {
    let ip = bytes_at_mut::<40>(ctx, pkt.l3_off)?.as_mut_ptr();
    let mut change = Delta::NONE;
    // VERIFIER: a constant trip count; unrolled by the compiler.
    for i in 0..4 {
        let (s, d) = (&flow.new_saddr_be[4 * i..4 * i + 4], &flow.new_daddr_be[4 * i..4 * i + 4]);
        let new_src = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
        let new_dst = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
        // SAFETY: source (8..24) and destination (24..40) of the 40 bytes bounded.
        unsafe {
            let (src, dst) = (ip.add(8 + 4 * i), ip.add(24 + 4 * i));
            change = change.add32(word::load32(src), new_src).add32(word::load32(dst), new_dst);
            word::store32(src, new_src);
            word::store32(dst, new_dst);
        }
    }
    Some(change)
}
