//! Server flights XDP could not read (DESIGN.md §4): a ServerHello or a TLS
//! 1.2 NewSessionTicket cut by a segment boundary. XDP marks the connection
//! (`flow_flags::LEARN_DAEMON`), notes where the flight's next record starts
//! (`Flow::flight_start`) and copies each backend segment from there to the
//! daemon (`slow_kind::SERVER`) while forwarding it as usual. Here the
//! copies are put in order and read with `tls-parser`, and what persistence
//! learns from a server is written into `SESSIONS` as XDP would have: a TLS
//! ≤ 1.2 session ID that is no echo, a TLS 1.3 ServerHello's acceptance of
//! the client's first PSK (its key name), a TLS 1.2 ticket and its key name.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use lb_common::{
    FarmInfo, Flow, FlowKey,
    maps::{FLIGHT_MAX, PersistKind, SessionKey, flow_flags},
    persist::{KEY_NAME_LEN, TICKET_ID_LEN},
    tls::{CONTENT_HANDSHAKE, RECORD_HEADER, TLS13},
};
use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_server_hello_extensions};

/// A flight whose copies stop coming (the connection closed, the ring was
/// full) is forgotten after this.
const FLIGHT_KEPT: Duration = Duration::from_secs(10);
/// Flights read at once, at most; more are not started.
const FLIGHTS_MAX: usize = 4_096;

/// What the server-flight reader needs of the data path.
pub trait Sessions {
    /// The flow entry of `key` (backend -> client).
    fn flow(&self, key: &FlowKey) -> Option<Flow>;
    /// The farm a backend is in, and its settings.
    fn farm_of(&self, backend_id: u32) -> Option<(u32, FarmInfo)>;
    /// Remembers that `key` belongs to `backend_id`.
    fn learn(&mut self, key: &SessionKey, backend_id: u32) -> anyhow::Result<()>;
    /// As `learn` for a ticket key name: one another backend of the farm
    /// uses too becomes shared (it chooses nothing).
    fn learn_key_name(&mut self, farm_id: u32, name: &[u8; KEY_NAME_LEN], backend_id: u32) -> anyhow::Result<()>;
}

/// One backend's flight being read.
struct Flight {
    /// The flow entry as it was when the first copy came: the backend, what
    /// the client offered, whether it asked for a ticket.
    flow: Flow,
    farm_id: u32,
    farm: FarmInfo,
    /// Server bytes by offset from `flow.flight_start`.
    bytes: BTreeMap<u32, Vec<u8>>,
    started: Instant,
    /// Whether its ServerHello was read (and learned from) already: the
    /// flight is read again from the start as more of it comes.
    hello_read: bool,
}

/// What reading a flight so far came to.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// More of the flight is needed.
    More,
    /// All there was to learn is learned (or there is none).
    Done,
}

#[derive(Default)]
pub struct ServerFlights {
    flights: HashMap<FlowKey, Flight>,
    /// Keys learned from flights read here, since start.
    pub learned: u64,
}

impl ServerFlights {
    pub fn busy(&self) -> bool {
        !self.flights.is_empty()
    }

    /// A copy of one backend segment (`key`: backend -> client) at `seq`.
    pub fn on_segment(&mut self, dp: &mut impl Sessions, key: &FlowKey, seq: u32, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        if !self.flights.contains_key(key) {
            if self.flights.len() >= FLIGHTS_MAX {
                return;
            }
            let Some(flow) = dp.flow(key).filter(|f| f.flags & flow_flags::LEARN_DAEMON != 0) else { return };
            let Some((farm_id, farm)) = dp.farm_of(flow.backend_id) else { return };
            tracing::debug!(port = u16::from_be(key.dport_be), "server flight: XDP handed it over");
            self.flights.insert(
                *key,
                Flight { flow, farm_id, farm, bytes: BTreeMap::new(), started: Instant::now(), hello_read: false },
            );
        }
        let Some(flight) = self.flights.get_mut(key) else { return };
        let offset = seq.wrapping_sub(flight.flow.flight_start);
        if offset >= FLIGHT_MAX {
            return;
        }
        flight.bytes.entry(offset).or_insert_with(|| payload.to_vec());
        let (read, learned) = read_flight(&crate::slow_path::from_start(&flight.bytes), flight, dp);
        self.learned += learned;
        if read == Read::Done {
            tracing::debug!(port = u16::from_be(key.dport_be), learned, "server flight: read");
            self.flights.remove(key);
        }
    }

