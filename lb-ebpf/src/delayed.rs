//! Delayed binding (DESIGN.md §2 steps 3 and 3b): the first client data of a
//! `tls` connection, its SYN cookie checked, is stashed, segment by segment
//! until the ClientHello is whole, and its last segment becomes the SYN that
//! opens the backend leg, carrying the options the client's SYN offered. tc
//! (step 4) finishes the job when the backend answers.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{iphdr, tcphdr},
    helpers::{
        bpf_ktime_get_ns, bpf_tcp_raw_gen_syncookie_ipv4, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
        generated::bpf_probe_read_kernel,
    },
    programs::XdpContext,
};
use lb_common::{
    Flow, FlowKey, Pending, csum,
    maps::{STASH_MAX, STASH_SEGMENTS, flow_flags},
    reason,
    tcpopt::{self, COOKIE_MSS, HeaderBuf, NO_WSCALE},
};

use crate::{
    handshake,
    lookup::{flow, pending},
    parse::{ACK, SYN, Tcp, bytes_at, bytes_at_mut},
};

const IPPROTO_TCP: u8 = 6;
/// The first byte of a TLS handshake record (RFC 8446 §5.1, ContentType 22).
pub const TLS_HANDSHAKE: u8 = 22;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
const CLIENT_HELLO: u8 = 1;
const MAX_RECORD: usize = 1 << 14;
/// The SYN tether sends a backend has at most 40 bytes of header.
const SYN_MAX_HLEN: usize = 40;

/// What the stash holds of the client's first data, after a segment.
pub enum Hello {
    /// All of it (the whole first TLS record, or data that is no TLS record):
    /// bind now.
    Complete,
    /// A ClientHello with more to come: keep the segment, wait for the next.
    Incomplete,
    /// A ClientHello longer than the stash holds, or fragmented over
    /// records: the daemon's (`slow`).
    SlowPath,
    /// A record header claiming more than a record holds: no TLS to wait
    /// for; bind on what the stash has.
    TooLong,
}

/// Where the stash stands: the first record's header says how long the
/// ClientHello is (RFC 8446 §5.1), and the handshake header whether it
/// continues in a next record.
#[inline(always)]
pub fn hello_state(p: &Pending) -> Hello {
    if p.data[0] != TLS_HANDSHAKE {
        return Hello::Complete;
    }
    let held = p.len as usize;
    let more_segments = (p.segments as usize) < STASH_SEGMENTS;
    if held < RECORD_HEADER {
        return if more_segments { Hello::Incomplete } else { Hello::SlowPath };
    }
    let body = u16::from_be_bytes([p.data[3], p.data[4]]) as usize;
    let record = RECORD_HEADER + body;
    if body > MAX_RECORD {
        return Hello::TooLong;
    }
    if held < record {
        return if record <= STASH_MAX && more_segments { Hello::Incomplete } else { Hello::SlowPath };
    }
    // A ClientHello longer than its record goes on in the next (RFC 8446
    // §5.1 allows it; XDP reads one record).
    let message = HANDSHAKE_HEADER + u32::from_be_bytes([0, p.data[6], p.data[7], p.data[8]]) as usize;
    if p.data[5] == CLIENT_HELLO && body >= HANDSHAKE_HEADER && message > body {
        return Hello::SlowPath;
    }
    Hello::Complete
}

