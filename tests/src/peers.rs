//! Real peers for tests: backend servers (TLS, or plain TCP echo) that say
//! which backend they are, and TLS clients that ask.
//!
//! Both backends answer `GET /whoami` with their name: `tether-testsrv`
//! (rustls + tokio, also an echo server for anything that is not a GET) and
//! `openssl s_server -HTTP` serving a file named `whoami`.

use std::{io::Write as _, net::SocketAddr, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use rustls::{ClientConfig, pki_types::ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{netns::Netns, process::Proc};

/// The request both kinds of backend answer with their name.
pub const WHOAMI_REQUEST: &[u8] = b"GET /whoami HTTP/1.0\r\n\r\n";

/// A self-signed certificate and its PKCS#8 key, PEM encoded.
pub fn self_signed(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

pub struct BackendServer {
    pub name: String,
    pub addr: SocketAddr,
    proc: Proc,
    _dir: TempDir,
}

impl BackendServer {
    /// `tether-testsrv` (rustls) listening on `addr` in `ns`.
    pub fn rustls(ns: &Netns, addr: SocketAddr, name: &str) -> BackendServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = ns.command(crate::sibling_binary("tether-testsrv"));
        cmd.args(["--listen", &addr.to_string(), "--name", name]);
        let mut proc = Proc::spawn(&format!("tether-testsrv {name}"), cmd);
        proc.wait_for_output("listening", Duration::from_secs(10));
        BackendServer { name: name.to_owned(), addr, proc, _dir: dir }
    }

    /// `tether-testsrv --tcp`: plain TCP, greets with "NAME PEER", then echoes.
    pub fn plain_tcp(ns: &Netns, addr: SocketAddr, name: &str) -> BackendServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = ns.command(crate::sibling_binary("tether-testsrv"));
        cmd.args(["--listen", &addr.to_string(), "--name", name, "--tcp"]);
        let mut proc = Proc::spawn(&format!("tether-testsrv --tcp {name}"), cmd);
        proc.wait_for_output("listening", Duration::from_secs(10));
        BackendServer { name: name.to_owned(), addr, proc, _dir: dir }
    }

    /// `openssl s_server -HTTP` on `addr` in `ns`, serving `/whoami` = `name`.
    pub fn openssl(ns: &Netns, addr: SocketAddr, name: &str) -> BackendServer {
        BackendServer::openssl_with(ns, addr, name, &[])
    }

    /// As `openssl`, with more `s_server` arguments (`-no_ticket`, ...).
    pub fn openssl_with(ns: &Netns, addr: SocketAddr, name: &str, extra: &[&str]) -> BackendServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(name);
        std::fs::write(dir.path().join("cert.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("write key");
        // -HTTP sends the file as it is, so the file carries the response header.
        let response = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{name}\n");
        std::fs::write(dir.path().join("whoami"), response).expect("write whoami");
        let mut cmd = ns.command("openssl");
        cmd.current_dir(dir.path()).args([
            "s_server",
            "-accept",
            &addr.to_string(),
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
            "-HTTP",
        ]);
        cmd.args(extra);
        let mut proc = Proc::spawn(&format!("openssl s_server {name}"), cmd);
        proc.wait_for_output("ACCEPT", Duration::from_secs(10));
        BackendServer { name: name.to_owned(), addr, proc, _dir: dir }
    }

    /// nginx on `addr` in `ns`, answering `/whoami` with `name`: one
    /// process (no master and workers, so stopping it stops all of nginx),
    /// its own random ticket key, TLS 1.2 and 1.3. `session_cache` off: only
    /// tickets resume.
    pub fn nginx(ns: &Netns, addr: SocketAddr, name: &str, session_cache: bool) -> BackendServer {
        BackendServer::nginx_with(ns, addr, name, self_signed(name), session_cache, "access_log off;", "")
    }

    /// As `nginx`, with a certificate of over 8 KB (hundreds of subject
    /// alternative names): the server's first flight takes many segments.
    pub fn nginx_big_certificate(ns: &Netns, addr: SocketAddr, name: &str) -> BackendServer {
        let names: Vec<String> =
            std::iter::once(name.to_owned()).chain((0..400).map(|i| format!("host-{i:03}.{name}.example"))).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        assert!(ck.cert.der().len() > 8 * 1024, "certificate of {} bytes", ck.cert.der().len());
        let pair = (ck.cert.pem(), ck.signing_key.serialize_pem());
        BackendServer::nginx_with(ns, addr, name, pair, false, "access_log off;", "")
    }

    /// As `nginx` (tickets only), serving `page` as `text/html` at `/` as
    /// well, closing every connection after one response (so each request
    /// of a browser is a new connection and a new TLS handshake), and
    /// logging "SESSION_REUSED URI" per request (`access_log`).
    pub fn nginx_page(ns: &Netns, addr: SocketAddr, name: &str, page: &str) -> BackendServer {
        // nginx would read a `$` as a variable.
        assert!(!page.contains('$'), "an nginx_page has no `$`");
        let escaped = page.replace('\\', "\\\\").replace('"', "\\\"");
        BackendServer::nginx_with(
            ns,
            addr,
            name,
            self_signed(name),
            false,
            "log_format reuse '$ssl_session_reused $request_uri';\n access_log ACCESS_LOG reuse;\n \
             keepalive_timeout 0;",
            &format!("location = / {{ default_type text/html; return 200 \"{escaped}\"; }}\n  "),
        )
    }

    /// The lines of the `access_log` of an `nginx_page` server.
    pub fn access_log(&self) -> Vec<String> {
        let path = self._dir.path().join("access.log");
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn nginx_with(
        ns: &Netns,
        addr: SocketAddr,
        name: &str,
        (cert, key): (String, String),
        session_cache: bool,
        http_extra: &str,
        locations: &str,
    ) -> BackendServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("write key");
        let d = dir.path().display();
        let cache = if session_cache { "shared:S:1m" } else { "off" };
        let http_extra = http_extra.replace("ACCESS_LOG", &format!("{d}/access.log"));
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr notice;\nevents {{}}\nhttp {{\n \
             {http_extra}\n client_body_temp_path {d};\n proxy_temp_path {d};\n fastcgi_temp_path {d};\n \
             uwsgi_temp_path {d};\n scgi_temp_path {d};\n server {{\n  listen {addr} ssl;\n  \
             ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  \
             ssl_session_cache {cache};\n  ssl_session_tickets on;\n  {locations}\
             location /whoami {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let mut cmd = ns.command("nginx");
        cmd.args(["-c", &format!("{d}/nginx.conf"), "-e", "stderr"]);
        let mut proc = Proc::spawn(&format!("nginx {name}"), cmd);
        wait_for_listener(ns, addr, &mut proc);
        BackendServer { name: name.to_owned(), addr, proc, _dir: dir }
    }

    /// Apache httpd (Debian's apache2) with mod_ssl on `addr` in `ns`,
    /// serving `/whoami` = `name`: TLS 1.2 only, sessions in its shared
    /// memory cache (`SSLSessionCache shmcb`, 300 s), no tickets. The
    /// classic setup persistence by session ID exists for.
    pub fn apache(ns: &Netns, addr: SocketAddr, name: &str) -> BackendServer {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(name);
        std::fs::write(dir.path().join("cert.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("write key");
        // The children run as www-data and serve from here.
        let www = dir.path().join("www");
        std::fs::create_dir(&www).expect("mkdir www");
        std::fs::write(www.join("whoami"), format!("{name}\n")).expect("write whoami");
        for path in [dir.path(), &www] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(www.join("whoami"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let d = dir.path().display();
        let m = "/usr/lib/apache2/modules";
        let conf = format!(
            "ServerRoot {d}\nServerName {name}\nListen {addr}\nPidFile {d}/httpd.pid\nErrorLog /dev/stderr\n\
             LogLevel notice\nMutex file:{d} default\nUser www-data\nGroup www-data\n\
             LoadModule mpm_event_module {m}/mod_mpm_event.so\nLoadModule authz_core_module {m}/mod_authz_core.so\n\
             LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so\nLoadModule ssl_module {m}/mod_ssl.so\n\
             DocumentRoot {d}/www\n<Directory {d}/www>\n Require all granted\n</Directory>\n\
             SSLSessionCache shmcb:{d}/ssl_scache(512000)\nSSLSessionCacheTimeout 300\n\
             <VirtualHost {addr}>\n SSLEngine on\n SSLProtocol -all +TLSv1.2\n SSLSessionTickets Off\n \
             SSLCertificateFile {d}/cert.pem\n SSLCertificateKeyFile {d}/key.pem\n</VirtualHost>\n"
        );
        std::fs::write(dir.path().join("httpd.conf"), conf).expect("write httpd.conf");
        let mut cmd = ns.command("apache2");
        cmd.args(["-f", &format!("{d}/httpd.conf"), "-DFOREGROUND"]);
        let mut proc = Proc::spawn(&format!("apache2 {name}"), cmd).stopped_with_sigterm();
        wait_for_listener(ns, addr, &mut proc);
        BackendServer { name: name.to_owned(), addr, proc, _dir: dir }
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }
}

/// Waits until something accepts TCP connections on `addr` in `ns` (servers
/// that print nothing when ready), or fails with the server's output.
fn wait_for_listener(ns: &Netns, addr: SocketAddr, proc: &mut Proc) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listening = ns
            .command("ss")
            .args(["-Htln", &format!("sport = :{}", addr.port())])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        if listening {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no listener on {addr}: {}", proc.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects from `ns` with rustls, sends `GET /whoami` and returns the body.
pub fn rustls_whoami(ns: &Netns, addr: SocketAddr) -> anyhow::Result<String> {
    let response = ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), rustls_request(addr, WHOAMI_REQUEST)).await })
            .context("rustls client timed out")?
    })?;
    http_body(&response)
}

/// As `rustls_whoami`, from a fixed local port (bound with SO_REUSEADDR), so
/// successive calls reuse one 4-tuple.
pub fn rustls_whoami_from_port(ns: &Netns, addr: SocketAddr, local_port: u16) -> anyhow::Result<String> {
    let response = ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            // The previous connection's socket lingers in LAST_ACK until the
            // server acknowledges the client's FIN; until then the client's
            // own kernel refuses the tuple (EADDRNOTAVAIL, seen once under
            // the full suite's load). That is the client host, not the
            // balancer, so the connect is retried for up to a second.
            let mut attempts = 0;
            let tcp = loop {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), local_port))?;
                // A short connect timeout: a SYN the balancer mishandles would
                // otherwise be retried by the kernel until it happened to work.
                let connected = tokio::time::timeout(Duration::from_secs(3), socket.connect(addr))
                    .await
                    .with_context(|| format!("connect {addr} from port {local_port}: timed out"))?;
                match connected {
                    Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && attempts < 20 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => break other.with_context(|| format!("connect {addr} from port {local_port}"))?,
                }
            };
            tokio::time::timeout(Duration::from_secs(10), rustls_exchange(addr, tcp, WHOAMI_REQUEST))
                .await
                .context("rustls client timed out")?
        })
    })?;
    http_body(&response)
}

