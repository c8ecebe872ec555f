//! `tether run`: the daemon's life from configuration to clean detach.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tracing::info;

use crate::{
    config::{BackendState, Config},
    control::{self, BackendStatus, FarmStatus, Reply, Request, StatusReport, VipStatus},
    farm, health,
    loader::Dataplane,
};

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
    // Disabled backends too: `tether backend enable` may bring one in at any time.
    let backends: Vec<std::net::SocketAddr> =
        config.farms.iter().flat_map(|f| f.backends.iter()).map(|b| b.address).collect();
    let starting = || format!("starting instance `{instance}` from {}", config_path.display());
    // First, whether this instance may start at all (another daemon's pins).
    let pin_dir = crate::pins::prepare(&config.daemon.pin_path, instance).with_context(starting)?;
    let control = match control::Listener::bind(&config.daemon.control_socket) {
        Ok(control) => control,
        Err(e) => {
            crate::pins::remove(&pin_dir);
            return Err(anyhow::Error::from(e).context(starting()));
        }
    };
    // Before attaching: attaching XDP to some drivers (veth among them) briefly
    // loses packets, and a lost ARP reply would leave a backend unresolved.
    crate::neighbors::warm(&backends, config.daemon.snat_ports, 0).await;
    let dataplane = Dataplane::start(&config, pin_dir).with_context(starting)?;
    let metrics = match config.daemon.metrics {
        Some(address) => Some(crate::metrics::Endpoint::bind(address).await.with_context(starting)?),
        None => None,
    };
    info!(
        instance,
        pins = %dataplane.pin_dir().display(),
        control = %config.daemon.control_socket.display(),
        interfaces = dataplane.attached.len(),
        vips = config.vips.len(),
        "ready"
    );

    let (request_tx, mut requests) = mpsc::channel::<control::Incoming>(16);
    let (report_tx, mut reports) = mpsc::channel::<health::Report>(256);
    let (scrape_tx, mut scrapes) = mpsc::channel::<oneshot::Sender<String>>(16);
    let checks = health::start(&config, report_tx);
    let mut state = State {
        config_path: config_path.to_owned(),
        instance: instance.to_owned(),
        runtime: farm::Runtime::from_config(&config),
        config,
        dataplane,
        active: Vec::new(),
        key_names: HashMap::new(),
        _checks: checks,
    };
    let serve_control = async { control.serve(request_tx).await };
    let serve_metrics = async {
        match &metrics {
            Some(endpoint) => endpoint.serve(scrape_tx).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(serve_control, serve_metrics);

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
            _ = &mut serve_control => {}
            _ = &mut serve_metrics => {}
            Some((request, reply)) = requests.recv() => {
                let _ = reply.send(state.answer(request));
            }
            Some(report) = reports.recv() => state.on_health(report),
            Some(reply) = scrapes.recv() => {
                let _ = reply.send(state.metrics());
            }
            _ = counter_tick.tick() => log_counters(&state.dataplane),
            _ = sweep_tick.tick() => match state.dataplane.sweep(&state.config.daemon.timeouts) {
                Ok(sweep) => {
                    if sweep.removed > 0 {
                        tracing::debug!(entries = sweep.removed, "expired flows removed");
                    }
                    state.active = sweep.active;
                }
                Err(e) => tracing::warn!(error = %e, "flow sweep failed"),
            },
            _ = pending_tick.tick() => match state.dataplane.expire_pending(state.config.daemon.timeouts.connect) {
                Ok(done) if done.orphans > 0 => tracing::debug!(stashes = done.orphans, "orphaned stashes removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pending-connection sweep failed"),
            },
            _ = session_tick.tick() => match state.dataplane.sweep_sessions(&state.config) {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "expired persistence entries removed"),
                Err(e) => tracing::warn!(error = %e, "persistence sweep failed"),
            },
            _ = neighbor_tick.tick() => {
                let (backends, ports, round) = (backends.clone(), state.config.daemon.snat_ports, neighbor_round);
                tokio::spawn(async move { crate::neighbors::warm(&backends, ports, round).await });
                neighbor_round += 1;
            }
        }
    };
    info!(signal, "shutting down");
    log_counters(&state.dataplane);
    drop(state);
    info!("stopped");
    Ok(())
}

