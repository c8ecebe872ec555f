//! `cargo xtask <command>`: the project's entry points.
//!
//! - `setup`: install the toolchain and tools (also run by the others)
//! - `test`:  every test: unit, golden packets (BPF_PROG_TEST_RUN), namespaces
//! - `demo`:  tether in network namespaces with real TLS backends
//! - `bench`: per-path ns/packet through BPF_PROG_TEST_RUN
//! - `build`: the release `tether` binary

mod setup;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

const USAGE: &str = "usage: cargo xtask <setup|build|test|demo|bench> [-- extra args for cargo test]";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "setup" => setup::setup(),
        "build" => {
            setup::setup()?;
            build_tether(true)
        }
        "test" => test(&rest),
        "demo" => demo(),
        "bench" => bench(),
        _ => bail!("{USAGE}"),
    }
}

/// Namespace and golden-packet tests need root: say so before building anything.
fn require_root(what: &str) -> anyhow::Result<()> {
    if !setup::is_root() {
        bail!("{what} needs root (network namespaces, XDP, BPF_PROG_TEST_RUN); run it with sudo");
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    require_root("cargo xtask test")?;
    setup::setup()?;
    build_tether(false)?;
    let tether = workspace_root().join("target/debug/tether");
    // Host crates only: lb-ebpf is built for the BPF target by lb-user's build script.
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--workspace", "--exclude", "lb-ebpf"]).args(extra).env("TETHER_BIN", tether);
    let totals = run_counting_tests(&mut cmd)?;
    println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if totals.failed > 0 || !totals.ok {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    fuzz_briefly()?;
    Ok(())
}

/// Fuzz targets (`fuzz/`) and how long the test command runs each: a short
/// run that catches what a change broke; the README says how to run long.
const FUZZ_TARGETS: [&str; 2] = ["client_hello", "server_hello"];
const FUZZ_SECONDS: u32 = 20;

/// Runs each fuzz target for `FUZZ_SECONDS`, seeded with the recorded
/// handshakes of `tests/corpus`; a crash (a panic, a disagreement with
/// tls-parser, a span outside the buffer) fails the test command.
fn fuzz_briefly() -> anyhow::Result<()> {
    for target in FUZZ_TARGETS {
        let corpus = workspace_root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&corpus)
            .arg(workspace_root().join("tests/corpus"))
            .args(["--", &format!("-max_total_time={FUZZ_SECONDS}"), "-print_final_stats=1"]);
        run(&mut cmd).with_context(|| {
            format!("fuzz target `{target}` failed: the crashing input is in fuzz/artifacts/{target}/")
        })?;
        println!("fuzz: {target} ran {FUZZ_SECONDS} s without a failure");
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    ok: bool,
}

/// Runs `cargo test`, echoing its output, and adds up its "test result:" lines
/// so one closing line summarises every test binary.
fn run_counting_tests(cmd: &mut Command) -> anyhow::Result<Totals> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) {
                    match what {
                        "passed" => totals.passed += n,
                        "failed" => totals.failed += n,
                        "ignored" => totals.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    totals.ok = child.wait()?.success();
    Ok(totals)
}

fn demo() -> anyhow::Result<()> {
    require_root("cargo xtask demo")?;
    setup::setup()?;
    build_tether(true)?;
    build_test_bins()?;
    let root = workspace_root();
    run(Command::new(root.join("target/release/tether-demo")).env("TETHER_BIN", root.join("target/release/tether")))
}

fn bench() -> anyhow::Result<()> {
    require_root("cargo xtask bench")?;
    setup::setup()?;
    build_tether(true)?;
    build_test_bins()?;
    run(&mut Command::new(workspace_root().join("target/release/tether-bench")))
}

/// The demo, the benchmark and the test servers they start, in release mode.
fn build_test_bins() -> anyhow::Result<()> {
    run(Command::new("cargo").args(["build", "--release", "-p", "tether-tests", "--bins"]))
}

fn build_tether(release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "-p", "lb-user", "--bin", "tether"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// Runs a command in the workspace root, inheriting stdio; fails if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.current_dir(workspace_root()).status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// True if the command runs and exits 0 (output discarded).
pub fn cmd_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}