/// From the calling thread's namespace, two rustls connections to `addr`
/// with one client config (so one session cache: the second resumes), each
/// asking `GET /` of server name `sni`.
pub fn rustls_twice(addr: SocketAddr, sni: &str) -> anyhow::Result<()> {
    let config = Arc::new(insecure_client_config());
    let name = ServerName::try_from(sni.to_owned()).context("server name")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let mut tls = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
            tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            let mut response = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
        }
        anyhow::Ok(())
    })
}

async fn rustls_request(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    rustls_exchange(addr, tcp, request).await
}

async fn rustls_exchange(addr: SocketAddr, tcp: tokio::net::TcpStream, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(insecure_client_config()));
    let mut tls = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp).await.context("TLS handshake")?;
    tls.write_all(request).await?;
    let mut response = Vec::new();
    // Servers close without close_notify after an HTTP/1.0 answer; what arrived counts.
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(response)
}

/// For `duration`, `concurrency` rustls clients in `ns` each connect to
/// `addr`, complete a TLS handshake, ask `GET /whoami` and read the answer,
/// over and over. Returns the completed and the failed exchanges.
pub fn tls_exchanges(
    ns: &Netns,
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(u64, u64)> {
    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + duration;
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    tokio::spawn(async move {
                        let (mut ok, mut failed) = (0u64, 0u64);
                        while tokio::time::Instant::now() < deadline {
                            match tokio::time::timeout(Duration::from_secs(5), rustls_request(addr, WHOAMI_REQUEST))
                                .await
                            {
                                Ok(Ok(_)) => ok += 1,
                                _ => failed += 1,
                            }
                        }
                        (ok, failed)
                    })
                })
                .collect();
            let mut totals = (0, 0);
            for w in workers {
                let (ok, failed) = w.await?;
                totals = (totals.0 + ok, totals.1 + failed);
            }
            anyhow::Ok(totals)
        })
    })
}

