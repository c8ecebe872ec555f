//! Golden packets for `tcp` VIPs: full NAT both ways, next hops from the
//! kernel's tables, the flow table's life, source ports. The program runs with
//! BPF_PROG_TEST_RUN inside a namespace whose routes and (permanent) neighbour
//! entries make `bpf_fib_lookup` answer; maps are filled by the daemon's own
//! loader from a TOML config. Every output frame is compared byte for byte with
//! one built from scratch, so its checksums are checked against a full
//! recomputation.

use std::{collections::HashSet, net::Ipv4Addr};

use lb_common::{Flow, FlowKey, NextHop, maps::FlowDirection, reason};
use tether_tests::{
    dataplane::{TestDataplane, XDP_DROP, XDP_REDIRECT, XDP_TX},
    fibnet::{BACKEND, BACKEND_MAC, BACKEND6, CLIENT, CLIENT_MAC, CLIENT6, Net, SNAT, SNAT6},
    packet::*,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
/// A backend on a connected network whose MAC nobody resolved.
const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 99);
/// A backend no route leads to.
const UNROUTABLE: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const PORT: u16 = 7;
const VIP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 2, 0, 0x100, 0, 0, 0, 0x100);

fn config(snat_ports: &str) -> String {
    format!(
        r#"
[daemon]
interfaces = ["be"]
snat_ports = "{snat_ports}"

[[vip]]
name = "echo"
address = "{VIP}"
port = {PORT}
protocol = "tcp"
farm = "echo"
snat = "{SNAT}"

[[vip]]
name = "nobody"
address = "198.18.100.101"
port = {PORT}
protocol = "tcp"
farm = "nobody"
snat = "{SNAT}"

[[vip]]
name = "unresolved"
address = "198.18.100.102"
port = {PORT}
protocol = "tcp"
farm = "unresolved"
snat = "{SNAT}"

[[vip]]
name = "unroutable"
address = "198.18.100.103"
port = {PORT}
protocol = "tcp"
farm = "unroutable"
snat = "{SNAT}"

[[vip]]
name = "echo6"
address = "{VIP6}"
port = {PORT}
protocol = "tcp"
farm = "echo6"
snat = "{SNAT6}"

[[farm]]
name = "echo"
algorithm = "maglev"
[[farm.backend]]
name = "b1"
address = "{BACKEND}:{PORT}"

[[farm]]
name = "echo6"
[[farm.backend]]
name = "b1"
address = "[{BACKEND6}]:{PORT}"

[[farm]]
name = "nobody"
[[farm.backend]]
name = "off"
address = "{BACKEND}:{PORT}"
state = "disabled"

[[farm]]
name = "unresolved"
[[farm.backend]]
name = "u"
address = "{UNRESOLVED}:{PORT}"

[[farm]]
name = "unroutable"
[[farm.backend]]
name = "r"
address = "{UNROUTABLE}:{PORT}"
"#
    )
}

fn dataplane(snat_ports: &str) -> TestDataplane {
    TestDataplane::new(&config(snat_ports))
}

