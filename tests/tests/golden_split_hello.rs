//! Golden packets for ClientHellos that span segments (DESIGN.md §2 step
//! 3b): XDP holds each segment in the stash until the first record is
//! whole, decides on the whole hello (a ticket at its very end picks the
//! backend), turns the last segment into the backend SYN (growing it at the
//! front when it is too short to hold one), and tc sends the stash cut
//! where the client cut it: a copy per segment but the last, which it
//! returns. The copies leave through the namespace's loopback, where a
//! packet socket reads them.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use lb_common::{FlowKey, Pending, maps as abi, reason};
use tether_tests::{
    dataplane::{TC_ACT_REDIRECT, TestDataplane, XDP_DROP, XDP_REDIRECT},
    fibnet::{BACKEND, BACKEND_MAC, CLIENT, CLIENT_MAC, Net, SNAT},
    packet::*,
    tls_msg::{
        CERTIFICATE, CONTENT_CHANGE_CIPHER_SPEC, handshake, new_session_ticket, padded_client_hello, record,
        server_hello,
    },
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const PORT: u16 = 443;
/// Two backends on one host: they differ by port.
const PORTS: [u16; 2] = [443, 8443];
const VIP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_ISN: u32 = 1_000;
const BACKEND_ISN: u32 = 7_777;
/// The client's window field, which every segment tether builds carries.
const WINDOW: u16 = 502;

fn config() -> String {
    format!(
        "[daemon]\ninterfaces = [\"be\"]\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{SNAT}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"round-robin\"\npersistence = [\"ticket-key\"]\n\
         [[farm.backend]]\nname = \"b0\"\naddress = \"{BACKEND}:{}\"\n\
         [[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:{}\"\n",
        PORTS[0], PORTS[1]
    )
}

fn segment(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8) -> TcpSeg {
    TcpSeg { seq, ack, window: WINDOW, ..TcpSeg::syn(src_port, dst_port).with_flags(flags) }
}

/// A client whose handshake XDP answered: its port and our cookie.
struct Client {
    port: u16,
    cookie: u32,
}

impl Client {
    fn handshake(dp: &TestDataplane, port: u16) -> Client {
        let syn = segment(port, PORT, CLIENT_ISN, 0, TCP_SYN);
        let (_, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &syn), reason::VIP_SYN);
        Client { port, cookie: be32(&out[38..]) }
    }

    /// The client's segment carrying `data` at `offset` bytes into its stream.
    fn data(&self, offset: usize, data: &[u8]) -> Vec<u8> {
        let seq = CLIENT_ISN + 1 + offset as u32;
        let seg =
            TcpSeg { payload: data.to_vec(), ..segment(self.port, PORT, seq, self.cookie + 1, TCP_ACK | TCP_PSH) };
        frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &seg)
    }

    /// Sends `hello` cut at `cuts`: every segment but the last is held; the
    /// last binds under `why` and comes out as the backend SYN, checked in
    /// full. Returns the backend leg.
    fn send_hello(&self, dp: &TestDataplane, hello: &[u8], cuts: &[usize], why: u32) -> Leg {
        let parts = split(hello, cuts);
        let (last, held) = parts.split_last().expect("a segment");
        for (offset, part) in held {
            let (action, _) = dp.expect(&self.data(*offset, part), reason::TLS_HELLO_PART);
            assert_eq!(action, XDP_DROP);
        }
        let (action, syn) = dp.expect(&self.data(last.0, last.1), why);
        assert_eq!(action, XDP_REDIRECT, "the SYN leaves by the backend side");
        let (sp, backend_port, leg_isn) =
            (u16::from_be_bytes([syn[34], syn[35]]), u16::from_be_bytes([syn[36], syn[37]]), be32(&syn[38..]));
        Leg { sp, backend_port, leg_isn, syn }
    }
}

/// The backend leg a hello opened.
struct Leg {
    sp: u16,
    backend_port: u16,
    leg_isn: u32,
    /// The SYN as XDP sent it.
    syn: Vec<u8>,
}

