//! The slow path (DESIGN.md §4): ClientHellos XDP cannot finish (longer than
//! its stash, or fragmented over records) reach the daemon segment by
//! segment through `SLOW_PATH`. Here they are reassembled and acknowledged
//! to the client as they arrive (so a hello longer than the client's initial
//! window keeps coming, and nothing waits for a retransmission); the whole
//! hello is read with `tls-parser`, and the fields persistence uses are
//! written into the connection's stash as a short ClientHello
//! (`hello::DECIDED`). A packet of the connection run through the XDP program
//! (BPF_PROG_TEST_RUN with live frames) then binds it with the data path's
//! own persistence and algorithm, and once tc reports the backend leg
//! spliced, the real hello goes to the backend the same way, as client
//! segments the splice translates. One implementation of the decision, in
//! XDP.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use crate::{
    pending::{ACK, PSH, first4, ipv4, tcp_segment, words},
    server_flight::ServerFlights,
};
use lb_common::{
    FlowKey, Pending, csum,
    maps::{FlowState, SlowSegment, hello, slow_kind},
    tls::{MAX_RECORD, RECORD_HEADER},
};
use tls_parser::{SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions};

/// The longest ClientHello message the daemon waits for; a longer claim is
/// decided on what arrived.
const MAX_HELLO: usize = 1 << 16;
/// A ticket or PSK identity is cut to this in the short hello: persistence
/// keys use at most its first 32 bytes, and "longer than 16" must stay true.
const KEPT_TICKET: usize = 64;
/// Bytes of hello per segment the daemon sends (below any MSS it meets).
const REPLAY_SEGMENT: usize = 1_200;
/// While the rest of a hello is awaited, the last acknowledgement goes
/// again this often: if it was lost, the client hears of its data without
/// waiting for its own retransmission timeout, and a third copy is a
/// duplicate acknowledgement that asks it to send the next segment again
/// (RFC 5681 §3.2).
const ACK_REPEAT: Duration = Duration::from_millis(200);

/// What the data path offers the slow path: its maps and a way to run a
/// frame through XDP.
pub trait Dataplane: crate::server_flight::Sessions {
    fn pending(&self, key: &FlowKey) -> Option<Pending>;
    fn set_pending(&mut self, key: &FlowKey, p: &Pending) -> anyhow::Result<()>;
    /// The state of the connection's client -> VIP flow entry, if any.
    fn flow_state(&self, key: &FlowKey) -> Option<u8>;
    /// Runs `frame` through the XDP program as if it came in on `ifindex`.
    fn inject(&self, frame: &[u8], ifindex: u32) -> anyhow::Result<()>;
}

/// A hello the daemon is assembling or has decided.
struct Hello {
    ifindex: u32,
    /// The connection as XDP captured it from the first segment.
    first: Pending,
    /// Client bytes by offset from `client_isn + 1`.
    bytes: BTreeMap<u32, Vec<u8>>,
    /// Bytes from offset 0 without a gap, and how many the client has been
    /// told of, and when last.
    contiguous: usize,
    acknowledged: usize,
    acknowledged_at: Instant,
    /// The client's newest TSval, echoed in what the daemon sends and
    /// carried by the segments it replays.
    client_tsval: u32,
    started: Instant,
    decided: Option<Instant>,
    /// Whether the connection's flow entry has been seen since it was
    /// decided (XDP bound it).
    spliced_seen: bool,
}

/// Early segments (`slow_kind::EARLY`) kept at most, and for how long: a
/// client whose first segment was lost sends it again after its
/// retransmission timeout (1 s at first, 3 s after a lost SYN or SYN-ACK,
/// doubled for each loss), and the later ones it sent should still be here
/// then, twice over.
const EARLY_MAX: usize = 4_096;
const EARLY_KEPT: Duration = Duration::from_secs(10);
/// An early segment's connection is looked for after this, then at twice
/// the wait each time up to `EARLY_CHECK_MAX`: the first segment of a
/// reordered hello comes within a round trip, and forgeries, which nothing
/// ever opens, should cost little.
const EARLY_CHECK_FIRST: Duration = Duration::from_millis(1);
const EARLY_CHECK_MAX: Duration = Duration::from_millis(200);
/// How long early segments of a connection whose hello the slow path has
/// just replayed are not kept: they are that replay, come back from XDP
/// because the connection closed in between.
const REPLAYED_KEPT: Duration = Duration::from_secs(1);

