//! `cargo xtask bench`: what tether costs per packet, measured with
//! BPF_PROG_TEST_RUN on the real program (maps filled by the daemon's loader),
//! as medians over rounds and as ratios to a no-op XDP program (`tether_pass`)
//! measured in the same run. It runs inside a namespace whose routes and
//! neighbours make `bpf_fib_lookup` answer, as on a real balancer.
//!
//! Then, in a two-armed namespace topology, bulk TCP throughput (iperf3, one
//! stream) from a client to a backend: with no balancer (the balancer namespace
//! only routes), through HAProxy in TCP mode, and through a tether `tcp` VIP,
//! all over the same veths; in the first two runs the balancer's interfaces run
//! the no-op XDP program, because attaching XDP to a veth changes its peer's
//! offloads and the baseline must not measure a different testbed. CPU is the
//! whole machine's busy time over the run (/proc/stat), per GiB moved.
//!
//! Benchmarks, not tests: nothing here asserts a time.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use lb_common::maps as abi;
use tether_tests::{
    dataplane::TestDataplane,
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
    net.ns.enter(bench)?;
    println!();
    net.ns.enter(sweep)?;
    drop(net);
    println!();
    bulk::run()
}

fn bench() -> anyhow::Result<()> {
    let dp = TestDataplane::new(&config());
    let mut test_programs = aya::Ebpf::load(lb_user::TEST_OBJECT)?;
    let pass: &mut Xdp = test_programs.program_mut(abi::XDP_PASS_PROGRAM).expect("pass program").try_into()?;
    pass.load()?;

    // One connection through the tcp VIP, so the established paths have a flow.
    let client_port = 40_000;
    dp.run(&tcp_v4(CLIENT, VIP, &TcpSeg::syn(client_port, 7)));
    let snat_port = dp
        .flows()
        .into_iter()
        .find(|(_, f)| f.direction == abi::FlowDirection::ToClient as u8 && u16::from_be(f.new_dport_be) == client_port)
        .map(|(k, _)| u16::from_be(k.dport_be))
        .ok_or_else(|| anyhow::anyhow!("the SYN created no flow; is the namespace's routing in place?"))?;
    let ebpf = &dp.ebpf;
    let mut data = TcpSeg::syn(client_port, 7).with_flags(TCP_ACK);
    data.payload = vec![0x17; 64];
    let mut reply = TcpSeg::syn(7, snat_port).with_flags(TCP_ACK);
    reply.payload = vec![0x17; 64];

    let paths: Vec<(&str, &aya::Ebpf, &str, Vec<u8>)> = vec![
        (
            "no-op XDP (baseline)",
            &test_programs,
            abi::XDP_PASS_PROGRAM,
            tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22)),
        ),
        (
            "non-VIP pass",
            ebpf,
            abi::XDP_PROGRAM,
            tcp_v4(CLIENT, Ipv4Addr::new(198, 18, 0, 1), &TcpSeg::syn(40_001, 22)),
        ),
        ("TLS VIP SYN -> cookie SYN-ACK", ebpf, abi::XDP_PROGRAM, tcp_v4(CLIENT, TLS_VIP, &TcpSeg::syn(40_002, 443))),
        ("established client->backend", ebpf, abi::XDP_PROGRAM, tcp_v4(CLIENT, VIP, &data)),
        ("established backend->client", ebpf, abi::XDP_PROGRAM, tcp_v4(BACKEND, SNAT, &reply)),
    ];
    let mut results = Vec::new();
    for (label, object, prog_name, frame) in &paths {
        let prog: &Xdp = object.program(prog_name).expect("program").try_into()?;
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
            let removed = lb_user::loader::sweep(&mut dp.ebpf, &timeouts).expect("sweep");
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
        process::Proc,
        tether::Tether,
        topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology},
    };

    const SECONDS: u32 = 5;
    const ROUNDS: usize = 3;
    const TETHER_VIP: &str = "198.18.100.100";
    const HAPROXY_VIP: &str = "198.18.100.102";
    const PORT: u16 = 5201;

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
        topo.lb.ip(&format!("addr add {HAPROXY_VIP}/32 dev lo"));
        // Interleaved rounds, so a slow moment of the VM hits every path alike.
        let mut samples: [Vec<Sample>; 3] = Default::default();
        for _ in 0..ROUNDS {
            {
                let _pass = attach_pass_on_balancer(&topo)?;
                samples[0].push(measure(&topo, direct)?);
                let _haproxy = haproxy(&topo)?;
                samples[1].push(measure(&topo, through_haproxy)?);
            }
            let _tether = Tether::start(&topo.lb, &tether_config(&topo));
            samples[2].push(measure(&topo, through_tether)?);
        }
        server.stop();
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
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend bench\n  bind {HAPROXY_VIP}:{PORT}\n  default_backend iperf\n\
                 backend iperf\n  server b0 {}:{PORT}\n",
                topo.backends[0].addr
            ),
        )?;
        let mut cmd = topo.lb.command("haproxy");
        cmd.args(["-db", "-f"]).arg(&cfg);
        let p = Proc::spawn("haproxy", cmd);
        // HAProxy prints nothing when it starts cleanly; give it a moment to bind.
        std::thread::sleep(Duration::from_millis(500));
        Ok((p, dir))
    }

    fn tether_config(topo: &Topology) -> String {
        format!(
            "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
             [[vip]]\nname = \"bulk\"\naddress = \"{TETHER_VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\nfarm = \"bulk\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
             [[farm]]\nname = \"bulk\"\n{}",
            topo.pin_path(),
            topo.backends_toml(PORT)
        )
    }
}
