//! TLS session persistence (DESIGN.md §3): which backend holds a client's
//! session. Looked up when a `tls` connection binds, from its ClientHello, in
//! the order the farm lists its kinds; learned from the backend's ServerHello
//! and NewSessionTicket (`session-id`, `ticket`, `ticket-key`), or at binding
//! (`sni`, `source-ip`). `session-id-prefix` learns nothing: the daemon
//! writes each backend's prefix.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    helpers::{bpf_ktime_get_coarse_ns, bpf_loop},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    FarmInfo, Flow,
    maps::{
        BackendState, FLIGHT_MAX, Family, MAX_FARMS, MAX_PERSIST_KINDS, MAX_SESSIONS, NO_BACKEND, OnFailure,
        PERSIST_STAT_SLOTS, PersistCounters, PersistKind, SESSION_FILTER_HEADER, SESSION_FILTER_MIN_BITS,
        SESSION_KEY_SOURCE_MAX, STASH_MAX, SessionEntry, SessionKey, flow_flags, session_filter_elements,
        session_filter_header_parts, session_filter_words, slow_kind,
    },
    persist::{self, KEY_NAME_LEN, NAME_HASH_LEN},
    tls::{self, Span, TlsError},
};

use super::{pending, select};
use crate::{
    parse::Tcp,
    tls::{FlightAt, HelloRead, flight_at, read_client_hello, read_server_hello, server_read},
};

/// Learned sessions of all farms. LRU: a full table forgets the sessions
/// used longest ago. Written by XDP (learn, refresh on use); expired by the
/// daemon's sweeper and listed by `tether sessions`.
#[map(name = "SESSIONS")]
static SESSIONS: LruHashMap<SessionKey, SessionEntry> = LruHashMap::with_max_entries(MAX_SESSIONS, 0);

/// Which `SESSIONS` keys may be present: a byte per slot
/// (`persist::filter_slot`), nonzero once a key of that slot was added, in
/// two generations, after a header that names the one lookups read and the
/// filter's size (`maps::session_filter_header`; the loader sizes the map
/// from the session table). Most lookups in TLS 1.3 traffic miss (its
/// session IDs are random), and a zero byte answers those without the hash
/// table's call, hash and bucket walk. Every key added, here (`learn`) or
/// by the daemon, is marked in both generations after it is added; the
/// daemon rebuilds the inactive generation from the table (cleared, then
/// marked from a scan) and makes it the active one, so that slots of
/// evicted and expired keys do not stay set forever. A key added while the
/// scan runs is marked after it is in the table: either the scan sees it or
/// its mark comes after the clear. Plain byte stores, which cannot undo
/// another CPU's: no read-modify-write. Memory-mapped by the daemon.
#[map(name = "SESSION_FILTER")]
static SESSION_FILTER: Array<u64> =
    Array::with_max_entries(session_filter_elements(SESSION_FILTER_MIN_BITS), BPF_F_MMAPABLE);

/// The generation lookups read and the filter's bits; None before the
/// loader wrote the header (then nothing is filtered or marked).
#[inline(always)]
fn filter_header() -> Option<(u32, u32)> {
    // A word the daemon stores whole.
    session_filter_header_parts(*SESSION_FILTER.get(SESSION_FILTER_HEADER)?)
}

/// The filter byte of `key` in `generation` (0 or 1) of a filter of `bits`.
#[inline(always)]
fn filter_byte(generation: u32, bits: u32, key: &SessionKey) -> Option<*mut u8> {
    let slot = persist::filter_slot(key, bits);
    let element = 1 + generation * session_filter_words(bits) + slot / 8;
    let word = SESSION_FILTER.get_ptr_mut(element)?;
    // SAFETY: a byte inside the 8-byte element.
    Some(unsafe { (word as *mut u8).add((slot % 8) as usize) })
}

/// Whether `key` may be in `SESSIONS`: false only when it cannot be.
#[inline(always)]
fn may_be_learned(key: &SessionKey) -> bool {
    let Some((generation, bits)) = filter_header() else { return true };
    match filter_byte(generation, bits, key) {
        // SAFETY: a byte of a live map value.
        Some(byte) => unsafe { core::ptr::read_volatile(byte) != 0 },
        None => true,
    }
}