impl Leg {
    /// The SYN the backend must see: a client without SYN options gets the
    /// cookie's smallest MSS and nothing else (see golden_tls).
    fn expected_syn(&self, net: &Net) -> Vec<u8> {
        let mut seg = segment(self.sp, self.backend_port, self.leg_isn, 0, TCP_SYN);
        seg.options = vec![2, 4, 0x02, 0x18]; // MSS 536
        frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &seg)
    }

    fn syn_ack(&self, net: &Net) -> Vec<u8> {
        let seg = segment(self.backend_port, self.sp, BACKEND_ISN, self.leg_isn + 1, TCP_SYN | TCP_ACK);
        frame(net.backend_side_mac, BACKEND_MAC, BACKEND, SNAT, &seg)
    }

    /// Our ACK carrying the hello's bytes at `offset`, as the backend must
    /// see it; PSH on the last.
    fn stash_segment(&self, net: &Net, offset: usize, data: &[u8], last: bool) -> Vec<u8> {
        let flags = if last { TCP_ACK | TCP_PSH } else { TCP_ACK };
        let seg = TcpSeg {
            payload: data.to_vec(),
            ..segment(self.sp, self.backend_port, self.leg_isn + 1 + offset as u32, BACKEND_ISN + 1, flags)
        };
        with_ip_id_zero(frame(BACKEND_MAC, net.backend_side_mac, SNAT, BACKEND, &seg))
    }

    fn backend_data(&self, net: &Net, offset: usize, payload: &[u8]) -> Vec<u8> {
        let seg = TcpSeg {
            payload: payload.to_vec(),
            ..segment(self.backend_port, self.sp, BACKEND_ISN + 1 + offset as u32, self.leg_isn + 1, TCP_ACK | TCP_PSH)
        };
        frame(net.backend_side_mac, BACKEND_MAC, BACKEND, SNAT, &seg)
    }
}

/// `data` cut at the offsets `cuts` (ascending): (offset, bytes) per part.
fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<(usize, &'a [u8])> {
    let bounds: Vec<usize> = [0].into_iter().chain(cuts.iter().copied()).chain([data.len()]).collect();
    bounds.windows(2).map(|w| (w[0], &data[w[0]..w[1]])).collect()
}

fn pending(dp: &TestDataplane) -> Vec<(FlowKey, Pending)> {
    let m: HashMap<&MapData, FlowKey, Pending> =
        dp.ebpf.map(abi::PENDING_MAP).expect("PENDING").try_into().expect("hash");
    m.iter().map(|e| e.expect("read pending")).collect()
}

/// A packet socket on the namespace's loopback, where tc's copies of the
/// stash's segments go when the program runs with BPF_PROG_TEST_RUN.
struct Loopback {
    fd: i32,
}

impl Loopback {
    fn open(net: &Net) -> Loopback {
        net.ns.ip("link set lo up");
        // SAFETY: plain socket calls; the descriptor is owned by the guard.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind to lo: {}", std::io::Error::last_os_error());
            Loopback { fd }
        }
    }

    /// The frames sent out of lo since the last call, oldest first.
    fn sent(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            let mut buf = vec![0u8; 4096];
            // SAFETY: as in `open`.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                return frames;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                buf.truncate(n as usize);
                frames.push(buf);
            }
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor `open` made.
        unsafe { libc::close(self.fd) };
    }
}

/// A ticket whose first 16 bytes (its key name) are `name`.
fn ticket(name: u8) -> Vec<u8> {
    [vec![name; 16], (0..144).map(|i| i as u8).collect()].concat()
}

/// Teaches tether that backend `b0` issues tickets under key name 0xAB: a
/// TLS 1.2 full handshake on it whose second flight starts with a
/// NewSessionTicket. Round-robin takes b1 next.
fn learn_key_name_on_b0(net: &Net, dp: &TestDataplane) {
    let client = Client::handshake(dp, 39_999);
    let hello = padded_client_hello(&[], 0, Some(&[]));
    let leg = client.send_hello(dp, &hello, &[], reason::TLS_BIND);
    assert_eq!(leg.backend_port, PORTS[0], "round-robin starts at b0");
    dp.expect_pass(&leg.syn_ack(net), reason::BACKEND_SYN_ACK);
    dp.expect_tc(&leg.syn_ack(net), reason::TC_STASH_SENT);
    let first_flight = [server_hello(&[], false), record(22, &handshake(CERTIFICATE, &[0; 300]))].concat();
    dp.expect(&leg.backend_data(net, 0, &first_flight), reason::FWD_TO_CLIENT);
    let second_flight = [new_session_ticket(&ticket(0xAB)), record(CONTENT_CHANGE_CIPHER_SPEC, &[1])].concat();
    dp.expect(&leg.backend_data(net, first_flight.len(), &second_flight), reason::FWD_TO_CLIENT);
}

