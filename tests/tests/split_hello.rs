//! ClientHellos that span segments, end to end (DESIGN.md §2 step 3b): a
//! client that writes a recorded Chromium ClientHello (1,952 bytes, its
//! server name 564 bytes in) in two to five segments, cut anywhere, through
//! a `tls` VIP whose farm keeps clients by server name. Every connection
//! must reach the name's backend (which only the whole hello can tell),
//! the backend must receive the exact bytes, and no segment may wait for a
//! retransmission: the client's socket reports none.

use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use lb_common::reason;
use tether_tests::{
    peers::BackendServer,
    raw_client::{RawClient, mac_of},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;
const BACKENDS: usize = 3;

/// Held by the test that counts the client's retransmissions and by the one
/// that runs headless Chromium, so that they do not run side by side. XDP
/// holds a hello's segments unacknowledged, and the kernel sends a tail
/// loss probe after two smoothed round trips plus two jiffies (a few ms in
/// namespaces) without an acknowledgement, so a client thread held up that
/// long between its writes sends a segment again. One CI run failed so, on
/// a 5-segment cut, with this test beside Chromium's on the 2-core VM; the
/// same plans passed in three runs alone. (That Chromium held it up is my
/// reading, not measured.)
static NOT_BESIDE_CHROMIUM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A `tls` VIP, round-robin, the farm's `persistence` and anything else
/// (`farm_extra`) in the farm, `daemon_extra` in the daemon's table.
fn config(topo: &Topology, persistence: &str, farm_extra: &str, daemon_extra: &str) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n{daemon_extra}\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"round-robin\"\npersistence = [{persistence}]\n{farm_extra}\n{}",
        topo.pin_path(),
        topo.backends_toml(PORT)
    )
}

/// `tether-testsrv --tcp` on each backend, named b0, b1, ...: it greets
/// with its name and echoes what it receives.
fn plain_backends(topo: &Topology) -> Vec<BackendServer> {
    topo.backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendServer::plain_tcp(&b.ns, SocketAddr::new(b.addr.into(), PORT), &format!("b{i}")))
        .collect()
}

fn recorded_hello() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/chromium-nginx-1.client");
    let hello = std::fs::read(path).expect("the recorded Chromium ClientHello");
    assert_eq!(hello.len(), 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]])), "one whole record");
    hello
}

/// What one connection saw.
struct Answer {
    /// The backend's name, from its greeting.
    backend: String,
    /// The bytes the backend echoed: all it received.
    echoed: Vec<u8>,
    /// Segments the client's kernel sent again (`tcpi_total_retrans`).
    retransmitted: u32,
    /// Segments the hello went in: a write longer than the connection's MSS
    /// is cut by the kernel too.
    segments: usize,
}

/// Connects to the VIP and writes `hello` cut at `cuts`, one segment a
/// write (no Nagle, a pause between writes so that none coalesce); then
/// reads the plain backend's greeting and its echo of the hello.
fn send_cut(hello: &[u8], cuts: &[usize]) -> std::io::Result<Answer> {
    // Long enough for a lost SYN or SYN-ACK to be sent again twice (lossy links).
    let mut stream = TcpStream::connect_timeout(&SocketAddr::new(VIP.into(), PORT), Duration::from_secs(15))?;
    stream.set_nodelay(true)?;
    // Long enough for a lossy link's repeated losses: a client whose SYN-ACK
    // came late measures a long round trip, and its timers grow with it.
    stream.set_read_timeout(Some(Duration::from_secs(40)))?;
    let mss = tcp_info(&stream)?.tcpi_snd_mss as usize;
    let (mut start, mut segments) = (0, 0);
    for &cut in cuts.iter().chain([hello.len()].iter()) {
        stream.write_all(&hello[start..cut])?;
        segments += (cut - start).div_ceil(mss);
        start = cut;
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut greeting = String::new();
    reader.read_line(&mut greeting)?;
    let mut echoed = vec![0u8; hello.len()];
    reader.read_exact(&mut echoed)?;
    let backend = greeting.split_whitespace().next().unwrap_or_default().to_owned();
    Ok(Answer { backend, echoed, retransmitted: tcp_info(&stream)?.tcpi_total_retrans, segments })
}

fn tcp_info(stream: &TcpStream) -> std::io::Result<libc::tcp_info> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: tcp_info is plain data; getsockopt fills at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as u32;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

/// A small deterministic generator (xorshift64*), so a failing cut can be
/// reproduced from the test's output.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % below
    }

    /// 1-4 distinct ascending cuts inside `len`: 2-5 segments.
    fn random(&mut self, len: usize) -> Vec<usize> {
        let want = 1 + self.next(4);
        let mut cuts: Vec<usize> = Vec::new();
        while cuts.len() < want {
            let cut = 1 + self.next(len - 1);
            if !cuts.contains(&cut) {
                cuts.push(cut);
            }
        }
        cuts.sort_unstable();
        cuts
    }
}

