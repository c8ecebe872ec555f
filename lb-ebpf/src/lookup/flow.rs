//! The flow table: two entries per connection, one per direction, each saying
//! how to rewrite that direction's packets.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use lb_common::{
    BackendInfo, Flow, FlowKey, FlowKeyV4, NextHop, Settings, VipInfo,
    maps::{Family, FlowDirection, FlowState, MAX_BACKENDS, MAX_FLOWS_V4, MAX_FLOWS_V6, flow_flags},
    reason,
};

use crate::parse::{FIN, RST, Tcp};

/// Connections' rewrite state, a table per address family (the IPv4 one has
/// the short key, see `FlowKeyV4`); everything here takes a `FlowKey` and
/// picks the table. Created here, refreshed here, removed here on RST and by
/// the daemon's sweeper; the LRU evicts only when full.
#[map(name = "FLOWS_V4")]
static FLOWS_V4: LruHashMap<FlowKeyV4, Flow> = LruHashMap::with_max_entries(MAX_FLOWS_V4, 0);
#[map(name = "FLOWS_V6")]
static FLOWS_V6: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(MAX_FLOWS_V6, 0);

/// Instance-wide knobs, one entry. Written by the daemon before attaching.
#[map(name = "SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Per-CPU room for the two entries of a connection being created, so they
/// need not sit on the 512-byte stack: slot CURRENT holds the client ->
/// backend rewrite `bind` returns, slot OTHER the other direction.
#[map(name = "FLOW_SCRATCH")]
static FLOW_SCRATCH: PerCpuArray<Flow> = PerCpuArray::with_max_entries(2, 0);
const CURRENT: u32 = 0;
const OTHER: u32 = 1;

/// The instance-wide settings the daemon wrote.
#[inline(always)]
pub fn settings() -> Option<&'static Settings> {
    SETTINGS.get(0)
}

#[inline(always)]
fn scratch(slot: u32) -> Option<&'static mut Flow> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    FLOW_SCRATCH.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// Where handing out source ports towards each backend resumes. Ports are
/// handed out in order, so the next candidate is the one handed out longest
/// ago, the likeliest to be free again: the first probe nearly always succeeds
/// until the range is really full. Shared by all CPUs: per-CPU cursors ran into
/// each other's freshly filled stretches and failed at half occupancy. The
/// read-modify-write is not atomic (fetch-and-add needs -mcpu=v3); a race costs
/// a probe, never a duplicate, because the NOEXIST claim decides.
#[map(name = "PORT_CURSORS")]
static PORT_CURSORS: Array<u32> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Source ports tried per new connection before the SYN is dropped as
/// `drop_ports_exhausted` (the client's retransmission tries again).
const PORT_PROBES: u32 = 32;
const EEXIST: i32 = 17;
/// `last_seen_ns` is written at most this often, to keep the entry's cache line
/// from bouncing between CPUs on every packet; the cached next hop is looked
/// up again as often.
const REFRESH_NS: u64 = 1_000_000_000;

/// The flow table's clock. Coarse (one tick, a few ms) is plenty for
/// timeouts of seconds, and costs a fraction of `bpf_ktime_get_ns`.
#[inline(always)]
fn clock_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The low 32 bits of `jiffies`, the tick count. The coarse clock moves once
/// a tick, so within one tick it reads the same as it did at the tick's
/// first packet, and the established path reads it only when the tick
/// changed. A load, where the clock is a helper call: the verifier inlines
/// `bpf_jiffies64` on 64-bit JITs.
#[inline(always)]
fn tick() -> u32 {
    // SAFETY: no preconditions.
    unsafe { bpf_jiffies64() as u32 }
}

/// Keeps the FIB's answer for this direction's next packets (see
/// `Flow::next_hop`). The MACs go first: a reader that sees the ifindex set
/// sees them too, unless a refresh raced it, which costs one stale packet.
#[inline(always)]
pub fn remember_next_hop(entry: *mut Flow, nh: &NextHop) {
    // SAFETY: `entry` is a live flow-table value (the caller did not remove it)
    // and `nh` is scratch memory, so they do not overlap; the stores are
    // plain words and bytes. VERIFIER: copy_nonoverlapping, or the unproven
    // non-overlap makes the copies `memmove` calls (byte loops).
    unsafe {
        core::ptr::copy_nonoverlapping(&nh.dmac, &mut (*entry).next_hop.dmac, 1);
        core::ptr::copy_nonoverlapping(&nh.smac, &mut (*entry).next_hop.smac, 1);
        (*entry).next_hop.ifindex = nh.ifindex;
    }
}

