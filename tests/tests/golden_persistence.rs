//! Golden packets for persistence (DESIGN.md §3): hand-built hellos and
//! server messages through the data path with BPF_PROG_TEST_RUN, and the
//! persistence table read back. A resumed hit, a miss, learning from the
//! ServerHello and from a NewSessionTicket, a TLS 1.3 echo never learned, an
//! expired entry; and a million TLS 1.3 ServerHellos that leave the TLS 1.2
//! sessions learned before them in place.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData, PerCpuArray};
use lb_common::{
    Flow,
    maps::{self as abi, FlowDirection, PersistCounters, PersistKind, SessionEntry, SessionKey, flow_flags},
    reason,
};
use tether_tests::{
    dataplane::{TestDataplane, XDP_REDIRECT},
    fibnet::{BACKEND, BACKEND_MAC, CLIENT, CLIENT_MAC, Net, SNAT},
    packet::*,
    tls_msg::{client_hello, ext, handshake, new_session_ticket, record, server_hello},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const PORT: u16 = 443;
/// Two backends on one host: they differ by port.
const PORTS: [u16; 2] = [443, 8443];
const VIP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const BACKEND_ISN: u32 = 7_777;

fn config(capacity: u32) -> String {
    format!(
        "[daemon]\ninterfaces = [\"be\"]\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{SNAT}\"\n\n\
         [[farm]]\nname = \"web\"\npersistence = [\"session-id\", \"ticket\", \"ticket-key\"]\n\
         session_timeout = \"300s\"\nsession_capacity = {capacity}\n\
         [[farm.backend]]\nname = \"b0\"\naddress = \"{BACKEND}:{}\"\n\
         [[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:{}\"\n",
        PORTS[0], PORTS[1]
    )
}

// --- Packets -----------------------------------------------------------

fn segment(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8) -> TcpSeg {
    TcpSeg { seq, ack, window: 502, ..TcpSeg::syn(src_port, dst_port).with_flags(flags) }
}

/// A connection bound to a backend, its backend leg answered.
struct Conn {
    /// The backend's port (which backend), and the SNAT port of the leg.
    backend_port: u16,
    sp: u16,
    leg_isn: u32,
}

/// Opens a connection from `client_port` whose first data is `hello`,
/// expecting it to bind under `why`; then the backend's SYN-ACK, so that
/// the connection is spliced and the backend's data flows.
fn connect(net: &Net, dp: &TestDataplane, client_port: u16, hello: &[u8], why: u32) -> Conn {
    let syn = segment(client_port, PORT, 1_000, 0, TCP_SYN);
    let (_, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &syn), reason::VIP_SYN);
    let cookie = be32(&out[38..]);
    let data = TcpSeg { payload: hello.to_vec(), ..segment(client_port, PORT, 1_001, cookie + 1, TCP_ACK | TCP_PSH) };
    let (action, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &data), why);
    assert_eq!(action, XDP_REDIRECT);
    let (sp, backend_port, leg_isn) =
        (u16::from_be_bytes([out[34], out[35]]), u16::from_be_bytes([out[36], out[37]]), be32(&out[38..]));
    let syn_ack = segment(backend_port, sp, BACKEND_ISN, leg_isn + 1, TCP_SYN | TCP_ACK);
    let syn_ack = frame(net.backend_side_mac, BACKEND_MAC, BACKEND, SNAT, &syn_ack);
    dp.expect_pass(&syn_ack, reason::BACKEND_SYN_ACK);
    dp.expect_tc(&syn_ack, reason::TC_STASH_SENT);
    Conn { backend_port, sp, leg_isn }
}

/// The backend's data on `c`, at `offset` bytes into its stream.
fn from_backend(net: &Net, c: &Conn, offset: u32, payload: &[u8]) -> Vec<u8> {
    let seg = TcpSeg {
        payload: payload.to_vec(),
        ..segment(c.backend_port, c.sp, BACKEND_ISN + 1 + offset, c.leg_isn + 1, TCP_ACK | TCP_PSH)
    };
    frame(net.backend_side_mac, BACKEND_MAC, BACKEND, SNAT, &seg)
}

// --- Tables ------------------------------------------------------------

fn sessions(dp: &TestDataplane) -> Vec<(SessionKey, SessionEntry)> {
    match dp.ebpf.map(abi::SESSIONS_MAP) {
        Some(aya::maps::Map::LruHashMap(data)) => lb_user::sessions::entries(data).expect("read sessions"),
        _ => panic!("no SESSIONS map"),
    }
}