#[test]
fn a_recorded_chromium_hello_cut_anywhere_reaches_its_backend_whole_without_a_retransmission() {
    let _alone = NOT_BESIDE_CHROMIUM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let topo = Topology::two_armed(1, BACKENDS);
    let _servers = plain_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "\"sni\"", "", ""));
    let hello = recorded_hello();
    let client = &topo.clients[0].ns;

    // The first connection, the hello in one write (two segments at the
    // client's MSS): round-robin picks the backend, and `sni` remembers it.
    let first = client.enter(|| send_cut(&hello, &[])).unwrap_or_else(|e| panic!("first: {e}\n{}", tether.log()));
    assert_eq!(first.echoed, hello);

    // Cut at every offset from 1 to 60 (the record header itself at 1-4),
    // then at random offsets into two to five segments.
    let mut plans: Vec<Vec<usize>> = (1..=60).map(|cut| vec![cut]).collect();
    let mut random = Cuts(0x7e7e_7e7e_2026_1201);
    plans.extend((0..30).map(|_| random.random(hello.len())));
    let before = tether.counters();
    let mut held = 0;
    for cuts in &plans {
        let answer = client.enter(|| send_cut(&hello, cuts)).unwrap_or_else(|e| {
            panic!("cuts {cuts:?}: {e}\n{:?}\n{}", tether.counters(), tether.log());
        });
        assert_eq!(answer.backend, first.backend, "cuts {cuts:?}: the server name's backend");
        assert!(answer.echoed == hello, "cuts {cuts:?}: the backend received other bytes");
        assert_eq!(answer.retransmitted, 0, "cuts {cuts:?}: a segment was sent again: {:?}", tether.counters());
        held += answer.segments - 1;
    }
    let after = tether.counters();
    let moved = |r: u32| after.get(r) - before.get(r);
    assert_eq!(moved(reason::TLS_HELLO_PART), held as u64, "every segment but a hello's last was held: {after:?}");
    assert_eq!(moved(reason::TLS_BIND_PERSISTED), plans.len() as u64, "{after:?}");
    assert_eq!(
        (moved(reason::TLS_HELLO_OUT_OF_ORDER), moved(reason::TLS_HELLO_TOO_LONG), moved(reason::BACKEND_SYN_RESENT)),
        (0, 0, 0),
        "{after:?}"
    );
}

/// The address the raw client sends from: on the clients' subnet, owned by
/// no interface (the balancer knows it by a static neighbour entry).
const RAW_CLIENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 250);
/// A piece of the hello the raw client sends fits one 1500-byte frame.
const MAX_PIECE: usize = 1_400;

/// The MACs a raw client on client 0 sends between (its interface's, the
/// balancer's), the balancer told where `RAW_CLIENT` is.
fn raw_client_macs(topo: &Topology) -> ([u8; 6], [u8; 6]) {
    let client_mac = mac_of(&topo.clients[0].ns, "eth0");
    let mac_text: Vec<String> = client_mac.iter().map(|b| format!("{b:02x}")).collect();
    topo.lb.ip(&format!("neigh replace {RAW_CLIENT} lladdr {} dev {LB_CLIENT_IF} nud permanent", mac_text.join(":")));
    (client_mac, mac_of(&topo.lb, LB_CLIENT_IF))
}

/// `(offset, length)` of each piece of `len` bytes cut at `cuts`.
fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let ends: Vec<usize> = cuts.iter().copied().chain([len]).collect();
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let piece = (start, end - start);
            start = end;
            piece
        })
        .collect()
}

