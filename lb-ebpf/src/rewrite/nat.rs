//! Full NAT: replace both addresses and both ports, updating the IPv4 header
//! checksum and the TCP checksum (whose pseudo-header covers the addresses)
//! incrementally (RFC 1624).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Flow,
    csum::{update16, update32, update128},
    maps::Family,
};

use crate::parse::{Tcp, bytes_at_mut};

/// Offset of the checksum in the TCP header.
const TCP_CSUM: usize = 16;

/// Rewrites `pkt` as `flow` says. None if the headers moved out of reach, which
/// the parser already ruled out.
// VERIFIER: not inlined; with the IPv6 address copies inlined into the entry
// function its frame passed 512 bytes.
#[inline(never)]
pub fn apply(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<()> {
    let addr_delta = match pkt.family {
        Family::Ipv4 => rewrite_v4_addrs(ctx, pkt, flow)?,
        Family::Ipv6 => rewrite_v6_addrs(ctx, pkt, flow)?,
    };
    let tcp = bytes_at_mut::<20>(ctx, pkt.l4_off)?;
    let old_csum = u16::from_ne_bytes([tcp[TCP_CSUM], tcp[TCP_CSUM + 1]]);
    let mut tcp_csum = update_fold(addr_delta, old_csum);
    tcp_csum = update16(tcp_csum, pkt.key.sport_be, flow.new_sport_be);
    tcp_csum = update16(tcp_csum, pkt.key.dport_be, flow.new_dport_be);
    tcp[0..2].copy_from_slice(&flow.new_sport_be.to_ne_bytes());
    tcp[2..4].copy_from_slice(&flow.new_dport_be.to_ne_bytes());
    tcp[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&tcp_csum.to_ne_bytes());
    Some(())
}

/// The address part of the TCP checksum change is computed while the IP header
/// is at hand; it is returned as a "delta checksum" starting from 0xFFFF (the
/// checksum of nothing) and merged into the real one by `update_fold`.
#[inline(always)]
fn rewrite_v4_addrs(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<u16> {
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?;
    let old_src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let old_dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let s = &flow.new_saddr_be;
    let d = &flow.new_daddr_be;
    let new_src = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
    let new_dst = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
    let mut ip_csum = u16::from_ne_bytes([ip[10], ip[11]]);
    ip_csum = update32(update32(ip_csum, old_src, new_src), old_dst, new_dst);
    ip[10..12].copy_from_slice(&ip_csum.to_ne_bytes());
    ip[12..16].copy_from_slice(&s[..4]);
    ip[16..20].copy_from_slice(&d[..4]);
    Some(update32(update32(0xFFFF, old_src, new_src), old_dst, new_dst))
}

#[inline(always)]
fn rewrite_v6_addrs(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<u16> {
    let ip = bytes_at_mut::<40>(ctx, pkt.l3_off)?;
    let mut old_src = [0u8; 16];
    old_src.copy_from_slice(&ip[8..24]);
    let mut old_dst = [0u8; 16];
    old_dst.copy_from_slice(&ip[24..40]);
    ip[8..24].copy_from_slice(&flow.new_saddr_be);
    ip[24..40].copy_from_slice(&flow.new_daddr_be);
    Some(update128(update128(0xFFFF, &old_src, &flow.new_saddr_be), &old_dst, &flow.new_daddr_be))
}

/// Applies a delta checksum (see `rewrite_v4_addrs`) to a real one: both are
/// complements of sums, so the sums add.
#[inline(always)]
fn update_fold(delta: u16, check: u16) -> u16 {
    !lb_common::csum::fold(!check as u32 + !delta as u32)
}
