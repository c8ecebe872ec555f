//! The TCP header (RFC 9293 §3.1).

use aya_ebpf::programs::XdpContext;
use lb_common::reason;

use super::{bytes_at, word};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

const TCP_MIN_HLEN: usize = 20;

pub struct L4 {
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, off: usize) -> Result<L4, u32> {
    let tcp = bytes_at::<TCP_MIN_HLEN>(ctx, off).ok_or(reason::PASS_TRUNCATED)?;
    let data_offset = ((tcp[12] >> 4) as usize) * 4;
    if data_offset < TCP_MIN_HLEN {
        return Err(reason::PASS_MALFORMED);
    }
    let at = tcp.as_ptr();
    // SAFETY: bytes 0..12 of the 20 `bytes_at` bounded.
    unsafe {
        Ok(L4 {
            src_port_be: word::load16(at),
            dst_port_be: word::load16(at.add(2)),
            seq: u32::from_be(word::load32(at.add(4))),
            ack: u32::from_be(word::load32(at.add(8))),
            flags: tcp[13],
        })
    }
}
