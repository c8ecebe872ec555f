//! TCP options of the handshake, over a copy of the TCP header in a 64-byte
//! buffer (RFC 9293 §3.2; window scale and timestamps RFC 7323; SACK RFC 2018).
//! Pure functions shared by the XDP program (over a per-CPU scratch copy) and
//! host tests. Indices are masked with `& 63`, which both keeps them inside the
//! buffer and shows the verifier they are.

/// A TCP header copy: 20 fixed bytes and up to 40 bytes of options.
pub type HeaderBuf = [u8; 64];

const MASK: usize = 63;

pub const KIND_END: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WSCALE: u8 = 3;
pub const KIND_SACK_PERM: u8 = 4;
pub const KIND_TIMESTAMP: u8 = 8;

/// The window scale tether offers clients (RFC 7323 §2.3; Linux's usual value).
pub const OUR_WSCALE: u8 = 7;

/// What a SYN offered (or, for a data segment, its timestamps). Plain integers, no `Option`s: in XDP this lives in a
/// per-CPU map value, whose contents the verifier does not track, so the
/// option walk below does not multiply its states.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynOptions {
    /// 0: no MSS option.
    pub mss: u16,
    /// `NO_WSCALE`: no window-scale option.
    pub wscale: u8,
    pub sack_permitted: u8,
    /// 0: no timestamps; then `tsval` and `tsecr` are meaningless.
    pub has_timestamp: u32,
    pub tsval: u32,
    pub tsecr: u32,
    /// Scratch for `parse_syn_into`: the offset the walk has reached.
    pub walk: u32,
}

pub const NO_WSCALE: u8 = 0xFF;

impl Default for SynOptions {
    fn default() -> Self {
        SynOptions { mss: 0, wscale: NO_WSCALE, sack_permitted: 0, has_timestamp: 0, tsval: 0, tsecr: 0, walk: 0 }
    }
}

/// Reads the options of a SYN whose header (`header_len` bytes, 20-60) is in
/// `buf` into `opts` (which must start as `SynOptions::default()`). Malformed
/// options end the walk; what was read so far counts.
///
/// VERIFIER: the walk's position and its findings are read and written through
/// `opts` with volatile accesses. In XDP `opts` is a map value, which the
/// verifier does not track, so every iteration starts from the same abstract
/// state and paths prune; kept in registers, each path through 40 steps was a
/// distinct state and verification ran out of its instruction budget.
#[inline(always)]
pub fn parse_syn_into(buf: &HeaderBuf, header_len: usize, opts: &mut SynOptions) {
    use core::ptr::{read_volatile as get, write_volatile as set};
    let end = if header_len > 60 { 60 } else { header_len };
    // SAFETY (all volatile accesses below): `opts` is a valid, exclusive reference.
    unsafe { set(&mut opts.walk, 20) };
    for _ in 0..40 {
        let i = unsafe { get(&opts.walk) } as usize & MASK;
        if i >= end {
            break;
        }
        let kind = buf[i];
        if kind == KIND_END {
            break;
        }
        if kind == KIND_NOP {
            unsafe { set(&mut opts.walk, (i + 1) as u32) };
            continue;
        }
        if i + 1 >= end {
            break;
        }
        let len = buf[(i + 1) & MASK] as usize;
        if len < 2 || i + len > end {
            break;
        }
        match (kind, len) {
            (KIND_MSS, 4) => unsafe {
                set(&mut opts.mss, u16::from_be_bytes([buf[(i + 2) & MASK], buf[(i + 3) & MASK]]))
            },
            (KIND_WSCALE, 3) => unsafe { set(&mut opts.wscale, buf[(i + 2) & MASK]) },
            (KIND_SACK_PERM, 2) => unsafe { set(&mut opts.sack_permitted, 1) },
            (KIND_TIMESTAMP, 10) => unsafe {
                set(&mut opts.has_timestamp, 1);
                set(
                    &mut opts.tsval,
                    u32::from_be_bytes([
                        buf[(i + 2) & MASK],
                        buf[(i + 3) & MASK],
                        buf[(i + 4) & MASK],
                        buf[(i + 5) & MASK],
                    ]),
                );
                set(&mut opts.tsecr, read32(buf, i + 6));
            },
            _ => {}
        }
        unsafe { set(&mut opts.walk, (i + len) as u32) };
    }
}

