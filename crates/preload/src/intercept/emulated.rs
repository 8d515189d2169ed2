//! Calls on our descriptors answered without the kernel: advice that may be ignored, the
//! terminal probe, and in-kernel copies done as reads and writes through the interceptors
//! (`copy_file_range` between our files, `sendfile` and `splice` with one end ours; those
//! the kernel would refuse are left to it, with the files handed over).

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::atomic::Ordering;

use libc::{loff_t, off64_t, off_t, size_t, ssize_t};

use super::{hand_over, io};
use crate::config::set_errno;
use crate::files::{self, is_ours, readable, writable, File};
use crate::real;

hooks! {
    fn posix_fadvise(fd: c_int, off: off_t, len: off_t, advice: c_int) -> c_int => |kernel| {
        if is_ours(fd) {
            // Advice; the service's backend client does its own read-ahead.
            return 0;
        }
        super::dirs::in_kernel_dir(fd, kernel)
    }

    fn posix_fadvise64(fd: c_int, off: off64_t, len: off64_t, advice: c_int) -> c_int => |kernel| {
        if is_ours(fd) {
            return 0;
        }
        super::dirs::in_kernel_dir(fd, kernel)
    }

    fn readahead(fd: c_int, off: off64_t, count: size_t) -> ssize_t => |kernel| {
        if is_ours(fd) {
            return 0;
        }
        super::dirs::in_kernel_dir(fd, kernel)
    }

    fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int => |kernel| {
        if is_ours(fd) {
            if request == libc::TCGETS {
                // isatty(): a file is no terminal.
                set_errno(libc::ENOTTY);
                return -1;
            }
            if request == libc::FIONREAD as c_ulong {
                // What is left to read: the size past this descriptor's offset, as the
                // kernel answers for a regular file (an int; negative past the end).
                if let Some((_, f)) = crate::files::get(fd).filter(|(_, f)| !f.passthrough()) {
                    return super::run(
                        || {
                            let size = crate::ops::getattr(f)?.size as i64;
                            let left = size.wrapping_sub(f.offset.load(std::sync::atomic::Ordering::Acquire) as i64) as c_int;
                            // SAFETY: FIONREAD's argument is the caller's `int *`, written as
                            // the kernel would write it.
                            unsafe { (arg as *mut c_int).write_unaligned(left) };
                            Ok(0)
                        },
                        || super::in_kernel(fd, super::HandOver::Unserved, kernel),
                    );
                }
            }
            if matches!(request, FICLONE | FICLONERANGE | FIDEDUPERANGE) {
                // No cloning across the user-level path; callers (cp) fall back to copying.
                set_errno(libc::EOPNOTSUPP);
                return -1;
            }
            if let Some(r) = answered_as_on_fuse(fd, request, arg, kernel) {
                return r;
            }
            if let Err(e) = hand_over(fd, super::HandOver::Ioctl) {
                set_errno(e);
                return -1;
            }
        }
        super::dirs::in_kernel_dir(fd, kernel)
    }
}

/// The file ioctls the instance's FUSE side answers the same way for every file, answered so
/// here too, without handing the file over: no attribute flags, project ids or inode
/// versions, and no terminal (`ENOTTY`: the service serves no ioctl), no extent map (`EOPNOTSUPP`: FUSE has
/// none), a FUSE superblock's block size (the page size), and the descriptor flags
/// `FIOCLEX`/`FIONCLEX`/`FIONBIO` set as `fcntl` sets them. `None`: not one of those.
fn answered_as_on_fuse(fd: c_int, request: c_ulong, arg: c_ulong, kernel: impl FnOnce() -> c_int) -> Option<c_int> {
    match request {
        FS_IOC_GETFLAGS | FS_IOC_SETFLAGS | FS_IOC_FSGETXATTR | FS_IOC_FSSETXATTR | FS_IOC_GETVERSION | FS_IOC_SETVERSION | libc::TCSETS | libc::TCSETSW | libc::TCSETSF | libc::TIOCGPGRP | libc::TIOCSPGRP | libc::TIOCGWINSZ | libc::TIOCSWINSZ => {
            set_errno(libc::ENOTTY);
            Some(-1)
        }
        FS_IOC_FIEMAP => {
            set_errno(libc::EOPNOTSUPP);
            Some(-1)
        }
        FIGETBSZ => {
            if arg == 0 {
                set_errno(libc::EFAULT);
                return Some(-1);
            }
            // SAFETY: sysconf takes an integer.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as c_int;
            // SAFETY: FIGETBSZ's argument is the caller's `int *`, written as the kernel would.
            unsafe { (arg as *mut c_int).write_unaligned(page) };
            Some(0)
        }
        // The close-on-exec flag lives on our reserved descriptor, in the kernel.
        libc::FIOCLEX | libc::FIONCLEX => Some(kernel()),
        libc::FIONBIO => {
            let (_, f) = files::get(fd)?;
            if f.passthrough() {
                // Its status flags are the backing descriptor's, in the kernel.
                return Some(kernel());
            }
            if arg == 0 {
                set_errno(libc::EFAULT);
                return Some(-1);
            }
            // SAFETY: FIONBIO's argument is the caller's `const int *`, read as the kernel would.
            let on = unsafe { (arg as *const c_int).read_unaligned() } != 0;
            let nonblock = libc::O_NONBLOCK as u32;
            if on {
                f.flags.fetch_or(nonblock, Ordering::AcqRel);
            } else {
                f.flags.fetch_and(!nonblock, Ordering::AcqRel);
            }
            Some(0)
        }
        _ => None,
    }
}

