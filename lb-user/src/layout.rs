//! The ids the data path knows farms and backends by.
//!
//! Flows and learned sessions hold backend ids, and sessions farm ids, so an
//! id must keep naming the same thing while the daemon runs: a farm keeps its
//! id by name, a backend by its farm and address (renaming a backend changes
//! nothing; readdressing it makes it another backend, whose sessions the old
//! server held). A reload keeps the ids of what stays and gives what is new
//! ids never used before in this daemon's life, as long as there are any, so
//! a connection still open to a removed backend is not counted as another's.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
};

use lb_common::maps::{MAX_BACKENDS, MAX_FARMS};

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Per configured farm (config order): its id.
    farms: Vec<u32>,
    /// Per configured farm and backend: its id.
    backends: Vec<Vec<u32>>,
    used_farms: BTreeSet<u32>,
    used_backends: BTreeSet<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("more than {MAX_FARMS} farms would be in use at once")]
    Farms,
    #[error("more than {MAX_BACKENDS} backends would be in use at once")]
    Backends,
}

impl Layout {
    /// Ids in config order: farm `i` is `i`, backends numbered across farms.
    pub fn initial(config: &Config) -> Layout {
        let mut next = 0u32;
        let backends: Vec<Vec<u32>> = config
            .farms
            .iter()
            .map(|f| {
                f.backends
                    .iter()
                    .map(|_| {
                        next += 1;
                        next - 1
                    })
                    .collect()
            })
            .collect();
        let farms: Vec<u32> = (0..config.farms.len() as u32).collect();
        Layout {
            used_farms: farms.iter().copied().collect(),
            used_backends: backends.iter().flatten().copied().collect(),
            farms,
            backends,
        }
    }

    /// The layout for `new`, which replaces `old` (laid out as `self`).
    pub fn next(&self, old: &Config, new: &Config) -> Result<Layout, LayoutError> {
        let farms: HashMap<String, u32> =
            old.farms.iter().enumerate().map(|(i, f)| (f.name.clone(), self.farms[i])).collect();
        let mut backends = HashMap::new();
        for (i, f) in old.farms.iter().enumerate() {
            for (j, b) in f.backends.iter().enumerate() {
                backends.insert((f.name.clone(), b.address), self.backends[i][j]);
            }
        }
        assign(new, &farms, &backends, self.used_farms.clone(), self.used_backends.clone())
    }

    /// The layout for `config` over the ids an earlier daemon left in its
    /// pinned maps (`loader::PinnedLayout`): what it knew keeps its id.
    pub fn adopt(
        config: &Config,
        farms: &HashMap<String, u32>,
        backends: &HashMap<(String, SocketAddr), u32>,
    ) -> Result<Layout, LayoutError> {
        let used_farms = farms.values().copied().collect();
        let used_backends = backends.values().copied().collect();
        assign(config, farms, backends, used_farms, used_backends)
    }

    /// The id of configured farm `farm`.
    pub fn farm(&self, farm: usize) -> u32 {
        self.farms[farm]
    }

    /// The id of backend `j` of configured farm `farm`.
    pub fn backend(&self, farm: usize, j: usize) -> u32 {
        self.backends[farm][j]
    }

    /// Which configured farm has id `farm_id`.
    pub fn farm_index(&self, farm_id: u32) -> Option<usize> {
        self.farms.iter().position(|id| *id == farm_id)
    }

    /// Which configured farm and backend have id `backend_id`.
    pub fn backend_index(&self, backend_id: u32) -> Option<(usize, usize)> {
        self.backends
            .iter()
            .enumerate()
            .find_map(|(i, ids)| ids.iter().position(|id| *id == backend_id).map(|j| (i, j)))
    }

    /// Farm ids in use, in config order.
    pub fn farm_ids(&self) -> &[u32] {
        &self.farms
    }

    /// Backend ids in use.
    pub fn backend_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.backends.iter().flatten().copied()
    }
}

