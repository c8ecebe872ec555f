//! tether's XDP entry points. Stages live in modules: `parse` reads headers into a
//! plain struct, `lookup` consults and updates maps without touching the packet,
//! `rewrite` is the only stage that writes it, `verdict` turns the outcome into
//! an action and counts it.
#![no_std]
#![no_main]

mod lookup;
mod parse;
mod rewrite;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Flow, Protocol, VipInfo, maps::FlowDirection, reason};

use crate::{parse::Tcp, verdict::Verdict};

/// The data path: every frame on every attached interface comes through here.
#[xdp]
pub fn tether_xdp(ctx: XdpContext) -> u32 {
    verdict::finish(process(&ctx))
}

#[inline(always)]
fn process(ctx: &XdpContext) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return Verdict::pass(reason),
    };
    // The host's own traffic leaves after one small lookup.
    if !lookup::owned(&pkt.key.daddr_be, pkt.key.family) {
        return Verdict::pass(reason::PASS_NOT_VIP);
    }
    // Established traffic next: it is most of the packets, both directions.
    if let Some(flow) = lookup::flow::get(&pkt.key) {
        let Some(flow) = lookup::flow::on_packet(&pkt.key, flow, &pkt) else {
            return Verdict::drop(reason::DROP_FLOW_TABLE);
        };
        let why = match FlowDirection::try_from(flow.direction) {
            Ok(FlowDirection::ToClient) => reason::FWD_TO_CLIENT,
            _ => reason::FWD_TO_BACKEND,
        };
        return forward(ctx, &pkt, flow, why);
    }
    let Some(vip) = lookup::vip(&pkt.vip_key()) else {
        return Verdict::pass(reason::PASS_NOT_VIP);
    };
    match Protocol::try_from(vip.protocol) {
        Ok(Protocol::Tcp) => new_tcp_connection(ctx, &pkt, vip),
        // TLS VIPs bind on the ClientHello (delayed binding), which is not built
        // yet: their segments are counted and left to the host.
        _ => Verdict::pass(if pkt.is_syn() { reason::VIP_SYN } else { reason::VIP_OTHER }),
    }
}

/// A `tcp` VIP binds at the SYN: Maglev on the client address picks the backend.
#[inline(always)]
fn new_tcp_connection(ctx: &XdpContext, pkt: &Tcp, vip: &VipInfo) -> Verdict {
    if !pkt.is_syn() {
        return Verdict::drop(reason::DROP_NO_FLOW);
    }
    let Some((backend_id, backend)) = lookup::select::maglev(vip.farm_id, &pkt.key.saddr_be) else {
        return Verdict::drop(reason::DROP_NO_BACKEND);
    };
    match lookup::flow::bind(pkt, vip, backend_id, backend) {
        Ok(flow) => forward(ctx, pkt, flow, reason::NEW_FLOW),
        Err(why) => Verdict::drop(why),
    }
}

#[inline(always)]
fn forward(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, why: u32) -> Verdict {
    if rewrite::nat::apply(ctx, pkt, flow).is_none() {
        return Verdict::drop(reason::PASS_TRUNCATED);
    }
    rewrite::nexthop::send(ctx, pkt, flow, why)
}

/// Passes everything. Attached to veth peers in tests (an XDP_TX or redirect into a
/// veth is dropped unless its peer runs an XDP program) and used as the no-op
/// baseline by `cargo xtask bench`.
#[xdp]
pub fn tether_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

// The SYN-cookie and FIB helpers the data path uses are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
