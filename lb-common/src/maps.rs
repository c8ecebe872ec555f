//! Map keys and values shared by the XDP program and the daemon.

use core::mem::size_of;

/// Map names, as the loader looks them up in the object file.
pub const VIPS_MAP: &str = "VIPS";
pub const STATS_MAP: &str = "STATS";
/// The flow table, one per address family (`FlowKeyV4`, `FlowKey` keys).
pub const FLOWS_V4_MAP: &str = "FLOWS_V4";
pub const FLOWS_V6_MAP: &str = "FLOWS_V6";
pub const BACKENDS_MAP: &str = "BACKENDS";
pub const MAGLEV_MAP: &str = "MAGLEV";
pub const SETTINGS_MAP: &str = "SETTINGS";
pub const OWNED_ADDRS_MAP: &str = "OWNED_ADDRS";
pub const OWNED_FILTER_MAP: &str = "OWNED_FILTER";
pub const FARMS_MAP: &str = "FARMS";
pub const FARM_RR_MAP: &str = "FARM_RR";
pub const PENDING_MAP: &str = "PENDING";
pub const SESSIONS_MAP: &str = "SESSIONS";
pub const SESSION_PREFIXES_MAP: &str = "SESSION_PREFIXES";
pub const PERSIST_STATS_MAP: &str = "PERSIST_STATS";
pub const SESSION_REMOVALS_MAP: &str = "SESSION_REMOVALS";
pub const SESSION_FILTER_MAP: &str = "SESSION_FILTER";
pub const BACKEND_NEW_FLOWS_MAP: &str = "BACKEND_NEW_FLOWS";
pub const BACKEND_LOAD_MAP: &str = "BACKEND_LOAD";
pub const FARM_NAMES_MAP: &str = "FARM_NAMES";
pub const PORT_CURSORS_MAP: &str = "PORT_CURSORS";

/// The maps `tether run` pins under its instance directory, each by its
/// name, and a daemon started over them adopts: the connections, learned
/// sessions, counters and configuration that must outlive one daemon
/// process (per-CPU scratch space and the tail-call table are each load's
/// own).
pub const PINNED_MAPS: [&str; 21] = [
    STATS_MAP,
    FLOWS_V4_MAP,
    FLOWS_V6_MAP,
    PENDING_MAP,
    SESSIONS_MAP,
    SESSION_PREFIXES_MAP,
    PERSIST_STATS_MAP,
    SESSION_REMOVALS_MAP,
    SESSION_FILTER_MAP,
    BACKENDS_MAP,
    MAGLEV_MAP,
    FARMS_MAP,
    FARM_RR_MAP,
    BACKEND_NEW_FLOWS_MAP,
    BACKEND_LOAD_MAP,
    VIPS_MAP,
    OWNED_ADDRS_MAP,
    OWNED_FILTER_MAP,
    SETTINGS_MAP,
    PORT_CURSORS_MAP,
    FARM_NAMES_MAP,
];

/// `BINDS`, a ring buffer of `BindEvent`s, and its size in bytes (room for
/// about 5,000 events between two reads by the daemon).
pub const BINDS_MAP: &str = "BINDS";
pub const BINDS_RING_BYTES: u32 = 256 * 1024;
/// `SLOW_PATH`: segments of ClientHellos XDP cannot finish (longer than the
/// stash, or fragmented over records), handed to the daemon (DESIGN.md §4).
pub const SLOW_PATH_MAP: &str = "SLOW_PATH";
/// Room for about 650 full-size frames: a burst of a few dozen long hellos.
pub const SLOW_PATH_RING_BYTES: u32 = 1024 * 1024;
/// The largest frame XDP hands over: a 1500-byte MTU with Ethernet and a VLAN tag.
pub const SLOW_FRAME_MAX: usize = 1536;

/// An entry of `SLOW_PATH`: one segment, the whole frame as it arrived,
/// where, and why (`slow_kind`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SlowSegment {
    /// The client -> VIP tuple (the `PENDING` key).
    pub key: FlowKey,
    /// The interface it came in on.
    pub ifindex: u32,
    /// Bytes of `frame` in use.
    pub len: u16,
    /// `slow_kind`: what the daemon is to do with the frame.
    pub kind: u8,
    pub _pad: u8,
    pub frame: [u8; SLOW_FRAME_MAX],
}

/// `SlowSegment::kind`.
pub mod slow_kind {
    /// A segment of a hello the slow path assembles (`hello::SLOW_PATH`).
    pub const HELLO: u8 = 0;
    /// Client data with no connection XDP knows and a cookie that fails for
    /// it: most likely a later segment of a hello that overtook the first,
    /// whose sequence number is the only thing the cookie can be checked
    /// against. The daemon keeps it a while and runs it through XDP again
    /// once the first segment has arrived.
    pub const EARLY: u8 = 1;
    /// A copy of a backend segment of a flight the daemon reads for
    /// persistence (`flow_flags::LEARN_DAEMON`); the segment itself went on.
    pub const SERVER: u8 = 2;
}

/// `Pending::assembling`: where a connection's ClientHello stands.
pub mod hello {
    /// Whole; the backend leg is open and tc (or the daemon) sends it.
    pub const BOUND: u8 = 0;
    /// Arriving in segments XDP holds (`delayed::append_v4`).
    pub const ASSEMBLING: u8 = 1;
    /// Too long or fragmented for XDP: its segments go to the daemon.
    pub const SLOW_PATH: u8 = 2;
    /// The daemon has it whole and has written its persistence fields as a
    /// short ClientHello in the stash: the next packet of the connection
    /// binds on it, and the daemon sends the real hello.
    pub const DECIDED: u8 = 3;
}

