//! `protocol = "tls"` VIPs end to end: delayed binding (SYN cookie, first
//! data stashed, backend SYN from XDP, ACK + data from tc) and splicing of the
//! two TCP legs, with real TLS servers and clients in namespaces.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use lb_common::{maps::FlowDirection, reason, tcpopt::OUR_WSCALE};
use tether_tests::{
    peers::{self, BackendServer},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;

fn config(topo: &Topology, algorithm: &str) -> String {
    config_with(topo, algorithm, "")
}

fn config_with(topo: &Topology, algorithm: &str, daemon_extra: &str) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n{daemon_extra}\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"{algorithm}\"\npersistence = []\n{}",
        topo.pin_path(),
        topo.backends_toml(PORT)
    )
}

#[test]
fn a_backend_that_never_answers_gets_the_client_reset_after_the_connect_timeout() {
    let topo = Topology::two_armed(1, 1);
    // The backend's answers to the balancer go nowhere (ARP still works).
    topo.backends[0].ns.ip(&format!("route add blackhole {LB_BACKEND_ADDR}/32"));
    let tether = Tether::start(&topo.lb, &config_with(&topo, "round-robin", "[daemon.timeouts]\nconnect = \"2s\""));
    let started = std::time::Instant::now();
    let outcome = topo.clients[0].ns.enter(|| -> std::io::Result<usize> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect_timeout(&vip(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(b"\x16\x03\x01\x00\x05hello")?;
        stream.read(&mut [0u8; 16])
    });
    let waited = started.elapsed();
    assert!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {outcome:?} after {waited:?}: {:?}",
        tether.counters()
    );
    assert!(waited >= Duration::from_secs(2), "reset before the connect timeout: {waited:?}");
    // A retransmission of the first data still in flight when the RST went
    // out binds once more, and is reset in turn; then nothing is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while !tether.flows().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(tether.flows().is_empty(), "the connection's state is gone: {:?}", tether.flows());
    assert!(tether.log().contains("the backend did not answer"), "{}", tether.log());
    // Meanwhile the client's retransmitted first data re-sent the backend SYN.
    assert!(tether.counters().get(reason::BACKEND_SYN_RESENT) > 0, "{:?}", tether.counters());
}

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

fn openssl_backends(topo: &Topology) -> Vec<BackendServer> {
    let backend = |(i, b): (usize, &tether_tests::topology::Host)| {
        BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}"))
    };
    topo.backends.iter().enumerate().map(backend).collect()
}

fn rustls_backends(topo: &Topology) -> Vec<BackendServer> {
    let backend = |(i, b): (usize, &tether_tests::topology::Host)| {
        BackendServer::rustls(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}"))
    };
    topo.backends.iter().enumerate().map(backend).collect()
}

#[test]
fn sequential_connections_spread_round_robin_and_each_answer_names_its_backend() {
    let topo = Topology::two_armed(1, 3);
    let servers = openssl_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order = Vec::new();
    for i in 0..500 {
        // Alternate the two real clients: openssl s_client and curl.
        let name = if i % 2 == 0 {
            peers::openssl_whoami(&topo.clients[0].ns, vip())
        } else {
            peers::curl_whoami(&topo.clients[0].ns, vip())
        }
        .unwrap_or_else(|e| panic!("connection {i}: {e:#}\n{:?}\n{}", tether.counters(), servers[0].log()));
        order.push(name.clone());
        *seen.entry(name).or_default() += 1;
    }
    let mut names: Vec<_> = seen.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["b0", "b1", "b2"], "{seen:?}");
    // One connection at a time: strict rotation, so 167/167/166.
    assert!(seen.values().all(|n| (166..=167).contains(n)), "{seen:?}");
    assert!(order.windows(3).all(|w| w[0] != w[1] && w[1] != w[2] && w[0] != w[2]), "not a rotation: {order:?}");
    let c = tether.counters();
    assert_eq!(c.get(reason::TLS_BIND), 500, "{c:?}");
    assert_eq!(c.get(reason::TC_STASH_SENT), 500, "{c:?}");
}

#[test]
fn a_client_port_reused_at_once_starts_a_new_connection() {
    let topo = Topology::two_armed(1, 2);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    // The server closes first, so the client's port is free again at once,
    // while tether still holds the old connection's entries (FIN seen).
    let names: Vec<String> = (0..6)
        .map(|i| {
            peers::rustls_whoami_from_port(&topo.clients[0].ns, vip(), 45_678)
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}\n{:?}", tether.counters()))
        })
        .collect();
    assert_eq!(names, ["b0", "b1", "b0", "b1", "b0", "b1"]);
}