// <linux/fs.h> numbers of the file requests answered above (the terminal and descriptor
// requests are libc's).
const FS_IOC_GETFLAGS: c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: c_ulong = 0x4008_6602;
const FS_IOC_FSGETXATTR: c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: c_ulong = 0x401c_5820;
const FS_IOC_GETVERSION: c_ulong = 0x8008_7601;
const FS_IOC_SETVERSION: c_ulong = 0x4008_7602;
const FS_IOC_FIEMAP: c_ulong = 0xc020_660b;
const FIGETBSZ: c_ulong = 2;

// <linux/fs.h> ioctl numbers of the clone and dedupe requests.
const FICLONE: c_ulong = 0x4004_9409;
const FICLONERANGE: c_ulong = 0x4020_940d;
const FIDEDUPERANGE: c_ulong = 0xc018_9436;

const COPY_CHUNK: usize = 256 << 10;

/// Copies up to `len` bytes from `fd_in` to `fd_out` with the interceptors' read and write
/// (positional where an offset pointer is given, which is then advanced).
fn copy(fd_in: c_int, off_in: *mut i64, fd_out: c_int, off_out: *mut i64, len: usize) -> ssize_t {
    let mut buf = vec![0u8; COPY_CHUNK.min(len.max(1))];
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(buf.len());
        let p = buf.as_mut_ptr() as *mut c_void;
        // SAFETY: `buf` is valid for `want` bytes; offset pointers are the caller's, as the
        // libc call requires.
        let got = unsafe {
            match off_in.as_mut() {
                Some(o) => io::pread64(fd_in, p, want, *o),
                None => io::read(fd_in, p, want),
            }
        };
        if got < 0 {
            return if done > 0 { done as ssize_t } else { -1 };
        }
        if got == 0 {
            break;
        }
        let got = got as usize;
        let mut put = 0usize;
        while put < got {
            // SAFETY: `buf[put..got]` was filled above (`got <= buf.len()`); the output offset
            // pointer is the caller's, as the libc call requires.
            let w = unsafe {
                let q = buf.as_ptr().add(put) as *const c_void;
                match off_out.as_mut() {
                    Some(o) => io::pwrite64(fd_out, q, got - put, *o + put as i64),
                    None => io::write(fd_out, q, got - put),
                }
            };
            if w <= 0 {
                return if done + put > 0 { (done + put) as ssize_t } else { -1 };
            }
            put += w as usize;
        }
        // SAFETY: the caller's offset pointers (null or valid), as the libc call requires.
        unsafe {
            if let Some(o) = off_in.as_mut() {
                *o += got as i64;
            }
            if let Some(o) = off_out.as_mut() {
                *o += got as i64;
            }
        }
        done += got;
        if got < want {
            break;
        }
    }
    done as ssize_t
}

