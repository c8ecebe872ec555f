//! tether's test harness: network namespaces wired into a two-armed topology,
//! real processes that clean up after themselves, TLS servers and clients, and
//! a packet builder for golden-packet tests.
//!
//! Everything a test creates (namespaces, links, pins, processes) is owned by a
//! guard whose `Drop` removes it, so a failing test leaves nothing behind.

pub mod dataplane;
pub mod fibnet;
pub mod netns;
pub mod packet;
pub mod peers;
pub mod process;
pub mod raw_client;
pub mod tether;
pub mod tls_msg;
pub mod topology;

use std::path::PathBuf;

/// Fails the test loudly when it cannot run here, rather than letting it pass.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, XDP, BPF_PROG_TEST_RUN); run `sudo cargo xtask test`"
    );
}

/// A binary built alongside the running one (`target/<profile>/NAME`), for
/// finding `tether-testsrv` from tests (in `deps/`) and from the demo.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a directory");
    for candidate in [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()] {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not built next to {}; run `cargo build -p tether-tests --bins`", exe.display());
}
