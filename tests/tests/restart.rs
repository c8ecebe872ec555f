//! Restart survival: the daemon's maps and links are pinned, so a daemon
//! killed with SIGKILL leaves the data path forwarding, and the next one
//! adopts what it left: open connections carry on throughout, learned
//! sessions stay. Pins of an incompatible data path are refused, not reused.

use std::{
    net::SocketAddr,
    sync::{Arc, Barrier},
};

use tether_tests::{
    peers::{self, BackendServer, SessionFile},
    tether::{Tether, tether_bin},
    topology::{LB_BACKEND_ADDR, LB_BACKEND_IF, LB_CLIENT_IF, Topology, VIP},
};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const PORT: u16 = 443;
const TRANSFERS: usize = 20;
/// Bytes each transfer sends (and reads back) in each of its three phases:
/// before the kill, while no daemon runs, after the restart.
const PHASE: usize = 4 << 20;
const CHUNK: usize = 1 << 16;

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

fn config(topo: &Topology) -> String {
    format!(
        "[daemon]\ninterfaces = [\"{LB_CLIENT_IF}\", \"{LB_BACKEND_IF}\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nfarm = \"web\"\nsnat = \"{LB_BACKEND_ADDR}\"\n\n\
         [[farm]]\nname = \"web\"\nalgorithm = \"round-robin\"\npersistence = [\"session-id\"]\n{}",
        topo.pin_path(),
        topo.backends_toml(PORT)
    )
}

/// One echo connection through the VIP in three phases, each sending
/// `PHASE` bytes and checking every byte that comes back; `phases` is
/// waited on after the first and second (also after a failure, so that the
/// test fails instead of hanging). Returns the backend's name.
async fn paced_echo(phases: Arc<Barrier>) -> anyhow::Result<String> {
    let mut waited = 0;
    let outcome = echo_in_phases(&phases, &mut waited).await;
    for _ in waited..2 {
        let phases = phases.clone();
        let _ = tokio::task::spawn_blocking(move || phases.wait()).await;
    }
    outcome
}

async fn echo_in_phases(phases: &Arc<Barrier>, waited: &mut usize) -> anyhow::Result<String> {
    let tcp = tokio::net::TcpStream::connect(vip()).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(peers::insecure_client_config()));
    let tls = connector.connect(rustls::pki_types::ServerName::IpAddress(VIP.into()), tcp).await?;
    let mut tls = tokio::io::BufReader::new(tls);
    let mut chunk = vec![0u8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let mut name = String::new();
    let mut n = 0;
    for phase in 0..3 {
        for _ in 0..PHASE / CHUNK {
            peers::fill_chunk(&mut chunk, n);
            tls.get_mut().write_all(&chunk).await?;
            if name.is_empty() {
                tls.read_line(&mut name).await?;
            }
            tls.read_exact(&mut back).await?;
            anyhow::ensure!(back == chunk, "chunk {n} differs after the round trip (phase {phase})");
            n += 1;
        }
        if phase < 2 {
            let phases = phases.clone();
            tokio::task::spawn_blocking(move || phases.wait()).await?;
            *waited += 1;
        }
    }
    tls.get_mut().shutdown().await?;
    Ok(name.trim().to_owned())
}

