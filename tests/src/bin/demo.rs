//! `cargo xtask demo`: tether in network namespaces with real TLS backends.
//!
//! Builds the two-armed topology (one client, three backends: two rustls, one
//! `openssl s_server`), starts the daemon on the balancer, shows that the host's
//! own traffic still flows through it, sends SYNs to the VIP, and prints what
//! `tether status` counted. Everything is torn down at the end, also on error.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use lb_common::reason;
use tether_tests::{
    tether::{Tether, tether_bin},
    tls::{TlsBackend, openssl_whoami, rustls_whoami},
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_ADDR, LB_CLIENT_IF, Topology, VIP},
};

fn main() -> anyhow::Result<()> {
    println!("== tether demo ==");
    let topo = Topology::two_armed(1, 3);
    println!("namespaces: {}", topo.namespaces().join(" "));
    println!("client   c0  {}  (routes 198.18.100.0/24 and 198.19.0.0/24 via the balancer)", topo.clients[0].addr);
    println!(
        "balancer lb  {LB_CLIENT_IF} {LB_CLIENT_ADDR}/24 (clients), {LB_BACKEND_IF} {LB_BACKEND_ADDR}/24 (backends)"
    );
    let mut backends = Vec::new();
    for (i, b) in topo.backends.iter().enumerate() {
        let addr = SocketAddr::new(b.addr.into(), 443);
        let name = format!("b{i}");
        let server =
            if i == 2 { TlsBackend::openssl(&b.ns, addr, &name) } else { TlsBackend::rustls(&b.ns, addr, &name) };
        println!("backend  {name}  {addr}  ({})", if i == 2 { "openssl s_server" } else { "rustls" });
        backends.push(server);
    }

    let config = demo_config(&topo);
    let tether = Tether::start(&topo.lb, &config);
    println!("\ntether started in lb, config:\n{}", indent(&config));
    for line in tether.log().lines().filter(|l| l.contains("attached") || l.contains("serving VIP")) {
        println!("  log: {}", line.split_once("lb_user").map_or(line, |(_, rest)| rest));
    }

    println!("\nhost traffic through the attached XDP program:");
    let ping = topo.clients[0]
        .ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-q", &LB_CLIENT_ADDR.to_string()])
        .output()?;
    println!("  ping {LB_CLIENT_ADDR}: {}", if ping.status.success() { "ok" } else { "FAILED" });
    for (i, b) in topo.backends.iter().enumerate() {
        let addr = SocketAddr::new(b.addr.into(), 443);
        let answer =
            if i == 2 { openssl_whoami(&topo.clients[0].ns, addr) } else { rustls_whoami(&topo.clients[0].ns, addr) };
        println!("  TLS GET /whoami to {addr} (routed by lb): {}", answer.unwrap_or_else(|e| format!("FAILED: {e:#}")));
    }

    println!("\n3 connection attempts to the VIP {VIP}:443:");
    let before = tether.counters();
    for _ in 0..3 {
        let _ = topo.clients[0]
            .ns
            .enter(|| TcpStream::connect_timeout(&SocketAddr::new(VIP.into(), 443), Duration::from_millis(300)));
    }
    let after = tether.counters();
    println!(
        "  vip_syn counted {} SYNs; delayed binding and splicing (issue 3) will answer them",
        after.get(reason::VIP_SYN) - before.get(reason::VIP_SYN)
    );

    println!("\n$ tether status");
    let config_path = std::env::temp_dir().join(format!("{}-demo.toml", topo.prefix));
    std::fs::write(&config_path, &config)?;
    let status = std::process::Command::new(tether_bin()).args(["status", "--config"]).arg(&config_path).output()?;
    let _ = std::fs::remove_file(&config_path);
    print!("{}", indent(&String::from_utf8_lossy(&status.stdout)));
    drop(tether);
    drop(backends);
    println!("\nstopped tether, removed {} namespaces", topo.namespaces().len());
    Ok(())
}

fn demo_config(topo: &Topology) -> String {
    let backends = topo.backends_toml(443);
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = 443\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\n{backends}",
        topo.pin_path()
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
