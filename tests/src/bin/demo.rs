//! `cargo xtask demo`: tether in network namespaces with real backends.
//!
//! Builds the two-armed topology (six clients; three backends, each running
//! a TLS server on 443 — two rustls, one `openssl s_server` — and a TCP echo
//! service on 7), starts the daemon on the balancer and shows:
//! - clients using the `tcp` VIP: balanced by Maglev on the client address,
//!   fully NATed in XDP (the backend sees the SNAT address), data echoed intact;
//! - the host's own traffic still flowing through the attached program;
//! - the TLS VIP: SYN cookies from XDP, the backend chosen (round-robin) on
//!   the ClientHello, the two TCP legs spliced; rustls, `openssl s_client`
//!   and curl clients each get an answer naming its backend;
//! - TLS 1.2 session persistence: one client opens three sessions (spread
//!   over the backends by round-robin) and resumes them in turn through a
//!   second VIP whose farm persists by session ID (`openssl s_server
//!   -no_ticket` backends): every resumption lands on the backend that holds
//!   its session;
//! - TLS 1.3 tickets, whose ServerHellos only echo a random session ID: a
//!   third VIP whose farm persists by ticket key name (`openssl s_server`
//!   backends issuing tickets, each under its own key); tether learns a key
//!   name the first time its backend accepts a ticket, then every offer goes
//!   to the issuing backend;
//! - what `tether sessions list` and `tether status` show.
//!
//! Everything is torn down at the end, also on error.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use lb_common::reason;
use tether_tests::{
    peers::{self, BackendServer, SessionFile, curl_whoami, openssl_whoami, rustls_whoami},
    tether::{Tether, tether_bin},
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_ADDR, LB_CLIENT_IF, Topology, VIP},
};

const ECHO_VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 100, 101);
/// The VIP port (and backend port) of the farm that persists by session ID.
const RESUME_PORT: u16 = 8443;
/// The VIP port (and backend port) of the farm that persists by TLS 1.3
/// ticket key name.
const TICKET_PORT: u16 = 9443;

