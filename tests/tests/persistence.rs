//! TLS session persistence through real servers and clients: every client
//! from one address, so only the TLS session can keep it on its backend.

use std::{collections::HashMap, net::SocketAddr};

use lb_common::{maps::PersistKind, reason};
use tether_tests::{
    peers::{self, BackendServer, SessionFile},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;
const RESUMPTIONS: usize = 100;

fn config(topo: &Topology, persistence: &str) -> String {
    config_with(topo, persistence, "", &topo.backends_toml(PORT))
}

fn config_with(topo: &Topology, persistence: &str, farm_extra: &str, backends: &str) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"round-robin\"\npersistence = [{persistence}]\n{farm_extra}\n{backends}",
        topo.pin_path(),
    )
}

/// How a resumption run is set up: the arguments of the backends'
/// `openssl s_server` and of the client's `s_client`, the farm's
/// persistence, and whether backend `bN` starts its session IDs with `bN`
/// (`-id_prefix`, `session_id_prefix`).
struct Run<'a> {
    software: Software,
    /// More `openssl s_server` arguments (`Software::OpenSsl` only).
    server: &'a [&'a str],
    client: &'a [&'a str],
    persistence: &'a str,
    id_prefixes: bool,
    /// Offer the session until one offer is resumed before counting: TLS 1.3
    /// key names are learned from a ServerHello that accepts one.
    warm_up: bool,
    /// Backends send tether segments of 48 bytes, which cut the
    /// ServerHello and the NewSessionTicket across segments.
    small_segments: bool,
}

/// The route MTU from the backends to tether's SNAT address in runs with
/// `small_segments`: 100 bytes, so 48 bytes of TLS a segment (IP and TCP
/// headers, timestamps).
const SMALL_SEGMENT_MTU: u32 = 100;

impl<'a> Run<'a> {
    /// Backends with their default arguments, counting from the first offer.
    fn new(software: Software, client: &'a [&'a str], persistence: &'a str) -> Run<'a> {
        Run { software, server: &[], client, persistence, id_prefixes: false, warm_up: false, small_segments: false }
    }
}

/// Which servers the backends run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Software {
    OpenSsl,
    /// nginx without a session cache: it resumes by ticket only, each
    /// process under its own random ticket key.
    Nginx,
    /// As `Nginx`, with a certificate of over 8 KB.
    NginxBigCertificate,
    /// Apache httpd with mod_ssl: TLS 1.2, a shmcb session cache, no tickets.
    Apache,
}

/// What a run saw: offers resumed, the backend of the first connection and
/// of each counted offer, and the daemon (for its tables and counters).
struct Outcome {
    reused: usize,
    first: String,
    answers: Vec<String>,
    tether: Tether,
    _backends: Vec<BackendServer>,
    _topo: Topology,
}

impl Outcome {
    /// Every counted offer resumed (one may miss) on the first backend.
    fn assert_all_resumed_on_the_first_backend(&self) {
        let elsewhere: Vec<_> = self.answers.iter().filter(|b| **b != self.first).collect();
        assert!(elsewhere.is_empty(), "answers from other backends than {}: {elsewhere:?}", self.first);
        assert!(
            self.reused >= RESUMPTIONS - 1,
            "{} of {RESUMPTIONS} resumed\n{:?}",
            self.reused,
            self.tether.counters()
        );
        let counters = self.tether.counters();
        assert!(counters.get(reason::TLS_BIND_PERSISTED) >= (RESUMPTIONS - 1) as u64, "{counters:?}");
    }

    fn sessions_of(&self, kind: PersistKind) -> usize {
        self.tether.sessions().iter().filter(|(k, _)| k.kind == kind as u8).count()
    }
}

