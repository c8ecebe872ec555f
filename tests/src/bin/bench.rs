//! `cargo xtask bench`: what tether costs per packet, measured with
//! BPF_PROG_TEST_RUN on the real programs (maps filled by the daemon's
//! loader), as medians and as ratios to a no-op XDP program (`tether_pass`)
//! measured the same way in the same run. It runs inside a namespace whose
//! routes and neighbours make `bpf_fib_lookup` answer, as on a real balancer.
//!
//! Every sample is one program run on a fresh copy of the frame
//! (`repeat = 1`): with `repeat > 1` the kernel runs the program again on the
//! frame it has already rewritten, so a NATed packet comes back as one to the
//! backend's address and takes the pass path (an earlier version of this
//! benchmark measured exactly that). A sample therefore includes the kernel's
//! timer reads around one run, as the no-op's does.
//!
//! A binding's ClientHello parse and persistence lookups are also timed on
//! their own: `tether_bench_choose` (a program of the data path's object
//! that the daemon never loads) runs the binding's own `choose` on the
//! hello a frame carries, which changes nothing in the frame, so it can be
//! repeated in place like the established paths. A binding costs a few
//! microseconds, most of it map inserts, and differences of its medians
//! (also printed) move by tens of nanoseconds from run to run.
//!
//! Then, in a two-armed namespace topology: bulk TCP throughput (iperf3, one
//! stream), TLS handshakes per second and TLS bulk throughput from a client to
//! a backend, with no balancer (the balancer namespace only routes), through
//! HAProxy in TCP mode, and through tether, all over the same veths; in the
//! first two setups the balancer's interfaces run the no-op XDP program,
//! because attaching XDP to a veth changes its peer's offloads and the
//! baseline must not measure a different testbed. CPU is the whole machine's
//! busy time over the run (/proc/stat), per GiB moved.
//!
//! Benchmarks, not tests: nothing here asserts a time.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use lb_common::{AddrKey, Flow, FlowKey, maps as abi};
use tether_tests::{
    dataplane::TestDataplane,
    fibnet::{BACKEND, CLIENT, Net, SNAT},
    packet::{TCP_ACK, TCP_PSH, TCP_SYN, TcpSeg, tcp_v4},
};

/// Single runs per path (first packets).
const SAMPLES: usize = 20_000;
/// Connections made for the paths that need a new one per sample.
const CONNECTIONS: usize = 4_000;
/// Rounds, and runs per round, for the paths that can be re-run in place.
const ROUNDS: usize = 15;
const REPEAT: u32 = 200_000;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const TLS_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 101);
/// A `tls` VIP whose farm tries four persistence kinds.
const PERSIST_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 102);
/// A `tls` VIP whose farm persists by session ID only.
const SESSION_ID_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 103);
/// A `tls` VIP whose farm persists as the resumption bench's does: session
/// ID, ticket, ticket key (the extension walk and two lookups, no name hash).
const TICKETS_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 104);
/// A `tls` VIP whose farm persists by ticket only: for a hello without a
/// ticket, the extension walk and no lookup.
const WALK_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 105);
/// A real 517-byte ClientHello (curl, TLS 1.3, offering a session ID and a
/// PSK), from the corpus.
const CLIENT_HELLO: &[u8] = include_bytes!("../../corpus/curl13-s_server_noticket-2.client");

fn config() -> String {
    format!(
        "[daemon]\ninterfaces = [\"be\"]\nsnat_ports = \"10000-65535\"\n\n\
         [[vip]]\nname = \"echo\"\naddress = \"{VIP}\"\nport = 7\nprotocol = \"tcp\"\nfarm = \"echo\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{TLS_VIP}\"\nport = 443\nfarm = \"web\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"resume\"\naddress = \"{PERSIST_VIP}\"\nport = 443\nfarm = \"resume\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"sid\"\naddress = \"{SESSION_ID_VIP}\"\nport = 443\nfarm = \"sid\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"tickets\"\naddress = \"{TICKETS_VIP}\"\nport = 443\nfarm = \"tickets\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"walk\"\naddress = \"{WALK_VIP}\"\nport = 443\nfarm = \"walk\"\nsnat = \"{SNAT}\"\n\n\
         [[farm]]\nname = \"echo\"\n[[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:7\"\n\n\
         [[farm]]\nname = \"web\"\npersistence = []\n[[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:443\"\n\n\
         [[farm]]\nname = \"resume\"\npersistence = [\"session-id\", \"ticket\", \"ticket-key\", \"sni\"]\n\
         [[farm.backend]]\nname = \"b2\"\naddress = \"{BACKEND}:443\"\n\n\
         [[farm]]\nname = \"sid\"\npersistence = [\"session-id\"]\n\
         [[farm.backend]]\nname = \"b3\"\naddress = \"{BACKEND}:443\"\n\n\
         [[farm]]\nname = \"tickets\"\npersistence = [\"session-id\", \"ticket\", \"ticket-key\"]\n\
         [[farm.backend]]\nname = \"b4\"\naddress = \"{BACKEND}:443\"\n\n\
         [[farm]]\nname = \"walk\"\npersistence = [\"ticket\"]\n\
         [[farm.backend]]\nname = \"b5\"\naddress = \"{BACKEND}:443\"\n"
    )
}

/// With no argument every section runs; `steady`, `first`, `sweep`, `bulk`,
/// `resume` or `ttfb` runs one (for profiling a single path).
fn main() -> anyhow::Result<()> {
    let only = std::env::args().nth(1);
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    if let Some(o) = only.as_deref() {
        anyhow::ensure!(
            ["steady", "first", "sweep", "bulk", "resume", "ttfb"].contains(&o),
            "unknown section {o:?}: steady, first, sweep, bulk, resume or ttfb"
        );
    }
    let net = Net::new();
    if wanted("steady") {
        // The steady state's entries rewrite nothing, so a frame stays the
        // same run after run; their packets go to the VIPs (flow entries
        // are only for owned addresses), which the FIB must then answer for.
        for vip in [VIP, TLS_VIP] {
            net.ns.ip(&format!("route add {vip}/32 via {BACKEND}"));
        }
        net.ns.enter(steady_state)?;
        println!();
    }
    if wanted("first") {
        net.ns.enter(first_packets)?;
        println!();
    }
    if wanted("sweep") {
        net.ns.enter(sweep)?;
        println!();
    }
    drop(net);
    if wanted("bulk") {
        bulk::run()?;
        println!();
    }
    if wanted("resume") {
        resumption::run()?;
        println!();
    }
    if wanted("ttfb") {
        first_byte::run()?;
    }
    Ok(())
}

