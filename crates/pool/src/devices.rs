//! A container's device allowlist, as runc's default: its processes may open only the
//! standard character devices (null, zero, full, random, urandom, tty, console, ptmx and the
//! pseudo-terminals); every other device, block devices above all (the host's disks, and
//! through them every tenant's branches), is refused whatever node a container makes.
//!
//! On cgroup v1 this is the `devices` controller's `devices.deny` / `devices.allow` files. On
//! cgroup v2 the kernel asks a BPF program of type `CGROUP_DEVICE` attached to the cgroup; no
//! maintained crate loads one without pulling a whole eBPF toolchain (aya, libbpf-sys), so
//! the program below is eleven instructions per rule written here, checked by the kernel's
//! verifier at load.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `(major, minor)` of the allowed character devices; `None` as minor: every minor.
pub const ALLOWED: [(u32, Option<u32>); 9] =
    [(1, Some(3)), (1, Some(5)), (1, Some(7)), (1, Some(8)), (1, Some(9)), (5, Some(0)), (5, Some(1)), (5, Some(2)), (136, None)];

/// Restricts the v1 `devices` cgroup `dir` (which must have no children) to [`ALLOWED`].
pub fn restrict_v1(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("devices.deny"), "a")?;
    for (major, minor) in ALLOWED {
        let minor = minor.map_or("*".to_string(), |m| m.to_string());
        std::fs::write(dir.join("devices.allow"), format!("c {major}:{minor} rwm"))?;
    }
    Ok(())
}

// The eBPF encoding (`linux/bpf.h`, `linux/bpf_common.h`).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57;
const JMP_JNE_K: u8 = 0x55; // if dst != imm goto pc + off
const ALU64_MOV_K: u8 = 0xb7;
const JMP_EXIT: u8 = 0x95;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low four bits, src in the high four.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | src << 4, off, imm }
}

/// The program: r1 is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// (the device type in the low 16 bits of `access_type`); returns 1 to allow, 0 to refuse.
fn program() -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for (major, minor) in ALLOWED {
        let rule_len: i16 = if minor.is_some() { 5 } else { 4 };
        // Each jump skips to the next rule: past the rest of this one.
        p.push(insn(JMP_JNE_K, 2, 0, rule_len - 1, BPF_DEVCG_DEV_CHAR));
        p.push(insn(JMP_JNE_K, 4, 0, rule_len - 2, major as i32));
        if let Some(m) = minor {
            p.push(insn(JMP_JNE_K, 5, 0, 2, m as i32));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Attaches the allowlist program to the v2 cgroup `dir`.
pub fn restrict_v2(dir: &Path) -> io::Result<()> {
    let prog = program();
    let license = c"GPL";
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoad::default()
    };
    // SAFETY: BPF_PROG_LOAD reads `load` (a prefix of `union bpf_attr`, the rest implied zero
    // by the size passed), the `prog` instructions and the license string, all alive for the
    // call; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &load as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir)?;
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: BPF_PROG_ATTACH reads `attach` (a prefix of `union bpf_attr`); both
    // descriptors are open for the call. The attachment keeps the program alive.
    if unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, std::mem::size_of::<ProgAttach>()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one device as the kernel would (the few opcodes it uses).
    fn allows(kind: i32, major: u32, minor: u32) -> bool {
        let ctx = [(kind as u32) | 6 << 16, major, minor];
        let prog = program();
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                ALU64_AND_K => r[dst] &= i64::from(i.imm),
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                JMP_JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                JMP_EXIT => return r[0] == 1,
                c => panic!("opcode {c:#x}"),
            }
            assert_eq!(src, if i.code == LDX_MEM_W { 1 } else { 0 });
        }
    }

    #[test]
    fn the_program_allows_the_standard_devices_only() {
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 0), (136, 7)] {
            assert!(allows(BPF_DEVCG_DEV_CHAR, major, minor), "c {major}:{minor}");
        }
        for (kind, major, minor) in [(1, 8, 0), (1, 1, 3), (2, 1, 1), (2, 10, 229), (2, 5, 3), (2, 4, 0), (2, 137, 0)] {
            assert!(!allows(kind, major, minor), "{kind} {major}:{minor}");
        }
    }
}
