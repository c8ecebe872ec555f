//! tether's XDP entry points. Stages live in modules: `parse` reads headers into a
//! plain struct, `lookup` consults and updates maps without touching the packet,
//! `rewrite` is the only stage that writes it, `verdict` turns the outcome into
//! an action and counts it.
#![no_std]
#![no_main]

mod handshake;
mod lookup;
mod parse;
mod rewrite;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    Flow, Protocol, VipInfo,
    maps::{Family, FlowDirection},
    reason,
};

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
        Ok(Protocol::Tls) => tls_handshake(ctx, &pkt),
        // Only the daemon writes VIPS; a value it never writes is not guessed at.
        Err(_) => Verdict::pass(reason::PASS_NOT_VIP),
    }
}

/// A `tls` VIP binds on the ClientHello, so until then XDP itself is the
/// server: a SYN gets a SYN cookie, the handshake's ACK is checked. Choosing
/// the backend from the ClientHello (delayed binding) is not built yet: such
/// data is counted and dropped.
#[inline(always)]
fn tls_handshake(ctx: &XdpContext, pkt: &Tcp) -> Verdict {
    if pkt.family != Family::Ipv4 {
        return Verdict::pass(reason::PASS_TLS_IPV6);
    }
    if pkt.is_syn() {
        return handshake::syn_ack_v4(ctx, pkt);
    }
    // A cookie can only be checked on segments at the client's ISN + 1: its
    // handshake ACK and first data. A FIN or RST before any binding is stray.
    if pkt.flags & (parse::ACK | parse::RST | parse::SYN | parse::FIN) != parse::ACK {
        return Verdict::drop(reason::VIP_OTHER);
    }
    if !handshake::cookie_valid_v4(ctx, pkt) {
        return Verdict::drop(reason::DROP_BAD_COOKIE);
    }
    if handshake::has_payload(ctx, pkt) {
        Verdict::drop(reason::DROP_TLS_UNBOUND)
    } else {
        Verdict::drop(reason::COOKIE_ACK)
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