/// One run of an XDP program on a fresh copy of `frame`: the kernel's time
/// for it, and the frame as the program left it.
fn xdp_once(prog: &Xdp, frame: &[u8]) -> (u64, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.duration.as_nanos() as u64, out)
}

fn tc_once(prog: &SchedClassifier, frame: &[u8]) -> u64 {
    let mut out = vec![0u8; frame.len() + 4096];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    r.duration.as_nanos() as u64
}

/// Mean ns of `REPEAT` runs of each `(program, frame)`, per round. The
/// rounds interleave the cases, so a stretch when the (virtual) machine is
/// slow touches every case alike instead of one case's whole series.
fn interleaved(cases: &[(&Xdp, &[u8])]) -> Vec<Vec<u64>> {
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for ((prog, frame), out) in cases.iter().zip(&mut samples) {
            let r = prog
                .test_run(TestRunOptions { data_in: Some(frame), repeat: REPEAT, ..Default::default() })
                .expect("BPF_PROG_TEST_RUN");
            out.push(r.duration.as_nanos() as u64);
        }
    }
    samples
}

struct Path {
    label: &'static str,
    bytes: usize,
    samples: Vec<u64>,
}

impl Path {
    fn percentile(&self, p: usize) -> u64 {
        let mut s = self.samples.clone();
        s.sort_unstable();
        s[(s.len() - 1) * p / 100]
    }
}

fn print_table(paths: &[Path], spread: &str) {
    let baseline = paths[0].percentile(50).max(1);
    println!(
        "{:<34} {:>6} {:>8} {:>6} {:>6} {:>9} {:>12}",
        "path", "bytes", "median", spread, "", "vs no-op", "minus no-op"
    );
    for p in paths {
        let median = p.percentile(50);
        println!(
            "{:<34} {:>6} {:>8} {:>6} {:>6} {:>8.2}x {:>12}",
            p.label,
            p.bytes,
            median,
            p.percentile(if spread == "min" { 0 } else { 10 }),
            p.percentile(if spread == "min" { 100 } else { 90 }),
            median as f64 / baseline as f64,
            median as i64 - baseline as i64
        );
    }
}

fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    [[1, 1, 8, 10].as_slice(), &tsval.to_be_bytes(), &tsecr.to_be_bytes()].concat()
}

/// A Linux client's SYN: MSS 1460, SACK permitted, timestamps, window scale 7.
fn linux_syn(src_port: u16, dst_port: u16, seq: u32) -> TcpSeg {
    TcpSeg {
        seq,
        options: [[2, 4, 0x05, 0xB4, 4, 2].as_slice(), &ts_option(0x100, 0)[2..], &[1, 3, 3, 7]].concat(),
        ..TcpSeg::syn(src_port, dst_port)
    }
}

fn loaded_pass(test_programs: &mut aya::Ebpf) -> anyhow::Result<()> {
    let pass: &mut Xdp = test_programs.program_mut(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
    pass.load()?;
    Ok(())
}

/// Established traffic, re-run in place. A rewritten frame must come back to
/// the same flow entry for that, so each path gets a synthetic *identity*
/// entry: addresses and ports rewritten to themselves (to a VIP, as a flow
/// entry's packets go to an owned address, routed via the backend), with
/// the splice deltas and window scales of a real `tls` connection where the
/// path splices. The work per packet is the real one: parse, the
/// owned-address filter, flow lookup, NAT with checksum updates,
/// sequence/timestamp translation, MAC rewrite, redirect. The next hop is the
/// one the entry keeps (the FIB is asked on the first run, and in real
/// traffic once a second per flow direction).
fn steady_state() -> anyhow::Result<()> {
    let mut dp = TestDataplane::new(&config());
    let mut test_programs = aya::Ebpf::load(lb_user::TEST_OBJECT)?;
    loaded_pass(&mut test_programs)?;
    let mut flows = lb_user::flows::of_mut(&mut dp.ebpf)?;
    // (The handle borrows the object mutably; it ends with its last use below.)
    let identity = |vip: Ipv4Addr, port: u16, direction: abi::FlowDirection, splice: bool| {
        let key = FlowKey {
            saddr_be: addr_key(CLIENT).addr_be,
            daddr_be: addr_key(vip).addr_be,
            sport_be: port.to_be(),
            dport_be: 443u16.to_be(),
            family: 4,
            _pad: [0; 3],
        };
        let flow = Flow {
            new_saddr_be: key.saddr_be,
            new_daddr_be: key.daddr_be,
            new_sport_be: key.sport_be,
            new_dport_be: key.dport_be,
            backend_id: 0,
            created_ns: 1,
            last_seen_ns: u64::MAX / 2,
            seq_delta: if splice { 0x1234_5678 } else { 0 },
            ack_delta: if splice { 0x8765_4321 } else { 0 },
            tsval_delta: if splice { 1_000 } else { 0 },
            tsecr_delta: if splice { 0u32.wrapping_sub(1_000) } else { 0 },
            wscale_in: if splice && direction == abi::FlowDirection::ToClient { 9 } else { 7 },
            wscale_out: 7,
            direction: direction as u8,
            flags: if splice { abi::flow_flags::SPLICE } else { 0 },
            state: abi::FlowState::Established as u8,
            client_sid_len: 0,
            has_offered_key_name: 0,
            _pad: 0,
            client_sid_prefix: [0; 8],
            offered_key_name: [0; 16],
            next_hop: Default::default(),
            flight_start: 0,
            seen_tick: 0,
        };
        (key, flow)
    };
    let cases = [
        ("tcp VIP client->backend", VIP, 40_100, abi::FlowDirection::ToBackend, false),
        ("tcp VIP backend->client", VIP, 40_101, abi::FlowDirection::ToClient, false),
        ("tls spliced client->backend", TLS_VIP, 40_102, abi::FlowDirection::ToBackend, true),
        ("tls spliced backend->client", TLS_VIP, 40_103, abi::FlowDirection::ToClient, true),
    ];
    for (_, vip, port, direction, splice) in cases {
        let (key, flow) = identity(vip, port, direction, splice);
        flows.insert(&key, flow, 0)?;
    }

    let pass: &Xdp = test_programs.program(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
    let xdp: &Xdp = dp.ebpf.program(abi::XDP_PROGRAM).expect("program").try_into()?;
    let host_traffic = tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22));
    let mut labels = vec!["no-op XDP (baseline)", "non-VIP pass"];
    let mut frames = vec![host_traffic.clone(), host_traffic.clone()];
    for (label, vip, port, _, _) in cases {
        let seg = TcpSeg {
            options: ts_option(0x300, 0x9000),
            payload: vec![0x17; 64],
            ..TcpSeg::syn(port, 443).with_flags(TCP_ACK)
        };
        labels.push(label);
        frames.push(tcp_v4(CLIENT, vip, &seg));
    }
    let programs = std::iter::once(pass).chain(std::iter::repeat(xdp));
    let runs: Vec<(&Xdp, &[u8])> = programs.zip(frames.iter().map(Vec::as_slice)).collect();
    let before = dp.counters();
    let samples = interleaved(&runs);
    let after = dp.counters();
    let paths: Vec<Path> = labels
        .into_iter()
        .zip(frames.iter())
        .zip(samples)
        .map(|((label, frame), samples)| Path { label, bytes: frame.len(), samples })
        .collect();
    let forwarded = [lb_common::reason::FWD_TO_BACKEND, lb_common::reason::FWD_TO_CLIENT]
        .iter()
        .map(|r| after.get(*r) - before.get(*r))
        .sum::<u64>();
    let runs = 4 * (ROUNDS as u64) * u64::from(REPEAT);
    println!(
        "BPF_PROG_TEST_RUN, steady state: {ROUNDS} interleaved rounds x {REPEAT} runs in place; median, min \
         and max of the rounds' means, ns per packet"
    );
    print_table(&paths, "min");
    println!(
        "(forwarded {forwarded} of {runs} established runs{})",
        if forwarded == runs {
            ": every run took its path"
        } else {
            ": MISMATCH, the figures above are not what they say"
        }
    );
    Ok(())
}