#[test]
fn a_hello_over_three_segments_is_decided_whole_and_reaches_the_backend_as_it_was_cut() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let lo = Loopback::open(&net);
        learn_key_name_on_b0(&net, &dp);

        // A 1.9 KB hello whose ticket (key name 0xAB) is its last extension,
        // so only its last segment says which backend holds the session. The
        // last segment is one byte: too short to become the SYN in place.
        let hello = padded_client_hello(&[], 1_700, Some(&ticket(0xAB)));
        assert!(hello.len() > 1_900 && hello.len() <= abi::STASH_MAX, "{}", hello.len());
        let cuts = [1_400, hello.len() - 1];
        let client = Client::handshake(&dp, 40_000);
        let parts = split(&hello, &cuts);
        let (action, _) = dp.expect(&client.data(0, parts[0].1), reason::TLS_HELLO_PART);
        assert_eq!(action, XDP_DROP);
        let held = pending(&dp).into_iter().find(|(k, _)| u16::from_be(k.sport_be) == 40_000).expect("held").1;
        assert_eq!((held.assembling, held.segments, usize::from(held.len)), (1, 1, 1_400));
        // The hello's own other segments, in order; no flow until the last.
        let flows_before = dp.flows().len();
        dp.expect(&client.data(parts[1].0, parts[1].1), reason::TLS_HELLO_PART);
        assert_eq!(dp.flows().len(), flows_before);
        let (action, syn) = dp.expect(&client.data(parts[2].0, parts[2].1), reason::TLS_BIND_PERSISTED);
        assert_eq!(action, XDP_REDIRECT);
        let leg = Leg {
            sp: u16::from_be_bytes([syn[34], syn[35]]),
            backend_port: u16::from_be_bytes([syn[36], syn[37]]),
            leg_isn: be32(&syn[38..]),
            syn,
        };
        assert_eq!(leg.backend_port, PORTS[0], "the ticket's key name names b0 (round-robin would take b1)");
        assert_eq!(leg.syn, leg.expected_syn(&net), "the SYN, grown from a one-byte segment");

        let held = pending(&dp).into_iter().find(|(k, _)| u16::from_be(k.sport_be) == 40_000).expect("stashed").1;
        assert_eq!((held.assembling, held.segments, usize::from(held.len)), (0, 3, hello.len()));
        assert_eq!(&held.data[..hello.len()], &hello[..], "the stash is the hello");

        // The backend's SYN-ACK: tc sends the first two segments as copies
        // and the last as the packet itself, each at its own sequence number.
        dp.expect_pass(&leg.syn_ack(&net), reason::BACKEND_SYN_ACK);
        lo.sent();
        let (action, out) = dp.expect_tc(&leg.syn_ack(&net), reason::TC_STASH_SENT);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out, leg.stash_segment(&net, parts[2].0, parts[2].1, true), "the last segment");
        let copies: Vec<Vec<u8>> = lo.sent().into_iter().filter(|f| f.len() > 34 && f[23] == IPPROTO_TCP).collect();
        let expected: Vec<Vec<u8>> =
            parts[..2].iter().map(|(at, data)| leg.stash_segment(&net, *at, data, false)).collect();
        assert_eq!(copies, expected, "the copies, byte for byte");
    });
}

#[test]
fn a_record_header_cut_after_three_bytes_is_held_until_it_is_whole() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let hello = padded_client_hello(&[], 400, None);
        for (port, cut) in [(40_000, 1), (40_001, 3), (40_002, 5), (40_003, 9)] {
            let client = Client::handshake(&dp, port);
            let leg = client.send_hello(&dp, &hello, &[cut], reason::TLS_BIND);
            let (_, p) = pending(&dp).into_iter().find(|(k, _)| u16::from_be(k.sport_be) == port).expect("stashed");
            assert_eq!((p.segments, usize::from(p.len)), (2, hello.len()), "cut at {cut}");
            assert_eq!(&p.data[..hello.len()], &hello[..]);
            assert_eq!(leg.syn, leg.expected_syn(&net));
        }
    });
}

/// The frames XDP handed to the daemon, oldest first.
/// The frames in the slow path's ring, all of them segments of hellos it
/// assembles.
fn slow_path(dp: &mut TestDataplane) -> Vec<Vec<u8>> {
    dp.slow_path_frames(abi::slow_kind::HELLO)
}

