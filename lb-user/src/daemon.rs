//! `tether run`: the daemon's life from configuration to clean detach.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::{config::Config, loader::Dataplane};

/// How often the daemon logs its counters at debug level.
const COUNTER_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub async fn run(config_path: &Path, instance: &str) -> anyhow::Result<()> {
    require_root()?;
    let config = Config::load(config_path)?;
    let dataplane = Dataplane::start(&config, instance)
        .with_context(|| format!("starting instance `{instance}` from {}", config_path.display()))?;
    info!(
        instance,
        pins = %dataplane.pin_dir().display(),
        interfaces = dataplane.attached.len(),
        vips = config.vips.len(),
        "ready"
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(COUNTER_LOG_INTERVAL);
    let signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = ticker.tick() => log_counters(&dataplane),
        }
    };
    info!(signal, "shutting down");
    log_counters(&dataplane);
    drop(dataplane);
    info!("stopped");
    Ok(())
}

fn log_counters(dataplane: &Dataplane) {
    match dataplane.counters() {
        Ok(c) => {
            let summary: Vec<String> = c.named().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
            tracing::debug!(counters = summary.join(" "), "packets");
        }
        Err(e) => tracing::warn!(error = %e, "cannot read counters"),
    }
}

fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("tether run needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN to load and attach XDP); run it with sudo");
    }
    Ok(())
}
