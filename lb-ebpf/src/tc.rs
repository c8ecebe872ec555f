//! Delayed binding, step 4 (DESIGN.md §2), in a tc ingress program: XDP
//! passed the backend's SYN-ACK up; here it becomes our ACK carrying the
//! stashed client data, and goes back to the backend. This needs a packet
//! larger than the SYN-ACK, which XDP cannot make on veth (no tailroom,
//! DESIGN.md §5) and tc can (`bpf_skb_change_tail`). The host stack never
//! sees the SYN-ACK.
//!
//! On the first SYN-ACK the connection's two flow entries get their splice
//! fields (sequence, timestamp and window translation) and become
//! established; a retransmitted SYN-ACK only gets the ACK and data again.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{
        bpf_clone_redirect, bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes,
        generated::bpf_probe_read_kernel,
    },
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use lb_common::{
    Flow, FlowKey, Pending, csum,
    maps::{Family, FlowDirection, FlowState, STASH_MAX, STASH_SEGMENTS},
    reason,
    tcpopt::{self, HeaderBuf, NO_WSCALE, OUR_WSCALE, SynOptions},
};

use crate::{
    lookup::{flow, pending},
    verdict,
};

/// Per-CPU room for the SYN-ACK's TCP header, then for the headers we send.
#[map(name = "TC_HEADER")]
static TC_HEADER: PerCpuArray<HeaderBuf> = PerCpuArray::with_max_entries(2, 0);
const SYN_ACK_HEADER: u32 = 0;
const OUT_HEADERS: u32 = 1;

/// Per-CPU copy of the connection's `PENDING` value, with room after its
/// stash: a segment is sent from any offset into the stash, which the
/// verifier accepts only with a stash's worth of slack after it.
#[repr(C)]
pub struct Stash {
    pending: Pending,
    _slack: [u8; STASH_MAX],
}
#[map(name = "TC_STASH")]
static TC_STASH: PerCpuArray<Stash> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for the SYN-ACK's options (see `handshake::SYN_OPTIONS`).
#[map(name = "TC_OPTIONS")]
static TC_OPTIONS: PerCpuArray<SynOptions> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const OUR_TTL: u8 = 64;

/// What became of a packet: not ours (the host gets it), or consumed.
enum Outcome {
    NotOurs,
    Done { reason: u32, action: i32 },
}

#[classifier]
pub fn tether_tc(ctx: TcContext) -> i32 {
    match answer_syn_ack(&ctx) {
        Outcome::NotOurs => TC_ACT_OK as i32,
        Outcome::Done { reason, action } => {
            verdict::count(reason);
            action
        }
    }
}

#[inline(always)]
fn drop(reason: u32) -> Outcome {
    Outcome::Done { reason, action: TC_ACT_SHOT as i32 }
}

/// The addresses and ports of a SYN-ACK, and where its TCP header starts.
struct SynAck {
    key: FlowKey,
    seq: u32,
    ack: u32,
    l4_off: usize,
}

#[inline(always)]
fn answer_syn_ack(ctx: &TcContext) -> Outcome {
    let Some(seg) = parse(ctx) else { return Outcome::NotOurs };
    // `parse` takes IPv4 only: `tls` VIPs are.
    let Some(to_client) = flow::get(Family::Ipv4, &seg.key) else { return Outcome::NotOurs };
    // SAFETY: a map value valid for this run.
    let to_client_now = unsafe { &*to_client };
    if to_client_now.direction != FlowDirection::ToClient as u8 {
        return Outcome::NotOurs;
    }
    let client_key = FlowKey::reply(to_client_now, seg.key.family);
    let Some(p) = pending::get(&client_key) else { return drop(reason::TC_DROP_NO_STASH) };
    if seg.ack != p.leg_isn.wrapping_add(1) {
        // Not an answer to the SYN we sent (a stale one for an earlier use of
        // the port): the connection stays pending.
        return drop(reason::TC_DROP_ERROR);
    }
    match send_stash(ctx, &seg, p, to_client) {
        Some(action) => Outcome::Done { reason: reason::TC_STASH_SENT, action },
        None => drop(reason::TC_DROP_ERROR),
    }
}

