//! Configuration: the TOML file users write, validated into a typed [`Config`].
//!
//! Parsing (serde, unknown keys denied) and validation are separate passes. Every
//! error names the file, line, column and key, and says what would be valid.
//! Validation reports every problem it finds, not just the first.

mod raw;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

pub use raw::{Algorithm, BackendState, HealthKind, OnBackendFailure, PersistenceKind, VipProtocol, XdpMode};
use raw::{RawBackend, RawConfig, RawDaemon, RawFarm, RawHealth, RawTimeouts, RawVip};
use toml::Spanned;

pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/tether";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/tether.sock";
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_SESSION_CAPACITY: u32 = 100_000;
/// The longest `session_id_prefix`: half a session ID, so that the rest
/// stays random.
pub const MAX_SESSION_ID_PREFIX: usize = 16;
/// Upper bound for one farm's session table: 16 Mi entries is ~1.5 GiB of LRU map.
pub const MAX_SESSION_CAPACITY: u64 = 16 * 1024 * 1024;
pub const MAX_WEIGHT: u32 = 65_535;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(900);
pub const DEFAULT_HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CLOSING_TIMEOUT: Duration = Duration::from_secs(10);
/// Source ports towards backends. Below 10000 stays free for the daemon's own
/// connections from the same address (neighbour warm-up, health checks).
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (10_000, 65_535);
/// Limits of the data path's maps (`lb_common::maps`).
pub const MAX_FARMS: usize = lb_common::maps::MAX_FARMS as usize;
pub const MAX_BACKENDS: usize = lb_common::maps::MAX_BACKENDS as usize;
pub const MAX_VIPS: usize = lb_common::maps::MAX_VIPS as usize;

/// A validated configuration. Cross-references are indices (`Vip::farm`), so the
/// data path never looks a name up.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: Daemon,
    pub vips: Vec<Vip>,
    pub farms: Vec<Farm>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pin_path: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub control_socket: PathBuf,
    /// Source ports the data path may use towards backends, inclusive.
    pub snat_ports: (u16, u16),
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// For `tls` VIPs: a backend that has not answered tether's SYN by then,
    /// and the client gets an RST. Not acted on until delayed binding exists.
    pub connect: Duration,
    /// An established flow with no packet for this long is forgotten.
    pub idle: Duration,
    /// A flow still in its handshake (either leg) for this long is forgotten.
    pub half_open: Duration,
    /// A flow that has seen a FIN is forgotten after this long without packets.
    pub closing: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vip {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: VipProtocol,
    /// Index into `Config::farms`.
    pub farm: usize,
    pub snat: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Farm {
    pub name: String,
    pub algorithm: Algorithm,
    pub persistence: Vec<PersistenceKind>,
    pub session_timeout: Duration,
    pub session_capacity: u32,
    /// `source-ip`: how many leading bits of a client address share a backend.
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    pub on_backend_failure: OnBackendFailure,
    pub health: Option<HealthCheck>,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub sni: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    /// `session-id-prefix`: the bytes the backend starts its session IDs with
    /// (OpenSSL's `SSL_CTX_set_generate_session_id`, `s_server -id_prefix`).
    pub session_id_prefix: Option<Vec<u8>>,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted TOML path of the offending key, e.g. `vip[0].farm`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.path.display(), self.line, self.column, self.key, self.message)
    }
}

/// Everything wrong with one file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render(.0))]
    Invalid(Vec<ConfigError>),
}

fn render(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        Config::parse(path, &text).map_err(LoadError::Invalid)
    }

    /// Parses and validates `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
        let source = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| vec![source.parse_error(&e)])?;
        let mut v = Validator { source, errors: Vec::new() };
        let config = v.config(raw);
        if v.errors.is_empty() { Ok(config) } else { Err(v.errors) }
    }
}

