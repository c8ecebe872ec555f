//! Loads the XDP object, fills its maps from the configuration, attaches it,
//! and keeps it attached while it lives. Dropping a [`Dataplane`] detaches every
//! link it made. [`load`] alone (maps filled, program verified, nothing
//! attached) is what golden-packet tests and benchmarks run.

use std::{net::IpAddr, path::PathBuf};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::{
    AddrKey, BackendInfo, FarmInfo, Flow, FlowKey, Settings, VipInfo, VipKey,
    maps::{self as abi, SessionKey, flow_flags},
};
use tracing::{info, warn};

use crate::{
    EBPF_OBJECT,
    config::{self, Config, Timeouts, VipProtocol, XdpMode},
    farm,
    layout::Layout,
    pins,
    session_filter::SessionFilter,
    stats::{self, Counters},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the XDP object failed: {0}")]
    Object(#[from] EbpfError),
    #[error("the XDP object has no {what} `{name}`: it does not match this daemon")]
    Missing { what: &'static str, name: &'static str },
    #[error("the kernel rejected the XDP program: {0}")]
    Verifier(ProgramError),
    #[error("the kernel rejected the tc program: {0}")]
    TcVerifier(ProgramError),
    #[error("cannot attach the tc program to interface `{interface}` (ingress): {source}")]
    TcAttach { interface: String, source: ProgramError },
    #[error("cannot attach to interface `{interface}` in {mode} mode: {source}")]
    Attach { interface: String, mode: &'static str, source: ProgramError },
    #[error("map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("map `SESSION_FILTER`: {0}")]
    Filter(#[from] crate::session_filter::FilterError),
    #[error("pinning: {0}")]
    Pin(#[from] pins::PinError),
    #[error("cannot pin the link to `{interface}` at {}: {why}", path.display())]
    PinLink { interface: String, path: PathBuf, why: String },
    #[error(
        "the pinned state in {} was made by a data path this tether cannot use:\n{}\nstop that data path \
         (remove the directory: its connections end) or run the tether that made it",
        dir.display(),
        problems.join("\n")
    )]
    Incompatible { dir: PathBuf, problems: Vec<String> },
    #[error("the layout in the pinned maps: {0}")]
    Layout(#[from] crate::layout::LayoutError),
}

/// The XDP program as loaded and attached for one configuration.
///
/// Its maps (`abi::PINNED_MAPS`) and links are pinned in the instance
/// directory, so that they outlive the process: a daemon killed by SIGKILL
/// leaves the data path forwarding, and the next one adopts the pins (the
/// same maps, its programs swapped into the same links). Dropping a
/// `Dataplane` (a clean stop) removes the pins and closes the links, which
/// detaches the programs.
pub struct Dataplane {
    ebpf: Ebpf,
    /// `SESSION_REMOVALS`, taken out of `ebpf` so that the session sweep can
    /// hold it and `SESSIONS` at once.
    session_removals: Option<aya::maps::Map>,
    /// `SESSION_FILTER`, mapped: marked for each key the daemon adds,
    /// rebuilt by the session sweep.
    session_filter: SessionFilter,
    /// The links attaching the programs, pinned; closed after the pins go.
    links: Vec<FdLink>,
    instance: pins::Instance,
    /// While a start that adopts pins has not finished: a failure leaves
    /// the pins (and the earlier data path, still serving) alone.
    keep_pins: bool,
    /// Interfaces and the mode each one got.
    pub attached: Vec<(String, &'static str)>,
}

impl Dataplane {
    /// Loads the program, fills its maps from `config` and attaches to
    /// every configured interface; or, when `instance` holds an earlier
    /// daemon's pins, adopts them: checks that every pinned map fits this
    /// data path, keeps the ids that daemon gave farms and backends (its
    /// flows and learned sessions name them), reuses its maps, and swaps the
    /// new programs into its links. Returns the ids in use.
    /// `instance` comes from [`pins::prepare`], which the caller runs first so a
    /// daemon that may not start is refused before it does anything else.
    pub fn start(config: &Config, instance: pins::Instance) -> Result<(Dataplane, Layout), LoadError> {
        let adopting = instance.adopting;
        let prepared = (|| {
            if !adopting {
                return Ok((Layout::initial(config), Vec::new(), Vec::new()));
            }
            check_pinned_maps(&instance.dir)?;
            let known = pinned_layout(&instance.dir)?;
            let layout = Layout::adopt(config, &known.farms, &known.backends)?;
            let farms: Vec<u32> = known.farms.values().copied().filter(|id| layout.farm_index(*id).is_none()).collect();
            let backends: Vec<u32> =
                known.backends.values().copied().filter(|id| layout.backend_index(*id).is_none()).collect();
            Ok((layout, farms, backends))
        })();
        let (layout, removed_farms, removed_backends) = match prepared {
            Ok(p) => p,
            Err(e) => {
                if !adopting {
                    pins::remove(&instance.dir);
                }
                return Err(e);
            }
        };
        let ebpf = match load_pinned(config, &layout, Some(&instance.dir)) {
            Ok(ebpf) => ebpf,
            Err(e) => {
                if !adopting {
                    pins::remove(&instance.dir);
                }
                return Err(e);
            }
        };
        let session_filter = match crate::session_filter::of(&ebpf) {
            Ok(filter) => filter,
            Err(e) => {
                if !adopting {
                    pins::remove(&instance.dir);
                }
                return Err(e);
            }
        };
        // From here on, Drop detaches and unpins whatever a failed step
        // leaves, unless the pins were adopted.
        let mut dp = Dataplane {
            ebpf,
            session_removals: None,
            session_filter,
            links: Vec::new(),
            instance,
            keep_pins: adopting,
            attached: Vec::new(),
        };
        dp.session_removals = dp.ebpf.take_map(abi::SESSION_REMOVALS_MAP);
        if adopting {
            // Pins of a build before the filter leave it empty, which would
            // make every adopted session a miss: marked before the new
            // programs take over.
            rebuild_session_filter(&dp.ebpf, &dp.session_filter)?;
            let runtime = farm::Runtime::from_config(config);
            let forgotten = dp.apply(config, &layout, &runtime, &removed_farms, &removed_backends)?;
            info!(
                pins = %dp.instance.dir.display(),
                removed_backends = removed_backends.len(),
                removed_farms = removed_farms.len(),
                forgotten,
                "adopted the pinned data path of an earlier daemon"
            );
        }
        for interface in &config.daemon.interfaces {
            // tc first: once XDP passes a backend's SYN-ACK up, tc must be there to answer it.
            dp.attach_tc(interface)?;
            let mode = dp.attach_xdp(interface, config.daemon.xdp_mode)?;
            info!(interface, mode, "attached");
            dp.attached.push((interface.clone(), mode));
        }
        dp.detach_unconfigured(&config.daemon.interfaces);
        dp.keep_pins = false;
        Ok((dp, layout))
    }

    /// Attaches the tc program to `interface`'s ingress, or swaps it into
    /// the pinned link an earlier daemon left there.
    fn attach_tc(&mut self, interface: &str) -> Result<(), LoadError> {
        let path = pins::link_pin(&self.instance.dir, "tc", interface);
        let err = |source| LoadError::TcAttach { interface: interface.to_owned(), source };
        let pin_err = |why: String| LoadError::PinLink { interface: interface.to_owned(), path: path.clone(), why };
        let program = tc_program(&mut self.ebpf)?;
        let (id, fresh) = match PinnedLink::from_pin(&path) {
            Ok(old) => {
                let link = SchedClassifierLink::try_from(FdLink::from(old)).map_err(|e| pin_err(e.to_string()))?;
                (program.attach_to_link(link).map_err(err)?, false)
            }
            Err(_) => (program.attach(interface, TcAttachType::Ingress).map_err(err)?, true),
        };
        let link: FdLink = program
            .take_link(id)
            .map_err(err)?
            .try_into()
            .map_err(|e: aya::programs::links::LinkError| pin_err(e.to_string()))?;
        self.keep(link, &path, fresh).map_err(pin_err)
    }

    /// As `attach_tc`, for the XDP program, in `mode`.
    fn attach_xdp(&mut self, interface: &str, mode: XdpMode) -> Result<&'static str, LoadError> {
        let path = pins::link_pin(&self.instance.dir, "xdp", interface);
        let pin_err = |why: String| LoadError::PinLink { interface: interface.to_owned(), path: path.clone(), why };
        let program = xdp_program(&mut self.ebpf)?;
        let (id, name, fresh) = match PinnedLink::from_pin(&path) {
            Ok(old) => {
                let link = XdpLink::try_from(FdLink::from(old)).map_err(|e| pin_err(e.to_string()))?;
                let id = program.attach_to_link(link).map_err(|source| LoadError::Attach {
                    interface: interface.to_owned(),
                    mode: "adopted",
                    source,
                })?;
                (id, "adopted", false)
            }
            Err(_) => {
                let (id, name) = attach(program, interface, mode)?;
                (id, name, true)
            }
        };
        let link: FdLink = program
            .take_link(id)
            .map_err(|source| LoadError::Attach { interface: interface.to_owned(), mode: name, source })?
            .try_into()
            .map_err(|e: aya::programs::links::LinkError| pin_err(e.to_string()))?;
        self.keep(link, &path, fresh).map_err(pin_err)?;
        Ok(name)
    }

    /// Holds `link`, pinning it at `path` first if it is new.
    fn keep(&mut self, link: FdLink, path: &std::path::Path, fresh: bool) -> Result<(), String> {
        let link = if fresh { FdLink::from(link.pin(path).map_err(|e| e.to_string())?) } else { link };
        self.links.push(link);
        Ok(())
    }

    /// Links an earlier daemon pinned for interfaces this configuration no
    /// longer lists: unpinned, so they detach.
    fn detach_unconfigured(&mut self, interfaces: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.instance.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("link_") else { continue };
            let interface = rest.split_once('_').map_or("", |(_, i)| i);
            if !interfaces.iter().any(|i| i == interface) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => info!(interface, "detached from an interface the configuration no longer lists"),
                    Err(e) => warn!(interface, error = %e, "cannot remove a stale link pin"),
                }
            }
        }
    }

    pub fn pin_dir(&self) -> &std::path::Path {
        &self.instance.dir
    }

    pub fn counters(&self) -> Result<Counters, LoadError> {
        let map: PerCpuArray<&MapData, u64> = self
            .ebpf
            .map(abi::STATS_MAP)
            .ok_or(LoadError::Missing { what: "map", name: abi::STATS_MAP })?
            .try_into()
            .map_err(|source| LoadError::Map { map: abi::STATS_MAP, source })?;
        stats::read(&map).map_err(|source| LoadError::Map { map: abi::STATS_MAP, source })
    }

    /// Removes connections that have been quiet too long and counts the
    /// rest per backend; see [`sweep`].
    pub fn sweep(&mut self, timeouts: &Timeouts) -> Result<Sweep, LoadError> {
        sweep(&mut self.ebpf, timeouts)
    }

    /// Tells the data path a farm's backends' new states (see
    /// [`write_farm_backends`]).
    pub fn write_farm(
        &mut self,
        config: &Config,
        layout: &Layout,
        runtime: &farm::Runtime,
        farm: usize,
    ) -> Result<(), LoadError> {
        write_farm_backends(&mut self.ebpf, config, layout, runtime, farm)
    }

    /// Marks every connection to `backend_id` for reset
    /// (`flow_flags::RESET`): its backend failed. Returns the connections.
    pub fn reset_flows_of(&mut self, backend_id: u32) -> Result<usize, LoadError> {
        let entries = read_flows(&self.ebpf)?;
        let mut flows = flows_mut(&mut self.ebpf)?;
        let mut marked = 0;
        for (key, mut flow) in entries {
            if flow.backend_id != backend_id || flow.flags & flow_flags::RESET != 0 {
                continue;
            }
            flow.flags |= flow_flags::RESET;
            // BPF_EXIST: an entry XDP removed meanwhile stays removed. (A
            // refresh XDP made since the read is overwritten: it only makes
            // the connection look older, and it is ending.)
            match flows.insert(&key, flow, BPF_EXIST) {
                Ok(()) => marked += usize::from(flow.direction == abi::FlowDirection::ToBackend as u8),
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(flows_error(e)),
            }
        }
        Ok(marked)
    }

    /// The `BINDS` ring buffer, for the one reader the daemon runs.
    pub fn take_bind_events(&mut self) -> Result<aya::maps::RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map(abi::BINDS_MAP).ok_or(LoadError::Missing { what: "map", name: abi::BINDS_MAP })?;
        map.try_into().map_err(|source| LoadError::Map { map: abi::BINDS_MAP, source })
    }

    /// The slow path's ring buffer (`SLOW_PATH`), for its reader.
    pub fn take_slow_path(&mut self) -> Result<aya::maps::RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(abi::SLOW_PATH_MAP)
            .ok_or(LoadError::Missing { what: "map", name: abi::SLOW_PATH_MAP })?;
        map.try_into().map_err(|source| LoadError::Map { map: abi::SLOW_PATH_MAP, source })
    }

    /// Bind events XDP lost to a full `BINDS`.
    pub fn lost_bind_events(&self) -> Result<u64, LoadError> {
        let map_err = |source| LoadError::Map { map: abi::BINDS_LOST_MAP, source };
        let map: Array<&MapData, u64> = self
            .ebpf
            .map(abi::BINDS_LOST_MAP)
            .ok_or(LoadError::Missing { what: "map", name: abi::BINDS_LOST_MAP })?
            .try_into()
            .map_err(map_err)?;
        map.get(&0, 0).map_err(map_err)
    }

    /// Connections bound to each backend id since load.
    pub fn new_flows(&self) -> Result<Vec<u64>, LoadError> {
        read_new_flows(&self.ebpf)
    }

    /// Removes persistence entries past their farm's `session_timeout`.
    pub fn sweep_sessions(&mut self, config: &Config, layout: &Layout) -> Result<usize, LoadError> {
        // By farm id; an id no farm has (a farm a reload removed) keeps nothing.
        let mut timeouts = vec![std::time::Duration::ZERO; abi::MAX_FARMS as usize];
        for (i, farm) in config.farms.iter().enumerate() {
            timeouts[layout.farm(i) as usize] = farm.session_timeout;
        }
        let now = monotonic_ns();
        let removals_map = self
            .session_removals
            .as_mut()
            .ok_or(LoadError::Missing { what: "map", name: abi::SESSION_REMOVALS_MAP })?;
        let mut removals: aya::maps::Array<&mut MapData, u64> =
            removals_map.try_into().map_err(|source| LoadError::Map { map: abi::SESSION_REMOVALS_MAP, source })?;
        // Entries the sweep removes next are marked in the filter too: a
        // slot set for nothing only costs a lookup until the next rebuild.
        let scanned = rebuild_session_filter(&self.ebpf, &self.session_filter)?;
        let mut sessions: HashMap<&mut MapData, SessionKey, abi::SessionEntry> =
            map_mut(&mut self.ebpf, abi::SESSIONS_MAP)?;
        crate::sessions::sweep(&scanned, &mut sessions, &mut removals, &timeouts, now)
            .map_err(|source| LoadError::Map { map: abi::SESSIONS_MAP, source })
    }

    /// Applies a reloaded configuration, laid out as `layout`: settings,
    /// farms, backends and their lists, VIPs (new and changed ones written
    /// before removed ones go); then the backends and farms it no longer
    /// has are cleared, with what was learned for them. Flows are not
    /// touched: a connection to a removed backend runs to its end.
    pub fn apply(
        &mut self,
        config: &Config,
        layout: &Layout,
        runtime: &farm::Runtime,
        removed_farms: &[u32],
        removed_backends: &[u32],
    ) -> Result<usize, LoadError> {
        write_settings(&mut self.ebpf, config)?;
        write_farms(&mut self.ebpf, config, layout)?;
        write_backends(&mut self.ebpf, config, layout, runtime)?;
        write_vips(&mut self.ebpf, config, layout)?;
        let map_err = |map| move |source| LoadError::Map { map, source };
        {
            let mut backends: Array<&mut MapData, BackendInfo> = map_mut(&mut self.ebpf, abi::BACKENDS_MAP)?;
            let unused = BackendInfo { addr_be: [0; 16], port_be: 0, family: 0, state: 0, farm_id: 0 };
            for id in removed_backends {
                backends.set(*id, unused, 0).map_err(map_err(abi::BACKENDS_MAP))?;
            }
        }
        {
            let mut farms: Array<&mut MapData, FarmInfo> = map_mut(&mut self.ebpf, abi::FARMS_MAP)?;
            for id in removed_farms {
                farms.set(*id, FarmInfo::default(), 0).map_err(map_err(abi::FARMS_MAP))?;
            }
            let mut names: Array<&mut MapData, [u8; abi::FARM_NAME_MAX]> =
                map_mut(&mut self.ebpf, abi::FARM_NAMES_MAP)?;
            for id in removed_farms {
                names.set(*id, [0; abi::FARM_NAME_MAX], 0).map_err(map_err(abi::FARM_NAMES_MAP))?;
            }
        }
        let scanned = scan_sessions(&self.ebpf)?;
        let mut sessions: HashMap<&mut MapData, SessionKey, abi::SessionEntry> =
            map_mut(&mut self.ebpf, abi::SESSIONS_MAP)?;
        let mut forgotten = 0;
        for (key, entry) in scanned {
            if removed_farms.contains(&key.farm_id) || removed_backends.contains(&entry.backend_id) {
                match sessions.remove(&key) {
                    Ok(()) => forgotten += 1,
                    Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(abi::SESSIONS_MAP)(e)),
                }
            }
        }
        Ok(forgotten)
    }

    /// `ticket-key`: the tickets of `backend_id` (of `farm_id`) carry key
    /// name `name`, as its TLS health check saw. A name already learned for
    /// another backend becomes shared (`NO_BACKEND`: chooses nothing), as
    /// when XDP learns it twice. Returns what the entry now says.
    pub fn learn_key_name(&mut self, farm_id: u32, name: &[u8; 16], backend_id: u32) -> Result<u32, LoadError> {
        let map_err = |source| LoadError::Map { map: abi::SESSIONS_MAP, source };
        let mut sessions: HashMap<&mut MapData, SessionKey, abi::SessionEntry> =
            map_mut(&mut self.ebpf, abi::SESSIONS_MAP)?;
        let key = SessionKey::new(farm_id, abi::PersistKind::TicketKey, name);
        let owner = match sessions.get(&key, 0) {
            Ok(known) if known.backend_id != backend_id => abi::NO_BACKEND,
            Ok(_) | Err(MapError::KeyNotFound) => backend_id,
            Err(e) => return Err(map_err(e)),
        };
        let now = monotonic_ns();
        let entry = abi::SessionEntry { backend_id: owner, _pad: 0, created_ns: now, last_used_ns: now };
        sessions.insert(key, entry, 0).map_err(map_err)?;
        self.session_filter.mark(&key);
        Ok(owner)
    }

    /// Ends the waits of `tls` connections whose backend has not answered
    /// within `connect`; see [`crate::pending::expire`].
    pub fn expire_pending(&mut self, connect: std::time::Duration) -> Result<crate::pending::Expired, LoadError> {
        crate::pending::expire(&mut self.ebpf, monotonic_ns(), connect)
            .map_err(|source| LoadError::Map { map: abi::PENDING_MAP, source })
    }

    /// Sends again the backend SYNs unanswered for `pending::SYN_RETRY`, by
    /// running the client's first segment, rebuilt from its stash, through
    /// XDP (which answers it as a retransmission); `retried` remembers when.
    /// Returns how many.
    pub fn retry_backend_syns(
        &mut self,
        retried: &mut std::collections::HashMap<FlowKey, u64>,
    ) -> Result<usize, LoadError> {
        use crate::slow_path::Dataplane as _;
        let now = monotonic_ns();
        let due = crate::pending::syns_to_retry(&self.ebpf, now, retried)
            .map_err(|source| LoadError::Map { map: abi::PENDING_MAP, source })?;
        retried.retain(|key, _| self.pending(key).is_some());
        // The next hop is remembered once a packet has gone the whole way;
        // before that, any attached interface serves as where the segment
        // came in (the route lookup needs one).
        let attached = self.attached.first().map(|(name, _)| interface_index(name)).unwrap_or(0);
        for (key, p, remembered) in &due {
            let ifindex = if *remembered != 0 { *remembered } else { attached };
            let first = &p.data[..usize::from(p.segment_len[0]).min(p.data.len())];
            let frame = crate::slow_path::client_segment(key, p, p.client_tsval, 0, first);
            if let Err(e) = self.inject(&frame, ifindex) {
                warn!(error = %format!("{e:#}"), "cannot send a backend SYN again");
            }
            retried.insert(*key, now);
        }
        Ok(due.len())
    }
}

