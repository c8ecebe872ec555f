//! Golden packets for `tls` VIPs, every step of DESIGN.md §2 that this data
//! path takes: the SYN cookie (1), the handshake's ACK (2), the first data
//! turned into the backend SYN (3), the backend's SYN-ACK turned into our ACK
//! carrying the stash by the tc program (4), established traffic both ways
//! with sequence numbers, timestamps, SACK blocks and windows translated (5),
//! and teardown (7), plus the retransmissions of §2. XDP and tc run with
//! BPF_PROG_TEST_RUN inside a namespace where `bpf_fib_lookup` answers; every
//! output frame is compared byte for byte with one built from scratch, so its
//! checksums are checked against a full recomputation.

use std::net::Ipv4Addr;

use lb_common::{
    Flow,
    maps::{FlowDirection, flow_flags},
    reason,
};
use tether_tests::{
    dataplane::{TC_ACT_REDIRECT, TC_ACT_SHOT, TestDataplane, XDP_DROP, XDP_REDIRECT, XDP_TX},
    fibnet::{BACKEND, BACKEND_MAC, CLIENT, CLIENT_MAC, Net, SNAT},
    packet::*,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const PORT: u16 = 443;
const CLIENT_PORT: u16 = 40_000;
const CLIENT_ISN: u32 = 1_000;
const BACKEND_ISN: u32 = 7_777;
const VIP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn config() -> String {
    format!(
        "[daemon]\ninterfaces = [\"be\"]\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{SNAT}\"\n\n\
         [[farm]]\nname = \"web\"\npersistence = []\n[[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:{PORT}\"\n"
    )
}

fn from_client(seg: &TcpSeg) -> Vec<u8> {
    frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, seg)
}

fn from_backend(net: &Net, seg: &TcpSeg) -> Vec<u8> {
    frame(net.backend_side_mac, BACKEND_MAC, BACKEND, SNAT, seg)
}

fn ts(tsval: u32, tsecr: u32) -> Vec<u8> {
    [[1, 1, 8, 10].as_slice(), &tsval.to_be_bytes(), &tsecr.to_be_bytes()].concat()
}

fn segment(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8, window: u16) -> TcpSeg {
    TcpSeg { seq, ack, window, ..TcpSeg::syn(src_port, dst_port).with_flags(flags) }
}

/// A ClientHello-shaped first record: what XDP reads is only its first byte.
fn hello() -> Vec<u8> {
    let mut h = vec![0x16, 0x03, 0x01, 0x01, 0x27, 0x01, 0x00, 0x01, 0x23, 0x03, 0x03];
    h.extend((0..289).map(|i| i as u8));
    h
}

/// The TCP header and payload of an IPv4 frame without IP options.
fn tcp_part(frame: &[u8]) -> &[u8] {
    &frame[34..]
}

/// TSval and TSecr of a TCP header's timestamp option.
fn timestamps(tcp: &[u8]) -> (u32, u32) {
    let end = usize::from(tcp[12] >> 4) * 4;
    let mut i = 20;
    while i + 1 < end {
        match tcp[i] {
            1 => i += 1,
            8 => return (be32(&tcp[i + 2..]), be32(&tcp[i + 6..])),
            _ => i += usize::from(tcp[i + 1]).max(2),
        }
    }
    panic!("no timestamp option")
}

fn entry(dp: &TestDataplane, direction: FlowDirection) -> Flow {
    let flows = dp.flows();
    flows.iter().map(|(_, f)| *f).find(|f| f.direction == direction as u8).expect("a flow entry")
}

/// The source port the data path chose towards the backend: the destination
/// port of the backend -> client entry's key.
fn snat_port(dp: &TestDataplane) -> u16 {
    let flows = dp.flows();
    let (key, _) = flows.iter().find(|(_, f)| f.direction == FlowDirection::ToClient as u8).expect("an entry");
    u16::from_be(key.dport_be)
}

