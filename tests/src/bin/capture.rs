//! `tether-capture DIR`: records real TLS handshakes for the parser's corpus
//! (`tests/corpus/`, read by `tests/tests/tls_corpus.rs`).
//!
//! In a namespace of its own, real clients (openssl s_client, curl, rustls,
//! headless Chromium when installed) connect to real servers (openssl
//! s_server, tether-testsrv on rustls, nginx when installed) through a relay
//! that records each connection's two byte streams. Each stream is kept up to
//! the end of its leading handshake records: a client's ClientHello, a
//! server's flight up to ChangeCipherSpec (which, for TLS 1.2, includes the
//! NewSessionTicket). Every scenario connects twice with one session cache,
//! so the second hello resumes (session ID, ticket or PSK).
//!
//! Files: `SCENARIO-N.client` and `SCENARIO-N.server`, N = 1 (full
//! handshake) or 2 (resumption). Run as root: `cargo build --release -p
//! tether-tests --bins && sudo target/release/tether-capture tests/corpus`.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tether_tests::{
    netns::{Netns, unique_prefix},
    peers::{self, BackendServer},
    process::Proc,
};

const SERVER_IP: &str = "198.18.7.1";
const RELAY: &str = "198.18.7.2:9443";
const SNI: &str = "shop.example";
/// Bytes recorded per direction and connection.
const LIMIT: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).context("usage: tether-capture DIR")?);
    std::fs::create_dir_all(&out)?;
    tether_tests::require_root();
    let ns = Netns::new(&format!("{}-capture", unique_prefix()));
    ns.ip(&format!("addr add {SERVER_IP}/32 dev lo"));
    ns.ip("addr add 198.18.7.2/32 dev lo");
    let dir = tempfile::tempdir()?;
    let (cert, key) = peers::self_signed(SNI);
    std::fs::write(dir.path().join("cert.pem"), cert)?;
    std::fs::write(dir.path().join("key.pem"), key)?;

    let servers: Vec<(&str, SocketAddr, Start<'_>)> = vec![
        ("s_server", addr(4431), openssl_server(&ns, dir.path(), 4431, &[])),
        ("s_server_noticket", addr(4432), openssl_server(&ns, dir.path(), 4432, &["-no_ticket"])),
        ("rustls", addr(4433), {
            let ns = &ns;
            Box::new(move || Ok(Box::new(BackendServer::rustls(ns, addr(4433), "rustls")) as Box<dyn Send>))
        }),
        ("nginx", addr(4434), nginx(&ns, dir.path(), 4434)),
    ];
    let mut running = Vec::new();
    let mut upstreams = Vec::new();
    for (name, upstream, start) in servers {
        match start() {
            Ok(guard) => {
                running.push(guard);
                upstreams.push((name, upstream));
            }
            Err(e) => eprintln!("capture: skipping server {name}: {e:#}"),
        }
    }

    let clients: [(&str, &[&str]); 7] = [
        ("openssl13", &[]),
        ("openssl12", &["-tls1_2"]),
        ("curl13", &[]),
        ("curl12", &["--tlsv1.2", "--tls-max", "1.2"]),
        ("rustls", &[]),
        ("chromium", &[]),
        ("openssl13-alpn", &["-alpn", "h2,http/1.1,spdy/3,spdy/2,h2c,xmpp,imap,pop3,stun,webrtc,c-webrtc,ftp,irc"]),
    ];
    for (server, upstream) in &upstreams {
        for (client, extra) in clients {
            let scenario = format!("{client}-{server}");
            match ns.enter(|| capture(&scenario, *upstream, client, extra, &out)) {
                Ok(n) => println!("capture: {scenario}: {n} connections"),
                Err(e) => eprintln!("capture: {scenario} skipped: {e:#}"),
            }
        }
    }
    drop(running);
    Ok(())
}

fn addr(port: u16) -> SocketAddr {
    format!("{SERVER_IP}:{port}").parse().expect("address")
}

type Start<'a> = Box<dyn FnOnce() -> anyhow::Result<Box<dyn Send>> + 'a>;

