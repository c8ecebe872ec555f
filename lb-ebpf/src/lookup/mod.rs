//! Map lookups and flow-table updates. Nothing here reads or writes the packet.

pub mod binds;
pub mod flow;
pub mod pending;
pub mod select;
pub mod session;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use lb_common::{
    AddrKey, VipInfo, VipKey,
    maps::{Family, MAX_VIPS, OwnedFilter, owned_filter_fold, owned_filter_slot},
};

/// VIPs served by this instance. Written by the daemon; read here.
#[map(name = "VIPS")]
static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

/// Addresses the data path answers for: VIPs and SNAT addresses. Written by
/// the daemon; read here before anything else.
#[map(name = "OWNED_ADDRS")]
static OWNED_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// A bit per owned address (`OwnedFilter`). Written by the daemon.
#[map(name = "OWNED_FILTER")]
static OWNED_FILTER: Array<OwnedFilter> = Array::with_max_entries(1, 0);

/// False when packets to `addr_be` (of `family`, a constant) cannot belong
/// to tether: its bit in `OWNED_FILTER` is clear. True says only that they
/// may. An array lookup, which the verifier inlines, where `owned` and the
/// flow tables are calls into the kernel's hash table.
#[inline(always)]
pub fn may_own(addr_be: &[u8; 16], family: Family) -> bool {
    let folded = match family {
        // The other three words of an IPv4 address are zero.
        Family::Ipv4 => u32::from_ne_bytes([addr_be[0], addr_be[1], addr_be[2], addr_be[3]]),
        Family::Ipv6 => owned_filter_fold(addr_be),
    };
    let (word, mask) = owned_filter_slot(folded);
    let Some(filter) = OWNED_FILTER.get(0) else { return true };
    filter.words.get(word).is_none_or(|w| w & mask != 0)
}

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
