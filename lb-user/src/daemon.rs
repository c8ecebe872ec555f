//! `tether run`: the daemon's life from configuration to clean detach.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use lb_common::maps::{BindEvent, SlowSegment};

use crate::slow_path::SlowPath;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tracing::info;

use crate::{
    config::{BackendState, Config},
    control::{self, BackendStatus, FarmIds, FarmStatus, LayoutReport, Reply, Request, StatusReport, VipStatus},
    farm, health,
    layout::Layout,
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
    let starting = || format!("starting instance `{instance}` from {}", config_path.display());
    // First, whether this instance may start at all (another daemon's pins).
    let pins = crate::pins::prepare(&config.daemon.pin_path, instance).with_context(starting)?;
    let control = match control::Listener::bind(&config.daemon.control_socket) {
        Ok(control) => control,
        Err(e) => {
            // An earlier daemon's pins stay for the next try.
            if !pins.adopting {
                crate::pins::remove(&pins.dir);
            }
            return Err(anyhow::Error::from(e).context(starting()));
        }
    };
    // Before attaching: attaching XDP to some drivers (veth among them) briefly
    // loses packets, and a lost ARP reply would leave a backend unresolved.
    // The metrics port too, before the data path: a start that fails after
    // it would detach what it adopted.
    let metrics = match config.daemon.metrics {
        Some(address) => match crate::metrics::Endpoint::bind(address).await {
            Ok(endpoint) => Some(endpoint),
            Err(e) => {
                if !pins.adopting {
                    crate::pins::remove(&pins.dir);
                }
                return Err(anyhow::Error::from(e).context(starting()));
            }
        },
        None => None,
    };
    crate::neighbors::warm(&all_backends(&config), config.daemon.snat_ports, 0).await;
    let (mut dataplane, layout) = Dataplane::start(&config, pins).with_context(starting)?;
    let (bind_tx, mut binds) = mpsc::channel::<BindEvent>(BIND_QUEUE);
    let bind_reader = tokio::spawn(read_bind_events(dataplane.take_bind_events()?, bind_tx));
    let (slow_tx, mut slow_segments) = mpsc::channel::<Box<SlowSegment>>(SLOW_QUEUE);
    let slow_reader = tokio::spawn(read_slow_path(dataplane.take_slow_path()?, slow_tx));
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
    let runtime = farm::Runtime::from_config(&config);
    let checks = health::start(&config, &runtime, 0, report_tx.clone());
    let mut state = State {
        config_path: config_path.to_owned(),
        instance: instance.to_owned(),
        runtime,
        config,
        layout,
        dataplane,
        active: Vec::new(),
        key_names: HashMap::new(),
        checks,
        generation: 0,
        reports: report_tx,
        lost_binds: 0,
        slow: SlowPath::default(),
        syn_retries: HashMap::new(),
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
    let mut sighup = signal(SignalKind::hangup())?;
    let mut counter_tick = tokio::time::interval(COUNTER_LOG_INTERVAL);
    let mut sweep_tick = tokio::time::interval(SWEEP_INTERVAL);
    let mut pending_tick = tokio::time::interval(PENDING_INTERVAL);
    let mut neighbor_tick = tokio::time::interval(NEIGHBOR_INTERVAL);
    let mut session_tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    let mut slow_tick = tokio::time::interval(SLOW_PATH_INTERVAL);
    slow_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    neighbor_tick.tick().await; // the first round ran before "ready"
    let mut neighbor_round = 1;
    let signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = sighup.recv() => {
                if let Err(e) = state.reload().await {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: the configuration was not reloaded");
                }
            }
            _ = &mut serve_control => {}
            _ = &mut serve_metrics => {}
            Some((request, reply)) = requests.recv() => {
                let _ = reply.send(state.answer(request).await);
            }
            Some(report) = reports.recv() => state.on_health(report),
            Some(event) = binds.recv() => state.log_bind(&event),
            Some(segment) = slow_segments.recv() => state.slow.on_segment(&mut state.dataplane, &segment),
            _ = slow_tick.tick(), if state.slow.busy() => {
                state.slow.tick(&mut state.dataplane, state.config.daemon.timeouts.connect);
            }
            Some(reply) = scrapes.recv() => {
                let _ = reply.send(state.metrics());
            }
            _ = counter_tick.tick() => {
                log_counters(&state.dataplane);
                state.check_lost_binds();
            }
            _ = sweep_tick.tick() => match state.dataplane.sweep(&state.config.daemon.timeouts) {
                Ok(sweep) => {
                    if sweep.removed > 0 {
                        tracing::debug!(entries = sweep.removed, "expired flows removed");
                    }
                    state.active = sweep.active;
                }
                Err(e) => tracing::warn!(error = %e, "flow sweep failed"),
            },
            _ = pending_tick.tick() => {
                match state.dataplane.expire_pending(state.config.daemon.timeouts.connect) {
                    Ok(done) if done.orphans > 0 => tracing::debug!(stashes = done.orphans, "orphaned stashes removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pending-connection sweep failed"),
                }
                match state.dataplane.retry_backend_syns(&mut state.syn_retries) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(connections = n, "backend SYNs unanswered for a second sent again"),
                    Err(e) => tracing::warn!(error = %e, "backend SYN retry failed"),
                }
            }
            _ = session_tick.tick() => match state.dataplane.sweep_sessions(&state.config, &state.layout) {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "expired persistence entries removed"),
                Err(e) => tracing::warn!(error = %e, "persistence sweep failed"),
            },
            _ = neighbor_tick.tick() => {
                let (backends, ports, round) = (all_backends(&state.config), state.config.daemon.snat_ports, neighbor_round);
                tokio::spawn(async move { crate::neighbors::warm(&backends, ports, round).await });
                neighbor_round += 1;
            }
        }
    };
    bind_reader.abort();
    slow_reader.abort();
    info!(signal, "shutting down");
    log_counters(&state.dataplane);
    drop(state);
    info!("stopped");
    Ok(())
}