fn addr_key(addr: Ipv4Addr) -> AddrKey {
    let mut addr_be = [0u8; 16];
    addr_be[..4].copy_from_slice(&addr.octets());
    AddrKey { addr_be, family: 4, _pad: [0; 3] }
}

/// The packets that open connections, which change state and so cannot be
/// re-run in place: one run per sample on a fresh copy of the frame. A sample
/// includes the kernel's timer reads and the caches a syscall leaves behind,
/// so the no-op is measured the same way for comparison.
fn first_packets() -> anyhow::Result<()> {
    let mut dp = TestDataplane::new(&config());
    let mut test_programs = aya::Ebpf::load(lb_user::TEST_OBJECT)?;
    loaded_pass(&mut test_programs)?;
    let choose: &mut Xdp = dp.ebpf.program_mut(abi::XDP_BENCH_CHOOSE_PROGRAM).expect("bench program").try_into()?;
    choose.load()?;
    let pass: &Xdp = test_programs.program(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
    let xdp: &Xdp = dp.ebpf.program(abi::XDP_PROGRAM).expect("program").try_into()?;
    let tc: &SchedClassifier = dp.ebpf.program(abi::TC_PROGRAM).expect("program").try_into()?;
    let single = |label, prog: &Xdp, frame: Vec<u8>| Path {
        label,
        bytes: frame.len(),
        samples: (0..SAMPLES).map(|_| xdp_once(prog, &frame).0).collect(),
    };
    let host_traffic = tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22));
    let mut paths = vec![
        single("no-op XDP (baseline)", pass, host_traffic.clone()),
        single("non-VIP pass", xdp, host_traffic),
        single("TLS VIP SYN -> cookie SYN-ACK", xdp, tcp_v4(CLIENT, TLS_VIP, &linux_syn(40_002, 443, 1_000))),
    ];

    // Delayed binding, one new connection per sample: the cookie handshake
    // first (not timed), then the first data (timed), then the backend's
    // SYN-ACK through tc (timed).
    let record = 5 + u16::from_be_bytes([CLIENT_HELLO[3], CLIENT_HELLO[4]]) as usize;
    let hello: Vec<u8> = CLIENT_HELLO[..record].to_vec();
    let parsed = lb_common::tls::client_hello(&hello).map_err(|e| anyhow::anyhow!("corpus hello: {e:?}"))?;
    let (mut bind, mut answer, mut bind_persist, mut bind_sid) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut bind_tickets, mut bind_walk) = (Vec::new(), Vec::new());
    // The first data to a VIP, after its (untimed) cookie handshake: ns.
    let bind_to = |vip: Ipv4Addr, port: u16| {
        let (_, syn_ack) = xdp_once(xdp, &tcp_v4(CLIENT, vip, &linux_syn(port, 443, 1_000)));
        let cookie = u32::from_be_bytes([syn_ack[38], syn_ack[39], syn_ack[40], syn_ack[41]]);
        let our_tsval = u32::from_be_bytes([syn_ack[62], syn_ack[63], syn_ack[64], syn_ack[65]]);
        let data = TcpSeg {
            seq: 1_001,
            ack: cookie.wrapping_add(1),
            window: 502,
            options: ts_option(0x200, our_tsval),
            payload: hello.clone(),
            ..TcpSeg::syn(port, 443).with_flags(TCP_ACK | TCP_PSH)
        };
        xdp_once(xdp, &tcp_v4(CLIENT, vip, &data)).0
    };
    let (mut hello_bytes, mut syn_ack_bytes) = (0, 0);
    let before = dp.counters();
    for i in 0..CONNECTIONS {
        let port = 20_000 + i as u16;
        let (_, syn_ack) = xdp_once(xdp, &tcp_v4(CLIENT, TLS_VIP, &linux_syn(port, 443, 1_000)));
        let cookie = u32::from_be_bytes([syn_ack[38], syn_ack[39], syn_ack[40], syn_ack[41]]);
        let our_tsval = u32::from_be_bytes([syn_ack[62], syn_ack[63], syn_ack[64], syn_ack[65]]);
        let data = TcpSeg {
            seq: 1_001,
            ack: cookie.wrapping_add(1),
            window: 502,
            options: ts_option(0x200, our_tsval),
            payload: hello.clone(),
            ..TcpSeg::syn(port, 443).with_flags(TCP_ACK | TCP_PSH)
        };
        let frame = tcp_v4(CLIENT, TLS_VIP, &data);
        hello_bytes = frame.len();
        let (ns, syn) = xdp_once(xdp, &frame);
        bind.push(ns);
        // The backend's SYN-ACK answers the SYN tether sent: its ports,
        // sequence number and timestamp.
        let sp = u16::from_be_bytes([syn[34], syn[35]]);
        let leg_isn = u32::from_be_bytes([syn[38], syn[39], syn[40], syn[41]]);
        let leg_tsval = u32::from_be_bytes([syn[62], syn[63], syn[64], syn[65]]);
        let backend_syn_ack = TcpSeg {
            seq: 7_777,
            ack: leg_isn.wrapping_add(1),
            window: 65_160,
            options: [[2, 4, 0x05, 0xB4, 4, 2].as_slice(), &ts_option(0x9000, leg_tsval)[2..], &[1, 3, 3, 9]].concat(),
            ..TcpSeg::syn(443, sp).with_flags(TCP_SYN | TCP_ACK)
        };
        let frame = tcp_v4(BACKEND, SNAT, &backend_syn_ack);
        syn_ack_bytes = frame.len();
        answer.push(tc_once(tc, &frame));
        // The same hello to the VIPs whose farms read it: the parse and
        // lookups on top of the binding (nothing is learned from servers here).
        bind_persist.push(bind_to(PERSIST_VIP, port));
        bind_sid.push(bind_to(SESSION_ID_VIP, port));
        bind_tickets.push(bind_to(TICKETS_VIP, port));
        bind_walk.push(bind_to(WALK_VIP, port));
    }
    let after = dp.counters();
    let choose: &Xdp = dp.ebpf.program(abi::XDP_BENCH_CHOOSE_PROGRAM).expect("bench program").try_into()?;
    let isolated = choose_alone(&dp, choose, &hello)?;
    paths.push(Path { label: "TLS first data -> backend SYN", bytes: hello_bytes, samples: bind });
    paths.push(Path { label: "tc: SYN-ACK -> ACK + 517 B stash", bytes: syn_ack_bytes, samples: answer });
    paths.push(Path { label: "  same, session-id only (miss)", bytes: hello_bytes, samples: bind_sid });
    paths.push(Path { label: "  same, ticket only (the walk)", bytes: hello_bytes, samples: bind_walk });
    paths.push(Path { label: "  same, 3 kinds (no SNI)", bytes: hello_bytes, samples: bind_tickets });
    paths.push(Path { label: "  same, 4 kinds (SNI hits)", bytes: hello_bytes, samples: bind_persist });
    println!(
        "BPF_PROG_TEST_RUN, first packets: one run per sample on a fresh frame ({SAMPLES} samples; {CONNECTIONS} new \
         connections for the binding paths); p10 and p90, ns per packet"
    );
    print_table(&paths, "p10");
    let n = paths.len();
    let plain = paths[n - 6].percentile(50) as i64;
    let [sid_only, walk, tickets, read] = [4, 3, 2, 1].map(|back| paths[n - back].percentile(50) as i64 - plain);
    let keys = [
        !parsed.session_id.is_empty(),
        !parsed.ticket.is_empty(),
        !parsed.psk_identity.is_empty(),
        !parsed.sni.is_empty(),
    ];
    println!(
        "ClientHello parse + persistence lookups ({} B hello; keys: session ID {}, ticket {}, PSK identity {}, SNI {}): \
         {} ns per hello with four kinds, {} ns with session-id, ticket and ticket-key, {} ns for the extension walk \
         alone, {} ns with session-id only (differences of binding medians; target: 300)",
        hello.len(),
        keys[0],
        keys[1],
        keys[2],
        keys[3],
        read,
        tickets,
        walk,
        sid_only
    );
    let counted = |r| after.get(r) - before.get(r);
    // Each sample bound five connections, one to each VIP; the four-kind
    // farm learns the hello's server name at its first binding and finds it
    // (persisted) afterwards.
    let persisted = counted(lb_common::reason::TLS_BIND_PERSISTED);
    let bound = (counted(lb_common::reason::TLS_BIND) + persisted) / 5;
    let answered = counted(lb_common::reason::TC_STASH_SENT);
    println!(
        "(tls_bind + tls_bind_persisted {bound} per VIP ({persisted} persisted), tc_stash_sent {answered} of {CONNECTIONS} connections{})",
        if bound == CONNECTIONS as u64 && answered == CONNECTIONS as u64 {
            ": every sample took its path"
        } else {
            ": MISMATCH, the figures above are not what they say"
        }
    );
    println!();
    isolated.print(&hello);
    Ok(())
}

