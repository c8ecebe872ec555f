//! Reading TLS handshakes in XDP with the parser of `lb_common::tls`: the
//! client's ClientHello (from the stashed first segment) at binding, and the
//! backend's ServerHello and NewSessionTicket (from its segments) while
//! learning.
//!
//! VERIFIER: a walk over all of a hello's extensions, even at 8, exceeded
//! the verifier's budget as a bounded loop in the binding program: it
//! verifies every iteration on every path that reaches it. Here the walk is
//! a few `bpf_loop` iterations, a callback verified once (its 8 extensions
//! unrolled inside it; the paths of one rejoin before the next), and
//! the walk's state lives in a per-CPU slot between them. The ClientHello walk's
//! callback is handed its slot and the stash through the loop's context (a
//! pointer into the caller's frame, `HelloWalk`); the ServerHello and name
//! hash callbacks, which run fewer steps, look theirs up.

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_loop, macros::map, maps::PerCpuArray};
use lb_common::{
    maps::STASH_MAX,
    persist::NameHash,
    tls::{self, ClientHello, Extensions, Found, MAX_EXTENSIONS, ServerHello, Span, TlsError},
};

use crate::lookup::pending;

/// Runs `step` up to `n` times (until it returns 1).
#[inline(always)]
fn run(n: u32, step: extern "C" fn(u64, *mut c_void) -> i64) {
    // SAFETY: `step` is a BPF function of the signature bpf_loop calls; it
    // takes no context.
    unsafe { bpf_loop(n, step as *mut c_void, core::ptr::null_mut(), 0) };
}

/// What each step of the extension walk works on, handed to it through
/// `bpf_loop`'s context, a pointer into the caller's stack frame: looking
/// the two per-CPU slots up again in every step cost as much as the step.
#[repr(C)]
struct HelloWalk {
    read: *mut HelloRead,
    /// `pending::scratch`'s data, followed by `SPAN_SLACK` readable bytes.
    stash: *const [u8; STASH_MAX],
}

/// A ClientHello being read: its fields, where the walk stands, and the
/// hash of its server name.
pub struct HelloRead {
    pub hello: ClientHello,
    walk: Extensions,
    found: Found,
    /// Bytes of the stash that hold the segment.
    len: u16,
    /// `TlsError as u8` of the walk; 0: none.
    error: u8,
    name_hash: NameHash,
    pub sni_hash: [u8; lb_common::persist::NAME_HASH_LEN],
}

#[map(name = "HELLO_READ")]
static HELLO_READ: PerCpuArray<HelloRead> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn hello_read() -> Option<&'static mut HelloRead> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    HELLO_READ.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The stashed segment, `len` bytes of it.
#[inline(always)]
fn stash(len: u16) -> Option<&'static [u8]> {
    let p = pending::scratch()?;
    p.data.get(..len as usize)
}

/// Reads the ClientHello at the front of the stashed first segment (the
/// per-CPU `pending::scratch`, `len` bytes). Data that is not a ClientHello
/// leaves every field empty; a hello cut short (or with an extension block
/// that is malformed or too long) gives only its session ID, which sits at
/// a fixed offset (`tls::hello_session_id`), so `session-id` persistence
/// works for hellos longer than a segment. None only if a per-CPU map is
/// missing. Without `walk_extensions` (a farm whose kinds need only the
/// session ID) only the session ID is read: the walk is most of the cost.
#[inline(always)]
pub fn read_client_hello(len: u16, walk_extensions: bool, hash_name: bool) -> Option<&'static HelloRead> {
    let read = hello_read()?;
    // Nothing of the previous connection's hello may survive a read that fails.
    // SAFETY: plain integers, spans and a bool, for which zero is valid.
    unsafe { crate::mem::zero(read) };
    let len = len.min(STASH_MAX as u16);
    read.len = len;
    let buf = stash(len)?;
    if !walk_extensions {
        read.hello.session_id = tls::hello_session_id(buf, tls::CLIENT_HELLO).unwrap_or(Span::EMPTY);
        return Some(read);
    }
    match tls::client_hello_head(buf, &mut read.hello, &mut read.walk) {
        Ok(()) => {}
        Err(_) => {
            let hello = &mut read.hello;
            // SAFETY: spans, integers and a bool, for which zero is valid.
            unsafe { crate::mem::zero(hello) };
            read.hello.session_id = tls::hello_session_id(buf, tls::CLIENT_HELLO).unwrap_or(Span::EMPTY);
            return Some(read);
        }
    }
    let mut walk = HelloWalk { read, stash: &pending::scratch()?.data };
    // SAFETY: `client_hello_step` is a BPF function of the signature
    // bpf_loop calls, and its context, `walk`, outlives the loop.
    unsafe { bpf_loop(WALK_STEPS, client_hello_step as *mut c_void, &mut walk as *mut HelloWalk as *mut c_void, 0) };
    let read = hello_read()?;
    let found = read.found;
    let complete = read.error == 0 && read.walk.done();
    if !complete || tls::read_found(stash(len)?, &found, &mut read.hello).is_err() {
        // A malformed or overlong extension block: its fields are not trusted.
        let session_id = read.hello.session_id;
        // SAFETY: as above.
        unsafe { crate::mem::zero(read) };
        read.hello.session_id = session_id;
        return Some(read);
    }
    if hash_name && !read.hello.sni.is_empty() {
        read.name_hash = NameHash::new(read.hello.sni.len as usize);
        run(NAME_HASH_STEPS, name_hash_step);
        let read = hello_read()?;
        read.sni_hash = read.name_hash.finish();
        return Some(read);
    }
    Some(read)
}