/// Marks `key`, just added to `SESSIONS`, in both generations of the filter.
#[inline(always)]
fn mark_learned(key: &SessionKey) {
    let Some((_, bits)) = filter_header() else { return };
    for generation in 0..2 {
        if let Some(byte) = filter_byte(generation, bits, key) {
            // SAFETY: a byte of a live map value; a byte store.
            unsafe { core::ptr::write_volatile(byte, 1) };
        }
    }
}

/// `session-id-prefix`: each configured prefix's backend id. Written by the
/// daemon.
#[map(name = "SESSION_PREFIXES")]
static SESSION_PREFIXES: HashMap<SessionKey, u32> = HashMap::with_max_entries(lb_common::maps::MAX_BACKENDS, 0);

/// What each kind did for each farm (`PersistCounters`).
#[map(name = "PERSIST_STATS")]
static PERSIST_STATS: PerCpuArray<PersistCounters> = PerCpuArray::with_max_entries(MAX_FARMS * PERSIST_STAT_SLOTS, 0);

/// Written by the daemon and `tether sessions` only (see
/// `lb_common::maps::REMOVALS_FLUSHED`); declared here so that it lives with
/// the other maps and is pinned beside them.
#[map(name = "SESSION_REMOVALS")]
static SESSION_REMOVALS: aya_ebpf::maps::Array<u64> =
    aya_ebpf::maps::Array::with_max_entries(2 * MAX_FARMS * PERSIST_STAT_SLOTS, 0);

/// Per-CPU room for the key being built, which keeps the callers' frames small.
#[map(name = "SESSION_KEY_SCRATCH")]
static SESSION_KEY_SCRATCH: PerCpuArray<SessionKey> = PerCpuArray::with_max_entries(1, 0);

/// Whether a farm lists `kind` among its persistence kinds.
#[inline(always)]
pub fn uses(farm: &FarmInfo, kind: PersistKind) -> bool {
    // VERIFIER: the mask, not a walk over `persistence`: each comparison of
    // the walk is a branch, and the branches of a few calls multiplied.
    farm.persist_mask & (1 << kind as u8) != 0
}

#[inline(always)]
fn counters(farm_id: u32, kind: PersistKind) -> Option<&'static mut PersistCounters> {
    // SAFETY: a per-CPU slot, touched by one program run at a time (as STATS).
    PERSIST_STATS.get_ptr_mut(farm_id * PERSIST_STAT_SLOTS + kind as u32).map(|p| unsafe { &mut *p })
}

/// The key scratch slot, cleared, for `kind` in `farm_id`.
#[inline(always)]
fn key_slot(farm_id: u32, kind: PersistKind) -> Option<&'static mut SessionKey> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    let key = unsafe { &mut *SESSION_KEY_SCRATCH.get_ptr_mut(0)? };
    // SAFETY: SessionKey is plain integers. VERIFIER: see `mem`.
    unsafe { crate::mem::zero(key) };
    key.farm_id = farm_id;
    key.kind = kind as u8;
    Some(key)
}

/// A key from `span` of `buf` (its first 32 bytes, folded into 16 when
/// longer than that: `mem::fold_span`); None for an empty span.
#[inline(always)]
fn span_key(farm_id: u32, kind: PersistKind, buf: &[u8; STASH_MAX], span: Span) -> Option<&'static SessionKey> {
    span_key_and_head(farm_id, kind, buf, span).map(|(key, _)| key)
}

/// `span_key`, and the span's first eight bytes as they are (the key may
/// hold them folded).
#[inline(always)]
fn span_key_and_head(
    farm_id: u32,
    kind: PersistKind,
    buf: &[u8; STASH_MAX],
    span: Span,
) -> Option<(&'static SessionKey, u64)> {
    if span.is_empty() {
        return None;
    }
    let key = key_slot(farm_id, kind)?;
    key.len = span.len.min(SESSION_KEY_SOURCE_MAX as u16) as u8;
    // SAFETY: both buffers keys are read from (the stash and the server's
    // segment) are followed by `SPAN_SLACK` bytes of their map value.
    let head = unsafe { crate::mem::fold_span(buf, span, &mut key.bytes) };
    Some((key, head))
}

