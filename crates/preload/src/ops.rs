//! The operations served on the user-level path, shared by the interceptors and the direct
//! API. Errors are errno values; [`Unserved::Kernel`] means "make this call through the kernel".

use std::ffi::c_int;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use polytropon_ipc::args::OpenArg;
use polytropon_ipc::{Descriptor, Op, WireAttr, WireFallocate, WireSetattr, STAT_NOFOLLOW, WRITE_APPEND};

use crate::client::call;
use crate::files::{self, File, LastRef, Opened};
use crate::opens;
use crate::path::Target;
use crate::outcome::{Served, Unserved};


/// Largest single request (the client buffer is at least this big).
const CHUNK: usize = 1 << 20;

/// Writes from this size on are streamed (copied in while the service writes), in pieces of
/// `STREAM_PIECE`.
const STREAM_MIN: usize = 256 << 10;
const STREAM_PIECE: usize = 128 << 10;

/// Flags the user-level path leaves to the kernel.
const KERNEL_ONLY: c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_TMPFILE;

/// Opens `t`; a descriptor of ours.
/// `passthrough`: the caller serves the descriptor's data calls through the kernel when the
/// service sends the backing file's (the interceptors do; the direct API does not).
pub fn open(t: &Target, flags: c_int, mode: u32, passthrough: bool) -> Served<c_int> {
    if flags & KERNEL_ONLY != 0 || t.abs().len() > files::PATH_KEEP {
        return Err(Unserved::Kernel);
    }
    let o = Opened { instance: t.instance, dev: t.dev, inode: 0, handle: 0, flags: flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) };
    // A small file opened before, unchanged since: from memory, no round trip.
    let generation = crate::config::GENERATION.load(Ordering::Acquire);
    let creds = if opens::eligible(flags) { crate::client::creds() } else { None };
    if let Some(creds) = creds {
        let (hit, gone) = opens::recall(t, creds, crate::client::change_word);
        release_all(gone);
        if let Some((held, known)) = hit {
            // The remembered file's service handle, shared: whoever lets go of it last
            // releases it.
            let Some(slot) = files::reserve_slot(flags & libc::O_CLOEXEC != 0)? else { return Err(Unserved::Kernel) };
            let fd = slot.install_shared(&Opened { inode: held.inode, handle: held.handle, ..o }, t.abs(), held);
            if let Some((_, f)) = files::get(fd) {
                f.learn(known, f.serial());
            }
            return Ok(fd);
        }
    }
    let (slot, r) = open_at_service(t, flags, mode, passthrough)?;
    let o = Opened { inode: r.aux[0], handle: r.aux[1], ..o };
    if r.aux[2] & polytropon_ipc::OPEN_PASSED != 0 {
        if let Some(backing) = crate::client::recv_fd() {
            let watch = polytropon_ipc::args::Passed::decode(&r.aux).zip(crate::client::change_table()).map(|(w, table)| (table, w.slot, w.word));
            if r.aux[2] & polytropon_ipc::OPEN_WATCHED != 0 && watch.is_none() {
                // Watched, and no table to watch it in: the service serves it.
                // SAFETY: the received descriptor is ours alone.
                unsafe { crate::real::close(backing) };
                return Ok(slot.install(&o, t.abs()));
            }
            return Ok(slot.install_passthrough(&o, t.abs(), backing, watch));
        }
    }
    if r.aux[2] & polytropon_ipc::OPEN_KERNEL_CACHED != 0 {
        let fd = slot.install(&o, t.abs());
        if let Some((_, f)) = files::get(fd) {
            f.set_kernel_cached();
        }
        return Ok(fd);
    }
    if r.aux[2] & polytropon_ipc::OPEN_PASSABLE != 0 && passthrough {
        let fd = slot.install(&o, t.abs());
        if let Some((_, f)) = files::get(fd) {
            f.set_passable();
        }
        return Ok(fd);
    }
    let head = prefetched(&r, t.instance);
    let remembered = head.as_ref().zip(creds).filter(|(k, _)| k.attr.is_some());
    let fd = match remembered {
        Some((k, creds)) => {
            // Remembered with its handle, which the descriptor and the memory share.
            let held = Arc::new(LastRef { instance: o.instance, inode: o.inode, handle: o.handle, passed_calls: 0 });
            release_all(opens::remember(t, k, generation, creds, held.clone()));
            slot.install_shared(&o, t.abs(), held)
        }
        None => slot.install(&o, t.abs()),
    };
    if let (Some(k), Some((_, f))) = (head, files::get(fd)) {
        f.learn(k, f.serial());
    }
    Ok(fd)
}

