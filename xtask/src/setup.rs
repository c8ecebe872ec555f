//! `cargo xtask setup`: installs what building and testing tether needs on a fresh
//! Debian machine. Idempotent: every step checks first, so a second run on a
//! ready machine downloads nothing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cmd_ok, run};

/// The toolchain lb-ebpf builds with (aya-build runs `rustup run nightly`).
const EBPF_TOOLCHAIN: &str = "nightly";
/// bpf-linker must be built against the LLVM that the toolchain uses.
const LLVM_MAJOR: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Runs the fuzz targets in `fuzz/` (the test command runs each briefly).
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// The Prometheus project's own Python client, whose text-format parser the
/// metrics test reads tether's endpoint with.
const PROMETHEUS_CLIENT: &str = "prometheus_client==0.26.0";

/// Debian packages: LLVM for bpf-linker, and the tools the tests and demo run.
const PACKAGES: &[&str] = &[
    "llvm-22-dev", // bpf-linker links against libLLVM 22
    "libzstd-dev", // libLLVM's link dependencies
    "zlib1g-dev",
    "iproute2",     // ip netns, veth, bridges
    "ethtool",      // TX checksum offload off on test peers
    "iputils-ping", // host traffic still works with tether attached
    "openssl",      // s_server / s_client in tests
    "iperf3",       // bulk throughput in `cargo xtask bench`
    "haproxy",      // the comparison balancer in `cargo xtask bench`
    "nginx",        // ticket-issuing backends in the persistence tests
    "apache2",      // mod_ssl session-cache backends in the persistence tests
    "chromium",     // a browser's post-quantum ClientHellos through tether
];

pub fn setup() -> anyhow::Result<()> {
    let mut plan = Vec::new();
    let missing = missing_packages();
    if !missing.is_empty() {
        plan.push(Step::Apt(missing));
    }
    if !cmd_ok("rustup", &["run", EBPF_TOOLCHAIN, "rustc", "--version"]) {
        plan.push(Step::Toolchain);
    }
    if !rust_src_installed() {
        plan.push(Step::RustSrc);
    }
    if !bpf_linker_ok() {
        plan.push(Step::BpfLinker);
    }
    if !cmd_ok("cargo", &["fuzz", "--version"]) {
        plan.push(Step::CargoFuzz);
    }
    if !cmd_ok("python3", &["-c", "import prometheus_client.parser"]) {
        plan.push(Step::PrometheusClient);
    }
    if plan.is_empty() {
        println!(
            "setup: everything is installed (llvm-{LLVM_MAJOR}, {EBPF_TOOLCHAIN} + rust-src, bpf-linker, cargo-fuzz, prometheus_client, test tools)"
        );
        return Ok(());
    }
    if !is_root() {
        eprintln!("setup: these steps need root; run them, then try again:");
        for step in &plan {
            eprintln!("    {}", step.command());
        }
        bail!("missing prerequisites and not root");
    }
    for step in &plan {
        println!("setup: {}", step.describe());
        step.run().with_context(|| {
            format!("setup step failed; the command was:\n    {}\n(no network to the package registries? run it by hand when there is)", step.command())
        })?;
    }
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker is still not usable after installing it; check `ldd $(which bpf-linker)` links libLLVM {LLVM_MAJOR}"
        );
    }
    println!("setup: done");
    Ok(())
}

enum Step {
    Apt(Vec<&'static str>),
    Toolchain,
    RustSrc,
    BpfLinker,
    CargoFuzz,
    PrometheusClient,
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Apt(p) => format!("installing Debian packages: {}", p.join(" ")),
            Step::Toolchain => format!("installing the {EBPF_TOOLCHAIN} Rust toolchain (builds the XDP program)"),
            Step::RustSrc => format!("adding rust-src to {EBPF_TOOLCHAIN} (build-std=core for the BPF target)"),
            Step::BpfLinker => {
                format!("building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (a few minutes)")
            }
            Step::CargoFuzz => format!("building cargo-fuzz {CARGO_FUZZ_VERSION} (runs the fuzz targets)"),
            Step::PrometheusClient => {
                format!("installing {PROMETHEUS_CLIENT} from PyPI (parses the metrics endpoint in a test)")
            }
        }
    }

    fn command(&self) -> String {
        match self {
            Step::Apt(p) => format!("apt-get update && apt-get install -y --no-install-recommends {}", p.join(" ")),
            Step::Toolchain => {
                format!("rustup toolchain install {EBPF_TOOLCHAIN} --profile minimal --component rust-src")
            }
            Step::RustSrc => format!("rustup component add rust-src --toolchain {EBPF_TOOLCHAIN}"),
            Step::BpfLinker => format!(
                "LLVM_PREFIX=/usr/lib/llvm-{LLVM_MAJOR} LLVM_SYS_{LLVM_MAJOR}1_PREFIX=/usr/lib/llvm-{LLVM_MAJOR} cargo install bpf-linker --version {BPF_LINKER_VERSION} --no-default-features --features llvm-{LLVM_MAJOR}"
            ),
            Step::CargoFuzz => format!("cargo install cargo-fuzz --version {CARGO_FUZZ_VERSION} --locked"),
            Step::PrometheusClient => format!("python3 -m pip install {PROMETHEUS_CLIENT}"),
        }
    }

    fn run(&self) -> anyhow::Result<()> {
        match self {
            Step::Apt(packages) => {
                run(Command::new("apt-get").args(["update", "-q"]))?;
                run(Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends"])
                    .args(packages)
                    .env("DEBIAN_FRONTEND", "noninteractive"))
            }
            Step::Toolchain => run(Command::new("rustup").args([
                "toolchain",
                "install",
                EBPF_TOOLCHAIN,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ])),
            Step::RustSrc => {
                run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", EBPF_TOOLCHAIN]))
            }
            Step::BpfLinker => {
                let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
                // bpf-linker's build script reads LLVM_PREFIX; llvm-sys reads its own
                // versioned variable. Both must point at LLVM 22.
                run(Command::new("cargo")
                    .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features"])
                    .args(["--features", &format!("llvm-{LLVM_MAJOR}")])
                    .env("LLVM_PREFIX", &prefix)
                    .env(format!("LLVM_SYS_{LLVM_MAJOR}1_PREFIX"), &prefix))
            }
            Step::CargoFuzz => {
                run(Command::new("cargo").args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]))
            }
            Step::PrometheusClient => run(Command::new("python3").args(["-m", "pip", "install", PROMETHEUS_CLIENT])),
        }
    }
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn rust_src_installed() -> bool {
    Command::new("rustup").args(["component", "list", "--installed", "--toolchain", EBPF_TOOLCHAIN]).output().is_ok_and(
        |o| o.status.success() && String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("rust-src")),
    )
}

/// bpf-linker is on PATH and dynamically linked to libLLVM of the right major.
fn bpf_linker_ok() -> bool {
    let Ok(path) = which("bpf-linker") else { return false };
    Command::new("ldd")
        .arg(&path)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("libLLVM.so.{LLVM_MAJOR}")))
}

fn which(program: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output()?;
    if !out.status.success() {
        bail!("{program} not found");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