/// Reads the Ethernet, IPv4 and TCP headers of a SYN-ACK; None for anything
/// else, which goes on to the host.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<SynAck> {
    let eth: [u8; ETH_HLEN] = ctx.load(0).ok()?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IPV4 {
        return None;
    }
    let ip: [u8; 20] = ctx.load(ETH_HLEN).ok()?;
    let ihl = ((ip[0] & 0x0F) as usize) * 4;
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3FFF != 0;
    if ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP || ihl < 20 || fragmented {
        return None;
    }
    let l4_off = ETH_HLEN + ihl;
    let tcp: [u8; 20] = ctx.load(l4_off).ok()?;
    if tcp[13] & (SYN | ACK | RST | FIN) != SYN | ACK {
        return None;
    }
    let key = FlowKey {
        saddr_be: lb_common::v4_in_16([ip[12], ip[13], ip[14], ip[15]]),
        daddr_be: lb_common::v4_in_16([ip[16], ip[17], ip[18], ip[19]]),
        sport_be: u16::from_ne_bytes([tcp[0], tcp[1]]),
        dport_be: u16::from_ne_bytes([tcp[2], tcp[3]]),
        family: 4,
        _pad: [0, 0, 0],
    };
    Some(SynAck {
        key,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        l4_off,
    })
}

