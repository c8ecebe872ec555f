use std::process::ExitCode;

use clap::Parser as _;
use lb_user::{
    cli::{BackendAction, Cli, Command},
    config::Config,
    control::{self, Reply, Request},
    daemon,
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
        Command::Status { config } => status(&config),
        Command::Backend { config, action, farm, backend } => self::backend(&config, action, farm, backend),
        Command::Reload { config } => reload(&config),
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

/// Sends `request` to the daemon `config` names; its reply, or its error.
fn ask(config: &std::path::Path, request: &Request) -> anyhow::Result<Reply> {
    let config = Config::load(config)?;
    let reply = control::request(&config.daemon.control_socket, request)?;
    if let Reply::Error { message } = &reply {
        anyhow::bail!("{message}");
    }
    Ok(reply)
}

fn status(config: &std::path::Path) -> anyhow::Result<()> {
    let Reply::Status(s) = ask(config, &Request::Status)? else { anyhow::bail!("the daemon did not send its status") };
    println!("instance {} (config {}, pins at {})", s.instance, s.config, s.pin_dir);
    println!("flow table: {} entries (two per connection)", s.flow_entries);
    for vip in &s.vips {
        println!("vip {}: {}:{} {} -> farm {}", vip.name, vip.address, vip.port, vip.protocol, vip.farm);
    }
    for farm in &s.farms {
        let check = farm.health_check.as_deref().unwrap_or("none");
        println!("farm {}: {}, health check {check}", farm.name, farm.algorithm);
        println!(
            "  {:<16} {:<24} {:>6} {:<9} {:<6} {:<4} {:>10} {:>12}",
            "backend", "address", "weight", "state", "health", "new", "active", "connections"
        );
        for b in &farm.backends {
            println!(
                "  {:<16} {:<24} {:>6} {:<9} {:<6} {:<4} {:>10} {:>12}",
                b.name,
                b.address,
                b.weight,
                b.state,
                b.health,
                if b.takes_new { "yes" } else { "no" },
                b.active_flows,
                b.new_flows
            );
        }
    }
    println!("{:<24} {:>14}", "reason", "packets");
    for (reason, packets) in &s.counters {
        println!("{reason:<24} {packets:>14}");
    }
    Ok(())
}

fn reload(config: &std::path::Path) -> anyhow::Result<()> {
    // Checked here first: an invalid file names no socket to ask, and the
    // daemon would refuse it all the same.
    if let Err(e) = Config::load(config) {
        anyhow::bail!("{e}\nnot reloaded: the running configuration stays");
    }
    if let Reply::Done { message } = ask(config, &Request::Reload)? {
        println!("{message}");
    }
    Ok(())
}

fn backend(config: &std::path::Path, action: BackendAction, farm: String, backend: String) -> anyhow::Result<()> {
    let request = Request::SetBackendState { farm, backend, state: action.state().to_owned() };
    if let Reply::Done { message } = ask(config, &request)? {
        println!("{message}");
    }
    Ok(())
}