/// A client segment that came before the connection XDP could check it by.
struct Early {
    ifindex: u32,
    seq: u32,
    frame: Vec<u8>,
    arrived: Instant,
}

/// The early segments of one client tuple, and when to look for its
/// connection next.
struct EarlyTuple {
    segments: Vec<Early>,
    wait: Duration,
    next_check: Instant,
}

#[derive(Default)]
pub struct SlowPath {
    hellos: HashMap<FlowKey, Hello>,
    early: HashMap<FlowKey, EarlyTuple>,
    /// Server flights XDP handed over for persistence to read.
    pub flights: ServerFlights,
    /// Connections whose hello the slow path replayed, and when.
    replayed: HashMap<FlowKey, Instant>,
    /// Early segments held now.
    early_held: usize,
    /// Hellos bound through the slow path, and given up on, since start.
    pub bound: u64,
    pub abandoned: u64,
    /// Early segments run through XDP again once their connection opened,
    /// and forgotten (none opened in time, or too many held).
    pub early_released: u64,
    pub early_forgotten: u64,
}

impl SlowPath {
    /// Whether a tick has anything to do.
    pub fn busy(&self) -> bool {
        !self.hellos.is_empty() || !self.early.is_empty() || self.flights.busy() || !self.replayed.is_empty()
    }