/// `BINDS_LOST` (one u64): events XDP could not put in a full `BINDS`.
pub const BINDS_LOST_MAP: &str = "BINDS_LOST";

/// An entry of the `BINDS` ring buffer: a new connection bound to a
/// backend, for the daemon's log line per new session. Written by XDP at
/// binding; read by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindEvent {
    /// The client, as `FlowKey` has it.
    pub client_be: [u8; 16],
    pub client_port_be: u16,
    /// `Family as u8`.
    pub family: u8,
    /// The `PersistKind` whose entry named `required` (0: none did).
    pub kind: u8,
    pub farm_id: u32,
    /// The backend the farm's algorithm gives the client: where the
    /// algorithm decided, the one used; where persistence decided, the one
    /// round-robin or Maglev would have given (`NO_BACKEND` for `random`
    /// and `least-connections`, which are not asked).
    pub favoured: u32,
    /// The backend persistence named (`NO_BACKEND`: none).
    pub required: u32,
    /// The backend the connection got.
    pub used: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<BindEvent>() == 40);

/// A farm's name in `FARM_NAMES` (the configuration allows 1-64 bytes),
/// zero-padded.
pub const FARM_NAME_MAX: usize = 64;
/// The XDP entry point in the object file.
pub const XDP_PROGRAM: &str = "tether_xdp";
/// New connections, tail-called from `tether_xdp` through `JUMPS`.
pub const XDP_VIP_PROGRAM: &str = "tether_xdp_vip";
/// Backend segments persistence learns from, tail-called likewise.
pub const XDP_LEARN_PROGRAM: &str = "tether_xdp_learn";
/// Delayed binding once the ClientHello is whole, tail-called from
/// `tether_xdp_vip`.
pub const XDP_BIND_PROGRAM: &str = "tether_xdp_bind";
/// IPv6 frames, tail-called from `tether_xdp`: the same steps over the
/// IPv6 flow table.
pub const XDP_V6_PROGRAM: &str = "tether_xdp_v6";
/// `cargo xtask bench` only, never loaded by the daemon: a binding's
/// ClientHello parse and persistence lookups on their own.
pub const XDP_BENCH_CHOOSE_PROGRAM: &str = "tether_bench_choose";
pub const JUMPS_MAP: &str = "JUMPS";
/// `JUMPS` slots.
pub const JUMP_VIP: u32 = 0;
pub const JUMP_LEARN: u32 = 1;
pub const JUMP_BIND: u32 = 2;
pub const JUMP_V6: u32 = 3;
/// The tc ingress program that finishes delayed binding: it turns a backend's
/// SYN-ACK into the ACK that carries the stashed ClientHello (DESIGN.md §2 step 4).
pub const TC_PROGRAM: &str = "tether_tc";
/// In the test object (`lb_user::TEST_OBJECT`): an XDP program that passes
/// everything, attached to test peers so that frames redirected into a veth are
/// not dropped (DESIGN.md §5) and the baseline the benchmark compares against;
/// and one that drops a share of frames, for lossy-link tests.
pub const XDP_PASS_PROGRAM: &str = "tether_pass";
pub const XDP_LOSSY_PROGRAM: &str = "tether_lossy";
pub const LOSS_PERMILLE_MAP: &str = "LOSS_PERMILLE";
/// A test program that drops the first `SYNS_TO_DROP` SYNs it sees: a
/// backend whose first answer is lost.
pub const XDP_DROP_SYNS_PROGRAM: &str = "tether_drop_syns";
pub const SYNS_TO_DROP_MAP: &str = "SYNS_TO_DROP";

/// Most VIPs one instance serves.
pub const MAX_VIPS: u32 = 1024;
/// Most farms, and backends over all farms.
pub const MAX_FARMS: u32 = 64;
pub const MAX_BACKENDS: u32 = 4096;
/// Slots in one farm's Maglev lookup table: a prime well above the number of
/// backends, as the Maglev paper asks (Eisenbud et al., NSDI 2016, §3.4).
pub const MAGLEV_RING: u32 = 65_537;
/// Flow-table entries; each connection takes two (one per direction). IPv4
/// and IPv6 have a table each (see `FlowKeyV4`); IPv6 reaches only `tcp`
/// VIPs, so its table is the smaller. Both are preallocated: 208 and 58 MiB
/// of kernel memory (`bpftool map show`: 208 and 232 bytes an entry), where
/// one table of IPv4-sized capacity with the long key took 232 MiB.
pub const MAX_FLOWS_V4: u32 = 1 << 20;
pub const MAX_FLOWS_V6: u32 = 1 << 18;
/// Connections waiting for their backend's SYN-ACK, each holding its
/// ClientHello (`Pending`). Bounded because every entry is a few KiB.
pub const MAX_PENDING: u32 = 8192;
/// The largest ClientHello (or other first client data) tether stashes while
/// it opens the backend connection. A browser's post-quantum hello is 1.6-1.9
/// KB, and resuming adds its ticket: Chromium 156's resumptions from nginx
/// were over 2 KB (seen in `split_hello.rs`). Three segments' worth.
pub const STASH_MAX: usize = 4096;
/// The most segments a stashed ClientHello may arrive in; more than this is
/// the slow path's.
pub const STASH_SEGMENTS: usize = 8;
/// Learned persistence entries (`SESSIONS`), over all farms, as the object
/// declares them; the loader sizes the table from the farms'
/// `session_capacity` instead. LRU maps are preallocated (about 110 bytes an
/// entry with the kernel's overhead): kernel memory held from load.
pub const MAX_SESSIONS: u32 = 1 << 18;
/// `SESSION_FILTER`, the table of bytes that says which `SESSIONS` keys
/// may be present (`persist::filter_slot`): a lookup whose slot is zero is
/// a miss without asking the hash table. Its first element is the header
/// (`session_filter_header`); then two generations of `2^bits` one-byte
/// slots, eight to an array element. The loader sizes it from the session
/// table (`session_filter_bits`). The share of slots a table's keys fill is
/// the share of misses still looked up.
pub const SESSION_FILTER_HEADER: u32 = 0;
/// The smallest filter, and the largest: `2^26` slots a generation, 128 MiB
/// in all, for the largest table (16 Mi entries).
pub const SESSION_FILTER_MIN_BITS: u32 = 16;
pub const SESSION_FILTER_MAX_BITS: u32 = 26;

