//! A TCP client built from raw frames, for sending a connection's segments
//! in an order no kernel would: it owns an address its namespace does not
//! (so that kernel drops the answers silently rather than resetting them),
//! and reads and writes Ethernet frames on the namespace's interface with a
//! packet socket. It never retransmits: whatever it sends must arrive once.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use crate::{
    netns::Netns,
    packet::{TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN, TcpSeg, be32, frame},
};

/// The MAC address of `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = ns.run("ip", &["-br", "link", "show", "dev", ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = text.split_whitespace().nth(2).unwrap_or_else(|| panic!("no MAC for {ifname}: {text}"));
    let bytes: Vec<u8> = field.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
    bytes.try_into().unwrap_or_else(|_| panic!("a MAC of six bytes: {field}"))
}

/// A packet socket on one interface, and the addresses frames carry.
pub struct RawClient {
    socket: OwnedFd,
    ifindex: i32,
    pub addr: Ipv4Addr,
    mac: [u8; 6],
    gateway_mac: [u8; 6],
}

/// What a connection received from its server.
pub struct Received {
    /// The server's bytes from its first, in order, as far as they go
    /// without a gap.
    pub data: Vec<u8>,
    /// The highest acknowledgement of the client's bytes (relative to its
    /// ISN + 1).
    pub acknowledged: u32,
}

/// One connection of a `RawClient`: the handshake is done.
pub struct RawConnection<'a> {
    client: &'a RawClient,
    server: (Ipv4Addr, u16),
    port: u16,
    isn: u32,
    /// The server's ISN (the SYN-ACK's sequence number).
    server_isn: u32,
    received: BTreeMap<u32, Vec<u8>>,
    acknowledged: u32,
    /// Where the client's stream ends: the sequence number of what follows.
    sent: usize,
    /// The server's latest TSval, echoed.
    ts_recent: u32,
    started: Instant,
}

impl RawClient {
    /// Opens the socket on `ifname`; must run inside the namespace
    /// (`Netns::enter`). `addr` must be an address no interface there has,
    /// and the gateway must know it at `mac` (a static neighbour entry).
    pub fn open(ifname: &str, addr: Ipv4Addr, mac: [u8; 6], gateway_mac: [u8; 6]) -> std::io::Result<RawClient> {
        let name = std::ffi::CString::new(ifname).expect("an interface name");
        // SAFETY: plain socket calls; the descriptor is owned from here on.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (libc::ETH_P_IP as u16).to_be() as i32,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let socket = OwnedFd::from_raw_fd(fd);
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            sll.sll_ifindex = ifindex;
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RawClient { socket, ifindex, addr, mac, gateway_mac })
        }
    }

    fn send(&self, to: Ipv4Addr, seg: &TcpSeg) -> std::io::Result<()> {
        let bytes = frame(self.gateway_mac, self.mac, self.addr, to, seg);
        // SAFETY: a plain send of an owned buffer on an owned socket.
        let rc = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = self.ifindex;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&self.gateway_mac);
            libc::sendto(
                self.socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// The next TCP segment to this client's `port` from `server`, until
    /// `deadline`.
    fn receive(&self, server: (Ipv4Addr, u16), port: u16, deadline: Instant) -> std::io::Result<Option<TcpSeg>> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut poll = libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd, owned.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().max(1) as i32) };
            if ready < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: receive into an owned buffer.
            let n = unsafe { libc::recv(self.socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(seg) = tcp_to(&buf[..n as usize], server, (self.addr, port)) {
                return Ok(Some(seg));
            }
        }
    }

    /// A three-way handshake from `port` (ISN `isn`) with `server`: SYN with
    /// MSS, SACK, timestamps and window scaling, then the ACK of its SYN-ACK.
    pub fn connect(&self, port: u16, isn: u32, server: (Ipv4Addr, u16)) -> std::io::Result<RawConnection<'_>> {
        let started = Instant::now();
        let mut options = vec![2, 4, 0x05, 0xB4, 4, 2];
        options.extend(timestamp_option(1, 0));
        options.extend([1, 3, 3, 7]);
        let syn = TcpSeg { seq: isn, options, ..TcpSeg::syn(port, server.1) };
        self.send(server.0, &syn)?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let (server_isn, ts_recent) = loop {
            let Some(seg) = self.receive(server, port, deadline)? else {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no SYN-ACK"));
            };
            if seg.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && seg.ack == isn.wrapping_add(1) {
                let Some(tsval) = tsval_of(&seg.options) else {
                    return Err(std::io::Error::other("a SYN-ACK without timestamps"));
                };
                break (seg.seq, tsval);
            }
        };
        let conn = RawConnection {
            client: self,
            server,
            port,
            isn,
            server_isn,
            received: BTreeMap::new(),
            acknowledged: 0,
            sent: 0,
            ts_recent,
            started,
        };
        conn.send(0, TCP_ACK, &[])?;
        Ok(conn)
    }
}