    /// One segment from XDP.
    pub fn on_segment(&mut self, dp: &mut impl Dataplane, segment: &SlowSegment) {
        let frame = &segment.frame[..usize::from(segment.len).min(segment.frame.len())];
        let Some(seg) = parse_frame(frame) else {
            tracing::debug!(len = segment.len, "slow path: a frame that is no IPv4 TCP segment");
            return;
        };
        if segment.kind == slow_kind::EARLY {
            self.keep_early(segment, seg.seq, frame);
            self.release_early(dp);
            return;
        }
        if segment.kind == slow_kind::SERVER {
            self.flights.on_segment(dp, &segment.key, seg.seq, seg.payload);
            return;
        }
        // A hello of an earlier connection on the tuple (reset while its
        // backend leg opened, its port soon used again: a client that
        // resets leaves no TIME_WAIT) is no part of this one.
        if self.hellos.get(&segment.key).is_some_and(|h| seg.ack != h.first.cookie_isn.wrapping_add(1)) {
            tracing::debug!(port = u16::from_be(segment.key.sport_be), "slow path: a new connection on a tuple");
            self.hellos.remove(&segment.key);
            self.abandoned += 1;
        }
        let hello = match self.hellos.entry(segment.key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                // XDP keeps what it held before handing over in the stash.
                let Some(p) = dp.pending(&segment.key) else {
                    tracing::debug!(
                        port = u16::from_be(segment.key.sport_be),
                        "slow path: a segment whose stash is gone"
                    );
                    return;
                };
                if p.assembling != hello::SLOW_PATH {
                    tracing::debug!(
                        port = u16::from_be(segment.key.sport_be),
                        state = p.assembling,
                        "slow path: a segment of a hello XDP holds"
                    );
                    return;
                }
                tracing::debug!(client = ?first4(&segment.key.saddr_be), port = u16::from_be(segment.key.sport_be), held = p.len, "slow path: a ClientHello handed over");
                let mut bytes = BTreeMap::new();
                bytes.insert(0, p.data[..usize::from(p.len).min(p.data.len())].to_vec());
                v.insert(Hello {
                    ifindex: segment.ifindex,
                    first: p,
                    bytes,
                    contiguous: 0,
                    acknowledged: 0,
                    acknowledged_at: Instant::now(),
                    client_tsval: p.client_tsval,
                    started: Instant::now(),
                    decided: None,
                    spliced_seen: false,
                })
            }
        };
        if hello.decided.is_some() {
            return;
        }
        let offset = seg.seq.wrapping_sub(hello.first.client_isn.wrapping_add(1));
        // Data the client was told of, sent again: our acknowledgement was
        // lost, and it goes again (else the client would repeat this for ever).
        let repeated = offset as usize + seg.payload.len() <= hello.acknowledged;
        if (offset as usize) < MAX_HELLO && !seg.payload.is_empty() {
            hello.bytes.entry(offset).or_insert_with(|| seg.payload.to_vec());
        }
        // The newest, not the last to arrive: the backend leg's timestamps are
        // the client's moved by one offset, and a replayed segment with a
        // TSval older than the leg's SYN would fail the backend's PAWS check
        // (RFC 7323 §5), as one reordered (or early, run through XDP late)
        // would make it.
        if let Some(tsval) = seg.tsval.filter(|&t| (t.wrapping_sub(hello.client_tsval) as i32) > 0) {
            hello.client_tsval = tsval;
        }
        hello.contiguous = contiguous(&hello.bytes);
        let whole = hello_length(&hello.flat()).is_some_and(|n| n <= hello.contiguous);
        tracing::debug!(
            port = u16::from_be(segment.key.sport_be),
            offset,
            len = seg.payload.len(),
            contiguous = hello.contiguous,
            repeated,
            "slow path: segment"
        );
        if hello.contiguous > hello.acknowledged || repeated {
            acknowledge(&segment.key, hello);
        }
        if whole || hello.contiguous >= MAX_HELLO {
            let key = segment.key;
            if let Err(e) = decide(dp, &key, hello) {
                tracing::warn!(error = %format!("{e:#}"), "slow path: cannot hand a ClientHello back to XDP");
            }
        }
    }

    /// Keeps a segment that came before its connection (`slow_kind::EARLY`).
    fn keep_early(&mut self, segment: &SlowSegment, seq: u32, frame: &[u8]) {
        // Our own replay of a hello whose connection closed meanwhile (a
        // backend that speaks first, a client that read its answer and
        // left): nothing will open for it.
        if self.replayed.get(&segment.key).is_some_and(|at| at.elapsed() < REPLAYED_KEPT) {
            return;
        }
        if self.early_held >= EARLY_MAX {
            self.early_forgotten += 1;
            return;
        }
        let now = Instant::now();
        let tuple = self.early.entry(segment.key).or_insert_with(|| EarlyTuple {
            segments: Vec::new(),
            wait: EARLY_CHECK_FIRST,
            next_check: now,
        });
        // A copy of one already held (the client sent it again) adds nothing.
        if tuple.segments.iter().any(|e| e.seq == seq && e.frame.len() == frame.len()) {
            return;
        }
        tracing::debug!(port = u16::from_be(segment.key.sport_be), seq, "slow path: a segment before its connection");
        tuple.segments.push(Early { ifindex: segment.ifindex, seq, frame: frame.to_vec(), arrived: now });
        tuple.next_check = now;
        self.early_held += 1;
    }

    /// Runs the early segments whose connection is now open through XDP
    /// again: the one that continues a hello XDP assembles (and then the
    /// next, and so on), all of them once the slow path has the hello (XDP
    /// checks each against the connection's cookie either way). Forgets
    /// those past `EARLY_KEPT`.
    fn release_early(&mut self, dp: &mut impl Dataplane) {
        let now = Instant::now();
        let (mut released, mut forgotten) = (0u64, 0u64);
        self.early.retain(|key, tuple| {
            if now < tuple.next_check {
                return true;
            }
            tuple.next_check = now + tuple.wait;
            tuple.wait = (tuple.wait * 2).min(EARLY_CHECK_MAX);
            let mut release = |e: Early| {
                released += 1;
                if let Err(e) = dp.inject(&e.frame, e.ifindex) {
                    tracing::warn!(error = %format!("{e:#}"), "slow path: cannot run an early segment through XDP");
                }
            };
            loop {
                match dp.pending(key) {
                    Some(p) if p.assembling == hello::ASSEMBLING => {
                        let next = p.client_isn.wrapping_add(1).wrapping_add(u32::from(p.len));
                        let Some(i) = tuple.segments.iter().position(|e| e.seq == next) else { break };
                        release(tuple.segments.swap_remove(i));
                    }
                    Some(p) if p.assembling == hello::SLOW_PATH => {
                        tuple.segments.drain(..).for_each(&mut release);
                        break;
                    }
                    // Bound, decided, or no connection (yet): XDP has or
                    // needs nothing of them. (Run through a spliced
                    // connection they would reach its backend unchecked: they
                    // may be a tuple's earlier connection's.)
                    _ => break,
                }
            }
            let before = tuple.segments.len();
            tuple.segments.retain(|e| now.duration_since(e.arrived) < EARLY_KEPT);
            forgotten += (before - tuple.segments.len()) as u64;
            !tuple.segments.is_empty()
        });
        self.early_held -= (released + forgotten) as usize;
        self.early_released += released;
        self.early_forgotten += forgotten;
    }

    /// Sends the hellos whose backend leg is spliced, and gives up on the
    /// ones past `connect`: their clients, told their hellos arrived, would
    /// otherwise wait for their own timeouts, so they get an RST. Runs the
    /// early segments whose connection has opened.
    pub fn tick(&mut self, dp: &mut impl Dataplane, connect: Duration) {
        if !self.early.is_empty() {
            self.release_early(dp);
        }
        self.flights.tick();
        let mut done = Vec::new();
        for (key, hello) in &mut self.hellos {
            if hello.started.elapsed() > connect {
                if let Err(e) = crate::pending::send_reset(key, &hello.first) {
                    tracing::warn!(error = %e, "slow path: cannot reset a client whose hello was not bound");
                }
                done.push((*key, false));
                continue;
            }
            if hello.decided.is_none() {
                // Waiting for the rest: our acknowledgement may have been lost,
                // and a client that never hears of its data sends it again only
                // after its retransmission timeout, which doubles each time.
                if hello.acknowledged > 0 && hello.acknowledged_at.elapsed() >= ACK_REPEAT {
                    acknowledge(key, hello);
                }
                continue;
            }
            let state = dp.flow_state(key);
            if state.is_none() && hello.spliced_seen {
                // Bound, then reset (or swept) before its leg opened: the
                // connection is over.
                done.push((*key, false));
                continue;
            }
            hello.spliced_seen |= state.is_some();
            if state == Some(FlowState::Established as u8) {
                match replay(dp, key, hello) {
                    Ok(()) => done.push((*key, true)),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "slow path: cannot send a ClientHello to its backend");
                        done.push((*key, false));
                    }
                }
            }
        }
        let now = Instant::now();
        self.replayed.retain(|_, at| now.duration_since(*at) < REPLAYED_KEPT);
        for (key, bound) in done {
            if bound {
                self.replayed.insert(key, now);
            }
            self.hellos.remove(&key);
            if bound { self.bound += 1 } else { self.abandoned += 1 }
        }
    }
}