/// An interface's index, 0 if there is none of that name.
fn interface_index(name: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(name) else { return 0 };
    // SAFETY: a valid C string for the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

impl crate::slow_path::Dataplane for Dataplane {
    fn pending(&self, key: &FlowKey) -> Option<lb_common::Pending> {
        let map: HashMap<&MapData, FlowKey, lb_common::Pending> = self.ebpf.map(abi::PENDING_MAP)?.try_into().ok()?;
        map.get(key, 0).ok()
    }

    fn set_pending(&mut self, key: &FlowKey, p: &lb_common::Pending) -> anyhow::Result<()> {
        let mut map: HashMap<&mut MapData, FlowKey, lb_common::Pending> =
            self.ebpf.map_mut(abi::PENDING_MAP).ok_or_else(|| anyhow::anyhow!("no PENDING map"))?.try_into()?;
        map.insert(key, p, 0)?;
        Ok(())
    }

    fn flow_state(&self, key: &FlowKey) -> Option<u8> {
        crate::flows::of(&self.ebpf).ok()?.get(key).ok().map(|f| f.state)
    }

    fn inject(&self, frame: &[u8], ifindex: u32) -> anyhow::Result<()> {
        use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
        let program: &Xdp =
            self.ebpf.program(abi::XDP_PROGRAM).ok_or_else(|| anyhow::anyhow!("no XDP program"))?.try_into()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        // Live frames: what the program transmits or redirects leaves for real.
        program.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            attrs: TestRunAttrs::new().xdp_live_frames(0),
            ..Default::default()
        })?;
        Ok(())
    }
}

