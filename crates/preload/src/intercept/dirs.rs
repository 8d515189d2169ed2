//! Directory streams and listings: `opendir` and friends, `getdents64`, `scandir`.
//!
//! A stream on a directory of a pool mount is one of ours ([`streams`]) and its entries come
//! from the service; any other `DIR *` is libc's and goes to libc untouched.

use std::ffi::{c_char, c_int, c_long, c_void};
use std::ptr::null_mut;

use libc::{size_t, ssize_t};

use super::run;
use crate::config::{errno, set_errno};
use crate::path::{resolve_dir, Target};
use crate::real::{self, Compar, Filter};
use crate::{files, streams};
use crate::outcome::{Served, Unserved};

const DIR_FLAGS: c_int = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_DIRECTORY | libc::O_CLOEXEC;

/// Opens `path` (relative to `dirfd`) as a recorded directory when it is on a pool mount:
/// the descriptor, or `Unserved::Kernel` when the path is not ours.
fn open_recorded(dirfd: c_int, path: *const c_char) -> Served<c_int> {
    let mut t = Target::empty();
    resolve_dir(&mut t, dirfd, path).ok_or(Unserved::Kernel)?;
    open_dir(dirfd, path, DIR_FLAGS, &t)
}

/// Status flags a directory open may carry and still be one of ours without the kernel
/// opening it (a read-only open; anything else, `O_NOATIME`, `O_PATH` or write access say,
/// has the kernel open it).
const PLAIN_DIR_FLAGS: c_int = libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_LARGEFILE | libc::O_NOCTTY | libc::O_NOFOLLOW;

/// Opens directory `path` (relative to `dirfd`, on the mount of target `t`) for the program
/// with `flags`: an `O_PATH` descriptor of it, which costs the kernel a name lookup (from its
/// cache, mostly) and the service nothing, and whose listing, `fsync` and calls relative to
/// it are ours; the kernel opens it for real only when a call needs that
/// ([`files::open_dir_in_kernel`]). Read permission is checked as the open would (the
/// caller's filesystem ids and capabilities). `Unserved::Kernel` when `path` is no
/// directory (and `flags` do not insist) or `flags` ask for more than reading it.
pub(super) fn open_dir(dirfd: c_int, path: *const c_char, flags: c_int, t: &Target) -> Served<c_int> {
    if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & !(PLAIN_DIR_FLAGS | libc::O_ACCMODE) != 0 {
        return Err(Unserved::Kernel);
    }
    let nofollow = flags & libc::O_NOFOLLOW != 0;
    // With O_NOFOLLOW the lookup gives a final symbolic link itself, told apart below.
    let kind = if nofollow { libc::O_NOFOLLOW } else { libc::O_DIRECTORY };
    // SAFETY: the caller's path and directory descriptor; the kernel looks the name up.
    let fd = unsafe { real::openat(dirfd, path, libc::O_PATH | kind | (flags & libc::O_CLOEXEC), 0) };
    if fd < 0 {
        let e = errno();
        return Err(if e == libc::ENOTDIR && flags & libc::O_DIRECTORY == 0 { Unserved::Kernel } else { Unserved::Errno(e) });
    }
    if nofollow {
        if let Err(e) = a_directory(fd, flags) {
            // SAFETY: closing the descriptor just opened.
            unsafe { real::close(fd) };
            return Err(e);
        }
    }
    // SAFETY: faccessat2 on the descriptor just opened, with an empty NUL-terminated path.
    let readable = unsafe { libc::syscall(libc::SYS_faccessat2, fd, c"".as_ptr(), libc::R_OK, libc::AT_EACCESS | libc::AT_EMPTY_PATH) };
    let denied = (readable != 0).then(errno);
    if denied.is_some() || !files::remember_dir(fd, t.instance, t.dev, t.abs(), flags | libc::O_PATH, |l| crate::listing::release_dir(Some(l))) {
        // SAFETY: closing the descriptor just opened.
        unsafe { real::close(fd) };
        return Err(match denied {
            // A kernel without faccessat2, or the tables full: the kernel opens it.
            Some(libc::ENOSYS | libc::EINVAL) | None => Unserved::Kernel,
            Some(e) => Unserved::Errno(e),
        });
    }
    Ok(fd)
}