/// The same recorded hello from a raw client that sends its segments out of
/// order (and never sends one again), cut at every offset from 1 to 60 and
/// at random into 3-5 pieces: a later segment before the first,
/// which XDP cannot check without the first (the cookie is bound to the
/// client's ISN), is kept by the daemon and run through XDP again once the
/// first has come. Every connection reaches the name's backend, which
/// acknowledges and echoes the exact bytes; had any segment been lost, the
/// client, which does not retransmit, would have waited in vain.
#[test]
fn a_hello_whose_segments_arrive_out_of_order_reaches_its_backend_whole_without_a_retransmission() {
    let topo = Topology::two_armed(1, BACKENDS);
    let _servers = plain_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "\"sni\"", "", ""));
    let hello = recorded_hello();
    let client = &topo.clients[0].ns;
    let first = client.enter(|| send_cut(&hello, &[])).unwrap_or_else(|e| panic!("first: {e}\n{}", tether.log()));

    let (client_mac, gateway_mac) = raw_client_macs(&topo);

    // (cuts, the order the pieces go in). The first plan is in order: the
    // control, which needs no early segment.
    let mut plans: Vec<(Vec<usize>, Vec<usize>)> = vec![(vec![1_000], vec![0, 1])];
    for cut in [600, 1_000] {
        plans.push((vec![cut], vec![1, 0]));
    }
    // The first piece cut at every offset from 1 to 60 (the record header
    // at 1-4) and sent second; for the header cuts, also last, or all
    // reversed.
    for cut in 1..=60 {
        plans.push((vec![cut, 1_000], vec![1, 0, 2]));
        if cut < 5 {
            plans.push((vec![cut, 1_000], vec![2, 1, 0]));
            plans.push((vec![cut, 1_000], vec![1, 2, 0]));
        }
    }
    // Random cuts into three to five pieces, sent in a random order.
    let mut random = Cuts(0x5eed_0f0d_2026_1201);
    let fixed = plans.len();
    while plans.len() < fixed + 30 {
        let cuts = random.random(hello.len());
        let parts = pieces(hello.len(), &cuts);
        if parts.len() < 3 || parts.iter().any(|&(_, len)| len > MAX_PIECE) {
            continue;
        }
        let mut order: Vec<usize> = (0..parts.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, random.next(i + 1));
        }
        if order[0] != 0 {
            plans.push((cuts, order));
        }
    }

    let greeting = format!("{} {LB_BACKEND_ADDR}\n", first.backend).len();
    let before = tether.counters();
    let answers = client.enter(|| {
        let raw = RawClient::open("eth0", RAW_CLIENT, client_mac, gateway_mac).expect("a packet socket");
        plans
            .iter()
            .enumerate()
            .map(|(i, (cuts, order))| {
                let parts = pieces(hello.len(), cuts);
                let sent: Vec<(usize, usize)> = order.iter().map(|&k| parts[k]).collect();
                let mut conn = raw.connect(50_000 + i as u16, 0x1000_0000 + 7_777 * i as u32, (VIP, PORT))?;
                conn.send_pieces(&hello, &sent)?;
                conn.read(greeting + hello.len(), Duration::from_secs(3))
            })
            .collect::<Vec<_>>()
    });
    let after = tether.counters();
    let moved = |r: u32| after.get(r) - before.get(r);
    let mut early = 0;
    for (i, ((cuts, order), answer)) in plans.iter().zip(answers).enumerate() {
        let port = 50_000 + i;
        let got = answer
            .unwrap_or_else(|e| panic!("port {port} cuts {cuts:?} order {order:?}: {e}\n{after:?}\n{}", tether.log()));
        let (name, echoed) = got.data.split_at(greeting.min(got.data.len()));
        assert!(
            echoed == hello,
            "port {port} cuts {cuts:?} order {order:?}: {} of {} bytes echoed, {} received (acknowledged {})\n{after:?}\n{}",
            echoed.len(),
            hello.len(),
            got.data.len(),
            got.acknowledged,
            tether.log()
        );
        assert_eq!(got.acknowledged as usize, hello.len(), "cuts {cuts:?} order {order:?}: acknowledged");
        assert!(name.starts_with(first.backend.as_bytes()), "cuts {cuts:?} order {order:?}: the server name's backend");
        early += order.iter().position(|&k| k == 0).expect("the first piece is sent");
    }
    assert_eq!(moved(reason::TLS_HELLO_EARLY), early as u64, "every piece sent before the first: {after:?}");
    assert_eq!(moved(reason::TLS_BIND_PERSISTED), plans.len() as u64, "{after:?}");
}

/// Five requests after the page, each on a new connection (the backends
/// close every connection after one response): the browser resumes its
/// TLS session for each, and each answer names its backend.
const PAGE: &str = "<html><body><pre id=out>NAME</pre><script>\n\
    (async function () {\n\
      var out = document.getElementById('out');\n\
      for (var i = 1; i <= 5; i++) {\n\
        var r = await fetch('/whoami?' + i, { cache: 'no-store' });\n\
        out.textContent += ' ' + (await r.text()).trim();\n\
      }\n\
      out.textContent += ' done';\n\
    })();\n\
    </script></body></html>";

