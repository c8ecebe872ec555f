//! The stateless handshake of `tls` VIPs (DESIGN.md §2, steps 1-2): a client's
//! SYN is answered from XDP with a SYN-ACK whose sequence number is a SYN cookie,
//! and the ACK that completes the handshake is checked against it. Nothing is
//! stored until the ClientHello arrives, so a SYN flood creates no state.

use aya_ebpf::{
    bindings::{iphdr, tcphdr, xdp_action},
    helpers::{
        bpf_ktime_get_ns, bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv4, bpf_xdp_adjust_head,
        bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    csum,
    maps::{Family, STASH_MAX},
    reason,
    tcpopt::{self, CookieOptions, HeaderBuf, SynOptions},
};

use crate::{
    parse::{IPV6_HLEN, Tcp, bytes_at, bytes_at_mut},
    verdict::Verdict,
};

/// Per-CPU room for a TCP header copy: the cookie helper needs the header in
/// memory whose size the verifier knows (DESIGN.md §5), and the SYN-ACK is
/// assembled here before it is written over the SYN.
#[map(name = "HEADER_SCRATCH")]
static HEADER_SCRATCH: PerCpuArray<HeaderBuf> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for the SYN's parsed options. VERIFIER: kept in map memory,
/// whose contents the verifier does not track; held in registers, every path
/// through the option walk was a distinct state and verification ran past its
/// one-million-instruction budget.
#[map(name = "SYN_OPTIONS")]
static SYN_OPTIONS: PerCpuArray<SynOptions> = PerCpuArray::with_max_entries(1, 0);

/// The per-CPU TCP header buffer (shared with delayed binding, which runs in
/// the same program run only after the handshake code is done with it).
#[inline(always)]
pub fn header_scratch() -> Option<&'static mut HeaderBuf> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    HEADER_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Copies the segment's TCP header into `buf` and returns its length.
#[inline(always)]
pub fn load_header(ctx: &XdpContext, pkt: &Tcp, buf: &mut HeaderBuf) -> Option<usize> {
    let fixed = bytes_at::<20>(ctx, pkt.l4_off)?;
    // VERIFIER: the length the helpers take must be provably 20-60. LLVM turns
    // `(b >> 4) * 4` into `(b >> 2) & 60` after the range check, and the
    // verifier loses the lower bound through the AND. A volatile read makes the
    // value opaque, so the check is made on the register the helpers receive.
    let computed = ((fixed[12] >> 4) as usize) * 4;
    // SAFETY: reading a local.
    let header_len = unsafe { core::ptr::read_volatile(&computed) };
    if !(20..=60).contains(&header_len) {
        return None;
    }
    // SAFETY: buf is 64 bytes and header_len is at most 60.
    let rc = unsafe {
        bpf_xdp_load_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, header_len as u32)
    };
    (rc == 0).then_some(header_len)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const IPPROTO_TCP: u8 = 6;
const SYN_ACK_TTL: u8 = 64;
/// The receive window in our SYN-ACK (never scaled in a SYN, RFC 7323 §2.2).
const SYN_ACK_WINDOW: u16 = 65_535;

/// Rewrites the client's SYN (IPv4) into our SYN-ACK in place: addresses,
/// ports and MACs swapped, seq = cookie, options mirrored, same header length.
// VERIFIER: not inlined; the header work gets its own stack frame.
#[inline(never)]
pub fn syn_ack_v4(ctx: &XdpContext, pkt: &Tcp) -> Verdict {
    match build_syn_ack_v4(ctx, pkt) {
        Some(()) => Verdict::send(reason::VIP_SYN, xdp_action::XDP_TX),
        None => Verdict::drop(reason::DROP_SYN_COOKIE),
    }
}

#[inline(always)]
fn build_syn_ack_v4(ctx: &XdpContext, pkt: &Tcp) -> Option<()> {
    let buf = header_scratch()?;
    let header_len = load_header(ctx, pkt, buf)?;
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?;
    // SAFETY: ip points at 20 checked bytes of the packet; buf holds header_len
    // bytes of TCP header, as the helper requires.
    let cookie = unsafe {
        bpf_tcp_raw_gen_syncookie_ipv4(
            ip.as_mut_ptr() as *mut iphdr,
            buf.as_mut_ptr() as *mut tcphdr,
            header_len as u32,
        )
    };
    if cookie < 0 {
        return None;
    }
    let mss = ((cookie >> 32) & 0xFFFF) as u16;
    let cookie = cookie as u32;

    // SAFETY: per-CPU scratch, as above.
    let client = unsafe { &mut *SYN_OPTIONS.get_ptr_mut(0)? };
    crate::mem::reset_syn_options(client);
    tcpopt::parse_syn_into(buf, header_len, client);
    let client_seq = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    // SAFETY: no preconditions.
    let now_ms = (unsafe { bpf_ktime_get_ns() } / 1_000_000) as u32;
    let mut choices = CookieOptions::from_syn(client, mss);
    if !tcpopt::syn_ack_offers_wscale(header_len, client) {
        // A SYN too short for every option we answer with (no MSS option,
        // say): the client leg is unscaled, and the cookie must say so.
        choices.wscale = None;
    }
    let tsval = tcpopt::encode_tsval(now_ms, &choices);
    let (sport, dport) = ([buf[0], buf[1]], [buf[2], buf[3]]);
    buf[0..2].copy_from_slice(&dport);
    buf[2..4].copy_from_slice(&sport);
    buf[4..8].copy_from_slice(&cookie.to_be_bytes());
    buf[8..12].copy_from_slice(&client_seq.wrapping_add(1).to_be_bytes());
    buf[12] = ((header_len / 4) as u8) << 4;
    buf[13] = SYN | ACK;
    buf[14..16].copy_from_slice(&SYN_ACK_WINDOW.to_be_bytes());
    buf[16..20].copy_from_slice(&[0, 0, 0, 0]);
    tcpopt::write_syn_ack(buf, header_len, mss, client, tsval);

    // The reply goes from the VIP (the SYN's destination) to the client.
    let mut sum = tcpopt::sum_words(buf, header_len);
    sum += u16::from_ne_bytes([ip[16], ip[17]]) as u32 + u16::from_ne_bytes([ip[18], ip[19]]) as u32;
    sum += u16::from_ne_bytes([ip[12], ip[13]]) as u32 + u16::from_ne_bytes([ip[14], ip[15]]) as u32;
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32 + u16::from_ne_bytes((header_len as u16).to_be_bytes()) as u32;
    let tcp_csum = !csum::fold(csum::fold(sum) as u32);
    buf[16..18].copy_from_slice(&tcp_csum.to_ne_bytes());

    // Any payload the SYN carried (TCP Fast Open data we do not take) goes.
    let (old_total, new_total) = turn_ip_around(ip, header_len);

    // SAFETY: buf holds header_len (<= 60) bytes; the packet has them at l4_off.
    let rc = unsafe {
        bpf_xdp_store_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, header_len as u32)
    };
    if rc != 0 {
        return None;
    }
    swap_macs(ctx)?;
    // Cut the SYN's payload; Ethernet padding past the IP length may stay.
    shrink(ctx, old_total, new_total)
}

