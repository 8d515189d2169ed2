//! The real libc functions behind the ones this library intercepts, found once with
//! `dlsym(RTLD_NEXT, ...)`.
//!
//! Inside this library every call to an intercepted name must go through here: a plain
//! `libc::open` would bind to our own `open` and recurse.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{mode_t, off64_t, off_t, pid_t, size_t, ssize_t};

/// What a function returns when its real version cannot be found (it always can in a glibc
/// process; this keeps a broken environment from becoming undefined behaviour).
pub trait Failure {
    fn failure() -> Self;
}

macro_rules! failure_is {
    ($($t:ty => $v:expr),* $(,)?) => {
        $(impl Failure for $t {
            fn failure() -> Self {
                $v
            }
        })*
    };
}

failure_is! {
    c_int => -1,
    ssize_t => -1,
    i64 => -1,
    mode_t => 0,
    *mut c_char => std::ptr::null_mut(),
    *mut c_void => libc::MAP_FAILED,
    *mut libc::FILE => std::ptr::null_mut(),
    *mut libc::DIR => std::ptr::null_mut(),
    *mut libc::dirent => std::ptr::null_mut(),
    *mut libc::dirent64 => std::ptr::null_mut(),
    () => (),
}

/// The address of `name` (NUL-terminated) in the next object after this one, cached in `slot`.
pub fn lookup(slot: &AtomicUsize, name: &'static [u8]) -> usize {
    let cached = slot.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `name` is a NUL-terminated literal (see the macro below); dlsym is thread-safe.
    let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) } as usize;
    slot.store(addr, Ordering::Relaxed);
    addr
}

macro_rules! real {
    ($($name:ident($($arg:ident: $t:ty),*) -> $r:ty;)*) => {
        $(
            /// The real libc function of this name.
            ///
            /// # Safety
            /// As for the libc function: the caller upholds its contract on pointers and
            /// descriptors.
            #[allow(clippy::missing_safety_doc)]
            pub unsafe fn $name($($arg: $t),*) -> $r {
                static SLOT: AtomicUsize = AtomicUsize::new(0);
                let addr = lookup(&SLOT, concat!(stringify!($name), "\0").as_bytes());
                if addr == 0 {
                    // SAFETY: writing this thread's errno.
                    unsafe { *libc::__errno_location() = libc::ENOSYS };
                    return <$r as Failure>::failure();
                }
                // SAFETY: `addr` is libc's function of this name, whose C prototype is the
                // one spelled here (variadic ones take their optional argument as a fixed
                // one, which the x86-64 and aarch64 calling conventions make equivalent).
                let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute::<usize, _>(addr) };
                // SAFETY: as documented on this function.
                unsafe { f($($arg),*) }
            }
        )*
    };
}

pub type Stat = libc::stat;

