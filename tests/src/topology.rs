//! A two-armed test network, every host in its own namespace:
//!
//! ```text
//!  client c0 ─┐                        ┌─ backend b0 198.19.0.11
//!  client c1 ─┤ switch sc (br0)        │
//!  198.18.0.10+  ── eth0 [ lb ] eth1 ── switch sb (br0) ─┤
//!             198.18.0.1      198.19.0.1               └─ backend b1 198.19.0.12
//! ```
//!
//! Clients reach the VIPs (198.18.100.0/24) and the backend network through the
//! balancer. Two-armed topologies also carry IPv6 (2001:2::/48, the IPv6
//! benchmarking prefix): VIPs in 2001:2:0:100::/64. Each switch is a bridge in its own namespace; every switch port runs
//! an XDP_PASS program, because XDP_TX or a redirect into a veth is dropped
//! unless the peer runs XDP (DESIGN.md §5). Checksum offload is off on every
//! veth, both ways: TX, so XDP sees complete checksums; RX, because a veth with
//! RX offload marks what it receives as already verified, and a checksum the
//! data path got wrong would go unnoticed by the hosts.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::maps::{
    LOSS_PERMILLE_MAP, SYNS_TO_DROP_MAP, XDP_DROP_SYNS_PROGRAM, XDP_LOSSY_PROGRAM, XDP_PASS_PROGRAM,
};

use crate::netns::{Netns, run_checked, unique_prefix};

pub const LB_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LB_BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The first VIP tests use; the whole 198.18.100.0/24 is routed to the balancer.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
pub const VIP_NET: &str = "198.18.100.0/24";
pub const BACKEND_NET: &str = "198.19.0.0/24";
/// Interfaces of the balancer namespace.
pub const LB_CLIENT_IF: &str = "eth0";
pub const LB_BACKEND_IF: &str = "eth1";

// IPv6 twins of the addresses above, from the benchmarking prefix 2001:2::/48
// (RFC 5180): client side 2001:2:0:1::/64, backend side 2001:2:0:2::/64.
pub const LB_CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
pub const LB_BACKEND_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x100, 0, 0, 0, 0x100);
pub const VIP6_NET: &str = "2001:2:0:100::/64";

pub fn client_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x10 + i as u16)
}

pub fn backend_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0x11 + i as u16)
}

pub fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i as u8)
}

pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 11 + i as u8)
}

pub struct Host {
    pub ns: Netns,
    pub addr: Ipv4Addr,
}

pub struct Topology {
    // Field order is drop order: detach the peers' XDP before the namespaces go.
    peer_xdp: Ebpf,
    /// The XDP_PASS attachment of each client's switch port, by client index,
    /// so a test can swap it for a lossy one.
    client_port_links: Vec<Option<XdpLinkId>>,
    pub prefix: String,
    pub lb: Netns,
    pub clients: Vec<Host>,
    pub backends: Vec<Host>,
    switches: Vec<Netns>,
}

impl Topology {
    pub fn two_armed(clients: usize, backends: usize) -> Topology {
        crate::require_root();
        assert!(clients <= 200 && backends <= 200, "addresses run out past 200 hosts a side");
        let prefix = unique_prefix();
        let ns = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let lb = ns("lb");
        let switch_c = ns("sc");
        let switch_b = ns("sb");
        let clients: Vec<Host> =
            (0..clients).map(|i| Host { ns: ns(&format!("c{i}")), addr: client_addr(i) }).collect();
        let backends: Vec<Host> =
            (0..backends).map(|i| Host { ns: ns(&format!("b{i}")), addr: backend_addr(i) }).collect();

        for sw in [&switch_c, &switch_b] {
            sw.ip("link add br0 type bridge");
            sw.ip("link set br0 up");
        }
        let mut peer_xdp = load_test_programs();
        let pass = pass_program(&mut peer_xdp);

        plug(&lb, LB_CLIENT_IF, &switch_c, "lb", pass);
        plug(&lb, LB_BACKEND_IF, &switch_b, "lb", pass);
        lb.ip(&format!("addr add {LB_CLIENT_ADDR}/24 dev {LB_CLIENT_IF}"));
        lb.ip(&format!("addr add {LB_BACKEND_ADDR}/24 dev {LB_BACKEND_IF}"));
        lb.ip(&format!("-6 addr add {LB_CLIENT_ADDR6}/64 dev {LB_CLIENT_IF} nodad"));
        lb.ip(&format!("-6 addr add {LB_BACKEND_ADDR6}/64 dev {LB_BACKEND_IF} nodad"));
        lb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        lb.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);