/// What a key stores of its bytes: their length and the bytes (folded
/// when longer than 16).
fn key_bytes(key: &SessionKey) -> (u8, [u8; abi::SESSION_KEY_MAX]) {
    (key.len, key.bytes)
}

/// `key_bytes` of the key the host builds from `source`: what the XDP
/// program must have stored.
fn stored(source: &[u8]) -> (u8, [u8; abi::SESSION_KEY_MAX]) {
    key_bytes(&SessionKey::new(0, PersistKind::SessionId, source))
}

fn stats(dp: &TestDataplane, kind: PersistKind) -> PersistCounters {
    let map: PerCpuArray<&MapData, PersistCounters> =
        dp.ebpf.map(abi::PERSIST_STATS_MAP).expect("PERSIST_STATS").try_into().expect("per-CPU array");
    let per_cpu = map.get(&(kind as u32), 0).expect("farm 0's counters");
    per_cpu.iter().fold(PersistCounters::default(), |mut sum, c| {
        sum.add(c);
        sum
    })
}

fn backend_id(port: u16) -> u32 {
    PORTS.iter().position(|p| *p == port).expect("a configured backend") as u32
}

#[test]
fn a_session_id_is_learned_from_the_server_hello_and_brings_the_resumption_back() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config(1_000));
        // Miss: a ClientHello offering an ID nobody learned binds by the
        // algorithm (round-robin: the first backend), after a lookup.
        let c = connect(&net, &dp, 40_000, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
        assert_eq!(stats(&dp, PersistKind::SessionId).lookups, 1);
        assert_eq!(stats(&dp, PersistKind::SessionId).hits, 0);
        // Learn: the ServerHello gives a new ID.
        let sid = [0x5E; 32];
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&sid, false)), reason::FWD_TO_CLIENT);
        let table = sessions(&dp);
        assert_eq!(table.len(), 1, "{table:?}");
        assert_eq!((table[0].0.kind, key_bytes(&table[0].0)), (PersistKind::SessionId as u8, stored(&sid)));
        assert_eq!(table[0].1.backend_id, backend_id(c.backend_port));
        // The flow is done learning: later segments are not read.
        let to_client = dp.flows().into_iter().find(|(_, f)| f.direction == FlowDirection::ToClient as u8).unwrap().1;
        assert_eq!(to_client.flags & (flow_flags::LEARN | flow_flags::LEARN_TICKET), 0);

        // Hit: round-robin would give the next connection the other backend;
        // the offered ID brings it to the one that holds the session.
        let resumed = connect(&net, &dp, 40_001, &client_hello(&sid, None), reason::TLS_BIND_PERSISTED);
        assert_eq!(resumed.backend_port, c.backend_port);
        // The server resumes, echoing the ID: nothing new is learned.
        dp.expect(&from_backend(&net, &resumed, 0, &server_hello(&sid, false)), reason::FWD_TO_CLIENT);
        assert_eq!(sessions(&dp).len(), 1);
        let s = stats(&dp, PersistKind::SessionId);
        assert_eq!((s.lookups, s.hits, s.learns, s.inserted), (2, 1, 1, 1));
        // And a connection offering nothing known goes by the algorithm again.
        let other = connect(&net, &dp, 40_002, &client_hello(&[0xCD; 32], None), reason::TLS_BIND);
        assert_ne!(other.backend_port, c.backend_port, "round-robin moved on");
    });
}

