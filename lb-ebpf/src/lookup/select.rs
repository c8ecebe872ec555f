//! Backend selection. `tcp` VIPs use Maglev on the client address; the other
//! algorithms and persistence plug in here.

use aya_ebpf::{macros::map, maps::Array};
use lb_common::{
    BackendInfo, hash,
    maps::{MAGLEV_RING, MAX_BACKENDS, MAX_FARMS, NO_BACKEND},
};

/// Backends of all farms, by id. Written by the daemon; read here.
#[map(name = "BACKENDS")]
static BACKENDS: Array<BackendInfo> = Array::with_max_entries(MAX_BACKENDS, 0);

/// One Maglev lookup table of `MAGLEV_RING` backend ids per farm, computed by
/// the daemon from the farm's active backends.
#[map(name = "MAGLEV")]
static MAGLEV: Array<u32> = Array::with_max_entries(MAX_FARMS * MAGLEV_RING, 0);

/// The backend Maglev gives `client` in `farm_id`: its id and description.
#[inline(always)]
pub fn maglev(farm_id: u32, client_be: &[u8; 16]) -> Option<(u32, &'static BackendInfo)> {
    if farm_id >= MAX_FARMS {
        return None;
    }
    let slot = farm_id * MAGLEV_RING + hash::addr(client_be) % MAGLEV_RING;
    let id = *MAGLEV.get(slot)?;
    if id == NO_BACKEND {
        return None;
    }
    let backend = BACKENDS.get(id)?;
    if backend.family == 0 {
        return None;
    }
    Some((id, backend))
}
