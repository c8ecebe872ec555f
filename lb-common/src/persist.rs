//! Persistence keys (DESIGN.md §3): which bytes of a handshake name a
//! session, for each kind. The XDP program builds keys with these functions
//! when it looks up and learns; the daemon builds the same keys when an
//! operator looks one up (`tether sessions lookup`).

use crate::{
    maps::{Family, SessionKey},
    tls::Span,
};

/// Bytes of a ticket that name it: its first 32. Every common format starts
/// with a 16-byte key name and a random 16-byte IV or nonce (RFC 5077 §4,
/// OpenSSL, nginx; BoringSSL and rustls put a random nonce after the key
/// name too), so two tickets share these bytes only by chance; hashing the
/// whole ticket would cost the data path a loop for nothing more.
pub const TICKET_ID_LEN: usize = 32;
/// The key name that starts a ticket or a TLS 1.3 PSK identity.
pub const KEY_NAME_LEN: usize = 16;
/// `sni` keys are a 128-bit hash of the name (names run to 255 bytes).
pub const NAME_HASH_LEN: usize = 16;

/// The part of a ticket (`session_ticket` extension or NewSessionTicket)
/// that names it; None for an empty one (a client asking for a ticket).
pub fn ticket_id(ticket: Span) -> Option<Span> {
    if ticket.is_empty() {
        return None;
    }
    Some(Span { start: ticket.start, len: ticket.len.min(TICKET_ID_LEN as u16) })
}

/// The key name of a ticket or PSK identity; None when it is too short to
/// carry anything after one (it would not be a ticket of a known format).
pub fn key_name(ticket: Span) -> Option<Span> {
    if (ticket.len as usize) <= KEY_NAME_LEN {
        return None;
    }
    Some(Span { start: ticket.start, len: KEY_NAME_LEN as u16 })
}

/// Copies the first bytes of `span` from `buf` into `out`, zeroing what the
/// span does not fill; bytes the buffer does not have read as zero. The
/// host's copy; the XDP program does the same a word at a time
/// (`lb-ebpf/src/mem.rs`, `copy_span`), shaped for the verifier.
pub fn copy_key<const M: usize, const N: usize>(buf: &[u8; M], span: Span, out: &mut [u8; N]) {
    let (start, end) = (span.start as usize, span.start as usize + span.len as usize);
    for (i, byte) in out.iter_mut().enumerate() {
        let pos = start + i;
        *byte = if pos < end { buf.get(pos).copied().unwrap_or(0) } else { 0 };
    }
}

/// The 16 key bytes a `SessionKey` stores for a key of up to 32 bytes:
/// the key itself when it has at most 16, else `fold_key` of it.
pub fn stored_key(source: &[u8]) -> [u8; crate::maps::SESSION_KEY_MAX] {
    let mut padded = [0u8; crate::maps::SESSION_KEY_SOURCE_MAX];
    let len = source.len().min(padded.len());
    padded[..len].copy_from_slice(&source[..len]);
    let word = |i: usize| u64::from_le_bytes(padded[8 * i..8 * i + 8].try_into().unwrap_or_default());
    let [a, b] = fold_key([word(0), word(1), word(2), word(3)]);
    let mut out = [0u8; crate::maps::SESSION_KEY_MAX];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// Folds a key of up to 32 bytes, as four little-endian words (zero past
/// its end), into the two words a `SessionKey` stores: each word of the
/// first half XORed with a scramble of its partner in the second. The
/// scramble maps zero to zero, so a key of at most 16 bytes is stored as it
/// is; it is a bijection, so two keys that differ only in one half never
/// fold alike, and keys that differ in both (random session IDs, tickets
/// past their key names) fold alike only by chance, 2^-128. A client that
/// makes its session ID fold like another's only sends itself to that
/// backend, as sending the other's ID would. The XDP program folds with
/// this function too (`lb-ebpf/src/mem.rs`, `fold_span`).
#[inline(always)]
pub const fn fold_key(words: [u64; 4]) -> [u64; 2] {
    [words[0] ^ scramble(words[2]), words[1] ^ scramble(words[3])]
}

/// The slot of `key` in a generation of `SESSION_FILTER` of `bits`
/// (`maps::SESSION_FILTER_MIN_BITS` to `MAX_BITS`; below `2^bits`), computed alike by XDP, which marks the slot of
/// every key it adds to `SESSIONS` and reads it before a lookup, and by the
/// daemon, which marks the keys it adds and rebuilds a generation from the
/// table. Every field of the key goes in: the same bytes of two kinds or
/// farms are different keys. Its three words are multiplied at once (the
/// program waits on this before the filter's byte, so one long chain of
/// multiplies would show), rotated apart and mixed down once before the
/// last product, whose top bits index the table: a bare multiply mixes
/// only upwards, and 65,536 addresses that differ in two bytes took 43,000
/// slots of its top 22 bits where uniform slots give 65,000.
#[inline(always)]
pub fn filter_slot(key: &SessionKey, bits: u32) -> u32 {
    let head = key.farm_id as u64 | (key.kind as u64) << 32 | (key.len as u64) << 40;
    let (lo, hi) = key.bytes.split_at(8);
    let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
    let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
    let spread = lo.wrapping_mul(SCRAMBLE_MULTIPLIER)
        ^ hi.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(21)
        ^ head.wrapping_mul(0x1656_67B1_9E37_79F9).rotate_left(43);
    let mixed = (spread ^ (spread >> 29)).wrapping_mul(SCRAMBLE_MULTIPLIER);
    (mixed >> (64 - (bits & 63))) as u32
}

/// A multiply by an odd constant (a bijection modulo 2^64), then a
/// rotation (one too) that brings the product's better-mixed high bits
/// down: two instructions in BPF. `fold_key` needs of it only that it be a
/// bijection that keeps zero at zero and is not the identity (with which
/// equal halves would cancel out).
#[inline(always)]
const fn scramble(x: u64) -> u64 {
    x.wrapping_mul(SCRAMBLE_MULTIPLIER).rotate_left(29)
}

const SCRAMBLE_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// A 128-bit hash of a name, eight bytes at a time, so that the XDP program
/// can feed it one word per `bpf_loop` step. Not cryptographic: a client
/// that finds two names with one hash only sends itself to another backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct NameHash {
    a: u64,
    b: u64,
}