/// Whether `fd` may be the source (`write` false) or the destination of a sendfile done here
/// as reads and writes: open for that, a destination not appending, and a regular file where
/// `regular` (ours always are). The kernel refuses the rest (`EBADF`, `EINVAL`) before
/// copying anything; those calls are left to it.
fn copy_side(fd: c_int, write: bool, regular: bool) -> bool {
    let flags = match files::get(fd) {
        Some((_, f)) => f.flags.load(Ordering::Relaxed) as c_int,
        None => {
            if regular {
                // SAFETY: all-zero is a valid `stat`, an out-parameter for fstat.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: fstat on the caller's descriptor into `st`.
                if unsafe { real::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return false;
                }
            }
            // SAFETY: F_GETFL on the caller's descriptor.
            let fl = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
            if fl < 0 {
                return false;
            }
            fl
        }
    };
    if write {
        writable(flags) && flags & libc::O_APPEND == 0
    } else {
        readable(flags)
    }
}

/// The kernel's answer when offset pointer `off_in` or `off_out` cannot be read (`EFAULT`,
/// which it checks right after the descriptors, before anything else), asked of the kernel
/// itself: a copy of nothing between the same descriptors (ours are placeholders or backing
/// files: nothing comes of it). Reading the pointers here would crash the program instead.
fn unreadable_offsets(fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t) -> bool {
    if off_in.is_null() && off_out.is_null() {
        return false;
    }
    // SAFETY: the caller's descriptors and offset pointers, as the libc call takes them; the
    // kernel checks the pointers (`EFAULT`) and copies nothing (length 0).
    let r = unsafe { real::copy_file_range(fd_in, off_in, fd_out, off_out, 0, 0) };
    r < 0 && crate::config::errno() == libc::EFAULT
}

/// As [`unreadable_offsets`] for sendfile's offset pointer (which the kernel reads before it
/// even looks at the descriptors).
fn unreadable_offset(out_fd: c_int, in_fd: c_int, off: *mut off64_t) -> bool {
    if off.is_null() {
        return false;
    }
    // SAFETY: as above: a sendfile of nothing, whose offset the kernel reads (and writes back
    // unchanged).
    let r = unsafe { real::sendfile64(out_fd, in_fd, off, 0) };
    r < 0 && crate::config::errno() == libc::EFAULT
}

/// Whether the offset behind `off` (if any) is negative.
fn negative(off: *const i64) -> bool {
    // SAFETY: a null pointer or the caller's offset, as the libc call requires.
    unsafe { off.as_ref() }.is_some_and(|o| *o < 0)
}

/// Hands `fd_in` and `fd_out` over to the kernel (those of ours), for a call only it answers
/// as it should; `false` (errno set) when that fails.
fn to_kernel(fd_in: c_int, fd_out: c_int) -> bool {
    match hand_over(fd_in, super::HandOver::Splice).and_then(|()| hand_over(fd_out, super::HandOver::Splice)) {
        Ok(()) => true,
        Err(e) => {
            set_errno(e);
            false
        }
    }
}

/// Whether copy_file_range is done here: between two files of ours on one mount (the kernel
/// copies within one filesystem only: `EXDEV`), different files (it refuses overlapping
/// ranges of one), readable and writable, not appending (`EBADF`), at offsets that are not
/// negative (`EOVERFLOW`).
fn copy_here(fd_in: c_int, off_in: *const i64, fd_out: c_int, off_out: *const i64) -> bool {
    let (Some((_, a)), Some((_, b))) = (files::get(fd_in), files::get(fd_out)) else { return false };
    let id = |f: &File| (f.instance.load(Ordering::Relaxed), f.dev.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed));
    let ((ia, da, na), (ib, db, nb)) = (id(a), id(b));
    ia == ib && da == db && na != nb && a.readable() && b.writable() && !b.append() && !negative(off_in) && !negative(off_out)
}

/// `FUSE_SUPER_MAGIC`: `f_type` of a FUSE mount.
const FUSE_MAGIC: i64 = 0x6573_5546;

/// One end of a copy, as the kernel's first checks see it.
struct CopyEnd {
    /// File type (`S_IFMT` bits).
    kind: u32,
    /// Status flags (access mode, `O_APPEND`).
    flags: c_int,
}

