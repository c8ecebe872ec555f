//! tether's data path: the XDP program `tether_xdp` and, for the one step XDP
//! cannot do on every driver, the tc program in `tc`. Stages live in modules:
//! `parse` reads headers into a plain struct, `lookup` consults and updates
//! maps without touching the packet, `handshake` and `delayed` are the
//! stateless handshake and delayed binding of `tls` VIPs, `rewrite` writes
//! the packet (NAT, splice, next hop), `verdict` turns the outcome into an
//! action and counts it.
#![no_std]
#![no_main]
// `lookup::select::count_new_flow`: an atomic add the BPF target offers no
// stable API for.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// `parse::word`: BPF inline assembly.
#![feature(asm_experimental_arch)]

mod bench;
mod delayed;
mod handshake;
mod lookup;
mod mem;
mod parse;
mod rewrite;
mod slow;
mod tc;
mod tls;
mod verdict;

use aya_ebpf::{
    macros::{map, xdp},
    maps::ProgramArray,
    programs::XdpContext,
};
use lb_common::{
    Flow, FlowKey, Pending, Protocol, VipInfo,
    maps::{Family, FlowDirection, FlowState, NO_BACKEND, OnFailure, flow_flags, hello, slow_kind},
    reason,
};

use crate::{
    lookup::{flow::Binding, pending, session::Persisted},
    parse::Tcp,
    verdict::Verdict,
};

/// The data path: every frame on every attached interface comes through
/// here. IPv6 goes on to `tether_xdp_v6`.
#[xdp]
pub fn tether_xdp(ctx: XdpContext) -> u32 {
    verdict::finish(process(&ctx, Family::Ipv4))
}

/// IPv6 segments, reached by a tail call from `tether_xdp`: the same
/// `process`, over the IPv6 flow table. VERIFIER: a program of its own so
/// that each holds the lookup of one flow table (see `lookup::flow::get`).
#[xdp]
pub fn tether_xdp_v6(ctx: XdpContext) -> u32 {
    verdict::finish(process(&ctx, Family::Ipv6))
}

/// `JUMP_VIP`: `tether_xdp_vip`; `JUMP_LEARN`: `tether_xdp_learn`;
/// `JUMP_BIND`: `tether_xdp_bind`; `JUMP_V6`: `tether_xdp_v6`. Written by
/// the loader.
#[map(name = "JUMPS")]
static JUMPS: ProgramArray = ProgramArray::with_max_entries(4, 0);

/// New connections to a VIP, reached by a tail call from `tether_xdp` when a
/// packet to an owned address belongs to no flow. VERIFIER: a program of its
/// own, verified on its own budget: with connection setup inside it,
/// `tether_xdp` came within a few percent of the one-million-instruction
/// limit.
#[xdp]
pub fn tether_xdp_vip(ctx: XdpContext) -> u32 {
    verdict::finish(new_connection(&ctx))
}

/// Backend segments of a connection whose farm learns from the server's
/// handshake (`flow_flags::LEARN`, `LEARN_TICKET`), reached by a tail call
/// from `tether_xdp` once it has updated the flow: persistence learns, then
/// the segment goes on as any other. VERIFIER: a program of its own: with
/// the ServerHello and NewSessionTicket reading inside it, `tether_xdp`
/// passed the one-million-instruction limit.
#[xdp]
pub fn tether_xdp_learn(ctx: XdpContext) -> u32 {
    verdict::finish(learn_then_forward(&ctx))
}

/// Delayed binding of a `tls` connection whose ClientHello `tether_xdp_vip`
/// has put whole in the per-CPU stash (`pending::scratch`), reached by a
/// tail call from it. VERIFIER: a program of its own: with hello assembly
/// and binding in one, `tether_xdp_vip` passed the one-million-instruction
/// limit.
#[xdp]
pub fn tether_xdp_bind(ctx: XdpContext) -> u32 {
    verdict::finish(bind(&ctx))
}

