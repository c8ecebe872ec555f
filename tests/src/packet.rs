//! Builds frames byte by byte for golden-packet tests: Ethernet (optional VLAN
//! tag), IPv4 (options, fragment field), IPv6 (extension headers), TCP, UDP,
//! ICMP, ARP, all with correct checksums.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_FRAGMENT: u8 = 44;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 flags/fragment-offset field values.
pub const IPV4_DF: u16 = 0x4000;
pub const IPV4_MF: u16 = 0x2000;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// RFC 1071 Internet checksum of `data` folded with `initial` (a partial sum).
pub fn checksum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from(chunk[0]) << 8 };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn sum_words(data: &[u8]) -> u32 {
    data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

/// The pseudo-header sum TCP and UDP checksums start from.
#[derive(Clone, Copy)]
pub enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Pseudo {
    fn sum(self, protocol: u8, len: usize) -> u32 {
        let addrs = match self {
            Pseudo::V4(s, d) => sum_words(&s.octets()) + sum_words(&d.octets()),
            Pseudo::V6(s, d) => sum_words(&s.octets()) + sum_words(&d.octets()),
        };
        addrs + u32::from(protocol) + len as u32
    }
}

/// A TCP segment before encoding.
#[derive(Clone, Debug)]
pub struct TcpSeg {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Raw options, padded to a multiple of 4 by `tcp`.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl TcpSeg {
    pub fn syn(src_port: u16, dst_port: u16) -> TcpSeg {
        TcpSeg {
            src_port,
            dst_port,
            seq: 1_000,
            ack: 0,
            flags: TCP_SYN,
            window: 64_240,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn with_flags(mut self, flags: u8) -> TcpSeg {
        self.flags = flags;
        self
    }
}

pub fn tcp(seg: &TcpSeg, pseudo: Pseudo) -> Vec<u8> {
    let mut options = seg.options.clone();
    while !options.len().is_multiple_of(4) {
        options.push(0); // end of option list
    }
    let header_len = 20 + options.len();
    let mut b = Vec::with_capacity(header_len + seg.payload.len());
    b.extend_from_slice(&seg.src_port.to_be_bytes());
    b.extend_from_slice(&seg.dst_port.to_be_bytes());
    b.extend_from_slice(&seg.seq.to_be_bytes());
    b.extend_from_slice(&seg.ack.to_be_bytes());
    b.push(((header_len / 4) as u8) << 4);
    b.push(seg.flags);
    b.extend_from_slice(&seg.window.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    b.extend_from_slice(&options);
    b.extend_from_slice(&seg.payload);
    let csum = checksum(pseudo.sum(IPPROTO_TCP, b.len()), &b);
    b[16..18].copy_from_slice(&csum.to_be_bytes());
    b
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8], pseudo: Pseudo) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&src_port.to_be_bytes());
    b.extend_from_slice(&dst_port.to_be_bytes());
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    let csum = checksum(pseudo.sum(IPPROTO_UDP, len), &b);
    b[6..8].copy_from_slice(&csum.to_be_bytes());
    b
}

pub fn icmp_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut b = vec![8, 0, 0, 0];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(b"tether");
    let csum = checksum(0, &b);
    b[2..4].copy_from_slice(&csum.to_be_bytes());
    b
}

/// An IPv4 header description.
#[derive(Clone, Debug)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Raw options (a multiple of 4 bytes).
    pub options: Vec<u8>,
    /// The flags/fragment-offset field.
    pub frag: u16,
    pub ttl: u8,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> V4 {
        V4 { src, dst, protocol, options: Vec::new(), frag: IPV4_DF, ttl: 64 }
    }

    pub fn pseudo(&self) -> Pseudo {
        Pseudo::V4(self.src, self.dst)
    }
}

pub fn ipv4(h: &V4, l4: &[u8]) -> Vec<u8> {
    assert!(
        h.options.len().is_multiple_of(4) && h.options.len() <= 40,
        "IPv4 options must be 0-40 bytes in 4-byte words"
    );
    let header_len = 20 + h.options.len();
    let total = header_len + l4.len();
    let mut b = Vec::with_capacity(total);
    b.push(0x40 | (header_len / 4) as u8);
    b.push(0); // DSCP/ECN
    b.extend_from_slice(&(total as u16).to_be_bytes());
    b.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
    b.extend_from_slice(&h.frag.to_be_bytes());
    b.push(h.ttl);
    b.push(h.protocol);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&h.src.octets());
    b.extend_from_slice(&h.dst.octets());
    b.extend_from_slice(&h.options);
    let csum = checksum(0, &b[..header_len]);
    b[10..12].copy_from_slice(&csum.to_be_bytes());
    b.extend_from_slice(l4);
    b
}

