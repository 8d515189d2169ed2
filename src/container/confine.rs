//! What a container's command may do, as runc allows by default: its capability sets
//! (bounding, effective, permitted, inheritable) cut to runc's default list (changed with
//! `--cap-add` / `--cap-drop`), no ambient capabilities, `no_new_privs` (no set-id or
//! file-capability gain at exec; `--allow-new-privs` turns it off) and the default seccomp
//! filter ([`super::seccomp`]; `--seccomp unconfined` turns it off). Applied in the command's
//! process just before exec; the container's init keeps what it needs to supervise.

use seccompiler::BpfProgram;

use super::sys;

/// runc's default capabilities (`linux/capability.h` numbers): CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Capability names by number, as `capabilities(7)` spells them without `CAP_`.
const NAMES: [&str; 41] = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
    "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
    "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
];

/// A capability name `--cap-add` / `--cap-drop` does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown capability {0:?} (expected a name from capabilities(7) such as NET_ADMIN or CAP_NET_ADMIN, or ALL)")]
pub struct UnknownCapability(pub String);

/// The mask one `--cap-add` / `--cap-drop` value names: `ALL`, or a capability with or
/// without its `CAP_` prefix, in any case.
pub fn parse_cap(name: &str) -> Result<u64, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok((1u64 << NAMES.len()) - 1);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| 1u64 << i).ok_or_else(|| UnknownCapability(name.to_string()))
}

/// The mask of `DEFAULT_CAPS`.
pub fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, c| m | 1 << c)
}

/// How a container's command is confined.
#[derive(Clone, Debug)]
pub struct Confinement {
    /// The capabilities kept in every set (a mask by capability number).
    pub caps: u64,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// Seccomp programs installed in order (empty: unconfined).
    pub seccomp: Vec<BpfProgram>,
}

impl Confinement {
    /// runc's defaults with `drop` and then `add` applied (names as [`parse_cap`] reads them;
    /// as Docker and podman, an added capability wins: `--cap-drop ALL --cap-add CHOWN` keeps
    /// CHOWN), and the default seccomp profile unless `seccomp` is false.
    pub fn new(add: &[String], drop: &[String], no_new_privs: bool, seccomp: bool) -> Result<Self, ConfineError> {
        let mut caps = default_mask();
        for d in drop {
            caps &= !parse_cap(d)?;
        }
        for a in add {
            caps |= parse_cap(a)?;
        }
        let seccomp = if seccomp { super::seccomp::default_profile()? } else { Vec::new() };
        Ok(Confinement { caps, no_new_privs, seccomp })
    }
}

impl Default for Confinement {
    /// No confinement beyond runc's capability list (for code that builds a `Spec` by hand).
    fn default() -> Self {
        Confinement { caps: default_mask(), no_new_privs: true, seccomp: Vec::new() }
    }
}

/// What is wrong with the confinement asked for.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(transparent)]
    Capability(#[from] UnknownCapability),
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
}

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Before the command's user is set: every capability outside `c.caps` leaves the bounding
/// set (which needs `CAP_SETPCAP`, still held here), then the seccomp filter is installed
/// (which without `no_new_privs` needs `CAP_SYS_ADMIN`, also still held).
pub fn bound(c: &Confinement) -> Result<(), String> {
    for cap in (0..=last_cap()).filter(|n| c.caps & (1 << n) == 0) {
        match sys::drop_bounding(cap) {
            Ok(()) => {}
            // A capability this kernel does not have.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("cannot drop capability {cap} from the bounding set: {e}")),
        }
    }
    for program in &c.seccomp {
        sys::install_seccomp(program).map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// After the command's user is set: its effective and permitted sets within `c.caps`, no
/// inheritable and no ambient capabilities (as runc and Moby since CVE-2022-24769: a file's
/// inheritable capabilities then give nothing at exec), and `no_new_privs` if asked.
pub fn limit(c: &Confinement) -> Result<(), String> {
    let (e, p, _) = sys::capabilities().map_err(|e| format!("cannot read the capabilities: {e}"))?;
    sys::set_capabilities(e & c.caps, p & c.caps, 0).map_err(|e| format!("cannot set the capabilities: {e}"))?;
    sys::clear_ambient().map_err(|e| format!("cannot clear the ambient capabilities: {e}"))?;
    if c.no_new_privs {
        sys::no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_as_docker_spells_them() {
        assert_eq!(parse_cap("NET_ADMIN").expect("known"), 1 << 12);
        assert_eq!(parse_cap("cap_sys_admin").expect("known"), 1 << 21);
        assert_eq!(parse_cap("all").expect("known").count_ones(), 41);
        assert!(parse_cap("CAP_FLY").is_err());
        let c = Confinement::new(&["NET_ADMIN".into()], &["NET_RAW".into(), "MKNOD".into()], true, false).expect("valid");
        assert_eq!(c.caps, (default_mask() | 1 << 12) & !(1 << 13) & !(1 << 27));
        let only = Confinement::new(&["CHOWN".into()], &["ALL".into()], true, false).expect("valid");
        assert_eq!(only.caps, 1, "an added capability wins over a dropped one");
    }
}
