//! `tether sessions`: the persistence table of a running daemon, for an
//! operator.

use std::path::Path;

use anyhow::{Context as _, bail};
use lb_common::maps::{PersistKind, SessionEntry, SessionKey};

use crate::{
    cli::SessionsAction,
    config::{Config, Farm},
    control::{self, LayoutReport, Reply, Request},
    loader::monotonic_ns,
    pins,
    sessions::{self, Pinned},
};

pub fn run(config_path: &Path, instance: &str, action: SessionsAction) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let dir = pins::instance_dir(&config.daemon.pin_path, instance);
    let mut pinned = Pinned::open(&dir).with_context(|| format!("instance `{instance}`"))?;
    // The ids the daemon gave farms and backends (after a reload they need
    // not follow the file's order).
    let layout = match control::request(&config.daemon.control_socket, &Request::Layout)? {
        Reply::Layout(layout) => layout,
        Reply::Error { message } => bail!("{message}"),
        other => bail!("the daemon answered {other:?} to a layout request"),
    };
    match action {
        SessionsAction::List { farm, kind, page, page_size } => {
            let farm = farm.map(|f| farm_id(&layout, &f)).transpose()?;
            let kind = kind.map(|k| kind_by_name(&k)).transpose()?;
            list(&layout, &pinned, farm, kind, page, page_size)
        }
        SessionsAction::Lookup { farm, kind, key } => {
            let key =
                sessions::key_for(farm_config(&config, &farm)?, farm_id(&layout, &farm)?, kind_by_name(&kind)?, &key)?;
            match pinned.get(&key)? {
                Some(entry) => {
                    print_header();
                    print_entry(&layout, &(key, entry), monotonic_ns());
                    Ok(())
                }
                None => bail!("no entry for {} key {} in farm `{farm}`", kind, sessions::format_key(&key)),
            }
        }
        SessionsAction::Flush { farm, kind, key } => {
            let farm_id = farm_id(&layout, &farm)?;
            let kind = kind.map(|k| kind_by_name(&k)).transpose()?;
            let removed = match (kind, key) {
                (Some(kind), Some(value)) => {
                    let key = sessions::key_for(farm_config(&config, &farm)?, farm_id, kind, &value)?;
                    if !pinned.remove(&key)? {
                        bail!("no entry for that key in farm `{farm}`");
                    }
                    1
                }
                (kind, _) => {
                    let keys: Vec<SessionKey> = pinned
                        .entries()?
                        .into_iter()
                        .map(|(k, _)| k)
                        .filter(|k| k.farm_id == farm_id && kind.is_none_or(|kind| k.kind == kind as u8))
                        .collect();
                    let mut removed = 0;
                    for key in &keys {
                        removed += usize::from(pinned.remove(key)?);
                    }
                    removed
                }
            };
            println!("removed {removed} entries from farm `{farm}`");
            Ok(())
        }
        SessionsAction::Stats => stats(&config, &layout, &pinned),
    }
}

fn farm_id(layout: &LayoutReport, name: &str) -> anyhow::Result<u32> {
    layout.farm_id(name).with_context(|| {
        let names: Vec<&str> = layout.farms.iter().map(|f| f.name.as_str()).collect();
        format!("the daemon has no farm `{name}` (farms: {})", names.join(", "))
    })
}

fn farm_config<'a>(config: &'a Config, name: &str) -> anyhow::Result<&'a Farm> {
    config.farms.iter().find(|f| f.name == name).with_context(|| format!("no farm `{name}` in the configuration"))
}

fn kind_by_name(name: &str) -> anyhow::Result<PersistKind> {
    sessions::KINDS.iter().find(|(_, n)| *n == name).map(|(k, _)| *k).with_context(|| {
        let names: Vec<&str> = sessions::KINDS.iter().map(|(_, n)| *n).collect();
        format!("`{name}` is not a persistence kind ({})", names.join(", "))
    })
}

fn list(
    layout: &LayoutReport,
    pinned: &Pinned,
    farm: Option<u32>,
    kind: Option<PersistKind>,
    page: usize,
    page_size: usize,
) -> anyhow::Result<()> {
    if page == 0 || page_size == 0 {
        bail!("--page and --page-size count from 1");
    }
    let mut entries: Vec<(SessionKey, SessionEntry)> = pinned
        .entries()?
        .into_iter()
        .filter(|(k, _)| farm.is_none_or(|f| k.farm_id == f) && kind.is_none_or(|kind| k.kind == kind as u8))
        .collect();
    entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.last_used_ns));
    let pages = entries.len().div_ceil(page_size).max(1);
    println!("{} entries, page {page} of {pages}", entries.len());
    print_header();
    let now = monotonic_ns();
    for entry in entries.iter().skip((page - 1) * page_size).take(page_size) {
        print_entry(layout, entry, now);
    }
    Ok(())
}

fn print_header() {
    println!("{:<12} {:<18} {:<66} {:<16} {:>9} {:>9}", "farm", "kind", "key", "backend", "age_s", "idle_s");
}

fn print_entry(layout: &LayoutReport, (key, entry): &(SessionKey, SessionEntry), now: u64) {
    let farm = layout.farm_name(key.farm_id).unwrap_or("?");
    let secs = |t: u64| now.saturating_sub(t) / 1_000_000_000;
    println!(
        "{:<12} {:<18} {:<66} {:<16} {:>9} {:>9}",
        farm,
        sessions::kind_name(key.kind),
        sessions::format_key(key),
        sessions::backend_label(layout, entry.backend_id),
        secs(entry.created_ns),
        secs(entry.last_used_ns)
    );
}

fn stats(config: &Config, layout: &LayoutReport, pinned: &Pinned) -> anyhow::Result<()> {
    let entries = pinned.entries()?;
    let now = monotonic_ns();
    let capacity = pinned.capacity()?;
    println!(
        "table: {} of {capacity} entries ({:.2}% full)",
        entries.len(),
        100.0 * entries.len() as f64 / capacity.max(1) as f64
    );
    match pinned.filter_marked() {
        Some((marked, slots)) => println!(
            "filter: {marked} of {slots} slots marked ({:.2}%: the share of misses still looked up)",
            100.0 * marked as f64 / slots as f64
        ),
        None => println!("filter: none pinned"),
    }
    match entries.iter().map(|(_, e)| e.created_ns).min() {
        Some(oldest) => println!("oldest entry: learned {} s ago", now.saturating_sub(oldest) / 1_000_000_000),
        None => println!("oldest entry: none"),
    }
    println!(
        "{:<12} {:<18} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "farm", "kind", "entries", "lookups", "hits", "misses", "learns", "expiries", "evictions", "unusable"
    );
    for farm in &config.farms {
        let Some(farm_id) = layout.farm_id(&farm.name) else { continue };
        for kind in farm.persistence.iter().map(|k| sessions::kind_of(*k)) {
            let c = pinned.counters(farm_id, kind)?;
            let live = entries.iter().filter(|(k, _)| k.farm_id == farm_id && k.kind == kind as u8).count() as u64;
            println!(
                "{:<12} {:<18} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                farm.name,
                sessions::kind_name(kind as u8),
                live,
                c.xdp.lookups,
                c.xdp.hits,
                c.misses(),
                c.xdp.learns,
                c.expiries(),
                c.evictions(live),
                c.xdp.unusable
            );
        }
    }
    Ok(())
}