/// The file being validated, for turning byte spans into positions.
#[derive(Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError { path: self.path.to_owned(), line, column, key: key.into(), message: message.into() }
    }

    /// A serde/TOML error: the parser knows where, not always which key, so the key
    /// is recovered from the line (`key = value`) or the message (`missing field`).
    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().to_owned();
        let key = key_from_message(&message).unwrap_or_else(|| key_on_line(self.text, span.start));
        self.error(span, key, message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The key named in a serde message such as "missing field `port`".
fn key_from_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("unknown field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

/// The `key` of the `key = value` line holding `offset`, or the table header.
fn key_on_line(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[start..end].trim();
    match line.split_once('=') {
        Some((key, _)) => key.trim().to_owned(),
        None => line.to_owned(),
    }
}

struct Validator<'a> {
    source: Source<'a>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let e = self.source.error(span, key, message);
        self.errors.push(e);
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let daemon = self.daemon(raw.daemon);
        let farms: Vec<Farm> = raw.farm.iter().enumerate().map(|(i, f)| self.farm(i, f)).collect();
        self.unique_names("farm", raw.farm.iter().map(|f| &f.get_ref().name));
        let farm_index: HashMap<&str, usize> = farms.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect();
        let vips: Vec<(usize, Vip)> =
            raw.vip.iter().enumerate().filter_map(|(i, v)| Some((i, self.vip(i, v, &farm_index, &farms)?))).collect();
        self.unique_names("vip", raw.vip.iter().map(|v| &v.get_ref().name));
        self.unique_listeners(&raw.vip, &vips);
        self.within_map_limits(&raw.farm, &raw.vip, &farms);
        Config { daemon, vips: vips.into_iter().map(|(_, v)| v).collect(), farms }
    }

    /// The data path's maps have fixed sizes; say so here rather than at load.
    fn within_map_limits(&mut self, raw_farms: &[Spanned<RawFarm>], raw_vips: &[Spanned<RawVip>], farms: &[Farm]) {
        if raw_farms.len() > MAX_FARMS {
            self.err(
                raw_farms[MAX_FARMS].span(),
                format!("farm[{MAX_FARMS}]"),
                format!("at most {MAX_FARMS} farms are supported"),
            );
        }
        if raw_vips.len() > MAX_VIPS {
            self.err(
                raw_vips[MAX_VIPS].span(),
                format!("vip[{MAX_VIPS}]"),
                format!("at most {MAX_VIPS} VIPs are supported"),
            );
        }
        let backends: usize = farms.iter().map(|f| f.backends.len()).sum();
        if backends > MAX_BACKENDS {
            let last = raw_farms.last().map_or(0..0, Spanned::span);
            self.err(last, "farm.backend", format!("{backends} backends in all; at most {MAX_BACKENDS} are supported"));
        }
    }

    fn daemon(&mut self, raw: RawDaemon) -> Daemon {
        let mut interfaces = Vec::new();
        let mut seen = HashSet::new();
        if raw.interfaces.get_ref().is_empty() {
            self.err(raw.interfaces.span(), "daemon.interfaces", "list at least one interface to attach to");
        }
        for (i, name) in raw.interfaces.get_ref().iter().enumerate() {
            let key = format!("daemon.interfaces[{i}]");
            if let Err(why) = check_ifname(name.get_ref()) {
                self.err(name.span(), key, why);
            } else if !seen.insert(name.get_ref().clone()) {
                self.err(name.span(), key, format!("interface `{}` is listed twice", name.get_ref()));
            } else {
                interfaces.push(name.get_ref().clone());
            }
        }
        let pin_path = self.absolute_path(raw.pin_path.as_ref(), "daemon.pin_path", DEFAULT_PIN_PATH);
        let control_socket =
            self.absolute_path(raw.control_socket.as_ref(), "daemon.control_socket", DEFAULT_CONTROL_SOCKET);
        let metrics = raw.metrics.as_ref().and_then(|m| match m.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.err(
                    m.span(),
                    "daemon.metrics",
                    format!(
                        "`{}` is not an address and port; write e.g. \"127.0.0.1:9901\" or \"[::1]:9901\"",
                        m.get_ref()
                    ),
                );
                None
            }
        });
        let timeouts = self.timeouts(raw.timeouts.as_ref());
        let snat_ports = match &raw.snat_ports {
            None => DEFAULT_SNAT_PORTS,
            Some(r) => parse_port_range(r.get_ref()).unwrap_or_else(|why| {
                self.err(r.span(), "daemon.snat_ports", why);
                DEFAULT_SNAT_PORTS
            }),
        };
        Daemon {
            interfaces,
            xdp_mode: raw.xdp_mode.unwrap_or_default(),
            pin_path,
            metrics,
            control_socket,
            snat_ports,
            timeouts,
        }
    }

    fn timeouts(&mut self, raw: Option<&Spanned<RawTimeouts>>) -> Timeouts {
        let t = raw.map(Spanned::get_ref);
        Timeouts {
            connect: self.duration(
                t.and_then(|t| t.connect.as_ref()),
                "daemon.timeouts.connect",
                DEFAULT_CONNECT_TIMEOUT,
            ),
            idle: self.duration(t.and_then(|t| t.idle.as_ref()), "daemon.timeouts.idle", DEFAULT_IDLE_TIMEOUT),
            half_open: self.duration(
                t.and_then(|t| t.half_open.as_ref()),
                "daemon.timeouts.half_open",
                DEFAULT_HALF_OPEN_TIMEOUT,
            ),
            closing: self.duration(
                t.and_then(|t| t.closing.as_ref()),
                "daemon.timeouts.closing",
                DEFAULT_CLOSING_TIMEOUT,
            ),
        }
    }

    fn absolute_path(&mut self, raw: Option<&Spanned<String>>, key: &str, default: &str) -> PathBuf {
        let Some(raw) = raw else { return PathBuf::from(default) };
        let path = PathBuf::from(raw.get_ref());
        if !path.is_absolute() {
            self.err(raw.span(), key, format!("`{}` is not an absolute path", raw.get_ref()));
        }
        path
    }

    /// A positive duration such as "300s", "1500ms", "5m" or "1h".
    fn duration(&mut self, raw: Option<&Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match parse_duration(raw.get_ref()) {
            Ok(d) => d,
            Err(why) => {
                self.err(raw.span(), key, why);
                default
            }
        }
    }

    fn vip(
        &mut self,
        i: usize,
        raw: &Spanned<RawVip>,
        farm_index: &HashMap<&str, usize>,
        farms: &[Farm],
    ) -> Option<Vip> {
        let v = raw.get_ref();
        let key = |field: &str| format!("vip[{i}].{field}");
        self.check_name(&v.name, &key("name"));
        let address = self.ip(&v.address, &key("address"));
        let snat = self.ip(&v.snat, &key("snat"));
        if *v.port.get_ref() == 0 {
            self.err(v.port.span(), key("port"), "port 0 is not a port clients can reach; use 1-65535");
        }
        let farm = match farm_index.get(v.farm.get_ref().as_str()) {
            Some(&i) => Some(i),
            None => {
                let known: Vec<&str> = farms.iter().map(|f| f.name.as_str()).collect();
                self.err(
                    v.farm.span(),
                    key("farm"),
                    format!(
                        "farm `{}` is not defined; defined farms: {}",
                        v.farm.get_ref(),
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                );
                None
            }
        };
        let (address, snat, farm) = (address?, snat?, farm?);
        if address.is_ipv4() != snat.is_ipv4() {
            self.err(
                v.snat.span(),
                key("snat"),
                format!(
                    "snat {snat} and the VIP address {address} are of different families; use an {} address",
                    family_name(address)
                ),
            );
            return None;
        }
        for b in farms[farm].backends.iter().filter(|b| b.address.is_ipv4() != snat.is_ipv4()) {
            self.err(
                v.snat.span(),
                key("snat"),
                format!(
                    "backend `{}` of farm `{}` ({}) cannot be reached from the {} snat {snat}",
                    b.name,
                    farms[farm].name,
                    b.address,
                    family_name(snat)
                ),
            );
        }
        Some(Vip { name: v.name.get_ref().clone(), address, port: *v.port.get_ref(), protocol: v.protocol, farm, snat })
    }

    fn ip(&mut self, raw: &Spanned<String>, key: &str) -> Option<IpAddr> {
        match raw.get_ref().parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                self.err(raw.span(), key, format!("{ip} cannot be used here; give a unicast address"));
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    raw.span(),
                    key,
                    format!(
                        "`{}` is not an IP address; write e.g. \"198.18.100.100\" or \"2001:db8::1\"",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// Two VIPs cannot listen on the same address and port.
    fn unique_listeners(&mut self, raw: &[Spanned<RawVip>], vips: &[(usize, Vip)]) {
        let mut seen: HashMap<(IpAddr, u16), &str> = HashMap::new();
        for (i, v) in vips {
            if let Some(first) = seen.insert((v.address, v.port), &v.name) {
                self.err(
                    raw[*i].get_ref().address.span(),
                    format!("vip[{i}].address"),
                    format!(
                        "VIP `{}` listens on {} port {} like VIP `{first}`; each address and port serves one VIP",
                        v.name, v.address, v.port
                    ),
                );
            }
        }
    }

    fn farm(&mut self, i: usize, raw: &Spanned<RawFarm>) -> Farm {
        let f = raw.get_ref();
        let key = |field: &str| format!("farm[{i}].{field}");
        self.check_name(&f.name, &key("name"));
        let persistence = self.persistence(f.persistence.as_ref(), &key("persistence"));
        let algorithm = f.algorithm.as_ref().map_or(Algorithm::default(), |a| *a.get_ref());
        let session_timeout =
            self.duration(f.session_timeout.as_ref(), &key("session_timeout"), DEFAULT_SESSION_TIMEOUT);
        let session_capacity = match &f.session_capacity {
            None => DEFAULT_SESSION_CAPACITY,
            Some(c) if (1..=MAX_SESSION_CAPACITY).contains(c.get_ref()) => *c.get_ref() as u32,
            Some(c) => {
                self.err(
                    c.span(),
                    key("session_capacity"),
                    format!("{} is out of range; give 1 to {MAX_SESSION_CAPACITY} entries", c.get_ref()),
                );
                DEFAULT_SESSION_CAPACITY
            }
        };
        let source_prefix_v4 = self.prefix_len(f.source_prefix_v4.as_ref(), &key("source_prefix_v4"), 32);
        let source_prefix_v6 = self.prefix_len(f.source_prefix_v6.as_ref(), &key("source_prefix_v6"), 128);
        let health = f.health.as_ref().map(|h| self.health(h, &key("health")));
        if f.backend.is_empty() {
            self.err(
                f.name.span(),
                key("backend"),
                format!("farm `{}` has no backends; add at least one [[farm.backend]]", f.name.get_ref()),
            );
        }
        let backends: Vec<Backend> =
            f.backend.iter().enumerate().map(|(j, b)| self.backend(&key(&format!("backend[{j}]")), b)).collect();
        self.unique_names(&key("backend"), f.backend.iter().map(|b| &b.get_ref().name));
        let mut addresses = HashMap::new();
        for (j, b) in backends.iter().enumerate() {
            if let Some(first) = addresses.insert(b.address, &b.name) {
                self.err(
                    f.backend[j].get_ref().address.span(),
                    key(&format!("backend[{j}].address")),
                    format!("backend `{}` has the same address {} as backend `{first}`", b.name, b.address),
                );
            }
        }
        if !backends.is_empty() && backends.iter().map(|b| u64::from(b.weight)).sum::<u64>() == 0 {
            self.err(f.name.span(), key("backend"), format!(
                "the weights of farm `{}` add up to 0, so no backend could be chosen; give one a weight of 1 or more",
                f.name.get_ref()
            ));
        }
        self.session_id_prefixes(f, &persistence, &backends, &key);
        Farm {
            name: f.name.get_ref().clone(),
            algorithm,
            persistence,
            session_timeout,
            session_capacity,
            source_prefix_v4,
            source_prefix_v6,
            on_backend_failure: f.on_backend_failure,
            health,
            backends,
        }
    }

    fn persistence(&mut self, raw: Option<&Spanned<Vec<Spanned<PersistenceKind>>>>, key: &str) -> Vec<PersistenceKind> {
        let Some(raw) = raw else { return default_persistence() };
        let mut kinds = Vec::new();
        for (i, kind) in raw.get_ref().iter().enumerate() {
            if kinds.contains(kind.get_ref()) {
                self.err(
                    kind.span(),
                    format!("{key}[{i}]"),
                    format!("`{}` is listed twice", persistence_name(*kind.get_ref())),
                );
            } else {
                kinds.push(*kind.get_ref());
            }
        }
        kinds
    }

    fn health(&mut self, raw: &Spanned<RawHealth>, key: &str) -> HealthCheck {
        let h = raw.get_ref();
        let interval = self.duration(h.interval.as_ref(), &format!("{key}.interval"), Duration::from_secs(2));
        let timeout = self.duration(h.timeout.as_ref(), &format!("{key}.timeout"), Duration::from_secs(1));
        if timeout > interval {
            let span = h.timeout.as_ref().map_or(raw.span(), Spanned::span);
            self.err(
                span,
                format!("{key}.timeout"),
                format!("timeout {timeout:?} is longer than the interval {interval:?}; checks would overlap"),
            );
        }
        let mut count = |raw: Option<&Spanned<u32>>, field: &str, default: u32| match raw {
            None => default,
            Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.err(n.span(), format!("{key}.{field}"), format!("{} is out of range; give 1 to 100", n.get_ref()));
                default
            }
        };
        let rise = count(h.rise.as_ref(), "rise", 2);
        let fall = count(h.fall.as_ref(), "fall", 3);
        HealthCheck { kind: h.kind, interval, timeout, rise, fall, sni: h.sni.as_ref().map(|s| s.get_ref().clone()) }
    }

    fn backend(&mut self, key: &str, raw: &Spanned<RawBackend>) -> Backend {
        let b = raw.get_ref();
        self.check_name(&b.name, &format!("{key}.name"));
        let address = match b.address.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.err(b.address.span(), format!("{key}.address"), "port 0 is not a port; use 1-65535");
                a
            }
            Ok(a) if a.ip().is_unspecified() || a.ip().is_multicast() => {
                self.err(b.address.span(), format!("{key}.address"), format!("{} is not a unicast address", a.ip()));
                a
            }
            Ok(a) => a,
            Err(_) => {
                self.err(
                    b.address.span(),
                    format!("{key}.address"),
                    format!(
                        "`{}` is not an address and port; write e.g. \"198.19.0.11:443\" or \"[2001:db8::11]:443\"",
                        b.address.get_ref()
                    ),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        };
        let weight = match &b.weight {
            None => 1,
            Some(w) if *w.get_ref() <= MAX_WEIGHT => *w.get_ref(),
            Some(w) => {
                self.err(
                    w.span(),
                    format!("{key}.weight"),
                    format!("{} is too large; give 0 to {MAX_WEIGHT}", w.get_ref()),
                );
                1
            }
        };
        let session_id_prefix = b.session_id_prefix.as_ref().map(|p| p.get_ref().as_bytes().to_vec());
        Backend { name: b.name.get_ref().clone(), address, weight, state: b.state, session_id_prefix }
    }

    /// A prefix length for `source-ip`, at most `max` (the address's bits).
    fn prefix_len(&mut self, raw: Option<&Spanned<u8>>, key: &str, max: u8) -> u8 {
        match raw {
            None => max,
            Some(p) if *p.get_ref() <= max => *p.get_ref(),
            Some(p) => {
                self.err(p.span(), key, format!("/{} is longer than the address; give 0 to {max}", p.get_ref()));
                max
            }
        }
    }

    /// `session-id-prefix` reads a fixed number of leading bytes, so every
    /// prefix of a farm has the same length, none is shared, and a farm that
    /// uses the kind gives at least one.
    fn session_id_prefixes(
        &mut self,
        f: &RawFarm,
        persistence: &[PersistenceKind],
        backends: &[Backend],
        key: &dyn Fn(&str) -> String,
    ) {
        let mut first: Option<(&[u8], &str)> = None;
        for (j, (raw, b)) in f.backend.iter().zip(backends).enumerate() {
            let (Some(span), Some(prefix)) = (&raw.get_ref().session_id_prefix, &b.session_id_prefix) else { continue };
            let at = key(&format!("backend[{j}].session_id_prefix"));
            if prefix.is_empty() || prefix.len() > MAX_SESSION_ID_PREFIX {
                self.err(span.span(), at, format!("give 1 to {MAX_SESSION_ID_PREFIX} bytes"));
            } else if let Some((other, name)) = first {
                if other.len() != prefix.len() {
                    self.err(
                        span.span(),
                        at,
                        format!(
                            "{} bytes, but backend `{name}` has {}; the prefixes of a farm have one length",
                            prefix.len(),
                            other.len()
                        ),
                    );
                } else if other == prefix.as_slice() {
                    self.err(span.span(), at, format!("backend `{name}` has the same prefix"));
                }
            } else {
                first = Some((prefix, &b.name));
            }
        }
        if first.is_none() && persistence.contains(&PersistenceKind::SessionIdPrefix) {
            self.err(
                f.name.span(),
                key("persistence"),
                format!(
                    "farm `{}` uses `session-id-prefix`, but none of its backends has a `session_id_prefix`",
                    f.name.get_ref()
                ),
            );
        }
    }

    /// Names appear in logs, metrics labels and CLI arguments.
    fn check_name(&mut self, name: &Spanned<String>, key: &str) {
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.err(name.span(), key, format!("`{n}` is not a valid name; use 1-64 letters, digits, '-', '_' or '.'"));
        }
    }

    fn unique_names<'n>(&mut self, what: &str, names: impl Iterator<Item = &'n Spanned<String>>) {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            if !seen.insert(name.get_ref().as_str()) {
                self.err(
                    name.span(),
                    format!("{what}[{i}].name"),
                    format!("the name `{}` is used twice; {what} names must be unique", name.get_ref()),
                );
            }
        }
    }
}

