//! One event per new connection, for the daemon's log: which backend the
//! algorithm favoured, which one persistence required, which one was used.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    macros::map,
    maps::{Array, RingBuf},
};
use lb_common::maps::{BINDS_RING_BYTES, BindEvent};

use crate::parse::Tcp;

/// New connections, as `BindEvent`s. Written here; read by the daemon.
#[map(name = "BINDS")]
static BINDS: RingBuf = RingBuf::with_byte_size(BINDS_RING_BYTES, 0);

/// Events lost to a full `BINDS` (one counter, all CPUs). Written here;
/// read by the daemon, which logs when it grows.
#[map(name = "BINDS_LOST")]
static BINDS_LOST: Array<u64> = Array::with_max_entries(1, 0);

/// Reports that `pkt`'s connection in `farm_id` was bound to `used`.
// VERIFIER: the event is written in the ring's memory, not built on the
// stack: the VIP program's frames are near the 512-byte limit.
#[inline(always)]
pub fn report(pkt: &Tcp, farm_id: u32, favoured: u32, required: u32, kind: u8, used: u32) {
    let Some(mut entry) = BINDS.reserve::<BindEvent>(0) else {
        if let Some(lost) = BINDS_LOST.get_ptr_mut(0) {
            // SAFETY: an aligned u64 in a map value; see
            // `select::count_new_flow` for the intrinsic.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(lost, 1) };
        }
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, writable `BindEvent`; every
    // field is written before the entry is submitted.
    unsafe {
        (*event).client_be = pkt.key.saddr_be;
        (*event).client_port_be = pkt.key.sport_be;
        (*event).family = pkt.key.family;
        (*event).kind = kind;
        (*event).farm_id = farm_id;
        (*event).favoured = favoured;
        (*event).required = required;
        (*event).used = used;
        (*event)._pad = 0;
    }
    entry.submit(0);
}
