//! The data path's per-reason packet counters (`STATS`, a per-CPU array).

use std::path::Path;

use aya::maps::{Map, MapData, MapError, PerCpuArray};
use lb_common::reason;

/// Names of the pins inside an instance directory: maps are pinned by
/// their names (`lb_common::maps::PINNED_MAPS`).
pub const STATS_PIN: &str = lb_common::maps::STATS_MAP;
pub const SESSIONS_PIN: &str = lb_common::maps::SESSIONS_MAP;

/// Packets per reason, summed over CPUs, indexed by `lb_common::reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters(pub Vec<u64>);

impl Counters {
    pub fn get(&self, reason: u32) -> u64 {
        self.0.get(reason as usize).copied().unwrap_or(0)
    }

    /// `(label, packets)` for every reason, in reason order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (0..reason::COUNT).map(|r| (reason::name(r), self.get(r)))
    }
}

pub fn read<T: std::borrow::Borrow<MapData>>(map: &PerCpuArray<T, u64>) -> Result<Counters, MapError> {
    let mut counts = Vec::with_capacity(reason::COUNT as usize);
    for r in 0..reason::COUNT {
        counts.push(map.get(&r, 0)?.iter().sum());
    }
    Ok(Counters(counts))
}

/// Reads the counters a running daemon pinned in its instance directory.
pub fn read_pinned(instance_dir: &Path) -> Result<Counters, MapError> {
    let data = MapData::from_pin(instance_dir.join(STATS_PIN))?;
    let map: PerCpuArray<MapData, u64> = Map::from_map_data(data)?.try_into()?;
    read(&map)
}

/// The learned persistence entries of a running instance.
pub fn read_pinned_sessions(
    instance_dir: &Path,
) -> Result<Vec<(lb_common::maps::SessionKey, lb_common::maps::SessionEntry)>, MapError> {
    crate::sessions::entries(&MapData::from_pin(instance_dir.join(SESSIONS_PIN))?)
}