impl crate::server_flight::Sessions for Dataplane {
    fn flow(&self, key: &FlowKey) -> Option<Flow> {
        crate::flows::of(&self.ebpf).ok()?.get(key).ok()
    }

    fn farm_of(&self, backend_id: u32) -> Option<(u32, FarmInfo)> {
        let backends: Array<&MapData, BackendInfo> = self.ebpf.map(abi::BACKENDS_MAP)?.try_into().ok()?;
        let backend = backends.get(&backend_id, 0).ok().filter(|b| b.family != 0)?;
        let farms: Array<&MapData, FarmInfo> = self.ebpf.map(abi::FARMS_MAP)?.try_into().ok()?;
        Some((backend.farm_id, farms.get(&backend.farm_id, 0).ok()?))
    }

    fn learn(&mut self, key: &SessionKey, backend_id: u32) -> anyhow::Result<()> {
        let mut sessions: HashMap<&mut MapData, SessionKey, abi::SessionEntry> =
            map_mut(&mut self.ebpf, abi::SESSIONS_MAP)?;
        let now = monotonic_ns();
        sessions.insert(key, abi::SessionEntry { backend_id, _pad: 0, created_ns: now, last_used_ns: now }, 0)?;
        self.session_filter.mark(key);
        Ok(())
    }

