//! The direct API: `polytropon_*` functions over a per-thread client of the pool's segment.
//!
//! File descriptors: each open file reserves a real kernel descriptor number (a duplicate of
//! one `/dev/null` descriptor), so its number never collides with the process's own files.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use polytropon_ipc::client::Client;
use polytropon_ipc::{Descriptor, Op, WireAttr};

struct Config {
    shmid: i32,
    /// (mount point without trailing '/', instance), longest first.
    mounts: Vec<(Vec<u8>, u32)>,
}

#[derive(Clone, Copy)]
struct OpenFile {
    instance: u32,
    inode: u64,
    handle: u64,
    offset: u64,
    append: bool,
}

static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
static FILES: Mutex<Vec<Option<OpenFile>>> = Mutex::new(Vec::new());
static DEVNULL: OnceLock<c_int> = OnceLock::new();

thread_local! {
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

fn config() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            let shmid = std::env::var("POLYTROPON_SHMID").ok()?.parse().ok()?;
            let mut mounts: Vec<(Vec<u8>, u32)> = std::env::var("POLYTROPON_MOUNTS")
                .ok()?
                .split(':')
                .filter_map(|m| {
                    let (p, i) = m.rsplit_once('=')?;
                    Some((p.trim_end_matches('/').as_bytes().to_vec(), i.parse().ok()?))
                })
                .collect();
            mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            Some(Config { shmid, mounts })
        })
        .as_ref()
}

fn set_errno(e: c_int) {
    // SAFETY: writing the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f`, turning an `Err(errno)` or a panic into `-1` with errno set.
fn guard<T: From<i8>>(f: impl FnOnce() -> Result<T, c_int>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(e);
            T::from(-1)
        }
        Err(_) => {
            set_errno(libc::EIO);
            T::from(-1)
        }
    }
}

fn call(d: Descriptor, data: &[u8], out: Option<&mut [u8]>) -> Result<polytropon_ipc::client::Reply, c_int> {
    let cfg = config().ok_or(libc::ENXIO)?;
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            // SAFETY: gettid cannot fail.
            let tid = unsafe { libc::gettid() } as u32;
            *c = Some(Client::attach(cfg.shmid, tid)?);
        }
        let client = c.as_mut().ok_or(libc::EIO)?;
        let r = client.call(d, data)?;
        if let Some(out) = out {
            client.data(out);
        }
        Ok(r)
    })
}

/// Splits an absolute path into (instance, path inside the instance).
fn resolve(path: *const c_char) -> Result<(u32, Vec<u8>), c_int> {
    if path.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller passes a NUL-terminated string, as for open(2).
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    let cfg = config().ok_or(libc::ENXIO)?;
    for (mp, inst) in &cfg.mounts {
        if let Some(rest) = p.strip_prefix(mp.as_slice()) {
            if rest.is_empty() || rest[0] == b'/' {
                let rel = rest.strip_prefix(b"/").unwrap_or(rest);
                if rel.len() > 4096 {
                    return Err(libc::ENAMETOOLONG);
                }
                return Ok((*inst, rel.to_vec()));
            }
        }
    }
    Err(libc::EXDEV)
}

fn files() -> std::sync::MutexGuard<'static, Vec<Option<OpenFile>>> {
    FILES.lock().unwrap_or_else(|p| p.into_inner())
}

fn file(fd: c_int) -> Result<OpenFile, c_int> {
    usize::try_from(fd).ok().and_then(|i| files().get(i).copied().flatten()).ok_or(libc::EBADF)
}

fn reserve_fd() -> Result<c_int, c_int> {
    let null = *DEVNULL.get_or_init(|| {
        // SAFETY: opening /dev/null; checked below.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
    });
    if null < 0 {
        return Err(libc::EMFILE);
    }
    // SAFETY: duplicating a descriptor we own.
    let fd = unsafe { libc::fcntl(null, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        // SAFETY: reading errno.
        return Err(unsafe { *libc::__errno_location() });
    }
    Ok(fd)
}

#[no_mangle]
pub extern "C" fn polytropon_open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    guard(|| {
        let (instance, rel) = resolve(path)?;
        let d = Descriptor {
            op: Op::OpenPath as u32,
            instance,
            len: rel.len() as u64,
            arg: u64::from(flags as u32) | (u64::from(mode) << 32),
            ..Descriptor::default()
        };
        let r = call(d, &rel, None)?;
        let of = OpenFile { instance, inode: r.aux[0], handle: r.aux[1], offset: 0, append: flags & libc::O_APPEND != 0 };
        let fd = match reserve_fd() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = call(Descriptor { op: Op::Release as u32, instance, inode: of.inode, handle: of.handle, ..Descriptor::default() }, &[], None);
                return Err(e);
            }
        };
        let mut t = files();
        let i = fd as usize;
        if t.len() <= i {
            t.resize(i + 1, None);
        }
        t[i] = Some(of);
        Ok(fd)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_close(fd: c_int) -> c_int {
    guard(|| {
        let of = file(fd)?;
        files()[fd as usize] = None;
        // SAFETY: closing the reserved descriptor of this file.
        unsafe { libc::close(fd) };
        call(Descriptor { op: Op::Release as u32, instance: of.instance, inode: of.inode, handle: of.handle, ..Descriptor::default() }, &[], None)?;
        Ok(0)
    })
}

fn getattr(of: &OpenFile) -> Result<WireAttr, c_int> {
    let mut b = [0u8; std::mem::size_of::<WireAttr>()];
    call(Descriptor { op: Op::Getattr as u32, instance: of.instance, inode: of.inode, handle: of.handle, ..Descriptor::default() }, &[], Some(&mut b))?;
    Ok(WireAttr::from_bytes(&b))
}

/// Runs `step(done, want)` over `count` bytes in requests of at most one buffer, until done
/// or a short transfer; returns the bytes transferred.
fn chunked(count: usize, mut step: impl FnMut(usize, usize) -> Result<usize, c_int>) -> Result<isize, c_int> {
    const MAX: usize = 1 << 20;
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(MAX);
        let n = step(done, want)?;
        done += n;
        if n < want {
            break;
        }
    }
    Ok(done as isize)
}

