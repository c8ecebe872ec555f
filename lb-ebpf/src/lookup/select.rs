//! Backend selection for new connections: the farm's algorithm. `tcp` VIPs
//! always use Maglev on the client address (they bind at the SYN, before
//! anything else is known); `tls` VIPs use their farm's algorithm, and
//! persistence will be consulted before it.

use aya_ebpf::{macros::map, maps::Array};
use lb_common::{
    BackendInfo, FarmInfo, hash,
    maps::{Algorithm, FARM_RR_SLOTS, MAGLEV_RING, MAX_BACKENDS, MAX_FARMS, NO_BACKEND},
};

/// Backends of all farms, by id. Written by the daemon; read here.
#[map(name = "BACKENDS")]
static BACKENDS: Array<BackendInfo> = Array::with_max_entries(MAX_BACKENDS, 0);

/// One Maglev lookup table of `MAGLEV_RING` backend ids per farm, computed by
/// the daemon from the farm's active backends.
#[map(name = "MAGLEV")]
static MAGLEV: Array<u32> = Array::with_max_entries(MAX_FARMS * MAGLEV_RING, 0);

/// Each farm's algorithm and round-robin position. Written by the daemon.
#[map(name = "FARMS")]
static FARMS: Array<FarmInfo> = Array::with_max_entries(MAX_FARMS, 0);

/// Each farm's active backend ids in order, `FARM_RR_SLOTS` slots per farm,
/// of which the first `FarmInfo::rr_len` are used. Written by the daemon.
#[map(name = "FARM_RR")]
static FARM_RR: Array<u32> = Array::with_max_entries(MAX_FARMS * FARM_RR_SLOTS, 0);

/// A farm's settings, as the daemon wrote them.
#[inline(always)]
pub fn farm(farm_id: u32) -> Option<&'static FarmInfo> {
    FARMS.get(farm_id)
}

/// The backend the farm's algorithm gives a new connection from `client_be`.
#[inline(always)]
pub fn by_algorithm(farm_id: u32, client_be: &[u8; 16]) -> Option<(u32, &'static BackendInfo)> {
    let farm = FARMS.get_ptr_mut(farm_id)?;
    // SAFETY: a map value valid for this run; `algorithm` and `rr_len` are
    // written whole by the daemon.
    let algorithm = unsafe { (*farm).algorithm };
    if algorithm == Algorithm::RoundRobin as u8 { round_robin(farm_id, farm) } else { maglev(farm_id, client_be) }
}

#[inline(always)]
fn round_robin(farm_id: u32, farm: *mut FarmInfo) -> Option<(u32, &'static BackendInfo)> {
    // SAFETY: as in `by_algorithm`. The read-modify-write of `rr_next` is not
    // atomic; a lost update gives two connections the same backend.
    let (len, next) = unsafe { ((*farm).rr_len, (*farm).rr_next) };
    if len == 0 || len > FARM_RR_SLOTS {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*farm).rr_next = next.wrapping_add(1) };
    backend(*FARM_RR.get(farm_id * FARM_RR_SLOTS + next % len)?)
}

/// The backend Maglev gives `client` in `farm_id`: its id and description.
#[inline(always)]
pub fn maglev(farm_id: u32, client_be: &[u8; 16]) -> Option<(u32, &'static BackendInfo)> {
    if farm_id >= MAX_FARMS {
        return None;
    }
    let slot = farm_id * MAGLEV_RING + hash::addr(client_be) % MAGLEV_RING;
    backend(*MAGLEV.get(slot)?)
}

/// A backend by id, if the slot is in use.
#[inline(always)]
pub fn backend(id: u32) -> Option<(u32, &'static BackendInfo)> {
    if id == NO_BACKEND {
        return None;
    }
    let backend = BACKENDS.get(id)?;
    if backend.family == 0 {
        return None;
    }
    Some((id, backend))
}
