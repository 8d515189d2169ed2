//! The default seccomp filter of a container's command, comparable to Docker's default
//! profile: every system call is allowed except those that reach the host's kernel state or
//! other tenants (mounts and the new mount API, kexec, modules, bpf, perf, the keyring,
//! reboot, swap, clocks, quotas, namespace creation and joining, handle-based opens,
//! io_uring, ...), which fail with EPERM. `clone3` fails with ENOSYS (its flags are in
//! memory a filter cannot read, so libc falls back to `clone`, whose namespace flags are
//! checked), and every x32-ABI call fails with EPERM (their numbers would bypass the list).
//!
//! The BPF is compiled by `seccompiler` (Firecracker's); only the x32 guard, which that
//! compiler has no rule for, is four hand-written instructions.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// Calls refused outright, each with why Docker's profile refuses it too.
pub const REFUSED: &[(&str, libc::c_long)] = &[
    // Mounts: the container's tree is the runtime's to build.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    // The host's kernel: replacing it, its modules, its programs and its counters.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    // The kernel keyring is not namespaced.
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // The whole machine: reboot, swap, clocks, accounting, the kernel log, quotas.
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("vhangup", libc::SYS_vhangup),
    // New namespaces and joining others'.
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // Opening files by handle ignores the mount tree (the "shocker" escape).
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    // Watching the whole filesystem; faulting the kernel on user memory.
    ("fanotify_init", libc::SYS_fanotify_init),
    ("userfaultfd", libc::SYS_userfaultfd),
    // io_uring runs calls the filter never sees.
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    // Obsolete interfaces with a history of bugs.
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
    ("_sysctl", libc::SYS__sysctl),
];

/// `clone` flags that make a new namespace: `clone` with any of them is refused.
const NEW_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The first bit of x32-ABI system call numbers (`__X32_SYSCALL_BIT`).
const X32_BIT: u32 = 0x4000_0000;

/// Errors compiling the filter (a bug, not an input error: the lists are constants).
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the seccomp filter: {0}")]
pub struct SeccompError(String);

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SeccompError> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| SeccompError(format!("{e}")))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch).map_err(|e| SeccompError(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SeccompError(e.to_string()))
}

/// The programs of the default profile, to be installed in order.
pub fn default_profile() -> Result<Vec<BpfProgram>, SeccompError> {
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for flag in NEW_NAMESPACES {
        // On x86_64 `clone`'s first argument is its flags.
        let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag).map_err(|e| SeccompError(e.to_string()))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| SeccompError(e.to_string()))?);
    }
    refused.insert(libc::SYS_clone, clone_rules);
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    Ok(vec![x32_guard(), compile(refused, libc::EPERM)?, compile(clone3, libc::ENOSYS)?])
}

/// Refuses every call whose number has the x32 bit (the architecture check in the other
/// programs passes them: x32 shares x86_64's audit architecture).
fn x32_guard() -> BpfProgram {
    const LD_NR: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr is at offset 0.
        ins(LD_NR, 0, 0, 0),
        ins(JGE, 0, 1, X32_BIT),
        ins(RET, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ins(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_and_refuses_every_listed_call() {
        let programs = default_profile().expect("compiles");
        assert_eq!(programs.len(), 3);
        // Every listed number appears as a comparison constant in the main program.
        for (name, nr) in REFUSED {
            assert!(programs[1].iter().any(|i| i.k == *nr as u32), "{name} is not in the filter");
        }
        assert!(programs[2].iter().any(|i| i.k == libc::SYS_clone3 as u32));
    }
}
