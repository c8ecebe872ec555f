//! Incremental Internet checksum updates (RFC 1624), shared by the XDP rewrite
//! code and the host tests that check it against a full recomputation.
//!
//! One's-complement sums do not depend on byte order as long as every word is
//! read the same way, so callers pass the checksum field and the changed words
//! exactly as they sit in the packet (`from_ne_bytes`), and store the result the
//! same way.

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    // Two folds are enough for any sum of fewer than 2^16 words.
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for one 16-bit word `m -> m'`.
#[inline(always)]
pub const fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u32 + !old as u32 + new as u32)
}

/// The same for a 32-bit field (an IPv4 address, a sequence number), given as
/// the raw value read from the packet.
#[inline(always)]
pub const fn update32(check: u16, old: u32, new: u32) -> u16 {
    let sum = !check as u32 + (!(old >> 16) & 0xFFFF) + (!old & 0xFFFF) + (new >> 16) + (new & 0xFFFF);
    !fold(sum)
}

/// The same for a 16-byte field (an IPv6 address).
#[inline(always)]
pub fn update128(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut sum = !check as u32;
    let mut i = 0;
    // VERIFIER: a constant trip count; unrolled by the compiler.
    while i < 16 {
        sum += !u16::from_ne_bytes([old[i], old[i + 1]]) as u32;
        sum += u16::from_ne_bytes([new[i], new[i + 1]]) as u32;
        i += 2;
    }
    !fold(fold(sum) as u32)
}

/// A checksum change built up over several fields and applied once: RFC 1624
/// eqn. 3 for all of them at once, `HC' = ~(~HC + Σ(~m + m'))`, one fold for
/// a header's worth of rewrites where `update16`/`update32` fold per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta(u32);

impl Delta {
    /// No change.
    pub const NONE: Delta = Delta(0);

    /// A 16-bit word `old -> new`, as read from the packet.
    #[inline(always)]
    pub const fn add16(self, old: u16, new: u16) -> Delta {
        Delta(self.0 + !old as u32 + new as u32)
    }

    /// A 32-bit field `old -> new`, as read from the packet.
    #[inline(always)]
    pub const fn add32(self, old: u32, new: u32) -> Delta {
        Delta(self.0 + (!(old >> 16) & 0xFFFF) + (!old & 0xFFFF) + (new >> 16) + (new & 0xFFFF))
    }

    /// The checksum `check` after the changes (for fewer than 2^15 words
    /// changed, so `fold`'s two steps suffice).
    #[inline(always)]
    pub const fn apply(self, check: u16) -> u16 {
        !fold(!check as u32 + self.0)
    }
}

