//! The kernel's copy of the exec denylist: names (`sh`, `nc`, `python3`…) written into
//! `DENY_NAMES` by the agent, matched the way the agent names what runs
//! (`policy::denylist::executable_name`): the executed file's name, or for busybox/toybox
//! (and a file with no name, a memfd) the applet argv[0] selects, with busybox's rules:
//! its basename, a leading `-` (login shell, `-sh`) dropped, argv[1] when argv[0] is the
//! multi-call binary itself. A versioned runtime (`python3.11`) also matches its family.
//!
//! Written for the verifier: the bytes of a key are computed with masks instead of
//! branches, and positions found by a search are passed through map memory ([`opaque`]),
//! so that the paths through one search merge before the next one starts instead of
//! multiplying (the first, branchy version exceeded the 1M-instruction limit).
use crabpot_common::DENY_NAME_LEN;

use crate::maps::{DENY_NAMES, OPAQUE};

pub type Key = [u8; DENY_NAME_LEN];

/// Bytes of an argv buffer: a string of up to [`ARG_BYTES`] and room for a key read from
/// any position in it without a bounds check.
pub const ARG_BUF: usize = ARG_BYTES + DENY_NAME_LEN;
/// Bytes of an argument the kernel judges (a power of two: positions are masked with it).
pub const ARG_BYTES: usize = 64;

/// `value`, passed through map memory so that the verifier sees an unknown number.
#[inline(always)]
fn opaque(value: usize) -> usize {
    let Some(slot) = OPAQUE.get_ptr_mut(0) else {
        return value;
    };
    unsafe {
        core::ptr::write_volatile(slot, value as u64);
        core::ptr::read_volatile(slot) as usize
    }
}

/// 0xff when `byte` is not NUL, else 0, without a branch.
#[inline(always)]
fn nonzero_mask(byte: u8) -> u8 {
    (((byte as u32 + 0xff) >> 8) as u8).wrapping_neg()
}

/// The 15 bytes of `buf` from `start` (masked into range), cut at the first NUL.
#[inline(always)]
fn copy_key(buf: &[u8; ARG_BUF], start: usize) -> Key {
    let start = start & (ARG_BYTES - 1);
    let mut key = [0u8; DENY_NAME_LEN];
    let mut alive = 0xffu8;
    for (j, slot) in key.iter_mut().take(DENY_NAME_LEN - 1).enumerate() {
        let byte = buf[start + j];
        alive &= nonzero_mask(byte);
        *slot = byte & alive;
    }
    key
}

/// The basename of the string in `buf` (`len` bytes) as a key; `login` drops one leading
/// `-`.
#[inline(always)]
pub fn basename_key(buf: &[u8; ARG_BUF], len: usize, login: bool) -> Key {
    let len = len.min(ARG_BYTES);
    let mut start = 0usize;
    for k in 0..ARG_BYTES {
        if k >= len {
            break;
        }
        let at = len - 1 - k;
        if buf[at & (ARG_BYTES - 1)] == b'/' {
            start = at + 1;
            break;
        }
    }
    let mut start = opaque(start) & (ARG_BYTES - 1);
    if login && buf[start] == b'-' {
        start += 1;
    }
    copy_key(buf, opaque(start))
}

/// A name with no `/` in it (a dentry's) as a key.
#[inline(always)]
pub fn name_key(name: &[u8; 32]) -> Key {
    let mut key = [0u8; DENY_NAME_LEN];
    let mut alive = 0xffu8;
    for (j, slot) in key.iter_mut().take(DENY_NAME_LEN - 1).enumerate() {
        let byte = name[j];
        alive &= nonzero_mask(byte);
        *slot = byte & alive;
    }
    key
}

#[inline(always)]
pub fn starts_with(key: &[u8], prefix: &[u8]) -> bool {
    key.len() >= prefix.len() && key.iter().zip(prefix).all(|(a, b)| a == b)
}

/// busybox runs as a multi-call binary under any name starting with "busybox".
#[inline(always)]
pub fn is_multicall(key: &Key) -> bool {
    starts_with(key, b"busybox") || starts_with(key, b"toybox")
}

/// Whether `key` is denylisted, itself or as a versioned runtime's family.
#[inline(always)]
pub fn denied(key: &Key) -> bool {
    if key[0] == 0 {
        return false;
    }
    if unsafe { DENY_NAMES.get(key) }.is_some() {
        return true;
    }
    // python3.11 → python: cut after the last byte that is not a digit or a dot.
    let mut cut = 0usize;
    for k in 0..DENY_NAME_LEN - 1 {
        let i = DENY_NAME_LEN - 2 - k;
        let byte = key[i];
        if byte == 0 || byte == b'.' || byte.is_ascii_digit() {
            continue;
        }
        cut = i + 1;
        break;
    }
    let cut = opaque(cut) as i64;
    let mut family = [0u8; DENY_NAME_LEN];
    for (j, slot) in family.iter_mut().enumerate() {
        // 0xff while j < cut: the sign of j - cut, without a branch.
        let keep = ((j as i64 - cut) >> 63) as u8;
        *slot = key[j] & keep;
    }
    unsafe { DENY_NAMES.get(family) }.is_some()
}

/// Whether the applet a multi-call binary runs for this argv is denylisted.
#[inline(always)]
pub fn applet_denied(
    first: &[u8; ARG_BUF],
    first_len: usize,
    second: &[u8; ARG_BUF],
    second_len: usize,
) -> bool {
    let applet = basename_key(first, first_len, true);
    if applet[0] != 0 && !is_multicall(&applet) {
        return denied(&applet);
    }
    if second_len == 0 || second[0] == b'-' {
        return false;
    }
    denied(&basename_key(second, second_len, false))
}