/// `parse_syn_into` for callers that can keep the result on the stack.
pub fn parse_syn(buf: &HeaderBuf, header_len: usize) -> SynOptions {
    let mut opts = SynOptions::default();
    parse_syn_into(buf, header_len, &mut opts);
    opts
}

/// The client's handshake choices, carried through the stateless handshake in
/// the low eight bits of our TSval (bits 0-5 as the kernel's xdp_synproxy
/// selftest does): bits 0-3 the client's window scale (15 = none), bit 4 SACK
/// permitted, bit 5 ECN, bits 6-7 the index of the cookie's MSS in
/// `COOKIE_MSS`. The client echoes the TSval in every segment's TSecr; the
/// backend leg needs all of it, and the kernel's cookie check returns none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ecn: bool,
    /// Index into `COOKIE_MSS`.
    pub mss_index: u8,
}

/// The MSS values an IPv4 SYN cookie can stand for (the kernel's `msstab` in
/// net/ipv4/syncookies.c); `bpf_tcp_raw_gen_syncookie_ipv4` returns one of them.
pub const COOKIE_MSS: [u16; 4] = [536, 1300, 1440, 1460];

/// The index of the largest `COOKIE_MSS` entry not above `mss`.
#[inline(always)]
pub fn cookie_mss_index(mss: u16) -> u8 {
    if mss >= COOKIE_MSS[3] {
        3
    } else if mss >= COOKIE_MSS[2] {
        2
    } else if mss >= COOKIE_MSS[1] {
        1
    } else {
        0
    }
}

const TS_NO_WSCALE: u32 = 0xF;
const TS_SACK: u32 = 1 << 4;
const TS_ECN: u32 = 1 << 5;
const TS_MSS_SHIFT: u32 = 6;
const TS_OPT_MASK: u32 = 0xFF;

impl CookieOptions {
    /// What of a SYN's options the cookie carries.
    #[inline(always)]
    pub fn from_syn(syn: &SynOptions, cookie_mss: u16) -> CookieOptions {
        CookieOptions {
            wscale: if syn.wscale == NO_WSCALE { None } else { Some(syn.wscale) },
            sack_permitted: syn.sack_permitted != 0,
            ecn: false,
            mss_index: cookie_mss_index(cookie_mss),
        }
    }
}

#[inline(always)]
pub fn encode_tsval(now_ms: u32, o: &CookieOptions) -> u32 {
    let ws = match o.wscale {
        Some(w) if w <= 14 => w as u32,
        _ => TS_NO_WSCALE,
    };
    (now_ms & !TS_OPT_MASK)
        | ws
        | if o.sack_permitted { TS_SACK } else { 0 }
        | if o.ecn { TS_ECN } else { 0 }
        | (o.mss_index as u32 & 3) << TS_MSS_SHIFT
}

#[inline(always)]
pub fn decode_tsecr(tsecr: u32) -> CookieOptions {
    let ws = tsecr & TS_NO_WSCALE;
    CookieOptions {
        wscale: if ws == TS_NO_WSCALE { None } else { Some(ws as u8) },
        sack_permitted: tsecr & TS_SACK != 0,
        ecn: tsecr & TS_ECN != 0,
        mss_index: ((tsecr >> TS_MSS_SHIFT) & 3) as u8,
    }
}