/// The filter's size for a session table of `table_size` entries, as the
/// log2 of a generation's slots: 4 to 8 slots an entry (a full table marks
/// at most 22% of them), within the bounds above. For 100,000 entries (a
/// farm's default capacity): 2^19 slots, 1 MiB in all. More slots an entry
/// would mark fewer, but a lookup reads a byte anywhere in the filter:
/// `tether-bench first` with 2^24 slots instead of 2^22 (nine farms of
/// 100,000 at 16 an entry) took 10 ns more per kind.
pub const fn session_filter_bits(table_size: u32) -> u32 {
    let entries = if table_size == 0 { 1 } else { table_size };
    let bits = entries.next_power_of_two().trailing_zeros() + 2;
    if bits < SESSION_FILTER_MIN_BITS {
        SESSION_FILTER_MIN_BITS
    } else if bits > SESSION_FILTER_MAX_BITS {
        SESSION_FILTER_MAX_BITS
    } else {
        bits
    }
}

/// Array elements (u64, eight slots) of one generation of a filter of `bits`.
pub const fn session_filter_words(bits: u32) -> u32 {
    1 << (bits - 3)
}

/// `SESSION_FILTER`'s elements for `bits`: the header and two generations.
pub const fn session_filter_elements(bits: u32) -> u32 {
    1 + 2 * session_filter_words(bits)
}

/// The `bits` of a filter of `elements` elements, if that is a filter's size.
pub fn session_filter_bits_of(elements: u32) -> Option<u32> {
    (SESSION_FILTER_MIN_BITS..=SESSION_FILTER_MAX_BITS).find(|&bits| session_filter_elements(bits) == elements)
}

/// The header: the generation lookups read (bit 0) and the filter's `bits`
/// (bits 8-15), in one word the daemon stores whole and XDP reads once per
/// lookup. Zero until the loader writes it: no filter (every lookup asks
/// the table, nothing is marked).
pub const fn session_filter_header(generation: u32, bits: u32) -> u64 {
    (generation & 1) as u64 | (bits as u64) << 8
}

/// The (generation, bits) of a header; None for one that names no size a
/// filter can have (a zero header: not written yet).
#[inline(always)]
pub fn session_filter_header_parts(header: u64) -> Option<(u32, u32)> {
    let bits = (header >> 8) as u32 & 0xFF;
    if !(SESSION_FILTER_MIN_BITS..=SESSION_FILTER_MAX_BITS).contains(&bits) {
        return None;
    }
    Some((header as u32 & 1, bits))
}

/// A Maglev slot or backend reference that names no backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// Address family, as stored in `VipKey::family`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4 = 4,
    Ipv6 = 6,
}

impl TryFrom<u8> for Family {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            4 => Ok(Family::Ipv4),
            6 => Ok(Family::Ipv6),
            other => Err(other),
        }
    }
}

/// What a VIP does with a connection, as stored in `VipInfo::protocol`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Delayed binding on the ClientHello, TLS session persistence.
    Tls = 1,
    /// Backend chosen at SYN, plain full NAT.
    Tcp = 2,
}

impl TryFrom<u8> for Protocol {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Protocol::Tls),
            2 => Ok(Protocol::Tcp),
            other => Err(other),
        }
    }
}

/// Key of the `VIPS` hash map: destination address and port of a packet.
/// Written by the daemon at start and reload; read by XDP on every TCP packet.
///
/// IPv4 addresses sit in the first four bytes of `addr_be`, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr_be: [u8; 16],
    pub port_be: u16,
    /// `Family as u8`.
    pub family: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<VipKey>() == 20);

impl VipKey {
    pub const fn v4(addr_be: [u8; 4], port_be: u16) -> Self {
        let mut addr = [0u8; 16];
        addr[0] = addr_be[0];
        addr[1] = addr_be[1];
        addr[2] = addr_be[2];
        addr[3] = addr_be[3];
        VipKey { addr_be: addr, port_be, family: Family::Ipv4 as u8, _pad: 0 }
    }

    pub const fn v6(addr_be: [u8; 16], port_be: u16) -> Self {
        VipKey { addr_be, port_be, family: Family::Ipv6 as u8, _pad: 0 }
    }
}

/// Key of the `OWNED_ADDRS` hash map: an address the data path answers for.
/// Written by the daemon (every VIP address and every SNAT address); read by XDP
/// first, so traffic to any other address leaves after one small lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr_be: [u8; 16],
    /// `Family as u8`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<AddrKey>() == 20);

/// Words of `OwnedFilter`: 65,536 bits, so that even 2,048 owned addresses
/// (`2 * MAX_VIPS`) leave 97% of them clear.
pub const OWNED_FILTER_WORDS: usize = 1024;

/// Value of `OWNED_FILTER`, an array of one: a bit for each address tether
/// owns (`OWNED_ADDRS`), at `owned_filter_slot`. XDP tests it before any
/// hash-table lookup, so that traffic of the host's own (to addresses with
/// a clear bit) leaves after a few instructions. A set bit only says "look
/// further": addresses can share one. Written by the daemon, which only
/// ever sets bits: a connection to an address a reload took away keeps its
/// flow entries until it ends, and its packets must still reach them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedFilter {
    pub words: [u64; OWNED_FILTER_WORDS],
}