fn main() -> anyhow::Result<()> {
    println!("== tether demo ==");
    let topo = Topology::two_armed(6, 3);
    println!("namespaces: {}", topo.namespaces().join(" "));
    for (i, c) in topo.clients.iter().enumerate() {
        println!("client   c{i}  {}  (routes 198.18.100.0/24 and 198.19.0.0/24 via the balancer)", c.addr);
    }
    println!(
        "balancer lb  {LB_CLIENT_IF} {LB_CLIENT_ADDR}/24 (clients), {LB_BACKEND_IF} {LB_BACKEND_ADDR}/24 (backends)"
    );
    let mut servers = Vec::new();
    for (i, b) in topo.backends.iter().enumerate() {
        let name = format!("b{i}");
        let tls = SocketAddr::new(b.addr.into(), 443);
        let echo = SocketAddr::new(b.addr.into(), 7);
        servers.push(if i == 2 {
            BackendServer::openssl(&b.ns, tls, &name)
        } else {
            BackendServer::rustls(&b.ns, tls, &name)
        });
        servers.push(BackendServer::plain_tcp(&b.ns, echo, &name));
        let resume = SocketAddr::new(b.addr.into(), RESUME_PORT);
        servers.push(BackendServer::openssl_with(&b.ns, resume, &name, &["-no_ticket"]));
        servers.push(BackendServer::openssl(&b.ns, SocketAddr::new(b.addr.into(), TICKET_PORT), &name));
        let kind = if i == 2 { "openssl s_server" } else { "rustls" };
        println!(
            "backend  {name}  {}  TLS :443 ({kind}), TCP echo :7, TLS :{RESUME_PORT} (openssl s_server, session IDs only)",
            b.addr
        );
    }

    let config = demo_config(&topo);
    let tether = Tether::start(&topo.lb, &config);
    println!("\ntether started in lb, config:\n{}", indent(&config));
    for line in
        tether.log().lines().filter(|l| l.contains("attached") || l.contains("serving VIP") || l.contains("maglev"))
    {
        println!("  log: {}", line.split_once("lb_user").map_or(line, |(_, rest)| rest));
    }

    println!("\ntcp VIP {ECHO_VIP}:7, 3 connections per client, 64 KiB echoed on each (Maglev on the client address):");
    for (i, client) in topo.clients.iter().enumerate() {
        let mut answers = Vec::new();
        for n in 0..3 {
            let payload: Vec<u8> = (0..65_536u32).map(|x| (x * 7 + n + i as u32) as u8).collect();
            answers.push(match client.ns.enter(|| echo(SocketAddr::new(ECHO_VIP.into(), 7), &payload)) {
                Ok((backend, seen)) => format!("{backend} (saw {seen}, echo intact)"),
                Err(e) => format!("FAILED: {e:#}"),
            });
        }
        println!("  c{i} {} -> {}", client.addr, answers.join(", "));
    }
    println!("  flow-table entries now: {} (connections closed; the sweeper removes them)", tether.flows().len());

    println!("\nhost traffic through the attached XDP program:");
    let ping = topo.clients[0]
        .ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-q", &LB_CLIENT_ADDR.to_string()])
        .output()?;
    println!("  ping {LB_CLIENT_ADDR}: {}", if ping.status.success() { "ok" } else { "FAILED" });
    for (i, b) in topo.backends.iter().enumerate() {
        let addr = SocketAddr::new(b.addr.into(), 443);
        let answer =
            if i == 2 { openssl_whoami(&topo.clients[0].ns, addr) } else { rustls_whoami(&topo.clients[0].ns, addr) };
        println!("  TLS GET /whoami to {addr} (routed by lb): {}", answer.unwrap_or_else(|e| format!("FAILED: {e:#}")));
    }

    println!(
        "\nTLS VIP {VIP}:443, round-robin: XDP answers each handshake with a SYN cookie, opens the backend \
         connection on the ClientHello, and splices the two TCP legs; TLS passes through untouched:"
    );
    let before = tether.counters();
    let vip = SocketAddr::new(VIP.into(), 443);
    for n in 0..9 {
        let (i, client) = (n % topo.clients.len(), &topo.clients[n % topo.clients.len()]);
        let (tool, answer) = match n % 3 {
            0 => ("rustls", rustls_whoami(&client.ns, vip)),
            1 => ("openssl s_client", openssl_whoami(&client.ns, vip)),
            _ => ("curl", curl_whoami(&client.ns, vip)),
        };
        let answer = answer.map_or_else(|e| format!("FAILED: {e:#}"), |name| format!("answered by {name}"));
        println!("  c{i} {} GET /whoami with {tool:<16} -> {answer}", client.addr);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = tether.counters();
    let delta = |r| after.get(r) - before.get(r);
    println!(
        "  counted: vip_syn {} (cookie SYN-ACKs), cookie_ack {} (handshakes checked), tls_bind {} (backend SYNs \
         from ClientHellos), tc_stash_sent {} (ACK + ClientHello to the backend), fwd_to_backend {}, fwd_to_client {}",
        delta(reason::VIP_SYN),
        delta(reason::COOKIE_ACK),
        delta(reason::TLS_BIND),
        delta(reason::TC_STASH_SENT),
        delta(reason::FWD_TO_BACKEND),
        delta(reason::FWD_TO_CLIENT)
    );

    println!(
        "\nTLS VIP {VIP}:{RESUME_PORT}, round-robin with persistence = [\"session-id\"]: one client (one address) \
         opens three TLS 1.2 sessions, which round-robin spreads over the backends, then offers them again out of order; \
         tether learned each session's backend from its ServerHello and sends each resumption there:"
    );
    let resume_vip = SocketAddr::new(VIP.into(), RESUME_PORT);
    let session_dir = tempfile::tempdir()?;
    let client = &topo.clients[0];
    // Offered out of round-robin's order, so only persistence explains the answers.
    let offers = (0..3).map(|k| (k, SessionFile::Save)).chain([2, 0, 0, 1, 2, 1].map(|k| (k, SessionFile::Offer)));
    for (k, use_session) in offers {
        let session = session_dir.path().join(format!("session{k}.pem"));
        let line = match peers::openssl_session(&client.ns, resume_vip, &["-tls1_2"], &session, use_session) {
            Ok((reused, backend)) => {
                format!("answered by {backend}, {}", if reused { "session resumed" } else { "new session" })
            }
            Err(e) => format!("FAILED: {e:#}"),
        };
        let what = if use_session == SessionFile::Save { "full handshake" } else { "resumption    " };
        println!("  c0 {} session {k}: {what} -> {line}", client.addr);
    }
    println!(
        "  counted: tls_bind_persisted {} (bound by a learned session); learned sessions in the table: {}",
        tether.counters().get(reason::TLS_BIND_PERSISTED),
        tether.sessions().len()
    );

    println!(
        "\nTLS VIP {VIP}:{TICKET_PORT}, round-robin with persistence = [\"ticket-key\"]: the same client opens three \
         TLS 1.3 sessions; each is offered until its backend first accepts it (which teaches tether the backend's \
         ticket key name), then all are offered out of order:"
    );
    let ticket_vip = SocketAddr::new(VIP.into(), TICKET_PORT);
    let ticket_dir = tempfile::tempdir()?;
    let offer = |k: usize, use_session: SessionFile| {
        let session = ticket_dir.path().join(format!("ticket{k}.pem"));
        let result = peers::openssl_session(&client.ns, ticket_vip, &["-tls1_3"], &session, use_session);
        let line = match &result {
            Ok((reused, backend)) => {
                format!("answered by {backend}, {}", if *reused { "session resumed" } else { "new session" })
            }
            Err(e) => format!("FAILED: {e:#}"),
        };
        let what = if use_session == SessionFile::Save { "full handshake" } else { "resumption    " };
        println!("  c0 {} ticket {k}: {what} -> {line}", client.addr);
        result.map(|(reused, _)| reused).unwrap_or(false)
    };
    for k in 0..3 {
        offer(k, SessionFile::Save);
    }
    // Ticket 2 first: round-robin sends its first offers to b0 and b1, which
    // cannot decrypt it (a full handshake), until b2 accepts it.
    for k in [2, 0, 1] {
        // Round-robin reaches the issuing backend within three offers.
        for _ in 0..3 {
            if offer(k, SessionFile::Offer) {
                break;
            }
        }
    }
    println!("  learned; now out of order:");
    for k in [2, 0, 1, 1, 0, 2] {
        offer(k, SessionFile::Offer);
    }

    // The daemon's own file: it names the control socket the CLI asks.
    let config_path = tether.config_path();
    for args in [&["sessions", "list"][..], &["status"][..]] {
        println!("\n$ tether {}", args.join(" "));
        // `--config` belongs to the command (`sessions`, `status`), before its action.
        let out = std::process::Command::new(tether_bin())
            .arg(args[0])
            .arg("--config")
            .arg(&config_path)
            .args(&args[1..])
            .output()?;
        print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
        if !out.status.success() {
            anyhow::bail!("tether {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
    }
    drop(tether);
    drop(servers);
    println!("\nstopping tether and removing {} namespaces", topo.namespaces().len());
    Ok(())
}

/// Sends `payload` through an echo service; returns the backend's name and the
/// address it saw the connection come from.
fn echo(to: SocketAddr, payload: &[u8]) -> anyhow::Result<(String, String)> {
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut greeting = String::new();
    reader.read_line(&mut greeting)?;
    let mut writer = stream.try_clone()?;
    let data = payload.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&data));
    let mut back = vec![0u8; payload.len()];
    reader.read_exact(&mut back)?;
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    anyhow::ensure!(back == payload, "echo differs from what was sent");
    let mut words = greeting.split_whitespace();
    Ok((words.next().unwrap_or("?").to_owned(), words.next().unwrap_or("?").to_owned()))
}

fn demo_config(topo: &Topology) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = 443\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[vip]]\nname = \"echo\"\naddress = \"{ECHO_VIP}\"\nport = 7\nprotocol = \"tcp\"\nfarm = \"echo\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[vip]]\nname = \"resume\"\naddress = \"{VIP}\"\nport = {RESUME_PORT}\nfarm = \"resume\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[vip]]\nname = \"tickets\"\naddress = \"{VIP}\"\nport = {TICKET_PORT}\nfarm = \"tickets\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\n{}\n[[farm]]\nname = \"echo\"\nalgorithm = \"maglev\"\npersistence = []\n{}\n\
         [[farm]]\nname = \"resume\"\npersistence = [\"session-id\"]\n{}\n\
         [[farm]]\nname = \"tickets\"\npersistence = [\"ticket-key\"]\n{}",
        topo.pin_path(),
        topo.backends_toml(443),
        topo.backends_toml(7),
        topo.backends_toml(RESUME_PORT),
        topo.backends_toml(TICKET_PORT),
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