/// End `fd` of a copy; `Err(EBADF)` for no descriptor or an `O_PATH` one (which the kernel's
/// copy does not take).
fn copy_end(fd: c_int) -> Result<CopyEnd, c_int> {
    if let Some((_, f)) = files::get(fd) {
        return Ok(CopyEnd { kind: libc::S_IFREG, flags: f.flags.load(Ordering::Relaxed) as c_int });
    }
    if files::dir_file(fd).is_some() {
        // A directory of ours (its descriptor may be an `O_PATH` one, of the library's).
        return Ok(CopyEnd { kind: libc::S_IFDIR, flags: libc::O_RDONLY });
    }
    // SAFETY: F_GETFL of the caller's descriptor.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    if flags < 0 || flags & libc::O_PATH != 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: all-zero is a valid `stat`, an out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of the caller's descriptor into `st`.
    if unsafe { real::fstat(fd, &mut st) } != 0 {
        // (Not for the kernel's copy to refuse: it asks nothing of the file.)
        return Ok(CopyEnd { kind: 0, flags });
    }
    Ok(CopyEnd { kind: st.st_mode & libc::S_IFMT, flags })
}

/// Whether kernel descriptor `fd` is a file of a FUSE mount (`true` also when that cannot be
/// told: its filesystem's daemon answers the question).
fn on_fuse(fd: c_int) -> bool {
    // SAFETY: all-zero is a valid `statfs`, an out-parameter for fstatfs.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs of the caller's descriptor into `sfs`.
    let r = unsafe { real::fstatfs(fd, &mut sfs) };
    r != 0 || sfs.f_type == FUSE_MAGIC
}

/// The kernel's answer to a copy between a file of ours and a kernel descriptor, told
/// without handing ours over where the kernel refuses it before its filesystems' copy
/// methods (`cat f > out` and `cp` try one first, then read and write): in its order, a bad
/// or `O_PATH` descriptor (`EBADF`), a directory (`EISDIR`), anything but a regular file
/// (`EINVAL`), a source not open for reading or a destination not open for writing or
/// appending (`EBADF`), and a file of another filesystem that is no FUSE one (`EXDEV`: the
/// kernel copies within one filesystem only, and FUSE's copy takes no other filesystem's
/// file). `None`: only the kernel can tell (both ours; a file of unknown type, such as a
/// pidfd, which the kernel takes for a regular one; a FUSE file, perhaps of the same mount).
fn refused_across(fd_in: c_int, fd_out: c_int) -> Option<c_int> {
    let (ours_in, ours_out) = (is_ours(fd_in), is_ours(fd_out));
    if ours_in && ours_out {
        return None;
    }
    let (a, b) = match (copy_end(fd_in), copy_end(fd_out)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    if a.kind == libc::S_IFDIR || b.kind == libc::S_IFDIR {
        return Some(libc::EISDIR);
    }
    if a.kind == 0 || b.kind == 0 {
        return None;
    }
    if a.kind != libc::S_IFREG || b.kind != libc::S_IFREG {
        return Some(libc::EINVAL);
    }
    if !readable(a.flags) || !writable(b.flags) || b.flags & libc::O_APPEND != 0 {
        return Some(libc::EBADF);
    }
    if on_fuse(if ours_in { fd_out } else { fd_in }) {
        return None;
    }
    Some(libc::EXDEV)
}

hooks! {
    fn copy_file_range(fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t, len: size_t, flags: u32) -> ssize_t => |kernel| {
        // Flags are refused (`EINVAL`) before the kernel looks at the files.
        if flags == 0 && (is_ours(fd_in) || is_ours(fd_out)) {
            if unreadable_offsets(fd_in, off_in, fd_out, off_out) {
                set_errno(libc::EFAULT);
                return -1;
            }
            if copy_here(fd_in, off_in, fd_out, off_out) {
                return copy(fd_in, off_in, fd_out, off_out, len);
            }
            if let Some(e) = refused_across(fd_in, fd_out) {
                set_errno(e);
                return -1;
            }
            // The kernel's answer, on the files themselves.
            if !to_kernel(fd_in, fd_out) {
                return -1;
            }
        }
        kernel()
    }
}

/// Whether sendfile from `in_fd` to `out_fd` (one of them ours) is done here: a readable
/// source that is ours or a regular file, a writable destination of any kind, not appending.
fn sendfile_here(out_fd: c_int, in_fd: c_int) -> bool {
    copy_side(in_fd, false, true) && copy_side(out_fd, true, false)
}

hooks! {
    fn sendfile(out_fd: c_int, in_fd: c_int, off: *mut off_t, count: size_t) -> ssize_t => |kernel| {
        if is_ours(in_fd) || is_ours(out_fd) {
            if unreadable_offset(out_fd, in_fd, off.cast()) {
                set_errno(libc::EFAULT);
                return -1;
            }
            if sendfile_here(out_fd, in_fd) {
                return copy(in_fd, off, out_fd, std::ptr::null_mut(), count);
            }
            if !to_kernel(in_fd, out_fd) {
                return -1;
            }
        }
        kernel()
    }

    fn sendfile64(out_fd: c_int, in_fd: c_int, off: *mut off64_t, count: size_t) -> ssize_t => |kernel| {
        if is_ours(in_fd) || is_ours(out_fd) {
            if unreadable_offset(out_fd, in_fd, off) {
                set_errno(libc::EFAULT);
                return -1;
            }
            if sendfile_here(out_fd, in_fd) {
                return copy(in_fd, off, out_fd, std::ptr::null_mut(), count);
            }
            if !to_kernel(in_fd, out_fd) {
                return -1;
            }
        }
        kernel()
    }
}

/// Whether `fd` is a pipe (the kernel's: ours never are).
fn is_pipe(fd: c_int) -> bool {
    // SAFETY: all-zero is a valid `stat`, an out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of the caller's descriptor into `st`.
    unsafe { real::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO }
}

/// Room left in pipe `fd` (its size less what it holds), waiting for some when it is full
/// and may be waited on; `None` (errno set) when it cannot be told or must not be waited for.
fn pipe_room(fd: c_int, nonblock: bool) -> Option<usize> {
    loop {
        let mut held: c_int = 0;
        // SAFETY: F_GETPIPE_SZ and FIONREAD of the caller's pipe, into an int.
        let (size, r) = unsafe { (real::fcntl(fd, libc::F_GETPIPE_SZ, 0), real::ioctl(fd, libc::FIONREAD as c_ulong, &mut held as *mut c_int as c_ulong)) };
        if size < 0 || r < 0 {
            return None;
        }
        let room = (size as usize).saturating_sub(held.max(0) as usize);
        if room > 0 {
            return Some(room);
        }
        if nonblock {
            set_errno(libc::EAGAIN);
            return None;
        }
        let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        // SAFETY: one pollfd, as poll requires.
        if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
            return None;
        }
    }
}