/// The filter's input for an address as `AddrKey` holds it: its four
/// native-endian words folded by xor. An IPv4 address's is its first word
/// (the other three are zero), which XDP has at hand.
#[inline(always)]
pub fn owned_filter_fold(addr_be: &[u8; 16]) -> u32 {
    let word = |i: usize| u32::from_ne_bytes([addr_be[i], addr_be[i + 1], addr_be[i + 2], addr_be[i + 3]]);
    word(0) ^ word(4) ^ word(8) ^ word(12)
}

/// Where a folded address (`owned_filter_fold`) has its bit in
/// `OwnedFilter`: the word's index and the bit's mask. Multiplicative
/// hashing, top 16 bits: neighbouring addresses land far apart.
#[inline(always)]
pub fn owned_filter_slot(folded: u32) -> (usize, u64) {
    let hash = folded.wrapping_mul(0x9E37_79B1) >> 16;
    ((hash >> 6) as usize, 1 << (hash & 63))
}

/// `OWNED_ADDRS` value bits: what an address is to the data path.
pub mod owned {
    /// Clients connect to it.
    pub const VIP: u32 = 1;
    /// Backends answer to it.
    pub const SNAT: u32 = 2;
}

/// Value of the `VIPS` map. Written by the daemon; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipInfo {
    /// Index of the VIP in the daemon's configuration, for per-VIP counters.
    pub vip_id: u32,
    /// Index of the farm serving the VIP.
    pub farm_id: u32,
    /// Source address towards the backends (`snat`), same layout as `VipKey`.
    pub snat_be: [u8; 16],
    /// `Protocol as u8`.
    pub protocol: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<VipInfo>() == 28);

/// A TCP packet's addresses and ports as it arrives, either family: how the
/// data path and the daemon name one direction of a connection, and the key
/// of the IPv6 flow table (`FLOWS_V6`). A connection has two entries:
/// client -> VIP, and backend -> SNAT address. Aligned to 4 so the IPv4
/// address in the first bytes of each field reads as one word.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr_be: [u8; 16],
    pub daddr_be: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    /// `Family as u8`.
    pub family: u8,
    /// Zero. The data path writes it as `[0, 0, 0]`: rustc emits `[0; 3]` as
    /// a `memset`, which the BPF backend turns into a call to a byte loop.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Key of the IPv4 flow table (`FLOWS_V4`): `FlowKey` without the empty
/// parts. Its own table because the kernel hashes and compares the whole
/// key on every lookup: 12 bytes are one jhash2 final mix and a short
/// compare, where 40 bytes are three rounds more and a longer compare, and
/// the lookup was about a third of the established path's cost.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    /// The address's four bytes in memory order (`u32::from_ne_bytes`):
    /// words, so the data path stores each in one instruction (as `[u8; 4]`
    /// LLVM wrote them a byte at a time).
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
}
const _: () = assert!(size_of::<FlowKeyV4>() == 12);

/// Value of `FLOWS_V4` and `FLOWS_V6`: how to rewrite packets of one direction of a connection.
/// Created by XDP when it binds a connection to a backend; `last_seen_ns` is
/// refreshed by XDP; the splice fields are filled when a `tls` connection's
/// backend answers (tc); expired and removed by the daemon's sweeper.
///
/// The other direction's key is the reply tuple of the rewritten packet:
/// `(new_daddr, new_saddr, new_dport, new_sport)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub new_saddr_be: [u8; 16],
    pub new_daddr_be: [u8; 16],
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    /// Index into `BACKENDS`.
    pub backend_id: u32,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE, within a tick of
    /// CLOCK_MONOTONIC) of creation and of the last packet, the latter
    /// refreshed at most once a second and always greater than `created_ns`
    /// once any packet came after creation.
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// Splicing (`flow_flags::SPLICE`), added modulo 2^32 to this direction's
    /// sequence number, acknowledgement number (and SACK blocks), and
    /// timestamp value and echo. The two legs of a `tls` connection have
    /// different initial sequence numbers (our SYN cookie vs the backend's)
    /// and different timestamp clocks (ours vs the backend's).
    pub seq_delta: u32,
    pub ack_delta: u32,
    pub tsval_delta: u32,
    pub tsecr_delta: u32,
    /// Window scaling: the window field of this direction's packets is read
    /// with shift `wscale_in` and written with shift `wscale_out`.
    pub wscale_in: u8,
    pub wscale_out: u8,
    /// `FlowDirection as u8`.
    pub direction: u8,
    /// `flow_flags` bits.
    pub flags: u8,
    /// `FlowState as u8`.
    pub state: u8,
    /// Backend -> client, while `flow_flags::LEARN` is set: the length and
    /// first bytes of the session ID the client offered, so that a
    /// ServerHello that only echoes it (TLS 1.3 always does; TLS 1.2 when it
    /// resumes) is not learned as new.
    pub client_sid_len: u8,
    /// Backend -> client, while `flow_flags::LEARN` is set: whether
    /// `offered_key_name` holds the key name of the client's first TLS 1.3
    /// PSK identity, learned for the backend if its ServerHello accepts it.
    pub has_offered_key_name: u8,
    pub _pad: u8,
    pub client_sid_prefix: [u8; 8],
    pub offered_key_name: [u8; 16],
    /// Where this direction's packets went last: the answer of the FIB
    /// lookup, kept so that most packets skip it. Written by XDP after a
    /// lookup; forgotten (ifindex 0) each time `last_seen_ns` is refreshed, so
    /// a route or neighbour change takes effect within about a second.
    pub next_hop: NextHop,
    /// Backend -> client, while `flow_flags::LEARN_DAEMON` is set: the
    /// backend's sequence number where the daemon's read of its flight
    /// starts (a record boundary). XDP hands the daemon a copy of each
    /// backend segment up to `FLIGHT_MAX` bytes past it.
    pub flight_start: u32,
    /// Low 32 bits of the kernel's `jiffies` when XDP last read the clock for
    /// this entry: the clock (a helper call) is read at most once a tick,
    /// `jiffies` (inlined by the verifier) on every packet. XDP's alone.
    pub seen_tick: u32,
}
const _: () = assert!(size_of::<Flow>() == 128);

