//! Copy-up: giving a lower object a copy in the upper branch before it is changed.
//!
//! The copy is built under a hidden scratch name in the target's upper parent directory
//! (data, then xattrs, ownership, mode and times, then `fsync`) and renamed into place with
//! `RENAME_NOREPLACE`, so a crash never leaves a half-copied object visible: at worst a
//! scratch entry, which the union never shows.

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::node::UNode;
use super::UnionFs;
use crate::libservice::{
    errno, Attr, Context, Entry, FileKind, FileSystem, Handle, Inode, SetAttr, TimeUpdate,
    RENAME_NOREPLACE,
};

const CHUNK: usize = 1 << 20;

impl UnionFs {
    /// Makes sure `node` exists in the upper branch and returns its upper inode. For a regular
    /// file, `limit` caps the bytes copied (a truncate or `O_TRUNC` that triggered the copy).
    /// The caller holds the namespace lock exclusively.
    pub(super) fn copy_up(&self, ctx: &Context, node: &Arc<UNode>, limit: Option<u64>) -> io::Result<Inode> {
        if let Some(u) = node.layers().upper {
            return Ok(u);
        }
        // The ancestors missing from the upper branch first, top down, one level at a time:
        // no recursion (an image may nest directories thousands deep, and a worker thread's
        // stack is not that deep).
        let mut missing = Vec::new();
        let mut at = node.parent();
        while let Some((p, _)) = at {
            if p.layers().upper.is_some() {
                break;
            }
            at = p.parent();
            missing.push(p);
        }
        for dir in missing.iter().rev() {
            self.copy_up_one(ctx, dir, None)?;
        }
        self.copy_up_one(ctx, node, limit)
    }

    /// Copies `node` up into its parent's upper copy, which exists.
    fn copy_up_one(&self, ctx: &Context, node: &Arc<UNode>, limit: Option<u64>) -> io::Result<Inode> {
        let ufs = self.upper_fs()?;
        if let Some(u) = node.layers().upper {
            return Ok(u);
        }
        // A removed lower directory (a whiteout hides it): nothing to copy it up to, as the
        // kernel answers for a dead directory.
        if node.is_removed() {
            return Err(errno(libc::ENOENT));
        }
        let (parent, name) = node.parent().ok_or_else(|| errno(libc::ESTALE))?;
        let upper_dir = parent.layers().upper.ok_or_else(|| errno(libc::ESTALE))?;
        let (layer, lower) = node.layers().top().ok_or_else(|| errno(libc::ESTALE))?;
        let lfs = self.fs(layer)?;
        let mut attr = lfs.getattr(ctx, lower, None)?;
        // The copy keeps the ids the union showed.
        self.shown_ids(layer, &mut attr);
        let scratch = self.scratch_name();
        let own = self.own;
        // The directory's times stay what they were, as overlayfs keeps them: a copy-up is
        // no change of its names (and one may start for a change that is then refused).
        let _times = KeepTimes::of(ufs, own, upper_dir);
        let created = match node.kind {
            FileKind::Directory => ufs.mkdir(&own, upper_dir, &scratch, 0o700, 0)?,
            FileKind::Regular => {
                let (e, h) = ufs.create(&own, upper_dir, &scratch, 0o600, 0, libc::O_WRONLY)?;
                let copied = copy_data(lfs, ctx, lower, &attr, ufs, &own, e.inode, h, limit);
                let synced = copied.and_then(|_| ufs.fsync(&own, e.inode, h, false));
                let _ = ufs.release(&own, e.inode, h);
                if let Err(err) = synced {
                    self.discard_scratch(ufs, upper_dir, &scratch, &e, false);
                    return Err(err);
                }
                e
            }
            FileKind::Symlink => {
                let target = lfs.readlink(ctx, lower)?;
                ufs.symlink(&own, OsStr::from_bytes(&target), upper_dir, &scratch)?
            }
            _ => ufs.mknod(&own, upper_dir, &scratch, attr.mode, attr.rdev, 0)?,
        };
        let is_dir = node.kind == FileKind::Directory;
        let finished = copy_metadata(lfs, ctx, lower, &attr, ufs, &own, created.inode).and_then(|_| {
            ufs.rename(&own, upper_dir, &scratch, upper_dir, &name, RENAME_NOREPLACE)
        });
        if let Err(err) = finished {
            self.discard_scratch(ufs, upper_dir, &scratch, &created, is_dir);
            return Err(err);
        }
        // The copy and its directory changed as the union shows them (a directory's upper
        // copy is what its attributes come from now; the parent's upper copy got an entry).
        self.changed(node.ino);
        self.changed(parent.ino);
        let new_attr = ufs.getattr(ctx, created.inode, None)?;
        crate::union::lock(&self.ids).insert((0, new_attr.dev, new_attr.ino), node.ino);
        let mut state = node.state();
        state.layers.upper = Some(created.inode);
        if !is_dir {
            // The lower object no longer matters to a non-directory.
            for (l, ino) in std::mem::take(&mut state.layers.lowers) {
                if let Some(b) = self.branch(l) {
                    b.forget(ino, 1);
                }
            }
        }
        Ok(created.inode)
    }

    fn discard_scratch(&self, ufs: &dyn FileSystem, dir: Inode, scratch: &OsStr, e: &Entry, is_dir: bool) {
        let own = self.own;
        let _ = if is_dir { ufs.rmdir(&own, dir, scratch) } else { ufs.unlink(&own, dir, scratch) };
        ufs.forget(e.inode, 1);
    }
}

/// Sets a directory's access and modification times back to what they were when taken, as
/// it is dropped.
struct KeepTimes<'a> {
    fs: &'a dyn FileSystem,
    own: Context,
    dir: Inode,
    times: Option<(crate::libservice::Timespec, crate::libservice::Timespec)>,
}