/// `cargo xtask bench` only, never attached: a binding's ClientHello parse
/// and persistence lookups on their own (see `bench`).
#[xdp]
pub fn tether_bench_choose(ctx: XdpContext) -> u32 {
    verdict::finish(bench::choose(&ctx))
}

#[inline(always)]
fn bind(ctx: &XdpContext) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return Verdict::pass(reason),
    };
    // Reached from `tls_handshake`, for IPv4 only; said again for the
    // verifier, which checks this program on its own.
    if pkt.family != Family::Ipv4 {
        return Verdict::pass(reason::PASS_TLS_IPV6);
    }
    let Some(vip) = lookup::vip(&pkt.vip_key()) else { return Verdict::pass(reason::PASS_NOT_VIP) };
    let bound_on_part = match pending::bound_on_part() {
        Some(&mut 0) => None,
        Some(note) => Some(*note),
        None => return Verdict::drop(reason::DROP_FLOW_TABLE),
    };
    bind_first_data(ctx, &pkt, vip, bound_on_part)
}

#[inline(always)]
fn learn_then_forward(ctx: &XdpContext) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return Verdict::pass(reason),
    };
    // Learning flows are `tls` connections, IPv4 only.
    if pkt.family != Family::Ipv4 {
        return Verdict::pass(reason::PASS_TLS_IPV6);
    }
    let Some(entry) = lookup::flow::get(Family::Ipv4, &pkt.key) else {
        return Verdict::drop(reason::DROP_FLOW_TABLE);
    };
    // SAFETY: a map value valid for this run.
    let flow = unsafe { &*entry };
    lookup::session::learn_from_server(ctx, &pkt, flow, entry);
    existing_flow(ctx, &pkt, flow, entry)
}

#[inline(always)]
fn new_connection(ctx: &XdpContext) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return Verdict::pass(reason),
    };
    let Some(vip) = lookup::vip(&pkt.vip_key()) else {
        return Verdict::pass(reason::PASS_NOT_VIP);
    };
    match Protocol::try_from(vip.protocol) {
        Ok(Protocol::Tcp) => new_tcp_connection(ctx, &pkt, vip),
        Ok(Protocol::Tls) => tls_handshake(ctx, &pkt),
        // Only the daemon writes VIPS; a value it never writes is not guessed at.
        Err(_) => Verdict::pass(reason::PASS_NOT_VIP),
    }
}

/// A frame of `family` (a constant: the program's); one of the other
/// family goes on to its program.
#[inline(always)]
fn process(ctx: &XdpContext, family: Family) -> Verdict {
    let pkt = match parse::headers(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return Verdict::pass(reason),
    };
    if pkt.family != family {
        if family == Family::Ipv4 {
            // SAFETY: a tail call replaces this program run; it returns
            // only if the slot is empty, which the loader never leaves it.
            unsafe { JUMPS.tail_call(ctx, lb_common::maps::JUMP_V6) };
        }
        return Verdict::drop(reason::DROP_NO_V6_PROGRAM);
    }
    // A flow entry exists only for addresses tether owns (or owned, see
    // `OwnedFilter`), so the host's own traffic can leave before any hash
    // lookup.
    if !lookup::may_own(&pkt.key.daddr_be, family) {
        return Verdict::pass(reason::PASS_NOT_VIP);
    }
    // Established traffic next: it is most of the packets, both directions,
    // and needs no other lookup. (Traffic to an address whose bit it shares
    // pays for a missed one.)
    if let Some(entry) = lookup::flow::get(family, &pkt.key) {
        let flow = lookup::flow::on_packet(entry, &pkt);
        if !(pkt.is_syn() && flow.flags & flow_flags::SPLICE != 0) {
            if flow.flags & flow_flags::RESET != 0 {
                return reset_flow(ctx, &pkt, flow);
            }
            if wants_learning(&pkt, flow) {
                // SAFETY: a tail call replaces this program run; if slot
                // JUMP_LEARN were empty it would return, and the segment
                // goes on unread.
                unsafe { JUMPS.tail_call(ctx, lb_common::maps::JUMP_LEARN) };
            }
            let verdict = existing_flow(ctx, &pkt, flow, entry);
            lookup::flow::end_on_rst(&pkt, flow);
            return verdict;
        }
        // A client's SYN on the tuple of a spliced connection: tether never
        // passes client SYNs on, and a client sends one only when it has no
        // connection on the tuple (a port reused after a close), so the old
        // connection is over. Its state goes and the SYN starts a new one.
        lookup::flow::unbind(&pkt.key, flow);
        pending::remove(&pkt.key);
    } else if !lookup::owned(&pkt.key.daddr_be, pkt.key.family) {
        return Verdict::pass(reason::PASS_NOT_VIP);
    }
    // SAFETY: a tail call replaces this program run; it returns only if
    // the slot is empty, which the loader never leaves it.
    unsafe { JUMPS.tail_call(ctx, lb_common::maps::JUMP_VIP) };
    Verdict::drop(reason::DROP_NO_VIP_PROGRAM)
}

