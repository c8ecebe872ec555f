//! Farms at run time: each backend's operator state (from the config, then
//! `tether backend ...`) and its health (from the checks), and what the data
//! path is told of them: the backend's `BackendInfo::state`, and the lists
//! new connections are chosen from (`FARM_RR`, `MAGLEV`, `BACKEND_LOAD`).

use lb_common::maps as abi;

use crate::{
    config::{Algorithm, BackendState, Config, Farm},
    maglev,
};

/// What the health checks last concluded of a backend. A farm without
/// checks keeps every backend `Up`; with checks, backends start `Up` and go
/// `Down` after `fall` failures in a row (as HAProxy's servers do), so a
/// restart does not turn traffic away while the first checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// One backend's run-time state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendRun {
    pub state: BackendState,
    pub health: Health,
}

/// Every backend's run-time state, `[farm][backend]` in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub farms: Vec<Vec<BackendRun>>,
}

impl Runtime {
    /// As the configuration says, every backend healthy.
    pub fn from_config(config: &Config) -> Runtime {
        Runtime {
            farms: config
                .farms
                .iter()
                .map(|f| f.backends.iter().map(|b| BackendRun { state: b.state, health: Health::Up }).collect())
                .collect(),
        }
    }
}

/// What the data path may send a backend.
pub fn data_path_state(run: BackendRun) -> abi::BackendState {
    match (run.state, run.health) {
        (BackendState::Disabled, _) => abi::BackendState::Disabled,
        (_, Health::Down) => abi::BackendState::Failed,
        (BackendState::Active, Health::Up) => abi::BackendState::Active,
        (BackendState::Draining, Health::Up) => abi::BackendState::Draining,
    }
}

/// Whether a backend takes new connections (persisted clients aside).
pub fn takes_new_connections(run: BackendRun, weight: u32) -> bool {
    data_path_state(run) == abi::BackendState::Active && weight > 0
}

/// The data path's selection state for one farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `FARM_RR`'s slice for the farm (`rr_len` = its length).
    pub rotation: Vec<u32>,
    /// The farm's `MAGLEV` table.
    pub ring: Vec<u32>,
}

/// The lists a farm's new connections are chosen from, over the backends
/// that take them. `ids` are the farm's backends' ids, in config order.
pub fn selection(farm: &Farm, runs: &[BackendRun], ids: &[u32]) -> Selection {
    let members: Vec<(usize, u32, u32)> = farm
        .backends
        .iter()
        .zip(runs)
        .zip(ids)
        .enumerate()
        .filter(|(_, ((b, run), _))| takes_new_connections(**run, b.weight))
        .map(|(j, ((b, _), id))| (j, *id, b.weight))
        .collect();
    let rotation = match farm.algorithm {
        // Weights count: the list holds each backend as often as its weight.
        Algorithm::WeightedRoundRobin | Algorithm::Random => {
            let weighted: Vec<(u32, u32)> = members.iter().map(|&(_, id, weight)| (id, weight)).collect();
            smooth_weighted(&weighted, abi::FARM_RR_SLOTS as usize)
        }
        // Each once: plain rotation, and least-connections' candidates
        // (which weighs them itself, from BACKEND_LOAD).
        Algorithm::RoundRobin | Algorithm::LeastConnections | Algorithm::Maglev => {
            members.iter().map(|&(_, id, _)| id).collect()
        }
    };
    let keys: Vec<String> = farm.backends.iter().map(|b| b.address.to_string()).collect();
    let ring_members: Vec<maglev::Member<'_>> =
        members.iter().map(|&(j, id, weight)| maglev::Member { id, key: &keys[j], weight }).collect();
    Selection { rotation, ring: maglev::table(&ring_members, abi::MAGLEV_RING as usize) }
}

