//! A namespace in which `bpf_fib_lookup` answers, for running the data path
//! with BPF_PROG_TEST_RUN (golden packets, benchmarks): a client-side and a
//! backend-side interface with IPv4 and IPv6 addresses, forwarding on, and
//! permanent neighbour entries for one client and one backend. Run the program from a
//! thread inside it (`net.ns.enter(...)`): the lookup uses the caller's tables.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::netns::{Netns, unique_prefix};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const SNAT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
pub const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
// IPv6 from the benchmarking prefix 2001:2::/48 (RFC 5180).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x10);
pub const SNAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
pub const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0x11);

pub struct Net {
    pub ns: Netns,
    /// MACs of the balancer's own interfaces, the source of what it sends.
    pub client_side_mac: [u8; 6],
    pub backend_side_mac: [u8; 6],
}

impl Net {
    pub fn new() -> Net {
        crate::require_root();
        let ns = Netns::new(&format!("{}-fib", unique_prefix()));
        ns.ip("link add cl type veth peer name clp");
        ns.ip("link add be type veth peer name bep");
        for dev in ["cl", "clp", "be", "bep"] {
            ns.ip(&format!("link set {dev} up"));
        }
        ns.ip("addr add 198.18.0.1/24 dev cl");
        ns.ip(&format!("addr add {SNAT}/24 dev be"));
        ns.ip(&format!("neigh add {CLIENT} lladdr 02:00:00:00:00:10 dev cl nud permanent"));
        ns.ip(&format!("neigh add {BACKEND} lladdr 02:00:00:00:00:11 dev be nud permanent"));
        ns.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        ns.ip("-6 addr add 2001:2:0:1::1/64 dev cl nodad");
        ns.ip(&format!("-6 addr add {SNAT6}/64 dev be nodad"));
        ns.ip(&format!("-6 neigh add {CLIENT6} lladdr 02:00:00:00:00:10 dev cl nud permanent"));
        ns.ip(&format!("-6 neigh add {BACKEND6} lladdr 02:00:00:00:00:11 dev be nud permanent"));
        ns.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        Net { client_side_mac: link_mac(&ns, "cl"), backend_side_mac: link_mac(&ns, "be"), ns }
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

/// An interface's MAC, from `ip -br link` (the process's /sys belongs to the
/// namespace that mounted it, not to `ns`).
fn link_mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.run("ip", &["-br", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text.split_whitespace().nth(2).expect("ip -br link: MAC in the third column");
    let bytes: Vec<u8> = mac.split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
    bytes.try_into().expect("six bytes")
}
