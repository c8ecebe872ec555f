//! Builds the XDP object (lb-ebpf) for the BPF target with nightly + bpf-linker
//! and leaves it in OUT_DIR, where `loader.rs` embeds it.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("lb-user has no parent directory")?
        .join("lb-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    let package = Package { name: "lb-ebpf", root_dir: root, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::default())
        .context("building the XDP object failed; `cargo xtask setup` installs what it needs")
}