impl Hello {
    /// The contiguous bytes from offset 0.
    fn flat(&self) -> Vec<u8> {
        from_start(&self.bytes)
    }
}

/// Of pieces of a stream by offset (repeats and overlaps allowed), the
/// bytes from offset 0 up to the first gap.
pub fn from_start(bytes: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (&at, chunk) in bytes {
        let at = at as usize;
        if at > out.len() {
            break;
        }
        if at + chunk.len() > out.len() {
            out.extend_from_slice(&chunk[out.len() - at..]);
        }
    }
    out
}

/// Bytes from offset 0 without a gap.
fn contiguous(bytes: &BTreeMap<u32, Vec<u8>>) -> usize {
    let mut end = 0usize;
    for (&at, chunk) in bytes {
        if at as usize > end {
            break;
        }
        end = end.max(at as usize + chunk.len());
    }
    end
}

/// The bytes the ClientHello takes from the start of the client's data,
/// through the end of the record that holds its last byte; None until the
/// records there say (or for data that is no handshake).
fn hello_length(data: &[u8]) -> Option<usize> {
    let (mut at, mut message, mut wanted) = (0usize, 0usize, None);
    while at + RECORD_HEADER <= data.len() {
        if data[at] != 22 {
            return Some(at.max(1));
        }
        let body = usize::from(u16::from_be_bytes([data[at + 3], data[at + 4]])).min(MAX_RECORD);
        let first = at + RECORD_HEADER;
        if first + body > data.len() {
            return None;
        }
        if wanted.is_none() && first + 4 <= data.len() {
            wanted = Some(4 + u32::from_be_bytes([0, data[first + 1], data[first + 2], data[first + 3]]) as usize);
        }
        message += body;
        at = first + body;
        match wanted {
            Some(w) if message >= w.min(MAX_HELLO) => return Some(at),
            _ => {}
        }
    }
    None
}

