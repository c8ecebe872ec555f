//! The daemon's side of `SESSION_FILTER`, the bytes that tell XDP which
//! `SESSIONS` keys may be present (see the map in
//! `lb-ebpf/src/lookup/session.rs`): keys the daemon adds are marked, and
//! each session sweep rebuilds the inactive generation from the table and
//! makes it the active one. The array is memory-mapped: XDP marks single
//! bytes while the daemon writes, and a whole-element update through the
//! map's syscall would write back bytes XDP had just set.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU8, AtomicU64, Ordering},
};

use aya::{
    Ebpf,
    maps::{Map, MapData, MapError},
};
use lb_common::{
    maps::{
        SESSION_FILTER_ACTIVE, SESSION_FILTER_ELEMENTS, SESSION_FILTER_MAP, SESSION_FILTER_SLOTS, SESSION_FILTER_WORDS,
        SessionKey,
    },
    persist::filter_slot,
};

/// A mapping of a `SESSION_FILTER` map.
pub struct SessionFilter {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is shared memory that every access goes to through
// atomics; nothing in it is tied to a thread.
unsafe impl Send for SessionFilter {}
unsafe impl Sync for SessionFilter {}

const BYTES: usize = SESSION_FILTER_ELEMENTS as usize * 8;

/// The filter of a loaded data path.
pub fn of(ebpf: &Ebpf) -> Result<SessionFilter, crate::loader::LoadError> {
    match ebpf.map(SESSION_FILTER_MAP) {
        Some(Map::Array(data)) => {
            SessionFilter::map(data).map_err(|source| crate::loader::LoadError::Map { map: SESSION_FILTER_MAP, source })
        }
        _ => Err(crate::loader::LoadError::Missing { what: "map", name: SESSION_FILTER_MAP }),
    }
}

impl SessionFilter {
    /// Maps `map`, which must be a `SESSION_FILTER` (created memory-mappable).
    pub fn map(map: &MapData) -> Result<SessionFilter, MapError> {
        let info = map.info()?;
        if info.value_size() != 8 || info.max_entries() != SESSION_FILTER_ELEMENTS {
            return Err(MapError::InvalidValueSize { size: info.value_size() as usize, expected: 8 });
        }
        // SAFETY: a shared mapping of the map's fd, of the array's size (the
        // kernel refuses more); nothing else in this process maps it, and the
        // mapping lives until `Drop` unmaps it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(MapError::SyscallError(aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::last_os_error(),
            }));
        }
        let base = NonNull::new(base as *mut u8).expect("mmap gave a mapping");
        Ok(SessionFilter { base, len: BYTES })
    }

    fn byte(&self, index: usize) -> &AtomicU8 {
        assert!(index < self.len);
        // SAFETY: inside the mapping, which lives as long as `self`; an
        // AtomicU8 has the layout of a byte.
        unsafe { &*(self.base.as_ptr().add(index) as *const AtomicU8) }
    }

    fn word(&self, element: u32) -> &AtomicU64 {
        assert!((element as usize) * 8 + 8 <= self.len);
        // SAFETY: inside the mapping, and 8-aligned (the mapping is
        // page-aligned); an AtomicU64 has the layout of a u64.
        unsafe { &*(self.base.as_ptr().add(element as usize * 8) as *const AtomicU64) }
    }

    fn slot_byte(&self, generation: u32, slot: u32) -> &AtomicU8 {
        self.byte(generation as usize * SESSION_FILTER_SLOTS as usize + slot as usize)
    }

    /// The generation XDP reads.
    pub fn active(&self) -> u32 {
        self.word(SESSION_FILTER_ACTIVE).load(Ordering::Acquire) as u32 & 1
    }

    /// Marks `key` in both generations. Call it after adding the key to
    /// `SESSIONS`, as XDP does.
    pub fn mark(&self, key: &SessionKey) {
        let slot = filter_slot(key);
        for generation in 0..2 {
            self.slot_byte(generation, slot).store(1, Ordering::Release);
        }
    }

    /// Whether `key`'s slot is marked in the active generation.
    pub fn is_marked(&self, key: &SessionKey) -> bool {
        self.slot_byte(self.active(), filter_slot(key)).load(Ordering::Acquire) != 0
    }

    /// The first step of a rebuild: clears the inactive generation and
    /// returns it. Then the caller scans `SESSIONS`, marks what it found
    /// there with [`Self::mark_in`], and makes it the active one with
    /// [`Self::activate`]. The scan must start after this returns: a key XDP
    /// adds meanwhile is marked after it is in the table, so either the scan
    /// finds it or its mark came after the clear. XDP stops reading the
    /// generation cleared here a sweep earlier: a program run holds the
    /// generation it read for microseconds, the sweep comes every few
    /// seconds.
    pub fn begin_rebuild(&self) -> u32 {
        let inactive = 1 - self.active();
        let first = inactive * SESSION_FILTER_WORDS;
        for element in first..first + SESSION_FILTER_WORDS {
            self.word(element).store(0, Ordering::Relaxed);
        }
        inactive
    }

    /// Marks `keys` in `generation` only (a rebuild's; see `begin_rebuild`).
    pub fn mark_in<'a>(&self, generation: u32, keys: impl IntoIterator<Item = &'a SessionKey>) {
        for key in keys {
            self.slot_byte(generation, filter_slot(key)).store(1, Ordering::Relaxed);
        }
    }

    /// Makes `generation`, rebuilt, the one XDP reads.
    pub fn activate(&self, generation: u32) {
        self.word(SESSION_FILTER_ACTIVE).store(u64::from(generation & 1), Ordering::Release);
    }

    /// Marked slots of the active generation, out of `SESSION_FILTER_SLOTS`:
    /// the share of misses that still reach the hash table.
    pub fn marked(&self) -> u64 {
        let first = self.active() * SESSION_FILTER_WORDS;
        (first..first + SESSION_FILTER_WORDS)
            .map(|element| {
                let word = self.word(element).load(Ordering::Relaxed);
                u64::from((0..8).filter(|i| (word >> (8 * i)) & 0xFF != 0).count() as u8)
            })
            .sum()
    }
}

impl Drop for SessionFilter {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}
