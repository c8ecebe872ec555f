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
/// A SYN (without ACK) to a `tls` VIP, answered by a SYN-ACK carrying a SYN
/// cookie (XDP_TX); no state is kept.
pub const VIP_SYN: u32 = 7;
/// A segment to a `tls` VIP that is neither a SYN nor a plain ACK (RST, FIN,
/// SYN-ACK) and belongs to no connection: dropped.
pub const VIP_OTHER: u32 = 8;
/// A SYN to a `tcp` VIP bound to a backend: flow created, SYN forwarded.
pub const NEW_FLOW: u32 = 9;
/// A segment of a known flow forwarded client -> backend.
pub const FWD_TO_BACKEND: u32 = 10;
/// A segment of a known flow forwarded backend -> client.
pub const FWD_TO_CLIENT: u32 = 11;
/// The VIP's farm has no backend to take a new connection.
pub const DROP_NO_BACKEND: u32 = 12;
/// Every probed source port towards the chosen backend was in use.
pub const DROP_PORTS_EXHAUSTED: u32 = 13;
/// A non-SYN segment to a `tcp` VIP that belongs to no flow.
pub const DROP_NO_FLOW: u32 = 14;
/// The kernel has no route to the rewritten destination.
pub const DROP_NO_ROUTE: u32 = 15;
/// The next hop's link-layer address is not resolved yet.
pub const DROP_NO_NEIGH: u32 = 16;
/// The flow table refused an entry.
pub const DROP_FLOW_TABLE: u32 = 17;
/// The ACK that completes a handshake with a valid SYN cookie: nothing to do
/// until the client's first data (the ClientHello) arrives; dropped.
pub const COOKIE_ACK: u32 = 18;
/// An ACK to a `tls` VIP whose cookie does not check out (forged, or older
/// than the kernel's cookie lifetime): dropped.
pub const DROP_BAD_COOKIE: u32 = 19;
/// A `tls` connection's first client data with a valid cookie, starting with
/// a TLS handshake record: a backend was chosen, the segment stashed and
/// turned into the SYN to the backend (delayed binding, DESIGN.md §2 step 3).
pub const TLS_BIND: u32 = 20;
/// The kernel could not make a SYN cookie (malformed options): dropped.
pub const DROP_SYN_COOKIE: u32 = 21;
/// A SYN to an IPv6 `tls` VIP: SYN cookies are IPv4-only so far; passed.
pub const PASS_TLS_IPV6: u32 = 22;

/// As `TLS_BIND`, for first data that is not a TLS handshake record: spliced
/// to a backend the farm's algorithm chose all the same, and counted here.
pub const TLS_NOT_HANDSHAKE: u32 = 23;
/// The client sent its first data again while the backend SYN is unanswered:
/// the SYN is sent again.
pub const BACKEND_SYN_RESENT: u32 = 24;
/// Any other client segment while the backend SYN is unanswered: dropped (the
/// client sends it again).
pub const DROP_BACKEND_PENDING: u32 = 25;
/// A backend's SYN-ACK: passed to the tc program, which answers it.
pub const BACKEND_SYN_ACK: u32 = 26;
/// (tc) The backend's SYN-ACK turned into our ACK carrying the stashed data.
pub const TC_STASH_SENT: u32 = 27;
/// (tc) A SYN-ACK for a connection with no stash (already acknowledged, or
/// evicted): dropped.
pub const TC_DROP_NO_STASH: u32 = 28;
/// First data larger than the stash (`STASH_MAX`), or too short to be turned
/// into the backend SYN in place (header and data shorter than the SYN's
/// header: 24 to 40 bytes): dropped.
pub const DROP_STASH_SIZE: u32 = 29;
/// The backend refused the connection (RST to our SYN): the client gets an RST.
pub const BACKEND_REFUSED: u32 = 30;
/// (tc) A SYN-ACK the tc program could not answer (malformed, or a helper
/// failed): dropped; the backend sends it again.
pub const TC_DROP_ERROR: u32 = 31;

/// A packet for a new connection, but the tail call to the program that
/// handles those failed (its slot empty): dropped. The loader fills the slot
/// before attaching, so this counts a broken load.
pub const DROP_NO_VIP_PROGRAM: u32 = 32;
/// As `TLS_BIND`, to the backend persistence named (a session it holds).
pub const TLS_BIND_PERSISTED: u32 = 33;

/// The backend a learned session names has failed its health checks and
/// its farm's `on_backend_failure` is `reset`: the client gets an RST.
pub const RESET_BACKEND_FAILED: u32 = 34;
/// As `RESET_BACKEND_FAILED`, with `on_backend_failure = "drop"`: the
/// client's segment is dropped (it retries until the backend is back or its
/// entry expires).
pub const DROP_BACKEND_FAILED: u32 = 35;

