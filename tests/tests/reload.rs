//! Hot reload (`tether reload`, SIGHUP) with real servers: connections under
//! way survive a new configuration that reweights, adds and removes
//! backends, and a VIP that goes lets its open connections finish; learned
//! sessions keep their backend when the farms and backends are renumbered;
//! an invalid file is refused and the old configuration keeps serving.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use tether_tests::{
    peers::{self, BackendServer, SessionFile},
    tether::Tether,
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};

const PORT: u16 = 443;

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

fn addr(topo: &Topology, i: usize) -> SocketAddr {
    SocketAddr::new(topo.backends[i].addr.into(), PORT)
}

/// A config whose farm `web` has `backends` (index, weight), in that order,
/// after `farms_before` (other farms' TOML, to renumber `web`).
fn config(topo: &Topology, farm: &str, backends: &[(usize, u32)], farms_before: &str) -> String {
    let backends: String = backends
        .iter()
        .map(|(i, w)| format!("\n[[farm.backend]]\nname = \"b{i}\"\naddress = \"{}\"\nweight = {w}\n", addr(topo, *i)))
        .collect();
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         {farms_before}\n[[farm]]\nname = \"web\"\n{farm}\n{backends}",
        topo.pin_path(),
    )
}

fn spread(topo: &Topology, n: usize) -> HashMap<String, usize> {
    let mut answers = HashMap::new();
    for i in 0..n {
        let who = peers::rustls_whoami(&topo.clients[0].ns, vip()).unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
        *answers.entry(who).or_default() += 1;
    }
    answers
}

