//! tether's XDP entry points. Stages live in modules: `parse` reads headers into a
//! plain struct, `lookup` consults maps without touching the packet, `verdict`
//! turns a reason into an action and counts it.
#![no_std]
#![no_main]

mod lookup;
mod parse;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::reason;

use crate::parse::Tcp;

/// The data path: every frame on every attached interface comes through here.
#[xdp]
pub fn tether_xdp(ctx: XdpContext) -> u32 {
    let reason = match parse::headers(&ctx) {
        Ok(headers) => classify(&headers),
        Err(reason) => reason,
    };
    verdict::finish(reason)
}

/// Decides what a parsed TCP segment is. The data path (delayed binding, NAT) hangs
/// off the VIP branches; until it lands, VIP traffic is counted and passed.
#[inline(always)]
fn classify(tcp: &Tcp) -> u32 {
    if lookup::vip(&tcp.vip_key()).is_none() {
        return reason::PASS_NOT_VIP;
    }
    if tcp.is_syn() {
        reason::VIP_SYN
    } else {
        reason::VIP_OTHER
    }
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
