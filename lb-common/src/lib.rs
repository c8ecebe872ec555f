//! The contract between tether's XDP program and its daemon.
//!
//! Everything here is `no_std`, `#[repr(C)]`, integers and byte arrays only, so the
//! same definitions compile for the BPF target and the host. Fields that hold
//! network-order values end in `_be`.
#![cfg_attr(not(test), no_std)]

pub mod csum;
pub mod hash;
pub mod maps;
pub mod persist;
pub mod reason;
pub mod tcpopt;
pub mod tls;

pub use maps::{
    AddrKey, BackendInfo, Family, FarmInfo, Flow, FlowKey, FlowKeyV4, NextHop, Pending, Protocol, Settings, VipInfo,
    VipKey,
};

/// An IPv4 address in the 16-byte address fields of map keys and values: the
/// four bytes first, twelve zero bytes after.
///
/// VERIFIER: built from two 8-byte words, not as `[0; 16]` plus a copy. LLVM
/// turns zero fills of 12 bytes or more into `memset`, which the BPF backend
/// does not expand: it becomes a call to a byte-at-a-time loop.
#[inline(always)]
pub fn v4_in_16(octets: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = octets;
    let first = u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]);
    // SAFETY: [u64; 2] and [u8; 16] have the same size and no invalid values.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([first, 0]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv4_address_fills_the_first_four_bytes() {
        assert_eq!(super::v4_in_16([198, 18, 0, 10]), [198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