/// Extensions one step of the walk goes over. Within a step the walk's
/// position stays in a register; a step per extension loaded and stored it
/// each time, and with the call that was most of its cost. (The loop is
/// verified once per unrolled extension, and the paths inside one rejoin
/// before the next.)
const EXTENSIONS_PER_STEP: usize = 8;
const _: () = assert!(MAX_EXTENSIONS % EXTENSIONS_PER_STEP == 0);
/// `bpf_loop` iterations of the walk.
const WALK_STEPS: u32 = (MAX_EXTENSIONS / EXTENSIONS_PER_STEP) as u32;

extern "C" fn client_hello_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `HelloWalk` `read_client_hello` passed, whose
    // pointers are live per-CPU map values for this program run.
    let (read, stash) = unsafe {
        let walk = &*(ctx as *const HelloWalk);
        (&mut *walk.read, walk.stash as *const u8)
    };
    let mut walk = read.walk;
    // Nothing in XDP reads the count (`ClientHello::extensions` stays 0
    // there), so it is not kept: one register fewer in the loop.
    let mut walked = 0;
    let mut error = 0;
    for _ in 0..EXTENSIONS_PER_STEP {
        if walk.done() {
            break;
        }
        // The extension's type and length. The walk's position lies inside
        // the stash (the head parse bounded the block by it) unless it is done.
        let at = walk.pos as usize & (STASH_MAX - 1);
        // SAFETY: `at` < STASH_MAX, and SPAN_SLACK bytes follow the stash.
        let header = unsafe { crate::parse::word::load32(stash.add(at)) }.to_ne_bytes();
        if let Err(e) = tls::step_over_extension(header, &mut walk, &mut read.found, &mut walked) {
            error = e as u8;
            break;
        }
    }
    read.walk = walk;
    read.error = error;
    (error != 0 || walk.done()) as i64
}

/// Words of a name one step of its hash takes, kept in registers between
/// them: a name of up to 32 bytes (most are) is one step.
const NAME_WORDS_PER_STEP: usize = 4;
/// Steps for the longest host name, 255 bytes: 32 words.
const NAME_HASH_STEPS: u32 = (32 / NAME_WORDS_PER_STEP) as u32;

extern "C" fn name_hash_step(index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(read), Some(p)) = (hello_read(), pending::scratch()) else { return 1 };
    let sni = read.hello.sni;
    let mut hash = read.name_hash;
    let first = (index as usize) * NAME_WORDS_PER_STEP * 8;
    for w in 0..NAME_WORDS_PER_STEP {
        let at = first + 8 * w;
        if at >= sni.len as usize {
            break;
        }
        let rest = Span { start: sni.start.wrapping_add(at as u16), len: sni.len.saturating_sub(at as u16) };
        let mut word = [0u8; 8];
        // SAFETY: the stash is followed by `SPAN_SLACK` bytes (`pending::Scratch`).
        unsafe { crate::mem::copy_span(&p.data, rest, &mut word) };
        hash.add(u64::from_le_bytes(word));
    }
    read.name_hash = hash;
    // Done once this step reached the name's end.
    (first + NAME_WORDS_PER_STEP * 8 >= sni.len as usize) as i64
}

