//! Golden packets: frames in, through the real XDP program with
//! BPF_PROG_TEST_RUN, and the action, output bytes and counters checked.
//! Each test loads its own copy of the program (maps filled by the daemon's
//! loader), so counters start at zero.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{maps as abi, reason};
use lb_user::config::Config;
use tether_tests::packet::*;

const XDP_PASS: u32 = 2;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

struct Harness {
    ebpf: Ebpf,
}

/// One IPv4 and one IPv6 TLS VIP on port 443, loaded by the daemon's loader.
const CONFIG: &str = r#"
[daemon]
interfaces = ["eth0"]

[[vip]]
name = "web"
address = "198.18.100.100"
port = 443
farm = "web"
snat = "198.19.0.1"

[[vip]]
name = "web6"
address = "2001:db8:100::100"
port = 443
farm = "web6"
snat = "2001:db8::1"

[[farm]]
name = "web"
[[farm.backend]]
name = "b1"
address = "198.19.0.11:443"

[[farm]]
name = "web6"
[[farm.backend]]
name = "b1"
address = "[2001:db8::11]:443"
"#;

impl Harness {
    fn new() -> Harness {
        tether_tests::require_root();
        let config = Config::parse(std::path::Path::new("golden.toml"), CONFIG).expect("golden config");
        Harness { ebpf: lb_user::loader::load(&config).expect("the verifier accepts the program") }
    }

    fn counters(&self) -> Vec<u64> {
        let stats: PerCpuArray<&MapData, u64> =
            self.ebpf.map(abi::STATS_MAP).expect("STATS").try_into().expect("array");
        lb_user::stats::read(&stats).expect("read stats").0
    }

    /// Runs one frame; returns the action and the frame as the program left it.
    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self.ebpf.program(abi::XDP_PROGRAM).expect("program").try_into().expect("xdp");
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// The frame must come out untouched with XDP_PASS, counted once under
    /// `expected` and nowhere else.
    fn expect_pass(&self, frame: &[u8], expected: u32) {
        let before = self.counters();
        let (action, out) = self.run(frame);
        let after = self.counters();
        assert_eq!(action, XDP_PASS, "action for a frame expected as {}", reason::name(expected));
        assert_eq!(out, frame, "a passed frame must not be modified");
        for r in 0..reason::COUNT {
            let delta = after[r as usize] - before[r as usize];
            let want = u64::from(r == expected);
            assert_eq!(
                delta,
                want,
                "counter {} moved by {delta}, expected {want} (frame expected as {})",
                reason::name(r),
                reason::name(expected)
            );
        }
    }
}

fn syn_to(dst: Ipv4Addr, port: u16) -> Vec<u8> {
    tcp_v4(CLIENT, dst, &TcpSeg::syn(40_000, port))
}

#[test]
fn non_ip_frames_pass() {
    let h = Harness::new();
    h.expect_pass(&arp_request(CLIENT, Ipv4Addr::new(198, 18, 0, 1)), reason::PASS_NOT_IP);
    // An Ethernet header and nothing else.
    h.expect_pass(&ethernet(ETH_P_IPV4, None, &[])[..14], reason::PASS_TRUNCATED);
}

#[test]
fn truncated_headers_pass() {
    let h = Harness::new();
    let frame = syn_to(VIP, 443);
    h.expect_pass(&frame[..14 + 10], reason::PASS_TRUNCATED); // inside the IPv4 header
    h.expect_pass(&frame[..14 + 20 + 12], reason::PASS_TRUNCATED); // inside the TCP header
    let v6 = ethernet(
        ETH_P_IPV6,
        None,
        &ipv6(CLIENT6, VIP6, &[], IPPROTO_TCP, &tcp(&TcpSeg::syn(1, 443), Pseudo::V6(CLIENT6, VIP6))),
    );
    h.expect_pass(&v6[..14 + 30], reason::PASS_TRUNCATED);
    // A VLAN tag cut short.
    h.expect_pass(&ethernet(ETH_P_IPV4, Some(7), &[])[..16], reason::PASS_TRUNCATED);
}

#[test]
fn malformed_headers_pass() {
    let h = Harness::new();
    let mut frame = syn_to(VIP, 443);
    frame[14] = 0x44; // IHL 4: shorter than the fixed header
    h.expect_pass(&frame, reason::PASS_MALFORMED);
    let mut frame = syn_to(VIP, 443);
    frame[14 + 20 + 12] = 0x40; // TCP data offset 4 words
    h.expect_pass(&frame, reason::PASS_MALFORMED);
}

#[test]
fn ipv4_options_are_skipped_to_find_the_ports() {
    let h = Harness::new();
    let mut ip = V4::new(CLIENT, VIP, IPPROTO_TCP);
    ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let syn = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &tcp(&TcpSeg::syn(40_000, 443), ip.pseudo())));
    h.expect_pass(&syn, reason::VIP_SYN);
    let other_port = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &tcp(&TcpSeg::syn(40_000, 8443), ip.pseudo())));
    h.expect_pass(&other_port, reason::PASS_NOT_VIP);
    // Options longer than the frame: the TCP header is not there.
    ip.options = vec![1; 40];
    let cut = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &[0; 8]));
    h.expect_pass(&cut, reason::PASS_TRUNCATED);
}