/// Headless Chromium (Debian's, whose ClientHellos carry a post-quantum key
/// share: about 1.8 KB, two segments) loads a page through tether from
/// three nginx backends, then makes five more requests on new connections;
/// the resumptions among them land on the backend that issued their ticket,
/// whose key name tether learned from its TLS health checks.
#[test]
fn headless_chromium_loads_a_page_and_its_resumptions_stay_on_its_backend() {
    let _alone = NOT_BESIDE_CHROMIUM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let topo = Topology::two_armed(1, BACKENDS);
    let servers: Vec<BackendServer> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let name = format!("b{i}");
            BackendServer::nginx_page(&b.ns, SocketAddr::new(b.addr.into(), PORT), &name, &PAGE.replace("NAME", &name))
        })
        .collect();
    let check = "health = { kind = \"tls\", interval = \"1s\", timeout = \"900ms\", rise = 2, fall = 3 }";
    let tether = Tether::start(&topo.lb, &config(&topo, "\"ticket-key\"", check, ""));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tether.log().matches("ticket key name learned from the health check").count() < BACKENDS {
        assert!(std::time::Instant::now() < deadline, "the checks learned no key names\n{}", tether.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let profile = tempfile::tempdir().expect("tempdir");
    let before = tether.counters();
    let out = topo.clients[0]
        .ns
        .command("timeout")
        .args(["60", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--ignore-certificate-errors"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=20000", "--dump-dom", &format!("https://{VIP}/")])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!("no answers in the page ({}): {dom}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
        })
        .split_whitespace()
        .collect();
    assert_eq!(answers.len(), 7, "the page and five requests, then done: {answers:?}");
    assert_eq!(answers[6], "done");
    // Which session Chromium offers for which request varies from run to
    // run, and whether it offers one at all: on a loaded machine a
    // connection can start before the ticket of the one before it arrived
    // (CI runs have had one or two of requests 1-5 as full handshakes, each
    // on the backend the algorithm chose). What must hold is tether's part:
    // every ticket Chromium offered was looked up and found its backend
    // (no miss), every connection placed by persistence is one nginx
    // resumed (nginx logs `r`; each backend has its own ticket key, so a
    // resumption sent to another backend would be a full handshake there),
    // and the other way round; and most of the six connections after the
    // page's resumed, so the check is not empty.
    let logs: Vec<Vec<String>> = servers.iter().map(BackendServer::access_log).collect();
    let resumed: Vec<&String> = logs.iter().flatten().filter(|line| line.starts_with("r ")).collect();
    assert!(resumed.len() >= 4, "most connections after the page's resumed: {logs:?}\n{answers:?}");
    let stats = tether.sessions_cli(&["stats"]).expect("session stats");
    let row = stats
        .lines()
        .find(|l| l.starts_with("web ") && l.contains("ticket-key"))
        .unwrap_or_else(|| panic!("no ticket-key row:\n{stats}"));
    // entries, lookups, hits, misses, learns, expiries, evictions, unusable
    let numbers: Vec<u64> = row.split_whitespace().skip(2).map(|n| n.parse().expect("a count")).collect();
    let (lookups, hits, misses) = (numbers[1], numbers[2], numbers[3]);
    assert_eq!(misses, 0, "every offered ticket found its backend:\n{stats}\n{logs:?}");
    assert_eq!(hits, lookups, "{stats}");
    let after = tether.counters();
    let moved = |r: u32| after.get(r) - before.get(r);
    assert_eq!(
        moved(reason::TLS_BIND_PERSISTED),
        resumed.len() as u64,
        "every resumption placed by persistence, every placement resumed: {logs:?}\n{after:?}"
    );
    assert_eq!(hits, resumed.len() as u64, "{stats}\n{logs:?}");
    assert!(moved(reason::TLS_HELLO_PART) >= 6, "Chromium's hellos spanned segments: {after:?}");
    assert_eq!(moved(reason::TLS_HELLO_TOO_LONG), 0, "{after:?}");
}

/// Connects and writes `hello` in one write, then reads the plain backend's
/// greeting and its echo.
fn send_whole(hello: &[u8]) -> std::io::Result<Answer> {
    send_cut(hello, &[])
}