/// How much of a server's flight, from `Flow::flight_start`, the daemon is
/// given to read: a TLS 1.2 full handshake's first flight with a long
/// certificate chain, and the second flight after it.
pub const FLIGHT_MAX: u32 = 32 * 1024;

/// An egress interface and the MAC addresses to write, as `bpf_fib_lookup`
/// gave them. `ifindex` 0: none known.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}
const _: () = assert!(size_of::<NextHop>() == 16);

/// `Flow::state`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// Packets flow both ways (a `tcp` VIP from its SYN on).
    Established = 0,
    /// A `tls` connection whose backend SYN is out and unanswered: the client
    /// data that opened it is stashed in `PENDING`.
    BackendSynSent = 1,
}

/// `Flow::direction`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowDirection {
    /// Client -> VIP, rewritten to SNAT -> backend.
    ToBackend = 1,
    /// Backend -> SNAT, rewritten to VIP -> client.
    ToClient = 2,
}

impl TryFrom<u8> for FlowDirection {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(FlowDirection::ToBackend),
            2 => Ok(FlowDirection::ToClient),
            other => Err(other),
        }
    }
}

/// `Flow::flags` bits.
pub mod flow_flags {
    /// This direction has sent a FIN.
    pub const FIN: u8 = 0x01;
    /// Sequence numbers, timestamps and windows need translating (`tls` VIPs).
    pub const SPLICE: u8 = 0x02;
    /// Backend -> client only: the stashed first segment has not been
    /// acknowledged by the backend yet; its `PENDING` entry is still needed.
    pub const STASHED: u8 = 0x04;
    /// Backend -> client of a `tls` connection whose farm learns from the
    /// server (session IDs, tickets, ticket keys): the backend's first data
    /// (its ServerHello) is still to be read.
    pub const LEARN: u8 = 0x08;
    /// Backend -> client: the client asked for a TLS 1.2 ticket and the farm
    /// learns tickets or ticket keys; the server's NewSessionTicket, which
    /// follows the ServerHello or starts the server's second flight, is still
    /// to be read.
    pub const LEARN_TICKET: u8 = 0x10;
    /// Backend -> client: a ServerHello or NewSessionTicket was cut by a
    /// segment boundary (or could not be told from one), so the daemon reads
    /// the flight from `Flow::flight_start` on: XDP copies the backend's
    /// segments to it (`slow_kind::SERVER`) and forwards them as usual.
    /// `LEARN_TICKET` stays as it was, telling the daemon whether the client
    /// asked for a ticket; XDP reads nothing more itself.
    pub const LEARN_DAEMON: u8 = 0x40;
    /// Both entries: the backend failed its health checks in a farm whose
    /// `on_backend_failure` is `rebalance` or `reset` (set by the daemon).
    /// The client's next segment is answered with an RST and the connection
    /// forgotten; the backend's segments are dropped.
    pub const RESET: u8 = 0x20;
}

impl FlowKey {
    /// The key of the other direction: the reply to a packet rewritten by `flow`.
    pub const fn reply(flow: &Flow, family: u8) -> FlowKey {
        FlowKey {
            saddr_be: flow.new_daddr_be,
            daddr_be: flow.new_saddr_be,
            sport_be: flow.new_dport_be,
            dport_be: flow.new_sport_be,
            family,
            _pad: [0, 0, 0],
        }
    }

    /// The IPv4 table's key for this one; meaningful only for
    /// `Family::Ipv4`.
    #[inline(always)]
    pub fn v4(&self) -> FlowKeyV4 {
        FlowKeyV4 {
            saddr_be: u32::from_ne_bytes(first4(&self.saddr_be)),
            daddr_be: u32::from_ne_bytes(first4(&self.daddr_be)),
            sport_be: self.sport_be,
            dport_be: self.dport_be,
        }
    }
}

impl FlowKeyV4 {
    /// The same tuple as a `FlowKey`.
    pub fn widen(&self) -> FlowKey {
        FlowKey {
            saddr_be: crate::v4_in_16(self.saddr_be.to_ne_bytes()),
            daddr_be: crate::v4_in_16(self.daddr_be.to_ne_bytes()),
            sport_be: self.sport_be,
            dport_be: self.dport_be,
            family: Family::Ipv4 as u8,
            _pad: [0, 0, 0],
        }
    }
}

#[inline(always)]
fn first4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[0], addr[1], addr[2], addr[3]]
}

/// Value of the `BACKENDS` array, indexed by backend id (the daemon numbers the
/// backends of all farms in config order). Written by the daemon; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr_be: [u8; 16],
    pub port_be: u16,
    /// `Family as u8`; 0 for an unused slot.
    pub family: u8,
    /// `BackendState as u8`.
    pub state: u8,
    pub farm_id: u32,
}
const _: () = assert!(size_of::<BackendInfo>() == 24);

/// `BackendInfo::state`: what the data path may send the backend, from the
/// operator's state and the health checks' verdict (the daemon combines them).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// New connections and persisted clients.
    Active = 1,
    /// Persisted clients only.
    Draining = 2,
    /// Nothing new; a learned session naming it is a miss.
    Disabled = 3,
    /// Its health checks fail: nothing new, and a learned session naming it
    /// follows the farm's `on_backend_failure` (`FarmInfo::on_failure`).
    Failed = 4,
}