/// What a bound connection's golden frames depend on.
struct Conn {
    /// Our ISN towards the client, and our SYN-ACK's TSval.
    cookie: u32,
    our_tsval: u32,
    /// The SNAT port, and the backend leg's own ISN and TSval (clock values).
    sp: u16,
    leg_isn: u32,
    leg_tsval: u32,
}

/// Steps 1-3 for a Linux client (MSS 1460, SACK, timestamps, window scale 7).
fn handshake_and_bind(net: &Net, dp: &TestDataplane) -> Conn {
    // 1: the SYN is answered from XDP with a cookie, options mirrored.
    let mut syn = segment(CLIENT_PORT, PORT, CLIENT_ISN, 0, TCP_SYN, 64_240);
    syn.options = [[2, 4, 0x05, 0xB4, 4, 2].as_slice(), &ts(0x100, 0)[2..], &[1, 3, 3, 7]].concat();
    let (action, out) = dp.expect(&from_client(&syn), reason::VIP_SYN);
    assert_eq!(action, XDP_TX);
    let cookie = be32(&tcp_part(&out)[4..]);
    let (our_tsval, echo) = timestamps(tcp_part(&out));
    assert_eq!(echo, 0x100);

    // 2: the handshake's ACK: checked, nothing kept.
    let ack = TcpSeg {
        options: ts(0x180, our_tsval),
        ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 1, cookie.wrapping_add(1), TCP_ACK, 502)
    };
    let (action, _) = dp.expect(&from_client(&ack), reason::COOKIE_ACK);
    assert_eq!(action, XDP_DROP);
    assert!(dp.flows().is_empty() && dp.pending() == 0);

    // 3: the first data becomes the SYN to the backend, with the options the
    // client's SYN offered (from the cookie's TSval) and its own TSval.
    let data = TcpSeg {
        options: ts(0x200, our_tsval),
        payload: hello(),
        ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 1, cookie.wrapping_add(1), TCP_ACK | TCP_PSH, 502)
    };
    let (action, out) = dp.expect(&from_client(&data), reason::TLS_BIND);
    assert_eq!(action, XDP_REDIRECT, "the backend side is another interface");
    assert_eq!(dp.pending(), 1, "the data is stashed");
    let sp = snat_port(dp);
    // The backend leg's ISN and TSval come from clocks: read them, check the rest.
    let leg_isn = be32(&tcp_part(&out)[4..]);
    let (leg_tsval, _) = timestamps(tcp_part(&out));
    let mut backend_syn = segment(sp, PORT, leg_isn, 0, TCP_SYN, 502 << 7);
    backend_syn.options = [[2, 4, 0x05, 0xB4, 4, 2].as_slice(), &ts(leg_tsval, 0)[2..], &[1, 3, 3, 7]].concat();
    assert_eq!(
        out,
        frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &backend_syn),
        "the SYN as the backend must see it"
    );
    Conn { cookie, our_tsval, sp, leg_isn, leg_tsval }
}

/// The backend's SYN-ACK (window scale 9, TSval 0x9000).
fn backend_syn_ack(net: &Net, c: &Conn) -> Vec<u8> {
    let mut seg = segment(PORT, c.sp, BACKEND_ISN, c.leg_isn.wrapping_add(1), TCP_SYN | TCP_ACK, 65_160);
    seg.options = [[2, 4, 0x05, 0xB4, 4, 2].as_slice(), &ts(0x9000, c.leg_tsval)[2..], &[1, 3, 3, 9]].concat();
    from_backend(net, &seg)
}

/// Our ACK with the stashed data, as the backend must see it.
fn ack_with_stash(net: &Net, c: &Conn) -> Vec<u8> {
    let seg = TcpSeg {
        options: ts(c.leg_tsval, 0x9000),
        payload: hello(),
        ..segment(c.sp, PORT, c.leg_isn.wrapping_add(1), BACKEND_ISN + 1, TCP_ACK | TCP_PSH, 502)
    };
    with_ip_id_zero(frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &seg))
}