/// The client's side of a binding: the farm, the client's address, and
/// what persistence chose. Per-CPU: the `bpf_loop` step over the farm's
/// kinds reads it.
struct Choice {
    farm_id: u32,
    client_be: [u8; 16],
    family: u8,
    /// Out: the chosen backend, and the kind that chose it (0: none).
    backend_id: u32,
    kind: u8,
    /// Out: `OnFailure as u8` when a learned session named a failed backend
    /// and the farm resets or drops such clients (0: none did).
    failure: u8,
}

/// What persistence decided for a new connection.
pub enum Persisted {
    /// Nothing known (or only unusable entries): the farm's algorithm decides.
    Miss,
    /// This backend holds the client's session; this kind said so.
    Hit(u32, PersistKind),
    /// The client's session is on a failed backend and the farm's
    /// `on_backend_failure` says `reset` or `drop` (`OnFailure as u8`).
    Failed(u8),
}

#[map(name = "CHOICE")]
static CHOICE: PerCpuArray<Choice> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn choice() -> Option<&'static mut Choice> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    CHOICE.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// What persistence gives a connection whose first data is the stashed
/// segment (`pending::scratch`, `len` bytes): the backend and the kind that
/// chose it, or None for the farm's algorithm. Either way `remember_client`
/// is to be called with the backend the connection gets.
#[inline(always)]
pub fn choose(farm_id: u32, farm: &FarmInfo, pkt: &Tcp, len: u16) -> Persisted {
    if farm.persistence[0] == 0 {
        return Persisted::Miss;
    }
    let Some(c) = choice() else { return Persisted::Miss };
    c.farm_id = farm_id;
    c.client_be = pkt.key.saddr_be;
    c.family = pkt.key.family;
    c.backend_id = NO_BACKEND;
    c.kind = 0;
    c.failure = 0;
    let needs_extensions = farm.persist_mask
        & (1 << PersistKind::Ticket as u8 | 1 << PersistKind::TicketKey as u8 | 1 << PersistKind::Sni as u8)
        != 0;
    let Some(read) = read_client_hello(len, needs_extensions, uses(farm, PersistKind::Sni)) else {
        return Persisted::Miss;
    };
    let Some(p) = pending::scratch() else { return Persisted::Miss };
    let mut search = Search { choice: c, farm, read, stash: &p.data };
    // SAFETY: `try_kind` is a BPF function of the signature bpf_loop calls,
    // and its context, `search`, outlives the loop.
    unsafe {
        bpf_loop(MAX_PERSIST_KINDS as u32, try_kind as *mut c_void, &mut search as *mut Search as *mut c_void, 0)
    };
    let Some(c) = choice() else { return Persisted::Miss };
    if c.failure != 0 {
        return Persisted::Failed(c.failure);
    }
    match PersistKind::try_from(c.kind) {
        Ok(kind) => Persisted::Hit(c.backend_id, kind),
        Err(_) => Persisted::Miss,
    }
}

/// What each step of the search over a farm's kinds works on, handed to it
/// through `bpf_loop`'s context (a pointer into `choose`'s frame), as the
/// extension walk's is (`tls::HelloWalk`): per-CPU slots and the farm, all
/// live map values for this program run.
#[repr(C)]
struct Search {
    choice: *mut Choice,
    farm: *const FarmInfo,
    read: *const HelloRead,
    stash: *const [u8; STASH_MAX],
}

