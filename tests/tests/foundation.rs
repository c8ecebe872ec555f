//! tether attached in a namespace topology: the host keeps working (ping, TCP to
//! the balancer's own address, TLS routed through it) and SYNs to the VIP are
//! counted under their reason (and answered). Stopping the daemon detaches and unpins.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use lb_common::reason;
use tether_tests::{
    peers::{BackendServer, openssl_whoami, rustls_whoami},
    tether::Tether,
    topology::{LB_BACKEND_IF, LB_CLIENT_ADDR, LB_CLIENT_IF, Topology, VIP},
};

fn config(topo: &Topology, interfaces: &[&str]) -> String {
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
    let backends = topo.backends_toml(443);
    format!(
        r#"
[daemon]
interfaces = [{interfaces}]
xdp_mode = "native"
pin_path = "{pin}"

[[vip]]
name = "web"
address = "{VIP}"
port = 443
farm = "web"
snat = "198.19.0.1"

[[farm]]
name = "web"
{backends}"#,
        interfaces = interfaces.join(", "),
        pin = topo.pin_path(),
    )
}

fn xdp_attached(topo: &Topology, dev: &str) -> bool {
    let out = topo.lb.run("ip", &["-details", "link", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn ping(topo: &Topology, to: &str) -> bool {
    topo.clients[0]
        .ns
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "2", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A TCP echo on the balancer's own address, reached from the client.
fn tcp_to_balancer_works(topo: &Topology) {
    let listener = topo.lb.enter(|| TcpListener::bind((LB_CLIENT_ADDR, 0)).expect("bind in lb"));
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read");
        s.write_all(&buf).expect("echo");
    });
    let echoed = topo.clients[0].ns.enter(|| {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the balancer");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("echo back");
        buf
    });
    server.join().unwrap();
    assert_eq!(&echoed, b"hello");
}

#[test]
fn host_traffic_keeps_working_and_vip_syns_are_counted() {
    let topo = Topology::two_armed(1, 2);
    let b0 = &topo.backends[0];
    let b1 = &topo.backends[1];
    let _rustls = BackendServer::rustls(&b0.ns, SocketAddr::new(b0.addr.into(), 443), "b0");
    let _openssl = BackendServer::openssl(&b1.ns, SocketAddr::new(b1.addr.into(), 443), "b1");

    let mut tether = Tether::start(&topo.lb, &config(&topo, &[LB_CLIENT_IF, LB_BACKEND_IF]));
    assert!(xdp_attached(&topo, LB_CLIENT_IF), "no XDP on {LB_CLIENT_IF}:\n{}", tether.log());
    assert!(xdp_attached(&topo, LB_BACKEND_IF), "no XDP on {LB_BACKEND_IF}");
    assert!(tether.log().contains("mode=\"native\""), "expected native mode on veth:\n{}", tether.log());

    let before = tether.counters();
    assert!(ping(&topo, &LB_CLIENT_ADDR.to_string()), "ping to the balancer failed with tether attached");
    tcp_to_balancer_works(&topo);
    // TLS routed through the balancer to real servers: host forwarding intact.
    assert_eq!(rustls_whoami(&topo.clients[0].ns, SocketAddr::new(b0.addr.into(), 443)).unwrap(), "b0");
    assert_eq!(openssl_whoami(&topo.clients[0].ns, SocketAddr::new(b1.addr.into(), 443)).unwrap(), "b1");
    let after_host = tether.counters();
    assert!(
        after_host.get(reason::PASS_NOT_VIP) >= before.get(reason::PASS_NOT_VIP) + 10,
        "host TCP should be counted as pass_not_vip: {before:?} -> {after_host:?}"
    );
    assert!(after_host.get(reason::PASS_NOT_TCP) >= before.get(reason::PASS_NOT_TCP) + 2, "pings are pass_not_tcp");
    assert_eq!(after_host.get(reason::VIP_SYN), before.get(reason::VIP_SYN), "no VIP traffic was sent yet");

    // A SYN to the (tls) VIP is counted as vip_syn and answered by XDP with a
    // SYN cookie, so the TCP handshake completes.
    let vip = SocketAddr::new(VIP.into(), 443);
    let connected = topo.clients[0].ns.enter(|| TcpStream::connect_timeout(&vip, Duration::from_secs(3)));
    assert!(connected.is_ok(), "handshake with the VIP: {connected:?}");
    let after_vip = tether.counters();
    assert!(
        after_vip.get(reason::VIP_SYN) > after_host.get(reason::VIP_SYN),
        "SYN to the VIP not counted: {after_vip:?}"
    );

    let status = tether.stop();
    assert!(status.success(), "tether exited with {status}:\n{}", tether.log());
    assert!(tether.log().contains("detached"), "{}", tether.log());
    assert!(!xdp_attached(&topo, LB_CLIENT_IF) && !xdp_attached(&topo, LB_BACKEND_IF), "XDP still attached after stop");
    assert!(!tether.instance_dir().exists(), "pins left at {}", tether.instance_dir().display());
    assert!(ping(&topo, &LB_CLIENT_ADDR.to_string()), "ping after detach");
}

#[test]
fn a_missing_interface_fails_cleanly() {
    let topo = Topology::two_armed(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let text = config(&topo, &[LB_CLIENT_IF, "nosuchdev"]).replacen(
        "[daemon]\n",
        &format!("[daemon]\ncontrol_socket = \"{}\"\n", socket.display()),
        1,
    );
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    let out =
        topo.lb.command(tether_tests::tether::tether_bin()).args(["run", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tether should refuse to run");
    assert!(stderr.contains("nosuchdev"), "error should name the interface:\n{stderr}");
    assert!(!xdp_attached(&topo, LB_CLIENT_IF), "the interface attached before the failure must be detached again");
    assert!(!std::path::Path::new(&topo.pin_path()).join("default").exists(), "pins left behind");
    assert!(!socket.exists(), "control socket left behind");
    let _ = std::fs::remove_dir_all(topo.pin_path());
}

#[test]
fn a_second_daemon_for_the_same_instance_is_refused_and_disturbs_nothing() {
    let topo = Topology::two_armed(1, 1);
    let text = config(&topo, &[LB_CLIENT_IF, LB_BACKEND_IF]);
    let first = Tether::start(&topo.lb, &text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, &text).unwrap();
    let out =
        topo.lb.command(tether_tests::tether::tether_bin()).args(["run", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second daemon must not start");
    assert!(
        stderr.contains("is in use: a running tether holds")
            && stderr.contains(&first.instance_dir().display().to_string()),
        "{stderr}"
    );
    // The first daemon is untouched: still attached, counters still readable.
    assert!(xdp_attached(&topo, LB_CLIENT_IF) && xdp_attached(&topo, LB_BACKEND_IF));
    assert!(ping(&topo, &LB_CLIENT_ADDR.to_string()));
    assert!(first.counters().get(reason::PASS_NOT_TCP) > 0, "the first daemon's counters still count");
}