    /// Forgets flights whose copies stopped coming.
    pub fn tick(&mut self) {
        self.flights.retain(|_, f| f.started.elapsed() < FLIGHT_KEPT);
    }
}

/// Reads the flight's records from the start (`data`: its contiguous
/// bytes), learning from each whole handshake message that teaches
/// something. Returns how far it got and how many keys it learned.
fn read_flight(data: &[u8], flight: &mut Flight, dp: &mut impl Sessions) -> (Read, u64) {
    // Handshake messages may span records (RFC 8446 §5.1): the records'
    // payloads, joined, are the message stream.
    let mut messages = Vec::new();
    let mut at = 0;
    let mut finished = false;
    while at + RECORD_HEADER <= data.len() {
        if data[at] != CONTENT_HANDSHAKE {
            // ChangeCipherSpec, an alert, application data: the clear part
            // of the flight is over.
            finished = true;
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[at + 3], data[at + 4]]));
        let Some(body) = data.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else { break };
        messages.extend_from_slice(body);
        at += RECORD_HEADER + len;
    }
    let mut learned = 0;
    let mut pos = 0;
    while pos + 4 <= messages.len() {
        let len = u32::from_be_bytes([0, messages[pos + 1], messages[pos + 2], messages[pos + 3]]) as usize;
        let Some(message) = messages.get(pos..pos + 4 + len) else { break };
        pos += 4 + len;
        match tls_parser::parse_tls_message_handshake(message) {
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(_)))) if flight.hello_read => {}
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)))) => {
                flight.hello_read = true;
                let mut version = sh.version.0;
                let mut accepted_psk = None;
                for e in
                    parse_tls_server_hello_extensions(sh.ext.unwrap_or_default()).map(|(_, e)| e).unwrap_or_default()
                {
                    match e {
                        TlsExtension::SupportedVersions(v) if !v.is_empty() => version = v[0].0,
                        TlsExtension::PreSharedKey(raw) if raw.len() >= 2 => {
                            accepted_psk = Some(u16::from_be_bytes([raw[0], raw[1]]))
                        }
                        _ => {}
                    }
                }
                if version == TLS13 {
                    // Its session ID is an echo and its tickets are encrypted;
                    // an accepted first PSK tells its key name's backend.
                    if accepted_psk == Some(0)
                        && flight.flow.has_offered_key_name != 0
                        && uses(flight, PersistKind::TicketKey)
                    {
                        learned += learn_key_name(dp, flight, &flight.flow.offered_key_name);
                    }
                    return (Read::Done, learned);
                }
                learned += learn_session_id(dp, flight, sh.session_id.unwrap_or_default());
                if flight.flow.flags & flow_flags::LEARN_TICKET == 0 {
                    return (Read::Done, learned);
                }
            }
            // tls-parser gives the ticket with its two-byte length.
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::NewSessionTicket(t)))) if t.ticket.len() > 2 => {
                learned += learn_ticket(dp, flight, &t.ticket[2..]);
                return (Read::Done, learned);
            }
            Ok(_) => {}
            Err(_) => {
                tracing::debug!("server flight: a handshake message tls-parser cannot read");
                return (Read::Done, learned);
            }
        }
    }
    (if finished { Read::Done } else { Read::More }, learned)
}

fn uses(flight: &Flight, kind: PersistKind) -> bool {
    flight.farm.persist_mask & (1 << kind as u8) != 0
}