/// Whether `O_PATH | O_NOFOLLOW` descriptor `fd` is a directory, else the open's answer: a
/// symbolic link is `ELOOP` (`ENOTDIR` with `O_DIRECTORY`, which the kernel checks first),
/// another file `ENOTDIR` with `O_DIRECTORY` and the kernel's to open without.
fn a_directory(fd: c_int, flags: c_int) -> Served<()> {
    // SAFETY: zeroed `stat` is a valid out-parameter for fstat of the descriptor just opened.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { real::fstat(fd, &mut st) } != 0 {
        return Err(Unserved::Errno(errno()));
    }
    let directory = flags & libc::O_DIRECTORY != 0;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(()),
        _ if directory => Err(Unserved::Errno(libc::ENOTDIR)),
        libc::S_IFLNK => Err(Unserved::Errno(libc::ELOOP)),
        _ => Err(Unserved::Kernel),
    }
}

/// Runs `kernel` on `fd` once the kernel holds it open, if it is a directory of ours that
/// the kernel never opened (see [`open_dir`]).
pub(super) fn in_kernel_dir<T: crate::real::Failure>(fd: c_int, kernel: impl FnOnce() -> T) -> T {
    if files::dir_path_only(fd) {
        if let Err(e) = crate::listing::open_dir_in_kernel(fd) {
            set_errno(e);
            return T::failure();
        }
    }
    kernel()
}

/// A stream of ours on recorded directory `fd`, or libc's when our table is full.
fn stream_on(fd: c_int) -> *mut libc::DIR {
    streams::open(fd).unwrap_or_else(|| {
        // SAFETY: handing the caller's directory descriptor to libc, open in the kernel.
        in_kernel_dir(fd, || unsafe { real::fdopendir(fd) })
    })
}


hooks! {
    fn opendir(path: *const c_char) -> *mut libc::DIR => |kernel| {
        run(|| open_recorded(libc::AT_FDCWD, path).map(stream_on), kernel)
    }

    fn fdopendir(fd: c_int) -> *mut libc::DIR => |kernel| {
        if files::is_ours(fd) {
            // A file of ours is never a directory.
            set_errno(libc::ENOTDIR);
            return null_mut();
        }
        if files::dir_file(fd).is_some() {
            return run(|| Ok(stream_on(fd)), || in_kernel_dir(fd, kernel));
        }
        kernel()
    }

    fn closedir(d: *mut libc::DIR) -> c_int => |kernel| {
        if let Some(s) = streams::of(d) {
            return close_stream(s);
        }
        if !d.is_null() {
            // SAFETY: the caller's open stream.
            crate::listing::close_dir(unsafe { real::dirfd(d) });
        }
        kernel()
    }
}

/// Closes one of our streams and its descriptor.
fn close_stream(s: &streams::Stream) -> c_int {
    let fd = s.fd();
    s.free();
    crate::listing::close_dir(fd);
    // SAFETY: the stream's descriptor, closed with it.
    unsafe { real::close(fd) }
}

/// The next entry of one of our streams.
fn next(s: &streams::Stream) -> *mut libc::dirent64 {
    match crate::config::Busy::enter() {
        Some(_busy) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.locked().next())).unwrap_or_else(|_| {
            set_errno(libc::EIO);
            null_mut()
        }),
        // Called from inside the library (a scandir filter, say): same thing, no new guard.
        None => s.locked().next(),
    }
}

