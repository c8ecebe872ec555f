//! Connections between their first client data and the backend's
//! acknowledgement of it (DESIGN.md §2 steps 3-4): the stashed segment and
//! what tc needs to hand it to the backend.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use lb_common::{
    FlowKey, Pending,
    maps::{MAX_PENDING, STASH_MAX},
};

/// Keyed by the client -> VIP tuple. Written by XDP at binding, read by tc,
/// removed by XDP once the backend acknowledged the data (or by the sweeper).
/// LRU: under pressure the oldest handshakes lose their stash, and with it
/// their connection (the client's retransmission cannot bring it back).
#[map(name = "PENDING")]
static PENDING: LruHashMap<FlowKey, Pending> = LruHashMap::with_max_entries(MAX_PENDING, 0);

/// Per-CPU room where a `Pending` is assembled before it is inserted: at
/// 2 KiB it is four times the stack.
#[map(name = "PENDING_SCRATCH")]
static PENDING_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// A `Pending` and room after its data: `mem::copy_span` reads persistence
/// keys from the stashed ClientHello up to `SPAN_SLACK` bytes past a span's
/// start, and `delayed::append_v4` writes a segment at any offset into the
/// stash, which the verifier can only accept with a stash's worth after it.
#[repr(C)]
pub struct Scratch {
    /// Why a hello is bound on part of it, from `tether_xdp_vip` to
    /// `tether_xdp_bind`; 0 if it is whole.
    bound_on_part: u32,
    _align: u32,
    pending: Pending,
    _slack: [u8; STASH_MAX],
}
const _: () = assert!(STASH_MAX >= crate::mem::SPAN_SLACK);

const _: () = assert!(STASH_MAX.is_power_of_two());
// `data` ends the `Pending`, so the slack follows it.
const _: () = assert!(core::mem::offset_of!(Pending, data) + STASH_MAX == core::mem::size_of::<Pending>());

#[inline(always)]
pub fn scratch() -> Option<&'static mut Pending> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    PENDING_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut (*p).pending })
}

/// The reason `tether_xdp_vip` leaves `tether_xdp_bind` in the scratch (see
/// `Scratch::bound_on_part`).
#[inline(always)]
pub fn bound_on_part() -> Option<&'static mut u32> {
    // SAFETY: as `scratch`.
    PENDING_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut (*p).bound_on_part })
}

#[inline(always)]
pub fn get(client_key: &FlowKey) -> Option<&'static Pending> {
    // SAFETY: values are written whole (by insert) and never modified in place.
    unsafe { PENDING.get(client_key) }
}

/// As `get`, as the map value's address, for helpers that copy it.
#[inline(always)]
pub fn get_ptr(client_key: &FlowKey) -> Option<*const Pending> {
    PENDING.get_ptr(client_key)
}

#[inline(always)]
pub fn insert(client_key: &FlowKey, pending: &Pending) -> bool {
    PENDING.insert(client_key, pending, 0).is_ok()
}

#[inline(always)]
pub fn remove(client_key: &FlowKey) {
    let _ = PENDING.remove(client_key);
}