/// Ids for `new`: `known` ones where a farm (by name) or backend (by farm and
/// address) has one, fresh ones for the rest.
fn assign(
    new: &Config,
    known_farms: &HashMap<String, u32>,
    known_backends: &HashMap<(String, SocketAddr), u32>,
    mut used_farms: BTreeSet<u32>,
    mut used_backends: BTreeSet<u32>,
) -> Result<Layout, LayoutError> {
    let kept_farms: Vec<Option<u32>> = new.farms.iter().map(|f| known_farms.get(&f.name).copied()).collect();
    let kept_backends: Vec<Vec<Option<u32>>> = new
        .farms
        .iter()
        .map(|f| f.backends.iter().map(|b| known_backends.get(&(f.name.clone(), b.address)).copied()).collect())
        .collect();
    let mut taken_farms: BTreeSet<u32> = kept_farms.iter().flatten().copied().collect();
    let mut taken_backends: BTreeSet<u32> = kept_backends.iter().flatten().flatten().copied().collect();
    let farms = kept_farms
        .iter()
        .map(|kept| match kept {
            Some(id) => Ok(*id),
            None => allocate(MAX_FARMS, &mut taken_farms, &mut used_farms).ok_or(LayoutError::Farms),
        })
        .collect::<Result<Vec<u32>, _>>()?;
    let backends = kept_backends
        .iter()
        .map(|farm| {
            farm.iter()
                .map(|kept| match kept {
                    Some(id) => Ok(*id),
                    None => {
                        allocate(MAX_BACKENDS, &mut taken_backends, &mut used_backends).ok_or(LayoutError::Backends)
                    }
                })
                .collect::<Result<Vec<u32>, _>>()
        })
        .collect::<Result<Vec<Vec<u32>>, _>>()?;
    Ok(Layout { farms, backends, used_farms, used_backends })
}

/// The lowest id below `limit` not `taken`, preferring ones never `used`;
/// marks it taken and used.
fn allocate(limit: u32, taken: &mut BTreeSet<u32>, used: &mut BTreeSet<u32>) -> Option<u32> {
    let id = (0..limit)
        .find(|id| !taken.contains(id) && !used.contains(id))
        .or_else(|| (0..limit).find(|id| !taken.contains(id)))?;
    taken.insert(id);
    used.insert(id);
    Some(id)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(farms: &[(&str, &[&str])]) -> Config {
        let mut text = String::from(
            "[daemon]\ninterfaces = [\"eth0\"]\n\n[[vip]]\nname = \"v\"\naddress = \"198.18.100.100\"\nport = 443\n\
             farm = \"web\"\nsnat = \"198.19.0.1\"\n",
        );
        for (name, backends) in farms {
            text.push_str(&format!("\n[[farm]]\nname = \"{name}\"\n"));
            for (j, address) in backends.iter().enumerate() {
                text.push_str(&format!("[[farm.backend]]\nname = \"n{j}\"\naddress = \"{address}\"\n"));
            }
        }
        Config::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_first_layout_numbers_in_config_order() {
        let c = config(&[("web", &["198.19.0.11:443", "198.19.0.12:443"]), ("api", &["198.19.0.13:443"])]);
        let l = Layout::initial(&c);
        assert_eq!((l.farm(0), l.farm(1)), (0, 1));
        assert_eq!((l.backend(0, 0), l.backend(0, 1), l.backend(1, 0)), (0, 1, 2));
        assert_eq!(l.backend_index(2), Some((1, 0)));
    }

    #[test]
    fn a_reload_keeps_ids_by_name_and_address_and_gives_new_ones_fresh_ids() {
        let old = config(&[("web", &["198.19.0.11:443", "198.19.0.12:443"]), ("api", &["198.19.0.13:443"])]);
        let l = Layout::initial(&old);
        // `api` goes, `mail` comes first, `web` loses .11, gains .14, keeps .12.
        let new = config(&[("mail", &["198.19.0.21:25"]), ("web", &["198.19.0.14:443", "198.19.0.12:443"])]);
        let n = l.next(&old, &new).unwrap();
        assert_eq!(n.farm(1), 0, "web keeps its id");
        assert_eq!(n.farm(0), 2, "mail gets an id no farm had, not api's 1");
        assert_eq!(n.backend(1, 1), 1, ".12 keeps its id");
        let fresh = [n.backend(0, 0), n.backend(1, 0)];
        assert!(fresh.iter().all(|id| *id >= 3), "new backends get ids never used: {fresh:?}");
        assert_ne!(fresh[0], fresh[1]);
        // And back: api returns with a fresh id too; .11 likewise.
        let again = n.next(&new, &old).unwrap();
        assert_eq!(again.farm(0), 0);
        assert!(again.farm(1) >= 3);
        assert_eq!(again.backend(0, 1), 1);
    }

    #[test]
    fn ids_are_reused_only_when_every_fresh_one_is_gone() {
        let mut taken = BTreeSet::from([0, 1]);
        let mut used = BTreeSet::from([0, 1, 2, 3]);
        assert_eq!(allocate(5, &mut taken, &mut used), Some(4));
        assert_eq!(allocate(5, &mut taken, &mut used), Some(2));
        assert_eq!(allocate(5, &mut taken, &mut used), Some(3));
        assert_eq!(allocate(5, &mut taken, &mut used), None);
    }
}
