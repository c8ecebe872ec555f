//! Command-line interface of `tether`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tether", version, about = "XDP load balancer that keeps TLS sessions on their backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the data path, attach it to the configured interfaces and serve until
    /// SIGINT or SIGTERM. Needs root.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Names this daemon's pin directory (`{pin_path}/{instance}`), so several
        /// instances can run on one host.
        #[arg(long, default_value = "default")]
        instance: String,
    },
    /// Validate configuration files; exits non-zero and lists every problem if
    /// one is invalid.
    CheckConfig {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show a running daemon's farms, backends (state, health, connections),
    /// VIPs and packet counters, asked over its control socket.
    Status {
        #[arg(long, short, value_name = "FILE", default_value = "/etc/tether.toml")]
        config: PathBuf,
    },
    /// Change a backend's state in a running daemon: `drain` (persisted
    /// clients and open connections stay, no new clients), `disable`
    /// (nothing new; open connections run to their end), `enable`.
    Backend {
        #[arg(long, short, value_name = "FILE", default_value = "/etc/tether.toml")]
        config: PathBuf,
        action: BackendAction,
        farm: String,
        backend: String,
    },
    /// Make a running daemon read its configuration file again (as SIGHUP
    /// does): backends, farms and VIPs change without dropping connections
    /// or learned sessions. An invalid file is refused with its errors and
    /// the running configuration stays.
    Reload {
        #[arg(long, short, value_name = "FILE", default_value = "/etc/tether.toml")]
        config: PathBuf,
    },
    /// Inspect and edit a running daemon's persistence table (learned TLS
    /// sessions, tickets, key names, server names, client addresses).
    Sessions {
        #[arg(long, short, value_name = "FILE", default_value = "/etc/tether.toml")]
        config: PathBuf,
        #[arg(long, default_value = "default")]
        instance: String,
        #[command(subcommand)]
        action: SessionsAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendAction {
    Drain,
    Enable,
    Disable,
}

impl BackendAction {
    /// The state the action puts a backend in, as the config spells it.
    pub fn state(self) -> &'static str {
        match self {
            BackendAction::Drain => "draining",
            BackendAction::Enable => "active",
            BackendAction::Disable => "disabled",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// List entries, newest use first, a page at a time.
    List {
        /// Only this farm's entries.
        #[arg(long)]
        farm: Option<String>,
        /// Only entries of this kind (session-id, ticket, ticket-key, sni, source-ip).
        #[arg(long)]
        kind: Option<String>,
        /// Page to show, from 1.
        #[arg(long, default_value_t = 1)]
        page: usize,
        #[arg(long, default_value_t = 50)]
        page_size: usize,
    },
    /// Show the entry for one key, if there is one.
    Lookup {
        #[arg(long)]
        farm: String,
        #[arg(long)]
        kind: String,
        /// Hex bytes for session-id, ticket and ticket-key; the server name
        /// for sni; the client address for source-ip.
        #[arg(long)]
        key: String,
    },
    /// Remove one farm's entries, of one kind, or one entry (with --kind and --key).
    Flush {
        #[arg(long)]
        farm: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, requires = "kind")]
        key: Option<String>,
    },
    /// Table fill, the oldest entry, and per farm and kind: lookups, hits,
    /// misses, learns, expiries, evictions.
    Stats,
}