fn client_segment(src_port: u16, flags: u8) -> TcpSeg {
    let mut seg = TcpSeg::syn(src_port, PORT).with_flags(flags);
    // MSS 1460, SACK permitted, timestamps, window scale 7: a Linux SYN's
    // options, which full NAT must leave untouched.
    seg.options = vec![2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
    if flags & TCP_SYN == 0 {
        seg.ack = 5_000;
        seg.payload = b"ping".to_vec();
    }
    seg
}

fn from_client(seg: &TcpSeg, vip: Ipv4Addr) -> Vec<u8> {
    frame([0x02, 0, 0, 0, 0, 0x01], CLIENT_MAC, CLIENT, vip, seg)
}

/// The source port the data path chose towards the backend for `client_port`,
/// read from the flow table's backend -> client entry.
fn snat_port(dp: &TestDataplane, client_port: u16) -> u16 {
    dp.flows()
        .into_iter()
        .find(|(k, f)| {
            f.direction == FlowDirection::ToClient as u8 && u16::from_be(f.new_dport_be) == client_port && k.family == 4
        })
        .map(|(k, _)| u16::from_be(k.dport_be))
        .expect("a backend -> client entry for the connection")
}

#[test]
fn a_connection_through_a_tcp_vip_is_natted_both_ways() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("10000-65535");
        let syn = client_segment(40_000, TCP_SYN);
        let (action, out) = dp.expect(&from_client(&syn, VIP), reason::NEW_FLOW);
        assert_eq!(action, XDP_REDIRECT, "the backend side is another interface");
        assert_eq!(dp.flows().len(), 2, "a new connection has two entries");
        let sp = snat_port(&dp, 40_000);
        assert!((10_000..=65_535).contains(&sp));
        let mut to_backend = syn.clone();
        to_backend.src_port = sp;
        assert_eq!(
            out,
            frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &to_backend),
            "SYN as the backend must see it"
        );

        // The backend answers: back to the client, from the VIP.
        let mut syn_ack = TcpSeg::syn(PORT, sp).with_flags(TCP_SYN | TCP_ACK);
        syn_ack.ack = syn.seq + 1;
        let (action, out) = dp.expect(&frame([0; 6], BACKEND_MAC, BACKEND, SNAT, &syn_ack), reason::FWD_TO_CLIENT);
        assert_eq!(action, XDP_REDIRECT);
        let mut to_client = syn_ack.clone();
        to_client.src_port = PORT;
        to_client.dst_port = 40_000;
        assert_eq!(
            out,
            frame(CLIENT_MAC, net.client_side_mac, VIP, CLIENT, &to_client),
            "SYN-ACK as the client must see it"
        );

        // Data from the client follows the same entry.
        let data = client_segment(40_000, TCP_ACK | TCP_PSH);
        let (_, out) = dp.expect(&from_client(&data, VIP), reason::FWD_TO_BACKEND);
        let mut expected = data.clone();
        expected.src_port = sp;
        assert_eq!(out, frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &expected));

        // A client RST is forwarded and ends the connection in the table.
        let rst = client_segment(40_000, TCP_RST | TCP_ACK);
        let (action, _) = dp.expect(&from_client(&rst, VIP), reason::FWD_TO_BACKEND);
        assert_eq!(action, XDP_REDIRECT);
        assert!(dp.flows().is_empty(), "RST must remove both entries: {:?}", dp.flows());
    });
}

