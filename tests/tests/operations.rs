//! Farms in operation, with real servers: health checks that take a dead
//! backend out and bring it back, what happens to the persisted clients of
//! a failed backend (`on_backend_failure`), drain and disable at run time
//! (`tether backend`), the algorithms' spreads, and the metrics endpoint
//! read by the Prometheus project's own parser.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use lb_common::reason;
use tether_tests::{
    peers::{self, BackendServer, SessionFile},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;
/// Health checks every 500 ms; `rise` and `fall` 2: a verdict in about a second.
const INTERVAL: Duration = Duration::from_millis(500);
const RISE_FALL: u32 = 2;

fn config(topo: &Topology, farm: &str, backends: &str) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\n{farm}\n{backends}",
        topo.pin_path(),
    )
}

fn health(kind: &str) -> String {
    format!(
        "health = {{ kind = \"{kind}\", interval = \"{}ms\", timeout = \"400ms\", rise = {RISE_FALL}, fall = {RISE_FALL} }}",
        INTERVAL.as_millis()
    )
}

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

fn addr(topo: &Topology, i: usize) -> SocketAddr {
    SocketAddr::new(topo.backends[i].addr.into(), PORT)
}

fn rustls_backend(topo: &Topology, i: usize) -> BackendServer {
    BackendServer::rustls(&topo.backends[i].ns, addr(topo, i), &format!("b{i}"))
}

/// How many of `n` sequential connections each backend answered.
fn spread(topo: &Topology, n: usize) -> HashMap<String, usize> {
    let mut answers = HashMap::new();
    for i in 0..n {
        let who = peers::rustls_whoami(&topo.clients[0].ns, vip()).unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
        *answers.entry(who).or_default() += 1;
    }
    answers
}

