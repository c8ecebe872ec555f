//! Sends a rewritten packet on its way: the kernel's routing and neighbour
//! tables (`bpf_fib_lookup`) give the egress interface and both MACs; out of the
//! ingress interface is XDP_TX, any other is a redirect. Established flows keep
//! the lookup's answer in their entry (`Flow::next_hop`) and skip it.

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_fib_lookup, bpf_redirect},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{Flow, NextHop, maps::Family, reason};

use crate::{
    parse::{Tcp, bytes_at, bytes_at_mut, word},
    verdict::Verdict,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// Per-CPU room for a lookup's answer.
// VERIFIER: the answer is not returned by value: a `Result<NextHop, _>` comes
// back through the caller's stack, and on the error path the verifier saw
// the caller read bytes the callee never wrote.
#[map(name = "NEXT_HOP_SCRATCH")]
static NEXT_HOP_SCRATCH: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn scratch() -> Option<&'static mut NextHop> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    NEXT_HOP_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Routes the packet (already rewritten by `flow`) and counts it under `why`.
#[inline(always)]
pub fn send(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, why: u32) -> Verdict {
    let Some(nh) = scratch() else { return Verdict::drop(reason::DROP_NO_ROUTE) };
    match lookup(ctx, pkt, flow, nh) {
        Ok(()) => out(ctx, nh, why),
        Err(reason) => Verdict::drop(reason),
    }
}

/// Asks the kernel where a packet rewritten by `flow` goes, into `nh`. Err is
/// the reason to drop it.
// VERIFIER: not inlined, so the 64-byte lookup parameters get their own frame.
#[inline(never)]
pub fn lookup(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, nh: &mut NextHop) -> Result<(), u32> {
    // VERIFIER: zeroed in place by `mem::zero`, not `mem::zeroed` (a memset).
    let mut space = MaybeUninit::<FibParams>::uninit();
    // SAFETY: FibParams is plain integers and arrays; all-zero is valid and
    // is what the helper expects of unused fields.
    let params = unsafe {
        crate::mem::zero(space.assume_init_mut());
        space.assume_init_mut()
    };
    params.l4_protocol = IPPROTO_TCP;
    params.sport = flow.new_sport_be;
    params.dport = flow.new_dport_be;
    params.ifindex = ctx.ingress_ifindex() as u32;
    let s = &flow.new_saddr_be;
    let d = &flow.new_daddr_be;
    match pkt.family {
        Family::Ipv4 => {
            params.family = AF_INET;
            let ip = bytes_at::<4>(ctx, pkt.l3_off).ok_or(reason::PASS_TRUNCATED)?;
            params.__bindgen_anon_1.tot_len = u16::from_be_bytes([ip[2], ip[3]]);
            params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
            params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
        }
        Family::Ipv6 => {
            params.family = AF_INET6;
            let ip = bytes_at::<6>(ctx, pkt.l3_off).ok_or(reason::PASS_TRUNCATED)?;
            params.__bindgen_anon_1.tot_len = u16::from_be_bytes([ip[4], ip[5]]) + 40;
            params.__bindgen_anon_3.ipv6_src = words(s);
            params.__bindgen_anon_4.ipv6_dst = words(d);
        }
    }
    // SAFETY: ctx.ctx is the program's xdp_md; params is a valid, sized struct.
    let rc = unsafe { bpf_fib_lookup(ctx.ctx as *mut _, params, size_of::<FibParams>() as i32, 0) };
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return Err(reason::DROP_NO_NEIGH);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Err(reason::DROP_NO_ROUTE);
    }
    nh.ifindex = params.ifindex;
    nh.dmac = params.dmac;
    nh.smac = params.smac;
    Ok(())
}

/// Writes the MACs of `nh` and sends the packet out of its interface.
#[inline(always)]
pub fn out(ctx: &XdpContext, nh: &NextHop, why: u32) -> Verdict {
    let Some(eth) = bytes_at_mut::<12>(ctx, 0) else { return Verdict::drop(reason::PASS_TRUNCATED) };
    let (d, s, eth) = (&nh.dmac, &nh.smac, eth.as_mut_ptr());
    // SAFETY: the 12 bytes bounded.
    unsafe {
        word::store32(eth, u32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
        word::store16(eth.add(4), u16::from_ne_bytes([d[4], d[5]]));
        word::store32(eth.add(6), u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
        word::store16(eth.add(10), u16::from_ne_bytes([s[4], s[5]]));
    }
    if nh.ifindex == ctx.ingress_ifindex() as u32 {
        return Verdict::send(why, xdp_action::XDP_TX);
    }
    // SAFETY: bpf_redirect takes any ifindex; it returns XDP_REDIRECT, or
    // XDP_ABORTED for an invalid one.
    let action = unsafe { bpf_redirect(nh.ifindex, 0) } as u32;
    Verdict::send(why, action)
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