    fn learn_key_name(&mut self, farm_id: u32, name: &[u8; 16], backend_id: u32) -> anyhow::Result<()> {
        Dataplane::learn_key_name(self, farm_id, name, backend_id)?;
        Ok(())
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if self.keep_pins {
            warn!(pins = %self.instance.dir.display(), "start failed; the adopted data path keeps running as it was");
            return;
        }
        // The pins go first; the links detach when `links` closes them.
        pins::remove(&self.instance.dir);
        for (interface, _) in &self.attached {
            info!(interface, "detached");
        }
    }
}

/// The object with its maps filled from `config` and its programs (XDP and
/// tc) loaded (verified), attached nowhere.
pub fn load(config: &Config) -> Result<Ebpf, LoadError> {
    load_pinned(config, &Layout::initial(config), None)
}

/// As [`load`], with the ids of `layout`, and with the maps of
/// `abi::PINNED_MAPS` pinned in `pin_dir` by name (reused where a pin is
/// there already).
pub fn load_pinned(config: &Config, layout: &Layout, pin_dir: Option<&std::path::Path>) -> Result<Ebpf, LoadError> {
    let mut loader = aya::EbpfLoader::new();
    loader.map_max_entries(abi::SESSIONS_MAP, session_table_size(config));
    let filter_bits = abi::session_filter_bits(session_table_size(config));
    loader.map_max_entries(abi::SESSION_FILTER_MAP, abi::session_filter_elements(filter_bits));
    if let Some(dir) = pin_dir {
        for name in abi::PINNED_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    crate::session_filter::of(&ebpf)?.set_up();
    write_settings(&mut ebpf, config)?;
    write_farms(&mut ebpf, config, layout)?;
    write_backends(&mut ebpf, config, layout, &farm::Runtime::from_config(config))?;
    write_vips(&mut ebpf, config, layout)?;
    xdp_program(&mut ebpf)?.load().map_err(LoadError::Verifier)?;
    tc_program(&mut ebpf)?.load().map_err(LoadError::TcVerifier)?;
    for (slot, name) in [
        (abi::JUMP_VIP, abi::XDP_VIP_PROGRAM),
        (abi::JUMP_LEARN, abi::XDP_LEARN_PROGRAM),
        (abi::JUMP_BIND, abi::XDP_BIND_PROGRAM),
        (abi::JUMP_V6, abi::XDP_V6_PROGRAM),
    ] {
        let fd = load_jump_target(&mut ebpf, name)?;
        let mut jumps: aya::maps::ProgramArray<&mut MapData> = map_mut(&mut ebpf, abi::JUMPS_MAP)?;
        jumps.set(slot, &fd, 0).map_err(|source| LoadError::Map { map: abi::JUMPS_MAP, source })?;
    }
    Ok(ebpf)
}

/// Loads an XDP program that `tether_xdp` tail-calls; its fd for `JUMPS`.
fn load_jump_target(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::programs::ProgramFd, LoadError> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(LoadError::Missing { what: "program", name })?
        .try_into()
        .map_err(LoadError::Verifier)?;
    program.load().map_err(LoadError::Verifier)?;
    program.fd().map_err(LoadError::Verifier)?.try_clone().map_err(|e| {
        LoadError::Verifier(ProgramError::SyscallError(aya::sys::SyscallError { call: "dup", io_error: e }))
    })
}

pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(abi::XDP_PROGRAM)
        .ok_or(LoadError::Missing { what: "program", name: abi::XDP_PROGRAM })?
        .try_into()
        .map_err(LoadError::Verifier)
}

pub fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    ebpf.program_mut(abi::TC_PROGRAM)
        .ok_or(LoadError::Missing { what: "program", name: abi::TC_PROGRAM })?
        .try_into()
        .map_err(LoadError::TcVerifier)
}

fn write_settings(ebpf: &mut Ebpf, config: &Config) -> Result<(), LoadError> {
    let (lo, hi) = config.daemon.snat_ports;
    // Both legs of a `tls` connection get an MSS that fits every attached
    // interface: the client is told it in our SYN-ACK, the backend in our SYN.
    let mss_clamp = config
        .daemon
        .interfaces
        .iter()
        .filter_map(|name| interface_mtu(name))
        .map(|mtu| mtu.saturating_sub(40))
        .min()
        .unwrap_or(0);
    let settings =
        Settings { snat_port_min: u32::from(lo), snat_port_count: u32::from(hi) - u32::from(lo) + 1, mss_clamp };
    let mut map: Array<&mut MapData, Settings> = map_mut(ebpf, abi::SETTINGS_MAP)?;
    map.set(0, settings, 0).map_err(|source| LoadError::Map { map: abi::SETTINGS_MAP, source })
}

