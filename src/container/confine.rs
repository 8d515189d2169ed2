//! What a container's command may do, as runc allows by default: its capability sets
//! (bounding, effective, permitted, inheritable) cut to runc's default list, no ambient
//! capabilities, and `no_new_privs` (no set-id or file-capability gain at exec). Applied in
//! the command's process just before exec; the container's init keeps what it needs to
//! supervise.

use super::sys;

/// runc's default capabilities (`linux/capability.h` numbers): CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// The mask of `DEFAULT_CAPS`.
pub fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, c| m | 1 << c)
}

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Before the command's user is set: every capability outside `DEFAULT_CAPS` leaves the
/// bounding set (which needs `CAP_SETPCAP`, still held here).
pub fn bound() -> Result<(), String> {
    let keep = default_mask();
    for cap in (0..=last_cap()).filter(|c| keep & (1 << c) == 0) {
        match sys::drop_bounding(cap) {
            Ok(()) => {}
            // A capability this kernel does not have.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("cannot drop capability {cap} from the bounding set: {e}")),
        }
    }
    Ok(())
}

/// After the command's user is set: its effective, permitted and inheritable sets within
/// `DEFAULT_CAPS`, no ambient capabilities, and `no_new_privs`.
pub fn limit() -> Result<(), String> {
    let keep = default_mask();
    let (e, p, i) = sys::capabilities().map_err(|e| format!("cannot read the capabilities: {e}"))?;
    sys::set_capabilities(e & keep, p & keep, i & keep).map_err(|e| format!("cannot set the capabilities: {e}"))?;
    sys::clear_ambient().map_err(|e| format!("cannot clear the ambient capabilities: {e}"))?;
    sys::no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))
}