fn openssl_server<'a>(ns: &'a Netns, dir: &'a Path, port: u16, extra: &'a [&'a str]) -> Start<'a> {
    Box::new(move || {
        let mut cmd = ns.command("openssl");
        cmd.current_dir(dir)
            .args(["s_server", "-accept", &addr(port).to_string(), "-cert", "cert.pem", "-key", "key.pem", "-www"])
            .args(extra);
        let mut proc = Proc::spawn("openssl s_server", cmd);
        proc.wait_for_output("ACCEPT", Duration::from_secs(10));
        Ok(Box::new(proc) as Box<dyn Send>)
    })
}

fn nginx<'a>(ns: &'a Netns, dir: &'a Path, port: u16) -> Start<'a> {
    Box::new(move || {
        if Command::new("nginx").arg("-v").output().is_err() {
            bail!("nginx is not installed");
        }
        let d = dir.display();
        // One process (no master/worker split), so stopping the one we
        // started stops nginx: workers outlived a killed master once.
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\nevents {{}}\nhttp {{\n access_log off;\n \
             client_body_temp_path {d};\n proxy_temp_path {d};\n fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n \
             scgi_temp_path {d};\n server {{\n  listen {a} ssl;\n  ssl_certificate {d}/cert.pem;\n  \
             ssl_certificate_key {d}/key.pem;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache shared:S:1m;\n  \
             ssl_session_tickets on;\n  location / {{ return 200 \"nginx\\n\"; }}\n }}\n}}\n",
            a = addr(port)
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let mut cmd = ns.command("nginx");
        cmd.args(["-c", &format!("{d}/nginx.conf"), "-e", &format!("{d}/nginx.err")]);
        let proc = Proc::spawn("nginx", cmd);
        thread::sleep(Duration::from_millis(500));
        Ok(Box::new(proc) as Box<dyn Send>)
    })
}

/// Runs one client twice through a recording relay to `upstream`; writes
/// the trimmed streams; returns how many connections were recorded.
fn capture(scenario: &str, upstream: SocketAddr, client: &str, extra: &[&str], out: &Path) -> anyhow::Result<usize> {
    let listener = TcpListener::bind(RELAY)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay = {
        let stop = stop.clone();
        // Connections are relayed concurrently (a browser opens several and
        // keeps them open), and kept in the order they were accepted.
        thread::spawn(move || {
            let mut handlers = Vec::new();
            while let Ok((conn, _)) = listener.accept() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                handlers.push(thread::spawn(move || relay_one(conn, upstream)));
            }
            handlers.into_iter().filter_map(|h| h.join().ok()?.ok()).collect::<Vec<(Vec<u8>, Vec<u8>)>>()
        })
    };
    // The client's session cache (and Chromium's profile) live and go with this.
    let session_dir = tempfile::tempdir()?;
    let session = session_dir.path().join("session").to_str().context("path")?.to_owned();
    let result = run_client(client, extra, &session);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&RELAY.parse()?, Duration::from_millis(500));
    let recorded = relay.join().map_err(|_| anyhow::anyhow!("relay panicked"))?;
    result?;
    let mut written = 0;
    for (c2s, s2c) in &recorded {
        let (c, s) = (leading_handshake(c2s), leading_handshake(s2c));
        if c.is_empty() || s.is_empty() || written == 2 {
            continue;
        }
        written += 1;
        std::fs::write(out.join(format!("{scenario}-{written}.client")), c)?;
        std::fs::write(out.join(format!("{scenario}-{written}.server")), s)?;
    }
    if written == 0 {
        bail!("no handshake recorded");
    }
    Ok(written)
}

fn run_client(client: &str, extra: &[&str], session: &str) -> anyhow::Result<()> {
    let url = format!("https://{SNI}:9443/");
    let resolve = format!("{SNI}:9443:198.18.7.2");
    for round in 0..2 {
        let status = match client.split('-').next().unwrap_or(client) {
            "openssl13" | "openssl12" => {
                let sess = if round == 0 { "-sess_out" } else { "-sess_in" };
                let mut child = Command::new("timeout")
                    .args(["10", "openssl", "s_client", "-connect", RELAY, "-servername", SNI, sess, session])
                    .args(extra)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                let mut stdin = child.stdin.take().context("stdin")?;
                stdin.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                // Keep stdin open a moment: TLS 1.3 tickets arrive after the handshake.
                thread::sleep(Duration::from_millis(300));
                drop(stdin);
                child.wait()?
            }
            "curl13" | "curl12" => {
                // One process, two URLs, no keep-alive: the second connection
                // resumes from curl's session cache.
                if round == 1 {
                    return Ok(());
                }
                Command::new("curl")
                    .args(["-sk", "--max-time", "10", "-H", "Connection: close", "--resolve", &resolve])
                    .args(extra)
                    .args([&url, &url])
                    .stdout(Stdio::null())
                    .status()?
            }
            "rustls" => {
                if round == 1 {
                    return Ok(());
                }
                peers::rustls_twice(RELAY.parse()?, SNI)?;
                return Ok(());
            }
            "chromium" => {
                if Command::new("chromium").arg("--version").output().is_err() {
                    bail!("chromium is not installed");
                }
                Command::new("timeout")
                    .args([
                        "20",
                        "chromium",
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--ignore-certificate-errors",
                    ])
                    .arg(format!("--host-resolver-rules=MAP {SNI} 198.18.7.2"))
                    .arg(format!("--user-data-dir={session}.chromium"))
                    .args(["--dump-dom", &url])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()?
            }
            other => bail!("unknown client {other}"),
        };
        if !status.success() {
            bail!("{client} failed: {status}");
        }
    }
    Ok(())
}

/// Relays one connection both ways, recording up to `LIMIT` bytes each way.
fn relay_one(client: TcpStream, upstream: SocketAddr) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
    }
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 16384];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
                let room = LIMIT.saturating_sub(seen.len()).min(n);
                seen.extend_from_slice(&buf[..room]);
            }
            let _ = to.shutdown(Shutdown::Write);
            seen
        })
    };
    let up = pump(client.try_clone()?, server.try_clone()?);
    let down = pump(server, client);
    let c2s = up.join().map_err(|_| anyhow::anyhow!("pump panicked"))?;
    let s2c = down.join().map_err(|_| anyhow::anyhow!("pump panicked"))?;
    Ok((c2s, s2c))
}

/// The stream's leading TLS handshake records (content type 22), whole.
fn leading_handshake(stream: &[u8]) -> &[u8] {
    let mut end = 0;
    while stream.len() >= end + 5 && stream[end] == 22 {
        let len = u16::from_be_bytes([stream[end + 3], stream[end + 4]]) as usize;
        if stream.len() < end + 5 + len {
            break;
        }
        end += 5 + len;
    }
    &stream[..end]
}
