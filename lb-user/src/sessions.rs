//! The persistence table (`SESSIONS`) from userspace: the daemon's sweep of
//! expired entries, and what `tether sessions` shows and changes.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use lb_common::{
    maps::{
        MAX_PERSIST_KINDS, NO_BACKEND, PERSIST_STAT_SLOTS, PersistCounters, PersistKind, REMOVALS_FLUSHED,
        SESSION_KEY_MAX, SESSION_KEY_SOURCE_MAX, SessionEntry, SessionKey,
    },
    persist,
};

use crate::{
    config::{Farm, PersistenceKind},
    control::LayoutReport,
    stats::SESSIONS_PIN,
};

/// Pins, beside `stats::SESSIONS_PIN`.
pub const PERSIST_STATS_PIN: &str = lb_common::maps::PERSIST_STATS_MAP;
pub const SESSION_REMOVALS_PIN: &str = lb_common::maps::SESSION_REMOVALS_MAP;
pub const SESSION_FILTER_PIN: &str = lb_common::maps::SESSION_FILTER_MAP;

/// The kinds in `PersistKind` order, with their configuration names.
pub const KINDS: [(PersistKind, &str); MAX_PERSIST_KINDS] = [
    (PersistKind::SessionId, "session-id"),
    (PersistKind::Ticket, "ticket"),
    (PersistKind::TicketKey, "ticket-key"),
    (PersistKind::SessionIdPrefix, "session-id-prefix"),
    (PersistKind::Sni, "sni"),
    (PersistKind::SourceIp, "source-ip"),
];

pub fn kind_name(kind: u8) -> &'static str {
    KINDS.iter().find(|(k, _)| *k as u8 == kind).map_or("unknown", |(_, name)| name)
}

/// A configured kind as the data path numbers it.
pub fn kind_of(config_kind: PersistenceKind) -> PersistKind {
    match config_kind {
        PersistenceKind::SessionId => PersistKind::SessionId,
        PersistenceKind::Ticket => PersistKind::Ticket,
        PersistenceKind::TicketKey => PersistKind::TicketKey,
        PersistenceKind::SessionIdPrefix => PersistKind::SessionIdPrefix,
        PersistenceKind::Sni => PersistKind::Sni,
        PersistenceKind::SourceIp => PersistKind::SourceIp,
    }
}

fn syscall(call: &'static str) -> impl Fn(std::io::Error) -> MapError {
    move |io_error| MapError::SyscallError(aya::sys::SyscallError { call, io_error })
}

/// Every entry of a `SESSIONS` map.
pub fn entries(map: &MapData) -> Result<Vec<(SessionKey, SessionEntry)>, MapError> {
    crate::batch::lookup_all(map).map_err(syscall("bpf_map_lookup_batch"))
}