/// Session IDs of every length a key stores differently: kept whole (8
/// bytes), folded with a partial last word (20), folded whole (32), and two
/// 32-byte IDs that share their first half. Each is learned as the host
/// builds its key, brings its resumption to its own backend, and is not
/// learned again from the server's echo.
#[test]
fn session_ids_short_and_folded_are_learned_and_resumed_apart() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config(1_000));
        let pattern = |len: usize, seed: u8| -> Vec<u8> { (0..len as u8).map(|i| i.wrapping_mul(31) ^ seed).collect() };
        let same_first_half = [pattern(16, 9), pattern(16, 1)].concat();
        let ids = [pattern(8, 3), pattern(20, 5), pattern(32, 7), [pattern(16, 9), pattern(16, 2)].concat()];
        let mut learned_on = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let c = connect(&net, &dp, 41_000 + i as u16, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
            dp.expect(&from_backend(&net, &c, 0, &server_hello(id, false)), reason::FWD_TO_CLIENT);
            learned_on.push(c.backend_port);
        }
        // Round-robin over two backends gave neighbours different ones, so
        // a resumption that lands right was not luck of the algorithm.
        assert_ne!(learned_on[2], learned_on[3]);
        let table = sessions(&dp);
        assert_eq!(table.len(), ids.len(), "{table:?}");
        for id in &ids {
            assert!(table.iter().any(|(k, _)| key_bytes(k) == stored(id)), "{id:02x?} not stored as the host keys it");
        }
        for (i, id) in ids.iter().enumerate() {
            let c = connect(&net, &dp, 41_100 + i as u16, &client_hello(id, None), reason::TLS_BIND_PERSISTED);
            assert_eq!(c.backend_port, learned_on[i], "ID of {} bytes", id.len());
            // The server's echo of a resumed ID teaches nothing new.
            dp.expect(&from_backend(&net, &c, 0, &server_hello(id, false)), reason::FWD_TO_CLIENT);
        }
        // An ID that shares the last two's first half and was never learned
        // finds nothing.
        connect(&net, &dp, 41_200, &client_hello(&same_first_half, None), reason::TLS_BIND);
        let s = stats(&dp, PersistKind::SessionId);
        assert_eq!((s.learns, s.inserted, s.hits), (4, 4, 4));
        assert_eq!(sessions(&dp).len(), ids.len());
    });
}

#[test]
fn a_tls13_server_hello_echo_is_never_learned() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config(1_000));
        let offered = [0x77; 32];
        let c = connect(&net, &dp, 40_000, &client_hello(&offered, None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&offered, true)), reason::FWD_TO_CLIENT);
        assert!(sessions(&dp).is_empty());
        // Even a TLS 1.3 ServerHello whose ID differs from the offer (no
        // compliant server sends one) is not learned: 1.3 is read from
        // supported_versions, not from the echo.
        let c = connect(&net, &dp, 40_001, &client_hello(&offered, None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&[0x78; 32], true)), reason::FWD_TO_CLIENT);
        assert!(sessions(&dp).is_empty(), "{:?}", sessions(&dp));
    });
}

#[test]
fn a_ticket_is_learned_from_the_new_session_ticket_of_the_second_flight() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config(1_000));
        // The client asks for a ticket (empty extension); the server's first
        // flight is the ServerHello and certificates; after the client's
        // Finished its second flight starts with the NewSessionTicket.
        let c = connect(&net, &dp, 40_000, &client_hello(&[], Some(&[])), reason::TLS_BIND);
        let first_flight = [server_hello(&[], false), record(22, &handshake(11, &[0; 300]))].concat();
        dp.expect(&from_backend(&net, &c, 0, &first_flight), reason::FWD_TO_CLIENT);
        assert!(sessions(&dp).is_empty(), "no session ID, no ticket yet");
        let ticket: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let second_flight = [new_session_ticket(&ticket), record(20, &[1])].concat();
        let offset = first_flight.len() as u32;
        dp.expect(&from_backend(&net, &c, offset, &second_flight), reason::FWD_TO_CLIENT);
        let mut table = sessions(&dp);
        table.sort_by_key(|(k, _)| k.kind);
        assert_eq!(table.len(), 2, "{table:?}");
        assert_eq!((table[0].0.kind, key_bytes(&table[0].0)), (PersistKind::Ticket as u8, stored(&ticket[..32])));
        assert_eq!((table[1].0.kind, key_bytes(&table[1].0)), (PersistKind::TicketKey as u8, stored(&ticket[..16])));
        assert!(table.iter().all(|(_, e)| e.backend_id == backend_id(c.backend_port)));

        // The ticket offered later brings its connection back (the ticket
        // kind comes before the key name in the farm's list).
        let resumed = connect(&net, &dp, 40_001, &client_hello(&[0x99; 32], Some(&ticket)), reason::TLS_BIND_PERSISTED);
        assert_eq!(resumed.backend_port, c.backend_port);
        assert_eq!(stats(&dp, PersistKind::Ticket).hits, 1);
        // A ticket of the same key that tether never saw: its key name.
        let sibling: Vec<u8> = ticket[..16].iter().copied().chain([0xEE; 144]).collect();
        let by_key = connect(&net, &dp, 40_002, &client_hello(&[], Some(&sibling)), reason::TLS_BIND_PERSISTED);
        assert_eq!(by_key.backend_port, c.backend_port);
        assert_eq!(stats(&dp, PersistKind::TicketKey).hits, 1);
    });
}