/// A segment of a ClientHello that spans segments, held in the stash until
/// the rest of the hello arrives (DESIGN.md §2 step 3b): dropped, the data
/// kept. The hello's last segment is counted as the binding.
pub const TLS_HELLO_PART: u32 = 36;
/// A segment of a ClientHello being assembled in XDP that does not continue
/// what is held: a retransmission of it (a later segment was lost, and the
/// client, never acknowledged, sends only its first again) or one after a
/// gap. The hello goes to the daemon's slow path with this segment, which
/// acknowledges what it has, so the client sends the rest.
pub const TLS_HELLO_OUT_OF_ORDER: u32 = 37;
/// First data whose record header claims more than a TLS record may hold
/// (2^14 bytes, RFC 8446 §5.1): bound on the part held, which persistence
/// reads as a truncated hello; the rest reaches the backend once the
/// connection is spliced, when the client sends it again.
pub const TLS_HELLO_TOO_LONG: u32 = 38;

/// A segment of a ClientHello XDP cannot finish (longer than the stash, or
/// fragmented over records), handed to the daemon through `SLOW_PATH`:
/// dropped here; the daemon acknowledges it to the client and sends it to
/// the backend once it has bound the connection.
pub const TLS_HELLO_SLOW_PATH: u32 = 39;
/// As `TLS_HELLO_SLOW_PATH` with `SLOW_PATH` full (the daemon slow or
/// stopped): dropped, and the client sends it again.
pub const DROP_SLOW_PATH_FULL: u32 = 40;
/// Client data on a `tls` VIP with no connection XDP knows and a cookie
/// that fails for its sequence number: a later segment of a hello that
/// overtook the first (or a forgery). Handed to the daemon, which runs it
/// through XDP again once the first segment has opened the connection, or
/// forgets it (`SlowSegment`, `slow_kind::EARLY`). With the ring full it
/// counts as `DROP_SLOW_PATH_FULL`.
pub const TLS_HELLO_EARLY: u32 = 41;

/// An IPv6 frame, but the tail call to the program that handles those
/// failed (its slot empty): dropped. As with `DROP_NO_VIP_PROGRAM`, this
/// counts a broken load.
pub const DROP_NO_V6_PROGRAM: u32 = 42;

/// Number of reasons; the length of the `STATS` array.
pub const COUNT: u32 = 43;

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
        NEW_FLOW => "new_flow",
        FWD_TO_BACKEND => "fwd_to_backend",
        FWD_TO_CLIENT => "fwd_to_client",
        DROP_NO_BACKEND => "drop_no_backend",
        DROP_PORTS_EXHAUSTED => "drop_ports_exhausted",
        DROP_NO_FLOW => "drop_no_flow",
        DROP_NO_ROUTE => "drop_no_route",
        DROP_NO_NEIGH => "drop_no_neigh",
        DROP_FLOW_TABLE => "drop_flow_table",
        COOKIE_ACK => "cookie_ack",
        DROP_BAD_COOKIE => "drop_bad_cookie",
        TLS_BIND => "tls_bind",
        DROP_SYN_COOKIE => "drop_syn_cookie",
        PASS_TLS_IPV6 => "pass_tls_ipv6",
        TLS_NOT_HANDSHAKE => "tls_not_handshake",
        BACKEND_SYN_RESENT => "backend_syn_resent",
        DROP_BACKEND_PENDING => "drop_backend_pending",
        BACKEND_SYN_ACK => "backend_syn_ack",
        TC_STASH_SENT => "tc_stash_sent",
        TC_DROP_NO_STASH => "tc_drop_no_stash",
        DROP_STASH_SIZE => "drop_stash_size",
        BACKEND_REFUSED => "backend_refused",
        TC_DROP_ERROR => "tc_drop_error",
        DROP_NO_VIP_PROGRAM => "drop_no_vip_program",
        TLS_BIND_PERSISTED => "tls_bind_persisted",
        RESET_BACKEND_FAILED => "reset_backend_failed",
        DROP_BACKEND_FAILED => "drop_backend_failed",
        TLS_HELLO_PART => "tls_hello_part",
        TLS_HELLO_OUT_OF_ORDER => "tls_hello_out_of_order",
        TLS_HELLO_TOO_LONG => "tls_hello_too_long",
        TLS_HELLO_SLOW_PATH => "tls_hello_slow_path",
        DROP_SLOW_PATH_FULL => "drop_slow_path_full",
        TLS_HELLO_EARLY => "tls_hello_early",
        DROP_NO_V6_PROGRAM => "drop_no_v6_program",
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