/// Releases the handles the memory of opens let go of last.
fn release_all(gone: Vec<LastRef>) {
    for l in &gone {
        release(l);
    }
}

/// Asks the service to open `t`, with a descriptor and a table slot set aside first (with the
/// tables full, the kernel makes this open alone).
fn open_at_service(t: &Target, flags: c_int, mode: u32, passthrough: bool) -> Served<(files::Reserved, polytropon_ipc::client::Reply)> {
    let mode = if flags & libc::O_CREAT != 0 { mode & 0o7777 & !crate::config::umask() } else { 0 };
    let rel = t.rel();
    let prefetch = if flags & (libc::O_ACCMODE | libc::O_DIRECT) == libc::O_RDONLY { polytropon_ipc::FLAG_PREFETCH } else { 0 };
    let d = Descriptor {
        op: Op::OpenPath as u32,
        instance: t.instance,
        inode: t.base,
        len: rel.len() as u64,
        arg: OpenArg { flags, mode }.encode(),
        flags: if passthrough { polytropon_ipc::FLAG_FD_OK } else { 0 } | prefetch,
        ..Descriptor::default()
    };
    let Some(slot) = files::reserve_slot(flags & libc::O_CLOEXEC != 0)? else { return Err(Unserved::Kernel) };
    match call(d, rel, None) {
        Ok(r) => Ok((slot, r)),
        Err(e) => {
            slot.cancel();
            Err(e)
        }
    }
}

/// The bytes of a small file that came with its open (`OPEN_PREFETCHED`), its attributes and
/// under which slot words they hold.
fn prefetched(r: &polytropon_ipc::client::Reply, instance: u32) -> Option<files::Known> {
    use polytropon_ipc::changes::{trailer_at, OpenTrailer, OUTSIDE, PREFETCH_MAX};
    let file = polytropon_ipc::args::Prefetched::decode(&r.aux)?;
    let n = usize::try_from(r.value).ok().filter(|n| *n as u64 <= PREFETCH_MAX)?;
    let table = crate::client::change_table()?;
    let mut buf = vec![0u8; trailer_at(n) + OpenTrailer::SIZE];
    crate::client::reply_data(&mut buf);
    let mut t = [0u8; OpenTrailer::SIZE];
    t.copy_from_slice(&buf[trailer_at(n)..]);
    let trailer = OpenTrailer::from_bytes(&t);
    buf.truncate(n);
    let mut k = files::Known::new(table, file.slot, file.word, n as u64, buf.into());
    crate::config::learn_names_slot(instance, table, trailer.names_slot, crate::client::change_word);
    if trailer.names_word & OUTSIDE == 0 {
        k.attr = Some((trailer.attr, trailer.names_slot, trailer.names_word));
    }
    Some(k)
}

/// Asks the service for the backing file of `f` (at its descriptor `fd`), which just proved
/// busy (see `File::busy`), and puts it in place: whether the kernel serves the file's data
/// from now on. Once per open; any failure leaves the file at user level.
pub fn pass_busy(fd: c_int, f: &File) -> bool {
    if !f.take_passable() || !f.may_take_backing() {
        return false;
    }
    let (flags, serial) = (f.flags.load(Ordering::Relaxed), f.serial());
    let d = Descriptor { flags: polytropon_ipc::FLAG_FD_OK, arg: u64::from(flags), ..on_file(Op::PassFile, f) };
    match call(d, &[], None) {
        Ok(r) if r.aux[2] & polytropon_ipc::OPEN_PASSED != 0 => crate::client::recv_fd().is_some_and(|backing| f.take_backing(fd, backing, serial)),
        _ => false,
    }
}