/// Four `openssl s_server` backends; one client saves a session, then
/// offers it `RESUMPTIONS` times.
fn resume(run: Run<'_>) -> Outcome {
    let topo = Topology::two_armed(1, 4);
    let backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let name = format!("b{i}");
            let addr = SocketAddr::new(b.addr.into(), PORT);
            let mut args = run.server.to_vec();
            if run.id_prefixes {
                args.extend(["-id_prefix", &name]);
            }
            match run.software {
                Software::OpenSsl => BackendServer::openssl_with(&b.ns, addr, &name, &args),
                Software::Nginx => BackendServer::nginx(&b.ns, addr, &name, false),
                Software::NginxBigCertificate => BackendServer::nginx_big_certificate(&b.ns, addr, &name),
                Software::Apache => BackendServer::apache(&b.ns, addr, &name),
            }
        })
        .collect();
    let backends_toml = if run.id_prefixes {
        topo.backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "\n[[farm.backend]]\nname = \"b{i}\"\naddress = \"{}:{PORT}\"\nsession_id_prefix = \"b{i}\"\n",
                    b.addr
                )
            })
            .collect()
    } else {
        topo.backends_toml(PORT)
    };
    if run.small_segments {
        for b in &topo.backends {
            b.ns.ip(&format!("route add {LB_BACKEND_ADDR}/32 dev eth0 mtu lock {SMALL_SEGMENT_MTU}"));
        }
    }
    let tether = Tether::start(&topo.lb, &config_with(&topo, run.persistence, "", &backends_toml));
    let vip = SocketAddr::new(VIP.into(), PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    let session = dir.path().join("session.pem");
    let client = &topo.clients[0].ns;
    let (_, first) =
        peers::openssl_session(client, vip, run.client, &session, SessionFile::Save).expect("first connection");
    if run.warm_up {
        // Round-robin brings an offer to the issuing backend within four.
        let resumed = (0..8).any(|_| {
            peers::openssl_session(client, vip, run.client, &session, SessionFile::Offer).expect("warm-up offer").0
        });
        assert!(resumed, "no offer was resumed in 8 tries\n{:?}", tether.counters());
    }
    let mut reused = 0;
    let mut answers = Vec::new();
    for i in 0..RESUMPTIONS {
        let (resumed, backend) = peers::openssl_session(client, vip, run.client, &session, SessionFile::Offer)
            .unwrap_or_else(|e| panic!("resumption {i}: {e:#}\n{}", tether.log()));
        reused += usize::from(resumed);
        answers.push(backend);
    }
    Outcome { reused, first, answers, tether, _backends: backends, _topo: topo }
}

/// Four `openssl s_server` backends that resume TLS 1.2 sessions by session
/// ID only (their own session caches, no tickets).
fn resume_by_session_id(persistence: &str) -> Outcome {
    resume(Run { server: &["-no_ticket"], ..Run::new(Software::OpenSsl, &["-tls1_2"], persistence) })
}

/// The classic case: TLS 1.2 session IDs learned from the ServerHello bring
/// every resumption back to the backend that holds the session.
#[test]
fn tls12_session_ids_bring_resumptions_to_their_backend() {
    let run = resume_by_session_id("\"session-id\"");
    run.assert_all_resumed_on_the_first_backend();
    // One session, learned once: the resumptions' ServerHellos echo the
    // offered ID, which refreshes the entry rather than adding one.
    let sessions = run.tether.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let (key, _) = sessions[0];
    assert_eq!((key.kind, key.len), (PersistKind::SessionId as u8, 32), "{key:?}");
}

/// TLS 1.3 ServerHellos echo the client's random `legacy_session_id`: never
/// learned (DESIGN.md §3), so they cannot flush useful entries.
#[test]
fn tls13_echoed_session_ids_are_not_learned() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect();
    let tether = Tether::start(&topo.lb, &config(&topo, "\"session-id\""));
    let vip = SocketAddr::new(VIP.into(), PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        let session = dir.path().join(format!("s{i}.pem"));
        let (_, backend) = peers::openssl_session(&topo.clients[0].ns, vip, &["-tls1_3"], &session, SessionFile::Save)
            .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
        assert!(backend.starts_with('b'), "{backend}");
    }
    assert_eq!(tether.counters().get(reason::TLS_BIND), 20);
    assert!(tether.sessions().is_empty(), "{:?}", tether.sessions());
}