/// Every backend's address, disabled ones too (`tether backend enable` may
/// bring one in at any time), for the neighbour warm-up.
fn all_backends(config: &Config) -> Vec<std::net::SocketAddr> {
    config.farms.iter().flat_map(|f| f.backends.iter()).map(|b| b.address).collect()
}

/// What the main loop owns: the one place the data path's maps are written
/// from once the daemon runs.
struct State {
    config_path: PathBuf,
    instance: String,
    config: Config,
    runtime: farm::Runtime,
    layout: Layout,
    dataplane: Dataplane,
    /// Connections per backend id at the last flow sweep.
    active: Vec<u64>,
    /// The key name each backend's TLS check last saw, so that only changes
    /// are logged.
    key_names: HashMap<(u32, [u8; 16]), ()>,
    checks: health::Checks,
    /// Counts reloads: a report from the checks of an earlier configuration
    /// (its indexes are that configuration's) is ignored.
    generation: u64,
    reports: mpsc::Sender<health::Report>,
    /// Bind events lost so far (XDP's ring full, or the queue to this loop).
    lost_binds: u64,
    /// ClientHellos XDP handed over (`slow_path`).
    slow: SlowPath,
    /// When the daemon last sent each pending connection's backend SYN again.
    syn_retries: HashMap<lb_common::FlowKey, u64>,
}