#[test]
fn a_tls_connection_step_by_step() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let c = handshake_and_bind(&net, &dp);
        let (cookie, our_tsval, sp) = (c.cookie, c.our_tsval, c.sp);

        // 4: XDP passes the backend's SYN-ACK up; tc answers it with our ACK
        // and the stash, back out of the interface it came in on.
        let syn_ack = backend_syn_ack(&net, &c);
        dp.expect_pass(&syn_ack, reason::BACKEND_SYN_ACK);
        let (action, out) = dp.expect_tc(&syn_ack, reason::TC_STASH_SENT);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out, ack_with_stash(&net, &c), "ACK + data as the backend must see it");
        let (to_client, to_backend) = (entry(&dp, FlowDirection::ToClient), entry(&dp, FlowDirection::ToBackend));
        assert_eq!(to_client.seq_delta, cookie.wrapping_sub(BACKEND_ISN));
        assert_eq!(to_backend.ack_delta, BACKEND_ISN.wrapping_sub(cookie));
        assert_eq!(to_backend.seq_delta, c.leg_isn.wrapping_sub(CLIENT_ISN));
        assert_eq!(to_client.ack_delta, CLIENT_ISN.wrapping_sub(c.leg_isn));
        assert_eq!(to_client.tsval_delta, our_tsval.wrapping_sub(0x9000));
        assert_eq!(to_backend.tsecr_delta, 0u32.wrapping_sub(to_client.tsval_delta));
        assert_eq!((to_client.wscale_in, to_client.wscale_out), (9, 7));
        assert_eq!((to_backend.wscale_in, to_backend.wscale_out), (7, 7));
        assert_ne!(to_client.flags & flow_flags::STASHED, 0);

        // 5, backend -> client: the server's first bytes, which acknowledge
        // the stash: sequence and acknowledgement numbers onto the client
        // leg's, TSval onto our clock and TSecr onto the client's, window
        // from scale 9 to 7.
        let seg = TcpSeg {
            options: ts(0x9100, c.leg_tsval),
            payload: b"server flight".to_vec(),
            ..segment(PORT, sp, BACKEND_ISN + 1, c.leg_isn.wrapping_add(301), TCP_ACK | TCP_PSH, 100)
        };
        let (action, out) = dp.expect(&from_backend(&net, &seg), reason::FWD_TO_CLIENT);
        assert_eq!(action, XDP_REDIRECT);
        let expected = TcpSeg {
            options: ts(our_tsval.wrapping_add(0x100), 0x200),
            payload: b"server flight".to_vec(),
            ..segment(PORT, CLIENT_PORT, cookie.wrapping_add(1), CLIENT_ISN + 301, TCP_ACK | TCP_PSH, 400)
        };
        assert_eq!(out, frame(CLIENT_MAC, net.client_side_mac, VIP, CLIENT, &expected));
        assert_eq!(dp.pending(), 0, "acknowledged: the stash is released");
        assert_eq!(entry(&dp, FlowDirection::ToClient).flags & flow_flags::STASHED, 0);

        // 5, client -> backend with a SACK block: sequence number, TSval,
        // acknowledgement, TSecr and both SACK edges move onto the backend
        // leg's numbers.
        let sack =
            |base: u32| [[1, 1, 5, 10].as_slice(), &(base + 20).to_be_bytes(), &(base + 40).to_be_bytes()].concat();
        let seg = TcpSeg {
            options: [ts(0x300, our_tsval.wrapping_add(0x100)), sack(cookie.wrapping_add(1))].concat(),
            ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 301, cookie.wrapping_add(14), TCP_ACK, 501)
        };
        let (action, out) = dp.expect(&from_client(&seg), reason::FWD_TO_BACKEND);
        assert_eq!(action, XDP_REDIRECT);
        let expected = TcpSeg {
            options: [ts(c.leg_tsval.wrapping_add(0x100), 0x9100), sack(BACKEND_ISN + 1)].concat(),
            ..segment(sp, PORT, c.leg_isn.wrapping_add(301), BACKEND_ISN + 14, TCP_ACK, 501)
        };
        assert_eq!(out, frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &expected));

        // 7: a client FIN is noted; the backend's RST ends the connection.
        let fin = TcpSeg {
            options: ts(0x400, our_tsval.wrapping_add(0x100)),
            ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 301, cookie.wrapping_add(14), TCP_ACK | TCP_FIN, 501)
        };
        dp.expect(&from_client(&fin), reason::FWD_TO_BACKEND);
        assert_ne!(entry(&dp, FlowDirection::ToBackend).flags & flow_flags::FIN, 0);
        let rst = segment(PORT, sp, BACKEND_ISN + 14, c.leg_isn.wrapping_add(302), TCP_RST | TCP_ACK, 0);
        let (action, out) = dp.expect(&from_backend(&net, &rst), reason::FWD_TO_CLIENT);
        assert_eq!(action, XDP_REDIRECT);
        let expected = segment(PORT, CLIENT_PORT, cookie.wrapping_add(14), CLIENT_ISN + 302, TCP_RST | TCP_ACK, 0);
        assert_eq!(out, frame(CLIENT_MAC, net.client_side_mac, VIP, CLIENT, &expected));
        assert!(dp.flows().is_empty());
    });
}

