//! Filesystem statistics: `statfs`, `statvfs` and their descriptor and 64-bit forms. The
//! counts come from the service; type, id and mount flags, which only the kernel knows, from
//! one kernel call per mount (the FUSE path would ask the service on every call anyway).

use std::ffi::{c_char, c_int, c_long};

use polytropon_ipc::WireStatfs;

use super::run;
use crate::config::{mount_of_dev, Mount};
use crate::files::{self, File};
use crate::listing::{statfs_file, statfs_path};
use crate::path::{resolve_dir, Target};
use crate::outcome::{Served, Unserved};

/// Counts and the mount they belong to, for a path or a descriptor of ours.
fn counts_of_path(path: *const c_char) -> Served<(WireStatfs, &'static Mount)> {
    let mut t = Target::empty();
    resolve_dir(&mut t, libc::AT_FDCWD, path).ok_or(Unserved::Kernel)?;
    let m = mount_of_dev(t.dev).ok_or(Unserved::Kernel)?;
    Ok((statfs_path(&t)?, m))
}

fn counts_of_fd(fd: c_int) -> Served<(WireStatfs, &'static Mount)> {
    let f: &File = match files::get(fd) {
        Some((_, f)) => f,
        None => files::dir_file(fd).ok_or(Unserved::Kernel)?,
    };
    let m = mount_of_dev(f.dev.load(std::sync::atomic::Ordering::Relaxed)).ok_or(Unserved::Kernel)?;
    Ok((statfs_file(f)?, m))
}

fn fill_statfs(w: &WireStatfs, m: &Mount, out: *mut libc::statfs64) -> Served<c_int> {
    if out.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    let mut st = *m.kernel_statfs().ok_or(Unserved::Kernel)?;
    st.f_bsize = w.bsize.into();
    st.f_frsize = w.frsize.into();
    st.f_blocks = w.blocks;
    st.f_bfree = w.bfree;
    st.f_bavail = w.bavail;
    st.f_files = w.files;
    st.f_ffree = w.ffree;
    st.f_namelen = w.namelen.into();
    // SAFETY: the caller's out-parameter, checked non-null.
    unsafe { *out = st };
    Ok(0)
}

fn fill_statvfs(w: &WireStatfs, m: &Mount, out: *mut libc::statvfs64) -> Served<c_int> {
    if out.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    let mut st = *m.kernel_statvfs().ok_or(Unserved::Kernel)?;
    st.f_bsize = w.bsize.into();
    st.f_frsize = if w.frsize != 0 { w.frsize } else { w.bsize }.into();
    st.f_blocks = w.blocks;
    st.f_bfree = w.bfree;
    st.f_bavail = w.bavail;
    st.f_files = w.files;
    st.f_ffree = w.ffree;
    st.f_favail = w.ffree;
    st.f_namemax = w.namelen.into();
    // SAFETY: the caller's out-parameter, checked non-null.
    unsafe { *out = st };
    Ok(0)
}

// `struct statfs`/`statvfs` and their 64-bit forms are the same on 64-bit Linux.

hooks! {
    fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int => |kernel| {
        run(|| counts_of_path(path).and_then(|(w, m)| fill_statfs(&w, m, buf.cast())), kernel)
    }

    fn statfs64(path: *const c_char, buf: *mut libc::statfs64) -> c_int => |kernel| {
        run(|| counts_of_path(path).and_then(|(w, m)| fill_statfs(&w, m, buf)), kernel)
    }

    fn statvfs(path: *const c_char, buf: *mut libc::statvfs) -> c_int => |kernel| {
        run(|| counts_of_path(path).and_then(|(w, m)| fill_statvfs(&w, m, buf.cast())), kernel)
    }

    fn statvfs64(path: *const c_char, buf: *mut libc::statvfs64) -> c_int => |kernel| {
        run(|| counts_of_path(path).and_then(|(w, m)| fill_statvfs(&w, m, buf)), kernel)
    }

    /// What the kernel says of the file's mount: every limit `fpathconf` reports for a regular
    /// file comes from the filesystem (its statistics, its type) or is a constant, so the
    /// mount point answers for the file without handing the file over.
    fn fpathconf(fd: c_int, name: c_int) -> c_long => |kernel| {
        match files::get(fd).and_then(|(_, f)| mount_of_dev(f.dev.load(std::sync::atomic::Ordering::Acquire))) {
            Some(m) => m.pathconf(name),
            None => super::in_kernel(fd, super::HandOver::Unserved, kernel),
        }
    }

    fn fstatfs(fd: c_int, buf: *mut libc::statfs) -> c_int => |kernel| {
        run(|| counts_of_fd(fd).and_then(|(w, m)| fill_statfs(&w, m, buf.cast())), || super::in_kernel(fd, super::HandOver::Unserved, kernel))
    }

    fn fstatfs64(fd: c_int, buf: *mut libc::statfs64) -> c_int => |kernel| {
        run(|| counts_of_fd(fd).and_then(|(w, m)| fill_statfs(&w, m, buf)), || super::in_kernel(fd, super::HandOver::Unserved, kernel))
    }

    fn fstatvfs(fd: c_int, buf: *mut libc::statvfs) -> c_int => |kernel| {
        run(|| counts_of_fd(fd).and_then(|(w, m)| fill_statvfs(&w, m, buf.cast())), || super::in_kernel(fd, super::HandOver::Unserved, kernel))
    }

    fn fstatvfs64(fd: c_int, buf: *mut libc::statvfs64) -> c_int => |kernel| {
        run(|| counts_of_fd(fd).and_then(|(w, m)| fill_statvfs(&w, m, buf)), || super::in_kernel(fd, super::HandOver::Unserved, kernel))
    }
}