/// A TLS ≤ 1.2 session ID, unless empty or an echo of the client's offer
/// (a resumption, whose entry its lookup refreshed).
fn learn_session_id(dp: &mut impl Sessions, flight: &Flight, session_id: &[u8]) -> u64 {
    if session_id.is_empty() || !uses(flight, PersistKind::SessionId) {
        return 0;
    }
    let flow = &flight.flow;
    let prefix = session_id.len().min(flow.client_sid_prefix.len());
    if session_id.len() == usize::from(flow.client_sid_len) && session_id[..prefix] == flow.client_sid_prefix[..prefix]
    {
        return 0;
    }
    report(
        dp.learn(&SessionKey::new(flight.farm_id, PersistKind::SessionId, session_id), flow.backend_id),
        "session ID",
    )
}

/// A TLS 1.2 ticket: its first `TICKET_ID_LEN` bytes, and its key name.
fn learn_ticket(dp: &mut impl Sessions, flight: &Flight, ticket: &[u8]) -> u64 {
    let mut learned = 0;
    if uses(flight, PersistKind::Ticket) {
        let id = &ticket[..ticket.len().min(TICKET_ID_LEN)];
        learned += report(
            dp.learn(&SessionKey::new(flight.farm_id, PersistKind::Ticket, id), flight.flow.backend_id),
            "ticket",
        );
    }
    if uses(flight, PersistKind::TicketKey) && ticket.len() > KEY_NAME_LEN {
        let name: [u8; KEY_NAME_LEN] = ticket[..KEY_NAME_LEN].try_into().unwrap_or_default();
        learned += learn_key_name(dp, flight, &name);
    }
    learned
}

fn learn_key_name(dp: &mut impl Sessions, flight: &Flight, name: &[u8; KEY_NAME_LEN]) -> u64 {
    report(dp.learn_key_name(flight.farm_id, name, flight.flow.backend_id), "ticket key name")
}