/// An IPv4 header turned into the reply's: addresses swapped (the header
/// checksum does not change), TTL reset, total length for a TCP header of
/// `tcp_len` bytes and no data. Returns the old and new total lengths.
#[inline(always)]
fn turn_ip_around(ip: &mut [u8; 20], tcp_len: usize) -> (usize, usize) {
    let ip_hlen = ((ip[0] & 0x0F) as usize) * 4;
    let old_total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let new_total = ip_hlen + tcp_len;
    let mut ip_csum = u16::from_ne_bytes([ip[10], ip[11]]);
    ip_csum = csum::update16(ip_csum, u16::from_ne_bytes([ip[8], ip[9]]), u16::from_ne_bytes([SYN_ACK_TTL, ip[9]]));
    ip_csum = csum::update16(
        ip_csum,
        u16::from_ne_bytes([ip[2], ip[3]]),
        u16::from_ne_bytes((new_total as u16).to_be_bytes()),
    );
    ip[8] = SYN_ACK_TTL;
    ip[2..4].copy_from_slice(&(new_total as u16).to_be_bytes());
    ip[10..12].copy_from_slice(&ip_csum.to_ne_bytes());
    let (src, dst) = ([ip[12], ip[13], ip[14], ip[15]], [ip[16], ip[17], ip[18], ip[19]]);
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    (old_total, new_total)
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let eth = bytes_at_mut::<12>(ctx, 0)?;
    let (dst_mac, src_mac) =
        ([eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]], [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]]);
    eth[0..6].copy_from_slice(&src_mac);
    eth[6..12].copy_from_slice(&dst_mac);
    Some(())
}

