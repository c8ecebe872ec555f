//! Loads the XDP object, attaches it, and keeps it attached while it lives.
//! Dropping a [`Dataplane`] detaches every link it made.

use std::{net::IpAddr, path::PathBuf};

use aya::{
    Ebpf, EbpfError,
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp},
};
use lb_common::{VipInfo, VipKey, maps as abi};
use tracing::{info, warn};

use crate::{
    EBPF_OBJECT,
    config::{Config, VipProtocol, XdpMode},
    pins,
    stats::{self, Counters, STATS_PIN},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the XDP object failed: {0}")]
    Object(#[from] EbpfError),
    #[error("the XDP object has no {what} `{name}`: it does not match this daemon")]
    Missing { what: &'static str, name: &'static str },
    #[error("the kernel rejected the XDP program: {0}")]
    Verifier(ProgramError),
    #[error("cannot attach to interface `{interface}` in {mode} mode: {source}")]
    Attach { interface: String, mode: &'static str, source: ProgramError },
    #[error("map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("pinning: {0}")]
    Pin(#[from] pins::PinError),
    #[error("cannot pin `{map}` at {}: {source}", path.display())]
    PinMap { map: &'static str, path: PathBuf, source: aya::pin::PinError },
}

/// The XDP program as loaded and attached for one configuration.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// Interfaces and the mode each one got.
    pub attached: Vec<(String, &'static str)>,
}

impl Dataplane {
    /// Loads the program, fills its maps from `config`, pins the counters and
    /// attaches to every configured interface.
    pub fn start(config: &Config, instance: &str) -> Result<Dataplane, LoadError> {
        let pin_dir = pins::prepare(&config.daemon.pin_path, instance)?;
        let ebpf = Ebpf::load(EBPF_OBJECT).inspect_err(|_| pins::remove(&pin_dir))?;
        // From here on, Drop detaches and unpins whatever a failed step leaves.
        let mut dp = Dataplane { ebpf, pin_dir, attached: Vec::new() };
        dp.write_vips(config)?;
        dp.pin_stats()?;
        let program: &mut Xdp = dp
            .ebpf
            .program_mut(abi::XDP_PROGRAM)
            .ok_or(LoadError::Missing { what: "program", name: abi::XDP_PROGRAM })?
            .try_into()
            .map_err(LoadError::Verifier)?;
        program.load().map_err(LoadError::Verifier)?;
        for interface in &config.daemon.interfaces {
            let mode = attach(program, interface, config.daemon.xdp_mode)?;
            info!(interface, mode, "attached");
            dp.attached.push((interface.clone(), mode));
        }
        Ok(dp)
    }

    pub fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    pub fn counters(&self) -> Result<Counters, LoadError> {
        let map: PerCpuArray<&MapData, u64> = self
            .ebpf
            .map(abi::STATS_MAP)
            .ok_or(LoadError::Missing { what: "map", name: abi::STATS_MAP })?
            .try_into()
            .map_err(|source| LoadError::Map { map: abi::STATS_MAP, source })?;
        stats::read(&map).map_err(|source| LoadError::Map { map: abi::STATS_MAP, source })
    }

    fn write_vips(&mut self, config: &Config) -> Result<(), LoadError> {
        let map_err = |source| LoadError::Map { map: abi::VIPS_MAP, source };
        let mut vips: HashMap<&mut MapData, VipKey, VipInfo> = self
            .ebpf
            .map_mut(abi::VIPS_MAP)
            .ok_or(LoadError::Missing { what: "map", name: abi::VIPS_MAP })?
            .try_into()
            .map_err(map_err)?;
        for (id, vip) in config.vips.iter().enumerate() {
            let key = vip_key(vip.address, vip.port);
            let info = VipInfo {
                vip_id: id as u32,
                farm_id: vip.farm as u32,
                snat_be: addr_bytes(vip.snat),
                protocol: match vip.protocol {
                    VipProtocol::Tls => abi::Protocol::Tls as u8,
                    VipProtocol::Tcp => abi::Protocol::Tcp as u8,
                },
                _pad: [0; 3],
            };
            vips.insert(key, info, 0).map_err(map_err)?;
            info!(vip = vip.name, address = %vip.address, port = vip.port, "serving VIP");
        }
        Ok(())
    }

    fn pin_stats(&mut self) -> Result<(), LoadError> {
        let path = self.pin_dir.join(STATS_PIN);
        let map = self.ebpf.map(abi::STATS_MAP).ok_or(LoadError::Missing { what: "map", name: abi::STATS_MAP })?;
        map.pin(&path).map_err(|source| LoadError::PinMap { map: abi::STATS_MAP, path, source })
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // Links detach when `ebpf` drops; the pins would keep maps alive, so they go.
        pins::remove(&self.pin_dir);
        for (interface, _) in &self.attached {
            info!(interface, "detached");
        }
    }
}

fn attach(program: &mut Xdp, interface: &str, mode: XdpMode) -> Result<&'static str, LoadError> {
    use aya::programs::XdpMode as Flags;
    let try_mode = |program: &mut Xdp, flags, name: &'static str| {
        program
            .attach(interface, flags)
            .map(|_| name)
            .map_err(|source| LoadError::Attach { interface: interface.to_owned(), mode: name, source })
    };
    match mode {
        XdpMode::Native => try_mode(program, Flags::Driver, "native"),
        XdpMode::Generic => try_mode(program, Flags::Skb, "generic"),
        XdpMode::Auto => try_mode(program, Flags::Driver, "native").or_else(|native_err| {
            warn!(interface, error = %native_err, "native XDP unavailable; falling back to generic mode, which is much slower");
            try_mode(program, Flags::Skb, "generic")
        }),
    }
}

/// The `VIPS` key for an address and port.
pub fn vip_key(address: IpAddr, port: u16) -> VipKey {
    match address {
        IpAddr::V4(a) => VipKey::v4(a.octets(), port.to_be()),
        IpAddr::V6(a) => VipKey::v6(a.octets(), port.to_be()),
    }
}

/// An address in the maps' 16-byte layout (IPv4 in the first four bytes).
pub fn addr_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}
