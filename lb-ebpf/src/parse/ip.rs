//! IPv4 and IPv6 headers.

use aya_ebpf::programs::XdpContext;
use lb_common::{maps::Family, reason};

use super::{bytes_at, word};

const IPPROTO_TCP: u8 = 6;

const IPV4_MIN_HLEN: usize = 20;
/// IPv4 flags/fragment-offset field: More Fragments bit and offset mask.
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1FFF;

pub const IPV6_HLEN: usize = 40;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers walked before giving up. Real TCP traffic carries none; a
/// long chain is unusual enough to leave to the host.
const IPV6_MAX_EXT: usize = 4;

pub struct L3 {
    pub family: Family,
    pub src_be: [u8; 16],
    pub dst_be: [u8; 16],
    pub l4_off: usize,
}

#[inline(always)]
pub fn parse_v4(ctx: &XdpContext, off: usize) -> Result<L3, u32> {
    let ip = bytes_at::<IPV4_MIN_HLEN>(ctx, off).ok_or(reason::PASS_TRUNCATED)?;
    if ip[0] >> 4 != 4 {
        return Err(reason::PASS_MALFORMED);
    }
    let hlen = ((ip[0] & 0x0F) as usize) * 4;
    if hlen < IPV4_MIN_HLEN {
        return Err(reason::PASS_MALFORMED);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & (IPV4_MF | IPV4_OFFSET_MASK) != 0 {
        return Err(reason::PASS_FRAGMENT);
    }
    if ip[9] != IPPROTO_TCP {
        return Err(reason::PASS_NOT_TCP);
    }
    // SAFETY: bytes 12..20 of the 20 `bytes_at` bounded.
    let (src, dst) = unsafe { (word::load32(ip.as_ptr().add(12)), word::load32(ip.as_ptr().add(16))) };
    let src_be = lb_common::v4_in_16(src.to_ne_bytes());
    let dst_be = lb_common::v4_in_16(dst.to_ne_bytes());
    // Options, if any, lie between the fixed header and TCP; `tcp::parse` checks
    // that the TCP header after them is inside the frame.
    Ok(L3 { family: Family::Ipv4, src_be, dst_be, l4_off: off + hlen })
}

#[inline(always)]
pub fn parse_v6(ctx: &XdpContext, off: usize) -> Result<L3, u32> {
    let ip = bytes_at::<IPV6_HLEN>(ctx, off).ok_or(reason::PASS_TRUNCATED)?;
    if ip[0] >> 4 != 6 {
        return Err(reason::PASS_MALFORMED);
    }
    let mut src_be = [0u8; 16];
    src_be.copy_from_slice(&ip[8..24]);
    let mut dst_be = [0u8; 16];
    dst_be.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut l4_off = off + IPV6_HLEN;
    // VERIFIER: a constant trip count keeps the loop bounded.
    for _ in 0..IPV6_MAX_EXT {
        match next {
            IPPROTO_TCP => return Ok(L3 { family: Family::Ipv6, src_be, dst_be, l4_off }),
            IPV6_FRAGMENT => return Err(reason::PASS_FRAGMENT),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                // RFC 8200 §4: next header, then length in 8-octet units not
                // counting the first 8.
                let ext = bytes_at::<2>(ctx, l4_off).ok_or(reason::PASS_TRUNCATED)?;
                next = ext[0];
                l4_off += (ext[1] as usize + 1) * 8;
            }
            _ => return Err(reason::PASS_NOT_TCP),
        }
    }
    if next == IPPROTO_TCP {
        return Ok(L3 { family: Family::Ipv6, src_be, dst_be, l4_off });
    }
    Err(reason::PASS_IPV6_EXT_LIMIT)
}
