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

/// `tether_drop_syns`: [0] the SYNs it still drops, [1] the lowest source
/// port of the SYNs it drops (tether's SNAT range, not the daemon's own
/// neighbour and health-check connections below it); written by the test.
#[map(name = "SYNS_TO_DROP")]
static SYNS_TO_DROP: Array<u32> = Array::with_max_entries(2, 0);

/// Drops TCP SYNs (without ACK) from source ports at or above
/// `SYNS_TO_DROP[1]` while `SYNS_TO_DROP[0]` is above zero, counting it
/// down, and passes everything else: a link that loses the first SYNs sent
/// over it. IPv4 without options or VLAN tags, as the test topologies are.
#[xdp]
pub fn tether_drop_syns(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Ethernet 14, IPv4 without options 20, TCP flags at 13.
    if start + 48 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 48 bytes read are inside the frame (checked above).
    let (ether_type, protocol, sport, flags) = unsafe {
        let p = start as *const u8;
        (
            u16::from_be_bytes([*p.add(12), *p.add(13)]),
            *p.add(23),
            u16::from_be_bytes([*p.add(34), *p.add(35)]),
            *p.add(47),
        )
    };
    let lowest = SYNS_TO_DROP.get(1).copied().unwrap_or(0);
    if ether_type != 0x0800 || protocol != 6 || flags & 0x12 != 0x02 || u32::from(sport) < lowest {
        return xdp_action::XDP_PASS;
    }
    match SYNS_TO_DROP.get_ptr_mut(0) {
        // SAFETY: a map value; a test's only writer races nothing that matters.
        Some(left) if unsafe { *left } > 0 => {
            unsafe { *left -= 1 };
            xdp_action::XDP_DROP
        }
        _ => xdp_action::XDP_PASS,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