/// Reads the client's first data segment into the per-CPU `Pending`
/// (`pending::scratch`): the data itself, the sequence numbers of both sides,
/// the client's timestamps, and the choices of its SYN as the cookie
/// remembers them. Err is the reason to drop.
// VERIFIER: not inlined: the header sum and option walk get their own frame.
// It returns no pointer: one returned through the caller's stack (as a
// Result<&T, _> is) reached the caller as a plain number.
#[inline(never)]
pub fn capture_v4(ctx: &XdpContext, pkt: &Tcp) -> Result<(), u32> {
    let (Some(p), Some(buf)) = (pending::scratch(), handshake::header_scratch()) else {
        return Err(reason::DROP_FLOW_TABLE);
    };
    let (header_len, computed, data_sum) = segment_data(ctx, pkt, buf)?;
    // VERIFIER: opaque to LLVM, so the range check below is made on the
    // register bpf_xdp_load_bytes receives.
    // SAFETY: reading a local.
    let len = unsafe { core::ptr::read_volatile(&computed) };
    if len == 0 || len > STASH_MAX {
        return Err(reason::DROP_STASH_SIZE);
    }
    // VERIFIER (and speed): element by element; an array assignment is a
    // `memset` call (see `mem`).
    for i in 0..STASH_SEGMENTS {
        // SAFETY: i < STASH_SEGMENTS, inside both arrays.
        unsafe {
            core::ptr::write_volatile(&mut p.segment_sum[i], 0);
            core::ptr::write_volatile(&mut p.segment_len[i], 0);
        }
    }
    p.segment_sum[0] = data_sum;
    p.segment_len[0] = len as u16;
    p.segments = 1;
    p.assembling = lb_common::maps::hello::BOUND;
    p.daemon_sends = 0;

    let timestamps = tcpopt::data_timestamps(buf, header_len);
    p.client_isn = pkt.seq.wrapping_sub(1);
    p.cookie_isn = pkt.ack.wrapping_sub(1);
    p.window = u16::from_be_bytes([buf[14], buf[15]]);
    p.len = len as u16;
    // Last: it overwrites the header copy's sequence number and length.
    let cookie_index = cookie_mss_index(ctx, pkt, buf, p.client_isn, p.cookie_isn);
    let mss = if let Some((tsval, tsecr)) = timestamps {
        // The cookie's TSval came back as TSecr, with the SYN's choices in its low bits.
        let choices = tcpopt::decode_tsecr(tsecr);
        // The kernel's cookie check passes a segment up to 3 bytes past the
        // ISN + 1 (it reads as a smaller MSS index): a later segment of a
        // hello whose first is 1-3 bytes long and still on its way. The
        // index in TSecr tells them apart; without timestamps nothing does.
        if cookie_index != UNKNOWN_INDEX && cookie_index != (choices.mss_index & 3) as u32 {
            return Err(reason::TLS_HELLO_EARLY);
        }
        p.has_timestamp = 1;
        p.client_tsval = tsval;
        p.client_tsecr = tsecr;
        p.wscale = choices.wscale.unwrap_or(NO_WSCALE);
        p.sack_permitted = choices.sack_permitted as u8;
        COOKIE_MSS[(choices.mss_index & 3) as usize]
    } else {
        // Without timestamps nothing but the cookie itself survived the SYN:
        // like the kernel's own cookies, no window scaling and no SACK.
        p.has_timestamp = 0;
        p.client_tsval = 0;
        p.client_tsecr = 0;
        p.wscale = NO_WSCALE;
        p.sack_permitted = 0;
        // Across a minute boundary, the safe default of RFC 9293 §3.7.1.
        let index = if cookie_index == UNKNOWN_INDEX { 0 } else { cookie_index };
        // VERIFIER: LLVM dropped a plain mask after the check and indexed
        // with an unchecked copy; the volatile read keeps the mask.
        // SAFETY: reading a local.
        COOKIE_MSS[(unsafe { core::ptr::read_volatile(&index) } & 3) as usize]
    };
    let clamp = flow::settings().map(|s| s.mss_clamp).unwrap_or(0);
    p.mss = if clamp != 0 && (mss as u32) > clamp { clamp as u16 } else { mss };

    // SAFETY: p.data has STASH_MAX bytes and 1 <= len <= STASH_MAX.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx as *mut _,
            (pkt.l4_off + header_len) as u32,
            p.data.as_mut_ptr() as *mut _,
            len as u32,
        )
    };
    if rc != 0 {
        return Err(reason::PASS_TRUNCATED);
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    p.created_ns = now;
    // The backend leg's clocks (see `Pending::leg_isn`).
    p.leg_isn = (now / 4_000) as u32;
    p.leg_tsval = (now / 1_000_000) as u32;
    Ok(())
}

