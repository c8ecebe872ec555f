//! `protocol = "tcp"` VIPs: the backend is chosen at the SYN by Maglev on the
//! client address, and the connection is fully NATed both ways in XDP. Real
//! TCP servers in backend namespaces, real sockets in client namespaces.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_common::reason;
use tether_tests::{
    peers::{self, BackendServer},
    tether::Tether,
    topology::{
        LB_BACKEND_ADDR, LB_BACKEND_ADDR6, LB_BACKEND_IF, LB_CLIENT_ADDR, LB_CLIENT_IF, Topology, VIP, VIP6,
        backend_addr6,
    },
};

const PORT: u16 = 7;

fn config(topo: &Topology, extra_daemon: &str) -> String {
    config_with(topo, &format!("\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\""), LB_BACKEND_ADDR, extra_daemon)
}

fn config_with(topo: &Topology, interfaces: &str, snat: std::net::Ipv4Addr, extra_daemon: &str) -> String {
    let backends = topo.backends_toml(PORT);
    format!(
        "[daemon]\ninterfaces = [{interfaces}]\nxdp_mode = \"native\"\npin_path = \"{}\"\n{extra_daemon}\n\n\
         [[vip]]\nname = \"echo\"\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\nfarm = \"echo\"\nsnat = \"{snat}\"\n\n\
         [[farm]]\nname = \"echo\"\nalgorithm = \"maglev\"\npersistence = []\n{backends}",
        topo.pin_path()
    )
}

fn start_backends(topo: &Topology) -> Vec<BackendServer> {
    topo.backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::plain_tcp(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect()
}

/// Connects to the VIP, reads the greeting, echoes `payload`; returns the
/// backend's name and the peer address it saw.
fn echo_through_vip(stream: TcpStream, payload: &[u8]) -> (String, String) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting from the backend");
    let mut parts = greeting.split_whitespace();
    let (name, peer) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let writer_payload = payload.to_vec();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&writer_payload).expect("send"));
    let mut echoed = vec![0u8; payload.len()];
    reader.read_exact(&mut echoed).expect("echo");
    sender.join().unwrap();
    assert!(echoed == payload, "echo through the VIP differs from what was sent");
    (name, peer)
}

fn connect_vip(topo: &Topology, client: usize) -> TcpStream {
    let vip = SocketAddr::new(VIP.into(), PORT);
    topo.clients[client]
        .ns
        .enter(|| TcpStream::connect_timeout(&vip, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("client {client} cannot connect to the VIP: {e}"))
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn tcp_echo_through_the_vip_is_fully_natted_and_sticky_per_client() {
    // Six clients: with these addresses Maglev uses all three backends, so a
    // data path that always picked one backend would fail the prediction below.
    let topo = Topology::two_armed(6, 3);
    let _backends = start_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, ""));
    let before = tether.counters();

    let mut seen = Vec::new();
    for client in 0..topo.clients.len() {
        let mut names = Vec::new();
        for i in 0..2 {
            let payload = pattern(256 * 1024, (client * 10 + i) as u32);
            let (name, peer) = echo_through_vip(connect_vip(&topo, client), &payload);
            assert_eq!(peer, LB_BACKEND_ADDR.to_string(), "the backend must see the SNAT address, not the client");
            names.push(name);
        }
        assert!(names.iter().all(|n| *n == names[0]), "client {client} moved between backends: {names:?}");
        assert!(["b0", "b1", "b2"].contains(&names[0].as_str()), "unknown backend {:?}", names[0]);
        seen.push(names[0].clone());
    }

    let after = tether.counters();
    let delta = |r| after.get(r) - before.get(r);
    assert_eq!(delta(reason::NEW_FLOW), 12, "one new flow per connection: {after:?}");
    assert!(delta(reason::FWD_TO_BACKEND) > 12 * 10, "client data forwarded in XDP: {after:?}");
    assert!(delta(reason::FWD_TO_CLIENT) > 12 * 10, "echo forwarded in XDP: {after:?}");
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert!(distinct.len() > 1, "every client on one backend: {seen:?}");
    for r in [
        reason::DROP_NO_NEIGH,
        reason::DROP_NO_ROUTE,
        reason::DROP_PORTS_EXHAUSTED,
        reason::DROP_FLOW_TABLE,
        reason::DROP_NO_BACKEND,
    ] {
        assert_eq!(delta(r), 0, "{} should not happen: {after:?}\n{}", reason::name(r), tether.log());
    }
    // The choice is Maglev on the client address: predict it the way XDP does.
    let expected = predict_backends(&topo);
    assert_eq!(seen, expected, "backends chosen differ from Maglev's table");
}