/// The control that shows the test above can fail: without persistence,
/// round-robin over four backends resumes only the offers that happen to
/// reach the first backend, one in four.
#[test]
fn without_persistence_about_one_in_four_resumes() {
    let run = resume_by_session_id("");
    assert_one_in_four(&run);
    assert!(run.tether.sessions().is_empty(), "a farm without persistence learns nothing");
}

/// Round-robin over four backends resumes only the offers that happen to
/// reach the issuing backend.
fn assert_one_in_four(run: &Outcome) {
    let mut spread: HashMap<&str, usize> = HashMap::new();
    run.answers.iter().for_each(|b| *spread.entry(b.as_str()).or_default() += 1);
    assert_eq!(spread.len(), 4, "round-robin reaches every backend: {spread:?}");
    assert!((15..=35).contains(&run.reused), "{} of {RESUMPTIONS} resumed without persistence: {spread:?}", run.reused);
    assert_eq!(run.reused, spread[run.first.as_str()], "exactly the offers that reached {} resumed", run.first);
    assert_eq!(run.tether.counters().get(reason::TLS_BIND_PERSISTED), 0);
}

/// TLS 1.2 tickets (RFC 5077), each backend with its own ticket key and no
/// session cache: the ticket learned from the NewSessionTicket (sent in
/// clear after the client's Finished) brings every offer back.
#[test]
fn tls12_tickets_bring_resumptions_to_their_backend() {
    let run = resume(Run { server: &["-no_cache"], ..Run::new(Software::OpenSsl, &["-tls1_2"], "\"ticket\"") });
    run.assert_all_resumed_on_the_first_backend();
    assert!(run.sessions_of(PersistKind::Ticket) >= 1, "{:?}", run.tether.sessions());
    assert_eq!(run.sessions_of(PersistKind::SessionId), 0, "a farm without `session-id` learns no session IDs");
}

/// Backends whose segments to tether hold 48 bytes of TLS each: their
/// ServerHellos are cut across segments, which XDP cannot read, so it hands
/// the flight to the daemon (`flow_flags::LEARN_DAEMON`), which learns the
/// session ID from its copies.
#[test]
fn tls12_session_ids_cut_across_segments_are_learned_by_the_daemon() {
    let run = resume(Run {
        server: &["-no_ticket"],
        small_segments: true,
        ..Run::new(Software::OpenSsl, &["-tls1_2"], "\"session-id\"")
    });
    run.assert_all_resumed_on_the_first_backend();
    assert_eq!(run.sessions_of(PersistKind::SessionId), 1, "{:?}", run.tether.sessions());
}

/// As above for TLS 1.2 tickets: the NewSessionTicket, after a first flight
/// of some 30 segments, is itself cut; the daemon learns the ticket and its
/// key name.
#[test]
fn tls12_tickets_cut_across_segments_are_learned_by_the_daemon() {
    let run = resume(Run {
        server: &["-no_cache"],
        small_segments: true,
        ..Run::new(Software::OpenSsl, &["-tls1_2"], "\"ticket\", \"ticket-key\"")
    });
    run.assert_all_resumed_on_the_first_backend();
    assert!(run.sessions_of(PersistKind::Ticket) >= 1, "{:?}", run.tether.sessions());
    assert_eq!(run.sessions_of(PersistKind::TicketKey), 1, "{:?}", run.tether.sessions());
}

/// The same tickets by their key name: one entry per backend key, not per
/// ticket.
#[test]
fn tls12_ticket_key_names_bring_resumptions_to_their_backend() {
    let run = resume(Run { server: &["-no_cache"], ..Run::new(Software::OpenSsl, &["-tls1_2"], "\"ticket-key\"") });
    run.assert_all_resumed_on_the_first_backend();
    let sessions = run.tether.sessions();
    assert_eq!(sessions.len(), 1, "one key name, learned from the first ticket: {sessions:?}");
    assert_eq!((sessions[0].0.kind, sessions[0].0.len), (PersistKind::TicketKey as u8, 16));
}

