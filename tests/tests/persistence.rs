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
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"round-robin\"\npersistence = [{persistence}]\n{}",
        topo.pin_path(),
        topo.backends_toml(PORT)
    )
}

/// Four `openssl s_server` backends that resume TLS 1.2 sessions by session
/// ID only (their own session caches, no tickets); one client saves a
/// session, then offers it `RESUMPTIONS` times. Returns how many offers
/// were resumed, the backend of the first connection and of each offer.
fn resume_by_session_id(persistence: &str) -> (usize, String, Vec<String>, Tether) {
    let topo = Topology::two_armed(1, 4);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            BackendServer::openssl_with(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}"), &["-no_ticket"])
        })
        .collect();
    let tether = Tether::start(&topo.lb, &config(&topo, persistence));
    let vip = SocketAddr::new(VIP.into(), PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    let session = dir.path().join("session.pem");
    let client = &topo.clients[0].ns;
    let tls12 = ["-tls1_2"];
    let (_, first) =
        peers::openssl_session(client, vip, &tls12, &session, SessionFile::Save).expect("first connection");
    let mut reused = 0;
    let mut answers = Vec::new();
    for i in 0..RESUMPTIONS {
        let (resumed, backend) = peers::openssl_session(client, vip, &tls12, &session, SessionFile::Offer)
            .unwrap_or_else(|e| panic!("resumption {i}: {e:#}\n{}", tether.log()));
        reused += usize::from(resumed);
        answers.push(backend);
    }
    (reused, first, answers, tether)
}

/// The classic case: TLS 1.2 session IDs learned from the ServerHello bring
/// every resumption back to the backend that holds the session.
#[test]
fn tls12_session_ids_bring_resumptions_to_their_backend() {
    let (reused, first, answers, tether) = resume_by_session_id("\"session-id\"");
    let elsewhere: Vec<_> = answers.iter().filter(|b| **b != first).collect();
    assert!(elsewhere.is_empty(), "answers from other backends than {first}: {elsewhere:?}");
    assert!(reused >= RESUMPTIONS - 1, "{reused} of {RESUMPTIONS} resumed\n{:?}", tether.counters());
    let counters = tether.counters();
    assert!(counters.get(reason::TLS_BIND_PERSISTED) >= (RESUMPTIONS - 1) as u64, "{counters:?}");
    // One session, learned once: the resumptions' ServerHellos echo the
    // offered ID, which refreshes the entry rather than adding one.
    let sessions = tether.sessions();
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
    let (reused, first, answers, tether) = resume_by_session_id("");
    let mut spread: HashMap<&str, usize> = HashMap::new();
    answers.iter().for_each(|b| *spread.entry(b.as_str()).or_default() += 1);
    assert_eq!(spread.len(), 4, "round-robin reaches every backend: {spread:?}");
    assert!((15..=35).contains(&reused), "{reused} of {RESUMPTIONS} resumed without persistence: {spread:?}");
    assert_eq!(reused, spread[first.as_str()], "exactly the offers that reached {first} resumed");
    assert_eq!(tether.counters().get(reason::TLS_BIND_PERSISTED), 0);
    assert!(tether.sessions().is_empty(), "a farm without persistence learns nothing");
}
