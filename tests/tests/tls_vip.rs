//! `protocol = "tls"` VIPs end to end: delayed binding (SYN cookie, first
//! data stashed, backend SYN from XDP, ACK + data from tc) and splicing of the
//! two TCP legs, with real TLS servers and clients in namespaces.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use lb_common::reason;
use tether_tests::{
    peers::{self, BackendServer},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;

fn config(topo: &Topology, algorithm: &str) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"{algorithm}\"\npersistence = []\n{}",
        topo.pin_path(),
        topo.backends_toml(PORT)
    )
}

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

#[test]
fn one_rustls_client_reaches_a_backend_through_the_splice() {
    let topo = Topology::two_armed(1, 1);
    let b = &topo.backends[0];
    let _server = BackendServer::rustls(&b.ns, SocketAddr::new(b.addr.into(), PORT), "b0");
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let answer = peers::rustls_whoami(&topo.clients[0].ns, vip());
    let counters = tether.counters();
    assert_eq!(answer.as_deref().ok(), Some("b0"), "{answer:?}\n{counters:?}\n{}", tether.log());
    assert_eq!(counters.get(reason::TLS_BIND), 1, "{counters:?}");
    assert_eq!(counters.get(reason::TC_STASH_SENT), 1, "{counters:?}");
}

#[test]
fn sequential_clients_spread_round_robin_over_openssl_backends() {
    let topo = Topology::two_armed(1, 3);
    let servers: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect();
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let name = peers::openssl_whoami(&topo.clients[0].ns, vip())
            .unwrap_or_else(|e| panic!("connection {i}: {e:#}\n{:?}\n{}", tether.counters(), servers[0].log()));
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 10), "round-robin over 3 backends: {seen:?}");
    let _ = Duration::ZERO;
}
