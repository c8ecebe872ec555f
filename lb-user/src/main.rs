use std::process::ExitCode;

use clap::Parser as _;
use lb_user::{
    cli::{Cli, Command},
    config::Config,
    daemon, pins, stats,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run { config, instance } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(daemon::run(&config, &instance))),
        Command::CheckConfig { files } => check_config(&files),
        Command::Status { config, instance } => status(&config, &instance),
        Command::Sessions { config, instance, action } => lb_user::sessions_cli::run(&config, &instance, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    for file in files {
        match Config::load(file) {
            Ok(c) => println!("{}: ok ({} VIPs, {} farms)", file.display(), c.vips.len(), c.farms.len()),
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} config files invalid", files.len());
    }
    Ok(())
}

fn status(config: &std::path::Path, instance: &str) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let dir = pins::instance_dir(&config.daemon.pin_path, instance);
    let counters = stats::read_pinned(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read counters of instance `{instance}` at {}: {e}; is the daemon running?",
            dir.display()
        )
    })?;
    let flows = stats::read_pinned_flows(&dir).map_err(|e| anyhow::anyhow!("cannot read the flow table: {e}"))?;
    println!("instance {instance} (pins at {})", dir.display());
    println!("flow table: {} entries (two per connection)", flows.len());
    for vip in &config.vips {
        let protocol = match vip.protocol {
            lb_user::config::VipProtocol::Tls => "tls",
            lb_user::config::VipProtocol::Tcp => "tcp",
        };
        println!("vip {}: {}:{} {protocol} -> farm {}", vip.name, vip.address, vip.port, config.farms[vip.farm].name);
    }
    println!("{:<24} {:>14}", "reason", "packets");
    for (reason, packets) in counters.named() {
        println!("{reason:<24} {packets:>14}");
    }
    Ok(())
}