/// The handshake message the records from the start of `data` carry.
fn handshake_message(data: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    let mut at = 0;
    while at + RECORD_HEADER <= data.len() && data[at] == 22 {
        let body = usize::from(u16::from_be_bytes([data[at + 3], data[at + 4]]));
        let end = (at + RECORD_HEADER + body).min(data.len());
        message.extend_from_slice(&data[at + RECORD_HEADER..end]);
        at = end;
    }
    message
}

/// What persistence reads of a ClientHello, as a short ClientHello of one
/// record that tether's parser reads the same way: version, session ID,
/// server name, SessionTicket, first PSK identity, supported_versions.
/// Anything tls-parser cannot read gives a hello without any of them (the
/// farm's algorithm decides).
pub fn condense(data: &[u8]) -> Vec<u8> {
    let message = handshake_message(data);
    let mut version = 0x0303u16;
    let mut session_id: &[u8] = &[];
    let mut extensions = Vec::new();
    if let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) =
        tls_parser::parse_tls_message_handshake(&message)
    {
        version = ch.version.0;
        session_id = ch.session_id.unwrap_or_default();
        let mut psk = None;
        for e in parse_tls_client_hello_extensions(ch.ext.unwrap_or_default()).map(|(_, e)| e).unwrap_or_default() {
            match e {
                TlsExtension::SNI(names) => {
                    if let Some((_, name)) = names.iter().find(|(t, _)| *t == SNIType::HostName) {
                        let entry = [&[0u8][..], &(name.len() as u16).to_be_bytes(), name].concat();
                        extensions.extend(extension(0, &[&((entry.len()) as u16).to_be_bytes()[..], &entry].concat()));
                    }
                }
                TlsExtension::SessionTicket(t) => extensions.extend(extension(35, &t[..t.len().min(KEPT_TICKET)])),
                TlsExtension::SupportedVersions(v) => {
                    let list: Vec<u8> = v.iter().flat_map(|v| v.0.to_be_bytes()).collect();
                    extensions.extend(extension(43, &[&[list.len() as u8][..], &list].concat()));
                }
                TlsExtension::PreSharedKey(raw) if raw.len() >= 4 => {
                    let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
                    psk = raw.get(4..4 + len).map(|identity| identity[..identity.len().min(KEPT_TICKET)].to_vec());
                }
                _ => {}
            }
        }
        // pre_shared_key is the last extension (RFC 8446 §4.2.11): one
        // identity, its age, one binder of 32 bytes.
        if let Some(identity) = psk {
            let identities = [&(identity.len() as u16).to_be_bytes()[..], &identity, &[0; 4]].concat();
            let binders = [&[0u8, 33, 32][..], &[0; 32]].concat();
            extensions
                .extend(extension(41, &[&(identities.len() as u16).to_be_bytes()[..], &identities, &binders].concat()));
        }
    }
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0; 32]); // random
    body.push(session_id.len() as u8);
    body.extend(session_id);
    body.extend([0, 2, 0x13, 0x01, 1, 0]); // one cipher suite, no compression
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let len = (body.len() as u32).to_be_bytes();
    let message = [&[1u8, len[1], len[2], len[3]][..], &body].concat();
    [&[22u8, 3, 1][..], &(message.len() as u16).to_be_bytes(), &message].concat()
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    [&kind.to_be_bytes()[..], &(data.len() as u16).to_be_bytes(), data].concat()
}

