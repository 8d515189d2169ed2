//! The caller's C arguments as Rust values: buffers (with `EFAULT` for a null pointer and a
//! non-zero length) and file offsets.

use std::ffi::{c_int, c_void};

/// The caller's output buffer as a slice (empty for a zero count).
///
/// # Safety
/// `buf` must be valid for writes of `count` bytes, as the libc call requires.
pub unsafe fn out_buf<'a>(buf: *mut c_void, count: usize) -> Result<&'a mut [u8], c_int> {
    if count == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) })
}

/// The caller's input buffer as a slice (empty for a zero count).
///
/// # Safety
/// `buf` must be valid for reads of `count` bytes, as the libc call requires.
pub unsafe fn in_buf<'a>(buf: *const c_void, count: usize) -> Result<&'a [u8], c_int> {
    if count == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts(buf as *const u8, count) })
}

/// A file offset the caller passed (`EINVAL` when negative).
pub fn offset(o: i64) -> Result<u64, c_int> {
    u64::try_from(o).map_err(|_| libc::EINVAL)
}
