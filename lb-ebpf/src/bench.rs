//! Entry points for `cargo xtask bench` only: the daemon never loads them.
//! They run one stage of the data path on its own, with the very code the
//! data path runs, so that `BPF_PROG_TEST_RUN` can repeat it in place and
//! time it to the nanosecond where a whole binding (a few microseconds, most
//! of it map inserts) hides it in its noise.

use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};
use lb_common::{maps::STASH_MAX, reason};

use crate::{
    lookup::{self, pending, session::Persisted},
    parse,
    verdict::Verdict,
};

/// The ClientHello parse and persistence lookups of a binding
/// (`lookup::session::choose`, as `bind_first_data` calls it) on the hello
/// the frame carries, for the farm of the frame's VIP. The payload is
/// copied into the stash first, as `delayed::capture_v4` does; a farm
/// without persistence kinds measures that copy and the header parse
/// alone. Counted as `tls_bind_persisted` when persistence chose a
/// backend, `tls_bind` when it did not, `drop_backend_failed` when the
/// farm's `on_backend_failure` ended it; every frame is dropped.
#[inline(always)]
pub fn choose(ctx: &XdpContext) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(why) => return Verdict::drop(why),
    };
    let Some(vip) = lookup::vip(&pkt.vip_key()) else { return Verdict::drop(reason::PASS_NOT_VIP) };
    let Some(farm) = lookup::select::farm(vip.farm_id) else { return Verdict::drop(reason::DROP_NO_BACKEND) };
    let (Some(p), Some((offset, available))) = (pending::scratch(), crate::handshake::payload(ctx, &pkt)) else {
        return Verdict::drop(reason::PASS_TRUNCATED);
    };
    // VERIFIER: opaque to LLVM, so the range check is made on the register
    // the helper receives.
    // SAFETY: reading a local.
    let len = unsafe { core::ptr::read_volatile(&available) };
    if len == 0 || len > STASH_MAX {
        return Verdict::drop(reason::DROP_STASH_SIZE);
    }
    // SAFETY: `p.data` has STASH_MAX writable bytes; 1 <= len <= STASH_MAX.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx as *mut _, offset as u32, p.data.as_mut_ptr() as *mut _, len as u32) };
    if rc != 0 {
        return Verdict::drop(reason::PASS_TRUNCATED);
    }
    p.len = len as u16;
    match lookup::session::choose(vip.farm_id, farm, &pkt, len as u16) {
        Persisted::Hit(..) => Verdict::drop(reason::TLS_BIND_PERSISTED),
        Persisted::Miss => Verdict::drop(reason::TLS_BIND),
        Persisted::Failed(_) => Verdict::drop(reason::DROP_BACKEND_FAILED),
    }
}
