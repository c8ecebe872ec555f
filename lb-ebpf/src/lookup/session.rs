//! TLS session persistence (DESIGN.md §3): which backend holds a client's
//! session. Looked up when a `tls` connection binds (from its ClientHello);
//! learned from the backend's first data (its ServerHello).
//!
//! Only `session-id` works in XDP so far: the session ID sits at a fixed
//! offset of both hellos, so reading it costs the verifier nothing. Tickets
//! and PSK identities need the walk over the extensions (`lb_common::tls`),
//! which as a plain bounded loop exceeds the verifier's budget; it needs
//! `bpf_loop` (see the issue notes).

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    FarmInfo, Flow,
    maps::{BackendState, MAX_SESSIONS, PersistKind, SESSION_KEY_MAX, STASH_MAX, SessionEntry, SessionKey, flow_flags},
    tls,
};

use super::select;
use crate::parse::Tcp;

/// Learned sessions of all farms. LRU: a full table forgets the sessions
/// used longest ago. Written by XDP (learn, refresh on use); to be expired by
/// the daemon's sweeper and listed by `tether sessions`.
#[map(name = "SESSIONS")]
static SESSIONS: LruHashMap<SessionKey, SessionEntry> = LruHashMap::with_max_entries(MAX_SESSIONS, 0);

/// Per-CPU room for the key being built, which keeps the callers' frames small.
#[map(name = "SESSION_KEY_SCRATCH")]
static SESSION_KEY_SCRATCH: PerCpuArray<SessionKey> = PerCpuArray::with_max_entries(1, 0);

/// Whether a farm lists `kind` among its persistence kinds.
#[inline(always)]
pub fn uses(farm: &FarmInfo, kind: PersistKind) -> bool {
    farm.persistence.contains(&(kind as u8))
}

/// Where both hellos' session IDs start (`tls::hello_session_id`), and the
/// bytes that may belong to one.
const SESSION_ID_AT: usize = 44;
type SessionIdBytes = [u8; SESSION_KEY_MAX];

/// The `session-id` key for the first `len` (≤ 32) of `bytes`, in the per-CPU
/// scratch slot.
// VERIFIER: straight-line code: all 32 bytes are copied from a fixed-size
// array and the ones past `len` masked to zero, rather than a loop that
// stops at `len` with a bounds check per byte, whose states the verifier
// walked one by one until the program passed its budget.
#[inline(always)]
fn session_id_key(farm_id: u32, bytes: &SessionIdBytes, len: usize) -> Option<&'static SessionKey> {
    if len == 0 || len > SESSION_KEY_MAX {
        return None;
    }
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    let key = unsafe { &mut *SESSION_KEY_SCRATCH.get_ptr_mut(0)? };
    key.farm_id = farm_id;
    key.kind = PersistKind::SessionId as u8;
    key.len = len as u8;
    key._pad = [0, 0];
    for (i, (out, byte)) in key.bytes.iter_mut().zip(bytes).enumerate() {
        *out = byte & ((i < len) as u8).wrapping_neg();
    }
    Some(key)
}

/// The 32 bytes where a hello's session ID lies, and its length, from a
/// buffer of at least `SESSION_ID_AT + 32` bytes; None if `buf` does not
/// start with a hello of `msg_type` with a sound session ID.
#[inline(always)]
fn session_id_of<const N: usize>(buf: &[u8; N], msg_type: u8, valid_len: usize) -> Option<(&SessionIdBytes, usize)> {
    const { assert!(N >= SESSION_ID_AT + SESSION_KEY_MAX) };
    let span = tls::hello_session_id(buf.get(..valid_len)?, msg_type).ok()?;
    let bytes: &SessionIdBytes = buf[SESSION_ID_AT..SESSION_ID_AT + SESSION_KEY_MAX].try_into().ok()?;
    Some((bytes, span.len as usize))
}