/// The persistence kinds a farm uses when it names none: those learned from
/// the backends' handshakes, which need no configuration.
pub fn default_persistence() -> Vec<PersistenceKind> {
    vec![PersistenceKind::SessionId, PersistenceKind::Ticket, PersistenceKind::TicketKey]
}

fn persistence_name(kind: PersistenceKind) -> &'static str {
    match kind {
        PersistenceKind::SessionId => "session-id",
        PersistenceKind::Ticket => "ticket",
        PersistenceKind::TicketKey => "ticket-key",
        PersistenceKind::SessionIdPrefix => "session-id-prefix",
        PersistenceKind::Sni => "sni",
        PersistenceKind::SourceIp => "source-ip",
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Linux interface names: 1-15 bytes, no '/', ':' or white space (IFNAMSIZ - 1).
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{name}` is not an interface name; Linux names are 1-15 characters without '/', ':' or spaces"
        ));
    }
    Ok(())
}

/// "10000-65535": an inclusive range of ports, 1-65535, low end first.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{text}` is not a port range; write e.g. \"10000-65535\" (1-65535, low end first)");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// "300s", "1500ms", "5m", "1h": a whole number and a unit, greater than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("`{text}` is not a duration; write a whole number and a unit: \"500ms\", \"30s\", \"5m\", \"1h\"");
    let digits = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("`{text}` is zero; give a positive duration"));
    }
    if d > Duration::from_secs(u64::from(u32::MAX)) {
        return Err(format!("`{text}` is too long; the most is {} seconds", u32::MAX));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