/// Established packets skip the FIB lookup: the entry keeps its answer and
/// forgets it when `last_seen_ns` is refreshed (about once a second), so a
/// neighbour change is seen within a second, not never.
#[test]
fn an_established_flow_keeps_its_next_hop_and_asks_again_after_a_second() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = dataplane("10000-65535");
        dp.expect(&from_client(&client_segment(40_010, TCP_SYN), VIP), reason::NEW_FLOW);
        let sp = snat_port(&dp, 40_010);
        let data = from_client(&client_segment(40_010, TCP_ACK | TCP_PSH), VIP);
        let expected_with = |mac: [u8; 6]| {
            let mut seg = client_segment(40_010, TCP_ACK | TCP_PSH);
            seg.src_port = sp;
            frame(mac, net.backend_side_mac, SNAT, BACKEND, &seg)
        };
        let to_backend = |dp: &TestDataplane| {
            let flows = dp.flows();
            flows.into_iter().find(|(_, f)| f.direction == FlowDirection::ToBackend as u8).expect("an entry")
        };

        // The first packet after the SYN asks the FIB and keeps the answer.
        let (_, out) = dp.expect(&data, reason::FWD_TO_BACKEND);
        assert_eq!(out, expected_with(BACKEND_MAC));
        let be = ifindex("be");
        let (key, kept) = to_backend(&dp);
        assert_eq!(kept.next_hop, NextHop { ifindex: be, dmac: BACKEND_MAC, smac: net.backend_side_mac });

        // The backend's MAC changes. Within the second the kept answer is
        // used: the old MAC goes out (what proves the lookup is skipped).
        let new_mac = [0x02, 0, 0, 0, 0, 0x22];
        net.ns.ip(&format!("neigh replace {BACKEND} lladdr 02:00:00:00:00:22 dev be nud permanent"));
        // XDP reads the clock once a tick (`Flow::seen_tick`); an entry
        // marked with an earlier tick makes this packet read it, so what is
        // checked is the refresh rule, not whether the tick moved on.
        let mut entry = kept;
        entry.seen_tick = kept.seen_tick.wrapping_sub(1);
        entry.last_seen_ns = lb_user::loader::monotonic_ns() - 100_000_000;
        write_flow(&mut dp, &key, &entry);
        let (_, out) = dp.expect(&data, reason::FWD_TO_BACKEND);
        assert_eq!(out, expected_with(BACKEND_MAC), "a kept next hop must be used until the refresh");

        // A second later the entry is refreshed, the FIB asked again.
        entry.last_seen_ns = lb_user::loader::monotonic_ns() - 2_000_000_000;
        write_flow(&mut dp, &key, &entry);
        let (_, out) = dp.expect(&data, reason::FWD_TO_BACKEND);
        assert_eq!(out, expected_with(new_mac));
        assert_eq!(to_backend(&dp).1.next_hop.dmac, new_mac);
    });
}

fn ifindex(dev: &str) -> u32 {
    let name = std::ffi::CString::new(dev).expect("no NUL");
    // SAFETY: a valid C string; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {dev} in this namespace");
    index
}

fn write_flow(dp: &mut TestDataplane, key: &FlowKey, flow: &Flow) {
    let mut tables = lb_user::flows::of_mut(&mut dp.ebpf).expect("the flow tables");
    tables.insert(key, *flow, 0).expect("write the entry");
}

#[test]
fn a_retransmitted_syn_reuses_its_flow() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("10000-65535");
        let syn = from_client(&client_segment(40_001, TCP_SYN), VIP);
        let (_, first) = dp.expect(&syn, reason::NEW_FLOW);
        let (_, again) = dp.expect(&syn, reason::FWD_TO_BACKEND);
        assert_eq!(first, again, "the retransmission goes to the same backend from the same port");
        assert_eq!(dp.flows().len(), 2);
    });
}

#[test]
fn packets_that_cannot_be_forwarded_are_dropped_and_counted() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("10000-65535");
        // Mid-connection segment that belongs to no flow (e.g. after expiry).
        let (action, _) = dp.expect(&from_client(&client_segment(40_002, TCP_ACK), VIP), reason::DROP_NO_FLOW);
        assert_eq!(action, XDP_DROP);
        // A farm whose only backend is disabled.
        let vip = Ipv4Addr::new(198, 18, 100, 101);
        let (action, _) = dp.expect(&from_client(&client_segment(40_003, TCP_SYN), vip), reason::DROP_NO_BACKEND);
        assert_eq!(action, XDP_DROP);
        // A backend whose MAC the kernel does not know yet.
        let vip = Ipv4Addr::new(198, 18, 100, 102);
        let (action, _) = dp.expect(&from_client(&client_segment(40_004, TCP_SYN), vip), reason::DROP_NO_NEIGH);
        assert_eq!(action, XDP_DROP);
        // A backend no route leads to.
        let vip = Ipv4Addr::new(198, 18, 100, 103);
        let (action, _) = dp.expect(&from_client(&client_segment(40_005, TCP_SYN), vip), reason::DROP_NO_ROUTE);
        assert_eq!(action, XDP_DROP);
    });
}