/// Writes the short hello into the stash, marks it `DECIDED` and runs a
/// packet of the connection through XDP, which binds it.
fn decide(dp: &mut impl Dataplane, key: &FlowKey, hello: &mut Hello) -> anyhow::Result<()> {
    let short = condense(&hello.flat());
    let mut p = dp.pending(key).ok_or_else(|| anyhow::anyhow!("the connection's stash is gone"))?;
    anyhow::ensure!(short.len() <= p.data.len(), "a short hello of {} bytes", short.len());
    p.data[..short.len()].copy_from_slice(&short);
    p.len = short.len() as u16;
    p.segments = 1;
    p.segment_len = [0; lb_common::maps::STASH_SEGMENTS];
    p.segment_sum = [0; lb_common::maps::STASH_SEGMENTS];
    p.segment_len[0] = p.len;
    p.segment_sum[0] = u32::from(csum::fold(words(&short)));
    p.assembling = hello::DECIDED;
    p.daemon_sends = 1;
    dp.set_pending(key, &p)?;
    hello.decided = Some(Instant::now());
    tracing::debug!(port = u16::from_be(key.sport_be), bytes = hello.contiguous, "slow path: decided");
    dp.inject(&client_frame(key, hello, 0, &[]), hello.ifindex)
}

/// The whole hello, as client segments through XDP, which sends them on
/// the spliced backend leg.
fn replay(dp: &mut impl Dataplane, key: &FlowKey, hello: &Hello) -> anyhow::Result<()> {
    let data = hello.flat();
    tracing::debug!(port = u16::from_be(key.sport_be), bytes = data.len(), "slow path: sent to the backend");
    for (i, chunk) in data.chunks(REPLAY_SEGMENT).enumerate() {
        dp.inject(&client_frame(key, hello, i * REPLAY_SEGMENT, chunk), hello.ifindex)?;
    }
    Ok(())
}

/// A segment as the client would send it at `offset` into its data:
/// Ethernet, IPv4, TCP with the client's timestamps; checksums in full.
fn client_frame(key: &FlowKey, hello: &Hello, offset: usize, data: &[u8]) -> Vec<u8> {
    client_segment(key, &hello.first, hello.client_tsval, offset, data)
}

/// As the client of `key` would send `data` at `offset` into its stream,
/// `p` its pending connection, `tsval` its clock: what XDP takes for a
/// segment of that client.
pub fn client_segment(key: &FlowKey, p: &Pending, tsval: u32, offset: usize, data: &[u8]) -> Vec<u8> {
    let (client, vip) = (first4(&key.saddr_be), first4(&key.daddr_be));
    let seq = p.client_isn.wrapping_add(1).wrapping_add(offset as u32);
    let flags = if data.is_empty() { ACK } else { ACK | PSH };
    let tcp = tcp_segment(
        (key.sport_be, key.dport_be),
        (seq, p.cookie_isn.wrapping_add(1)),
        flags,
        p.window,
        (p.has_timestamp != 0).then_some((tsval, p.client_tsecr)),
        data,
        (client, vip),
    );
    let mut frame = vec![0u8; 12];
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend(ipv4(client, vip, &tcp));
    frame
}

/// Tells the client its hello arrived as far as it did.
fn acknowledge(key: &FlowKey, hello: &mut Hello) {
    if let Err(e) = send_ack(key, hello) {
        tracing::warn!(error = %e, "slow path: cannot acknowledge a ClientHello segment");
    }
    hello.acknowledged = hello.contiguous;
    hello.acknowledged_at = Instant::now();
}

/// An ACK from the VIP telling the client its hello arrived so far.
fn send_ack(key: &FlowKey, hello: &Hello) -> std::io::Result<()> {
    let p = &hello.first;
    let (client, vip) = (first4(&key.saddr_be), first4(&key.daddr_be));
    let acked = p.client_isn.wrapping_add(1).wrapping_add(hello.contiguous as u32);
    // Our clock as the client knows it is the SYN-ACK's TSval, which its
    // segments echo: never older than what it saw.
    let tcp = tcp_segment(
        (key.dport_be, key.sport_be),
        (p.cookie_isn.wrapping_add(1), acked),
        ACK,
        u16::MAX,
        (p.has_timestamp != 0).then_some((p.client_tsecr, hello.client_tsval)),
        &[],
        (vip, client),
    );
    crate::pending::send_ipv4(client, &ipv4(vip, client, &tcp))
}

