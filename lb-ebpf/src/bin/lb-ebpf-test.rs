//! XDP programs for tests and benchmarks only, built into their own object so
//! the data path's object carries nothing it does not need.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::map, macros::xdp, maps::Array, programs::XdpContext,
};

/// Passes everything. Attached to veth peers in tests (an XDP_TX or redirect
/// into a veth is dropped unless its peer runs an XDP program) and the no-op
/// baseline of `cargo xtask bench`.
#[xdp]
pub fn tether_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Per-mille of frames `tether_lossy` drops; written by the test.
#[map(name = "LOSS_PERMILLE")]
static LOSS_PERMILLE: Array<u32> = Array::with_max_entries(1, 0);

/// Drops a random share of frames (LOSS_PERMILLE) and passes the rest: a lossy
/// link for tests, on the interface it is attached to, in its receive direction.
#[xdp]
pub fn tether_lossy(_ctx: XdpContext) -> u32 {
    let permille = LOSS_PERMILLE.get(0).copied().unwrap_or(0);
    // SAFETY: no preconditions.
    if unsafe { bpf_get_prandom_u32() } % 1000 < permille { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
