//! Header parsing: Ethernet (one VLAN tag), IPv4 (with options), IPv6 (with a few
//! extension headers), TCP. The result is a plain struct of offsets and keys;
//! later stages never re-read the headers.

mod eth;
mod ip;
mod tcp;

use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, VipKey, maps::Family};

pub use ip::IPV6_HLEN;
pub use tcp::{ACK, FIN, RST, SYN};

/// A TCP segment's facts that lookups and rewrites need.
pub struct Tcp {
    pub family: Family,
    /// Addresses (IPv4 in the first four bytes) and ports as they arrived: the
    /// flow-table key.
    pub key: FlowKey,
    /// Sequence and acknowledgement numbers, host order.
    pub seq: u32,
    pub ack: u32,
    /// TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
    /// Offsets from the start of the frame of the IP and TCP headers.
    pub l3_off: usize,
    pub l4_off: usize,
}

impl Tcp {
    pub fn vip_key(&self) -> VipKey {
        VipKey { addr_be: self.key.daddr_be, port_be: self.key.dport_be, family: self.key.family, _pad: 0 }
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
        key: FlowKey {
            saddr_be: l3.src_be,
            daddr_be: l3.dst_be,
            sport_be: l4.src_port_be,
            dport_be: l4.dst_port_be,
            family: l3.family as u8,
            _pad: [0, 0, 0],
        },
        seq: l4.seq,
        ack: l4.ack,
        flags: l4.flags,
        l3_off: l2.l3_off,
        l4_off: l3.l4_off,
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

/// A writable view of `N` bytes at `off`; for the rewrite stage only.
#[inline(always)]
pub fn bytes_at_mut<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&mut [u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return None;
    }
    // SAFETY: as in `bytes_at`; XDP packet memory is writable, and no other
    // reference into it is alive while the rewrite holds this one.
    Some(unsafe { &mut *((start + off) as *mut [u8; N]) })
}

/// Header fields a word at a time. LLVM's BPF backend cannot tell that a
/// field of a frame is aligned (a frame's headers sit at offsets 14, 34 ...
/// from wherever the driver put it), so it reads and writes a 4-byte field
/// as four bytes, with shifts and ors to join them (785 of the 1,164 loads
/// in `tether_xdp` as the kernel verified it were single bytes). Packet
/// access has no alignment rule where tether runs (the verifier checks it
/// only on architectures without efficient unaligned access, or in strict
/// mode), so these say it in one instruction each. Callers pass a pointer that
/// `bytes_at` or `bytes_at_mut` bounded, which is the very register the
/// verifier checked. (Letting LLVM assume unaligned access everywhere, its
/// `allows-misaligned-mem-access` feature, also makes it merge stack
/// stores, and the verifier requires aligned stack access.)
pub mod word {
    use core::arch::asm;

    /// The 4 bytes at `p`, in memory order (`u32::from_ne_bytes`).
    ///
    /// # Safety
    /// `p` points at 4 readable bytes of the frame.
    #[inline(always)]
    pub unsafe fn load32(p: *const u8) -> u32 {
        let v: u32;
        // SAFETY: the caller's promise.
        unsafe {
            asm!("{v} = *(u32 *)({p} + 0)", p = in(reg) p, v = out(reg) v, options(nostack, readonly, preserves_flags))
        };
        v
    }

    /// The 8 bytes at `p`, in memory order (`u64::from_ne_bytes`).
    ///
    /// # Safety
    /// `p` points at 8 readable bytes (of the frame or of a map value).
    #[inline(always)]
    pub unsafe fn load64(p: *const u8) -> u64 {
        let v: u64;
        // SAFETY: the caller's promise.
        unsafe {
            asm!("{v} = *(u64 *)({p} + 0)", p = in(reg) p, v = out(reg) v, options(nostack, readonly, preserves_flags))
        };
        v
    }

    /// The 2 bytes at `p`, in memory order (`u16::from_ne_bytes`).
    ///
    /// # Safety
    /// `p` points at 2 readable bytes of the frame.
    #[inline(always)]
    pub unsafe fn load16(p: *const u8) -> u16 {
        let v: u16;
        // SAFETY: the caller's promise.
        unsafe {
            asm!("{v} = *(u16 *)({p} + 0)", p = in(reg) p, v = out(reg) v, options(nostack, readonly, preserves_flags))
        };
        v
    }

    /// Writes `v` to the 4 bytes at `p`, in memory order.
    ///
    /// # Safety
    /// `p` points at 4 writable bytes of the frame.
    #[inline(always)]
    pub unsafe fn store32(p: *mut u8, v: u32) {
        // SAFETY: the caller's promise.
        unsafe { asm!("*(u32 *)({p} + 0) = {v}", p = in(reg) p, v = in(reg) v, options(nostack, preserves_flags)) };
    }

    /// Writes `v` to the 2 bytes at `p`, in memory order.
    ///
    /// # Safety
    /// `p` points at 2 writable bytes of the frame.
    #[inline(always)]
    pub unsafe fn store16(p: *mut u8, v: u16) {
        // SAFETY: the caller's promise.
        unsafe { asm!("*(u16 *)({p} + 0) = {v}", p = in(reg) p, v = in(reg) v, options(nostack, preserves_flags)) };
    }
}