/// The data of a file whose descriptors are the backing file's is the kernel's, on the same
/// descriptor (the interceptors call it there; see `intercept::on_data_fd`).
fn kernels_data(f: &File) -> Served<()> {
    if f.passthrough() {
        return Err(Unserved::Kernel);
    }
    Ok(())
}

/// Tells the service the last descriptor of a file is gone, without waiting: nothing the
/// program could do depends on the outcome (close has already succeeded in the kernel).
pub fn release(l: &LastRef) {
    end(Op::Release, l);
}

/// Releases `l`'s handle and waits for the service to have done it: before an exec, which
/// closes the connection, posted releases could still be waiting in the area and be lost with
/// it (the handles then held until the process ends).
pub fn release_now(l: &LastRef) {
    let d = Descriptor { op: Op::Release as u32, instance: l.instance, inode: l.inode, handle: l.handle, arg: l.passed_calls, ..Descriptor::default() };
    let _ = call(d, &[], None);
}

/// Ends `l`'s handle with `op` (`Release`, `Releasedir`) without waiting, or waiting when the
/// queue would not take a request that needs no answer.
pub fn end(op: Op, l: &LastRef) {
    let d = Descriptor { op: op as u32, instance: l.instance, inode: l.inode, handle: l.handle, arg: l.passed_calls, ..Descriptor::default() };
    if crate::client::post(d).is_err() {
        let _ = call(d, &[], None);
    }
}

fn on_file(op: Op, f: &File) -> Descriptor {
    Descriptor {
        op: op as u32,
        instance: f.instance.load(Ordering::Relaxed),
        inode: f.inode.load(Ordering::Relaxed),
        handle: f.handle.load(Ordering::Relaxed),
        ..Descriptor::default()
    }
}

pub fn getattr(f: &File) -> Served<WireAttr> {
    if let Some(a) = f.attr_known(crate::client::change_word) {
        return Ok(a);
    }
    let mut b = [0u8; std::mem::size_of::<WireAttr>()];
    call(on_file(Op::Getattr, f), &[], Some(&mut b))?;
    Ok(WireAttr::from_bytes(&b))
}

pub fn stat_path(t: &Target, follow: bool) -> Served<WireAttr> {
    stat_path_node(t, follow).map(|(a, _)| a)
}

/// As [`stat_path`], with the node the path leads to.
/// A path stat'ed again while nothing changed is answered from memory (see `opens`).
pub fn stat_path_node(t: &Target, follow: bool) -> Served<(WireAttr, Node)> {
    let generation = crate::config::GENERATION.load(Ordering::Acquire);
    let again = opens::stat_again(t, follow);
    let creds = if again { crate::client::creds() } else { None };
    if let Some(creds) = creds {
        if let Some((a, inode)) = opens::recall_stat(t, follow, creds, crate::client::change_word) {
            return Ok((a, Node { instance: t.instance, inode }));
        }
    }
    let rel = t.rel();
    let mut b = [0u8; std::mem::size_of::<WireAttr>()];
    let d = Descriptor {
        op: Op::StatPath as u32,
        instance: t.instance,
        inode: t.base,
        len: rel.len() as u64,
        arg: if follow { 0 } else { STAT_NOFOLLOW },
        flags: if creds.is_some() { polytropon_ipc::FLAG_LEARN } else { 0 },
        ..Descriptor::default()
    };
    let r = call(d, rel, Some(&mut b))?;
    let a = WireAttr::from_bytes(&b);
    if let (Some(creds), Some((names, file)), Some(table)) = (creds, polytropon_ipc::args::StatLearned::decode(&r.aux), crate::client::change_table()) {
        crate::config::learn_names_slot(t.instance, table, names.slot, crate::client::change_word);
        opens::remember_stat(t, follow, a, r.aux[0], table, (names.slot, names.word), (file.slot, file.word), generation, creds);
    }
    Ok((a, Node { instance: t.instance, inode: r.aux[0] }))
}