        let mut client_port_links = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            client_port_links.push(Some(plug(&c.ns, "eth0", &switch_c, &format!("c{i}"), pass)));
            c.ns.ip(&format!("addr add {}/24 dev eth0", c.addr));
            c.ns.ip(&format!("route add {VIP_NET} via {LB_CLIENT_ADDR}"));
            c.ns.ip(&format!("route add {BACKEND_NET} via {LB_CLIENT_ADDR}"));
            c.ns.ip(&format!("-6 addr add {}/64 dev eth0 nodad", client_addr6(i)));
            c.ns.ip(&format!("-6 route add {VIP6_NET} via {LB_CLIENT_ADDR6}"));
        }
        for (i, b) in backends.iter().enumerate() {
            plug(&b.ns, "eth0", &switch_b, &format!("b{i}"), pass);
            b.ns.ip(&format!("addr add {}/24 dev eth0", b.addr));
            b.ns.ip(&format!("route add default via {LB_BACKEND_ADDR}"));
            b.ns.ip(&format!("-6 addr add {}/64 dev eth0 nodad", backend_addr6(i)));
            b.ns.ip(&format!("-6 route add default via {LB_BACKEND_ADDR6}"));
        }
        Topology { peer_xdp, client_port_links, prefix, lb, clients, backends, switches: vec![switch_c, switch_b] }
    }

    /// One arm: clients, the balancer and backends on one switch and one subnet
    /// (198.18.0.0/24; backends at .100 and up). Clients route the VIPs via the
    /// balancer; backends answer the balancer's address directly, so everything
    /// tether forwards leaves by the interface it came in on (XDP_TX).
    pub fn one_armed(clients: usize, backends: usize) -> Topology {
        crate::require_root();
        assert!(clients <= 80 && backends <= 100, "addresses run out");
        let prefix = unique_prefix();
        let ns = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let lb = ns("lb");
        let switch = ns("sw");
        let clients: Vec<Host> =
            (0..clients).map(|i| Host { ns: ns(&format!("c{i}")), addr: client_addr(i) }).collect();
        let backends: Vec<Host> = (0..backends)
            .map(|i| Host { ns: ns(&format!("b{i}")), addr: Ipv4Addr::new(198, 18, 0, 100 + i as u8) })
            .collect();
        switch.ip("link add br0 type bridge");
        switch.ip("link set br0 up");
        let mut peer_xdp = load_test_programs();
        let pass = pass_program(&mut peer_xdp);
        plug(&lb, LB_CLIENT_IF, &switch, "lb", pass);
        lb.ip(&format!("addr add {LB_CLIENT_ADDR}/24 dev {LB_CLIENT_IF}"));
        lb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let mut client_port_links = Vec::new();
        for (role, hosts) in [("c", &clients), ("b", &backends)] {
            for (i, h) in hosts.iter().enumerate() {
                let link = plug(&h.ns, "eth0", &switch, &format!("{role}{i}"), pass);
                if role == "c" {
                    client_port_links.push(Some(link));
                }
                h.ns.ip(&format!("addr add {}/24 dev eth0", h.addr));
            }
        }
        for c in &clients {
            c.ns.ip(&format!("route add {VIP_NET} via {LB_CLIENT_ADDR}"));
        }
        Topology { peer_xdp, client_port_links, prefix, lb, clients, backends, switches: vec![switch] }
    }

    /// Makes client `i`'s link drop `permille` per mille of frames at random in
    /// each direction: the lossy program replaces XDP_PASS on the client's
    /// switch port (frames from the client) and runs on the client's own
    /// interface (frames to it).
    pub fn make_client_link_lossy(&mut self, i: usize, permille: u32) {
        let mut loss: Array<&mut MapData, u32> =
            self.peer_xdp.map_mut(LOSS_PERMILLE_MAP).expect("loss map").try_into().expect("array");
        loss.set(0, permille, 0).expect("set loss");
        let link = self.client_port_links[i].take().expect("client port still runs XDP_PASS");
        pass_program(&mut self.peer_xdp).detach(link).expect("detach XDP_PASS");
        let lossy: &mut Xdp =
            self.peer_xdp.program_mut(XDP_LOSSY_PROGRAM).expect("lossy program").try_into().expect("an XDP program");
        let port = format!("c{i}");
        // The detached link's release can trail the detach by a moment
        // (EBUSY once in a full run), so the attach is retried for a second.
        let mut attempts = 0;
        loop {
            match self.switches[0].enter(|| lossy.attach(&port, XdpMode::Driver).map(|_| ())) {
                Ok(()) => break,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("lossy program on switch port {port}: {e:?}; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("lossy on the switch port: {e:?}"),
            }
        }
        self.clients[i].ns.enter(|| lossy.attach("eth0", XdpMode::Driver).map(|_| ())).expect("lossy on the client");
    }

    /// Backend `i` loses the first `count` SYNs sent to it from source ports
    /// `lowest_port` and up (a test program on its interface, in its receive
    /// direction).
    pub fn drop_first_syns_to_backend(&mut self, i: usize, count: u32, lowest_port: u16) {
        let mut left: Array<&mut MapData, u32> =
            self.peer_xdp.map_mut(SYNS_TO_DROP_MAP).expect("SYN map").try_into().expect("array");
        left.set(0, count, 0).expect("set SYNs to drop");
        left.set(1, u32::from(lowest_port), 0).expect("set the lowest port");
        let program: &mut Xdp = self
            .peer_xdp
            .program_mut(XDP_DROP_SYNS_PROGRAM)
            .expect("SYN-dropping program")
            .try_into()
            .expect("an XDP program");
        self.backends[i]
            .ns
            .enter(|| program.attach("eth0", XdpMode::Driver).map(|_| ()))
            .expect("attach on the backend");
    }

    /// A bpffs directory unique to this topology, for tether's `pin_path`.
    pub fn pin_path(&self) -> String {
        format!("/sys/fs/bpf/{}", self.prefix)
    }

    /// `[[farm.backend]]` tables for every backend (named b0, b1, ...) on `port`,
    /// to append to a `[[farm]]` in a test config.
    pub fn backends_toml(&self, port: u16) -> String {
        self.backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("\n[[farm.backend]]\nname = \"b{i}\"\naddress = \"{}:{port}\"\n", b.addr))
            .collect()
    }

    /// Names of all namespaces, for messages.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut names = vec![self.lb.name()];
        names.extend(self.switches.iter().map(Netns::name));
        names.extend(self.clients.iter().chain(&self.backends).map(|h| h.ns.name()));
        names
    }
}