/// Backends of all farms, numbered in config order, with the state the
/// data path is to treat them by, and each farm's selection lists over the
/// backends that take new connections.
fn write_backends(ebpf: &mut Ebpf, config: &Config, layout: &Layout, runtime: &farm::Runtime) -> Result<(), LoadError> {
    for farm in 0..config.farms.len() {
        write_farm_backends(ebpf, config, layout, runtime, farm)?;
    }
    Ok(())
}

/// One farm's backends (`BACKENDS`, `BACKEND_LOAD` weights), `FARM_RR`
/// slice and length, and `MAGLEV` table, from its run-time state: at load,
/// and again whenever a backend's state or health changes. `farm` is the
/// farm's index in `config`; `layout` gives the ids.
pub fn write_farm_backends(
    ebpf: &mut Ebpf,
    config: &Config,
    layout: &Layout,
    runtime: &farm::Runtime,
    farm: usize,
) -> Result<(), LoadError> {
    let map_err = |map| move |source| LoadError::Map { map, source };
    let farm_id = layout.farm(farm);
    let runs = &runtime.farms[farm];
    let ids: Vec<u32> = (0..config.farms[farm].backends.len()).map(|j| layout.backend(farm, j)).collect();
    let farm = &config.farms[farm];
    {
        let mut backends: Array<&mut MapData, BackendInfo> = map_mut(ebpf, abi::BACKENDS_MAP)?;
        for ((b, run), id) in farm.backends.iter().zip(runs).zip(&ids) {
            let info = BackendInfo {
                addr_be: addr_bytes(b.address.ip()),
                port_be: b.address.port().to_be(),
                family: family(b.address.ip()) as u8,
                state: farm::data_path_state(*run) as u8,
                farm_id,
            };
            backends.set(*id, info, 0).map_err(map_err(abi::BACKENDS_MAP))?;
        }
    }
    {
        // Weights only: the counts are the sweep's to write (`write_loads`).
        let mut loads: Array<&mut MapData, abi::BackendLoad> = map_mut(ebpf, abi::BACKEND_LOAD_MAP)?;
        for (b, &id) in farm.backends.iter().zip(&ids) {
            let mut load = loads.get(&id, 0).map_err(map_err(abi::BACKEND_LOAD_MAP))?;
            load.weight = u64::from(b.weight.max(1));
            loads.set(id, load, 0).map_err(map_err(abi::BACKEND_LOAD_MAP))?;
        }
    }
    let selection = farm::selection(farm, runs, &ids);
    {
        let mut rings: Array<&mut MapData, u32> = map_mut(ebpf, abi::MAGLEV_MAP)?;
        let base = farm_id * abi::MAGLEV_RING;
        for (slot, id) in selection.ring.iter().enumerate() {
            rings.set(base + slot as u32, *id, 0).map_err(map_err(abi::MAGLEV_MAP))?;
        }
    }
    {
        // The new list before its length: a data path reading the old length
        // meanwhile finds backends that were valid a moment ago.
        let mut order: Array<&mut MapData, u32> = map_mut(ebpf, abi::FARM_RR_MAP)?;
        for (slot, id) in selection.rotation.iter().enumerate() {
            let index = farm_id * abi::FARM_RR_SLOTS + slot as u32;
            order.set(index, *id, 0).map_err(map_err(abi::FARM_RR_MAP))?;
        }
    }
    let mut farms: Array<&mut MapData, FarmInfo> = map_mut(ebpf, abi::FARMS_MAP)?;
    let mut info = farms.get(&farm_id, 0).map_err(map_err(abi::FARMS_MAP))?;
    info.rr_len = selection.rotation.len() as u32;
    farms.set(farm_id, info, 0).map_err(map_err(abi::FARMS_MAP))
}

/// Each farm's settings (`FARMS`) and its backends' session ID prefixes
/// (`SESSION_PREFIXES`). `rr_len` is `write_farm_backends`'s.
fn write_farms(ebpf: &mut Ebpf, config: &Config, layout: &Layout) -> Result<(), LoadError> {
    let mut farms: Array<&mut MapData, FarmInfo> = map_mut(ebpf, abi::FARMS_MAP)?;
    for (i, farm) in config.farms.iter().enumerate() {
        let mut persistence = [0u8; abi::MAX_PERSIST_KINDS];
        for (slot, kind) in persistence.iter_mut().zip(&farm.persistence) {
            *slot = crate::sessions::kind_of(*kind) as u8;
        }
        let session_id_prefix_len =
            farm.backends.iter().find_map(|b| b.session_id_prefix.as_ref()).map_or(0, |p| p.len() as u8);
        let on_failure = match farm.on_backend_failure {
            config::OnBackendFailure::Rebalance => abi::OnFailure::Rebalance,
            config::OnBackendFailure::Reset => abi::OnFailure::Reset,
            config::OnBackendFailure::Drop => abi::OnFailure::Drop,
        };
        // A farm that stays through a reload keeps its rotation's length and
        // place (`write_farm_backends` sets the length).
        let old = farms.get(&layout.farm(i), 0).unwrap_or_default();
        let info = FarmInfo {
            algorithm: farm::data_path_algorithm(farm.algorithm) as u8,
            persistence,
            session_id_prefix_len,
            rr_len: old.rr_len,
            rr_next: old.rr_next,
            session_timeout_s: farm.session_timeout.as_secs().clamp(1, u32::MAX as u64) as u32,
            source_prefix_v4: farm.source_prefix_v4,
            source_prefix_v6: farm.source_prefix_v6,
            persist_mask: farm
                .persistence
                .iter()
                .fold(0, |mask, kind| mask | 1 << crate::sessions::kind_of(*kind) as u8),
            on_failure: on_failure as u8,
        };
        farms.set(layout.farm(i), info, 0).map_err(|source| LoadError::Map { map: abi::FARMS_MAP, source })?;
    }
    let mut names: Array<&mut MapData, [u8; abi::FARM_NAME_MAX]> = map_mut(ebpf, abi::FARM_NAMES_MAP)?;
    for (i, farm) in config.farms.iter().enumerate() {
        let mut name = [0u8; abi::FARM_NAME_MAX];
        let len = farm.name.len().min(abi::FARM_NAME_MAX);
        name[..len].copy_from_slice(&farm.name.as_bytes()[..len]);
        names.set(layout.farm(i), name, 0).map_err(|source| LoadError::Map { map: abi::FARM_NAMES_MAP, source })?;
    }
    // Prefixes: the new ones first, then those no backend has any more.
    let map_err = |source| LoadError::Map { map: abi::SESSION_PREFIXES_MAP, source };
    let mut prefixes: HashMap<&mut MapData, SessionKey, u32> = map_mut(ebpf, abi::SESSION_PREFIXES_MAP)?;
    let mut wanted = std::collections::HashSet::new();
    for (i, farm) in config.farms.iter().enumerate() {
        for (j, backend) in farm.backends.iter().enumerate() {
            let Some(prefix) = &backend.session_id_prefix else { continue };
            let key = session_prefix_key(layout.farm(i), prefix);
            prefixes.insert(key, layout.backend(i, j), 0).map_err(map_err)?;
            wanted.insert(key);
        }
    }
    let stale: Vec<SessionKey> = prefixes.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
    for key in stale {
        prefixes.remove(&key).map_err(map_err)?;
    }
    Ok(())
}