/// Writes the options of our SYN-ACK into `buf[20..header_len]`, NOP-padded to
/// exactly that length (so the packet keeps its size): MSS always; SACK
/// permitted, timestamps and window scale only when the client sent
/// timestamps, because the cookie can carry the client's choices only there.
/// Options that do not fit are left out, least important first.
#[inline(always)]
pub fn write_syn_ack(buf: &mut HeaderBuf, header_len: usize, mss: u16, client: &SynOptions, our_tsval: u32) {
    let end = if header_len > 60 { 60 } else { header_len };
    let mut o = 20;
    if o + 4 <= end {
        let m = mss.to_be_bytes();
        put(buf, o, &[KIND_MSS, 4, m[0], m[1]]);
        o += 4;
    }
    if client.has_timestamp != 0 {
        if client.sack_permitted != 0 && o + 2 + 10 <= end {
            put(buf, o, &[KIND_SACK_PERM, 2]);
            o += 2;
        }
        if o + 10 <= end {
            let v = our_tsval.to_be_bytes();
            let e = client.tsval.to_be_bytes();
            put(buf, o, &[KIND_TIMESTAMP, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3]]);
            o += 10;
            if client.wscale != NO_WSCALE && o + 4 <= end {
                put(buf, o, &[KIND_NOP, KIND_WSCALE, 3, OUR_WSCALE]);
                o += 4;
            }
        }
    }
    // VERIFIER: constant bound; pads what is left with NOPs.
    for _ in 0..40 {
        if o >= end {
            break;
        }
        buf[o & MASK] = KIND_NOP;
        o += 1;
    }
}

/// Whether `write_syn_ack` with this header length offers the client a window
/// scale: only then may the cookie's TSval say the client's leg is scaled.
/// Mirrors `write_syn_ack`'s layout: MSS, SACK permitted, timestamps, then
/// NOP + window scale, each only if it still fits.
#[inline(always)]
pub fn syn_ack_offers_wscale(header_len: usize, client: &SynOptions) -> bool {
    if client.has_timestamp == 0 || client.wscale == NO_WSCALE {
        return false;
    }
    let end = if header_len > 60 { 60 } else { header_len };
    let mut o = 20;
    if o + 4 <= end {
        o += 4;
    }
    if client.sack_permitted != 0 && o + 2 + 10 <= end {
        o += 2;
    }
    o + 10 + 4 <= end
}

#[inline(always)]
fn put<const N: usize>(buf: &mut HeaderBuf, at: usize, bytes: &[u8; N]) {
    let mut k = 0;
    while k < N {
        buf[(at + k) & MASK] = bytes[k];
        k += 1;
    }
}

/// One's-complement sum of the first `len` bytes (even, at most 60) of `buf`,
/// as 16-bit words read in memory order (see `csum`).
#[inline(always)]
pub fn sum_words(buf: &HeaderBuf, len: usize) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    // VERIFIER: constant bound of 30 words.
    for _ in 0..30 {
        if i + 1 >= len {
            break;
        }
        sum += u16::from_ne_bytes([buf[i & MASK], buf[(i + 1) & MASK]]) as u32;
        i += 2;
    }
    sum
}

/// A big-endian u32 at `at` (masked into the buffer).
#[inline(always)]
fn read32(buf: &HeaderBuf, at: usize) -> u32 {
    u32::from_be_bytes([buf[at & MASK], buf[(at + 1) & MASK], buf[(at + 2) & MASK], buf[(at + 3) & MASK]])
}

#[inline(always)]
fn add32(buf: &mut HeaderBuf, at: usize, delta: u32) {
    put(buf, at, &read32(buf, at).wrapping_add(delta).to_be_bytes());
}

