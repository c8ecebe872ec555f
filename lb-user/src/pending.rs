//! `tls` connections waiting for their backend (DESIGN.md §2 steps 3-4): XDP
//! sent the backend SYN and keeps the client's first data in `PENDING`. XDP
//! has no timers, so the daemon ends the wait: a backend that has not
//! answered within `timeouts.connect` gets the client an RST (rather than a
//! hang until the client gives up), and the connection's state goes.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError},
};
use lb_common::{
    FlowKey, Pending, csum,
    maps::{self as abi, FlowState},
};
use tracing::{info, warn};

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Connections whose backend never answered: the client got an RST.
    pub reset: usize,
    /// Stashes whose connection is gone (reset, expired, evicted).
    pub orphans: usize,
}

/// How long a backend SYN goes unanswered before the daemon sends it again,
/// and then again at each multiple of it until the connect timeout.
pub const SYN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Connections of the slow path (`Pending::daemon_sends`) whose backend SYN
/// has had no answer for `SYN_RETRY` (and not been sent again in that time,
/// by `retried`, CLOCK_MONOTONIC nanoseconds): the client key, its stash and
/// the interface towards its backend. XDP sends the SYN again when a
/// retransmission of the client's first data comes; a client whose hello
/// the slow path acknowledged sends none, so the daemon runs that segment
/// through XDP itself. Other clients do retransmit, and are left to.
pub fn syns_to_retry(
    ebpf: &Ebpf,
    now: u64,
    retried: &std::collections::HashMap<FlowKey, u64>,
) -> Result<Vec<(FlowKey, Pending, u32)>, MapError> {
    let pending: HashMap<&MapData, FlowKey, Pending> = map(ebpf, abi::PENDING_MAP)?;
    let flows = crate::flows::of(ebpf)?;
    let retry = SYN_RETRY.as_nanos() as u64;
    let mut due = Vec::new();
    for entry in pending.iter() {
        let (key, p) = entry?;
        let last = retried.get(&key).copied().unwrap_or(p.created_ns);
        if now.saturating_sub(last) < retry || p.assembling != abi::hello::BOUND || p.daemon_sends == 0 {
            continue;
        }
        match flows.get(&key) {
            Ok(flow) if flow.state == FlowState::BackendSynSent as u8 => due.push((key, p, flow.next_hop.ifindex)),
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(due)
}

/// Ends the waits older than `connect` (CLOCK_MONOTONIC nanoseconds `now`).
pub fn expire(ebpf: &mut Ebpf, now: u64, connect: std::time::Duration) -> Result<Expired, MapError> {
    let stale: Vec<(FlowKey, Pending)> = {
        let pending: HashMap<&MapData, FlowKey, Pending> = map(ebpf, abi::PENDING_MAP)?;
        let mut stale = Vec::new();
        for entry in pending.iter() {
            let (key, p) = entry?;
            if now.saturating_sub(p.created_ns) > connect.as_nanos() as u64 {
                stale.push((key, p));
            }
        }
        stale
    };
    let mut done = Expired::default();
    if stale.is_empty() {
        return Ok(done);
    }
    let mut flows = crate::flows::of_mut(ebpf)?;
    let mut gone = Vec::new();
    for (key, p) in &stale {
        match flows.get(key) {
            Ok(flow) if flow.state == FlowState::BackendSynSent as u8 => {
                if let Err(e) = send_reset(key, p) {
                    warn!(error = %e, "cannot send the RST for a connection whose backend did not answer");
                }
                info!(
                    client = %Ipv4Addr::from(first4(&key.saddr_be)),
                    backend = %Ipv4Addr::from(first4(&flow.new_daddr_be)),
                    timeout_ms = connect.as_millis() as u64,
                    "the backend did not answer; client reset"
                );
                for k in [*key, FlowKey::reply(&flow, key.family)] {
                    match flows.remove(&k) {
                        Ok(()) | Err(MapError::KeyNotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                done.reset += 1;
                gone.push(*key);
            }
            // Established: the stash goes when the backend acknowledges it.
            Ok(_) => {}
            Err(MapError::KeyNotFound) => {
                done.orphans += 1;
                gone.push(*key);
            }
            Err(e) => return Err(e),
        }
    }
    let mut pending: HashMap<&mut MapData, FlowKey, Pending> = map_mut(ebpf, abi::PENDING_MAP)?;
    for key in gone {
        match pending.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn map<'a, T: TryFrom<&'a aya::maps::Map, Error = MapError>>(ebpf: &'a Ebpf, name: &str) -> Result<T, MapError> {
    ebpf.map(name).ok_or(MapError::InvalidName { name: name.to_owned() })?.try_into()
}

fn map_mut<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<T, MapError> {
    ebpf.map_mut(name).ok_or(MapError::InvalidName { name: name.to_owned() })?.try_into()
}

/// The RST the client of `key` (client -> VIP) accepts: from the VIP, at the
/// sequence number the client expects next (the cookie + 1, RFC 5961 §3.2),
/// acknowledging the data it sent.
pub fn reset_packet(key: &FlowKey, p: &Pending) -> Vec<u8> {
    let (client, vip) = (first4(&key.saddr_be), first4(&key.daddr_be));
    let acked = p.client_isn.wrapping_add(1).wrapping_add(u32::from(p.len));
    let tcp = tcp_segment(
        (key.dport_be, key.sport_be),
        (p.cookie_isn.wrapping_add(1), acked),
        RST | ACK,
        0,
        None,
        &[],
        (vip, client),
    );
    ipv4(vip, client, &tcp)
}

// The packets the daemon sends itself (RSTs here, the slow path's ACKs and
// client segments), checksums in full.

pub(crate) const ACK: u8 = 0x10;
pub(crate) const PSH: u8 = 0x08;
const RST: u8 = 0x04;

pub(crate) fn tcp_segment(
    (sport_be, dport_be): (u16, u16),
    (seq, ack): (u32, u32),
    flags: u8,
    window: u16,
    timestamps: Option<(u32, u32)>,
    data: &[u8],
    (src, dst): ([u8; 4], [u8; 4]),
) -> Vec<u8> {
    let header_len = if timestamps.is_some() { 32 } else { 20 };
    let mut tcp = Vec::with_capacity(header_len + data.len());
    tcp.extend(sport_be.to_ne_bytes());
    tcp.extend(dport_be.to_ne_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(ack.to_be_bytes());
    tcp.push(((header_len / 4) as u8) << 4);
    tcp.push(flags);
    tcp.extend(window.to_be_bytes());
    tcp.extend([0; 4]);
    if let Some((tsval, tsecr)) = timestamps {
        tcp.extend([1, 1, 8, 10]);
        tcp.extend(tsval.to_be_bytes());
        tcp.extend(tsecr.to_be_bytes());
    }
    tcp.extend(data);
    let pseudo = words(&src) + words(&dst) + 6 + tcp.len() as u32;
    let check = !csum::fold(csum::fold(pseudo + words(&tcp)) as u32);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    tcp
}

pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + l4.len()) as u16).to_be_bytes());
    ip.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
    ip.extend(src);
    ip.extend(dst);
    let check = !csum::fold(words(&ip));
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip.extend(l4);
    ip
}

/// Big-endian 16-bit words summed: the checksum is then stored big-endian.
pub(crate) fn words(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

pub(crate) fn first4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[0], addr[1], addr[2], addr[3]]
}

/// Sends the client of `key` the RST of `reset_packet`.
pub fn send_reset(key: &FlowKey, p: &Pending) -> std::io::Result<()> {
    send_ipv4(first4(&key.saddr_be), &reset_packet(key, p))
}

/// Sends an IPv4 packet built whole (header included) towards `dst`, routed
/// by the kernel like the host's own.
pub fn send_ipv4(dst: [u8; 4], packet: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain socket calls on a descriptor owned here and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dst) },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and address are valid for the call.
    let sent = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&dst as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    let result = if sent < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_is_from_the_vip_at_the_cookie_and_its_checksums_verify() {
        let mut key = FlowKey {
            saddr_be: [0; 16],
            daddr_be: [0; 16],
            sport_be: 40000u16.to_be(),
            dport_be: 443u16.to_be(),
            family: 4,
            _pad: [0; 3],
        };
        key.saddr_be[..4].copy_from_slice(&[198, 18, 0, 10]);
        key.daddr_be[..4].copy_from_slice(&[198, 18, 100, 100]);
        // SAFETY: Pending is plain data; all zeros is valid.
        let mut p: Pending = unsafe { std::mem::zeroed() };
        p.client_isn = 1000;
        p.cookie_isn = 0xFFFF_FFFF;
        p.len = 517;
        let pkt = reset_packet(&key, &p);
        assert_eq!(&pkt[12..16], &[198, 18, 100, 100]);
        assert_eq!(&pkt[16..20], &[198, 18, 0, 10]);
        assert_eq!(u16::from_be_bytes([pkt[20], pkt[21]]), 443);
        assert_eq!(u16::from_be_bytes([pkt[22], pkt[23]]), 40000);
        assert_eq!(u32::from_be_bytes([pkt[24], pkt[25], pkt[26], pkt[27]]), 0, "cookie + 1 wraps");
        assert_eq!(u32::from_be_bytes([pkt[28], pkt[29], pkt[30], pkt[31]]), 1518);
        assert_eq!(csum::fold(words(&pkt[..20])), 0xFFFF, "IP header checksum");
        let pseudo = words(&pkt[12..20]) + 6 + 20;
        assert_eq!(csum::fold(csum::fold(pseudo + words(&pkt[20..])) as u32), 0xFFFF, "TCP checksum");
    }
}