/// The `SESSION_PREFIXES` key of a backend's session ID prefix (config
/// validation keeps it to 1-16 bytes).
pub fn session_prefix_key(farm_id: u32, prefix: &[u8]) -> SessionKey {
    SessionKey::new(farm_id, abi::PersistKind::SessionIdPrefix, prefix)
}

/// The MTU of an interface in this network namespace (an ioctl, not sysfs:
/// /sys shows the namespace it was mounted in).
fn interface_mtu(name: &str) -> Option<u32> {
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: an all-zero ifreq is valid; the name fits (checked above) and
    // stays NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifru_mtu of the ifreq we own.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    // SAFETY: on success the kernel filled ifru_mtu.
    (rc == 0).then_some(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    ebpf.map_mut(name)
        .ok_or(LoadError::Missing { what: "map", name })?
        .try_into()
        .map_err(|source| LoadError::Map { map: name, source })
}

/// `VIPS` and `OWNED_ADDRS` for `config`: every VIP written (new or
/// changed), then what the configuration no longer has removed, so a reload
/// never leaves a moment without a VIP that stays.
fn write_vips(ebpf: &mut Ebpf, config: &Config, layout: &Layout) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map { map: abi::VIPS_MAP, source };
    let mut vips: HashMap<&mut MapData, VipKey, VipInfo> = map_mut(ebpf, abi::VIPS_MAP)?;
    let mut wanted = std::collections::HashSet::new();
    for (id, vip) in config.vips.iter().enumerate() {
        let key = vip_key(vip.address, vip.port);
        wanted.insert(key);
        let info = VipInfo {
            vip_id: id as u32,
            farm_id: layout.farm(vip.farm),
            snat_be: addr_bytes(vip.snat),
            protocol: match vip.protocol {
                VipProtocol::Tls => abi::Protocol::Tls as u8,
                VipProtocol::Tcp => abi::Protocol::Tcp as u8,
            },
            _pad: [0; 3],
        };
        vips.insert(key, info, 0).map_err(map_err)?;
        info!(vip = vip.name, address = %vip.address, port = vip.port, "serving VIP");
    }
    let stale: Vec<VipKey> = vips.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
    for key in stale {
        vips.remove(&key).map_err(map_err)?;
    }
    let mut kinds: std::collections::HashMap<IpAddr, u32> = std::collections::HashMap::new();
    for vip in &config.vips {
        *kinds.entry(vip.address).or_default() |= abi::owned::VIP;
        *kinds.entry(vip.snat).or_default() |= abi::owned::SNAT;
    }
    // The filter first, so an address is never in `OWNED_ADDRS` with a
    // clear bit (XDP would pass its traffic to the host).
    let map_err = |source| LoadError::Map { map: abi::OWNED_FILTER_MAP, source };
    let mut filter_map: Array<&mut MapData, abi::OwnedFilter> = map_mut(ebpf, abi::OWNED_FILTER_MAP)?;
    let mut filter = filter_map.get(&0, 0).map_err(map_err)?;
    for addr in kinds.keys() {
        let (word, mask) = abi::owned_filter_slot(abi::owned_filter_fold(&addr_bytes(*addr)));
        filter.words[word] |= mask;
    }
    filter_map.set(0, filter, 0).map_err(map_err)?;
    let map_err = |source| LoadError::Map { map: abi::OWNED_ADDRS_MAP, source };
    let mut owned: HashMap<&mut MapData, AddrKey, u32> = map_mut(ebpf, abi::OWNED_ADDRS_MAP)?;
    let mut wanted = std::collections::HashSet::new();
    for (addr, kind) in kinds {
        let key = AddrKey { addr_be: addr_bytes(addr), family: family(addr) as u8, _pad: [0; 3] };
        owned.insert(key, kind, 0).map_err(map_err)?;
        wanted.insert(key);
    }
    let stale: Vec<AddrKey> = owned.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
    for key in stale {
        owned.remove(&key).map_err(map_err)?;
    }
    Ok(())
}

fn attach(program: &mut Xdp, interface: &str, mode: XdpMode) -> Result<(XdpLinkId, &'static str), LoadError> {
    use aya::programs::XdpMode as Flags;
    let try_mode = |program: &mut Xdp, flags, name: &'static str| {
        program.attach(interface, flags).map(|id| (id, name)).map_err(|source| LoadError::Attach {
            interface: interface.to_owned(),
            mode: name,
            source,
        })
    };
    match mode {
        XdpMode::Native => try_mode(program, Flags::Driver, "native"),
        XdpMode::Generic => try_mode(program, Flags::Skb, "generic"),
        XdpMode::Auto => try_mode(program, Flags::Driver, "native").or_else(|native_err| {
            warn!(interface, error = %native_err, "native XDP unavailable; falling back to generic mode, which is much slower");
            try_mode(program, Flags::Skb, "generic")
        }),
    }
}

/// `bpf_map_update_elem`'s flag: update an entry only if it exists
/// (linux/bpf.h).
const BPF_EXIST: u64 = 2;

/// What one sweep of the flow table did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries removed (two per connection).
    pub removed: usize,
    /// Connections left per backend id (`MAX_BACKENDS` long).
    pub active: Vec<u64>,
}

/// Removes flows whose connection has been quiet too long: both directions
/// idle past `idle` (or `closing` once a FIN was seen), or a connection whose
/// backend never answered within `half_open`. Counts the connections left
/// per backend and writes them into `BACKEND_LOAD` for `least-connections`,
/// with the `BACKEND_NEW_FLOWS` counts read before the scan, so XDP adds
/// only what it bound since.
pub fn sweep(ebpf: &mut Ebpf, timeouts: &Timeouts) -> Result<Sweep, LoadError> {
    let now = monotonic_ns();
    let new_flows = read_new_flows(ebpf)?;
    let entries = read_flows(ebpf)?;
    let mut flows = flows_mut(ebpf)?;
    let by_key: std::collections::HashMap<FlowKey, Flow> = entries.iter().copied().collect();
    let mut expired = Vec::new();
    let mut active = vec![0u64; abi::MAX_BACKENDS as usize];
    for (key, flow) in &entries {
        let reply_key = FlowKey::reply(flow, key.family);
        let reply = by_key.get(&reply_key);
        if flow_expired(flow, reply, now, timeouts) {
            expired.push(*key);
            expired.push(reply_key);
        } else if flow.direction == abi::FlowDirection::ToBackend as u8
            && let Some(count) = active.get_mut(flow.backend_id as usize)
        {
            *count += 1;
        }
    }
    let mut removed = 0usize;
    for key in &expired {
        // Both entries of a pair name each other, so a key can come twice.
        match flows.remove(key) {
            Ok(()) => removed += 1,
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(flows_error(e)),
        }
    }
    // A connection bound during the scan is both in `active` and past the
    // counts read before it: until the next sweep the estimate is high by
    // the connections bound while the table was read (none in a quiet
    // moment). Reading the counts after the scan would err low instead,
    // which sends the next clients to a backend that is busier than it looks.
    write_loads(ebpf, &active, &new_flows)?;
    Ok(Sweep { removed, active })
}