/// A segment that comes before the first of its hello has nothing to be
/// checked by (the cookie is bound to the client's ISN): it goes to the
/// daemon to wait (`slow_kind::EARLY`), leaving no state here. Run through
/// XDP again once the first segment has opened the connection, as the
/// daemon does, it continues the hello like any next segment.
#[test]
fn a_segment_before_the_first_of_its_hello_waits_in_the_daemon() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config());
        let hello = padded_client_hello(&[], 1_700, None);
        let parts = split(&hello, &[1_000]);
        let client = Client::handshake(&dp, 40_000);
        let early = client.data(parts[1].0, parts[1].1);
        let (action, _) = dp.expect(&early, reason::TLS_HELLO_EARLY);
        assert_eq!(action, XDP_DROP);
        assert!(pending(&dp).is_empty() && dp.flows().is_empty(), "no state for what cannot be checked");
        assert_eq!(dp.slow_path_frames(abi::slow_kind::EARLY), vec![early.clone()]);
        dp.expect(&client.data(0, parts[0].1), reason::TLS_HELLO_PART);
        let (action, _) = dp.expect(&early, reason::TLS_BIND);
        assert_eq!(action, XDP_REDIRECT, "the hello is whole: the SYN leaves");
    });
}

/// The kernel's cookie check also passes a segment 1-3 bytes past the
/// client's ISN + 1 (it reads as a smaller MSS index). With timestamps the
/// index the SYN-ACK's TSval carries, echoed by the client, tells such a
/// segment from the first: after a first segment of one byte still on its
/// way, the next is not taken for the start of the hello.
#[test]
fn a_segment_just_past_a_short_first_one_is_not_taken_for_it() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config());
        let hello = padded_client_hello(&[], 1_700, None);
        // MSS 1460 (the cookie's largest index, 3) and timestamps.
        let mut syn = segment(40_000, PORT, CLIENT_ISN, 0, TCP_SYN);
        syn.options = vec![2, 4, 0x05, 0xB4, 1, 1, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0];
        let (_, out) = dp.expect(&frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &syn), reason::VIP_SYN);
        let cookie = be32(&out[38..]);
        let options = &out[54..14 + 20 + usize::from(out[46] >> 4) * 4];
        let at = options.windows(2).position(|w| w == [8, 10]).expect("the SYN-ACK's timestamps");
        let tsecr = be32(&options[at + 2..]);
        let data = |offset: usize, bytes: &[u8]| {
            let mut seg = segment(40_000, PORT, CLIENT_ISN + 1 + offset as u32, cookie + 1, TCP_ACK | TCP_PSH);
            seg.options = [&[1u8, 1, 8, 10, 0, 0, 0, 101][..], &tsecr.to_be_bytes()].concat();
            seg.payload = bytes.to_vec();
            frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &seg)
        };
        let second = data(1, &hello[1..1_000]);
        let (action, _) = dp.expect(&second, reason::TLS_HELLO_EARLY);
        assert_eq!(action, XDP_DROP);
        assert!(pending(&dp).is_empty(), "not held as the start of the hello");
        assert_eq!(dp.slow_path_frames(abi::slow_kind::EARLY), vec![second.clone()]);
        dp.expect(&data(0, &hello[..1]), reason::TLS_HELLO_PART);
        dp.expect(&second, reason::TLS_HELLO_PART);
        let (action, _) = dp.expect(&data(1_000, &hello[1_000..]), reason::TLS_BIND);
        assert_eq!(action, XDP_REDIRECT);
        let (_, p) = pending(&dp).into_iter().next().expect("the stash, kept for tc");
        assert_eq!(&p.data[..usize::from(p.len)], &hello[..], "the hello from its first byte");
    });
}

#[test]
fn a_hello_longer_than_the_stash_goes_to_the_daemon_segment_by_segment() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config());
        // A record of 5,000 bytes: more than the stash holds.
        let hello = padded_client_hello(&[], 4_900, None);
        assert!(hello.len() > abi::STASH_MAX);
        let client = Client::handshake(&dp, 40_000);
        let parts = split(&hello, &[1_400, 2_800, 4_200]);
        let frames: Vec<Vec<u8>> = parts.iter().map(|(at, data)| client.data(*at, data)).collect();
        for frame in &frames {
            let (action, _) = dp.expect(frame, reason::TLS_HELLO_SLOW_PATH);
            assert_eq!(action, XDP_DROP);
        }
        assert!(dp.flows().is_empty(), "no backend yet");
        let (_, p) = pending(&dp).into_iter().next().expect("the first segment's state");
        assert_eq!((p.assembling, usize::from(p.len)), (abi::hello::SLOW_PATH, 1_400));
        assert_eq!(slow_path(&mut dp), frames, "every segment, as it arrived");
    });
}