/// The backend -> client entry of `c` (two backends may each have a leg
/// from the same SNAT port).
fn to_client(dp: &TestDataplane, c: &Conn) -> Flow {
    dp.flows()
        .into_iter()
        .find(|(k, f)| {
            f.direction == FlowDirection::ToClient as u8
                && (u16::from_be(k.sport_be), u16::from_be(k.dport_be)) == (c.backend_port, c.sp)
        })
        .expect("the backend -> client entry")
        .1
}

/// A ServerHello, or a NewSessionTicket, cut by a segment boundary: XDP
/// learns nothing from the part it has, marks the connection for the
/// daemon (`LEARN_DAEMON`, the flight read from the cut message's record),
/// and copies that segment and the ones after it into the slow path's ring,
/// forwarding each as usual.
#[test]
fn a_server_message_cut_by_a_segment_boundary_is_handed_to_the_daemon() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(1_000));
        let c = connect(&net, &dp, 40_000, &client_hello(&[], None), reason::TLS_BIND);
        let hello = server_hello(&[0x42; 32], false);
        let parts = [from_backend(&net, &c, 0, &hello[..40]), from_backend(&net, &c, 40, &hello[40..])];
        for part in &parts {
            dp.expect(part, reason::FWD_TO_CLIENT);
        }
        let flow = to_client(&dp, &c);
        assert_eq!(flow.flags & (flow_flags::LEARN | flow_flags::LEARN_DAEMON), flow_flags::LEARN_DAEMON);
        assert_eq!(flow.flight_start, BACKEND_ISN + 1, "from the ServerHello's record");
        assert!(sessions(&dp).is_empty(), "XDP learned nothing itself");
        assert_eq!(dp.slow_path_frames(abi::slow_kind::SERVER), parts.to_vec());

        // A ticket asked for; the first flight read in XDP, the
        // NewSessionTicket that starts the second cut after 60 bytes.
        let c = connect(&net, &dp, 40_001, &client_hello(&[], Some(&[])), reason::TLS_BIND);
        let first_flight = [server_hello(&[], false), record(22, &handshake(11, &[0; 300]))].concat();
        dp.expect(&from_backend(&net, &c, 0, &first_flight), reason::FWD_TO_CLIENT);
        assert_eq!(to_client(&dp, &c).flags & flow_flags::LEARN_DAEMON, 0, "nothing cut yet");
        assert!(dp.slow_path_frames(abi::slow_kind::SERVER).is_empty());
        let ticket: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let second_flight = [new_session_ticket(&ticket), record(20, &[1])].concat();
        let offset = first_flight.len() as u32;
        let cut = from_backend(&net, &c, offset, &second_flight[..60]);
        dp.expect(&cut, reason::FWD_TO_CLIENT);
        let flow = to_client(&dp, &c);
        assert_ne!(flow.flags & flow_flags::LEARN_DAEMON, 0);
        assert_eq!(flow.flight_start, BACKEND_ISN + 1 + offset, "from the ticket's record");
        assert_eq!(dp.slow_path_frames(abi::slow_kind::SERVER), vec![cut]);
        assert!(sessions(&dp).is_empty());
    });
}

#[test]
fn an_expired_entry_is_a_miss() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(1_000));
        let sid = [0x42; 32];
        let c = connect(&net, &dp, 40_000, &client_hello(&[], None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&sid, false)), reason::FWD_TO_CLIENT);
        // The entry, last used 301 s ago (the farm's timeout is 300 s).
        let (key, mut entry) = sessions(&dp)[0];
        let now = lb_user::loader::monotonic_ns();
        entry.last_used_ns = now.saturating_sub(301_000_000_000);
        entry.created_ns = entry.last_used_ns;
        {
            let mut map: HashMap<&mut MapData, SessionKey, SessionEntry> =
                dp.ebpf.map_mut(abi::SESSIONS_MAP).expect("SESSIONS").try_into().expect("hash map");
            map.insert(key, entry, 0).expect("age the entry");
        }
        let again = connect(&net, &dp, 40_001, &client_hello(&sid, None), reason::TLS_BIND);
        assert_ne!(again.backend_port, c.backend_port, "the algorithm chose, not the stale entry");
        let s = stats(&dp, PersistKind::SessionId);
        assert_eq!((s.lookups, s.hits, s.expired), (1, 0, 1));
    });
}

/// A ClientHello naming `name` in `server_name`, after `others` extensions
/// tether does not read (so that the walk over them takes several steps).
fn hello_naming(name: &[u8], others: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    let mut extensions: Vec<u8> = (0..others).flat_map(|i| ext(0xFF00 + i as u16, &[i as u8; 3])).collect();
    let entry = [&[0u8][..], &(name.len() as u16).to_be_bytes(), name].concat();
    extensions.extend(ext(0, &[&(entry.len() as u16).to_be_bytes()[..], &entry].concat()));
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    record(22, &handshake(1, &body))
}