/// Every flow-table entry, in batched reads.
fn read_flows(ebpf: &Ebpf) -> Result<Vec<(FlowKey, Flow)>, LoadError> {
    crate::flows::entries(ebpf).map_err(flows_error)
}

fn flows_mut(ebpf: &mut Ebpf) -> Result<crate::flows::FlowTables<&mut MapData>, LoadError> {
    crate::flows::of_mut(ebpf).map_err(flows_error)
}

/// The flow tables' errors, named by the IPv4 table (the one nearly every
/// connection is in).
fn flows_error(source: MapError) -> LoadError {
    LoadError::Map { map: abi::FLOWS_V4_MAP, source }
}

/// `BACKEND_NEW_FLOWS`: connections bound to each backend id since load.
pub fn read_new_flows(ebpf: &Ebpf) -> Result<Vec<u64>, LoadError> {
    let map_err = |source| LoadError::Map { map: abi::BACKEND_NEW_FLOWS_MAP, source };
    let map: Array<&MapData, u64> = ebpf
        .map(abi::BACKEND_NEW_FLOWS_MAP)
        .ok_or(LoadError::Missing { what: "map", name: abi::BACKEND_NEW_FLOWS_MAP })?
        .try_into()
        .map_err(map_err)?;
    map.iter().collect::<Result<Vec<u64>, _>>().map_err(map_err)
}

fn write_loads(ebpf: &mut Ebpf, active: &[u64], new_flows: &[u64]) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map { map: abi::BACKEND_LOAD_MAP, source };
    let mut loads: Array<&mut MapData, abi::BackendLoad> = map_mut(ebpf, abi::BACKEND_LOAD_MAP)?;
    for (id, (&connections, &seen)) in active.iter().zip(new_flows).enumerate() {
        let id = id as u32;
        let old = loads.get(&id, 0).map_err(map_err)?;
        if old.active == connections && old.new_flows_seen == seen {
            continue;
        }
        loads
            .set(id, abi::BackendLoad { active: connections, new_flows_seen: seen, weight: old.weight }, 0)
            .map_err(map_err)?;
    }
    Ok(())
}

/// Compares every map an earlier daemon pinned in `dir` with this data
/// path's definition of it (key and value sizes, size; the session table may
/// differ in size: its capacity was configured). aya would reuse a pinned
/// map whatever its layout, so this is what keeps an incompatible one from
/// being read as if it were this version's.
fn check_pinned_maps(dir: &std::path::Path) -> Result<(), LoadError> {
    let object = aya_obj::Object::parse(EBPF_OBJECT).map_err(|e| LoadError::Incompatible {
        dir: dir.to_owned(),
        problems: vec![format!("this tether's own data path does not parse: {e}")],
    })?;
    let mut problems = Vec::new();
    for name in abi::PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Some(ours) = object.maps.get(name) else {
            problems.push(format!("`{name}`: this data path has no such map"));
            continue;
        };
        let info = match MapData::from_pin(&path).and_then(|m| m.info()) {
            Ok(info) => info,
            Err(e) => {
                problems.push(format!("`{name}`: cannot read the pinned map: {e}"));
                continue;
            }
        };
        let mut differ = |what: &str, pinned: u32, wanted: u32| {
            if pinned != wanted {
                problems.push(format!("`{name}`: the pinned map's {what} is {pinned}, this data path's is {wanted}"));
            }
        };
        differ("key size", info.key_size(), ours.key_size());
        differ("value size", info.value_size(), ours.value_size());
        // Both are sized from the farms' capacities, and kept at their size
        // when adopted; the filter's header must name its size.
        if name == abi::SESSION_FILTER_MAP {
            let written = MapData::from_pin(&path).map_err(crate::session_filter::FilterError::from).and_then(|m| {
                let filter = crate::session_filter::SessionFilter::map(&m)?;
                Ok(filter.is_set_up())
            });
            match written {
                Ok(true) => {}
                Ok(false) => problems.push(format!("`{name}`: the pinned filter has no header")),
                Err(e) => problems.push(format!("`{name}`: {e}")),
            }
        } else if name != abi::SESSIONS_MAP {
            differ("size", info.max_entries(), ours.max_entries());
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(LoadError::Incompatible { dir: dir.to_owned(), problems }) }
}

/// Rebuilds the inactive generation of `filter` from a scan of `SESSIONS`
/// (cleared before the scan starts: see `SessionFilter::begin_rebuild`) and
/// makes it the active one. Returns what the scan found.
fn rebuild_session_filter(
    ebpf: &Ebpf,
    filter: &SessionFilter,
) -> Result<Vec<(SessionKey, abi::SessionEntry)>, LoadError> {
    let rebuilding = filter.begin_rebuild();
    let scanned = scan_sessions(ebpf)?;
    filter.mark_in(rebuilding, scanned.iter().map(|(key, _)| key));
    filter.activate(rebuilding);
    Ok(scanned)
}

/// Every entry of `SESSIONS`.
fn scan_sessions(ebpf: &Ebpf) -> Result<Vec<(SessionKey, abi::SessionEntry)>, LoadError> {
    match ebpf.map(abi::SESSIONS_MAP) {
        Some(aya::maps::Map::LruHashMap(data)) => {
            crate::sessions::entries(data).map_err(|source| LoadError::Map { map: abi::SESSIONS_MAP, source })
        }
        _ => Err(LoadError::Missing { what: "map", name: abi::SESSIONS_MAP }),
    }
}

/// The ids an earlier daemon gave farms (by name, from `FARM_NAMES`) and
/// backends (by farm name and address, from `BACKENDS`).
pub struct PinnedLayout {
    pub farms: std::collections::HashMap<String, u32>,
    pub backends: std::collections::HashMap<(String, std::net::SocketAddr), u32>,
}