/// Writes the options of the SYN tether sends a backend on the client's
/// behalf: the client's choices as the SYN cookie carried them, laid out as
/// Linux lays out its own SYNs. `wscale` is `NO_WSCALE` for none, `tsval`
/// None for no timestamps. Returns the header length (a multiple of 4, at
/// most 40).
#[inline(always)]
pub fn write_syn(buf: &mut HeaderBuf, mss: u16, wscale: u8, sack_permitted: bool, tsval: Option<u32>) -> usize {
    let m = mss.to_be_bytes();
    put(buf, 20, &[KIND_MSS, 4, m[0], m[1]]);
    let mut o = 24;
    match (sack_permitted, tsval) {
        (true, Some(_)) => {
            put(buf, o, &[KIND_SACK_PERM, 2]);
            o += 2;
        }
        (true, None) => {
            put(buf, o, &[KIND_NOP, KIND_NOP, KIND_SACK_PERM, 2]);
            o += 4;
        }
        (false, Some(_)) => {
            put(buf, o, &[KIND_NOP, KIND_NOP]);
            o += 2;
        }
        (false, None) => {}
    }
    if let Some(ts) = tsval {
        let v = ts.to_be_bytes();
        put(buf, o, &[KIND_TIMESTAMP, 10, v[0], v[1], v[2], v[3], 0, 0, 0, 0]);
        o += 10;
    }
    if wscale != NO_WSCALE {
        put(buf, o, &[KIND_NOP, KIND_WSCALE, 3, wscale]);
        o += 4;
    }
    o
}

/// The header length `write_syn` produces for these choices.
#[inline(always)]
pub const fn syn_len(wscale: u8, sack_permitted: bool, timestamps: bool) -> usize {
    let mut len = 24;
    if timestamps {
        len += 12;
    } else if sack_permitted {
        len += 4;
    }
    if wscale != NO_WSCALE {
        len += 4;
    }
    len
}

/// SACK option kind (RFC 2018 §3).
pub const KIND_SACK: u8 = 5;

/// What `translate_options` adds to a segment's option values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionDeltas {
    pub tsval: u32,
    pub tsecr: u32,
    /// Added to both edges of every SACK block: they acknowledge the other
    /// side's sequence numbers, like the ACK field.
    pub sack: u32,
}

/// The timestamp option of a data segment, if it sits where every common
/// stack puts it: first, or after two NOPs. Returns (TSval, TSecr).
///
/// VERIFIER: data segments are read at fixed offsets, without the option walk
/// SYNs get: a walk per data path ran the verifier out of budget. A segment
/// whose timestamp sits elsewhere is treated as having none.
#[inline(always)]
pub fn data_timestamps(buf: &HeaderBuf, header_len: usize) -> Option<(u32, u32)> {
    let at = timestamp_at(buf, header_len)?;
    Some((read32(buf, at + 2), read32(buf, at + 6)))
}

#[inline(always)]
fn timestamp_at(buf: &HeaderBuf, header_len: usize) -> Option<usize> {
    if header_len >= 32 && buf[20] == KIND_NOP && buf[21] == KIND_NOP && buf[22] == KIND_TIMESTAMP && buf[23] == 10 {
        Some(22)
    } else if header_len >= 32 && buf[20] == KIND_TIMESTAMP && buf[21] == 10 {
        Some(20)
    } else {
        None
    }
}

/// Translates the options of a spliced segment in place, as `deltas` says,
/// and says whether it recognised the layout. Known layouts: the timestamp
/// as `data_timestamps` finds it, and a SACK option (after two NOPs) right
/// after it or, without timestamps, first. These are what Linux, Windows and
/// the BSDs send; anything else is left untouched (a SACK block left
/// untranslated costs the sender a retransmission timeout, never data).
/// The caller fixes the checksum by summing the header before and after
/// (`sum_words`).
// VERIFIER: loop-free, for the reason given at `data_timestamps`.
#[inline(always)]
pub fn translate_options(buf: &mut HeaderBuf, header_len: usize, deltas: &OptionDeltas) -> bool {
    let end = if header_len > 60 { 60 } else { header_len };
    let ts = timestamp_at(buf, end);
    let sack_search = match ts {
        Some(at) => {
            add32(buf, at + 2, deltas.tsval);
            add32(buf, at + 6, deltas.tsecr);
            at + 10
        }
        None => 20,
    };
    if sack_search + 2 >= end {
        return ts.is_some();
    }
    let i = sack_search & MASK;
    let (at, len) = if buf[i] == KIND_NOP && buf[(i + 1) & MASK] == KIND_NOP && buf[(i + 2) & MASK] == KIND_SACK {
        (i + 2, buf[(i + 3) & MASK] as usize)
    } else if buf[i] == KIND_SACK {
        (i, buf[(i + 1) & MASK] as usize)
    } else {
        return ts.is_some() || sack_search == end;
    };
    if len < 10 || (len - 2) % 8 != 0 || at + len > end {
        return false;
    }
    let blocks = (len - 2) / 8;
    // At most 4 blocks fit in 40 bytes of options.
    let mut b = 0;
    while b < 4 {
        if b < blocks {
            add32(buf, at + 2 + b * 8, deltas.sack);
            add32(buf, at + 6 + b * 8, deltas.sack);
        }
        b += 1;
    }
    true
}