#[test]
fn fragments_pass() {
    let h = Harness::new();
    let seg = tcp(&TcpSeg::syn(40_000, 443), Pseudo::V4(CLIENT, VIP));
    let mut first = V4::new(CLIENT, VIP, IPPROTO_TCP);
    first.frag = IPV4_MF;
    h.expect_pass(&ethernet(ETH_P_IPV4, None, &ipv4(&first, &seg)), reason::PASS_FRAGMENT);
    let mut later = V4::new(CLIENT, VIP, IPPROTO_TCP);
    later.frag = 185; // offset 1480 bytes, last fragment
    h.expect_pass(&ethernet(ETH_P_IPV4, None, &ipv4(&later, &seg)), reason::PASS_FRAGMENT);
    let frag_hdr = (IPV6_FRAGMENT, vec![0, 1, 0, 0, 0, 42]);
    let v6 = ipv6(CLIENT6, VIP6, &[frag_hdr], IPPROTO_TCP, &tcp(&TcpSeg::syn(1, 443), Pseudo::V6(CLIENT6, VIP6)));
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &v6), reason::PASS_FRAGMENT);
}

#[test]
fn traffic_that_is_not_for_a_vip_passes() {
    let h = Harness::new();
    h.expect_pass(&syn_to(Ipv4Addr::new(198, 18, 0, 1), 22), reason::PASS_NOT_VIP); // the host's own ssh
    h.expect_pass(&syn_to(VIP, 80), reason::PASS_NOT_VIP); // VIP address, other port
    h.expect_pass(&syn_to(Ipv4Addr::new(198, 18, 100, 101), 443), reason::PASS_NOT_VIP); // other address
    let ip = V4::new(CLIENT, VIP, IPPROTO_UDP);
    h.expect_pass(
        &ethernet(ETH_P_IPV4, None, &ipv4(&ip, &udp(5000, 443, b"quic?", ip.pseudo()))),
        reason::PASS_NOT_TCP,
    );
    let ip = V4::new(CLIENT, VIP, IPPROTO_ICMP);
    h.expect_pass(&ethernet(ETH_P_IPV4, None, &ipv4(&ip, &icmp_echo(1, 1))), reason::PASS_NOT_TCP);
}

#[test]
fn vip_syns_and_other_segments_are_told_apart() {
    let h = Harness::new();
    h.expect_pass(&syn_to(VIP, 443), reason::VIP_SYN);
    let ack = tcp_v4(CLIENT, VIP, &TcpSeg::syn(40_000, 443).with_flags(TCP_ACK));
    h.expect_pass(&ack, reason::VIP_OTHER);
    let syn_ack = tcp_v4(CLIENT, VIP, &TcpSeg::syn(40_000, 443).with_flags(TCP_SYN | TCP_ACK));
    h.expect_pass(&syn_ack, reason::VIP_OTHER);
    let rst = tcp_v4(CLIENT, VIP, &TcpSeg::syn(40_000, 443).with_flags(TCP_RST));
    h.expect_pass(&rst, reason::VIP_OTHER);
}

#[test]
fn vlan_tagged_vip_syn_is_recognised() {
    let h = Harness::new();
    let ip = V4::new(CLIENT, VIP, IPPROTO_TCP);
    let frame = ethernet(ETH_P_IPV4, Some(100), &ipv4(&ip, &tcp(&TcpSeg::syn(40_000, 443), ip.pseudo())));
    h.expect_pass(&frame, reason::VIP_SYN);
}

#[test]
fn ipv6_vip_syn_through_extension_headers() {
    let h = Harness::new();
    let seg = tcp(&TcpSeg::syn(40_000, 443), Pseudo::V6(CLIENT6, VIP6));
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &ipv6(CLIENT6, VIP6, &[], IPPROTO_TCP, &seg)), reason::VIP_SYN);
    let hop_by_hop = (IPV6_HOP_BY_HOP, vec![1, 4, 0, 0, 0, 0]); // PadN
    let with_ext = ipv6(CLIENT6, VIP6, &[hop_by_hop.clone()], IPPROTO_TCP, &seg);
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &with_ext), reason::VIP_SYN);
    let too_many = ipv6(CLIENT6, VIP6, &vec![hop_by_hop; 5], IPPROTO_TCP, &seg);
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &too_many), reason::PASS_IPV6_EXT_LIMIT);
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let not_vip = tcp(&TcpSeg::syn(40_000, 443), Pseudo::V6(CLIENT6, other));
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &ipv6(CLIENT6, other, &[], IPPROTO_TCP, &not_vip)), reason::PASS_NOT_VIP);
}