/// Connects from `ns` with rustls to a `tether-testsrv` backend in echo
/// mode, sends `size` bytes (a multiple of 64 KiB) while reading the echo, and
/// checks every byte that comes back. Returns the backend's name.
pub fn rustls_echo(ns: &Netns, addr: SocketAddr, size: usize) -> anyhow::Result<String> {
    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(300), rustls_echo_async(addr, size)).await.context("timed out")?
        })
    })
}

const ECHO_CHUNK: usize = 1 << 16;

async fn rustls_echo_async(addr: SocketAddr, size: usize) -> anyhow::Result<String> {
    use tokio::io::AsyncBufReadExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(insecure_client_config()));
    let tls = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp).await.context("TLS handshake")?;
    let (read_half, mut write_half) = tokio::io::split(tls);
    let writer = async move {
        let mut chunk = vec![0u8; ECHO_CHUNK];
        for n in 0..size / ECHO_CHUNK {
            fill_chunk(&mut chunk, n);
            write_half.write_all(&chunk).await.with_context(|| format!("sending chunk {n}"))?;
        }
        write_half.shutdown().await.context("close_notify")?;
        anyhow::Ok(())
    };
    let reader = async move {
        let mut reader = tokio::io::BufReader::with_capacity(ECHO_CHUNK, read_half);
        let mut name = String::new();
        reader.read_line(&mut name).await.context("the backend's name")?;
        let (mut expected, mut got) = (vec![0u8; ECHO_CHUNK], vec![0u8; ECHO_CHUNK]);
        for n in 0..size / ECHO_CHUNK {
            fill_chunk(&mut expected, n);
            reader.read_exact(&mut got).await.with_context(|| format!("echo stopped at chunk {n}"))?;
            if got != expected {
                bail!("chunk {n} differs after the round trip");
            }
        }
        let mut rest = Vec::new();
        match reader.read_to_end(&mut rest).await {
            Ok(_) => {}
            // The server may close without close_notify once it has echoed everything.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e.into()),
        }
        if !rest.is_empty() {
            bail!("{} bytes more than were sent", rest.len());
        }
        anyhow::Ok(name.trim().to_owned())
    };
    let (sent, name) = tokio::join!(writer, reader);
    sent?;
    name
}

