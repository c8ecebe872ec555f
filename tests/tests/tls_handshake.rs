//! The stateless handshake of `tls` VIPs in a real network: XDP answers the
//! client's SYN with a SYN cookie and checks its ACK, so real kernels complete
//! their handshakes with it, with or without timestamps, SACK and window
//! scaling; a flood of spoofed SYNs leaves no state behind; a backend that
//! refuses the connection resets the client.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use lb_common::reason;
use tether_tests::{
    packet::{IPPROTO_TCP, TcpSeg, V4, ipv4, tcp},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

fn config(topo: &Topology) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = 443\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\n{}",
        topo.pin_path(),
        topo.backends_toml(443)
    )
}

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), 443)
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn real_clients_complete_the_handshake_with_xdp() {
    let topo = Topology::two_armed(2, 1);
    let tether = Tether::start(&topo.lb, &config(&topo));
    // Client 1 offers none of timestamps, SACK, window scaling.
    for knob in ["net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0", "net.ipv4.tcp_window_scaling=0"] {
        topo.clients[1].ns.run("sysctl", &["-qw", knob]);
    }
    for (i, client) in topo.clients.iter().enumerate() {
        let before = tether.counters();
        let mut stream = client
            .ns
            .enter(|| TcpStream::connect_timeout(&vip(), Duration::from_secs(3)))
            .unwrap_or_else(|e| panic!("client {i}: handshake with the VIP failed: {e}\n{:?}", tether.counters()));
        assert!(
            wait_for(Duration::from_secs(2), || tether.counters().get(reason::COOKIE_ACK)
                > before.get(reason::COOKIE_ACK)),
            "client {i}: the handshake's ACK was not recognised as carrying a valid cookie: {:?}",
            tether.counters()
        );
        assert_eq!(tether.counters().get(reason::DROP_BAD_COOKIE), 0);
        assert!(tether.flows().is_empty(), "client {i}: the handshake must leave no state");
        // Its first data binds the connection to a backend, which has no
        // server on the port: the backend's RST comes back as the client's.
        stream.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let read = std::io::Read::read(&mut stream, &mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "client {i}: expected a reset, got {read:?}: {:?}",
            tether.counters()
        );
        let after = tether.counters();
        assert_eq!(after.get(reason::TLS_BIND) - before.get(reason::TLS_BIND), 1, "client {i}: {after:?}");
        assert_eq!(after.get(reason::BACKEND_REFUSED) - before.get(reason::BACKEND_REFUSED), 1, "client {i}");
    }
    assert!(tether.flows().is_empty(), "a refused connection leaves no state");
}

#[test]
fn a_spoofed_syn_flood_leaves_no_state_and_real_clients_still_connect() {
    let topo = Topology::two_armed(2, 1);
    let tether = Tether::start(&topo.lb, &config(&topo));
    let before = tether.counters();
    const FLOOD: u32 = 100_000;
    let flooder = &topo.clients[0].ns;
    let sent = std::thread::scope(|s| {
        let flood = s.spawn(|| flooder.enter(|| send_spoofed_syns(FLOOD)));
        // A real client connects while the flood runs.
        std::thread::sleep(Duration::from_millis(50));
        let real = topo.clients[1].ns.enter(|| TcpStream::connect_timeout(&vip(), Duration::from_secs(5)));
        assert!(real.is_ok(), "a real client could not connect during the flood: {real:?}");
        flood.join().unwrap()
    });
    assert_eq!(sent, FLOOD, "the raw socket sent fewer SYNs than asked");
    std::thread::sleep(Duration::from_millis(200));
    let after = tether.counters();
    let answered = after.get(reason::VIP_SYN) - before.get(reason::VIP_SYN);
    // veth backlogs may drop some of a burst before XDP sees it; most arrive.
    assert!(answered >= u64::from(FLOOD) * 9 / 10, "only {answered} of {FLOOD} SYNs reached XDP: {after:?}");
    assert!(tether.flows().is_empty(), "SYNs must create no flow state");
}

/// Sends `count` SYNs to the VIP from spoofed addresses in 198.18.128.0/17
/// (inside the test range), through a raw IP socket; returns how many went out.
fn send_spoofed_syns(count: u32) -> u32 {
    // SAFETY: plain socket syscalls on a descriptor we own and close.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let dst = SocketAddrV4::new(VIP, 0);
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dst.ip().octets()) },
        sin_zero: [0; 8],
    };
    let mut sent = 0;
    for i in 0..count {
        let src = Ipv4Addr::new(198, 18, 128 + ((i >> 8) % 128) as u8, i as u8);
        let ip = V4::new(src, VIP, IPPROTO_TCP);
        let mut seg = TcpSeg::syn(1024 + (i % 60_000) as u16, 443);
        seg.seq = i.wrapping_mul(2_654_435_761);
        let packet = ipv4(&ip, &tcp(&seg, ip.pseudo()));
        // SAFETY: valid buffer and address for the duration of the call.
        let n = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n == packet.len() as isize {
            sent += 1;
        }
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    sent
}
