//! Why the XDP program did what it did to a packet.
//!
//! Each reason is a stable index into the `STATS` per-CPU array; the numbers are
//! part of the ABI (dashboards and pinned maps outlive a daemon version), so a
//! reason is never renumbered: new ones are appended.

/// Not IPv4 or IPv6 (ARP, LLDP, ...): handed to the host untouched.
pub const PASS_NOT_IP: u32 = 0;
/// An IP packet whose headers are shorter than they claim: the host decides.
pub const PASS_TRUNCATED: u32 = 1;
/// IP header fields that make no sense (IHL < 5, version mismatch).
pub const PASS_MALFORMED: u32 = 2;
/// IP but not TCP (ICMP, UDP, ...).
pub const PASS_NOT_TCP: u32 = 3;
/// An IPv4 fragment, or an IPv6 packet with a fragment header: no TCP ports to
/// look at in a non-first fragment, so never a VIP match.
pub const PASS_FRAGMENT: u32 = 4;
/// IPv6 with more extension headers than the parser walks.
pub const PASS_IPV6_EXT_LIMIT: u32 = 5;
/// TCP to an address/port that is no VIP: the host's own traffic.
pub const PASS_NOT_VIP: u32 = 6;
/// A SYN (without ACK) to a VIP.
pub const VIP_SYN: u32 = 7;
/// Any other TCP segment to a VIP.
pub const VIP_OTHER: u32 = 8;

/// Number of reasons; the length of the `STATS` array.
pub const COUNT: u32 = 9;

/// The metric label for a reason, `"unknown"` for an index out of range.
pub const fn name(reason: u32) -> &'static str {
    match reason {
        PASS_NOT_IP => "pass_not_ip",
        PASS_TRUNCATED => "pass_truncated",
        PASS_MALFORMED => "pass_malformed",
        PASS_NOT_TCP => "pass_not_tcp",
        PASS_FRAGMENT => "pass_fragment",
        PASS_IPV6_EXT_LIMIT => "pass_ipv6_ext_limit",
        PASS_NOT_VIP => "pass_not_vip",
        VIP_SYN => "vip_syn",
        VIP_OTHER => "vip_other",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_name() {
        let mut seen: [&str; COUNT as usize] = [""; COUNT as usize];
        for r in 0..COUNT {
            let n = name(r);
            assert_ne!(n, "unknown", "reason {r} has no name");
            assert!(!seen.contains(&n), "name {n} used twice");
            seen[r as usize] = n;
        }
        assert_eq!(name(COUNT), "unknown");
    }
}