/// What the main loop owns: the one place the data path's maps are written
/// from once the daemon runs.
struct State {
    config_path: PathBuf,
    instance: String,
    config: Config,
    runtime: farm::Runtime,
    dataplane: Dataplane,
    /// Connections per backend id at the last flow sweep.
    active: Vec<u64>,
    /// The key name each backend's TLS check last saw, so that only changes
    /// are logged.
    key_names: HashMap<(usize, usize), [u8; 16]>,
    _checks: health::Checks,
}

impl State {
    fn answer(&mut self, request: Request) -> Reply {
        match request {
            Request::Status => match self.status() {
                Ok(report) => Reply::Status(report),
                Err(e) => Reply::Error { message: format!("{e:#}") },
            },
            Request::SetBackendState { farm, backend, state } => {
                match self.set_backend_state(&farm, &backend, &state) {
                    Ok(message) => Reply::Done { message },
                    Err(e) => Reply::Error { message: format!("{e:#}") },
                }
            }
        }
    }

    /// `tether backend drain|enable|disable`.
    fn set_backend_state(&mut self, farm_name: &str, backend_name: &str, state: &str) -> anyhow::Result<String> {
        let (farm_id, j) = self.find_backend(farm_name, backend_name)?;
        let new = match state {
            "active" => BackendState::Active,
            "draining" => BackendState::Draining,
            "disabled" => BackendState::Disabled,
            other => bail!("`{other}` is not a backend state; use active, draining or disabled"),
        };
        let run = &mut self.runtime.farms[farm_id][j];
        let old = run.state;
        run.state = new;
        self.dataplane.write_farm(&self.config, &self.runtime, farm_id)?;
        info!(farm = farm_name, backend = backend_name, from = state_name(old), to = state, "backend state set");
        Ok(format!("backend `{backend_name}` of farm `{farm_name}`: {} (was {})", state, state_name(old)))
    }

    fn find_backend(&self, farm_name: &str, backend_name: &str) -> anyhow::Result<(usize, usize)> {
        let Some(farm_id) = self.config.farms.iter().position(|f| f.name == farm_name) else {
            let known: Vec<&str> = self.config.farms.iter().map(|f| f.name.as_str()).collect();
            bail!("there is no farm `{farm_name}`; farms: {}", known.join(", "));
        };
        let farm = &self.config.farms[farm_id];
        let Some(j) = farm.backends.iter().position(|b| b.name == backend_name) else {
            let known: Vec<&str> = farm.backends.iter().map(|b| b.name.as_str()).collect();
            bail!("farm `{farm_name}` has no backend `{backend_name}`; its backends: {}", known.join(", "));
        };
        Ok((farm_id, j))
    }