/// `sni`: the data path hashes a server name a few words per step; for
/// names of every length that crosses a step (and the longest a host name
/// can be), behind extensions that take the walk over several steps, the
/// key it learns is the daemon's hash of the name (what `tether sessions
/// lookup` builds), and the name's next connection finds it.
#[test]
fn a_server_name_of_any_length_is_keyed_by_the_daemons_hash() {
    let net = Net::new();
    net.ns.enter(|| {
        let config = config(1_000).replace(r#"["session-id", "ticket", "ticket-key"]"#, r#"["sni"]"#);
        let dp = TestDataplane::new(&config);
        let mut port = 41_000;
        for (i, len) in [1usize, 8, 31, 32, 33, 64, 65, 100, 255].into_iter().enumerate() {
            let name: Vec<u8> = (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            let hello = hello_naming(&name, 3 + 4 * i);
            let first = connect(&net, &dp, port, &hello, reason::TLS_BIND);
            let learned: Vec<_> = sessions(&dp)
                .into_iter()
                .filter(|(k, _)| {
                    k.kind == PersistKind::Sni as u8 && key_bytes(k) == stored(&lb_common::persist::name_hash(&name))
                })
                .map(|(_, e)| e.backend_id)
                .collect();
            assert_eq!(learned, [backend_id(first.backend_port)], "a {len}-byte name");
            let again = connect(&net, &dp, port + 1, &hello, reason::TLS_BIND_PERSISTED);
            assert_eq!(again.backend_port, first.backend_port, "a {len}-byte name");
            port += 2;
        }
        assert_eq!(sessions(&dp).len(), 9, "one entry per name");
    });
}

/// A million TLS 1.3 handshakes' ServerHellos, each echoing a random ID, on
/// a table of 100,000 entries already holding 1,000 TLS 1.2 sessions: none
/// is learned, so none of the TLS 1.2 sessions is pushed out. (One flow is
/// marked for learning again before each, as a new connection's would be:
/// binding a million connections would take the test minutes.)
#[test]
fn a_million_tls13_handshakes_leave_the_tls12_sessions_in_place() {
    const TLS12: u32 = 1_000;
    const TLS13: u32 = 1_000_000;
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(100_000));
        let c = connect(&net, &dp, 40_000, &client_hello(&[], None), reason::TLS_BIND);
        let (key, flow) = dp
            .flows()
            .into_iter()
            .find(|(_, f)| f.direction == FlowDirection::ToClient as u8)
            .expect("the backend -> client entry");
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut random_id = || -> [u8; 32] {
            let mut id = [0u8; 32];
            for chunk in id.chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                chunk.copy_from_slice(&rng.to_le_bytes());
            }
            id
        };
        let learn_again = |dp: &mut TestDataplane, offered: &[u8; 32]| {
            let mut flows = lb_user::flows::of_mut(&mut dp.ebpf).expect("the flow tables");
            let mut f = flow;
            f.flags |= flow_flags::LEARN;
            f.client_sid_len = 32;
            f.client_sid_prefix.copy_from_slice(&offered[..8]);
            flows.insert(&key, f, 0).expect("mark the flow");
        };
        let mut tls12 = Vec::new();
        for _ in 0..TLS12 {
            let id = random_id();
            learn_again(&mut dp, &[0; 32]);
            let (_, _) = dp.run(&from_backend(&net, &c, 0, &server_hello(&id, false)));
            tls12.push(id);
        }
        assert_eq!(sessions(&dp).len(), TLS12 as usize, "every TLS 1.2 session learned");
        for _ in 0..TLS13 {
            let id = random_id();
            learn_again(&mut dp, &id);
            let (_, _) = dp.run(&from_backend(&net, &c, 0, &server_hello(&id, true)));
        }
        let table = sessions(&dp);
        assert_eq!(table.len(), TLS12 as usize, "TLS 1.3 echoes were learned");
        let learned: std::collections::HashSet<_> = table.iter().map(|(k, _)| key_bytes(k)).collect();
        assert!(tls12.iter().all(|id| learned.contains(&stored(id))), "a TLS 1.2 session was lost");
        let s = stats(&dp, PersistKind::SessionId);
        assert_eq!(s.learns, u64::from(TLS12));
    });
}

