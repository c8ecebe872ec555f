//! Splicing (DESIGN.md §2 step 5): a `tls` connection's two legs have
//! different initial sequence numbers (our cookie vs the backend's ISN),
//! different timestamp clocks and possibly different window scales. Each
//! packet of an established spliced flow is NATed (`nat::rewrite_v4`) and has
//! its sequence and acknowledgement numbers, SACK blocks, timestamps and
//! window translated as its `Flow` says, with incremental checksum updates
//! (RFC 1624), the TCP checksum's folded into one.

use aya_ebpf::{helpers::bpf_xdp_store_bytes, programs::XdpContext};
use lb_common::{
    Flow,
    csum::{fold, update16},
    tcpopt::{self, OptionDeltas},
};

use super::nat;
use crate::{
    handshake,
    parse::{ACK, Tcp, bytes_at_mut, word},
};

const TCP_CSUM: usize = 16;
/// The options of nearly every established Linux segment: NOP NOP TS.
const NOP_NOP_TS: [u8; 4] = [1, 1, 8, 10];

/// NATs `pkt` and translates its TCP header as `flow` says: the whole
/// rewrite of an established spliced segment, its TCP checksum written once
/// for both. Inlined into its one caller, `existing_flow`, to save a call
/// per segment.
#[inline(always)]
pub fn apply(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Option<()> {
    // The addresses' and ports' change, the fixed header's, and the
    // timestamps' if the fast path below takes them.
    let mut change = nat::rewrite_v4(ctx, pkt, flow)?;
    let tcp = bytes_at_mut::<20>(ctx, pkt.l4_off)?.as_mut_ptr();
    let translate_ack = pkt.flags & ACK != 0 && flow.ack_delta != 0;
    // SAFETY: fields inside the 20 bytes bounded.
    let header_len = unsafe {
        if flow.seq_delta != 0 {
            let seq = pkt.seq.wrapping_add(flow.seq_delta);
            change = change.add32(pkt.seq.to_be(), seq.to_be());
            word::store32(tcp.add(4), seq.to_be());
        }
        if translate_ack {
            let ack = pkt.ack.wrapping_add(flow.ack_delta);
            change = change.add32(pkt.ack.to_be(), ack.to_be());
            word::store32(tcp.add(8), ack.to_be());
        }
        if flow.wscale_in != flow.wscale_out {
            let old = u16::from_be(word::load16(tcp.add(14)));
            let new = tcpopt::rescale_window(old, flow.wscale_in, flow.wscale_out);
            change = change.add16(old.to_be(), new.to_be());
            word::store16(tcp.add(14), new.to_be());
        }
        ((*tcp.add(12) >> 4) as usize) * 4
    };
    let sack_delta = if translate_ack { flow.ack_delta } else { 0 };
    let options_change = header_len > 20 && (flow.tsval_delta != 0 || flow.tsecr_delta != 0 || sack_delta != 0);
    if options_change && header_len == 32 {
        if let Some(tcp) = bytes_at_mut::<32>(ctx, pkt.l4_off) {
            let tcp = tcp.as_mut_ptr();
            // SAFETY: options (20..32) and checksum inside the 32 bytes bounded.
            unsafe {
                if word::load32(tcp.add(20)) == u32::from_ne_bytes(NOP_NOP_TS) {
                    let tsval = u32::from_be(word::load32(tcp.add(24)));
                    let tsecr = u32::from_be(word::load32(tcp.add(28)));
                    let new_tsval = tsval.wrapping_add(flow.tsval_delta);
                    let new_tsecr = tsecr.wrapping_add(flow.tsecr_delta);
                    change = change.add32(tsval.to_be(), new_tsval.to_be()).add32(tsecr.to_be(), new_tsecr.to_be());
                    word::store32(tcp.add(24), new_tsval.to_be());
                    word::store32(tcp.add(28), new_tsecr.to_be());
                    word::store16(tcp.add(TCP_CSUM), change.apply(word::load16(tcp.add(TCP_CSUM))));
                    return Some(());
                }
            }
        }
    }
    // SAFETY: the checksum inside the 20 bytes bounded above (the packet
    // has not changed length since).
    unsafe { word::store16(tcp.add(TCP_CSUM), change.apply(word::load16(tcp.add(TCP_CSUM)))) };
    if !options_change {
        return Some(());
    }
    let deltas = OptionDeltas { tsval: flow.tsval_delta, tsecr: flow.tsecr_delta, sack: sack_delta };
    translate_options(ctx, pkt, &deltas)
}

/// Any other option layout (SACK blocks, timestamps first): the header is
/// copied out, translated, and written back, and the checksum follows the change
/// of the header's sum, whatever the options' alignment.
// VERIFIER: not inlined: the walk's frame is separate from the fast path's.
#[inline(never)]
fn translate_options(ctx: &XdpContext, pkt: &Tcp, deltas: &OptionDeltas) -> Option<()> {
    let buf = handshake::header_scratch()?;
    let header_len = handshake::load_header(ctx, pkt, buf)?;
    let before = fold(tcpopt::sum_words(buf, header_len));
    if !tcpopt::translate_options(buf, header_len, deltas) {
        // An unknown layout: forwarded untranslated (see translate_options).
        return Some(());
    }
    let after = fold(tcpopt::sum_words(buf, header_len));
    let check = update16(u16::from_ne_bytes([buf[TCP_CSUM], buf[TCP_CSUM + 1]]), before, after);
    buf[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&check.to_ne_bytes());
    // SAFETY: buf holds the header_len (20..=60) bytes just read from l4_off.
    let rc = unsafe {
        bpf_xdp_store_bytes(ctx.ctx as *mut _, pkt.l4_off as u32, buf.as_mut_ptr() as *mut _, header_len as u32)
    };
    (rc == 0).then_some(())
}