const RST: u8 = 0x04;

/// Answers a client's segment (IPv4, to a VIP) with an RST from the VIP, in
/// place: addresses, ports and MACs swapped, sequence number = the client's
/// acknowledgement (what it expects from us next, so it takes the RST),
/// acknowledging its data, no options, no data. Sent back with XDP_TX.
// VERIFIER: not inlined, like `syn_ack_v4`.
#[inline(never)]
pub fn reset_v4(ctx: &XdpContext, pkt: &Tcp, why: u32) -> Verdict {
    match build_reset_v4(ctx, pkt) {
        Some(()) => Verdict::send(why, xdp_action::XDP_TX),
        None => Verdict::drop(why),
    }
}

/// The TCP header of the RST that answers `pkt`, in the per-CPU header
/// scratch, its checksum left zero: ports swapped, sequence number = the
/// client's acknowledgement, acknowledging its data.
#[inline(always)]
fn reset_header(ctx: &XdpContext, pkt: &Tcp) -> Option<&'static mut HeaderBuf> {
    let data_len = payload(ctx, pkt).map_or(0, |(_, len)| len) as u32;
    let buf = header_scratch()?;
    let tcp = bytes_at::<20>(ctx, pkt.l4_off)?;
    let (sport, dport) = ([tcp[0], tcp[1]], [tcp[2], tcp[3]]);
    buf[0..2].copy_from_slice(&dport);
    buf[2..4].copy_from_slice(&sport);
    buf[4..8].copy_from_slice(&pkt.ack.to_be_bytes());
    buf[8..12].copy_from_slice(&pkt.seq.wrapping_add(data_len).to_be_bytes());
    buf[12] = 5 << 4;
    buf[13] = RST | ACK;
    // Window, checksum (filled by the caller), urgent pointer: zero.
    // VERIFIER: volatile byte stores; plain ones LLVM merges into a
    // `memset` call (see `mem`).
    for b in &mut buf[14..20] {
        // SAFETY: a byte of the scratch buffer.
        unsafe { core::ptr::write_volatile(b, 0) };
    }
    Some(buf)
}

#[inline(always)]
fn build_reset_v4(ctx: &XdpContext, pkt: &Tcp) -> Option<()> {
    let buf = reset_header(ctx, pkt)?;
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?;
    let mut sum = tcpopt::sum_words(buf, 20);
    sum += u16::from_ne_bytes([ip[16], ip[17]]) as u32 + u16::from_ne_bytes([ip[18], ip[19]]) as u32;
    sum += u16::from_ne_bytes([ip[12], ip[13]]) as u32 + u16::from_ne_bytes([ip[14], ip[15]]) as u32;
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32 + u16::from_ne_bytes(20u16.to_be_bytes()) as u32;
    let tcp_csum = !csum::fold(csum::fold(sum) as u32);
    buf[16..18].copy_from_slice(&tcp_csum.to_ne_bytes());
    let (old_total, new_total) = turn_ip_around(ip, 20);
    // SAFETY: buf holds 20 bytes of TCP header; the packet has at least 20 at l4_off.
    let rc = unsafe { bpf_xdp_store_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, 20) };
    if rc != 0 {
        return None;
    }
    swap_macs(ctx)?;
    shrink(ctx, old_total, new_total)
}