/// The slow path with the daemon stopped: a burst of 8 KB hellos fills the
/// ring between XDP and the daemon; when the daemon runs again every
/// connection completes (the client's retransmissions bring back what the
/// full ring dropped), and the counters say how many segments waited.
#[test]
fn hellos_the_full_slow_path_dropped_complete_once_the_daemon_runs_again() {
    const CLIENTS: usize = 120;
    let topo = Topology::two_armed(1, BACKENDS);
    let _servers = plain_backends(&topo);
    // Room for the clients' backed-off retransmissions after the pause.
    let tether = Tether::start(&topo.lb, &config(&topo, "", "", "[daemon.timeouts]\nconnect = \"20s\""));
    let hello = tether_tests::tls_msg::padded_client_hello(&[], 8_000, None);
    assert!(hello.len() > lb_common::maps::STASH_MAX);

    tether.signal(libc::SIGSTOP);
    let before = tether.counters();
    let answers = topo.clients[0].ns.enter(|| {
        std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS).map(|_| s.spawn(|| send_whole(&hello))).collect();
            // Every client has sent its hello into the stopped slow path.
            std::thread::sleep(Duration::from_millis(1_500));
            tether.signal(libc::SIGCONT);
            clients.into_iter().map(|c| c.join().expect("client thread")).collect::<Vec<_>>()
        })
    });
    let after = tether.counters();
    let moved = |r: u32| after.get(r) - before.get(r);
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap_or_else(|e| panic!("client {i}: {e}\n{after:?}\n{}", tether.log()));
        assert!(answer.echoed == hello, "client {i}: the backend received other bytes");
    }
    let waited = moved(reason::DROP_SLOW_PATH_FULL);
    assert!(waited > 0, "the ring never filled: {after:?}");
    eprintln!("{waited} segments waited for their retransmission; {} went through", moved(reason::TLS_HELLO_SLOW_PATH));
}

/// A backend whose first SYN is lost, behind a hello the slow path has
/// acknowledged to its client (which so never sends its first segment
/// again, the one XDP answers with the SYN once more): the daemon sends the
/// backend SYN again after `SYN_RETRY`, and the connection completes.
#[test]
fn the_daemon_sends_an_unanswered_backend_syn_again() {
    let mut topo = Topology::two_armed(1, 1);
    let _servers = plain_backends(&topo);
    // tether's own SYN, from its SNAT range: not the daemon's neighbour
    // warm-up, which connects from below it.
    topo.drop_first_syns_to_backend(0, 1, lb_user::config::DEFAULT_SNAT_PORTS.0);
    let tether = Tether::start(&topo.lb, &config(&topo, "", "", ""));
    let hello = tether_tests::tls_msg::padded_client_hello(&[], 8_000, None);
    let started = std::time::Instant::now();
    let answer = topo.clients[0]
        .ns
        .enter(|| send_whole(&hello))
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tether.counters(), tether.log()));
    let took = started.elapsed();
    assert!(answer.echoed == hello, "the backend received other bytes");
    let retry = lb_user::pending::SYN_RETRY;
    assert!(took >= retry && took < retry * 3, "answered after {took:?}");
    assert!(tether.log().contains("backend SYNs unanswered for a second sent again"), "{}", tether.log());
    assert!(tether.counters().get(reason::BACKEND_SYN_RESENT) >= 1, "{:?}", tether.counters());
}

/// A slow-path hello that cannot be bound (its farm's only backend
/// disabled): the client, told its hello arrived, gets an RST from the
/// daemon at the connect timeout rather than waiting for its own.
#[test]
fn a_slow_path_hello_that_finds_no_backend_gets_its_client_reset_at_the_connect_timeout() {
    let topo = Topology::two_armed(1, 1);
    let _servers = plain_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "", "", "[daemon.timeouts]\nconnect = \"2s\""));
    tether.backend_cli(&["disable", "web", "b0"]).expect("disable b0");
    let hello = tether_tests::tls_msg::padded_client_hello(&[], 8_000, None);
    let started = std::time::Instant::now();
    let outcome = topo.clients[0].ns.enter(|| send_whole(&hello));
    let waited = started.elapsed();
    assert!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {:?} after {waited:?}: {:?}",
        outcome.as_ref().map(|a| a.backend.clone()),
        tether.counters()
    );
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(6), "reset after {waited:?}");
    assert!(tether.counters().get(reason::DROP_NO_BACKEND) >= 1, "{:?}", tether.counters());
}