/// The entry of `key` in the table of `family`, which must be the key's.
/// VERIFIER: the family comes as a constant (each caller knows it: `tls`
/// connections are IPv4, and `process` is built once per family), so a
/// program holds the lookup of one table only. With both lookups behind a
/// branch on the key, the verifier could not prune paths holding pointers
/// into different maps together, and `tether_xdp` went from 356,000
/// instructions verified to over the one-million limit.
#[inline(always)]
pub fn get(family: Family, key: &FlowKey) -> Option<*mut Flow> {
    match family {
        Family::Ipv4 => FLOWS_V4.get_ptr_mut(&key.v4()),
        Family::Ipv6 => FLOWS_V6.get_ptr_mut(key),
    }
}

/// Adds or replaces (`flags` 0) the entry of `key`; BPF_NOEXIST only adds.
#[inline(always)]
fn insert(key: &FlowKey, flow: &Flow, flags: u64) -> Result<(), i32> {
    if key.family == Family::Ipv4 as u8 {
        FLOWS_V4.insert(&key.v4(), flow, flags)
    } else {
        FLOWS_V6.insert(key, flow, flags)
    }
}

#[inline(always)]
fn remove(key: &FlowKey) {
    let _ = if key.family == Family::Ipv4 as u8 { FLOWS_V4.remove(&key.v4()) } else { FLOWS_V6.remove(key) };
}

/// Records what a packet of an existing flow means for the flow's life and
/// returns the rewrite to apply: the entry itself, not a copy (the copy was
/// a tenth of the program's own samples in a profile of the established path). It stays valid for this run, and those
/// who write it while it is in use (tc, the daemon, XDP on other CPUs)
/// store whole words, so each field reads old or new. A FIN is noted for
/// the sweeper; an RST ends the connection once it has been forwarded
/// (`end_on_rst`).
#[inline(always)]
pub fn on_packet(flow: *mut Flow, pkt: &Tcp) -> &'static Flow {
    // SAFETY: `flow` points into a map value that stays valid for this
    // program run; see above for its concurrent writers.
    let (last_seen_ns, created_ns, flags, seen_tick) =
        unsafe { ((*flow).last_seen_ns, (*flow).created_ns, (*flow).flags, (*flow).seen_tick) };
    let tick = tick();
    // The first packet after creation is always recorded: the sweeper tells a
    // connection whose backend never answered by last_seen == created.
    let first_answer = last_seen_ns == created_ns;
    if pkt.flags & RST == 0 && (tick != seen_tick || first_answer) {
        let now = clock_ns();
        // SAFETY: as above; a lost update costs one more clock read.
        unsafe { (*flow).seen_tick = tick };
        if now.wrapping_sub(last_seen_ns) > REFRESH_NS || first_answer {
            // SAFETY: as above; a lost update only makes the flow look older,
            // or costs one more FIB lookup. The coarse clock can still read
            // the creation time; one nanosecond later keeps "answered"
            // visible.
            unsafe {
                (*flow).last_seen_ns = now.max(created_ns + 1);
                (*flow).next_hop.ifindex = 0;
            }
        }
    }
    if pkt.flags & FIN != 0 && flags & flow_flags::FIN == 0 {
        // SAFETY: as above.
        unsafe { (*flow).flags = flags | flow_flags::FIN };
    }
    // SAFETY: as above.
    unsafe { &*flow }
}

/// After an RST of a connection went on its way: both entries go. (Not
/// before: the RST is rewritten from its entry, and a removed entry of the
/// preallocated LRU table can be handed to a new connection on another CPU
/// at once.)
#[inline(always)]
pub fn end_on_rst(pkt: &Tcp, flow: &Flow) {
    if pkt.flags & RST != 0 {
        unbind(&pkt.key, flow);
    }
}

/// How a new connection's entries start out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A `tcp` VIP at the SYN: plain NAT, established from the start.
    Nat,
    /// A `tls` VIP at its first data: spliced, waiting for the backend's SYN-ACK.
    Splice,
}