/// As `reset_v4`, for an IPv6 client (a `tcp` VIP's): addresses, ports and
/// MACs swapped, hop limit reset, the same sequence and acknowledgement
/// numbers. A segment with extension headers before TCP is dropped
/// unanswered (`why` is counted either way).
// VERIFIER: not inlined, like `reset_v4`.
#[inline(never)]
pub fn reset_v6(ctx: &XdpContext, pkt: &Tcp, why: u32) -> Verdict {
    match build_reset_v6(ctx, pkt) {
        Some(()) => Verdict::send(why, xdp_action::XDP_TX),
        None => Verdict::drop(why),
    }
}

#[inline(always)]
fn build_reset_v6(ctx: &XdpContext, pkt: &Tcp) -> Option<()> {
    if pkt.l4_off != pkt.l3_off + IPV6_HLEN {
        return None;
    }
    let buf = reset_header(ctx, pkt)?;
    let ip = bytes_at_mut::<IPV6_HLEN>(ctx, pkt.l3_off)?;
    // RFC 8200 §8.1: the pseudo-header is both addresses, the upper-layer
    // length (20) and the next header (6); the sum does not depend on the
    // addresses' order.
    let mut sum = tcpopt::sum_words(buf, 20);
    for i in (8..IPV6_HLEN).step_by(2) {
        sum += u16::from_ne_bytes([ip[i], ip[i + 1]]) as u32;
    }
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32 + u16::from_ne_bytes(20u16.to_be_bytes()) as u32;
    let tcp_csum = !csum::fold(csum::fold(sum) as u32);
    buf[16..18].copy_from_slice(&tcp_csum.to_ne_bytes());
    let old_total = IPV6_HLEN + u16::from_be_bytes([ip[4], ip[5]]) as usize;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[7] = SYN_ACK_TTL;
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[24..40]);
    ip[8..24].copy_from_slice(&dst);
    ip[24..40].copy_from_slice(&src);
    // SAFETY: buf holds 20 bytes of TCP header; the packet has at least 20 at l4_off.
    let rc = unsafe { bpf_xdp_store_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, 20) };
    if rc != 0 {
        return None;
    }
    swap_macs(ctx)?;
    shrink(ctx, old_total, IPV6_HLEN + 20)
}

/// Cuts a packet whose IP total length went from `old_total` to
/// `new_total` (never longer). Packet pointers are invalid afterwards.
#[inline(always)]
pub fn shrink(ctx: &XdpContext, old_total: usize, new_total: usize) -> Option<()> {
    if old_total > new_total {
        // VERIFIER: computed from header fields, not from data_end (arithmetic
        // on pkt_end is forbidden).
        let cut = (old_total - new_total) as i32;
        // SAFETY: shrinking never fails for lack of room.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -cut) } != 0 {
            return None;
        }
    }
    Some(())
}

/// Per-CPU room for the link and IP headers `grow_front` moves.
#[map(name = "MOVE_SCRATCH")]
static MOVE_SCRATCH: PerCpuArray<[u8; MOVE_MAX]> = PerCpuArray::with_max_entries(1, 0);
/// Ethernet, a VLAN tag and an IPv4 header with options.
const MOVE_MAX: usize = 128;

/// Makes the IPv4 packet `delta` bytes longer at the front of its TCP
/// segment: the frame grows into its headroom and the link and IP headers
/// move to the new start, so the TCP header starts where it did with
/// `delta` more bytes after it (the first `delta` are stale), and the IP
/// total length says so. Frames on veth have headroom but no tailroom
/// (DESIGN.md §5).
#[inline(always)]
pub fn grow_front(ctx: &XdpContext, pkt: &Tcp, delta: usize) -> Option<()> {
    let buf = MOVE_SCRATCH.get_ptr_mut(0)?;
    let computed = pkt.l4_off;
    // SAFETY: reading a local. VERIFIER: both lengths opaque, so the range
    // checks hold on the registers the helpers receive.
    let headers = unsafe { core::ptr::read_volatile(&computed) };
    let computed = delta;
    let delta = unsafe { core::ptr::read_volatile(&computed) };
    if headers == 0 || headers > MOVE_MAX || delta == 0 || delta > 64 {
        return None;
    }
    // SAFETY: growing into the headroom; the helpers bound every access.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) != 0 {
            return None;
        }
        if bpf_xdp_load_bytes(ctx.ctx as *mut _, delta as u32, buf as *mut _, headers as u32) != 0 {
            return None;
        }
        if bpf_xdp_store_bytes(ctx.ctx as *mut _, 0, buf as *mut _, headers as u32) != 0 {
            return None;
        }
    }
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?;
    let old = u16::from_be_bytes([ip[2], ip[3]]);
    let new = old.wrapping_add(delta as u16);
    let check = csum::update16(u16::from_ne_bytes([ip[10], ip[11]]), old.to_be(), new.to_be());
    ip[2..4].copy_from_slice(&new.to_be_bytes());
    ip[10..12].copy_from_slice(&check.to_ne_bytes());
    Some(())
}