hooks! {
    fn readdir(d: *mut libc::DIR) -> *mut libc::dirent => |kernel| {
        match streams::of(d) {
            // `struct dirent` and `struct dirent64` are the same on 64-bit Linux.
            Some(s) => next(s).cast(),
            None => kernel(),
        }
    }

    fn readdir64(d: *mut libc::DIR) -> *mut libc::dirent64 => |kernel| {
        match streams::of(d) {
            Some(s) => next(s),
            None => kernel(),
        }
    }
}

/// `readdir_r` on one of ours: the entry copied into `entry`.
fn next_into(s: &streams::Stream, entry: *mut libc::dirent64, result: *mut *mut libc::dirent64) -> c_int {
    let saved = errno();
    set_errno(0);
    let e = next(s);
    let err = errno();
    set_errno(saved);
    if e.is_null() {
        if !result.is_null() {
            // SAFETY: the caller's out-pointer.
            unsafe { *result = null_mut() };
        }
        return err;
    }
    if entry.is_null() || result.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: `e` is a whole record in the stream's buffer (its length checked when read);
    // `entry` is the caller's `struct dirent64`; at most its size is copied.
    unsafe {
        let len = usize::from((*e).d_reclen).min(std::mem::size_of::<libc::dirent64>());
        std::ptr::copy_nonoverlapping(e.cast::<u8>(), entry.cast::<u8>(), len);
        (*entry).d_reclen = len as u16;
        *result = entry;
    }
    0
}

