//! Namespace operations on the user-level path: make, remove, rename and link names,
//! symbolic links, permission checks and attribute changes by path. Errors are errno values;
//! [`Unserved::Kernel`] sends the call to the kernel (e.g. two paths on different instances, which
//! the kernel answers with `EXDEV` itself).

use std::ffi::c_int;

use polytropon_ipc::args::{AccessArg, MkdirArg};
use polytropon_ipc::{Descriptor, Op, WireSetattr, STAT_NOFOLLOW};

use crate::client::{call, call_parts};
use crate::path::Target;
use crate::outcome::{Served, Unserved};

fn on_path(op: Op, t: &Target, arg: u64) -> Descriptor {
    Descriptor { op: op as u32, instance: t.instance, inode: t.base, len: t.rel().len() as u64, arg, ..Descriptor::default() }
}

pub fn mkdir(t: &Target, mode: u32) -> Served<()> {
    let arg = MkdirArg { mode, umask: crate::config::umask() }.encode();
    call(on_path(Op::Mkdir, t, arg), t.rel(), None).map(drop)
}

pub fn rmdir(t: &Target) -> Served<()> {
    call(on_path(Op::Rmdir, t, 0), t.rel(), None).map(drop)
}

/// `op` (`Rename` or `Link`) of `old` to `new`, both on one instance.
pub fn rename_or_link(op: Op, old: &Target, new: &Target, flags: u32) -> Served<()> {
    if old.instance != new.instance {
        return Err(Unserved::Kernel);
    }
    let (a, b) = (old.rel(), new.rel());
    let d = Descriptor {
        op: op as u32,
        instance: old.instance,
        inode: old.base,
        handle: new.base,
        offset: a.len() as u64,
        len: (a.len() + b.len()) as u64,
        arg: u64::from(flags),
        ..Descriptor::default()
    };
    call_parts(d, &[a, b], None).map(drop)
}

pub fn symlink(target: &[u8], t: &Target) -> Served<()> {
    if target.is_empty() {
        return Err(Unserved::Errno(libc::ENOENT));
    }
    let rel = t.rel();
    let d = Descriptor { offset: target.len() as u64, len: (target.len() + rel.len()) as u64, ..on_path(Op::Symlink, t, 0) };
    call_parts(d, &[target, rel], None).map(drop)
}

/// The link's target into `out` (truncated, no NUL, as readlink does); its length.
pub fn readlink(t: &Target, out: &mut [u8]) -> Served<usize> {
    let r = call(on_path(Op::Readlink, t, 0), t.rel(), None)?;
    let n = (r.value as usize).min(out.len());
    crate::client::reply_data(&mut out[..n]);
    Ok(n)
}

pub fn access(t: &Target, mode: c_int, flags: c_int) -> Served<()> {
    let arg = AccessArg { mode, flags }.encode();
    call(on_path(Op::Access, t, arg), t.rel(), None).map(drop)
}

/// Changes attributes of what `t` names (of a final symbolic link itself if `nofollow`).
pub fn setattr(t: &Target, w: &WireSetattr, nofollow: bool) -> Served<()> {
    let rel = t.rel();
    let wire = w.to_bytes();
    let d = Descriptor { offset: rel.len() as u64, len: (rel.len() + wire.len()) as u64, ..on_path(Op::SetattrPath, t, if nofollow { STAT_NOFOLLOW } else { 0 }) };
    call_parts(d, &[rel, &wire], None).map(drop)
}
