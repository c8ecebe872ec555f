//! The only stage that writes packets: NAT of addresses and ports with
//! incremental checksums, then the link-layer next hop.

pub mod nat;
pub mod nexthop;
pub mod splice;