/// What `append_v4` did with a segment.
pub enum Appended {
    /// Its data follows the stash's.
    Held,
    /// It does not fit (`STASH_MAX`, `STASH_SEGMENTS`): the hello is the
    /// slow path's.
    Full,
    /// It does not continue the stash (a retransmission, or one after a
    /// gap): the hello is the slow path's, which acknowledges what arrived.
    NotNext,
}

/// Copies the `PENDING` value `held` into the per-CPU `Pending`. A plain
/// assignment of 4 KiB would be a `memcpy` call, which BPF does not have.
#[inline(always)]
pub fn load_held(held: *const Pending) -> Result<&'static mut Pending, u32> {
    let p = pending::scratch().ok_or(reason::DROP_FLOW_TABLE)?;
    // SAFETY: both point at a whole `Pending`.
    let rc = unsafe {
        bpf_probe_read_kernel(
            p as *mut Pending as *mut c_void,
            core::mem::size_of::<Pending>() as u32,
            held as *const c_void,
        )
    };
    if rc != 0 { Err(reason::DROP_FLOW_TABLE) } else { Ok(p) }
}

/// Adds a client segment to the ClientHello `held` for its connection
/// (DESIGN.md §2 step 3b): the per-CPU `Pending` becomes `held` with the
/// segment's data after the stash's. Only the segment that continues the
/// stash is taken. Anything else means a segment was lost or reordered, and
/// XDP, which acknowledges nothing, would wait for ever: a client that is
/// never acknowledged retransmits only its first segment.
// VERIFIER: not inlined, as `capture_v4`.
#[inline(never)]
pub fn append_v4(ctx: &XdpContext, pkt: &Tcp, held: *const Pending) -> Result<Appended, u32> {
    let buf = handshake::header_scratch().ok_or(reason::DROP_FLOW_TABLE)?;
    let p = load_held(held)?;
    let at = pkt.seq.wrapping_sub(p.client_isn.wrapping_add(1));
    if at != p.len as u32 {
        return Ok(Appended::NotNext);
    }
    let (header_len, computed, data_sum) = segment_data(ctx, pkt, buf)?;
    let segment = p.segments as usize;
    if segment >= STASH_SEGMENTS || at as usize + computed > STASH_MAX {
        return Ok(Appended::Full);
    }
    // SAFETY: reading a local; VERIFIER: as in `capture_v4`.
    let len = unsafe { core::ptr::read_volatile(&computed) };
    if len == 0 || len > STASH_MAX {
        return Err(reason::DROP_STASH_SIZE);
    }
    // VERIFIER: the offset masked into the stash; the per-CPU `Pending` is
    // followed by STASH_MAX bytes of slack (`pending::Scratch`), so any
    // offset plus any length stays in the map value.
    let offset = at as usize & (STASH_MAX - 1);
    // SAFETY: offset < STASH_MAX, len <= STASH_MAX, and the slack follows `data`.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx as *mut _,
            (pkt.l4_off + header_len) as u32,
            p.data.as_mut_ptr().add(offset) as *mut _,
            len as u32,
        )
    };
    if rc != 0 {
        return Err(reason::PASS_TRUNCATED);
    }
    p.segment_sum[segment & (STASH_SEGMENTS - 1)] = data_sum;
    p.segment_len[segment & (STASH_SEGMENTS - 1)] = len as u16;
    p.segments += 1;
    p.len += len as u16;
    Ok(Appended::Held)
}