/// `FarmInfo::on_failure`: what happens to a client whose learned session
/// names a backend that has failed its health checks.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The entry is forgotten and the client goes to the next kind or the
    /// farm's algorithm (a full handshake on a healthy backend).
    Rebalance = 1,
    /// The client gets an RST.
    Reset = 2,
    /// The client's segment is dropped: it waits for the backend to return.
    Drop = 3,
}

/// Value of the `BACKEND_LOAD` array, indexed by backend id, for
/// `least-connections`. Written by the daemon after each sweep of the flow
/// table; read by XDP, which estimates a backend's connections as `active +
/// (BACKEND_NEW_FLOWS[id] - new_flows_seen)`: the count at the sweep plus
/// what XDP bound since.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendLoad {
    /// Connections to the backend in the flow table at the sweep.
    pub active: u64,
    /// `BACKEND_NEW_FLOWS[id]` when the sweep began.
    pub new_flows_seen: u64,
    /// The backend's weight (at least 1): connections are compared per unit.
    pub weight: u64,
}
const _: () = assert!(size_of::<BackendLoad>() == 24);

/// Value of the `FARMS` array, indexed by farm id. Written by the daemon
/// (`algorithm`, `persistence`, `rr_len`, `session_timeout_s`); `rr_next` is
/// advanced by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FarmInfo {
    /// `Algorithm as u8`.
    pub algorithm: u8,
    /// `PersistKind`s in the order the farm tries them; 0 ends the list.
    pub persistence: [u8; MAX_PERSIST_KINDS],
    /// `session-id-prefix`: how many leading bytes of a session ID name the
    /// backend (`SESSION_PREFIXES`); 0 when no backend of the farm has one.
    pub session_id_prefix_len: u8,
    /// Entries of this farm's slice of `FARM_RR` (its active backends).
    pub rr_len: u32,
    /// Where round-robin resumes. Advanced without atomics: two CPUs racing
    /// may hand out the same backend twice, never an invalid one.
    pub rr_next: u32,
    /// A learned entry unused for longer is a miss (and the sweeper's to remove).
    pub session_timeout_s: u32,
    /// `source-ip`: the prefix lengths of client addresses that share a backend.
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    /// The kinds of `persistence` as bits (`1 << kind`), for the data path
    /// to test one without a walk over the list.
    pub persist_mask: u8,
    /// `OnFailure as u8`.
    pub on_failure: u8,
}
const _: () = assert!(size_of::<FarmInfo>() == 24);

/// The persistence kinds (DESIGN.md §3), as `FarmInfo::persistence` and
/// `SessionKey::kind` hold them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistKind {
    /// A TLS ≤ 1.2 session ID, learned from the ServerHello.
    SessionId = 1,
    /// A TLS 1.2 session ticket (`persist::ticket_id`), learned from
    /// NewSessionTicket.
    Ticket = 2,
    /// The 16-byte key name that starts a ticket or TLS 1.3 PSK identity,
    /// learned from NewSessionTicket and from ServerHellos that accept a PSK.
    TicketKey = 3,
    /// The first bytes of a session ID, configured per backend; no learning.
    SessionIdPrefix = 4,
    /// A hash of the server name (`persist::name_hash`), learned at binding.
    Sni = 5,
    /// The client address's prefix, learned at binding.
    SourceIp = 6,
}
pub const MAX_PERSIST_KINDS: usize = 6;

impl TryFrom<u8> for PersistKind {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            1 => PersistKind::SessionId,
            2 => PersistKind::Ticket,
            3 => PersistKind::TicketKey,
            4 => PersistKind::SessionIdPrefix,
            5 => PersistKind::Sni,
            6 => PersistKind::SourceIp,
            other => return Err(other),
        })
    }
}

/// Longest key a kind reads from a handshake: a whole TLS session ID, or a
/// ticket's first 32 bytes (`persist::TICKET_ID_LEN`).
pub const SESSION_KEY_SOURCE_MAX: usize = 32;
/// Key bytes a `SESSIONS` entry stores: a key of up to 16 bytes as it is, a
/// longer one folded into 16 (`persist::fold_key`). The kernel hashes and
/// compares the whole key on every lookup: a 24-byte key is one jhash2 mix
/// and a final where 40 bytes were three mixes and a final.
pub const SESSION_KEY_MAX: usize = 16;

/// Key of `SESSIONS` (and `SESSION_PREFIXES`): which farm, which kind, and
/// the key's bytes (`persist::stored_key`: the rest zero; `len`, the length
/// of the key read, 1 to 32, tells a short key from a zero-padded longer
/// one, and a folded key from one kept as it is).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub farm_id: u32,
    /// `PersistKind as u8`.
    pub kind: u8,
    pub len: u8,
    pub _pad: [u8; 2],
    pub bytes: [u8; SESSION_KEY_MAX],
}
const _: () = assert!(size_of::<SessionKey>() == 24);

impl SessionKey {
    /// The key of `source` (at most `SESSION_KEY_SOURCE_MAX` bytes are
    /// read) for `kind` in farm `farm_id`: the host's way to the key XDP
    /// builds from the same bytes.
    pub fn new(farm_id: u32, kind: PersistKind, source: &[u8]) -> SessionKey {
        let len = source.len().min(SESSION_KEY_SOURCE_MAX);
        SessionKey {
            farm_id,
            kind: kind as u8,
            len: len as u8,
            _pad: [0; 2],
            bytes: crate::persist::stored_key(&source[..len]),
        }
    }