/// Whether splice between `fd_in` and `fd_out` is done here: exactly one of them ours, the
/// other a pipe (without an offset, as the kernel requires of a pipe's side), no
/// `SPLICE_F_NONBLOCK` (which asks about the pipe the kernel's way), our side open for
/// reading (a source) or for writing and not appending (a destination), its offset not
/// negative. The kernel refuses or answers the rest itself.
fn splice_here(fd_in: c_int, off_in: *const i64, fd_out: c_int, off_out: *const i64, flags: c_uint) -> bool {
    if flags & libc::SPLICE_F_NONBLOCK != 0 {
        return false;
    }
    match (files::get(fd_in), files::get(fd_out)) {
        (Some((_, f)), None) => off_out.is_null() && is_pipe(fd_out) && f.readable() && !negative(off_in),
        (None, Some((_, f))) => off_in.is_null() && is_pipe(fd_in) && f.writable() && !f.append() && !negative(off_out),
        _ => false,
    }
}

hooks! {
    /// splice with one end ours and the other a pipe: reads and writes through the
    /// interceptors, moving no more than the pipe can take (or holds) at once, as the kernel
    /// does, so a caller that drains the pipe between calls never blocks on its own pipe.
    fn splice(fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t => |kernel| {
        if !is_ours(fd_in) && !is_ours(fd_out) {
            return kernel();
        }
        if !splice_here(fd_in, off_in, fd_out, off_out, flags) {
            if !to_kernel(fd_in, fd_out) {
                return -1;
            }
            return kernel();
        }
        if len == 0 {
            return 0;
        }
        if is_ours(fd_in) {
            let Some(room) = pipe_room(fd_out, false) else { return -1 };
            return copy(fd_in, off_in, fd_out, std::ptr::null_mut(), len.min(room));
        }
        // From the pipe: what one read gives (the kernel waits only while nothing came), so
        // at most one read's worth (`copy` reads again only after a full one).
        // SAFETY: F_GETPIPE_SZ of the caller's pipe.
        let size = unsafe { real::fcntl(fd_in, libc::F_GETPIPE_SZ, 0) };
        if size < 0 {
            return -1;
        }
        copy(fd_in, std::ptr::null_mut(), fd_out, off_out, len.min(size as usize).min(COPY_CHUNK))
    }
}