/// The ClientHello parse and persistence lookups of a binding on their own
/// (`tether_bench_choose`: the stash filled from the frame, then the
/// binding's `choose`), re-run in place for each farm the first-packet
/// section bound to, so that the four-kind farm's SNI is learned.
struct ChooseAlone {
    paths: Vec<Path>,
    /// Runs counted `tls_bind_persisted` and `tls_bind` (only the four-kind
    /// farm hits), and the runs made of each frame.
    persisted: u64,
    missed: u64,
    runs: u64,
}

fn choose_alone(dp: &TestDataplane, choose: &Xdp, hello: &[u8]) -> anyhow::Result<ChooseAlone> {
    let cases = [
        ("no persistence (copy, parse)", TLS_VIP),
        ("session-id only (miss)", SESSION_ID_VIP),
        ("ticket only (the walk)", WALK_VIP),
        ("3 kinds (no SNI, misses)", TICKETS_VIP),
        ("4 kinds (SNI hits)", PERSIST_VIP),
    ];
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .map(|(_, vip)| {
            let data = TcpSeg {
                seq: 1_001,
                ack: 5_001,
                options: ts_option(0x200, 0x300),
                payload: hello.to_vec(),
                ..TcpSeg::syn(30_000, 443).with_flags(TCP_ACK | TCP_PSH)
            };
            tcp_v4(CLIENT, *vip, &data)
        })
        .collect();
    let runs: Vec<(&Xdp, &[u8])> = frames.iter().map(|f| (choose, f.as_slice())).collect();
    let before = dp.counters();
    let samples = interleaved(&runs);
    let after = dp.counters();
    let counted = |r| after.get(r) - before.get(r);
    let paths = cases
        .iter()
        .zip(&frames)
        .zip(samples)
        .map(|(((label, _), frame), samples)| Path { label, bytes: frame.len(), samples })
        .collect();
    Ok(ChooseAlone {
        paths,
        persisted: counted(lb_common::reason::TLS_BIND_PERSISTED),
        missed: counted(lb_common::reason::TLS_BIND),
        runs: (ROUNDS as u64) * u64::from(REPEAT),
    })
}