fn pinned_layout(dir: &std::path::Path) -> Result<PinnedLayout, LoadError> {
    let open = |name: &'static str| {
        MapData::from_pin(dir.join(name))
            .and_then(aya::maps::Map::from_map_data)
            .map_err(|source| LoadError::Map { map: name, source })
    };
    let names_map = open(abi::FARM_NAMES_MAP)?;
    let names: Array<&MapData, [u8; abi::FARM_NAME_MAX]> =
        (&names_map).try_into().map_err(|source| LoadError::Map { map: abi::FARM_NAMES_MAP, source })?;
    let mut farms = std::collections::HashMap::new();
    let mut farm_names = std::collections::HashMap::new();
    for (id, name) in names.iter().enumerate() {
        let name = name.map_err(|source| LoadError::Map { map: abi::FARM_NAMES_MAP, source })?;
        let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        if len > 0 {
            let name = String::from_utf8_lossy(&name[..len]).into_owned();
            farms.insert(name.clone(), id as u32);
            farm_names.insert(id as u32, name);
        }
    }
    let backends_map = open(abi::BACKENDS_MAP)?;
    let infos: Array<&MapData, BackendInfo> =
        (&backends_map).try_into().map_err(|source| LoadError::Map { map: abi::BACKENDS_MAP, source })?;
    let mut backends = std::collections::HashMap::new();
    for (id, info) in infos.iter().enumerate() {
        let info = info.map_err(|source| LoadError::Map { map: abi::BACKENDS_MAP, source })?;
        let Some(farm) = farm_names.get(&info.farm_id) else { continue };
        let ip: IpAddr = match abi::Family::try_from(info.family) {
            Ok(abi::Family::Ipv4) => IpAddr::from([info.addr_be[0], info.addr_be[1], info.addr_be[2], info.addr_be[3]]),
            Ok(abi::Family::Ipv6) => IpAddr::from(info.addr_be),
            Err(_) => continue,
        };
        backends.insert((farm.clone(), std::net::SocketAddr::new(ip, u16::from_be(info.port_be))), id as u32);
    }
    Ok(PinnedLayout { farms, backends })
}

/// Entries of the persistence table: the farms' `session_capacity` added up
/// (one LRU table serves all farms; a farm's capacity is its share of it).
/// LRU maps are preallocated, about 110 bytes an entry.
pub fn session_table_size(config: &Config) -> u32 {
    let total: u64 = config.farms.iter().map(|f| u64::from(f.session_capacity)).sum();
    total.clamp(1, config::MAX_SESSION_CAPACITY) as u32
}

/// Whether a connection (this entry and its other direction) is over.
fn flow_expired(flow: &Flow, reply: Option<&Flow>, now: u64, t: &Timeouts) -> bool {
    let quiet = |f: &Flow| now.saturating_sub(f.last_seen_ns);
    let limit = |f: &Flow, other: Option<&Flow>| {
        let fin = f.flags & flow_flags::FIN != 0 || other.is_some_and(|o| o.flags & flow_flags::FIN != 0);
        if fin { t.closing } else { t.idle }
    };
    let Some(reply) = reply else {
        // An orphan (its partner already gone or evicted): nothing can use it.
        return quiet(flow) > t.closing.as_nanos() as u64;
    };
    // The backend -> client direction untouched since creation: no answer yet.
    let to_client = if flow.direction == abi::FlowDirection::ToClient as u8 { flow } else { reply };
    if to_client.last_seen_ns == to_client.created_ns {
        return quiet(flow).min(quiet(reply)) > t.half_open.as_nanos() as u64;
    }
    quiet(flow) > limit(flow, Some(reply)).as_nanos() as u64
        && quiet(reply) > limit(reply, Some(flow)).as_nanos() as u64
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns` (and,
/// within a tick, of `bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn family(ip: IpAddr) -> abi::Family {
    if ip.is_ipv4() { abi::Family::Ipv4 } else { abi::Family::Ipv6 }
}

/// The `VIPS` key for an address and port.
pub fn vip_key(address: IpAddr, port: u16) -> VipKey {
    match address {
        IpAddr::V4(a) => VipKey::v4(a.octets(), port.to_be()),
        IpAddr::V6(a) => VipKey::v6(a.octets(), port.to_be()),
    }
}

/// An address in the maps' 16-byte layout (IPv4 in the first four bytes).
pub fn addr_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lb_common::maps::{FlowDirection, flow_flags};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(900),
            half_open: Duration::from_secs(30),
            closing: Duration::from_secs(10),
        }
    }

    /// A connection created at t=0 whose directions last saw packets at the
    /// given times (in seconds; `None`: never since creation).
    fn pair(to_backend_seen: Option<u64>, to_client_seen: Option<u64>) -> (Flow, Flow) {
        let flow = |dir: FlowDirection, seen: Option<u64>| Flow {
            new_saddr_be: [0; 16],
            new_daddr_be: [0; 16],
            new_sport_be: 0,
            new_dport_be: 0,
            backend_id: 0,
            created_ns: 1,
            last_seen_ns: seen.map_or(1, |s| s * S),
            seq_delta: 0,
            ack_delta: 0,
            tsval_delta: 0,
            tsecr_delta: 0,
            wscale_in: 0,
            wscale_out: 0,
            direction: dir as u8,
            flags: 0,
            state: 0,
            client_sid_len: 0,
            has_offered_key_name: 0,
            _pad: 0,
            client_sid_prefix: [0; 8],
            offered_key_name: [0; 16],
            next_hop: Default::default(),
            flight_start: 0,
            seen_tick: 0,
        };
        (flow(FlowDirection::ToBackend, to_backend_seen), flow(FlowDirection::ToClient, to_client_seen))
    }

    #[test]
    fn an_active_connection_stays() {
        let (b, c) = pair(Some(100), Some(100));
        assert!(!flow_expired(&b, Some(&c), 200 * S, &timeouts()));
        assert!(!flow_expired(&c, Some(&b), 200 * S, &timeouts()));
    }

    #[test]
    fn idle_means_both_directions_quiet_past_idle() {
        let (b, c) = pair(Some(100), Some(100));
        assert!(flow_expired(&b, Some(&c), 1001 * S, &timeouts()));
        // One direction still talking keeps the connection.
        let (b, c) = pair(Some(100), Some(950));
        assert!(!flow_expired(&b, Some(&c), 1001 * S, &timeouts()));
    }

    #[test]
    fn a_backend_that_never_answered_goes_after_half_open() {
        let (b, c) = pair(Some(5), None);
        assert!(!flow_expired(&b, Some(&c), 20 * S, &timeouts()));
        assert!(flow_expired(&b, Some(&c), 40 * S, &timeouts()));
        assert!(flow_expired(&c, Some(&b), 40 * S, &timeouts()), "judged the same from either entry");
        // A client still retrying its SYN keeps it (its retransmissions refresh the entry).
        let (b, c) = pair(Some(35), None);
        assert!(!flow_expired(&b, Some(&c), 40 * S, &timeouts()));
    }

    #[test]
    fn after_a_fin_the_closing_timeout_applies() {
        let (mut b, c) = pair(Some(100), Some(100));
        b.flags |= flow_flags::FIN;
        assert!(!flow_expired(&b, Some(&c), 105 * S, &timeouts()));
        assert!(flow_expired(&b, Some(&c), 111 * S, &timeouts()));
        assert!(flow_expired(&c, Some(&b), 111 * S, &timeouts()), "the FIN counts for the other direction too");
    }

    #[test]
    fn an_orphan_goes_after_closing() {
        let (b, _) = pair(Some(100), Some(100));
        assert!(!flow_expired(&b, None, 105 * S, &timeouts()));
        assert!(flow_expired(&b, None, 111 * S, &timeouts()));
    }
}
