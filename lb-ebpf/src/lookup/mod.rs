//! Map lookups and flow-table updates. Nothing here reads or writes the packet.

pub mod flow;
pub mod select;

use aya_ebpf::{macros::map, maps::HashMap};
use lb_common::{VipInfo, VipKey, maps::MAX_VIPS};

/// VIPs served by this instance. Written by the daemon; read here.
#[map(name = "VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

#[inline(always)]
pub fn vip(key: &VipKey) -> Option<&'static VipInfo> {
    // SAFETY: the daemon writes whole values with bpf_map_update_elem, so a value
    // is never seen half written; the reference does not outlive this program run.
    unsafe { VIPS.get(key) }
}