#[test]
fn an_exhausted_port_range_drops_new_syns_and_says_so() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("20000-20003");
        let mut ports = HashSet::new();
        for client_port in 41_000..41_004 {
            dp.expect(&from_client(&client_segment(client_port, TCP_SYN), VIP), reason::NEW_FLOW);
            ports.insert(snat_port(&dp, client_port));
        }
        assert_eq!(ports, (20_000..=20_003).collect(), "four connections take the four ports");
        let (action, _) = dp.expect(&from_client(&client_segment(41_004, TCP_SYN), VIP), reason::DROP_PORTS_EXHAUSTED);
        assert_eq!(action, XDP_DROP);
        assert_eq!(dp.flows().len(), 8, "the refused SYN left no entry");
        // A connection that ends frees its port for the next client.
        dp.run(&from_client(&client_segment(41_000, TCP_RST | TCP_ACK), VIP));
        dp.expect(&from_client(&client_segment(41_004, TCP_SYN), VIP), reason::NEW_FLOW);
    });
}

#[test]
fn fifty_thousand_concurrent_connections_to_one_backend_get_distinct_ports() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("10000-65535");
        const CONNECTIONS: u32 = 50_000;
        for i in 0..CONNECTIONS {
            // Distinct clients: 250 addresses x 200 ports.
            let client = Ipv4Addr::new(198, 18, 1 + (i / 200 / 250) as u8, (i / 200 % 250) as u8 + 1);
            let seg = client_segment(30_000 + (i % 200) as u16, TCP_SYN);
            let (action, _) = dp.run(&frame([0x02, 0, 0, 0, 0, 1], CLIENT_MAC, client, VIP, &seg));
            assert_ne!(action, XDP_DROP, "connection {i} refused: {:?}", dp.counters());
        }
        let c = dp.counters();
        assert_eq!(c.get(reason::NEW_FLOW), u64::from(CONNECTIONS), "{c:?}");
        assert_eq!(c.get(reason::DROP_PORTS_EXHAUSTED), 0);
        let flows = dp.flows();
        assert_eq!(flows.len(), 2 * CONNECTIONS as usize);
        let ports: HashSet<u16> = flows
            .iter()
            .filter(|(_, f)| f.direction == FlowDirection::ToClient as u8)
            .map(|(k, _)| u16::from_be(k.dport_be))
            .collect();
        assert_eq!(ports.len(), CONNECTIONS as usize, "every connection has its own source port");

        // The sweeper's batched read sees exactly what the per-entry iterator sees.
        let batched: std::collections::HashMap<lb_common::FlowKey, lb_common::Flow> =
            lb_user::flows::entries(&dp.ebpf).expect("batched lookup").into_iter().collect();
        let iterated: std::collections::HashMap<lb_common::FlowKey, lb_common::Flow> = flows.into_iter().collect();
        assert_eq!(batched.len(), 2 * CONNECTIONS as usize);
        assert!(batched == iterated, "batched and per-entry reads of the flow table differ");
    });
}

fn frame6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    seg: &TcpSeg,
) -> Vec<u8> {
    let l4 = tcp(seg, Pseudo::V6(src, dst));
    ethernet_between(dst_mac, src_mac, ETH_P_IPV6, None, &ipv6(src, dst, &[], IPPROTO_TCP, &l4))
}