/// The control for tickets: without persistence, one in four.
#[test]
fn tls12_tickets_without_persistence_resume_one_in_four() {
    let run = resume(Run { server: &["-no_cache"], ..Run::new(Software::OpenSsl, &["-tls1_2"], "") });
    assert_one_in_four(&run);
}

/// TLS 1.3: tickets are encrypted, so the key name is learned from the first
/// ServerHello that accepts the client's PSK (after which every offer of a
/// ticket under that key goes to that backend).
#[test]
fn tls13_ticket_key_names_bring_resumptions_to_their_backend() {
    let run = resume(Run { warm_up: true, ..Run::new(Software::OpenSsl, &["-tls1_3"], "\"ticket-key\"") });
    run.assert_all_resumed_on_the_first_backend();
    assert_eq!(run.sessions_of(PersistKind::TicketKey), 1, "{:?}", run.tether.sessions());
}

/// The TLS 1.3 control: without persistence, one in four.
#[test]
fn tls13_tickets_without_persistence_resume_one_in_four() {
    let run = resume(Run::new(Software::OpenSsl, &["-tls1_3"], ""));
    assert_one_in_four(&run);
}

/// Backends that start their session IDs with their own prefix are found
/// by it, with nothing learned.
#[test]
fn session_id_prefixes_route_without_a_table() {
    let run = resume(Run {
        server: &["-no_ticket"],
        id_prefixes: true,
        ..Run::new(Software::OpenSsl, &["-tls1_2"], "\"session-id-prefix\"")
    });
    run.assert_all_resumed_on_the_first_backend();
    assert!(run.tether.sessions().is_empty(), "{:?}", run.tether.sessions());
}

/// `sni` and `source-ip` are learned at binding: every connection with one
/// server name, or from one address, goes where the first one went.
#[test]
fn server_names_and_source_addresses_keep_their_backend() {
    let topo = Topology::two_armed(2, 4);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect();
    let vip = SocketAddr::new(VIP.into(), PORT);

    let tether = Tether::start(&topo.lb, &config(&topo, "\"sni\""));
    let mut by_name: HashMap<&str, Vec<String>> = HashMap::new();
    for i in 0..24 {
        let name = ["a.example", "b.example", "c.example"][i % 3];
        let backend = peers::openssl_whoami_as(&topo.clients[0].ns, vip, &["-servername", name])
            .unwrap_or_else(|e| panic!("connection {i} ({name}): {e:#}"));
        by_name.entry(name).or_default().push(backend);
    }
    for (name, backends) in &by_name {
        assert!(backends.iter().all(|b| *b == backends[0]), "{name} went to {backends:?}");
    }
    let distinct: std::collections::HashSet<_> = by_name.values().map(|b| &b[0]).collect();
    assert_eq!(distinct.len(), 3, "round-robin gave each new name the next backend: {by_name:?}");
    assert_eq!(tether.sessions().len(), 3, "{:?}", tether.sessions());
    drop(tether);

    let tether = Tether::start(&topo.lb, &config(&topo, "\"source-ip\""));
    let mut by_client: Vec<Vec<String>> = vec![Vec::new(); 2];
    for i in 0..20 {
        let backend =
            peers::openssl_whoami(&topo.clients[i % 2].ns, vip).unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
        by_client[i % 2].push(backend);
    }
    for backends in &by_client {
        assert!(backends.iter().all(|b| *b == backends[0]), "one client went to {backends:?}");
    }
    assert_ne!(by_client[0][0], by_client[1][0], "round-robin gave the second client the next backend");
    assert_eq!(tether.sessions().len(), 2, "{:?}", tether.sessions());
}