/// One of the farm's kinds, the `index`th: 1 (stop) when it chose a
/// backend or the list ended.
extern "C" fn try_kind(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Search` `choose` passed (see there).
    let (c, farm, read, stash) = unsafe {
        let search = &*(ctx as *const Search);
        (&mut *search.choice, &*search.farm, &*search.read, &*search.stash)
    };
    let Some(&kind) = farm.persistence.get(index as usize) else { return 1 };
    let Ok(kind) = PersistKind::try_from(kind) else { return 1 };
    let Some(backend_id) = look_up(c, farm, kind, read, stash) else {
        // A reset or a drop ends the search; anything else tries the next kind.
        return (c.failure != 0) as i64;
    };
    c.backend_id = backend_id;
    c.kind = kind as u8;
    1
}

/// The backend `kind` names for the hello in `read` (whose bytes are `buf`).
#[inline(always)]
fn look_up(c: &mut Choice, farm: &FarmInfo, kind: PersistKind, read: &HelloRead, buf: &[u8; STASH_MAX]) -> Option<u32> {
    let hello = &read.hello;
    let key = match kind {
        PersistKind::SessionId => span_key(c.farm_id, kind, buf, hello.session_id)?,
        PersistKind::Ticket => span_key(c.farm_id, kind, buf, persist::ticket_id(hello.ticket)?)?,
        PersistKind::TicketKey => {
            let ticket = if hello.psk_identity.is_empty() { hello.ticket } else { hello.psk_identity };
            span_key(c.farm_id, kind, buf, persist::key_name(ticket)?)?
        }
        PersistKind::SessionIdPrefix => {
            let len = farm.session_id_prefix_len as u16;
            if len == 0 || hello.session_id.len < len {
                return None;
            }
            let key = span_key(c.farm_id, kind, buf, Span { start: hello.session_id.start, len })?;
            let stats = counters(c.farm_id, kind)?;
            stats.lookups += 1;
            // SAFETY: read-only lookup of a value the daemon writes whole.
            let backend_id = *unsafe { SESSION_PREFIXES.get(key) }?;
            return match usable(c.farm_id, backend_id, stats) {
                Usable::Yes(id) => Some(id),
                Usable::No => None,
                // Nothing learned to forget: the prefix stays the backend's.
                Usable::Failed => {
                    on_failure(c, farm);
                    None
                }
            };
        }
        PersistKind::Sni => sni_key(c.farm_id, read)?,
        PersistKind::SourceIp => source_key(c, farm)?,
    };
    let stats = counters(c.farm_id, kind)?;
    stats.lookups += 1;
    if !may_be_learned(key) {
        return None;
    }
    let entry = SESSIONS.get_ptr_mut(key)?;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a map value valid for this run; fields are whole words.
    let (backend_id, last_used) = unsafe { ((*entry).backend_id, (*entry).last_used_ns) };
    // Saturating: the daemon stamps the entries it adds with CLOCK_MONOTONIC,
    // which runs up to a tick ahead of this coarse clock, and an entry a
    // moment in the future is fresh, not expired.
    if now.saturating_sub(last_used) > farm.session_timeout_s as u64 * 1_000_000_000 {
        stats.expired += 1;
        return None;
    }
    match usable(c.farm_id, backend_id, stats) {
        Usable::Yes(id) => {
            // SAFETY: as above.
            unsafe { (*entry).last_used_ns = now };
            Some(id)
        }
        Usable::No => None,
        Usable::Failed => {
            if on_failure(c, farm) {
                let _ = SESSIONS.remove(key);
            }
            None
        }
    }
}

/// Whether a learned backend may take its client now.
enum Usable {
    Yes(u32),
    /// Disabled, gone, moved to another farm, or a shared ticket key.
    No,
    /// Failed its health checks: the farm's `on_backend_failure` applies.
    Failed,
}

/// Whether `backend_id` may take a persisted client of `farm_id`: draining
/// backends keep theirs, disabled ones take nothing, failed ones are the
/// farm's `on_backend_failure`'s to decide. A shared ticket key's
/// `NO_BACKEND` chooses nothing and is not counted as unusable.
#[inline(always)]
fn usable(farm_id: u32, backend_id: u32, stats: &mut PersistCounters) -> Usable {
    if backend_id == NO_BACKEND {
        return Usable::No;
    }
    match select::backend(backend_id) {
        Some((_, b))
            if b.farm_id == farm_id
                && (b.state == BackendState::Active as u8 || b.state == BackendState::Draining as u8) =>
        {
            stats.hits += 1;
            Usable::Yes(backend_id)
        }
        Some((_, b)) if b.farm_id == farm_id && b.state == BackendState::Failed as u8 => {
            stats.unusable += 1;
            Usable::Failed
        }
        _ => {
            stats.unusable += 1;
            Usable::No
        }
    }
}

/// A learned session names a failed backend: `reset` and `drop` end the
/// search with that outcome; true for `rebalance`, whose client goes on to
/// the next kind or the algorithm and whose entry is to be forgotten.
#[inline(always)]
fn on_failure(c: &mut Choice, farm: &FarmInfo) -> bool {
    if farm.on_failure == OnFailure::Reset as u8 || farm.on_failure == OnFailure::Drop as u8 {
        c.failure = farm.on_failure;
        return false;
    }
    true
}

/// The `source-ip` key of the client in `c`.
#[inline(always)]
fn source_key(c: &Choice, farm: &FarmInfo) -> Option<&'static SessionKey> {
    let key = key_slot(c.farm_id, PersistKind::SourceIp)?;
    let prefix = if c.family == Family::Ipv4 as u8 { farm.source_prefix_v4 } else { farm.source_prefix_v6 };
    let (address, _) = key.bytes.split_first_chunk_mut::<16>()?;
    key.len = persist::source_prefix(&c.client_be, c.family, prefix, address);
    Some(key)
}

/// Remembers that `key` belongs to `backend_id`.
#[inline(always)]
fn learn(key: &SessionKey, backend_id: u32) {
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let entry = SessionEntry { backend_id, _pad: 0, created_ns: now, last_used_ns: now };
    // A new key first, so that the counters tell additions from refreshes.
    let added = SESSIONS.insert(key, &entry, BPF_NOEXIST as u64).is_ok();
    if !added {
        let _ = SESSIONS.insert(key, &entry, 0);
    }
    // After the insert: see `SESSION_FILTER`.
    mark_learned(key);
    if let Some(stats) = counters(key.farm_id, PersistKind::try_from(key.kind).unwrap_or(PersistKind::SessionId)) {
        stats.learns += 1;
        stats.inserted += added as u64;
    }
}

/// At binding, after `choose`: the kinds learned from the client (`sni`,
/// `source-ip`) remember the backend the connection got, unless that kind
/// chose it (its lookup refreshed the entry).
// VERIFIER: not inlined, like `expect_server_hello`: the byte-wise key
// copies need their own frame.
#[inline(never)]
pub fn remember_client(farm: &FarmInfo, backend_id: u32, chosen_by: Option<PersistKind>) {
    let Some(c) = choice() else { return };
    if uses(farm, PersistKind::SourceIp) && chosen_by != Some(PersistKind::SourceIp) {
        if let Some(key) = source_key(c, farm) {
            learn(key, backend_id);
        }
    }
    if uses(farm, PersistKind::Sni) && chosen_by != Some(PersistKind::Sni) {
        if let Some(key) = crate::tls::hello_read().and_then(|read| sni_key(c.farm_id, read)) {
            learn(key, backend_id);
        }
    }
}

/// The `sni` key of the hello in `read` (its name hashed by
/// `read_client_hello`); None for a hello without a server name.
#[inline(always)]
fn sni_key(farm_id: u32, read: &HelloRead) -> Option<&'static SessionKey> {
    if read.hello.sni.is_empty() {
        return None;
    }
    let key = key_slot(farm_id, PersistKind::Sni)?;
    key.len = NAME_HASH_LEN as u8;
    key.bytes[..NAME_HASH_LEN].copy_from_slice(&read.sni_hash);
    Some(key)
}

/// Whether a farm learns anything from the server's handshake.
#[inline(always)]
fn learns_from_server(farm: &FarmInfo) -> bool {
    uses(farm, PersistKind::SessionId) || learns_tickets(farm)
}

#[inline(always)]
fn learns_tickets(farm: &FarmInfo) -> bool {
    uses(farm, PersistKind::Ticket) || uses(farm, PersistKind::TicketKey)
}

/// At binding, for a farm that learns from the server: the backend -> client
/// entry (`to_client`) is told to read the backend's handshake, and keeps
/// what the client offered that the server may accept: its session ID (so
/// that an echo is not taken for a new session) and the key name of its
/// first PSK identity (learned for the backend if the server accepts it).
/// Runs after `choose`, whose read of the hello it uses.
// VERIFIER: not inlined: the byte-wise key copies took `tether_xdp_vip`'s
// frame past the 512-byte stack.
#[inline(never)]
pub fn expect_server_hello(farm: &FarmInfo, to_client: *mut Flow) {
    if !learns_from_server(farm) {
        return;
    }
    let (Some(read), Some(p)) = (crate::tls::hello_read(), pending::scratch()) else { return };
    let hello = &read.hello;
    let key_name = if uses(farm, PersistKind::TicketKey) { persist::key_name(hello.psk_identity) } else { None };
    let mut flags = flow_flags::LEARN;
    if hello.has_ticket_ext && learns_tickets(farm) {
        flags |= flow_flags::LEARN_TICKET;
    }
    // SAFETY: a live flow-table value, no other reference to it in this run.
    let to_client = unsafe { &mut *to_client };
    to_client.client_sid_len = hello.session_id.len as u8;
    // SAFETY: the stash is followed by `SPAN_SLACK` bytes (`pending::Scratch`).
    unsafe { crate::mem::copy_span(&p.data, hello.session_id, &mut to_client.client_sid_prefix) };
    to_client.has_offered_key_name = key_name.is_some() as u8;
    // SAFETY: as above.
    unsafe { crate::mem::copy_span(&p.data, key_name.unwrap_or(Span::EMPTY), &mut to_client.offered_key_name) };
    to_client.flags |= flags;
}

/// A backend data segment on a connection marked by `expect_server_hello`.
/// The first (`LEARN`) holds the ServerHello: a TLS ≤ 1.2 session ID is
/// learned unless it echoes the client's offer; a TLS 1.3 ServerHello that
/// accepts the client's first PSK identity teaches its key name; a TLS 1.2
/// NewSessionTicket right after it (a resumption) teaches its ticket and key
/// name. While `LEARN_TICKET` stays set, later segments that start with a
/// NewSessionTicket (a full handshake's second flight) teach the same, and
/// one that starts with ChangeCipherSpec, an alert or application data ends
/// the wait. A ServerHello or NewSessionTicket the segment holds only the
/// start of makes the flight the daemon's (`LEARN_DAEMON`): from that
/// segment on, each is copied to it (`lb-user/src/server_flight.rs`), up to
/// `FLIGHT_MAX` bytes past it, or `HELLO_FLIGHT_MAX` when no ticket is
/// wanted (a ServerHello is short; what follows it is no use).
// VERIFIER: not inlined; the established path's frame stays as it was.
#[inline(never)]
pub fn learn_from_server(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, entry: *mut Flow) {
    let Some((_, backend)) = select::backend(flow.backend_id) else { return };
    let farm_id = backend.farm_id;
    let Some(farm) = select::farm(farm_id) else { return };
    let Some(read) = server_read() else { return };
    let Some(len) = crate::handshake::load_payload(ctx, pkt, &mut read.buf) else { return };
    read.len = len as u16;
    let mut flags = flow.flags;
    if flags & flow_flags::LEARN_DAEMON != 0 {
        // The daemon reads this flight; past its budget it has all it needs.
        let budget = if flags & flow_flags::LEARN_TICKET != 0 { FLIGHT_MAX } else { HELLO_FLIGHT_MAX };
        if pkt.seq.wrapping_sub(flow.flight_start) < budget {
            let _ = crate::slow::copy_to_daemon(ctx, pkt, slow_kind::SERVER);
        } else {
            flags &= !(flow_flags::LEARN_DAEMON | flow_flags::LEARN_TICKET);
        }
    } else if flags & flow_flags::LEARN != 0 {
        flags &= !flow_flags::LEARN;
        match read_server_hello(read) {
            Ok((at, in_record)) => {
                let Some(read) = server_read() else { return };
                if read.hello.version == tls::TLS13 {
                    // Its session ID is an echo, and its tickets are encrypted.
                    flags &= !flow_flags::LEARN_TICKET;
                    if read.hello.accepted_psk == Some(0) && flow.has_offered_key_name != 0 {
                        if let Some(key) = key_slot(farm_id, PersistKind::TicketKey) {
                            key.len = KEY_NAME_LEN as u8;
                            if let Some((name, _)) = key.bytes.split_first_chunk_mut::<KEY_NAME_LEN>() {
                                *name = flow.offered_key_name;
                            }
                            learn_key_name(key, flow.backend_id);
                        }
                    }
                } else {
                    learn_session_id(farm_id, farm, flow, read);
                    if flags & flow_flags::LEARN_TICKET != 0 {
                        flags = learn_ticket(farm_id, farm, flow.backend_id, at, in_record, flags);
                    }
                }
            }
            // A ServerHello this segment holds only the start of: the daemon
            // reads the flight from here.
            Err(TlsError::Incomplete) if read.buf[0] == tls::CONTENT_HANDSHAKE => flags |= flow_flags::LEARN_DAEMON,
            // Not a ServerHello: nothing to learn.
            Err(_) => flags &= !flow_flags::LEARN_TICKET,
        }
    } else {
        flags = learn_ticket(farm_id, farm, flow.backend_id, 0, 0, flags);
    }
    if flags & flow_flags::LEARN_DAEMON != 0 && flow.flags & flow_flags::LEARN_DAEMON == 0 {
        // SAFETY: a live flow-table value; a word store.
        unsafe { (*entry).flight_start = pkt.seq };
        let _ = crate::slow::copy_to_daemon(ctx, pkt, slow_kind::SERVER);
    }
    // SAFETY: a live flow-table value (no RST removed it); a byte store.
    unsafe { (*entry).flags = flags };
}

/// What of a flight the daemon is given when it needs only the ServerHello.
const HELLO_FLIGHT_MAX: u32 = 4 * 1024;

/// A TLS ≤ 1.2 ServerHello's session ID, unless it is empty (no session
/// cache) or echoes the client's (a resumption: the entry is refreshed
/// already).
#[inline(always)]
fn learn_session_id(farm_id: u32, farm: &FarmInfo, flow: &Flow, read: &crate::tls::ServerRead) {
    if !uses(farm, PersistKind::SessionId) {
        return;
    }
    let Some((key, head)) = span_key_and_head(farm_id, PersistKind::SessionId, &read.buf, read.hello.session_id) else {
        return;
    };
    // VERIFIER: words compared, not slices: a slice comparison is a call to
    // the byte-loop `memcmp` (see `mem`). The ID's own first bytes: the key
    // holds a 32-byte ID folded.
    if key.len == flow.client_sid_len && head == u64::from_ne_bytes(flow.client_sid_prefix) {
        return;
    }
    learn(key, flow.backend_id);
}

/// Looks for a NewSessionTicket at `at` in the segment read (see
/// `tls::flight_at`); returns the flow's flags, `LEARN_TICKET` cleared once
/// the wait is over.
#[inline(always)]
fn learn_ticket(farm_id: u32, farm: &FarmInfo, backend_id: u32, at: usize, in_record: usize, flags: u8) -> u8 {
    let Some(read) = server_read() else { return flags };
    let ticket = match flight_at(read, at, in_record) {
        FlightAt::Ticket(ticket) => ticket,
        FlightAt::NoTicket => return flags & !flow_flags::LEARN_TICKET,
        // The daemon reads the flight from this segment on.
        FlightAt::Cut => return flags | flow_flags::LEARN_DAEMON,
        FlightAt::Other => return flags,
    };
    if uses(farm, PersistKind::Ticket) {
        if let Some(key) =
            persist::ticket_id(ticket).and_then(|id| span_key(farm_id, PersistKind::Ticket, &read.buf, id))
        {
            learn(key, backend_id);
        }
    }
    if uses(farm, PersistKind::TicketKey) {
        if let Some(key) =
            persist::key_name(ticket).and_then(|n| span_key(farm_id, PersistKind::TicketKey, &read.buf, n))
        {
            learn_key_name(key, backend_id);
        }
    }
    flags & !flow_flags::LEARN_TICKET
}

/// `ticket-key`: the key name belongs to `backend_id`, unless another
/// backend of the farm issues tickets under it too, which makes it shared
/// (`NO_BACKEND`): backends that share keys resume each other's sessions.
#[inline(always)]
fn learn_key_name(key: &SessionKey, backend_id: u32) {
    if let Some(entry) = SESSIONS.get_ptr_mut(key) {
        // SAFETY: a map value valid for this run; a whole word.
        let known = unsafe { (*entry).backend_id };
        if known != backend_id && known != NO_BACKEND {
            if let Some(stats) = counters(key.farm_id, PersistKind::TicketKey) {
                stats.shared += 1;
            }
            learn(key, NO_BACKEND);
            return;
        }
        if known == NO_BACKEND {
            return;
        }
    }
    learn(key, backend_id);
}