#[test]
fn a_reload_during_twenty_transfers_breaks_none_and_the_new_spread_shows() {
    let topo = Topology::two_armed(4, 4);
    let _backends: Vec<BackendServer> =
        (0..4).map(|i| BackendServer::rustls(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"))).collect();
    let farm = "algorithm = \"weighted-round-robin\"\npersistence = []";
    let tether = Tether::start(&topo.lb, &config(&topo, farm, &[(0, 1), (1, 1), (2, 1)], ""));
    assert_eq!(spread(&topo, 30), HashMap::from([("b0".into(), 10), ("b1".into(), 10), ("b2".into(), 10)]));

    // b2 leaves, b3 joins, b0 weighs three times b1.
    let next = config(&topo, farm, &[(0, 3), (1, 1), (3, 1)], "");
    let served = std::thread::scope(|s| {
        let transfers: Vec<_> = (0..20)
            .map(|i| {
                let ns = &topo.clients[i % 4].ns;
                s.spawn(move || peers::rustls_echo(ns, vip(), 16 << 20))
            })
            .collect();
        // Every transfer bound (two entries each) before the reload.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tether.flows().len() < 40 {
            assert!(std::time::Instant::now() < deadline, "transfers did not start: {}", tether.flows().len());
            std::thread::sleep(Duration::from_millis(20));
        }
        tether.rewrite_config(&next);
        let said = tether.reload_cli().expect("tether reload");
        assert!(said.contains("reloaded"), "{said}");
        let unfinished = transfers.iter().filter(|t| !t.is_finished()).count();
        assert!(unfinished > 0, "every transfer ended before the reload: the test cannot judge");
        transfers.into_iter().map(|t| t.join().unwrap().expect("a transfer through the reload")).collect::<Vec<_>>()
    });
    assert_eq!(served.len(), 20);
    assert!(served.iter().any(|b| b == "b2"), "some transfers ran on b2, removed under them: {served:?}");
    let after = spread(&topo, 50);
    assert_eq!(after, HashMap::from([("b0".into(), 30), ("b1".into(), 10), ("b3".into(), 10)]), "the new weights");
    let status = tether.status();
    assert!(!status.contains("b2 "), "b2 is gone from the status:\n{status}");

    // SIGHUP does the same: back to three equal backends.
    tether.rewrite_config(&config(&topo, farm, &[(0, 1), (1, 1), (2, 1)], ""));
    tether.signal(libc::SIGHUP);
    wait_for_log(&tether, 2);
    assert_eq!(spread(&topo, 30), HashMap::from([("b0".into(), 10), ("b1".into(), 10), ("b2".into(), 10)]));
}

/// A VIP the reload takes away takes no new connections, but those under
/// way run to their end: their flow entries stay, and so does the
/// address's bit in XDP's filter of owned addresses (`OwnedFilter`), which
/// lets their packets reach the entries.
#[test]
fn transfers_to_a_vip_a_reload_removes_run_to_their_end() {
    let topo = Topology::two_armed(2, 1);
    let _backend = BackendServer::rustls(&topo.backends[0].ns, addr(&topo, 0), "b0");
    let farm = "persistence = []";
    let api = SocketAddr::new(std::net::Ipv4Addr::new(198, 18, 100, 101).into(), PORT);
    let with_api = format!(
        "[[vip]]\nname = \"api\"\naddress = \"{}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n",
        api.ip()
    );
    let tether = Tether::start(&topo.lb, &config(&topo, farm, &[(0, 1)], &with_api));
    std::thread::scope(|s| {
        let transfers: Vec<_> = (0..4)
            .map(|i| {
                let ns = &topo.clients[i % 2].ns;
                s.spawn(move || peers::rustls_echo(ns, api, 32 << 20))
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tether.flows().len() < 8 {
            assert!(std::time::Instant::now() < deadline, "transfers did not start: {}", tether.flows().len());
            std::thread::sleep(Duration::from_millis(20));
        }
        tether.rewrite_config(&config(&topo, farm, &[(0, 1)], ""));
        let said = tether.reload_cli().expect("tether reload");
        assert!(said.contains("reloaded"), "{said}");
        let unfinished = transfers.iter().filter(|t| !t.is_finished()).count();
        assert!(unfinished > 0, "every transfer ended before the reload: the test cannot judge");
        for t in transfers {
            assert_eq!(t.join().unwrap().expect("a transfer through the reload"), "b0");
        }
    });
    assert!(peers::openssl_whoami(&topo.clients[0].ns, api).is_err(), "the removed VIP takes no new connections");
    assert!(peers::rustls_whoami(&topo.clients[0].ns, vip()).is_ok(), "the VIP that stays serves");
}

fn wait_for_log(tether: &Tether, reloads: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tether.log().matches("configuration reloaded").count() < reloads {
        assert!(std::time::Instant::now() < deadline, "no reload logged:\n{}", tether.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn learned_sessions_keep_their_backend_when_a_reload_renumbers_everything() {
    let topo = Topology::two_armed(1, 3);
    let _backends: Vec<BackendServer> =
        (0..3).map(|i| BackendServer::nginx(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"), true)).collect();
    let farm = "algorithm = \"round-robin\"\npersistence = [\"session-id\"]";
    let tether = Tether::start(&topo.lb, &config(&topo, farm, &[(1, 1), (2, 1)], ""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.pem");
    let client = &topo.clients[0].ns;
    let tls12 = ["-tls1_2", "-no_ticket"];
    let (_, first) = peers::openssl_session(client, vip(), &tls12, &file, SessionFile::Save).unwrap();
    assert_eq!(first, "b1");

    // Another farm before `web`, with a VIP of its own; b0 before b1: in
    // config order every id would move.
    let api = SocketAddr::new(std::net::Ipv4Addr::new(198, 18, 100, 101).into(), PORT);
    let other = format!(
        "[[farm]]\nname = \"other\"\n[[farm.backend]]\nname = \"x\"\naddress = \"{}\"\n\n\
         [[vip]]\nname = \"api\"\naddress = \"{}\"\nport = {PORT}\nfarm = \"other\"\nsnat = \"{LB_BACKEND_ADDR}\"\n",
        addr(&topo, 0),
        api.ip()
    );
    tether.rewrite_config(&config(&topo, farm, &[(0, 1), (1, 1), (2, 1)], &other));
    tether.reload_cli().expect("reload");
    for _ in 0..5 {
        let (reused, who) = peers::openssl_session(client, vip(), &tls12, &file, SessionFile::Offer).unwrap();
        assert!(reused && who == "b1", "the session still resumes on b1: {reused} {who}");
    }
    let listed = tether.sessions_cli(&["list"]).unwrap();
    assert!(listed.lines().any(|l| l.starts_with("web") && l.contains("b1")), "{listed}");
    assert_eq!(peers::openssl_whoami(client, api).unwrap(), "b0", "the VIP the reload added serves its farm");

    // The farm and its VIP go again: the session stays, the VIP stops.
    tether.rewrite_config(&config(&topo, farm, &[(0, 1), (1, 1), (2, 1)], ""));
    tether.reload_cli().expect("reload");
    let (reused, who) = peers::openssl_session(client, vip(), &tls12, &file, SessionFile::Offer).unwrap();
    assert!(reused && who == "b1", "{reused} {who}");
    assert!(peers::openssl_whoami(client, api).is_err(), "the removed VIP answers no more");
    assert!(!tether.status().contains("vip api"), "{}", tether.status());
}

#[test]
fn an_invalid_configuration_is_refused_and_the_old_one_keeps_serving() {
    let topo = Topology::two_armed(1, 2);
    let _backends: Vec<BackendServer> =
        (0..2).map(|i| BackendServer::rustls(&topo.backends[i].ns, addr(&topo, i), &format!("b{i}"))).collect();
    let good = config(&topo, "persistence = []", &[(0, 1), (1, 1)], "");
    let tether = Tether::start(&topo.lb, &good);
    let broken = good.replace("farm = \"web\"", "farm = \"nope\"").replace("weight = 1", "weight = 70000");
    tether.rewrite_config(&broken);
    let err = tether.reload_cli().unwrap_err();
    assert!(err.contains("the running configuration stays"), "{err}");
    assert!(
        err.contains("tether.toml:") && err.contains(":10: farm[0].backend[0].weight: 70000 is too large"),
        "errors name the file, line and key: {err}"
    );
    assert!(err.contains("farm `nope` is not defined"), "every error is listed: {err}");
    // The daemon refuses it as well when told by SIGHUP.
    tether.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !tether.log().contains("SIGHUP: the configuration was not reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", tether.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // What cannot change without a restart is refused by name.
    let moved = good.replace(&format!("pin_path = \"{}\"", topo.pin_path()), "pin_path = \"/sys/fs/bpf/elsewhere\"");
    tether.rewrite_config(&moved);
    let err = tether.reload_cli().unwrap_err();
    assert!(err.contains("daemon.pin_path") && err.contains("restart"), "{err}");
    assert_eq!(spread(&topo, 10), HashMap::from([("b0".into(), 5), ("b1".into(), 5)]));
}
