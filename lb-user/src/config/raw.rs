//! The TOML file as written, before validation. Every table denies unknown keys,
//! and values that validation must point at keep their byte span.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub daemon: RawDaemon,
    #[serde(default)]
    pub vip: Vec<Spanned<RawVip>>,
    #[serde(default)]
    pub farm: Vec<Spanned<RawFarm>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    pub xdp_mode: Option<XdpMode>,
    pub pin_path: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub snat_ports: Option<Spanned<String>>,
    pub timeouts: Option<Spanned<RawTimeouts>>,
}

/// Data-path timers the daemon enforces (DESIGN.md §4, sweeper).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Spanned<String>>,
    pub idle: Option<Spanned<String>>,
    pub half_open: Option<Spanned<String>>,
    pub closing: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: Spanned<u16>,
    #[serde(default)]
    pub protocol: VipProtocol,
    pub farm: Spanned<String>,
    pub snat: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFarm {
    pub name: Spanned<String>,
    pub algorithm: Option<Spanned<Algorithm>>,
    pub persistence: Option<Spanned<Vec<Spanned<PersistenceKind>>>>,
    pub session_timeout: Option<Spanned<String>>,
    pub session_capacity: Option<Spanned<u64>>,
    /// `source-ip`: prefix lengths of client addresses that share a backend.
    pub source_prefix_v4: Option<Spanned<u8>>,
    pub source_prefix_v6: Option<Spanned<u8>>,
    #[serde(default)]
    pub on_backend_failure: OnBackendFailure,
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub backend: Vec<Spanned<RawBackend>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: HealthKind,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    /// Server name sent by the `tls` check; none by default.
    pub sni: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
    #[serde(default)]
    pub state: BackendState,
    /// `session-id-prefix`: the bytes this backend starts its session IDs with.
    pub session_id_prefix: Option<Spanned<String>>,
}

// The closed sets below are plain serde enums: an unknown word is rejected by
// the parser with its position and the list of valid words.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    Native,
    Generic,
    /// Native, else generic with a warning.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VipProtocol {
    #[default]
    Tls,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    Random,
    Maglev,
}

impl Algorithm {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::WeightedRoundRobin => "weighted-round-robin",
            Algorithm::LeastConnections => "least-connections",
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistenceKind {
    SessionId,
    Ticket,
    TicketKey,
    SessionIdPrefix,
    Sni,
    SourceIp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBackendFailure {
    #[default]
    Rebalance,
    Reset,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthKind {
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendState {
    #[default]
    Active,
    Draining,
    Disabled,
}
