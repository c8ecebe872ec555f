//! The one place that turns a reason into an XDP action and counts it.

use aya_ebpf::{bindings::xdp_action, macros::map, maps::PerCpuArray};
use lb_common::reason;

/// Packets per reason (`lb_common::reason`). Written here only; summed over CPUs
/// and read by the daemon (`tether status`) and the tests.
#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::COUNT, 0);

#[inline(always)]
pub fn finish(reason: u32) -> u32 {
    if let Some(counter) = STATS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and XDP
        // does not preempt itself, so the increment cannot race.
        unsafe { *counter += 1 };
    }
    action(reason)
}

/// Every reason the skeleton knows ends in the host's hands. Drops, XDP_TX and
/// redirects arrive with the data path.
#[inline(always)]
const fn action(_reason: u32) -> u32 {
    xdp_action::XDP_PASS
}
