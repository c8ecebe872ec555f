//! Backend selection for new connections: the farm's algorithm. `tcp` VIPs
//! always use Maglev on the client address (they bind at the SYN, before
//! anything else is known); `tls` VIPs use their farm's algorithm, after
//! persistence (`session`) found nothing.
//!
//! The daemon keeps the lists these read to the backends that take new
//! connections (active, healthy, weight above 0), weighted where the
//! algorithm is; the data path only indexes them.

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
};

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_loop},
    macros::map,
    maps::{Array, PerCpuArray},
};
use lb_common::{
    BackendInfo, FarmInfo, hash,
    maps::{Algorithm, BackendLoad, FARM_RR_SLOTS, MAGLEV_RING, MAX_BACKENDS, MAX_FARMS, NO_BACKEND},
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

/// Connections bound to each backend since the program was loaded: XDP
/// adds one at each binding (from every CPU, atomically); the daemon reads
/// them for its metrics and for `BACKEND_LOAD`.
#[map(name = "BACKEND_NEW_FLOWS")]
static BACKEND_NEW_FLOWS: Array<u64> = Array::with_max_entries(MAX_BACKENDS, 0);

/// `least-connections`: each backend's connections at the daemon's last
/// sweep of the flow table, and its weight. Written by the daemon.
#[map(name = "BACKEND_LOAD")]
static BACKEND_LOAD: Array<BackendLoad> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Each farm id's name (`lb_common::maps::FARM_NAME_MAX` bytes,
/// zero-padded). Written by the daemon and never read here: kept beside
/// `BACKENDS` so that a restarted daemon can tell which ids it gave which
/// farms.
#[map(name = "FARM_NAMES")]
static FARM_NAMES: Array<[u8; lb_common::maps::FARM_NAME_MAX]> = Array::with_max_entries(MAX_FARMS, 0);

/// Counts a connection bound to `backend_id`.
#[inline(always)]
pub fn count_new_flow(backend_id: u32) {
    if let Some(counter) = BACKEND_NEW_FLOWS.get_ptr_mut(backend_id) {
        // SAFETY: an aligned u64 in a map value that lives as long as the
        // program. VERIFIER/LLVM: the intrinsic, because the BPF target has
        // no `AtomicU64::fetch_add` (it declares no read-modify-write
        // atomics); with its result unused LLVM emits the BPF atomic add
        // that every BPF CPU version has.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
    }
}

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
    match algorithm {
        a if a == Algorithm::RoundRobin as u8 => round_robin(farm_id, farm),
        a if a == Algorithm::Random as u8 => random(farm_id, farm),
        a if a == Algorithm::LeastConnections as u8 => least_connections(farm_id, farm),
        _ => maglev(farm_id, client_be),
    }
}

/// The backend the farm's algorithm would give `client_be` now, without
/// taking it (round-robin does not move on): for the log when persistence
/// decided. `NO_BACKEND` for `random` and `least-connections`.
#[inline(always)]
pub fn favoured(farm_id: u32, farm: &FarmInfo, client_be: &[u8; 16]) -> u32 {
    if farm.algorithm == Algorithm::Maglev as u8 {
        return maglev(farm_id, client_be).map_or(NO_BACKEND, |(id, _)| id);
    }
    if farm.algorithm != Algorithm::RoundRobin as u8 || farm.rr_len == 0 || farm.rr_len > FARM_RR_SLOTS {
        return NO_BACKEND;
    }
    FARM_RR.get(farm_id * FARM_RR_SLOTS + farm.rr_next % farm.rr_len).copied().unwrap_or(NO_BACKEND)
}

#[inline(always)]
fn random(farm_id: u32, farm: *mut FarmInfo) -> Option<(u32, &'static BackendInfo)> {
    // SAFETY: as in `by_algorithm`.
    let len = unsafe { (*farm).rr_len };
    if len == 0 || len > FARM_RR_SLOTS {
        return None;
    }
    // SAFETY: no preconditions.
    let draw = unsafe { bpf_get_prandom_u32() };
    backend(*FARM_RR.get(farm_id * FARM_RR_SLOTS + draw % len)?)
}

/// The least-loaded search's state, per CPU: the `bpf_loop` step reads and
/// updates it (a callback context would have to live on the stack).
struct LeastLoaded {
    farm_id: u32,
    len: u32,
    /// The list is walked from here, so that ties go round.
    start: u32,
    best_id: u32,
    best_load: u64,
    best_weight: u64,
}

#[map(name = "LEAST_LOADED")]
static LEAST_LOADED: PerCpuArray<LeastLoaded> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn least_loaded() -> Option<&'static mut LeastLoaded> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    LEAST_LOADED.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn least_connections(farm_id: u32, farm: *mut FarmInfo) -> Option<(u32, &'static BackendInfo)> {
    // SAFETY: as in `round_robin`.
    let (len, next) = unsafe { ((*farm).rr_len, (*farm).rr_next) };
    if len == 0 || len > FARM_RR_SLOTS {
        return None;
    }
    // SAFETY: as in `round_robin`.
    unsafe { (*farm).rr_next = next.wrapping_add(1) };
    let search = least_loaded()?;
    search.farm_id = farm_id;
    search.len = len;
    search.start = next;
    search.best_id = NO_BACKEND;
    search.best_load = 0;
    search.best_weight = 1;
    // VERIFIER: one backend per `bpf_loop` step: the callback is verified
    // once, whatever the farm's size.
    // SAFETY: `weigh_backend` has the signature bpf_loop calls; no context.
    unsafe { bpf_loop(len, weigh_backend as *mut c_void, core::ptr::null_mut(), 0) };
    backend(least_loaded()?.best_id)
}

/// The `index`th backend of the walk: kept if it has fewer connections per
/// unit of weight than the best so far.
extern "C" fn weigh_backend(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(search) = least_loaded() else { return 1 };
    if search.len == 0 {
        return 1;
    }
    let slot = search.farm_id * FARM_RR_SLOTS + search.start.wrapping_add(index as u32) % search.len;
    let Some(&id) = FARM_RR.get(slot) else { return 1 };
    let Some(load) = BACKEND_LOAD.get(id) else { return 0 };
    let bound = BACKEND_NEW_FLOWS.get(id).copied().unwrap_or(0);
    let connections = load.active + bound.saturating_sub(load.new_flows_seen);
    let weight = if load.weight == 0 { 1 } else { load.weight };
    // a/wa < b/wb without division: a * wb < b * wa.
    if search.best_id == NO_BACKEND || connections * search.best_weight < search.best_load * weight {
        search.best_id = id;
        search.best_load = connections;
        search.best_weight = weight;
    }
    0
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
