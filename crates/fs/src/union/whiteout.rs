//! Whiteouts and opaque directories, in the two forms the union reads.
//!
//! - overlayfs form (read in every branch, and the one form the union writes): a whiteout is
//!   a character device 0/0; an opaque directory carries `trusted.overlay.opaque` (or
//!   `user.overlay.opaque`) set to `y`.
//! - OCI layer form (read in lower branches only): `.wh.NAME` hides `NAME`, and a
//!   `.wh..wh..opq` entry makes its directory opaque.
//!
//! Names starting with `.wh..wh.` in the upper branch are the union's own scratch entries
//! (copy-up in progress) and are never visible.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::libservice::{errno, Context, FileSystem, Inode};

pub(super) const OCI_PREFIX: &[u8] = b".wh.";
pub(super) const OCI_OPAQUE: &[u8] = b".wh..wh..opq";
/// Prefix of the union's own scratch names in the upper branch.
pub(super) const SCRATCH_PREFIX: &[u8] = b".wh..wh.";
pub(super) const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// Attribute the union writes to mark a directory opaque.
pub(super) const OPAQUE_XATTR_WRITTEN: &str = "trusted.overlay.opaque";

/// Whether `name` is an xattr of the union's own (hidden from, and refused to, users).
pub(super) fn is_private_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"trusted.overlay.") || b.starts_with(b"user.overlay.")
}

/// Whether `name` is reserved for the union's scratch entries.
pub(super) fn is_scratch(name: &OsStr) -> bool {
    name.as_bytes().starts_with(SCRATCH_PREFIX)
}

/// Whether `name` has the OCI marker form (`.wh.` prefix), meaningful in lower branches.
pub(super) fn is_oci_marker(name: &OsStr) -> bool {
    name.as_bytes().starts_with(OCI_PREFIX)
}

fn no_xattr(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) | Some(libc::EPERM) | Some(libc::ENOSYS)
    )
}

/// Whether directory `dir` of `fs` carries an opaque xattr.
pub(super) fn has_opaque_xattr(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<bool> {
    for name in OPAQUE_XATTRS {
        match fs.getxattr(ctx, dir, OsStr::new(name)) {
            Ok(v) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if no_xattr(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// The OCI markers of one lower directory.
#[derive(Debug, Default)]
pub(super) struct OciMarkers {
    /// Names hidden by `.wh.NAME`.
    pub hidden: std::collections::HashSet<OsString>,
    /// The directory holds `.wh..wh..opq`.
    pub opaque: bool,
}

/// Reads the OCI markers of directory `dir` of `fs` (a lower branch); `None` when it has none.
pub(super) fn read_oci_markers(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<Option<OciMarkers>> {
    let mut markers = OciMarkers::default();
    crate::libservice::each_entry(fs, ctx, dir, |e| {
        let b = e.name.as_bytes();
        if b == OCI_OPAQUE {
            markers.opaque = true;
        } else if let Some(hidden) = b.strip_prefix(OCI_PREFIX) {
            markers.hidden.insert(OsStr::from_bytes(hidden).to_owned());
        }
    })?;
    Ok((markers.opaque || !markers.hidden.is_empty()).then_some(markers))
}

/// Creates an overlayfs-form whiteout `name` in directory `dir` of the upper branch.
pub(super) fn make_whiteout(fs: &dyn FileSystem, ctx: &Context, dir: Inode, name: &OsStr) -> io::Result<()> {
    let e = fs.mknod(ctx, dir, name, libc::S_IFCHR, 0, 0)?;
    fs.forget(e.inode, 1);
    if !e.attr.is_whiteout() {
        return Err(errno(libc::EIO));
    }
    Ok(())
}

/// Marks directory `dir` of the upper branch opaque.
pub(super) fn set_opaque(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<()> {
    fs.setxattr(ctx, dir, OsStr::new(OPAQUE_XATTR_WRITTEN), b"y", 0)
}

/// Attributes naming where a renamed directory's lower parts are (overlayfs `redirect_dir`),
/// read in every branch; the first is the one the union writes.
pub(super) const REDIRECT_XATTRS: [&str; 2] = ["trusted.overlay.redirect", "user.overlay.redirect"];
/// Longest redirect the union writes (a longer path makes the rename fail with `EXDEV`, as
/// overlayfs does: user space then copies the tree).
pub(super) const REDIRECT_MAX: usize = 4096;

/// Where a directory's lower parts are looked up, from its redirect attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Redirect {
    /// Under this name in the parent's lower directories.
    Relative(OsString),
    /// At this path (its components) from the root of each lower branch below.
    Absolute(Vec<OsString>),
}

impl Redirect {
    /// Parses an attribute's value as overlayfs writes it: one name, or a path starting with
    /// `/`. Anything else (empty, `.` or `..` components, NUL bytes, a relative path with
    /// `/`) is refused, so that a crafted branch cannot point a lookup outside it.
    pub fn parse(value: &[u8]) -> io::Result<Redirect> {
        let bad = || errno(libc::EIO);
        let valid = |c: &[u8]| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0);
        if value.len() > REDIRECT_MAX {
            return Err(bad());
        }
        match value.strip_prefix(b"/") {
            Some(path) => {
                let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
                if !parts.iter().all(|c| valid(c)) {
                    return Err(bad());
                }
                Ok(Redirect::Absolute(parts.into_iter().map(|c| OsStr::from_bytes(c).to_owned()).collect()))
            }
            None if valid(value) && !value.contains(&b'/') => Ok(Redirect::Relative(OsStr::from_bytes(value).to_owned())),
            None => Err(bad()),
        }
    }

    /// The attribute's value.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Redirect::Relative(name) => name.as_bytes().to_vec(),
            Redirect::Absolute(parts) => parts.iter().flat_map(|c| std::iter::once(&b'/').chain(c.as_bytes())).copied().collect(),
        }
    }
}

/// The redirect directory `dir` of `fs` carries, if any.
pub(super) fn read_redirect(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<Option<Redirect>> {
    for name in REDIRECT_XATTRS {
        match fs.getxattr(ctx, dir, OsStr::new(name)) {
            Ok(v) => return Redirect::parse(&v).map(Some),
            Err(e) if no_xattr(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Records `redirect` on directory `dir` of the upper branch.
pub(super) fn set_redirect(fs: &dyn FileSystem, ctx: &Context, dir: Inode, redirect: &Redirect) -> io::Result<()> {
    fs.setxattr(ctx, dir, OsStr::new(REDIRECT_XATTRS[0]), &redirect.to_bytes(), 0)
}