/// Rewrites a window field read with scale `from` for a receiver that applies
/// scale `to` (RFC 7323 §2.3): the advertised bytes stay the same, within the
/// precision the new shift allows. A non-zero window never becomes zero (which
/// would stall the sender) and never exceeds the field.
#[inline(always)]
pub const fn rescale_window(win: u16, from: u8, to: u8) -> u16 {
    if from == to {
        return win;
    }
    let bytes = (win as u32) << (from & 15);
    let out = bytes >> (to & 15);
    if out > 0xFFFF {
        0xFFFF
    } else if out == 0 && win != 0 {
        1
    } else {
        out as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Linux SYN's options: MSS 1460, SACK permitted, TS, NOP, WS 7.
    fn linux_syn() -> (HeaderBuf, usize) {
        let mut b = [0u8; 64];
        b[12] = 10 << 4;
        let opts = [2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7];
        b[20..40].copy_from_slice(&opts);
        (b, 40)
    }

    #[test]
    fn parses_a_linux_syn() {
        let (b, len) = linux_syn();
        let o = parse_syn(&b, len);
        assert_eq!(
            o,
            SynOptions { mss: 1460, wscale: 7, sack_permitted: 1, has_timestamp: 1, tsval: 0x1234, tsecr: 0, walk: 40 }
        );
    }

    #[test]
    fn malformed_options_stop_the_walk_without_panicking() {
        let (mut b, len) = linux_syn();
        b[21] = 0; // MSS length 0
        assert_eq!(SynOptions { walk: 0, ..parse_syn(&b, len) }, SynOptions::default());
        let (mut b, len) = linux_syn();
        b[27] = 40; // timestamp length running past the header
        let o = parse_syn(&b, len);
        assert_eq!(o.mss, 1460);
        assert_eq!(o.has_timestamp, 0);
        for garbage in 0..=255u8 {
            let mut b = [garbage; 64];
            let _ = parse_syn(&b, 60);
            b[20] = 1;
            let _ = parse_syn(&b, 60);
        }
    }

    #[test]
    fn tsval_carries_the_clients_choices() {
        for ws in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                for mss_index in 0..4 {
                    let o = CookieOptions { wscale: ws, sack_permitted: sack, ecn: false, mss_index };
                    let ts = encode_tsval(0xDEAD_BEEF, &o);
                    assert_eq!(ts & !0xFF, 0xDEAD_BEEF & !0xFF);
                    assert_eq!(decode_tsecr(ts), o);
                }
            }
        }
        // A window scale above 14 is invalid (RFC 7323 §2.3) and treated as none.
        let o = CookieOptions { wscale: Some(15), sack_permitted: false, ecn: false, mss_index: 0 };
        assert_eq!(decode_tsecr(encode_tsval(0, &o)).wscale, None);
    }

    #[test]
    fn every_cookie_mss_maps_back_to_itself() {
        for (i, mss) in COOKIE_MSS.iter().enumerate() {
            assert_eq!(cookie_mss_index(*mss) as usize, i);
        }
        assert_eq!(cookie_mss_index(1400), 1);
        assert_eq!(cookie_mss_index(9000), 3);
        assert_eq!(cookie_mss_index(100), 0);
    }

    #[test]
    fn syn_ack_options_mirror_the_syn_and_keep_its_length() {
        let (b, len) = linux_syn();
        let client = parse_syn(&b, len);
        let mut out = [0u8; 64];
        write_syn_ack(&mut out, len, 1460, &client, 0xAABB_CCDD);
        let back = parse_syn(&out, len);
        assert_eq!(back.mss, 1460);
        assert_eq!(back.sack_permitted, 1);
        assert_eq!(back.wscale, OUR_WSCALE);
        assert_eq!((back.has_timestamp, back.tsval), (1, 0xAABB_CCDD));
        // TSecr echoes the client's TSval.
        assert_eq!(&out[32..36], &0x1234u32.to_be_bytes());
    }

    #[test]
    fn without_client_timestamps_only_mss_is_offered() {
        let mut b = [0u8; 64];
        b[20..24].copy_from_slice(&[2, 4, 0x05, 0xB4]);
        b[24..28].copy_from_slice(&[1, 3, 3, 7]);
        let client = parse_syn(&b, 28);
        assert_eq!(client.wscale, 7);
        let mut out = [0xFFu8; 64];
        write_syn_ack(&mut out, 28, 1460, &client, 1);
        assert_eq!(&out[20..28], &[2, 4, 0x05, 0xB4, 1, 1, 1, 1]);
    }

    #[test]
    fn sum_words_matches_a_plain_sum() {
        let (b, len) = linux_syn();
        let plain: u32 = b[..len].chunks(2).map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32).sum();
        assert_eq!(sum_words(&b, len), plain);
    }

    #[test]
    fn backend_syn_options_parse_back_for_every_combination() {
        for ws in [NO_WSCALE, 0, 7, 14] {
            for sack in [false, true] {
                for ts in [None, Some(0x0102_0304)] {
                    let mut b = [0u8; 64];
                    let len = write_syn(&mut b, 1440, ws, sack, ts);
                    assert_eq!(len, syn_len(ws, sack, ts.is_some()));
                    assert_eq!(len % 4, 0);
                    assert!((24..=40).contains(&len));
                    let o = parse_syn(&b, len);
                    assert_eq!(o.mss, 1440);
                    assert_eq!(o.wscale, ws);
                    assert_eq!(o.sack_permitted, sack as u8);
                    assert_eq!(o.has_timestamp, ts.is_some() as u32);
                    if let Some(v) = ts {
                        assert_eq!((o.tsval, o.tsecr), (v, 0));
                    }
                    // Every byte up to the header length is an option or padding.
                    assert_eq!(o.walk as usize, len, "ws {ws} sack {sack} ts {ts:?}");
                }
            }
        }
        // The usual client: the same 20 bytes of options a Linux SYN carries.
        let mut b = [0u8; 64];
        assert_eq!(write_syn(&mut b, 1460, 7, true, Some(0x1234)), 40);
        assert_eq!(&b[20..40], &linux_syn().0[20..40]);
    }

    /// A segment with NOP NOP TS and NOP NOP SACK(2 blocks), as Linux sends after a loss.
    fn segment_with_sack() -> (HeaderBuf, usize) {
        let mut b = [0u8; 64];
        let opts = [
            1, 1, 8, 10, 0, 0, 0, 100, 0, 0, 0, 200, // TS 100, echo 200
            1, 1, 5, 18, 0, 0, 1, 0, 0, 0, 2, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0x10, // 2 SACK blocks
        ];
        b[20..20 + opts.len()].copy_from_slice(&opts);
        b[12] = (((20 + opts.len()) / 4) as u8) << 4;
        (b, 20 + opts.len())
    }

    #[test]
    fn translating_moves_timestamps_and_every_sack_edge() {
        let (mut b, len) = segment_with_sack();
        let deltas = OptionDeltas { tsval: 5, tsecr: 0u32.wrapping_sub(50), sack: 0x20 };
        assert!(translate_options(&mut b, len, &deltas));
        assert_eq!(read32(&b, 24), 105);
        assert_eq!(read32(&b, 28), 150);
        assert_eq!(read32(&b, 36), 0x120);
        assert_eq!(read32(&b, 40), 0x220);
        // Edges wrap around 2^32 as sequence numbers do.
        assert_eq!(read32(&b, 44), 0x10);
        assert_eq!(read32(&b, 48), 0x30);
        // Nothing else moved.
        let (orig, _) = segment_with_sack();
        assert_eq!(&b[..24], &orig[..24]);
        assert_eq!(&b[32..36], &orig[32..36]);
    }

    #[test]
    fn translating_survives_malformed_options() {
        for garbage in 0..=255u8 {
            let mut b = [garbage; 64];
            let deltas = OptionDeltas { tsval: 1, tsecr: 1, sack: 1 };
            translate_options(&mut b, 60, &deltas);
            b[20] = 1;
            translate_options(&mut b, 60, &deltas);
        }
        // A SACK option whose length is not 2 + 8n is left alone.
        let (mut b, len) = segment_with_sack();
        b[35] = 17;
        let before = b;
        assert!(!translate_options(&mut b, len, &OptionDeltas { tsval: 0, tsecr: 0, sack: 7 }));
        assert_eq!(&b[32..], &before[32..]);
    }

    #[test]
    fn sack_without_timestamps_and_plain_timestamps_are_translated() {
        // NOP NOP SACK(1 block), no timestamps.
        let mut b = [0u8; 64];
        b[20..32].copy_from_slice(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert!(translate_options(&mut b, 32, &OptionDeltas { tsval: 9, tsecr: 9, sack: 100 }));
        assert_eq!((read32(&b, 24), read32(&b, 28)), (101, 102));
        // NOP NOP TS alone: both values move.
        let (mut b, _) = segment_with_sack();
        assert!(translate_options(&mut b, 32, &OptionDeltas { tsval: 1, tsecr: 2, sack: 100 }));
        assert_eq!((read32(&b, 24), read32(&b, 28)), (101, 202));
        assert_eq!(read32(&b, 36), 0x100, "past the header length nothing moves");
        assert_eq!(data_timestamps(&b, 32), Some((101, 202)));
        // An unknown layout is reported and left alone.
        let mut b = [0u8; 64];
        b[20..24].copy_from_slice(&[30, 4, 0, 0]);
        assert!(!translate_options(&mut b, 24, &OptionDeltas { tsval: 1, tsecr: 1, sack: 1 }));
        assert_eq!(data_timestamps(&b, 24), None);
    }

    #[test]
    fn windows_keep_their_size_across_scales() {
        assert_eq!(rescale_window(1000, 7, 7), 1000);
        // 1000 << 2 = 4000 bytes; at scale 7 that is 31.25 units, rounded down.
        assert_eq!(rescale_window(1000, 2, 7), 31);
        assert_eq!(rescale_window(31, 7, 2), 992);
        // Never zero from non-zero, never past the field.
        assert_eq!(rescale_window(1, 0, 7), 1);
        assert_eq!(rescale_window(0, 0, 7), 0);
        assert_eq!(rescale_window(0xFFFF, 14, 0), 0xFFFF);
    }

    #[test]
    fn the_wscale_offer_matches_what_the_syn_ack_carries() {
        for header_len in (20..=60).step_by(4) {
            for (ws, sack, ts) in [(7, 1, 1), (7, 0, 1), (7, 1, 0), (NO_WSCALE, 1, 1), (0, 0, 1)] {
                let client = SynOptions {
                    mss: 1460,
                    wscale: ws,
                    sack_permitted: sack,
                    has_timestamp: ts,
                    tsval: 5,
                    tsecr: 0,
                    walk: 0,
                };
                let mut out = [0u8; 64];
                write_syn_ack(&mut out, header_len, 1460, &client, 9);
                let offered = parse_syn(&out, header_len).wscale != NO_WSCALE;
                assert_eq!(
                    syn_ack_offers_wscale(header_len, &client),
                    offered,
                    "len {header_len} ws {ws} sack {sack} ts {ts}"
                );
            }
        }
    }
}