/// The data path's algorithm code for a configured algorithm: weighted
/// round-robin is round-robin over a weighted list.
pub fn data_path_algorithm(algorithm: Algorithm) -> abi::Algorithm {
    match algorithm {
        Algorithm::RoundRobin | Algorithm::WeightedRoundRobin => abi::Algorithm::RoundRobin,
        Algorithm::Random => abi::Algorithm::Random,
        Algorithm::LeastConnections => abi::Algorithm::LeastConnections,
        Algorithm::Maglev => abi::Algorithm::Maglev,
    }
}

/// A list in which each `(id, weight)` appears in proportion to its weight,
/// spread out rather than in runs (nginx's "smooth weighted round-robin":
/// each turn every member gains its weight and the richest pays the total).
/// Weights are reduced by their common divisor and, when they add up to
/// more than `max_len`, scaled down (each member keeps at least one turn).
pub fn smooth_weighted(members: &[(u32, u32)], max_len: usize) -> Vec<u32> {
    let members: Vec<(u32, u64)> = members.iter().filter(|(_, w)| *w > 0).map(|&(id, w)| (id, u64::from(w))).collect();
    if members.is_empty() {
        return Vec::new();
    }
    let divisor = members.iter().fold(0, |g, &(_, w)| gcd(g, w));
    let mut weights: Vec<u64> = members.iter().map(|&(_, w)| w / divisor).collect();
    let mut scale = 1;
    while weights.iter().sum::<u64>() > max_len as u64 && scale < u64::from(u32::MAX) {
        scale += 1;
        weights = members.iter().map(|&(_, w)| (w / divisor / scale).max(1)).collect();
    }
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; members.len()];
    let mut list = Vec::with_capacity(total as usize);
    for _ in 0..total.min(max_len as u64) {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let (best, _) = current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).expect("members");
        current[best] -= total as i64;
        list.push(members[best].0);
    }
    list
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(list: &[u32]) -> std::collections::BTreeMap<u32, usize> {
        let mut m = std::collections::BTreeMap::new();
        for id in list {
            *m.entry(*id).or_default() += 1;
        }
        m
    }

    #[test]
    fn smooth_weighted_lists_follow_the_weights_and_interleave() {
        let list = smooth_weighted(&[(10, 5), (11, 1), (12, 1)], 4096);
        assert_eq!(list.len(), 7);
        assert_eq!(counts(&list), [(10, 5), (11, 1), (12, 1)].into_iter().collect());
        // No run of the heavy backend longer than its share needs.
        assert_eq!(list, vec![10, 10, 11, 10, 12, 10, 10]);
        // Common divisors go: weights 200/100 make a list of three.
        assert_eq!(counts(&smooth_weighted(&[(1, 200), (2, 100)], 4096)), [(1, 2), (2, 1)].into_iter().collect());
    }

    #[test]
    fn weights_too_large_for_the_list_are_scaled_and_everyone_keeps_a_turn() {
        let list = smooth_weighted(&[(1, 65_535), (2, 30_000), (3, 1)], 4096);
        assert!(list.len() <= 4096, "{}", list.len());
        let c = counts(&list);
        assert!(c[&3] >= 1);
        let ratio = c[&1] as f64 / c[&2] as f64;
        assert!((ratio - 65_535.0 / 30_000.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn zero_weights_and_empty_farms_give_empty_lists() {
        assert!(smooth_weighted(&[], 16).is_empty());
        assert!(smooth_weighted(&[(1, 0)], 16).is_empty());
    }

    #[test]
    fn health_and_operator_state_combine() {
        let run = |state, health| data_path_state(BackendRun { state, health });
        assert_eq!(run(BackendState::Active, Health::Up), abi::BackendState::Active);
        assert_eq!(run(BackendState::Draining, Health::Up), abi::BackendState::Draining);
        assert_eq!(run(BackendState::Active, Health::Down), abi::BackendState::Failed);
        assert_eq!(run(BackendState::Draining, Health::Down), abi::BackendState::Failed);
        assert_eq!(run(BackendState::Disabled, Health::Down), abi::BackendState::Disabled);
        assert!(!takes_new_connections(BackendRun { state: BackendState::Active, health: Health::Up }, 0));
    }
}