impl ChooseAlone {
    fn print(&self, hello: &[u8]) {
        println!(
            "BPF_PROG_TEST_RUN, a binding's ClientHello parse + persistence lookups alone ({} B hello, \
             tether_bench_choose): {ROUNDS} interleaved rounds x {REPEAT} runs in place; median, min and max of the \
             rounds' means, ns per run; \"minus no-op\" is minus the farm without persistence",
            hello.len()
        );
        print_table(&self.paths, "min");
        let base = self.paths[0].percentile(50) as i64;
        let cost: Vec<i64> = self.paths[1..].iter().map(|p| p.percentile(50) as i64 - base).collect();
        println!(
            "ClientHello parse + persistence lookups: {} ns with four kinds (SNI hits), {} ns with session-id, ticket \
             and ticket-key, {} ns for the extension walk alone, {} ns with session-id only (target: 300)",
            cost[3], cost[2], cost[1], cost[0]
        );
        // Every run of the five frames: one farm without persistence and
        // three whose keys are not learned miss, the four-kind farm hits.
        let expected = (self.runs, 4 * self.runs);
        println!(
            "(tls_bind_persisted {}, tls_bind {} of {} runs{})",
            self.persisted,
            self.missed,
            5 * self.runs,
            if (self.persisted, self.missed) == expected {
                ": every run took its path"
            } else {
                ": MISMATCH, the figures above are not what they say"
            }
        );
    }
}

/// How long the daemon's sweeper takes to scan a flow table of 50,000
/// connections (100,000 entries) in which nothing has expired: its fixed cost
/// every `SWEEP_INTERVAL`.
fn sweep() -> anyhow::Result<()> {
    const CONNECTIONS: u32 = 50_000;
    let mut dp = TestDataplane::new(&config());
    for i in 0..CONNECTIONS {
        let client = Ipv4Addr::new(198, 18, 1 + (i / 200 / 250) as u8, (i / 200 % 250) as u8 + 1);
        dp.run(&tcp_v4(client, VIP, &TcpSeg::syn(30_000 + (i % 200) as u16, 7)));
    }
    let entries = dp.flows().len();
    let timeouts = lb_user::config::Timeouts {
        connect: Duration::from_secs(5),
        idle: Duration::from_secs(900),
        half_open: Duration::from_secs(900),
        closing: Duration::from_secs(900),
    };
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let removed = lb_user::loader::sweep(&mut dp.ebpf, &timeouts).expect("sweep").removed;
            assert_eq!(removed, 0, "nothing has expired");
            start.elapsed()
        })
        .collect();
    samples.sort();
    println!(
        "sweeper: full scan of {entries} flow-table entries, nothing expired: median {:?} of 5 (min {:?}, max {:?})",
        samples[2], samples[0], samples[4]
    );
    Ok(())
}

mod bulk {
    //! Bulk throughput through the three setups, in one run.

    use std::{net::SocketAddr, time::Duration};

