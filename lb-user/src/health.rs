//! Health checks: one task per backend of every farm that has a `health`
//! table. `tcp` connects; `tls` completes a TLS handshake (rustls; the
//! certificate is not verified: the check asks whether the backend serves
//! TLS, not who it is). `rise` successes in a row bring a down backend up,
//! `fall` failures in a row take an up one down; only those flips are
//! reported (and logged).
//!
//! The `tls` check also learns the backend's ticket key name (DESIGN.md §3,
//! `ticket-key`): rustls keeps the ticket the backend issued, the next check
//! offers it for resumption, and the key name is read back from that
//! ClientHello (the check's own bytes, parsed by `lb_common::tls`), since
//! rustls does not hand tickets out and TLS 1.3 sends them encrypted.
//!
//! Connections come from a source port below the SNAT range
//! (`neighbors::own_port`), so they never collide with a flow of the data
//! path, and they keep the backend's neighbour entry fresh on the way.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf},
    net::{TcpSocket, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    config::{Config, HealthCheck, HealthKind},
    farm::{Health, Runtime},
};

/// What a check task tells the daemon's main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
/// `farm` and `backend` index the configuration the checks were started
/// for, whose reload count is `generation`.
pub enum Report {
    /// A backend's health changed (after `rise` or `fall` checks in a row).
    Flip { generation: u64, farm: usize, backend: usize, health: Health, why: String },
    /// The key name of the ticket a check offered: the backend issued it.
    KeyName { generation: u64, farm: usize, backend: usize, name: [u8; lb_common::persist::KEY_NAME_LEN] },
}

impl Report {
    pub fn generation(&self) -> u64 {
        match self {
            Report::Flip { generation, .. } | Report::KeyName { generation, .. } => *generation,
        }
    }
}

/// After a TLS handshake, how long the check waits for the backend's TLS 1.3
/// tickets, which arrive after the handshake (capped by the check's timeout).
const TICKET_WAIT: Duration = Duration::from_millis(200);

/// `rise` / `fall` bookkeeping for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    pub health: Health,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Verdicts {
    /// Starts at `health` (`Up` for a new backend, see `farm::Health`).
    pub fn new(health: Health, rise: u32, fall: u32) -> Verdicts {
        Verdicts { health, streak: 0, rise: rise.max(1), fall: fall.max(1) }
    }

    /// Records one check; the new health if this check flipped it.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let (agrees, needed, other) = match self.health {
            Health::Up => (ok, self.fall, Health::Down),
            Health::Down => (!ok, self.rise, Health::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.health = other;
        Some(other)
    }
}

/// The running checks; dropping this stops them.
pub struct Checks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a check task for every backend of every farm with a `health`
/// table, each from the health `runtime` gives it; reports go to `reports`
/// marked with `generation`.
pub fn start(config: &Config, runtime: &Runtime, generation: u64, reports: mpsc::Sender<Report>) -> Checks {
    let tls = Arc::new(tls_client_config());
    let mut tasks = Vec::new();
    let mut n = 0u32;
    for (farm_id, farm) in config.farms.iter().enumerate() {
        let Some(check) = &farm.health else { continue };
        for (j, backend) in farm.backends.iter().enumerate() {
            let watch = Watch {
                generation,
                health: runtime.farms[farm_id][j].health,
                farm: farm_id,
                backend: j,
                address: backend.address,
                check: check.clone(),
                snat_ports: config.daemon.snat_ports,
                // Each backend's checks use their own stretch of ports.
                port_seed: n.wrapping_mul(7919),
                tls: tls.clone(),
            };
            n += 1;
            let reports = reports.clone();
            tasks.push(tokio::spawn(watch.run(reports)));
        }
    }
    Checks { tasks }
}

struct Watch {
    generation: u64,
    health: Health,
    farm: usize,
    backend: usize,
    address: SocketAddr,
    check: HealthCheck,
    snat_ports: (u16, u16),
    port_seed: u32,
    tls: Arc<ClientConfig>,
}