/// Chunk `n` of a test transfer: distinct per chunk and position.
pub fn fill_chunk(chunk: &mut [u8], n: usize) {
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for word in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
}

/// Runs `openssl s_client` in `ns`, sends `GET /whoami`, returns the body.
pub fn openssl_whoami(ns: &Netns, addr: SocketAddr) -> anyhow::Result<String> {
    openssl_whoami_as(ns, addr, &[])
}

/// As `openssl_whoami`, with more `s_client` arguments (`-servername`, ...).
pub fn openssl_whoami_as(ns: &Netns, addr: SocketAddr, extra: &[&str]) -> anyhow::Result<String> {
    let mut cmd = ns.command("timeout");
    cmd.args(["10", "openssl", "s_client", "-connect", &addr.to_string(), "-quiet", "-verify_quiet"]).args(extra);
    let out = ask_whoami(cmd)?;
    if out.stdout.is_empty() {
        bail!("openssl s_client to {addr} got no answer ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    http_body(&out.stdout)
}

/// Runs an `openssl s_client` command, writes `GET /whoami` to it, and
/// returns what it printed.
fn ask_whoami(mut cmd: std::process::Command) -> anyhow::Result<std::process::Output> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn openssl s_client")?;
    child.stdin.take().expect("piped").write_all(WHOAMI_REQUEST)?;
    Ok(child.wait_with_output()?)
}

/// One `openssl s_client` connection from `ns` asking `GET /whoami`: saves
/// its session to `session` (`Save`) or offers the one saved there
/// (`Offer`). Returns whether the server resumed the session, and the body.
pub fn openssl_session(
    ns: &Netns,
    addr: SocketAddr,
    extra: &[&str],
    session: &std::path::Path,
    use_session: SessionFile,
) -> anyhow::Result<(bool, String)> {
    let mut cmd = ns.command("timeout");
    let flag = match use_session {
        SessionFile::Save => "-sess_out",
        SessionFile::Offer => "-sess_in",
    };
    cmd.args(["10", "openssl", "s_client", "-connect", &addr.to_string(), "-ign_eof", flag]).arg(session).args(extra);
    let out = ask_whoami(cmd)?;
    let text = String::from_utf8_lossy(&out.stdout);
    // s_client's summary line: "Reused, TLSv1.2, Cipher is ..." or "New, ...".
    let reused = text.lines().any(|l| l.starts_with("Reused, "));
    if !reused && !text.lines().any(|l| l.starts_with("New, ")) {
        bail!("openssl s_client to {addr}: no session line ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let start = text.find("HTTP/1.").with_context(|| {
        format!("no HTTP answer from {addr} ({}): {text}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    })?;
    // Without -quiet, s_client follows the body with its own "closed" line.
    let body = http_body(&out.stdout[start..])?;
    Ok((reused, body.lines().next().unwrap_or_default().to_owned()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SessionFile {
    Save,
    Offer,
}

/// Runs `curl` in `ns` against `https://ADDR/whoami`, returns the body.
pub fn curl_whoami(ns: &Netns, addr: SocketAddr) -> anyhow::Result<String> {
    let url = format!("https://{addr}/whoami");
    let out = ns
        .command("curl")
        .args(["--silent", "--show-error", "--insecure", "--max-time", "10", "--http1.0", "--include", &url])
        .output()
        .context("run curl")?;
    if !out.status.success() {
        bail!("curl {url}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    http_body(&out.stdout)
}

fn http_body(response: &[u8]) -> anyhow::Result<String> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("not an HTTP response: {text:?}") };
    if !head.contains(" 200 ") && !head.to_ascii_lowercase().contains(" 200 ok") {
        bail!("HTTP error: {head:?}");
    }
    Ok(body.trim().to_owned())
}

/// Test backends use throwaway self-signed certificates: the client checks the
/// handshake's signatures but not the chain, as tether's own TLS health
/// check does (the same configuration).
pub fn insecure_client_config() -> ClientConfig {
    lb_user::health::tls_client_config()
}