fn report(result: anyhow::Result<()>, what: &str) -> u64 {
    match result {
        Ok(()) => 1,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "server flight: cannot remember a {what}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers what it is told to learn.
    #[derive(Default)]
    struct Recorder {
        flow: Option<Flow>,
        learned: Vec<(SessionKey, u32)>,
    }

    impl Sessions for Recorder {
        fn flow(&self, _key: &FlowKey) -> Option<Flow> {
            self.flow
        }
        fn farm_of(&self, _backend_id: u32) -> Option<(u32, FarmInfo)> {
            let persist_mask = 1 << PersistKind::SessionId as u8 | 1 << PersistKind::Ticket as u8;
            Some((3, FarmInfo { persist_mask, ..Default::default() }))
        }
        fn learn(&mut self, key: &SessionKey, backend_id: u32) -> anyhow::Result<()> {
            self.learned.push((*key, backend_id));
            Ok(())
        }
        fn learn_key_name(&mut self, _: u32, name: &[u8; KEY_NAME_LEN], backend_id: u32) -> anyhow::Result<()> {
            self.learned.push((SessionKey::new(3, PersistKind::TicketKey, name), backend_id));
            Ok(())
        }
    }

    fn record(content: u8, payload: &[u8]) -> Vec<u8> {
        [&[content, 3, 3][..], &(payload.len() as u16).to_be_bytes(), payload].concat()
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_be_bytes();
        [&[kind, len[1], len[2], len[3]][..], body].concat()
    }

    fn server_hello(session_id: &[u8]) -> Vec<u8> {
        let body = [&[3u8, 3][..], &[9; 32], &[session_id.len() as u8], session_id, &[0xC0, 0x2F, 0], &[0, 0]].concat();
        message(2, &body)
    }

    fn new_session_ticket(ticket: &[u8]) -> Vec<u8> {
        message(4, &[&[0u8, 0, 1, 0][..], &(ticket.len() as u16).to_be_bytes(), ticket].concat())
    }

    fn a_key() -> FlowKey {
        FlowKey {
            saddr_be: [0; 16],
            daddr_be: [0; 16],
            sport_be: 443u16.to_be(),
            dport_be: 40_000u16.to_be(),
            family: 4,
            _pad: [0; 3],
        }
    }

    fn flow(flags: u8) -> Flow {
        // SAFETY: Flow is plain integers and arrays, for which zero is valid.
        let mut flow: Flow = unsafe { std::mem::zeroed() };
        flow.flags = flow_flags::LEARN_DAEMON | flags;
        flow.backend_id = 7;
        flow.flight_start = u32::MAX - 10;
        flow
    }

    /// Sends `data` as segments cut at `cuts`, in that order.
    fn feed(flights: &mut ServerFlights, dp: &mut Recorder, data: &[u8], cuts: &[usize], order: &[usize]) {
        let bounds: Vec<usize> = [0].into_iter().chain(cuts.iter().copied()).chain([data.len()]).collect();
        let start = dp.flow.expect("a flow").flight_start;
        let key = a_key();
        for &i in order {
            let (a, b) = (bounds[i], bounds[i + 1]);
            flights.on_segment(dp, &key, start.wrapping_add(a as u32), &data[a..b]);
        }
    }

    #[test]
    fn a_session_id_and_a_ticket_cut_anywhere_are_learned_once_the_flight_is_whole() {
        let ticket: Vec<u8> = (0..200u8).collect();
        let flight = [
            record(22, &server_hello(&[0x5A; 32])),
            // The ticket's message fragmented over two records.
            record(22, &new_session_ticket(&ticket)[..50]),
            record(22, &new_session_ticket(&ticket)[50..]),
            record(20, &[1]),
        ]
        .concat();
        // The later segment first (nothing is read until the start is
        // there), or three in order (the ServerHello whole in the first, the
        // flight read again as the rest comes, its ID learned once).
        let plans: Vec<(Vec<usize>, Vec<usize>)> = [1, 3, 4, 60, 100, 150]
            .into_iter()
            .map(|cut| (vec![cut], vec![1, 0]))
            .chain([(vec![100, 150], vec![0, 1, 2])])
            .collect();
        for (cuts, order) in plans {
            let cut = &cuts;
            let mut dp = Recorder { flow: Some(flow(flow_flags::LEARN_TICKET)), ..Default::default() };
            let mut flights = ServerFlights::default();
            feed(&mut flights, &mut dp, &flight, &cuts, &order);
            assert_eq!(
                dp.learned,
                vec![
                    (SessionKey::new(3, PersistKind::SessionId, &[0x5A; 32]), 7),
                    (SessionKey::new(3, PersistKind::Ticket, &ticket[..TICKET_ID_LEN]), 7)
                ],
                "cut at {cut:?}"
            );
            assert!(!flights.busy(), "done with the flight");
        }
    }

    #[test]
    fn an_echoed_session_id_is_not_learned_and_a_flight_without_a_ticket_ends_at_change_cipher_spec() {
        let mut f = flow(0);
        f.client_sid_len = 32;
        f.client_sid_prefix = [0x5A; 8];
        let mut dp = Recorder { flow: Some(f), ..Default::default() };
        let mut flights = ServerFlights::default();
        let flight = [record(22, &server_hello(&[0x5A; 32])), record(20, &[1])].concat();
        feed(&mut flights, &mut dp, &flight, &[20], &[0, 1]);
        assert!(dp.learned.is_empty(), "{:?}", dp.learned);
        assert!(!flights.busy());
    }

    #[test]
    fn a_connection_xdp_did_not_hand_over_is_not_read() {
        let mut f = flow(0);
        f.flags = flow_flags::LEARN;
        let mut dp = Recorder { flow: Some(f), ..Default::default() };
        let mut flights = ServerFlights::default();
        flights.on_segment(&mut dp, &a_key(), 1, &record(22, &server_hello(&[1; 32])));
        assert!(dp.learned.is_empty() && !flights.busy());
    }
}