impl Watch {
    async fn run(self, reports: mpsc::Sender<Report>) {
        let mut verdicts = Verdicts::new(self.health, self.check.rise, self.check.fall);
        let mut tick = tokio::time::interval(self.check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u32.. {
            tick.tick().await;
            let port = crate::neighbors::own_port(self.snat_ports, self.port_seed.wrapping_add(round));
            let deadline = tokio::time::Instant::now() + self.check.timeout;
            let outcome = match tokio::time::timeout_at(deadline, self.probe(port, deadline)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {:?}", self.check.timeout)),
            };
            let why = match &outcome {
                Ok(_) => "check passed".to_owned(),
                Err(e) => e.clone(),
            };
            // Every check that offered a ticket reports its key name, so the
            // daemon's entry stays fresh while the backend is up.
            if let Ok(Some(name)) = outcome {
                let report =
                    Report::KeyName { generation: self.generation, farm: self.farm, backend: self.backend, name };
                if reports.send(report).await.is_err() {
                    return;
                }
            }
            if let Some(health) = verdicts.record(outcome.is_ok()) {
                let report =
                    Report::Flip { generation: self.generation, farm: self.farm, backend: self.backend, health, why };
                if reports.send(report).await.is_err() {
                    return;
                }
            }
        }
    }

    /// One check: Ok (with the key name of the ticket this handshake
    /// offered, if any) or what went wrong.
    async fn probe(&self, port: u16, deadline: tokio::time::Instant) -> Result<Option<[u8; 16]>, String> {
        let stream = connect(self.address, port).await.map_err(|e| format!("connect: {e}"))?;
        match self.check.kind {
            HealthKind::Tcp => Ok(None),
            HealthKind::Tls => self.handshake(stream, deadline).await,
        }
    }

    /// A TLS handshake (the verdict), then a wait for TLS 1.3 tickets that
    /// stays inside the check's `deadline`, so it never fails a check.
    async fn handshake(&self, stream: TcpStream, deadline: tokio::time::Instant) -> Result<Option<[u8; 16]>, String> {
        let name = match &self.check.sni {
            Some(sni) => ServerName::try_from(sni.clone()).map_err(|e| format!("sni `{sni}`: {e}"))?,
            None => ServerName::IpAddress(self.address.ip().into()),
        };
        let tap = Tap { inner: stream, sent: Arc::new(Mutex::new(Vec::new())) };
        let sent = tap.sent.clone();
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = connector.connect(name, tap).await.map_err(|e| format!("tls handshake: {e}"))?;
        // TLS 1.3 tickets follow the handshake: read until they are in, the
        // backend closes, or the wait (at most half the time left) is over.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let wait = TICKET_WAIT.min(left / 2);
        if !wait.is_zero() {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(wait, tls.read(&mut buf)).await;
        }
        let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
        Ok(offered_key_name(&sent))
    }
}

/// The key name of the ticket (TLS 1.2 SessionTicket or TLS 1.3 PSK
/// identity) in the ClientHello that starts `sent`, if it offered one.
pub fn offered_key_name(sent: &[u8]) -> Option<[u8; 16]> {
    let hello = lb_common::tls::client_hello(sent).ok()?;
    let ticket = if hello.psk_identity.is_empty() { hello.ticket } else { hello.psk_identity };
    let name = lb_common::persist::key_name(ticket)?;
    name.of(sent).try_into().ok()
}

async fn connect(backend: SocketAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = if backend.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    let local: SocketAddr = if backend.is_ipv4() { ([0, 0, 0, 0], port).into() } else { ([0u16; 8], port).into() };
    socket.bind(local)?;
    socket.connect(backend).await
}

/// The first bytes a connection sends (its ClientHello), kept for
/// `offered_key_name`.
struct Tap<S> {
    inner: S,
    sent: Arc<Mutex<Vec<u8>>>,
}

/// The largest TLS record: a ClientHello fits in it.
const TAP_LIMIT: usize = 16 * 1024 + 5;

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if let (Poll::Ready(Ok(n)), Ok(mut sent)) = (&poll, self.sent.lock()) {
            let room = TAP_LIMIT.saturating_sub(sent.len());
            sent.extend_from_slice(&data[..(*n).min(room)]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// TLS 1.2 and 1.3, any certificate (handshake signatures are still
/// checked), and rustls's session cache, from which the next check resumes.
pub fn tls_client_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth()
}

/// Accepts any certificate chain; verifies the handshake's signatures with
/// the certificate presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_in_a_row_take_a_backend_down_and_rise_successes_bring_it_back() {
        let mut v = Verdicts::new(Health::Up, 2, 3);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), None);
        // A success in between starts the count again.
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), Some(Health::Down));
        assert_eq!(v.record(false), None, "only flips are reported");
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(true), Some(Health::Up));
        assert_eq!(v.health, Health::Up);
    }

    #[test]
    fn the_key_name_is_read_from_a_resuming_client_hello() {
        // A recorded TLS 1.3 resumption: curl offering a ticket from s_server.
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
        let hello = std::fs::read(corpus.join("curl13-s_server-2.client")).expect("corpus file");
        let name = offered_key_name(&hello).expect("a resuming hello offers a ticket");
        let parsed = lb_common::tls::client_hello(&hello).unwrap();
        assert_eq!(&name[..], &parsed.psk_identity.of(&hello)[..16]);
        let first = std::fs::read(corpus.join("curl13-s_server-1.client")).expect("corpus file");
        assert_eq!(offered_key_name(&first), None, "a first handshake offers nothing");
    }
}
