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
    /// Show a running daemon's packet counters.
    Status {
        #[arg(long, short, value_name = "FILE", default_value = "/etc/tether.toml")]
        config: PathBuf,
        #[arg(long, default_value = "default")]
        instance: String,
    },
}
