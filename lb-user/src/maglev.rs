//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4): a lookup table of prime
//! size in which each backend owns an almost equal share of slots, and removing
//! one backend of N moves about 1/N of the slots. XDP indexes the table with a
//! hash of the client address (`lb_common::hash::addr`).

use lb_common::maps::NO_BACKEND;

/// A backend as Maglev sees it: the id written into the table, the stable
/// identity its permutation derives from (its address, so renaming a backend
/// moves nobody), and its weight (0 is treated as 1; the caller leaves
/// weight-0 backends out).
pub struct Member<'a> {
    pub id: u32,
    pub key: &'a str,
    pub weight: u32,
}

/// Fills a table of `size` slots (a prime) with member ids; all `NO_BACKEND`
/// when there are no members.
pub fn table(members: &[Member<'_>], size: usize) -> Vec<u32> {
    let mut slots = vec![NO_BACKEND; size];
    if members.is_empty() {
        return slots;
    }
    let size64 = size as u64;
    // Each member walks its own permutation of the slots: offset + j * skip.
    let permutations: Vec<(u64, u64)> = members
        .iter()
        .map(|m| (fnv1a(m.key, 0xCBF2_9CE4_8422_2325) % size64, fnv1a(m.key, 0x8422_2325_CBF2_9CE4) % (size64 - 1) + 1))
        .collect();
    let mut next = vec![0u64; members.len()];
    // Weights: each round, every member earns its weight and claims a slot
    // for each `heaviest` it has earned, so shares follow the weights and
    // equal weights fill the table exactly as the unweighted algorithm.
    let weights: Vec<u64> = members.iter().map(|m| u64::from(m.weight.max(1))).collect();
    let heaviest = *weights.iter().max().expect("members is not empty");
    let mut credit = vec![0u64; members.len()];
    let mut filled = 0;
    while filled < size {
        for (i, member) in members.iter().enumerate() {
            credit[i] += weights[i];
            if credit[i] < heaviest {
                continue;
            }
            credit[i] -= heaviest;
            let (offset, skip) = permutations[i];
            let mut slot = ((offset + next[i] * skip) % size64) as usize;
            while slots[slot] != NO_BACKEND {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % size64) as usize;
            }
            slots[slot] = member.id;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break;
            }
        }
    }
    slots
}

/// FNV-1a, 64-bit, with a chosen offset basis: stable across builds and hosts
/// (unlike std's hasher), so a restarted daemon computes the same table.
fn fnv1a(text: &str, basis: u64) -> u64 {
    text.bytes().fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 65_537;

    fn members(keys: &[String]) -> Vec<Member<'_>> {
        keys.iter().enumerate().map(|(i, k)| Member { id: i as u32, key: k, weight: 1 }).collect()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("198.19.0.{}:443", 11 + i)).collect()
    }

    #[test]
    fn every_slot_is_filled_and_shares_are_even() {
        for n in [1, 2, 3, 7, 10, 50] {
            let k = keys(n);
            let t = table(&members(&k), SIZE);
            let mut counts = vec![0usize; n];
            for id in &t {
                counts[*id as usize] += 1;
            }
            let ideal = SIZE as f64 / n as f64;
            for c in &counts {
                assert!(
                    (*c as f64 - ideal).abs() / ideal < 0.01,
                    "n={n}: shares {counts:?} stray over 1% from {ideal}"
                );
            }
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10;
        let k = keys(n);
        let before = table(&members(&k), SIZE);
        // Backend 3 leaves; the others keep their ids.
        let remaining: Vec<Member<'_>> = members(&k).into_iter().filter(|m| m.id != 3).collect();
        let after = table(&remaining, SIZE);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a && **b != 3).count();
        let own = before.iter().filter(|b| **b == 3).count();
        // Slots of the removed backend must move; of the rest, only a few.
        assert!(after.iter().all(|id| *id != 3));
        assert!(
            (moved as f64) < 0.03 * SIZE as f64,
            "{moved} of {SIZE} slots of staying backends moved (removed one owned {own})"
        );
    }

    #[test]
    fn shares_follow_weights_within_one_percent() {
        let k = keys(4);
        let weights = [1u32, 2, 3, 10];
        let members: Vec<Member<'_>> =
            k.iter().enumerate().map(|(i, key)| Member { id: i as u32, key, weight: weights[i] }).collect();
        let t = table(&members, SIZE);
        let total: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let share = t.iter().filter(|id| **id == i as u32).count() as f64 / SIZE as f64;
            let ideal = f64::from(*w) / f64::from(total);
            assert!((share - ideal).abs() / ideal < 0.01, "backend {i} weight {w}: share {share}, ideal {ideal}");
        }
    }

    #[test]
    fn removing_one_of_n_weighted_moves_about_its_share() {
        let k = keys(8);
        let members = |skip: Option<u32>| -> Vec<Member<'_>> {
            k.iter()
                .enumerate()
                .filter(|(i, _)| Some(*i as u32) != skip)
                .map(|(i, key)| Member { id: i as u32, key, weight: 1 + (i as u32 % 3) })
                .collect()
        };
        let before = table(&members(None), SIZE);
        let after = table(&members(Some(5)), SIZE);
        let own = before.iter().filter(|b| **b == 5).count();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        // The removed backend's slots move, and few others.
        assert!(moved >= own);
        assert!(((moved - own) as f64) < 0.04 * SIZE as f64, "{moved} moved, {own} were the removed backend's");
    }

    #[test]
    fn empty_farm_has_no_backend() {
        assert!(table(&[], 7).iter().all(|s| *s == NO_BACKEND));
    }

    #[test]
    fn same_members_give_the_same_table() {
        let k = keys(5);
        assert_eq!(table(&members(&k), 4099), table(&members(&k), 4099));
    }
}
