//! `cargo xtask bench`: what tether costs per packet, measured with
//! BPF_PROG_TEST_RUN on the real program, as medians over rounds and as ratios
//! to a no-op XDP program (`tether_pass`) measured in the same run.
//!
//! Benchmarks, not tests: nothing here asserts a time.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{VipInfo, maps as abi};
use lb_user::loader::vip_key;
use tether_tests::packet::{TcpSeg, tcp_v4};

const ROUNDS: usize = 15;
const REPEAT: u32 = 200_000;

fn main() -> anyhow::Result<()> {
    tether_tests::require_root();
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJECT)?;
    let vip = Ipv4Addr::new(198, 18, 100, 100);
    {
        let mut vips: HashMap<&mut MapData, _, VipInfo> = ebpf.map_mut(abi::VIPS_MAP).expect("VIPS").try_into()?;
        let info =
            VipInfo { vip_id: 0, farm_id: 0, snat_be: [0; 16], protocol: abi::Protocol::Tls as u8, _pad: [0; 3] };
        vips.insert(vip_key(vip.into(), 443), info, 0)?;
    }
    for name in [abi::XDP_PROGRAM, abi::XDP_PASS_PROGRAM] {
        let prog: &mut Xdp = ebpf.program_mut(name).expect("program").try_into()?;
        prog.load()?;
    }
    let client = Ipv4Addr::new(198, 18, 0, 10);
    let paths: [(&str, &str, Vec<u8>); 3] = [
        (
            "no-op XDP (baseline)",
            abi::XDP_PASS_PROGRAM,
            tcp_v4(client, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_000, 22)),
        ),
        ("non-VIP pass", abi::XDP_PROGRAM, tcp_v4(client, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_000, 22))),
        ("VIP SYN (counted, passed)", abi::XDP_PROGRAM, tcp_v4(client, vip, &TcpSeg::syn(40_000, 443))),
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
        results.push((*label, samples[ROUNDS / 2], samples[0], samples[ROUNDS - 1]));
    }
    let baseline = results[0].1.max(1) as f64;
    println!("BPF_PROG_TEST_RUN, {ROUNDS} rounds x {REPEAT} runs, {}-byte TCP SYN frames", paths[0].2.len());
    println!("{:<28} {:>10} {:>8} {:>8} {:>12}", "path", "median ns", "min", "max", "vs no-op");
    for (label, median, min, max) in &results {
        println!("{label:<28} {median:>10} {min:>8} {max:>8} {:>11.2}x", *median as f64 / baseline);
    }
    Ok(())
}