/// Creates both entries of a new connection from `pkt` (a SYN to `vip`, or
/// the first data of a `tls` VIP) to `backend`, choosing a free source port,
/// and returns the client -> backend rewrite. Err is the reason to drop.
// VERIFIER: not inlined, so its locals (two flows, a key) get their own frame
// instead of adding to the caller's; the stack limit is 512 bytes in all.
#[inline(never)]
pub fn bind(pkt: &Tcp, vip: &VipInfo, backend_id: u32, binding: Binding) -> Result<&'static Flow, u32> {
    // VERIFIER: looked up here rather than passed in: BPF functions take at
    // most five arguments, and the Result's return slot is one.
    let backend: &BackendInfo = super::select::backend(backend_id).ok_or(reason::DROP_NO_BACKEND)?.1;
    let settings = SETTINGS.get(0).ok_or(reason::DROP_PORTS_EXHAUSTED)?;
    let count = settings.snat_port_count;
    if count == 0 {
        return Err(reason::DROP_PORTS_EXHAUSTED);
    }
    let (Some(to_client), Some(to_backend)) = (scratch(OTHER), scratch(CURRENT)) else {
        return Err(reason::DROP_FLOW_TABLE);
    };
    let now = clock_ns();
    let (state, flags) = match binding {
        Binding::Nat => (FlowState::Established, 0),
        Binding::Splice => (FlowState::BackendSynSent, flow_flags::SPLICE),
    };
    // SAFETY: Flow is plain integers and arrays. VERIFIER: see `mem`.
    unsafe { crate::mem::zero(to_client) };
    to_client.new_saddr_be = pkt.key.daddr_be;
    to_client.new_daddr_be = pkt.key.saddr_be;
    to_client.new_sport_be = pkt.key.dport_be;
    to_client.new_dport_be = pkt.key.sport_be;
    to_client.backend_id = backend_id;
    to_client.created_ns = now;
    to_client.last_seen_ns = now;
    to_client.direction = FlowDirection::ToClient as u8;
    to_client.flags = if binding == Binding::Splice { flags | flow_flags::STASHED } else { flags };
    to_client.state = state as u8;
    let cursor = PORT_CURSORS.get_ptr_mut(backend_id).ok_or(reason::DROP_FLOW_TABLE)?;
    // SAFETY: a u32 in a map value; concurrent word-sized stores only race.
    let start = unsafe { *cursor };
    let family = pkt.key.family;
    // VERIFIER: a constant trip count bounds the probing.
    for i in 0..PORT_PROBES {
        let port = (settings.snat_port_min + start.wrapping_add(i) % count) as u16;
        let reply = FlowKey {
            saddr_be: backend.addr_be,
            daddr_be: vip.snat_be,
            sport_be: backend.port_be,
            dport_be: port.to_be(),
            family,
            _pad: [0, 0, 0],
        };
        // Claiming the reply tuple is what reserves the port: NOEXIST makes the
        // claim atomic across CPUs.
        match insert(&reply, &*to_client, BPF_NOEXIST as u64) {
            // SAFETY: as above.
            Ok(()) => unsafe { *cursor = start.wrapping_add(i + 1) },
            Err(e) if e as i32 == -EEXIST => continue,
            Err(_) => return Err(reason::DROP_FLOW_TABLE),
        }
        *to_backend = Flow {
            new_saddr_be: vip.snat_be,
            new_daddr_be: backend.addr_be,
            new_sport_be: port.to_be(),
            new_dport_be: backend.port_be,
            direction: FlowDirection::ToBackend as u8,
            flags,
            ..*to_client
        };
        if insert(&pkt.key, &*to_backend, 0).is_err() {
            remove(&reply);
            return Err(reason::DROP_FLOW_TABLE);
        }
        super::select::count_new_flow(backend_id);
        return Ok(to_backend);
    }
    Err(reason::DROP_PORTS_EXHAUSTED)
}

/// Undoes `bind` when the rest of a connection's setup failed: removes the
/// entry for `key` and the reply entry of its rewrite `flow`.
#[inline(always)]
pub fn unbind(key: &FlowKey, flow: &Flow) {
    remove(&FlowKey::reply(flow, key.family));
    remove(key);
}