    use aya::programs::{Xdp, XdpMode};
    use lb_common::maps as abi;
    use tether_tests::{
        peers::{self, BackendServer},
        process::Proc,
        tether::Tether,
        topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology},
    };

    const SECONDS: u32 = 5;
    const ROUNDS: usize = 3;
    const TETHER_VIP: &str = "198.18.100.100";
    const HAPROXY_VIP: &str = "198.18.100.102";
    const PORT: u16 = 5201;
    const TLS_PORT: u16 = 443;
    /// Clients making TLS handshakes at once, for the handshake rate.
    const TLS_CONCURRENCY: usize = 16;
    /// Bytes sent (and echoed back) through one TLS connection.
    const TLS_BULK: usize = 512 << 20;

    #[derive(Clone, Copy, Default)]
    struct TlsSample {
        handshakes_per_s: f64,
        /// The whole machine's busy CPU time while the handshakes ran, per
        /// handshake, and as CPUs kept busy.
        cpu_ms_per_handshake: f64,
        busy_cpus: f64,
        failed: u64,
        bulk_mbyte_per_s: f64,
    }

    #[derive(Clone, Copy, Default)]
    struct Sample {
        gbit_per_s: f64,
        cpu_s_per_gib: f64,
    }

    pub fn run() -> anyhow::Result<()> {
        let topo = Topology::two_armed(1, 1);
        let backend = &topo.backends[0];
        let mut server = iperf_server(&topo);
        let direct = SocketAddr::new(backend.addr.into(), PORT);
        let through_haproxy: SocketAddr = format!("{HAPROXY_VIP}:{PORT}").parse()?;
        let through_tether: SocketAddr = format!("{TETHER_VIP}:{PORT}").parse()?;
        let tls_server = BackendServer::rustls(&backend.ns, SocketAddr::new(backend.addr.into(), TLS_PORT), "b0");
        let tls_targets: [SocketAddr; 3] = [
            SocketAddr::new(backend.addr.into(), TLS_PORT),
            format!("{HAPROXY_VIP}:{TLS_PORT}").parse()?,
            format!("{TETHER_VIP}:{TLS_PORT}").parse()?,
        ];
        topo.lb.ip(&format!("addr add {HAPROXY_VIP}/32 dev lo"));
        // Interleaved rounds, so a slow moment of the VM hits every path alike.
        let mut samples: [Vec<Sample>; 3] = Default::default();
        let mut tls: [Vec<TlsSample>; 3] = Default::default();
        for _ in 0..ROUNDS {
            {
                let _pass = attach_pass_on_balancer(&topo)?;
                samples[0].push(measure(&topo, direct)?);
                tls[0].push(measure_tls(&topo, tls_targets[0])?);
                let _haproxy = haproxy(&topo)?;
                samples[1].push(measure(&topo, through_haproxy)?);
                tls[1].push(measure_tls(&topo, tls_targets[1])?);
            }
            let _tether = Tether::start(&topo.lb, &tether_config(&topo));
            samples[2].push(measure(&topo, through_tether)?);
            tls[2].push(measure_tls(&topo, tls_targets[2])?);
        }
        server.stop();
        drop(tls_server);
        print_tls(&tls);
        println!();
        let labels = ["no balancer (lb routes)", "HAProxy 2.6, TCP mode", "tether tcp VIP (XDP)"];
        let medians: Vec<Sample> = samples.iter().map(|s| median(s)).collect();
        println!(
            "iperf3, 1 stream, {SECONDS} s per run, {ROUNDS} interleaved rounds, medians; client -> backend, two-armed veths"
        );
        println!("{:<26} {:>10} {:>10} {:>14} {:>16}", "path", "Gbit/s", "vs direct", "CPU s / GiB", "CPU over direct");
        for (label, m) in labels.iter().zip(&medians) {
            println!(
                "{:<26} {:>10.2} {:>9.2}x {:>14.3} {:>16.3}",
                label,
                m.gbit_per_s,
                m.gbit_per_s / medians[0].gbit_per_s,
                m.cpu_s_per_gib,
                m.cpu_s_per_gib - medians[0].cpu_s_per_gib
            );
        }
        Ok(())
    }

    /// TLS through one setup: handshakes per second (each a full handshake,
    /// `GET /whoami` and its answer, from `TLS_CONCURRENCY` clients at once),
    /// then `TLS_BULK` bytes through one connection and back.
    fn measure_tls(topo: &Topology, target: SocketAddr) -> anyhow::Result<TlsSample> {
        let duration = Duration::from_secs(u64::from(SECONDS));
        let busy_before = busy_seconds()?;
        let (ok, failed) = peers::tls_exchanges(&topo.clients[0].ns, target, TLS_CONCURRENCY, duration)?;
        let busy = busy_seconds()? - busy_before;
        let start = std::time::Instant::now();
        peers::rustls_echo(&topo.clients[0].ns, target, TLS_BULK)?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(TlsSample {
            handshakes_per_s: ok as f64 / duration.as_secs_f64(),
            cpu_ms_per_handshake: busy * 1e3 / ok.max(1) as f64,
            busy_cpus: busy / duration.as_secs_f64(),
            failed,
            bulk_mbyte_per_s: TLS_BULK as f64 / seconds / 1e6,
        })
    }

    fn print_tls(tls: &[Vec<TlsSample>; 3]) {
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let handshakes: Vec<f64> = tls.iter().map(|s| mid(s.iter().map(|t| t.handshakes_per_s).collect())).collect();
        let bulk: Vec<f64> = tls.iter().map(|s| mid(s.iter().map(|t| t.bulk_mbyte_per_s).collect())).collect();
        let cpu: Vec<f64> = tls.iter().map(|s| mid(s.iter().map(|t| t.cpu_ms_per_handshake).collect())).collect();
        let busy: Vec<f64> = tls.iter().map(|s| mid(s.iter().map(|t| t.busy_cpus).collect())).collect();
        println!(
            "TLS (rustls client and server, ECDSA P-256): handshakes/s with {TLS_CONCURRENCY} concurrent clients over \
             {SECONDS} s, and {} MiB echoed through one connection; {ROUNDS} interleaved rounds, medians",
            TLS_BULK >> 20
        );
        println!(
            "{:<26} {:>12} {:>10} {:>8} {:>12} {:>10} {:>14} {:>10}",
            "path", "handshakes/s", "vs direct", "failed", "CPU ms / hs", "CPUs busy", "bulk MB/s", "vs direct"
        );
        let labels = ["no balancer (lb routes)", "HAProxy 2.6, TCP mode", "tether tls VIP (XDP)"];
        for (i, label) in labels.iter().enumerate() {
            let failed: u64 = tls[i].iter().map(|t| t.failed).sum();
            println!(
                "{:<26} {:>12.0} {:>9.2}x {:>8} {:>12.3} {:>10.2} {:>14.0} {:>9.2}x",
                label,
                handshakes[i],
                handshakes[i] / handshakes[0],
                failed,
                cpu[i],
                busy[i],
                bulk[i],
                bulk[i] / bulk[0]
            );
        }
    }

    /// Per-field medians over rounds.
    fn median(samples: &[Sample]) -> Sample {
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Sample {
            gbit_per_s: mid(samples.iter().map(|s| s.gbit_per_s).collect()),
            cpu_s_per_gib: mid(samples.iter().map(|s| s.cpu_s_per_gib).collect()),
        }
    }

    fn iperf_server(topo: &Topology) -> Proc {
        let b = &topo.backends[0];
        let mut cmd = b.ns.command("iperf3");
        cmd.args(["-s", "--forceflush", "-B", &b.addr.to_string(), "-p", &PORT.to_string()]);
        let mut p = Proc::spawn("iperf3 -s", cmd);
        p.wait_for_output("Server listening", Duration::from_secs(10));
        p
    }

    /// One iperf3 run from the client to `target`; throughput and CPU per GiB.
    fn measure(topo: &Topology, target: SocketAddr) -> anyhow::Result<Sample> {
        let busy_before = busy_seconds()?;
        let out = topo.clients[0]
            .ns
            .command("iperf3")
            .args(["-c", &target.ip().to_string(), "-p", &target.port().to_string(), "-t", &SECONDS.to_string(), "-J"])
            .output()?;
        let busy = busy_seconds()? - busy_before;
        anyhow::ensure!(out.status.success(), "iperf3 to {target} failed: {}", String::from_utf8_lossy(&out.stdout));
        let json = String::from_utf8_lossy(&out.stdout);
        let received = section(&json, "\"sum_received\"")?;
        let bytes = number(received, "\"bytes\"")?;
        let bps = number(received, "\"bits_per_second\"")?;
        let gib = bytes / (1u64 << 30) as f64;
        Ok(Sample { gbit_per_s: bps / 1e9, cpu_s_per_gib: busy / gib })
    }

    fn section<'a>(json: &'a str, key: &str) -> anyhow::Result<&'a str> {
        let start = json.find(key).ok_or_else(|| anyhow::anyhow!("no {key} in iperf3 output"))?;
        let end = json[start..].find('}').map_or(json.len(), |e| start + e);
        Ok(&json[start..end])
    }

    fn number(section: &str, key: &str) -> anyhow::Result<f64> {
        let at = section.find(key).ok_or_else(|| anyhow::anyhow!("no {key}"))? + key.len();
        let rest = section[at..].trim_start_matches([':', ' ']);
        let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
        Ok(rest[..end].trim().parse()?)
    }

    /// Busy CPU time of the whole machine so far, in seconds (/proc/stat).
    fn busy_seconds() -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu = stat.lines().next().ok_or_else(|| anyhow::anyhow!("empty /proc/stat"))?;
        let fields: Vec<u64> = cpu.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
        let busy: u64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(busy as f64 / hz)
    }

    /// The no-op XDP program on both balancer interfaces, for as long as the
    /// returned object lives.
    fn attach_pass_on_balancer(topo: &Topology) -> anyhow::Result<aya::Ebpf> {
        let mut ebpf = aya::Ebpf::load(lb_user::TEST_OBJECT)?;
        let prog: &mut Xdp = ebpf.program_mut(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
        prog.load()?;
        for dev in [LB_CLIENT_IF, LB_BACKEND_IF] {
            topo.lb.enter(|| prog.attach(dev, XdpMode::Driver).map(|_| ()))?;
        }
        Ok(ebpf)
    }

    /// HAProxy in TCP mode on its own address in the balancer namespace.
    fn haproxy(topo: &Topology) -> anyhow::Result<(Proc, tempfile::TempDir)> {
        super::start_haproxy(
            topo,
            &format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend bench\n  bind {HAPROXY_VIP}:{PORT}\n  default_backend iperf\n\
                 backend iperf\n  server b0 {b}:{PORT}\n\
                 frontend tls\n  bind {HAPROXY_VIP}:{TLS_PORT}\n  default_backend tls\n\
                 backend tls\n  server b0 {b}:{TLS_PORT}\n",
                b = topo.backends[0].addr
            ),
        )
    }

    /// SNAT ports below Linux's ephemeral range: HAProxy's connections from
    /// the same address use that range, and the backend's TIME_WAIT entries
    /// from them would otherwise meet tether's SYNs (see the README).
    fn tether_config(topo: &Topology) -> String {
        format!(
            "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\
             snat_ports = \"10000-32767\"\n\n\
             [[vip]]\nname = \"bulk\"\naddress = \"{TETHER_VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\nfarm = \"bulk\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
             [[vip]]\nname = \"tls\"\naddress = \"{TETHER_VIP}\"\nport = {TLS_PORT}\nfarm = \"tls\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
             [[farm]]\nname = \"bulk\"\n{}\n\n[[farm]]\nname = \"tls\"\npersistence = []\n{}",
            topo.pin_path(),
            topo.backends_toml(PORT),
            topo.backends_toml(TLS_PORT)
        )
    }
}