/// A session learned on the first backend, which then fails its health
/// checks (written as the daemon would); the next offer of the session meets
/// the farm's `on_backend_failure`. Returns the data path's answer, the
/// hello offered, the offering connection's cookie, and the dataplane.
fn offer_to_a_failed_backend(on_failure: &str, expected: u32) -> (Vec<u8>, Vec<u8>, u32, TestDataplane, Net) {
    let net = Net::new();
    let text =
        config(1_000).replace("session_timeout", &format!("on_backend_failure = \"{on_failure}\"\nsession_timeout"));
    let (out, hello, cookie, dp) = net.ns.enter(|| {
        let mut dp = TestDataplane::new(&text);
        let sid = [0x5E; 32];
        let c = connect(&net, &dp, 40_000, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&sid, false)), reason::FWD_TO_CLIENT);
        assert_eq!(c.backend_port, PORTS[0]);
        let parsed = lb_user::config::Config::parse(std::path::Path::new("golden.toml"), &text).expect("config");
        let mut runtime = lb_user::farm::Runtime::from_config(&parsed);
        runtime.farms[0][0].health = lb_user::farm::Health::Down;
        let layout = lb_user::layout::Layout::initial(&parsed);
        lb_user::loader::write_farm_backends(&mut dp.ebpf, &parsed, &layout, &runtime, 0).expect("mark b0 failed");

        let syn = segment(40_001, PORT, 5_000, 0, TCP_SYN);
        let (_, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &syn), reason::VIP_SYN);
        let cookie = be32(&out[38..]);
        let hello = client_hello(&sid, None);
        let data = TcpSeg { payload: hello.clone(), ..segment(40_001, PORT, 5_001, cookie + 1, TCP_ACK | TCP_PSH) };
        let (_, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &data), expected);
        (out, hello, cookie, dp)
    });
    (out, hello, cookie, dp, net)
}

#[test]
fn reset_answers_the_client_of_a_failed_backend_with_an_rst_of_its_own_leg() {
    let (out, hello, cookie, dp, _net) = offer_to_a_failed_backend("reset", reason::RESET_BACKEND_FAILED);
    // From the VIP to the client: seq is what the client expects from us
    // (the cookie + 1), its data acknowledged; no options, no data.
    let rst = TcpSeg {
        window: 0,
        payload: Vec::new(),
        ..segment(PORT, 40_001, cookie + 1, 5_001 + hello.len() as u32, TCP_RST | TCP_ACK)
    };
    let expected = frame(CLIENT_MAC, VIP_MAC, VIP, CLIENT, &rst);
    assert_eq!(out, expected, "the RST, byte for byte");
    assert!(checksums_ok_v4(&out, 14), "IPv4 and TCP checksums recomputed from scratch agree");
    assert!(!has_client_port(&dp, 40_001), "nothing is kept for a reset client");
    assert_eq!(sessions(&dp).len(), 1, "the entry stays for when the backend returns");
}

#[test]
fn drop_drops_the_client_of_a_failed_backend_and_keeps_its_entry() {
    let (_, _, _, dp, _net) = offer_to_a_failed_backend("drop", reason::DROP_BACKEND_FAILED);
    assert!(!has_client_port(&dp, 40_001), "nothing is kept for a dropped client");
    assert_eq!(sessions(&dp).len(), 1);
    assert_eq!(stats(&dp, PersistKind::SessionId).unusable, 1);
}

#[test]
fn rebalance_binds_the_client_of_a_failed_backend_elsewhere_and_forgets_the_entry() {
    let (out, _, _, dp, _net) = offer_to_a_failed_backend("rebalance", reason::TLS_BIND);
    // The SYN goes to the other backend.
    assert_eq!(u16::from_be_bytes([out[36], out[37]]), PORTS[1]);
    assert!(sessions(&dp).is_empty(), "{:?}", sessions(&dp));
    let s = stats(&dp, PersistKind::SessionId);
    assert_eq!((s.lookups, s.hits, s.unusable), (2, 0, 1));
}

/// Whether the flow table has an entry from the client port `port`.
fn has_client_port(dp: &TestDataplane, port: u16) -> bool {
    dp.flows().iter().any(|(k, _)| k.sport_be == port.to_be())
}