/// `tether sessions` on a live table: list, look up, stats, flush one entry;
/// and an entry past the farm's `session_timeout` is a miss at once and is
/// removed by the daemon's sweep.
#[test]
fn the_session_table_can_be_inspected_flushed_and_expires() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            BackendServer::openssl_with(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}"), &["-no_ticket"])
        })
        .collect();
    let config = config_with(&topo, "\"session-id\"", "session_timeout = \"3s\"", &topo.backends_toml(PORT));
    let tether = Tether::start(&topo.lb, &config);
    let vip = SocketAddr::new(VIP.into(), PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    let session = dir.path().join("session.pem");
    let client = &topo.clients[0].ns;
    let tls12 = ["-tls1_2"];
    let (_, first) = peers::openssl_session(client, vip, &tls12, &session, SessionFile::Save).expect("first");
    let (reused, again) = peers::openssl_session(client, vip, &tls12, &session, SessionFile::Offer).expect("offer");
    assert!(reused && again == first, "resumed on {again} (first: {first})");

    let sessions = tether.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    // A TLS 1.2 ID of 32 bytes is stored folded, and listed as such; lookup
    // takes what the listing shows.
    let id = lb_user::sessions::format_key(&sessions[0].0);
    assert!(id.starts_with("fold32:"), "{id}");
    let list = tether.sessions_cli(&["list"]).expect("list");
    assert!(list.starts_with("1 entries, page 1 of 1"), "{list}");
    let row = list.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
    assert!(row.contains("session-id") && row.contains(&first), "{row}");
    let found =
        tether.sessions_cli(&["lookup", "--farm", "web", "--kind", "session-id", "--key", &id]).expect("lookup");
    assert!(found.contains(&first), "{found}");
    let stats = tether.sessions_cli(&["stats"]).expect("stats");
    let row = stats.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("no farm row:\n{stats}"));
    let numbers: Vec<u64> = row.split_whitespace().skip(2).map(|n| n.parse().expect("a count")).collect();
    // entries, lookups, hits, misses, learns, expiries, evictions, unusable
    // (the first hello offered no session ID, so it looked nothing up)
    assert_eq!(numbers, [1, 1, 1, 0, 1, 0, 0, 0], "{stats}");
    let capacity: u32 = stats
        .lines()
        .find_map(|l| l.strip_prefix("table: 1 of "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no table line:\n{stats}"));
    // The one key learned is the one slot of `SESSION_FILTER` marked, in a
    // filter sized from the table.
    let slots = 1u64 << lb_common::maps::session_filter_bits(capacity);
    assert!(stats.contains(&format!("filter: 1 of {slots} slots marked")), "{stats}");

    let flushed =
        tether.sessions_cli(&["flush", "--farm", "web", "--kind", "session-id", "--key", &id]).expect("flush");
    assert!(flushed.contains("removed 1 entries"), "{flushed}");
    assert!(tether.sessions().is_empty());
    let missing = tether.sessions_cli(&["lookup", "--farm", "web", "--kind", "session-id", "--key", &id]);
    assert!(missing.is_err_and(|e| e.contains("no entry")), "a flushed entry is gone");
    let bad = tether.sessions_cli(&["lookup", "--farm", "web", "--kind", "session-id", "--key", "xyz"]);
    assert!(bad.is_err_and(|e| e.contains("not hex")), "bad keys are refused with a reason");

    // Learned again, then left unused past the 3 s timeout.
    peers::openssl_session(client, vip, &tls12, &session, SessionFile::Save).expect("new session");
    assert_eq!(tether.sessions().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    peers::openssl_session(client, vip, &tls12, &session, SessionFile::Offer).expect("late offer");
    let stats = tether.sessions_cli(&["stats"]).expect("stats");
    let row = stats.lines().find(|l| l.starts_with("web ")).expect("farm row");
    let expiries: u64 = row.split_whitespace().nth(7).and_then(|n| n.parse().ok()).expect("expiries");
    assert!(expiries >= 1, "the late offer found its entry expired:\n{stats}");
    // The sweep runs every 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    while !tether.sessions().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no sweep removed {:?}", tether.sessions());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Each sweep rebuilds the filter from the table first, so the sweep
    // after the one that removed the last entry leaves no slot marked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    loop {
        let stats = tether.sessions_cli(&["stats"]).expect("stats");
        if stats.contains("filter: 0 of ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebuild cleared the filter:\n{stats}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A full table: the farm's `session_capacity` sizes it, the LRU makes
/// room for new entries by forgetting the least recently used, the
/// evictions are counted, and the newest entries keep working.
#[test]
fn a_full_table_evicts_the_least_recently_used_and_keeps_working() {
    const CAPACITY: usize = 100;
    const NAMES: usize = 300;
    let topo = Topology::two_armed(1, 4);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect();
    let config = config_with(&topo, "\"sni\"", &format!("session_capacity = {CAPACITY}"), &topo.backends_toml(PORT));
    let tether = Tether::start(&topo.lb, &config);
    let vip = SocketAddr::new(VIP.into(), PORT);
    let client = &topo.clients[0].ns;
    let mut first_backend = Vec::new();
    for i in 0..NAMES {
        let name = format!("n{i}.example");
        let backend = peers::openssl_whoami_as(client, vip, &["-servername", &name])
            .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
        first_backend.push(backend);
    }
    let live = tether.sessions().len();
    assert!((CAPACITY / 2..=CAPACITY).contains(&live), "{live} entries in a table of {CAPACITY}");
    let stats = tether.sessions_cli(&["stats"]).expect("stats");
    assert!(stats.contains(&format!("table: {live} of {CAPACITY} entries")), "{stats}");
    let row = stats.lines().find(|l| l.starts_with("web ")).expect("farm row");
    let numbers: Vec<u64> = row.split_whitespace().skip(2).map(|n| n.parse().expect("a count")).collect();
    // entries, lookups, hits, misses, learns, expiries, evictions, unusable
    assert_eq!(numbers[4], NAMES as u64, "every new name learned: {stats}");
    assert_eq!(numbers[6], (NAMES - live) as u64, "every entry added and gone was evicted: {stats}");
    // The names used last are the ones kept, and still bring their
    // connections to the backend they first had.
    for (i, first) in first_backend.iter().enumerate().skip(NAMES - 10) {
        let name = format!("n{i}.example");
        let found = tether.sessions_cli(&["lookup", "--farm", "web", "--kind", "sni", "--key", &name]);
        assert!(found.is_ok(), "{name}, among the newest, was evicted: {found:?}");
        let backend = peers::openssl_whoami_as(client, vip, &["-servername", &name]).expect("again");
        assert_eq!(&backend, first, "{name}");
    }
    let oldest = tether.sessions_cli(&["lookup", "--farm", "web", "--kind", "sni", "--key", "n0.example"]);
    assert!(oldest.is_err(), "the least recently used name is gone: {oldest:?}");
}

/// The classic case: four Apache httpd backends (mod_ssl, `SSLSessionCache
/// shmcb`, no tickets, TLS 1.2), every client from one address: session IDs
/// learned from the ServerHello bring every resumption to the backend that
/// caches the session.
#[test]
fn apache_session_ids_bring_resumptions_to_their_backend() {
    let run = resume(Run::new(Software::Apache, &["-tls1_2"], "\"session-id\""));
    run.assert_all_resumed_on_the_first_backend();
    assert_eq!(run.sessions_of(PersistKind::SessionId), 1, "{:?}", run.tether.sessions());
}

/// The Apache control: without persistence, one in four.
#[test]
fn apache_without_persistence_resumes_one_in_four() {
    let run = resume(Run::new(Software::Apache, &["-tls1_2"], ""));
    assert_one_in_four(&run);
}

/// TLS 1.2 tickets from nginx backends, each with its own ticket key and no
/// session cache: by the ticket, and by its key name.
#[test]
fn nginx_tls12_tickets_bring_resumptions_to_their_backend() {
    for persistence in ["\"ticket\"", "\"ticket-key\""] {
        let run = resume(Run::new(Software::Nginx, &["-tls1_2"], persistence));
        run.assert_all_resumed_on_the_first_backend();
        assert!(!run.tether.sessions().is_empty(), "{persistence}: nothing learned");
    }
}

/// A certificate of over 8 KB puts many segments of the server's first
/// flight between the ServerHello and the NewSessionTicket of its second:
/// the ticket is still learned, and brings the resumptions back.
#[test]
fn tls12_tickets_after_a_certificate_over_8_kb_are_learned() {
    let run = resume(Run::new(Software::NginxBigCertificate, &["-tls1_2"], "\"ticket\""));
    run.assert_all_resumed_on_the_first_backend();
    assert_eq!(run.sessions_of(PersistKind::Ticket), 1, "{:?}", run.tether.sessions());
}

/// TLS 1.3 tickets from nginx: the key name learned from the first accepted
/// PSK.
#[test]
fn nginx_tls13_ticket_key_names_bring_resumptions_to_their_backend() {
    let run = resume(Run { warm_up: true, ..Run::new(Software::Nginx, &["-tls1_3"], "\"ticket-key\"") });
    run.assert_all_resumed_on_the_first_backend();
    assert_eq!(run.sessions_of(PersistKind::TicketKey), 1, "{:?}", run.tether.sessions());
}

/// TLS 1.3 tickets from nginx, offered in a ClientHello inflated past one
/// segment by a long ALPN list, which OpenSSL sends before the PSK: the key
/// name that decides sits in the hello's second segment (DESIGN.md §2 step
/// 3b).
#[test]
fn nginx_tls13_resumptions_in_a_hello_over_two_segments_reach_their_backend() {
    // Six 200-byte protocol names, then the one nginx speaks: a hello of
    // about 1.8 KB with its ticket.
    let alpn = (0..6).map(|i| format!("{i}").repeat(200)).chain(["http/1.1".to_owned()]).collect::<Vec<_>>().join(",");
    let run =
        resume(Run { warm_up: true, ..Run::new(Software::Nginx, &["-tls1_3", "-alpn", &alpn], "\"ticket-key\"") });
    run.assert_all_resumed_on_the_first_backend();
    let counters = run.tether.counters();
    assert!(
        counters.get(reason::TLS_HELLO_PART) >= RESUMPTIONS as u64,
        "every hello was held over segments: {counters:?}"
    );
    assert_eq!(counters.get(reason::TLS_HELLO_TOO_LONG), 0, "{counters:?}");
}

/// As the test above with a ClientHello of about 6.5 KB (thirty 200-byte
/// protocol names), past what XDP stashes: the daemon's slow path
/// reassembles every hello, and its decision (made by XDP on the fields the
/// daemon hands back) still brings each resumption to the issuing backend.
#[test]
fn nginx_tls13_resumptions_in_a_hello_longer_than_the_stash_reach_their_backend() {
    let alpn =
        (0..30).map(|i| format!("{:02}", i).repeat(100)).chain(["http/1.1".to_owned()]).collect::<Vec<_>>().join(",");
    let run =
        resume(Run { warm_up: true, ..Run::new(Software::Nginx, &["-tls1_3", "-alpn", &alpn], "\"ticket-key\"") });
    run.assert_all_resumed_on_the_first_backend();
    let counters = run.tether.counters();
    assert!(
        counters.get(reason::TLS_HELLO_SLOW_PATH) >= RESUMPTIONS as u64,
        "every hello took the slow path: {counters:?}"
    );
    assert_eq!(counters.get(reason::TLS_HELLO_TOO_LONG), 0, "{counters:?}");
}

/// The nginx control: without persistence, one in four.
#[test]
fn nginx_tickets_without_persistence_resume_one_in_four() {
    let run = resume(Run::new(Software::Nginx, &["-tls1_2"], ""));
    assert_one_in_four(&run);
}