hooks! {
    fn readdir_r(d: *mut libc::DIR, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int => |kernel| {
        match streams::of(d) {
            Some(s) => next_into(s, entry.cast(), result.cast()),
            None => kernel(),
        }
    }

    fn readdir64_r(d: *mut libc::DIR, entry: *mut libc::dirent64, result: *mut *mut libc::dirent64) -> c_int => |kernel| {
        match streams::of(d) {
            Some(s) => next_into(s, entry, result),
            None => kernel(),
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn rewinddir(d: *mut libc::DIR) {
    match streams::of(d) {
        Some(s) => s.locked().seek(0),
        // SAFETY: not a stream of ours: the caller's `DIR *`, unchanged, to libc's rewinddir.
        None => unsafe { real::rewinddir(d) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn seekdir(d: *mut libc::DIR, pos: c_long) {
    match streams::of(d) {
        Some(s) => s.locked().seek(pos as u64),
        // SAFETY: not a stream of ours: the caller's `DIR *` and position, unchanged, to libc's seekdir.
        None => unsafe { real::seekdir(d, pos) },
    }
}

hooks! {
    fn telldir(d: *mut libc::DIR) -> c_long => |kernel| {
        match streams::of(d) {
            Some(s) => s.locked().tell() as c_long,
            None => kernel(),
        }
    }

    fn dirfd(d: *mut libc::DIR) -> c_int => |kernel| {
        match streams::of(d) {
            Some(s) => s.fd(),
            None => kernel(),
        }
    }

    fn getdents64(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t => |kernel| {
        if files::dir_file(fd).is_none() {
            return kernel();
        }
        // SAFETY: the caller's buffer of `len` bytes.
        let out = || unsafe { crate::cbuf::out_buf(buf, len) };
        run(|| Ok(streams::fill(fd, out()?)? as ssize_t), || in_kernel_dir(fd, kernel))
    }
}

/// Frees what `scandir` collected so far.
fn free_list(list: *mut *mut libc::dirent, n: usize) {
    for i in 0..n {
        // SAFETY: the first `n` entries were malloc'd by `scandir_ours`; then the array.
        unsafe { libc::free((*list.add(i)).cast()) };
    }
    // SAFETY: the array itself, malloc'd (or null) by `scandir_ours`, freed once.
    unsafe { libc::free(list.cast()) };
}

/// scandir on one of our streams: entries malloc'd one by one, as libc's are (the caller
/// frees them with `free`).
fn scandir_ours(s: &streams::Stream, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> Served<c_int> {
    let mut list: *mut *mut libc::dirent = null_mut();
    let (mut n, mut cap) = (0usize, 0usize);
    loop {
        set_errno(0);
        let e = s.locked().next();
        if e.is_null() {
            let err = errno();
            if err != 0 {
                free_list(list, n);
                return Err(Unserved::Errno(err));
            }
            break;
        }
        if let Some(keep) = filter {
            // SAFETY: `e` is a whole record of the stream; the filter is the caller's.
            if unsafe { keep(e.cast()) } == 0 {
                continue;
            }
        }
        if n == cap {
            cap = (cap * 2).max(16);
            // SAFETY: growing our own malloc'd array.
            let grown = unsafe { libc::realloc(list.cast(), cap * std::mem::size_of::<*mut libc::dirent>()) };
            if grown.is_null() {
                free_list(list, n);
                return Err(Unserved::Errno(libc::ENOMEM));
            }
            list = grown.cast();
        }
        // SAFETY: copying a whole record (`d_reclen` bytes, checked when read) into a new
        // allocation of that size, at least a `struct dirent` header.
        unsafe {
            let len = usize::from((*e).d_reclen);
            let copy = libc::malloc(len.max(std::mem::size_of::<libc::dirent>()));
            if copy.is_null() {
                free_list(list, n);
                return Err(Unserved::Errno(libc::ENOMEM));
            }
            std::ptr::copy_nonoverlapping(e.cast::<u8>(), copy.cast::<u8>(), len);
            *list.add(n) = copy.cast();
        }
        n += 1;
    }
    if let (Some(cmp), true) = (compar, n > 1) {
        // SAFETY: sorting the array of `n` pointers with the caller's comparison, which
        // takes pointers to elements as qsort passes them.
        unsafe {
            let cmp: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int = std::mem::transmute(cmp);
            libc::qsort(list.cast(), n, std::mem::size_of::<*mut libc::dirent>(), Some(cmp));
        }
    }
    // SAFETY: the caller's out-pointer.
    unsafe { *out = list };
    c_int::try_from(n).map_err(|_| Unserved::Errno(libc::EOVERFLOW))
}

fn scandir_at(dirfd: c_int, path: *const c_char, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> Served<c_int> {
    if out.is_null() {
        return Err(Unserved::Kernel);
    }
    let fd = open_recorded(dirfd, path)?;
    let Some(d) = streams::open(fd) else {
        crate::listing::close_dir(fd);
        // SAFETY: closing the descriptor just opened.
        unsafe { real::close(fd) };
        return Err(Unserved::Kernel);
    };
    let s = streams::of(d).ok_or(libc::EIO)?;
    let r = scandir_ours(s, out, filter, compar);
    close_stream(s);
    r
}

hooks! {
    fn scandirat(dirfd: c_int, path: *const c_char, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int => |kernel| {
        run(|| scandir_at(dirfd, path, out, filter, compar), kernel)
    }

    fn scandirat64(dirfd: c_int, path: *const c_char, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int => |kernel| {
        run(|| scandir_at(dirfd, path, out, filter, compar), kernel)
    }
}

#[no_mangle]
pub unsafe extern "C" fn scandir(path: *const c_char, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int {
    // SAFETY: scandir(p, ...) is scandirat(AT_FDCWD, p, ...) with the caller's other arguments unchanged.
    run(|| scandir_at(libc::AT_FDCWD, path, out, filter, compar), || unsafe { real::scandirat(libc::AT_FDCWD, path, out, filter, compar) })
}

#[no_mangle]
pub unsafe extern "C" fn scandir64(path: *const c_char, out: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int {
    // SAFETY: scandir64(p, ...) is scandirat64(AT_FDCWD, p, ...) with the caller's other arguments unchanged.
    run(|| scandir_at(libc::AT_FDCWD, path, out, filter, compar), || unsafe { real::scandirat64(libc::AT_FDCWD, path, out, filter, compar) })
}