/// The first bytes of a backend segment, and what was read from them.
#[repr(C)]
pub struct ServerRead {
    pub buf: [u8; STASH_MAX],
    /// Room `mem::copy_span` may read after `buf`.
    _slack: [u8; crate::mem::SPAN_SLACK],
    pub len: u16,
    pub hello: ServerHello,
    walk: Extensions,
    error: u8,
}

#[map(name = "SERVER_READ")]
static SERVER_READ: PerCpuArray<ServerRead> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn server_read() -> Option<&'static mut ServerRead> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU.
    SERVER_READ.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The ServerHello at the front of `read.buf`, and the offset of what
/// follows it in the flight: (start of the next message, bytes of its record
/// from there), or (start of the next record, 0).
#[inline(always)]
pub fn read_server_hello(read: &mut ServerRead) -> Result<(usize, usize), TlsError> {
    let buf = read.buf.get(..read.len as usize).ok_or(TlsError::Incomplete)?;
    // SAFETY: spans, integers and a bool, for which zero is valid, and an
    // Option, set right after (its layout is the compiler's).
    unsafe { crate::mem::zero(&mut read.hello) };
    read.hello.accepted_psk = None;
    let walk = tls::server_hello_head(buf, &mut read.hello)?;
    read.walk = walk;
    read.error = 0;
    let end = walk.end as usize;
    run(MAX_EXTENSIONS as u32, server_hello_step);
    let read = server_read().ok_or(TlsError::Incomplete)?;
    if read.error != 0 {
        return Err(TlsError::Overrun);
    }
    if !read.walk.done() {
        return Err(TlsError::TooManyExtensions);
    }
    let record_end = tls::RECORD_HEADER + u16::from_be_bytes([read.buf[3], read.buf[4]]) as usize;
    Ok(if end < record_end { (end, record_end - end) } else { (record_end, 0) })
}

extern "C" fn server_hello_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(read) = server_read() else { return 1 };
    let Some(buf) = read.buf.get(..read.len as usize) else { return 1 };
    if let Err(e) = tls::server_hello_extension(buf, &mut read.walk, &mut read.hello) {
        read.error = e as u8;
        return 1;
    }
    read.walk.done() as i64
}

/// What a server's flight holds at a point where a NewSessionTicket could be.
pub enum FlightAt {
    /// A TLS 1.2 NewSessionTicket and its ticket.
    Ticket(Span),
    /// A record that means no ticket is coming: ChangeCipherSpec, an alert,
    /// application data.
    NoTicket,
    /// A NewSessionTicket cut by the segment's end, or a record header cut
    /// before its type: the daemon is to read the flight.
    Cut,
    /// Another handshake message, or bytes that are not a record start (the
    /// middle of a long flight): a ticket may still come.
    Other,
}

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;

/// Reads `read.buf` at `at` (see `read_server_hello`): a message inside a
/// record when `in_record` > 0, else a record.
#[inline(always)]
pub fn flight_at(read: &ServerRead, at: usize, in_record: usize) -> FlightAt {
    let Some(buf) = read.buf.get(..read.len as usize) else { return FlightAt::Other };
    let (start, in_record) = if in_record > 0 {
        (at, in_record)
    } else {
        // A record header the segment holds only part of: it may be a ticket's.
        if at < buf.len() && at + tls::RECORD_HEADER > buf.len() {
            return FlightAt::Cut;
        }
        let Some(header) = buf.get(at..at + tls::RECORD_HEADER) else { return FlightAt::Other };
        if header[1] != 3 {
            return FlightAt::Other;
        }
        match header[0] {
            tls::CONTENT_HANDSHAKE => {}
            CONTENT_CHANGE_CIPHER_SPEC..=23 => return FlightAt::NoTicket,
            _ => return FlightAt::Other,
        }
        (at + tls::RECORD_HEADER, u16::from_be_bytes([header[3], header[4]]) as usize)
    };
    match tls::new_session_ticket(buf, start, in_record) {
        Ok(nst) => FlightAt::Ticket(nst.ticket),
        // A ticket whose message runs past the segment, or a message whose
        // type did not make it into the segment.
        Err(_) if start >= buf.len() || buf.get(start) == Some(&tls::NEW_SESSION_TICKET) => FlightAt::Cut,
        Err(_) => FlightAt::Other,
    }
}