mod first_byte {
    //! The time a ClientHello over two segments adds (DESIGN.md §2 step 3b):
    //! from `connect` to the backend's first byte, for a one-segment hello
    //! (517 bytes, curl) and a two-segment one (1,952 bytes, Chromium, cut
    //! by the client's kernel at its MSS), and an 8 KB one that takes the
    //! daemon's slow path, through a `tls` VIP to a plain TCP
    //! backend that greets on accept, so the first byte leaves the backend
    //! as soon as tether's ACK carrying the hello reaches it.

    use std::{
        io::{Read as _, Write as _},
        net::{SocketAddr, TcpStream},
        time::{Duration, Instant},
    };

    use tether_tests::{
        peers::BackendServer,
        tether::Tether,
        topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
    };

    const PORT: u16 = 443;
    /// Connections per hello, interleaved.
    const CONNECTIONS: usize = 500;
    /// Concurrent clients for the slow path's rate.
    const SLOW_CLIENTS: usize = 8;
    const TWO_SEGMENTS: &[u8] = include_bytes!("../../corpus/chromium-nginx-1.client");

    pub fn run() -> anyhow::Result<()> {
        let topo = Topology::two_armed(1, 1);
        let b = &topo.backends[0];
        let _server = BackendServer::plain_tcp(&b.ns, SocketAddr::new(b.addr.into(), PORT), "b0");
        let config = format!(
            "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
             [[vip]]\nname = \"tls\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"tls\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
             [[farm]]\nname = \"tls\"\npersistence = []\n{}",
            topo.pin_path(),
            topo.backends_toml(PORT)
        );
        let tether = Tether::start(&topo.lb, &config);
        let vip = SocketAddr::new(VIP.into(), PORT);
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let (held_before, held_after) = {
            let before = tether.counters().get(lb_common::reason::TLS_HELLO_PART);
            topo.clients[0].ns.enter(|| -> anyhow::Result<()> {
                for _ in 0..CONNECTIONS {
                    one.push(first_byte(vip, super::CLIENT_HELLO)?);
                    two.push(first_byte(vip, TWO_SEGMENTS)?);
                }
                Ok(())
            })?;
            (before, tether.counters().get(lb_common::reason::TLS_HELLO_PART))
        };
        let (mut slow, mut slow_rate) = (Vec::new(), 0.0);
        let long = tether_tests::tls_msg::padded_client_hello(&[], 8_000, None);
        topo.clients[0].ns.enter(|| -> anyhow::Result<()> {
            for _ in 0..CONNECTIONS / 5 {
                slow.push(first_byte(vip, &long)?);
            }
            slow_rate = per_second(vip, &long, SLOW_CLIENTS, Duration::from_secs(5))?;
            Ok(())
        })?;
        let slow_path = tether.counters().get(lb_common::reason::TLS_HELLO_SLOW_PATH);
        let (one, two, slow) = (percentiles(one), percentiles(two), percentiles(slow));
        println!(
            "Time to the backend's first byte, connect included, {CONNECTIONS} interleaved connections per hello, \
             one tls VIP, a plain TCP backend"
        );
        println!("{:<36} {:>12} {:>12} {:>12}", "ClientHello", "median µs", "p90 µs", "p99 µs");
        for (label, p) in [
            ("517 B, one segment", one),
            ("1,952 B, two segments", two),
            (&format!("{} B, daemon's slow path", long.len()), slow),
        ] {
            println!("{label:<36} {:>12.1} {:>12.1} {:>12.1}", p[0], p[1], p[2]);
        }
        println!(
            "two segments add {:.1} µs at the median ({} hellos held over segments); the slow path {:.1} µs",
            two[0] - one[0],
            held_after - held_before,
            slow[0] - one[0]
        );
        println!(
            "slow-path connections (hello to first byte) per second, {SLOW_CLIENTS} clients for 5 s: {slow_rate:.0} \
             ({slow_path} segments through the daemon)"
        );
        Ok(())
    }