#[test]
fn a_connection_marked_for_reset_answers_the_client_with_an_rst_and_drops_the_backend() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(1_000));
        let c = connect(&net, &dp, 40_000, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
        // As the daemon marks a failed backend's connections.
        {
            let entries = dp.flows();
            assert_eq!(entries.len(), 2);
            let mut flows = lb_user::flows::of_mut(&mut dp.ebpf).expect("the flow tables");
            for (key, mut flow) in entries {
                flow.flags |= flow_flags::RESET;
                flows.insert(&key, flow, 0).expect("mark");
            }
        }
        dp.expect(&from_backend(&net, &c, 0, b"late"), reason::DROP_BACKEND_FAILED);
        assert_eq!(dp.flows().len(), 2, "a backend segment changes nothing");
        // The client's next segment: an RST of its own leg, from the VIP.
        let (seq, ack) = (1_001 + 300, 77_777);
        let data = TcpSeg { payload: b"more".to_vec(), ..segment(40_000, PORT, seq, ack, TCP_ACK | TCP_PSH) };
        let (action, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &data), reason::RESET_BACKEND_FAILED);
        assert_eq!(action, tether_tests::dataplane::XDP_TX);
        let rst = TcpSeg { window: 0, payload: Vec::new(), ..segment(PORT, 40_000, ack, seq + 4, TCP_RST | TCP_ACK) };
        assert_eq!(out, frame(CLIENT_MAC, VIP_MAC, VIP, CLIENT, &rst), "the RST, byte for byte");
        assert!(checksums_ok_v4(&out, 14));
        assert!(dp.flows().is_empty(), "the connection is forgotten: {:?}", dp.flows());
    });
}

/// The daemon stamps the entries it adds with CLOCK_MONOTONIC, which runs
/// up to a tick ahead of XDP's coarse clock: an entry stamped a moment
/// ahead is fresh, not expired (with a wrapping difference it read as
/// older than any timeout).
#[test]
fn an_entry_stamped_ahead_of_the_coarse_clock_is_fresh() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(1_000));
        let sid = [0x3C; 32];
        let key = SessionKey::new(0, PersistKind::SessionId, &sid);
        let owner = backend_id(PORTS[1]);
        {
            let mut map: HashMap<&mut MapData, SessionKey, SessionEntry> =
                dp.ebpf.map_mut(abi::SESSIONS_MAP).expect("SESSIONS").try_into().expect("hash map");
            // 50 ms ahead: more than a tick at any HZ, far less than the timeout.
            let ahead = lb_user::loader::monotonic_ns() + 50_000_000;
            map.insert(key, SessionEntry { backend_id: owner, _pad: 0, created_ns: ahead, last_used_ns: ahead }, 0)
                .expect("insert");
        }
        lb_user::session_filter::of(&dp.ebpf).expect("map the filter").mark(&key);
        let before = stats(&dp, PersistKind::SessionId);
        for port in [40_000, 40_001] {
            let c = connect(&net, &dp, port, &client_hello(&sid, None), reason::TLS_BIND_PERSISTED);
            assert_eq!(backend_id(c.backend_port), owner, "the entry chose");
        }
        let after = stats(&dp, PersistKind::SessionId);
        assert_eq!((after.hits - before.hits, after.expired - before.expired), (2, 0));
    });
}

/// The filter is sized from the session table (4 to 8 slots an entry),
/// and XDP marks and reads it at that size: a key learned in a larger
/// table's filter is marked there, and a connection offering it resumes.
#[test]
fn the_session_filter_is_sized_from_the_session_table() {
    let net = Net::new();
    net.ns.enter(|| {
        let capacity = 200_000;
        let dp = TestDataplane::new(&config(capacity));
        let filter = lb_user::session_filter::of(&dp.ebpf).expect("map the filter");
        assert_eq!(filter.slots(), 1 << 20, "2^18 entries rounded up, 4 slots each");
        assert_eq!(filter.slots(), 1 << lb_common::maps::session_filter_bits(capacity));
        let sid = [0x6A; 32];
        let c = connect(&net, &dp, 40_000, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&sid, false)), reason::FWD_TO_CLIENT);
        assert!(filter.is_marked(&SessionKey::new(0, PersistKind::SessionId, &sid)), "XDP marked what it learned");
        assert_eq!(filter.marked(), 1);
        let again = connect(&net, &dp, 40_001, &client_hello(&sid, None), reason::TLS_BIND_PERSISTED);
        assert_eq!(again.backend_port, c.backend_port, "the session resumes where it was learned");
    });
}

