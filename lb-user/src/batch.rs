//! Reads a whole hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): one syscall
//! per few thousand entries, where aya 0.14's iterator (which has no batch API)
//! makes two per entry. The sweeper scans the flow table with it.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{Pod, maps::MapData};

/// `enum bpf_cmd` value (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of a (non-per-CPU) hash or LRU hash map whose keys are `K` and
/// values `V`. Entries added or removed during the read may or may not appear,
/// as with any iteration of a live map.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let fd = map.fd().as_fd().as_raw_fd();
    // SAFETY: Pod types are valid for any bit pattern, zeroes included.
    let mut keys: Vec<K> = (0..CHUNK).map(|_| unsafe { std::mem::zeroed() }).collect();
    // SAFETY: as above.
    let mut values: Vec<V> = (0..CHUNK).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut all = Vec::new();
    // The resume token is opaque; for hash maps the kernel reads a u32 bucket index.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &token_in as *const u64 as u64 },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: attr points at valid buffers of CHUNK keys and values and at the
        // tokens, all alive for the call; the size passed is attr's own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let n = (attr.count as usize).min(CHUNK);
        all.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if rc < 0 {
            let err = io::Error::last_os_error();
            // ENOENT: the walk has passed the last bucket (this call's entries count).
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(all);
            }
            return Err(err);
        }
        token_in = token_out;
        first = false;
    }
}