/// What the slow path reads of a client frame.
struct Segment<'a> {
    seq: u32,
    ack: u32,
    tsval: Option<u32>,
    payload: &'a [u8],
}

/// Ethernet (optionally one VLAN tag), IPv4, TCP; None for anything else.
fn parse_frame(frame: &[u8]) -> Option<Segment<'_>> {
    let mut l3 = 14;
    let mut ether_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ether_type == 0x8100 {
        ether_type = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    if ether_type != 0x0800 {
        return None;
    }
    let ip = frame.get(l3..)?;
    let ihl = usize::from(ip.first()? & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let tcp = ip.get(ihl..total.min(ip.len()))?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let options = tcp.get(20..doff)?;
    Some(Segment {
        seq: u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
        ack: u32::from_be_bytes(tcp.get(8..12)?.try_into().ok()?),
        tsval: timestamp(options),
        payload: tcp.get(doff..)?,
    })
}

fn timestamp(options: &[u8]) -> Option<u32> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            0 => return None,
            1 => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?);
                if kind == 8 && len == 10 {
                    return Some(u32::from_be_bytes(options.get(at + 2..at + 6)?.try_into().ok()?));
                }
                at += len.max(2);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        [&[22u8, 3, 3][..], &(payload.len() as u16).to_be_bytes(), payload].concat()
    }

    /// A ClientHello with a session ID, a server name, a long padding
    /// extension and a PSK (last).
    fn long_hello() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(32);
        body.extend([0xAA; 32]);
        body.extend([0, 2, 0x13, 0x01, 1, 0]);
        let name = b"shop.example";
        let sni = [&[0u8][..], &(name.len() as u16).to_be_bytes(), name].concat();
        let mut ext = extension(0, &[&(sni.len() as u16).to_be_bytes()[..], &sni].concat());
        ext.extend(extension(21, &[0; 6000]));
        let identity: Vec<u8> = (0..200u8).collect();
        let identities = [&(identity.len() as u16).to_be_bytes()[..], &identity, &[0, 0, 0, 1]].concat();
        let binders = [&[0u8, 33, 32][..], &[9; 32]].concat();
        ext.extend(extension(41, &[&(identities.len() as u16).to_be_bytes()[..], &identities, &binders].concat()));
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let len = (body.len() as u32).to_be_bytes();
        [&[1u8, len[1], len[2], len[3]][..], &body].concat()
    }

    #[test]
    fn a_short_hello_keeps_what_persistence_reads_and_tethers_parser_reads_it_alike() {
        let message = long_hello();
        // Fragmented over two records, as RFC 8446 §5.1 allows.
        let data = [record(&message[..3000]), record(&message[3000..])].concat();
        assert_eq!(hello_length(&data), Some(data.len()));
        assert_eq!(hello_length(&data[..data.len() - 1]), None);
        let short = condense(&data);
        assert!(short.len() < 400, "{} bytes", short.len());
        let h = lb_common::tls::client_hello(&short).expect("tether's parser reads the short hello");
        assert_eq!(h.session_id.of(&short), &[0xAA; 32]);
        assert_eq!(h.sni.of(&short), b"shop.example");
        let identity = h.psk_identity.of(&short);
        assert_eq!(identity.len(), KEPT_TICKET);
        assert_eq!(identity, &(0..200u8).collect::<Vec<_>>()[..KEPT_TICKET], "the identity's first bytes, kept");
    }

    #[test]
    fn what_tls_parser_cannot_read_gives_a_hello_with_nothing_to_persist_on() {
        let short = condense(&record(&[1, 0, 0, 3, 9, 9, 9]));
        let h = lb_common::tls::client_hello(&short).expect("still a ClientHello");
        assert!(h.session_id.is_empty() && h.sni.is_empty() && h.psk_identity.is_empty());
    }

    #[test]
    fn gaps_stop_the_contiguous_bytes() {
        let mut bytes = BTreeMap::new();
        bytes.insert(0, vec![1; 10]);
        bytes.insert(20, vec![2; 10]);
        assert_eq!(contiguous(&bytes), 10);
        bytes.insert(5, vec![3; 15]);
        assert_eq!(contiguous(&bytes), 30);
    }
}