    /// Whether `bytes` holds a fold of a longer key rather than the key.
    pub fn is_folded(&self) -> bool {
        self.len as usize > SESSION_KEY_MAX
    }
}

/// Value of `SESSIONS`: the backend that holds the session. Created by XDP
/// when it learns from a server's handshake (or, for `sni` and `source-ip`,
/// when it binds a connection); `last_used_ns` refreshed by lookups (clock:
/// `bpf_ktime_get_coarse_ns`). A `ticket-key` entry whose `backend_id` is
/// `NO_BACKEND` names a key several backends share: it chooses nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionEntry {
    pub backend_id: u32,
    pub _pad: u32,
    pub created_ns: u64,
    pub last_used_ns: u64,
}
const _: () = assert!(size_of::<SessionEntry>() == 24);

/// Slots of `PERSIST_STATS` per farm, indexed by `PersistKind` (slot 0 unused).
pub const PERSIST_STAT_SLOTS: u32 = 8;

/// Value of the per-CPU `PERSIST_STATS` array, at `farm_id *
/// PERSIST_STAT_SLOTS + kind`: what one persistence kind did for one farm.
/// Written by XDP; summed over CPUs by the daemon. Misses are `lookups -
/// hits`; evictions are what the table lost that no expiry or flush removed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistCounters {
    /// ClientHellos that carried this kind's key and were looked up.
    pub lookups: u64,
    /// Lookups that chose the connection's backend.
    pub hits: u64,
    /// Entries written (learned or refreshed from the server, or at binding).
    pub learns: u64,
    /// Of `learns`, those that added an entry (the rest refreshed one).
    pub inserted: u64,
    /// Lookups that found an entry past the farm's `session_timeout`.
    pub expired: u64,
    /// Lookups that found an entry whose backend is disabled or gone.
    pub unusable: u64,
    /// `ticket-key`: a key name learned for a second backend, so shared.
    pub shared: u64,
}
const _: () = assert!(size_of::<PersistCounters>() == 56);

impl PersistCounters {
    /// Adds another CPU's counters to these.
    pub fn add(&mut self, other: &PersistCounters) {
        self.lookups += other.lookups;
        self.hits += other.hits;
        self.learns += other.learns;
        self.inserted += other.inserted;
        self.expired += other.expired;
        self.unusable += other.unusable;
        self.shared += other.shared;
    }
}

/// `SESSION_REMOVALS` (an array of u64 written by userspace only): entries
/// the daemon's sweeper removed past their farm's `session_timeout`, at
/// `farm_id * PERSIST_STAT_SLOTS + kind`, and entries `tether sessions
/// flush` removed, `REMOVALS_FLUSHED` slots further. With `inserted` and the
/// entries still there they tell how many the LRU evicted.
pub const REMOVALS_FLUSHED: u32 = MAX_FARMS * PERSIST_STAT_SLOTS;

/// Slots of `FARM_RR` per farm: one per backend, at most.
pub const FARM_RR_SLOTS: u32 = MAX_BACKENDS;

/// `FarmInfo::algorithm`: how a farm picks the backend of a new connection
/// (before persistence, which comes first when it knows the client).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `FARM_RR` in turn. The daemon lists each backend once for
    /// `round-robin`, as often as its weight says (interleaved) for
    /// `weighted-round-robin`.
    RoundRobin = 1,
    /// `MAGLEV` at a hash of the client address.
    Maglev = 2,
    /// A random `FARM_RR` slot (the list is weighted).
    Random = 3,
    /// The backend of `FARM_RR` (each once) with the fewest connections per
    /// unit of weight (`BACKEND_LOAD`); ties go round.
    LeastConnections = 4,
}

/// Value of `PENDING` (keyed by the client -> VIP `FlowKey`): a `tls`
/// connection between its first client data and the backend's acknowledgement
/// of it. XDP writes it with the hello's first segment and, while
/// `assembling`, adds each segment that continues it (DESIGN.md §2 step 3b);
/// it sends the backend SYN once the hello is whole; tc reads it to send the
/// stashed segments with the ACK of the backend's SYN-ACK; XDP removes it once
/// the backend has acknowledged the data; the sweeper removes what is left of
/// dead connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The client's initial sequence number; `data` starts at `client_isn + 1`.
    pub client_isn: u32,
    /// Our initial sequence number towards the client: the SYN cookie.
    pub cookie_isn: u32,
    /// The timestamp option of the client's first segment (TSval, TSecr), if
    /// `has_timestamp`. TSecr echoes our SYN-ACK's TSval.
    pub client_tsval: u32,
    pub client_tsecr: u32,
    /// Our initial sequence number and timestamp value on the backend leg.
    /// Both come from clocks (RFC 9293 §3.4.1's 4 µs ISN clock; milliseconds
    /// for timestamps), so a new connection from a reused SNAT port is always
    /// "newer" than the last one on it: a backend still in TIME_WAIT for the
    /// port accepts the SYN (RFC 6191), which a client's own ISN and TSval,
    /// from another host's clock, would not guarantee.
    pub leg_isn: u32,
    pub leg_tsval: u32,
    /// Per stashed segment, in order: the ones'-complement sum of its data,
    /// recovered from the client's checksum, so the segments tc sends cost no
    /// pass over the data. tc sends the data cut where the client cut it.
    pub segment_sum: [u32; STASH_SEGMENTS],
    pub segment_len: [u16; STASH_SEGMENTS],
    /// The client's window field (already scaled by its window scale).
    pub window: u16,
    /// Bytes in `data`: the sum of `segment_len[..segments]`.
    pub len: u16,
    /// What the client's SYN offered, as carried by the cookie: MSS (after
    /// clamping), window scale (`tcpopt::NO_WSCALE` if none), SACK permitted.
    pub mss: u16,
    pub wscale: u8,
    pub sack_permitted: u8,
    pub has_timestamp: u8,
    pub segments: u8,
    /// Where the ClientHello stands (`hello::*`): no backend and no flow
    /// entries until it is `BOUND`.
    pub assembling: u8,
    /// 1 if the stash is the daemon's short copy of a long hello: tc
    /// answers the backend's SYN-ACK with a bare ACK and the daemon sends
    /// the hello itself.
    pub daemon_sends: u8,
    pub _pad: [u8; 4],
    pub created_ns: u64,
    pub data: [u8; STASH_MAX],
}
const _: () = assert!(size_of::<Pending>() == 96 + STASH_MAX);