/// The ones'-complement sum of a TCP segment's data, recovered without reading
/// the data from a segment whose checksum is correct: pseudo-header, header
/// (checksum field included) and data sum to 0xFFFF, negative zero, so the
/// data's sum is the negation of the rest. `pseudo_and_header` is the plain
/// sum of the pseudo-header's and the header's 16-bit words.
#[inline(always)]
pub const fn data_sum(pseudo_and_header: u32) -> u16 {
    !fold(pseudo_and_header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full RFC 1071 checksum over `data`, returned as it would be stored.
    fn full(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            sum += u16::from_ne_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        !fold(fold(sum) as u32)
    }

    /// A small deterministic generator, so the tests need no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn a_delta_over_many_fields_matches_field_by_field_updates_and_a_full_recomputation() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut data = [0u8; 60];
            for b in data.iter_mut() {
                *b = next(&mut rng) as u8;
            }
            data[16..18].copy_from_slice(&[0, 0]);
            let check = full(&data);
            data[16..18].copy_from_slice(&check.to_ne_bytes());
            // Rewrite three 32-bit fields, two 16-bit ones and one 16-byte one.
            let (mut delta, mut one_by_one) = (Delta::NONE, check);
            for at in [4usize, 8, 24] {
                let old = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                let new = next(&mut rng) as u32;
                data[at..at + 4].copy_from_slice(&new.to_ne_bytes());
                delta = delta.add32(old, new);
                one_by_one = update32(one_by_one, old, new);
            }
            for at in [0usize, 14] {
                let old = u16::from_ne_bytes([data[at], data[at + 1]]);
                let new = next(&mut rng) as u16;
                data[at..at + 2].copy_from_slice(&new.to_ne_bytes());
                delta = delta.add16(old, new);
                one_by_one = update16(one_by_one, old, new);
            }
            let old: [u8; 16] = data[40..56].try_into().unwrap();
            let new: [u8; 16] = core::array::from_fn(|_| next(&mut rng) as u8);
            data[40..56].copy_from_slice(&new);
            // A word at a time, as the IPv6 NAT does.
            for w in 0..4 {
                let word = |a: &[u8; 16]| u32::from_ne_bytes(a[4 * w..4 * w + 4].try_into().unwrap());
                delta = delta.add32(word(&old), word(&new));
            }
            one_by_one = update128(one_by_one, &old, &new);
            let updated = delta.apply(check);
            assert_eq!(updated, one_by_one);
            data[16..18].copy_from_slice(&updated.to_ne_bytes());
            let mut with_check_zeroed = data;
            with_check_zeroed[16..18].copy_from_slice(&[0, 0]);
            assert_eq!(updated, full(&with_check_zeroed), "the same as recomputing the whole checksum");
        }
    }

    #[test]
    fn incremental_updates_match_full_recomputation() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let mut data = [0u8; 40];
            for b in data.iter_mut() {
                *b = next(&mut rng) as u8;
            }
            data[0] = 0;
            data[1] = 0; // checksum field
            let check = full(&data);
            data[..2].copy_from_slice(&check.to_ne_bytes());
            assert_eq!(full(&data), 0, "a correct checksum verifies to zero");

            let mut changed = data;
            let old16 = u16::from_ne_bytes([data[4], data[5]]);
            let new16 = next(&mut rng) as u16;
            changed[4..6].copy_from_slice(&new16.to_ne_bytes());
            let old32 = u32::from_ne_bytes(data[8..12].try_into().unwrap());
            let new32 = next(&mut rng) as u32;
            changed[8..12].copy_from_slice(&new32.to_ne_bytes());
            let old128: [u8; 16] = data[20..36].try_into().unwrap();
            let mut new128 = [0u8; 16];
            for b in new128.iter_mut() {
                *b = next(&mut rng) as u8;
            }
            changed[20..36].copy_from_slice(&new128);

            let mut c = update16(check, old16, new16);
            c = update32(c, old32, new32);
            c = update128(c, &old128, &new128);
            changed[..2].copy_from_slice(&c.to_ne_bytes());
            assert_eq!(full(&changed), 0, "incremental update must verify like a full recomputation");
        }
    }

    #[test]
    fn data_sum_is_recovered_from_a_correct_checksum() {
        let mut state = 0x1234_5678_9ABC_DEF0;
        for len in [1usize, 2, 3, 100, 517, 1459, 1460] {
            let pseudo: Vec<u8> = (0..12).map(|_| next(&mut state) as u8).collect();
            let mut header: Vec<u8> = (0..32).map(|_| next(&mut state) as u8).collect();
            let data: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            header[16] = 0;
            header[17] = 0;
            let check = full(&[pseudo.clone(), header.clone(), data.clone()].concat());
            header[16..18].copy_from_slice(&check.to_ne_bytes());
            let words = |b: &[u8]| b.chunks(2).map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32).sum::<u32>();
            let recovered = data_sum(words(&pseudo) + words(&header));
            // The same class modulo 0xFFFF as summing the data itself.
            let direct =
                fold(fold(data.chunks(2).map(|c| u16::from_ne_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum())
                    as u32);
            assert_eq!(recovered as u32 % 0xFFFF, direct as u32 % 0xFFFF, "len {len}");
            // And a checksum built on it for new headers verifies.
            let new_header: Vec<u8> = (0..20).map(|_| next(&mut state) as u8).collect();
            let rebuilt = !fold(fold(words(&pseudo) + words(&new_header) + recovered as u32) as u32);
            assert_eq!(rebuilt, full(&[pseudo.clone(), new_header.clone(), data.clone()].concat()));
        }
    }
}
