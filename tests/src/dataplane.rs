//! The data path loaded for BPF_PROG_TEST_RUN, the way golden-packet tests and
//! benchmarks drive it: maps filled by the daemon's own loader from a TOML
//! config, nothing attached.

use std::path::Path;

use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use lb_common::{Flow, FlowKey, FlowKeyV4, maps as abi, reason};
use lb_user::{config::Config, stats::Counters};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub struct TestDataplane {
    pub ebpf: Ebpf,
}

impl TestDataplane {
    /// Loads the program with maps filled from `config` (TOML text); the
    /// verifier's verdict is part of what this checks.
    pub fn new(config: &str) -> TestDataplane {
        crate::require_root();
        let config = Config::parse(Path::new("test.toml"), config).unwrap_or_else(|e| panic!("test config: {e:?}"));
        TestDataplane { ebpf: lb_user::loader::load(&config).expect("the verifier accepts the program") }
    }

    /// Runs one frame; returns the action and the frame as the program left it.
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self.ebpf.program(abi::XDP_PROGRAM).expect("program").try_into().expect("xdp");
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// Runs one frame through the tc ingress program; returns its action and
    /// the frame as it left it (which may have grown).
    pub fn run_tc(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &SchedClassifier = self.ebpf.program(abi::TC_PROGRAM).expect("program").try_into().expect("tc");
        let mut out = vec![0u8; frame.len() + 4096];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// As `expect`, for the tc program.
    pub fn expect_tc(&self, frame: &[u8], expected: u32) -> (u32, Vec<u8>) {
        self.expect_counted(expected, || self.run_tc(frame))
    }

    /// Runs a frame that must be counted once under `expected` and under no
    /// other reason; returns the action and the frame as the program left it.
    pub fn expect(&self, frame: &[u8], expected: u32) -> (u32, Vec<u8>) {
        self.expect_counted(expected, || self.run(frame))
    }

    fn expect_counted(&self, expected: u32, run: impl FnOnce() -> (u32, Vec<u8>)) -> (u32, Vec<u8>) {
        let before = self.counters();
        let out = run();
        let after = self.counters();
        for r in 0..reason::COUNT {
            let moved = after.get(r) - before.get(r);
            let want = u64::from(r == expected);
            assert_eq!(
                moved,
                want,
                "counter {} moved by {moved}, expected {want} (frame expected as {})",
                reason::name(r),
                reason::name(expected)
            );
        }
        out
    }

    /// The frame must come out untouched with XDP_PASS, counted under `expected`.
    pub fn expect_pass(&self, frame: &[u8], expected: u32) {
        let (action, out) = self.expect(frame, expected);
        assert_eq!(action, XDP_PASS, "action for a frame expected as {}", reason::name(expected));
        assert_eq!(out, frame, "a passed frame must not be modified");
    }

    pub fn counters(&self) -> Counters {
        let m: PerCpuArray<&MapData, u64> = self.ebpf.map(abi::STATS_MAP).expect("STATS").try_into().expect("array");
        lb_user::stats::read(&m).expect("read counters")
    }

    /// Connections waiting for their backend (`PENDING` entries).
    pub fn pending(&self) -> usize {
        let m: HashMap<&MapData, FlowKey, lb_common::Pending> =
            self.ebpf.map(abi::PENDING_MAP).expect("PENDING").try_into().expect("hash");
        m.keys().count()
    }

    pub fn flows(&self) -> Vec<(FlowKey, Flow)> {
        // Entry by entry (aya's iterator), not batched like the daemon:
        // `golden_nat` checks the two reads agree.
        let v4: HashMap<&MapData, FlowKeyV4, Flow> =
            self.ebpf.map(abi::FLOWS_V4_MAP).expect("FLOWS_V4").try_into().expect("hash");
        let v6: HashMap<&MapData, FlowKey, Flow> =
            self.ebpf.map(abi::FLOWS_V6_MAP).expect("FLOWS_V6").try_into().expect("hash");
        let mut all: Vec<(FlowKey, Flow)> = v6.iter().map(|e| e.expect("read flow")).collect();
        all.extend(v4.iter().map(|e| e.expect("read flow")).map(|(k, f)| (k.widen(), f)));
        all
    }

    /// The frames XDP put in the slow path's ring since the last call, all
    /// of them of `kind` (`slow_kind`).
    pub fn slow_path_frames(&mut self, kind: u8) -> Vec<Vec<u8>> {
        let map = self.ebpf.map_mut(abi::SLOW_PATH_MAP).expect("SLOW_PATH");
        let mut ring = aya::maps::RingBuf::try_from(map).expect("ring buffer");
        let mut frames = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), std::mem::size_of::<abi::SlowSegment>());
            // SAFETY: XDP wrote a whole SlowSegment (plain data); read unaligned.
            let seg: abi::SlowSegment = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            assert_eq!(seg.kind, kind, "what the daemon is to do with the frame");
            frames.push(seg.frame[..usize::from(seg.len)].to_vec());
        }
        frames
    }
}
