//! Hashes the data path uses to spread clients, shared with the daemon and the
//! tests so both sides agree on where a client lands.

/// MurmurHash3's finaliser: every input bit affects every output bit.
#[inline(always)]
pub const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h
}

const SEED: u32 = 0x7E7E_7E7E;

/// Hash of an address in the maps' 16-byte layout: Maglev's key for a client.
#[inline(always)]
pub fn addr(addr_be: &[u8; 16]) -> u32 {
    let mut h = SEED;
    let mut i = 0;
    // VERIFIER: constant trip count.
    while i < 16 {
        h = mix32(h ^ u32::from_ne_bytes([addr_be[i], addr_be[i + 1], addr_be[i + 2], addr_be[i + 3]]));
        i += 4;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_addresses_spread_over_buckets() {
        let mut buckets = [0u32; 16];
        for i in 0..16_000u32 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0xC612_0000u32 + i).to_be_bytes());
            buckets[(addr(&a) % 16) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "uneven spread: {buckets:?}");
        }
    }
}
