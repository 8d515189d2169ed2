//! `open(O_CREAT)` as the kernel does it, for every transport: without `O_EXCL` it never fails
//! with `EEXIST` or `ENOENT` because another client created or removed the name in between
//! (SQLite's processes all open `db-wal` and `db-shm` that way at once).

use std::ffi::OsStr;
use std::io;

use super::{errno, Context, Entry, FileSystem, Handle, Inode};

/// How often a lookup/create pair that lost a race is tried again before giving up.
const ATTEMPTS: usize = 16;

/// What `open_or_create` found.
#[derive(Debug)]
pub enum Opened {
    /// An existing object, with one lookup reference the caller owns; not yet opened (the
    /// caller decides whether it opens this kind of object).
    Existing(Entry),
    /// A regular file made by this call, open as `Handle`.
    Created(Entry, Handle),
}

/// Finds `name` in `parent`, or creates it when `flags` carry `O_CREAT`: `EEXIST` only with
/// `O_EXCL`; a name created by someone else between the lookup and the create is found
/// instead, and one removed in between is created.
pub fn open_or_create(
    fs: &dyn FileSystem,
    ctx: &Context,
    parent: Inode,
    name: &OsStr,
    mode: u32,
    umask: u32,
    flags: i32,
) -> io::Result<Opened> {
    let create = flags & libc::O_CREAT != 0;
    let exclusive = create && flags & libc::O_EXCL != 0;
    for _ in 0..ATTEMPTS {
        match fs.lookup(ctx, parent, name) {
            Ok(e) if exclusive => {
                fs.forget(e.inode, 1);
                return Err(errno(libc::EEXIST));
            }
            Ok(e) => return Ok(Opened::Existing(e)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(e),
        }
        match fs.create(ctx, parent, name, mode, umask, flags) {
            Ok((e, h)) => return Ok(Opened::Created(e, h)),
            // Someone else made it since the lookup: open theirs.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !exclusive => continue,
            Err(e) => return Err(e),
        }
    }
    // The name keeps appearing and vanishing under a hostile neighbour: say so as the kernel
    // would for a name that is not there any more.
    Err(errno(libc::ENOENT))
}
