//! Zeroing without `memset`.
//!
//! VERIFIER (and speed): the BPF backend of LLVM does not expand `memset` or
//! `memmove`; it calls the compiler's builtins, byte-at-a-time loops (a
//! 96-byte zero fill is about 500 instructions). rustc emits `[0; N]`,
//! `mem::zeroed` and zero-filled struct literals as `memset`, and LLVM merges
//! runs of zero stores back into one, so zero fills here are volatile word
//! stores, which it leaves alone. (Copies between two map values need
//! `ptr::copy_nonoverlapping` for the same reason: without proof that they
//! do not overlap, a plain assignment becomes `memmove`.)

use core::mem::{align_of, size_of};

use lb_common::tcpopt::{NO_WSCALE, SynOptions};

/// Sets every byte of `value` to zero, four at a time.
///
/// # Safety
/// All-zero bytes must be a valid `T` (plain integers and arrays of them).
#[inline(always)]
pub unsafe fn zero<T>(value: &mut T) {
    const { assert!(size_of::<T>() % 4 == 0 && align_of::<T>() >= 4) };
    let words = value as *mut T as *mut u32;
    for i in 0..size_of::<T>() / 4 {
        // SAFETY: i < size / 4 words inside `value`, which is 4-byte aligned.
        unsafe { words.add(i).write_volatile(0) };
    }
}

/// `SynOptions::default()`, written in place.
#[inline(always)]
pub fn reset_syn_options(opts: &mut SynOptions) {
    // SAFETY: SynOptions is plain integers.
    unsafe { zero(opts) };
    opts.wscale = NO_WSCALE;
}