pub fn unlink(t: &Target) -> Served<()> {
    let rel = t.rel();
    call(Descriptor { op: Op::UnlinkPath as u32, instance: t.instance, inode: t.base, len: rel.len() as u64, ..Descriptor::default() }, rel, None)?;
    Ok(())
}

/// Reads up to `buf.len()` bytes at `offset` (several requests for large reads).
pub fn pread(f: &File, buf: &mut [u8], offset: u64) -> Served<usize> {
    kernels_data(f)?;
    if !f.readable() {
        return Err(Unserved::Errno(libc::EBADF));
    }
    // A small file's bytes from its open, or its end seen by a short read, while nobody
    // changed it: no round trip.
    if let Some(n) = f.read_known(offset, buf, crate::client::change_word) {
        return Ok(n);
    }
    // What the answers teach holds for this open only (the slot may be closed and used again
    // meanwhile).
    let serial = f.serial();
    let mut done = 0;
    while done < buf.len() {
        let want = (buf.len() - done).min(CHUNK);
        let d = Descriptor { offset: offset + done as u64, len: want as u64, ..on_file(Op::Read, f) };
        let (n, end) = match crate::client::call_read(d, &mut buf[done..done + want]) {
            Ok(got) => got,
            Err(e) if done == 0 => return Err(e),
            // What was read before a piece failed is the (short) answer.
            Err(_) => break,
        };
        done += n;
        if n < want {
            if let Some(k) = end {
                f.learn(k, serial);
            }
            break;
        }
    }
    Ok(done)
}