/// Whether an ACK to a VIP completes a handshake we answered: its
/// acknowledgement number must be a valid cookie for its addresses and ports.
// VERIFIER: inlined. As a separate function that uses the context only for
// data/data_end, LLVM passed those as 32-bit integers and widened them with
// shifts, and the verifier forbids shifting packet pointers.
#[inline(always)]
pub fn cookie_valid_v4(ctx: &XdpContext, pkt: &Tcp) -> bool {
    let Some(ip) = bytes_at_mut::<20>(ctx, pkt.l3_off) else { return false };
    let ip = ip.as_mut_ptr();
    let Some(th) = bytes_at_mut::<20>(ctx, pkt.l4_off) else { return false };
    // SAFETY: both pointers cover the 20 checked bytes the helper reads.
    unsafe { bpf_tcp_raw_check_syncookie_ipv4(ip as *mut iphdr, th.as_mut_ptr() as *mut tcphdr) == 0 }
}

/// Whether a segment carries data beyond its TCP header.
#[inline(always)]
pub fn has_payload(ctx: &XdpContext, pkt: &Tcp) -> bool {
    payload_offset(ctx, pkt).is_some()
}

/// Where a segment's data starts in the frame, if it has any.
#[inline(always)]
pub fn payload_offset(ctx: &XdpContext, pkt: &Tcp) -> Option<usize> {
    payload(ctx, pkt).map(|(offset, _)| offset)
}

/// Copies the segment's data, its first `STASH_MAX` bytes if it is longer,
/// into `buf`, and returns how many bytes that is; None for a segment
/// without data (or if the helper failed).
#[inline(always)]
pub fn load_payload(ctx: &XdpContext, pkt: &Tcp, buf: &mut [u8; STASH_MAX]) -> Option<usize> {
    let (offset, available) = payload(ctx, pkt)?;
    // VERIFIER: the range check must be on the register the helper gets.
    // SAFETY: reading a local.
    let len = unsafe { core::ptr::read_volatile(&available) };
    if len == 0 {
        return None;
    }
    let len = if len > STASH_MAX { STASH_MAX } else { len };
    // SAFETY: `buf` has STASH_MAX writable bytes; 1 <= len <= STASH_MAX.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx as *mut _, offset as u32, buf.as_mut_ptr() as *mut _, len as u32) };
    (rc == 0).then_some(len)
}

/// Where a segment's data starts in the frame and how long it is (by the IP
/// header: a short frame's Ethernet padding is not data), if it has any.
#[inline(always)]
pub fn payload(ctx: &XdpContext, pkt: &Tcp) -> Option<(usize, usize)> {
    let (Some(ip), Some(tcp)) = (bytes_at::<6>(ctx, pkt.l3_off), bytes_at::<13>(ctx, pkt.l4_off)) else {
        return None;
    };
    // IPv4's total length counts its header; IPv6's payload length does not.
    let total = match pkt.family {
        Family::Ipv4 => u16::from_be_bytes([ip[2], ip[3]]) as usize,
        Family::Ipv6 => IPV6_HLEN + u16::from_be_bytes([ip[4], ip[5]]) as usize,
    };
    let headers = (pkt.l4_off - pkt.l3_off) + ((tcp[12] >> 4) as usize) * 4;
    (total > headers).then_some((pkt.l3_off + headers, total - headers))
}