impl NameHash {
    pub const fn new(len: usize) -> NameHash {
        NameHash { a: 0x9E37_79B9_7F4A_7C15 ^ len as u64, b: 0xC2B2_AE3D_27D4_EB4F ^ ((len as u64) << 32) }
    }

    /// Adds the next eight bytes (little-endian; zero past the name's end).
    #[inline(always)]
    pub fn add(&mut self, word: u64) {
        self.a = (self.a ^ word).wrapping_mul(0xFF51_AFD7_ED55_8CCD).rotate_left(31);
        self.b = (self.b ^ word.rotate_left(17)).wrapping_mul(0xC4CE_B9FE_1A85_EC53).rotate_left(29);
    }

    #[inline(always)]
    pub fn finish(self) -> [u8; NAME_HASH_LEN] {
        let a = fmix64(self.a ^ self.b.rotate_left(23));
        let b = fmix64(self.b.wrapping_add(a));
        // SAFETY: [u64; 2] and [u8; 16] have the same size and no invalid
        // values. (Not a zeroed array filled in: see `crate::v4_in_16`.)
        unsafe { core::mem::transmute::<[u64; 2], [u8; NAME_HASH_LEN]>([a.to_le(), b.to_le()]) }
    }
}

/// MurmurHash3's 64-bit finaliser.
#[inline(always)]
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

/// The eight bytes of a name from `at` as `NameHash::add` takes them, from a
/// buffer where the name is `span`: bytes past its end read as zero.
pub fn name_word<const M: usize>(buf: &[u8; M], span: Span, at: usize) -> u64 {
    let start = span.start as usize + at;
    let mut bytes = [0u8; 8];
    copy_key(buf, Span { start: start as u16, len: span.len.saturating_sub(at as u16) }, &mut bytes);
    u64::from_le_bytes(bytes)
}

/// The `sni` key bytes of a server name (at most 255 bytes).
pub fn name_hash(name: &[u8]) -> [u8; NAME_HASH_LEN] {
    let mut buf = [0u8; 256];
    let len = name.len().min(buf.len());
    buf[..len].copy_from_slice(&name[..len]);
    let span = Span { start: 0, len: len as u16 };
    let mut hash = NameHash::new(len);
    for at in (0..len).step_by(8) {
        hash.add(name_word(&buf, span, at));
    }
    hash.finish()
}

