//! The `tether` daemon as a test sees it: a real process in the balancer's
//! namespace, its counters read from the pins it makes.

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use lb_user::stats::{self, Counters};
use tempfile::TempDir;

use crate::{netns::Netns, process::Proc};

/// The binary under test: `$TETHER_BIN` (set by `cargo xtask test`), else the
/// debug build next to the test executable.
pub fn tether_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TETHER_BIN") {
        return bin.into();
    }
    crate::sibling_binary("tether")
}

pub struct Tether {
    proc: Proc,
    instance_dir: PathBuf,
    pin_root: PathBuf,
    config_dir: TempDir,
}

impl Tether {
    /// Starts `tether run` in `ns` with `config` (which must set `pin_path`, e.g.
    /// to `Topology::pin_path()`), and waits until it reports ready.
    pub fn start(ns: &Netns, config: &str) -> Tether {
        let config_dir = tempfile::tempdir().expect("tempdir");
        let path = config_dir.path().join("tether.toml");
        std::fs::write(&path, with_control_socket(config, config_dir.path())).expect("write config");
        let parsed = lb_user::config::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let pin_root = parsed.daemon.pin_path.clone();
        let proc = spawn_ready(ns, &path);
        let instance_dir = lb_user::pins::instance_dir(&pin_root, "default");
        Tether { proc, instance_dir, pin_root, config_dir }
    }

    /// SIGKILL: the daemon dies without cleaning up; its pins (maps and
    /// links) stay, and the data path keeps forwarding.
    pub fn kill(&mut self) {
        let status = self.proc.stop_with(libc::SIGKILL, Duration::from_secs(5));
        assert!(!status.success(), "killed: {status}");
    }

    /// Starts `tether run` again with the same configuration in `ns` (after
    /// `kill`), and waits until it reports ready. Returns the earlier
    /// process's log.
    pub fn restart(&mut self, ns: &Netns) -> String {
        let before = self.proc.output();
        self.proc = spawn_ready(ns, &self.config_path());
        before
    }

    pub fn counters(&self) -> Counters {
        stats::read_pinned(&self.instance_dir)
            .unwrap_or_else(|e| panic!("read counters at {}: {e}\n{}", self.instance_dir.display(), self.proc.output()))
    }

    /// The flow tables' entries (two per connection).
    pub fn flows(&self) -> Vec<(lb_common::FlowKey, lb_common::Flow)> {
        lb_user::flows::read_pinned(&self.instance_dir)
            .unwrap_or_else(|e| panic!("read flows at {}: {e}\n{}", self.instance_dir.display(), self.proc.output()))
    }

    /// The learned persistence entries.
    pub fn sessions(&self) -> Vec<(lb_common::maps::SessionKey, lb_common::maps::SessionEntry)> {
        stats::read_pinned_sessions(&self.instance_dir)
            .unwrap_or_else(|e| panic!("read sessions at {}: {e}\n{}", self.instance_dir.display(), self.proc.output()))
    }

    /// What `tether status` prints for this daemon.
    pub fn status(&self) -> String {
        self.cli("status", &[]).unwrap_or_else(|e| panic!("tether status failed: {e}"))
    }

    /// The daemon's status, asked over its control socket.
    pub fn status_report(&self) -> lb_user::control::StatusReport {
        let config = lb_user::config::Config::load(&self.config_path()).expect("the test's config");
        match lb_user::control::request(&config.daemon.control_socket, &lb_user::control::Request::Status) {
            Ok(lb_user::control::Reply::Status(report)) => report,
            other => panic!("status over the control socket: {other:?}\n{}", self.proc.output()),
        }
    }

    /// A backend's line of the status: (farm, backend) -> its status.
    pub fn backend_status(&self, farm: &str, backend: &str) -> lb_user::control::BackendStatus {
        let report = self.status_report();
        let farm = report.farms.iter().find(|f| f.name == farm).unwrap_or_else(|| panic!("no farm {farm}"));
        farm.backends.iter().find(|b| b.name == backend).unwrap_or_else(|| panic!("no backend {backend}")).clone()
    }

    /// Runs `tether backend ARGS` against this daemon: its stdout, or its
    /// stderr as the error.
    pub fn backend_cli(&self, args: &[&str]) -> Result<String, String> {
        self.cli("backend", args)
    }

    /// Replaces the daemon's configuration file (for `reload`), with the
    /// same control socket as at start.
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(self.config_path(), with_control_socket(config, self.config_dir.path())).expect("write config");
    }

    /// Runs `tether reload` against this daemon: its stdout, or its stderr.
    pub fn reload_cli(&self) -> Result<String, String> {
        self.cli("reload", &[])
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of the process this harness started.
        let rc = unsafe { libc::kill(self.proc.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill {}: {}", self.proc.pid(), std::io::Error::last_os_error());
    }

    /// The configuration file the daemon runs with.
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.path().join("tether.toml")
    }

    /// Runs `tether sessions ARGS` against this daemon: its stdout, or its
    /// stderr as the error.
    pub fn sessions_cli(&self, args: &[&str]) -> Result<String, String> {
        self.cli("sessions", args)
    }

    /// Runs `tether COMMAND --config FILE ARGS` against this daemon.
    fn cli(&self, command: &str, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(tether_bin())
            .args([command, "--config"])
            .arg(self.config_path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run tether {command}: {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }

    pub fn instance_dir(&self) -> &Path {
        &self.instance_dir
    }

    /// SIGTERM and wait: returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.proc.stop()
    }
}

fn spawn_ready(ns: &Netns, config: &Path) -> Proc {
    let mut cmd = ns.command(tether_bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .env("TETHER_LOG", std::env::var("TETHER_TEST_LOG").unwrap_or_else(|_| "info".into()));
    let mut proc = Proc::spawn("tether", cmd);
    proc.wait_for_output(" ready ", Duration::from_secs(30));
    proc
}

/// Tests run side by side: each daemon gets its own control socket, in
/// its scratch directory, unless the config names one.
fn with_control_socket(config: &str, dir: &Path) -> String {
    if config.contains("control_socket") {
        return config.to_owned();
    }
    let socket = dir.join("control.sock");
    config.replacen("[daemon]\n", &format!("[daemon]\ncontrol_socket = \"{}\"\n", socket.display()), 1)
}

impl Drop for Tether {
    fn drop(&mut self) {
        self.proc.stop();
        // A daemon that crashed leaves its pins; they must not outlive the test.
        if self.pin_root.exists() {
            let _ = std::fs::remove_dir_all(&self.pin_root);
        }
    }
}