/// `SESSION_FILTER`: a key XDP learns is marked in both generations; a key
/// in `SESSIONS` whose slot nobody marked is a miss without a lookup, which
/// proves lookups read the filter; a rebuild from the table marks it, and
/// leaves out the slot of a key no longer there.
#[test]
fn the_session_filter_marks_learned_keys_and_a_rebuild_follows_the_table() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config(1_000));
        let filter = lb_user::session_filter::of(&dp.ebpf).expect("map the filter");
        assert_eq!(filter.slots(), 1 << lb_common::maps::SESSION_FILTER_MIN_BITS, "a small table's filter");
        assert_eq!(filter.active(), 0);
        assert_eq!(filter.marked(), 0, "a new filter is empty");
        let learned_sid = [0x5E; 32];
        let c = connect(&net, &dp, 40_000, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
        dp.expect(&from_backend(&net, &c, 0, &server_hello(&learned_sid, false)), reason::FWD_TO_CLIENT);
        let learned = SessionKey::new(0, PersistKind::SessionId, &learned_sid);
        assert!(filter.is_marked(&learned), "XDP marked what it learned");
        assert_eq!(filter.marked(), 1);

        // An entry put in the table behind the filter's back, naming the
        // backend round-robin gives the next connection only every other time.
        let hidden_sid = [0x77; 32];
        let hidden = SessionKey::new(0, PersistKind::SessionId, &hidden_sid);
        let owner = backend_id(PORTS[1]);
        {
            let mut map: HashMap<&mut MapData, SessionKey, SessionEntry> =
                dp.ebpf.map_mut(abi::SESSIONS_MAP).expect("SESSIONS").try_into().expect("hash map");
            let now = lb_user::loader::monotonic_ns();
            map.insert(hidden, SessionEntry { backend_id: owner, _pad: 0, created_ns: now, last_used_ns: now }, 0)
                .expect("insert");
        }
        assert!(!filter.is_marked(&hidden));
        let before = stats(&dp, PersistKind::SessionId);
        connect(&net, &dp, 40_001, &client_hello(&hidden_sid, None), reason::TLS_BIND);
        let after = stats(&dp, PersistKind::SessionId);
        assert_eq!((after.lookups - before.lookups, after.hits - before.hits), (1, 0), "the filter said miss");

        // The rebuild, as the daemon's sweep runs it.
        let rebuilding = filter.begin_rebuild();
        assert_eq!(rebuilding, 1);
        let table = sessions(&dp);
        filter.mark_in(rebuilding, table.iter().map(|(key, _)| key));
        filter.activate(rebuilding);
        assert!(filter.is_marked(&hidden) && filter.is_marked(&learned));
        for port in [40_002, 40_003] {
            let c = connect(&net, &dp, port, &client_hello(&hidden_sid, None), reason::TLS_BIND_PERSISTED);
            assert_eq!(backend_id(c.backend_port), owner, "the table's entry chose");
        }

        // A key gone from the table: the next rebuild leaves its slot clear.
        {
            let mut map: HashMap<&mut MapData, SessionKey, SessionEntry> =
                dp.ebpf.map_mut(abi::SESSIONS_MAP).expect("SESSIONS").try_into().expect("hash map");
            map.remove(&learned).expect("remove");
        }
        let rebuilding = filter.begin_rebuild();
        assert_eq!(rebuilding, 0);
        filter.mark_in(rebuilding, sessions(&dp).iter().map(|(key, _)| key));
        filter.activate(rebuilding);
        assert!(!filter.is_marked(&learned) && filter.is_marked(&hidden));
        assert_eq!(filter.marked(), 1);

        // Keys XDP learns while a rebuild runs, at each of its steps: after
        // the clear (before the scan), and after the scan (before the
        // switch). Both stay marked once the rebuilt generation is active.
        let learn = |port: u16, sid: &[u8; 32]| {
            let c = connect(&net, &dp, port, &client_hello(&[0xAB; 32], None), reason::TLS_BIND);
            dp.expect(&from_backend(&net, &c, 0, &server_hello(sid, false)), reason::FWD_TO_CLIENT);
            SessionKey::new(0, PersistKind::SessionId, sid)
        };
        let rebuilding = filter.begin_rebuild();
        let before_scan = learn(40_010, &[0x31; 32]);
        let table = sessions(&dp);
        let after_scan = learn(40_011, &[0x32; 32]);
        filter.mark_in(rebuilding, table.iter().map(|(key, _)| key));
        filter.activate(rebuilding);
        let table = sessions(&dp);
        assert_eq!(table.len(), 3, "{table:?}");
        for (key, _) in &table {
            assert!(filter.is_marked(key), "{key:?} is in the table but not in the filter");
        }
        assert!(filter.is_marked(&before_scan) && filter.is_marked(&after_scan));
    });
}