/// A data segment's TCP header length (its header read into `buf`), its data
/// length, and the ones'-complement sum of its data, recovered from the
/// client's checksum: the pseudo-header and the header are all the sum needs.
#[inline(always)]
fn segment_data(ctx: &XdpContext, pkt: &Tcp, buf: &mut HeaderBuf) -> Result<(usize, usize, u32), u32> {
    let header_len = handshake::load_header(ctx, pkt, buf).ok_or(reason::PASS_TRUNCATED)?;
    let ip = bytes_at::<20>(ctx, pkt.l3_off).ok_or(reason::PASS_TRUNCATED)?;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let headers = (pkt.l4_off - pkt.l3_off) + header_len;
    if total < headers + 1 {
        return Err(reason::DROP_STASH_SIZE);
    }
    let mut sum = tcpopt::sum_words(buf, header_len);
    sum += u16::from_ne_bytes([ip[12], ip[13]]) as u32 + u16::from_ne_bytes([ip[14], ip[15]]) as u32;
    sum += u16::from_ne_bytes([ip[16], ip[17]]) as u32 + u16::from_ne_bytes([ip[18], ip[19]]) as u32;
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32
        + u16::from_ne_bytes(((total - (pkt.l4_off - pkt.l3_off)) as u16).to_be_bytes()) as u32;
    Ok((header_len, total - headers, csum::data_sum(sum) as u32))
}

/// `cookie_mss_index` across a minute boundary.
const UNKNOWN_INDEX: u32 = 4;

/// The MSS index the cookie carries, if the client's ISN is `client_isn`:
/// how the MSS a client without timestamps offered is recovered.
/// The kernel's IPv4 cookie (net/ipv4/syncookies.c) is
/// `hash1 + client_isn + (minute << 24) + ((hash2(minute) + mss_index) & 0xFFFFFF)`,
/// so generating the cookie again for the same SYN with MSS index 0 (a SYN
/// without options) gives exactly `cookie - mss_index` while the minute is
/// the same. `UNKNOWN_INDEX` across a minute boundary, where the difference
/// is large.
// VERIFIER: a plain number, not an Option: LLVM read the undefined payload
// of a None into a register, which the verifier refuses.
#[inline(always)]
fn cookie_mss_index(ctx: &XdpContext, pkt: &Tcp, buf: &mut HeaderBuf, client_isn: u32, cookie_isn: u32) -> u32 {
    let Some(ip) = bytes_at_mut::<20>(ctx, pkt.l3_off) else { return UNKNOWN_INDEX };
    buf[4..8].copy_from_slice(&client_isn.to_be_bytes());
    buf[12] = 5 << 4;
    // SAFETY: ip covers 20 checked packet bytes; buf holds a 20-byte header.
    let cookie =
        unsafe { bpf_tcp_raw_gen_syncookie_ipv4(ip.as_mut_ptr() as *mut iphdr, buf.as_mut_ptr() as *mut tcphdr, 20) };
    if cookie < 0 {
        return UNKNOWN_INDEX;
    }
    let index = cookie_isn.wrapping_sub(cookie as u32);
    if index >= 4 { UNKNOWN_INDEX } else { index }
}

