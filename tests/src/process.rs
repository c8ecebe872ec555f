//! Child processes that are ended (by pid, never by name) when their guard drops,
//! with their output captured for assertions and failure messages.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub struct Proc {
    what: String,
    child: Child,
    output: Arc<Mutex<String>>,
    /// Ended with SIGTERM first (see `stopped_with_sigterm`).
    sigterm_first: bool,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured into one log.
    pub fn spawn(what: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("piped"), output.clone());
        collect(child.stderr.take().expect("piped"), output.clone());
        Proc { what: what.to_owned(), child, output, sigterm_first: false }
    }

    /// Makes the guard end the process with SIGTERM, and SIGKILL only if it
    /// has not exited 5 s later: for servers whose workers outlive a killed
    /// parent (Apache's mpm_event children, which run as www-data and
    /// were left behind by SIGKILL).
    pub fn stopped_with_sigterm(mut self) -> Proc {
        self.sigterm_first = true;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.output.lock().expect("log lock").clone()
    }

    /// Waits until the output contains `needle`; panics (with the output) if the
    /// process exits first or `timeout` passes.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain what the process wrote last.
                std::thread::sleep(Duration::from_millis(50));
                panic!("{} exited ({status}) before printing {needle:?}:\n{}", self.what, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}:\n{}",
                self.what,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits up to `grace` for the exit; kills it after that.
    pub fn stop_with(&mut self, signal: i32, grace: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: {} ignored signal {signal} for {grace:?}; killing it", self.what);
        let _ = self.child.kill();
        self.child.wait().expect("wait after kill")
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM, Duration::from_secs(5))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if self.sigterm_first {
            // SAFETY: a signal to our own child, which has not been reaped
            // (try_wait said it runs), so its pid is not reused.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut log = into.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
}