/// Which backend each client should get: the daemon's Maglev table indexed by
/// the data path's hash of the client address.
fn predict_backends(topo: &Topology) -> Vec<String> {
    let keys: Vec<String> = topo.backends.iter().map(|b| SocketAddr::new(b.addr.into(), PORT).to_string()).collect();
    let members: Vec<lb_user::maglev::Member<'_>> =
        keys.iter().enumerate().map(|(i, k)| lb_user::maglev::Member { id: i as u32, key: k, weight: 1 }).collect();
    let table = lb_user::maglev::table(&members, lb_common::maps::MAGLEV_RING as usize);
    topo.clients
        .iter()
        .map(|c| {
            let addr = lb_user::loader::addr_bytes(c.addr.into());
            let slot = lb_common::hash::addr(&addr) % lb_common::maps::MAGLEV_RING;
            format!("b{}", table[slot as usize])
        })
        .collect()
}

#[test]
fn closed_and_reset_connections_leave_the_flow_table() {
    let topo = Topology::two_armed(1, 2);
    let _backends = start_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "[daemon.timeouts]\nclosing = \"1s\"\n"));

    let stream = connect_vip(&topo, 0);
    echo_through_vip(stream.try_clone().unwrap(), b"hello");
    assert_eq!(tether.flows().len(), 2, "an open connection has two entries");
    // Orderly close from both ends: the entries go once `closing` has passed.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = (&stream).read_to_end(&mut rest);
    drop(stream);
    wait_until(Duration::from_secs(10), || tether.flows().is_empty(), || format!("{:?}", tether.flows()));

    // An abortive close (RST) removes them at once, without the sweeper.
    let stream = connect_vip(&topo, 0);
    echo_through_vip(stream.try_clone().unwrap(), b"again");
    assert_eq!(tether.flows().len(), 2);
    let status = tether.status();
    assert!(status.contains("flow table: 2 entries"), "tether status should show the open connection:\n{status}");
    let sock = socket2_linger_zero(stream);
    drop(sock);
    wait_until(Duration::from_millis(500), || tether.flows().is_empty(), || format!("{:?}", tether.flows()));
}

/// Closing a socket with SO_LINGER = 0 makes the kernel send an RST.
fn socket2_linger_zero(stream: TcpStream) -> TcpStream {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
    stream
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}: {}", state());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_armed_the_same_interface_carries_both_legs() {
    let topo = Topology::one_armed(2, 2);
    let _backends = start_backends(&topo);
    let tether = Tether::start(&topo.lb, &config_with(&topo, &format!("\"{LB_CLIENT_IF}\""), LB_CLIENT_ADDR, ""));
    for client in 0..topo.clients.len() {
        let payload = pattern(128 * 1024, client as u32);
        let (name, peer) = echo_through_vip(connect_vip(&topo, client), &payload);
        assert_eq!(peer, LB_CLIENT_ADDR.to_string(), "the backend must see the balancer's address");
        assert!(["b0", "b1"].contains(&name.as_str()), "unknown backend {name:?}");
    }
    let c = tether.counters();
    assert_eq!(c.get(reason::NEW_FLOW), 2, "{c:?}");
    assert!(c.get(reason::FWD_TO_BACKEND) > 20 && c.get(reason::FWD_TO_CLIENT) > 20, "{c:?}");
}

#[test]
fn a_256_mib_transfer_each_way_arrives_byte_identical() {
    let topo = Topology::two_armed(1, 1);
    let _backends = start_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, ""));
    transfer_both_ways(connect_vip(&topo, 0), 256 << 20);
    let c = tether.counters();
    assert!(c.get(reason::FWD_TO_BACKEND) > ((256 << 20) / 1500) as u64, "the data went through XDP: {c:?}");
}

