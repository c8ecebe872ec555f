//! The data path's two flow tables, `FLOWS_V4` (short keys, see
//! `lb_common::FlowKeyV4`) and `FLOWS_V6`, as one. The daemon names a
//! direction of a connection by its `FlowKey` whatever the family; these
//! pick the table.

use std::{
    borrow::{Borrow, BorrowMut},
    io,
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, MapError},
};
use lb_common::{
    Flow, FlowKey, FlowKeyV4,
    maps::{FLOWS_V4_MAP, FLOWS_V6_MAP, Family},
};

/// Both tables, read-only (`T = &MapData`) or writable (`&mut MapData`).
pub struct FlowTables<T> {
    v4: HashMap<T, FlowKeyV4, Flow>,
    v6: HashMap<T, FlowKey, Flow>,
}

fn is_v4(key: &FlowKey) -> bool {
    key.family == Family::Ipv4 as u8
}

impl<T: Borrow<MapData>> FlowTables<T> {
    /// The entry of `key`; `MapError::KeyNotFound` if there is none.
    pub fn get(&self, key: &FlowKey) -> Result<Flow, MapError> {
        if is_v4(key) { self.v4.get(&key.v4(), 0) } else { self.v6.get(key, 0) }
    }
}

impl<T: BorrowMut<MapData>> FlowTables<T> {
    /// Writes the entry of `key` (`flags`: 0, `BPF_NOEXIST` or `BPF_EXIST`);
    /// `MapError::KeyNotFound` if `BPF_EXIST` found none.
    pub fn insert(&mut self, key: &FlowKey, flow: Flow, flags: u64) -> Result<(), MapError> {
        not_found(if is_v4(key) { self.v4.insert(key.v4(), flow, flags) } else { self.v6.insert(key, flow, flags) })
    }

    /// Removes the entry of `key`; `MapError::KeyNotFound` if there is none.
    pub fn remove(&mut self, key: &FlowKey) -> Result<(), MapError> {
        not_found(if is_v4(key) { self.v4.remove(&key.v4()) } else { self.v6.remove(key) })
    }
}

/// aya reports a missing key on update and delete as the syscall's ENOENT,
/// not as `MapError::KeyNotFound`; callers that remove both entries of a
/// pair, or race XDP's own removal, must tell it apart from a failure.
fn not_found(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Err(MapError::KeyNotFound),
        other => other,
    }
}

fn missing(name: &str) -> MapError {
    MapError::InvalidName { name: name.to_owned() }
}

/// The tables of a loaded data path, to read.
pub fn of(ebpf: &Ebpf) -> Result<FlowTables<&MapData>, MapError> {
    let v4 = ebpf.map(FLOWS_V4_MAP).ok_or_else(|| missing(FLOWS_V4_MAP))?.try_into()?;
    let v6 = ebpf.map(FLOWS_V6_MAP).ok_or_else(|| missing(FLOWS_V6_MAP))?.try_into()?;
    Ok(FlowTables { v4, v6 })
}

/// The tables of a loaded data path, to write.
pub fn of_mut(ebpf: &mut Ebpf) -> Result<FlowTables<&mut MapData>, MapError> {
    // Two maps borrowed mutably at once: only the iterator hands them out.
    let (mut v4, mut v6) = (None, None);
    for (name, map) in ebpf.maps_mut() {
        match name {
            FLOWS_V4_MAP => v4 = Some(map),
            FLOWS_V6_MAP => v6 = Some(map),
            _ => {}
        }
    }
    let v4: &mut Map = v4.ok_or_else(|| missing(FLOWS_V4_MAP))?;
    let v6: &mut Map = v6.ok_or_else(|| missing(FLOWS_V6_MAP))?;
    Ok(FlowTables { v4: v4.try_into()?, v6: v6.try_into()? })
}

/// Every entry of both tables of a loaded data path, in batched reads
/// (`crate::batch`).
pub fn entries(ebpf: &Ebpf) -> Result<Vec<(FlowKey, Flow)>, MapError> {
    let data = |name: &str| match ebpf.map(name) {
        Some(Map::LruHashMap(data)) => Ok(data),
        _ => Err(missing(name)),
    };
    entries_of(data(FLOWS_V4_MAP)?, data(FLOWS_V6_MAP)?)
}

/// The entries of a running daemon's tables, read from its pins.
pub fn read_pinned(instance_dir: &Path) -> Result<Vec<(FlowKey, Flow)>, MapError> {
    let v4 = MapData::from_pin(instance_dir.join(FLOWS_V4_MAP))?;
    let v6 = MapData::from_pin(instance_dir.join(FLOWS_V6_MAP))?;
    entries_of(&v4, &v6)
}

fn entries_of(v4: &MapData, v6: &MapData) -> Result<Vec<(FlowKey, Flow)>, MapError> {
    let batch_error =
        |io_error: io::Error| MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_lookup_batch", io_error });
    let short: Vec<(FlowKeyV4, Flow)> = crate::batch::lookup_all(v4).map_err(batch_error)?;
    let mut all: Vec<(FlowKey, Flow)> = crate::batch::lookup_all(v6).map_err(batch_error)?;
    all.extend(short.into_iter().map(|(key, flow)| (key.widen(), flow)));
    Ok(all)
}