/// The single entry of the `SETTINGS` array: instance-wide data-path knobs.
/// Written by the daemon before it attaches; read by XDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Source ports towards backends: `snat_port_min .. snat_port_min + snat_port_count`.
    pub snat_port_min: u32,
    pub snat_port_count: u32,
    /// The largest MSS tether announces on either leg of a `tls` connection:
    /// the smallest MTU of the attached interfaces minus 40 (IPv4 + TCP).
    pub mss_clamp: u32,
}
const _: () = assert!(size_of::<Settings>() == 12);

// SAFETY: these types are repr(C), made of integers and byte arrays with explicit
// padding fields, so every bit pattern is valid and there is no uninitialised byte.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for VipInfo {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKeyV4 {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AddrKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OwnedFilter {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Flow {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendInfo {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Settings {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FarmInfo {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SessionKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SessionEntry {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Pending {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PersistCounters {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendLoad {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BindEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_flow_key_shortens_and_widens_back_unchanged() {
        let key = FlowKey {
            saddr_be: crate::v4_in_16([198, 18, 0, 10]),
            daddr_be: crate::v4_in_16([198, 18, 100, 100]),
            sport_be: 40_000u16.to_be(),
            dport_be: 443u16.to_be(),
            family: Family::Ipv4 as u8,
            _pad: [0; 3],
        };
        let short = key.v4();
        // The table's key holds the bytes as they are on the wire.
        assert_eq!(short.saddr_be.to_ne_bytes(), [198, 18, 0, 10]);
        assert_eq!(short.daddr_be.to_ne_bytes(), [198, 18, 100, 100]);
        assert_eq!(short.widen(), key);
    }

    #[test]
    fn v4_key_keeps_the_rest_of_the_address_zero() {
        let k = VipKey::v4([198, 18, 100, 100], 443u16.to_be());
        assert_eq!(&k.addr_be[..4], &[198, 18, 100, 100]);
        assert!(k.addr_be[4..].iter().all(|b| *b == 0));
        assert_eq!(Family::try_from(k.family), Ok(Family::Ipv4));
    }

    #[test]
    fn an_ipv4_address_folds_to_its_first_word_as_xdp_reads_it() {
        let addr = crate::v4_in_16([198, 18, 100, 100]);
        assert_eq!(owned_filter_fold(&addr), u32::from_ne_bytes([198, 18, 100, 100]));
    }

    #[test]
    fn the_session_filter_is_sized_from_the_table_and_its_header_says_so() {
        // 4-8 slots an entry, within the bounds.
        assert_eq!(session_filter_bits(0), SESSION_FILTER_MIN_BITS);
        assert_eq!(session_filter_bits(1), SESSION_FILTER_MIN_BITS);
        assert_eq!(session_filter_bits(100_000), 19);
        assert_eq!(session_filter_bits(1 << 17), 19);
        assert_eq!(session_filter_bits((1 << 17) + 1), 20);
        assert_eq!(session_filter_bits(16 * 1024 * 1024), SESSION_FILTER_MAX_BITS);
        assert_eq!(session_filter_elements(22), 1 + (1 << 20));
        for bits in SESSION_FILTER_MIN_BITS..=SESSION_FILTER_MAX_BITS {
            assert_eq!(session_filter_bits_of(session_filter_elements(bits)), Some(bits));
            for generation in 0..2 {
                assert_eq!(
                    session_filter_header_parts(session_filter_header(generation, bits)),
                    Some((generation, bits))
                );
            }
        }
        assert_eq!(session_filter_bits_of(session_filter_elements(22) + 1), None);
        // Not written yet, or slot bytes where a header should be.
        assert_eq!(session_filter_header_parts(0), None);
        assert_eq!(session_filter_header_parts(0x0101_0101_0101_0101), None);
    }

    #[test]
    fn owned_filter_slots_are_in_range_and_spread_neighbouring_addresses() {
        let mut slots = std::collections::HashSet::new();
        for last in 0..=255u8 {
            let (word, mask) = owned_filter_slot(owned_filter_fold(&crate::v4_in_16([198, 18, 100, last])));
            assert!(word < OWNED_FILTER_WORDS);
            assert_eq!(mask.count_ones(), 1);
            slots.insert((word, mask));
        }
        // 256 neighbours in 65,536 bits: a handful may share one, not more.
        assert!(slots.len() >= 250, "{} distinct bits of 256", slots.len());
        let v6 = std::net::Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1).octets();
        assert!(owned_filter_slot(owned_filter_fold(&v6)).0 < OWNED_FILTER_WORDS);
    }

    #[test]
    fn raw_values_round_trip_and_reject_unknowns() {
        assert_eq!(Protocol::try_from(Protocol::Tls as u8), Ok(Protocol::Tls));
        assert_eq!(Protocol::try_from(Protocol::Tcp as u8), Ok(Protocol::Tcp));
        assert_eq!(Protocol::try_from(0), Err(0));
        assert_eq!(Family::try_from(5), Err(5));
    }
}