#[test]
fn a_killed_daemon_leaves_connections_running_and_the_next_one_adopts_them() {
    let topo = Topology::two_armed(4, 3);
    let _backends: Vec<BackendServer> = (0..3)
        .map(|i| {
            BackendServer::rustls(
                &topo.backends[i].ns,
                SocketAddr::new(topo.backends[i].addr.into(), PORT),
                &format!("b{i}"),
            )
        })
        .collect();
    let mut tether = Tether::start(&topo.lb, &config(&topo));
    // A TLS 1.2 session learned before the kill (rustls caches session IDs).
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session.pem");
    let tls12 = ["-tls1_2", "-no_ticket"];
    let client = &topo.clients[0].ns;
    let (_, owner) = peers::openssl_session(client, vip(), &tls12, &session, SessionFile::Save).unwrap();
    let learned = tether.sessions().len();
    assert_eq!(learned, 1, "{:?}", tether.sessions());

    let phases = Arc::new(Barrier::new(TRANSFERS + 1));
    let served = std::thread::scope(|s| {
        let transfers: Vec<_> = (0..TRANSFERS)
            .map(|i| {
                let (ns, phases) = (&topo.clients[i % 4].ns, phases.clone());
                s.spawn(move || {
                    ns.enter(|| {
                        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                        rt.block_on(paced_echo(phases))
                    })
                })
            })
            .collect();
        // Every transfer has moved its first phase through the first daemon.
        phases.wait();
        tether.kill();
        // With no daemon at all, the second phase goes through.
        phases.wait();
        let first_log = tether.restart(&topo.lb);
        assert!(!first_log.contains("shutting down"), "the first daemon was killed, not stopped:\n{first_log}");
        transfers
            .into_iter()
            .map(|t| t.join().unwrap().expect("a transfer across the kill and restart"))
            .collect::<Vec<_>>()
    });
    assert_eq!(served.len(), TRANSFERS);
    assert!(tether.log().contains("adopted the pinned data path"), "{}", tether.log());

    // The session learned by the first daemon is the second one's.
    assert_eq!(tether.sessions().len(), learned, "{:?}", tether.sessions());
    for _ in 0..5 {
        let (reused, who) = peers::openssl_session(client, vip(), &tls12, &session, SessionFile::Offer).unwrap();
        assert!(reused && who == owner, "the session resumes on {owner}: {reused} {who}");
    }
    // And a clean stop after an adoption still detaches and removes the pins.
    let status = tether.stop();
    assert!(status.success(), "{status}\n{}", tether.log());
    assert!(!tether.instance_dir().exists(), "pins left at {}", tether.instance_dir().display());
}

#[test]
fn pins_an_incompatible_data_path_left_are_refused_and_kept() {
    let topo = Topology::two_armed(1, 1);
    let dir = lb_user::pins::instance_dir(std::path::Path::new(&topo.pin_path()), "default");
    std::fs::create_dir_all(&dir).unwrap();
    // A map of another layout where this version keeps its counters: the
    // test object's one-entry u32 array, pinned as `STATS`.
    let mut other = aya::Ebpf::load(lb_user::TEST_OBJECT).unwrap();
    let map = other.map_mut(lb_common::maps::LOSS_PERMILLE_MAP).unwrap();
    map.pin(dir.join(lb_common::maps::STATS_MAP)).unwrap();
    drop(other);
    // And a session filter whose header was never written (as no daemon of
    // this version leaves one): its size alone does not say its layout.
    let mut unwritten = aya::Ebpf::load(lb_user::EBPF_OBJECT).unwrap();
    let filter = unwritten.map_mut(lb_common::maps::SESSION_FILTER_MAP).unwrap();
    filter.pin(dir.join(lb_common::maps::SESSION_FILTER_MAP)).unwrap();
    drop(unwritten);
    let config_dir = tempfile::tempdir().unwrap();
    let path = config_dir.path().join("t.toml");
    let text = config(&topo).replacen(
        "[daemon]\n",
        &format!("[daemon]\ncontrol_socket = \"{}\"\n", config_dir.path().join("c.sock").display()),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = topo.lb.command(tether_bin()).args(["run", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tether must not adopt it:\n{stderr}");
    assert!(
        stderr.contains("was made by a data path this tether cannot use")
            && stderr.contains("`STATS`: the pinned map's value size is 4, this data path's is 8")
            && stderr.contains("`SESSION_FILTER`: the pinned filter has no header"),
        "{stderr}"
    );
    assert!(dir.join(lb_common::maps::STATS_MAP).exists(), "the other data path's pin is left alone");
    assert!(dir.join(lb_common::maps::SESSION_FILTER_MAP).exists(), "and so is the filter's");
    std::fs::remove_dir_all(topo.pin_path()).unwrap();
    // Nothing attached.
    let shown = topo.lb.command("ip").args(["link", "show", LB_CLIENT_IF]).output().unwrap();
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("xdp"), "{}", String::from_utf8_lossy(&shown.stdout));
}