/// Writes `data` at `offset`, or at the end when `append`; returns (bytes, end offset).
pub fn pwrite(f: &File, data: &[u8], offset: u64, append: bool) -> Served<(usize, u64)> {
    kernels_data(f)?;
    if !f.writable() {
        return Err(Unserved::Errno(libc::EBADF));
    }
    let mut done = 0;
    let mut end = offset;
    loop {
        let want = (data.len() - done).min(CHUNK);
        let d = Descriptor {
            offset: offset + done as u64,
            len: want as u64,
            arg: if append { WRITE_APPEND } else { 0 },
            ..on_file(Op::Write, f)
        };
        // A large write overlaps our copy into the buffer with the service's write of what is
        // already there (an append cannot: its offset is only known at the end).
        let r = if !append && want >= STREAM_MIN {
            match crate::client::call_streamed(d, &data[done..done + want], STREAM_PIECE) {
                // The service streams none of this user's writes for a while (one of them
                // stalled): the piece is copied in whole, then sent.
                Err(Unserved::Errno(libc::EAGAIN)) => call(d, &data[done..done + want], None),
                other => other,
            }
        } else {
            call(d, &data[done..done + want], None)
        };
        // A piece refused after others were written (a full quota, a full disk): the write
        // is short, as the kernel's is; the error comes with the next one.
        let r = match r {
            Ok(r) => r,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let n = (r.value as usize).min(want);
        done += n;
        end = r.aux[0];
        // A short piece (a streamed write whose copy stalled, or a full disk or quota) goes on
        // with the rest: a full disk then fails the next request, and the write is short, as
        // the kernel's is.
        if n == 0 || done == data.len() {
            break;
        }
    }
    Ok((done, end))
}

/// read(2): at the shared offset, which advances.
pub fn read(f: &File, buf: &mut [u8]) -> Served<usize> {
    let _pos = f.lock_offset();
    let off = f.offset.load(Ordering::Acquire);
    let n = pread(f, buf, off)?;
    f.offset.store(off + n as u64, Ordering::Release);
    Ok(n)
}

/// write(2): at the shared offset (or the end, for `O_APPEND`), which advances.
pub fn write(f: &File, data: &[u8]) -> Served<usize> {
    let _pos = f.lock_offset();
    let off = f.offset.load(Ordering::Acquire);
    let (n, end) = pwrite(f, data, off, f.append())?;
    f.offset.store(end, Ordering::Release);
    Ok(n)
}

pub fn lseek(f: &File, offset: i64, whence: c_int) -> Served<i64> {
    // Under the position lock, as `read` and `write`: a seek is not lost to a move of the file
    // to its backing file (which takes the offset as it is under the lock).
    let _pos = f.lock_offset();
    kernels_data(f)?;
    let base = match whence {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => f.offset.load(Ordering::Acquire) as i64,
        libc::SEEK_END => getattr(f)?.size as i64,
        // As a filesystem without holes answers: data everywhere below the end.
        libc::SEEK_DATA | libc::SEEK_HOLE => {
            let size = getattr(f)?.size as i64;
            if offset < 0 || offset >= size {
                return Err(Unserved::Errno(libc::ENXIO));
            }
            let pos = if whence == libc::SEEK_DATA { offset } else { size };
            f.offset.store(pos as u64, Ordering::Release);
            return Ok(pos);
        }
        _ => return Err(Unserved::Errno(libc::EINVAL)),
    };
    let pos = base.checked_add(offset).filter(|p| *p >= 0).ok_or(libc::EINVAL)?;
    f.offset.store(pos as u64, Ordering::Release);
    Ok(pos)
}

pub fn fsync(f: &File, datasync: bool) -> Served<()> {
    kernels_data(f)?;
    call(Descriptor { arg: u64::from(datasync), ..on_file(Op::Fsync, f) }, &[], None)?;
    Ok(())
}

pub fn ftruncate(f: &File, len: i64) -> Served<()> {
    if len < 0 || !f.writable() {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    call(Descriptor { arg: len as u64, ..on_file(Op::Truncate, f) }, &[], None)?;
    Ok(())
}

/// Allocates or deallocates space of an open file (`fallocate`; `posix_fallocate` with mode
/// 0). The service checks the range and the handle as the kernel would.
pub fn fallocate(f: &File, mode: c_int, offset: i64, length: i64) -> Served<()> {
    let b = WireFallocate { mode: mode as u32, pad: 0, offset, length }.to_bytes();
    call(Descriptor { len: b.len() as u64, ..on_file(Op::Fallocate, f) }, &b, None)?;
    Ok(())
}

/// Has the instance of an open file write out what it holds for its backend (`syncfs`).
pub fn syncfs(f: &File) -> Served<()> {
    call(on_file(Op::Syncfs, f), &[], None)?;
    Ok(())
}

/// Has `instance` write out what it holds for its backend (`sync`: no file of it named).
pub fn sync_instance(instance: u32) -> Served<()> {
    call(Descriptor { op: Op::Syncfs as u32, instance, ..Descriptor::default() }, &[], None)?;
    Ok(())
}

/// Changes attributes of an open file (fchmod, fchown, futimens).
pub fn setattr(f: &File, w: &WireSetattr) -> Served<()> {
    let b = w.to_bytes();
    call(Descriptor { len: b.len() as u64, ..on_file(Op::Setattr, f) }, &b, None)?;
    Ok(())
}

/// What the extended attribute calls name: an inode of an instance (of an open file, or one a
/// path led to).
#[derive(Clone, Copy)]
pub struct Node {
    pub instance: u32,
    pub inode: u64,
}

impl Node {
    pub fn of(f: &File) -> Node {
        Node { instance: f.instance.load(Ordering::Relaxed), inode: f.inode.load(Ordering::Relaxed) }
    }

    fn descriptor(self, op: Op) -> Descriptor {
        Descriptor { op: op as u32, instance: self.instance, inode: self.inode, ..Descriptor::default() }
    }
}

/// Extended attribute `name` (or, with `name` `None`, the list of names) of `f` into `out`
/// (empty: only the length); its length.
pub fn getxattr(f: Node, name: Option<&[u8]>, out: &mut [u8]) -> Served<usize> {
    let (op, data) = match name {
        Some(n) => (Op::Getxattr, n),
        None => (Op::Listxattr, &[][..]),
    };
    let d = Descriptor { len: data.len() as u64, arg: out.len() as u64, ..f.descriptor(op) };
    let n = call(d, data, None)?.value as usize;
    if !out.is_empty() {
        let n = n.min(out.len());
        crate::client::reply_data(&mut out[..n]);
    }
    Ok(n)
}

/// Sets extended attribute `name` of `f`.
pub fn setxattr(f: Node, name: &[u8], value: &[u8], flags: c_int) -> Served<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Unserved::Errno(libc::ERANGE));
    }
    if value.len() > 65536 {
        return Err(Unserved::Errno(libc::E2BIG));
    }
    // Not a hot path: a heap buffer rather than 64 KiB of some thread's stack.
    let mut data = Vec::with_capacity(name.len() + 1 + value.len());
    data.extend_from_slice(name);
    data.push(0);
    data.extend_from_slice(value);
    let d = Descriptor { len: data.len() as u64, offset: name.len() as u64, arg: flags as u32 as u64, ..f.descriptor(Op::Setxattr) };
    call(d, &data, None)?;
    Ok(())
}