impl State {
    async fn answer(&mut self, request: Request) -> Reply {
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
            Request::Reload => match self.reload().await {
                Ok(message) => Reply::Done { message },
                Err(e) => Reply::Error { message: format!("{e:#}") },
            },
            Request::Layout => Reply::Layout(self.layout_report()),
        }
    }

    /// The log line of a new session: the backend the algorithm favoured,
    /// the one persistence required, the one used.
    fn log_bind(&self, event: &BindEvent) {
        let Some(farm) = self.layout.farm_index(event.farm_id).map(|i| &self.config.farms[i]) else { return };
        let backend = |id: u32| match self.layout.backend_index(id) {
            Some((i, j)) => self.config.farms[i].backends[j].name.as_str(),
            None => "-",
        };
        let ip = match lb_common::maps::Family::try_from(event.family) {
            Ok(lb_common::maps::Family::Ipv6) => std::net::IpAddr::from(event.client_be),
            _ => {
                std::net::IpAddr::from([event.client_be[0], event.client_be[1], event.client_be[2], event.client_be[3]])
            }
        };
        let client = std::net::SocketAddr::new(ip, u16::from_be(event.client_port_be));
        let by = if event.kind == 0 { "algorithm" } else { crate::sessions::kind_name(event.kind) };
        info!(
            target: "tether::session",
            farm = farm.name,
            %client,
            favoured = backend(event.favoured),
            required = backend(event.required),
            used = backend(event.used),
            by,
            "new session"
        );
    }

    fn check_lost_binds(&mut self) {
        let Ok(lost) = self.dataplane.lost_bind_events() else { return };
        if lost > self.lost_binds {
            tracing::warn!(lost = lost - self.lost_binds, "new-session log events lost: the ring buffer was full");
            self.lost_binds = lost;
        }
    }

    fn layout_report(&self) -> LayoutReport {
        LayoutReport {
            farms: self
                .config
                .farms
                .iter()
                .enumerate()
                .map(|(i, f)| FarmIds {
                    name: f.name.clone(),
                    id: self.layout.farm(i),
                    backends: f
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(j, b)| (b.name.clone(), self.layout.backend(i, j)))
                        .collect(),
                })
                .collect(),
        }
    }

    /// `tether reload` and SIGHUP: reads the file again; a file that does not
    /// validate, or changes what only a restart can, is refused whole and the
    /// running configuration stays.
    async fn reload(&mut self) -> anyhow::Result<String> {
        let refused = |e: String| anyhow::anyhow!("{e}\nthe running configuration stays");
        let new = Config::load(&self.config_path).map_err(|e| refused(e.to_string()))?;
        let fixed = restart_only_changes(&self.config, &new);
        if !fixed.is_empty() {
            return Err(refused(format!(
                "{}: changing {} needs a restart of the daemon",
                self.config_path.display(),
                fixed.join(", ")
            )));
        }
        let layout = self.layout.next(&self.config, &new).map_err(|e| refused(e.to_string()))?;
        let runtime = carry_over(&self.config, &self.layout, &self.runtime, &new, &layout);
        let kept_farms: std::collections::HashSet<u32> = layout.farm_ids().iter().copied().collect();
        let kept_backends: std::collections::HashSet<u32> = layout.backend_ids().collect();
        let removed_farms: Vec<u32> =
            self.layout.farm_ids().iter().copied().filter(|id| !kept_farms.contains(id)).collect();
        let removed_backends: Vec<u32> = self.layout.backend_ids().filter(|id| !kept_backends.contains(id)).collect();
        // New backends' MACs before any connection is sent their way: XDP
        // reads the neighbour table but cannot fill it.
        let known = all_backends(&self.config);
        let added: Vec<std::net::SocketAddr> = all_backends(&new).into_iter().filter(|b| !known.contains(b)).collect();
        crate::neighbors::warm(&added, new.daemon.snat_ports, self.generation as u32 + 1).await;
        let forgotten = self.dataplane.apply(&new, &layout, &runtime, &removed_farms, &removed_backends)?;
        if crate::loader::session_table_size(&new) > crate::loader::session_table_size(&self.config) {
            tracing::warn!("the farms' session_capacity grew; the session table keeps its size until a restart");
        }
        let summary = format!(
            "configuration reloaded from {}: {} VIPs, {} farms, {} backends ({} backends and {} farms removed, {} learned sessions of theirs forgotten)",
            self.config_path.display(),
            new.vips.len(),
            new.farms.len(),
            kept_backends.len(),
            removed_backends.len(),
            removed_farms.len(),
            forgotten
        );
        self.generation += 1;
        // The new checks start from the health carried over.
        self.checks = health::start(&new, &runtime, self.generation, self.reports.clone());
        self.config = new;
        self.layout = layout;
        self.runtime = runtime;
        info!("{summary}");
        Ok(summary)
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
        self.dataplane.write_farm(&self.config, &self.layout, &self.runtime, farm_id)?;
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
        if report.generation() != self.generation {
            return;
        }
        match report {
            health::Report::Flip { farm: farm_id, backend: j, health, why, .. } => {
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
                if let Err(e) = self.dataplane.write_farm(&self.config, &self.layout, &self.runtime, farm_id) {
                    tracing::error!(farm = farm.name, error = %e, "cannot tell the data path of a health change");
                }
                // Open connections to it: reset (the client reconnects to a
                // healthy backend) unless the farm holds its clients (`drop`).
                if health == farm::Health::Down && farm.on_backend_failure != crate::config::OnBackendFailure::Drop {
                    match self.dataplane.reset_flows_of(self.layout.backend(farm_id, j)) {
                        Ok(0) => {}
                        Ok(n) => info!(
                            farm = farm.name,
                            backend = backend.name,
                            connections = n,
                            "connections of a failed backend to be reset"
                        ),
                        Err(e) => {
                            tracing::warn!(farm = farm.name, error = %e, "cannot mark a failed backend's connections")
                        }
                    }
                }
            }
            health::Report::KeyName { farm: farm_id, backend: j, name, .. } => {
                let farm = &self.config.farms[farm_id];
                if !farm.persistence.contains(&crate::config::PersistenceKind::TicketKey) {
                    return;
                }
                let backend_id = self.layout.backend(farm_id, j);
                match self.dataplane.learn_key_name(self.layout.farm(farm_id), &name, backend_id) {
                    Ok(owner) if self.key_names.insert((backend_id, name), ()).is_none() => info!(
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
        let flows = crate::flows::read_pinned(self.dataplane.pin_dir())?;
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
                        let id = self.layout.backend(farm_id, j) as usize;
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
            Ok(status) => crate::metrics::render(&status, &self.dataplane, &self.config, &self.layout),
            Err(e) => format!("# tether: cannot read the data path: {e:#}\n"),
        }
    }
}

/// What a reload cannot change: the interfaces attached, the pins, the
/// sockets listened on. Returns the keys that differ.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.daemon, &new.daemon);
    let mut keys = Vec::new();
    if a.interfaces != b.interfaces {
        keys.push("daemon.interfaces");
    }
    if a.xdp_mode != b.xdp_mode {
        keys.push("daemon.xdp_mode");
    }
    if a.pin_path != b.pin_path {
        keys.push("daemon.pin_path");
    }
    if a.control_socket != b.control_socket {
        keys.push("daemon.control_socket");
    }
    if a.metrics != b.metrics {
        keys.push("daemon.metrics");
    }
    keys
}

/// The run-time state for `new`: a backend that stays keeps its health and
/// the state an operator gave it, unless the new file changes its state.
fn carry_over(
    old: &Config,
    old_layout: &Layout,
    old_runtime: &farm::Runtime,
    new: &Config,
    layout: &Layout,
) -> farm::Runtime {
    let mut runtime = farm::Runtime::from_config(new);
    for (i, farm) in new.farms.iter().enumerate() {
        for (j, backend) in farm.backends.iter().enumerate() {
            let Some((oi, oj)) = old_layout.backend_index(layout.backend(i, j)) else { continue };
            let before = old_runtime.farms[oi][oj];
            let run = &mut runtime.farms[i][j];
            run.health = before.health;
            if old.farms[oi].backends[oj].state == backend.state {
                run.state = before.state;
            }
        }
    }
    runtime
}

/// Events the main loop may fall behind by before the reader drops them.
const BIND_QUEUE: usize = 4096;
/// How long the `BINDS` reader rests after draining the ring. Woken for
/// every event, the daemon spent 60-75 µs of CPU per new connection,
/// 10-12% of a CPU at 1,600 handshakes a second (`tether-bench bulk`,
/// /proc/<pid>/stat), and the handshakes it slowed shared those CPUs. Log
/// lines come up to this much later; the ring (`BINDS_RING_BYTES`) holds
/// this long's events up to some 200,000 new connections a second.
const BIND_BATCH: std::time::Duration = std::time::Duration::from_millis(20);
/// Slow-path segments likewise; a dropped one comes again with the
/// client's retransmission.
const SLOW_QUEUE: usize = 1024;
/// How often the slow path looks for backend legs spliced by tc, while it
/// has hellos to send.
const SLOW_PATH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Drains `SLOW_PATH` for the main loop, as `read_bind_events` does `BINDS`.
async fn read_slow_path(ring: aya::maps::RingBuf<aya::maps::MapData>, segments: mpsc::Sender<Box<SlowSegment>>) {
    // SAFETY: as in `read_bind_events`.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut ring = match registered {
        Ok(ring) => ring,
        Err(e) => {
            tracing::error!(error = %e.to_string(), "cannot watch the slow path's ring buffer; long ClientHellos wait for their connect timeout");
            return;
        }
    };
    loop {
        let Ok(mut guard) = ring.readable_mut().await else { return };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<SlowSegment>() {
                continue;
            }
            // SAFETY: XDP wrote a whole SlowSegment (plain data) here; read unaligned.
            let segment = Box::new(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SlowSegment>()) });
            if segments.send(segment).await.is_err() {
                return;
            }
        }
        guard.clear_ready();
    }
}

/// Drains `BINDS` whenever the kernel says it has data, handing each event
/// to the main loop (which has the names to log them with), then rests for
/// `BIND_BATCH`: the events of that time wait in the ring and are read in
/// one go.
async fn read_bind_events(ring: aya::maps::RingBuf<aya::maps::MapData>, events: mpsc::Sender<BindEvent>) {
    // SAFETY: the ring owns its map fd, which stays open and the same until
    // the AsyncFd (which owns the ring) drops.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut ring = match registered {
        Ok(ring) => ring,
        Err(e) => {
            tracing::warn!(error = %e.to_string(), "cannot watch the new-session ring buffer; new sessions are not logged");
            return;
        }
    };
    let mut dropped = 0u64;
    loop {
        let Ok(mut guard) = ring.readable_mut().await else { return };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<BindEvent>() {
                continue;
            }
            // SAFETY: XDP wrote a whole BindEvent (plain integers) here; read unaligned.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<BindEvent>()) };
            if events.try_send(event).is_err() {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "new-session log events dropped: the daemon is behind");
                }
            }
        }
        guard.clear_ready();
        tokio::time::sleep(BIND_BATCH).await;
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
