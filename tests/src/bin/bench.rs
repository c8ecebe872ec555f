//! `cargo xtask bench`: what tether costs per packet, measured with
//! BPF_PROG_TEST_RUN on the real program (maps filled by the daemon's loader),
//! as medians over rounds and as ratios to a no-op XDP program (`tether_pass`)
//! measured in the same run. It runs inside a namespace whose routes and
//! neighbours make `bpf_fib_lookup` answer, as on a real balancer.
//!
//! Benchmarks, not tests: nothing here asserts a time.

use std::{net::Ipv4Addr, path::Path};

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::maps as abi;
use lb_user::config::Config;
use tether_tests::{
    fibnet::{BACKEND, CLIENT, Net, SNAT},
    packet::{TCP_ACK, TcpSeg, tcp_v4},
};

const ROUNDS: usize = 15;
const REPEAT: u32 = 200_000;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 100);
const TLS_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 101);

fn config() -> String {
    format!(
        "[daemon]\ninterfaces = [\"be\"]\nsnat_ports = \"10000-65535\"\n\n\
         [[vip]]\nname = \"echo\"\naddress = \"{VIP}\"\nport = 7\nprotocol = \"tcp\"\nfarm = \"echo\"\nsnat = \"{SNAT}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{TLS_VIP}\"\nport = 443\nfarm = \"echo\"\nsnat = \"{SNAT}\"\n\n\
         [[farm]]\nname = \"echo\"\n[[farm.backend]]\nname = \"b1\"\naddress = \"{BACKEND}:7\"\n"
    )
}

fn main() -> anyhow::Result<()> {
    let net = Net::new();
    net.ns.enter(bench)
}

fn bench() -> anyhow::Result<()> {
    let config = Config::parse(Path::new("bench.toml"), &config()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut ebpf = lb_user::loader::load(&config)?;
    let pass: &mut Xdp = ebpf.program_mut(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
    pass.load()?;

    // One connection through the tcp VIP, so the established paths have a flow.
    let client_port = 40_000;
    let syn = tcp_v4(CLIENT, VIP, &TcpSeg::syn(client_port, 7));
    run_once(&ebpf, abi::XDP_PROGRAM, &syn)?;
    let snat_port = snat_port(&ebpf, client_port)?;
    let mut data = TcpSeg::syn(client_port, 7).with_flags(TCP_ACK);
    data.payload = vec![0x17; 64];
    let mut reply = TcpSeg::syn(7, snat_port).with_flags(TCP_ACK);
    reply.payload = vec![0x17; 64];

    let paths: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "no-op XDP (baseline)",
            abi::XDP_PASS_PROGRAM,
            tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22)),
        ),
        ("non-VIP pass", abi::XDP_PROGRAM, tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22))),
        ("TLS VIP SYN (counted, passed)", abi::XDP_PROGRAM, tcp_v4(CLIENT, TLS_VIP, &TcpSeg::syn(40_002, 443))),
        ("established client->backend", abi::XDP_PROGRAM, tcp_v4(CLIENT, VIP, &data)),
        ("established backend->client", abi::XDP_PROGRAM, tcp_v4(BACKEND, SNAT, &reply)),
    ];
    let mut results = Vec::new();
    for (label, prog_name, frame) in &paths {
        let prog: &Xdp = ebpf.program(prog_name).expect("program").try_into()?;
        let mut samples: Vec<u64> = (0..ROUNDS)
            .map(|_| {
                let r = prog
                    .test_run(TestRunOptions { data_in: Some(frame), repeat: REPEAT, ..Default::default() })
                    .expect("BPF_PROG_TEST_RUN");
                // The kernel reports the mean time of one run over `repeat`.
                r.duration.as_nanos() as u64
            })
            .collect();
        samples.sort_unstable();
        results.push((*label, frame.len(), samples[ROUNDS / 2], samples[0], samples[ROUNDS - 1]));
    }
    let baseline = results[0].2.max(1) as f64;
    println!("BPF_PROG_TEST_RUN, {ROUNDS} rounds x {REPEAT} runs each; median, min and max of the rounds' means");
    println!("{:<32} {:>6} {:>10} {:>6} {:>6} {:>9}", "path", "bytes", "median ns", "min", "max", "vs no-op");
    for (label, bytes, median, min, max) in &results {
        println!("{label:<32} {bytes:>6} {median:>10} {min:>6} {max:>6} {:>8.2}x", *median as f64 / baseline);
    }
    Ok(())
}

fn run_once(ebpf: &Ebpf, prog: &str, frame: &[u8]) -> anyhow::Result<u32> {
    let prog: &Xdp = ebpf.program(prog).expect("program").try_into()?;
    Ok(prog.test_run(TestRunOptions { data_in: Some(frame), ..Default::default() })?.return_value)
}

/// The source port the SYN was given towards the backend.
fn snat_port(ebpf: &Ebpf, client_port: u16) -> anyhow::Result<u16> {
    let flows: aya::maps::HashMap<&aya::maps::MapData, lb_common::FlowKey, lb_common::Flow> =
        ebpf.map(abi::FLOWS_MAP).expect("FLOWS").try_into()?;
    for entry in flows.iter() {
        let (key, flow) = entry?;
        if flow.direction == abi::FlowDirection::ToClient as u8 && u16::from_be(flow.new_dport_be) == client_port {
            return Ok(u16::from_be(key.dport_be));
        }
    }
    anyhow::bail!("the SYN created no flow; is the namespace's routing in place?")
}
