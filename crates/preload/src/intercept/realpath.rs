//! `realpath` (and `canonicalize_file_name`, `__realpath_chk`) for paths under a pool mount:
//! glibc's resolves with its internal `lstat` and `readlink`, which no preloaded library sees,
//! so it would take FUSE for every component. This one asks the service for each component
//! under a mount and the kernel for the others, with the kernel's rules: every component must
//! exist, at most 40 symbolic links, `ENOTDIR` for a file used as a directory.

use std::collections::VecDeque;
use std::ffi::{c_char, CStr, CString};

use super::run;
use crate::config::{self, errno};
use crate::path::{resolve_dir, Target};
use crate::{namespace, ops, real};
use crate::outcome::{Served, Unserved};

/// Symbolic links followed before `ELOOP`, as the kernel allows.
const MAX_LINKS: u32 = 40;

/// `lstat`'s file type of `path`, and the link's target when it is one.
fn inspect(path: &[u8]) -> Served<(u32, Option<Vec<u8>>)> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut t = Target::empty();
    if resolve_dir(&mut t, libc::AT_FDCWD, c.as_ptr()).is_some() && !t.rel().is_empty() {
        match ops::stat_path(&t, false) {
            Ok(a) if a.mode & libc::S_IFMT == libc::S_IFLNK => {
                let mut buf = vec![0u8; libc::PATH_MAX as usize];
                let n = namespace::readlink(&t, &mut buf)?;
                buf.truncate(n);
                return Ok((libc::S_IFLNK, Some(buf)));
            }
            Ok(a) => return Ok((a.mode & libc::S_IFMT, None)),
            Err(Unserved::Kernel) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: a NUL-terminated path and a zeroed out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path we own and `st` a valid out-parameter.
    if unsafe { real::lstat(c.as_ptr(), &mut st) } != 0 {
        return Err(Unserved::Errno(errno()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFLNK {
        return Ok((kind, None));
    }
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `c` is a NUL-terminated path we own; `buf` is writable for its whole length.
    let n = unsafe { real::readlink(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Unserved::Errno(errno()));
    }
    buf.truncate(n as usize);
    Ok((kind, Some(buf)))
}

fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    p.split(|b| *b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec)
}

/// The canonical absolute form of `path`; `Unserved::Kernel` when it does not start under a mount.
fn canonical(path: &[u8]) -> Served<Vec<u8>> {
    let mut start = Vec::new();
    if path.first() != Some(&b'/') {
        let mut cwd = [0u8; libc::PATH_MAX as usize];
        let n = config::cwd(&mut cwd);
        if n == 0 {
            return Err(Unserved::Kernel);
        }
        start.extend_from_slice(&cwd[..n]);
        start.push(b'/');
    }
    start.extend_from_slice(path);
    let cfg = config::get().ok_or(Unserved::Kernel)?;
    if !cfg.mounts.iter().any(|m| start.starts_with(&m.path) && matches!(start.get(m.path.len()), None | Some(b'/'))) {
        return Err(Unserved::Kernel);
    }
    let mut todo: VecDeque<Vec<u8>> = components(&start).collect();
    let mut out: Vec<u8> = Vec::new();
    let mut is_dir = true;
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == b"." || c == b".." {
            if !is_dir {
                return Err(Unserved::Errno(libc::ENOTDIR));
            }
            if c == b".." {
                let cut = out.iter().rposition(|b| *b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            continue;
        }
        if !is_dir {
            return Err(Unserved::Errno(libc::ENOTDIR));
        }
        let before = out.len();
        out.push(b'/');
        out.extend_from_slice(&c);
        if out.len() >= libc::PATH_MAX as usize {
            return Err(Unserved::Errno(libc::ENAMETOOLONG));
        }
        let (kind, target) = inspect(&out)?;
        match target {
            Some(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Unserved::Errno(libc::ELOOP));
                }
                if target.is_empty() {
                    return Err(Unserved::Errno(libc::ENOENT));
                }
                out.truncate(if target[0] == b'/' { 0 } else { before });
                for c in components(&target).rev() {
                    todo.push_front(c);
                }
                is_dir = true;
            }
            None => is_dir = kind == libc::S_IFDIR,
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

fn realpath_into(path: *const c_char, resolved: *mut c_char) -> Served<*mut c_char> {
    if path.is_null() {
        return Err(Unserved::Kernel);
    }
    // SAFETY: a NUL-terminated string, as realpath requires.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if p.is_empty() {
        return Err(Unserved::Kernel);
    }
    let out = canonical(p)?;
    let dst = if resolved.is_null() {
        // SAFETY: a new allocation the caller frees with free(), as realpath's contract says.
        let m = unsafe { libc::malloc(out.len() + 1) }.cast::<c_char>();
        if m.is_null() {
            return Err(Unserved::Errno(libc::ENOMEM));
        }
        m
    } else {
        resolved
    };
    // SAFETY: `dst` holds PATH_MAX bytes (the caller's, by contract) or `out.len() + 1` (ours);
    // `out` is shorter than PATH_MAX (checked while building it).
    unsafe {
        std::ptr::copy_nonoverlapping(out.as_ptr().cast::<c_char>(), dst, out.len());
        *dst.add(out.len()) = 0;
    }
    Ok(dst)
}

hooks! {
    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char => |kernel| {
        run(|| realpath_into(path, resolved), kernel)
    }

    fn __realpath_chk(path: *const c_char, resolved: *mut c_char, len: libc::size_t) -> *mut c_char => |kernel| {
        if !resolved.is_null() && len < libc::PATH_MAX as libc::size_t {
            return kernel();
        }
        run(|| realpath_into(path, resolved), kernel)
    }

    fn canonicalize_file_name(path: *const c_char) -> *mut c_char => |kernel| {
        run(|| realpath_into(path, std::ptr::null_mut()), kernel)
    }
}

