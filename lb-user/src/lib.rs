//! tether's daemon as a library, so the binary, tests and benchmarks drive the
//! same code.

pub mod batch;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod farm;
pub mod flows;
pub mod health;
pub mod layout;
pub mod loader;
pub mod maglev;
pub mod metrics;
pub mod neighbors;
pub mod pending;
pub mod pins;
pub mod server_flight;
pub mod session_filter;
pub mod sessions;
pub mod sessions_cli;
pub mod slow_path;
pub mod stats;

/// The compiled XDP object (lb-ebpf), embedded at build time.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// Test and benchmark programs (`tether_pass`, `tether_lossy`), for the test
/// harness only; the daemon never loads them.
pub static TEST_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf-test"));