/// A connection whose backend failed (`flow_flags::RESET`, set by the
/// daemon): the client's next segment is answered with an RST of its own
/// leg (its acknowledgement number is the sequence number it expects) and
/// the connection is forgotten, so it reconnects to a healthy backend at
/// once; the backend's segments are dropped. (An IPv6 segment with
/// extension headers before TCP gets no RST: it is dropped and the
/// connection forgotten.)
#[inline(always)]
fn reset_flow(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Verdict {
    if flow.direction != FlowDirection::ToBackend as u8 {
        return Verdict::drop(reason::DROP_BACKEND_FAILED);
    }
    lookup::flow::unbind(&pkt.key, flow);
    pending::remove(&pkt.key);
    if pkt.flags & parse::RST != 0 {
        return Verdict::drop(reason::DROP_BACKEND_FAILED);
    }
    match pkt.family {
        Family::Ipv4 => handshake::reset_v4(ctx, pkt, reason::RESET_BACKEND_FAILED),
        Family::Ipv6 => handshake::reset_v6(ctx, pkt, reason::RESET_BACKEND_FAILED),
    }
}

/// A `tls` VIP binds on the ClientHello, so until then XDP itself is the
/// server: a SYN gets a SYN cookie, the handshake's ACK is checked, and the
/// first data (with a valid cookie) is stashed; once the stash holds the
/// whole ClientHello, which may take several segments, it opens the backend
/// leg.
#[inline(always)]
fn tls_handshake(ctx: &XdpContext, pkt: &Tcp) -> Verdict {
    if pkt.family != Family::Ipv4 {
        return Verdict::pass(reason::PASS_TLS_IPV6);
    }
    if pkt.is_syn() {
        return handshake::syn_ack_v4(ctx, pkt);
    }
    let held = pending::get_ptr(&pkt.key);
    // A cookie can only be checked on segments at the client's ISN + 1: its
    // handshake ACK and first data. A FIN or RST before any binding is stray,
    // though a client's RST ends the wait for the rest of its hello.
    if pkt.flags & (parse::ACK | parse::RST | parse::SYN | parse::FIN) != parse::ACK {
        if pkt.flags & parse::RST != 0 && held.is_some() {
            forget_hello(&pkt.key, pkt.seq);
        }
        return Verdict::drop(reason::VIP_OTHER);
    }
    // SAFETY: a map value valid for this run.
    let next = match held.map(|h| (h, unsafe { ((*h).assembling, (*h).cookie_isn) })) {
        // The acknowledgement number, the cookie + 1, was checked with the
        // first segment: a segment without it belongs to no connection we
        // answered, and must not reach the hello.
        Some((_, (state, cookie_isn))) if state != hello::BOUND && pkt.ack != cookie_isn.wrapping_add(1) => {
            return Verdict::drop(reason::DROP_BAD_COOKIE);
        }
        Some((held, (hello::ASSEMBLING, _))) => more_of_the_hello(ctx, pkt, held),
        Some((_, (hello::SLOW_PATH, _))) => {
            return slow::hand_over(ctx, pkt, slow_kind::HELLO, reason::TLS_HELLO_SLOW_PATH);
        }
        // The daemon's packet (or the client's retransmission) binds on the
        // daemon's short hello.
        Some((held, (hello::DECIDED, _))) => delayed::load_held(held).map(|_| None).map_err(Verdict::drop),
        _ => first_data(ctx, pkt),
    };
    let bound_on_part = match next {
        Ok(bound_on_part) => bound_on_part,
        Err(done) => return done,
    };
    let Some(note) = pending::bound_on_part() else { return Verdict::drop(reason::DROP_FLOW_TABLE) };
    *note = bound_on_part.unwrap_or(0);
    // SAFETY: a tail call replaces this program run; it returns only if the
    // slot is empty, which the loader never leaves it.
    unsafe { JUMPS.tail_call(ctx, lb_common::maps::JUMP_BIND) };
    Verdict::drop(reason::DROP_NO_VIP_PROGRAM)
}

/// What a segment of the client's first data leads to: binding (with the
/// reason to count if the hello is bound on part of it), or a verdict now.
type HelloStep = Result<Option<u32>, Verdict>;

/// The segment at the client's ISN + 1, its cookie checked. Data whose
/// cookie fails may be a later segment of a hello that overtook the first
/// (its sequence number is not the ISN + 1 the cookie is checked with): the
/// daemon keeps it and runs it through here again once the first has come,
/// so that the client need not send it again after a timeout.
#[inline(always)]
fn first_data(ctx: &XdpContext, pkt: &Tcp) -> HelloStep {
    if !handshake::cookie_valid_v4(ctx, pkt) {
        if handshake::has_payload(ctx, pkt) {
            return Err(slow::hand_over(ctx, pkt, slow_kind::EARLY, reason::TLS_HELLO_EARLY));
        }
        return Err(Verdict::drop(reason::DROP_BAD_COOKIE));
    }
    if !handshake::has_payload(ctx, pkt) {
        return Err(Verdict::drop(reason::COOKIE_ACK));
    }
    match delayed::capture_v4(ctx, pkt) {
        Ok(()) => {}
        Err(reason::TLS_HELLO_EARLY) => {
            return Err(slow::hand_over(ctx, pkt, slow_kind::EARLY, reason::TLS_HELLO_EARLY));
        }
        Err(why) => return Err(Verdict::drop(why)),
    }
    hello_so_far(ctx, pkt)
}

/// A segment of a connection whose ClientHello is being assembled, its
/// acknowledgement number checked.
#[inline(always)]
fn more_of_the_hello(ctx: &XdpContext, pkt: &Tcp, held: *const Pending) -> HelloStep {
    if !handshake::has_payload(ctx, pkt) {
        return Err(Verdict::drop(reason::COOKIE_ACK));
    }
    match delayed::append_v4(ctx, pkt, held).map_err(Verdict::drop)? {
        delayed::Appended::Held => hello_so_far(ctx, pkt),
        delayed::Appended::Full => Err(to_slow_path(ctx, pkt, reason::TLS_HELLO_SLOW_PATH)),
        delayed::Appended::NotNext => Err(to_slow_path(ctx, pkt, reason::TLS_HELLO_OUT_OF_ORDER)),
    }
}

/// From now on the daemon assembles the hello: what XDP holds stays in the
/// stash for it to read, and this segment and the ones after it go to it.
/// `why` counts this segment.
#[inline(always)]
fn to_slow_path(ctx: &XdpContext, pkt: &Tcp, why: u32) -> Verdict {
    let Some(p) = pending::scratch() else { return Verdict::drop(reason::DROP_FLOW_TABLE) };
    p.assembling = hello::SLOW_PATH;
    if !pending::insert(&pkt.key, p) {
        return Verdict::drop(reason::DROP_FLOW_TABLE);
    }
    slow::hand_over(ctx, pkt, slow_kind::HELLO, why)
}

/// After a segment of the client's first data went into the per-CPU stash:
/// bind if the ClientHello is whole (or the stash full), else keep what
/// arrived and wait for the rest. No ACK goes back: the client's initial
/// window covers a hello of `STASH_MAX`, and the backend acknowledges it all.
#[inline(always)]
fn hello_so_far(ctx: &XdpContext, pkt: &Tcp) -> HelloStep {
    let Some(p) = pending::scratch() else { return Err(Verdict::drop(reason::DROP_FLOW_TABLE)) };
    match delayed::hello_state(p) {
        delayed::Hello::Complete => Ok(None),
        delayed::Hello::TooLong => Ok(Some(reason::TLS_HELLO_TOO_LONG)),
        delayed::Hello::SlowPath => Err(to_slow_path(ctx, pkt, reason::TLS_HELLO_SLOW_PATH)),
        delayed::Hello::Incomplete => {
            p.assembling = hello::ASSEMBLING;
            if !pending::insert(&pkt.key, p) {
                return Err(Verdict::drop(reason::DROP_FLOW_TABLE));
            }
            Err(Verdict::drop(reason::TLS_HELLO_PART))
        }
    }
}

/// A client's RST while its hello is incomplete: at the sequence number that
/// continues the stash (RFC 5961 §3.2 asks for no less), the stash goes.
#[inline(always)]
fn forget_hello(client_key: &FlowKey, seq: u32) {
    if let Some(p) = pending::get(client_key) {
        if p.assembling == hello::ASSEMBLING && seq == p.client_isn.wrapping_add(1).wrapping_add(p.len as u32) {
            pending::remove(client_key);
        }
    }
}

/// Delayed binding (DESIGN.md §2 step 3): with the ClientHello in the
/// per-CPU stash, a backend is chosen, both flow entries created pending,
/// the stash kept for tc, and the packet (the hello's last segment) sent on
/// as the SYN to the backend. `bound_on_part` counts a hello bound on part of it.
#[inline(always)]
fn bind_first_data(ctx: &XdpContext, pkt: &Tcp, vip: &VipInfo, bound_on_part: Option<u32>) -> Verdict {
    let Some(first) = pending::scratch() else { return Verdict::drop(reason::DROP_FLOW_TABLE) };
    first.assembling = hello::BOUND;
    let mut why = if first.data[0] == delayed::TLS_HANDSHAKE { reason::TLS_BIND } else { reason::TLS_NOT_HANDSHAKE };
    let Some(farm) = lookup::select::farm(vip.farm_id) else { return unbound(pkt, reason::DROP_NO_BACKEND) };
    // Persistence first: the backend that holds the client's session; then
    // the farm's algorithm.
    let (backend_id, chosen_by) = match lookup::session::choose(vip.farm_id, farm, pkt, first.len) {
        Persisted::Hit(id, kind) => {
            why = reason::TLS_BIND_PERSISTED;
            (id, Some(kind))
        }
        Persisted::Failed(action) if action == OnFailure::Reset as u8 => {
            pending::remove(&pkt.key);
            return handshake::reset_v4(ctx, pkt, reason::RESET_BACKEND_FAILED);
        }
        Persisted::Failed(_) => return unbound(pkt, reason::DROP_BACKEND_FAILED),
        Persisted::Miss => match lookup::select::by_algorithm(vip.farm_id, &pkt.key.saddr_be) {
            Some((id, _)) => (id, None),
            None => return unbound(pkt, reason::DROP_NO_BACKEND),
        },
    };
    let flow = match lookup::flow::bind(pkt, vip, backend_id, Binding::Splice) {
        Ok(flow) => flow,
        Err(why) => return unbound(pkt, why),
    };
    lookup::session::remember_client(farm, backend_id, chosen_by);
    if let Some(to_client) = lookup::flow::get(Family::Ipv4, &FlowKey::reply(flow, pkt.key.family)) {
        lookup::session::expect_server_hello(farm, to_client);
    }
    if !pending::insert(&pkt.key, first) || delayed::rewrite_as_syn(ctx, pkt, first).is_none() {
        lookup::flow::unbind(&pkt.key, flow);
        pending::remove(&pkt.key);
        return Verdict::drop(reason::DROP_FLOW_TABLE);
    }
    let (favoured, required, kind) = match chosen_by {
        Some(kind) => (lookup::select::favoured(vip.farm_id, farm, &pkt.key.saddr_be), backend_id, kind as u8),
        None => (backend_id, NO_BACKEND, 0),
    };
    lookup::binds::report(pkt, vip.farm_id, favoured, required, kind, backend_id);
    forward(ctx, pkt, flow, bound_on_part.unwrap_or(why))
}

/// A hello that found no backend: what was held of it goes too, so the
/// client's retransmission starts afresh.
#[inline(always)]
fn unbound(pkt: &Tcp, why: u32) -> Verdict {
    pending::remove(&pkt.key);
    Verdict::drop(why)
}

/// A packet of a connection the flow table knows.
#[inline(always)]
fn existing_flow(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, entry: *mut Flow) -> Verdict {
    let to_client = flow.direction == FlowDirection::ToClient as u8;
    if flow.state == FlowState::BackendSynSent as u8 {
        return if to_client { backend_while_pending(ctx, pkt, flow) } else { client_while_pending(ctx, pkt, flow) };
    }
    if to_client && flow.flags & flow_flags::SPLICE != 0 {
        if pkt.flags & parse::SYN != 0 {
            // A retransmitted SYN-ACK: our ACK with the data was lost; tc sends it again.
            return Verdict::pass(reason::BACKEND_SYN_ACK);
        }
        // An RST ends the connection (`end_on_rst`); its stash goes with the
        // daemon's orphan sweep.
        if flow.flags & flow_flags::STASHED != 0 && pkt.flags & parse::RST == 0 {
            delayed::release_stash(pkt, flow, entry);
        }
    }
    let why = if to_client { reason::FWD_TO_CLIENT } else { reason::FWD_TO_BACKEND };
    // The rewrites of the established path are inlined: a BPF-to-BPF call
    // and its return cost about 8 ns a packet where returns go through the
    // kernel's return thunk (measured with `cargo xtask bench steady`).
    // VERIFIER: the only use of the splice rewrite; its option walk
    // (`splice::translate_options`) stays a function, verified once per call
    // site, and so does the IPv6 NAT (`nat::apply`), whose frame the call
    // chains of `tether_xdp_learn` have no room for inline.
    let rewritten = if flow.flags & flow_flags::SPLICE != 0 {
        rewrite::splice::apply(ctx, pkt, flow)
    } else if pkt.family == Family::Ipv4 {
        rewrite::nat::apply_v4(ctx, pkt, flow)
    } else {
        rewrite::nat::apply(ctx, pkt, flow)
    };
    if rewritten.is_none() {
        return Verdict::drop(reason::PASS_TRUNCATED);
    }
    if flow.next_hop.ifindex != 0 {
        return rewrite::nexthop::out(ctx, &flow.next_hop, why);
    }
    let Some(nh) = rewrite::nexthop::scratch() else { return Verdict::drop(reason::DROP_NO_ROUTE) };
    if let Err(why) = rewrite::nexthop::lookup(ctx, pkt, flow, nh) {
        return Verdict::drop(why);
    }
    // An RST's entry goes right after (`end_on_rst`).
    if pkt.flags & parse::RST == 0 {
        lookup::flow::remember_next_hop(entry, nh);
    }
    rewrite::nexthop::out(ctx, nh, why)
}

/// A backend segment persistence may learn from: data (not a retransmitted
/// SYN-ACK, not an RST, which ends the connection) on a spliced connection
/// still marked for learning.
#[inline(always)]
fn wants_learning(pkt: &Tcp, flow: &Flow) -> bool {
    flow.flags & (flow_flags::LEARN | flow_flags::LEARN_TICKET | flow_flags::LEARN_DAEMON) != 0
        && flow.direction == FlowDirection::ToClient as u8
        && flow.state != FlowState::BackendSynSent as u8
        && pkt.flags & (parse::SYN | parse::RST) == 0
}

/// The backend's answer to our SYN: a SYN-ACK goes to tc (step 4); an RST
/// means it refused, and the client is told with an RST of its own leg.
#[inline(always)]
fn backend_while_pending(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Verdict {
    if pkt.flags & (parse::SYN | parse::ACK) == parse::SYN | parse::ACK {
        return Verdict::pass(reason::BACKEND_SYN_ACK);
    }
    if pkt.flags & parse::RST == 0 {
        return Verdict::drop(reason::DROP_BACKEND_PENDING);
    }
    // The flow entries go once it is forwarded (`end_on_rst`); the client's
    // RST must carry the sequence number the client expects from us (the cookie + 1) and
    // acknowledge in the client's numbers.
    let client_key = FlowKey::reply(flow, pkt.key.family);
    let Some(p) = pending::get(&client_key) else { return Verdict::drop(reason::DROP_BACKEND_PENDING) };
    let (seq, ack) = (p.cookie_isn.wrapping_add(1), p.client_isn.wrapping_add(1));
    pending::remove(&client_key);
    if delayed::set_seq_ack(ctx, pkt, seq, ack).is_none() {
        return Verdict::drop(reason::PASS_TRUNCATED);
    }
    forward(ctx, pkt, flow, reason::BACKEND_REFUSED)
}

/// Client segments while the backend SYN is out: the first data again means
/// the SYN (or its answer) was lost, so the SYN goes again; an RST is passed
/// on; anything else waits for the client's retransmission.
#[inline(always)]
fn client_while_pending(ctx: &XdpContext, pkt: &Tcp, flow: &Flow) -> Verdict {
    if pkt.flags & parse::RST != 0 {
        pending::remove(&pkt.key);
        return forward(ctx, pkt, flow, reason::FWD_TO_BACKEND);
    }
    let Some(p) = pending::get(&pkt.key) else { return Verdict::drop(reason::DROP_BACKEND_PENDING) };
    if pkt.seq != p.client_isn.wrapping_add(1) || !handshake::has_payload(ctx, pkt) {
        return Verdict::drop(reason::DROP_BACKEND_PENDING);
    }
    if delayed::rewrite_as_syn(ctx, pkt, p).is_none() {
        return Verdict::drop(reason::DROP_STASH_SIZE);
    }
    forward(ctx, pkt, flow, reason::BACKEND_SYN_RESENT)
}

/// A `tcp` VIP binds at the SYN: Maglev on the client address picks the backend.
#[inline(always)]
fn new_tcp_connection(ctx: &XdpContext, pkt: &Tcp, vip: &VipInfo) -> Verdict {
    if !pkt.is_syn() {
        return Verdict::drop(reason::DROP_NO_FLOW);
    }
    let Some((backend_id, _)) = lookup::select::maglev(vip.farm_id, &pkt.key.saddr_be) else {
        return Verdict::drop(reason::DROP_NO_BACKEND);
    };
    match lookup::flow::bind(pkt, vip, backend_id, Binding::Nat) {
        Ok(flow) => {
            lookup::binds::report(pkt, vip.farm_id, backend_id, NO_BACKEND, 0, backend_id);
            forward(ctx, pkt, flow, reason::NEW_FLOW)
        }
        Err(why) => Verdict::drop(why),
    }
}

/// NAT and next hop: all a `tcp` VIP's packets need, and a `tls` connection's
/// until it is spliced (established spliced flows: see `existing_flow`).
#[inline(always)]
fn forward(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, why: u32) -> Verdict {
    if rewrite::nat::apply(ctx, pkt, flow).is_none() {
        return Verdict::drop(reason::PASS_TRUNCATED);
    }
    rewrite::nexthop::send(ctx, pkt, flow, why)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

// The SYN-cookie and FIB helpers the data path uses are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
