//! The kernel's permission rules applied to a user-level request, where the back driver
//! serves a caller without the kernel in between (`libservice::access` holds the rules; this
//! module holds what each operation asks of them). Only callers that lack a capability are
//! checked at all (`Call::guard`); a root process with its full set passes every rule but
//! the exec bits, which `access` checks for everyone.

use std::io;
use std::sync::OnceLock;

use crate::libservice::access::{Creds, MAY_READ, MAY_WRITE};
use crate::libservice::{Attr, FileKind, SetAttr, TimeUpdate};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// What opening with `flags` asks of the file (`MAY_*`).
pub(super) fn open_mask(flags: i32) -> u32 {
    let mut mask = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => MAY_READ,
        libc::O_WRONLY => MAY_WRITE,
        _ => MAY_READ | MAY_WRITE,
    };
    if flags & libc::O_TRUNC != 0 {
        mask |= MAY_WRITE;
    }
    mask
}

/// Checks an open of existing regular file `a` with `flags`.
pub(super) fn open(cr: &Creds, a: &Attr, flags: i32) -> io::Result<()> {
    cr.permit(a, open_mask(flags))?;
    if flags & libc::O_NOATIME != 0 {
        cr.noatime(a)?;
    }
    Ok(())
}

/// Checks attribute changes `set` of `a` (as chmod, chown, utimensat and truncate check
/// them) and returns them as the kernel would apply them (a set-group-id bit the caller may
/// not set dropped). `by_path`: a truncate names the file by path (write permission needed;
/// through an open file the open decided).
pub(super) fn setattr(cr: &Creds, a: &Attr, set: &SetAttr, by_path: bool) -> io::Result<SetAttr> {
    let mut set = *set;
    if set.size.is_some() {
        if a.kind() == FileKind::Directory {
            return Err(errno(libc::EISDIR));
        }
        if by_path {
            cr.permit(a, MAY_WRITE)?;
        }
    }
    if set.uid.is_some() || set.gid.is_some() {
        cr.chown(a, set.uid, set.gid)?;
    }
    if let Some(m) = set.mode {
        set.mode = Some(cr.chmod(a, m)?);
    }
    if set.atime.is_some() || set.mtime.is_some() {
        // Both to now (`utimensat` with no times, or both `UTIME_NOW`) is a touch, which
        // write permission allows; any other pair, one left out included, sets times.
        let now = matches!((set.atime, set.mtime), (Some(TimeUpdate::Now), Some(TimeUpdate::Now)));
        cr.set_times(a, now)?;
    }
    Ok(set)
}

/// `fs.protected_hardlinks` of the host (1 unless it says otherwise).
pub(super) fn protected_hardlinks() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    *P.get_or_init(|| std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").map_or(true, |s| s.trim() != "0"))
}

/// `fs.protected_regular` of the host (0 unless it says otherwise; 1 if it cannot be read).
pub(super) fn protected_regular() -> u8 {
    static P: OnceLock<u8> = OnceLock::new();
    *P.get_or_init(|| std::fs::read_to_string("/proc/sys/fs/protected_regular").map_or(1, |s| s.trim().parse().unwrap_or(1)))
}

/// An `O_CREAT` open that found regular file `file` in `dir`, by a caller of filesystem uid
/// `fsuid`, under `fs.protected_regular` = `level` (the kernel's `may_create_in_sticky`, which
/// no capability bypasses): in a sticky directory, a file owned by neither the caller nor the
/// directory's owner is refused when the directory is world-writable (level 1 and up) or
/// group-writable (level 2).
pub(super) fn create_in_sticky(dir: &Attr, file: &Attr, fsuid: u32, level: u8) -> io::Result<()> {
    let refused = level > 0
        && dir.mode & libc::S_ISVTX != 0
        && file.kind() == FileKind::Regular
        && file.uid != dir.uid
        && file.uid != fsuid
        && (dir.mode & 0o002 != 0 || (level >= 2 && dir.mode & 0o020 != 0));
    if refused {
        Err(errno(libc::EACCES))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(mode: u32, uid: u32) -> Attr {
        let t = crate::libservice::Timespec::default();
        Attr { ino: 1, dev: 1, mode, nlink: 1, uid, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t }
    }

    #[test]
    fn an_o_creat_open_in_a_sticky_directory_follows_protected_regular() {
        let (tmp, shared) = (attr(libc::S_IFDIR | 0o1777, 0), attr(libc::S_IFDIR | 0o1770, 0));
        let theirs = attr(libc::S_IFREG | 0o666, 1001);
        assert!(create_in_sticky(&tmp, &theirs, 1000, 0).is_ok(), "off");
        assert_eq!(create_in_sticky(&tmp, &theirs, 1000, 1).map_err(|e| e.raw_os_error()), Err(Some(libc::EACCES)));
        assert_eq!(create_in_sticky(&tmp, &theirs, 0, 1).map_err(|e| e.raw_os_error()), Err(Some(libc::EACCES)), "root too");
        assert!(create_in_sticky(&tmp, &theirs, 1001, 1).is_ok(), "the file's owner");
        assert!(create_in_sticky(&tmp, &attr(libc::S_IFREG | 0o666, 0), 1000, 1).is_ok(), "the directory's owner's file");
        assert!(create_in_sticky(&attr(libc::S_IFDIR | 0o777, 0), &theirs, 1000, 2).is_ok(), "not sticky");
        assert!(create_in_sticky(&shared, &theirs, 1000, 1).is_ok(), "group-writable: level 2 only");
        assert!(create_in_sticky(&shared, &theirs, 1000, 2).is_err());
        assert!(create_in_sticky(&tmp, &attr(libc::S_IFIFO | 0o666, 1001), 1000, 2).is_ok(), "fifos are protected_fifos'");
    }
}
