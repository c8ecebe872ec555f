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

use lb_common::{
    tcpopt::{NO_WSCALE, SynOptions},
    tls::Span,
};

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

/// Room that must follow a buffer `copy_span` reads from, in the same map
/// value: its last word may start at the buffer's last byte.
pub const SPAN_SLACK: usize = 32;

/// Copies the first `N` bytes of `span` from the `M`-byte buffer at `buf`
/// into `out`, zeroing what the span does not cover: what
/// `lb_common::persist::copy_key` does on the host, eight bytes a load.
///
/// VERIFIER (and speed): a byte-wise copy the verifier accepts, a masked
/// load and a mask per byte, is about 500 instructions a 32-byte key. Here the start is masked into the buffer
/// once and each word loaded whole (one instruction: `parse::word`; a
/// `read_unaligned` is eight byte loads), which may read up to
/// `SPAN_SLACK` bytes past the buffer's end (masked off).
///
/// # Safety
/// `buf` points at `M` bytes followed by `SPAN_SLACK` more readable bytes.
#[inline(always)]
pub unsafe fn copy_span<const M: usize, const N: usize>(buf: *const [u8; M], span: Span, out: &mut [u8; N]) {
    const { assert!(M.is_power_of_two() && N % 8 == 0 && N <= SPAN_SLACK) };
    let start = span.start as usize & (M - 1);
    // Bits of the span in each word: 8 * len - 64 * word, within [0, 64].
    let span_bits = 8 * (span.len as i64).min(N as i64);
    // Opaque to LLVM: a span it knows to be short (a 16-byte key name) would
    // make it store the zero words with a `memset` call.
    // SAFETY: reading a local.
    let span_bits = unsafe { core::ptr::read_volatile(&span_bits) };
    let words = out.as_mut_ptr() as *mut u64;
    for w in 0..N / 8 {
        // SAFETY: 8 * w + 8 <= N <= SPAN_SLACK (the caller's promise).
        let word = unsafe { span_word(buf, start, span_bits, w) };
        // SAFETY: w < N / 8 words of `out`.
        unsafe { words.add(w).write_unaligned(word) };
    }
}

/// Word `w` of a span that starts at `start` (already masked into the
/// buffer) and has `span_bits` bits: loaded whole, the bits past the span
/// cleared.
///
/// # Safety
/// `buf` points at `M` bytes followed by `SPAN_SLACK` more readable bytes,
/// `start` < M, and 8 * w + 8 <= `SPAN_SLACK`.
#[inline(always)]
unsafe fn span_word<const M: usize>(buf: *const [u8; M], start: usize, span_bits: i64, w: usize) -> u64 {
    // SAFETY: inside the buffer and the room after it (the caller's promise).
    let word = unsafe { crate::parse::word::load64((buf as *const u8).add(start + 8 * w)) };
    word & low_bits(clamp_0_64(span_bits - 64 * w as i64))
}

/// The first 32 bytes of `span` from the `M`-byte buffer at `buf`, folded
/// into the 16 a `SessionKey` stores (`lb_common::persist::fold_key`; a
/// span of up to 16 bytes is stored as it is), written to `out`. Returns
/// the span's first eight bytes as they are (zero past its end), which the
/// fold hides. Words are read as `copy_span` reads them.
///
/// # Safety
/// As `copy_span`: `buf` points at `M` bytes followed by `SPAN_SLACK` more
/// readable bytes.
#[inline(always)]
pub unsafe fn fold_span<const M: usize>(buf: *const [u8; M], span: Span, out: &mut [u8; 16]) -> u64 {
    const { assert!(M.is_power_of_two() && 32 <= SPAN_SLACK) };
    let start = span.start as usize & (M - 1);
    let span_bits = 8 * (span.len as i64).min(32);
    // SAFETY: reading a local (opaque to LLVM, as in `copy_span`).
    let span_bits = unsafe { core::ptr::read_volatile(&span_bits) };
    // SAFETY: start < M and 8 * w + 8 <= 32 <= SPAN_SLACK (the caller's promise).
    let word = |w: usize| unsafe { span_word(buf, start, span_bits, w) };
    let words = [word(0), word(1), word(2), word(3)];
    let [a, b] = lb_common::persist::fold_key(words);
    let out = out.as_mut_ptr() as *mut u64;
    // SAFETY: two words of the 16-byte `out`.
    unsafe {
        out.write_unaligned(a);
        out.add(1).write_unaligned(b);
    }
    words[0]
}

/// `x` clamped to [0, 64] without a branch (a BPF comparison is a jump).
#[inline(always)]
fn clamp_0_64(x: i64) -> u64 {
    let x = x & !(x >> 63); // max(x, 0)
    let over = x - 64;
    (x - (over & !(over >> 63))) as u64 // min(x, 64)
}

/// A word whose low `bits` (0 to 64) bits are set, little-endian: the first
/// `bits / 8` bytes in memory order.
#[inline(always)]
fn low_bits(bits: u64) -> u64 {
    let all = u64::MAX >> ((64 - bits) & 63);
    // Zero bits would shift by 64: `all` is then every bit, so clear it.
    all & !(((bits as i64) - 1) >> 63) as u64
}
