//! Attributes of our descriptors: fchmod, fchown, futimens, futimes and the extended
//! attribute calls (cp -a and tar set them on every file they write).

use std::ffi::{c_char, c_int, c_void, CStr};

use libc::{gid_t, mode_t, size_t, ssize_t, uid_t};

use super::{on_open_fd, on_path, run};
use crate::cbuf::{in_buf, out_buf};
use crate::ops::Node;
use crate::{ops, real};
use crate::outcome::{Served, Unserved};

hooks! {
    fn fchmod(fd: c_int, mode: mode_t) -> c_int => |kernel| {
        let w = super::names::chmod_of(mode);
        on_open_fd(fd, |f| ops::setattr(f, &w).map(|()| 0), kernel)
    }

    fn fchown(fd: c_int, uid: uid_t, gid: gid_t) -> c_int => |kernel| {
        let w = super::names::chown_of(uid, gid);
        on_open_fd(fd, |f| ops::setattr(f, &w).map(|()| 0), kernel)
    }

    fn futimens(fd: c_int, t: *const libc::timespec) -> c_int => |kernel| {
        // SAFETY: a null pointer or two timespecs, as futimens requires.
        let w = super::names::times_of(unsafe { t.cast::<[libc::timespec; 2]>().as_ref() }.copied());
        on_open_fd(fd, |f| ops::setattr(f, &w?).map(|()| 0), kernel)
    }

    fn futimes(fd: c_int, t: *const libc::timeval) -> c_int => |kernel| {
        let w = || super::names::times_of(super::names::timevals(t)?);
        on_open_fd(fd, |f| ops::setattr(f, &w()?).map(|()| 0), kernel)
    }
}

/// The caller's attribute name.
fn name<'a>(n: *const c_char) -> Served<&'a [u8]> {
    if n.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    // SAFETY: a NUL-terminated name, as the xattr calls require.
    Ok(unsafe { CStr::from_ptr(n) }.to_bytes())
}

hooks! {
    fn fgetxattr(fd: c_int, n: *const c_char, value: *mut c_void, size: size_t) -> ssize_t => |kernel| {
        // SAFETY: the caller's buffer of `size` bytes; forwarding the caller's arguments.
        on_open_fd(fd, |f| Ok(ops::getxattr(Node::of(f), Some(name(n)?), unsafe { out_buf(value, size) }?)? as ssize_t), kernel)
    }

    fn flistxattr(fd: c_int, list: *mut c_char, size: size_t) -> ssize_t => |kernel| {
        // SAFETY: the caller's buffer of `size` bytes; forwarding the caller's arguments.
        on_open_fd(fd, |f| Ok(ops::getxattr(Node::of(f), None, unsafe { out_buf(list.cast(), size) }?)? as ssize_t), kernel)
    }

    fn fsetxattr(fd: c_int, n: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int => |kernel| {
        on_open_fd(
            fd,
            // SAFETY: the caller's value of `size` bytes.
            |f| ops::setxattr(Node::of(f), name(n)?, unsafe { in_buf(value, size) }?, flags).map(|()| 0),
            kernel,
        )
    }

    fn fremovexattr(fd: c_int, n: *const c_char) -> c_int => |kernel| {
        on_open_fd(fd, |f| ops::removexattr(Node::of(f), name(n)?).map(|()| 0), kernel)
    }
}

/// Runs `f` on the node `path` leads to (following a final symbolic link or not). A symbolic
/// link's own attributes, and a node the service forgot between the two requests, are the
/// kernel's.
fn on_node<T>(path: *const c_char, follow: bool, f: impl FnOnce(Node) -> Served<T>) -> Served<T> {
    let node = on_path(libc::AT_FDCWD, path, |t| {
        let (a, node) = ops::stat_path_node(t, follow)?;
        if a.mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(Unserved::Kernel);
        }
        Ok(node)
    })?;
    f(node).map_err(|e| if e == Unserved::Errno(libc::EBADF) { Unserved::Kernel } else { e })
}

macro_rules! path_xattrs {
    ($($name:ident, $follow:expr, ($($arg:ident: $t:ty),*) -> $r:ty, |$node:ident| $body:expr;)*) => {
        $(
            #[no_mangle]
            #[allow(unused_unsafe)] // the calls without a buffer need none
            pub unsafe extern "C" fn $name(path: *const c_char, $($arg: $t),*) -> $r {
                // SAFETY: the caller's buffer of `size` bytes and name, as the call requires;
                // forwarding the caller's arguments.
                run(|| on_node(path, $follow, |$node| unsafe { $body }), || unsafe { real::$name(path, $($arg),*) })
            }
        )*
    };
}

path_xattrs! {
    getxattr, true, (n: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, |node| Ok(ops::getxattr(node, Some(name(n)?), out_buf(value, size)?)? as ssize_t);
    lgetxattr, false, (n: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, |node| Ok(ops::getxattr(node, Some(name(n)?), out_buf(value, size)?)? as ssize_t);
    listxattr, true, (list: *mut c_char, size: size_t) -> ssize_t, |node| Ok(ops::getxattr(node, None, out_buf(list.cast(), size)?)? as ssize_t);
    llistxattr, false, (list: *mut c_char, size: size_t) -> ssize_t, |node| Ok(ops::getxattr(node, None, out_buf(list.cast(), size)?)? as ssize_t);
    setxattr, true, (n: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, |node| ops::setxattr(node, name(n)?, in_buf(value, size)?, flags).map(|()| 0);
    lsetxattr, false, (n: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, |node| ops::setxattr(node, name(n)?, in_buf(value, size)?, flags).map(|()| 0);
    removexattr, true, (n: *const c_char) -> c_int, |node| ops::removexattr(node, name(n)?).map(|()| 0);
    lremovexattr, false, (n: *const c_char) -> c_int, |node| ops::removexattr(node, name(n)?).map(|()| 0);
}
