//! Network namespaces that delete themselves.

use std::{
    fs::File,
    os::fd::AsRawFd,
    os::unix::process::CommandExt,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// A prefix unique to this process and call, so tests can run concurrently
/// (in one process or several) without their namespaces colliding.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("tt{:x}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct Netns {
    name: String,
    /// `/run/netns/NAME`, kept open for `setns`.
    handle: File,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        run_checked(Command::new("ip").args(["netns", "add", name]));
        let handle = File::open(format!("/run/netns/{name}")).unwrap_or_else(|e| panic!("open netns {name}: {e}"));
        let ns = Netns { name: name.to_owned(), handle };
        ns.ip("link set lo up");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside this namespace. Unlike `ip netns exec` it does
    /// not remount /sys, so bpffs pins stay visible to the test.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.handle.as_raw_fd();
        // SAFETY: between fork and exec only setns(2) runs, which is
        // async-signal-safe; fd stays open because `self` outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs a command in the namespace and panics with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        run_checked(self.command(program).args(args))
    }

    /// `ip -n NAME <args>`, split on white space.
    pub fn ip(&self, args: &str) {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args.split_whitespace()));
    }

    /// Runs `f` on a thread that has entered this namespace; sockets and XDP
    /// attachments made there belong to it. The calling thread never moves.
    /// TCP segments this namespace's kernel has retransmitted (`RetransSegs`).
    pub fn tcp_retransmitted(&self) -> u64 {
        let out = self.run("cat", &["/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().expect("Tcp header"), tcp.next().expect("Tcp values"));
        let column = names.split_whitespace().position(|n| n == "RetransSegs").expect("RetransSegs column");
        values.split_whitespace().nth(column).expect("value").parse().expect("number")
    }

    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.handle.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on this thread only; fd is a valid netns handle
                // held open by `self` for the scope's duration.
                let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veths (and their peers elsewhere).
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("warning: could not delete netns {}: {out:?}", self.name);
        }
    }
}

pub fn run_checked(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