/// Turns the client segment in the packet into the SYN to the backend, as
/// `p` describes it, before NAT: same addresses and ports, the backend leg's
/// own ISN and TSval, the client's other options, no data.
// VERIFIER: not inlined, like the SYN-ACK builder.
#[inline(never)]
pub fn rewrite_as_syn(ctx: &XdpContext, pkt: &Tcp, p: &Pending) -> Option<()> {
    let buf = handshake::header_scratch()?;
    // From the key, not the packet: `grow_front` may have moved the header.
    buf[0..2].copy_from_slice(&pkt.key.sport_be.to_ne_bytes());
    buf[2..4].copy_from_slice(&pkt.key.dport_be.to_ne_bytes());
    buf[4..8].copy_from_slice(&p.leg_isn.to_be_bytes());
    buf[8..12].copy_from_slice(&[0; 4]);
    let tsval = if p.has_timestamp != 0 { Some(p.leg_tsval) } else { None };
    let written = tcpopt::write_syn(buf, p.mss, p.wscale, p.sack_permitted != 0, tsval);
    // SAFETY: reading a local; VERIFIER: as in `capture_v4`.
    let header_len = unsafe { core::ptr::read_volatile(&written) };
    if !(20..=SYN_MAX_HLEN).contains(&header_len) {
        return None;
    }
    // A SYN's window is never scaled (RFC 7323 §2.2).
    let client_shift = if p.wscale == NO_WSCALE { 0 } else { p.wscale };
    let window = tcpopt::rescale_window(p.window, client_shift, 0);
    buf[12] = ((header_len / 4) as u8) << 4;
    buf[13] = SYN;
    buf[14..16].copy_from_slice(&window.to_be_bytes());
    buf[16..20].copy_from_slice(&[0; 4]);

    let ip_hlen = pkt.l4_off - pkt.l3_off;
    let new_total = ip_hlen + header_len;
    let old_total = u16::from_be_bytes(*bytes_at::<2>(ctx, pkt.l3_off + 2)?) as usize;
    if new_total > old_total {
        // A short last segment of a hello: too small to hold the SYN's header.
        handshake::grow_front(ctx, pkt, new_total - old_total)?;
    }
    let ip = bytes_at_mut::<20>(ctx, pkt.l3_off)?;
    let old_total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if new_total > old_total {
        return None;
    }
    let mut sum = tcpopt::sum_words(buf, header_len);
    sum += u16::from_ne_bytes([ip[12], ip[13]]) as u32 + u16::from_ne_bytes([ip[14], ip[15]]) as u32;
    sum += u16::from_ne_bytes([ip[16], ip[17]]) as u32 + u16::from_ne_bytes([ip[18], ip[19]]) as u32;
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32 + u16::from_ne_bytes((header_len as u16).to_be_bytes()) as u32;
    let tcp_csum = !csum::fold(csum::fold(sum) as u32);
    buf[16..18].copy_from_slice(&tcp_csum.to_ne_bytes());

    let ip_csum = csum::update16(
        u16::from_ne_bytes([ip[10], ip[11]]),
        u16::from_ne_bytes([ip[2], ip[3]]),
        u16::from_ne_bytes((new_total as u16).to_be_bytes()),
    );
    ip[2..4].copy_from_slice(&(new_total as u16).to_be_bytes());
    ip[10..12].copy_from_slice(&ip_csum.to_ne_bytes());

    // SAFETY: buf holds header_len (<= 40) bytes; the packet has them at l4_off
    // (new_total <= old_total).
    let rc = unsafe {
        bpf_xdp_store_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, header_len as u32)
    };
    if rc != 0 {
        return None;
    }
    handshake::shrink(ctx, old_total, new_total)
}

/// Rewrites the sequence and acknowledgement numbers of the segment in the
/// packet (before NAT), keeping the TCP checksum right.
#[inline(always)]
pub fn set_seq_ack(ctx: &XdpContext, pkt: &Tcp, seq: u32, ack: u32) -> Option<()> {
    let tcp = bytes_at_mut::<20>(ctx, pkt.l4_off)?;
    let mut check = u16::from_ne_bytes([tcp[16], tcp[17]]);
    check = csum::update32(check, pkt.seq.to_be(), seq.to_be());
    check = csum::update32(check, pkt.ack.to_be(), ack.to_be());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[16..18].copy_from_slice(&check.to_ne_bytes());
    Some(())
}

/// A backend packet that acknowledges all of the stashed data frees the
/// stash: tc will not need it for a retransmitted SYN-ACK any more.
#[inline(always)]
pub fn release_stash(pkt: &Tcp, flow: &Flow, entry: *mut Flow) {
    if pkt.flags & ACK == 0 {
        return;
    }
    let client_key = FlowKey::reply(flow, pkt.key.family);
    if let Some(p) = pending::get(&client_key) {
        // The backend acknowledges in the backend leg's numbers.
        let end = p.leg_isn.wrapping_add(1).wrapping_add(p.len as u32);
        if (pkt.ack.wrapping_sub(end) as i32) < 0 {
            return;
        }
        pending::remove(&client_key);
    }
    // SAFETY: a map value valid for this run; a whole-byte store.
    unsafe { (*entry).flags = flow.flags & !flow_flags::STASHED };
}