fn pread_at(of: &OpenFile, buf: *mut c_void, count: usize, offset: u64) -> Result<isize, c_int> {
    if buf.is_null() && count > 0 {
        return Err(libc::EFAULT);
    }
    chunked(count, |done, want| {
        // SAFETY: the caller's buffer is valid for `count` bytes, as for read(2).
        let out = unsafe { std::slice::from_raw_parts_mut((buf as *mut u8).add(done), want) };
        let d = Descriptor { op: Op::Read as u32, instance: of.instance, inode: of.inode, handle: of.handle, offset: offset + done as u64, len: want as u64, ..Descriptor::default() };
        Ok(call(d, &[], Some(out))?.value as usize)
    })
}

fn pwrite_at(of: &OpenFile, buf: *const c_void, count: usize, offset: u64) -> Result<isize, c_int> {
    if buf.is_null() && count > 0 {
        return Err(libc::EFAULT);
    }
    chunked(count, |done, want| {
        // SAFETY: the caller's buffer is valid for `count` bytes, as for write(2).
        let data = unsafe { std::slice::from_raw_parts((buf as *const u8).add(done), want) };
        let d = Descriptor { op: Op::Write as u32, instance: of.instance, inode: of.inode, handle: of.handle, offset: offset + done as u64, len: want as u64, ..Descriptor::default() };
        Ok(call(d, data, None)?.value as usize)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_pread(fd: c_int, buf: *mut c_void, count: usize, offset: libc::off_t) -> isize {
    guard(|| {
        let off = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
        pread_at(&file(fd)?, buf, count, off)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_pwrite(fd: c_int, buf: *const c_void, count: usize, offset: libc::off_t) -> isize {
    guard(|| {
        let off = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
        pwrite_at(&file(fd)?, buf, count, off)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    guard(|| {
        let of = file(fd)?;
        let n = pread_at(&of, buf, count, of.offset)?;
        if let Some(Some(f)) = files().get_mut(fd as usize) {
            f.offset += n as u64;
        }
        Ok(n)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_write(fd: c_int, buf: *const c_void, count: usize) -> isize {
    guard(|| {
        let of = file(fd)?;
        let at = if of.append { getattr(&of)?.size } else { of.offset };
        let n = pwrite_at(&of, buf, count, at)?;
        if let Some(Some(f)) = files().get_mut(fd as usize) {
            f.offset = at + n as u64;
        }
        Ok(n)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_lseek(fd: c_int, offset: libc::off_t, whence: c_int) -> libc::off_t {
    guard(|| {
        let of = file(fd)?;
        let base = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => of.offset as i64,
            libc::SEEK_END => getattr(&of)?.size as i64,
            _ => return Err(libc::EINVAL),
        };
        let pos = base.checked_add(offset).filter(|p| *p >= 0).ok_or(libc::EINVAL)?;
        if let Some(Some(f)) = files().get_mut(fd as usize) {
            f.offset = pos as u64;
        }
        Ok(pos)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_fsync(fd: c_int) -> c_int {
    guard(|| {
        let of = file(fd)?;
        call(Descriptor { op: Op::Fsync as u32, instance: of.instance, inode: of.inode, handle: of.handle, ..Descriptor::default() }, &[], None)?;
        Ok(0)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_unlink(path: *const c_char) -> c_int {
    guard(|| {
        let (instance, rel) = resolve(path)?;
        call(Descriptor { op: Op::UnlinkPath as u32, instance, len: rel.len() as u64, ..Descriptor::default() }, &rel, None)?;
        Ok(0)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_stat(path: *const c_char, st: *mut libc::stat) -> c_int {
    guard(|| {
        if st.is_null() {
            return Err(libc::EFAULT);
        }
        let (instance, rel) = resolve(path)?;
        let mut b = [0u8; std::mem::size_of::<WireAttr>()];
        call(Descriptor { op: Op::StatPath as u32, instance, len: rel.len() as u64, ..Descriptor::default() }, &rel, Some(&mut b))?;
        let a = WireAttr::from_bytes(&b);
        // SAFETY: the caller passes a valid `struct stat`, as for stat(2); zeroed first.
        let s = unsafe {
            std::ptr::write_bytes(st, 0, 1);
            &mut *st
        };
        s.st_ino = a.ino;
        s.st_size = a.size as i64;
        s.st_blocks = a.blocks as i64;
        s.st_mode = a.mode;
        s.st_nlink = a.nlink.into();
        s.st_uid = a.uid;
        s.st_gid = a.gid;
        s.st_rdev = a.rdev;
        s.st_blksize = a.blksize.into();
        s.st_atime = a.atime;
        s.st_atime_nsec = a.atime_nsec.into();
        s.st_mtime = a.mtime;
        s.st_mtime_nsec = a.mtime_nsec.into();
        s.st_ctime = a.ctime;
        s.st_ctime_nsec = a.ctime_nsec.into();
        Ok(0)
    })
}
