//! The back driver's directory listings and filesystem statistics: a client that holds a
//! directory open through the kernel (the FUSE mount of the same instance) reads its entries
//! here, as `linux_dirent64` records, instead of through FUSE.

use std::io;
use std::os::unix::ffi::OsStrExt;

use polytropon_ipc::{push_dirent, WireStatfs};

use super::call::{Call, Reply};
use crate::libservice::{FileKind, StatFs, ROOT_INODE};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The `d_type` of a kind.
fn dtype(k: FileKind) -> u8 {
    match k {
        FileKind::Regular => libc::DT_REG,
        FileKind::Directory => libc::DT_DIR,
        FileKind::Symlink => libc::DT_LNK,
        FileKind::CharDevice => libc::DT_CHR,
        FileKind::BlockDevice => libc::DT_BLK,
        FileKind::Fifo => libc::DT_FIFO,
        FileKind::Socket => libc::DT_SOCK,
    }
}

fn wire_statfs(s: &StatFs) -> WireStatfs {
    WireStatfs { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: s.namelen, frsize: s.frsize, pad: 0 }
}

/// Entries the libservice is asked for per request: as many as the smallest records would
/// fill the client's room with, within reason.
fn batch(room: usize) -> usize {
    (room / polytropon_ipc::dirent_len(1)).clamp(1, 4096)
}

/// Opens a directory the client holds open through the kernel, for listing; aux: the handle.
pub(super) fn opendir(c: &mut Call<'_>) -> io::Result<Reply> {
    // The directory must be one the instance knows (the client holds it open through the
    // kernel); a stale or made-up inode is refused by the libservice.
    let r = *c.r;
    let a = c.fs.getattr(c.ctx, r.inode, None)?;
    if a.kind() != FileKind::Directory {
        return Err(errno(libc::ENOTDIR));
    }
    if let Some(cr) = c.guard {
        cr.permit(&a, crate::libservice::access::MAY_READ)?;
    }
    let h = c.fs.opendir(c.ctx, r.inode, libc::O_RDONLY)?;
    Ok((0, [h, 0, 0, 0]))
}

/// Ends a listing handle.
pub(super) fn releasedir(c: &mut Call<'_>) -> io::Result<Reply> {
    c.fs.releasedir(c.ctx, c.r.inode, c.r.handle)?;
    Ok((0, [0; 4]))
}

/// Writes out a directory through one of the client's listing handles (its entries reach
/// the backend: SQLite's and dpkg's directory `fsync` after a create or rename).
pub(super) fn fsyncdir(c: &mut Call<'_>) -> io::Result<Reply> {
    c.fs.fsyncdir(c.ctx, c.r.inode, c.r.handle, c.r.arg != 0)?;
    Ok((0, [0; 4]))
}

/// Entries of a listing handle after a cookie, as `linux_dirent64` records.
pub(super) fn readdir(c: &mut Call<'_>) -> io::Result<Reply> {
    let r = *c.r;
    let room = r.len as usize;
    let entries = c.fs.readdir(c.ctx, r.inode, r.handle, r.offset, batch(room))?;
    let mut out = vec![0u8; room];
    let mut used = 0;
    for e in &entries {
        match push_dirent(&mut out, used, e.ino, e.offset, dtype(e.kind), e.name.as_bytes()) {
            Some(n) => used = n,
            // The rest comes with the next request, from this entry's predecessor's cookie.
            None => break,
        }
    }
    if used == 0 && !entries.is_empty() {
        // Not even one record fits: the caller's buffer is too small, as getdents says.
        return Err(errno(libc::EINVAL));
    }
    if c.area.write_data(&out[..used]) != used {
        return Err(errno(libc::EINVAL));
    }
    Ok((used as i64, [0; 4]))
}

/// Filesystem statistics of the instance holding a path (or an inode).
pub(super) fn statfs(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let r = *c.r;
    let inode = if r.len == 0 {
        // No path: the inode named, 0 being the instance's root.
        let inode = if r.inode == 0 { ROOT_INODE } else { r.inode };
        c.fs.getattr(c.ctx, inode, None)?;
        inode
    } else {
        let p = c.data(buf);
        c.target(r.inode, &p, true)?.inode
    };
    let bytes = wire_statfs(&c.fs.statfs(c.ctx, inode)?).to_bytes();
    c.area.write_data(&bytes);
    Ok((bytes.len() as i64, [0; 4]))
}