/// The test programs (XDP_PASS for switch ports, the lossy one), loaded once
/// per topology.
fn load_test_programs() -> Ebpf {
    let mut ebpf = Ebpf::load(lb_user::TEST_OBJECT).expect("load the test XDP object");
    pass_program(&mut ebpf).load().expect("load the pass program");
    let lossy: &mut Xdp = ebpf.program_mut(XDP_LOSSY_PROGRAM).expect("lossy program").try_into().expect("xdp");
    lossy.load().expect("load the lossy program");
    let drop_syns: &mut Xdp =
        ebpf.program_mut(XDP_DROP_SYNS_PROGRAM).expect("SYN-dropping program").try_into().expect("xdp");
    drop_syns.load().expect("load the SYN-dropping program");
    ebpf
}

fn pass_program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(XDP_PASS_PROGRAM).expect("pass program").try_into().expect("an XDP program")
}

/// Connects `host`'s interface `ifname` to the bridge of `switch` through a veth
/// whose switch end is `port`, with the switch end running XDP_PASS.
fn plug(host: &Netns, ifname: &str, switch: &Netns, port: &str, pass: &mut Xdp) -> XdpLinkId {
    run_checked(std::process::Command::new("ip").args([
        "-n",
        host.name(),
        "link",
        "add",
        ifname,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        switch.name(),
    ]));
    switch.ip(&format!("link set {port} master br0"));
    for (ns, dev) in [(host, ifname), (switch, port)] {
        ns.run("ethtool", &["-K", dev, "tx", "off", "rx", "off"]);
        ns.ip(&format!("link set {dev} up"));
    }
    switch
        .enter(|| pass.attach(port, XdpMode::Driver))
        .unwrap_or_else(|e| panic!("attach XDP_PASS to {port} in {}: {e}", switch.name()))
}