/// Records the backend's side of the splice (first SYN-ACK only), then
/// rewrites the SYN-ACK into our ACK with the stashed data and sends it back
/// out of the interface it came in on: a copy per stashed segment but the
/// last, then the packet itself. Returns the tc action.
// VERIFIER: not inlined: its own frame for the header work.
#[inline(never)]
fn send_stash(ctx: &TcContext, seg: &SynAck, p: &Pending, to_client: *mut Flow) -> Option<i32> {
    // SAFETY: a map value valid for this run.
    let to_backend = flow::get(Family::Ipv4, &FlowKey::reply(unsafe { &*to_client }, seg.key.family))?;
    // SAFETY: per-CPU scratch, one program run at a time per CPU.
    let syn_ack = unsafe { &mut *TC_HEADER.get_ptr_mut(SYN_ACK_HEADER)? };
    let out = unsafe { &mut *TC_HEADER.get_ptr_mut(OUT_HEADERS)? };
    let opts = unsafe { &mut *TC_OPTIONS.get_ptr_mut(0)? };

    let fixed: [u8; 20] = ctx.load(seg.l4_off).ok()?;
    let computed = ((fixed[12] >> 4) as usize) * 4;
    // VERIFIER: see handshake::build_syn_ack_v4.
    // SAFETY: reading a local.
    let header_len = unsafe { core::ptr::read_volatile(&computed) };
    if !(20..=60).contains(&header_len) {
        return None;
    }
    // SAFETY: syn_ack has 64 bytes, header_len is at most 60.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            seg.l4_off as u32,
            syn_ack.as_mut_ptr() as *mut _,
            header_len as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    crate::mem::reset_syn_options(opts);
    tcpopt::parse_syn_into(syn_ack, header_len, opts);
    let timestamps = p.has_timestamp != 0 && opts.has_timestamp != 0;

    // SAFETY: map values valid for this run. tc is the only writer of these
    // fields, and only while the connection is pending.
    unsafe {
        if (*to_client).state == FlowState::BackendSynSent as u8 {
            splice(p, opts, seg.seq, &mut *to_client, &mut *to_backend);
        }
    }
    // SAFETY: as above.
    let (wscale_in, wscale_out) = unsafe { ((*to_backend).wscale_in, (*to_backend).wscale_out) };

    // Our ACK: from the SNAT address and port to the backend, acknowledging
    // its SYN, carrying the client's first data at the backend leg's sequence
    // numbers, with the client's window and the leg's timestamp; one segment
    // per segment the client sent it in.
    let tcp_hlen: usize = if timestamps { 32 } else { 20 };
    let ip: [u8; 20] = ctx.load(ETH_HLEN).ok()?;
    out[0] = 0x45;
    out[1] = 0;
    out[4..6].copy_from_slice(&[0, 0]);
    out[6..8].copy_from_slice(&[0x40, 0]); // don't fragment
    out[8] = OUR_TTL;
    out[9] = IPPROTO_TCP;
    out[12..16].copy_from_slice(&ip[16..20]);
    out[16..20].copy_from_slice(&ip[12..16]);
    out[20..22].copy_from_slice(&syn_ack[2..4]);
    out[22..24].copy_from_slice(&syn_ack[0..2]);
    out[28..32].copy_from_slice(&seg.seq.wrapping_add(1).to_be_bytes());
    out[32] = ((tcp_hlen / 4) as u8) << 4;
    out[34..36].copy_from_slice(&tcpopt::rescale_window(p.window, wscale_in, wscale_out).to_be_bytes());
    if timestamps {
        out[40..44].copy_from_slice(&[1, 1, 8, 10]);
        out[44..48].copy_from_slice(&p.leg_tsval.to_be_bytes());
        out[48..52].copy_from_slice(&opts.tsval.to_be_bytes());
    }

    // Back out the way the SYN-ACK came: the MACs swap. Growing or cutting
    // the tail leaves them be.
    let eth: [u8; 12] = ctx.load(0).ok()?;
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&eth[6..12]);
    macs[6..].copy_from_slice(&eth[..6]);
    let skb = ctx.skb.skb;
    // SAFETY: skb is this program's context; 12 bytes from a local.
    if unsafe { bpf_skb_store_bytes(skb as *mut _, 0, macs.as_ptr() as *const _, 12, 0) } != 0 {
        return None;
    }
    // SAFETY: the PENDING value copied whole into per-CPU memory with a
    // stash's worth of room after it (see `Stash`).
    let stash = unsafe { &mut *TC_STASH.get_ptr_mut(0)? };
    let rc = unsafe {
        bpf_probe_read_kernel(
            &mut stash.pending as *mut Pending as *mut c_void,
            core::mem::size_of::<Pending>() as u32,
            p as *const Pending as *const c_void,
        )
    };
    if rc != 0 {
        return None;
    }
    let p = &stash.pending;
    if p.daemon_sends != 0 {
        // The daemon has the hello (the stash is its short copy) and sends
        // it once the connection is spliced: our ACK carries nothing.
        let headers = fill_segment(out, tcp_hlen, p.leg_isn.wrapping_add(1), 0, 0, false)?;
        // SAFETY: reading a local. VERIFIER: as below.
        let headers = unsafe { core::ptr::read_volatile(&headers) };
        if !(40..=52).contains(&headers) {
            return None;
        }
        // SAFETY: `out` holds `headers` bytes; the packet is sized to them.
        unsafe {
            if bpf_skb_change_tail(skb, (ETH_HLEN + headers) as u32, 0) != 0 {
                return None;
            }
            if bpf_skb_store_bytes(skb as *mut _, ETH_HLEN as u32, out.as_ptr() as *const _, headers as u32, 0) != 0 {
                return None;
            }
            return Some(bpf_redirect((*skb).ifindex, 0) as i32);
        }
    }
    let segments = p.segments as usize;
    let mut offset = 0usize;
    // VERIFIER: a constant bound; the helpers inside need a loop the
    // verifier walks, not a bpf_loop callback.
    for i in 0..STASH_SEGMENTS {
        let last = i + 1 >= segments;
        let len = p.segment_len[i] as usize;
        let seq = p.leg_isn.wrapping_add(1).wrapping_add(offset as u32);
        let headers = fill_segment(out, tcp_hlen, seq, len, p.segment_sum[i], last)?;
        // VERIFIER: opaque, so the range checks below hold on the registers
        // the helpers receive.
        let computed = len;
        // SAFETY: reading locals.
        let len = unsafe { core::ptr::read_volatile(&computed) };
        let computed = offset & (STASH_MAX - 1);
        let at = unsafe { core::ptr::read_volatile(&computed) };
        if !(40..=52).contains(&headers) || len == 0 || len > STASH_MAX {
            return None;
        }
        // SAFETY: `out` holds `headers` bytes; `stash.pending.data` has
        // STASH_MAX bytes and the slack after it, so `at + len` stays inside
        // the map value; the packet has been sized to fit both.
        unsafe {
            if bpf_skb_change_tail(skb, (ETH_HLEN + headers + len) as u32, 0) != 0 {
                return None;
            }
            if bpf_skb_store_bytes(skb as *mut _, ETH_HLEN as u32, out.as_ptr() as *const _, headers as u32, 0) != 0 {
                return None;
            }
            let data = stash.pending.data.as_ptr().add(at);
            if bpf_skb_store_bytes(skb as *mut _, (ETH_HLEN + headers) as u32, data as *const _, len as u32, 0) != 0 {
                return None;
            }
            let ifindex = (*skb).ifindex;
            if last {
                return Some(bpf_redirect(ifindex, 0) as i32);
            }
            // A copy goes now; the packet itself becomes the next segment.
            if bpf_clone_redirect(skb, ifindex, 0) != 0 {
                return None;
            }
        }
        offset += len;
    }
    None
}