    /// Clients making connections in a loop for `duration`, each sending
    /// `hello` and waiting for the first byte: completed connections per second.
    fn per_second(vip: SocketAddr, hello: &[u8], clients: usize, duration: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + duration;
        let done: anyhow::Result<usize> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<usize> {
                        let mut n = 0;
                        while Instant::now() < deadline {
                            first_byte(vip, hello)?;
                            n += 1;
                        }
                        Ok(n)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("client thread")).sum()
        });
        Ok(done? as f64 / duration.as_secs_f64())
    }

    fn first_byte(vip: SocketAddr, hello: &[u8]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut stream = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(hello)?;
        let mut byte = [0u8; 1];
        // The client's port finds the connection in the daemon's log.
        stream
            .read_exact(&mut byte)
            .map_err(|e| anyhow::anyhow!("port {}: {e}", stream.local_addr().map(|a| a.port()).unwrap_or(0)))?;
        Ok(start.elapsed())
    }

    /// Median, p90 and p99 in microseconds.
    fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
        samples.sort_unstable();
        let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)].as_secs_f64() * 1e6;
        [at(50), at(90), at(99)]
    }
}

mod resumption {
    //! The share of offered sessions that resume, every client from one
    //! address, four backends: through tether (persistence learned in XDP)
    //! and through HAProxy sticking on the session ID (`payload_lv(43,1)`,
    //! the usual TCP-mode setup), in one topology and one run.

    use std::net::SocketAddr;

    use tether_tests::{
        peers::{self, BackendServer, SessionFile},
        process::Proc,
        tether::Tether,
        topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology},
    };

    const TETHER_VIP: &str = "198.18.100.100";
    const HAPROXY_VIP: &str = "198.18.100.102";
    const PORT: u16 = 443;
    const OFFERS: usize = 100;

    pub fn run() -> anyhow::Result<()> {
        let topo = Topology::two_armed(1, 4);
        topo.lb.ip(&format!("addr add {HAPROXY_VIP}/32 dev lo"));
        println!(
            "Resumption share: one client address, one saved session offered {OFFERS} times, four openssl s_server \
             backends, round-robin"
        );
        println!("{:<44} {:>14} {:>14}", "sessions", "HAProxy 2.6", "tether");
        for (label, server_args, client_args) in [
            ("TLS 1.2 session IDs (-no_ticket)", &["-no_ticket"][..], &["-tls1_2"][..]),
            ("TLS 1.3 tickets (each backend its own key)", &[][..], &["-tls1_3"][..]),
        ] {
            let _backends: Vec<BackendServer> = topo
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let addr = SocketAddr::new(b.addr.into(), PORT);
                    BackendServer::openssl_with(&b.ns, addr, &format!("b{i}"), server_args)
                })
                .collect();
            let haproxy_share = {
                let _haproxy = haproxy(&topo)?;
                offers(&topo, format!("{HAPROXY_VIP}:{PORT}").parse()?, client_args)?
            };
            let tether_share = {
                let _tether = Tether::start(&topo.lb, &tether_config(&topo));
                offers(&topo, format!("{TETHER_VIP}:{PORT}").parse()?, client_args)?
            };
            println!("{label:<44} {:>13}% {:>13}%", haproxy_share, tether_share);
        }
        println!(
            "(every offer counts, the first ones too: tether learns a TLS 1.3 ticket's key name the first time its \
             backend accepts one)"
        );
        Ok(())
    }

    /// Saves a session through `target`, offers it `OFFERS` times; the
    /// percentage resumed.
    fn offers(topo: &Topology, target: SocketAddr, client_args: &[&str]) -> anyhow::Result<usize> {
        let dir = tempfile::tempdir()?;
        let session = dir.path().join("session.pem");
        let client = &topo.clients[0].ns;
        peers::openssl_session(client, target, client_args, &session, SessionFile::Save)?;
        let mut resumed = 0;
        for _ in 0..OFFERS {
            resumed +=
                usize::from(peers::openssl_session(client, target, client_args, &session, SessionFile::Offer)?.0);
        }
        Ok(resumed * 100 / OFFERS)
    }

    /// HAProxy in TCP mode sticking on the TLS session ID: looked up from the
    /// ClientHello, stored from the ServerHello (HAProxy 2.6 sees the
    /// ServerHello only with `tcp-response inspect-delay`).
    fn haproxy(topo: &Topology) -> anyhow::Result<(Proc, tempfile::TempDir)> {
        let servers: String =
            topo.backends.iter().enumerate().map(|(i, b)| format!("  server b{i} {}:{PORT}\n", b.addr)).collect();
        super::start_haproxy(
            topo,
            &format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
                 timeout server 60s\nfrontend tls\n  bind {HAPROXY_VIP}:{PORT}\n  default_backend tls\n\
                 backend tls\n  balance roundrobin\n  stick-table type binary len 32 size 30k expire 30m\n  \
                 acl clienthello req.ssl_hello_type 1\n  acl serverhello res.ssl_hello_type 2\n  \
                 tcp-request inspect-delay 5s\n  tcp-request content accept if clienthello\n  \
                 tcp-response inspect-delay 5s\n  tcp-response content accept if serverhello\n  \
                 stick on req.payload_lv(43,1) if clienthello\n  \
                 stick store-response res.payload_lv(43,1) if serverhello\n{servers}"
            ),
        )
    }

    fn tether_config(topo: &Topology) -> String {
        format!(
            "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\
             snat_ports = \"10000-32767\"\n\n\
             [[vip]]\nname = \"tls\"\naddress = \"{TETHER_VIP}\"\nport = {PORT}\nfarm = \"tls\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
             [[farm]]\nname = \"tls\"\npersistence = [\"session-id\", \"ticket\", \"ticket-key\"]\n{}",
            topo.pin_path(),
            topo.backends_toml(PORT)
        )
    }
}

/// HAProxy in the balancer namespace with `config`, for as long as the
/// returned process lives.
fn start_haproxy(
    topo: &tether_tests::topology::Topology,
    config: &str,
) -> anyhow::Result<(tether_tests::process::Proc, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config)?;
    let mut cmd = topo.lb.command("haproxy");
    cmd.args(["-db", "-f"]).arg(&cfg);
    let p = tether_tests::process::Proc::spawn("haproxy", cmd);
    // HAProxy prints nothing when it starts cleanly; give it a moment to bind.
    std::thread::sleep(std::time::Duration::from_millis(500));
    Ok((p, dir))
}
