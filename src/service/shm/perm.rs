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