impl<'a> KeepTimes<'a> {
    fn of(fs: &'a dyn FileSystem, own: Context, dir: Inode) -> Self {
        let times = fs.getattr(&own, dir, None).ok().map(|a| (a.atime, a.mtime));
        KeepTimes { fs, own, dir, times }
    }
}

impl Drop for KeepTimes<'_> {
    fn drop(&mut self) {
        if let Some((atime, mtime)) = self.times {
            let set = SetAttr { atime: Some(TimeUpdate::Set(atime)), mtime: Some(TimeUpdate::Set(mtime)), ..SetAttr::default() };
            if let Err(e) = self.fs.setattr(&self.own, self.dir, None, &set) {
                tracing::debug!("the times of a directory a copy-up changed stay changed: {e}");
            }
        }
    }
}

/// Ownership, then xattrs (after chown, which drops file capabilities), then mode (after
/// chown, which clears set-id bits) and times. POSIX ACLs stay behind: instances have none
/// (copied, the host would enforce what the union neither shows nor checks).
fn copy_metadata(
    lfs: &dyn FileSystem,
    ctx: &Context,
    lower: Inode,
    attr: &Attr,
    ufs: &dyn FileSystem,
    own: &Context,
    upper: Inode,
) -> io::Result<()> {
    let owner = SetAttr { uid: Some(attr.uid), gid: Some(attr.gid), ..SetAttr::default() };
    ufs.setattr(own, upper, None, &owner)?;
    let names = match lfs.listxattr(ctx, lower) {
        Ok(n) => n,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)) => Vec::new(),
        Err(e) => return Err(e),
    };
    for name in names.iter().filter(|n| !super::unsupported_xattr(n)) {
        let value = match lfs.getxattr(ctx, lower, name) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        ufs.setxattr(own, upper, name, &value, 0)?;
    }
    let times = SetAttr {
        atime: Some(TimeUpdate::Set(attr.atime)),
        mtime: Some(TimeUpdate::Set(attr.mtime)),
        ..SetAttr::default()
    };
    if attr.kind() == FileKind::Symlink {
        return ufs.setattr(own, upper, None, &times).map(|_| ());
    }
    let mode = SetAttr { mode: Some(attr.mode & 0o7777), ..times };
    ufs.setattr(own, upper, None, &mode).map(|_| ())
}

/// Copies the data of a regular file, keeping holes: only the ranges `SEEK_DATA` reports are
/// copied, with `FICLONE` or `copy_file_range` when both branches give host descriptors.
#[allow(clippy::too_many_arguments)]
fn copy_data(
    lfs: &dyn FileSystem,
    ctx: &Context,
    lower: Inode,
    attr: &Attr,
    ufs: &dyn FileSystem,
    own: &Context,
    upper: Inode,
    uh: Handle,
    limit: Option<u64>,
) -> io::Result<()> {
    let size = limit.map_or(attr.size, |l| l.min(attr.size));
    if size == 0 {
        return Ok(());
    }
    let lh = lfs.open(ctx, lower, libc::O_RDONLY)?;
    let r = copy_open(lfs, ctx, lower, lh, ufs, own, upper, uh, size);
    let _ = lfs.release(ctx, lower, lh);
    r?;
    // Trailing hole, or exact size after a partial copy.
    ufs.setattr(own, upper, Some(uh), &SetAttr { size: Some(size), ..SetAttr::default() })?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn copy_open(
    lfs: &dyn FileSystem,
    ctx: &Context,
    lower: Inode,
    lh: Handle,
    ufs: &dyn FileSystem,
    own: &Context,
    upper: Inode,
    uh: Handle,
    size: u64,
) -> io::Result<()> {
    let fds = lfs.backing_file(lower, lh).and_then(|l| Ok((l.fd, ufs.backing_file(upper, uh)?.fd)));
    if let Ok((src, dst)) = &fds {
        if size == u64::try_from(rustix::fs::fstat(src)?.st_size).unwrap_or(0)
            && rustix::fs::ioctl_ficlone(dst, src).is_ok()
        {
            return Ok(());
        }
    }
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos < size {
        let start = match lfs.lseek(ctx, lower, lh, pos, libc::SEEK_DATA) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => pos,
            Err(e) => return Err(e),
        };
        if start >= size {
            break;
        }
        let end = match lfs.lseek(ctx, lower, lh, start, libc::SEEK_HOLE) {
            Ok(e) => e.min(size),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => size,
            Err(e) => return Err(e),
        };
        let mut off = start;
        while off < end {
            let want = usize::try_from(end - off).unwrap_or(CHUNK).min(CHUNK);
            let n = match &fds {
                Ok((src, dst)) => {
                    let (mut i, mut o) = (off, off);
                    rustix::fs::copy_file_range(src, Some(&mut i), dst, Some(&mut o), want)?
                }
                Err(_) => {
                    buf.resize(want, 0);
                    let n = lfs.read(ctx, lower, lh, &mut [IoSliceMut::new(&mut buf)], off)?;
                    write_all(ufs, own, upper, uh, &buf[..n], off)?;
                    n
                }
            };
            if n == 0 {
                // The file shrank under us: stop; the final truncate fixes the size.
                return Ok(());
            }
            off += n as u64;
        }
        pos = end;
    }
    Ok(())
}

fn write_all(fs: &dyn FileSystem, ctx: &Context, ino: Inode, h: Handle, mut data: &[u8], mut off: u64) -> io::Result<()> {
    while !data.is_empty() {
        let n = fs.write(ctx, ino, h, &[IoSlice::new(data)], off)?;
        if n == 0 {
            return Err(errno(libc::EIO));
        }
        data = &data[n..];
        off += n as u64;
    }
    Ok(())
}
