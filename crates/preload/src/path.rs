//! Deciding whether a path is ours: made absolute (against the working directory), tidied
//! (`//` and `.` dropped) and matched against the pool's mounts, in a stack buffer.
//!
//! Anything this cannot decide cheaply and exactly — `..`, a trailing `/` or `.`, a path
//! relative to a directory descriptor, the mount root itself — is left to the kernel, which
//! reaches the same instance through the FUSE mount.

use std::ffi::{c_char, c_int, CStr};
use std::mem::MaybeUninit;

use crate::config;

pub const PATH_CAP: usize = 4096;

/// A path under one of the pool's mounts. The buffer is left uninitialised past `len` (this
/// runs on every intercepted path call: no 4 KiB memset).
pub struct Target {
    buf: [MaybeUninit<u8>; PATH_CAP],
    len: usize,
    rel: usize,
    pub instance: u32,
    pub dev: u64,
    /// The directory `rel` is relative to (0: the instance root).
    pub base: u64,
}

impl Target {
    /// A target to fill with [`resolve`]. Filled in place: returning 4 KiB by value on every
    /// intercepted call costs a copy.
    pub const fn empty() -> Target {
        Target { buf: [MaybeUninit::uninit(); PATH_CAP], len: 0, rel: 0, instance: 0, dev: 0, base: 0 }
    }

    /// The tidy absolute path.
    pub fn abs(&self) -> &[u8] {
        self.bytes(0)
    }

    /// The path inside the instance, relative to `base` (no leading '/').
    pub fn rel(&self) -> &[u8] {
        self.bytes(self.rel)
    }

    fn bytes(&self, from: usize) -> &[u8] {
        let from = from.min(self.len);
        // SAFETY: `push_components` is the only writer and initialises `buf[..len]` in order;
        // `from <= len <= PATH_CAP`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>().add(from), self.len - from) }
    }
}

/// Fills `t` with the target of `path` (relative to `dirfd`, as for the *at calls); `None`
/// when the call is not for the user-level path.
pub fn resolve(t: &mut Target, dirfd: c_int, path: *const c_char) -> Option<()> {
    resolve_in(t, dirfd, path, false)
}

/// As [`resolve`], also for the root of a mount (with an empty relative path): for
/// directories the kernel opens, which this library records.
pub fn resolve_dir(t: &mut Target, dirfd: c_int, path: *const c_char) -> Option<()> {
    resolve_in(t, dirfd, path, true)
}

fn resolve_in(t: &mut Target, dirfd: c_int, path: *const c_char, root_too: bool) -> Option<()> {
    if path.is_null() {
        return None;
    }
    let cfg = config::get()?;
    if cfg.mounts.is_empty() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string, as the libc call requires.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if !decidable(p, root_too) {
        return None;
    }
    t.len = 0;
    t.base = 0;
    if p[0] != b'/' && dirfd != libc::AT_FDCWD {
        // A file system may be mounted below the directory now, which the service does not
        // know of (see `config::paths_moved`).
        if config::paths_have_moved() {
            return None;
        }
        let d = crate::files::dir(dirfd)?;
        push_components(t, d.path)?;
        let base_len = t.len;
        push_components(t, p)?;
        if t.len == base_len && !root_too {
            return None;
        }
        if cfg.kernel_owned(t.abs()) {
            return None;
        }
        t.rel = base_len + 1;
        t.instance = d.instance;
        t.dev = d.dev;
        t.base = d.inode;
        return Some(());
    }
    let mut cwd = [0u8; libc::PATH_MAX as usize];
    let n = if p[0] == b'/' { 0 } else { config::cwd_current(&mut cwd) };
    if p[0] != b'/' && n == 0 {
        return None;
    }
    place(t, cfg, &cwd[..n], p, root_too)
}

/// Whether this library can tell exactly what `p` names: not an empty path, nor one ending in
/// `/` (unless `root_too`: a directory the kernel opens) or in a final `.`.
fn decidable(p: &[u8], root_too: bool) -> bool {
    if p.is_empty() || (p.ends_with(b"/") && !root_too) {
        return false;
    }
    // A final "." ("d/.", "." alone) names a directory through itself, which the tidied path
    // loses: the kernel requires a directory there ("file/." is ENOTDIR), follows a symbolic
    // link before it, and refuses it to the namespace calls (rmdir EINVAL, unlink EISDIR,
    // rename EBUSY, ...). Directories the kernel opens may still be recorded under it.
    root_too || (p != b"." && !p.ends_with(b"/."))
}

