//! Golden packets: frames in, through the real XDP program with
//! BPF_PROG_TEST_RUN, and the action, output bytes and counters checked.
//! Each test loads its own copy of the program (maps filled by the daemon's
//! loader), so counters start at zero.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::reason;
use tether_tests::{
    dataplane::{TestDataplane, XDP_DROP, XDP_TX},
    packet::*,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

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

fn harness() -> TestDataplane {
    TestDataplane::new(CONFIG)
}

fn syn_to(dst: Ipv4Addr, port: u16) -> Vec<u8> {
    tcp_v4(CLIENT, dst, &TcpSeg::syn(40_000, port))
}

#[test]
fn non_ip_frames_pass() {
    let h = harness();
    h.expect_pass(&arp_request(CLIENT, Ipv4Addr::new(198, 18, 0, 1)), reason::PASS_NOT_IP);
    // An Ethernet header and nothing else.
    h.expect_pass(&ethernet(ETH_P_IPV4, None, &[])[..14], reason::PASS_TRUNCATED);
}

#[test]
fn truncated_headers_pass() {
    let h = harness();
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
    let h = harness();
    let mut frame = syn_to(VIP, 443);
    frame[14] = 0x44; // IHL 4: shorter than the fixed header
    h.expect_pass(&frame, reason::PASS_MALFORMED);
    let mut frame = syn_to(VIP, 443);
    frame[14 + 20 + 12] = 0x40; // TCP data offset 4 words
    h.expect_pass(&frame, reason::PASS_MALFORMED);
}

#[test]
fn ipv4_options_are_skipped_to_find_the_ports() {
    let h = harness();
    let mut ip = V4::new(CLIENT, VIP, IPPROTO_TCP);
    ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let syn = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &tcp(&TcpSeg::syn(40_000, 443), ip.pseudo())));
    let (action, out) = h.expect(&syn, reason::VIP_SYN);
    assert_eq!(action, XDP_TX, "a SYN to the VIP, found past the options, is answered");
    assert!(checksums_ok_v4(&out, 14));
    let other_port = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &tcp(&TcpSeg::syn(40_000, 8443), ip.pseudo())));
    h.expect_pass(&other_port, reason::PASS_NOT_VIP);
    // Options longer than the frame: the TCP header is not there.
    ip.options = vec![1; 40];
    let cut = ethernet(ETH_P_IPV4, None, &ipv4(&ip, &[0; 8]));
    h.expect_pass(&cut, reason::PASS_TRUNCATED);
}

#[test]
fn fragments_pass() {
    let h = harness();
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
    let h = harness();
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

/// A Linux client's SYN: MSS 1460, SACK permitted, timestamps, window scale 7.
fn linux_syn(src_port: u16) -> TcpSeg {
    let mut seg = TcpSeg::syn(src_port, 443);
    seg.seq = 0x1000_0000;
    seg.options = vec![2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7];
    seg
}

/// The TCP header of an Ethernet + IPv4 (no options) frame.
fn tcp_of(frame: &[u8]) -> &[u8] {
    &frame[34..]
}

#[test]
fn a_syn_to_a_tls_vip_is_answered_with_a_syn_cookie() {
    let h = harness();
    let syn = linux_syn(40_000);
    let frame = tcp_v4(CLIENT, VIP, &syn);
    let (action, out) = h.expect(&frame, reason::VIP_SYN);
    assert_eq!(action, XDP_TX);
    assert_eq!(out.len(), frame.len(), "the SYN-ACK keeps the SYN's size");
    assert_eq!(&out[0..6], &frame[6..12], "back to the client's MAC");
    assert_eq!(&out[6..12], &frame[0..6], "from the MAC the SYN was sent to");
    assert_eq!(&out[26..30], &VIP.octets(), "from the VIP");
    assert_eq!(&out[30..34], &CLIENT.octets(), "to the client");
    assert_eq!(out[22], 64, "TTL");
    assert!(checksums_ok_v4(&out, 14), "IP and TCP checksums must verify");
    let t = tcp_of(&out);
    assert_eq!(u16::from_be_bytes([t[0], t[1]]), 443);
    assert_eq!(u16::from_be_bytes([t[2], t[3]]), 40_000);
    assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), syn.seq + 1, "acknowledges the SYN");
    assert_eq!(t[13], TCP_SYN | TCP_ACK);
    assert_eq!(t[12] >> 4, 10, "same header length");
    let o = lb_common::tcpopt::parse_syn(&header_buf(t), 40);
    assert!(o.mss > 0 && o.mss <= 1460, "MSS from the cookie table, at most the client's: {}", o.mss);
    assert_eq!(o.sack_permitted, 1);
    assert_eq!(o.wscale, lb_common::tcpopt::OUR_WSCALE);
    assert_eq!(o.has_timestamp, 1);
    assert_eq!(&t[32..36], &[0x00, 0x00, 0x12, 0x34], "TSecr echoes the client's TSval");
    let carried = lb_common::tcpopt::decode_tsecr(o.tsval);
    assert_eq!((carried.wscale, carried.sack_permitted), (Some(7), true), "our TSval carries the client's choices");
    assert_eq!(
        lb_common::tcpopt::COOKIE_MSS[usize::from(carried.mss_index)],
        o.mss,
        "and the index of the MSS the cookie stands for"
    );

    // The client's ACK completes the handshake; nothing is stored.
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let mut ack = TcpSeg::syn(40_000, 443).with_flags(TCP_ACK);
    ack.seq = syn.seq + 1;
    ack.ack = cookie.wrapping_add(1);
    let (action, _) = h.expect(&tcp_v4(CLIENT, VIP, &ack), reason::COOKIE_ACK);
    assert_eq!(action, XDP_DROP);
    // First data that is the start of a TLS record header: held until the
    // rest of the hello comes (no backend, no flow yet).
    let mut hello = ack.clone();
    hello.flags = TCP_ACK | TCP_PSH;
    hello.payload = vec![0x16, 0x03];
    let (action, _) = h.expect(&tcp_v4(CLIENT, VIP, &hello), reason::TLS_HELLO_PART);
    assert_eq!(action, XDP_DROP);
    assert_eq!((h.pending(), h.flows().len()), (1, 0));
    // A forged acknowledgement number.
    ack.ack = cookie.wrapping_add(2);
    let (action, _) = h.expect(&tcp_v4(CLIENT, VIP, &ack), reason::DROP_BAD_COOKIE);
    assert_eq!(action, XDP_DROP);
    // The cookie is bound to the client's address and port.
    ack.ack = cookie.wrapping_add(1);
    ack.src_port = 40_001;
    h.expect(&tcp_v4(CLIENT, VIP, &ack), reason::DROP_BAD_COOKIE);
}

