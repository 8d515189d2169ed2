//! Copying a host directory tree into a libservice (a branch being filled: benchmark data,
//! image layers): directories, regular files (sparse tails kept as size), symbolic links,
//! device nodes (whiteouts), and extended attributes, as they are.

use std::ffi::OsStr;
use std::io::{self, IoSlice};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{Context, FileSystem, Inode, SetAttr};

/// Copies the contents of host directory `from` into directory `dir` of `fs`.
pub fn copy_tree(fs: &dyn FileSystem, ctx: &Context, dir: Inode, from: &Path) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(from)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let p = from.join(&n);
        let md = std::fs::symlink_metadata(&p)?;
        let ft = md.file_type();
        let perm = md.mode() & 0o7777;
        let e = if ft.is_dir() {
            let e = fs.mkdir(ctx, dir, &n, perm, 0)?;
            let copied = copy_tree(fs, ctx, e.inode, &p);
            if copied.is_err() {
                fs.forget(e.inode, 1);
            }
            copied?;
            e
        } else if ft.is_symlink() {
            fs.symlink(ctx, std::fs::read_link(&p)?.as_os_str(), dir, &n)?
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            fs.mknod(ctx, dir, &n, md.mode(), md.rdev(), 0)?
        } else if ft.is_file() {
            let data = std::fs::read(&p)?;
            let (e, h) = fs.create(ctx, dir, &n, perm, 0, libc::O_WRONLY)?;
            let mut at = 0;
            while at < data.len() {
                let w = fs.write(ctx, e.inode, h, &[IoSlice::new(&data[at..])], at as u64)?;
                if w == 0 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                at += w;
            }
            fs.release(ctx, e.inode, h)?;
            e
        } else {
            continue; // sockets
        };
        if !ft.is_symlink() {
            for (name, value) in xattrs(&p)? {
                fs.setxattr(ctx, e.inode, OsStr::from_bytes(&name), &value, 0)?;
            }
            if ft.is_file() || ft.is_dir() {
                fs.setattr(ctx, e.inode, None, &SetAttr { mode: Some(perm), uid: Some(md.uid()), gid: Some(md.gid()), ..SetAttr::default() })?;
            }
        }
        fs.forget(e.inode, 1);
    }
    Ok(())
}

/// The extended attributes of host object `p` (not following a link).
fn xattrs(p: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 64 << 10];
    let len = match rustix::fs::llistxattr(p, &mut names) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for n in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 64 << 10];
        let vl = rustix::fs::lgetxattr(p, OsStr::from_bytes(n), &mut v)?;
        v.truncate(vl);
        out.push((n.to_vec(), v));
    }
    Ok(out)
}

/// Removes `name` from directory `dir` of `fs`, and everything under it.
pub fn remove_tree(fs: &dyn FileSystem, ctx: &Context, dir: Inode, name: &OsStr) -> io::Result<()> {
    let e = fs.lookup(ctx, dir, name)?;
    let emptied = if e.attr.kind() == super::FileKind::Directory {
        (|| {
            let h = fs.opendir(ctx, e.inode, libc::O_RDONLY)?;
            let mut names = Vec::new();
            let mut offset = 0;
            loop {
                let batch = fs.readdir(ctx, e.inode, h, offset, 256);
                let batch = match batch {
                    Ok(b) => b,
                    Err(err) => {
                        let _ = fs.releasedir(ctx, e.inode, h);
                        return Err(err);
                    }
                };
                let Some(last) = batch.last() else { break };
                offset = last.offset;
                names.extend(batch.into_iter().map(|d| d.name).filter(|n| n != "." && n != ".."));
            }
            fs.releasedir(ctx, e.inode, h)?;
            names.iter().try_for_each(|n| remove_tree(fs, ctx, e.inode, n))
        })()
    } else {
        Ok(())
    };
    let is_dir = e.attr.kind() == super::FileKind::Directory;
    fs.forget(e.inode, 1);
    emptied?;
    if is_dir {
        fs.rmdir(ctx, dir, name)
    } else {
        fs.unlink(ctx, dir, name)
    }
}

/// The directory at `path` (absolute, inside `fs`), made with its parents where missing; a
/// lookup reference on it for the caller.
pub fn mkdir_all(fs: &dyn FileSystem, ctx: &Context, path: &Path) -> io::Result<Inode> {
    let mut dir = super::ROOT_INODE;
    let mut owned = false;
    for c in path.components().filter_map(|c| match c {
        std::path::Component::Normal(n) => Some(n),
        _ => None,
    }) {
        let next = match fs.lookup(ctx, dir, c) {
            Ok(e) => e,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => match fs.mkdir(ctx, dir, c, 0o755, 0) {
                Ok(e) => e,
                // Made meanwhile by someone else (another host).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => fs.lookup(ctx, dir, c)?,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        if owned {
            fs.forget(dir, 1);
        }
        dir = next.inode;
        owned = true;
    }
    if !owned {
        fs.retain(dir).or_else(|_| fs.lookup(ctx, dir, OsStr::new(".")).map(|_| ()))?;
    }
    Ok(dir)
}