/// The backend persistence gives the connection whose first data is `buf`
/// (a ClientHello, or anything else, which finds nothing), if its entry is
/// fresh and the backend still takes its clients.
#[inline(always)]
pub fn choose(farm_id: u32, farm: &FarmInfo, hello: &[u8; STASH_MAX], len: usize) -> Option<u32> {
    if !uses(farm, PersistKind::SessionId) {
        return None;
    }
    let (bytes, id_len) = session_id_of(hello, tls::CLIENT_HELLO, len)?;
    let key = session_id_key(farm_id, bytes, id_len)?;
    let entry = SESSIONS.get_ptr_mut(key)?;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a map value valid for this run; fields are whole words.
    let (backend_id, last_used) = unsafe { ((*entry).backend_id, (*entry).last_used_ns) };
    if now.wrapping_sub(last_used) > farm.session_timeout_s as u64 * 1_000_000_000 {
        return None;
    }
    let (_, backend) = select::backend(backend_id)?;
    // Draining backends keep their persisted clients; disabled ones take
    // nothing (on_backend_failure comes with health checks).
    if backend.farm_id != farm_id || backend.state == BackendState::Disabled as u8 {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*entry).last_used_ns = now };
    Some(backend_id)
}

/// Remembers that `key` belongs to `backend_id`.
#[inline(always)]
fn learn(key: &SessionKey, backend_id: u32) {
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let entry = SessionEntry { backend_id, _pad: 0, created_ns: now, last_used_ns: now };
    let _ = SESSIONS.insert(key, &entry, 0);
}

/// Bytes of the backend's first data read for learning: the ServerHello's
/// session ID ends by byte 76.
const SERVER_HELLO_HEAD: usize = SESSION_ID_AT + SESSION_KEY_MAX;

/// Per-CPU room for the head of a ServerHello.
#[map(name = "LEARN_SCRATCH")]
static LEARN_SCRATCH: PerCpuArray<[u8; SERVER_HELLO_HEAD]> = PerCpuArray::with_max_entries(1, 0);

/// At binding, for a farm that learns session IDs: the backend -> client
/// entry (`to_client`) is told to read the backend's first data, and keeps
/// what the client offered (`hello`, its first data) so that an echo is not
/// taken for a new session.
#[inline(always)]
pub fn expect_server_hello(farm: &FarmInfo, to_client: *mut Flow, hello: &[u8; STASH_MAX], len: usize) {
    if !uses(farm, PersistKind::SessionId) {
        return;
    }
    let (bytes, id_len) = session_id_of(hello, tls::CLIENT_HELLO, len).unwrap_or((&[0; SESSION_KEY_MAX], 0));
    // SAFETY: a live FLOWS value; plain byte stores.
    unsafe {
        (*to_client).client_sid_len = id_len as u8;
        (*to_client).client_sid_prefix.copy_from_slice(&bytes[..8]);
        (*to_client).flags |= flow_flags::LEARN;
    }
}

/// The backend's first data on a connection marked by `expect_server_hello`:
/// a TLS ≤ 1.2 ServerHello's session ID is learned for the backend. An ID
/// equal to the one the client offered is an echo (TLS 1.3's compatibility
/// mode, or a resumption whose entry the lookup already refreshed). Only the
/// first data segment is read, whatever it holds.
// VERIFIER: not inlined; the established path's frame stays as it was.
#[inline(never)]
pub fn learn_from_server(ctx: &XdpContext, pkt: &Tcp, flow: &Flow, entry: *mut Flow) {
    let Some(payload_off) = crate::handshake::payload_offset(ctx, pkt) else { return };
    // SAFETY: a live FLOWS value (no RST removed it); a byte read-modify-write.
    unsafe { (*entry).flags &= !flow_flags::LEARN };
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    let Some(head) = LEARN_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else { return };
    // SAFETY: `head` is SERVER_HELLO_HEAD writable bytes.
    let rc = unsafe {
        bpf_xdp_load_bytes(ctx.ctx as *mut _, payload_off as u32, head.as_mut_ptr() as *mut _, SERVER_HELLO_HEAD as u32)
    };
    if rc != 0 {
        return;
    }
    let Some((bytes, id_len)) = session_id_of(head, tls::SERVER_HELLO, SERVER_HELLO_HEAD) else { return };
    if id_len as u8 == flow.client_sid_len && bytes[..8] == flow.client_sid_prefix {
        return;
    }
    let Some((_, backend)) = select::backend(flow.backend_id) else { return };
    let Some(key) = session_id_key(backend.farm_id, bytes, id_len) else { return };
    learn(key, flow.backend_id);
}