real! {
    open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    creat(path: *const c_char, mode: mode_t) -> c_int;
    creat64(path: *const c_char, mode: mode_t) -> c_int;
    __open_2(path: *const c_char, flags: c_int) -> c_int;
    __open64_2(path: *const c_char, flags: c_int) -> c_int;
    __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    close(fd: c_int) -> c_int;
    close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    closefrom(first: c_int) -> c_int;
    read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t;
    write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t;
    __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t;
    pread(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t;
    pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t;
    __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t;
    __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t, buflen: size_t) -> ssize_t;
    pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t;
    pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t;
    readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t;
    writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t;
    preadv(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off_t) -> ssize_t;
    preadv64(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off64_t) -> ssize_t;
    pwritev(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off_t) -> ssize_t;
    pwritev64(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off64_t) -> ssize_t;
    preadv2(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    preadv64v2(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off64_t, flags: c_int) -> ssize_t;
    pwritev2(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    pwritev64v2(fd: c_int, iov: *const libc::iovec, n: c_int, offset: off64_t, flags: c_int) -> ssize_t;
    lseek(fd: c_int, offset: off_t, whence: c_int) -> off_t;
    lseek64(fd: c_int, offset: off64_t, whence: c_int) -> off64_t;
    stat(path: *const c_char, st: *mut Stat) -> c_int;
    stat64(path: *const c_char, st: *mut Stat) -> c_int;
    lstat(path: *const c_char, st: *mut Stat) -> c_int;
    lstat64(path: *const c_char, st: *mut Stat) -> c_int;
    fstat(fd: c_int, st: *mut Stat) -> c_int;
    fstat64(fd: c_int, st: *mut Stat) -> c_int;
    fstatat(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int;
    fstatat64(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int;
    __xstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int;
    __xstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int;
    __lxstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int;
    __lxstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int;
    __fxstat(ver: c_int, fd: c_int, st: *mut Stat) -> c_int;
    __fxstat64(ver: c_int, fd: c_int, st: *mut Stat) -> c_int;
    __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int;
    __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int;
    statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, stx: *mut libc::statx) -> c_int;
    unlink(path: *const c_char) -> c_int;
    unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fsync(fd: c_int) -> c_int;
    fdatasync(fd: c_int) -> c_int;
    sync_file_range(fd: c_int, off: off64_t, n: off64_t, flags: c_uint) -> c_int;
    ftruncate(fd: c_int, len: off_t) -> c_int;
    ftruncate64(fd: c_int, len: off64_t) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(old: c_int, new: c_int) -> c_int;
    dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    chdir(path: *const c_char) -> c_int;
    fchdir(fd: c_int) -> c_int;
    getcwd(buf: *mut c_char, size: size_t) -> *mut c_char;
    umask(mask: mode_t) -> mode_t;
    fork() -> pid_t;
    execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    execv(path: *const c_char, argv: *const *const c_char) -> c_int;
    execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    posix_spawn(pid: *mut pid_t, path: *const c_char, acts: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    posix_spawnp(pid: *mut pid_t, file: *const c_char, acts: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    system(cmd: *const c_char) -> c_int;
    posix_fadvise(fd: c_int, off: off_t, len: off_t, advice: c_int) -> c_int;
    posix_fadvise64(fd: c_int, off: off64_t, len: off64_t, advice: c_int) -> c_int;
    readahead(fd: c_int, off: off64_t, count: size_t) -> ssize_t;
    ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int;
    copy_file_range(fd_in: c_int, off_in: *mut off64_t, fd_out: c_int, off_out: *mut off64_t, len: size_t, flags: c_uint) -> ssize_t;
    sendfile(out_fd: c_int, in_fd: c_int, off: *mut off_t, count: size_t) -> ssize_t;
    sendfile64(out_fd: c_int, in_fd: c_int, off: *mut off64_t, count: size_t) -> ssize_t;
    popen(cmd: *const c_char, mode: *const c_char) -> *mut libc::FILE;
    fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE;
    fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE;
    fdopen(fd: c_int, mode: *const c_char) -> *mut libc::FILE;
    opendir(path: *const c_char) -> *mut libc::DIR;
    fchmod(fd: c_int, mode: mode_t) -> c_int;
    fchown(fd: c_int, uid: libc::uid_t, gid: libc::gid_t) -> c_int;
    futimens(fd: c_int, times: *const libc::timespec) -> c_int;
    futimes(fd: c_int, times: *const libc::timeval) -> c_int;
    mkdir(path: *const c_char, mode: mode_t) -> c_int;
    mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int;
    rmdir(path: *const c_char) -> c_int;
    rename(old: *const c_char, new: *const c_char) -> c_int;
    renameat(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char) -> c_int;
    renameat2(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char, flags: c_uint) -> c_int;
    link(old: *const c_char, new: *const c_char) -> c_int;
    linkat(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char, flags: c_int) -> c_int;
    symlink(target: *const c_char, path: *const c_char) -> c_int;
    symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int;
    readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    access(path: *const c_char, mode: c_int) -> c_int;
    faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int;
    chmod(path: *const c_char, mode: mode_t) -> c_int;
    fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int;
    chown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int;
    lchown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int;
    fchownat(dirfd: c_int, path: *const c_char, uid: libc::uid_t, gid: libc::gid_t, flags: c_int) -> c_int;
    utimensat(dirfd: c_int, path: *const c_char, times: *const libc::timespec, flags: c_int) -> c_int;
    utimes(path: *const c_char, times: *const libc::timeval) -> c_int;
    lutimes(path: *const c_char, times: *const libc::timeval) -> c_int;
    utime(path: *const c_char, times: *const libc::utimbuf) -> c_int;
    truncate(path: *const c_char, len: off_t) -> c_int;
    truncate64(path: *const c_char, len: off64_t) -> c_int;
    fgetxattr(fd: c_int, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t;
    flistxattr(fd: c_int, list: *mut c_char, size: size_t) -> ssize_t;
    fsetxattr(fd: c_int, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int;
    fremovexattr(fd: c_int, name: *const c_char) -> c_int;
    getxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t;
    lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t;
    listxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t;
    llistxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t;
    setxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int;
    lsetxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int;
    removexattr(path: *const c_char, name: *const c_char) -> c_int;
    lremovexattr(path: *const c_char, name: *const c_char) -> c_int;
    closedir(d: *mut libc::DIR) -> c_int;
    fdopendir(fd: c_int) -> *mut libc::DIR;
    readdir(d: *mut libc::DIR) -> *mut libc::dirent;
    readdir64(d: *mut libc::DIR) -> *mut libc::dirent64;
    readdir_r(d: *mut libc::DIR, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int;
    readdir64_r(d: *mut libc::DIR, entry: *mut libc::dirent64, result: *mut *mut libc::dirent64) -> c_int;
    rewinddir(d: *mut libc::DIR) -> ();
    seekdir(d: *mut libc::DIR, pos: libc::c_long) -> ();
    telldir(d: *mut libc::DIR) -> libc::c_long;
    dirfd(d: *mut libc::DIR) -> c_int;
    getdents64(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    scandirat(dirfd: c_int, path: *const c_char, list: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int;
    scandirat64(dirfd: c_int, path: *const c_char, list: *mut *mut *mut libc::dirent, filter: Filter, compar: Compar) -> c_int;
    statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int;
    statfs64(path: *const c_char, buf: *mut libc::statfs64) -> c_int;
    statvfs(path: *const c_char, buf: *mut libc::statvfs) -> c_int;
    statvfs64(path: *const c_char, buf: *mut libc::statvfs64) -> c_int;
    fstatfs(fd: c_int, buf: *mut libc::statfs) -> c_int;
    fstatfs64(fd: c_int, buf: *mut libc::statfs64) -> c_int;
    fstatvfs(fd: c_int, buf: *mut libc::statvfs) -> c_int;
    fstatvfs64(fd: c_int, buf: *mut libc::statvfs64) -> c_int;
    realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char;
    __realpath_chk(path: *const c_char, resolved: *mut c_char, len: size_t) -> *mut c_char;
    canonicalize_file_name(path: *const c_char) -> *mut c_char;
    mmap(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void;
    mmap64(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off64_t) -> *mut c_void;
    flock(fd: c_int, op: c_int) -> c_int;
    lockf(fd: c_int, cmd: c_int, len: off_t) -> c_int;
    lockf64(fd: c_int, cmd: c_int, len: off64_t) -> c_int;
    fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int;
    fallocate64(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int;
    posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int;
    posix_fallocate64(fd: c_int, off: off64_t, len: off64_t) -> c_int;
    splice(fd_in: c_int, off_in: *mut libc::loff_t, fd_out: c_int, off_out: *mut libc::loff_t, len: size_t, flags: c_uint) -> ssize_t;
    tee(fd_in: c_int, fd_out: c_int, len: size_t, flags: c_uint) -> ssize_t;
    syncfs(fd: c_int) -> c_int;
    sync() -> ();
    fpathconf(fd: c_int, name: c_int) -> libc::c_long;
    setuid(uid: libc::uid_t) -> c_int;
    setgid(gid: libc::gid_t) -> c_int;
    seteuid(uid: libc::uid_t) -> c_int;
    setegid(gid: libc::gid_t) -> c_int;
    setreuid(r: libc::uid_t, e: libc::uid_t) -> c_int;
    setregid(r: libc::gid_t, e: libc::gid_t) -> c_int;
    setresuid(r: libc::uid_t, e: libc::uid_t, s: libc::uid_t) -> c_int;
    setresgid(r: libc::gid_t, e: libc::gid_t, s: libc::gid_t) -> c_int;
    setfsuid(uid: libc::uid_t) -> c_int;
    setfsgid(gid: libc::gid_t) -> c_int;
    setgroups(n: size_t, list: *const libc::gid_t) -> c_int;
    initgroups(user: *const c_char, group: libc::gid_t) -> c_int;
    capset(header: *mut c_void, data: *const c_void) -> c_int;
    chroot(path: *const c_char) -> c_int;
    unshare(flags: c_int) -> c_int;
    setns(fd: c_int, nstype: c_int) -> c_int;
    mount(source: *const c_char, target: *const c_char, fstype: *const c_char, flags: c_ulong, data: *const c_void) -> c_int;
    umount(target: *const c_char) -> c_int;
    umount2(target: *const c_char, flags: c_int) -> c_int;
    move_mount(from_dirfd: c_int, from: *const c_char, to_dirfd: c_int, to: *const c_char, flags: c_uint) -> c_int;
    syscall(n: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long, d: libc::c_long, e: libc::c_long, f: libc::c_long) -> libc::c_long;
}

/// A `scandir` filter.
pub type Filter = Option<unsafe extern "C" fn(*const libc::dirent) -> c_int>;
/// A `scandir` comparison.
pub type Compar = Option<unsafe extern "C" fn(*mut *const libc::dirent, *mut *const libc::dirent) -> c_int>;