/// Waits until the daemon reports `backend`'s health as `health`; returns
/// how long that took.
fn wait_for_health(tether: &Tether, backend: &str, health: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = tether.backend_status("web", backend);
        if status.health == health {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{backend} not {health} after {within:?}: {status:?}\n{}", tether.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The longest a flip may take: `n` checks, and a second of slack.
fn flip_deadline() -> Duration {
    INTERVAL * RISE_FALL + Duration::from_secs(1)
}

#[test]
fn a_dead_backend_is_avoided_within_fall_checks_and_returns_after_rise_checks() {
    for kind in ["tcp", "tls"] {
        let topo = Topology::two_armed(1, 3);
        let mut backends: Vec<Option<BackendServer>> = (0..3).map(|i| Some(rustls_backend(&topo, i))).collect();
        let farm = format!("algorithm = \"round-robin\"\npersistence = []\n{}", health(kind));
        let tether = Tether::start(&topo.lb, &config(&topo, &farm, &topo.backends_toml(PORT)));
        let before = spread(&topo, 30);
        assert_eq!(before.len(), 3, "{kind}: every backend answers at first: {before:?}");

        backends[1] = None; // b1's server stops; its host stays.
        let took = wait_for_health(&tether, "b1", "down", flip_deadline());
        let during = spread(&topo, 30);
        assert!(!during.contains_key("b1"), "{kind}: new connections avoid b1 ({took:?} after it died): {during:?}");
        assert_eq!(during.values().sum::<usize>(), 30, "{kind}: every connection served");
        assert!(tether.log().contains("backend down"), "{}", tether.log());
        assert!(!tether.backend_status("web", "b1").takes_new);

        backends[1] = Some(rustls_backend(&topo, 1));
        let took = wait_for_health(&tether, "b1", "up", flip_deadline());
        let after = spread(&topo, 30);
        assert_eq!(
            after.get("b1"),
            Some(&10),
            "{kind}: b1 takes its share again ({took:?} after it returned): {after:?}"
        );
        // Only flips are logged: one down, one up.
        assert_eq!(tether.log().matches("backend down").count(), 1, "{}", tether.log());
        assert_eq!(tether.log().matches("backend up").count(), 1, "{}", tether.log());
    }
}

/// A TLS 1.2 session learned on b0 (nginx, session cache, no tickets), then
/// b0's server stops: what its client meets, per `on_backend_failure`.
struct FailedOwner {
    topo: Topology,
    tether: Tether,
    backends: Vec<Option<BackendServer>>,
    session: tempfile::TempDir,
}

const SESSION_CLIENT: &[&str] = &["-tls1_2", "-no_ticket"];

impl FailedOwner {
    fn new(on_failure: &str) -> FailedOwner {
        let topo = Topology::two_armed(1, 3);
        let backends: Vec<Option<BackendServer>> = (0..3)
            .map(|i| Some(BackendServer::nginx(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"), true)))
            .collect();
        let farm = format!(
            "algorithm = \"round-robin\"\npersistence = [\"session-id\"]\non_backend_failure = \"{on_failure}\"\n{}",
            health("tcp")
        );
        let tether = Tether::start(&topo.lb, &config(&topo, &farm, &topo.backends_toml(PORT)));
        let mut owner = FailedOwner { topo, tether, backends, session: tempfile::tempdir().unwrap() };
        let (_, first) = owner.offer(SessionFile::Save).expect("first connection");
        assert_eq!(first, "b0", "round-robin starts with b0");
        let (reused, again) = owner.offer(SessionFile::Offer).expect("resumption");
        assert!(reused && again == "b0", "the session resumes on b0 while it is up: {reused} {again}");
        owner.backends[0] = None;
        wait_for_health(&owner.tether, "b0", "down", flip_deadline());
        owner
    }

    fn offer(&self, how: SessionFile) -> anyhow::Result<(bool, String)> {
        let file = self.session.path().join("session.pem");
        peers::openssl_session(&self.topo.clients[0].ns, vip(), SESSION_CLIENT, &file, how)
    }

    fn bring_b0_back(&mut self) {
        self.backends[0] = Some(BackendServer::nginx(&self.topo.backends[0].ns, addr(&self.topo, 0), "b0", true));
        wait_for_health(&self.tether, "b0", "up", flip_deadline());
    }

    fn session_ids_on(&self, backend_id: u32) -> usize {
        self.tether
            .sessions()
            .iter()
            .filter(|(k, e)| k.kind == lb_common::maps::PersistKind::SessionId as u8 && e.backend_id == backend_id)
            .count()
    }
}

#[test]
fn rebalance_sends_a_failed_backends_client_elsewhere_and_forgets_its_session() {
    let owner = FailedOwner::new("rebalance");
    assert_eq!(owner.session_ids_on(0), 1);
    let (reused, backend) = owner.offer(SessionFile::Offer).expect("the client is served");
    assert!(!reused && backend != "b0", "a full handshake elsewhere: {reused} {backend}");
    assert_eq!(owner.session_ids_on(0), 0, "b0's entry is forgotten: {:?}", owner.tether.sessions());
    let counters = owner.tether.counters();
    assert_eq!(counters.get(reason::RESET_BACKEND_FAILED) + counters.get(reason::DROP_BACKEND_FAILED), 0);
}

#[test]
fn reset_answers_a_failed_backends_client_with_an_rst_until_it_returns() {
    let mut owner = FailedOwner::new("reset");
    let refused = owner.offer(SessionFile::Offer).map_err(|e| format!("{e:#}"));
    // s_client reports the reset (ECONNRESET), not its 10 s timeout.
    assert!(matches!(&refused, Err(e) if e.contains("errno=104")), "the client is reset: {refused:?}");
    assert!(owner.tether.counters().get(reason::RESET_BACKEND_FAILED) >= 1, "{:?}", owner.tether.counters());
    assert_eq!(owner.session_ids_on(0), 1, "the entry stays for when b0 returns");
    owner.bring_b0_back();
    // A new nginx process: the session itself is gone, the client's place is not.
    let (_, backend) = owner.offer(SessionFile::Offer).expect("served again");
    assert_eq!(backend, "b0");
}

#[test]
fn drop_holds_a_failed_backends_client_until_it_returns() {
    let mut owner = FailedOwner::new("drop");
    let dropped = owner.offer(SessionFile::Offer);
    assert!(dropped.is_err(), "the client gets nothing: {dropped:?}");
    assert!(owner.tether.counters().get(reason::DROP_BACKEND_FAILED) >= 1, "{:?}", owner.tether.counters());
    assert_eq!(owner.tether.counters().get(reason::RESET_BACKEND_FAILED), 0);
    owner.bring_b0_back();
    let (_, backend) = owner.offer(SessionFile::Offer).expect("served again");
    assert_eq!(backend, "b0");
}

/// Two nginx backends (session cache, no tickets), round-robin with
/// `session-id`, and the TLS 1.2 session the first connection got on b0.
struct SessionOnB0 {
    topo: Topology,
    backends: Vec<BackendServer>,
    tether: Tether,
    session: tempfile::TempDir,
}

impl SessionOnB0 {
    fn new() -> SessionOnB0 {
        let topo = Topology::two_armed(1, 2);
        let backends: Vec<BackendServer> = (0..2)
            .map(|i| BackendServer::nginx(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"), true))
            .collect();
        let farm = "algorithm = \"round-robin\"\npersistence = [\"session-id\"]";
        let tether = Tether::start(&topo.lb, &config(&topo, farm, &topo.backends_toml(PORT)));
        let s = SessionOnB0 { topo, backends, tether, session: tempfile::tempdir().unwrap() };
        let (_, first) = s.connect(SessionFile::Save);
        assert_eq!(first, "b0");
        s
    }

    /// Offers the session (or saves a new one): whether it resumed, and where.
    fn connect(&self, how: SessionFile) -> (bool, String) {
        let file = self.session.path().join("session.pem");
        peers::openssl_session(&self.topo.clients[0].ns, vip(), SESSION_CLIENT, &file, how).expect("a connection")
    }
}

#[test]
fn draining_keeps_persisted_clients_and_disabling_lets_a_transfer_finish() {
    let SessionOnB0 { topo, backends, tether, session } = SessionOnB0::new();
    let file = session.path().join("session.pem");
    let client = &topo.clients[0].ns;

    let said = tether.backend_cli(&["drain", "web", "b0"]).expect("tether backend drain");
    assert!(said.contains("draining (was active)"), "{said}");
    for _ in 0..10 {
        let (reused, who) = peers::openssl_session(client, vip(), SESSION_CLIENT, &file, SessionFile::Offer).unwrap();
        assert!(reused && who == "b0", "the persisted client stays on draining b0: {reused} {who}");
        let fresh = peers::openssl_whoami_as(client, vip(), &["-tls1_2"]).unwrap();
        assert_eq!(fresh, "b1", "new clients go elsewhere");
    }
    let status = tether.status();
    assert!(status.lines().any(|l| l.contains("b0") && l.contains("draining")), "{status}");
    drop(backends);

    // Disabled: a transfer under way runs to its end; nothing new arrives.
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = (0..2).map(|i| rustls_backend(&topo, i)).collect();
    let backends_toml =
        topo.backends_toml(PORT).replacen("name = \"b1\"\n", "name = \"b1\"\nstate = \"disabled\"\n", 1);
    let tether = Tether::start(&topo.lb, &config(&topo, "persistence = []", &backends_toml));
    std::thread::scope(|s| {
        let transfer = s.spawn(|| peers::rustls_echo(&topo.clients[0].ns, vip(), 64 << 20));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tether.flows().is_empty() {
            assert!(Instant::now() < deadline, "the transfer never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        tether.backend_cli(&["enable", "web", "b1"]).expect("enable b1");
        tether.backend_cli(&["disable", "web", "b0"]).expect("disable b0");
        assert!(!transfer.is_finished(), "the transfer ended before b0 was disabled: the test cannot judge");
        let during = spread(&topo, 10);
        assert_eq!(during.get("b1"), Some(&10), "new connections go to b1: {during:?}");
        let who = transfer.join().unwrap().expect("the 64 MiB transfer arrives intact");
        assert_eq!(who, "b0", "the transfer ran on b0, disabled under it");
    });
    let err = tether.backend_cli(&["drain", "web", "b9"]).unwrap_err();
    assert!(err.contains("farm `web` has no backend `b9`; its backends: b0, b1"), "{err}");
}

#[test]
fn weighted_round_robin_and_random_follow_the_weights() {
    let topo = Topology::two_armed(1, 3);
    let _backends: Vec<BackendServer> = (0..3).map(|i| rustls_backend(&topo, i)).collect();
    let weights = [3, 1, 0];
    let backends_toml: String = (0..3)
        .map(|i| {
            format!("\n[[farm.backend]]\nname = \"b{i}\"\naddress = \"{}\"\nweight = {}\n", addr(&topo, i), weights[i])
        })
        .collect();
    let tether = Tether::start(
        &topo.lb,
        &config(&topo, "algorithm = \"weighted-round-robin\"\npersistence = []", &backends_toml),
    );
    let answers = spread(&topo, 40);
    assert_eq!(answers.get("b0"), Some(&30), "{answers:?}");
    assert_eq!(answers.get("b1"), Some(&10), "{answers:?}");
    assert!(!answers.contains_key("b2"), "weight 0 takes nothing: {answers:?}");
    drop(tether);

    let tether = Tether::start(&topo.lb, &config(&topo, "algorithm = \"random\"\npersistence = []", &backends_toml));
    let answers = spread(&topo, 200);
    // 150 expected on b0 (binomial, sd ~6): far outside 120-180 means not weighted.
    let b0 = answers.get("b0").copied().unwrap_or(0);
    assert!((120..=180).contains(&b0), "random over weights 3:1: {answers:?}");
    assert!(!answers.contains_key("b2"), "{answers:?}");
    drop(tether);
}

/// A TLS connection to a `tether-testsrv` backend in echo mode, held open.
struct Held {
    backend: String,
    stream: tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    runtime: tokio::runtime::Runtime,
}

impl Held {
    /// Sends a line and reads its echo (waiting up to 5 s).
    fn exchange(&mut self) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let stream = &mut self.stream;
        self.runtime.block_on(async {
            stream.get_mut().write_all(b"ping\n").await?;
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut line)).await {
                Ok(Ok(0)) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) if line == "ping\n" => Ok(()),
                Ok(Ok(_)) => Err(std::io::Error::other(format!("echo was {line:?}"))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            }
        })
    }
}

fn hold(topo: &Topology) -> Held {
    topo.clients[0].ns.enter(|| {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (backend, stream) = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(vip()).await.expect("connect");
            let config = peers::insecure_client_config();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::IpAddress(VIP.into());
            let mut tls = connector.connect(name, tcp).await.expect("handshake");
            tls.write_all(b"hello\n").await.unwrap();
            let mut reader = tokio::io::BufReader::new(tls);
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            // The echo of the greeting.
            let mut echo = String::new();
            reader.read_line(&mut echo).await.unwrap();
            (line.trim().to_owned(), reader)
        });
        Held { backend, stream, runtime }
    })
}

#[test]
fn least_connections_sends_new_clients_to_the_emptier_backend() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = (0..2).map(|i| rustls_backend(&topo, i)).collect();
    let backends_toml =
        topo.backends_toml(PORT).replacen("name = \"b1\"\n", "name = \"b1\"\nstate = \"disabled\"\n", 1);
    let tether =
        Tether::start(&topo.lb, &config(&topo, "algorithm = \"least-connections\"\npersistence = []", &backends_toml));
    let first: Vec<Held> = (0..4).map(|_| hold(&topo)).collect();
    assert!(first.iter().all(|h| h.backend == "b0"), "b1 is disabled");
    // A sweep of the flow table (every 2 s) counts them; one that raced
    // the connections above may have counted one twice until then.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(tether.backend_status("web", "b0").active_flows, 4);
    tether.backend_cli(&["enable", "web", "b1"]).unwrap();
    // Round-robin would split these 2:2; the fewest connections go first.
    let next: Vec<Held> = (0..4).map(|_| hold(&topo)).collect();
    let on: Vec<&str> = next.iter().map(|h| h.backend.as_str()).collect();
    assert_eq!(on, ["b1", "b1", "b1", "b1"], "b1 catches up with b0's four");
    // Now 4:4: they alternate.
    let more: Vec<Held> = (0..2).map(|_| hold(&topo)).collect();
    let mut on: Vec<&str> = more.iter().map(|h| h.backend.as_str()).collect();
    on.sort();
    assert_eq!(on, ["b0", "b1"], "{}", tether.status());
    // The sweep counts them too (every 2 s).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(tether.backend_status("web", "b0").active_flows, 5);
    assert_eq!(tether.backend_status("web", "b1").active_flows, 5);
}

#[test]
fn the_metrics_endpoint_parses_with_prometheus_client_and_matches_what_happened() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = (0..2).map(|i| rustls_backend(&topo, i)).collect();
    let metrics = "198.19.0.1:9901";
    let farm = "algorithm = \"round-robin\"\npersistence = [\"source-ip\"]";
    let text = config(&topo, farm, &topo.backends_toml(PORT)).replacen(
        "[daemon]\n",
        &format!("[daemon]\nmetrics = \"{metrics}\"\n"),
        1,
    );
    let tether = Tether::start(&topo.lb, &text);
    // One client address: the first connection teaches `source-ip`, the rest follow it.
    for _ in 0..6 {
        assert_eq!(peers::rustls_whoami(&topo.clients[0].ns, vip()).unwrap(), "b0");
    }
    tether.backend_cli(&["drain", "web", "b1"]).unwrap();
    let script = format!(
        "import urllib.request, json\n\
         from prometheus_client.parser import text_string_to_metric_families\n\
         page = urllib.request.urlopen('http://{metrics}/metrics', timeout=5).read().decode()\n\
         out = {{}}\n\
         for family in text_string_to_metric_families(page):\n\
         \x20   for s in family.samples:\n\
         \x20       out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value\n\
         print(json.dumps(out))\n"
    );
    let out = topo.backends[0].ns.command("python3").args(["-c", &script]).output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client could not read the page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: HashMap<String, f64> = serde_json::from_slice(&out.stdout).expect("json");
    let get = |name: &str, labels: &str| -> f64 {
        *samples.get(&format!("{name}{labels}")).unwrap_or_else(|| panic!("no {name}{labels} in {samples:?}"))
    };
    let backend = |b: &str| format!("{{\"backend\": \"{b}\", \"farm\": \"web\"}}");
    assert_eq!(get("tether_backend_connections_total", &backend("b0")), 6.0);
    assert_eq!(get("tether_backend_connections_total", &backend("b1")), 0.0);
    assert_eq!(get("tether_backend_up", &backend("b0")), 1.0);
    let state = |b: &str, s: &str| format!("{{\"backend\": \"{b}\", \"farm\": \"web\", \"state\": \"{s}\"}}");
    assert_eq!(get("tether_backend_state", &state("b1", "draining")), 1.0);
    assert_eq!(get("tether_backend_state", &state("b1", "active")), 0.0);
    assert_eq!(get("tether_backend_state", &state("b0", "active")), 1.0);
    let packets = |r: &str| get("tether_packets_total", &format!("{{\"reason\": \"{r}\"}}"));
    assert_eq!(packets("tls_bind"), 1.0);
    assert_eq!(packets("tls_bind_persisted"), 5.0);
    let counters = tether.counters();
    assert!(packets("fwd_to_client") >= 6.0 && packets("fwd_to_client") <= counters.get(reason::FWD_TO_CLIENT) as f64);
    let kind = "{\"farm\": \"web\", \"kind\": \"source-ip\"}";
    assert_eq!(get("tether_persistence_lookups_total", kind), 6.0);
    assert_eq!(get("tether_persistence_hits_total", kind), 5.0);
    assert_eq!(get("tether_persistence_misses_total", kind), 1.0);
    assert_eq!(get("tether_persistence_learns_total", kind), 1.0);
    assert_eq!(get("tether_persistence_evictions_total", kind), 0.0);
    assert_eq!(get("tether_session_table_entries", "{}"), 1.0);
    assert!(get("tether_session_table_capacity", "{}") >= 1.0);
}

#[test]
fn each_new_session_is_logged_with_the_favoured_required_and_used_backend() {
    let run = SessionOnB0::new();
    // Round-robin would give the next client b1; the session requires b0.
    let (reused, second) = run.connect(SessionFile::Offer);
    let (topo, tether) = (&run.topo, &run.tether);
    assert!(reused && second == "b0");
    let lines = |needle: &str| -> usize {
        tether.log().lines().filter(|l| l.contains("tether::session: new session") && l.contains(needle)).count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines("") < 2 {
        assert!(Instant::now() < deadline, "two new sessions logged:\n{}", tether.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines(""), 2, "one line per new session:\n{}", tether.log());
    assert_eq!(lines("farm=\"web\""), 2, "{}", tether.log());
    assert_eq!(lines("favoured=\"b0\" required=\"-\" used=\"b0\" by=\"algorithm\""), 1, "{}", tether.log());
    assert_eq!(lines("favoured=\"b1\" required=\"b0\" used=\"b0\" by=\"session-id\""), 1, "{}", tether.log());
    let client_addr = format!("client={}:", topo.clients[0].addr);
    assert_eq!(lines(&client_addr), 2, "{}", tether.log());
}

#[test]
fn the_tls_check_learns_each_backends_ticket_key_before_any_client_resumes() {
    let topo = Topology::two_armed(1, 3);
    // nginx without a session cache: each process resumes by its own ticket key only.
    let _backends: Vec<BackendServer> =
        (0..3).map(|i| BackendServer::nginx(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"), false)).collect();
    // Checks as an operator would set them (not the tight ones of the flip
    // tests): a check slowed by a loaded machine must not take a backend
    // down, and its clients with it, in the middle of the resumptions below.
    let check = "health = { kind = \"tls\", interval = \"1s\", timeout = \"900ms\", rise = 2, fall = 3 }";
    let farm = format!("algorithm = \"round-robin\"\npersistence = [\"ticket-key\"]\n{check}");
    let tether = Tether::start(&topo.lb, &config(&topo, &farm, &topo.backends_toml(PORT)));
    // Two checks per backend: the first gets a ticket, the second offers it.
    let key_names = || -> Vec<u32> {
        let mut owners: Vec<u32> = tether
            .sessions()
            .iter()
            .filter(|(k, _)| k.kind == lb_common::maps::PersistKind::TicketKey as u8)
            .map(|(_, e)| e.backend_id)
            .collect();
        owners.sort();
        owners
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while key_names() != [0, 1, 2] {
        assert!(
            Instant::now() < deadline,
            "each backend's key name, from its checks: {:?}\n{}",
            key_names(),
            tether.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tether.log().matches("ticket key name learned from the health check").count(), 3, "{}", tether.log());
    assert_eq!(tether.counters().get(reason::TLS_BIND), 0, "no client has connected yet");
    // A TLS 1.3 client: every resumption, from the first, on the issuing backend.
    let session = tempfile::tempdir().unwrap();
    let file = session.path().join("session.pem");
    let client = &topo.clients[0].ns;
    let (_, first) = peers::openssl_session(client, vip(), &["-tls1_3"], &file, SessionFile::Save).unwrap();
    for i in 0..10 {
        let (reused, who) = peers::openssl_session(client, vip(), &["-tls1_3"], &file, SessionFile::Offer).unwrap();
        assert!(reused && who == first, "offer {i}: resumed on {first}: {reused} {who}\n{}", tether.log());
    }
}

#[test]
fn open_connections_to_a_failed_backend_are_reset_so_clients_reconnect() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> = (0..2).map(|i| rustls_backend(&topo, i)).collect();
    let farm =
        format!("algorithm = \"round-robin\"\npersistence = []\non_backend_failure = \"reset\"\n{}", health("tcp"));
    let tether = Tether::start(&topo.lb, &config(&topo, &farm, &topo.backends_toml(PORT)));
    let mut held = hold(&topo);
    assert_eq!(held.backend, "b0");
    assert!(held.exchange().is_ok(), "the connection works while b0 is up");
    // b0's answers to the balancer go nowhere: its checks fail, and so would
    // the connection, silently, without a reset.
    topo.backends[0].ns.ip(&format!("route add blackhole {LB_BACKEND_ADDR}/32"));
    wait_for_health(&tether, "b0", "down", flip_deadline() + Duration::from_secs(1));
    let outcome = held.exchange();
    assert!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client is reset: {outcome:?}\n{}",
        tether.log()
    );
    assert!(tether.counters().get(reason::RESET_BACKEND_FAILED) >= 1, "{:?}", tether.counters());
    assert!(tether.log().contains("connections of a failed backend to be reset"), "{}", tether.log());
    // And it reconnects to the healthy backend.
    assert_eq!(peers::rustls_whoami(&topo.clients[0].ns, vip()).unwrap(), "b1");
}
