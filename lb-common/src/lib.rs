//! The contract between tether's XDP program and its daemon.
//!
//! Everything here is `no_std`, `#[repr(C)]`, integers and byte arrays only, so the
//! same definitions compile for the BPF target and the host. Fields that hold
//! network-order values end in `_be`.
#![cfg_attr(not(test), no_std)]

pub mod csum;
pub mod hash;
pub mod maps;
pub mod reason;
pub mod tcpopt;

pub use maps::{AddrKey, BackendInfo, Family, FarmInfo, Flow, FlowKey, Pending, Protocol, Settings, VipInfo, VipKey};
