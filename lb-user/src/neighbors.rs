//! Keeps the kernel's neighbour table warm for every backend.
//!
//! XDP forwards with `bpf_fib_lookup`, which reads the neighbour table but never
//! fills it: a backend whose MAC the kernel has not resolved gets nothing
//! (`drop_no_neigh`). The host resolves a neighbour when it talks to it, so the
//! daemon opens (and at once closes) a TCP connection to each backend now and
//! then, from a source port below the SNAT range so it can never collide with a
//! flow the data path created. Health checks will do the same job when they land.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpSocket;
use tracing::debug;

/// The kernel retries an unanswered ARP/ND probe after 1 s (`retrans_time_ms`);
/// 3 s lets a lost first probe be retried twice.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The lowest port the daemon binds its own connections to.
const FIRST_OWN_PORT: u16 = 1024;

/// One round: a short connection to each backend, all at once.
pub async fn warm(backends: &[SocketAddr], snat_ports: (u16, u16), round: u32) {
    let mut tasks = Vec::new();
    for (i, backend) in backends.iter().copied().enumerate() {
        let port = own_port(snat_ports, round.wrapping_mul(backends.len() as u32).wrapping_add(i as u32));
        tasks.push(tokio::spawn(async move {
            match touch(backend, port).await {
                Ok(()) => debug!(%backend, "neighbour warm"),
                Err(e) => debug!(%backend, error = %e, "neighbour warm-up connection failed (the ARP/ND exchange still happened)"),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A source port outside the SNAT range: below it when there is room, else
/// above it, else 0 (the kernel's choice; only when the range covers all ports).
pub fn own_port((lo, hi): (u16, u16), n: u32) -> u16 {
    if lo > FIRST_OWN_PORT {
        FIRST_OWN_PORT + (n % u32::from(lo - FIRST_OWN_PORT)) as u16
    } else if hi < u16::MAX {
        hi + 1 + (n % u32::from(u16::MAX - hi)) as u16
    } else {
        0
    }
}

async fn touch(backend: SocketAddr, port: u16) -> std::io::Result<()> {
    let socket = if backend.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    let local: SocketAddr = if backend.is_ipv4() { ([0, 0, 0, 0], port).into() } else { ([0u16; 8], port).into() };
    socket.bind(local)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(backend))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    drop(stream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::own_port;

    #[test]
    fn own_ports_stay_outside_the_snat_range() {
        for n in 0..20_000 {
            let p = own_port((10_000, 65_535), n);
            assert!((1024..10_000).contains(&p));
            let p = own_port((1024, 60_000), n);
            assert!(p > 60_000);
        }
        assert_eq!(own_port((1024, 65_535), 7), 0);
    }
}
