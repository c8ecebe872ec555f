//! The one place that turns a decision into an XDP action and counts it.

use aya_ebpf::{bindings::xdp_action, macros::map, maps::PerCpuArray};
use lb_common::reason;

/// Packets per reason (`lb_common::reason`). Written here only; summed over CPUs
/// and read by the daemon (`tether status`) and the tests.
#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::COUNT, 0);

/// What to do with a packet, and why.
pub struct Verdict {
    pub reason: u32,
    pub action: u32,
}

impl Verdict {
    pub const fn pass(reason: u32) -> Verdict {
        Verdict { reason, action: xdp_action::XDP_PASS }
    }

    pub const fn drop(reason: u32) -> Verdict {
        Verdict { reason, action: xdp_action::XDP_DROP }
    }

    /// XDP_TX or XDP_REDIRECT, as the next-hop stage decided.
    pub const fn send(reason: u32, action: u32) -> Verdict {
        Verdict { reason, action }
    }
}

#[inline(always)]
pub fn finish(verdict: Verdict) -> u32 {
    count(verdict.reason);
    verdict.action
}

/// Counts a packet under `reason` (for the tc program, whose actions differ).
#[inline(always)]
pub fn count(reason: u32) {
    if let Some(counter) = STATS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and a
        // program does not preempt itself, so the increment cannot race. (XDP
        // and tc both run in softirq context, which does not nest on a CPU.)
        unsafe { *counter += 1 };
    }
}