#[test]
fn retransmissions_while_the_backend_syn_is_out() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let c = handshake_and_bind(&net, &dp);
        let (cookie, our_tsval, sp) = (c.cookie, c.our_tsval, c.sp);
        // The client sends its first data again: the SYN goes again, the same.
        let data = TcpSeg {
            options: ts(0x200, our_tsval),
            payload: hello(),
            ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 1, cookie.wrapping_add(1), TCP_ACK | TCP_PSH, 502)
        };
        let (_, first_syn) = dp.run(&from_client(&data));
        let (action, again) = dp.expect(&from_client(&data), reason::BACKEND_SYN_RESENT);
        assert_eq!((action, again), (XDP_REDIRECT, first_syn));
        // Anything else from the client waits.
        let ack = TcpSeg {
            options: ts(0x210, our_tsval),
            ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 301, cookie.wrapping_add(1), TCP_ACK, 502)
        };
        let (action, _) = dp.expect(&from_client(&ack), reason::DROP_BACKEND_PENDING);
        assert_eq!(action, XDP_DROP);

        // The backend's SYN-ACK, then the same again (our ACK was lost): tc
        // sends the same ACK and data each time, as long as the stash is unacknowledged.
        let syn_ack = backend_syn_ack(&net, &c);
        dp.expect_pass(&syn_ack, reason::BACKEND_SYN_ACK);
        let (_, first) = dp.expect_tc(&syn_ack, reason::TC_STASH_SENT);
        dp.expect_pass(&syn_ack, reason::BACKEND_SYN_ACK);
        let (action, second) = dp.expect_tc(&syn_ack, reason::TC_STASH_SENT);
        assert_eq!((action, &second), (TC_ACT_REDIRECT, &first));
        assert_eq!(second, ack_with_stash(&net, &c));

        // Once the backend acknowledged the data (in the backend leg's
        // numbers), a stray SYN-ACK is dropped.
        let seg = TcpSeg {
            options: ts(0x9001, 0x200),
            ..segment(PORT, sp, BACKEND_ISN + 1, c.leg_isn.wrapping_add(301), TCP_ACK, 100)
        };
        dp.expect(&from_backend(&net, &seg), reason::FWD_TO_CLIENT);
        let (action, _) = dp.expect_tc(&syn_ack, reason::TC_DROP_NO_STASH);
        assert_eq!(action, TC_ACT_SHOT);
    });
}