#[test]
fn an_ipv6_connection_through_a_tcp_vip_is_natted_both_ways() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = dataplane("10000-65535");
        let syn = client_segment(40_000, TCP_SYN);
        let (action, out) =
            dp.expect(&frame6([0x02, 0, 0, 0, 0, 1], CLIENT_MAC, CLIENT6, VIP6, &syn), reason::NEW_FLOW);
        assert_eq!(action, XDP_REDIRECT);
        // Only entries of the IPv6 table read back with family 6 (the IPv4
        // table's short keys carry none).
        let families: Vec<u8> = dp.flows().iter().map(|(k, _)| k.family).collect();
        assert_eq!(families, [6, 6], "both entries of the connection are in the IPv6 table");
        let sp = dp
            .flows()
            .into_iter()
            .find(|(k, f)| k.family == 6 && f.direction == FlowDirection::ToClient as u8)
            .map(|(k, _)| u16::from_be(k.dport_be))
            .expect("an IPv6 backend -> client entry");
        let mut to_backend = syn.clone();
        to_backend.src_port = sp;
        assert_eq!(
            out,
            frame6(BACKEND_MAC, net.backend_side_mac, SNAT6, BACKEND6, &to_backend),
            "SYN as the backend must see it"
        );

        let mut syn_ack = TcpSeg::syn(PORT, sp).with_flags(TCP_SYN | TCP_ACK);
        syn_ack.ack = syn.seq + 1;
        let (action, out) = dp.expect(&frame6([0; 6], BACKEND_MAC, BACKEND6, SNAT6, &syn_ack), reason::FWD_TO_CLIENT);
        assert_eq!(action, XDP_REDIRECT);
        let mut to_client = syn_ack.clone();
        to_client.src_port = PORT;
        to_client.dst_port = 40_000;
        assert_eq!(
            out,
            frame6(CLIENT_MAC, net.client_side_mac, VIP6, CLIENT6, &to_client),
            "SYN-ACK as the client must see it"
        );
    });
}

/// A connection of a failed backend (`flow_flags::RESET`, as the daemon
/// marks them) over IPv6: the client's next segment is answered with an RST
/// from the VIP at the sequence number it expects, acknowledging its data,
/// and both entries go.
#[test]
fn an_ipv6_client_of_a_failed_backend_gets_an_rst() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = dataplane("10000-65535");
        let lb_mac = [0x02, 0, 0, 0, 0, 1];
        let syn = client_segment(40_000, TCP_SYN);
        dp.expect(&frame6(lb_mac, CLIENT_MAC, CLIENT6, VIP6, &syn), reason::NEW_FLOW);
        let entries = dp.flows();
        assert_eq!(entries.len(), 2);
        let mut tables = lb_user::flows::of_mut(&mut dp.ebpf).expect("the flow tables");
        for (key, mut flow) in entries {
            flow.flags |= lb_common::maps::flow_flags::RESET;
            tables.insert(&key, flow, 0).expect("mark");
        }

        let data = client_segment(40_000, TCP_ACK | TCP_PSH);
        let (action, out) = dp.expect(&frame6(lb_mac, CLIENT_MAC, CLIENT6, VIP6, &data), reason::RESET_BACKEND_FAILED);
        assert_eq!(action, XDP_TX, "the RST goes back out of the interface it came in on");
        let rst = TcpSeg {
            src_port: PORT,
            dst_port: 40_000,
            seq: data.ack,
            ack: data.seq + data.payload.len() as u32,
            flags: TCP_RST | TCP_ACK,
            window: 0,
            options: Vec::new(),
            payload: Vec::new(),
        };
        assert_eq!(out, frame6(CLIENT_MAC, lb_mac, VIP6, CLIENT6, &rst), "the RST, byte for byte");
        assert!(dp.flows().is_empty(), "nothing is kept for a reset client");
    });
}

/// The daemon's sweep removes an expired connection's two entries in one
/// pass, though each names the other (both come up for removal twice).
#[test]
fn a_sweep_removes_both_entries_of_an_expired_connection() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = dataplane("10000-65535");
        for port in [40_000, 40_001] {
            dp.expect(&from_client(&client_segment(port, TCP_SYN), VIP), reason::NEW_FLOW);
        }
        assert_eq!(dp.flows().len(), 4);
        let none = std::time::Duration::ZERO;
        let timeouts = lb_user::config::Timeouts { connect: none, idle: none, half_open: none, closing: none };
        // The coarse clock's tick: make sure "now" is past the entries' times.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let sweep = lb_user::loader::sweep(&mut dp.ebpf, &timeouts).expect("the sweep succeeds");
        assert_eq!(sweep.removed, 4);
        assert!(dp.flows().is_empty(), "{:?}", dp.flows());
    });
}
