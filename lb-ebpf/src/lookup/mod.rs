//! Map lookups and flow-table updates. Nothing here reads or writes the packet.

pub mod binds;
pub mod flow;
pub mod pending;
pub mod select;
pub mod session;

use aya_ebpf::{macros::map, maps::HashMap};
use lb_common::{AddrKey, VipInfo, VipKey, maps::MAX_VIPS};

/// VIPs served by this instance. Written by the daemon; read here.
#[map(name = "VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

/// Addresses the data path answers for: VIPs and SNAT addresses. Written by
/// the daemon; read here before anything else.
#[map(name = "OWNED_ADDRS")]
static OWNED_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// Whether packets to `addr_be` can belong to tether at all.
#[inline(always)]
pub fn owned(addr_be: &[u8; 16], family: u8) -> bool {
    // SAFETY: read-only lookup of a value written whole by the daemon.
    unsafe { OWNED_ADDRS.get(&AddrKey { addr_be: *addr_be, family, _pad: [0, 0, 0] }) }.is_some()
}

#[inline(always)]
pub fn vip(key: &VipKey) -> Option<&'static VipInfo> {
    // SAFETY: the daemon writes whole values with bpf_map_update_elem, so a value
    // is never seen half written; the reference does not outlive this program run.
    unsafe { VIPS.get(key) }
}
