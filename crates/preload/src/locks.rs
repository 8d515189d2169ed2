//! Locks on our files: `fcntl` record locks (process-owned and open-file-description ones),
//! `flock` and `lockf` run in the kernel on the program's own descriptor, which the first
//! lock call makes the file itself, opened through the FUSE mount (`files::anchor`), while
//! its data stays at user level. The kernel's lock table of the mount's inode is the one
//! every caller on the FUSE path uses (the service leaves FUSE locks to the kernel), so both
//! paths see each other's locks, with the kernel's own rules: ranges split and merged,
//! upgrades, `EDEADLK`, `EINTR`, waits that block only the caller's thread, release when the
//! process dies, and what close, `dup2`, `close_range` and `exec` do to them.
//!
//! What the library emulates: the kernel drops a process's POSIX locks on a file at any
//! close of it, and a descriptor of ours not anchored is our reserved `/dev/null` one, so
//! [`closing`] drops them when the program closes one of those; ranges relative to the
//! offset start at ours; a hand-over (fork, exec, mmap) of an anchored file only sets the
//! kernel's offset (and size).

use std::ffi::c_int;
use std::sync::atomic::Ordering;

use crate::files::{self, File};
use crate::real;


/// The descriptor a lock call on our descriptor `fd` runs on: `Ok(None)` when `fd` is not
/// ours, or names a file whose descriptors are the backing file's (`--user-passthrough`),
/// which is handed over instead.
pub fn target(fd: c_int) -> Result<Option<c_int>, c_int> {
    let Some((_, f)) = files::get(fd) else { return Ok(None) };
    if f.passthrough() {
        return Ok(None);
    }
    files::anchor(fd)?;
    // Ranges relative to the offset (`SEEK_CUR`, lockf) start at the kernel's: ours is here.
    let off = i64::try_from(f.offset.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    // SAFETY: lseek on the program's descriptor, now the kernel's open file; integers only.
    unsafe { real::lseek(fd, off, libc::SEEK_SET) };
    Ok(Some(fd))
}

/// The program is about to close (or replace) one of our descriptors, of `f`: the process's
/// POSIX locks on the file go, as the kernel drops them at any close of it (the program's
/// descriptor is our reserved one, whose close the kernel does not connect to the file).
pub fn closing(f: &File) {
    let (dev, inode) = (f.dev.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed));
    if let Some(a) = files::any_anchor(dev, inode) {
        // SAFETY: an all-zero flock is a valid value of the C struct.
        let mut unlock: libc::flock = unsafe { std::mem::zeroed() };
        unlock.l_type = libc::F_UNLCK as i16;
        unlock.l_whence = libc::SEEK_SET as i16;
        // SAFETY: F_SETLK on the anchor with a flock that lives across the call.
        unsafe { real::fcntl(a, libc::F_SETLK, std::ptr::addr_of_mut!(unlock) as libc::c_ulong) };
    }
    if files::kernel_locked(dev, inode) {
        // Locks held through the kernel's descriptors of the file: a close of one drops them.
        if let Ok(fd) = files::open_in_kernel(f) {
            // SAFETY: closing the descriptor just opened.
            unsafe { real::close(fd) };
        }
        files::forget_kernel_locked(dev, inode);
    }
}

/// A POSIX lock call on descriptor `fd`, not ours, succeeded: notes its file if the call may
/// have taken a lock (`arg` of `fcntl`'s `cmd`, or `lockf`'s when `cmd` is `None`).
pub fn took_on_kernel(fd: c_int, fcntl_cmd: Option<c_int>, arg: libc::c_ulong) {
    let takes = match fcntl_cmd {
        // SAFETY: the kernel just read this `struct flock` for the successful call.
        Some(libc::F_SETLK | libc::F_SETLKW) => (unsafe { (*(arg as *const libc::flock)).l_type }) != libc::F_UNLCK as i16,
        Some(_) => false,
        None => matches!(arg as c_int, libc::F_LOCK | libc::F_TLOCK),
    };
    if !takes {
        return;
    }
    // SAFETY: an all-zero stat is a valid value of the C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into the local struct above.
    if unsafe { real::fstat(fd, &mut st) } == 0 {
        files::note_kernel_locked(st.st_dev, st.st_ino);
    }
}