/// The `source-ip` key bytes: the client address (in the maps' 16-byte
/// layout) with all but the first `prefix_len` bits cleared, and how many
/// bytes of it the key keeps.
// VERIFIER: two word masks rather than a mask per byte: a per-byte
// comparison is a branch in BPF, and sixteen of them multiplied the paths
// the verifier walked.
#[inline(always)]
pub fn source_prefix(addr_be: &[u8; 16], family: u8, prefix_len: u8, out: &mut [u8; 16]) -> u8 {
    let bytes: u32 = if family == Family::Ipv4 as u8 { 4 } else { 16 };
    let bits = (prefix_len as u32).min(bytes * 8);
    let (high, low) = addr_be.split_at(8);
    let high = u64::from_be_bytes(high.try_into().unwrap_or([0; 8])) & leading_ones(bits.min(64));
    let low = u64::from_be_bytes(low.try_into().unwrap_or([0; 8])) & leading_ones(bits.saturating_sub(64));
    out[..8].copy_from_slice(&high.to_be_bytes());
    out[8..].copy_from_slice(&low.to_be_bytes());
    bytes as u8
}

/// A word whose first `n` (at most 64) bits are set.
#[inline(always)]
fn leading_ones(n: u32) -> u64 {
    if n == 0 { 0 } else { u64::MAX << (64 - n.min(64)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_slots_are_in_range_and_tell_every_field_apart() {
        use crate::maps::PersistKind;
        let id = [0x42u8; 32];
        let key = crate::maps::SessionKey::new(3, PersistKind::SessionId, &id);
        for bits in crate::maps::SESSION_FILTER_MIN_BITS..=crate::maps::SESSION_FILTER_MAX_BITS {
            assert!(filter_slot(&key, bits) < 1 << bits, "{bits}");
        }
        let slot = filter_slot(&key, 22);
        // The same bytes in another farm, kind or length are another key, and
        // should land elsewhere (each of these is one chance in 4 million to
        // collide, and these few do not).
        let others = [
            crate::maps::SessionKey::new(4, PersistKind::SessionId, &id),
            crate::maps::SessionKey::new(3, PersistKind::Ticket, &id),
            crate::maps::SessionKey::new(3, PersistKind::SessionId, &id[..16]),
            crate::maps::SessionKey::new(3, PersistKind::SessionId, &[0x42; 31]),
        ];
        for other in others {
            assert_ne!(filter_slot(&other, 22), slot, "{other:?}");
        }
    }

    #[test]
    fn filter_slots_of_random_and_of_counting_keys_spread_evenly() {
        use crate::maps::PersistKind;
        // 2^16 keys into 2^22 slots: if the slots were uniform, about 510
        // pairs would share one (n^2 / 2m). A hash that ignored some of the
        // key's bytes would put many more together.
        let n = 1u32 << 16;
        let mut x = 0x1234_5678_9ABC_DEF0u64;
        let mut random = std::vec::Vec::new();
        let mut counting = std::vec::Vec::new();
        let mut addresses = std::vec::Vec::new();
        for i in 0..n {
            let mut id = [0u8; 32];
            for chunk in id.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            random.push(filter_slot(&crate::maps::SessionKey::new(1, PersistKind::SessionId, &id), 22));
            // Keys that differ in one byte or word: counters in IDs, addresses.
            let mut id = [0u8; 32];
            id[24..28].copy_from_slice(&i.to_be_bytes());
            counting.push(filter_slot(&crate::maps::SessionKey::new(1, PersistKind::SessionId, &id), 22));
            let ip = (0xC612_0000u32 + i).to_be_bytes();
            addresses.push(filter_slot(&crate::maps::SessionKey::new(1, PersistKind::SourceIp, &ip), 22));
        }
        for (what, mut slots) in [("random", random), ("counting", counting), ("addresses", addresses)] {
            slots.sort_unstable();
            let shared = slots.windows(2).filter(|w| w[0] == w[1]).count();
            assert!(shared < 800, "{what}: {shared} keys share a slot with another");
        }
    }

    #[test]
    fn keys_of_up_to_16_bytes_are_stored_as_they_are() {
        let name: Vec<u8> = (1..=16).collect();
        assert_eq!(stored_key(&name)[..], name[..]);
        let mut short = [0u8; 16];
        short[..4].copy_from_slice(&[198, 18, 0, 1]);
        assert_eq!(stored_key(&[198, 18, 0, 1]), short);
    }

    #[test]
    fn longer_keys_fold_to_distinct_stored_keys() {
        let id: Vec<u8> = (0..32).map(|i| (i * 37 + 11) as u8).collect();
        let folded = stored_key(&id);
        assert_ne!(folded[..], id[..16], "a 32-byte key is folded, not cut");
        // One byte changed anywhere in either half, or the key cut short,
        // changes what is stored.
        for at in 0..32 {
            let mut other = id.clone();
            other[at] ^= 0x01;
            assert_ne!(stored_key(&other), folded, "byte {at}");
        }
        assert_ne!(stored_key(&id[..31]), folded);
        // Only the first 32 bytes count (a ticket's id).
        let mut longer = id.clone();
        longer.extend_from_slice(&[0xAA; 100]);
        assert_eq!(stored_key(&longer), folded);
    }

    #[test]
    fn the_scramble_keeps_zero_and_can_be_undone() {
        assert_eq!(scramble(0), 0);
        // The multiplier's inverse modulo 2^64 (Newton's iteration, each
        // step doubling the bits that are right): it exists only for an odd
        // multiplier, and undoing the scramble with it proves it loses
        // nothing.
        let mut inverse = SCRAMBLE_MULTIPLIER;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(SCRAMBLE_MULTIPLIER.wrapping_mul(inverse)));
        }
        for x in [1, 2, 0x8000_0000_0000_0000, u64::MAX, 0x0123_4567_89AB_CDEF, 0x5E5E_5E5E_5E5E_5E5E] {
            assert_eq!(scramble(x).rotate_right(29).wrapping_mul(inverse), x, "{x:#x}");
        }
        // A key whose halves are equal still folds to something else than
        // zero.
        assert_ne!(stored_key(&[0x5E; 32]), [0; 16]);
    }

    #[test]
    fn ticket_ids_and_key_names_are_prefixes() {
        let ticket = Span { start: 10, len: 200 };
        assert_eq!(ticket_id(ticket), Some(Span { start: 10, len: 32 }));
        assert_eq!(ticket_id(Span { start: 10, len: 20 }), Some(Span { start: 10, len: 20 }));
        assert_eq!(ticket_id(Span::EMPTY), None);
        assert_eq!(key_name(ticket), Some(Span { start: 10, len: 16 }));
        assert_eq!(key_name(Span { start: 10, len: 16 }), None);
    }

    #[test]
    fn a_key_copy_stops_at_the_span_and_the_buffer() {
        let buf: [u8; 64] = core::array::from_fn(|i| i as u8 + 1);
        let mut out = [0xEE; 32];
        copy_key(&buf, Span { start: 4, len: 3 }, &mut out);
        assert_eq!(out[..4], [5, 6, 7, 0]);
        assert!(out[3..].iter().all(|&b| b == 0));
        copy_key(&buf, Span { start: 54, len: 32 }, &mut out);
        assert_eq!(out[..10], [55, 56, 57, 58, 59, 60, 61, 62, 63, 64]);
        assert!(out[10..].iter().all(|&b| b == 0), "bytes past the buffer read as zero");
    }

    #[test]
    fn names_hash_apart_and_the_same_name_hashes_alike_anywhere() {
        let a = name_hash(b"shop.example");
        assert_eq!(a, name_hash(b"shop.example"));
        assert_ne!(a, name_hash(b"shop.example."));
        assert_ne!(a, name_hash(b"shoq.example"));
        assert_ne!(name_hash(b""), name_hash(b"\0"), "the length is part of the hash");
        // The same name inside a larger buffer, as the data path sees it.
        let mut buf = [b'y'; 32];
        buf[..17].copy_from_slice(b"xxxxxshop.example");
        let span = Span { start: 5, len: 12 };
        let mut hash = NameHash::new(12);
        hash.add(name_word(&buf, span, 0));
        hash.add(name_word(&buf, span, 8));
        assert_eq!(hash.finish(), a);
    }

    #[test]
    fn source_prefixes_clear_the_host_bits() {
        let mut out = [0xEE; 16];
        let addr = crate::v4_in_16([198, 18, 7, 200]);
        assert_eq!(source_prefix(&addr, Family::Ipv4 as u8, 32, &mut out), 4);
        assert_eq!(out[..5], [198, 18, 7, 200, 0]);
        source_prefix(&addr, Family::Ipv4 as u8, 20, &mut out);
        assert_eq!(out[..4], [198, 18, 0, 0]);
        source_prefix(&addr, Family::Ipv4 as u8, 0, &mut out);
        assert!(out.iter().all(|&b| b == 0));
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(source_prefix(&v6, Family::Ipv6 as u8, 56, &mut out), 16);
        assert_eq!(out[..8], [0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 0]);
    }
}