/// Two-segment hellos over a client link that loses 5% of frames each way:
/// every connection completes intact (later, through retransmissions),
/// whichever of its segments, SYN, SYN-ACK or acknowledgements were lost:
/// a lost first segment leaves the second early (kept by the daemon until
/// the first comes again), a lost second one sends the hello to the slow
/// path with the first's retransmission, a lost acknowledgement of the
/// slow path's is sent again.
#[test]
fn split_hellos_complete_over_a_lossy_client_link() {
    const CLIENTS: usize = 80;
    let mut topo = Topology::two_armed(1, BACKENDS);
    let _servers = plain_backends(&topo);
    let tether = Tether::start(&topo.lb, &config(&topo, "\"sni\"", "", "[daemon.timeouts]\nconnect = \"20s\""));
    let hello = recorded_hello();
    topo.make_client_link_lossy(0, 50);
    let client = &topo.clients[0].ns;
    let retransmitted = client.tcp_retransmitted();
    let before = tether.counters();
    let started = std::time::Instant::now();
    let answers = client.enter(|| {
        std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS).map(|_| s.spawn(|| send_whole(&hello))).collect();
            clients.into_iter().map(|c| c.join().expect("client thread")).collect::<Vec<_>>()
        })
    });
    let took = started.elapsed();
    let after = tether.counters();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap_or_else(|e| panic!("client {i}: {e}\n{after:?}\n{}", tether.log()));
        assert!(answer.echoed == hello, "client {i}: the backend received other bytes");
    }
    let retransmitted = client.tcp_retransmitted() - retransmitted;
    assert!(retransmitted > 0, "the loss was not real");
    let moved = |r: u32| after.get(r) - before.get(r);
    eprintln!(
        "{CLIENTS} connections in {took:?}, {retransmitted} client retransmissions; early {}, out of order {}, slow path {}",
        moved(reason::TLS_HELLO_EARLY),
        moved(reason::TLS_HELLO_OUT_OF_ORDER),
        moved(reason::TLS_HELLO_SLOW_PATH)
    );
}

/// A slow-path connection that its client resets while the backend leg
/// opens (tether's first SYN to the backend lost), then a new connection on
/// the same tuple (a reset leaves the port no TIME_WAIT, so clients reuse it
/// at once): the new connection's hello is its own, not taken for a part of
/// the old one's, and reaches the backend whole.
#[test]
fn a_new_connection_on_the_tuple_of_a_reset_slow_path_one_gets_its_hello_through() {
    const RAW_PORT: u16 = 45_000;
    let mut topo = Topology::two_armed(1, 1);
    let _servers = plain_backends(&topo);
    topo.drop_first_syns_to_backend(0, 1, lb_user::config::DEFAULT_SNAT_PORTS.0);
    let tether = Tether::start(&topo.lb, &config(&topo, "", "", ""));
    let hello = tether_tests::tls_msg::padded_client_hello(&[], 8_000, None);
    let pieces: Vec<(usize, usize)> =
        (0..hello.len()).step_by(MAX_PIECE).map(|at| (at, MAX_PIECE.min(hello.len() - at))).collect();
    let (client_mac, gateway_mac) = raw_client_macs(&topo);
    let greeting = format!("b0 {LB_BACKEND_ADDR}\n").len();
    let got = topo.clients[0].ns.enter(|| -> std::io::Result<tether_tests::raw_client::Received> {
        let raw = RawClient::open("eth0", RAW_CLIENT, client_mac, gateway_mac)?;
        let mut first = raw.connect(RAW_PORT, 1_000, (VIP, PORT))?;
        first.send_pieces(&hello, &pieces)?;
        // Decided and bound; its backend SYN is lost, so the leg waits for
        // the daemon's retry. The client gives up on it: an RST.
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        std::thread::sleep(Duration::from_millis(50));
        let mut second = raw.connect(RAW_PORT, 900_000, (VIP, PORT))?;
        second.send_pieces(&hello, &pieces)?;
        second.read(greeting + hello.len(), Duration::from_secs(5))
    });
    let got = got.unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tether.counters(), tether.log()));
    assert!(
        got.data.len() == greeting + hello.len() && got.data[greeting..] == hello[..],
        "{} bytes received of {}\n{:?}\n{}",
        got.data.len(),
        greeting + hello.len(),
        tether.counters(),
        tether.log()
    );
    assert_eq!(tether.counters().get(reason::TLS_BIND), 2, "both connections bound: {:?}", tether.counters());
}