#[test]
fn concurrent_connections_all_succeed_and_spread() {
    let topo = Topology::two_armed(4, 3);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let answers: Vec<anyhow::Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let ns = &topo.clients[i % topo.clients.len()].ns;
                s.spawn(move || peers::rustls_whoami(ns, vip()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let name = answer.unwrap_or_else(|e| panic!("connection {i}: {e:#}\n{:?}", tether.counters()));
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // Round-robin's cursor is advanced without atomics (lb_common::FarmInfo),
    // so racing CPUs may repeat a backend; the spread stays near a third each.
    assert!(seen.values().all(|n| (25..=42).contains(n)), "{seen:?}");
}

#[test]
fn maglev_keeps_each_client_address_on_one_backend() {
    let topo = Topology::two_armed(3, 3);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "maglev"));
    for (c, client) in topo.clients.iter().enumerate() {
        let names: Vec<String> = (0..5)
            .map(|i| {
                peers::rustls_whoami(&client.ns, vip())
                    .unwrap_or_else(|e| panic!("client {c} connection {i}: {e:#}\n{:?}", tether.counters()))
            })
            .collect();
        assert!(names.iter().all(|n| *n == names[0]), "client {c} moved between backends: {names:?}");
    }
}

#[test]
fn a_256_mib_transfer_each_way_through_the_splice_arrives_intact() {
    let topo = Topology::two_armed(1, 1);
    // A larger receive buffer makes the backend choose a larger window scale
    // (Linux chose 11 for 64 MiB here) than tether offers the client (7), so
    // windows are rescaled on the way to the client.
    topo.backends[0].ns.run("sysctl", &["-qw", "net.ipv4.tcp_rmem=4096 131072 67108864"]);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let name = peers::rustls_echo(&topo.clients[0].ns, vip(), 256 << 20)
        .unwrap_or_else(|e| panic!("{e:#}\n{:?}", tether.counters()));
    assert_eq!(name, "b0");
    let flows = tether.flows();
    let to_client = flows.iter().map(|(_, f)| f).find(|f| f.direction == FlowDirection::ToClient as u8);
    let to_client = to_client.expect("the connection's entries stay until the sweeper's closing timeout");
    assert!(
        to_client.wscale_in > OUR_WSCALE && to_client.wscale_out == OUR_WSCALE,
        "the backend's windows are rescaled for the client: {to_client:?}"
    );
    assert_ne!(to_client.seq_delta, 0, "the legs' sequence numbers differ");
    let c = tether.counters();
    assert!(c.get(reason::FWD_TO_BACKEND) > ((256 << 20) / 1500) as u64, "through XDP: {c:?}");
    assert_eq!(c.get(reason::TLS_BIND), 1, "{c:?}");
}

#[test]
fn the_transfer_survives_a_lossy_client_link() {
    let mut topo = Topology::two_armed(1, 1);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    // 2% of frames dropped each way between client and balancer, from the
    // start: handshakes, SYN cookies and the stash get lost too.
    topo.make_client_link_lossy(0, 20);
    let before = topo.clients[0].ns.tcp_retransmitted();
    let name = peers::rustls_echo(&topo.clients[0].ns, vip(), 256 << 20)
        .unwrap_or_else(|e| panic!("{e:#}\n{:?}", tether.counters()));
    assert_eq!(name, "b0");
    let retrans = topo.clients[0].ns.tcp_retransmitted() - before;
    assert!(retrans > 50, "the loss was not real: {retrans} retransmissions");
    let c = tether.counters();
    assert!(c.get(reason::TC_DROP_ERROR) == 0, "{c:?}");
}

#[test]
fn clients_without_timestamps_sack_or_window_scaling_connect_and_transfer() {
    let topo = Topology::two_armed(3, 1);
    let _servers = rustls_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let knobs = ["net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0", "net.ipv4.tcp_window_scaling=0"];
    for (client, knob) in topo.clients.iter().zip(knobs) {
        client.ns.run("sysctl", &["-qw", knob]);
        let name = peers::rustls_echo(&client.ns, vip(), 32 << 20)
            .unwrap_or_else(|e| panic!("{knob}: {e:#}\n{:?}", tether.counters()));
        assert_eq!(name, "b0", "{knob}");
    }
}

#[test]
fn data_that_is_not_tls_is_spliced_and_counted() {
    let topo = Topology::two_armed(1, 1);
    let b = &topo.backends[0];
    let _server = BackendServer::plain_tcp(&b.ns, SocketAddr::new(b.addr.into(), PORT), "plain");
    let tether = Tether::start(&topo.lb, &config(&topo, "round-robin"));
    let answer = topo.clients[0].ns.enter(|| -> std::io::Result<String> {
        use std::io::{BufRead as _, Write as _};
        let mut stream = std::net::TcpStream::connect_timeout(&vip(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // The client speaks first, and not TLS.
        stream.write_all(b"PING not a TLS record\n")?;
        let mut reader = std::io::BufReader::new(stream);
        let (mut greeting, mut echo) = (String::new(), String::new());
        reader.read_line(&mut greeting)?;
        reader.read_line(&mut echo)?;
        Ok(format!("{greeting}{echo}"))
    });
    let answer = answer.unwrap_or_else(|e| panic!("{e}\n{:?}", tether.counters()));
    assert!(answer.starts_with("plain "), "{answer:?}");
    assert!(answer.ends_with("PING not a TLS record\n"), "{answer:?}");
    let c = tether.counters();
    assert_eq!((c.get(reason::TLS_NOT_HANDSHAKE), c.get(reason::TLS_BIND)), (1, 0), "{c:?}");
}
