//! Entry points for `cargo xtask bench` only: the daemon never loads them.
//! They run one stage of the data path on its own, with the very code the
//! data path runs, so that `BPF_PROG_TEST_RUN` can repeat it in place and
//! time it to the nanosecond where a whole binding (a few microseconds, most
//! of it map inserts) hides it in its noise.

use aya_ebpf::programs::XdpContext;
use lb_common::reason;

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
    let Some(p) = pending::scratch() else { return Verdict::drop(reason::DROP_FLOW_TABLE) };
    let Some(len) = crate::handshake::load_payload(ctx, &pkt, &mut p.data) else {
        return Verdict::drop(reason::PASS_TRUNCATED);
    };
    p.len = len as u16;
    match lookup::session::choose(vip.farm_id, farm, &pkt, len as u16) {
        Persisted::Hit(..) => Verdict::drop(reason::TLS_BIND_PERSISTED),
        Persisted::Miss => Verdict::drop(reason::TLS_BIND),
        Persisted::Failed(_) => Verdict::drop(reason::DROP_BACKEND_FAILED),
    }
}