/// Tidies `p` (relative to `cwd` unless absolute) into `t` and finds the mount of `cfg` it is
/// under (its root too with `root_too`); `None` for `..`, a path past `PATH_CAP`, a tree the
/// kernel owns, or a path under no mount.
fn place(t: &mut Target, cfg: &config::Config, cwd: &[u8], p: &[u8], root_too: bool) -> Option<()> {
    if p.first() != Some(&b'/') {
        push_components(t, cwd)?;
    }
    push_components(t, p)?;
    let abs = t.abs();
    if cfg.kernel_owned(abs) {
        return None;
    }
    let m = cfg.mount_of(abs, root_too)?;
    if !m.reachable() {
        // The kernel refuses the path (a directory above the mount point this process may
        // not search), as it will when asked.
        return None;
    }
    t.rel = m.path.len() + 1;
    t.instance = m.instance;
    t.dev = m.dev();
    Some(())
}

/// Appends the components of `p` to the target's buffer; `None` on `..` or overflow.
fn push_components(t: &mut Target, p: &[u8]) -> Option<()> {
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return None,
            _ => {
                let end = t.len + 1 + c.len();
                if end >= PATH_CAP {
                    return None;
                }
                t.buf[t.len].write(b'/');
                for (d, s) in t.buf[t.len + 1..end].iter_mut().zip(c) {
                    d.write(*s);
                }
                t.len = end;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::config::{Config, Mount};

    fn mount(path: &str, instance: u32) -> Mount {
        Mount { path: path.as_bytes().to_vec(), instance, dev: std::sync::atomic::AtomicU64::new(7), kernel_statfs: OnceLock::new(), kernel_statvfs: OnceLock::new() }
    }

    fn config(mounts: &[(&str, u32)]) -> Config {
        let cfg = Config { channel: c"".into(), mounts: mounts.iter().map(|(p, i)| mount(p, *i)).collect(), kernel: vec![b"/proc".to_vec()] };
        // Reached for good: these mount points are made up (`Mount::reachable` is tested with
        // real directories, `tests/credentials.rs`).
        for m in &cfg.mounts {
            crate::config::reached_for_tests(m);
        }
        cfg
    }

    /// (instance, absolute, relative) of what `p` names from `cwd`, or `None`.
    fn placed(cfg: &Config, cwd: &str, p: &str, root_too: bool) -> Option<(u32, String, String)> {
        let mut t = Target::empty();
        place(&mut t, cfg, cwd.as_bytes(), p.as_bytes(), root_too)?;
        Some((t.instance, String::from_utf8_lossy(t.abs()).into_owned(), String::from_utf8_lossy(t.rel()).into_owned()))
    }

    #[test]
    fn paths_under_a_mount_are_tidied_and_matched_to_it() {
        let cfg = config(&[("/mnt/a", 1), ("/mnt/b", 2)]);
        let got = |cwd, p| placed(&cfg, cwd, p, false);
        assert_eq!(got("/", "/mnt/a/x/y"), Some((1, "/mnt/a/x/y".into(), "x/y".into())));
        assert_eq!(got("/", "//mnt/./b//f"), Some((2, "/mnt/b/f".into(), "f".into())));
        assert_eq!(got("/mnt/a/d", "f"), Some((1, "/mnt/a/d/f".into(), "d/f".into())));
        assert_eq!(got("/mnt", "b/f"), Some((2, "/mnt/b/f".into(), "f".into())));
        // A name that merely starts like a mount is not under it.
        assert_eq!(got("/", "/mnt/ab/f"), None);
        assert_eq!(got("/", "/mnt/a"), None, "the mount root itself is the kernel's");
        assert_eq!(placed(&cfg, "/", "/mnt/a", true), Some((1, "/mnt/a".into(), String::new())));
        assert_eq!(got("/", "/etc/passwd"), None);
    }

    #[test]
    fn what_cannot_be_decided_exactly_goes_to_the_kernel() {
        let cfg = config(&[("/mnt/a", 1)]);
        assert_eq!(placed(&cfg, "/", "/mnt/a/../a/f", false), None, "`..` may cross a symlink");
        assert_eq!(placed(&cfg, "/mnt/a/d", "../f", false), None);
        let long = format!("/mnt/a/{}", "x/".repeat(PATH_CAP / 2));
        assert_eq!(placed(&cfg, "/", &long, false), None, "past PATH_CAP");
        for p in ["", "/mnt/a/d/", "/mnt/a/f/.", ".", "d/."] {
            assert!(!decidable(p.as_bytes(), false), "{p:?}");
        }
        assert!(decidable(b"/mnt/a/d/", true));
        assert!(decidable(b"/mnt/a/f", false) && decidable(b"f.", false) && decidable(b"./f", false));
    }

    #[test]
    fn a_mount_at_the_root_takes_everything_but_the_kernels_trees() {
        // A container's root: its mount path is empty.
        let cfg = config(&[("", 3)]);
        assert_eq!(placed(&cfg, "/", "/etc/passwd", false), Some((3, "/etc/passwd".into(), "etc/passwd".into())));
        assert_eq!(placed(&cfg, "/", "/proc/self/maps", false), None);
        assert_eq!(placed(&cfg, "/", "/", false), None, "the root has no name to send");
        assert_eq!(placed(&cfg, "/", "/", true), Some((3, String::new(), String::new())), "but is recorded when the kernel opens it");
    }
}