impl RawConnection<'_> {
    /// Sends `data` at `offset` into the client's stream.
    fn send(&self, offset: usize, flags: u8, data: &[u8]) -> std::io::Result<()> {
        let contiguous = contiguous(&self.received);
        let seg = TcpSeg {
            src_port: self.port,
            dst_port: self.server.1,
            seq: self.isn.wrapping_add(1).wrapping_add(offset as u32),
            ack: self.server_isn.wrapping_add(1).wrapping_add(contiguous as u32),
            flags,
            window: 65_535,
            options: [&[1u8, 1][..], &timestamp_option(self.tsval(), self.ts_recent)].concat(),
            payload: data.to_vec(),
        };
        self.client.send(self.server.0, &seg)
    }

    /// The client's clock: milliseconds since it connected, from 1.
    fn tsval(&self) -> u32 {
        1 + self.started.elapsed().as_millis() as u32
    }

    /// Sends `data[at..at + len]` for each `(at, len)` in the order given,
    /// each as one segment, a short pause between them (so that they reach
    /// the wire in that order).
    pub fn send_pieces(&mut self, data: &[u8], pieces: &[(usize, usize)]) -> std::io::Result<()> {
        for &(at, len) in pieces {
            self.send(at, TCP_ACK | TCP_PSH, &data[at..at + len])?;
            self.sent = self.sent.max(at + len);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Reads the server's data, acknowledging it, until `wanted` bytes have
    /// come without a gap or `timeout` passes.
    pub fn read(&mut self, wanted: usize, timeout: Duration) -> std::io::Result<Received> {
        let deadline = Instant::now() + timeout;
        while contiguous(&self.received) < wanted {
            let Some(seg) = self.client.receive(self.server, self.port, deadline)? else { break };
            if seg.flags & TCP_RST != 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the server reset"));
            }
            if seg.flags & TCP_ACK != 0 {
                let acked = seg.ack.wrapping_sub(self.isn.wrapping_add(1));
                if acked < 1 << 30 {
                    self.acknowledged = self.acknowledged.max(acked);
                }
            }
            if let Some(tsval) = tsval_of(&seg.options) {
                self.ts_recent = tsval;
            }
            if !seg.payload.is_empty() {
                let offset = seg.seq.wrapping_sub(self.server_isn.wrapping_add(1));
                self.received.entry(offset).or_insert(seg.payload);
                self.send(self.sent, TCP_ACK, &[])?;
            }
        }
        let mut data = Vec::new();
        for (&at, chunk) in &self.received {
            let at = at as usize;
            if at > data.len() {
                break;
            }
            if at + chunk.len() > data.len() {
                data.extend_from_slice(&chunk[data.len() - at..]);
            }
        }
        Ok(Received { data, acknowledged: self.acknowledged })
    }
}

impl Drop for RawConnection<'_> {
    /// Ends the connection with an RST, so that the server forgets it.
    fn drop(&mut self) {
        let _ = self.send(self.sent, TCP_RST | TCP_ACK, &[]);
    }
}

/// The timestamps option (RFC 7323): kind 8, length 10.
fn timestamp_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    [&[8u8, 10][..], &tsval.to_be_bytes(), &tsecr.to_be_bytes()].concat()
}

/// The TSval of a timestamps option among `options`.
fn tsval_of(options: &[u8]) -> Option<u32> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            0 => return None,
            1 => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?).max(2);
                if kind == 8 && len == 10 {
                    return Some(be32(options.get(at + 2..at + 6)?));
                }
                at += len;
            }
        }
    }
    None
}

fn contiguous(received: &BTreeMap<u32, Vec<u8>>) -> usize {
    let mut end = 0usize;
    for (&at, chunk) in received {
        if at as usize > end {
            break;
        }
        end = end.max(at as usize + chunk.len());
    }
    end
}

/// The TCP segment in `frame` (Ethernet, IPv4) if it goes from `from` to `to`.
fn tcp_to(frame: &[u8], from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Option<TcpSeg> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let (src, dst) = (Ipv4Addr::from(be32(ip.get(12..16)?)), Ipv4Addr::from(be32(ip.get(16..20)?)));
    let tcp = ip.get(ihl..total)?;
    let (sport, dport) = (u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]), u16::from_be_bytes([tcp[2], tcp[3]]));
    if (src, sport) != from || (dst, dport) != to {
        return None;
    }
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    Some(TcpSeg {
        src_port: sport,
        dst_port: dport,
        seq: be32(tcp.get(4..8)?),
        ack: be32(tcp.get(8..12)?),
        flags: *tcp.get(13)?,
        window: u16::from_be_bytes([*tcp.get(14)?, *tcp.get(15)?]),
        options: tcp.get(20..doff)?.to_vec(),
        payload: tcp.get(doff..)?.to_vec(),
    })
}
