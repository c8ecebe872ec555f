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
        SESSION_FILTER_HEADER, SESSION_FILTER_MAP, SessionKey, session_filter_bits_of, session_filter_header,
        session_filter_header_parts, session_filter_words,
    },
    persist::filter_slot,
};

/// Why a map cannot be used as a session filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("{elements} elements is not the size of a session filter")]
    Size { elements: u32 },
    #[error("its header ({header:#x}) does not name its size (2^{bits} slots a generation): not this version's filter")]
    Header { header: u64, bits: u32 },
}

/// A mapping of a `SESSION_FILTER` map.
pub struct SessionFilter {
    base: NonNull<u8>,
    len: usize,
    /// The filter's size (`lb_common::maps::session_filter_bits`), from its
    /// number of elements.
    bits: u32,
}

// SAFETY: the mapping is shared memory that every access goes to through
// atomics; nothing in it is tied to a thread.
unsafe impl Send for SessionFilter {}
unsafe impl Sync for SessionFilter {}

/// The filter of a loaded data path.
pub fn of(ebpf: &Ebpf) -> Result<SessionFilter, crate::loader::LoadError> {
    match ebpf.map(SESSION_FILTER_MAP) {
        Some(Map::Array(data)) => Ok(SessionFilter::map(data)?),
        _ => Err(crate::loader::LoadError::Missing { what: "map", name: SESSION_FILTER_MAP }),
    }
}

impl SessionFilter {
    /// Maps `map`, which must be a `SESSION_FILTER` (created memory-mappable)
    /// of one of the sizes a filter has, whose header, if written, names that
    /// size.
    pub fn map(map: &MapData) -> Result<SessionFilter, FilterError> {
        let info = map.info()?;
        if info.value_size() != 8 {
            return Err(MapError::InvalidValueSize { size: info.value_size() as usize, expected: 8 }.into());
        }
        let Some(bits) = session_filter_bits_of(info.max_entries()) else {
            return Err(FilterError::Size { elements: info.max_entries() });
        };
        let len = info.max_entries() as usize * 8;
        // SAFETY: a shared mapping of the map's fd, of the array's size (the
        // kernel refuses more); nothing else in this process maps it, and the
        // mapping lives until `Drop` unmaps it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
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
            })
            .into());
        }
        let base = NonNull::new(base as *mut u8).expect("mmap gave a mapping");
        let filter = SessionFilter { base, len, bits };
        match filter.header() {
            0 => {}
            header if session_filter_header_parts(header).map(|(_, b)| b) == Some(bits) => {}
            // (Unmapped by Drop.)
            header => return Err(FilterError::Header { header, bits }),
        }
        Ok(filter)
    }

    /// Slots of a generation.
    pub fn slots(&self) -> u64 {
        1 << self.bits
    }

    /// Writes the header of a new filter (whose header is zero: XDP filters
    /// and marks nothing until then). Call it before any program runs.
    pub fn set_up(&self) {
        if self.header() == 0 {
            self.word(SESSION_FILTER_HEADER).store(session_filter_header(0, self.bits), Ordering::Release);
        }
    }

    /// Whether the header is written (`set_up`).
    pub fn is_set_up(&self) -> bool {
        self.header() != 0
    }

    fn header(&self) -> u64 {
        self.word(SESSION_FILTER_HEADER).load(Ordering::Acquire)
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

    /// The first element of `generation`.
    fn first_word(&self, generation: u32) -> u32 {
        1 + generation * session_filter_words(self.bits)
    }

    fn slot_byte(&self, generation: u32, key: &SessionKey) -> &AtomicU8 {
        let slot = filter_slot(key, self.bits);
        self.byte(self.first_word(generation) as usize * 8 + slot as usize)
    }

    /// The generation XDP reads.
    pub fn active(&self) -> u32 {
        self.header() as u32 & 1
    }

    /// Marks `key` in both generations. Call it after adding the key to
    /// `SESSIONS`, as XDP does.
    pub fn mark(&self, key: &SessionKey) {
        for generation in 0..2 {
            self.slot_byte(generation, key).store(1, Ordering::Release);
        }
    }

    /// Whether `key`'s slot is marked in the active generation.
    pub fn is_marked(&self, key: &SessionKey) -> bool {
        self.slot_byte(self.active(), key).load(Ordering::Acquire) != 0
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
        let first = self.first_word(inactive);
        for element in first..first + session_filter_words(self.bits) {
            self.word(element).store(0, Ordering::Relaxed);
        }
        inactive
    }

    /// Marks `keys` in `generation` only (a rebuild's; see `begin_rebuild`).
    pub fn mark_in<'a>(&self, generation: u32, keys: impl IntoIterator<Item = &'a SessionKey>) {
        for key in keys {
            self.slot_byte(generation, key).store(1, Ordering::Relaxed);
        }
    }

    /// Makes `generation`, rebuilt, the one XDP reads.
    pub fn activate(&self, generation: u32) {
        self.word(SESSION_FILTER_HEADER).store(session_filter_header(generation, self.bits), Ordering::Release);
    }

    /// Marked slots of the active generation, out of [`Self::slots`]: the
    /// share of misses that still reach the hash table.
    pub fn marked(&self) -> u64 {
        let first = self.first_word(self.active());
        (first..first + session_filter_words(self.bits))
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