#[test]
fn a_new_syn_on_a_spliced_tuple_replaces_the_old_connection() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let c = handshake_and_bind(&net, &dp);
        dp.expect_tc(&backend_syn_ack(&net, &c), reason::TC_STASH_SENT);
        assert_eq!(dp.flows().len(), 2);
        // The client reuses its port: the SYN is answered with a cookie, and
        // the old connection's entries and stash are gone.
        let mut syn = segment(CLIENT_PORT, PORT, CLIENT_ISN + 50_000, 0, TCP_SYN, 64_240);
        syn.options = vec![2, 4, 0x05, 0xB4];
        let (action, _) = dp.expect(&from_client(&syn), reason::VIP_SYN);
        assert_eq!(action, XDP_TX);
        assert!(dp.flows().is_empty() && dp.pending() == 0, "{:?}", dp.flows());
    });
}

#[test]
fn a_backend_that_refuses_resets_the_client_at_its_expected_sequence() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let c = handshake_and_bind(&net, &dp);
        let (cookie, sp) = (c.cookie, c.sp);
        let rst = segment(PORT, sp, 0, c.leg_isn.wrapping_add(1), TCP_RST | TCP_ACK, 0);
        let (action, out) = dp.expect(&from_backend(&net, &rst), reason::BACKEND_REFUSED);
        assert_eq!(action, XDP_REDIRECT);
        let expected = segment(PORT, CLIENT_PORT, cookie.wrapping_add(1), CLIENT_ISN + 1, TCP_RST | TCP_ACK, 0);
        assert_eq!(out, frame(CLIENT_MAC, net.client_side_mac, VIP, CLIENT, &expected));
        assert!(dp.flows().is_empty() && dp.pending() == 0);
    });
}

#[test]
fn a_client_without_timestamps_gets_the_mss_its_cookie_carries() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        // MSS 1400 only: the cookie carries the class 1300.
        let mut syn = segment(CLIENT_PORT, PORT, CLIENT_ISN, 0, TCP_SYN, 64_240);
        syn.options = vec![2, 4, 0x05, 0x78];
        let (_, out) = dp.expect(&from_client(&syn), reason::VIP_SYN);
        let cookie = be32(&tcp_part(&out)[4..]);
        let data = TcpSeg {
            payload: hello(),
            ..segment(CLIENT_PORT, PORT, CLIENT_ISN + 1, cookie.wrapping_add(1), TCP_ACK | TCP_PSH, 64_240)
        };
        let (action, out) = dp.expect(&from_client(&data), reason::TLS_BIND);
        assert_eq!(action, XDP_REDIRECT);
        let sp = snat_port(&dp);
        let leg_isn = be32(&tcp_part(&out)[4..]);
        let mut backend_syn = segment(sp, PORT, leg_isn, 0, TCP_SYN, 64_240);
        backend_syn.options = vec![2, 4, 0x05, 0x14];
        assert_eq!(out, frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &backend_syn));
    });
}

#[test]
fn a_syn_too_short_for_our_window_scale_is_remembered_as_unscaled() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        // Timestamps and window scale but no MSS: 16 bytes of options, too few
        // for our MSS, timestamps and window scale.
        let mut syn = segment(CLIENT_PORT, PORT, CLIENT_ISN, 0, TCP_SYN, 64_240);
        syn.options = [ts(0x100, 0), vec![1, 3, 3, 7]].concat();
        let (action, out) = dp.expect(&from_client(&syn), reason::VIP_SYN);
        assert_eq!(action, XDP_TX);
        let tcp = tcp_part(&out);
        let options = &tcp[20..usize::from(tcp[12] >> 4) * 4];
        assert!(!options.windows(2).any(|w| w == [3, 3]), "no window scale offered: {options:?}");
        let (our_tsval, _) = timestamps(tcp);
        assert_eq!(
            lb_common::tcpopt::decode_tsecr(our_tsval).wscale,
            None,
            "the cookie must not claim a scaled client leg"
        );
    });
}
