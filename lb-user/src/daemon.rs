//! `tether run`: the daemon's life from configuration to clean detach.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::{config::Config, loader::Dataplane};

/// How often the daemon logs its counters at debug level.
const COUNTER_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often idle flows are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// How often connections waiting for their backend are checked against the
/// connect timeout: the client's RST comes at most this much late.
const PENDING_INTERVAL: Duration = Duration::from_millis(250);
/// How often the persistence table is swept of entries past their farm's
/// `session_timeout` (lookups treat those as misses meanwhile).
const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often backends' neighbour entries are refreshed (the kernel lets an
/// unused entry go stale after about 30 s and may collect it later).
const NEIGHBOR_INTERVAL: Duration = Duration::from_secs(20);

pub async fn run(config_path: &Path, instance: &str) -> anyhow::Result<()> {
    require_root()?;
    let config = Config::load(config_path)?;
    let backends: Vec<std::net::SocketAddr> = config
        .farms
        .iter()
        .flat_map(|f| f.backends.iter())
        .filter(|b| b.state != crate::config::BackendState::Disabled)
        .map(|b| b.address)
        .collect();
    let starting = || format!("starting instance `{instance}` from {}", config_path.display());
    // First, whether this instance may start at all (another daemon's pins).
    let pin_dir = crate::pins::prepare(&config.daemon.pin_path, instance).with_context(starting)?;
    // Before attaching: attaching XDP to some drivers (veth among them) briefly
    // loses packets, and a lost ARP reply would leave a backend unresolved.
    crate::neighbors::warm(&backends, config.daemon.snat_ports, 0).await;
    let mut dataplane = Dataplane::start(&config, pin_dir).with_context(starting)?;
    info!(
        instance,
        pins = %dataplane.pin_dir().display(),
        interfaces = dataplane.attached.len(),
        vips = config.vips.len(),
        "ready"
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut counter_tick = tokio::time::interval(COUNTER_LOG_INTERVAL);
    let mut sweep_tick = tokio::time::interval(SWEEP_INTERVAL);
    let mut pending_tick = tokio::time::interval(PENDING_INTERVAL);
    let mut neighbor_tick = tokio::time::interval(NEIGHBOR_INTERVAL);
    let mut session_tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    neighbor_tick.tick().await; // the first round ran before "ready"
    let mut neighbor_round = 1;
    let signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = counter_tick.tick() => log_counters(&dataplane),
            _ = sweep_tick.tick() => match dataplane.sweep(&config.daemon.timeouts) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(entries = n, "expired flows removed"),
                Err(e) => tracing::warn!(error = %e, "flow sweep failed"),
            },
            _ = pending_tick.tick() => match dataplane.expire_pending(config.daemon.timeouts.connect) {
                Ok(done) if done.orphans > 0 => tracing::debug!(stashes = done.orphans, "orphaned stashes removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pending-connection sweep failed"),
            },
            _ = session_tick.tick() => match dataplane.sweep_sessions(&config) {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "expired persistence entries removed"),
                Err(e) => tracing::warn!(error = %e, "persistence sweep failed"),
            },
            _ = neighbor_tick.tick() => {
                let (backends, ports, round) = (backends.clone(), config.daemon.snat_ports, neighbor_round);
                tokio::spawn(async move { crate::neighbors::warm(&backends, ports, round).await });
                neighbor_round += 1;
            }
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
        bail!(
            "tether run needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN to load and attach XDP); run it with sudo"
        );
    }
    Ok(())
}