/// Writes the IP total length and checksum, sequence number, flags and TCP
/// checksum of one stashed segment into `out`, whose other fields are set;
/// returns the length of the headers.
#[inline(always)]
fn fill_segment(
    out: &mut HeaderBuf,
    tcp_hlen: usize,
    seq: u32,
    len: usize,
    data_sum: u32,
    last: bool,
) -> Option<usize> {
    let total = 20 + tcp_hlen + len;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[10..12].copy_from_slice(&[0, 0]);
    let ip_csum = !csum::fold(tcpopt::sum_words(out, 20));
    out[10..12].copy_from_slice(&ip_csum.to_ne_bytes());
    out[24..28].copy_from_slice(&seq.to_be_bytes());
    // PSH on the last: the client's data is all there.
    out[33] = if last { ACK | PSH } else { ACK };
    out[36..40].copy_from_slice(&[0; 4]);
    let mut sum = data_sum;
    let mut i = 20;
    // VERIFIER: a constant bound; at most 16 words of TCP header.
    for _ in 0..16 {
        if i >= 20 + tcp_hlen {
            break;
        }
        sum += u16::from_ne_bytes([out[i & 63], out[(i + 1) & 63]]) as u32;
        i += 2;
    }
    for w in [12, 14, 16, 18] {
        sum += u16::from_ne_bytes([out[w], out[w + 1]]) as u32;
    }
    sum += u16::from_ne_bytes([0, IPPROTO_TCP]) as u32
        + u16::from_ne_bytes(((tcp_hlen + len) as u16).to_be_bytes()) as u32;
    let tcp_csum = !csum::fold(csum::fold(sum) as u32);
    out[36..38].copy_from_slice(&tcp_csum.to_ne_bytes());
    Some(20 + tcp_hlen)
}

/// Fills both flow entries' splice fields from the pending connection and
/// the backend's SYN-ACK, and marks them established. Each leg has its own
/// sequence numbers and timestamp clock on either side of tether:
///
/// | values of | client leg | backend leg |
/// |---|---|---|
/// | client's data | client_isn | leg_isn |
/// | backend's data | cookie_isn | backend_isn |
/// | client's TSval | client's clock | leg clock (leg_tsval at the first data) |
/// | backend's TSval | ours (cookie TSval, echoed as client_tsecr) | backend's |
#[inline(always)]
fn splice(p: &Pending, backend: &SynOptions, backend_isn: u32, to_client: &mut Flow, to_backend: &mut Flow) {
    // Window scaling is on for a leg only if both ends offered it: the client
    // leg if the client did (our SYN-ACK always answers with OUR_WSCALE), the
    // backend leg if the backend answered the client's offer we passed on.
    let client_scaled = p.wscale != NO_WSCALE;
    let backend_scaled = client_scaled && backend.wscale != NO_WSCALE;
    let client_shift = if client_scaled { p.wscale } else { 0 };
    let backend_shift = if backend_scaled { if backend.wscale > 14 { 14 } else { backend.wscale } } else { 0 };
    let timestamps = p.has_timestamp != 0 && backend.has_timestamp != 0;
    // The backend's clock moved onto ours as the client saw it first, and
    // the client's clock onto the leg clock.
    let (backend_ts, client_ts) = if timestamps {
        (p.client_tsecr.wrapping_sub(backend.tsval), p.leg_tsval.wrapping_sub(p.client_tsval))
    } else {
        (0, 0)
    };
    let client_seq = p.leg_isn.wrapping_sub(p.client_isn);
    let backend_seq = p.cookie_isn.wrapping_sub(backend_isn);
    to_backend.seq_delta = client_seq;
    to_backend.ack_delta = 0u32.wrapping_sub(backend_seq);
    to_backend.tsval_delta = client_ts;
    to_backend.tsecr_delta = 0u32.wrapping_sub(backend_ts);
    to_backend.wscale_in = client_shift;
    to_backend.wscale_out = if backend_scaled { client_shift } else { 0 };
    to_client.seq_delta = backend_seq;
    to_client.ack_delta = 0u32.wrapping_sub(client_seq);
    to_client.tsval_delta = backend_ts;
    to_client.tsecr_delta = 0u32.wrapping_sub(client_ts);
    to_client.wscale_in = backend_shift;
    to_client.wscale_out = if client_scaled { OUR_WSCALE } else { 0 };
    // Last: XDP on other CPUs acts on the state.
    to_backend.state = FlowState::Established as u8;
    to_client.state = FlowState::Established as u8;
}