/// Removes extended attribute `name` of `f`.
pub fn removexattr(f: Node, name: &[u8]) -> Served<()> {
    call(Descriptor { len: name.len() as u64, ..f.descriptor(Op::Removexattr) }, name, None)?;
    Ok(())
}

/// Fills a `struct stat` as the kernel's FUSE path would for the same file.
pub fn fill_stat(a: &WireAttr, dev: u64, st: &mut libc::stat) {
    // SAFETY: `libc::stat` is plain integers; all-zero is a valid value.
    *st = unsafe { std::mem::zeroed() };
    st.st_dev = dev;
    st.st_ino = a.ino;
    st.st_size = a.size as i64;
    st.st_blocks = a.blocks as i64;
    st.st_mode = a.mode;
    st.st_nlink = a.nlink.into();
    st.st_uid = a.uid;
    st.st_gid = a.gid;
    st.st_rdev = a.rdev;
    st.st_blksize = a.blksize.into();
    st.st_atime = a.atime;
    st.st_atime_nsec = a.atime_nsec.into();
    st.st_mtime = a.mtime;
    st.st_mtime_nsec = a.mtime_nsec.into();
    st.st_ctime = a.ctime;
    st.st_ctime_nsec = a.ctime_nsec.into();
}

/// Fills a `struct statx` likewise (basic fields only, as FUSE reports them).
pub fn fill_statx(a: &WireAttr, dev: u64, stx: &mut libc::statx) {
    // SAFETY: `libc::statx` is plain integers; all-zero is a valid value.
    *stx = unsafe { std::mem::zeroed() };
    stx.stx_mask = libc::STATX_BASIC_STATS;
    stx.stx_blksize = a.blksize;
    stx.stx_nlink = a.nlink;
    stx.stx_uid = a.uid;
    stx.stx_gid = a.gid;
    stx.stx_mode = a.mode as u16;
    stx.stx_ino = a.ino;
    stx.stx_size = a.size;
    stx.stx_blocks = a.blocks;
    stx.stx_atime.tv_sec = a.atime;
    stx.stx_atime.tv_nsec = a.atime_nsec;
    stx.stx_mtime.tv_sec = a.mtime;
    stx.stx_mtime.tv_nsec = a.mtime_nsec;
    stx.stx_ctime.tv_sec = a.ctime;
    stx.stx_ctime.tv_nsec = a.ctime_nsec;
    stx.stx_rdev_major = libc::major(a.rdev);
    stx.stx_rdev_minor = libc::minor(a.rdev);
    stx.stx_dev_major = libc::major(dev);
    stx.stx_dev_minor = libc::minor(dev);
}
