//! Directory listings and filesystem statistics on the user-level path.
//!
//! A directory a program opens on a pool mount is a kernel descriptor (an `O_PATH` one the
//! kernel opens for real only when a call needs that, see [`files::open_dir_in_kernel`]; so
//! `fchdir`, `openat` and everything else the kernel does with it work); this library
//! records it ([`files::remember_dir`]) and serves its *entries* from the service: the first listing opens a service handle on the directory's inode, and the
//! position (a cookie) lives in the record, shared by dup'd descriptors like a file position.

use std::sync::atomic::Ordering;

use polytropon_ipc::{dirent_ok, Descriptor, Op, WireStatfs};

use crate::client::{call, reply_data};
use crate::files::{File, LastRef};
use crate::path::Target;
use crate::outcome::Served;

/// Largest listing asked for at once (the client buffer is at least this big).
const LISTING_CAP: usize = 1 << 20;

fn on_dir(op: Op, f: &File) -> Descriptor {
    Descriptor {
        op: op as u32,
        instance: f.instance.load(Ordering::Relaxed),
        inode: f.inode.load(Ordering::Relaxed),
        handle: f.handle.load(Ordering::Acquire),
        ..Descriptor::default()
    }
}

/// The service's listing handle of directory record `f`, opened on first use.
fn handle_of(f: &File) -> Served<u64> {
    let h = f.handle.load(Ordering::Acquire);
    if h != 0 {
        return Ok(h);
    }
    let opened = call(on_dir(Op::Opendir, f), &[], None)?.aux[0];
    match f.handle.compare_exchange(0, opened, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(opened),
        Err(other) => {
            // Another thread opened one first: use that, end ours.
            release_dir(Some(LastRef { instance: f.instance.load(Ordering::Relaxed), inode: f.inode.load(Ordering::Relaxed), handle: opened, passed_calls: 0 }));
            Ok(other)
        }
    }
}

/// `fsync` (`datasync`: `fdatasync`) of the directory of record `f`, through its listing
/// handle.
pub fn fsync_dir(f: &File, datasync: bool) -> Served<()> {
    let handle = handle_of(f)?;
    call(Descriptor { handle, arg: u64::from(datasync), ..on_dir(Op::Fsyncdir, f) }, &[], None)?;
    Ok(())
}

/// `getdents64` on directory record `f`: `linux_dirent64` records from its position into
/// `out`, which must hold one at least; the position advances past them. 0 at the end.
pub fn getdents(f: &File, out: &mut [u8]) -> Served<usize> {
    let handle = handle_of(f)?;
    let from = f.offset.load(Ordering::Acquire);
    let cap = out.len().min(LISTING_CAP);
    let d = Descriptor { handle, offset: from, len: cap as u64, ..on_dir(Op::Readdir, f) };
    let n = (call(d, &[], None)?.value as usize).min(cap);
    let out = &mut out[..n];
    reply_data(out);
    // The buffer is shared memory another process of the pool could have scribbled on
    // between the service's write and our copy: check every record of the copy.
    let mut at = 0;
    let mut last = from;
    while at < n {
        let len = dirent_ok(&out[at..]).ok_or(libc::EIO)?;
        last = u64::from_ne_bytes(out[at + 8..at + 16].try_into().map_err(|_| libc::EIO)?);
        at += len;
    }
    f.offset.store(last, Ordering::Release);
    Ok(n)
}

/// Ends listing handle `l`, if any, without waiting (nothing depends on the outcome).
pub fn release_dir(l: Option<LastRef>) {
    if let Some(l) = l {
        crate::ops::end(Op::Releasedir, &l);
    }
}

/// Opens directory descriptor `fd` in the kernel if it is an `O_PATH` one of ours (see
/// [`crate::files::open_dir_in_kernel`]), ending the listing handles of stale records met.
pub fn open_dir_in_kernel(fd: libc::c_int) -> Result<(), libc::c_int> {
    crate::files::open_dir_in_kernel(fd, &mut |l| release_dir(Some(l)))
}

/// Before exec or a spawn: [`open_dir_in_kernel`] of every `O_PATH` directory of ours the new
/// program inherits (every one with `all`).
pub fn open_inherited_dirs_in_kernel(all: bool) {
    crate::files::open_inherited_dirs_in_kernel(all, &mut |l| release_dir(Some(l)));
}

/// Forgets directory descriptor `fd` (closed, replaced, or handed to the kernel), ending its
/// listing handle at the service when that was the last reference.
pub fn close_dir(fd: libc::c_int) {
    release_dir(crate::files::forget_dir(fd));
}

fn statfs_call(d: Descriptor, path: &[u8]) -> Served<WireStatfs> {
    let mut b = [0u8; std::mem::size_of::<WireStatfs>()];
    call(d, path, Some(&mut b))?;
    Ok(WireStatfs::from_bytes(&b))
}

/// Statistics of the instance holding path `t` (which may be a mount's root).
pub fn statfs_path(t: &Target) -> Served<WireStatfs> {
    let rel = t.rel();
    statfs_call(Descriptor { op: Op::Statfs as u32, instance: t.instance, inode: t.base, len: rel.len() as u64, ..Descriptor::default() }, rel)
}

/// Statistics of the instance holding open file (or directory record) `f`.
pub fn statfs_file(f: &File) -> Served<WireStatfs> {
    statfs_call(Descriptor { handle: 0, ..on_dir(Op::Statfs, f) }, &[])
}