/// Removes the entries of `sessions` (whose contents a batch read gave as
/// `scanned`) unused for longer than their farm's timeout (`timeouts`, by
/// farm id) at `now` (CLOCK_MONOTONIC ns), counting them in `removals`.
/// Returns how many went.
pub fn sweep(
    scanned: &[(SessionKey, SessionEntry)],
    sessions: &mut HashMap<&mut MapData, SessionKey, SessionEntry>,
    removals: &mut Array<&mut MapData, u64>,
    timeouts: &[Duration],
    now: u64,
) -> Result<usize, MapError> {
    let mut removed = 0;
    for (key, entry) in scanned.iter().filter(|(k, e)| expired(k, e, timeouts, now)) {
        // Looked at again: a lookup may have refreshed it since the scan.
        match sessions.get(key, 0) {
            Ok(current) if current.last_used_ns == entry.last_used_ns => {}
            _ => continue,
        }
        match sessions.remove(key) {
            Ok(()) => {
                removed += 1;
                add(removals, key.farm_id * PERSIST_STAT_SLOTS + key.kind as u32, 1)?;
            }
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn expired(key: &SessionKey, entry: &SessionEntry, timeouts: &[Duration], now: u64) -> bool {
    // An entry of a farm the configuration no longer has can never be used.
    let Some(timeout) = timeouts.get(key.farm_id as usize) else { return true };
    now.saturating_sub(entry.last_used_ns) > timeout.as_nanos() as u64
}

fn add(array: &mut Array<&mut MapData, u64>, index: u32, n: u64) -> Result<(), MapError> {
    let old = array.get(&index, 0)?;
    array.set(index, old + n, 0)
}

/// A running instance's persistence maps, opened from their pins.
pub struct Pinned {
    sessions: Map,
    stats: Map,
    removals: Map,
    /// None for the pins of a build without the filter.
    filter: Option<crate::session_filter::SessionFilter>,
}

impl Pinned {
    pub fn open(instance_dir: &Path) -> anyhow::Result<Pinned> {
        let open = |pin: &str| -> anyhow::Result<Map> {
            let path = instance_dir.join(pin);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("cannot open {}; is the daemon running?", path.display()))?;
            Ok(Map::from_map_data(data)?)
        };
        let filter_pin = instance_dir.join(SESSION_FILTER_PIN);
        let filter = match MapData::from_pin(&filter_pin) {
            Ok(data) => Some(
                crate::session_filter::SessionFilter::map(&data)
                    .with_context(|| format!("cannot map {}", filter_pin.display()))?,
            ),
            Err(_) => None,
        };
        Ok(Pinned {
            sessions: open(SESSIONS_PIN)?,
            stats: open(PERSIST_STATS_PIN)?,
            removals: open(SESSION_REMOVALS_PIN)?,
            filter,
        })
    }

    /// Slots of the session filter's active generation that are marked, and
    /// its slots; None if the instance has no filter.
    pub fn filter_marked(&self) -> Option<(u64, u64)> {
        self.filter.as_ref().map(|f| (f.marked(), f.slots()))
    }

    pub fn entries(&self) -> anyhow::Result<Vec<(SessionKey, SessionEntry)>> {
        match &self.sessions {
            Map::LruHashMap(data) => Ok(entries(data)?),
            _ => bail!("the pinned `{SESSIONS_PIN}` map is not an LRU hash map"),
        }
    }

    /// The table's size, as the daemon sized it from the farms' capacities.
    pub fn capacity(&self) -> anyhow::Result<u32> {
        match &self.sessions {
            Map::LruHashMap(data) => Ok(data.info()?.max_entries()),
            _ => bail!("the pinned `{SESSIONS_PIN}` map is not an LRU hash map"),
        }
    }

    pub fn get(&self, key: &SessionKey) -> anyhow::Result<Option<SessionEntry>> {
        let sessions: HashMap<&MapData, SessionKey, SessionEntry> = (&self.sessions).try_into()?;
        match sessions.get(key, 0) {
            Ok(entry) => Ok(Some(entry)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes one entry; false if there was none.
    pub fn remove(&mut self, key: &SessionKey) -> anyhow::Result<bool> {
        let mut sessions: HashMap<&mut MapData, SessionKey, SessionEntry> = (&mut self.sessions).try_into()?;
        match sessions.remove(key) {
            Ok(()) => {}
            Err(MapError::KeyNotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let mut removals: Array<&mut MapData, u64> = (&mut self.removals).try_into()?;
        add(&mut removals, REMOVALS_FLUSHED + key.farm_id * PERSIST_STAT_SLOTS + key.kind as u32, 1)?;
        Ok(true)
    }

    /// One farm's and kind's counters, summed over CPUs, and the entries the
    /// sweeper and flushes removed.
    pub fn counters(&self, farm_id: u32, kind: PersistKind) -> anyhow::Result<KindCounters> {
        let index = farm_id * PERSIST_STAT_SLOTS + kind as u32;
        let stats: PerCpuArray<&MapData, PersistCounters> = (&self.stats).try_into()?;
        let mut sum = PersistCounters::default();
        stats.get(&index, 0)?.iter().for_each(|c| sum.add(c));
        let removals: Array<&MapData, u64> = (&self.removals).try_into()?;
        Ok(KindCounters {
            xdp: sum,
            swept: removals.get(&index, 0)?,
            flushed: removals.get(&(REMOVALS_FLUSHED + index), 0)?,
        })
    }
}

/// What one kind did for one farm.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindCounters {
    pub xdp: PersistCounters,
    pub swept: u64,
    pub flushed: u64,
}

impl KindCounters {
    pub fn misses(&self) -> u64 {
        self.xdp.lookups.saturating_sub(self.xdp.hits)
    }

    /// Expired: found stale by a lookup, or removed by the sweeper.
    pub fn expiries(&self) -> u64 {
        self.xdp.expired + self.swept
    }

    /// Entries the LRU pushed out: every one added and not still there,
    /// swept or flushed. (Read at slightly different moments, so a busy
    /// table can be off by the entries added in between.)
    pub fn evictions(&self, live: u64) -> u64 {
        self.xdp.inserted.saturating_sub(live + self.swept + self.flushed)
    }
}

/// How a key of `kind` is written on the command line and in listings:
/// hex bytes for session IDs, tickets and key names, the hash for server
/// names (`lookup --key` takes the name), the prefix for addresses. A key
/// longer than 16 bytes (a 32-byte session ID, a ticket's first 32 bytes)
/// is stored folded (`persist::fold_key`), and listed as `fold<length>:`
/// and the stored bytes, which `lookup` and `flush` take as well as the
/// whole key.
pub fn format_key(key: &SessionKey) -> String {
    if key.is_folded() {
        return format!("{FOLDED}{}:{}", key.len, hex(&key.bytes));
    }
    let bytes = &key.bytes[..(key.len as usize).min(SESSION_KEY_MAX)];
    match PersistKind::try_from(key.kind) {
        Ok(PersistKind::SourceIp) if key.len == 4 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]).to_string(),
        Ok(PersistKind::SourceIp) if key.len == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytes);
            IpAddr::from(b).to_string()
        }
        Ok(PersistKind::Sni) => format!("hash:{}", hex(bytes)),
        _ => hex(bytes),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("`{text}` is not hex bytes (two hex digits a byte)");
    }
    Ok((0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("checked hex")).collect())
}

/// How a listing writes a folded key: `fold32:` and 16 hex bytes.
const FOLDED: &str = "fold";

/// A folded key as `format_key` writes it, `fold<length>:<hex>` (the
/// length of the key before folding, 17 to 32); None for any other text.
fn parse_folded(farm_id: u32, kind: PersistKind, value: &str) -> anyhow::Result<Option<SessionKey>> {
    let Some((len, bytes)) = value.trim().strip_prefix(FOLDED).and_then(|rest| rest.split_once(':')) else {
        return Ok(None);
    };
    let Ok(len) = len.parse::<u8>() else { return Ok(None) };
    if !(SESSION_KEY_MAX + 1..=SESSION_KEY_SOURCE_MAX).contains(&usize::from(len)) {
        bail!("a folded key stands for 17 to 32 bytes; `{value}` says {len}");
    }
    let bytes: [u8; SESSION_KEY_MAX] = unhex(bytes)?
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("a folded key has {SESSION_KEY_MAX} bytes; `{value}` has {}", b.len()))?;
    Ok(Some(SessionKey { farm_id, kind: kind as u8, len, _pad: [0, 0], bytes }))
}

/// The `SESSIONS` key an operator names: `value` is hex for `session-id`
/// (the whole ID), `ticket` (the ticket, or its first 32 bytes) and
/// `ticket-key` (16 bytes), the server name for `sni`, the client address
/// for `source-ip` (the farm's prefix length is applied). A session ID or
/// ticket may also be named as a listing writes its folded key
/// (`format_key`).
pub fn key_for(farm: &Farm, farm_id: u32, kind: PersistKind, value: &str) -> anyhow::Result<SessionKey> {
    if matches!(kind, PersistKind::SessionId | PersistKind::Ticket)
        && let Some(key) = parse_folded(farm_id, kind, value)?
    {
        return Ok(key);
    }
    // The bytes the data path keys by; `SessionKey::new` stores them.
    let source: Vec<u8> = match kind {
        PersistKind::SessionId => {
            let id = unhex(value)?;
            if id.is_empty() || id.len() > 32 {
                bail!("a session ID has 1 to 32 bytes; `{value}` has {}", id.len());
            }
            id
        }
        PersistKind::Ticket => {
            let mut ticket = unhex(value)?;
            if ticket.is_empty() {
                bail!("give the ticket's bytes (at least its first 32) in hex");
            }
            ticket.truncate(persist::TICKET_ID_LEN);
            ticket
        }
        PersistKind::TicketKey => {
            let mut name = unhex(value)?;
            if name.len() < persist::KEY_NAME_LEN {
                bail!("a ticket key name has 16 bytes; `{value}` has {}", name.len());
            }
            name.truncate(persist::KEY_NAME_LEN);
            name
        }
        PersistKind::Sni => persist::name_hash(value.as_bytes()).to_vec(),
        PersistKind::SourceIp => {
            let address: IpAddr = value.parse().with_context(|| format!("`{value}` is not an IP address"))?;
            let (family, prefix) = match address {
                IpAddr::V4(_) => (lb_common::Family::Ipv4 as u8, farm.source_prefix_v4),
                IpAddr::V6(_) => (lb_common::Family::Ipv6 as u8, farm.source_prefix_v6),
            };
            let mut masked = [0u8; 16];
            let len = persist::source_prefix(&crate::loader::addr_bytes(address), family, prefix, &mut masked);
            masked[..len as usize].to_vec()
        }
        PersistKind::SessionIdPrefix => bail!("`session-id-prefix` has no table: it routes by the configured prefixes"),
    };
    Ok(SessionKey::new(farm_id, kind, &source))
}

/// A backend's name for listings; `NO_BACKEND` is a ticket key several
/// backends share.
pub fn backend_label(layout: &LayoutReport, backend_id: u32) -> String {
    if backend_id == NO_BACKEND {
        return "(shared key)".to_owned();
    }
    match layout.backend_name(backend_id) {
        Some(name) => name.to_owned(),
        None => format!("#{backend_id} (not in the configuration)"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn farm() -> Farm {
        let text = "[daemon]\ninterfaces = [\"eth0\"]\n\n[[vip]]\nname = \"v\"\naddress = \"198.18.100.100\"\n\
                    port = 443\nfarm = \"web\"\nsnat = \"198.19.0.1\"\n\n[[farm]]\nname = \"web\"\n\
                    [[farm.backend]]\nname = \"b0\"\naddress = \"198.19.0.11:443\"\n";
        let config = Config::parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e:?}"));
        config.farms[0].clone()
    }

    #[test]
    fn a_listed_folded_key_names_the_same_entry_as_the_whole_id() {
        let farm = farm();
        let id: Vec<u8> = (0..32).map(|i| i * 7 + 1).collect();
        let whole = key_for(&farm, 2, PersistKind::SessionId, &hex(&id)).expect("the whole ID");
        assert!(whole.is_folded());
        let listed = format_key(&whole);
        assert!(listed.starts_with("fold32:"), "{listed}");
        assert_eq!(key_for(&farm, 2, PersistKind::SessionId, &listed).expect("the listed key"), whole);
        // A 16-byte ID is stored and listed as it is.
        let short = key_for(&farm, 2, PersistKind::SessionId, &hex(&id[..16])).expect("a short ID");
        assert_eq!((short.is_folded(), format_key(&short)), (false, hex(&id[..16])));
    }

    #[test]
    fn a_malformed_folded_key_is_refused() {
        let farm = farm();
        let bytes = hex(&[0xAB; 16]);
        for bad in
            [format!("fold16:{bytes}"), format!("fold33:{bytes}"), "fold32:abcd".to_owned(), "fold32:zz".to_owned()]
        {
            assert!(key_for(&farm, 0, PersistKind::SessionId, &bad).is_err(), "{bad}");
        }
        // Not a form of `ticket-key`, whose keys are never folded.
        assert!(key_for(&farm, 0, PersistKind::TicketKey, &format!("fold32:{bytes}")).is_err());
    }
}