    fn on_health(&mut self, report: health::Report) {
        match report {
            health::Report::Flip { farm: farm_id, backend: j, health, why } => {
                let (farm, backend) = (&self.config.farms[farm_id], &self.config.farms[farm_id].backends[j]);
                self.runtime.farms[farm_id][j].health = health;
                match health {
                    farm::Health::Down => {
                        tracing::warn!(farm = farm.name, backend = backend.name, address = %backend.address, why, on_backend_failure = failure_name(farm.on_backend_failure), "backend down")
                    }
                    farm::Health::Up => {
                        info!(farm = farm.name, backend = backend.name, address = %backend.address, "backend up")
                    }
                }
                if let Err(e) = self.dataplane.write_farm(&self.config, &self.runtime, farm_id) {
                    tracing::error!(farm = farm.name, error = %e, "cannot tell the data path of a health change");
                }
            }
            health::Report::KeyName { farm: farm_id, backend: j, name } => {
                let farm = &self.config.farms[farm_id];
                if !farm.persistence.contains(&crate::config::PersistenceKind::TicketKey) {
                    return;
                }
                let backend_id = crate::loader::backend_ids(&self.config)[farm_id] + j as u32;
                match self.dataplane.learn_key_name(farm_id as u32, &name, backend_id) {
                    Ok(owner) if self.key_names.insert((farm_id, j), name) != Some(name) => info!(
                        farm = farm.name,
                        backend = farm.backends[j].name,
                        key_name = crate::sessions::hex(&name),
                        shared = owner == lb_common::maps::NO_BACKEND,
                        "ticket key name learned from the health check"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(farm = farm.name, error = %e, "cannot write a ticket key name"),
                }
            }
        }
    }

    fn status(&self) -> anyhow::Result<StatusReport> {
        let counters = self.dataplane.counters()?;
        let new_flows = self.dataplane.new_flows()?;
        let flows = crate::stats::read_pinned_flows(self.dataplane.pin_dir())?;
        let ids = crate::loader::backend_ids(&self.config);
        let farms = self
            .config
            .farms
            .iter()
            .enumerate()
            .map(|(farm_id, f)| FarmStatus {
                name: f.name.clone(),
                algorithm: f.algorithm.name().to_owned(),
                health_check: f.health.as_ref().map(|h| health_kind_name(h.kind).to_owned()),
                backends: f
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(j, b)| {
                        let id = (ids[farm_id] + j as u32) as usize;
                        let run = self.runtime.farms[farm_id][j];
                        BackendStatus {
                            name: b.name.clone(),
                            address: b.address.to_string(),
                            weight: b.weight,
                            state: state_name(run.state).to_owned(),
                            health: run.health.name().to_owned(),
                            takes_new: farm::takes_new_connections(run, b.weight),
                            active_flows: self.active.get(id).copied().unwrap_or(0),
                            new_flows: new_flows.get(id).copied().unwrap_or(0),
                        }
                    })
                    .collect(),
            })
            .collect();
        let vips = self
            .config
            .vips
            .iter()
            .map(|v| VipStatus {
                name: v.name.clone(),
                address: v.address.to_string(),
                port: v.port,
                protocol: protocol_name(v.protocol).to_owned(),
                farm: self.config.farms[v.farm].name.clone(),
            })
            .collect();
        Ok(StatusReport {
            instance: self.instance.clone(),
            config: self.config_path.display().to_string(),
            pin_dir: self.dataplane.pin_dir().display().to_string(),
            flow_entries: flows.len() as u64,
            vips,
            farms,
            counters: counters.named().map(|(r, n)| (r.to_owned(), n)).collect(),
        })
    }

    fn metrics(&self) -> String {
        match self.status() {
            Ok(status) => crate::metrics::render(&status, &self.dataplane, &self.config),
            Err(e) => format!("# tether: cannot read the data path: {e:#}\n"),
        }
    }
}

pub fn state_name(state: BackendState) -> &'static str {
    match state {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Disabled => "disabled",
    }
}

fn failure_name(f: crate::config::OnBackendFailure) -> &'static str {
    match f {
        crate::config::OnBackendFailure::Rebalance => "rebalance",
        crate::config::OnBackendFailure::Reset => "reset",
        crate::config::OnBackendFailure::Drop => "drop",
    }
}

fn health_kind_name(kind: crate::config::HealthKind) -> &'static str {
    match kind {
        crate::config::HealthKind::Tcp => "tcp",
        crate::config::HealthKind::Tls => "tls",
    }
}

pub fn protocol_name(protocol: crate::config::VipProtocol) -> &'static str {
    match protocol {
        crate::config::VipProtocol::Tls => "tls",
        crate::config::VipProtocol::Tcp => "tcp",
    }
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