/// A segment that does not continue the stash means one was lost or
/// reordered; XDP acknowledges nothing, and a client never acknowledged
/// retransmits only its first segment, so the hello goes to the daemon,
/// which acknowledges what it has.
#[test]
fn a_retransmitted_or_early_segment_hands_the_hello_to_the_daemon() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config());
        let hello = padded_client_hello(&[], 2_500, None);
        let parts = split(&hello, &[1_000, 2_000]);
        for (port, out_of_order) in [(40_000, 0), (40_001, 2)] {
            let client = Client::handshake(&dp, port);
            dp.expect(&client.data(0, parts[0].1), reason::TLS_HELLO_PART);
            // The first segment again (a later one was lost), or the third
            // before the second.
            let (at, data) = parts[out_of_order];
            let early = client.data(at, data);
            let (action, _) = dp.expect(&early, reason::TLS_HELLO_OUT_OF_ORDER);
            assert_eq!(action, XDP_DROP);
            let (_, p) = pending(&dp).into_iter().find(|(k, _)| u16::from_be(k.sport_be) == port).expect("held");
            assert_eq!(
                (p.assembling, usize::from(p.len)),
                (abi::hello::SLOW_PATH, 1_000),
                "what XDP held stays for the daemon"
            );
            assert_eq!(slow_path(&mut dp), vec![early]);
            // The rest follows it there.
            let next = client.data(parts[1].0, parts[1].1);
            dp.expect(&next, reason::TLS_HELLO_SLOW_PATH);
            assert_eq!(slow_path(&mut dp), vec![next]);
        }
        assert!(dp.flows().is_empty());
    });
}

#[test]
fn a_hello_fragmented_over_two_records_goes_to_the_daemon() {
    let net = Net::new();
    net.ns.enter(|| {
        let mut dp = TestDataplane::new(&config());
        let whole = padded_client_hello(&[], 300, None);
        // The handshake message cut into two records (RFC 8446 §5.1).
        let message = &whole[5..];
        let hello = [record(22, &message[..100]), record(22, &message[100..])].concat();
        let client = Client::handshake(&dp, 40_000);
        let frame = client.data(0, &hello);
        dp.expect(&frame, reason::TLS_HELLO_SLOW_PATH);
        assert_eq!(slow_path(&mut dp), vec![frame]);
    });
}

#[test]
fn a_record_longer_than_tls_allows_is_bound_as_it_is() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let mut data = padded_client_hello(&[], 100, None);
        data[3..5].copy_from_slice(&0x4001u16.to_be_bytes());
        let client = Client::handshake(&dp, 40_000);
        let (action, _) = dp.expect(&client.data(0, &data), reason::TLS_HELLO_TOO_LONG);
        assert_eq!(action, XDP_REDIRECT);
    });
}

#[test]
fn a_client_that_resets_while_its_hello_is_held_leaves_nothing() {
    let net = Net::new();
    net.ns.enter(|| {
        let dp = TestDataplane::new(&config());
        let hello = padded_client_hello(&[], 1_700, None);
        let client = Client::handshake(&dp, 40_000);
        dp.expect(&client.data(0, &hello[..1_000]), reason::TLS_HELLO_PART);
        assert_eq!(pending(&dp).len(), 1);
        // An RST at a sequence number that does not continue the stash is
        // not the client's (RFC 5961 §3.2): the stash stays.
        let rst = |seq: u32| frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &segment(40_000, PORT, seq, 0, TCP_RST));
        dp.expect(&rst(CLIENT_ISN + 1), reason::VIP_OTHER);
        assert_eq!(pending(&dp).len(), 1);
        dp.expect(&rst(CLIENT_ISN + 1 + 1_000), reason::VIP_OTHER);
        assert!(pending(&dp).is_empty() && dp.flows().is_empty());
        // A segment with another acknowledgement number is no part of it.
        dp.expect(&client.data(0, &hello[..1_000]), reason::TLS_HELLO_PART);
        let forged = {
            let seg = TcpSeg {
                payload: hello[1_000..].to_vec(),
                ..segment(40_000, PORT, CLIENT_ISN + 1_001, client.cookie + 7, TCP_ACK)
            };
            frame(VIP_MAC, CLIENT_MAC, CLIENT, VIP, &seg)
        };
        dp.expect(&forged, reason::DROP_BAD_COOKIE);
        assert!(dp.flows().is_empty());
    });
}