#[test]
fn the_same_transfer_survives_a_lossy_link() {
    let mut topo = Topology::two_armed(1, 1);
    let _backends = start_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, ""));
    // 2% of frames dropped each way on the client's link, after the handshake.
    let stream = connect_vip(&topo, 0);
    let before = (topo.clients[0].ns.tcp_retransmitted(), topo.backends[0].ns.tcp_retransmitted());
    topo.make_client_link_lossy(0, 20);
    transfer_both_ways(stream, LOSSY_TRANSFER);
    // The loss was real: both senders had to retransmit.
    let client_retrans = topo.clients[0].ns.tcp_retransmitted() - before.0;
    let backend_retrans = topo.backends[0].ns.tcp_retransmitted() - before.1;
    assert!(
        client_retrans > 100 && backend_retrans > 100,
        "retransmissions: client {client_retrans}, backend {backend_retrans}"
    );
    let c = tether.counters();
    assert!(c.get(reason::FWD_TO_BACKEND) > (LOSSY_TRANSFER / 1500) as u64, "{c:?}");
    assert_eq!(c.get(reason::DROP_NO_FLOW), 0, "no segment may lose its flow: {c:?}");
}

const LOSSY_TRANSFER: usize = 256 << 20;

/// Sends `size` bytes through the echo backend behind the VIP while reading the
/// echo, and checks every byte that comes back; window scaling, SACK and
/// timestamps are on (Linux defaults) at both ends.
fn transfer_both_ways(stream: TcpStream, size: usize) {
    const CHUNK: usize = 1 << 16;
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::with_capacity(CHUNK, stream.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut chunk = vec![0u8; CHUNK];
        for n in 0..size / CHUNK {
            peers::fill_chunk(&mut chunk, n);
            writer.write_all(&chunk).expect("send");
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    // Compare the echo chunk by chunk with what was sent, without keeping it all.
    let mut expected = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    for n in 0..size / CHUNK {
        peers::fill_chunk(&mut expected, n);
        reader.read_exact(&mut got).unwrap_or_else(|e| panic!("echo stopped at chunk {n}: {e}"));
        assert!(got == expected, "chunk {n} differs after the round trip");
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes more than were sent", rest.len());
    sender.join().unwrap();
}

#[test]
fn an_ipv6_tcp_vip_is_fully_natted_in_a_real_network() {
    let topo = Topology::two_armed(2, 2);
    let _backends: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::plain_tcp(&b.ns, SocketAddr::new(backend_addr6(i).into(), PORT), &format!("b{i}")))
        .collect();
    let backends: String = (0..topo.backends.len())
        .map(|i| format!("\n[[farm.backend]]\nname = \"b{i}\"\naddress = \"[{}]:{PORT}\"\n", backend_addr6(i)))
        .collect();
    let config = format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"echo6\"\naddress = \"{VIP6}\"\nport = {PORT}\nprotocol = \"tcp\"\nfarm = \"echo6\"\nsnat = \"{LB_BACKEND_ADDR6}\"\n\n\
         [[farm]]\nname = \"echo6\"\n{backends}",
        topo.pin_path()
    );
    let tether = Tether::start(&topo.lb, &config);
    let vip = SocketAddr::new(VIP6.into(), PORT);
    for (i, client) in topo.clients.iter().enumerate() {
        let stream = client
            .ns
            .enter(|| TcpStream::connect_timeout(&vip, Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("client {i} cannot connect to {vip}: {e}\n{:?}", tether.counters()));
        let (name, peer) = echo_through_vip(stream, &pattern(128 * 1024, i as u32));
        assert_eq!(peer, LB_BACKEND_ADDR6.to_string(), "the backend must see the IPv6 SNAT address");
        assert!(["b0", "b1"].contains(&name.as_str()), "unknown backend {name:?}");
    }
    let c = tether.counters();
    assert_eq!(c.get(reason::NEW_FLOW), 2, "{c:?}");
    assert_eq!(c.get(reason::DROP_NO_NEIGH), 0, "{c:?}");
    assert!(c.get(reason::FWD_TO_BACKEND) > 20 && c.get(reason::FWD_TO_CLIENT) > 20, "{c:?}");
}
