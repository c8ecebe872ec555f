//! The slow path's XDP end (DESIGN.md §4): segments of a ClientHello XDP
//! cannot finish (longer than the stash, fragmented over records) go whole
//! to the daemon through a ring buffer, and are dropped here. The daemon
//! acknowledges them to the client, reads the hello, writes its persistence
//! fields into the stash as a short hello (`hello::DECIDED`) and sends a
//! packet of the connection through this program, which binds on it.
//! Backend segments of a flight whose ServerHello or NewSessionTicket a
//! segment boundary cut are copied to the daemon the same way, and go on.

use aya_ebpf::{helpers::bpf_xdp_load_bytes, macros::map, maps::RingBuf, programs::XdpContext};
use lb_common::{
    maps::{SLOW_FRAME_MAX, SLOW_PATH_RING_BYTES, SlowSegment},
    reason,
};

use crate::{parse::Tcp, verdict::Verdict};

/// Client segments for the daemon. Written here; read by the daemon.
#[map(name = "SLOW_PATH")]
static SLOW_PATH: RingBuf = RingBuf::with_byte_size(SLOW_PATH_RING_BYTES, 0);

/// Hands the frame in `ctx` to the daemon (`kind`: `slow_kind`) and drops
/// it, counted as `why`; with the ring full it is only dropped, and the
/// client's retransmission comes back here.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext, pkt: &Tcp, kind: u8, why: u32) -> Verdict {
    match copy_to_daemon(ctx, pkt, kind) {
        Ok(()) => Verdict::drop(why),
        Err(why) => Verdict::drop(why),
    }
}

/// Copies the frame in `ctx` into the ring for the daemon, as `kind`. Err is
/// the reason the copy failed (`DROP_SLOW_PATH_FULL` with the ring full).
// VERIFIER: not inlined; the frame is copied into the ring's memory, not
// built on the stack.
#[inline(never)]
pub fn copy_to_daemon(ctx: &XdpContext, pkt: &Tcp, kind: u8) -> Result<(), u32> {
    let Some(ip) = crate::parse::bytes_at::<4>(ctx, pkt.l3_off) else { return Err(reason::PASS_TRUNCATED) };
    let computed = pkt.l3_off + u16::from_be_bytes([ip[2], ip[3]]) as usize;
    // SAFETY: reading a local. VERIFIER: opaque, so the range check holds on
    // the register the helper receives.
    let len = unsafe { core::ptr::read_volatile(&computed) };
    if len == 0 || len > SLOW_FRAME_MAX {
        return Err(reason::DROP_STASH_SIZE);
    }
    let Some(mut entry) = SLOW_PATH.reserve::<SlowSegment>(0) else {
        return Err(reason::DROP_SLOW_PATH_FULL);
    };
    let segment = entry.as_mut_ptr();
    // SAFETY: `segment` is a reserved, writable `SlowSegment`; `frame` has
    // SLOW_FRAME_MAX bytes and 1 <= len <= SLOW_FRAME_MAX.
    let rc = unsafe {
        (*segment).key = pkt.key;
        (*segment).ifindex = (*ctx.ctx).ingress_ifindex;
        (*segment).len = len as u16;
        (*segment).kind = kind;
        (*segment)._pad = 0;
        bpf_xdp_load_bytes(ctx.ctx as *mut _, 0, (*segment).frame.as_mut_ptr() as *mut _, len as u32)
    };
    if rc != 0 {
        entry.discard(0);
        return Err(reason::PASS_TRUNCATED);
    }
    entry.submit(0);
    Ok(())
}
