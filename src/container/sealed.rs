//! The runtime a container can see is a sealed copy (the CVE-2019-5736 class): before `exec`
//! starts a container it copies its own binary into a memfd, seals it against every change
//! (write, grow, shrink, further seals) and re-executes itself from it, as runc does. The
//! container's pid 1 and every process `exec --in` starts there are clones of that copy, so a
//! container root that opens `/proc/1/exe` (or its own `exe` before the command's exec) for
//! writing reaches the sealed copy, never the host's binary.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Set in the re-executed runtime: the path of the binary it was copied from (where the
/// preload library and the binary to start services are).
pub const ORIGIN_ENV: &str = "POLYTROPON_RUNTIME_EXE";

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Attempts at sealing the copy (see `reexec_sealed`).
const SEAL_TRIES: u32 = 10;

/// Whether this process runs from a sealed memfd.
fn running_sealed() -> bool {
    let Ok(target) = std::fs::read_link("/proc/self/exe") else { return false };
    if !target.as_os_str().as_bytes().starts_with(b"/memfd:") {
        return false;
    }
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else { return false };
    rustix::fs::fcntl_get_seals(&exe).is_ok_and(|s| s.bits() & SEALS as u32 == SEALS as u32)
}

/// The binary this process was started from: for a sealed runtime, the one it was copied
/// from.
pub fn origin_exe() -> io::Result<PathBuf> {
    match std::env::var_os(ORIGIN_ENV) {
        Some(p) if running_sealed() => Ok(PathBuf::from(p)),
        _ => std::env::current_exe(),
    }
}

/// Re-executes this process from a sealed copy of its binary, with the same arguments and
/// environment (plus [`ORIGIN_ENV`]); returns only if it already runs sealed, or with the
/// reason it cannot. Call before any thread starts.
pub fn reexec_sealed() -> io::Result<()> {
    if running_sealed() {
        return Ok(());
    }
    let origin = std::env::current_exe()?;
    let mut exe = std::fs::File::open("/proc/self/exe")?;
    let memfd = rustix::fs::memfd_create("polytropon", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)?;
    let mut copy = std::fs::File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    // Sealing against writes fails with EBUSY while the copy's pages are still referenced
    // from elsewhere (the kernel waits a little for them): the splice `io::copy` uses may
    // leave them so a moment longer on a loaded machine. Tried again a few times.
    let mut tries = 0;
    loop {
        match rustix::fs::fcntl_add_seals(&copy, rustix::fs::SealFlags::from_bits_retain(SEALS as u32)) {
            Err(rustix::io::Errno::BUSY) if tries < SEAL_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r?,
        }
    }
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument or variable holds a NUL byte"));
    let argv = std::env::args_os().map(|a| cstr(a.as_bytes())).collect::<io::Result<Vec<_>>>()?;
    let mut env = std::env::vars_os().filter(|(k, _)| k != ORIGIN_ENV).map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<io::Result<Vec<_>>>()?;
    env.push(cstr(&[ORIGIN_ENV.as_bytes(), b"=", origin.as_os_str().as_bytes()].concat())?);
    let e = nix::unistd::fexecve(&copy, &argv, &env).err().unwrap_or(nix::errno::Errno::UnknownErrno);
    Err(e.into())
}