/// IPv6 with extension headers `ext` (type, body without its first two bytes),
/// ending in `protocol`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, ext: &[(u8, Vec<u8>)], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(protocol, |(t, _)| *t);
        let len = 2 + body.len();
        assert!(len % 8 == 0, "an extension header is a multiple of 8 bytes");
        chain.push(next);
        chain.push((len / 8 - 1) as u8);
        chain.extend_from_slice(body);
    }
    let first = ext.first().map_or(protocol, |(t, _)| *t);
    let mut b = Vec::with_capacity(40 + chain.len() + l4.len());
    b.extend_from_slice(&[0x60, 0, 0, 0]);
    b.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
    b.push(first);
    b.push(64);
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&chain);
    b.extend_from_slice(l4);
    b
}

pub fn ethernet(ether_type: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    ethernet_between(LB_MAC, CLIENT_MAC, ether_type, vlan, payload)
}

/// An Ethernet frame from `src` to `dst`.
pub fn ethernet_between(dst: [u8; 6], src: [u8; 6], ether_type: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(18 + payload.len());
    b.extend_from_slice(&dst);
    b.extend_from_slice(&src);
    if let Some(vid) = vlan {
        b.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        b.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
    }
    b.extend_from_slice(&ether_type.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// An ARP who-has request for `target` from `sender`.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    let mut frame = ethernet(ETH_P_ARP, None, &arp);
    frame[..6].copy_from_slice(&[0xFF; 6]);
    frame
}

/// Whether the IPv4 header at `l3` and the TCP segment after it (as long as the
/// IP total length says) carry correct checksums, by full recomputation.
pub fn checksums_ok_v4(frame: &[u8], l3: usize) -> bool {
    let ihl = usize::from(frame[l3] & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    let ip = &frame[l3..l3 + ihl];
    let l4 = &frame[l3 + ihl..l3 + total];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    checksum(0, ip) == 0 && checksum(Pseudo::V4(src, dst).sum(IPPROTO_TCP, l4.len()), l4) == 0
}

/// A complete Ethernet + IPv4 + TCP frame.
pub fn tcp_v4(src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpSeg) -> Vec<u8> {
    let ip = V4::new(src, dst, IPPROTO_TCP);
    ethernet(ETH_P_IPV4, None, &ipv4(&ip, &tcp(seg, ip.pseudo())))
}

/// An Ethernet frame between two MACs carrying IPv4 and `seg`, checksums
/// computed in full.
pub fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpSeg) -> Vec<u8> {
    let ip = V4::new(src, dst, IPPROTO_TCP);
    ethernet_between(dst_mac, src_mac, ETH_P_IPV4, None, &ipv4(&ip, &tcp(seg, ip.pseudo())))
}

/// The IPv4 frame (no VLAN, no IP options) with identification 0, as
/// tether builds its own packets, the header checksum recomputed in full.
pub fn with_ip_id_zero(mut frame: Vec<u8>) -> Vec<u8> {
    frame[18..20].copy_from_slice(&[0, 0]);
    frame[24..26].copy_from_slice(&[0, 0]);
    let check = checksum(0, &frame[14..34]);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
    frame
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3 example words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
        assert_eq!(checksum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
    }

    #[test]
    fn built_headers_verify_to_zero() {
        let (s, d) = (Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 100, 100));
        let mut seg = TcpSeg::syn(40000, 443);
        seg.payload = b"odd length payload!".to_vec();
        let frame = tcp_v4(s, d, &seg);
        let ip = &frame[14..34];
        assert_eq!(checksum(0, ip), 0, "IPv4 header checksum");
        let l4 = &frame[34..];
        assert_eq!(checksum(Pseudo::V4(s, d).sum(IPPROTO_TCP, l4.len()), l4), 0, "TCP checksum");
    }
}