/// A TCP header copied into the parser's buffer.
fn header_buf(t: &[u8]) -> lb_common::tcpopt::HeaderBuf {
    let mut b = [0u8; 64];
    let n = usize::from(t[12] >> 4) * 4;
    b[..n].copy_from_slice(&t[..n]);
    b
}

#[test]
fn stray_segments_to_a_tls_vip_are_dropped() {
    let h = harness();
    for flags in [TCP_RST, TCP_RST | TCP_ACK, TCP_SYN | TCP_ACK, TCP_FIN, TCP_FIN | TCP_ACK] {
        let (action, _) =
            h.expect(&tcp_v4(CLIENT, VIP, &TcpSeg::syn(40_000, 443).with_flags(flags)), reason::VIP_OTHER);
        assert_eq!(action, XDP_DROP, "flags {flags:#x}");
    }
}

#[test]
fn a_syn_without_timestamps_gets_only_an_mss() {
    let h = harness();
    let mut syn = TcpSeg::syn(40_000, 443);
    syn.options = vec![2, 4, 0x05, 0xB4, 1, 3, 3, 7, 1, 1, 4, 2]; // Windows-like: no timestamps
    let (action, out) = h.expect(&tcp_v4(CLIENT, VIP, &syn), reason::VIP_SYN);
    assert_eq!(action, XDP_TX);
    assert!(checksums_ok_v4(&out, 14));
    let t = tcp_of(&out);
    assert_eq!(&t[20..22], &[2, 4], "an MSS option first");
    let mss = u16::from_be_bytes([t[22], t[23]]);
    assert!(mss > 0 && mss <= 1460, "MSS {mss}");
    assert!(t[24..32].iter().all(|b| *b == 1), "no SACK or window scale without timestamps: {:?}", &t[20..32]);
}

#[test]
fn a_syn_with_data_is_answered_without_it() {
    let h = harness();
    let mut syn = linux_syn(40_000);
    syn.payload = b"early data we do not take".to_vec();
    let frame = tcp_v4(CLIENT, VIP, &syn);
    let (action, out) = h.expect(&frame, reason::VIP_SYN);
    assert_eq!(action, XDP_TX);
    assert_eq!(out.len(), frame.len() - syn.payload.len(), "the payload is cut");
    assert_eq!(u16::from_be_bytes([out[16], out[17]]), 20 + 40, "IP total length: headers only");
    assert!(checksums_ok_v4(&out, 14));
    let t = tcp_of(&out);
    assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), syn.seq + 1, "only the SYN is acknowledged");
}

#[test]
fn ipv6_vip_syn_through_extension_headers() {
    let h = harness();
    // SYN cookies are IPv4-only so far: IPv6 TLS VIP traffic is counted and passed.
    let seg = tcp(&TcpSeg::syn(40_000, 443), Pseudo::V6(CLIENT6, VIP6));
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &ipv6(CLIENT6, VIP6, &[], IPPROTO_TCP, &seg)), reason::PASS_TLS_IPV6);
    let hop_by_hop = (IPV6_HOP_BY_HOP, vec![1, 4, 0, 0, 0, 0]); // PadN
    let with_ext = ipv6(CLIENT6, VIP6, std::slice::from_ref(&hop_by_hop), IPPROTO_TCP, &seg);
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &with_ext), reason::PASS_TLS_IPV6);
    let too_many = ipv6(CLIENT6, VIP6, &vec![hop_by_hop; 5], IPPROTO_TCP, &seg);
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &too_many), reason::PASS_IPV6_EXT_LIMIT);
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let not_vip = tcp(&TcpSeg::syn(40_000, 443), Pseudo::V6(CLIENT6, other));
    h.expect_pass(&ethernet(ETH_P_IPV6, None, &ipv6(CLIENT6, other, &[], IPPROTO_TCP, &not_vip)), reason::PASS_NOT_VIP);
}
